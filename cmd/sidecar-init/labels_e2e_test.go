package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// runToEnd runs the binary on table until every daemon has exited on its own, with stdout
// and stderr in files, and returns them.
func runToEnd(t *testing.T, table string) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	outPath, errPath := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	outFile, _ := os.Create(outPath)
	errFile, _ := os.Create(errPath)
	cmd := exec.Command(binary, "--config", cfg)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(dir, "control.sock")}
	cmd.Stdout, cmd.Stderr = outFile, errFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	_ = outFile.Close()
	_ = errFile.Close()
	out, _ := os.ReadFile(outPath)
	errOut, _ := os.ReadFile(errPath)
	if err != nil {
		t.Fatalf("sidecar-init: %v\nstderr:\n%s", err, errOut)
	}
	return string(out), string(errOut)
}

func TestPrefixLogsKeepEveryLine(t *testing.T) {
	stdout, stderr := runToEnd(t, `
[[daemon]]
name = "burst"
log = "prefix"
command = ["/bin/sh", "-c", "seq 1 100000; echo to-stderr >&2; printf partial"]
`)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 100001 {
		t.Fatalf("%d stdout lines, want 100000 + the partial last one", len(lines))
	}
	for i, line := range lines[:100000] {
		if line != "burst | "+strconv.Itoa(i+1) {
			t.Fatalf("line %d = %q", i, line)
		}
	}
	if lines[100000] != "burst | partial" {
		t.Errorf("partial last line = %q", lines[100000])
	}
	// stdout stays stdout, stderr stays stderr.
	if !strings.Contains(stderr, "burst | to-stderr\n") || strings.Contains(stdout, "to-stderr") {
		t.Errorf("stderr line misplaced; stderr:\n%s", stderr)
	}
}

func TestJSONLogsAndPerDaemonUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("running a daemon as another user needs root")
	}
	stdout, stderr := runToEnd(t, `
[[daemon]]
name = "who"
log = "json"
user = "nobody"
command = ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER; echo oops >&2; echo by-name >/dev/stdout; echo by-name >/dev/stderr; echo last-before-exit"]
`)
	if stdout != "" {
		t.Errorf("json mode wrote to stdout: %q", stdout)
	}
	var got []map[string]any
	scanner := bufio.NewScanner(strings.NewReader(stderr))
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("stderr line is not JSON: %q", scanner.Text())
		}
		if _, labelled := line["line"]; labelled && line["daemon"] == "who" {
			got = append(got, line)
		}
	}
	// The two by-name lines: the daemon's user may open its own /dev/stdout and /dev/stderr.
	if len(got) != 5 {
		t.Fatalf("want 5 labelled lines, got %v\n%s", got, stderr)
	}
	// stdout and stderr are copied apart: only each stream's own order is kept.
	var identity map[string]any
	for _, l := range got {
		if line, _ := l["line"].(string); strings.HasPrefix(line, "uid=") {
			identity = l
		}
	}
	if identity == nil || identity["stream"] != "stdout" || identity["ts"] == nil ||
		!strings.HasPrefix(identity["line"].(string), "uid=65534 gid=65534 groups=65534") ||
		!strings.Contains(identity["line"].(string), "user=nobody") {
		t.Errorf("identity line = %v", identity)
	}
	var sawStderr, sawLast bool
	byName := map[any]bool{}
	for _, l := range got {
		sawStderr = sawStderr || (l["stream"] == "stderr" && l["line"] == "oops")
		sawLast = sawLast || l["line"] == "last-before-exit"
		if l["line"] == "by-name" {
			byName[l["stream"]] = true
		}
	}
	if !sawStderr || !sawLast || !byName["stdout"] || !byName["stderr"] {
		t.Errorf("lines = %v", got)
	}
}

func TestUnknownUserExitsTwo(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemons.toml")
	_ = os.WriteFile(cfg, []byte("[[daemon]]\nname = \"z\"\ncommand = [\"/bin/true\"]\n[[daemon]]\nname = \"a\"\nuser = \"no-such-user-here\"\ncommand = [\"/bin/true\"]\n"), 0o644)
	out, err := exec.Command(binary, "--config", cfg).CombinedOutput()
	var exit *exec.ExitError
	// The key names the daemon's place in the table, as every config error does.
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "no-such-user-here") ||
		!strings.Contains(string(out), "daemon[1].user") {
		t.Fatalf("unknown user: %v %s", err, out)
	}
}

