package supervisor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/fsm"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// logIndex is the position of the first transition of machine with event in the log.
func (h *harness) logIndex(machine, event string) int {
	for i, e := range h.logs.FilterMessage("transition").All() {
		m := e.ContextMap()
		if m["machine"] == machine && m["event"] == event {
			return i
		}
	}
	return -1
}

func TestAfterWaitsForTheTCPProbe(t *testing.T) {
	h := newHarness(t)
	addr := freeAddr(t)
	upstream := fake(t, h, "upstream", time.Second, "-listen", addr, "-ready-after", "300ms")
	upstream.Ready = config.Probe{TCP: addr}
	upstream.ReadyTimeout = 10 * time.Second
	downstream := fake(t, h, "downstream", time.Second)
	downstream.After = []string{"upstream"}
	// Listed first, started second: start order follows `after`, then the table.
	h.run([]config.Daemon{downstream, upstream}, nil)
	h.waitRecord("downstream started")
	rec := h.recorded()
	if strings.Index(rec, "upstream listening") > strings.Index(rec, "downstream started") || !strings.Contains(rec, "upstream listening") {
		t.Fatalf("downstream started before upstream's port accepted:\n%s", rec)
	}
	ready, spawn := h.logIndex("upstream", "ready"), h.logIndex("downstream", "spawn")
	if ready < 0 || spawn < ready {
		t.Fatalf("downstream spawned (log line %d) before upstream was ready (%d):\n%s", spawn, ready, h.dumpLogs())
	}
	fields, _, _ := h.transition("upstream", "ready")
	if fields["reason"] != "probe passed: tcp "+addr {
		t.Errorf("ready reason = %v", fields["reason"])
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestExecAndFileProbes(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ready")
	viaFile := fake(t, h, "via-file", time.Second, "-touch", marker, "-ready-after", "100ms")
	viaFile.Ready = config.Probe{File: marker}
	viaFile.ReadyTimeout = 10 * time.Second
	viaExec := fake(t, h, "via-exec", time.Second)
	viaExec.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "test -e " + marker}}
	viaExec.ReadyTimeout = 10 * time.Second
	readyFile := filepath.Join(dir, "all-ready")
	h.readyFile = readyFile
	h.run([]config.Daemon{viaFile, viaExec}, nil)
	h.waitLog("via-file", "running")
	h.waitLog("via-exec", "running")
	if resp := h.call("health", ""); !resp.OK {
		t.Fatalf("health = %+v", resp)
	}
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := os.Stat(readyFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ready file was never written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
	if _, err := os.Stat(readyFile); !os.IsNotExist(err) {
		t.Errorf("the ready file outlived the shutdown: %v", err)
	}
	if len(h.logs.FilterMessage("every daemon is ready").All()) != 1 {
		t.Error("\"every daemon is ready\" should be logged exactly once")
	}
}

// The ready file says "ready" only while this supervisor's daemons are: one left by an
// earlier run is removed at start, and it goes when every daemon died on its own too, not
// only at a shutdown.
func TestReadyFileOnlyWhileReady(t *testing.T) {
	h := newHarness(t)
	h.readyFile = filepath.Join(t.TempDir(), "all-ready")
	if err := os.WriteFile(h.readyFile, []byte("an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(t.TempDir(), "gate")
	d := fake(t, h, "short", time.Second, "-touch", gate, "-ready-after", "100ms", "-exit-after", "1500ms", "-code", "0")
	d.Ready = config.Probe{File: gate}
	d.ReadyTimeout = 10 * time.Second
	h.run([]config.Daemon{d}, nil)
	// The worker removes it beside the start-up: gone before the daemon is ready (its probe
	// passes 100 ms after it starts).
	waitFile(t, h, h.readyFile, false, "an earlier run's, at start")
	if h.hasTransition("short", "running") {
		t.Errorf("an earlier run's ready file was still there once the daemon was ready:\n%s", h.dumpLogs())
	}
	h.waitLog("short", "running")
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if len(h.logs.FilterMessage("every daemon is ready").All()) != 1 {
		t.Fatalf("the daemon never became ready:\n%s", h.dumpLogs())
	}
	if _, err := os.Stat(h.readyFile); !os.IsNotExist(err) {
		t.Errorf("the ready file outlived the supervisor after every daemon died (%v)", err)
	}
}

// The ready file follows what `health` answers, not only the first time: a daemon that dies
// (left alone) takes it away, and it comes back once that daemon runs again. Held daemons do
// not count, as in `health`.
func TestReadyFileFollowsHealth(t *testing.T) {
	h := newHarness(t)
	h.readyFile = filepath.Join(t.TempDir(), "all-ready")
	gate := filepath.Join(t.TempDir(), "gate")
	guard := fake(t, h, "guard", time.Second)
	crasher := fake(t, h, "crasher", time.Second)
	crasher.Command = []string{"/bin/sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.01; done; exit 3"}
	h.run([]config.Daemon{guard, crasher}, nil)
	exists := func() bool {
		_, err := os.Stat(h.readyFile)
		return err == nil
	}
	waitFile := func(want bool, what string) {
		t.Helper()
		deadline := time.Now().Add(testTimeout)
		for exists() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: ready file present = %v, want %v\n%s", what, exists(), want, h.dumpLogs())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFile(true, "both daemons running")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitLog("crasher", "exited")
	waitFile(false, "crasher died")
	if resp := h.call("health", ""); resp.OK {
		t.Fatalf("health = %+v with a dead daemon", resp)
	}
	if len(h.logs.FilterMessage("not every daemon is ready any more").All()) != 1 {
		t.Errorf("losing readiness should be logged once:\n%s", h.dumpLogs())
	}
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	if resp := h.call("start", "crasher"); !resp.OK {
		t.Fatalf("start crasher = %+v", resp)
	}
	waitFile(true, "crasher started again")
	if resp := h.call("stop", "crasher"); !resp.OK {
		t.Fatalf("stop crasher = %+v", resp)
	}
	// The status call that sees "stopped" may itself have reaped the daemon (a call reaps
	// first): the loop writes the file right after answering it.
	h.waitState("crasher", "stopped")
	waitFile(true, "crasher held stopped (health counts it ready)")
	// At start, after the start, and once held (while it was terminating it was not ready,
	// and health said so too).
	if n := len(h.logs.FilterMessage("every daemon is ready").All()); n != 3 {
		t.Errorf("\"every daemon is ready\" logged %d times, want 3:\n%s", n, h.dumpLogs())
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
	if exists() {
		t.Error("the ready file outlived the shutdown")
	}
}

// A ready_file path that names a directory (a mistake) is never removed.
func TestReadyFilePathThatIsADirectoryIsLeftAlone(t *testing.T) {
	h := newHarness(t)
	h.readyFile = t.TempDir() // an empty directory: os.Remove would take it
	h.run([]config.Daemon{fake(t, h, "a", time.Second, "-exit-after", "10ms")}, nil)
	h.exitCode()
	if info, err := os.Stat(h.readyFile); err != nil || !info.IsDir() {
		t.Fatalf("the directory at the ready file's path is gone: %v", err)
	}
}

func TestReadyTimeoutIsAFailedStart(t *testing.T) {
	h := newHarness(t)
	never := fake(t, h, "never-ready", time.Second)
	never.Ready = config.Probe{File: "/nonexistent/ready"}
	never.ReadyTimeout = 300 * time.Millisecond
	h.run([]config.Daemon{never}, nil)
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit %d, want 137 (SIGKILLed for not being ready)", code)
	}
	lines := h.logs.FilterMessage("daemon not ready within ready_timeout: killing it; its restart policy decides what follows").All()
	if len(lines) != 1 {
		t.Fatalf("no clear log line:\n%s", h.dumpLogs())
	}
	// It says why the probe kept failing.
	if why, _ := lines[0].ContextMap()["last_probe_error"].(string); !strings.Contains(why, "no such file or directory") {
		t.Errorf("last_probe_error = %q, want the stat error", why)
	}
	if fields, _, ok := h.transition("never-ready", "fail"); !ok || fields["from"] != "starting" {
		t.Fatalf("fail transition = %v", fields)
	}
}

func TestHealthTurnsBadWhenADaemonDies(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "steady", time.Second),
		fake(t, h, "mortal", time.Second, "-exit-after", "400ms", "-code", "1"),
	}, nil)
	h.waitLog("mortal", "running")
	h.waitLog("steady", "running")
	if resp := h.call("health", ""); !resp.OK || !strings.Contains(resp.Message, "all 2") {
		t.Fatalf("health while all run = %+v", resp)
	}
	h.waitLog("mortal", "exited")
	resp := h.call("health", "")
	if resp.OK || !strings.Contains(resp.Error, "mortal (exited)") || strings.Contains(resp.Error, "steady") {
		t.Fatalf("health after a death = %+v", resp)
	}
	h.stop <- syscall.SIGTERM
	h.exitCode()
}

// One daemon is not "all 1 daemons" (a review's minor point).
func TestHealthOfOneDaemon(t *testing.T) {
	s, _, _ := livingDaemon(t, config.Daemon{Name: "svc", Command: []string{"/bin/true"}})
	if got := s.healthy(); got != "ready: its one daemon" {
		t.Errorf("healthy() = %q", got)
	}
}

// A death says how long its run lasted (ran_for), and a spawn says nothing of the kind.
func TestDeathSaysHowLongTheRunLasted(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{
		fake(t, h, "steady", time.Second),
		fake(t, h, "mortal", time.Second, "-exit-after", "300ms", "-code", "1"),
	}, nil)
	h.waitLog("mortal", "exited")
	fields, _, _ := h.transition("mortal", "fail")
	if ran, ok := fields["ran_for"].(time.Duration); !ok || ran < 300*time.Millisecond || ran > testTimeout {
		t.Errorf("fail transition = %v, want ran_for of at least 300ms", fields)
	}
	if fields, _, _ := h.transition("mortal", "spawn"); fields["ran_for"] != nil {
		t.Errorf("spawn transition = %v, want no ran_for", fields)
	}
	h.stopAndWant(1)
}

