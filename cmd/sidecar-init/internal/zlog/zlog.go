// Package zlog is the supervisor's structured logger: zap's core (zapcore: entries, levels,
// the JSON encoder, checked entries) behind a small Logger, with the field constructors the
// supervisor uses.
//
// Why not zap.Logger itself: package zap imports net/http (for AtomicLevel.ServeHTTP), and
// every package a Go program links runs its init at start-up, used or not. Linking package
// zap pulled net/http, crypto/tls, crypto/x509 and their FIPS self-tests into a PID 1 that
// speaks no HTTP: 1.7 MB of binary, about 1.5 MB of resident memory, and about 0.25 ms
// before main (measured side by side in docs/benchmarks.md and the commit that made this
// package). The log lines are byte for byte what zap.Logger wrote with the same core.
package zlog

import (
	"time"

	"go.uber.org/zap/zapcore"
)

// Field is zap's field type: a key and a typed value the encoder writes without reflection.
type Field = zapcore.Field

// Logger writes entries to one zapcore.Core. A nil core is not allowed; use Nop.
type Logger struct {
	core zapcore.Core
}

// New wraps a core (the JSON core in production, an observer in tests).
func New(core zapcore.Core) *Logger { return &Logger{core: core} }

// Nop discards everything.
func Nop() *Logger { return New(zapcore.NewNopCore()) }

// Core is the logger's core.
func (l *Logger) Core() zapcore.Core { return l.core }

// Check returns a CheckedEntry when lvl is enabled, nil otherwise: the way to skip building
// fields that would be thrown away (ce.Write(fields...) writes them).
func (l *Logger) Check(lvl zapcore.Level, msg string) *zapcore.CheckedEntry {
	// Level first, as zap.Logger does: a disabled level must not cost a clock read (the
	// reap loop asks for a debug line for each of thousands of orphans).
	if !l.core.Enabled(lvl) {
		return nil
	}
	return l.core.Check(zapcore.Entry{Level: lvl, Time: time.Now(), Message: msg}, nil)
}

// Debug, Info, Warn and Error write msg with fields at their level, when it is enabled.
func (l *Logger) Debug(msg string, fields ...Field) { l.write(zapcore.DebugLevel, msg, fields) }
func (l *Logger) Info(msg string, fields ...Field)  { l.write(zapcore.InfoLevel, msg, fields) }
func (l *Logger) Warn(msg string, fields ...Field)  { l.write(zapcore.WarnLevel, msg, fields) }
func (l *Logger) Error(msg string, fields ...Field) { l.write(zapcore.ErrorLevel, msg, fields) }

func (l *Logger) write(lvl zapcore.Level, msg string, fields []Field) {
	if ce := l.Check(lvl, msg); ce != nil {
		ce.Write(fields...)
	}
}

// String, Int, Uint64, Bool and Duration are typed fields, encoded as zap encodes them.
func String(key, value string) Field { return Field{Key: key, Type: zapcore.StringType, String: value} }
func Int(key string, value int) Field {
	return Field{Key: key, Type: zapcore.Int64Type, Integer: int64(value)}
}
func Uint64(key string, value uint64) Field {
	return Field{Key: key, Type: zapcore.Uint64Type, Integer: int64(value)}
}
func Bool(key string, value bool) Field {
	var i int64
	if value {
		i = 1
	}
	return Field{Key: key, Type: zapcore.BoolType, Integer: i}
}
func Duration(key string, value time.Duration) Field {
	return Field{Key: key, Type: zapcore.DurationType, Integer: int64(value)}
}

// Error is the "error" field; a nil error adds nothing.
func Error(err error) Field {
	if err == nil {
		return Field{Type: zapcore.SkipType}
	}
	return Field{Key: "error", Type: zapcore.ErrorType, Interface: err}
}

// Strings and Ints are JSON arrays.
func Strings(key string, values []string) Field {
	return Field{Key: key, Type: zapcore.ArrayMarshalerType, Interface: stringArray(values)}
}
func Ints(key string, values []int) Field {
	return Field{Key: key, Type: zapcore.ArrayMarshalerType, Interface: intArray(values)}
}

type stringArray []string

func (a stringArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, s := range a {
		enc.AppendString(s)
	}
	return nil
}

type intArray []int

func (a intArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, i := range a {
		enc.AppendInt(i)
	}
	return nil
}
