package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// README: a daemon "that exits before a probe attempt passes (even with status 0, even just
// after creating its ready file) is done for good, and the daemons after it that have not
// started yet are cancelled". onTimer reaps before it starts an attempt, but an exit that
// lands between that reap and the attempt's stat (or an exec probe's test, whose reap can
// come in the same wait4 batch as the daemon's, first) gives a pass for a daemon that has
// already exited. onProbeResult did not look, so the daemon was made ready, and before its
// SIGCHLD was handled settle wrote the ready file and the loop spawned its dependents.
func TestProbePassOnAnExitedDaemon(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close() }()
	dep := shDaemon("dep", "sleep 0.1; touch "+ready+"; exit 0") // creates its file, then exits
	dep.Ready, dep.ReadyTimeout, dep.Restart = config.Probe{File: ready}, time.Hour, fsm.RestartNever
	app := shDaemon("app", "exec tail -f /dev/null")
	app.After = []string{"dep"}
	core, _ := observer.New(zapcore.DebugLevel)
	s := New(Options{Log: zlog.New(core), Daemons: []config.Daemon{dep, app}, Stdin: stdin})
	d := s.daemons[0]
	s.spawn(d, time.Now()) // its first attempt, at once: the file is not there yet
	s.onProbeResult(<-s.probeResults, time.Now())
	if d.machine.Current() != fsm.DaemonStarting {
		t.Fatalf("dep is %s after its first attempt", d.machine.Current())
	}
	// The daemon exits just after onTimer's reap, before the attempt's stat.
	waitReapable(t, d.pid)
	s.probe(d, time.Now())
	s.onProbeResult(<-s.probeResults, time.Now())
	defer s.reap()
	if d.machine.Current() == fsm.DaemonRunning {
		next := "none"
		if n := s.nextToStart(); n != nil {
			next = n.cfg.Name
		}
		t.Fatalf("dep, already exited (pid %d a zombie), was made ready by a probe that ran after its exit; "+
			"the loop would now spawn %q after it", d.pid, next)
	}
}
