package procs

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// softLimitOfAChild is the open-files soft limit a child of this process gets.
func softLimitOfAChild(t *testing.T) uint64 {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "ulimit -Sn").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("ulimit -Sn printed %q", out)
	}
	return n
}

// keepLimit puts this process's open-files limit back at the test's end.
func keepLimit(t *testing.T) syscall.Rlimit {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	return lim
}

// Children get the limit set, not the one the Go runtime would put back in them.
func TestSetOpenFilesLimitReachesChildren(t *testing.T) {
	lim := keepLimit(t)
	want := min(lim.Max, 4242)
	soft, err := SetOpenFilesLimit(want)
	if err != nil || soft != want {
		t.Fatalf("SetOpenFilesLimit(%d) = %d, %v", want, soft, err)
	}
	if got := softLimitOfAChild(t); got != want {
		t.Errorf("a child's soft limit is %d, want %d", got, want)
	}
}

// Past what the kernel allows (fs.nr_open, even for root), the hard limit is the soft
// one, and the error says it was clamped.
func TestSetOpenFilesLimitPastTheKernelsMostIsClamped(t *testing.T) {
	lim := keepLimit(t)
	data, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		t.Skipf("no fs.nr_open to go past: %v", err)
	}
	nrOpen, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	soft, err := SetOpenFilesLimit(nrOpen + 1)
	if !errors.Is(err, ErrLimitClamped) || soft != lim.Max || !strings.Contains(err.Error(), "past fs.nr_open") {
		t.Fatalf("SetOpenFilesLimit(nr_open+1) = %d, %v; want %d (the hard limit) and ErrLimitClamped, naming fs.nr_open", soft, err, lim.Max)
	}
	if got := softLimitOfAChild(t); got != lim.Max {
		t.Errorf("a child's soft limit is %d, want the hard limit %d", got, lim.Max)
	}
}
