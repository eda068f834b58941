package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/daemonlog"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/fakedaemon"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/internal/leakcheck"
	"github.com/claude-bottle/sidecar-init/procs"
)

func TestMain(m *testing.M) {
	fakedaemon.RunIfRequested()
	// Grandchildren whose daemon exited must come back to this test process, as they would
	// to PID 1, or the group checks could not see them go.
	if err := procs.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot become a child subreaper:", err)
		os.Exit(1)
	}
	os.Exit(leakcheck.Run(m))
}

// testTimeout bounds every wait in these tests; none of them is a timing goal.
const testTimeout = 20 * time.Second

type harness struct {
	t *testing.T
	// child is the SIGCHLD channel; with holdSIGCHLD the test decides when it is connected.
	child       chan os.Signal
	holdSIGCHLD bool
	record      string
	stop        chan os.Signal
	forward     chan os.Signal
	logs        *observer.ObservedLogs
	done        chan int
	calls       chan control.Call
	events      *recordingNotifier
	readyFile   string
	reverseStop bool
	sinks       Sinks // for daemons with log = "prefix" or "json"
	// wrapReadyFile, if set, stands in for the ready file's operations (readyFile's): to
	// make them block or fail.
	wrapReadyFile func(readyFileOps) readyFileOps
}

// recordingNotifier keeps every notification (the loop calls Send; tests read).
type recordingNotifier struct {
	mu     sync.Mutex
	events []notify.Event
}

// Close: nothing is queued; every event is recorded as it is sent.
func (r *recordingNotifier) Close() {}

func (r *recordingNotifier) Send(ev notify.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recordingNotifier) all() []notify.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Event(nil), r.events...)
}

// fake is a daemon entry that runs this test binary as a fake daemon.
func fake(t *testing.T, h *harness, name string, grace time.Duration, args ...string) config.Daemon {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv, env := fakedaemon.Command(exe, append([]string{"-name", name, "-record", h.record}, args...)...)
	return config.Daemon{Name: name, Command: argv, Env: env, Grace: grace}
}

func newHarness(t *testing.T) *harness {
	return &harness{
		t:       t,
		record:  filepath.Join(t.TempDir(), "record"),
		stop:    make(chan os.Signal, 8),
		forward: make(chan os.Signal, 64),
		done:    make(chan int, 1),
		calls:   make(chan control.Call),
		events:  &recordingNotifier{},
	}
}

// call sends a control request through the loop, as the control socket does.
func (h *harness) call(cmd, name string) control.Response {
	h.t.Helper()
	c := control.Call{Request: control.Request{Cmd: cmd, Name: name}, Reply: make(chan control.Response, 1)}
	select {
	case h.calls <- c:
	case <-time.After(testTimeout):
		h.t.Fatal("the loop did not take the control request")
	}
	return <-c.Reply
}