func TestReverseStopOrderStopsDependentsFirst(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	base := fake(t, h, "base", 10*time.Second)
	middle := fake(t, h, "middle", 10*time.Second)
	middle.After = []string{"base"}
	top := fake(t, h, "top", 10*time.Second)
	top.After = []string{"middle"}
	h.run([]config.Daemon{base, middle, top}, nil)
	h.waitLog("top", "running")
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Each dependency got its stop signal only after the daemons after it had died.
	for _, pair := range [][2]string{{"top", "middle"}, {"middle", "base"}} {
		died, stop := h.logIndex(pair[0], "died"), h.logIndex(pair[1], "stop")
		if died < 0 || stop < died {
			t.Fatalf("%s stopped (line %d) before %s died (line %d):\n%s", pair[1], stop, pair[0], died, h.dumpLogs())
		}
	}
}

// With stop_order = "reverse", a chain of daemons that each ignore their stop signal would
// take the sum of their graces one after the other (3 s here); the overall deadline, the
// largest grace, bounds the whole shutdown (1 s). The figure read is when the supervisor
// decided the last SIGKILL (its own log timestamps), not when the killed processes were
// reaped, so a loaded machine does not blur it.
func TestReverseStopOrderWithinTheLargestGrace(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	base := fake(t, h, "base", time.Second, "-ignore-stop")
	middle := fake(t, h, "middle", time.Second, "-ignore-stop")
	middle.After = []string{"base"}
	top := fake(t, h, "top", time.Second, "-ignore-stop")
	top.After = []string{"middle"}
	h.run([]config.Daemon{base, middle, top}, nil)
	h.waitLog("top", "running")
	h.waitRecord("base started", "middle started", "top started")
	h.stop <- syscall.SIGTERM
	h.exitCode()
	var stopAt, lastKill time.Time
	for _, e := range h.logs.FilterMessage("transition").All() {
		m := e.ContextMap()
		if m["machine"] == "supervisor" && m["event"] == "stop" {
			stopAt = e.Time
		}
		if m["event"] == "kill" {
			lastKill = e.Time
		}
	}
	if took := lastKill.Sub(stopAt); stopAt.IsZero() || lastKill.IsZero() || took > 2*time.Second {
		t.Fatalf("last SIGKILL decided %v after the stop signal; want about the largest grace (1 s), not the sum (3 s)\n%s", took, h.dumpLogs())
	}
	t.Logf("reverse-order shutdown of a 3-daemon chain that ignores SIGTERM: last SIGKILL after %v", lastKill.Sub(stopAt).Round(time.Millisecond))
}

