package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/claude-bottle/sidecar-init/bench/procfs"
	"golang.org/x/sys/unix"
)

// Environment variables the service reads (see bench/service).
const (
	envFIFO    = "INITBENCH_FIFO"
	envOrphans = "INITBENCH_ORPHANS"
)

// message is one line a service wrote to the FIFO (see bench/service).
type message struct {
	kind byte // 'R' ready, 'T' got SIGTERM, 'I' inherited it ignored or blocked, 'L' orphans listed, 'M' their parent reaped
	name string
	arg  string
	at   time.Time // when the harness read it
}

// stopLine is written by the harness itself: everything a service wrote
// before it has been read once the reader sees it (a FIFO keeps order).
const stopLine = "X harness\n"

// channel is the FIFO the services of one trial report on.
type channel struct {
	file    *os.File
	msgs    chan message
	drained bool
}

func openChannel(dir string) (*channel, error) {
	path := filepath.Join(dir, "report.fifo")
	for _, fifo := range []string{path, path + ".go"} {
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			return nil, fmt.Errorf("make fifo: %w", err)
		}
	}
	// Read-write, so opening does not wait for a writer, a service's
	// non-blocking open for writing finds a reader, and the reader never sees
	// end-of-file when services exit.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open report fifo: %w", err)
	}
	c := &channel{file: f, msgs: make(chan message, 1<<14)}
	go c.read()
	return c, nil
}

func (c *channel) path() string { return c.file.Name() }

func (c *channel) read() {
	defer close(c.msgs)
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		n, err := c.file.Read(buf)
		at := time.Now()
		pending = append(pending, buf[:n]...)
		for {
			line, rest, found := bytes.Cut(pending, []byte("\n"))
			if !found {
				break
			}
			pending = rest
			fields := strings.Fields(string(line))
			if len(fields) < 2 || len(fields[0]) != 1 {
				continue // not a service line; the service never writes one
			}
			if fields[0] == "X" {
				return
			}
			m := message{kind: fields[0][0], name: fields[1], at: at}
			if len(fields) > 2 {
				m.arg = fields[2]
			}
			c.msgs <- m
		}
		if err != nil {
			return
		}
	}
}

// drain returns every message not yet consumed, stops the reader and closes
// the FIFO. Later calls return nothing.
func (c *channel) drain() ([]message, error) {
	if c.drained {
		return nil, nil
	}
	c.drained = true
	_, writeErr := c.file.WriteString(stopLine)
	if writeErr != nil {
		_ = c.file.Close() // unblocks the reader, which then closes msgs
	}
	var rest []message
	for m := range c.msgs {
		rest = append(rest, m)
	}
	if writeErr != nil {
		return rest, fmt.Errorf("stop the fifo reader: %w", writeErr)
	}
	return rest, c.file.Close()
}

// running is an init started as PID 1 of its own PID namespace.
type running struct {
	cmd     *exec.Cmd
	pid     int // in the harness's namespace
	started time.Time
	exited  chan exit
}

type exit struct {
	at  time.Time
	err error // from Wait: nil for status 0
}

// startInit forks and execs argv as PID 1 of a new PID namespace. The clock
// starts just before the fork. It must be called from the main goroutine,
// which is locked to the main thread, because Pdeathsig fires when the forking
// thread (not process) dies (golang/go#27505).
func startInit(argv, env []string, dir string, log *os.File) (*running, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log // *os.File: passed as the fd, no copying goroutine
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID,
		Setsid:     true, // as a container runtime starts PID 1; also keeps ^C away from it
		Pdeathsig:  syscall.SIGKILL,
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	r := &running{cmd: cmd, pid: cmd.Process.Pid, started: started, exited: make(chan exit, 1)}
	go func() {
		err := cmd.Wait()
		r.exited <- exit{at: time.Now(), err: err}
	}()
	return r, nil
}

// kill ends the init's namespace at once (the kernel kills every process in
// it when PID 1 dies) and waits for it.
func (r *running) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL) // os.ErrProcessDone: it already exited
	<-r.exited
}

