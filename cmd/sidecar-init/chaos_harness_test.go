//go:build chaos

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The chaos suite's harness: one scenario runs the real binary as PID 1 of a fresh PID
// namespace (or, where a scenario says so, as a plain child subreaper), with the chaos
// daemon of testdata/chaosdaemon as every daemon, and reads the supervisor's own JSON log,
// the daemons' record file and /proc.

// chaosDaemonPath is the chaos daemon built by TestChaos (static, no race detector: a
// scenario runs hundreds at once).
var chaosDaemonPath string

func buildChaosDaemon(dir string) (string, error) {
	out := filepath.Join(dir, "chaosdaemon")
	build := exec.Command("go", "build", "-o", out, "./testdata/chaosdaemon")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the chaos daemon: %w\n%s", err, msg)
	}
	return out, nil
}

// buildRaceSupervisor builds sidecar-init with the race detector, for -chaos.race.
func buildRaceSupervisor(dir string) (string, error) {
	out := filepath.Join(dir, "sidecar-init-race")
	build := exec.Command("go", "build", "-race", "-o", out, ".")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sidecar-init -race: %w\n%s", err, msg)
	}
	return out, nil
}

// scenario is one chaos scenario's working directory, record file and result row.
type scenario struct {
	t      *testing.T
	dir    string
	record string
	result *chaosResult
}

func newScenario(t *testing.T, result *chaosResult) *scenario {
	dir := t.TempDir()
	return &scenario{t: t, dir: dir, record: filepath.Join(dir, "record"), result: result}
}

// daemon is one [[daemon]] entry running the chaos daemon with args.
func (s *scenario) daemon(name, grace string, args ...string) string {
	argv := append([]string{chaosDaemonPath, "-name", name, "-record", s.record}, args...)
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf("[[daemon]]\nname = %q\ncommand = [%s]\ngrace = %q\n", name, strings.Join(quoted, ", "), grace)
}

// stdio says what sidecar-init's stdout and stderr are.
type stdio int

const (
	stderrToFile      stdio = iota // stderr a file the test reads, stdout /dev/null
	stderrStalledPipe              // stderr a pipe whose read end the test holds and never reads
	stdioClosed                    // fds 1 and 2 closed at exec
	stdioBrokenPipes               // stdout and stderr pipes whose read ends are closed (EPIPE, SIGPIPE)
)

// chaosInit is one running sidecar-init.
type chaosInit struct {
	t          *testing.T
	proc       *os.Process
	pid1       bool
	stderrPath string   // stderrToFile only
	stalled    *os.File // stderrStalledPipe only: the read end nobody reads
	done       chan struct{}
	state      *os.ProcessState // set before done is closed
	sampler    *procSampler
}

// start runs sidecar-init on table, at debug level so every reaped orphan is logged.
func (s *scenario) start(table string, pid1 bool, mode stdio, env ...string) *chaosInit {
	t := s.t
	t.Helper()
	cfg := filepath.Join(s.dir, "daemons.toml")
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = devNull.Close() }()
	c := &chaosInit{t: t, pid1: pid1, done: make(chan struct{})}
	var files []*os.File
	var parentEnds []*os.File // the child's ends, closed in the test once it started
	switch mode {
	case stderrToFile:
		c.stderrPath = filepath.Join(s.dir, "stderr")
		f, err := os.Create(c.stderrPath)
		if err != nil {
			t.Fatal(err)
		}
		parentEnds = append(parentEnds, f)
		files = []*os.File{devNull, devNull, f}
	case stderrStalledPipe:
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		c.stalled = r
		parentEnds = append(parentEnds, w)
		files = []*os.File{devNull, devNull, w}
	case stdioClosed:
		// os.StartProcess: "a nil entry corresponds to that file being closed".
		files = []*os.File{devNull, nil, nil}
	case stdioBrokenPipes:
		files = []*os.File{devNull}
		for range 2 {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Close() // nobody will ever read: every write is EPIPE and raises SIGPIPE
			parentEnds = append(parentEnds, w)
			files = append(files, w)
		}
	}
	binaryPath := binary
	if raceSupervisor != "" {
		binaryPath = raceSupervisor
	}
	attr := &os.ProcAttr{
		Env: append([]string{"PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0 halt_on_error=1",
			"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(s.dir, "control.sock")}, env...),
		Files: files,
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if pid1 {
		attr.Sys.Cloneflags = syscall.CLONE_NEWPID
	}
	c.proc, err = os.StartProcess(binaryPath, []string{binaryPath, "--config", cfg, "--log-level", "debug"}, attr)
	for _, f := range parentEnds {
		_ = f.Close()
	}
	if err != nil {
		if pid1 && errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot create a PID namespace here (%v): run as root to test sidecar-init as PID 1", err)
		}
		t.Fatal(err)
	}
	c.sampler = startSampler(c.proc.Pid)
	go func() {
		c.state, _ = c.proc.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = c.proc.Kill()
		<-c.done
		c.sampler.finish()
		if c.stalled != nil {
			_ = c.stalled.Close()
		}
	})
	return c
}

