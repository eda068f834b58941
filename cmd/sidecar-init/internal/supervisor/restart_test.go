package supervisor

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// restarting is a fake daemon entry with a restart policy and a backoff.
func restarting(t *testing.T, h *harness, name string, policy fsm.RestartPolicy, initial, reset time.Duration, maxRestarts int, args ...string) config.Daemon {
	d := fake(t, h, name, 500*time.Millisecond, args...)
	d.Restart = policy
	d.BackoffInitial = initial
	d.BackoffMax = time.Hour
	d.BackoffReset = reset
	d.MaxRestarts = maxRestarts
	return d
}

func nextRestarts(t *testing.T, h *harness, name, event string) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, m := range h.transitions(name, event) {
		if m["to"] != "backoff" {
			continue
		}
		d, ok := m["next_restart_in"].(time.Duration)
		if !ok {
			t.Fatalf("backoff transition without next_restart_in: %v", m)
		}
		out = append(out, d)
	}
	return out
}

func TestOnFailureRestartsWithGrowingDelays(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "crashy", fsm.RestartOnFailure, 100*time.Millisecond, time.Hour, 0, "-exit-after", "20ms", "-code", "4"),
		fake(t, h, "steady", time.Second),
	}, nil)
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions("crashy", "spawn")) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	delays := nextRestarts(t, h, "crashy", "fail")
	if len(delays) < 3 {
		t.Fatalf("want 3 restarts, saw delays %v\n%s", delays, h.dumpLogs())
	}
	// 100 ms, 200 ms, 400 ms, each ±20 %: strictly growing whatever the jitter.
	for i, d := range delays[:3] {
		base := 100 * time.Millisecond << i
		if d < base*8/10-5*time.Millisecond || d > base*12/10 {
			t.Errorf("restart %d after %v, want %v ± 20%%", i+1, d, base)
		}
		if i > 0 && d <= delays[i-1] {
			t.Errorf("delays do not grow: %v", delays)
		}
	}
	if got := h.transitions("crashy", "spawn"); got[len(got)-1]["restarts"] == nil {
		t.Errorf("a restart's spawn does not log the restart count: %v", got[len(got)-1])
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 4 {
		t.Fatalf("exit code %d, want the first failure's 4 (restarts or not)", code)
	}
}

func TestBackoffResetsAfterAHealthyPeriod(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "slowcrash", fsm.RestartOnFailure, 50*time.Millisecond, 200*time.Millisecond, 0, "-exit-after", "300ms", "-code", "1"),
	}, nil)
	deadline := time.Now().Add(testTimeout)
	for len(nextRestarts(t, h, "slowcrash", "fail")) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Every life lasts longer than backoff_reset: each restart is the first of its window.
	for _, d := range nextRestarts(t, h, "slowcrash", "fail")[:3] {
		if d > 60*time.Millisecond {
			t.Errorf("delay %v after a healthy period, want backoff_initial (50 ms ± 20%%)", d)
		}
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

func TestMaxRestartsGivesUp(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "hopeless", fsm.RestartAlways, 20*time.Millisecond, time.Hour, 2, "-exit-after", "10ms", "-code", "9"),
	}, nil)
	// With nothing else running, giving up is the last daemon done: the supervisor exits.
	if code := h.exitCode(); code != 9 {
		t.Fatalf("exit code %d, want 9", code)
	}
	if n := len(h.transitions("hopeless", "spawn")); n != 3 {
		t.Errorf("%d spawns, want 1 + max_restarts 2", n)
	}
	if len(h.transitions("hopeless", "give_up")) != 1 {
		t.Fatalf("no give_up transition:\n%s", h.dumpLogs())
	}
	var sawGivenUp bool
	for _, ev := range h.events.all() {
		sawGivenUp = sawGivenUp || (ev.Daemon == "hopeless" && ev.To == "given_up")
	}
	if !sawGivenUp {
		t.Error("no notification of the daemon being given up")
	}
}

