package supervisor

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
)

// The daemon holds a FIFO open; its liveness probe reads it, so the probe fails (exit 1)
// tens of microseconds after the daemon exits 0 of its own: both zombies in one reap
// batch, and whenever the probe was forked on the reaping thread it comes first. The
// daemon's own exit 0 must stay an exit 0 (README: "A failed attempt on a daemon that has
// already exited (its death not handled yet) is not counted: its reap decides").
func TestOwnExitIsNotALivenessFailureE2E(t *testing.T) {
	bad := 0
	const runs = 20
	for i := 0; i < runs; i++ {
		h := newHarness(t)
		fifo := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		d := shDaemon("svc", "exec 3<>"+fifo+"; sleep 0.3 3>&-; exit 0")
		d.Liveness = config.Probe{Exec: []string{"/bin/sh", "-c", "cat " + fifo + "; exit 1"}}
		d.LivenessInterval, d.LivenessTimeout, d.LivenessFailures = 100*time.Millisecond, 5*time.Second, 1
		h.run([]config.Daemon{d}, nil)
		if code := h.exitCode(); code != 0 {
			bad++
			if bad == 1 {
				t.Logf("run %d: exit %d\n%s", i, code, h.dumpLogs())
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs: a daemon's own exit 0 was taken for a liveness failure (exit 143)", bad, runs)
	}
}
