package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
)

// openDir is a temporary directory other users may enter (t.TempDir's parent is root's
// only), removed at the test's end.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sidecar-init-open-")
	if err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyForOthers copies the program at from into dir as name, with mode (setuid included),
// so that other users may run it: the test binaries live where only root may.
func copyForOthers(t *testing.T, dir, from, name string, mode os.FileMode) string {
	t.Helper()
	to := filepath.Join(dir, name)
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, data, 0o700)
	}
	if err == nil {
		err = os.Chmod(to, mode) // past the umask; setuid only once written
	}
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// client runs `sidecar-init ARGS...` against socket and returns stdout, stderr, exit status.
func client(t *testing.T, socket string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestControlCLIAndNotifications(t *testing.T) {
	var mu sync.Mutex
	var events []notify.Event
	supervise := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev notify.Event
		if json.Unmarshal(body, &ev) == nil {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}))
	defer supervise.Close()

	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	p := startInit(t, daemonTOML(t, record, "web", "1s")+daemonTOML(t, record, "worker", "1s"), false,
		"CLAUDE_BOTTLE_SUPERVISE_URL="+supervise.URL+"/events")
	p.record = record
	p.waitRecord("web started", "worker started")
	socket := filepath.Join(filepath.Dir(p.stderrPath), "control.sock")

	out, stderr, code := client(t, socket, "status", "--json")
	var rows []control.DaemonStatus
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 || rows[0].Name != "web" || rows[0].State != "running" || rows[0].Pid == 0 {
		t.Fatalf("status --json: %d %q %q", code, out, stderr)
	}
	for _, key := range []string{`"name"`, `"state"`, `"pid"`, `"uptime"`, `"restarts"`, `"last_exit"`, `"next_restart_in"`} {
		if !strings.Contains(out, key) {
			t.Errorf("status --json lacks %s", key)
		}
	}
	if out, _, code := client(t, socket, "restart", "web"); code != 0 || !strings.Contains(out, "web") {
		t.Fatalf("restart web: %d %q", code, out)
	}
	p.waitLog(`"machine":"web","event":"ready","from":"starting","to":"running"`)
	p.waitLog(`"reason":"no readiness probe","restarts":1`)
	out, _, _ = client(t, socket, "status")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "LAST EXIT") {
		t.Errorf("status table = %q", out)
	}
	if _, stderr, code := client(t, socket, "stop", "nope"); code != 1 || !strings.Contains(stderr, `unknown daemon "nope"`) {
		t.Errorf("stop nope: %d %q", code, stderr)
	}
	if out, _, code := client(t, socket, "signal", "worker", "hup"); code != 0 || out != "worker: SIGHUP sent to its process group (pgid "+fmt.Sprint(rows[1].Pid)+")\n" {
		t.Errorf("signal worker hup: exit %d, %q", code, out)
	}
	p.waitRecord("worker signal SIGHUP")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"signal", "worker", "SIGBOGUS"}, 2, `unknown signal name "SIGBOGUS"`},
		{[]string{"signal", "HUP", "worker"}, 2, "the daemon's name comes first: sidecar-init signal worker HUP"},
		{[]string{"signal", "worker"}, 2, "usage: sidecar-init signal [--socket PATH | --config FILE] NAME SIGNAL"},
		{[]string{"signal", "nope", "HUP"}, 1, `unknown daemon "nope"`},
	} {
		if _, stderr, code := client(t, socket, tc.args...); code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	// Usage errors and --help speak plain text to a person, not the supervisor's JSON log.
	if _, stderr, code := client(t, socket, "restart"); code != 2 || stderr != "sidecar-init: usage: sidecar-init restart [--socket PATH | --config FILE] NAME\n" {
		t.Errorf("restart without a name: exit %d, stderr %q; want 2 and the usage line", code, stderr)
	}
	if _, stderr, code := client(t, socket, "stop", ""); code != 2 || !strings.Contains(stderr, "usage: sidecar-init stop") {
		t.Errorf("stop with an empty name: exit %d, stderr %q; want 2 and the usage line", code, stderr)
	}
	if os.Getuid() == 0 {
		// Not root: told whose the socket is, not that nobody listens. (A copy of the
		// binary that nobody may run: the test's own lives in a directory only root reads.)
		cmd := exec.Command(copyForOthers(t, openDir(t), binary, "sidecar-init", 0o755), "status")
		cmd.Env = []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "permission denied: the control socket is for the user sidecar-init runs as (root, unless started as another) alone") {
			t.Errorf("status as nobody: exit %d, %q; want 1 and the reason", code, out)
		}
	}
	if _, stderr, code := client(t, socket, "status", "--bogus"); code != 2 || strings.Contains(stderr, "{") || !strings.Contains(stderr, "usage: sidecar-init status") {
		t.Errorf("status --bogus: exit %d, stderr %q; want 2 and a plain usage", code, stderr)
	}
	// Flags a command would ignore are refused, not dropped; an empty --socket or --config
	// (an unset variable in a probe's command line) too, rather than taken for the default.
	for _, args := range [][]string{{"health", "--json"}, {"stop", "--json", "a"}, {"status", "--socket", socket, "--config", "/x.toml"},
		{"health", "--socket="}, {"health", "--config", " "}} {
		if _, stderr, code := client(t, socket, args...); code != 2 || !strings.Contains(stderr, "usage: sidecar-init "+args[0]) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and the usage", args, code, stderr)
		}
	}
	if out, _, code := client(t, socket, "status", "--help"); code != 0 || !strings.HasPrefix(out, "usage: sidecar-init status") {
		t.Errorf("status --help: exit %d, stdout %q; want 0 and the usage", code, out)
	}
	if _, stderr, code := client(t, filepath.Join(dir, "nobody.sock"), "status"); code != 1 || !strings.Contains(stderr, "no sidecar-init is listening") {
		t.Errorf("no supervisor: %d %q", code, stderr)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// A SIGHUP sent before the SIGTERM would be recorded before it.
	if rec := p.waitRecord("web signal SIGTERM"); strings.Contains(rec, "web signal SIGHUP") {
		t.Errorf("`signal worker` reached web too:\n%s", rec)
	}
	mu.Lock()
	defer mu.Unlock()
	var sawRestart bool
	for i, ev := range events {
		if i > 0 && ev.Seq <= events[i-1].Seq {
			t.Errorf("notifications out of order: %d after %d", ev.Seq, events[i-1].Seq)
		}
		sawRestart = sawRestart || (ev.Daemon == "web" && ev.Event == "start" && ev.To == "pending")
	}
	if !sawRestart || len(events) < 8 {
		t.Errorf("notifications (%d) lack the restart: %+v", len(events), events)
	}
}

