// Command chaosdaemon is the fake daemon of the chaos suite (chaos_test.go, build tag chaos).
// It is a small static program rather than the re-executed test binary because a scenario
// runs hundreds of them at once: a race-built test binary costs tens of MB per process,
// this costs about 2 MB. It lives under testdata so `go build ./...` and `go vet ./...`
// never see it; the suite builds it with `go build ./testdata/chaosdaemon`.
//
// Every fact a scenario checks is appended to the -record file as one line "NAME EVENT"
// (O_APPEND, one write per line, so concurrent daemons never interleave within a line).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type options struct {
	name         string
	record       string
	barrier      string
	code         int
	exitAfter    time.Duration
	ignoreStop   bool
	stopCode     int
	countSignals bool
	children     int
	escape       int
	orphans      int
	orphanLife   time.Duration
	zombies      int
	alive        string
	hang         string
	role         string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("chaosdaemon", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "chaos", "name in the record")
	fs.StringVar(&o.record, "record", "", "append what happens to this file")
	fs.StringVar(&o.barrier, "barrier", "", "FIFO: record \"ready\", block until its writer closes, then exit with -code")
	fs.IntVar(&o.code, "code", 0, "status of the exit on its own (-barrier or -exit-after)")
	fs.DurationVar(&o.exitAfter, "exit-after", 0, "exit on its own after this long (0: never)")
	fs.BoolVar(&o.ignoreStop, "ignore-stop", false, "record SIGTERM/SIGINT/SIGQUIT but keep running")
	fs.IntVar(&o.stopCode, "stop-code", 0, "status of the exit after a stop signal")
	fs.BoolVar(&o.countSignals, "count-signals", false, "count forwarded signals and record the counts at exit, not each one")
	fs.IntVar(&o.children, "children", 0, "start this many children in the daemon's process group that ignore stop signals too")
	fs.IntVar(&o.escape, "escape", 0, "start this many processes that escape the group: setsid, then a double fork")
	fs.IntVar(&o.orphans, "orphans", 0, "start this many short-lived /bin/sleep children and never wait for them")
	fs.DurationVar(&o.orphanLife, "orphan-life", 200*time.Millisecond, "how long each orphan lives")
	fs.IntVar(&o.zombies, "zombies", 0, "before exiting, fork this many children that exit at once and are never reaped: "+
		"they are handed to the supervisor as zombies, all at the instant this daemon exits")
	fs.StringVar(&o.alive, "alive", "", "create this file once started (what a liveness or readiness probe looks for)")
	fs.StringVar(&o.hang, "hang", "", "FIFO: once its writer closes, remove -alive, record \"hung\" and SIGSTOP itself; "+
		"in the first run only (it leaves -alive.hung behind, and a run that finds it does not hang)")
	fs.StringVar(&o.role, "role", "daemon", "internal: daemon, or escape-middle (the first fork of -escape)")
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if o.role == "escape-middle" {
		return escapeMiddle(o)
	}

	// Notify before recording "started": a test that sees the line may signal at once.
	signals := make(chan os.Signal, 1024)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT,
		syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	record(o, fmt.Sprintf("started pid=%d pgid=%d sid=%d", os.Getpid(), syscall.Getpgrp(), getsid()))

	exe, err := os.Executable()
	if err != nil {
		record(o, "cannot find own executable: "+err.Error())
		return 70
	}
	for i := range o.children {
		start(o, exe, nil, false, "-name", fmt.Sprintf("%s.child%d", o.name, i), "-record", o.record, "-ignore-stop")
	}
	for i := range o.escape {
		start(o, exe, nil, true, "-role", "escape-middle", "-name", fmt.Sprintf("%s.escaped%d", o.name, i), "-record", o.record)
	}
	if o.orphans > 0 {
		life := strconv.FormatFloat(o.orphanLife.Seconds(), 'f', 3, 64)
		for range o.orphans {
			start(o, "/bin/sleep", []string{}, false, life)
		}
		// The last orphan's expected exit is this instant plus -orphan-life.
		record(o, fmt.Sprintf("orphans %d spawned_unix_nano=%d", o.orphans, time.Now().UnixNano()))
	}
	if o.barrier != "" {
		return waitBarrier(o)
	}
	if o.alive != "" {
		if err := os.WriteFile(o.alive, nil, 0o644); err != nil {
			record(o, "alive: "+err.Error())
			return 73
		}
	}
	if _, err := os.Stat(o.alive + ".hung"); o.hang != "" && err != nil {
		go hangAtBarrier(o)
	}

	var exitTimer <-chan time.Time
	if o.exitAfter > 0 {
		exitTimer = time.After(o.exitAfter)
	}
	counts := map[string]int{}
	exit := func(code int) int {
		if o.countSignals {
			record(o, fmt.Sprintf("saw SIGHUP=%d SIGUSR1=%d SIGUSR2=%d SIGWINCH=%d",
				counts["SIGHUP"], counts["SIGUSR1"], counts["SIGUSR2"], counts["SIGWINCH"]))
		}
		record(o, "exit "+strconv.Itoa(code))
		return code
	}
	for {
		select {
		case sig := <-signals:
			name := signalName(sig.(syscall.Signal))
			switch sig {
			case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
				record(o, "signal "+name)
				if !o.ignoreStop {
					return exit(o.stopCode)
				}
			default:
				if o.countSignals {
					counts[name]++
				} else {
					record(o, "signal "+name)
				}
			}
		case <-exitTimer:
			return exit(o.code)
		}
	}
}

