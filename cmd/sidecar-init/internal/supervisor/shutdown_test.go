package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/fakedaemon"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
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
	h.stopAndWant(0)
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
	waitReapable(t, pidOf(t, rec, "crasher"))
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

// pidsOf lists the pids recorded as "NAME started pid=…" in order.
func pidsOf(record, name string) []int {
	var pids []int
	for _, line := range strings.Split(record, "\n") {
		var pid, pgid int
		if _, err := fmt.Sscanf(line, name+" started pid=%d pgid=%d", &pid, &pgid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Each restart gives a daemon a new process group. What an earlier incarnation left in its
// own group is still the daemon's: at shutdown it gets the stop signal and the grace too,
// instead of being forgotten (outside PID 1 it outlived the supervisor).
func TestShutdownStopsWhatEarlierRunsLeftBehind(t *testing.T) {
	h := newHarness(t)
	leader := restarting(t, h, "leader", fsm.RestartOnFailure, 10*time.Millisecond, time.Hour, 1, "-grandchild", "-exit-after", "100ms", "-code", "1")
	leader.Grace = 300 * time.Millisecond
	h.run([]config.Daemon{leader, fake(t, h, "other", time.Second)}, nil)
	h.waitLog("leader", fsm.DaemonGivenUp)
	grandchildren := pidsOf(h.waitRecord("leader.grandchild started"), "leader.grandchild")
	if len(grandchildren) != 2 {
		t.Fatalf("want a grandchild from each of the two runs, got %v", grandchildren)
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 1 {
		t.Fatalf("exit code %d, want the crash's 1", code)
	}
	if n := strings.Count(h.recorded(), "leader.grandchild signal SIGTERM\n"); n != 2 {
		t.Errorf("%d of the 2 grandchildren got the stop signal:\n%s", n, h.recorded())
	}
	for _, pid := range grandchildren {
		if alive(pid) {
			t.Errorf("grandchild %d outlived the supervisor", pid)
		}
	}
}

// An operator's restart spawns the new run only once the old run's group is empty: its
// grandchild, which ignores the stop signal, is SIGKILLed at the grace first. A new run
// beside the old one's leftovers would meet them on its ports and locks, and its readiness
// probe could pass on the old run's listener.
func TestRestartWaitsForTheOldGroup(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "svc", 300*time.Millisecond, "-grandchild")}, nil)
	rec := h.waitRecord("svc started", "svc.grandchild started")
	oldGrandchild := pidOf(t, rec, "svc.grandchild")
	if resp := h.call("restart", "svc"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	h.waitTransitions("svc", "spawn", 2)
	if alive(oldGrandchild) && !reapable(oldGrandchild) {
		t.Fatalf("the new run was spawned while the old run's grandchild %d still runs:\n%s", oldGrandchild, h.dumpLogs())
	}
	if n := len(h.logs.FilterMessage("killed processes left in an exited daemon's process group").All()); n != 1 {
		t.Errorf("the old group was SIGKILLed %d times at its grace, want 1:\n%s", n, h.dumpLogs())
	}
	st := h.waitState("svc", "running")
	if st.Restarts != 1 || !alive(st.Pid) || len(h.transitions("svc", "fail")) != 0 {
		t.Fatalf("the new incarnation did not survive: %+v\n%s", st, h.dumpLogs())
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// groupEmptiedElsewhere is a process P that starts in a daemon's group, forks G there,
// then leaves with setsid: G's parent is outside the group, so when G dies (of the grace's
// SIGKILL, after every other event of the shutdown) the group empties without a reap of
// the supervisor's (P waits for G), or keeps a zombie for good (P never waits).
const groupEmptiedElsewhere = `
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the grace's SIGKILL ends it
    time.sleep(1000)
    os._exit(0)
os.setsid()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
if sys.argv[2] == "wait":
    os.waitpid(pid, 0)
time.sleep(1000)
`

// pythonScript writes source to a script in a fresh directory and returns python3's path,
// the script and that directory. Without python3 the test is skipped, saying why.
func pythonScript(t *testing.T, source string) (python, script, dir string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("no python3 to build the process layout this test needs (%v)", err)
	}
	dir = t.TempDir()
	script = filepath.Join(dir, "layout.py")
	if err := os.WriteFile(script, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	return python, script, dir
}

// A group can empty, or be left holding a zombie, without any event the supervisor sees.
// The shutdown still ends: after its grace's SIGKILL, the group is looked at again and
// given up past a second, instead of holding the shutdown for ever.
func TestShutdownEndsWhenAGroupEmptiesOutOfSight(t *testing.T) {
	for _, mode := range []string{"wait", "never-wait"} {
		t.Run(mode, func(t *testing.T) {
			python, script, dir := pythonScript(t, groupEmptiedElsewhere)
			h := newHarness(t)
			pidFile := filepath.Join(dir, "p.pid")
			d := shDaemon("leader", python+" "+script+" "+pidFile+" "+mode+" & sleep 0.3; exit 0")
			d.Grace = 200 * time.Millisecond
			h.run([]config.Daemon{d, fake(t, h, "other", time.Second)}, nil)
			p := readPid(t, pidFile)
			defer func() { _ = syscall.Kill(p, syscall.SIGKILL) }()
			h.waitLog("leader", fsm.DaemonExited)
			h.stop <- syscall.SIGTERM
			if code := h.exitCode(); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}

// A dependency a reverse-order shutdown holds back that dies on its own before its turn
// leaves a grandchild in its group: what it left is the dependency now (a server its start
// script forked), so it waits for the daemons after it too, then gets the stop signal and
// a grace, and the shutdown ends instead of waiting on the group for ever. (Other's grace
// puts the overall deadline past app's SIGKILL.)
func TestReverseOrderStopsWhatAHeldBackDaemonLeft(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	dep := fake(t, h, "dep", 300*time.Millisecond, "-grandchild", "-exit-after", "1s", "-code", "0")
	app := fake(t, h, "app", 2*time.Second, "-ignore-stop")
	app.After = []string{"dep"}
	other := fake(t, h, "other", 10*time.Second)
	h.run([]config.Daemon{dep, app, other}, nil)
	grandchild := pidOf(t, h.waitRecord("dep started", "dep.grandchild started", "app started", "other started"), "dep.grandchild")
	h.stopAndWant(0)
	h.waitRecord("dep.grandchild signal SIGTERM")
	if alive(grandchild) {
		t.Fatalf("grandchild %d outlived the supervisor", grandchild)
	}
	if n := len(h.logs.FilterMessage("illegal event not applied").All()); n != 0 {
		t.Errorf("%d illegal events logged:\n%s", n, h.dumpLogs())
	}
	h.wantLeftoversStoppedAfterKill("dep", "app")
}

// The same for a dependency whose main process was gone before the shutdown began: what
// it left runs on as the dependency, and is stopped only once the daemons after it are.
func TestReverseOrderHoldsWhatADeadDependencyLeft(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	dep := fake(t, h, "dep", 300*time.Millisecond, "-grandchild", "-exit-after", "50ms", "-code", "0")
	app := fake(t, h, "app", time.Second, "-ignore-stop")
	app.After = []string{"dep"}
	other := fake(t, h, "other", 10*time.Second)
	h.run([]config.Daemon{dep, app, other}, nil)
	h.waitRecord("dep.grandchild started", "dep exit 0", "app started", "other started")
	h.waitState("dep", string(fsm.DaemonExited))
	h.stopAndWant(0)
	h.waitRecord("dep.grandchild signal SIGTERM")
	h.wantLeftoversStoppedAfterKill("dep", "app")
}

// wantLeftoversStoppedAfterKill checks the log: what dependency left in its group was
// stopped only after dependent, which comes after it, was SIGKILLed.
func (h *harness) wantLeftoversStoppedAfterKill(dependency, dependent string) {
	h.t.Helper()
	killed, stopped := -1, -1
	for i, e := range h.logs.All() {
		fields := e.ContextMap()
		switch {
		case e.Message == "transition" && fields["machine"] == dependent && fields["event"] == "kill":
			killed = i
		case e.Message == "stopping processes left in an exited daemon's process group" && fields["daemon"] == dependency:
			stopped = i
		}
	}
	if killed < 0 || stopped < killed {
		h.t.Errorf("what %s left was stopped (log %d) before %s, which comes after it, was gone (log %d):\n%s",
			dependency, stopped, dependent, killed, h.dumpLogs())
	}
}

// earlierRunLeftAGrandchild is a daemon whose first run starts old.grandchild (which ignores
// its stop signal) and crashes; every later run is a fake daemon svc that ignores its stop
// signal too.
func earlierRunLeftAGrandchild(t *testing.T, h *harness, grace time.Duration) config.Daemon {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "marker")
	grandchild, env := fakedaemon.Command(exe, "-name", "old.grandchild", "-record", h.record, "-ignore-stop")
	svc, _ := fakedaemon.Command(exe, "-name", "svc", "-record", h.record, "-ignore-stop")
	script := "if [ ! -e " + marker + " ]; then touch " + marker + "; " + strings.Join(grandchild, " ") +
		" & sleep 0.2; exit 1; fi; exec " + strings.Join(svc, " ")
	return config.Daemon{Name: "svc", Command: []string{"/bin/sh", "-c", script}, Env: env, Grace: grace,
		Restart: fsm.RestartOnFailure, BackoffInitial: 10 * time.Millisecond, BackoffMax: time.Hour, BackoffReset: time.Hour}
}

// A restart by the policy waits for what the crashed run left in its group: that gets the
// stop signal at the crash and SIGKILL at its grace (old.grandchild ignores the signal), and
// only then does the next run spawn. A worker still holding the old run's port would make
// every new run fail until max_restarts gave the daemon up.
func TestRestartWaitsForWhatTheCrashedRunLeft(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{earlierRunLeftAGrandchild(t, h, 300*time.Millisecond)}, nil)
	old := pidOf(t, h.waitRecord("old.grandchild started", "svc started"), "old.grandchild")
	if alive(old) && !reapable(old) {
		t.Fatalf("the second run started while the first run's grandchild %d still ran:\n%s", old, h.dumpLogs())
	}
	h.waitRecord("old.grandchild signal SIGTERM")
	if len(h.logs.FilterMessage("restart waits for the processes its last run left to exit").All()) != 1 {
		t.Errorf("the wait was not logged:\n%s", h.dumpLogs())
	}
	if st := h.waitState("svc", "running"); st.Restarts != 1 {
		t.Errorf("status %+v, want 1 restart", st)
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// A daemon that moved itself into another process group (setpgid) is still signalled, at
// its pid: the shutdown ends at its grace instead of SIGKILLing an empty group for ever.
const leaderLeavesItsGroup = `
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    time.sleep(1000)
    os._exit(0)
time.sleep(0.1)
os.setpgid(0, pid)
print("moved", pid, flush=True)
time.sleep(1000)
`

func TestDaemonThatLeftItsGroupIsStillStopped(t *testing.T) {
	python, script, dir := pythonScript(t, leaderLeavesItsGroup)
	h := newHarness(t)
	moved := filepath.Join(dir, "moved")
	d := shDaemon("leader", "exec "+python+" "+script+" > "+moved)
	d.Grace = 300 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	deadline := time.Now().Add(testTimeout)
	var child int
	for data, _ := os.ReadFile(moved); !strings.HasPrefix(string(data), "moved "); data, _ = os.ReadFile(moved) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon never moved to another group")
		}
		time.Sleep(10 * time.Millisecond)
	}
	data, _ := os.ReadFile(moved)
	if _, err := fmt.Sscanf(string(data), "moved %d", &child); err != nil {
		t.Fatal(err)
	}
	// The group the daemon moved to is its child's, outside the daemon's: that child
	// escaped, and the test ends it.
	defer func() { _ = syscall.Kill(child, syscall.SIGKILL) }()
	// An operator's signal reaches it too, and the answer says where it went.
	c := control.Call{Request: control.Request{Cmd: control.CmdSignal, Name: "leader", Signal: "SIGWINCH"}, Reply: make(chan control.Response, 1)}
	h.calls <- c
	if resp := <-c.Reply; !resp.OK || !strings.Contains(resp.Message, "which left its process group") {
		t.Errorf("signal leader SIGWINCH: %+v, want it sent at its pid, saying so", resp)
	}
	h.stopAndWant(0)
	if _, _, ok := h.transition("leader", "kill"); !ok {
		t.Errorf("no kill at the grace:\n%s", h.dumpLogs())
	}
}

// The looks after a SIGKILL stop while the daemon itself stays unreaped past killWait (a
// leader stuck in the kernel, which no reap can take yet). When its reap comes at last and
// a member outside reach is still in the group, the group is given up, instead of holding
// the shutdown for ever. Driven by hand: a held-back SIGCHLD no longer keeps a dead leader
// unreaped, since the timer reaps at each look.
func TestLateReapOfAKilledLeaderGivesUpItsGroup(t *testing.T) {
	python, script, dir := pythonScript(t, groupEmptiedElsewhere)
	pidFile := filepath.Join(dir, "p.pid")
	s, d, logs := livingDaemon(t, shDaemon("leader", "trap '' TERM; "+python+" "+script+" "+pidFile+" never-wait & exec tail -f /dev/null"))
	s.opts.Signals.Child = make(chan os.Signal, 1)
	s.spawn(d, time.Now())
	p := readPid(t, pidFile)
	defer func() { _ = syscall.Kill(p, syscall.SIGKILL) }()
	s.stopDaemon(d, syscall.SIGTERM, time.Now(), "operator stop")
	g := d.group(d.pid)
	s.killGroup(d, g, "grace expired")
	// As if the leader had been stuck: the looks stopped, killWait past.
	g.killedAt, g.deadline = time.Now().Add(-2*killWait), time.Time{}
	waitReapable(t, d.pid)
	s.reap()
	if d.groupsOpen() || logs.FilterMessage("processes still in a daemon's process group a second after SIGKILL; not waiting for them").Len() != 1 {
		t.Fatalf("the group the late reap left (a zombie whose parent is outside it) was not given up:\n%v", logs.All())
	}
}

// A group already SIGKILLed (an operator's stop whose grace ran out) keeps its looks when
// the shutdown begins: no new stop signal and no fresh grace that would delay the end.
func TestShutdownKeepsAKillUnderWay(t *testing.T) {
	python, script, dir := pythonScript(t, groupEmptiedElsewhere)
	h := newHarness(t)
	pidFile := filepath.Join(dir, "p.pid")
	d := shDaemon("leader", "trap '' TERM; "+python+" "+script+" "+pidFile+" never-wait & exec tail -f /dev/null")
	d.Grace = 100 * time.Millisecond
	h.run([]config.Daemon{d, fake(t, h, "other", time.Second)}, nil)
	p := readPid(t, pidFile)
	defer func() { _ = syscall.Kill(p, syscall.SIGKILL) }()
	if resp := h.call("stop", "leader"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	h.waitState("leader", "stopped") // SIGKILLed at its grace and reaped; a zombie stays in its group
	h.stopAndWant(0)
	if n := len(h.logs.FilterMessage("stopping processes left in an exited daemon's process group").All()); n != 0 {
		t.Fatalf("the shutdown sent a new stop signal to a group already SIGKILLed:\n%s", h.dumpLogs())
	}
}

// An earlier run's group found empty when its grace runs out is closed at once: no entry is
// left to keep a shutdown waiting or the timer armed on a past deadline, and nothing tries
// to signal "group 0" (the review of 51a0a82 saw the code before it do both).
func TestEarlierGroupFoundEmptyAtItsGraceIsClosed(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := New(Options{Log: zlog.New(core), Daemons: []config.Daemon{{Name: "svc", Command: []string{"/bin/true"}, Grace: time.Second}}})
	d := s.daemons[0]
	if _, err := d.machine.Fire(fsm.DaemonCancel); err != nil {
		t.Fatal(err)
	}
	// Pgids above the kernel's limit (PID_MAX_LIMIT, 2^22): empty groups, SIGKILL finds nobody.
	now := time.Now()
	d.pid = 1<<22 + 2
	d.groups = []procGroup{{pgid: 1<<22 + 1, deadline: now.Add(-time.Millisecond)}}
	s.onTimer(now)
	if s.anyGroupOpen() || s.timerArmed {
		t.Fatalf("after the grace: groups %+v, timer armed %v; want the empty group closed", d.groups, s.timerArmed)
	}
	if errs := logs.FilterLevelExact(zapcore.ErrorLevel).All(); len(errs) != 0 {
		t.Fatalf("errors logged: %v", errs)
	}
}

// leaderJoinsAnotherGroup: the daemon leaves B in its own group, starts C in a group of
// C's own, and joins C's group. Its own group still has B, so a signal to that group is
// delivered, but not to the daemon.
const leaderJoinsAnotherGroup = `
import os, sys, time
b = os.fork()
if b == 0:
    time.sleep(1000)
    os._exit(0)
r, w = os.pipe()
c = os.fork()
if c == 0:
    os.setpgid(0, 0)
    os.write(w, b"x")
    time.sleep(1000)
    os._exit(0)
os.read(r, 1)
os.setpgid(0, c)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d %d" % (b, c))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
`

// A daemon that joined another process group is signalled at its pid even while its own
// group still holds others: the stop signal reaches it, and the shutdown ends.
func TestDaemonInAnotherGroupIsStoppedWhileItsGroupIsNotEmpty(t *testing.T) {
	python, script, dir := pythonScript(t, leaderJoinsAnotherGroup)
	h := newHarness(t)
	pids := filepath.Join(dir, "pids")
	d := config.Daemon{Name: "mover", Command: []string{python, script, pids}, Grace: 300 * time.Millisecond}
	h.run([]config.Daemon{d}, nil)
	deadline := time.Now().Add(testTimeout)
	var b, c int
	for {
		if data, err := os.ReadFile(pids); err == nil {
			if _, err := fmt.Sscanf(string(data), "%d %d", &b, &c); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon never joined another group")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer func() { _ = syscall.Kill(b, syscall.SIGKILL); _ = syscall.Kill(c, syscall.SIGKILL) }()
	h.stop <- syscall.SIGTERM
	h.exitCode()
	if m, _, ok := h.transition("mover", "died"); !ok || m["signal"] != "SIGTERM" {
		t.Errorf("the daemon's death = %v, want it to die of its stop signal", m)
	}
}

// A third stop signal during the kill sends SIGKILL again; it is no illegal event.
func TestThirdStopSignalIsNoIllegalEvent(t *testing.T) {
	h := newHarness(t)
	h.holdSIGCHLD = true // no reap, so no exit, before the third signal is handled
	h.run([]config.Daemon{fake(t, h, "stubborn", time.Hour, "-ignore-stop")}, nil)
	h.waitRecord("stubborn started")
	h.stop <- syscall.SIGTERM
	h.waitRecord("stubborn signal SIGTERM")
	h.stop <- syscall.SIGINT
	h.stop <- syscall.SIGQUIT
	deadline := time.Now().Add(testTimeout)
	for len(h.logs.FilterMessage("illegal event not applied").All())+
		len(h.logs.FilterMessage("stop signal while every group is being killed").All()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the third stop signal was never handled:\n%s", h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	h.exitCode()
	if n := len(h.logs.FilterMessage("illegal event not applied").All()); n != 0 {
		t.Fatalf("%d illegal events:\n%s", n, h.dumpLogs())
	}
}

// The reverse order's look through dead dependents visits each daemon once: where `after`
// chains cross (40 levels of two daemons, each after both of the level before), one visit
// per path would be 2^39 and hold the loop for good.
func TestReverseOrderWalkIsLinear(t *testing.T) {
	var daemons []config.Daemon
	for level := range 40 {
		for i := range 2 {
			d := config.Daemon{Name: fmt.Sprintf("l%d-%d", level, i), Command: []string{"/bin/true"}}
			if level > 0 {
				d.After = []string{fmt.Sprintf("l%d-0", level-1), fmt.Sprintf("l%d-1", level-1)}
			}
			daemons = append(daemons, d)
		}
	}
	core, _ := observer.New(zapcore.DebugLevel)
	s := New(Options{Daemons: daemons, Log: zlog.New(core)})
	done := make(chan bool, 1)
	go func() { done <- s.anyDependentLive(s.daemons[0]) }()
	select {
	case live := <-done:
		if live {
			t.Fatal("nothing runs, yet a dependent was found live")
		}
	case <-time.After(testTimeout):
		t.Fatal("the walk did not end: it visits each path, not each daemon")
	}
}

// A daemon that was stopped (SIGSTOP, a debugger) still stops gracefully: SIGCONT follows
// its stop signal, as s6, runit and systemd send it, rather than a SIGKILL at the grace.
func TestAStoppedDaemonStillStopsGracefully(t *testing.T) {
	h := newHarness(t)
	d := shDaemon("paused", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	d.Grace = time.Hour
	h.run([]config.Daemon{d}, nil)
	h.waitLog("paused", fsm.DaemonRunning)
	pid := h.waitState("paused", string(fsm.DaemonRunning)).Pid
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testTimeout); processState(pid) != 'T'; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never stopped", pid)
		}
	}
	h.stopAndWant(0)
	if h.hasTransition("paused", fsm.DaemonKilled) {
		t.Errorf("the stopped daemon was SIGKILLed, not stopped gracefully:\n%s", h.dumpLogs())
	}
}

// processState is the state letter in /proc/PID/stat (T: stopped), or 0.
func processState(pid int) byte {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2]
	}
	return 0
}

// One signal sent to every process at once (systemd's KillMode=control-group): a daemon
// found dead of it when the supervisor acts on its own copy died of the stop, not of a
// failure, and the exit status is 0, not 143 by chance. A death of another signal still
// counts. So when the death's SIGCHLD reaches the loop just before the stop signal, as it
// can (the runtime handles the two on two threads): the reap waits a moment for it.
func TestDeathOfTheStopSignalItselfIsNoFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		script    string // a's
		stop      syscall.Signal
		wantCode  int
		chldFirst bool // the SIGCHLD reaches the loop 1 ms before the stop signal
	}{
		{"the same signal", "exec sleep 1000", syscall.SIGTERM, 0, false},
		{"another signal", "exec sleep 1000", syscall.SIGINT, 128 + int(syscall.SIGTERM), false},
		// Exiting 143 is what the JVM (and many a trapping script) does on SIGTERM: the
		// same as killed by it. (One that exited 143 of its own in that instant is
		// excused too: no wait status tells them apart.)
		{"exit 143, as the JVM on SIGTERM", "sleep 0.2; exit 143", syscall.SIGTERM, 0, false},
		{"exit 130, stopped by SIGTERM", "sleep 0.2; exit 130", syscall.SIGTERM, 130, false},
		{"the same signal, its SIGCHLD first", "exec sleep 1000", syscall.SIGTERM, 0, true},
		{"another signal, its SIGCHLD first", "exec sleep 1000", syscall.SIGINT, 128 + int(syscall.SIGTERM), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.holdSIGCHLD = true // the death waits, unreaped, for the stop signal
			a := shDaemon("a", tc.script)
			h.run([]config.Daemon{a, shDaemon("b", "exec sleep 1000")}, nil)
			h.waitLog("a", fsm.DaemonRunning)
			pid := h.statusOf("a").Pid
			if tc.script == "exec sleep 1000" {
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			waitReapable(t, pid)
			if tc.chldFirst {
				signal.Notify(h.child, syscall.SIGCHLD)
				h.child <- syscall.SIGCHLD
				time.Sleep(time.Millisecond)
				h.stop <- tc.stop
			} else {
				h.stop <- tc.stop
				signal.Notify(h.child, syscall.SIGCHLD)
				h.child <- syscall.SIGCHLD
			}
			if code := h.exitCode(); code != tc.wantCode {
				t.Fatalf("exit code %d, want %d\n%s", code, tc.wantCode, h.dumpLogs())
			}
		})
	}
}

// What an exited daemon left in its group, stopped (SIGSTOP, a debugger), still stops
// gracefully at the shutdown: its SIGCONT comes with the stop signal, as a live daemon's.
func TestStoppedLeftoversStillStopGracefully(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "server")
	d := shDaemon("starter", `sh -c 'trap "exit 0" TERM; echo $$ > `+pidFile+`; while :; do sleep 0.05; done' & exit 0`)
	d.Grace = 2 * time.Second
	h.run([]config.Daemon{d, fake(t, h, "other", time.Second)}, nil)
	h.waitLog("starter", fsm.DaemonExited)
	server := readPid(t, pidFile)
	pgid, err := syscall.Getpgid(server)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testTimeout); processState(server) != 'T'; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never stopped", server)
		}
	}
	h.stopAndWant(0)
	if n := h.logs.FilterMessage("killed processes left in an exited daemon's process group").Len(); n != 0 {
		t.Errorf("the stopped leftovers were SIGKILLed at the grace, not stopped gracefully:\n%s", h.dumpLogs())
	}
}

