// Command gofloor is the smallest Go PID 1 that does what tini does by default: it starts
// one child, forwards SIGTERM to it, reaps every child (orphans included) and exits when
// its own child is gone. With -g it is the smallest graceful one: the child leads its own
// process group, SIGTERM goes to that whole group, and it exits only once every child and
// orphan is reaped, as sidecar-init does.
//
// It is not an init to use. initbench runs it beside the real inits as go-floor and
// go-floor-g, so docs/benchmarks.md shows, from the same run, the floor the Go runtime sets
// under sidecar-init's figures: signal delivery through os/signal, the runtime's start-up
// before main, the exit of a multi-threaded process, and (-g) the wait for every service to
// finish its own SIGTERM handling.
package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGCHLD)
	args := os.Args[1:]
	graceful := len(args) > 0 && args[0] == "-g"
	if graceful {
		args = args[1:]
	}
	if len(args) == 0 {
		_, _ = os.Stderr.WriteString("usage: gofloor [-g] COMMAND [ARG...]\n")
		os.Exit(2)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		os.Exit(127)
	}
	child, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setpgid: graceful},
	})
	if err != nil {
		os.Exit(127)
	}
	for sig := range signals {
		if sig == syscall.SIGTERM {
			target := child
			if graceful {
				target = -child
			}
			_ = syscall.Kill(target, syscall.SIGTERM)
			continue
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.ECHILD) {
				os.Exit(0) // -g: everyone is reaped
			}
			if pid <= 0 {
				break
			}
			if pid == child && !graceful {
				os.Exit(status.ExitStatus())
			}
		}
	}
}