// waitBarrier records "ready" and blocks in read(2) on the FIFO until its writer closes it:
// the test opens the FIFO first and holds it, so open never blocks, and closing it wakes
// every daemon at the same instant. Signals are not waited for: a barrier daemon exits with
// -code when the barrier falls, and a stop signal kills it as the default action would.
// hangAtBarrier waits for the -hang FIFO's writer to close, then plays a daemon that hangs
// for good: what a liveness probe looks for goes, and the whole process stops (SIGSTOP),
// so that a stop signal alone would stay pending; only the SIGCONT sent with it lets the
// daemon act on it.
func hangAtBarrier(o options) {
	fd, err := syscall.Open(o.hang, syscall.O_RDONLY, 0)
	if err != nil {
		record(o, "hang open failed: "+err.Error())
		return
	}
	readToEOF(fd)
	if err := os.WriteFile(o.alive+".hung", nil, 0o644); err != nil {
		record(o, "hang marker: "+err.Error())
	}
	if err := os.Remove(o.alive); err != nil {
		record(o, "hang: "+err.Error())
	}
	record(o, "hung")
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
}

// readToEOF reads fd until its writers have all closed it (or it fails).
func readToEOF(fd int) {
	var buf [1]byte
	for {
		n, err := syscall.Read(fd, buf[:])
		if err == syscall.EINTR {
			continue
		}
		if n <= 0 {
			return
		}
	}
}

func waitBarrier(o options) int {
	signal.Reset(syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	fd, err := syscall.Open(o.barrier, syscall.O_RDONLY, 0)
	if err != nil {
		record(o, "barrier open failed: "+err.Error())
		return 71
	}
	record(o, "ready")
	readToEOF(fd)
	if o.zombies > 0 {
		if made := makeZombies(o.zombies); made < o.zombies {
			record(o, fmt.Sprintf("zombies: only %d of %d forks succeeded", made, o.zombies))
			return 72
		}
		// The instant they were all made: the daemon exits, handing them over, right after.
		record(o, fmt.Sprintf("zombies %d made_unix_nano=%d", o.zombies, time.Now().UnixNano()))
	}
	// No record line for the exit: the point is that hundreds of daemons exit within the
	// same millisecond, and a file write each would spread them out.
	return o.code
}

// makeZombies forks n children that exit at once with status 0 and are never waited for.
// A raw clone(2) with nothing but exit_group(2) in the child costs a fraction of a
// fork+exec, so tens of thousands take a second or two. It returns how many it made.
func makeZombies(n int) int {
	// The child runs no Go code, only the raw exit below; it must get no signal either, so
	// every signal is blocked on this thread across the clone (the child inherits the mask,
	// and exits without ever unblocking it). Same precaution as syscall.forkAndExecInChild.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return 0
	}
	defer func() { _ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }() // restoring a mask it just read cannot fail
	made := 0
	for range n {
		if cloneAndExit() != 0 {
			break
		}
		made++
	}
	return made
}

// cloneAndExit is fork(2) spelled as clone(2) (arm64 has no fork); the child exits 0 at
// once. It returns the parent's errno.
//
//go:nosplit
//go:norace
func cloneAndExit() syscall.Errno {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno == 0 && pid == 0 {
		_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0) // does not return
	}
	return errno
}

// escapeMiddle runs in a new session (its parent started it with Setsid) and starts the
// leaf, then exits at once: the leaf is re-parented to the nearest subreaper or PID 1 and
// belongs to no daemon's process group, as a daemon that double-forks would leave it.
func escapeMiddle(o options) int {
	exe, err := os.Executable()
	if err != nil {
		record(o, "cannot find own executable: "+err.Error())
		return 70
	}
	start(o, exe, nil, false, "-name", o.name, "-record", o.record, "-ignore-stop")
	return 0
}

// start starts a process and never waits for it: once its parent exits, it is an orphan for
// the supervisor to reap. env nil means the chaos daemon's own environment.
func start(o options, path string, env []string, newSession bool, args ...string) {
	if env == nil {
		env = os.Environ()
	}
	attr := &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: newSession}}
	if _, err := syscall.ForkExec(path, append([]string{path}, args...), attr); err != nil {
		record(o, "child failed: "+err.Error())
	}
}

func record(o options, event string) {
	if o.record == "" {
		return
	}
	f, err := os.OpenFile(o.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	// Nowhere to report a failed record: the test waiting for the line says it never came.
	_, _ = f.WriteString(o.name + " " + event + "\n")
	_ = f.Close()
}

func getsid() int {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	if errno != 0 {
		return -1
	}
	return int(sid)
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGWINCH:
		return "SIGWINCH"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return strings.ToUpper(sig.String())
}
