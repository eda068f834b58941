package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
)

// A daemon cancelled because its `after` daemon was done, then started by an operator and
// ended on its own, stays exited when the operator starts that daemon: its end was no
// cancellation. (Revived, it would wait in pending for ever for what its run left, which
// a daemon that stays dead keeps.)
func TestADaemonThatRanIsNotRevivedWithItsAfterDaemon(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	quit := filepath.Join(dir, "quit")
	ready := filepath.Join(dir, "db.ready")
	db := shDaemon("db", "rm -f "+ready+"; [ -e "+ok+" ] && touch "+ready+" && exec sleep 1000; exit 4")
	db.Ready, db.ReadyTimeout = config.Probe{File: ready}, 10*time.Second
	app := shDaemon("app", "sleep 1000 & while [ ! -e "+quit+" ]; do sleep 0.02; done; exit 0")
	app.After = []string{"db"}
	h.run([]config.Daemon{db, app, shDaemon("other", "exec sleep 1000")}, nil)
	h.waitState("app", "exited")                  // cancelled: db is done
	if resp := h.call("start", "app"); !resp.OK { // the operator runs it without db
		t.Fatalf("start app: %+v", resp)
	}
	h.waitState("app", "running")
	if err := os.WriteFile(quit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitState("app", "exited") // on its own, status 0, leaving `sleep 1000` (left alone)
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if resp := h.call("start", "db"); !resp.OK {
		t.Fatalf("start db: %+v", resp)
	}
	h.waitState("db", "running")
	time.Sleep(300 * time.Millisecond)
	if st := h.statusOf("app"); st.State != "exited" {
		t.Errorf("app is %s after `start db`, want exited: its own exit was not a cancellation\n%s", st.State, h.dumpLogs())
	}
	h.stopAndWant(4)
}

// While a restart by the policy waits for what the crashed run left, status says so
// (waiting_for_exit, the groups), not a row like that of a daemon with nothing scheduled.
func TestStatusShowsARestartWaitingForLeftovers(t *testing.T) {
	h := newHarness(t)
	svc := shDaemon("svc", "(trap '' TERM; exec sleep 1000) & sleep 0.1; exit 3")
	svc.Restart, svc.BackoffInitial, svc.BackoffMax, svc.BackoffReset = "on-failure", 10*time.Millisecond, time.Second, time.Hour
	svc.Grace = 2 * time.Second
	h.run([]config.Daemon{svc, shDaemon("other", "exec sleep 1000")}, nil)
	deadline := time.Now().Add(testTimeout)
	for len(h.logs.FilterMessage("restart waits for the processes its last run left to exit").All()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no wait:\n%s", h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := h.statusOf("svc")
	row, _ := json.Marshal(st) // as `status --json` prints it
	if st.State == "backoff" && st.NextRestartIn == "" && !strings.Contains(string(row), "waiting_for") {
		t.Errorf("status of a restart waiting for its last run's processes says nothing of it: %s", row)
	}
	h.stopAndWant(3)
}

// An operator's start that waits for what the last run left shows that in status, not the
// `after` daemons, which it does not wait for.
func TestStatusOfAnOperatorStartWaitingForLeftovers(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	ready := filepath.Join(dir, "db.ready")
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	db := shDaemon("db", "rm -f "+ready+"; [ -e "+ok+" ] && touch "+ready+"; exec sleep 1000")
	db.Ready, db.ReadyTimeout = config.Probe{File: ready}, time.Minute
	svc := shDaemon("svc", "(trap '' TERM; exec sleep 1000) & exec sleep 1000")
	svc.After, svc.Grace = []string{"db"}, 3*time.Second
	h.run([]config.Daemon{db, svc}, nil)
	h.waitState("svc", "running")
	time.Sleep(300 * time.Millisecond) // (its leftover's trap is set)
	if err := os.Remove(ok); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(ready)                           // (a file probe's first attempt, at the spawn, would pass on it)
	if resp := h.call("restart", "db"); !resp.OK { // db: starting, not ready
		t.Fatalf("restart db: %+v", resp)
	}
	if resp := h.call("restart", "svc"); !resp.OK {
		t.Fatalf("restart svc: %+v", resp)
	}
	h.waitState("svc", "pending")
	st := h.statusOf("svc")
	h.waitState("svc", "running") // spawned with db still not ready
	if db := h.statusOf("db"); db.State != "starting" {
		t.Errorf("db %+v", db)
	}
	if len(st.WaitingFor) > 0 {
		t.Errorf("while pending, status said svc waits for %v; it started with db not ready", st.WaitingFor)
	}
	h.stopAndWant(0)
}

// Once the shutdown has begun, health answers "not ready", as the ready file (gone) does,
// even while a daemon a reverse-order shutdown holds back still runs and its dependent is
// held stopped.
func TestHealthDuringTheShutdownAgreesWithTheReadyFile(t *testing.T) {
	h := newHarness(t)
	h.reverseStop = true
	h.readyFile = filepath.Join(t.TempDir(), "ready")
	a := shDaemon("a", "exec sleep 1000")
	b := shDaemon("b", "(trap '' TERM; exec sleep 1000) & exec sleep 1000")
	b.After, b.Grace = []string{"a"}, 2*time.Second
	h.run([]config.Daemon{a, b}, nil)
	h.waitState("b", "running")
	time.Sleep(300 * time.Millisecond) // (its leftover's trap is set)
	if resp := h.call("stop", "b"); !resp.OK {
		t.Fatalf("stop b: %+v", resp)
	}
	h.waitState("b", "stopped") // its leftover ignores SIGTERM: in its grace
	h.stop <- syscall.SIGTERM
	deadline := time.Now().Add(testTimeout)
	for len(h.transitions("supervisor", "stop")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Removed by the worker as the shutdown begins; b's leftover holds the shutdown for its
	// 2 s grace.
	waitFile(t, h, h.readyFile, false, "the shutdown under way")
	select {
	case code := <-h.done:
		t.Errorf("the ready file went only once the shutdown was over:\n%s", h.dumpLogs())
		h.done <- code
	default:
	}
	if resp := h.call("health", ""); resp.OK {
		t.Errorf("health during the shutdown = %+v, but the ready file is gone", resp)
	}
	h.exitCode()
}

// A second `restart` while the first one waits for what the last run left counts once in
// RESTARTS: one new run follows both.
func TestRepeatedRestartWhileWaitingCountsOnce(t *testing.T) {
	h := newHarness(t)
	svc := shDaemon("svc", "(trap '' TERM; exec sleep 1000) & exec sleep 1000")
	svc.Grace = time.Second
	h.run([]config.Daemon{svc, shDaemon("other", "exec sleep 1000")}, nil)
	h.waitState("svc", "running")
	time.Sleep(300 * time.Millisecond) // (its leftover's trap is set)
	for range 3 {
		if resp := h.call("restart", "svc"); !resp.OK {
			t.Fatalf("restart: %+v", resp)
		}
		h.waitState("svc", "pending")
	}
	h.waitTransitions("svc", "spawn", 2)
	if st := h.waitState("svc", "running"); st.Restarts != 1 {
		t.Errorf("RESTARTS %d after one new run, want 1", st.Restarts)
	}
	h.stopAndWant(0)
}
