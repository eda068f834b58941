package supervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

func shDaemon(name, script string) config.Daemon {
	return config.Daemon{Name: name, Command: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}, Grace: time.Second}
}

// readPid waits for a pid file a probe writes.
func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		data, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An exec probe belongs to one incarnation of its daemon. When that incarnation dies, its
// probe is killed, and a pass it would report later cannot make the next incarnation ready.
func TestExecProbeDiesWithItsIncarnation(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	d := shDaemon("svc", "if [ -e "+dir+"/second ]; then exec tail -f /dev/null; fi; touch "+dir+"/second; sleep 0.3; exit 1")
	d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
	// The first attempt passes once the test opens the gate; every later one fails.
	d.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "if [ ! -e " + dir + "/first ]; then echo $$ > " + dir + "/first.tmp; mv " + dir + "/first.tmp " + dir + "/first; " +
		"while [ ! -e " + dir + "/gate ]; do sleep 0.01; done; exit 0; fi; exit 1"}}
	d.ReadyTimeout = time.Hour
	h.run([]config.Daemon{d}, nil)
	firstProbe := readPid(t, filepath.Join(dir, "first"))
	h.waitTransitions("svc", "spawn", 2)
	deadline := time.Now().Add(testTimeout)
	if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Gone and reaped: the loop has handled its exit, whatever it was.
	for alive(firstProbe) {
		if time.Now().After(deadline) {
			t.Fatalf("the first incarnation's probe %d is still there", firstProbe)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.hasTransition("svc", fsm.DaemonRunning) {
		t.Fatalf("a probe of the first incarnation made the second one ready:\n%s", h.dumpLogs())
	}
	h.stop <- syscall.SIGTERM
	if code := h.exitCode(); code != 1 {
		t.Fatalf("exit code %d, want the crash's 1", code)
	}
}

// A probe that hangs is killed with the daemon it could not make ready: nothing outlives
// the supervisor.
func TestHangingExecProbeIsKilledAtReadyTimeout(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	d := shDaemon("svc", "exec tail -f /dev/null")
	d.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "echo $$ > " + dir + "/probe; exec tail -f /dev/null"}}
	d.ReadyTimeout = 300 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit code %d, want 137 (SIGKILLed for not being ready)", code)
	}
	if probe := readPid(t, filepath.Join(dir, "probe")); alive(probe) {
		t.Fatalf("the hanging probe %d outlived the supervisor", probe)
	}
}

// An exec probe runs as its daemon does: with its user, not as root.
func TestExecProbeRunsAsTheDaemonsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a daemon as another user")
	}
	h := newHarness(t)
	d := shDaemon("svc", "exec tail -f /dev/null")
	d.Credential = &procs.Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/"}
	d.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", `test "$(id -u)" = 65534`}}
	d.ReadyTimeout = testTimeout
	h.run([]config.Daemon{d}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	h.stopAndWant(0)
}

// A tcp or file attempt that passes after ready_timeout ran out comes too late: the daemon
// was SIGKILLed as a failed start and must not be marked ready while its death is reaped.
func TestProbePassAfterReadyTimeoutIsTooLate(t *testing.T) {
	core, _ := observer.New(zapcore.DebugLevel)
	s := New(Options{Log: zlog.New(core), Daemons: []config.Daemon{{Name: "svc", Command: []string{"/bin/true"},
		Ready: config.Probe{File: "/nonexistent"}, ReadyTimeout: time.Second}}})
	d := s.daemons[0]
	if _, err := d.machine.Fire(fsm.DaemonSpawn); err != nil {
		t.Fatal(err)
	}
	// A pid above the kernel's limit (PID_MAX_LIMIT, 2^22): the SIGKILL reaches nobody.
	now := time.Now()
	d.pid, d.probing, d.probeFor, d.readyDeadline = 1<<22+1, true, 1<<22+1, now
	d.groups = []procGroup{{pgid: d.pid}}
	s.notReadyInTime(d, now)
	s.onProbeResult(probeResult{d: d, pid: d.pid, ok: true}, now)
	if got := d.machine.Current(); got != fsm.DaemonStarting {
		t.Fatalf("state %s after a pass that came after ready_timeout, want starting (its death is next)", got)
	}
}