// waitState polls the status until the daemon is in state.
func (h *harness) waitState(name, state string) control.DaemonStatus {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		for _, d := range h.call(control.CmdStatus, "").Daemons {
			if d.Name == name && d.State == state {
				return d
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never reached %s; logs:\n%s", name, state, h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// transitions lists the logged transitions of one machine with this event, in order.
func (h *harness) transitions(machine, event string) []map[string]any {
	var out []map[string]any
	for _, e := range h.logs.FilterMessage("transition").All() {
		m := e.ContextMap()
		if m["machine"] == machine && m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

func (h *harness) run(daemons []config.Daemon, table *fsm.Table) {
	child := make(chan os.Signal, 1)
	h.child = child
	if !h.holdSIGCHLD {
		signal.Notify(child, syscall.SIGCHLD)
	}
	h.t.Cleanup(func() { signal.Stop(child) })
	core, logs := observer.New(zapcore.DebugLevel)
	h.logs = logs
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = stdin.Close() })
	s := New(Options{
		Daemons:         daemons,
		Environ:         nil,
		Log:             zlog.New(core),
		Signals:         Signals{Stop: h.stop, Forward: h.forward, Child: child},
		Calls:           h.calls,
		Notifier:        h.events,
		Stdin:           stdin,
		ReadyFile:       h.readyFile,
		ReverseStop:     h.reverseStop,
		SupervisorTable: table,
		Sinks:           h.sinks,
	})
	if h.wrapReadyFile != nil {
		s.readyOps = h.wrapReadyFile(s.readyOps)
	}
	go func() { h.done <- s.Run() }()
}

// waitRecord waits until every line is in the record file (polling is fine in a test).
func (h *harness) waitRecord(lines ...string) string {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		data, _ := os.ReadFile(h.record)
		missing := ""
		for _, l := range lines {
			if !strings.Contains(string(data), l+"\n") && !strings.Contains(string(data), l+" ") {
				missing = l
				break
			}
		}
		if missing == "" {
			return string(data)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("record never showed %q; it has:\n%s", missing, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) recorded() string {
	data, _ := os.ReadFile(h.record)
	return string(data)
}

func (h *harness) exitCode() int {
	h.t.Helper()
	select {
	case code := <-h.done:
		return code
	case <-time.After(testTimeout):
		h.t.Fatalf("supervisor did not finish; logs:\n%s", h.dumpLogs())
		return -1
	}
}

// waitLog waits until a transition with these fields has been logged.
func (h *harness) waitLog(machine string, to fsm.State) {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if h.hasTransition(machine, to) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("no transition of %s to %s; logs:\n%s", machine, to, h.dumpLogs())
}

// waitMessage waits until the supervisor has logged msg.
func (h *harness) waitMessage(msg string) {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		if h.logs.FilterMessage(msg).Len() > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("never logged %q; logs:\n%s", msg, h.dumpLogs())
}

func (h *harness) hasTransition(machine string, to fsm.State) bool {
	for _, e := range h.logs.FilterMessage("transition").All() {
		m := e.ContextMap()
		if m["machine"] == machine && m["to"] == string(to) {
			return true
		}
	}
	return false
}

func (h *harness) transition(machine, event string) (map[string]any, zapcore.Level, bool) {
	for _, e := range h.logs.FilterMessage("transition").All() {
		m := e.ContextMap()
		if m["machine"] == machine && m["event"] == event {
			return m, e.Level, true
		}
	}
	return nil, 0, false
}

func (h *harness) dumpLogs() string {
	var b strings.Builder
	for _, e := range h.logs.All() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}

func alive(pid int) bool {
	return unix.Kill(pid, 0) == nil
}

func TestCrashLeavesSurvivorsRunningAndStopSurfacesItsCode(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "crasher", time.Second, "-exit-after", "100ms", "-code", "3"),
		fake(t, h, "survivor", time.Second),
	}, nil)
	h.waitRecord("survivor started", "crasher exit 3")
	h.waitLog("supervisor", fsm.SupervisorDegraded)
	fields, level, ok := h.transition("crasher", "fail")
	if !ok || fields["exit_code"] != int64(3) || level != zapcore.WarnLevel || fields["to"] != "exited" {
		t.Fatalf("crash transition = %v at %v, want exit_code 3 at warn", fields, level)
	}
	// The survivor keeps running, untouched, well after the crash was handled.
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(h.recorded(), "survivor signal") {
		t.Fatalf("the survivor got a signal after the crash:\n%s", h.recorded())
	}
	if _, _, stopped := h.transition("survivor", "stop"); stopped {
		t.Fatal("the survivor was stopped after a crash")
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 3 {
		t.Fatalf("exit code %d, want the crash's 3", code)
	}
	h.waitRecord("survivor signal SIGTERM")
}

// A daemon that is already dead when the stop signal is handled died on its own: its
// status counts even if its SIGCHLD had not been handled yet.
func TestDeathBeforeStopSignalCounts(t *testing.T) {
	h := newHarness(t)
	h.holdSIGCHLD = true
	h.run([]config.Daemon{
		fake(t, h, "crasher", time.Second, "-exit-after", "50ms", "-code", "6"),
		fake(t, h, "other", time.Second),
	}, nil)
	rec := h.waitRecord("crasher exit 6", "other started")
	waitReapable(t, pidOf(t, rec, "crasher"))
	h.stop <- syscall.SIGTERM
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD // anything that exited before Notify
	if code := h.exitCode(); code != 6 {
		t.Fatalf("exit code %d, want 6: the crash happened before the stop signal\n%s", code, h.dumpLogs())
	}
}

// waitTransitions waits until machine has logged n transitions with event.
func (h *harness) waitTransitions(machine, event string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions(machine, event)) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never logged %d %q transitions:\n%s", machine, n, event, h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReapable waits until the child has exited and wait4 would reap it now.
func waitReapable(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !reapable(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d never became a zombie", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopAndWant sends the stop signal and checks the supervisor's exit status.
func (h *harness) stopAndWant(code int) {
	h.t.Helper()
	h.stop <- syscall.SIGTERM
	if got := h.exitCode(); got != code {
		h.t.Fatalf("exit code %d, want %d\n%s", got, code, h.dumpLogs())
	}
}

// reapable says the child has exited and wait4 would reap it now. It leaves the child
// unreaped (WNOWAIT). A zombie thread-group leader in /proc is not enough: wait4 waits
// until the other threads of a multi-threaded program are gone too.
func reapable(pid int) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo == int32(syscall.SIGCHLD)
}

func TestEveryDaemonDyingEndsTheLoop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codes []int
		want  int
	}{
		{"all clean", []int{0, 0, 0}, 0},
		{"first nonzero wins", []int{0, 4, 5}, 4},
		{"signal death", []int{0, -1}, 128 + int(syscall.SIGKILL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var daemons []config.Daemon
			for i, code := range tc.codes {
				after := fmt.Sprintf("%dms", 50+150*i)
				args := []string{"-exit-after", after, "-code", fmt.Sprint(code)}
				if code < 0 {
					// A shell that SIGKILLs itself: a signal death with no stop from us.
					daemons = append(daemons, config.Daemon{Name: fmt.Sprintf("d%d", i), Grace: time.Second,
						Command: []string{"/bin/sh", "-c", "sleep 0." + fmt.Sprint(5+i) + "; kill -KILL $$"}})
					continue
				}
				daemons = append(daemons, fake(t, h, fmt.Sprintf("d%d", i), time.Second, args...))
			}
			h.run(daemons, nil)
			if code := h.exitCode(); code != tc.want {
				t.Fatalf("exit code %d, want %d\n%s", code, tc.want, h.dumpLogs())
			}
			if !h.hasTransition("supervisor", fsm.SupervisorExited) {
				t.Fatal("no transition of the supervisor to exited")
			}
			if _, _, ok := h.transition("supervisor", "all_died"); !ok {
				t.Fatal("the loop ended without all_died")
			}
		})
	}
}

func TestIgnoredStopIsKilledAfterGrace(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "stubborn", 300*time.Millisecond, "-ignore-stop"),
		fake(t, h, "polite", 300*time.Millisecond),
	}, nil)
	h.waitRecord("stubborn started", "polite started")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0: deaths after the shutdown began do not count", code)
	}
	h.waitRecord("stubborn signal SIGTERM", "polite signal SIGTERM", "polite exit 0")
	fields, level, ok := h.transition("stubborn", "kill")
	if !ok || level != zapcore.WarnLevel || fields["signal"] != "SIGKILL" {
		t.Fatalf("kill transition = %v at %v, want SIGKILL at warn", fields, level)
	}
	died, _, _ := h.transition("stubborn", "died")
	if died["exit_code"] != int64(137) || died["from"] != "killed" {
		t.Fatalf("stubborn died %v, want 137 from killed", died)
	}
	if _, _, killed := h.transition("polite", "kill"); killed {
		t.Fatal("the polite daemon was SIGKILLed")
	}
}

func TestSecondStopSignalKillsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "stubborn", time.Hour, "-ignore-stop")}, nil)
	h.waitRecord("stubborn started")
	h.stop <- syscall.SIGTERM
	h.waitRecord("stubborn signal SIGTERM")
	h.stop <- syscall.SIGINT
	// The grace is an hour: only the second signal can end this within the test's timeout.
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, _, ok := h.transition("supervisor", "force"); !ok {
		t.Fatal("no force transition")
	}
	if fields, _, ok := h.transition("stubborn", "kill"); !ok || fields["reason"] != "second stop signal" {
		t.Fatalf("kill transition = %v", fields)
	}
}

func TestForwardedSignalsReachEveryGroup(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "a", time.Second, "-grandchild"),
		fake(t, h, "b", time.Second),
	}, nil)
	h.waitRecord("a started", "b started", "a.grandchild started")
	h.forward <- syscall.SIGHUP
	h.forward <- syscall.SIGUSR1
	h.waitRecord("a signal SIGHUP", "b signal SIGHUP", "a.grandchild signal SIGHUP",
		"a signal SIGUSR1", "b signal SIGUSR1", "a.grandchild signal SIGUSR1")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// forward_signals picks the forwarded signals a daemon gets: a daemon that dies of a
// SIGHUP (mitmdump) leaves it out, so that a reload meant for another (pipelock) does not
// end it.
func TestForwardSignalsPicksWhatEachDaemonGets(t *testing.T) {
	h := newHarness(t)
	reloads := fake(t, h, "reloads", time.Second, "-grandchild")
	reloads.Forward = []syscall.Signal{syscall.SIGHUP}
	none := fake(t, h, "none", time.Second)
	none.Forward = []syscall.Signal{}
	h.run([]config.Daemon{reloads, none, fake(t, h, "all", time.Second)}, nil)
	h.waitRecord("reloads started", "none started", "all started", "reloads.grandchild started")
	h.forward <- syscall.SIGHUP
	h.forward <- syscall.SIGUSR1
	h.waitRecord("reloads signal SIGHUP", "reloads.grandchild signal SIGHUP", "all signal SIGHUP", "all signal SIGUSR1")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// Signals sent before the SIGTERM and lower-numbered are recorded before it.
	rec := h.waitRecord("none signal SIGTERM", "reloads signal SIGTERM")
	for _, line := range []string{"none signal SIGHUP", "none signal SIGUSR1", "reloads signal SIGUSR1", "reloads.grandchild signal SIGUSR1"} {
		if strings.Contains(rec, line+"\n") {
			t.Errorf("%q: forwarded a signal the daemon's forward_signals leaves out\n%s", line, rec)
		}
	}
	left := h.logs.FilterMessage("signal not forwarded to the daemons whose forward_signals leaves it out").All()
	if len(left) != 2 {
		t.Fatalf("%d lines naming the daemons left out, want 2 (SIGHUP, SIGUSR1):\n%s", len(left), h.dumpLogs())
	}
	if got := fmt.Sprint(left[1].ContextMap()["not_forwarded_to"]); got != "[reloads none]" {
		t.Errorf("SIGUSR1 not forwarded to %s, want [reloads none]", got)
	}
}

