package procs

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// SetOpenFilesLimit makes n the soft limit on open files (RLIMIT_NOFILE) of this process,
// and so of every daemon spawned after it: children inherit it. (The Go runtime raises its
// own soft limit to the hard one at start and puts the original back in each child, so
// without this a daemon gets whatever the container was started with, often 1024; once a
// program sets the limit itself, its children get that.) Past the hard limit it raises
// the hard limit too, which takes CAP_SYS_RESOURCE (not in Docker's default set) and n
// within fs.nr_open; failing that, the soft limit is the hard one, and the error says why.
// It returns the soft limit the daemons get.
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
	why := "it takes CAP_SYS_RESOURCE; raise the container's limit instead (docker run --ulimit nofile=N:N)"
	if errors.Is(raiseErr, syscall.EPERM) && hasSysResource() {
		why = "past fs.nr_open, the kernel's most"
	}
	return lim.Max, fmt.Errorf("%w: %d asked for, %d is the hard limit (%w: %s)", ErrLimitClamped, n, lim.Max, raiseErr, why)
}

// ErrLimitClamped says SetOpenFilesLimit set less than was asked for.
var ErrLimitClamped = errors.New("open-files limit not raised as far as asked")

// hasSysResource says this process has CAP_SYS_RESOURCE in its effective set.
func hasSysResource() bool {
	header := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&header, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}