// With the supervise endpoint unreachable the loop must not care: it still reaps and shuts
// down, and waits at most notifyFlushTimeout for the undelivered events.
func TestUnreachableNotifyEndpointDoesNotHoldTheLoop(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	p := startInit(t, daemonTOML(t, record, "a", "1s", "-exit-after", "100ms", "-code", "4")+daemonTOML(t, record, "b", "1s"),
		true, "CLAUDE_BOTTLE_SUPERVISE_URL=http://127.0.0.1:9/")
	p.record = record
	p.waitRecord("a exit 4", "b started")
	p.waitLog(`"machine":"a","event":"fail"`)
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 4 {
		t.Fatalf("exit %d, want 4", code)
	}
	t.Logf("shut down in %v with the endpoint unreachable", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.stderr(), "notification not delivered") {
		t.Errorf("no log of the failed delivery:\n%s", p.stderr())
	}
}

func TestHealthCLI(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	p := startInit(t, daemonTOML(t, record, "a", "1s")+daemonTOML(t, record, "b", "1s"), true)
	p.record = record
	rec := p.waitRecord("a started", "b started")
	p.waitLog(`"msg":"every daemon is ready"`)
	socket := filepath.Join(filepath.Dir(p.stderrPath), "control.sock")
	if out, stderr, code := client(t, socket, "health"); code != 0 || !strings.Contains(out, "ready") {
		t.Fatalf("health while all run: %d %q %q", code, out, stderr)
	}
	var pid, pgid int
	for _, line := range strings.Split(rec, "\n") {
		if _, err := fmt.Sscanf(line, "b started pid=%d pgid=%d", &pid, &pgid); err == nil {
			break
		}
	}
	// The record holds b's pid inside the namespace; find its host pid through NSpid.
	hostPid := hostPidOf(t, p.cmd.Process.Pid, pid)
	if err := syscall.Kill(hostPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`"machine":"b","event":"fail"`)
	if _, stderr, code := client(t, socket, "health"); code != 1 || !strings.Contains(stderr, "b (exited)") {
		t.Fatalf("health after b died: %d %q", code, stderr)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 137 {
		t.Fatalf("exit %d, want 137", code)
	}
	// The README: the socket this sidecar-init made is removed at exit.
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after exit: %v; want it removed", err)
	}
}

