package zlog

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// jsonCore is the production encoder without the time key, so that lines written a moment
// apart compare equal.
func jsonCore(buf *bytes.Buffer, lvl zapcore.Level) zapcore.Core {
	enc := zapcore.EncoderConfig{
		LevelKey: "level", MessageKey: "msg", LineEnding: zapcore.DefaultLineEnding,
		EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
	}
	return zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(buf), lvl)
}

// Each field must be written byte for byte as zap.Logger writes zap's own field.
func TestFieldsEncodeAsZapDoes(t *testing.T) {
	err := errors.New("connect: connection refused")
	cases := []struct {
		name string
		ours Field
		zaps zap.Field
	}{
		{"string", String("daemon", "egress"), zap.String("daemon", "egress")},
		{"string needing escapes", String("line", "a\"b\\c\n\x00ü"), zap.String("line", "a\"b\\c\n\x00ü")},
		{"int", Int("pid", 4242), zap.Int("pid", 4242)},
		{"negative int", Int("exit_code", -1), zap.Int("exit_code", -1)},
		{"uint64", Uint64("dropped", 1<<63), zap.Uint64("dropped", 1<<63)},
		{"bool true", Bool("pid1", true), zap.Bool("pid1", true)},
		{"bool false", Bool("pid1", false), zap.Bool("pid1", false)},
		{"duration", Duration("grace", 8*time.Second), zap.Duration("grace", 8*time.Second)},
		{"error", Error(err), zap.Error(err)},
		{"nil error", Error(nil), zap.Error(nil)},
		{"strings", Strings("daemons", []string{"egress", "pipelock"}), zap.Strings("daemons", []string{"egress", "pipelock"})},
		{"no strings", Strings("daemons", nil), zap.Strings("daemons", nil)},
		{"ints", Ints("pids", []int{7, 8}), zap.Ints("pids", []int{7, 8})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ours, zaps bytes.Buffer
			New(jsonCore(&ours, zapcore.DebugLevel)).Info("transition", tc.ours)
			zap.New(jsonCore(&zaps, zapcore.DebugLevel)).Info("transition", tc.zaps)
			if ours.String() != zaps.String() {
				t.Errorf("zlog wrote %q\nzap  wrote %q", ours.String(), zaps.String())
			}
		})
	}
}

func TestLevelsAndCheck(t *testing.T) {
	var buf bytes.Buffer
	log := New(jsonCore(&buf, zapcore.WarnLevel))
	log.Debug("d")
	log.Info("i")
	if buf.Len() != 0 {
		t.Fatalf("below warn was written: %q", buf.String())
	}
	if ce := log.Check(zapcore.InfoLevel, "skipped"); ce != nil {
		t.Fatal("Check returned an entry for a disabled level")
	}
	log.Warn("w")
	log.Error("e")
	if ce := log.Check(zapcore.ErrorLevel, "checked"); ce != nil {
		ce.Write(String("k", "v"))
	} else {
		t.Fatal("Check returned nil for an enabled level")
	}
	want := `{"level":"warn","msg":"w"}` + "\n" + `{"level":"error","msg":"e"}` + "\n" + `{"level":"error","msg":"checked","k":"v"}` + "\n"
	if buf.String() != want {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
	Nop().Error("nothing") // must not panic
}

// BenchmarkTransitionLine is the cost of one "transition" line as the supervisor logs it.
func BenchmarkTransitionLine(b *testing.B) {
	log := New(jsonCore(&bytes.Buffer{}, zapcore.InfoLevel))
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zapcore.InfoLevel, "transition"); ce != nil {
			ce.Write(String("machine", "egress"), String("event", "exit"), String("from", "running"),
				String("to", "exited"), Int("pid", 4242), Int("exit_code", 0))
		}
	}
}

// BenchmarkDisabledCheck is the cost of asking for a line at a disabled level: the reap
// loop does it once per orphan.
func BenchmarkDisabledCheck(b *testing.B) {
	log := New(jsonCore(&bytes.Buffer{}, zapcore.WarnLevel))
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zapcore.DebugLevel, "reaped orphan"); ce != nil {
			b.Fatal("debug enabled at warn")
		}
	}
}
