package procs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper marks this process a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER):
// orphaned descendants are re-parented to it instead of to PID 1, so it reaps them and
// sees them exit, exactly as it would as PID 1.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// Children lists this process's live children (zombies included), read from
// /proc/self/task/*/children: the kernel files each child under the thread that forked it,
// and a Go program forks from many threads.
func Children() ([]int, error) {
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			// A thread may have exited since the glob: its children moved to another.
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}