// A table that moves the control socket: the clients find it through the same table (its
// path in $CLAUDE_BOTTLE_SIDECAR_CONFIG, or --config), as the image's HEALTHCHECK must.
func TestClientsFindTheTablesSocket(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	socket := filepath.Join(dir, "moved", "control.sock")
	tableText := fmt.Sprintf("control_socket = %q\n", socket) + daemonTOML(t, record, "a", "1s")
	table := filepath.Join(dir, "table.toml")
	if err := os.WriteFile(table, []byte(tableText), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.toml")
	if err := os.WriteFile(edited, []byte(tableText+"a_key_of_a_newer_version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// No socket in the environment: the supervisor takes the table's.
	p := startInit(t, tableText, false, "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=")
	p.record = record
	p.waitLog(`"msg":"every daemon is ready"`)
	for _, tc := range []struct {
		args []string
		env  []string
	}{
		{[]string{"health"}, []string{"CLAUDE_BOTTLE_SIDECAR_CONFIG=" + table}},
		{[]string{"health", "--config", table}, nil},
		// The table on disk changed after the supervisor read it: only control_socket
		// matters here.
		{[]string{"health", "--config", edited}, nil},
		// Blank is unset for the clients as for the supervisor (a template's ${X:-}, an
		// .env file's padding); padding around a path is not part of it.
		{[]string{"health"}, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET= ", "CLAUDE_BOTTLE_SIDECAR_CONFIG=" + table}},
		{[]string{"health"}, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET= " + socket + " "}},
	} {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = tc.env
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ready") {
			t.Errorf("%v with %v: %v %q; want the table's socket found", tc.args, tc.env, err, out)
		}
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// hostPidOf maps a pid inside init's PID namespace to its pid on the host (NSpid in
// /proc/PID/status lists the pid in each namespace, outermost first).
func hostPidOf(t *testing.T, initPid, nsPid int) int {
	t.Helper()
	for host := range namespaceProcs(t, initPid) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", host))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == strconv.Itoa(nsPid) {
				return host
			}
		}
	}
	t.Fatalf("no host pid for pid %d in the namespace of %d", nsPid, initPid)
	return 0
}

// A client command keeps the default signal handling: Ctrl-C ends it at once, even while
// it waits for an answer that does not come.
func TestClientEndsOnSIGINT(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn // never answered
		}
	}()
	cmd := exec.Command(binary, "status")
	cmd.Env = []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn := <-accepted
	defer func() { _ = conn.Close() }()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("client after SIGINT: %v, want ended by SIGINT", cmd.ProcessState)
	}
}

// A client that cannot write its answer exits 1 (a failure), not 2 (a usage error).
func TestClientWriteErrorExitsOne(t *testing.T) {
	dir := t.TempDir()
	p := startInit(t, daemonTOML(t, filepath.Join(dir, "record"), "web", "1s"), false)
	p.waitLog(`"msg":"every daemon is ready"`)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full to make writes fail (%v)", err)
	}
	defer func() { _ = full.Close() }()
	cmd := exec.Command(binary, "status")
	cmd.Env = []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(filepath.Dir(p.stderrPath), "control.sock")}
	cmd.Stdout = full
	var stderr strings.Builder
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "write the answer") {
		t.Errorf("status into /dev/full: exit %d, stderr %q; want 1 and the write error", code, stderr.String())
	}
	// Stop it: outside PID 1 its daemon would outlive a SIGKILLed supervisor.
	p.signal(syscall.SIGTERM)
	p.wait()
}