// A daemon held stopped by an operator keeps health good, and the answer names it rather
// than calling every daemon ready.
func TestHealthNamesHeldDaemons(t *testing.T) {
	h := newHarness(t)
	h.run([]config.Daemon{fake(t, h, "a", time.Second), fake(t, h, "b", time.Second)}, nil)
	h.waitLog("a", "running")
	h.waitLog("b", "running")
	if resp := h.call("stop", "b"); !resp.OK {
		t.Fatalf("stop b: %+v", resp)
	}
	h.waitState("b", "stopped")
	if resp := h.call("health", ""); !resp.OK || resp.Message != "ready: 1 of 2 daemons; held stopped: b" {
		t.Fatalf("health with b held = %+v", resp)
	}
	// The log counts the same way (a review saw "daemons":5 with 2 of the 5 held).
	entries := h.logs.FilterMessage("every daemon is ready").All()
	if last := entries[len(entries)-1].ContextMap(); last["ready"] != int64(1) || fmt.Sprint(last["held"]) != "[b]" {
		t.Errorf("last \"every daemon is ready\" = %v, want daemons 1, held [b]", last)
	}
	h.stopAndWant(0)
}

// A probe that cannot be executed at all is said once, at warn, not left to retries at
// debug until ready_timeout.
func TestProbeThatCannotRunIsSaidOnce(t *testing.T) {
	h := newHarness(t)
	d := fake(t, h, "svc", time.Second)
	d.Ready = config.Probe{Exec: []string{"/nonexistent/probe"}}
	d.ReadyTimeout = 300 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit %d, want 137", code)
	}
	warned := h.logs.FilterMessage("readiness probe cannot be executed; the daemon cannot become ready").All()
	if len(warned) != 1 || warned[0].Level != zapcore.WarnLevel {
		t.Fatalf("%d warnings, want 1:\n%s", len(warned), h.dumpLogs())
	}
	timeout := h.logs.FilterMessage("daemon not ready within ready_timeout: killing it; its restart policy decides what follows").All()
	if why, _ := timeout[0].ContextMap()["last_probe_error"].(string); !strings.Contains(why, "exec /nonexistent/probe") {
		t.Errorf("last_probe_error = %q", why)
	}
}

