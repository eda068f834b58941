package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/fsm"
)

func oneshot(name, script string) config.Daemon {
	d := shDaemon(name, script)
	d.Oneshot = true
	return d
}

// A daemon that comes `after` a oneshot starts once the oneshot has finished, not once it
// has been spawned; until then health names the oneshot, and its finishing is no death.
func TestOneshotOrdersItsDependentsOnCompletion(t *testing.T) {
	h := newHarness(t)
	app := fake(t, h, "app", time.Second)
	app.After = []string{"setup"}
	h.run([]config.Daemon{oneshot("setup", "sleep 0.3"), app}, nil)
	h.waitState("setup", string(fsm.DaemonStarting))
	if resp := h.call("health", ""); resp.OK || !strings.Contains(resp.Error, "setup (starting)") {
		t.Errorf("health while setup runs = %+v, want not ready naming setup", resp)
	}
	h.waitLog("app", fsm.DaemonRunning)
	exits, spawns := h.logIndexes("setup", "exit"), h.logIndexes("app", "spawn")
	if len(exits) != 1 || len(spawns) != 1 || spawns[0] < exits[0] {
		t.Fatalf("app was spawned before setup finished:\n%s", h.dumpLogs())
	}
	if fields, _, _ := h.transition("setup", "exit"); fields["reason"] != "oneshot finished" {
		t.Errorf("setup's exit = %v, want reason \"oneshot finished\"", fields)
	}
	if resp := h.call("health", ""); !resp.OK {
		t.Errorf("health once setup finished = %+v, want ready", resp)
	}
	if _, _, died := h.transition("supervisor", "daemon_died"); died {
		t.Errorf("a oneshot that finished counted as a death:\n%s", h.dumpLogs())
	}
	// What status and the supervise endpoint see tells the success from a death.
	if st := h.waitState("setup", string(fsm.DaemonExited)); st.LastExit != "finished (status 0)" {
		t.Errorf("setup's last exit = %q, want \"finished (status 0)\"", st.LastExit)
	}
	finished := false
	for _, ev := range h.events.all() {
		finished = finished || (ev.Daemon == "setup" && ev.Event == "exit" && ev.Reason == "oneshot finished")
	}
	if !finished {
		t.Errorf("no notification of setup's exit with reason \"oneshot finished\": %+v", h.events.all())
	}
	h.stopAndWant(0)
}

// A reverse-order shutdown looks through a oneshot that finished: in db ← setup ← app, db
// is stopped only once app is gone.
func TestReverseStopLooksThroughAFinishedOneshot(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	db := fake(t, h, "db", 2*time.Second)
	setup := oneshot("setup", "exit 0")
	setup.After = []string{"db"}
	app := fake(t, h, "app", 2*time.Second)
	app.After = []string{"setup"}
	h.run([]config.Daemon{db, setup, app}, nil)
	h.waitLog("app", fsm.DaemonRunning)
	h.waitRecord("db started", "app started")
	h.stopAndWant(0)
	appDied, dbStop := h.logIndexes("app", "died"), h.logIndexes("db", "stop")
	if len(appDied) != 1 || len(dbStop) != 1 || dbStop[0] < appDied[0] {
		t.Fatalf("db was stopped before app, which comes after it through setup, was gone:\n%s", h.dumpLogs())
	}
}

// A oneshot that finished and was then held by an operator's stop still did its work: a
// dependent's restart does not wait for it.
func TestHeldFinishedOneshotHoldsNoRestartBack(t *testing.T) {
	h := newHarness(t)
	app := restarting(t, h, "app", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 0, "-exit-after", "150ms", "-code", "1")
	app.After = []string{"setup"}
	h.run([]config.Daemon{oneshot("setup", "exit 0"), app}, nil)
	h.waitLog("setup", fsm.DaemonExited)
	if resp := h.call("stop", "setup"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	h.waitTransitions("app", "spawn", 3)
	h.stopAndWant(1)
}

// The same for a plain task, or a daemon that gave up, held after it ended: the README's
// way to keep health good after a task that exits. The hold takes back nothing, so its
// dependents' restarts must not wait for it (a review found them waiting for good).
func TestHeldEndedDaemonHoldsNoRestartBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup config.Daemon
		ended fsm.State
		code  int // the first failure's status
	}{
		{"exited", shDaemon("setup", "exit 0"), fsm.DaemonExited, 1},
		{"given up", func() config.Daemon {
			d := shDaemon("setup", "exit 5")
			d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
			d.MaxRestarts = 1
			return d
		}(), fsm.DaemonGivenUp, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			app := restarting(t, h, "app", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 0, "-exit-after", "300ms", "-code", "1")
			app.After = []string{"setup"}
			h.run([]config.Daemon{tc.setup, app}, nil)
			h.waitLog("setup", tc.ended)
			if resp := h.call("stop", "setup"); !resp.OK {
				t.Fatalf("stop: %+v", resp)
			}
			h.waitTransitions("app", "spawn", 3)
			h.stopAndWant(tc.code)
		})
	}
}

