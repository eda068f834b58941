package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
)

// A dead daemon's process group is closed as soon as its last process is reaped, not at
// the shutdown: by then its pgid can be a new process's (pids are reused), which would get
// the dead daemon's stop signal and grace. The test forces the reuse: ns_last_pid makes
// the next process of the namespace take the emptied group's id, and a restart of another
// daemon is that process.
func TestPID1ForgetsAGroupOnceItEmptied(t *testing.T) {
	testGroupIDReuse(t, "/bin/sleep 0.2 & exit 0", func(p *initProc, _ string) {
		p.waitLog(`"msg":"reaped orphan"`) // x's sleep: x's group is empty now
	})
}

// The same when the group empties with no reap to see it: its last process moves out with
// setsid (a daemon's worker that daemonizes). Found by a review: x's entry stayed, and once
// y's restart took the id, x's stop signal (or a start of x) reached y.
func TestPID1ForgetsAGroupEmptiedBySetsid(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skipf("no setsid program (%v)", err)
	}
	testGroupIDReuse(t, `/bin/sh -c 'sleep 0.2; exec setsid /bin/sh -c "touch $0.moved; exec sleep 1000"' ${0} & exit 0`,
		func(p *initProc, marker string) {
			deadline := time.Now().Add(waitLimit)
			for _, err := os.Stat(marker + ".moved"); err != nil; _, err = os.Stat(marker + ".moved") {
				if time.Now().After(deadline) {
					p.t.Fatalf("x's leftover never moved out of its group:\n%s", p.stderr())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
}

// testGroupIDReuse runs daemon x (the shell command xScript, $0 a path for markers), which
// exits at once leaving what empties its group (emptied waits for that), and daemon y; it
// then makes y's restart take x's old pid, and checks that x's stale group is not y's.
func testGroupIDReuse(t *testing.T, xScript string, emptied func(p *initProc, marker string)) {
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skipf("no nsenter to set ns_last_pid in the test's PID namespace (%v)", err)
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	marker := filepath.Join(dir, "x")
	table := fmt.Sprintf("[[daemon]]\nname = \"x\"\ncommand = [\"/bin/sh\", \"-c\", %q, %q]\ngrace = \"1s\"\n", xScript, marker) +
		daemonTOML(t, record, "y", "1s")
	p := startInit(t, table, true)
	p.record = record
	p.waitRecord("y started")
	emptied(p, marker)
	m := regexp.MustCompile(`"machine":"x","event":"spawn","from":"pending","to":"starting","pid":(\d+)`).FindStringSubmatch(p.stderr())
	if m == nil {
		t.Fatalf("no spawn of x in the log:\n%s", p.stderr())
	}
	xpid, _ := strconv.Atoi(m[1])

	// Make y's next run take x's pid: the kernel hands out ns_last_pid+1 next. Another
	// process may take it first (try again, a few times); a thread the Go runtime starts in
	// sidecar-init may too, and holds it for good (then the scenario cannot be built).
	socket := filepath.Join(filepath.Dir(p.stderrPath), "control.sock")
	ySpawn := regexp.MustCompile(`"machine":"y","event":"spawn","from":"pending","to":"starting","pid":(\d+)`)
	for attempt := 1; ; attempt++ {
		setLastPid := exec.Command("nsenter", "-t", strconv.Itoa(p.cmd.Process.Pid), "-p", "--",
			"/bin/sh", "-c", fmt.Sprintf("echo %d > /proc/sys/kernel/ns_last_pid", xpid-1))
		if out, err := setLastPid.CombinedOutput(); err != nil {
			t.Fatalf("set ns_last_pid: %v\n%s", err, out)
		}
		if out, _, code := client(t, socket, "restart", "y"); code != 0 {
			t.Fatalf("restart y: %d %q", code, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(ySpawn.FindAllString(p.stderr(), -1)) < 1+attempt && time.Now().Before(deadline) { // (its first start too)
			time.Sleep(10 * time.Millisecond)
		}
		spawns := ySpawn.FindAllStringSubmatch(p.stderr(), -1)
		if len(spawns) < 1+attempt {
			t.Fatalf("y was not started again (attempt %d):\n%s", attempt, p.stderr())
		}
		if pid, _ := strconv.Atoi(spawns[len(spawns)-1][1]); pid == xpid {
			break
		}
		if threadHolds(t, p.cmd.Process.Pid, xpid) {
			// A runtime thread never exits: the pid is gone for the life of the process.
			t.Skipf("a thread of sidecar-init took pid %d, x's old group id, so no daemon can get it in this run", xpid)
		}
		if attempt == 5 {
			t.Fatalf("in 5 attempts y never got x's old pid %d (threads took it each time):\n%s", xpid, p.stderr())
		}
	}
	out, _, _ := client(t, socket, "status", "--json")
	var rows []control.DaemonStatus
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[1].Pid != xpid {
		t.Fatalf("y does not run as pid %d, x's old group: %q", xpid, out)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, p.stderr())
	}
	if strings.Contains(p.stderr(), `"msg":"stopping processes left in an exited daemon's process group","daemon":"x"`) {
		t.Fatalf("x's long-empty group (now y's) got x's stop signal:\n%s", p.stderr())
	}
}

// Outside PID 1, a process that escaped its daemon's group outlives the supervisor however
// it exits: when every daemon died on its own, too, the log names it.
func TestNotPID1ReportsWhatEscapedWhenEveryDaemonDied(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	p := startInit(t, daemonTOML(t, record, "escaper", "300ms", "-escape", "-exit-after", "300ms"), false)
	p.record = record
	escaped := escapedPid(t, p.waitRecord("escaper.escaped started", "escaper exit 0"))
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(p.stderr(), "could not stop processes that escaped") ||
		!strings.Contains(p.stderr(), strconv.Itoa(escaped)) {
		t.Errorf("the log does not name escaped pid %d:\n%s", escaped, p.stderr())
	}
}

// As PID 1, when every daemon died on its own, what escaped its group is swept before the
// exit as on a stop: it no longer holds a labelled-output pipe through the exit's drain.
func TestPID1SweepsWhatEscapedWhenEveryDaemonDied(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	table := daemonTOML(t, record, "escaper", "300ms", "-escape", "-exit-after", "300ms") + "log = \"prefix\"\n"
	p := startInit(t, table, true)
	p.record = record
	p.waitRecord("escaper.escaped started", "escaper exit 0")
	initPid := p.cmd.Process.Pid
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if left := namespaceProcs(t, initPid); len(left) != 0 {
		t.Errorf("processes left in the namespace: %v", left)
	}
	if !strings.Contains(p.stderr(), "killing processes that escaped") || strings.Contains(p.stderr(), "labelled daemon output still open at exit") {
		t.Errorf("the escaped process was not swept before the drain:\n%s", p.stderr())
	}
}

// With log = "json" the container's whole output is JSON lines: an exec probe's output
// too, labelled NAME.probe.
func TestExecProbeOutputIsLabelled(t *testing.T) {
	dir := t.TempDir()
	record, marker := filepath.Join(dir, "record"), filepath.Join(dir, "up")
	table := daemonTOML(t, record, "a", "1s", "-touch", marker, "-ready-after", "100ms") +
		fmt.Sprintf("log = \"json\"\nready = { exec = [\"/bin/sh\", \"-c\", \"echo probing >&2; test -e %s\"] }\n", marker)
	p := startInit(t, table, false)
	p.waitLog(`"msg":"every daemon is ready"`)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(p.stderr()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("stderr line is not JSON: %q", line)
		}
	}
	if !strings.Contains(p.stderr(), `"daemon":"a.probe","stream":"stderr","line":"probing"`) {
		t.Errorf("no labelled probe line:\n%s", p.stderr())
	}
}

// threadHolds says one of initPid's threads has the pid nsPid in its PID namespace.
func threadHolds(t *testing.T, initPid, nsPid int) bool {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", initPid))
	for _, status := range tasks {
		data, err := os.ReadFile(status)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(nsPid) {
				return true
			}
		}
	}
	return false
}

// As PID 1, what the last daemon left in its own group is stopped with the group (its stop
// signal, SIGKILL at the grace) and reaped as it dies: it escaped nothing, so there is no sweep of every process (kill(-1)) and no
// warning that processes escaped. A review saw both in 10 of 10 runs: the leftover had
// been SIGKILLed, but was not dead yet when the supervisor looked.
func TestPID1SweepsNothingWhenTheLeftoversStayedInTheirGroup(t *testing.T) {
	table := "[[daemon]]\nname = \"leaver\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 30 & sleep 0.1; exit 1\"]\n"
	for range 5 {
		p := startInit(t, table, true)
		initPid := p.cmd.Process.Pid
		if code := p.wait(); code != 1 {
			t.Fatalf("exit code %d, want the daemon's 1:\n%s", code, p.stderr())
		}
		if left := namespaceProcs(t, initPid); len(left) != 0 {
			t.Errorf("processes left in the namespace: %v", left)
		}
		if !strings.Contains(p.stderr(), "stopping processes left in an exited daemon's process group") {
			t.Fatalf("the leftover sleep was not stopped with its group:\n%s", p.stderr())
		}
		if strings.Contains(p.stderr(), "escaped") {
			t.Fatalf("a leftover in the daemon's own group was taken for an escaped process:\n%s", p.stderr())
		}
	}
}

// A group that empties with no reap to see it (its last process moves out with setsid)
// is not reported as killed at its grace: nobody was in it. Found by a review.
func TestPID1NoKillLoggedForAGroupThatEmptiedUnseen(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skipf("no setsid program (%v)", err)
	}
	table := "grace = \"1s\"\n[[daemon]]\nname = \"l\"\ncommand = [\"/bin/sh\", \"-c\", " +
		strconv.Quote("trap '(sleep 0.2; exec setsid sleep 1000) & exit 0' TERM; while :; do sleep 0.1; done") + "]\n"
	p := startInit(t, table, true)
	p.waitLog(`"machine":"l","event":"spawn"`)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, p.stderr())
	}
	if strings.Contains(p.stderr(), "killed processes left in an exited daemon's process group") {
		t.Fatalf("a kill was logged for a group nobody was in:\n%s", p.stderr())
	}
}