// An operator's stop kills the daemon's running exec probe at once: the probe would
// otherwise live on through the whole grace.
func TestOperatorStopKillsTheExecProbe(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	d := shDaemon("svc", "trap '' TERM; exec tail -f /dev/null")
	d.Grace = time.Hour
	d.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "echo $$ > " + dir + "/probe.tmp; mv " + dir + "/probe.tmp " + dir + "/probe; exec tail -f /dev/null"}}
	d.ReadyTimeout = time.Hour
	h.run([]config.Daemon{d}, nil)
	probe := readPid(t, filepath.Join(dir, "probe"))
	if resp := h.call("stop", "svc"); !resp.OK {
		t.Fatalf("stop: %+v", resp)
	}
	deadline := time.Now().Add(testTimeout)
	for alive(probe) {
		if time.Now().After(deadline) {
			t.Fatalf("the exec probe %d still runs after its daemon's stop", probe)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop <- syscall.SIGTERM
	h.stop <- syscall.SIGTERM // its grace is an hour: the second stop signal kills it
	h.exitCode()
}

// What an exec probe leaves in its process group is killed when the probe is reaped: a
// probe that starts `sleep &` at every attempt must not pile up processes.
func TestExecProbeLeftoversAreKilled(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	d := shDaemon("svc", "exec tail -f /dev/null")
	// Each attempt leaves a sleeper and records its pid; the third attempt passes.
	d.Ready = config.Probe{Exec: []string{"/bin/sh", "-c", "sleep 987 & echo $! >> " + dir + "/sleepers; [ $(wc -l < " + dir + "/sleepers) -ge 3 ]"}}
	d.ReadyTimeout = time.Hour
	h.run([]config.Daemon{d}, nil)
	h.waitLog("svc", fsm.DaemonRunning)
	data, err := os.ReadFile(filepath.Join(dir, "sleepers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(field)
		deadline := time.Now().Add(testTimeout)
		for alive(pid) && !reapable(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("the sleeper %d a probe left is still running", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	h.stopAndWant(0)
}

// A file probe does not pass on the file an earlier run left (a container restarted in
// place): sidecar-init removes it before the run, since the first attempt comes as the
// daemon is spawned, before the daemon could remove it itself.
func TestFileProbeIgnoresAnEarlierRunsFile(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	mark, wrote := filepath.Join(dir, "ready"), filepath.Join(dir, "wrote")
	if err := os.WriteFile(mark, []byte("an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := shDaemon("backend", "sleep 0.3; : >"+wrote+"; : >"+mark+"; exec sleep 30")
	d.Ready, d.ReadyTimeout = config.Probe{File: mark}, 10*time.Second
	h.run([]config.Daemon{d}, nil)
	h.waitLog("backend", fsm.DaemonRunning)
	if _, err := os.Stat(wrote); err != nil {
		t.Fatalf("backend was ready before it wrote its file (the earlier run's passed):\n%s", h.dumpLogs())
	}
	h.stopAndWant(0)
}

// Nor on the file the run before a policy restart left when it crashed.
func TestFileProbeIgnoresTheCrashedRunsFile(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	mark, crashed, wrote := filepath.Join(dir, "ready"), filepath.Join(dir, "crashed"), filepath.Join(dir, "wrote")
	d := shDaemon("backend", "if [ -e "+crashed+" ]; then sleep 0.3; : >"+wrote+"; : >"+mark+"; exec sleep 30; fi; : >"+mark+"; : >"+crashed+"; exit 1")
	d.Ready, d.ReadyTimeout = config.Probe{File: mark}, 10*time.Second
	d.Restart, d.BackoffInitial, d.BackoffMax, d.BackoffReset = fsm.RestartOnFailure, 10*time.Millisecond, time.Second, time.Hour
	h.run([]config.Daemon{d}, nil)
	h.waitTransitions("backend", "spawn", 2)
	h.waitState("backend", string(fsm.DaemonRunning))
	if _, err := os.Stat(wrote); err != nil {
		t.Fatalf("the restarted backend was ready before it wrote its file (the crashed run's passed):\n%s", h.dumpLogs())
	}
	h.stopAndWant(1)
}

// The removal before a run is the daemon's user's, not root's: a symlink the daemon put in
// a directory it owns cannot make sidecar-init remove a file the daemon could not, while a
// file the daemon could remove itself still goes.
func TestFileProbeRemovalIsTheDaemonUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a daemon as another user")
	}
	h := newHarness(t)
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir's are root's alone
			t.Fatal(err)
		}
	}
	rootOwned, theirs := filepath.Join(dir, "root-owned"), filepath.Join(dir, "theirs")
	for _, d := range []string{rootOwned, theirs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "ready"), []byte("an earlier run\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rootOwned, filepath.Join(theirs, "run")); err != nil {
		t.Fatal(err)
	}
	nobody := &procs.Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/"}
	through := shDaemon("through", "exec sleep 30")
	through.Credential, through.Ready, through.ReadyTimeout = nobody, config.Probe{File: filepath.Join(theirs, "run", "ready")}, testTimeout
	own := shDaemon("own", ": >"+filepath.Join(theirs, "ready")+"; exec sleep 30")
	own.Credential, own.Ready, own.ReadyTimeout = nobody, config.Probe{File: filepath.Join(theirs, "ready")}, testTimeout
	h.run([]config.Daemon{through, own}, nil)
	h.waitLog("own", fsm.DaemonRunning)
	h.waitLog("through", fsm.DaemonRunning) // at once, on the file it could not remove: the warning says so
	if _, err := os.Stat(filepath.Join(rootOwned, "ready")); err != nil {
		t.Errorf("root's file, reached through the daemon's symlink: %v; want it left alone", err)
	}
	warned := h.logs.FilterMessageSnippet("cannot remove the readiness file").FilterField(zlog.String("daemon", "through")).All()
	if len(warned) != 1 || warned[0].ContextMap()["user"] != "nobody" {
		t.Errorf("want one warning naming through and user nobody, got %v", warned)
	}
	if len(h.logs.FilterMessage("removed the readiness file an earlier run left").FilterField(zlog.String("daemon", "own")).All()) != 1 {
		t.Errorf("own's file, in its own directory, was not removed:\n%s", h.dumpLogs())
	}
	h.stopAndWant(0)
}

// A daemon that dies while its exec readiness probe hangs takes the probe with it: the
// probe of a dead run must not keep the supervisor from exiting with the crash's status
// (a mutation review found nothing pinned it: TestExecProbeDiesWithItsIncarnation lets the
// old probe end on its own).
func TestCrashKillsItsHangingReadinessProbe(t *testing.T) {
	h := newHarness(t)
	d := shDaemon("svc", "sleep 0.2; exit 3")
	d.Ready, d.ReadyTimeout = config.Probe{Exec: []string{"/bin/sh", "-c", "exec sleep 1000"}}, time.Hour
	h.run([]config.Daemon{d}, nil)
	if code := h.exitCode(); code != 3 {
		t.Fatalf("exit code %d, want the crash's 3\n%s", code, h.dumpLogs())
	}
}