// Under the tear-down crash policy a oneshot that finished takes nothing down.
func TestOneshotFinishingIsNoCrash(t *testing.T) {
	h := newHarness(t)
	table := fsm.TearDownOnCrash()
	h.run([]config.Daemon{oneshot("setup", "exit 0"), fake(t, h, "app", time.Second)}, &table)
	h.waitLog("setup", fsm.DaemonExited)
	h.waitLog("app", fsm.DaemonRunning)
	if resp := h.call("health", ""); !resp.OK {
		t.Fatalf("health = %+v, want ready", resp)
	}
	if h.hasTransition("supervisor", fsm.SupervisorTerminating) {
		t.Fatalf("a oneshot that finished tore the bundle down:\n%s", h.dumpLogs())
	}
	h.stopAndWant(0)
}

// A oneshot that fails is a death like any other: its dependents are cancelled, and the
// supervisor, with nothing left, exits with its status.
func TestOneshotFailureCancelsItsDependents(t *testing.T) {
	h := newHarness(t)
	app := fake(t, h, "app", time.Second)
	app.After = []string{"setup"}
	h.run([]config.Daemon{oneshot("setup", "exit 3"), app}, nil)
	if code := h.exitCode(); code != 3 {
		t.Fatalf("exit code %d, want setup's 3:\n%s", code, h.dumpLogs())
	}
	if _, _, ok := h.transition("app", "cancel"); !ok {
		t.Errorf("app was not cancelled:\n%s", h.dumpLogs())
	}

	if _, _, ok := h.transition("app", "spawn"); ok {
		t.Errorf("app was spawned after its oneshot failed:\n%s", h.dumpLogs())
	}
}

// Under restart = "on-failure" a oneshot is retried until it succeeds, and its dependents
// wait for the success.
func TestOneshotRetriedUntilItSucceeds(t *testing.T) {
	h := newHarness(t)
	marker := filepath.Join(t.TempDir(), "tried")
	setup := oneshot("setup", "if [ -e "+marker+" ]; then exit 0; fi; : >"+marker+"; exit 1")
	setup.Restart, setup.BackoffInitial, setup.BackoffMax, setup.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
	app := fake(t, h, "app", time.Second)
	app.After = []string{"setup"}
	h.run([]config.Daemon{setup, app}, nil)
	h.waitLog("app", fsm.DaemonRunning)
	if n := len(h.transitions("setup", "spawn")); n != 2 {
		t.Errorf("setup spawned %d times, want 2 (a failure, then the success):\n%s", n, h.dumpLogs())
	}
	exits, spawns := h.logIndexes("setup", "exit"), h.logIndexes("app", "spawn")
	if len(exits) != 1 || len(spawns) != 1 || spawns[0] < exits[0] {
		t.Fatalf("app was not spawned after setup succeeded:\n%s", h.dumpLogs())
	}
	// The failure is what a stop signal surfaces, as for any daemon that died on its own.
	h.stopAndWant(1)
}

// A table of oneshots only: the supervisor exits 0 once the last has finished, straight
// from running (nothing died).
func TestEveryOneshotFinishedEndsTheLoop(t *testing.T) {
	h := newHarness(t)
	second := oneshot("second", "exit 0")
	second.After = []string{"first"}
	h.run([]config.Daemon{oneshot("first", "sleep 0.1"), second}, nil)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, h.dumpLogs())
	}
	fields, _, ok := h.transition("supervisor", "all_died")
	if !ok || fields["from"] != string(fsm.SupervisorRunning) {
		t.Fatalf("all_died = %v, want from running:\n%s", fields, h.dumpLogs())
	}
}

// ready_timeout bounds a oneshot's run: one still running then is SIGKILLed, a failure.
func TestOneshotReadyTimeoutBoundsItsRun(t *testing.T) {
	h := newHarness(t)
	setup := oneshot("setup", "sleep 30")
	setup.ReadyTimeout = 200 * time.Millisecond
	h.run([]config.Daemon{setup}, nil)
	if code := h.exitCode(); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit code %d, want %d (SIGKILL):\n%s", code, 128+int(syscall.SIGKILL), h.dumpLogs())
	}
	if len(h.logs.FilterMessageSnippet("oneshot not finished within ready_timeout").All()) != 1 {
		t.Errorf("no log line for the timeout:\n%s", h.dumpLogs())
	}
}

