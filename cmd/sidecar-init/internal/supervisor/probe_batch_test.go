package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// reapBatch reaps pids in this order, as one ReapAll batch would hand them to onExits.
// wait4(-1) takes the calling thread's children first (oldest first), then the other
// threads'; the loop forks on whatever thread its goroutine is on, so an exec probe forked
// on the thread that later reaps comes before its daemon forked on another.
func reapBatch(t *testing.T, s *Supervisor, pids ...int) {
	t.Helper()
	s.reaped = s.reaped[:0]
	for _, pid := range pids {
		waitReapable(t, pid)
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		s.reaped = append(s.reaped, procs.Exit{Pid: pid, Status: ws})
	}
	s.onExits(s.reaped)
}

// batchSupervisor is a supervisor whose loop does not run: the test calls its handlers
// itself, in the order it wants. It returns the first daemon.
func batchSupervisor(t *testing.T, daemons ...config.Daemon) (*Supervisor, *daemon, *observer.ObservedLogs) {
	t.Helper()
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	s := New(Options{Log: zlog.New(core), Daemons: daemons, Stdin: stdin})
	return s, s.daemons[0], logs
}

func TestProbeReapedBeforeItsDaemon(t *testing.T) {
	// A liveness exec probe that failed because its daemon exited (status 0) is reaped in
	// the same batch, before the daemon: procs.Exited(d.pid) is false (wait4 took the
	// zombie already), so the failure counts, and at liveness_failures the dead daemon is
	// "stopped as unresponsive": its exit 0 becomes a failure counted 143.
	t.Run("liveness", func(t *testing.T) {
		cfg := shDaemon("svc", "sleep 0.05; exit 0")
		cfg.Liveness = config.Probe{Exec: []string{"/bin/sh", "-c", "sleep 0.3; exit 1"}}
		cfg.LivenessInterval, cfg.LivenessTimeout, cfg.LivenessFailures = time.Hour, time.Hour, 1
		s, d, logs := batchSupervisor(t, cfg)
		s.spawn(d, time.Now()) // no readiness probe: running at once
		if d.machine.Current() != fsm.DaemonRunning {
			t.Fatalf("svc is %s", d.machine.Current())
		}
		s.livenessProbe(d, time.Now())
		var probe int
		for pid := range s.execProbes {
			probe = pid
		}
		reapBatch(t, s, probe, d.pid)
		if n := logs.FilterMessage("liveness probe failed").Len(); n != 0 || s.firstFailure != 0 || d.lastExit.unresponsive {
			t.Fatalf("the daemon's own exit 0 was taken for a liveness failure: %d failures logged, exit status %d, last exit %q\n%v",
				n, s.firstFailure, d.lastExit, logs.All())
		}
	})
	// The same for a readiness exec probe that passed (its daemon wrote its file, then
	// exited): it made the exited daemon ready before its death was handled.
	t.Run("readiness", func(t *testing.T) {
		ready := filepath.Join(t.TempDir(), "ready")
		cfg := shDaemon("svc", "touch "+ready+"; sleep 0.05; exit 0")
		cfg.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "sleep 0.3; test -e " + ready}}
		cfg.ReadyTimeout, cfg.Restart = time.Hour, fsm.RestartNever
		s, d, logs := batchSupervisor(t, cfg)
		s.spawn(d, time.Now())
		var probe int
		for pid := range s.execProbes {
			probe = pid
		}
		reapBatch(t, s, probe, d.pid)
		for _, e := range logs.FilterMessage("transition").All() {
			if m := e.ContextMap(); m["event"] == string(fsm.DaemonReady) {
				t.Fatalf("an exited daemon was made ready by the probe reaped before it: %v", m)
			}
		}
	})
}

// README: a daemon "that exits before a probe attempt passes (even with status 0, even just
// after creating its ready file) is done for good, and the daemons after it that have not
// started yet are cancelled". onTimer reaps before it starts an attempt, but an exit that
// lands between that reap and the attempt's stat (or an exec probe's test, whose reap can
// come in the same wait4 batch as the daemon's, first) gives a pass for a daemon that has
// already exited. onProbeResult did not look, so the daemon was made ready, and before its
// SIGCHLD was handled settle wrote the ready file and the loop spawned its dependents.
func TestProbePassOnAnExitedDaemon(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	dep := shDaemon("dep", "sleep 0.1; touch "+ready+"; exit 0") // creates its file, then exits
	dep.Ready, dep.ReadyTimeout, dep.Restart = config.Probe{File: ready}, time.Hour, fsm.RestartNever
	app := shDaemon("app", "exec tail -f /dev/null")
	app.After = []string{"dep"}
	s, d, _ := batchSupervisor(t, dep, app)
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
