package supervisor

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// gatedReadyFile is a real ready file whose operations a test makes block, as on a mount
// that stopped answering (a hung NFS server, a stuck FUSE daemon), or whose removals it
// makes fail, as on a volume's passing error.
type gatedReadyFile struct {
	readyFileOps
	mu         sync.Mutex
	hang       chan struct{} // non-nil: each call waits until it is closed
	failRemove error
	writes     int
	stuck      chan struct{} // a call is waiting on hang (one slot, not closed)
}

func newGatedReadyFile() *gatedReadyFile { return &gatedReadyFile{stuck: make(chan struct{}, 1)} }

// hangFromNow makes every call from now on wait, until the test ends.
func (g *gatedReadyFile) hangFromNow(t *testing.T) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hang = make(chan struct{})
	t.Cleanup(func() { close(g.hang) }) // the worker must end, for the leak check
}

func (g *gatedReadyFile) setFailRemove(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failRemove = err
}

func (g *gatedReadyFile) enter() (failRemove error) {
	g.mu.Lock()
	hang, failRemove := g.hang, g.failRemove
	g.mu.Unlock()
	if hang != nil {
		select {
		case g.stuck <- struct{}{}:
		default:
		}
		<-hang
	}
	return failRemove
}

func (g *gatedReadyFile) Write(content []byte) error {
	_ = g.enter() // (fails removals only)
	g.mu.Lock()
	g.writes++
	g.mu.Unlock()
	return g.readyFileOps.Write(content)
}

func (g *gatedReadyFile) Remove() error {
	if err := g.enter(); err != nil {
		return err
	}
	return g.readyFileOps.Remove()
}

func (g *gatedReadyFile) writeCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// waitFile waits until the file at path is there (want) or not.
func waitFile(t *testing.T, h *harness, path string, want bool, what string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		_, err := os.Stat(path)
		if (err == nil) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the ready file there = %v, want %v\n%s", what, err == nil, want, h.dumpLogs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runWithGatedReadyFile runs "steady" and "crasher", which exits 3 once the file gate is
// made, with a ready file the test can make hang or fail (gated); it returns once both are
// running and the file says so.
func runWithGatedReadyFile(t *testing.T) (h *harness, gated *gatedReadyFile, gate string) {
	t.Helper()
	h = newHarness(t)
	h.readyFile = filepath.Join(t.TempDir(), "ready")
	gated = newGatedReadyFile()
	h.wrapReadyFile = func(f readyFileOps) readyFileOps { gated.readyFileOps = f; return gated }
	gate = filepath.Join(t.TempDir(), "gate")
	crasher := shDaemon("crasher", "while [ ! -e "+gate+" ]; do sleep 0.01; done; exit 3")
	h.run([]config.Daemon{fake(t, h, "steady", time.Second), crasher}, nil)
	waitFile(t, h, h.readyFile, true, "both daemons running")
	return h, gated, gate
}

// A ready file on a mount that stops answering must hold up nothing but itself: the loop
// still answers the control socket, a stop signal still stops every daemon, and the exit
// waits 300 ms at most for the last removal, saying so. A review saw the loop frozen in
// the removal, SIGTERM ignored and the daemons never stopped.
func TestReadyFileOnAHungMountHoldsUpNothing(t *testing.T) {
	h, gated, gate := runWithGatedReadyFile(t)

	gated.hangFromNow(t)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select { // crasher's death: not ready any more, and the removal hangs
	case <-gated.stuck:
	case <-time.After(testTimeout):
		t.Fatalf("no removal after crasher's death:\n%s", h.dumpLogs())
	}
	c := control.Call{Request: control.Request{Cmd: control.CmdHealth}, Reply: make(chan control.Response, 1)}
	select {
	case h.calls <- c:
	case <-time.After(5 * time.Second):
		t.Fatalf("the loop took no control request while the ready file's removal hung:\n%s", h.dumpLogs())
	}
	if resp := <-c.Reply; resp.OK {
		t.Errorf("health = %+v with crasher dead", resp)
	}

	h.stop <- syscall.SIGTERM
	select {
	case code := <-h.done:
		if code != 3 {
			t.Errorf("exit %d, want crasher's 3", code)
		}
	case <-time.After(3 * time.Second): // steady's 1 s grace, and 2 s
		t.Fatalf("no exit within the grace and 2 s of SIGTERM while the ready file hung:\n%s", h.dumpLogs())
	}
	if !h.hasTransition("steady", "exited") {
		t.Errorf("steady was not stopped:\n%s", h.dumpLogs())
	}
	if h.logs.FilterMessage("the ready file was not removed in time at exit: its file system does not answer; it may still say ready").Len() != 1 {
		t.Errorf("the exit did not say the ready file may still be there:\n%s", h.dumpLogs())
	}
}

// A removal that fails (a volume's passing error: EIO, ESTALE) is tried again, as a write
// is: the file must not keep saying ready while `health` says not. A review saw it stay
// for good after one failure.
func TestReadyFileRemovalIsRetried(t *testing.T) {
	h, gated, gate := runWithGatedReadyFile(t)

	gated.setFailRemove(syscall.EIO)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitMessage("could not remove the ready file")
	if _, err := os.Stat(h.readyFile); err != nil {
		t.Fatalf("the removal failed, yet: %v", err)
	}
	gated.setFailRemove(nil) // the volume is back
	waitFile(t, h, h.readyFile, false, "the volume back, crasher still dead")
	h.waitMessage("removed the ready file")
	if got := h.logs.FilterMessage("removed the ready file").All()[0].ContextMap()["failed_attempts"]; got != int64(1) {
		t.Errorf("failed_attempts = %v, want 1", got)
	}
	h.stopAndWant(3)
}

// A write that failed is not tried again once the loop's word is "not ready": a retry
// applies the latest word, a removal here, never the write that failed.
func TestReadyFileRetryTakesTheLatestWord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later") // not there yet: the write fails
	gated := newGatedReadyFile()
	gated.readyFileOps = openReadyFile(filepath.Join(dir, "ready"))
	core, logs := observer.New(zapcore.DebugLevel)
	w := startReadyFileWorker(gated, zlog.New(core))
	defer func() {
		w.end()
		w.awaitEnd(time.Now().Add(testTimeout))
	}()
	w.set(true)
	for deadline := time.Now().Add(testTimeout); logs.FilterMessage("could not write the ready file; trying again while every daemon is ready (after 1 s, doubling to 30 s)").Len() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write did not fail")
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil { // a retry would now succeed
		t.Fatal(err)
	}
	w.set(false)
	time.Sleep(readyFileRetry + 500*time.Millisecond) // past the retry the failure armed
	if n := gated.writeCount(); n != 1 {
		t.Errorf("%d writes, want the one that failed", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
		t.Error("the ready file was written after the word was \"not ready\"")
	}
}

// A removal done before the exit's bound ran out is no "not removed in time", even when the
// wait for it begins past the bound (the drain of the log pipes beside it used it all): a
// review saw the warning at about half of such exits, the file gone each time, which sent
// an operator looking for a hung mount that was not there.
func TestReadyFileRemovedInTimeIsNotWarnedAbout(t *testing.T) {
	for range 20 {
		core, logs := observer.New(zapcore.DebugLevel)
		w := startReadyFileWorker(openReadyFile(filepath.Join(t.TempDir(), "ready")), zlog.New(core))
		w.end()
		<-w.done
		w.awaitEnd(time.Now().Add(-time.Second)) // past the bound
		if n := logs.FilterMessageSnippet("not removed in time").Len(); n != 0 {
			t.Fatalf("warned that a removal done in time was not: %v", logs.All())
		}
	}
}