func (c *chaosInit) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.proc.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to sidecar-init: %v", sig, err)
	}
}

func (c *chaosInit) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to limit for sidecar-init to exit and returns its status (-1 when a
// signal killed it).
func (c *chaosInit) waitExit(limit time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
		return c.state.ExitCode()
	case <-time.After(limit):
		c.t.Fatalf("sidecar-init did not exit within %v; log tail:\n%s", limit, tail(c.logText(), 40))
		return -1
	}
}

func (c *chaosInit) logText() string {
	if c.stderrPath == "" {
		return ""
	}
	data, _ := os.ReadFile(c.stderrPath)
	return string(data)
}

// waitLogCount waits until the fragments occur at least n times in all in the log.
func (c *chaosInit) waitLogCount(n int, limit time.Duration, fragments ...string) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		text := c.logText()
		got := 0
		for _, f := range fragments {
			got += strings.Count(text, f)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the log shows %q %d times after %v, want %d; tail:\n%s", fragments, got, limit, n, tail(text, 40))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recordLines is the record file split into lines.
func (s *scenario) recordLines() []string {
	data, _ := os.ReadFile(s.record)
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// waitRecordCount waits until at least n record lines contain fragment, and returns them.
func (s *scenario) waitRecordCount(fragment string, n int, limit time.Duration) []string {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var matching []string
		for _, l := range s.recordLines() {
			if strings.Contains(l, fragment) {
				matching = append(matching, l)
			}
		}
		if len(matching) >= n {
			return matching
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the record has %d lines with %q after %v, want %d; tail:\n%s",
				len(matching), fragment, limit, n, tail(strings.Join(s.recordLines(), "\n"), 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recordedInstant returns the time in the first record line starting with prefix and
// carrying "made_unix_nano=" (or "spawned_unix_nano=").
func (s *scenario) recordedInstant(prefix string) time.Time {
	s.t.Helper()
	for _, l := range s.recordLines() {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, key := range []string{"made_unix_nano=", "spawned_unix_nano="} {
			if _, v, ok := strings.Cut(l, key); ok {
				if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
					return time.Unix(0, ns)
				}
			}
		}
	}
	s.t.Fatalf("no record line %q with an instant", prefix)
	return time.Time{}
}

// startedPids maps each recorded "NAME started pid=P ..." to P (the pid in the daemon's
// namespace).
func (s *scenario) startedPids() map[string]int {
	out := map[string]int{}
	for _, l := range s.recordLines() {
		name, rest, ok := strings.Cut(l, " started pid=")
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, " ")
		if pid, err := strconv.Atoi(pidText); err == nil {
			out[name] = pid
		}
	}
	return out
}

// waitNamespaceSettles polls the init's namespace until it holds exactly want processes
// besides the init, none of them a zombie, and returns when that first held.
func (c *chaosInit) waitNamespaceSettles(want int, limit time.Duration) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		procs := namespaceProcs(c.t, c.proc.Pid)
		zombies := 0
		for _, state := range procs {
			if state == "Z" {
				zombies++
			}
		}
		if len(procs) == want && zombies == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %v the namespace holds %d processes (%d zombies), want %d and no zombie",
				limit, len(procs), zombies, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logEntry is one JSON line of the supervisor's log.
type logEntry map[string]any

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

func (e logEntry) num(key string) (int, bool) {
	f, ok := e[key].(float64)
	return int(f), ok
}

func (e logEntry) ts() time.Time {
	ts, _ := time.Parse(time.RFC3339Nano, e.str("ts"))
	return ts
}

// parseLog parses every line; a line that is not a JSON object is an error (nothing but
// sidecar-init writes to this stderr: the chaos daemons are silent).
func parseLog(t *testing.T, text string) []logEntry {
	t.Helper()
	var out []logEntry
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	bad := 0
	for scanner.Scan() {
		var e logEntry
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			if bad++; bad <= 5 {
				t.Errorf("stderr line is not JSON: %q", scanner.Text())
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// transitions returns the transition lines with this event (any machine when machine is "").
func transitions(entries []logEntry, machine, event string) []logEntry {
	var out []logEntry
	for _, e := range entries {
		if e.str("msg") == "transition" && e.str("event") == event && (machine == "" || e.str("machine") == machine) {
			out = append(out, e)
		}
	}
	return out
}

// byMachine groups transition lines with this event by machine.
func byMachine(entries []logEntry, event string) map[string][]logEntry {
	out := map[string][]logEntry{}
	for _, e := range transitions(entries, "", event) {
		out[e.str("machine")] = append(out[e.str("machine")], e)
	}
	return out
}

// deathEvents are the daemon events of a reaped death: "exit" (status 0) and "fail" (nonzero
// or a signal) when it died on its own, "died" when it died after its stop.
var deathEvents = []string{"exit", "fail", "died"}

// deathsByMachine groups every death transition by machine.
func deathsByMachine(entries []logEntry) map[string][]logEntry {
	out := map[string][]logEntry{}
	for _, event := range deathEvents {
		for name, lines := range byMachine(entries, event) {
			out[name] = append(out[name], lines...)
		}
	}
	return out
}

// death is what a daemon's one death transition must say: its exit_code, and the state it
// died from ("running" on its own; "terminating" or "killed" after its stop).
type death struct {
	code int
	from string
}

// checkDiedOnce: every daemon in want has exactly one death transition, from the wanted
// state, with the wanted exit_code and the event that goes with them (exit or fail from
// running, died after a stop); and no other daemon died. It returns the deaths.
func checkDiedOnce(t *testing.T, entries []logEntry, want map[string]death) map[string]logEntry {
	t.Helper()
	died := deathsByMachine(entries)
	out := map[string]logEntry{}
	errs := 0
	report := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, name := range sortedKeys(want) {
		w := want[name]
		lines := died[name]
		if len(lines) != 1 {
			report("daemon %s: %d death transitions logged, want exactly 1", name, len(lines))
			continue
		}
		e := lines[0]
		out[name] = e
		if got, ok := e.num("exit_code"); !ok || got != w.code {
			report("daemon %s died with exit_code %v, want %d: %v", name, e["exit_code"], w.code, e)
		}
		if e.str("from") != w.from {
			report("daemon %s died from %q, want from %q", name, e.str("from"), w.from)
		}
		wantEvent := "died"
		if w.from == "running" {
			wantEvent = map[bool]string{true: "exit", false: "fail"}[w.code == 0]
		}
		if e.str("event") != wantEvent {
			report("daemon %s: death from %s logged as event %q, want %q", name, e.str("from"), e.str("event"), wantEvent)
		}
	}
	for name := range died {
		if _, ok := want[name]; !ok {
			report("daemon %s died, and no death was expected of it", name)
		}
	}
	if errs > 10 {
		t.Errorf("... and %d more", errs-10)
	}
	return out
}

// reapedOrphans maps each pid logged as "reaped orphan" to its exit codes (more than one
// would be an exit logged twice, or a pid reused).
func reapedOrphans(entries []logEntry) map[int][]int {
	out := map[int][]int{}
	for _, e := range entries {
		if e.str("msg") != "reaped orphan" {
			continue
		}
		pid, _ := e.num("pid")
		code, _ := e.num("exit_code")
		out[pid] = append(out[pid], code)
	}
	return out
}

func countMsg(entries []logEntry, msg string) int {
	n := 0
	for _, e := range entries {
		if e.str("msg") == msg {
			n++
		}
	}
	return n
}

// checkNoDrops fails when the log says it dropped lines: "nothing lost" would then be
// unprovable from the log.
func checkNoDrops(t *testing.T, entries []logEntry) {
	t.Helper()
	for _, e := range entries {
		if strings.HasPrefix(e.str("msg"), "log lines dropped") {
			t.Errorf("the supervisor dropped log lines, so the log cannot prove nothing was lost: %v", e)
		}
	}
}

// checkNoRace fails on a data race report from a -chaos.race build.
func checkNoRace(t *testing.T, text string) {
	t.Helper()
	if i := strings.Index(text, "WARNING: DATA RACE"); i >= 0 {
		t.Errorf("the race detector fired in sidecar-init:\n%s", text[i:min(len(text), i+4000)])
	}
}

func tail(text string, lines int) string {
	parts := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// procSample is what /proc says about the supervisor at one instant.
type procSample struct {
	cpu   time.Duration // utime + stime
	fds   int
	rssKB int
}

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, fixed at 100 in the
// Linux ABI whatever the kernel's own HZ (man 5 proc, "clock ticks").
const userHZ = 100

func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command's closing parenthesis start at field 3 (state); utime and
	// stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("odd /proc/%d/stat: %q", pid, stat)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / userHZ
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return s, nil
}

// procSampler reads /proc for the supervisor every 10 ms while it lives, keeping the first
// sample, the last one (the closest to its exit) and the peaks.
type procSampler struct {
	stop, stopped chan struct{}
	once          sync.Once

	mu              sync.Mutex
	first, last     procSample // guarded by mu
	samples         int        // guarded by mu
	peakRSS, peakFD int        // guarded by mu
}

func startSampler(pid int) *procSampler {
	p := &procSampler{stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			s, err := readProc(pid)
			if err == nil && s.rssKB > 0 { // a zombie's RSS reads 0: not a sample of the living
				p.mu.Lock()
				if p.samples == 0 {
					p.first = s
				}
				p.samples++
				p.last = s
				p.peakRSS = max(p.peakRSS, s.rssKB)
				p.peakFD = max(p.peakFD, s.fds)
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *procSampler) finish() {
	p.once.Do(func() { close(p.stop) })
	<-p.stopped
}

func (p *procSampler) snapshot() (first, last procSample, peakRSS, peakFD int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first, p.last, p.peakRSS, p.peakFD
}

// chaosResult is one row of docs/reliability.md.
type chaosResult struct {
	name    string // subtest name
	title   string
	size    string
	checked string
	figure  string
	passed  bool
	// before is sampled once the daemons run and before the fault; the sampler supplies the
	// last sample before exit and the peaks.
	before, last    procSample
	peakRSS, peakFD int
	haveProc        bool
	skipped         string
	ran             bool // false when -run left it out
}

// measure stores the supervisor's /proc figures in the result: before (now) and, once the
// supervisor has exited, the sampler's last sample and peaks.
func (c *chaosInit) measureBefore(r *chaosResult) {
	c.t.Helper()
	s, err := readProc(c.proc.Pid)
	if err != nil {
		c.t.Fatalf("read /proc for sidecar-init: %v", err)
	}
	r.before = s
}

func (c *chaosInit) measureAfter(r *chaosResult) {
	<-c.done
	c.sampler.finish()
	_, last, peakRSS, peakFD := c.sampler.snapshot()
	r.last, r.peakRSS, r.peakFD, r.haveProc = last, peakRSS, peakFD, true
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