// A dead daemon's group id reused by a double fork (setsid, fork, the new leader exits)
// names a group with no leader to see, but in another session: a daemon's group is made
// with setpgid, so its processes share sidecar-init's session. A review found a `start` of
// the dead daemon stopping (and waiting for) the other daemon's worker. Run under
// `unshare --mount-proc`, so that sidecar-init's /proc is its namespace's: without that it
// cannot tell (and says nothing is reused).
func TestPID1ReusedGroupInAnotherSessionIsNotTheDaemons(t *testing.T) {
	for _, tool := range []string{"unshare", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (%v)", tool, err)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("a PID namespace with its own /proc needs root")
	}
	dir := t.TempDir()
	aPid, bWorker := filepath.Join(dir, "a.pid"), filepath.Join(dir, "b.worker")
	socket := filepath.Join(dir, "control.sock")
	table := fmt.Sprintf(`grace = "2s"
[[daemon]]
name = "a"
command = ["/bin/sh", "-c", "echo $$ > %[1]s; (sleep 0.5; exec setsid sleep 1000) & exit 0"]

[[daemon]]
name = "b"
command = ["/bin/sh", "-c", "sleep 1; echo $(($(cat %[1]s) - 1)) > /proc/sys/kernel/ns_last_pid; setsid /bin/sh -c 'sleep 1000 & echo $$ > %[2]s; exit 0'; exec sleep 1000"]
`, aPid, bWorker)
	cfg := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &initProc{t: t, stderrPath: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stderr.Close() }()
	p.cmd = exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", binary, "--config", cfg, "--log-level", "debug")
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
	p.cmd.Stderr = stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.launch(); err != nil { // killed at the end: unshare, and PID 1 with it (--kill-child)
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	var worker int // the id of the worker's group: its setsid'd shell's pid
	for worker == 0 {
		data, _ := os.ReadFile(bWorker)
		worker, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		if time.Now().After(deadline) {
			t.Fatalf("b's worker never started:\n%s", p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(aPid)
	a, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if worker != a {
		t.Skipf("b's worker group did not take a's old id %d (it is %d): another process took the id first", a, worker)
	}
	if out, _, code := client(t, socket, "start", "a"); code != 0 || strings.Contains(out, "once the processes its last run left have exited") {
		t.Errorf("start a: exit %d, %q; want it started at once", code, out)
	}
	// Stop it all: SIGTERM to unshare does not reach PID 1, so ask PID 1 through its host pid.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
	init, _ := strconv.Atoi(strings.TrimSpace(string(kids)))
	if init <= 0 {
		t.Fatalf("no PID 1 under unshare %d", p.cmd.Process.Pid)
	}
	if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	// (a's new run leaves a group of its own, which the shutdown stops: not that one.)
	if strings.Contains(p.stderr(), fmt.Sprintf(`"msg":"stopping processes left in an exited daemon's process group","daemon":"a","pgid":%d,`, a)) {
		t.Fatalf("b's worker, in a group that took a's old id, was stopped as a's:\n%s", p.stderr())
	}
}
