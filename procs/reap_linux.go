package procs

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exit is one reaped process: its pid and its wait status.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
}

// Code is the status a shell would give: the exit code, or 128+signal for a signal death.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// Signal is the signal that killed the process, if one did.
func (e Exit) Signal() (syscall.Signal, bool) {
	if e.Status.Signaled() {
		return e.Status.Signal(), true
	}
	return 0, false
}

// ReapAll reaps every child that has exited, calling onExit for each, until none is left to
// reap right now. SIGCHLD coalesces (many exits arrive as one signal) and can be spurious,
// so one signal means "drain", never "one child". It returns whether any child remains
// (false once wait4 says ECHILD). It never blocks.
//
// wait4 also reports a ptrace stop of a child that made this process its tracer
// (PTRACE_TRACEME, as an anti-debugger check does), without WUNTRACED: the child is alive
// and stopped, not reaped. It goes to onTraceStop (nil: dropped), never to onExit, which
// would take it for a death with status -1.
func ReapAll(onExit func(Exit), onTraceStop func(Exit)) (childrenLeft bool, err error) {
	for {
		var ws unix.WaitStatus
		pid, err := wait4NoHang(&ws)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return false, nil
		case err != nil:
			return true, fmt.Errorf("wait4: %w", err)
		case pid == 0:
			return true, nil
		}
		if !ws.Exited() && !ws.Signaled() {
			if onTraceStop != nil {
				onTraceStop(Exit{Pid: pid, Status: ws})
			}
			continue
		}
		onExit(Exit{Pid: pid, Status: ws})
	}
}

// wait4NoHang is wait4(-1, ws, WNOHANG, nil) made as a raw system call. WNOHANG never
// blocks, so the runtime's bookkeeping for a call that might (entersyscall/exitsyscall,
// which unix.Wait4 pays) buys nothing here, and ReapAll makes one call per exit: 5000
// for the 5000 orphans of the benchmark.
func wait4NoHang(ws *unix.WaitStatus) (int, error) {
	anyChild := -1
	pid, _, errno := unix.RawSyscall6(unix.SYS_WAIT4, uintptr(anyChild), uintptr(unsafe.Pointer(ws)), unix.WNOHANG, 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(pid), nil
}

// Exited says our child pid has exited and waits to be reaped, without reaping it
// (WNOWAIT): the reap stays the loop's, in its order. For a decision that a death already
// under way would make wrong, such as stopping a daemon because a probe found it gone.
func Exited(pid int) bool {
	if pid <= 0 {
		return false
	}
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo == int32(syscall.SIGCHLD)
}
