package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
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

func TestReadyTimeoutIsAFailedStart(t *testing.T) {
	h := newHarness(t)
	never := fake(t, h, "never-ready", time.Second)
	never.Ready = config.Probe{File: "/nonexistent/ready"}
	never.ReadyTimeout = 300 * time.Millisecond
	h.run([]config.Daemon{never}, nil)
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit %d, want 137 (SIGKILLed for not being ready)", code)
	}
	if len(h.logs.FilterMessage("daemon not ready within ready_timeout: killing it; its restart policy decides what follows").All()) != 1 {
		t.Fatalf("no clear log line:\n%s", h.dumpLogs())
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

func TestReverseStopOrderWithinTheLargestGrace(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	upstream := fake(t, h, "upstream", time.Second, "-ignore-stop")
	downstream := fake(t, h, "downstream", 600*time.Millisecond, "-ignore-stop")
	downstream.After = []string{"upstream"}
	h.run([]config.Daemon{upstream, downstream}, nil)
	h.waitRecord("upstream started", "downstream started")
	h.waitLog("downstream", "running")
	start := time.Now()
	h.stop <- syscall.SIGTERM
	h.exitCode()
	took := time.Since(start)
	// The dependent went first; its dependency was stopped only once it was gone.
	downDied, upStop := h.logIndex("downstream", "died"), h.logIndex("upstream", "stop")
	if downDied < 0 || upStop < downDied {
		t.Fatalf("upstream stopped (line %d) before downstream died (line %d):\n%s", upStop, downDied, h.dumpLogs())
	}
	// Both ignore SIGTERM: downstream is killed at its 600 ms grace, then upstream is stopped.
	// One whole grace after the other would take 1.6 s; the overall deadline is the largest
	// grace (upstream's 1 s), so the whole shutdown takes about 1 s.
	if took > 1300*time.Millisecond {
		t.Fatalf("reverse-order shutdown took %v, want within the largest grace (1 s)", took)
	}
	t.Logf("reverse-order shutdown of two stubborn daemons: %v", took.Round(time.Millisecond))
}