func TestGrandchildLeftInGroupIsKilledAtShutdown(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "leader", 300*time.Millisecond, "-grandchild", "-exit-after", "300ms"),
		fake(t, h, "other", 300*time.Millisecond),
	}, nil)
	rec := h.waitRecord("leader.grandchild started", "leader exit 0")
	h.waitLog("leader", fsm.DaemonExited)
	grandchild := pidOf(t, rec, "leader.grandchild")
	if !alive(grandchild) {
		t.Fatal("the grandchild should outlive its leader until shutdown")
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// It got the stop signal first (graceful), then SIGKILL at the grace.
	h.waitRecord("leader.grandchild signal SIGTERM")
	if alive(grandchild) {
		t.Fatalf("grandchild %d outlived the supervisor", grandchild)
	}
	found := false
	for _, e := range h.logs.FilterMessage("killed processes left in an exited daemon's process group").All() {
		found = found || e.ContextMap()["daemon"] == "leader"
	}
	if !found {
		t.Fatalf("no log of the leftover group being killed:\n%s", h.dumpLogs())
	}
}

// When the last daemon dies on its own, what it left in its group (a server its start
// script forked) goes with the supervisor, but gracefully: its stop signal and grace, as
// at a shutdown, not a SIGKILL at once. Found by a review.
func TestLeftoversOfTheLastDaemonGetTheirStopSignal(t *testing.T) {
	h := newHarness(t)
	leader := fake(t, h, "leader", 2*time.Second, "-grandchild", "-exit-after", "300ms")
	h.run([]config.Daemon{leader}, nil)
	rec := h.waitRecord("leader.grandchild started", "leader exit 0")
	grandchild := pidOf(t, rec, "leader.grandchild")
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	h.waitRecord("leader.grandchild signal SIGTERM")
	if alive(grandchild) {
		t.Fatalf("grandchild %d outlived the supervisor", grandchild)
	}
	if n := len(h.logs.FilterMessage("stopping processes left in an exited daemon's process group").All()); n != 1 {
		t.Errorf("%d lines saying the leftover is being stopped, want 1:\n%s", n, h.dumpLogs())
	}
	// The fake grandchild records its SIGTERM and stays: SIGKILL at the grace, not before.
	stopping := h.logPos("stopping processes left in an exited daemon's process group", map[string]any{"daemon": "leader"})
	killed := h.logPos("killed processes left in an exited daemon's process group", map[string]any{"daemon": "leader"})
	if stopping < 0 || killed < stopping {
		t.Errorf("want the stop signal (log line %d) before the SIGKILL (%d):\n%s", stopping, killed, h.dumpLogs())
	}
}

