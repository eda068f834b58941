//go:build integration

// Package integration proves that sidecar-init runs the sidecar bundle's real
// daemons, not only test doubles: the real binary as PID 1 of a fresh PID
// namespace, Debian's mitmdump behind the real egress entrypoint, and a real
// git daemon whose pre-receive hook runs the pinned gitleaks.
//
// Run it with `go test -tags integration ./sidecars/integration/`, as root,
// after sidecars/integration/install-deps.sh.
package integration

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// gitleaksModule is the module `go install` builds gitleaks from; its version
// must be the one Dockerfile.sidecars pins (ARG GITLEAKS_VERSION).
const gitleaksModule = "github.com/zricethezav/gitleaks/v8"

// fakeAWSKey is gitleaks' own true-positive sample for its aws-access-token rule
// (cmd/generate/config/rules/aws.go in v8.30.1). Not AWS's documented
// AKIAIOSFODNN7EXAMPLE: the rule allowlists `.+EXAMPLE$`, so that one passes.
// Split so that this file itself does not trip a secret scanner.
const fakeAWSKey = "AKIA" + "LALEMEL33243OLIB"

// Time budgets. mitmdump (Python) takes a second or more to listen; gitleaks
// takes about half a second per scan.
const (
	daemonStartTimeout = 30 * time.Second
	gitCommandTimeout  = 60 * time.Second
	logWaitTimeout     = 10 * time.Second
	// The table's grace is 3 s; this is how long the init may take to exit after SIGTERM.
	shutdownTimeout = 20 * time.Second
)

