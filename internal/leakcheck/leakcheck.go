// Package leakcheck fails a test binary that leaves goroutines running after its tests: a
// hand-made stand-in for go.uber.org/goleak, so that no test-only module lands in the main
// go.mod. Every package's TestMain calls it:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
//
// It lives in the module's top-level internal/ (not under cmd/sidecar-init/internal) so that
// fsm and procs may import it too: Go's internal rule lets only the tree rooted at an
// internal directory's parent import it.
package leakcheck

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Settle is how long Run waits for goroutines to finish before it calls them leaked: a test
// that has just closed a channel or stopped a timer may leave a goroutine a few scheduling
// rounds from its return.
const Settle = 2 * time.Second

// ignored are frames of goroutines that belong to the runtime, the testing framework or
// os/signal, never to a test. A goroutine is ignored when any of its frames starts with one.
var ignored = []string{
	"os/signal.signal_recv", // os/signal's loop, started by the first signal.Notify, lives forever
	"os/signal.loop",
	"runtime.ensureSigM", // the runtime's signal mask thread (signal.Notify, signal.Ignore)
	// procs.AsUser's worker: one locked thread, kept for the process's life on purpose.
	"github.com/claude-bottle/sidecar-init/procs.asUserWorker",
	"testing.(*M).",
	"testing.tRunner", // a test's own goroutine, when a caller checks before m.Run returns
	"testing.runTests",
	"testing.(*F).",
	"testing.runFuzzing",
	"testing.runFuzzTests",
	"internal/fuzz.", // the fuzzing engine's coordinator and worker goroutines
}

// Runner is what *testing.M offers TestMain.
type Runner interface{ Run() int }

// Run runs the tests and, when they passed, checks for leaked goroutines: it prints their
// stacks and returns 1 if any are still there after Settle. A failed run is returned as it
// is: its goroutines may be stuck because of the failure, and the failure says more.
func Run(m Runner) int {
	return run(m, Settle, os.Stderr)
}

func run(m Runner, settle time.Duration, report io.Writer) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if leaks := Leaked(settle); len(leaks) > 0 {
		// Nothing to do about a failed write to stderr: the status still says it failed.
		_, _ = fmt.Fprintf(report, "leakcheck: %d goroutine(s) still running after the tests (waited %v):\n\n%s\n",
			len(leaks), settle, strings.Join(leaks, "\n\n"))
		return 1
	}
	return 0
}

// Leaked returns the stacks of the goroutines other than the caller's that are not on the
// ignore list, retrying with a growing pause until none is left or wait has passed.
func Leaked(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	pause := time.Millisecond
	for {
		leaks := snapshot()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// snapshot parses runtime.Stack(all): goroutines are separated by blank lines, and the
// first one is always the caller's own.
func snapshot() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	blocks := bytes.Split(bytes.TrimSpace(buf), []byte("\n\n"))
	var leaks []string
	for _, block := range blocks[1:] {
		if !isIgnored(string(block)) {
			leaks = append(leaks, string(block))
		}
	}
	return leaks
}

func isIgnored(stack string) bool {
	lines := strings.Split(stack, "\n")
	// lines[0] is "goroutine N [state]:"; then a function line and a file line per frame.
	for i := 1; i < len(lines); i += 2 {
		frame := strings.TrimPrefix(lines[i], "created by ")
		for _, prefix := range ignored {
			if strings.HasPrefix(frame, prefix) {
				return true
			}
		}
	}
	return false
}