func pidOf(t *testing.T, record, name string) int {
	t.Helper()
	for _, line := range strings.Split(record, "\n") {
		var pid, pgid int
		if _, err := fmt.Sscanf(line, name+" started pid=%d pgid=%d", &pid, &pgid); err == nil {
			return pid
		}
	}
	t.Fatalf("no pid for %s in:\n%s", name, record)
	return 0
}

func TestExecFailuresAndTheRestStart(t *testing.T) {
	h := newHarness(t)
	notExecutable := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.run([]config.Daemon{
		{Name: "missing", Command: []string{"/nonexistent/daemon"}, Grace: time.Second},
		{Name: "noexec", Command: []string{notExecutable}, Grace: time.Second},
		{Name: "not-on-path", Command: []string{"no-such-program-on-path"}, Env: []string{"PATH=/nonexistent"}, Grace: time.Second},
		fake(t, h, "fine", time.Second),
	}, nil)
	h.waitRecord("fine started")
	for name, want := range map[string]int64{"missing": 127, "noexec": 126, "not-on-path": 127} {
		fields, level, ok := h.transition(name, "spawn_failed")
		if !ok || fields["exit_code"] != want || level != zapcore.ErrorLevel {
			t.Errorf("%s: spawn_failed = %v at %v, want exit_code %d at error", name, fields, level, want)
		}
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 127 {
		t.Fatalf("exit code %d, want 127 (the first failure)", code)
	}
}

func TestStopSignalDuringStartUpDoesNotHang(t *testing.T) {
	h := newHarness(t)
	var daemons []config.Daemon
	for i := 0; i < 60; i++ {
		daemons = append(daemons, fake(t, h, fmt.Sprintf("d%02d", i), 2*time.Second))
	}
	h.run(daemons, nil)
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	spawned, cancelled := 0, 0
	for _, d := range daemons {
		_, _, wasSpawned := h.transition(d.Name, "spawn")
		_, _, wasStopped := h.transition(d.Name, "stop")
		_, _, wasCancelled := h.transition(d.Name, "cancel")
		switch {
		case wasSpawned && wasStopped:
			spawned++
		case wasCancelled && !wasSpawned:
			cancelled++
		default:
			t.Errorf("%s: spawned=%v stopped=%v cancelled=%v", d.Name, wasSpawned, wasStopped, wasCancelled)
		}
	}
	t.Logf("%d daemons spawned and stopped, %d cancelled before they started", spawned, cancelled)
}

func TestPerDaemonStopSignal(t *testing.T) {
	h := newHarness(t)
	d := fake(t, h, "wants-int", time.Second)
	d.StopSignal = syscall.SIGINT
	h.run([]config.Daemon{d, fake(t, h, "default", time.Second)}, nil)
	h.waitRecord("wants-int started", "default started")
	h.stop <- syscall.SIGQUIT
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	h.waitRecord("wants-int signal SIGINT", "default signal SIGQUIT")
}

// The other crash policy, built by changing that one row, tears the bundle down and exits
// with the crash's status: proof that the policy is a one-line edit.
func TestFlippedCrashPolicyTearsDown(t *testing.T) {
	h := newHarness(t)
	table := fsm.TearDownOnCrash()
	h.run([]config.Daemon{
		fake(t, h, "crasher", time.Second, "-exit-after", "200ms", "-code", "7"),
		fake(t, h, "survivor", time.Second),
	}, &table)
	if code := h.exitCode(); code != 7 {
		t.Fatalf("exit code %d, want the crash's 7", code)
	}
	h.waitRecord("survivor signal SIGTERM")
	if fields, _, ok := h.transition("supervisor", "daemon_died"); !ok || fields["to"] != "terminating" {
		t.Fatalf("daemon_died = %v, want → terminating", fields)
	}
}

func TestNoDaemonOutlivesTheLoop(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "a", 200*time.Millisecond, "-grandchild")}, nil)
	rec := h.waitRecord("a started", "a.grandchild started")
	h.stop <- syscall.SIGTERM
	h.exitCode()
	for _, name := range []string{"a", "a.grandchild"} {
		if pid := pidOf(t, rec, name); alive(pid) {
			t.Errorf("%s (pid %d) is alive after the loop ended", name, pid)
		}
	}
	if err := unix.Kill(pidOf(t, rec, "a"), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("leader not reaped: kill(pid, 0) = %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "PATH=/bin", "B=2"}, []string{"PATH=/usr/bin", "C=3"})
	want := "A=1 B=2 PATH=/usr/bin C=3"
	if strings.Join(got, " ") != want {
		t.Fatalf("mergeEnv = %v, want %s", got, want)
	}
}

// A daemon with a user runs with that user's HOME, USER and LOGNAME, and its own env wins
// over them: one entry a name, since getenv(3) takes the first (a review found two HOMEs,
// the user's first, with the table's HOME set).
func TestDaemonEnvOfAUser(t *testing.T) {
	d := config.Daemon{Name: "x", Env: []string{"HOME=/custom", "USER=me"},
		Credential: &procs.Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/nonexistent"}}
	got := DaemonEnv([]string{"PATH=/usr/bin:/bin", "HOME=/root", "USER=root"}, d)
	want := []string{"PATH=/usr/bin:/bin", "LOGNAME=nobody", "HOME=/custom", "USER=me"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("DaemonEnv = %q, want %q", got, want)
	}
}

// pass_env filters only what is inherited: the user's HOME, USER and LOGNAME and the
// table's env are added after it, and the caller's environ is left as it was.
func TestDaemonEnvPassesOnlyWhatItNames(t *testing.T) {
	environ := []string{"PATH=/bin", "HOME=/root", "EGRESS_PORT=8080", "TOKEN=secret", "EMPTY="}
	d := config.Daemon{Name: "x", FilterEnv: true, PassEnv: []string{"PATH", "EGRESS_*", "EMPTY"}, Env: []string{"MINE=1"},
		Credential: &procs.Credential{UID: 65534, GID: 65534, Name: "nobody", Home: "/nonexistent"}}
	got := DaemonEnv(environ, d)
	want := []string{"PATH=/bin", "EGRESS_PORT=8080", "EMPTY=", "HOME=/nonexistent", "USER=nobody", "LOGNAME=nobody", "MINE=1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("DaemonEnv = %q, want %q", got, want)
	}
	if strings.Join(environ, " ") != "PATH=/bin HOME=/root EGRESS_PORT=8080 TOKEN=secret EMPTY=" {
		t.Errorf("the inherited environment changed: %q", environ)
	}
	// Left without a PATH, it gets the list its command is looked up in; its env's wins.
	d.PassEnv, d.Credential = nil, nil
	if got := DaemonEnv(environ, d); strings.Join(got, " ") != "MINE=1 PATH="+procs.DefaultPath {
		t.Errorf("pass_env = []: %q, want the table's env and the default PATH", got)
	}
	d.Env = []string{"PATH=/opt/bin"}
	if got := DaemonEnv(environ, d); strings.Join(got, " ") != "PATH=/opt/bin" {
		t.Errorf("pass_env = [], env PATH: %q, want only the table's env", got)
	}
	// Without pass_env nothing is added: what sidecar-init has is what it passes.
	d.FilterEnv = false
	if got := DaemonEnv([]string{"A=1"}, config.Daemon{Name: "x"}); strings.Join(got, " ") != "A=1" {
		t.Errorf("no pass_env: %q, want the inherited environment as it is", got)
	}
}

// stalledWriter is a stdout nobody reads: every Write waits until release is closed.
type stalledWriter struct{ release chan struct{} }

func (w stalledWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// A stdout nobody reads does not pile up a pipe pair, a copier and its buffer for every run
// of a crash-looping daemon (a review: 700 descriptors and 32 MB in 30 s, without end).
// Past maxUndrainedRuns, runs' output is discarded, and the supervisor says so;
// supervision goes on; once the stream drains, labels come back. Never the supervisor's
// own streams, raw: a daemon can make its runs undrained itself, and would then forge
// sidecar-init's lines there (found by a security review).
func TestStalledOutputDoesNotPileUpPipes(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.sinks.Stdout = daemonlog.NewSink(stalledWriter{release})
	h.sinks.Stderr = daemonlog.NewSink(stalledWriter{release})
	outs := filepath.Join(t.TempDir(), "stdouts")
	d := shDaemon("chatty", "readlink /proc/$$/fd/1 >> "+outs+"; readlink /proc/$$/fd/2 >> "+outs+"; echo a line; exit 1")
	d.Log, d.Restart = "prefix", fsm.RestartOnFailure
	d.BackoffInitial, d.BackoffMax, d.BackoffReset = 5*time.Millisecond, 5*time.Millisecond, time.Minute
	h.run([]config.Daemon{d}, nil)
	h.waitMessage("labelled output is not being drained: each run started until it is has its output discarded, for that whole run " +
		"(a stdout or stderr nobody reads, or processes earlier runs left holding their pipes)")
	spawns := func() int {
		n := 0
		for _, e := range h.logs.FilterMessage("transition").All() {
			if m := e.ContextMap(); m["machine"] == "chatty" && m["event"] == "spawn" {
				n++
			}
		}
		return n
	}
	// Supervision goes on past the bound: more runs than it lets pile up.
	for deadline := time.Now().Add(testTimeout); spawns() < 3*maxUndrainedRuns; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d spawns:\n%s", spawns(), h.dumpLogs())
		}
	}
	if n := len(h.logs.FilterMessage("labelled output is not being drained: each run started until it is has its output discarded, for that whole run " +
		"(a stdout or stderr nobody reads, or processes earlier runs left holding their pipes)").All()); n != 1 {
		t.Errorf("%d warnings, want one for the whole stall", n)
	}
	ownOut, _ := os.Readlink("/proc/self/fd/1")
	ownErr, _ := os.Readlink("/proc/self/fd/2")
	got, err := os.ReadFile(outs)
	if err != nil {
		t.Fatal(err)
	}
	discarded := 0
	for _, line := range strings.Fields(string(got)) {
		switch line {
		case ownOut, ownErr:
			t.Fatalf("a run wrote to the supervisor's own stdout or stderr (%s):\n%s", line, got)
		case os.DevNull:
			discarded++
		}
	}
	if discarded == 0 {
		t.Errorf("no run's output was discarded past the bound:\n%s", got)
	}
	close(release) // the stream drains: the piled-up lines go out, and labels come back
	h.waitMessage("labelled output drains again")
	h.stopAndWant(1)
}

// With stop_order = "reverse", when every daemon died on its own, a daemon's leftovers wait
// for those of the daemons after it, as at a shutdown. Found by a review: all were stopped
// at once.
func TestLeftoversStopInReverseOrder(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	// db's grace is the largest, the overall deadline: what is left of it once app's
	// leftover is gone (SIGKILLed at app's grace: the fake ignores SIGTERM) is db's.
	db := fake(t, h, "db", 2*time.Second, "-grandchild", "-exit-after", "200ms")
	app := fake(t, h, "app", 300*time.Millisecond, "-grandchild", "-exit-after", "400ms")
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app}, nil)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	h.waitRecord("app.grandchild signal SIGTERM", "db.grandchild signal SIGTERM")
	stopping := func(name string) int {
		return h.logPos("stopping processes left in an exited daemon's process group", map[string]any{"daemon": name})
	}
	appKilled := h.logPos("killed processes left in an exited daemon's process group", map[string]any{"daemon": "app"})
	if stopping("app") < 0 || appKilled < stopping("app") || stopping("db") < appKilled {
		t.Errorf("want app's leftovers stopped, then killed at its grace, and only then db's (log lines %d, %d, %d):\n%s",
			stopping("app"), appKilled, stopping("db"), h.dumpLogs())
	}
}