// A second sidecar-init on the socket of a live one (a `docker exec sidecar-init` meant as
// a client command, a typo) starts nothing and leaves the live one's ready file alone,
// whether it fails at its flags or would otherwise start a second set of daemons.
func TestSecondSupervisorLeavesTheLiveOneAlone(t *testing.T) {
	dir := t.TempDir()
	readyFile := filepath.Join(dir, "ready")
	socket := filepath.Join(dir, "control.sock")
	head := fmt.Sprintf("ready_file = %q\ncontrol_socket = %q\n", readyFile, socket)
	p := startInit(t, head+daemonTOML(t, filepath.Join(dir, "first"), "a", "1s"), false, "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=")
	p.waitLog(`"msg":"every daemon is ready"`)
	second := filepath.Join(dir, "second")
	table := filepath.Join(dir, "second.toml")
	if err := os.WriteFile(table, []byte(head+daemonTOML(t, second, "a", "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--config", table},
		{"--config", table, "--log-level", "verbose"},
	} {
		// Bounded: a second supervisor that does start runs until it is killed.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2; output:\n%s", args, err, out)
		}
		if len(args) == 2 && !strings.Contains(string(out), "another sidecar-init") {
			t.Errorf("%v: output does not name the live sidecar-init:\n%s", args, out)
		}
		if _, err := os.Stat(readyFile); err != nil {
			t.Errorf("%v: the live supervisor's ready file is gone (%v)", args, err)
		}
		if _, err := os.Stat(second); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the second supervisor started a daemon (%v)", args, err)
		}
	}
	// Once the first is gone, its socket is stale: a new start takes it, and the ready file
	// the dead run left goes.
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if err := os.WriteFile(readyFile, []byte("left by a dead run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--config", table, "--log-level", "verbose")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	_ = cmd.Run()
	if _, err := os.Stat(readyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead run's ready file survived a failed start (%v)", err)
	}
}

// A ready_file path that is a directory is said once a run, not at every removal (a review
// counted four: twice at start, twice at exit); the directory is left alone.
func TestReadyFileDirectoryIsSaidOnce(t *testing.T) {
	dir := t.TempDir()
	readyDir := filepath.Join(dir, "ready")
	if err := os.Mkdir(readyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startInit(t, fmt.Sprintf("ready_file = %q\n", readyDir)+daemonTOML(t, filepath.Join(dir, "record"), "a", "1s"), false)
	p.waitLog(`"msg":"every daemon is ready"`)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(p.stderr(), `"msg":"the ready file's path is a directory; leaving it"`); n != 1 {
		t.Errorf("said %d times, want once:\n%s", n, p.stderr())
	}
	if info, err := os.Stat(readyDir); err != nil || !info.IsDir() {
		t.Errorf("the directory at the ready file's path is gone (%v)", err)
	}
}

// A failed second start whose environment moves the socket checks the socket it would
// use, not the table's, before it removes the ready file: the environment's socket is read
// first, even when a later variable is bad. Found by a review.
func TestBadEnvironmentLeavesTheLiveReadyFile(t *testing.T) {
	dir := t.TempDir()
	readyFile := filepath.Join(dir, "ready")
	table := filepath.Join(dir, "daemons.toml")
	text := fmt.Sprintf("ready_file = %q\ncontrol_socket = %q\n", readyFile, filepath.Join(dir, "table.sock")) +
		daemonTOML(t, filepath.Join(dir, "record"), "a", "1s")
	if err := os.WriteFile(table, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	envSocket := "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(dir, "env.sock")
	p := startInit(t, text, false, envSocket)
	p.waitLog(`"msg":"every daemon is ready"`)
	cmd := exec.Command(binary, "--config", table)
	cmd.Env = []string{"PATH=/usr/bin:/bin", envSocket, "CLAUDE_BOTTLE_SIDECAR_GRACE=bogus"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("second start with a bad grace: %v, want exit status 2:\n%s", err, out)
	}
	if _, err := os.Stat(readyFile); err != nil {
		t.Errorf("the live supervisor's ready file is gone (%v)", err)
	}
	p.signal(syscall.SIGTERM)
	p.wait()
}

// A control_socket path too long for a unix socket (over 107 bytes) is a path nobody can
// listen on: the daemons start without a socket, with the warning, as for any socket that
// cannot be made. A review found c0de86d refusing to start on it ("cannot tell"). A later
// one asked for a configuration error instead: kept as it is, since
// CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET may set the path at run time and the guards matter
// more than the socket; `sidecar-init check` exits 1 on it (TestCheck).
func TestTooLongSocketPathStillStartsTheDaemons(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 120), "control.sock")
	if err := os.MkdirAll(filepath.Dir(long), 0o700); err != nil {
		t.Fatal(err)
	}
	p := startInit(t, fmt.Sprintf("control_socket = %q\n", long)+daemonTOML(t, filepath.Join(dir, "record"), "a", "1s"),
		false, "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=")
	p.waitLog(`"msg":"no control socket:`)
	p.waitLog(`"msg":"every daemon is ready"`)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.stderr())
	}
}