// terminate sends SIGTERM to PID 1 and waits up to timeout for it to exit.
func (r *running) terminate(timeout time.Duration) (sent time.Time, e exit, err error) {
	sent = time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return sent, exit{}, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case e = <-r.exited:
		return sent, e, nil
	case <-time.After(timeout):
		r.kill()
		return sent, exit{}, fmt.Errorf("still running %v after SIGTERM; killed", timeout)
	}
}

// await consumes messages until done returns true, the init exits, or the
// deadline passes; it returns the time the last consumed message was read. A service
// that says the init handed it SIGTERM ignored or blocked ("I", written before its "R")
// fails the trial: a daemon that keeps what it inherited never takes its stop signal, so
// neither its shutdown nor graceful would be the init's true figure.
func await(c *channel, r *running, deadline time.Time, done func(message) bool) (time.Time, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return time.Time{}, errors.New("report fifo closed")
			}
			if m.kind == 'I' {
				return time.Time{}, fmt.Errorf("service %s inherited SIGTERM %s from the init: a daemon that keeps its inherited disposition and mask would never take its stop signal", m.name, m.arg)
			}
			if done(m) {
				return m.at, nil
			}
		case e := <-r.exited:
			r.exited <- e // leave it for the caller's own wait
			return time.Time{}, fmt.Errorf("init exited early: %v (see the init log)", exitText(e.err))
		case <-timer.C:
			return time.Time{}, errors.New("timed out")
		}
	}
}

// awaitReady waits until every service in svcs has reported ready.
func awaitReady(c *channel, r *running, svcs []service, timeout time.Duration) (time.Time, error) {
	waiting := make(map[string]bool, len(svcs))
	for _, s := range svcs {
		waiting[s.name] = true
	}
	at, err := await(c, r, r.started.Add(timeout), func(m message) bool {
		if m.kind == 'R' {
			delete(waiting, m.name)
		}
		return len(waiting) == 0
	})
	if err != nil {
		return at, fmt.Errorf("waiting for %d services to be ready (%d still missing): %w", len(svcs), len(waiting), err)
	}
	return at, nil
}

// countStopped counts the distinct services that reported SIGTERM.
func countStopped(msgs []message) int {
	stopped := map[string]bool{}
	for _, m := range msgs {
		if m.kind == 'T' {
			stopped[m.name] = true
		}
	}
	return len(stopped)
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// helpers lists the init's children that are per-service helpers (comm).
func helpers(pid int, comm string) ([]int, error) {
	if comm == "" {
		return nil, nil
	}
	kids, err := procfs.Children(pid)
	if err != nil {
		return nil, err
	}
	var found []int
	for _, kid := range kids {
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", kid))
		if err != nil {
			continue // exited since the listing
		}
		if strings.TrimSpace(string(name)) == comm {
			found = append(found, kid)
		}
	}
	return found, nil
}

// footprint is the memory of the init alone and of the init with its helpers.
func footprint(pid int, helperComm string) (initOnly, total procfs.Footprint, helperCount int, err error) {
	initOnly, err = procfs.ReadFootprint(pid)
	if err != nil {
		return initOnly, total, 0, fmt.Errorf("read init footprint: %w", err)
	}
	total = initOnly
	hs, err := helpers(pid, helperComm)
	if err != nil {
		return initOnly, total, 0, fmt.Errorf("list helpers: %w", err)
	}
	for _, h := range hs {
		f, err := procfs.ReadFootprint(h)
		if err != nil {
			return initOnly, total, 0, fmt.Errorf("read helper %d footprint: %w", h, err)
		}
		total = total.Add(f)
	}
	return initOnly, total, len(hs), nil
}

// activity is a snapshot of how much the init (and its helpers) ran.
type activity struct {
	switches map[int]int64 // per task id
	cpuTicks int64
}

func readActivity(pids []int) (activity, error) {
	a := activity{switches: map[int]int64{}}
	for _, pid := range pids {
		counts, err := procfs.TaskCtxtSwitches(pid)
		if err != nil {
			return a, fmt.Errorf("context switches of %d: %w", pid, err)
		}
		for tid, n := range counts {
			a.switches[tid] = n
		}
		ticks, err := procfs.ReadCPUTicks(pid)
		if err != nil {
			return a, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		a.cpuTicks += ticks
	}
	return a, nil
}

// wakeupsSince counts context switches between two snapshots; a thread born
// in between counts from zero.
func (a activity) wakeupsSince(before activity) int64 {
	var n int64
	for tid, count := range a.switches {
		n += count - before.switches[tid]
	}
	return n
}

// clockTicksPerSecond is sysconf(_SC_CLK_TCK): USER_HZ, 100 on every Linux
// architecture Go supports, and what /proc/PID/stat counts in.
const clockTicksPerSecond = 100

func monotonicNow() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read the clock: %w", err)
	}
	return ts.Nano(), nil
}

