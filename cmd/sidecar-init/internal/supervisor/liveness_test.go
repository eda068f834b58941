package supervisor

import (
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
)

// withLiveness gives d an exec liveness probe: sh -c script, attempted every 20 ms.
func withLiveness(d config.Daemon, script string, failures int) config.Daemon {
	d.Liveness = config.Probe{Exec: []string{"/bin/sh", "-c", script}}
	d.LivenessInterval, d.LivenessTimeout, d.LivenessFailures = 20*time.Millisecond, testTimeout, failures
	return d
}

// fakeReadyOnceItHandlesSignals is fake(...) made ready by a file the fake daemon creates
// once its signal handling is in place. Without it the daemon is ready at its spawn, and a
// liveness attempt failing 20 ms later can stop it before the test binary's start has got
// that far (a loaded machine's CI saw it once): SIGTERM then kills a daemon the test
// meant to ignore it, and no SIGKILL comes.
func fakeReadyOnceItHandlesSignals(t *testing.T, h *harness, name string, grace time.Duration, args ...string) config.Daemon {
	ready := filepath.Join(t.TempDir(), name+".ready")
	d := fake(t, h, name, grace, append(args, "-touch", ready)...)
	d.Ready, d.ReadyTimeout = config.Probe{File: ready}, testTimeout
	return d
}

// livingDaemon is a supervisor whose one daemon, cfg, went through events (spawn, ready,
// ...) without a loop or a process: its pid is above PID_MAX_LIMIT (2^22), so a signal
// reaches nobody. For the loop's handlers called directly.
func livingDaemon(t *testing.T, cfg config.Daemon, events ...fsm.Event) (*Supervisor, *daemon, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	s := New(Options{Log: zlog.New(core), Daemons: []config.Daemon{cfg}})
	d := s.daemons[0]
	for _, e := range events {
		if _, err := d.machine.Fire(e); err != nil {
			t.Fatal(err)
		}
	}
	d.pid = 1<<22 + 1
	return s, d, logs
}

// livenessFailures lists the "failures" field of each "liveness probe failed" line.
func (h *harness) livenessFailures(daemon string) []int64 {
	var out []int64
	for _, e := range h.logs.FilterMessage("liveness probe failed").All() {
		if m := e.ContextMap(); m["daemon"] == daemon {
			out = append(out, m["failures"].(int64))
		}
	}
	return out
}

// A daemon that stops answering its liveness probe is stopped (its stop signal, which it
// takes), and its death goes to its restart policy as a failure, whatever its status: the
// next run comes up and is checked again.
func TestUnresponsiveDaemonIsStoppedAndRestarted(t *testing.T) {
	h := newHarness(t)
	hang := filepath.Join(t.TempDir(), "hang")
	d := withLiveness(fake(t, h, "guard", testTimeout), "test ! -e "+hang, 3)
	d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
	h.run([]config.Daemon{d}, nil)
	h.waitLog("guard", fsm.DaemonRunning)
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitLog("guard", fsm.DaemonUnresponsive)
	if err := os.Remove(hang); err != nil {
		t.Fatal(err)
	}
	h.waitTransitions("guard", "ready", 2)
	if st := h.waitState("guard", string(fsm.DaemonRunning)); st.LastExit != "unresponsive, then status 0" {
		t.Fatalf("LAST EXIT %q, want it to say the run was stopped as unresponsive", st.LastExit)
	}

	failed, level, _ := h.transition("guard", "liveness_failed")
	if level != zapcore.ErrorLevel || failed["from"] != "running" || failed["to"] != "unresponsive" || failed["signal"] != "SIGTERM" ||
		!strings.Contains(failed["reason"].(string), "failed 3 times in a row") {
		t.Fatalf("liveness_failed = %v at %v, want running → unresponsive, SIGTERM, at error", failed, level)
	}
	if got := h.livenessFailures("guard"); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("failures counted %v, want 1, 2, 3", got)
	}
	fail, _, _ := h.transition("guard", "fail")
	if fail["from"] != "unresponsive" || fail["to"] != "backoff" || fail["exit_code"] != int64(0) {
		t.Fatalf("fail = %v, want unresponsive → backoff with the stop's status 0: a failure whatever the status", fail)
	}
	h.waitRecord("guard signal SIGTERM", "guard exit 0")
	if died := h.transitions("guard", "died"); len(died) != 0 {
		t.Fatalf("the liveness stop's death was taken as an expected one: %v", died)
	}
	// Its status 0 counts as the stop signal's 143: a failure must not read as success.
	h.stopAndWant(143)
}

