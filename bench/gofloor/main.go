// Command gofloor is the smallest Go PID 1 that does what a graceful init must on SIGTERM:
// signal its one child, reap it, exit. It is not an init to use; it measures the floor a Go
// runtime sets under the shutdown figures of docs/benchmarks.md (signal delivery through
// os/signal, a reap, and the exit of a multi-threaded process), against which sidecar-init's
// own overhead is judged.
//
// Measured by hand on the bench machine (medians of 30 SIGTERM-to-exit timings each, as PID 1
// of a new PID namespace, one /bin/sleep child, three interleaved rounds, stripped static
// builds): gofloor 1.26-1.42 ms, sidecar-init 1.83-1.91 ms, tini 0.66-0.78 ms. The Go floor
// alone is about 1.8x tini; sidecar-init adds about 0.5 ms to it (about 0.3 ms of that is
// closing its control socket).
package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	child := exec.Command(os.Args[1], os.Args[2:]...)
	if err := child.Start(); err != nil {
		os.Exit(127)
	}
	<-stop
	_ = child.Process.Signal(syscall.SIGTERM)
	_ = child.Wait() // the only child, and no other reaper: Wait is safe here
	os.Exit(0)
}
