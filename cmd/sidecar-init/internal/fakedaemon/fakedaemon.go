// Package fakedaemon turns a test binary into a configurable fake daemon, so behaviour
// tests run real processes: the test re-executes its own binary with Env set, and the
// test's TestMain calls RunIfRequested before anything else.
package fakedaemon

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/claude-bottle/sidecar-init/procs"
)

// Env, when set in a process's environment, makes RunIfRequested act as a fake daemon.
const Env = "SIDECAR_FAKE_DAEMON"

// Command returns the argv and environment that run exe as a fake daemon with args.
func Command(exe string, args ...string) (argv, env []string) {
	return append([]string{exe}, args...), []string{
		Env + "=1",
		"PATH=/usr/local/bin:/usr/bin:/bin",
		// A race-built helper otherwise sleeps about a second at exit.
		"GORACE=atexit_sleep_ms=0",
	}
}

// RunIfRequested runs the fake daemon and exits when Env is set; otherwise it returns.
func RunIfRequested() {
	if os.Getenv(Env) == "" {
		return
	}
	os.Exit(run(os.Args[1:]))
}

type options struct {
	name       string
	record     string
	exitAfter  time.Duration
	code       int
	ignoreStop bool
	stopCode   int
	grandchild bool
	orphans    int
	orphanLife time.Duration
	escape     bool
	escapeRoot bool
	listen     string
	touch      string
	readyAfter time.Duration
	catchAll   bool
	setuidRoot bool
	traceMe    bool
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("fakedaemon", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "fake", "name in the record")
	fs.StringVar(&o.record, "record", "", "append what happens to this file")
	fs.DurationVar(&o.exitAfter, "exit-after", 0, "exit on its own after this long (0: never)")
	fs.IntVar(&o.code, "code", 0, "status of the exit on its own")
	fs.BoolVar(&o.ignoreStop, "ignore-stop", false, "record SIGTERM/SIGINT/SIGQUIT but keep running")
	fs.IntVar(&o.stopCode, "stop-code", 0, "status of the exit after a stop signal")
	fs.BoolVar(&o.grandchild, "grandchild", false, "start a grandchild in the same process group that ignores stop signals")
	fs.IntVar(&o.orphans, "orphans", 0, "start this many short-lived children and do not wait for them")
	fs.DurationVar(&o.orphanLife, "orphan-life", 200*time.Millisecond, "how long each orphan lives")
	fs.BoolVar(&o.escape, "escape", false, "start a child in a new session (setsid) that sleeps forever")
	fs.BoolVar(&o.escapeRoot, "escape-root", false, "with -escape: that child makes itself root (a setuid-root copy run by another user: one it may no longer signal)")
	fs.StringVar(&o.listen, "listen", "", "listen on this TCP address (after -ready-after)")
	fs.StringVar(&o.touch, "touch", "", "create this file (after -ready-after)")
	fs.DurationVar(&o.readyAfter, "ready-after", 0, "wait this long before -listen and -touch")
	fs.BoolVar(&o.catchAll, "catch-all", false, "record every signal that may reach it, not only the usual ones")
	fs.BoolVar(&o.setuidRoot, "setuid-root", false, "setuid(0) once its children have started (a setuid-root copy run by another user: one it may no longer signal)")
	fs.BoolVar(&o.traceMe, "trace-me", false, "make its parent its tracer (PTRACE_TRACEME, an anti-debugger check), then exec sleep: stopped at that exec")
	if err := fs.Parse(args); err != nil {
		return 64
	}
	if o.traceMe {
		return traceMe(o)
	}

	signals := make(chan os.Signal, 128)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	if o.catchAll {
		for _, sig := range append(procs.ForwardedSignals, procs.IgnoredSignals...) {
			signal.Notify(signals, sig)
		}
	}
	record(o, fmt.Sprintf("started pid=%d pgid=%d", os.Getpid(), syscall.Getpgrp()))

	exe, _ := os.Executable()
	if o.grandchild {
		startChild(o, exe, false, "-name", o.name+".grandchild", "-record", o.record, "-ignore-stop")
	}
	if o.escape {
		args := []string{"-name", o.name + ".escaped", "-record", o.record, "-ignore-stop"}
		if o.escapeRoot {
			args = append(args, "-setuid-root")
		}
		startChild(o, exe, true, args...)
	}
	for i := 0; i < o.orphans; i++ {
		startChild(o, "/bin/sleep", false, strconv.FormatFloat(o.orphanLife.Seconds(), 'f', 3, 64))
	}
	if o.orphans > 0 {
		record(o, fmt.Sprintf("orphans %d", o.orphans))
	}

	if o.setuidRoot {
		// After the children start: they keep the user that ran it, as a worker would.
		if err := syscall.Setuid(0); err != nil {
			record(o, "setuid: "+err.Error())
			return 70
		}
		record(o, "setuid root")
	}
	if o.listen != "" || o.touch != "" {
		go becomeReady(o)
	}
	var exitTimer <-chan time.Time
	if o.exitAfter > 0 {
		exitTimer = time.After(o.exitAfter)
	}
	for {
		select {
		case sig := <-signals:
			record(o, "signal "+procs.SignalName(sig.(syscall.Signal)))
			switch sig {
			case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
				if !o.ignoreStop {
					record(o, "exit "+strconv.Itoa(o.stopCode))
					return o.stopCode
				}
			}
		case <-exitTimer:
			record(o, "exit "+strconv.Itoa(o.code))
			return o.code
		}
	}
}

// becomeReady opens the listener and creates the file that readiness probes look for.
func becomeReady(o options) {
	time.Sleep(o.readyAfter)
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			record(o, "listen failed: "+err.Error())
			return
		}
		record(o, "listening")
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_ = conn.Close()
			}
		}()
	}
	if o.touch != "" {
		if err := os.WriteFile(o.touch, nil, 0o644); err != nil {
			record(o, "touch failed: "+err.Error())
			return
		}
		record(o, "touched")
	}
}

// startChild starts a process and never waits for it: once this fake daemon exits, it is an
// orphan for the supervisor to reap.
func startChild(o options, path string, newSession bool, args ...string) {
	argv, env := Command(path, args...)
	if path == "/bin/sleep" {
		env = nil
	}
	attr := &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: newSession}}
	if _, err := syscall.ForkExec(path, argv, attr); err != nil {
		record(o, "child failed: "+err.Error())
	}
}

// record appends one line, "NAME EVENT", with O_APPEND so that concurrent daemons' lines
// never interleave within a line.
func record(o options, event string) {
	if o.record == "" {
		return
	}
	f, err := os.OpenFile(o.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	// A fake daemon has nowhere to report a failed record; the test waiting for the line
	// will say it never came.
	_, _ = fmt.Fprintf(f, "%s %s\n", o.name, event)
	_ = f.Close()
}

// traceMe makes the parent its tracer and execs sleep, which stops it at the exec (a
// ptrace stop) until the tracer resumes it. Only the calling thread is traced: it execs.
func traceMe(o options) int {
	runtime.LockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0); errno != 0 {
		record(o, "ptrace: "+errno.Error())
		return 70
	}
	record(o, "traced")
	err := syscall.Exec("/bin/sleep", []string{"sleep", "1000"}, os.Environ())
	record(o, "exec: "+err.Error())
	return 70
}