func TestSidecarBundle(t *testing.T) {
	// The daemons of the image's table that cannot run here. Skipped, not faked.
	t.Run("pipelock", func(t *testing.T) {
		t.Skip("pipelock not run: its Go module is not served by the module proxy on this " +
			"machine (403) and there is no other way to install it here; in the image it comes " +
			"from its release image. egress runs without an upstream (EGRESS_UPSTREAM=none).")
	})
	t.Run("supervise", func(t *testing.T) {
		t.Skip("supervise not run: it is the bottle's Python server (python3 -m " +
			"claude_bottle.supervise), which belongs to the claude_bottle package, not to this repository.")
	})

	if os.Geteuid() != 0 {
		t.Skip("needs root: sidecar-init runs as PID 1 of a new PID namespace (CLONE_NEWPID)")
	}
	started := time.Now()
	step := func(n int, format string, args ...any) {
		t.Helper()
		t.Logf("step %d [%6.2fs] %s", n, time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}

	root := repoRoot(t)
	programs := findPrograms(t, root)
	tmp := t.TempDir()

	step(1, "build sidecar-init")
	initBin := filepath.Join(tmp, "sidecar-init")
	build := exec.Command("go", "build", "-o", initBin, "./cmd/sidecar-init")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sidecar-init: %v\n%s", err, out)
	}

	step(2, "write the host table, the gate repository and the client's commits")
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if _, err := fmt.Fprint(w, "hello from the target"); err != nil {
			t.Errorf("target: write the response: %v", err)
		}
	}))
	t.Cleanup(target.Close)

	home := mkdir(t, tmp, "home")
	gitBase := mkdir(t, tmp, "repos")
	gateRepo := filepath.Join(gitBase, "gate.git")
	clientEnv := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LANG=C.UTF-8",
		// Neither this machine's nor the user's git configuration changes what is tested.
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=integration", "GIT_AUTHOR_EMAIL=integration@localhost",
		"GIT_COMMITTER_NAME=integration", "GIT_COMMITTER_EMAIL=integration@localhost",
	}
	runGit(t, clientEnv, tmp, "init", "--quiet", "--bare", "--initial-branch=main", gateRepo)
	copyFile(t, filepath.Join("testdata", "pre-receive"), filepath.Join(gateRepo, "hooks", "pre-receive"), 0o755)

	work := filepath.Join(tmp, "work")
	runGit(t, clientEnv, tmp, "init", "--quiet", "--initial-branch=main", work)
	clean1 := commitFile(t, clientEnv, work, "README", "a clean first commit\n")
	runGit(t, clientEnv, work, "checkout", "--quiet", "-b", "leak")
	leaked := commitFile(t, clientEnv, work, "config.ini", "aws_access_key_id = "+fakeAWSKey+"\n")
	runGit(t, clientEnv, work, "checkout", "--quiet", "main")

	ports := freePorts(t, 2)
	egressPort, gitPort := ports[0], ports[1]
	// mitmdump loads a copy: Python would write its __pycache__ next to the fixture, in the source tree.
	addon := copyFile(t, filepath.Join("testdata", "addon.py"), filepath.Join(tmp, "addon.py"), 0o644)
	table := renderTable(t, tmp, tableParams{
		EgressEntrypoint: filepath.Join(root, "sidecars", "egress-entrypoint.sh"),
		EgressPort:       egressPort,
		EgressAddon:      addon,
		EgressConfdir:    mkdir(t, tmp, "mitmproxy"),
		Git:              programs.git,
		GitPort:          gitPort,
		GitBase:          gitBase,
		Gitleaks:         programs.gitleaks,
	})

	// What Dockerfile.sidecars runs at build time (RUN sidecar-init check), here on this
	// table: every daemon's program and dir must be there for its user.
	check := exec.Command(initBin, "check", "--config", table)
	check.Env = clientEnv
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sidecar-init check on the table: %v\n%s", err, out)
	} else {
		t.Logf("sidecar-init check:\n%s", out)
	}

	step(3, "start sidecar-init as PID 1 of a new PID namespace")
	logs, daemonOut := &logSink{}, &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sidecar-init stderr (its JSON log and the daemons' stderr):\n%s", logs.text())
			t.Logf("the daemons' stdout:\n%s", daemonOut.text())
		}
	})
	initCmd := exec.Command(initBin, "--config", table, "--log-level", "debug")
	// An explicit environment: nothing from the test's (a stray CLAUDE_BOTTLE_SIDECAR_*) leaks in.
	initCmd.Env = append(append([]string{}, clientEnv...),
		"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET="+filepath.Join(tmp, "control.sock"))
	initCmd.Stdout, initCmd.Stderr = daemonOut, logs
	initCmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID,
		// If the test dies, its init dies, and with it (as PID 1) the whole namespace.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := initCmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot create a PID namespace here (%v): needs CAP_SYS_ADMIN", err)
		}
		t.Fatalf("start sidecar-init: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := initCmd.Wait()
		logs.markExited(err)
		exited <- err
	}()
	t.Cleanup(func() {
		// On a failure before step 5: killing PID 1 takes the namespace down with it.
		if initCmd.ProcessState == nil {
			if err := initCmd.Process.Kill(); err != nil {
				t.Errorf("kill sidecar-init: %v", err)
			}
			// Logged, not checked: the test has already failed or skipped.
			t.Logf("sidecar-init, killed during cleanup: %v", <-exited)
		}
	})
	initPID := initCmd.Process.Pid
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPID))
	if err != nil {
		t.Fatalf("read sidecar-init's PID namespace: %v", err)
	}
	if got := nsPIDs(t, initPID); len(got) != 2 || got[1] != 1 {
		t.Fatalf("sidecar-init's NSpid = %v, want [%d 1]: it is not PID 1 of a new namespace", got, initPID)
	}
	logs.waitFor(t, "the supervisor's start line, as PID 1", func(e logEntry) bool {
		return e.str("msg") == "starting daemons" && e["pid1"] == true
	})

	step(4, "egress: a request through mitmdump on 127.0.0.1:%s reaches the target and shows the addon's header", egressPort)
	waitForPort(t, logs, "egress", egressPort)
	// Ready by the image's own probe (the entrypoint's --ready), on the test's port, not 8080.
	logs.waitFor(t, "egress made ready by its entrypoint's probe", func(e logEntry) bool {
		return transition("egress", "ready", "starting", "running")(e) && strings.HasPrefix(e.str("reason"), "probe passed: exec ")
	})
	proxy := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", egressPort)}),
			DisableKeepAlives: true,
		},
	}
	resp, err := proxy.Get(target.URL)
	if err != nil {
		t.Fatalf("GET %s through egress: %v", target.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	if closeErr := resp.Body.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		t.Fatalf("read the response through egress: %v", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "hello from the target" {
		t.Fatalf("through egress: status %d, body %q; want 200 and the target's body", resp.StatusCode, body)
	}
	if got := resp.Header.Get("x-sidecar-egress"); got != "seen" {
		t.Fatalf("through egress: x-sidecar-egress = %q, want %q (the fixture addon did not run)", got, "seen")
	}

	// log = "prefix": the entrypoint's warning on stderr and mitmdump's line for the flow
	// on stdout come out labelled.
	logs.waitForText(t, "egress | egress-entrypoint: EGRESS_UPSTREAM=none")
	daemonOut.waitForText(t, "egress | ")

	step(5, "git-gate: pushes over git://127.0.0.1:%s, scanned by gitleaks in pre-receive", gitPort)
	waitForPort(t, logs, "git-gate", gitPort)
	remote := fmt.Sprintf("git://127.0.0.1:%s/gate.git", gitPort)
	// What gitleaks (run with --verbose by the hook) prints to the pusher: evidence that it
	// scanned the push and, for a rejection, that it found the key rather than failed.
	scannedClean := regexp.MustCompile(`(?m)^remote: .*\bno leaks found`)
	foundKey := regexp.MustCompile(`(?s)RuleID:\s+aws-access-token\b.*Commit:\s+` + leaked +
		`.*pre-receive: gitleaks found secrets`)
	for _, push := range []struct {
		name     string
		refspec  string
		accepted bool
	}{
		{"clean commit, new branch (old sha all zeros)", "main:refs/heads/main", true},
		{"fake AWS key on top of main (old..new)", "leak:refs/heads/main", false},
		{"fake AWS key, new branch (old sha all zeros)", "leak:refs/heads/leak", false},
	} {
		out, err := tryGit(clientEnv, work, "push", remote, push.refspec)
		switch {
		case push.accepted && err != nil:
			t.Fatalf("push %s: rejected, want accepted: %v\n%s", push.name, err, out)
		case push.accepted && !scannedClean.MatchString(out):
			t.Fatalf("push %s: accepted, but gitleaks did not report a clean scan:\n%s", push.name, out)
		case !push.accepted && err == nil:
			t.Fatalf("push %s: accepted, want rejected by gitleaks\n%s", push.name, out)
		case !push.accepted && !foundKey.MatchString(out):
			t.Fatalf("push %s: rejected, but not for gitleaks' aws-access-token finding in %.12s:\n%s",
				push.name, leaked, out)
		}
		t.Logf("push %s: accepted=%v", push.name, push.accepted)
	}
	wantRefs(t, clientEnv, work, remote, map[string]string{"refs/heads/main": clean1})
	t.Logf("the gate holds main=%.12s and no trace of %.12s (the leaking commit)", clean1, leaked)

	step(6, "SIGHUP sidecar-init (a reload sent to the bundle): egress and git-gate, forward_signals = [], keep serving")
	if err := initCmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP sidecar-init: %v", err)
	}
	notForwarded := logs.waitFor(t, "SIGHUP not forwarded to egress and git-gate", func(e logEntry) bool {
		return e.str("msg") == "signal not forwarded to the daemons whose forward_signals leaves it out" && e.str("signal") == "SIGHUP"
	})
	if got := fmt.Sprint(notForwarded["not_forwarded_to"]); got != "[egress git-gate]" {
		t.Fatalf("SIGHUP not forwarded to %s, want [egress git-gate]", got)
	}
	if resp, err := proxy.Get(target.URL); err != nil {
		t.Fatalf("GET through egress after the SIGHUP: %v (mitmdump dies of a SIGHUP it gets)", err)
	} else {
		_ = resp.Body.Close()
	}
	wantRefs(t, clientEnv, work, remote, map[string]string{"refs/heads/main": clean1})
	for _, name := range []string{"egress", "git-gate"} {
		logs.mustNotHave(t, name+" dead of the SIGHUP", func(e logEntry) bool {
			return e.str("msg") == "transition" && e.str("machine") == name && e.str("event") == "fail"
		})
	}

	step(7, "SIGKILL mitmdump: egress dies with 137, git-gate keeps serving")
	spawn := logs.waitFor(t, "egress's spawn transition", transition("egress", "spawn", "pending", "starting"))
	egressNSPID, ok := spawn.num("pid")
	if !ok {
		t.Fatalf("egress's spawn transition has no pid: %v", spawn)
	}
	mitmdump := hostPID(t, ns, egressNSPID)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", mitmdump))
	if err != nil {
		t.Fatalf("read egress's command line: %v", err)
	}
	// The entrypoint ends in exec: the pid sidecar-init started is mitmdump itself.
	if !bytes.Contains(cmdline, []byte("mitmdump")) {
		t.Fatalf("egress's pid %d (host %d) runs %q, want mitmdump: the entrypoint did not exec it",
			egressNSPID, mitmdump, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	t.Logf("mitmdump is pid %d in the namespace, %d on the host", egressNSPID, mitmdump)
	if err := syscall.Kill(mitmdump, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL mitmdump (host pid %d): %v", mitmdump, err)
	}
	died := logs.waitFor(t, "egress failed while running", transition("egress", "fail", "running", "exited"))
	if code, _ := died.num("exit_code"); code != 137 || died.str("signal") != "SIGKILL" {
		t.Fatalf("egress died with exit_code %d, signal %q; want 137, SIGKILL", code, died.str("signal"))
	}
	logs.waitFor(t, "the supervisor degraded, not stopping", transition("supervisor", "daemon_died", "running", "degraded"))
	if _, err := proxy.Get(target.URL); err == nil {
		t.Fatalf("GET through egress succeeded after mitmdump was killed: something else serves %s", egressPort)
	}
	clean2 := commitFile(t, clientEnv, work, "NEWS", "a clean commit pushed after egress died\n")
	if out, err := tryGit(clientEnv, work, "push", remote, "main:refs/heads/main"); err != nil || !scannedClean.MatchString(out) {
		t.Fatalf("push after mitmdump was killed: %v, want accepted after a clean scan:\n%s", err, out)
	}
	wantRefs(t, clientEnv, work, remote, map[string]string{"refs/heads/main": clean2})
	t.Logf("after the kill, git-gate accepted main=%.12s over the network", clean2)

	step(8, "SIGTERM sidecar-init: git-gate gets its stop signal, the init exits 137, the namespace is empty")
	gitDaemon := hostPID(t, ns, mustNum(t, logs.waitFor(t, "git-gate's spawn transition",
		transition("git-gate", "spawn", "pending", "starting")), "pid"))
	if err := initCmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM sidecar-init: %v", err)
	}
	select {
	case err = <-exited:
	case <-time.After(shutdownTimeout):
		t.Fatalf("sidecar-init still running %v after SIGTERM (grace is 3s)", shutdownTimeout)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("sidecar-init exited with %v, want exit status 137", err)
	}
	if code := exitErr.ExitCode(); code != 137 {
		t.Fatalf("sidecar-init exit status %d, want 137 (egress's SIGKILL, the first death)", code)
	}
	logs.mustHave(t, "the supervisor stopping on SIGTERM", func(e logEntry) bool {
		return transition("supervisor", "stop", "degraded", "terminating")(e) && e.str("signal") == "SIGTERM"
	})
	logs.mustHave(t, "git-gate's stop signal", func(e logEntry) bool {
		return transition("git-gate", "stop", "running", "terminating")(e) && e.str("signal") == "SIGTERM"
	})
	stopped := logs.mustHave(t, "git-gate exiting on its stop signal", transition("git-gate", "died", "terminating", "exited"))
	if _, killed := logs.find(transition("git-gate", "kill", "", "")); killed {
		t.Fatalf("git-gate was SIGKILLed: it did not exit within its grace after SIGTERM")
	}
	logs.mustHave(t, "the supervisor done", transition("supervisor", "stopped", "terminating", "exited"))
	code, _ := stopped.num("exit_code")
	t.Logf("git daemon exited on SIGTERM with exit_code %d, signal %q", code, stopped.str("signal"))

	// When PID 1 exits the kernel kills what is left in its namespace before the init can
	// be reaped, so this checks the teardown finished; the log lines above show that
	// sidecar-init, not the kernel, stopped git-gate.
	if left := processesIn(t, ns); len(left) > 0 {
		t.Fatalf("processes left in sidecar-init's namespace %s after it exited: %v", ns, left)
	}
	for name, pid := range map[string]int{"mitmdump": mitmdump, "git daemon": gitDaemon} {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Fatalf("%s (host pid %d) still exists after sidecar-init exited", name, pid)
		}
	}
	t.Logf("done in %.2fs", time.Since(started).Seconds())
}

// --- the programs under test --------------------------------------------------

type programs struct{ git, gitleaks string }

// findPrograms finds the real daemons' programs. Missing ones fail the test rather than
// skip it: the build tag means someone asked for this test, and a skip would let CI pass
// without proving anything.
func findPrograms(t *testing.T, root string) programs {
	t.Helper()
	const install = "run sidecars/integration/install-deps.sh"
	var p programs
	for _, name := range []string{"mitmdump", "git"} {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s not found (%v): %s", name, err, install)
		}
		if name == "git" {
			p.git = path
		}
	}
	p.gitleaks = os.Getenv("GITLEAKS")
	if p.gitleaks == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			t.Fatalf("go env GOPATH: %v", err)
		}
		p.gitleaks = filepath.Join(strings.TrimSpace(string(out)), "bin", "gitleaks")
	}
	info, err := buildinfo.ReadFile(p.gitleaks)
	if err != nil {
		t.Fatalf("gitleaks at %s: %v: %s (or set GITLEAKS)", p.gitleaks, err, install)
	}
	// `gitleaks version` prints "version is set by build process" when built with go
	// install, so the module version in the binary's build info is what says which it is.
	pinned := dockerfileArg(t, root, "GITLEAKS_VERSION")
	if info.Main.Path != gitleaksModule || info.Main.Version != pinned {
		t.Fatalf("gitleaks at %s is %s@%s, want %s@%s as pinned in Dockerfile.sidecars: %s",
			p.gitleaks, info.Main.Path, info.Main.Version, gitleaksModule, pinned, install)
	}
	return p
}