// The give-up reason counts the restarts since the daemon last stayed up, which is what
// max_restarts limits: with a long run in between, the runs before it are not counted (a
// review saw "died 3 times in a row" with a 1.5 s run among them).
func TestGiveUpReasonCountsTheRestartsSinceTheLastLongRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		runs   int
	}{
		{"all short", "exit 1", 3},
		// runs 1 and 2 short, run 3 past backoff_reset, runs 4 and 5 short: given up at 5
		{"a long run between", `n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$COUNT"; [ $n -eq 3 ] && sleep 0.6; exit 1`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			d := shDaemon("hopeless", tc.script)
			d.Env = append(d.Env, "COUNT="+filepath.Join(t.TempDir(), "count"))
			d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset, d.MaxRestarts = fsm.RestartAlways, 10*time.Millisecond, time.Second, 500*time.Millisecond, 2
			h.run([]config.Daemon{d}, nil)
			if code := h.exitCode(); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			if n := len(h.transitions("hopeless", "spawn")); n != tc.runs {
				t.Errorf("%d runs, want %d", n, tc.runs)
			}
			fields, _, ok := h.transition("hopeless", "give_up")
			if !ok {
				t.Fatalf("no give_up transition:\n%s", h.dumpLogs())
			}
			if want := "2 restarts in a row died before backoff_reset 500ms (max_restarts 2)"; fields["reason"] != want {
				t.Errorf("reason %q, want %q", fields["reason"], want)
			}
		})
	}
}

// A daemon whose command cannot be executed fails at every restart: those attempts count
// like any death, so the delays grow and max_restarts gives it up.
func TestExecFailuresBackOffAndGiveUp(t *testing.T) {
	h := newHarness(t)
	d := restarting(t, h, "missing", fsm.RestartOnFailure, 20*time.Millisecond, time.Hour, 3)
	d.Command = []string{"/nonexistent/daemon"}
	h.run([]config.Daemon{d}, nil)
	if code := h.exitCode(); code != 127 {
		t.Fatalf("exit code %d, want 127 (not found)", code)
	}
	if n := len(h.transitions("missing", "spawn_failed")); n != 4 {
		t.Errorf("%d exec attempts, want 1 + max_restarts 3\n%s", n, h.dumpLogs())
	}
	if len(h.transitions("missing", "give_up")) != 1 {
		t.Fatalf("never given up:\n%s", h.dumpLogs())
	}
	var delays []time.Duration // the last failure gives up: it has no next restart
	for _, m := range h.transitions("missing", "spawn_failed") {
		if pid, ok := m["pid"]; ok {
			t.Errorf("a spawn that failed logged pid %v: it has none", pid)
		}
		if d, ok := m["next_restart_in"].(time.Duration); ok {
			delays = append(delays, d)
		}
	}
	if len(delays) != 3 {
		t.Fatalf("delays %v, want 3", delays)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("delays do not grow: %v", delays)
		}
	}
}

func TestAlwaysRestartsACleanExitNeverDoesNot(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "oneshot-always", fsm.RestartAlways, 20*time.Millisecond, time.Hour, 0, "-exit-after", "20ms"),
		restarting(t, h, "oneshot-onfail", fsm.RestartOnFailure, 20*time.Millisecond, time.Hour, 0, "-exit-after", "20ms"),
		restarting(t, h, "crash-never", fsm.RestartNever, 20*time.Millisecond, time.Hour, 0, "-exit-after", "20ms", "-code", "2"),
	}, nil)
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions("oneshot-always", "spawn")) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	h.waitState("oneshot-onfail", "exited")
	h.waitState("crash-never", "exited")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 2 {
		t.Fatalf("exit code %d", code)
	}
	if n := len(h.transitions("oneshot-always", "spawn")); n < 3 {
		t.Errorf("always: %d spawns, want restarts after clean exits", n)
	}
	for _, name := range []string{"oneshot-onfail", "crash-never"} {
		if n := len(h.transitions(name, "spawn")); n != 1 {
			t.Errorf("%s: %d spawns, want no restart", name, n)
		}
	}
}

func TestStopSignalDuringBackoffExitsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "waiting", fsm.RestartOnFailure, time.Hour, time.Hour, 0, "-exit-after", "10ms", "-code", "3"),
	}, nil)
	st := h.waitState("waiting", "backoff")
	if st.NextRestartIn == "" || st.LastExit != "status 3" || st.Pid != 0 {
		t.Errorf("status in backoff = %+v", st)
	}
	h.stop <- syscall.SIGTERM
	// The restart is an hour away: only cancelling it ends this within the test's timeout.
	if code := h.exitCode(); code != 3 {
		t.Fatalf("exit code %d", code)
	}
	if len(h.transitions("waiting", "cancel")) != 1 {
		t.Fatalf("the pending restart was not cancelled:\n%s", h.dumpLogs())
	}
}