// waitForTheStop makes a reap's wait for an arriving stop signal (awaitArrivingStop) last
// until the test sends it.
func waitForTheStop(t *testing.T) {
	old := arrivingStopWait
	arrivingStopWait = testTimeout
	t.Cleanup(func() { arrivingStopWait = old })
}

// waitReaped waits until pid has been reaped (it is no longer a zombie of ours).
func waitReaped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(testTimeout); reapable(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d was never reaped", pid)
		}
	}
}

// A stop signal a reap caught while it waited for it (awaitArrivingStop) is acted on as if
// it had come first: a daemon an operator's restart was stopping, reaped later in the same
// batch, is not spawned again only to be stopped by the shutdown (found by a review: two
// spawns, the second run's grace waited out).
func TestCaughtStopDropsARestartsSecondHalf(t *testing.T) {
	waitForTheStop(t)
	h := newHarness(t)
	h.holdSIGCHLD = true
	a := shDaemon("a", "exec sleep 1000")
	svc := shDaemon("svc", "trap '' TERM; exec sleep 1000")
	svc.Grace = testTimeout
	h.run([]config.Daemon{a, svc}, nil)
	h.waitLog("a", fsm.DaemonRunning)
	h.waitLog("svc", fsm.DaemonRunning)
	apid, spid := h.statusOf("a").Pid, h.statusOf("svc").Pid
	if resp := h.call("restart", "svc"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	// a dies of SIGTERM (one sent to every process at once); its SIGCHLD comes first.
	if err := syscall.Kill(apid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitReapable(t, apid)
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	waitReaped(t, apid) // the loop's reap took a, and waits for the stop
	// svc, being restarted, dies now.
	if err := syscall.Kill(spid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitReapable(t, spid)
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit %d, want 0 (a died of the stop signal)\n%s", code, h.dumpLogs())
	}
	if n := len(h.transitions("svc", "spawn")); n != 1 {
		t.Errorf("%d spawns of svc, want 1: the restart's second half ran after the stop signal was caught\n%s", n, h.dumpLogs())
	}
}

// The same with the two deaths in the other order in one drain: wait4's order is the
// kernel's, so the wait for the stop comes before any exit of the drain is handled, not at
// the death that calls for it (the last note listed this as not done).
func TestCaughtStopDropsARestartReapedFirst(t *testing.T) {
	waitForTheStop(t)
	core, logs := observer.New(zapcore.DebugLevel)
	stop := make(chan os.Signal, 1)
	svc := shDaemon("svc", "trap '' TERM; exec sleep 1000")
	svc.Grace = testTimeout
	s := runningWithoutALoop(t, Options{Log: zlog.New(core), Daemons: []config.Daemon{svc, shDaemon("a", "exec sleep 1000")},
		Signals: Signals{Stop: stop}})
	t.Cleanup(func() { _ = syscall.Kill(-s.daemons[0].pid, syscall.SIGKILL) }) // a second run of svc
	now := time.Now()
	svcPid, aPid := s.daemons[0].pid, s.daemons[1].pid
	if resp := s.onCall(control.Request{Cmd: "restart", Name: "svc"}, now); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	// svc, being restarted, dies; then a, of SIGTERM (one sent to every process at once).
	exits := []procs.Exit{reapNow(t, svcPid, syscall.SIGKILL), reapNow(t, aPid, syscall.SIGTERM)}
	stop <- syscall.SIGTERM
	s.onExits(exits)
	var spawns int
	for _, e := range logs.FilterMessage("transition").All() {
		if m := e.ContextMap(); m["machine"] == "svc" && m["event"] == string(fsm.DaemonSpawn) {
			spawns++
		}
	}
	if spawns != 1 {
		t.Errorf("%d spawns of svc, want 1: the restart's second half ran before the wait for the stop signal", spawns)
	}
	if s.stopCaught != syscall.SIGTERM {
		t.Errorf("stop caught = %v, want SIGTERM", s.stopCaught)
	}
}

// In a reverse-order shutdown, a daemon held back for its dependent that dies on its own in
// the same drain as that dependent, after it, finds no dependent live: what it left in its
// group gets its stop signal and grace then, or nothing would ever stop it (a mutation
// review found this line unpinned; with it gone the shutdown waits on the leftover).
func TestHeldBackDaemonDeadBesideItsDependentHasItsLeftoversStopped(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	dep := shDaemon("dep", "sleep 1000 & exec sleep 1001")
	app := shDaemon("app", "exec sleep 1000")
	app.After = []string{"dep"}
	s := runningWithoutALoop(t, Options{Log: zlog.New(core), Daemons: []config.Daemon{dep, app}, ReverseStop: true})
	depPid, appPid := s.daemons[0].pid, s.daemons[1].pid
	for deadline := time.Now().Add(testTimeout); !strings.Contains(readComm(depPid), "sleep"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("dep never exec'd its sleep (its leftover forked before it)")
		}
	}
	s.onStopSignal(syscall.SIGTERM) // app gets it; dep is held back for app
	waitReapable(t, appPid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(appPid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	s.onExits([]procs.Exit{{Pid: appPid, Status: ws}, reapNow(t, depPid, syscall.SIGKILL)})
	for _, e := range logs.FilterMessage("stopping processes left in an exited daemon's process group").All() {
		if e.ContextMap()["daemon"] == "dep" {
			return
		}
	}
	t.Fatalf("dep's leftover was not stopped:\n%v", logs.All())
}

// runningWithoutALoop is a supervisor on opts whose daemons were spawned and made ready by
// hand, no loop running: for a test that hands the handlers exits in an order of its own.
// Each daemon's group is SIGKILLed at the end of the test.
func runningWithoutALoop(t *testing.T, opts Options) *Supervisor {
	t.Helper()
	s := New(opts)
	now := time.Now()
	for _, d := range s.daemons {
		s.spawn(d, now)
		s.becomeReady(d)
		pgid := d.pid // its own group's
		t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	}
	return s
}

// readComm is /proc/PID/comm, or "".
func readComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return string(b)
}

// reapNow kills our child pid with sig and reaps it: its exit as a drain would give it.
func reapNow(t *testing.T, pid int, sig syscall.Signal) procs.Exit {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	return procs.Exit{Pid: pid, Status: ws}
}

// An operator's call whose own reap caught the stop signal is answered as one that comes
// after it: a start is refused (the shutdown is under way), not done and stopped at once.
func TestCaughtStopInACallsReap(t *testing.T) {
	waitForTheStop(t)
	h := newHarness(t)
	h.holdSIGCHLD = true // only the call reaps
	h.run([]config.Daemon{shDaemon("a", "exec sleep 1000"), oneshot("z", "exit 0")}, nil)
	h.waitLog("a", fsm.DaemonRunning)
	h.waitState("z", string(fsm.DaemonExited)) // (status calls reap)
	apid := h.statusOf("a").Pid
	if err := syscall.Kill(apid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitReapable(t, apid)
	go func() {
		// Once the call's reap took a, it waits for the stop. (No t.Fatal here: not the
		// test's goroutine; the call's answer says if this went wrong.)
		for deadline := time.Now().Add(testTimeout); reapable(apid) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		h.stop <- syscall.SIGTERM
	}()
	if resp := h.call("start", "z"); resp.OK {
		t.Errorf("start z = %+v after the stop signal was taken, want refused", resp)
	}
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, h.dumpLogs())
	}
	if n := len(h.transitions("z", "spawn")); n != 1 {
		t.Errorf("%d spawns of z, want 1\n%s", n, h.dumpLogs())
	}
}

// A daemon being stopped that died as its grace ran out, its SIGCHLD not come through yet
// when the timer fires: it is reaped, not given the kill transition (found by a review).
func TestDeathAtTheGracesEndIsNoKill(t *testing.T) {
	s, d, logs := livingDaemon(t, config.Daemon{Name: "svc", Command: []string{"/bin/sh", "-c", "exit 0"}, Grace: time.Hour})
	s.opts.Signals.Child = make(chan os.Signal, 1) // empty: the SIGCHLD is on its way
	s.spawn(d, time.Now())
	s.becomeReady(d)
	s.stopDaemon(d, syscall.SIGTERM, time.Now(), "operator stop")
	waitReapable(t, d.pid)
	g := d.group(d.pid)
	if g == nil {
		t.Fatal("no group for the daemon's run")
	}
	s.onTimer(g.deadline)
	for _, e := range logs.FilterMessage("transition").All() {
		if m := e.ContextMap(); m["machine"] == "svc" && m["event"] == string(fsm.DaemonKill) {
			t.Fatalf("a daemon dead at its grace's end got the kill transition: %v", m)
		}
	}
}