// Under the crash policy that tears the bundle down, a liveness stop that the daemon
// answers with status 0 still ends the bundle with a failure's status.
func TestLivenessStopIsAFailureForTheCrashPolicy(t *testing.T) {
	h := newHarness(t)
	table := fsm.TearDownOnCrash()
	h.run([]config.Daemon{withLiveness(fake(t, h, "guard", time.Second), "exit 1", 1), fake(t, h, "other", time.Second)}, &table)
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want 143 (a liveness stop answered with 0)\n%s", code, h.dumpLogs())
	}
	h.waitRecord("guard exit 0", "other signal SIGTERM")
}

// A daemon that died of its own, whose death the loop has not handled yet, fails its
// liveness probe because it is gone (a dial's result comes in before its SIGCHLD): that is
// no reason to stop it as unresponsive, and its own exit 0 must stay an exit (restart =
// "on-failure" leaves it down).
func TestDeadDaemonIsNotUnresponsive(t *testing.T) {
	cfg := config.Daemon{Name: "guard", Command: []string{"/bin/true"}, Liveness: config.Probe{TCP: "127.0.0.1:1"},
		LivenessInterval: time.Hour, LivenessTimeout: time.Hour, LivenessFailures: 1, Restart: fsm.RestartOnFailure,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: time.Second, BackoffReset: time.Hour}
	s, d, logs := livingDaemon(t, cfg)
	s.opts.Signals.Child = make(chan os.Signal, 1)
	s.spawn(d, time.Now())
	s.becomeReady(d)
	waitReapable(t, d.pid)
	d.liveAttempt, d.liveInFlight = 7, 1 // an attempt under way; its dial is refused
	s.onLivenessResult(probeResult{d: d, pid: d.pid, liveness: true, attempt: 7, err: syscall.ECONNREFUSED}, time.Now())
	if logs.FilterMessage("liveness probe failed on a daemon that has exited: its reap decides").Len() != 1 ||
		d.machine.Current() != fsm.DaemonRunning {
		t.Fatalf("state %s: want the failure left to the reap\n%v", d.machine.Current(), logs.All())
	}
	s.reap()
	if d.machine.Current() != fsm.DaemonExited {
		t.Fatalf("its own exit 0 left it %s, want exited", d.machine.Current())
	}
	for _, e := range logs.FilterMessage("transition").All() {
		if m := e.ContextMap(); m["event"] == string(fsm.DaemonFail) || m["event"] == string(fsm.DaemonLivenessFailed) {
			t.Fatalf("the dead daemon's exit 0 became %v", m)
		}
	}
}

// A stop that takes over a liveness stop whose grace ran out already (the SIGKILL sent, the
// daemon not reaped yet: one stuck in the kernel, since a call or a stop signal reaps what
// it can first) says so: stop, then kill, as if the stop had been its own from the start.
func TestTakeOverAfterTheLivenessSIGKILL(t *testing.T) {
	for _, tc := range []struct {
		name   string
		killed bool
		want   fsm.State
	}{
		{"within the grace", false, fsm.DaemonTerminating},
		{"after the SIGKILL", true, fsm.DaemonKilled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, d, _ := livingDaemon(t, withLiveness(config.Daemon{Name: "svc", Command: []string{"/bin/true"}}, "exit 1", 1),
				fsm.DaemonSpawn, fsm.DaemonReady, fsm.DaemonLivenessFailed)
			d.groups = []procGroup{{pgid: d.pid, deadline: time.Now().Add(time.Second)}}
			if tc.killed {
				d.groups[0].killedAt = time.Now()
			}
			s.takeOverStop(d, "operator stop")
			if got := d.machine.Current(); got != tc.want {
				t.Fatalf("after the take-over: %s, want %s", got, tc.want)
			}
		})
	}
}