// reapPoll is how often the reap trial looks at the orphans. Each look is
// cheap, but waking every 100 µs raised tini's median for 5000 orphans from
// about 27 ms to 39 ms on a 2-CPU machine (the harness competes with the init
// for a CPU); 1 ms costs at most 1 ms of resolution.
const reapPoll = time.Millisecond

// watchReap waits for the service's list of orphans ("L"), lets their parent
// exit (by opening the ".go" FIFO it waits on), and watches the listed pids
// vanish from /proc as PID 1 reaps them (a zombie keeps its /proc entry until
// it is reaped; pids are handed out cyclically, so none is reused within a
// trial). The hand-over time is the earlier of the service's time for it
// ("M": the service woke from reaping the parent) and the moment the harness
// first saw an orphan gone; the end is when it saw the last one gone. Both are
// CLOCK_MONOTONIC.
func watchReap(c *channel, r *running, timeout time.Duration) (releasedNanos, doneNanos int64, err error) {
	deadline := time.Now().Add(timeout)
	if _, err := await(c, r, deadline, func(m message) bool { return m.kind == 'L' }); err != nil {
		return 0, 0, fmt.Errorf("waiting for the orphan list: %w", err)
	}
	pids, err := readPIDs(c.path() + ".orphans")
	if err != nil {
		return 0, 0, err
	}
	// Their parent has not exited yet, so none can have been reaped.
	if !procExists(pids[0]) {
		return 0, 0, fmt.Errorf("orphan %d was gone before its parent exited", pids[0])
	}
	if err := openAndClose(c.path() + ".go"); err != nil {
		return 0, 0, err
	}

	var firstGoneNanos int64
	next := 0
	for {
		for next < len(pids) && !procExists(pids[next]) {
			if next == 0 {
				if firstGoneNanos, err = monotonicNow(); err != nil {
					return 0, 0, err
				}
			}
			next++
		}
		if next == len(pids) {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("timed out after %v with %d of %d orphans not reaped", timeout, len(pids)-next, len(pids))
		}
		time.Sleep(reapPoll)
	}
	if doneNanos, err = monotonicNow(); err != nil {
		return 0, 0, err
	}
	released := ""
	_, err = await(c, r, deadline, func(m message) bool {
		released = m.arg
		return m.kind == 'M'
	})
	if err != nil {
		return 0, 0, fmt.Errorf("waiting for the service's hand-over time: %w", err)
	}
	if releasedNanos, err = parseNanos(released); err != nil {
		return 0, 0, err
	}
	return min(releasedNanos, firstGoneNanos), doneNanos, nil
}

// openAndClose opens a FIFO for writing, which releases the reader waiting
// on it, and closes it again. The open does not block, so a reader that never
// comes (the service failed) ends in an error rather than a hung harness.
func openAndClose(path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			return unix.Close(fd)
		}
		// ENXIO: no reader has the FIFO open yet (fifo(7)).
		if err != unix.ENXIO || time.Now().After(deadline) {
			return fmt.Errorf("release the orphans' parent via %s: %w", path, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func readPIDs(path string) ([]int, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the orphan list: %w", err)
	}
	pids, err := procfs.ParseChildren(text) // whitespace-separated pids, same as a children file
	if err != nil {
		return nil, fmt.Errorf("orphan list: %w", err)
	}
	if len(pids) == 0 {
		return nil, errors.New("the orphan list is empty")
	}
	return pids, nil
}

// procExists reports whether pid has a /proc entry: alive or a zombie.
func procExists(pid int) bool {
	var st unix.Stat_t
	return unix.Stat("/proc/"+strconv.Itoa(pid), &st) == nil
}

func parseNanos(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad timestamp %q from the service: %w", s, err)
	}
	return n, nil
}