// dockerfileArg reads the default of `ARG name=value` in Dockerfile.sidecars.
func dockerfileArg(t *testing.T, root, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile.sidecars"))
	if err != nil {
		t.Fatalf("read Dockerfile.sidecars: %v", err)
	}
	m := regexp.MustCompile(`(?m)^ARG ` + regexp.QuoteMeta(name) + `=(\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("Dockerfile.sidecars has no ARG %s=...", name)
	}
	return string(m[1])
}

// tableParams fill testdata/daemons.toml.tmpl.
type tableParams struct {
	EgressEntrypoint, EgressPort, EgressAddon, EgressConfdir string
	Git, GitPort, GitBase, Gitleaks                          string
}

func renderTable(t *testing.T, dir string, p tableParams) string {
	t.Helper()
	tmpl, err := template.New("daemons.toml.tmpl").Funcs(template.FuncMap{"toml": tomlString}).
		ParseFiles(filepath.Join("testdata", "daemons.toml.tmpl"))
	if err != nil {
		t.Fatalf("parse the table template: %v", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, p); err != nil {
		t.Fatalf("render the table template: %v", err)
	}
	path := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("write the table: %v", err)
	}
	return path
}

// tomlString quotes s as a TOML basic string. TOML's escapes are not Go's (no \x), so
// strconv.Quote will not do; control characters, which a temp path never has, are refused.
func tomlString(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("control character %U in %q", r, s)
		}
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// --- sidecar-init's log ---------------------------------------------------------

// logSink collects what a process writes, line by line, and parses the JSON lines.
// sidecar-init's stderr carries both its JSON log and its daemons' stderr.
type logSink struct {
	mu      sync.Mutex
	partial []byte     // the unfinished last line
	lines   []string   // every complete line
	entries []logEntry // the lines that are JSON objects
	exited  bool       // the writer has exited: no more lines will come
	exitErr error      // what exec.Cmd.Wait said then
}

// markExited records that the process exited, so waiting for more of its log is pointless.
func (s *logSink) markExited(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exited, s.exitErr = true, err
}

type logEntry map[string]any

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

// num reads a JSON number field (encoding/json decodes numbers as float64).
func (e logEntry) num(key string) (int, bool) {
	f, ok := e[key].(float64)
	return int(f), ok
}

func mustNum(t *testing.T, e logEntry, key string) int {
	t.Helper()
	n, ok := e.num(key)
	if !ok {
		t.Fatalf("log line has no numeric %q: %v", key, e)
	}
	return n
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		s.lines = append(s.lines, line)
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.str("msg") != "" {
			s.entries = append(s.entries, e)
		}
	}
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n") + string(s.partial)
}

func (s *logSink) find(match func(logEntry) bool) (logEntry, bool) {
	e, ok, _, _ := s.findOrExit(match)
	return e, ok
}

// findOrExit is find that also says whether the writer has exited, and how.
func (s *logSink) findOrExit(match func(logEntry) bool) (e logEntry, ok, exited bool, exitErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if match(e) {
			return e, true, s.exited, s.exitErr
		}
	}
	return nil, false, s.exited, s.exitErr
}

// mustHave fails the test unless a line already logged matches.
func (s *logSink) mustHave(t *testing.T, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	e, ok := s.find(match)
	if !ok {
		t.Fatalf("sidecar-init's log has no line for %s", what)
	}
	return e
}

// waitForText waits for text anywhere in what was written, JSON or not (a daemon's
// labelled lines).
func (s *logSink) waitForText(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(logWaitTimeout)
	for !strings.Contains(s.text(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s", text, s.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustNotHave fails the test if a line already logged matches.
func (s *logSink) mustNotHave(t *testing.T, what string, match func(logEntry) bool) {
	t.Helper()
	if e, ok := s.find(match); ok {
		t.Fatalf("sidecar-init's log has a line for %s: %v", what, e)
	}
}

// waitFor waits for a matching line: the log is written by another process, so polling
// it is the simple way.
func (s *logSink) waitFor(t *testing.T, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	deadline := time.Now().Add(logWaitTimeout)
	for {
		e, ok, exited, exitErr := s.findOrExit(match)
		switch {
		case ok:
			return e
		case exited:
			t.Fatalf("sidecar-init exited (%v) without logging a line for %s", exitErr, what)
		case time.Now().After(deadline):
			t.Fatalf("sidecar-init logged no line for %s within %v", what, logWaitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transition matches a "transition" line; an empty from or to matches any state.
func transition(machine, event, from, to string) func(logEntry) bool {
	return func(e logEntry) bool {
		return e.str("msg") == "transition" && e.str("machine") == machine && e.str("event") == event &&
			(from == "" || e.str("from") == from) && (to == "" || e.str("to") == to)
	}
}

// waitForPort waits until a daemon listens on 127.0.0.1:port, failing at once if the
// log says the daemon died first.
func waitForPort(t *testing.T, logs *logSink, daemon, port string) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", port)
	deadline := time.Now().Add(daemonStartTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close() // a probe only: nothing was sent, so a close error means nothing
			return
		}
		if e, died := logs.find(transition(daemon, "", "", "exited")); died {
			t.Fatalf("%s exited before listening on %s: %v", daemon, addr, e)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v", daemon, addr, daemonStartTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- processes and namespaces -------------------------------------------------------

// nsPIDs is a process's NSpid line from /proc/PID/status: its pid in each PID namespace
// it is in, outermost (the host's) first.
func nsPIDs(t *testing.T, pid int) []int {
	t.Helper()
	pids, err := readNSPIDs(pid)
	if err != nil {
		t.Fatalf("read the NSpid of %d: %v", pid, err)
	}
	return pids
}

func readNSPIDs(pid int) ([]int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(fields) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("NSpid line %q: %w", line, err)
			}
			pids = append(pids, n)
		}
		return pids, nil
	}
	return nil, errors.New("no NSpid line (kernel older than 4.1?)")
}

// processesIn lists the host pids of the processes in the PID namespace ns (a
// /proc/PID/ns/pid link such as "pid:[4026532281]").
func processesIn(t *testing.T, ns string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("list /proc: %v", err)
	}
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue // not a process
		}
		// Errors mean the process exited since ReadDir: it is in no namespace now.
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && link == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hostPID maps a pid as sidecar-init sees it (inside namespace ns) to the host's pid.
func hostPID(t *testing.T, ns string, inside int) int {
	t.Helper()
	for _, pid := range processesIn(t, ns) {
		if pids, err := readNSPIDs(pid); err == nil && pids[len(pids)-1] == inside {
			return pid
		}
	}
	t.Fatalf("no process with pid %d in namespace %s", inside, ns)
	return 0
}

// --- git and files --------------------------------------------------------------

func tryGit(env []string, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func runGit(t *testing.T, env []string, dir string, args ...string) string {
	t.Helper()
	out, err := tryGit(env, dir, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// commitFile commits one file in the work tree and returns the commit's sha.
func commitFile(t *testing.T, env []string, work, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	runGit(t, env, work, "add", name)
	runGit(t, env, work, "commit", "--quiet", "-m", "add "+name)
	return runGit(t, env, work, "rev-parse", "HEAD")
}

// wantRefs checks, over the network, that the remote has exactly these branches.
func wantRefs(t *testing.T, env []string, work, remote string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(runGit(t, env, work, "ls-remote", "--heads", remote), "\n") {
		if sha, ref, ok := strings.Cut(line, "\t"); ok {
			got[ref] = sha
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("git ls-remote %s: %v, want %v", remote, got, want)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	// go test runs a package's tests in its directory: sidecars/integration.
	root := absPath(t, filepath.Join("..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

func absPath(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("absolute path of %s: %v", path, err)
	}
	return abs
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
	return dir
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatalf("write %s: %v", dst, err)
	}
	return dst
}

// freePorts asks the kernel for n distinct free loopback ports. All n listeners stay open
// until every port is chosen: closed one at a time, the kernel may hand the same port out
// twice. A CI run once saw the git daemon answer the request sent to the egress proxy's
// port ("bad line length character: GET"), most likely that. Another process could still
// take a port before the daemon binds it; on this single-purpose machine that has not been
// seen.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var listeners []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		listeners = append(listeners, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	for i, l := range listeners {
		if err := l.Close(); err != nil {
			t.Fatalf("release the free port %s: %v", ports[i], err)
		}
	}
	return ports
}