// A liveness file an earlier run left (a container restarted in place) is removed before
// the run, as a readiness file is: it cannot vouch for a daemon that never made it.
func TestStaleLivenessFileIsRemoved(t *testing.T) {
	h := newHarness(t)
	alive := filepath.Join(t.TempDir(), "alive")
	if err := os.WriteFile(alive, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := fake(t, h, "guard", time.Second)
	d.Liveness = config.Probe{File: alive}
	d.LivenessInterval, d.LivenessTimeout, d.LivenessFailures = 20*time.Millisecond, time.Second, 1
	h.run([]config.Daemon{d}, nil)
	h.waitLog("guard", fsm.DaemonUnresponsive)
	h.waitMessage("removed the liveness file an earlier run left")
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
}

// A daemon that ignores the stop signal is SIGKILLed at the end of its grace, with no
// transition in between: its death is still the failure. Under restart = "never" it stays
// down, health says why, and with nothing else to supervise the supervisor exits with its
// status.
func TestUnresponsiveDaemonIgnoringItsStopIsKilled(t *testing.T) {
	h := newHarness(t)
	d := withLiveness(fakeReadyOnceItHandlesSignals(t, h, "guard", 200*time.Millisecond, "-ignore-stop"), "exit 1", 2)
	h.run([]config.Daemon{d}, nil)
	h.waitLog("guard", fsm.DaemonUnresponsive)
	if r := h.call(control.CmdHealth, ""); r.OK || !strings.Contains(r.Error, "guard (unresponsive)") {
		t.Fatalf("health while unresponsive = %+v, want not ready naming it", r)
	}
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit code %d, want the SIGKILL's 137\n%s", code, h.dumpLogs())
	}
	h.waitRecord("guard signal SIGTERM")
	if h.logs.FilterMessage("unresponsive daemon did not exit within its grace: SIGKILL to its process group").Len() != 1 {
		t.Fatalf("the SIGKILL was not logged:\n%s", h.dumpLogs())
	}
	fail, _, _ := h.transition("guard", "fail")
	if fail["from"] != "unresponsive" || fail["to"] != "exited" || fail["signal"] != "SIGKILL" {
		t.Fatalf("fail = %v, want unresponsive → exited by SIGKILL", fail)
	}
	if _, _, ok := h.transition("guard", "kill"); ok {
		t.Fatal("a kill transition: the liveness stop's SIGKILL is no operator's or shutdown's kill")
	}
}

