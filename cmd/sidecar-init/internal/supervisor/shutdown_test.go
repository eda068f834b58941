package supervisor

import (
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// reverseChain is a stop_order = "reverse" pair: dep restarts on failure, and app, which
// comes after it, ignores its stop signal, so a shutdown holds dep back for app's grace.
func reverseChain(t *testing.T, h *harness, appGrace time.Duration) {
	h.reverseStop = true
	dep := restarting(t, h, "dep", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 0)
	app := fake(t, h, "app", appGrace, "-ignore-stop")
	app.After = []string{"dep"}
	h.run([]config.Daemon{dep, app}, nil)
	h.waitLog("app", fsm.DaemonRunning)
	h.waitRecord("dep started", "app started")
}

// A daemon that dies on its own during the shutdown is not restarted: here the dependency
// a reverse-order shutdown holds back. Restarted, it would never get its stop signal and
// the supervisor would wait for it for ever.
func TestNoRestartOnceTheShutdownBegan(t *testing.T) {
	h := newHarness(t)
	reverseChain(t, h, 500*time.Millisecond)
	dep := pidOf(t, h.recorded(), "dep")
	h.stop <- syscall.SIGTERM
	h.waitRecord("app signal SIGTERM")
	if err := syscall.Kill(dep, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0: a death after the stop signal does not count", code)
	}
	if spawns := len(h.transitions("dep", "spawn")); spawns != 1 {
		t.Errorf("dep spawned %d times, want once: restarted during the shutdown\n%s", spawns, h.dumpLogs())
	}
	if m, _, ok := h.transition("dep", "cancel"); !ok || m["reason"] != "shutdown" {
		t.Errorf("dep's death during the shutdown did not end in cancel (reason shutdown): %v\n%s", m, h.dumpLogs())
	}
}

// A second stop signal during a reverse-order shutdown stops and kills the daemons still
// held back: expected deaths (stop, kill, died), not failures that restart.
func TestSecondStopSignalKillsWhatReverseOrderHeldBack(t *testing.T) {
	h := newHarness(t)
	reverseChain(t, h, time.Hour)
	h.stop <- syscall.SIGTERM
	h.waitRecord("app signal SIGTERM")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, event := range []string{"stop", "kill", "died"} {
		if _, _, ok := h.transition("dep", event); !ok {
			t.Errorf("dep has no %s transition:\n%s", event, h.dumpLogs())
		}
	}
	if n := len(h.transitions("dep", "fail")) + len(h.transitions("dep", "spawn")) - 1; n != 0 {
		t.Errorf("dep failed or restarted after the second stop signal:\n%s", h.dumpLogs())
	}
}

// What a daemon waiting in backoff left in its process group gets the stop signal and the
// grace like any leftover group, instead of holding the shutdown until it exits by itself.
func TestShutdownStopsWhatABackoffDaemonLeftBehind(t *testing.T) {
	h := newHarness(t)
	d := restarting(t, h, "leader", fsm.RestartOnFailure, time.Hour, time.Hour, 0, "-grandchild", "-exit-after", "100ms", "-code", "3")
	d.Grace = 300 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	rec := h.waitRecord("leader.grandchild started", "leader exit 3")
	h.waitLog("leader", fsm.DaemonBackoff)
	grandchild := pidOf(t, rec, "leader.grandchild")
	h.stop <- syscall.SIGTERM
	// The grandchild ignores its stop signal: only the grace's SIGKILL ends it.
	if code := h.exitCode(); code != 3 {
		t.Fatalf("exit code %d, want the crash's 3", code)
	}
	h.waitRecord("leader.grandchild signal SIGTERM")
	if alive(grandchild) {
		t.Fatalf("grandchild %d outlived the supervisor", grandchild)
	}
}

// With the tear-down crash policy, a crash that is still unreaped when the first stop
// signal arrives begins the shutdown in the signal's own reap. That signal is still the
// first one: the survivor gets its grace, not the SIGKILL of a second stop signal.
func TestTearDownCrashAndOneStopSignalKeepTheGrace(t *testing.T) {
	h := newHarness(t)
	h.holdSIGCHLD = true
	table := fsm.TearDownOnCrash()
	h.run([]config.Daemon{
		fake(t, h, "crasher", time.Second, "-exit-after", "50ms", "-code", "7"),
		fake(t, h, "survivor", time.Hour),
	}, &table)
	rec := h.waitRecord("crasher exit 7", "survivor started")
	crasher := pidOf(t, rec, "crasher")
	for !reapable(crasher) {
		time.Sleep(5 * time.Millisecond)
	}
	h.stop <- syscall.SIGTERM
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	if code := h.exitCode(); code != 7 {
		t.Fatalf("exit code %d, want the crash's 7", code)
	}
	if _, _, forced := h.transition("supervisor", "force"); forced {
		t.Errorf("one stop signal was taken for a second one:\n%s", h.dumpLogs())
	}
	if _, _, killed := h.transition("survivor", "kill"); killed {
		t.Errorf("the survivor was SIGKILLed instead of stopped within its grace:\n%s", h.dumpLogs())
	}
}
