// Command service is the workload the init benchmark supervises: a tiny static
// program that reports "ready" once it runs and "got my stop signal" when it
// receives SIGTERM, then exits at once.
//
// It reports by writing one short line to a FIFO named by $INITBENCH_FIFO. A
// path (not an inherited fd) is used because supervisord and s6 do not pass
// arbitrary fds through to their services, and a FIFO (not a unix datagram
// socket) because one write of at most PIPE_BUF bytes is atomic and never
// blocks while the harness holds the read end open (the pipe holds 64 KiB),
// whereas a datagram socket blocks its senders once net.unix.max_dgram_qlen
// (10 by default) messages queue up.
//
// Lines written (NAME is -id, else the basename of the working directory, which
// is how an s6 service whose run file is a symlink to this binary gets a name):
//
//	R NAME          ready
//	T NAME          SIGTERM received; exiting now
//	L NAME          orphan mode: the orphans are zombies, listed in FIFO.orphans;
//	                their parent exits once the harness opens FIFO.go
//	M NAME NANOS    orphan mode: their parent was reaped at NANOS (CLOCK_MONOTONIC)
//
// Orphan mode (-orphans N, or $INITBENCH_ORPHANS): after "R", the service starts
// a copy of itself in -release-orphans mode. That copy forks N children which
// exit at once, waits until all N are zombies (without reaping them), lists
// their pids, writes "L" and exits: the kernel hands the N zombies to the init,
// which must reap them. The service reaps the copy and reads the clock: the
// kernel notifies a parent only after it has re-parented the dying process's
// children, so that time is just after the orphans became the init's. The
// service itself stays up until SIGTERM, like a real daemon, so no init
// restarts anything meanwhile.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment variables through which every init passes settings down:
// tini, dumb-init, catatonit, s6, supervisord and sidecar-init all give their
// children the environment they were started with.
const (
	envFIFO    = "INITBENCH_FIFO"
	envOrphans = "INITBENCH_ORPHANS"
)

func main() {
	// Notify before anything else: a Go process that has not asked for
	// SIGTERM dies of it before it can report it.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)

	if err := run(stop); err != nil {
		fmt.Fprintln(os.Stderr, "bench service:", err)
		os.Exit(1)
	}
}

func run(stop <-chan os.Signal) error {
	id := flag.String("id", "", "name reported on the FIFO (default: basename of the working directory)")
	orphans := flag.Int("orphans", envInt(envOrphans), "leave this many orphans for the init to reap (default $"+envOrphans+")")
	release := flag.Int("release-orphans", 0, "internal: fork this many children that exit at once, wait until all are zombies, exit")
	flag.Parse()

	name := *id
	if name == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("name from working directory: %w", err)
		}
		name = filepath.Base(wd)
	}
	fifo, err := openFIFO()
	if err != nil {
		return err
	}
	if *release > 0 {
		return releaseOrphans(fifo, name, *release)
	}
	if err := report(fifo, "R "+name); err != nil {
		return err
	}
	if *orphans > 0 {
		if err := leaveOrphans(fifo, name, *orphans); err != nil {
			return err
		}
	}
	<-stop
	return report(fifo, "T "+name)
}

func envInt(key string) int {
	n, _ := strconv.Atoi(os.Getenv(key)) // unset or malformed means 0: no orphans
	return n
}

