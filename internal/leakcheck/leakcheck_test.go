package leakcheck

import (
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// leakyWorker blocks until release is closed: a named function, so the stack names it.
func leakyWorker(release chan struct{}, started chan struct{}) {
	close(started)
	<-release
}

func TestLeakedFindsABlockedGoroutineAndForgetsItOnceItEnds(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	go leakyWorker(release, started)
	<-started

	leaks := Leaked(50 * time.Millisecond)
	if !anyContains(leaks, "leakcheck.leakyWorker") {
		t.Fatalf("a goroutine blocked in leakyWorker was not reported; reported:\n%s", strings.Join(leaks, "\n\n"))
	}
	close(release)
	if leaks := Leaked(Settle); anyContains(leaks, "leakcheck.leakyWorker") {
		t.Fatalf("leakyWorker returned, and is still reported:\n%s", strings.Join(leaks, "\n\n"))
	}
}

// fakeM stands in for *testing.M: its Run starts a goroutine that outlives it, or not.
type fakeM struct {
	code    int
	leak    bool
	release chan struct{}
}

func (m *fakeM) Run() int {
	if m.leak {
		started := make(chan struct{})
		go leakyWorker(m.release, started)
		<-started
	}
	return m.code
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		m          *fakeM
		want       int
		wantReport string // "" means nothing may be printed
	}{
		{"clean pass", &fakeM{code: 0}, 0, ""},
		{"a leak fails a passing run", &fakeM{code: 0, leak: true}, 1, "leakcheck.leakyWorker"},
		{"a failed run keeps its own status", &fakeM{code: 3, leak: true}, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.release = make(chan struct{})
			defer close(tc.m.release)
			var report strings.Builder
			// A short settle, so the leaking case does not take 2 s.
			if got := run(tc.m, 100*time.Millisecond, &report); got != tc.want {
				t.Errorf("run = %d, want %d", got, tc.want)
			}
			if tc.wantReport == "" && report.Len() > 0 || !strings.Contains(report.String(), tc.wantReport) {
				t.Errorf("report %q, want one containing %q", report.String(), tc.wantReport)
			}
		})
	}
}

func TestSignalAndTimerGoroutinesAreNotLeaks(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2) // starts os/signal's loop goroutine for good
	defer signal.Stop(c)
	timer := time.AfterFunc(time.Hour, func() {})
	defer timer.Stop()
	if leaks := Leaked(50 * time.Millisecond); len(leaks) > 0 {
		t.Fatalf("reported as leaks:\n%s", strings.Join(leaks, "\n\n"))
	}
}

func anyContains(stacks []string, fragment string) bool {
	for _, s := range stacks {
		if strings.Contains(s, fragment) {
			return true
		}
	}
	return false
}
