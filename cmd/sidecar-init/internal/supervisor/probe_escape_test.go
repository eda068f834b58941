package supervisor

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
)

// leaveGroupAndHang is an exec probe that moves itself into its parent's process group
// (setpgid to an existing group of its session, as a daemon may; the supervisor's own
// group here), writes its pid, and hangs.
func leaveGroupAndHang(pidFile string) []string {
	return []string{"/usr/bin/perl", "-e",
		`setpgrp(0, getpgrp(getppid())) or die "setpgid: $!"; open(F, ">", "` + pidFile + `.tmp") or die; print F $$; close F; rename("` + pidFile + `.tmp", "` + pidFile + `"); sleep 1000`}
}

// A readiness exec probe still running at ready_timeout is SIGKILLed (README), "so it can
// neither outlive sidecar-init nor pass for a later incarnation". The SIGKILL went to the
// probe's process group only (kill(-pid)): a probe that left its group was not reached,
// never reaped, and held the supervisor's exit for ever (it waits for its probes' reaps).
func TestExecProbeThatLeftItsGroupIsKilledAtReadyTimeout(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "probe")
	d := shDaemon("svc", "exec tail -f /dev/null")
	d.Ready = config.Probe{Exec: leaveGroupAndHang(pidFile)}
	d.ReadyTimeout = 300 * time.Millisecond
	h.run([]config.Daemon{d}, nil)
	probe := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(probe, syscall.SIGKILL) }) // lets the loop end
	select {
	case code := <-h.done:
		if code != 137 {
			t.Fatalf("exit code %d, want 137", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sidecar-init did not exit 5 s after ready_timeout: probe %d alive=%v, not killed\n%s",
			probe, alive(probe), h.dumpLogs())
	}
}

// The same for a liveness exec probe at liveness_timeout, then a shutdown: the stop signal
// (and a second one) cannot end sidecar-init while the probe lives.
func TestExecProbeThatLeftItsGroupIsKilledAtLivenessTimeout(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "probe")
	d := fake(t, h, "guard", time.Second)
	d.Liveness = config.Probe{Exec: leaveGroupAndHang(pidFile)}
	d.LivenessInterval, d.LivenessTimeout, d.LivenessFailures = 100*time.Millisecond, 200*time.Millisecond, 100
	h.run([]config.Daemon{d}, nil)
	probe := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(probe, syscall.SIGKILL) })
	h.waitMessage("liveness probe failed") // its timeout: SIGKILL sent to its group
	time.Sleep(300 * time.Millisecond)
	if alive(probe) {
		t.Errorf("liveness probe %d still alive after its liveness_timeout's SIGKILL", probe)
	}
	h.stop <- syscall.SIGTERM
	h.stop <- syscall.SIGTERM
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("sidecar-init did not exit 5 s after two stop signals: probe %d alive=%v\n%s", probe, alive(probe), h.dumpLogs())
	}
}