// A signal the kernel refuses is an error, not "sent": sidecar-init run as nobody, its
// daemon a setuid-root copy of the fake daemon that made itself root, which nobody may no
// longer signal. Found by a review: the reply said "sent" and the exit status was 0. And
// when another process of its group (a worker that kept the user) takes the signal, the
// answer says who got it and who did not.
func TestSignalTheKernelRefusesIsAnError(t *testing.T) {
	rooty := newSetuidFake(t)
	for _, tc := range []struct {
		name    string
		args    []string
		started []string // in the record before the signal
		signal  string
		code    int
		says    []string
		wants   []string // in the record after it
	}{
		{"alone in its group", []string{"-setuid-root"}, []string{"rooty setuid root"}, "USR1", 1,
			[]string{"could not send SIGUSR1", "operation not permitted"}, nil},
		// The worker has its handlers before the signal, or it would die of it.
		{"beside a worker that takes it", []string{"-setuid-root", "-grandchild"}, []string{"rooty setuid root", "rooty.grandchild started"}, "USR1", 1,
			[]string{"SIGUSR1 reached the other processes in its process group", "not the daemon itself", "operation not permitted"},
			[]string{"rooty.grandchild signal SIGUSR1"}},
		// The kernel lets a SIGCONT through within a session, whatever the user (a review
		// found it answered as refused).
		{"SIGCONT within the session", []string{"-setuid-root", "-catch-all"}, []string{"rooty setuid root"}, "CONT", 0,
			[]string{"rooty: SIGCONT sent to its process group"}, []string{"rooty signal SIGCONT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work, record := rooty.table(t, strings.ReplaceAll(tc.name, " ", "-"), "rooty", tc.args...)
			socket := filepath.Join(work, "control.sock")
			p := startAsNobody(t, rooty.initBin, work, record, socket)
			p.waitRecord(tc.started...)
			cmd := exec.Command(rooty.initBin, "signal", "rooty", tc.signal)
			cmd.Env = []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("signal rooty %s: exit %d, %q; want %d", tc.signal, code, out, tc.code)
			}
			for _, want := range tc.says {
				if !strings.Contains(string(out), want) {
					t.Errorf("signal rooty %s said %q, want %q in it", tc.signal, out, want)
				}
			}
			if len(tc.wants) > 0 {
				p.waitRecord(tc.wants...)
			}
		})
	}
}

// setuidFake is, for a sidecar-init run as nobody, a setuid-root copy of the fake daemon
// (one that can make itself root: -setuid-root, -escape-root) and a copy of sidecar-init,
// both where nobody may run them.
type setuidFake struct{ open, exe, fake, initBin string }

// newSetuidFake makes the copies; the test is skipped without root.
func newSetuidFake(t *testing.T) setuidFake {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: it makes a setuid-root copy of the fake daemon and runs sidecar-init as nobody")
	}
	open := openDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return setuidFake{open: open, exe: exe, fake: copyForOthers(t, open, exe, "fake", 0o755|os.ModeSetuid),
		initBin: copyForOthers(t, open, binary, "sidecar-init", 0o755)}
}

