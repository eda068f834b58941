package procs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// SetOpenFilesLimit makes n the soft limit on open files (RLIMIT_NOFILE) of this process,
// and so of every daemon spawned after it: children inherit it. (The Go runtime raises its
// own soft limit to just under the hard one at start and puts the original back in each
// child, so without this a daemon gets whatever the container was started with, often
// 1024; once a program sets the limit itself, its children get that.) This process runs
// with n too: the caller keeps n above what it needs itself. Past the hard limit it raises
// the hard limit too, which takes CAP_SYS_RESOURCE in the initial user namespace (not in
// Docker's default set) and n within fs.nr_open; failing that, the soft limit is the hard
// one, and the error says why. It returns the soft limit the daemons get.
func SetOpenFilesLimit(n uint64) (soft uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	raiseErr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if raiseErr == nil {
		return n, nil
	}
	if n <= lim.Max {
		return 0, fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", n, raiseErr)
	}
	// Not allowed past the hard limit: as far as it goes.
	clamped := syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &clamped); err != nil {
		return 0, fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", lim.Max, err)
	}
	why := "raising the hard limit takes CAP_SYS_RESOURCE (in the initial user namespace); raise the container's limit instead (docker run --ulimit nofile=N:N)"
	if nrOpen, ok := kernelMostOpenFiles(); ok && n > nrOpen {
		why = fmt.Sprintf("past fs.nr_open, %d, the most the kernel allows any process", nrOpen)
	}
	return lim.Max, fmt.Errorf("%w: %d asked for, %d is the hard limit (%w: %s)", ErrLimitClamped, n, lim.Max, raiseErr, why)
}

// ErrLimitClamped says SetOpenFilesLimit set less than was asked for.
var ErrLimitClamped = errors.New("open-files limit not raised as far as asked")

// kernelMostOpenFiles is fs.nr_open: no process may have a higher limit, root or not.
func kernelMostOpenFiles() (uint64, bool) {
	data, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return n, err == nil
}
