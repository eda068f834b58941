package procs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// SignalGroup sends sig to every process in the process group pgid. It reports whether the
// group had anyone in it: ESRCH means the group is already empty, which during shutdown is
// the good news (tini treats it the same way: "child was already dead").
func SignalGroup(pgid int, sig syscall.Signal) (delivered bool, err error) {
	if pgid <= 1 {
		// kill(0) and kill(-1) mean "my group" and "everyone": never what a caller wants here.
		return false, fmt.Errorf("refusing to signal process group %d", pgid)
	}
	switch err := unix.Kill(-pgid, sig); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ESRCH):
		return false, nil
	default:
		return false, fmt.Errorf("signal %s to process group %d: %w", SignalName(sig), pgid, err)
	}
}

// GroupAlive reports whether any process, zombies included, is still in process group pgid
// (kill with signal 0 checks without sending anything).
func GroupAlive(pgid int) bool {
	delivered, err := SignalGroup(pgid, 0)
	// EPERM would mean someone is there that we may not signal: still alive.
	return delivered || err != nil
}

// KillEveryone sends sig to every process this process may signal except itself. Only for
// PID 1 of a PID namespace, where "everyone" is the container.
func KillEveryone(sig syscall.Signal) error {
	if err := unix.Kill(-1, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %s to every process: %w", SignalName(sig), err)
	}
	return nil
}

// ParseSignal accepts a signal name with or without the SIG prefix, in any case
// ("SIGTERM", "term", "Hup").
func ParseSignal(name string) (syscall.Signal, error) {
	trimmed := strings.TrimSpace(name)
	if trimmed == "" {
		return 0, errors.New("empty signal name")
	}
	for i := 0; i < len(trimmed); i++ {
		// ASCII only: strings.ToUpper would turn "ſigterm" and "kıll" into real names.
		if trimmed[i] >= 0x80 {
			return 0, fmt.Errorf("unknown signal name %q (signal names are ASCII, such as SIGTERM)", name)
		}
	}
	trimmed = strings.ToUpper(trimmed)
	if !strings.HasPrefix(trimmed, "SIG") {
		trimmed = "SIG" + trimmed
	}
	sig := unix.SignalNum(trimmed)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal name %q (want a name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1)", name)
	}
	return sig, nil
}

// SignalName is the signal's name as logs show it, e.g. "SIGKILL".
func SignalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return fmt.Sprintf("SIG%d", int(sig))
}