// table makes dir, nobody's (for the socket, the table and the record), with daemons.toml
// running the setuid copy as daemon name with args; it returns dir and the record's path.
func (f setuidFake) table(t *testing.T, dir, name string, args ...string) (work, record string) {
	t.Helper()
	work = filepath.Join(f.open, dir)
	err := os.Mkdir(work, 0o755)
	if err == nil {
		err = os.Chown(work, 65534, 65534)
	}
	if err != nil {
		t.Fatal(err)
	}
	record = filepath.Join(work, "record")
	table := strings.Replace(daemonTOML(t, record, name, "1s", args...), strconv.Quote(f.exe), strconv.Quote(f.fake), 1)
	if err := os.WriteFile(filepath.Join(work, "daemons.toml"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	return work, record
}

// startAsNobody runs initBin as nobody, as PID 1 of its own namespace, on work/daemons.toml
// (work is nobody's), its control socket at socket. As PID 1: a daemon that turns root
// could not be ended otherwise, neither by sidecar-init (nobody) nor by the test's SIGKILL
// of it; the end of PID 1 ends the namespace, the test's own end included (Pdeathsig).
func startAsNobody(t *testing.T, initBin, work, record, socket string) *initProc {
	t.Helper()
	p := &initProc{t: t, record: record, done: make(chan struct{}), stderrPath: filepath.Join(t.TempDir(), "stderr")}
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stderr.Close() })
	p.cmd = exec.Command(initBin, "--config", filepath.Join(work, "daemons.toml"))
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + socket}
	p.cmd.Stderr = stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWPID}
	if err := p.launch(); err != nil {
		t.Fatal(err)
	}
	return p
}

// As PID 1 run as nobody, a process that escaped its daemon's group and made itself root
// survives the sweep's kill(-1): sidecar-init names it a second later and exits, rather than
// wait for its reap for ever (a review found the hang, through a second SIGTERM too; a
// process stuck in the kernel past its SIGKILL does the same to a root sidecar-init).
func TestPID1GivesUpAnEscapedProcessItCannotKill(t *testing.T) {
	rooty := newSetuidFake(t)
	work, record := rooty.table(t, "work", "leaky", "-escape", "-escape-root")
	p := startAsNobody(t, rooty.initBin, work, record, filepath.Join(work, "control.sock"))
	p.waitRecord("leaky started", "leaky.escaped setuid root")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d, want 0 (leaky stopped at the stop signal); stderr:\n%s", code, p.stderr())
	}
	p.waitLog("processes that escaped their daemon's process group are still there a second after the SIGKILL")
}

// A sidecar-init run as nobody (docker run --user, runAsUser) whose table gives a daemon that
// same user (the bundle's table gives pipelock and supervise `user = "nobody"`) has nothing
// to switch: the daemon runs as it is. Spawn asked for setgroups all the same, which takes
// CAP_SETGID even for the groups a process has: status 126, "exec: operation not
// permitted", blaming the program (found by a review).
func TestNonRootSupervisorRunsADaemonAsItsOwnUser(t *testing.T) {
	p := startAsNobodyOn(t, "user = \"nobody\"\n")
	p.waitRecord("same started")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, p.stderr())
	}
}

// Another user is out of its reach: the error says so, not "exec: operation not
// permitted", which sent the operator to the program.
// Its own uid with another gid is another user too: not run with the supervisor's gid.
func TestNonRootSupervisorNamesTheUserSwitch(t *testing.T) {
	for _, user := range []string{"0:0", "65534:0"} {
		t.Run(user, func(t *testing.T) {
			p := startAsNobodyOn(t, fmt.Sprintf("user = %q\n", user))
			if code := p.wait(); code != 126 {
				t.Errorf("exit %d, want 126 (its only daemon could not start)", code)
			}
			if !strings.Contains(p.stderr(), "switching users takes root") {
				t.Errorf("the error does not name the user switch:\n%s", p.stderr())
			}
		})
	}
}

// startAsNobodyOn runs sidecar-init as nobody, PID 1 of its namespace, on one fake daemon
// "same" with the extra keys.
func startAsNobodyOn(t *testing.T, keys string) *initProc {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: it runs sidecar-init as nobody")
	}
	open := openDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fake := copyForOthers(t, open, exe, "fake", 0o755)
	initBin := copyForOthers(t, open, binary, "sidecar-init", 0o755)
	work := filepath.Join(open, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(work, "record")
	table := strings.Replace(daemonTOML(t, record, "same", "1s"), strconv.Quote(exe), strconv.Quote(fake), 1) + keys
	if err := os.WriteFile(filepath.Join(work, "daemons.toml"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	return startAsNobody(t, initBin, work, record, filepath.Join(work, "control.sock"))
}