// A daemon's last line without its newline comes out when the daemon dies, not once every
// process holding its pipe has gone: a worker it left running kept the crash message back
// for as long as the bundle ran. Its leftovers' later lines still come out. Found by a
// review.
func TestLastPartialLineComesOutAtTheDaemonsDeath(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	table := `[[daemon]]
name = "holdp"
log = "json"
command = ["/bin/sh", "-c", "(sleep 0.5; echo from the leftover; exec sleep 1000) & printf 'fatal: crash reason'; exit 1"]
` + daemonTOML(t, record, "stay", "1s")
	p := startInit(t, table, false)
	p.waitLog(`"machine":"holdp","event":"fail"`)
	p.waitLog(`"daemon":"holdp","stream":"stdout","line":"fatal: crash reason"}`)
	p.waitLog(`"daemon":"holdp","stream":"stdout","line":"from the leftover"}`)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit code %d, want holdp's 1:\n%s", code, p.stderr())
	}
	if n := strings.Count(p.stderr(), "fatal: crash reason"); n != 1 {
		t.Errorf("the crash line came out %d times:\n%s", n, p.stderr())
	}
}

// Labelled lines lost to a failed write (stdout on a full disk, /dev/full here) are said
// in the log with their count, as the supervisor's own dropped lines are; before, they
// went without a trace. Found by a review.
func TestLostLabelledLinesAreReported(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full to make writes fail (%v)", err)
	}
	defer func() { _ = full.Close() }()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemons.toml")
	table := "[[daemon]]\nname = \"five\"\nlog = \"prefix\"\ncommand = [\"/bin/sh\", \"-c\", \"for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done\"]\n"
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(binary, "--config", cfg)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(dir, "control.sock")}
	cmd.Stdout, cmd.Stderr = full, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sidecar-init: %v\n%s", err, stderr.String())
	}
	var lost uint64
	for _, line := range strings.Split(stderr.String(), "\n") {
		var entry struct {
			Msg    string
			Stream string
			Lost   uint64 `json:"lost_lines"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && strings.HasPrefix(entry.Msg, "labelled daemon output lost") {
			if entry.Stream != "stdout" {
				t.Errorf("loss reported on %q, want stdout: %s", entry.Stream, line)
			}
			lost += entry.Lost
		}
	}
	if lost != 5 {
		t.Fatalf("%d lost lines reported, want the 5 written:\n%s", lost, stderr.String())
	}
}

// Past the bound of undrained runs, a readiness probe's output is discarded rather than
// written to the stalled stdout: a probe blocked there would never pass, and a daemon
// ready all along would be killed at its ready_timeout. Found by a review.
func TestStalledStdoutDoesNotBlockTheProbe(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	table := fmt.Sprintf(`[[daemon]]
name = "filler"
log = "prefix"
command = ["/bin/sh", "-c", "yes 'a line to fill the pipe' | head -c 300000; exec sleep 1000"]

[[daemon]]
name = "web"
log = "prefix"
command = ["/bin/sleep", "1000"]
ready = { exec = ["/bin/sh", "-c", "echo probing; test -e %s"] }
ready_timeout = "40s"
`, ready)
	cfg := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	stalled, stdout, err := os.Pipe() // never read
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stalled.Close() }()
	p := &initProc{t: t, stderrPath: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	stderr, err := os.Create(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, "--config", cfg, "--log-level", "debug")
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=" + filepath.Join(dir, "control.sock")}
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.launch(); err != nil {
		t.Fatal(err)
	}
	_ = stdout.Close()
	_ = stderr.Close()
	p.waitLog(`"label":"web.probe","undrained_runs":8`)
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`"machine":"web","event":"ready"`)
	if strings.Contains(p.stderr(), `"machine":"web","event":"fail"`) {
		t.Fatalf("web was failed although ready:\n%s", p.stderr())
	}
	p.signal(syscall.SIGTERM)
	p.wait()
}