// A daemon able to write to the ready file's directory cannot make root write through a
// symlink it put at the path, nor freeze the loop with a FIFO there.
func TestReadyFileIsNotWrittenThroughWhatADaemonPutThere(t *testing.T) {
	for _, plant := range []string{"ln -sf VICTIM READY", "mkfifo READY"} {
		t.Run(strings.Fields(plant)[0], func(t *testing.T) {
			h := newHarness(t)
			dir := t.TempDir()
			h.readyFile = filepath.Join(dir, "ready")
			victim, planted := filepath.Join(dir, "victim"), filepath.Join(dir, "planted")
			if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			script := strings.NewReplacer("VICTIM", victim, "READY", h.readyFile).Replace(plant) + "; : >" + planted + "; exec sleep 30"
			d := shDaemon("evil", script)
			d.Ready, d.ReadyTimeout = config.Probe{File: planted}, testTimeout
			h.run([]config.Daemon{d}, nil)
			h.waitLog("evil", fsm.DaemonRunning)
			for deadline := time.Now().Add(testTimeout); ; time.Sleep(10 * time.Millisecond) {
				if info, err := os.Lstat(h.readyFile); err == nil && info.Mode().IsRegular() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no regular ready file:\n%s", h.dumpLogs())
				}
			}
			if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
				t.Errorf("the file the symlink pointed at holds %q", got)
			}
			if st := h.call("status", ""); !st.OK { // the loop still answers
				t.Errorf("status: %+v", st)
			}
			h.stopAndWant(0)
		})
	}
}

// A ready file that cannot be written when every daemon becomes ready (its directory not
// there yet) is tried again while they stay ready: health and the file must agree once the
// file can be written. A review saw health say ready for good with no file.
func TestReadyFileIsWrittenOnceItCanBe(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "later")
	h.readyFile = filepath.Join(dir, "all-ready")
	h.run([]config.Daemon{fake(t, h, "svc", time.Second)}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	h.waitMessage("could not write the ready file; trying again while every daemon is ready (after 1 s, doubling to 30 s)")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.waitMessage("wrote the ready file")
	if _, err := os.Stat(h.readyFile); err != nil {
		t.Fatalf("logged as written, but: %v", err)
	}
	h.stopAndWant(0)
	if _, err := os.Stat(h.readyFile); !os.IsNotExist(err) {
		t.Errorf("the ready file outlived the shutdown: %v", err)
	}
}

func TestReadyFileRetryAfter(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 100: 30 * time.Second} {
		if got := readyFileRetryAfter(n); got != want {
			t.Errorf("after failure %d: %v, want %v", n, got, want)
		}
	}
}

// A readiness exec probe that passed as ready_timeout came, its SIGCHLD not come through
// yet: the daemon is ready, not killed as a failed start (found by a review).
func TestExecProbePassedAtReadyTimeoutCounts(t *testing.T) {
	s, d, logs := livingDaemon(t, config.Daemon{Name: "web", Command: []string{"/bin/sh", "-c", "exec sleep 1000"},
		Ready: config.Probe{Exec: []string{"/bin/true"}}, ReadyTimeout: time.Hour, Grace: time.Second})
	s.opts.Signals.Child = make(chan os.Signal, 1) // empty: the SIGCHLD is on its way
	s.spawn(d, time.Now())                         // its first attempt too
	t.Cleanup(func() {
		_ = syscall.Kill(-d.pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(d.pid, &ws, 0, nil)
	})
	if len(s.execProbes) != 1 {
		t.Fatalf("%d exec probes, want 1", len(s.execProbes))
	}
	for pid := range s.execProbes {
		waitReapable(t, pid) // it passed
	}
	s.onTimer(d.readyDeadline)
	if n := logs.FilterMessage("daemon not ready within ready_timeout: killing it; its restart policy decides what follows").Len(); n != 0 || d.machine.Current() != fsm.DaemonRunning {
		t.Fatalf("state %s: the daemon whose probe had passed was not made ready", d.machine.Current())
	}
}
