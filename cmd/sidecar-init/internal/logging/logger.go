package logging

import (
	"fmt"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// New builds the JSON logger: zap's JSON core behind zlog.Logger. It is deliberately not
// zap.NewProduction: that samples, and it kept about a third of a burst of "transition"
// lines in one second. Every transition must reach the log.
func New(out zapcore.WriteSyncer, level string) (*zlog.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		MessageKey:     "msg",
		NameKey:        "logger",
		StacktraceKey:  "",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	return zlog.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, lvl)), nil
}
