package logging

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// New builds the JSON logger: zap's JSON core behind zlog.Logger. It is deliberately not
// zap.NewProduction: that samples, and it kept about a third of a burst of "transition"
// lines in one second. Every transition must reach the log.
func New(out zapcore.WriteSyncer, level string) (*zlog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		MessageKey:     "msg",
		NameKey:        "logger",
		StacktraceKey:  "",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     utcTime,
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	return zlog.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, lvl)), nil
}

// parseLevel takes the four levels the README names, in any case. Not zapcore.ParseLevel:
// it also takes dpanic, panic and fatal, at which the exit line (logged at error so that
// it is there at every level) and every crash line would be silenced.
func parseLevel(level string) (zapcore.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
}

// utcTime writes ts in UTC, as the daemons' JSON lines (daemonlog) and the drop report
// (Writer) are: one log, one time zone, whatever TZ the container was given.
func utcTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	zapcore.RFC3339NanoTimeEncoder(t.UTC(), enc)
}
