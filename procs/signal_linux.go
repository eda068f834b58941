package procs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
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

// LeadsAGroup reports whether process pid exists (a zombie too) and leads a process group of
// its own: /proc/PID/stat's pgrp is pid. Asked about a group whose leader this process has
// reaped, yes means the id was reused: a new process took the pid and made a group of it
// (setsid, setpgid, a spawn), and what is in that group now is not the old one's. False
// when /proc cannot tell: missing, or mounted for another PID namespace than ours (as
// under `unshare --pid` without --mount-proc), where its pid N is another process.
func LeadsAGroup(pid int) bool {
	return pid > 1 && procIsOurs() && leadsAGroup(pid)
}

// leadsAGroup is LeadsAGroup once /proc is known to be ours.
func leadsAGroup(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	pgrp, ok := statPgrp(stat)
	return ok && pgrp == pid
}

// GroupReused reports whether process group pgid, whose leader this process has reaped, is
// another group now: the id was reused once the group emptied unseen (its last process
// moved out with setsid). Yes when a process leads a group of that id (LeadsAGroup), or
// when the group's processes are in another session than ours: daemons are spawned with
// setpgid, never setsid, so everything in a daemon's group shares sidecar-init's session,
// while a reused id made with setsid is in a session of its own, even once its leader has
// gone (a double fork). A group all in our session is taken as the daemon's. False when
// /proc cannot tell (see LeadsAGroup).
func GroupReused(pgid int) bool {
	if pgid <= 1 || !procIsOurs() {
		return false
	}
	if leadsAGroup(pgid) {
		return true
	}
	ours, err := unix.Getsid(0)
	if err != nil {
		return false
	}
	// A group lives in one session: one member tells. Our children first: a dead daemon's
	// leftovers come to us (PID 1, or subreaper), and so does the worker of a double fork,
	// so this is nearly always found there, without reading every process of the machine
	// (a review measured 53 ms for 3000 of them, in the loop, at every orphan's reap).
	kids, _ := Children()
	for _, pid := range kids {
		if sid, member := sessionIfIn(strconv.Itoa(pid), pgid); member {
			return sid != ours
		}
	}
	dir, err := os.Open("/proc")
	if err != nil {
		return false
	}
	defer func() { _ = dir.Close() }() // read-only: nothing to lose
	names, err := dir.Readdirnames(-1) // unsorted: the order does not matter
	if err != nil {
		return false
	}
	for _, name := range names {
		if _, err := strconv.Atoi(name); err != nil {
			continue
		}
		if sid, member := sessionIfIn(name, pgid); member {
			return sid != ours
		}
	}
	return false
}

// sessionIfIn reads process pid's session when it is in process group pgid.
func sessionIfIn(pid string, pgid int) (sid int, member bool) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false // gone since the listing
	}
	pgrp, sid, ok := statGroup(stat)
	return sid, ok && pgrp == pgid
}

// statPgrp reads the pgrp field of /proc/PID/stat.
func statPgrp(stat []byte) (int, bool) {
	return statField(stat, 2)
}

// statGroup reads the pgrp and session fields of /proc/PID/stat.
func statGroup(stat []byte) (pgrp, session int, ok bool) {
	pgrp, ok = statField(stat, 2)
	if !ok {
		return 0, 0, false
	}
	session, ok = statField(stat, 3)
	return pgrp, session, ok
}

// statField reads the numeric field i after comm in /proc/PID/stat: "pid (comm) state ppid
// pgrp session ..." (state is 0, pgrp 2, session 3). comm may hold spaces and parentheses,
// so the fields are counted from its last ')'.
func statField(stat []byte, i int) (int, bool) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) <= i {
		return 0, false
	}
	n, err := strconv.Atoi(fields[i])
	return n, err == nil
}

// procIsOurs says /proc is mounted for this process's PID namespace: /proc/self names our
// own pid. Asked each time: a container may mount /proc after we start.
func procIsOurs() bool {
	self, err := os.Readlink("/proc/self")
	return err == nil && self == strconv.Itoa(os.Getpid())
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
	if sig == 0 && strings.HasPrefix(trimmed, "SIGRT") {
		sig = realtimeSignalNum(trimmed)
	}
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal name %q (want a name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1)", name)
	}
	return sig, nil
}