// An operator's start runs a finished oneshot again; its health is not ready until it has
// finished once more.
func TestOperatorStartRunsAOneshotAgain(t *testing.T) {
	h := newHarness(t)
	marker := filepath.Join(t.TempDir(), "runs")
	h.run([]config.Daemon{oneshot("setup", "echo run >>"+marker+"; sleep 0.2"), fake(t, h, "app", time.Second)}, nil)
	h.waitLog("setup", fsm.DaemonExited)
	if resp := h.call("start", "setup"); !resp.OK {
		t.Fatalf("start: %+v", resp)
	}
	if resp := h.call("health", ""); resp.OK {
		t.Errorf("health while setup runs again = %+v, want not ready", resp)
	}
	h.waitTransitions("setup", "exit", 2)
	if resp := h.call("health", ""); !resp.OK {
		t.Errorf("health once setup finished again = %+v, want ready", resp)
	}
	h.stopAndWant(0)
}

// status tells a daemon cancelled because an `after` daemon is done for good from one that
// ran and exited: a review found both shown as exited with an empty LAST EXIT.
func TestStatusSaysWhyADaemonWasCancelled(t *testing.T) {
	h := newHarness(t)
	app := fake(t, h, "app", time.Second)
	app.After = []string{"setup"}
	fixed := filepath.Join(t.TempDir(), "fixed")
	h.run([]config.Daemon{oneshot("setup", "test -e "+fixed), app, fake(t, h, "svc", time.Second)}, nil)
	if st := h.waitState("app", string(fsm.DaemonExited)); st.LastExit != "cancelled (setup exited)" {
		t.Errorf("app's last exit = %q, want \"cancelled (setup exited)\"", st.LastExit)
	}
	// Revived by a start of setup, app runs, and never exited: no LAST EXIT (a review saw
	// the cancellation still shown beside a running daemon).
	if err := os.WriteFile(fixed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if resp := h.call("start", "setup"); !resp.OK {
		t.Fatalf("start setup: %+v", resp)
	}
	if st := h.waitState("app", string(fsm.DaemonRunning)); st.LastExit != "" {
		t.Errorf("app runs after its revival, with last exit %q; want none", st.LastExit)
	}
	h.stopAndWant(1)
}

// A oneshot that finished as its ready_timeout came, its SIGCHLD in but not handled yet
// (the loop's select took the timer first) or not even in its channel yet (os/signal
// forwards it from a goroutine of its own), finished: it is reaped, not killed as late.
func TestOneshotDoneAtItsTimeoutIsNotKilled(t *testing.T) {
	for _, sigchldIn := range []bool{true, false} {
		t.Run(map[bool]string{true: "SIGCHLD in", false: "SIGCHLD on its way"}[sigchldIn], func(t *testing.T) {
			s, d, logs := livingDaemon(t, config.Daemon{Name: "setup", Command: []string{"/bin/true"}, Oneshot: true, ReadyTimeout: time.Hour})
			child := make(chan os.Signal, 1)
			s.opts.Signals.Child = child
			s.spawn(d, time.Now())
			waitReapable(t, d.pid)
			if sigchldIn {
				child <- syscall.SIGCHLD
			}
			s.onTimer(d.readyDeadline)
			if n := logs.FilterMessage("oneshot not finished within ready_timeout: killing it; its restart policy decides what follows").Len(); n != 0 {
				t.Fatalf("the oneshot that had finished was killed as late:\n%v", logs.All())
			}
			if !d.finished {
				t.Fatalf("state %s, not finished", d.machine.Current())
			}
		})
	}
}

// A oneshot's run is its work: one that ran past backoff_reset before it failed was up,
// and opens a fresh window, so a long task that keeps failing is not given up at
// max_restarts as a crash loop would be.
func TestLongFailingOneshotOpensAFreshWindow(t *testing.T) {
	h := newHarness(t)
	task := oneshot("migrate", "sleep 0.3; exit 1")
	task.Restart, task.BackoffInitial, task.BackoffMax = fsm.RestartOnFailure, 10*time.Millisecond, time.Second
	task.BackoffReset, task.MaxRestarts = 100*time.Millisecond, 1
	h.run([]config.Daemon{task}, nil)
	h.waitTransitions("migrate", "spawn", 3)
	if h.hasTransition("migrate", fsm.DaemonGivenUp) {
		t.Fatalf("a oneshot that ran past backoff_reset was given up:\n%s", h.dumpLogs())
	}
	h.stopAndWant(1)
}
