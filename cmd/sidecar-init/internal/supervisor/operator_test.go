package supervisor

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// While an operator's stop or restart is in its grace, the other command is taken, not
// refused: the latest word says what happens once the daemon has died.
func TestOperatorsLatestWordWinsDuringAGrace(t *testing.T) {
	tests := []struct {
		name        string
		first, then string
		want        string // the state once the grace is over
		restarts    int    // RESTARTS then: a start is no restart, as after the daemon stopped
		reason      string // of the start transition
	}{
		{"stop during a restart", "restart", "stop", "stopped", 0, ""},
		{"start during a stop", "stop", "start", "running", 0, "operator start"},
		{"restart during a stop", "stop", "restart", "running", 1, "operator restart"},
		{"start during a restart", "restart", "start", "running", 1, "operator restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			d := shDaemon("svc", "trap '' TERM; while :; do sleep 0.05; done")
			d.Grace = 300 * time.Millisecond
			h.run([]config.Daemon{d, shDaemon("other", "exec sleep 1000")}, nil)
			h.waitLog("svc", fsm.DaemonRunning)
			if resp := h.call(tt.first, "svc"); !resp.OK {
				t.Fatalf("%s: %+v", tt.first, resp)
			}
			if resp := h.call(tt.then, "svc"); !resp.OK {
				t.Fatalf("%s during the %s's grace refused: %+v", tt.then, tt.first, resp)
			}
			h.waitTransitions("svc", "kill", 1)
			st := h.waitState("svc", tt.want)
			if st.State != tt.want || st.Restarts != tt.restarts {
				t.Errorf("after %s then %s: %s with %d restarts, want %s with %d", tt.first, tt.then, st.State, st.Restarts, tt.want, tt.restarts)
			}
			if tt.reason != "" {
				if fields, _, ok := h.transition("svc", "start"); !ok || fields["reason"] != tt.reason {
					t.Errorf("after %s then %s: start transition %v, want reason %q", tt.first, tt.then, fields, tt.reason)
				}
			}
			h.stopAndWant(0)
		})
	}
}

// A stop signal whose handling reaps a daemon an operator's restart had just stopped does
// not spawn a new run only to stop it again.
func TestStopSignalRightAfterARestartSpawnsNothing(t *testing.T) {
	h := newHarness(t)
	h.holdSIGCHLD = true
	h.run([]config.Daemon{shDaemon("svc", "exec sleep 1000")}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	pid := h.statusOf("svc").Pid
	if resp := h.call("restart", "svc"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	waitReapable(t, pid) // dead of the restart's SIGTERM, its SIGCHLD not yet handled
	h.stop <- syscall.SIGTERM
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	h.exitCode()
	if n := len(h.transitions("svc", "spawn")); n != 1 {
		t.Errorf("%d spawns, want 1: the restart's second half ran inside the shutdown\n%s", n, h.dumpLogs())
	}
}

// A daemon cancelled because the daemon it comes after was done for good goes back to
// pending when an operator starts that daemon, and starts once it is ready.
func TestStartOfADependencyRevivesItsCancelledDependents(t *testing.T) {
	h := newHarness(t)
	ok := filepath.Join(t.TempDir(), "ok")
	ready := filepath.Join(t.TempDir(), "db.ready")
	db := shDaemon("db", "rm -f "+ready+"; [ -e "+ok+" ] && touch "+ready+" && exec sleep 1000; exit 4")
	db.Ready, db.ReadyTimeout = config.Probe{File: ready}, 10*time.Second
	app := shDaemon("app", "exec sleep 1000")
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app, shDaemon("other", "exec sleep 1000")}, nil)
	h.waitState("app", "exited")
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if resp := h.call("start", "db"); !resp.OK {
		t.Fatalf("start db: %+v", resp)
	}
	h.waitState("app", "running")
	if resp := h.call("health", ""); !resp.OK {
		t.Errorf("health = %+v once db came back", resp)
	}
	h.stopAndWant(4) // the crash still counts
}