// openFIFO opens the harness's FIFO for writing without blocking: the harness
// holds the read end for the whole run, so ENXIO here means it is gone.
func openFIFO() (int, error) {
	path := os.Getenv(envFIFO)
	if path == "" {
		return -1, fmt.Errorf("$%s is not set", envFIFO)
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, nil
}

// report writes one line in a single write(2): at most PIPE_BUF bytes, so it
// never interleaves with another service's line.
func report(fifo int, line string) error {
	if _, err := unix.Write(fifo, []byte(line+"\n")); err != nil {
		return fmt.Errorf("report %q: %w", line, err)
	}
	return nil
}

// leaveOrphans runs a copy of this program that releases n orphans, and reaps
// that copy (but not the orphans, which the kernel gives to the init).
func leaveOrphans(fifo int, name string, n int) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	argv := []string{self, "-id", name, "-release-orphans", strconv.Itoa(n)}
	pid, err := syscall.ForkExec(self, argv, &syscall.ProcAttr{Env: os.Environ()})
	if err != nil {
		return fmt.Errorf("start orphan releaser: %w", err)
	}
	var status syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &status, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("reap orphan releaser: %w", err)
	}
	var reaped unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &reaped); err != nil {
		return fmt.Errorf("read the clock: %w", err)
	}
	if !status.Exited() || status.ExitStatus() != 0 {
		return fmt.Errorf("orphan releaser failed: %v", status)
	}
	return report(fifo, fmt.Sprintf("M %s %d", name, reaped.Nano()))
}

// releaseOrphans forks n children that exit at once, waits until every one is
// a zombie (WNOWAIT leaves it unreaped), and returns so the process exits and
// the zombies pass to the init all at once.
func releaseOrphans(fifo int, name string, n int) error {
	// Fork every child from one thread. Each thread has its own children list, and a
	// goroutine preempted mid-loop resumes on another thread, which split the orphans over
	// several lists: the harness's list order (threads sorted by tid) then differs from
	// the order the init reaps them in, and its sweep stalls on a pid reaped late.
	runtime.LockOSThread()
	pids := make([]int, 0, n)
	for range n {
		pid, errno := forkExit()
		if errno != 0 {
			return fmt.Errorf("fork child %d of %d: %w", len(pids)+1, n, errno)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err == nil {
				break
			}
			if err != unix.EINTR {
				return fmt.Errorf("wait for child %d to exit: %w", pid, err)
			}
		}
	}
	if err := listChildren(os.Getenv(envFIFO)+".orphans", n); err != nil {
		return err
	}
	if err := report(fifo, "L "+name); err != nil {
		return err
	}
	return awaitGo(os.Getenv(envFIFO) + ".go")
}

// awaitGo blocks until the harness opens the FIFO at path for writing, which
// it does once it is watching the orphans: otherwise a fast init could reap
// them all while the harness is still reading the list.
func awaitGo(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wait for the harness on %s: %w", path, err)
	}
	return unix.Close(fd)
}

// listChildren writes the pids of this process's children, one a line, as
// /proc shows them. The harness watches them vanish as the init reaps them, one
// cheap lookup each, instead of re-reading the init's children list (reading
// /proc/PID/task/TID/children with 5000 entries takes about 3 ms and holds
// tasklist_lock, which the reaping init needs too).
//
// The pids returned by fork are those of the init's PID namespace, which the
// harness cannot use; /proc here is the harness's mount (no new mount
// namespace), so it shows the harness's pids.
func listChildren(path string, want int) error {
	lists, err := filepath.Glob("/proc/self/task/*/children") // a Go process forks from any of its threads
	if err != nil {
		return fmt.Errorf("list own threads: %w", err)
	}
	var b strings.Builder
	count := 0
	for _, list := range lists {
		text, err := os.ReadFile(list)
		if err != nil {
			return fmt.Errorf("read own children: %w", err)
		}
		for _, pid := range strings.Fields(string(text)) {
			b.WriteString(pid + "\n")
			count++
		}
	}
	if count != want {
		return fmt.Errorf("found %d children in /proc, forked %d", count, want)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write the orphan list: %w", err)
	}
	return nil
}

// forkExit forks a child whose only act is exit_group(0), and returns its pid.
//
// A plain fork of a Go process is safe here because the child never returns to
// the Go runtime: it makes one raw system call and is gone. It is nosplit so no
// stack check runs in the child between the two calls. exec-ing /bin/true
// instead would make releasing 5000 orphans take seconds rather than a fraction
// of one, and the children would exit at scattered times.
//
//go:nosplit
//go:norace
func forkExit() (int, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno == 0 && pid == 0 {
		_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return int(pid), errno
}
