package supervisor

import (
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// logIndexes lists the positions of every logged transition of machine with event.
func (h *harness) logIndexes(machine, event string) []int {
	var out []int
	for i, e := range h.logs.FilterMessage("transition").All() {
		if m := e.ContextMap(); m["machine"] == machine && m["event"] == event {
			out = append(out, i)
		}
	}
	return out
}

// A restart waits for the daemons the daemon comes `after`, as its first start did: a
// dependent restarting ahead of its restarting dependency would fail again and spend its
// max_restarts while the dependency comes back.
func TestRestartWaitsForItsAfterDaemons(t *testing.T) {
	h := newHarness(t)
	db := restarting(t, h, "db", fsm.RestartOnFailure, 300*time.Millisecond, time.Hour, 0)
	app := restarting(t, h, "app", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 2)
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app}, nil)
	rec := h.waitRecord("db started", "app started")
	h.waitLog("app", fsm.DaemonRunning)
	for _, name := range []string{"db", "app"} {
		if err := syscall.Kill(pidOf(t, rec, name), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	h.waitTransitions("app", "spawn", 2)
	readies, spawns := h.logIndexes("db", "ready"), h.logIndexes("app", "spawn")
	if len(readies) < 2 || spawns[1] < readies[1] {
		t.Fatalf("app restarted before db was ready again:\n%s", h.dumpLogs())
	}
	if _, _, gaveUp := h.transition("app", "give_up"); gaveUp {
		t.Fatalf("app was given up:\n%s", h.dumpLogs())
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// A dependency that is done for good (a one-shot that finished) holds no restart back:
// the dependent restarts by its own policy, and is not cancelled.
func TestRestartAfterAOneShotDependency(t *testing.T) {
	h := newHarness(t)
	migrate := shDaemon("migrate", "exit 0")
	app := restarting(t, h, "app", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 2, "-exit-after", "100ms", "-code", "1")
	app.After = []string{"migrate"}
	h.run([]config.Daemon{migrate, app}, nil)
	if code := h.exitCode(); code != 1 {
		t.Fatalf("exit code %d, want app's 1", code)
	}
	if n := len(h.transitions("app", "spawn")); n != 3 {
		t.Errorf("app spawned %d times, want 1 + max_restarts 2:\n%s", n, h.dumpLogs())
	}
	if _, _, ok := h.transition("app", "give_up"); !ok {
		t.Errorf("app was not given up by its own policy:\n%s", h.dumpLogs())
	}
}

// An operator's restart of a daemon whose dependency is done for good restarts it: it is
// neither cancelled nor, with it, the whole supervisor.
func TestOperatorRestartWithADoneDependency(t *testing.T) {
	h := newHarness(t)
	app := fake(t, h, "app", time.Second)
	app.After = []string{"migrate"}
	h.run([]config.Daemon{shDaemon("migrate", "exit 0"), app}, nil)
	h.waitLog("migrate", fsm.DaemonExited)
	h.waitLog("app", fsm.DaemonRunning)
	if resp := h.call("restart", "app"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions("app", "spawn")) < 2 {
		select {
		case code := <-h.done:
			t.Fatalf("the supervisor exited (%d) after an operator's restart:\n%s", code, h.dumpLogs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("app was not started again:\n%s", h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.waitState("app", "running")
	h.stopAndWant(0)
}

// A start whose exec fails is refused: the operator sees the failure, not "started".
func TestOperatorStartReportsAnExecFailure(t *testing.T) {
	h := newHarness(t)
	script := filepath.Join(t.TempDir(), "svc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec tail -f /dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.run([]config.Daemon{shDaemon("other", "exec tail -f /dev/null"), {Name: "svc", Command: []string{script}, Grace: time.Second}}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	if resp := h.call("stop", "svc"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	h.waitState("svc", "stopped")
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	resp := h.call("start", "svc")
	if resp.OK || !strings.Contains(resp.Error, "could not start: exec failed (127)") {
		t.Fatalf("start with the command gone = %+v, want a refusal naming the exec failure", resp)
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// An operator's stop or restart of a daemon that already crashed (its SIGCHLD not yet
// handled) sees the crash first: its status is the supervisor's exit status, as when a
// stop signal follows a crash.
func TestOperatorCallAfterACrashKeepsItsStatus(t *testing.T) {
	for _, cmd := range []string{"stop", "restart"} {
		t.Run(cmd, func(t *testing.T) {
			h := newHarness(t)
			h.holdSIGCHLD = true
			h.run([]config.Daemon{
				fake(t, h, "crasher", time.Second, "-exit-after", "50ms", "-code", "7"),
				fake(t, h, "survivor", time.Second),
			}, nil)
			waitReapable(t, pidOf(t, h.waitRecord("crasher exit 7", "survivor started"), "crasher"))
			h.call(cmd, "crasher")
			signal.Notify(h.child, syscall.SIGCHLD)
			h.child <- syscall.SIGCHLD
			h.stop <- syscall.SIGTERM
			if code := h.exitCode(); code != 7 {
				t.Fatalf("exit code %d, want the crash's 7\n%s", code, h.dumpLogs())
			}
		})
	}
}

// logPos is the position, among all logged lines, of the first line with msg whose fields
// include every one of want (-1 if none).
func (h *harness) logPos(msg string, want map[string]any) int {
	for i, e := range h.logs.All() {
		if e.Message != msg {
			continue
		}
		m, ok := e.ContextMap(), true
		for k, v := range want {
			ok = ok && m[k] == v
		}
		if ok {
			return i
		}
	}
	return -1
}

// stop_order = "reverse" stops a dependency once its dependents are gone, and a dependent
// is gone only when its process group is: a grandchild that outlives the dependent's
// leader still counts.
func TestReverseOrderWaitsForTheDependentsGroup(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	worker := fake(t, h, "worker", 300*time.Millisecond, "-grandchild")
	worker.After = []string{"dep"}
	h.run([]config.Daemon{fake(t, h, "dep", 2*time.Second), worker}, nil)
	h.waitRecord("dep started", "worker.grandchild started")
	h.waitLog("worker", fsm.DaemonRunning)
	h.stopAndWant(0)
	killed := h.logPos("killed processes left in an exited daemon's process group", map[string]any{"daemon": "worker"})
	stop := h.logPos("transition", map[string]any{"machine": "dep", "event": "stop"})
	if killed < 0 || stop < killed {
		t.Fatalf("dep was stopped (line %d) while worker's group still ran (killed at line %d):\n%s", stop, killed, h.dumpLogs())
	}
}

// The leftovers of a daemon that died during a reverse-order shutdown are SIGKILLed by the
// shutdown's one deadline, the largest grace, not a full grace after that death.
func TestReverseOrderDeadlineBoundsLeftovers(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	dep := fake(t, h, "dep", time.Second, "-grandchild", "-exit-after", "800ms")
	app := fake(t, h, "app", time.Second, "-ignore-stop")
	app.After = []string{"dep"}
	h.run([]config.Daemon{dep, app}, nil)
	h.waitRecord("dep.grandchild started", "app started")
	h.stop <- syscall.SIGTERM
	h.exitCode()
	var stopAt, leftoverKill time.Time
	for _, e := range h.logs.All() {
		m := e.ContextMap()
		if e.Message == "transition" && m["machine"] == "supervisor" && m["event"] == "stop" {
			stopAt = e.Time
		}
		if e.Message == "killed processes left in an exited daemon's process group" && m["daemon"] == "dep" {
			leftoverKill = e.Time
		}
	}
	// The supervisor's own timestamps of its decisions: a loaded machine does not blur them.
	if took := leftoverKill.Sub(stopAt); stopAt.IsZero() || leftoverKill.IsZero() || took > 1300*time.Millisecond {
		t.Fatalf("dep's leftovers SIGKILLed %v after the stop signal; the shutdown's deadline is 1 s\n%s", took, h.dumpLogs())
	}
}

// statusOf is the daemon's row of the status.
func (h *harness) statusOf(name string) control.DaemonStatus {
	for _, d := range h.call(control.CmdStatus, "").Daemons {
		if d.Name == name {
			return d
		}
	}
	h.t.Fatalf("no %s in the status", name)
	return control.DaemonStatus{}
}

// The status names what a waiting daemon waits for: the `after` daemons not yet ready for
// a first start, and those on their way back for a restart that is due.
func TestStatusNamesTheDaemonsAStartWaitsFor(t *testing.T) {
	h := newHarness(t)
	gateFile := filepath.Join(t.TempDir(), "gate.ready")
	gate := fake(t, h, "gate", time.Second)
	gate.Ready, gate.ReadyTimeout = config.Probe{File: gateFile}, time.Hour
	db := restarting(t, h, "db", fsm.RestartOnFailure, time.Hour, time.Hour, 0)
	app := restarting(t, h, "app", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 0)
	app.After = []string{"gate", "db"}
	h.run([]config.Daemon{gate, db, app}, nil)
	h.waitLog("db", fsm.DaemonRunning)
	if st := h.statusOf("app"); st.State != "pending" || !slices.Equal(st.WaitingFor, []string{"gate"}) {
		t.Fatalf("app before gate is ready: %+v, want pending, waiting for gate", st)
	}
	if err := os.WriteFile(gateFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec := h.waitRecord("app started")
	if st := h.statusOf("app"); len(st.WaitingFor) != 0 {
		t.Fatalf("app running: %+v, want no waiting_for", st)
	}
	// db restarts in an hour; app's restart is due in 10 ms and waits for it.
	for _, name := range []string{"db", "app"} {
		if err := syscall.Kill(pidOf(t, rec, name), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	h.waitLog("app", fsm.DaemonBackoff)
	deadline := time.Now().Add(testTimeout)
	for st := h.statusOf("app"); !slices.Equal(st.WaitingFor, []string{"db"}); st = h.statusOf("app") {
		if time.Now().After(deadline) {
			t.Fatalf("app's due restart: %+v, want waiting for db\n%s", st, h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := h.statusOf("app"); st.State != "backoff" || st.NextRestartIn != "" {
		t.Fatalf("app waiting for db: %+v, want backoff with no next_restart_in", st)
	}
	if st := h.statusOf("db"); len(st.WaitingFor) != 0 || st.NextRestartIn == "" {
		t.Fatalf("db in its own backoff: %+v, want next_restart_in and no waiting_for", st)
	}
	h.stopAndWant(137)
}

// A daemon whose `after` daemon is not selected starts without waiting for it, with a
// warning: it may not work without it (egress without pipelock answers 502) while health
// says ready.
func TestUnselectedDependencyIsWarnedAbout(t *testing.T) {
	h := newHarness(t)
	app := fake(t, h, "app", time.Second)
	app.After = []string{"pipelock"}
	h.run([]config.Daemon{app}, nil)
	h.waitLog("app", fsm.DaemonRunning)
	entries := h.logs.FilterMessage("dependency not selected: starting without waiting for it").All()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel || entries[0].ContextMap()["dependency"] != "pipelock" {
		t.Errorf("want one warning naming pipelock, got %v:\n%s", entries, h.dumpLogs())
	}
	h.stopAndWant(0)
}

// A daemon whose start was cancelled (a oneshot it comes after failed) and that an
// operator then starts, directly or after a stop, never ran before: once it runs, status
// shows no LAST EXIT, not the cancellation that no longer holds.
func TestOperatorStartOfACancelledDaemonClearsItsLastExit(t *testing.T) {
	for _, calls := range [][]string{{"start"}, {"restart"}, {"stop", "start"}} {
		t.Run(strings.Join(calls, " then "), func(t *testing.T) {
			h := newHarness(t)
			app := fake(t, h, "app", time.Second)
			app.After = []string{"setup"}
			h.run([]config.Daemon{oneshot("setup", "exit 3"), app, fake(t, h, "svc", time.Second)}, nil)
			if st := h.waitState("app", string(fsm.DaemonExited)); st.LastExit != "cancelled (setup exited)" {
				t.Fatalf("app's last exit = %q, want \"cancelled (setup exited)\"", st.LastExit)
			}
			for _, call := range calls {
				if resp := h.call(call, "app"); !resp.OK {
					t.Fatalf("%s app: %+v", call, resp)
				}
			}
			if st := h.waitState("app", string(fsm.DaemonRunning)); st.LastExit != "" {
				t.Errorf("app runs after an operator's %v, with last exit %q; want none (it never ran)", calls, st.LastExit)
			}
			h.stopAndWant(3)
		})
	}
}

// stop_order = "reverse": every daemon died on its own and what they left is being stopped,
// app's first, db's once app's are gone. An operator's `stop app` in that window holds a
// daemon, so sidecar-init runs on: db's leftovers, held back, are left alone like any dead
// daemon's (as after an operator's start), not SIGKILLed without a grace when the reverse
// order's deadline passes.
func TestHoldDuringTheLeftoversStopLeavesTheHeldBackAlone(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	db := fake(t, h, "db", time.Second, "-grandchild", "-exit-after", "200ms")
	app := fake(t, h, "app", 300*time.Millisecond, "-grandchild", "-exit-after", "300ms")
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app}, nil)
	h.waitMessage("stopping processes left in an exited daemon's process group") // app's; db's wait
	if resp := h.call("stop", "app"); !resp.OK {
		t.Fatalf("stop app: %+v", resp)
	}
	h.waitMessage("killed processes left in an exited daemon's process group") // app's, at its grace
	time.Sleep(1200 * time.Millisecond)                                        // past the reverse order's deadline (1 s)
	for _, msg := range []string{"stopping processes left in an exited daemon's process group", "killed processes left in an exited daemon's process group"} {
		if h.logPos(msg, map[string]any{"daemon": "db"}) >= 0 {
			t.Fatalf("db's leftovers were stopped or killed while app was held:\n%s", h.dumpLogs())
		}
	}
	h.stopAndWant(0)
	stop := h.logPos("transition", map[string]any{"machine": "supervisor", "event": "stop"})
	if dbStop := h.logPos("stopping processes left in an exited daemon's process group", map[string]any{"daemon": "db"}); dbStop < stop {
		t.Fatalf("db's leftovers: stop signal at line %d, want after the shutdown's (line %d):\n%s", dbStop, stop, h.dumpLogs())
	}
}