func TestControlStatusRestartStopStart(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "svc", time.Second), fake(t, h, "other", time.Second)}, nil)
	rec := h.waitRecord("svc started", "other started")
	first := pidOf(t, rec, "svc")

	st := h.waitState("svc", "running")
	if st.Pid == 0 || st.Uptime == "" {
		t.Errorf("running status = %+v", st)
	}
	if resp := h.call("restart", "svc"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions("svc", "spawn")) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st = h.waitState("svc", "running")
	if st.Pid == first || st.Restarts != 1 {
		t.Errorf("after restart: %+v (first pid %d)", st, first)
	}
	if !strings.Contains(h.recorded(), "svc signal SIGTERM") {
		t.Error("restart did not stop the old process with SIGTERM")
	}
	var notified bool
	for _, ev := range h.events.all() {
		notified = notified || (ev.Daemon == "svc" && ev.Event == "start" && ev.To == "pending")
	}
	if !notified {
		t.Errorf("no notification of the restart: %+v", h.events.all())
	}

	if resp := h.call("stop", "svc"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	h.waitState("svc", "stopped")
	if resp := h.call("stop", "svc"); resp.OK || !strings.Contains(resp.Error, "stopped") {
		t.Errorf("stopping a stopped daemon: %+v", resp)
	}
	if resp := h.call("start", "svc"); !resp.OK {
		t.Fatalf("start: %+v", resp)
	}
	h.waitState("svc", "running")
	if resp := h.call("start", "nope"); resp.OK || !strings.Contains(resp.Error, `unknown daemon "nope"`) {
		t.Errorf("unknown name: %+v", resp)
	}
	h.stopAndWant(0)
}

func TestNotificationsFollowTransitions(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "a", time.Second, "-exit-after", "50ms", "-code", "5")}, nil)
	if code := h.exitCode(); code != 5 {
		t.Fatalf("exit code %d", code)
	}
	events := h.events.all()
	if len(events) != 3 || events[0].Event != "spawn" || events[1].Event != "ready" || events[2].Event != "fail" {
		t.Fatalf("notifications = %+v, want spawn, ready, fail", events)
	}
	if events[2].ExitCode == nil || *events[2].ExitCode != 5 || events[2].Pid == 0 || events[2].From != "running" {
		t.Errorf("fail notification = %+v", events[2])
	}
}

// An operator acts on a daemon that is not spawned yet (pending behind an `after` daemon
// that never gets ready): stop holds it, start and restart spawn it now.
func TestOperatorCommandsOnAPendingDaemon(t *testing.T) {
	h := newHarness(t)
	slow := fake(t, h, "slow", time.Second)
	slow.Ready = config.Probe{File: "/nonexistent/ready"}
	slow.ReadyTimeout = time.Hour
	b := fake(t, h, "b", time.Second)
	b.After = []string{"slow"}
	c := fake(t, h, "c", time.Second)
	c.After = []string{"slow"}
	h.run([]config.Daemon{slow, b, c}, nil)
	h.waitState("b", "pending")
	if resp := h.call("stop", "b"); !resp.OK {
		t.Fatalf("stop of a pending daemon: %+v", resp)
	}
	h.waitState("b", "stopped")
	if resp := h.call("start", "b"); !resp.OK {
		t.Fatalf("start: %+v", resp)
	}
	h.waitState("b", "running")
	if resp := h.call("restart", "c"); !resp.OK {
		t.Fatalf("restart of a pending daemon: %+v", resp)
	}
	h.waitState("c", "running")
	h.stopAndWant(0)
}

