// Command stopwindow measures what an init does with a SIGTERM that comes right after its
// exec, before it has set up its signal handling. It starts the init (the command after
// the flags) as PID 1 of a new PID namespace, sends it SIGTERM a given time after the exec,
// and sorts what followed:
//   - stopped: it exited within -patience (it acted on the signal);
//   - exit2:   it exited with status 2 and nothing on stderr (a Go program before
//     signal.Notify: the runtime's handler, told of no one waiting, exits 2);
//   - lost:    it ran on (the signal came before the program had a handler, and the kernel
//     drops a signal PID 1 left at its default action).
//
// The init's one service must outlive -patience on its own (sleep 2), so that a lost
// signal shows. Root only (CLONE_NEWPID). The wait is a spin: time.Sleep wakes up to a
// millisecond late here.
//
//	go run ./bench/cmd/stopwindow -- /usr/bin/tini -- /bin/sleep 2
//	go run ./bench/cmd/stopwindow -- bin/sidecar-init --config examples/stopwindow.toml
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	runs := flag.Int("runs", 30, "runs at each delay")
	step := flag.Duration("step", 250*time.Microsecond, "between delays")
	last := flag.Duration("until", 3*time.Millisecond, "the longest delay")
	patience := flag.Duration("patience", 1500*time.Millisecond, "an init that has not exited by then lost the signal")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: stopwindow [flags] -- INIT [ARGS...]")
		os.Exit(2)
	}
	if err := run(os.Stdout, flag.Args(), *runs, *step, *last, *patience); err != nil {
		fmt.Fprintln(os.Stderr, "stopwindow:", err)
		os.Exit(1)
	}
}

// Outcome is what one SIGTERM led to.
type Outcome string

// The outcomes.
const (
	Stopped Outcome = "stopped"
	Exit2   Outcome = "exit2"
	Lost    Outcome = "lost"
)

// classify sorts one run: how long the init lived after the exec, its exit status, and
// whether it wrote anything on stderr.
func classify(lived, patience time.Duration, status int, wroteStderr bool) Outcome {
	switch {
	case lived >= patience:
		return Lost
	case status == 2 && !wroteStderr:
		return Exit2
	default:
		return Stopped
	}
}

func run(out io.Writer, argv []string, runs int, step, last, patience time.Duration) error {
	if _, err := fmt.Fprintf(out, "%-9s %8s %8s %8s\n", "delay", Stopped, Exit2, Lost); err != nil {
		return err
	}
	for delay := time.Duration(0); delay <= last; delay += step {
		counts := map[Outcome]int{}
		for range runs {
			outcome, err := once(argv, delay, patience)
			if err != nil {
				return err
			}
			counts[outcome]++
		}
		if _, err := fmt.Fprintf(out, "%-9v %8d %8d %8d\n", delay, counts[Stopped], counts[Exit2], counts[Lost]); err != nil {
			return err
		}
	}
	return nil
}

// once runs the init, SIGTERMs it delay after its exec, and waits for it.
func once(argv []string, delay, patience time.Duration) (Outcome, error) {
	var stderr strings.Builder
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil { // returns once the exec has happened
		return "", err
	}
	execd := time.Now()
	for time.Since(execd) < delay {
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	return classify(time.Since(execd), patience, cmd.ProcessState.ExitCode(), stderr.Len() > 0), nil
}