// `stop NAME` on a daemon that died on its own (left alone) also stops what it left in its
// process group: the operator wants it down, processes and all.
func TestStopOfADeadDaemonStopsWhatItLeft(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "worker.pid")
	web := shDaemon("web", "sleep 1000 & echo $! > "+pidFile+"; exit 1")
	web.Grace = 300 * time.Millisecond
	h.run([]config.Daemon{web, shDaemon("other", "exec sleep 1000")}, nil)
	h.waitState("web", "exited")
	worker := readPid(t, pidFile)
	if !alive(worker) {
		t.Fatalf("the worker %d is gone before the stop: nothing to test", worker)
	}
	if resp := h.call("stop", "web"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	deadline := time.Now().Add(testTimeout)
	for alive(worker) && !reapable(worker) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker %d outlived `stop web`:\n%s", worker, h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stopAndWant(1)
}

// An operator's restart counts before its start transition is logged, so the start line
// and the spawn after it carry the same count (the start line used to carry the old one).
func TestOperatorRestartLogsItsCountOnTheStart(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{shDaemon("svc", "exec sleep 1000")}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	for round := 1; round <= 2; round++ {
		if resp := h.call("restart", "svc"); !resp.OK {
			t.Fatalf("restart: %+v", resp)
		}
		h.waitTransitions("svc", "spawn", round+1)
		starts, spawns := h.transitions("svc", "start"), h.transitions("svc", "spawn")
		if len(starts) != round {
			t.Fatalf("round %d: %d start transitions, want %d:\n%s", round, len(starts), round, h.dumpLogs())
		}
		start, spawn := starts[round-1]["restarts"], spawns[round]["restarts"]
		if start != int64(round) || spawn != int64(round) {
			t.Errorf("round %d: restarts %v on the start and %v on the spawn, want %d on both", round, start, spawn, round)
		}
	}
	h.stopAndWant(0)
}

// RESTARTS counts the restarts that happened: not an operator's restart of a daemon that
// never ran (its first start), nor one dropped by a stop before it could spawn (it waited
// for what the last run left to exit).
func TestRestartsCountOnlyRestartsThatHappen(t *testing.T) {
	t.Run("restart of a daemon that never ran", func(t *testing.T) {
		h := newHarness(t)
		db := shDaemon("db", "exec sleep 1000")
		db.Ready, db.ReadyTimeout = config.Probe{File: filepath.Join(t.TempDir(), "never")}, time.Hour
		app := shDaemon("app", "exec sleep 1000")
		app.After = []string{"db"}
		h.run([]config.Daemon{db, app}, nil)
		h.waitLog("db", fsm.DaemonStarting)
		if resp := h.call("restart", "app"); !resp.OK {
			t.Fatalf("restart app: %+v", resp)
		}
		if st := h.waitState("app", "running"); st.Restarts != 0 {
			t.Errorf("app, never run before, shows %d restarts after `restart app`, want 0", st.Restarts)
		}
		h.stopAndWant(0)
	})
	t.Run("restart dropped by a stop while the last run's leftovers exit", func(t *testing.T) {
		h := newHarness(t)
		web := shDaemon("web", "(trap '' TERM; exec sleep 1000) & exit 1")
		web.Grace = time.Hour // the leftover ignores SIGTERM: it outlives both requests
		h.run([]config.Daemon{web, shDaemon("other", "exec sleep 1000")}, nil)
		h.waitState("web", "exited")
		if resp := h.call("restart", "web"); !resp.OK || h.statusOf("web").State != "pending" {
			t.Fatalf("restart web: %+v, state %s: want it pending on its leftover", resp, h.statusOf("web").State)
		}
		if resp := h.call("stop", "web"); !resp.OK {
			t.Fatalf("stop web: %+v", resp)
		}
		if st := h.statusOf("web"); st.State != "stopped" || st.Restarts != 0 {
			t.Errorf("web after restart then stop: %s with %d restarts, want stopped with 0", st.State, st.Restarts)
		}
		// The start line said 1: the log says the count went back.
		dropped := h.logs.FilterMessage("restart dropped before it spawned: not counted").All()
		if len(dropped) != 1 || dropped[0].ContextMap()["restarts"] != int64(0) {
			t.Errorf("log lines on the dropped restart: %v, want one with restarts 0", dropped)
		}
		h.stop <- syscall.SIGTERM
		h.stop <- syscall.SIGTERM // the leftover's grace is an hour: a second one kills it
		if code := h.exitCode(); code != 1 {
			t.Errorf("exit status %d, want web's 1", code)
		}
	})
}