// SignalName is the signal's name as logs show it, e.g. "SIGKILL", or "SIGRTMIN+3" for a
// real-time signal.
func SignalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	switch {
	case sig == sigRTMin:
		return "SIGRTMIN"
	case sig == sigRTMax:
		return "SIGRTMAX"
	case sig > sigRTMin && sig <= sigRTMin+15:
		return fmt.Sprintf("SIGRTMIN+%d", int(sig-sigRTMin))
	case sig > sigRTMin+15 && sig < sigRTMax:
		return fmt.Sprintf("SIGRTMAX-%d", int(sigRTMax-sig))
	}
	return fmt.Sprintf("SIG%d", int(sig))
}

// The real-time signals as the C library numbers them and `kill -l` names them: SIGRTMIN
// is 34 because glibc's threads keep 32 and 33 for themselves. Names run SIGRTMIN,
// SIGRTMIN+1 … SIGRTMIN+15, SIGRTMAX-14 … SIGRTMAX-1, SIGRTMAX.
const (
	sigRTMin syscall.Signal = 34
	sigRTMax syscall.Signal = 64
)

// RuntimeSignals are the signals the Go runtime keeps for itself: no Go program can catch
// them. SIGURG preempts goroutines, SIGPROF drives the profiler, 32 and 33 are glibc's (and
// the runtime's) thread signals, and 34, SIGRTMIN, is musl's (golang/go#39343). The runtime
// handles 33 and leaves 32 and SIGRTMIN at their default action: as PID 1 the kernel drops
// them, but outside PID 1 they end the process, as they would any program that does not
// handle them (a review measured both: exit statuses 160 and 162).
var RuntimeSignals = []syscall.Signal{unix.SIGURG, unix.SIGPROF, 32, 33, sigRTMin}

// realtimeSignalNum is the real-time signal named exactly as SignalName spells it, or 0:
// one spelling per signal, so "SIGRTMAX-27" is not another name for SIGRTMIN+3.
func realtimeSignalNum(name string) syscall.Signal {
	for sig := sigRTMin; sig <= sigRTMax; sig++ {
		if SignalName(sig) == name {
			return sig
		}
	}
	return 0
}

// What sidecar-init does with each signal. Every signal is in exactly one of these sets, or
// is SIGCHLD (reaping), or is one of RuntimeSignals, or is SIGKILL or SIGSTOP; a test holds
// the sets to that. Left to the Go runtime's defaults, a SIGHUP would end the process, and
// a SIGABRT, SIGSYS, SIGTRAP, SIGILL, SIGSTKFLT, SIGBUS, SIGFPE or SIGSEGV sent with kill
// would crash it with a stack dump: as PID 1, that takes the whole container down.
var (
	// StopSignals start the shutdown.
	StopSignals = []syscall.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGQUIT}
	// ForwardedSignals go to every live daemon's process group.
	ForwardedSignals = []syscall.Signal{unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGABRT, unix.SIGSTKFLT}
	// DroppedSignals are received and dropped. SIGPIPE comes from writing to a closed
	// stdout or stderr; the job-control stops would stop the supervisor (outside PID 1);
	// FaultSignals name a fault in the process that gets them, and sent with kill they mean
	// nothing to the daemons (tini does not forward them either).
	DroppedSignals = append([]syscall.Signal{unix.SIGPIPE, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU}, FaultSignals...)
	// FaultSignals are the signals the kernel sends a process that faulted. The supervisor
	// only ever sees them sent with kill (a real fault still crashes it, as it should).
	FaultSignals = []syscall.Signal{unix.SIGILL, unix.SIGTRAP, unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV, unix.SIGSYS}
	// IgnoredSignals are never asked for: the Go runtime ignores them until a program asks
	// (SIGCONT keeps its default, which only resumes a stopped process), so they can neither
	// hurt the supervisor nor reach the daemons; nothing in the bundle uses them. Asking
	// costs start-up time (os/signal makes a round trip through the runtime's signal-mask
	// thread for each): forwarding them too measured 0.2 to 0.3 ms slower at every start,
	// even when asked for beside the start-up.
	IgnoredSignals = append([]syscall.Signal{
		unix.SIGALRM, unix.SIGVTALRM, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGIO, unix.SIGPWR, unix.SIGCONT,
	}, realtimeSignals()...)
)

func realtimeSignals() []syscall.Signal {
	var sigs []syscall.Signal
	for sig := sigRTMin + 1; sig <= sigRTMax; sig++ {
		sigs = append(sigs, sig)
	}
	return sigs
}