// An operator's restart of a daemon waiting in backoff opens a fresh backoff window, as
// an operator's start does: it does not spend the daemon's max_restarts.
func TestOperatorRestartInBackoffOpensAFreshWindow(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		restarting(t, h, "crashy", fsm.RestartOnFailure, time.Hour, time.Hour, 1, "-exit-after", "50ms", "-code", "1"),
		fake(t, h, "other", time.Second),
	}, nil)
	h.waitState("crashy", "backoff")
	if resp := h.call("restart", "crashy"); !resp.OK {
		t.Fatalf("restart: %+v", resp)
	}
	h.waitTransitions("crashy", "fail", 2) // the restarted daemon crashed again
	if st := h.waitState("crashy", "backoff"); st.Restarts != 1 {
		t.Errorf("status after the operator's restart and a crash = %+v, want 1 restart", st)
	}
	if _, _, gaveUp := h.transition("crashy", "give_up"); gaveUp {
		t.Fatalf("given up: the operator's restart spent max_restarts:\n%s", h.dumpLogs())
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// Every stop transition says why: an operator's stop or restart, or the shutdown.
func TestStopTransitionsSayWhy(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "a", time.Second), fake(t, h, "b", time.Second), fake(t, h, "c", time.Second)}, nil)
	h.waitState("c", "running")
	for _, call := range [][2]string{{"stop", "a"}, {"restart", "b"}} {
		if resp := h.call(call[0], call[1]); !resp.OK {
			t.Fatalf("%s %s: %+v", call[0], call[1], resp)
		}
	}
	h.waitState("a", "stopped")
	h.waitState("b", "running")
	h.stopAndWant(0)
	for name, want := range map[string]string{"a": "operator stop", "b": "operator restart", "c": "shutdown"} {
		if m, _, ok := h.transition(name, "stop"); !ok || m["reason"] != want {
			t.Errorf("%s's stop transition = %v, want reason %q", name, m, want)
		}
	}
}

// backoffDelay doubles from backoff_initial up to backoff_max with ±20 % jitter, never past
// backoff_max and never below zero, for durations up to the longest the table accepts.
func TestBackoffDelay(t *testing.T) {
	const longest = 2562000 * time.Hour // near the largest time.Duration
	for _, tc := range []struct {
		initial, max time.Duration
		n            int
		low, high    time.Duration // bounds of the jittered delay
	}{
		{time.Second, time.Minute, 0, 800 * time.Millisecond, 1200 * time.Millisecond},
		{time.Second, time.Minute, 3, 6400 * time.Millisecond, 9600 * time.Millisecond},
		{time.Second, time.Minute, 10, 48 * time.Second, time.Minute},
		{longest, longest, 0, longest / 10 * 8, longest},
		{longest, longest, 5, longest / 10 * 8, longest},
		{time.Second, longest, 100, longest / 10 * 8, longest},
	} {
		cfg := config.Daemon{BackoffInitial: tc.initial, BackoffMax: tc.max}
		for range 1000 {
			if got := backoffDelay(cfg, tc.n); got < tc.low || got > tc.high {
				t.Fatalf("backoffDelay(initial %v, max %v, n %d) = %v, want within [%v, %v]", tc.initial, tc.max, tc.n, got, tc.low, tc.high)
			}
		}
	}
}

// The exit's last line says the cause at every --log-level: a nonzero exit is logged at
// error level with the daemon whose status it is (at warn or error, an info line was all
// that said it, and it was dropped); a clean one at info.
func TestExitLineNamesTheFailedDaemon(t *testing.T) {
	h := newHarness(t)
	crash := restarting(t, h, "crash", fsm.RestartNever, time.Second, time.Hour, 0, "-exit-after", "50ms", "-code", "4")
	h.run([]config.Daemon{crash, fake(t, h, "svc", time.Second)}, nil)
	h.waitLog("crash", fsm.DaemonExited)
	h.stopAndWant(4)
	entries := h.logs.FilterMessage("supervisor exiting").All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel || entries[0].ContextMap()["daemon"] != "crash" || entries[0].ContextMap()["exit_code"] != int64(4) {
		t.Fatalf("want one error-level exit line naming crash and 4, got %v", entries)
	}

	clean := newHarness(t)
	clean.run([]config.Daemon{fake(t, clean, "svc", time.Second)}, nil)
	clean.waitLog("svc", fsm.DaemonRunning)
	clean.stopAndWant(0)
	if entries := clean.logs.FilterMessage("supervisor exiting").All(); len(entries) != 1 || entries[0].Level != zapcore.InfoLevel {
		t.Fatalf("want one info-level exit line, got %v", entries)
	}
}
