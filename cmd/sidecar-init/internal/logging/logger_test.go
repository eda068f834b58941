package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// Only the four levels the README names: zap also parses dpanic, panic and fatal, and at
// any of them the supervisor's exit line (at error, "there at every --log-level") and every
// crash line would be silenced.
func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		level string
		ok    bool
	}{
		{"debug", true}, {"info", true}, {"warn", true}, {"error", true},
		{"WARN", true}, {"Error", true},
		{"warning", false}, {"dpanic", false}, {"panic", false}, {"fatal", false},
		{"DPANIC", false}, {"", false}, {"loud", false},
	} {
		_, err := New(zapcore.AddSync(&bytes.Buffer{}), tc.level)
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) = %v, want ok %v", tc.level, err, tc.ok)
		}
	}
}

// ts is in UTC, as the daemons' JSON lines and the drop report are, whatever TZ says: one
// log, one time zone.
func TestTimestampsAreUTC(t *testing.T) {
	t.Setenv("TZ", "Asia/Kolkata")
	saved := time.Local
	defer func() { time.Local = saved }()
	time.Local = time.FixedZone("IST", 5*3600+1800)
	var out bytes.Buffer
	log, err := New(zapcore.AddSync(&out), "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", zlog.String("k", "v"))
	var line struct{ TS string }
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	ts, err := time.Parse(time.RFC3339Nano, line.TS)
	if err != nil || !strings.HasSuffix(line.TS, "Z") {
		t.Fatalf("ts %q (%v), want RFC 3339 in UTC (ending in Z)", line.TS, err)
	}
	if d := time.Since(ts); d < 0 || d > time.Minute {
		t.Errorf("ts %q is %v from now", line.TS, d)
	}
}