// A transition carries a pid only when a process is in it: it starts (spawn), or was
// there when it came (a death, a stop, a kill, readiness). A hold or a start of a daemon
// without a process used to carry the pid of its dead last run.
func TestTransitionsWithoutAProcessCarryNoPid(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{shDaemon("web", "exit 3"), shDaemon("other", "exec sleep 1000")}, nil)
	h.waitState("web", "exited")
	for _, cmd := range []string{"stop", "start"} {
		if resp := h.call(cmd, "web"); !resp.OK {
			t.Fatalf("%s web: %+v", cmd, resp)
		}
	}
	h.waitTransitions("web", "spawn", 2)
	for _, event := range []string{"hold", "start"} {
		fields, _, ok := h.transition("web", event)
		if !ok {
			t.Fatalf("no %s transition:\n%s", event, h.dumpLogs())
		}
		if pid, has := fields["pid"]; has {
			t.Errorf("%s transition (%v to %v) carries pid %v, the dead run's", event, fields["from"], fields["to"], pid)
		}
	}
	for _, event := range []string{"spawn", "fail"} {
		if fields, _, ok := h.transition("web", event); !ok || fields["pid"] == nil {
			t.Errorf("%s transition %v has no pid", event, fields)
		}
	}
	h.stopAndWant(3)
}

// `signal NAME SIG` sends one signal to one daemon's process group, whatever its
// forward_signals (the operator picked the daemon), during a shutdown too (a SIGQUIT for
// the stack of a daemon that does not stop). A daemon without a process, an unknown
// signal or an unknown daemon get an error.
func TestOperatorSignalsOneDaemon(t *testing.T) {
	h := newHarness(t)
	target := fake(t, h, "target", time.Hour, "-grandchild", "-ignore-stop")
	target.Forward = []syscall.Signal{}
	h.run([]config.Daemon{target, fake(t, h, "other", time.Second), shDaemon("gone", "exit 0")}, nil)
	h.waitRecord("target started", "other started", "target.grandchild started")
	h.waitState("gone", "exited")
	signal := func(name, sig string) control.Response {
		c := control.Call{Request: control.Request{Cmd: control.CmdSignal, Name: name, Signal: sig}, Reply: make(chan control.Response, 1)}
		h.calls <- c
		return <-c.Reply
	}
	if resp := signal("target", "hup"); !resp.OK || !strings.Contains(resp.Message, "SIGHUP sent") {
		t.Fatalf("signal target hup: %+v", resp)
	}
	h.waitRecord("target signal SIGHUP", "target.grandchild signal SIGHUP")
	var logged []string
	for _, e := range h.logs.FilterMessage("control request").All() {
		logged = append(logged, fmt.Sprint(e.ContextMap()["signal"]))
	}
	if len(logged) != 1 || logged[0] != "SIGHUP" {
		t.Errorf("control request lines name the signal %q, want its canonical name [SIGHUP]", logged)
	}
	for _, tc := range []struct{ name, sig, want string }{
		{"gone", "SIGHUP", "no process"},
		{"target", "SIGBOGUS", "unknown signal name"},
		{"nope", "SIGHUP", `unknown daemon "nope"`},
	} {
		if resp := signal(tc.name, tc.sig); resp.OK || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("signal %s %s: %+v, want an error with %q", tc.name, tc.sig, resp, tc.want)
		}
	}
	h.stop <- syscall.SIGTERM
	h.waitRecord("target signal SIGTERM")
	if resp := signal("target", "SIGUSR1"); !resp.OK {
		t.Fatalf("signal during the shutdown: %+v", resp)
	}
	h.waitRecord("target signal SIGUSR1")
	if resp := signal("target", "SIGKILL"); !resp.OK {
		t.Fatalf("SIGKILL during the shutdown: %+v", resp)
	}
	if code := h.exitCode(); code != 0 {
		t.Errorf("exit status %d, want 0: deaths during the shutdown do not count", code)
	}
	if rec := h.recorded(); strings.Contains(rec, "other signal SIGHUP") {
		t.Errorf("the signal reached another daemon:\n%s", rec)
	}
}
