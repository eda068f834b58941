// Command gofloor is the smallest Go PID 1 that does what tini does by default: it starts
// one child, forwards SIGTERM to it, reaps every child (orphans included) and exits when
// its own child is gone. It is not an init to use. initbench runs it beside the real inits
// as "go-floor", so docs/benchmarks.md shows, from the same run, the floor the Go runtime
// sets under sidecar-init's figures: signal delivery through os/signal, the runtime's
// start-up before main, and the exit of a multi-threaded process.
package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGCHLD)
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		os.Exit(127)
	}
	child, err := syscall.ForkExec(path, os.Args[1:], &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		os.Exit(127)
	}
	for sig := range signals {
		if sig == syscall.SIGTERM {
			_ = syscall.Kill(child, syscall.SIGTERM)
			continue
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 {
				break
			}
			if pid == child {
				os.Exit(status.ExitStatus())
			}
		}
	}
}