// Failures that do not reach liveness_failures in a row are forgiven by a pass.
func TestLivenessPassResetsTheCount(t *testing.T) {
	h := newHarness(t)
	count := filepath.Join(t.TempDir(), "count")
	// Attempts 1, 2, 4 and 5 fail, 3 and 6 on pass: never 3 failures in a row.
	script := "n=$(cat " + count + " 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + count + "; [ $((n % 3)) -eq 0 ]"
	h.run([]config.Daemon{withLiveness(fake(t, h, "guard", time.Second), script, 3)}, nil)
	deadline := time.Now().Add(testTimeout)
	for h.logs.FilterMessage("liveness probe passed again").Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("never passed again twice:\n%s", h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.hasTransition("guard", fsm.DaemonUnresponsive) {
		t.Fatalf("two failures in a row made it unresponsive:\n%s", h.dumpLogs())
	}
	if got := h.livenessFailures("guard"); len(got) < 4 || got[0] != 1 || got[1] != 2 || got[2] != 1 || got[3] != 2 {
		t.Fatalf("failures counted %v, want 1, 2, 1, 2: a pass starts the count again", got)
	}
	again := h.logs.FilterMessage("liveness probe passed again").All()[0].ContextMap()
	if again["failures_before"] != int64(2) {
		t.Fatalf("passed again = %v, want failures_before 2", again)
	}
	h.stopAndWant(0)
}

// An attempt that hangs fails at liveness_timeout, and its process group is SIGKILLed then,
// not only once the daemon is stopped: here the next attempt passes and the daemon runs on.
func TestHangingLivenessProbeTimesOut(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "probe")
	d := withLiveness(fake(t, h, "guard", time.Second), "if [ -s "+pidFile+" ]; then exit 0; fi; echo $$ > "+pidFile+"; exec tail -f /dev/null", 2)
	d.LivenessTimeout = 200 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	h.waitMessage("liveness probe passed again")
	line := h.logs.FilterMessage("liveness probe failed").All()[0].ContextMap()
	if !strings.Contains(line["error"].(string), "no answer within liveness_timeout 200ms") {
		t.Fatalf("failure = %v, want the timeout", line)
	}
	probe := readPid(t, pidFile)
	deadline := time.Now().Add(testTimeout)
	for alive(probe) {
		if time.Now().After(deadline) {
			t.Fatalf("the liveness probe %d that timed out is still running", probe)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.hasTransition("guard", fsm.DaemonUnresponsive) {
		t.Fatalf("one failure of two made it unresponsive:\n%s", h.dumpLogs())
	}
	h.stopAndWant(0)
}

// An operator's stop of a daemon being stopped as unresponsive takes that stop over: its
// death is then an expected one, its restart policy is not asked, and it stays held; the
// grace the liveness stop armed stands.
func TestOperatorStopOfAnUnresponsiveDaemon(t *testing.T) {
	h := newHarness(t)
	d := withLiveness(fakeReadyOnceItHandlesSignals(t, h, "guard", 300*time.Millisecond, "-ignore-stop"), "exit 1", 1)
	d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
	h.run([]config.Daemon{d, fake(t, h, "other", time.Second)}, nil)
	h.waitLog("guard", fsm.DaemonUnresponsive)
	if r := h.call(control.CmdStop, "guard"); !r.OK || !strings.Contains(r.Message, "already stopping (unresponsive)") {
		t.Fatalf("stop = %+v", r)
	}
	h.waitState("guard", string(fsm.DaemonStopped))
	stop, _, _ := h.transition("guard", "stop")
	if stop["from"] != "unresponsive" || !strings.Contains(stop["reason"].(string), "operator stop") {
		t.Fatalf("stop = %v, want from unresponsive for the operator", stop)
	}
	kill, _, _ := h.transition("guard", "kill")
	if kill["from"] != "terminating" {
		t.Fatalf("kill = %v: the grace the liveness stop armed must end in SIGKILL", kill)
	}
	if _, _, failed := h.transition("guard", "fail"); failed || len(h.transitions("guard", "spawn")) != 1 {
		t.Fatalf("the operator's stop was taken as a failure or restarted:\n%s", h.dumpLogs())
	}
	if n := h.logs.FilterMessage("unresponsive daemon did not exit within its grace: SIGKILL to its process group").Len(); n != 0 {
		t.Fatalf("logged the liveness stop's SIGKILL %d times after the operator took the stop over", n)
	}
	h.stopAndWant(0)
}

// The shutdown takes a liveness stop under way over the same way: an expected death, and
// the supervisor's status is the shutdown's.
func TestShutdownDuringALivenessStop(t *testing.T) {
	h := newHarness(t)
	d := withLiveness(fakeReadyOnceItHandlesSignals(t, h, "guard", 300*time.Millisecond, "-ignore-stop"), "exit 1", 1)
	h.run([]config.Daemon{d}, nil)
	h.waitLog("guard", fsm.DaemonUnresponsive)
	h.stopAndWant(0)
	stop, _, _ := h.transition("guard", "stop")
	if stop["from"] != "unresponsive" || !strings.Contains(stop["reason"].(string), "shutdown") {
		t.Fatalf("stop = %v, want the shutdown's, from unresponsive", stop)
	}
	if died, _, _ := h.transition("guard", "died"); died["from"] != "killed" || died["exit_code"] != int64(137) {
		t.Fatalf("died = %v, want killed at the end of the grace", died)
	}
}

// A late result of an attempt given up at its timeout, or of an earlier one, is not the
// current attempt's.
func TestStaleLivenessResultIsDropped(t *testing.T) {
	s, d, _ := livingDaemon(t, withLiveness(config.Daemon{Name: "svc", Command: []string{"/bin/true"}}, "exit 1", 1), fsm.DaemonSpawn, fsm.DaemonReady)
	now := time.Now()
	for _, tc := range []struct {
		name     string
		attempt  uint64 // the one under way (0: none)
		resultOf uint64
	}{
		{"given up at its timeout", 0, 4},
		{"an earlier attempt", 5, 4},
	} {
		d.liveAttempt, d.liveInFlight = tc.attempt, 1
		s.onLivenessResult(probeResult{d: d, pid: d.pid, liveness: true, attempt: tc.resultOf, err: syscall.ECONNREFUSED}, now)
		if d.liveFailures != 0 || d.machine.Current() != fsm.DaemonRunning {
			t.Fatalf("%s: counted (failures %d, state %s)", tc.name, d.liveFailures, d.machine.Current())
		}
	}
	d.liveAttempt, d.liveInFlight = 5, 1
	s.onLivenessResult(probeResult{d: d, pid: d.pid, liveness: true, attempt: 5, err: syscall.ECONNREFUSED}, now)
	if d.machine.Current() != fsm.DaemonUnresponsive {
		t.Fatalf("the current attempt's failure left it %s", d.machine.Current())
	}
}

// status shows a running daemon's liveness failures short of the limit, so an operator
// sees it heading for a stop; the count goes once it passes again.
func TestStatusShowsLivenessFailures(t *testing.T) {
	h := newHarness(t)
	pass := filepath.Join(t.TempDir(), "pass")
	h.run([]config.Daemon{withLiveness(fake(t, h, "guard", time.Second), "test -e "+pass, 1000)}, nil)
	deadline := time.Now().Add(testTimeout)
	for {
		st := h.waitState("guard", string(fsm.DaemonRunning))
		if st.LivenessFailures > 0 {
			if st.LivenessFailuresMax != 1000 {
				t.Fatalf("status = %+v, want liveness_failures_max 1000", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed a liveness failure:\n%s", h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(pass, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitMessage("liveness probe passed again")
	if st := h.waitState("guard", string(fsm.DaemonRunning)); st.LivenessFailures != 0 {
		t.Fatalf("status after a pass = %+v, want no failures", st)
	}
	h.stopAndWant(0)
}

// A daemon stopped as unresponsive that answers with 128+SIGTERM and is reaped only as a
// SIGTERM for sidecar-init arrives did not die of that stop: sidecar-init sent it the
// signal itself, for a failure, and the exit status must say so.
func TestLivenessStopIsNotExcusedByTheArrivingStop(t *testing.T) {
	h := newHarness(t)
	h.holdSIGCHLD = true
	// Ready once it takes its stop signal: a liveness attempt before the fake asked for
	// SIGTERM (a slow start on a loaded machine) killed it with no record.
	ready := filepath.Join(t.TempDir(), "ready")
	d := fake(t, h, "guard", testTimeout, "-stop-code", "143", "-touch", ready)
	d.Ready, d.ReadyTimeout = config.Probe{File: ready}, testTimeout
	d.Liveness = config.Probe{TCP: freeAddr(t)} // nobody listens: every attempt fails
	d.LivenessInterval, d.LivenessTimeout, d.LivenessFailures = 20*time.Millisecond, time.Second, 1
	h.run([]config.Daemon{d, fake(t, h, "other", time.Second)}, nil)
	h.waitLog("guard", fsm.DaemonUnresponsive)
	rec := h.waitRecord("guard exit 143")
	waitReapable(t, pidOf(t, rec, "guard"))
	h.stop <- syscall.SIGTERM // its reap comes with the stop signal
	signal.Notify(h.child, syscall.SIGCHLD)
	h.child <- syscall.SIGCHLD
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want 143: guard was stopped for failing its liveness probe before any stop signal\n%s", code, h.dumpLogs())
	}
}

// A run stopped as unresponsive was up only until its last passed attempt: one whose probe
// never passes does not start a fresh backoff window at each stop, however long the
// attempts took, and is given up at max_restarts.
func TestNeverPassingLivenessIsGivenUp(t *testing.T) {
	h := newHarness(t)
	d := withLiveness(fake(t, h, "guard", time.Second), "exit 1", 3)
	d.LivenessInterval = 50 * time.Millisecond // 3 attempts: 150 ms, past backoff_reset
	h.wantGivenUpAtMaxRestarts(d, 143)
}

// wantGivenUpAtMaxRestarts runs d beside another daemon, restarting always with
// max_restarts 2 and a backoff_reset of 100 ms, and wants it given up after its third run;
// then stops the rest and wants exit status wantExit.
func (h *harness) wantGivenUpAtMaxRestarts(d config.Daemon, wantExit int) {
	h.t.Helper()
	d.Restart, d.MaxRestarts = fsm.RestartAlways, 2
	d.BackoffInitial, d.BackoffMax, d.BackoffReset = 10*time.Millisecond, time.Second, 100*time.Millisecond
	h.run([]config.Daemon{d, fake(h.t, h, "other", time.Second)}, nil)
	h.waitLog(d.Name, fsm.DaemonGivenUp)
	if runs := len(h.transitions(d.Name, "spawn")); runs != 3 {
		h.t.Fatalf("%d runs, want 3 (max_restarts 2)", runs)
	}
	h.stopAndWant(wantExit)
}

// The same for a readiness probe that never passes: each run is SIGKILLed at its
// ready_timeout, and a ready_timeout past backoff_reset made each look like a run that
// stayed up, so the window began again at every death and max_restarts never gave it up
// (found by a review: 19 runs in 3 s, every backoff the first). A run never ready was
// never up.
func TestNeverReadyIsGivenUp(t *testing.T) {
	h := newHarness(t)
	d := fake(t, h, "never-ready", time.Second)
	d.Ready = config.Probe{File: "/nonexistent/ready"}
	d.ReadyTimeout = 150 * time.Millisecond // past backoff_reset
	h.wantGivenUpAtMaxRestarts(d, 137)
}

// While a tcp or file attempt's goroutine has not returned (a stat on a hung mount), the
// next attempt fails at once instead of starting another: they cannot pile up.
func TestBlockedLivenessAttemptsDoNotPileUp(t *testing.T) {
	s, d, logs := livingDaemon(t, config.Daemon{Name: "svc", Command: []string{"/bin/true"},
		Liveness: config.Probe{File: "/nonexistent"}, LivenessInterval: time.Second, LivenessTimeout: time.Second, LivenessFailures: 3},
		fsm.DaemonSpawn, fsm.DaemonReady)
	d.liveInFlight = 1
	s.livenessProbe(d, time.Now())
	if d.liveAttempt != 0 || d.liveFailures != 1 || d.liveInFlight != 1 {
		t.Fatalf("attempt %d, failures %d, in flight %d: want no new attempt, one failure", d.liveAttempt, d.liveFailures, d.liveInFlight)
	}
	if msg := logs.FilterMessage("liveness probe failed").All()[0].ContextMap()["error"]; !strings.Contains(msg.(string), "has not returned yet") {
		t.Fatalf("failure = %v", msg)
	}
	// The blocked goroutine returns at last: stale, but no longer in flight.
	s.onLivenessResult(probeResult{d: d, pid: d.pid, liveness: true, attempt: 1, ok: true}, time.Now())
	if d.liveInFlight != 0 || d.liveFailures != 1 {
		t.Fatalf("in flight %d, failures %d after the stale return: want 0, 1", d.liveInFlight, d.liveFailures)
	}
	s.livenessProbe(d, time.Now())
	if d.liveAttempt == 0 || d.liveInFlight != 1 {
		t.Fatalf("no attempt once nothing was in flight (attempt %d, in flight %d)", d.liveAttempt, d.liveInFlight)
	}
	for d.liveInFlight > 0 { // the attempt's goroutine, done
		s.onProbeResult(<-s.probeResults, time.Now())
	}
}

// An exec liveness probe not reaped yet (stuck in the kernel past its SIGKILL) holds the
// next attempt back the same way: it fails at once, and no second probe is spawned.
func TestStuckLivenessExecProbeHoldsTheNextAttempt(t *testing.T) {
	s, d, logs := livingDaemon(t, withLiveness(config.Daemon{Name: "svc", Command: []string{"/bin/true"}}, "exit 0", 3), fsm.DaemonSpawn, fsm.DaemonReady)
	stuck := 1<<22 + 2
	s.execProbes[stuck] = execProbe{d: d, forPid: d.pid, liveness: true, attempt: 1}
	d.liveInFlight = 1 // its reap has not come
	s.livenessProbe(d, time.Now())
	if d.liveAttempt != 0 || d.liveFailures != 1 || len(s.execProbes) != 1 {
		t.Fatalf("attempt %d, failures %d, %d exec probes: want no new probe, one failure", d.liveAttempt, d.liveFailures, len(s.execProbes))
	}
	if msg := logs.FilterMessage("liveness probe failed").All()[0].ContextMap()["error"]; !strings.Contains(msg.(string), "has not returned yet") {
		t.Fatalf("failure = %v", msg)
	}
}

// An attempt whose answer is in as its liveness_timeout comes passed in time: the loop's
// select takes the timer or the answer in random order, and the timer must not fail it.
// A tcp or file answer is queued; an exec probe has exited, its SIGCHLD not handled yet.
func TestLivenessAnswerAtItsTimeoutCounts(t *testing.T) {
	t.Run("queued result", func(t *testing.T) {
		s, d, logs := livingDaemon(t, config.Daemon{Name: "svc", Command: []string{"/bin/true"},
			Liveness: config.Probe{File: "/nonexistent"}, LivenessInterval: time.Second, LivenessTimeout: time.Second, LivenessFailures: 1},
			fsm.DaemonSpawn, fsm.DaemonReady)
		now := time.Now()
		d.liveAttempt, d.liveInFlight, d.liveDeadline = 1, 1, now
		s.probeResults <- probeResult{d: d, pid: d.pid, liveness: true, attempt: 1, ok: true}
		s.onTimer(now)
		if n := logs.FilterMessage("liveness probe failed").Len(); n != 0 || d.machine.Current() != fsm.DaemonRunning {
			t.Fatalf("%d failures, state %s: the answer in time was failed at the timeout", n, d.machine.Current())
		}
		if d.liveInFlight != 0 || d.liveAt.IsZero() {
			t.Fatalf("in flight %d, next attempt at %v: the answer was not counted", d.liveInFlight, d.liveAt)
		}
	})
	t.Run("exited exec probe", func(t *testing.T) {
		cfg := withLiveness(config.Daemon{Name: "svc", Command: []string{"/bin/true"}}, "exit 0", 1)
		cfg.LivenessInterval = time.Hour // no next attempt within the test
		s, d, logs := livingDaemon(t, cfg, fsm.DaemonSpawn, fsm.DaemonReady)
		s.livenessProbe(d, time.Now())
		if len(s.execProbes) != 1 {
			t.Fatalf("%d exec probes, want 1", len(s.execProbes))
		}
		for pid := range s.execProbes {
			waitReapable(t, pid) // its SIGCHLD not in any channel: the timer comes first
		}
		s.onTimer(d.liveDeadline)
		if n := logs.FilterMessage("liveness probe failed").Len(); n != 0 || d.machine.Current() != fsm.DaemonRunning {
			t.Fatalf("%d failures, state %s: the probe that exited in time was failed at the timeout", n, d.machine.Current())
		}
		if d.liveAttempt != 0 || d.liveInFlight != 0 || d.liveAt.IsZero() || d.liveFailures != 0 {
			t.Fatalf("attempt %d, in flight %d, next at %v, failures %d: the reaped probe's pass was not counted",
				d.liveAttempt, d.liveInFlight, d.liveAt, d.liveFailures)
		}
	})
}

// A daemon with stop_signal SIGINT, stopped as unresponsive, that answers the stop with 0
// counts as 128+SIGINT (130), as the README's exit status table says: not 143.
func TestLivenessStopCountsTheDaemonsStopSignal(t *testing.T) {
	h := newHarness(t)
	table := fsm.TearDownOnCrash()
	// Ready once it takes SIGINT: a liveness attempt before that would kill it unrecorded.
	ready := filepath.Join(t.TempDir(), "ready")
	guard := withLiveness(fake(t, h, "guard", time.Second, "-touch", ready), "exit 1", 1)
	guard.Ready, guard.ReadyTimeout = config.Probe{File: ready}, testTimeout
	guard.StopSignal = syscall.SIGINT
	h.run([]config.Daemon{guard, fake(t, h, "other", time.Second)}, &table)
	if code := h.exitCode(); code != 130 {
		t.Fatalf("exit code %d, want 130 (a liveness stop by SIGINT answered with 0)\n%s", code, h.dumpLogs())
	}
	h.waitRecord("guard signal SIGINT", "guard exit 0")
}