// An operator's start while the dead daemons' leftovers are being stopped ends that stop:
// the reverse order's deadline must not stop and kill the daemon just started. Found by a
// review: db, started again, was killed at the old deadline and sidecar-init exited.
func TestStartDuringTheLeftoversStopKeepsTheDaemon(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	again := filepath.Join(t.TempDir(), "again")
	db := shDaemon("db", fmt.Sprintf(`if [ -e %s ]; then exec sleep 1000; fi; sh -c 'trap "exit 0" TERM; while :; do sleep 0.05; done' & sleep 0.2; exit 0`, again))
	db.Grace = 2 * time.Second // the largest: the reverse order's deadline
	app := shDaemon("app", `sh -c 'trap "" TERM; while :; do sleep 0.05; done' & sleep 0.4; exit 0`)
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app}, nil)
	h.waitMessage("stopping processes left in an exited daemon's process group") // app's: db's wait
	if err := os.WriteFile(again, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if resp := h.call("start", "db"); !resp.OK {
		t.Fatalf("start db: %+v", resp)
	}
	h.waitLog("db", fsm.DaemonRunning)
	time.Sleep(2500 * time.Millisecond) // past the old deadline
	for _, e := range h.logs.FilterMessage("transition").All() {
		if m := e.ContextMap(); m["machine"] == "db" && (m["event"] == "stop" || m["event"] == "kill") {
			t.Fatalf("db, started again, was stopped by the leftovers' deadline:\n%s", h.dumpLogs())
		}
	}
	h.stopAndWant(0)
}

// LAST EXIT in every form status shows, written out from its parts when asked.
func TestExitNote(t *testing.T) {
	killed := procs.Exit{Status: unix.WaitStatus(syscall.SIGKILL)}
	three := procs.Exit{Status: unix.WaitStatus(3 << 8)}
	for _, tc := range []struct {
		note exitNote
		want string
	}{
		{exitNote{}, ""},
		{exitNote{kind: exitDied, exit: three}, "status 3"},
		{exitNote{kind: exitDied, exit: killed}, "signal SIGKILL"},
		{exitNote{kind: exitDied, exit: procs.Exit{}, unresponsive: true}, "unresponsive, then status 0"},
		{exitNote{kind: exitDied, exit: killed, unresponsive: true}, "unresponsive, then signal SIGKILL"},
		{exitNote{kind: exitFinished}, "finished (status 0)"},
		{exitNote{kind: exitSpawnFailed, status: 127}, "exec failed (127)"},
		{exitNote{kind: exitCancelled, dependency: "setup", dependencyState: fsm.DaemonExited}, "cancelled (setup exited)"},
	} {
		if got := tc.note.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.note, got, tc.want)
		}
	}
}
