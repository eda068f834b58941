package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/procs"
	"github.com/claude-bottle/sidecar-init/sidecars"
)

// `sidecar-init check` starts nothing, changes nothing, and exits 0 (all good), 1 (it would
// start, but the daemons named would die at once) or 2 (it would not start at all).
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	good := daemonTOML(t, record, "a", "1s")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon := func(name, command string, extra ...string) string {
		return fmt.Sprintf("[[daemon]]\nname = %q\ncommand = [%q]\n%s\n", name, command, strings.Join(extra, "\n"))
	}
	readyFile := filepath.Join(dir, "ready")
	// tools is a PATH entry holding mytool, for pass_env.
	tools := filepath.Join(dir, "tools")
	if err := os.Mkdir(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tools, "mytool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// shared is a directory anyone may write to, with root's symlink to dir in it.
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(shared, "link")); err != nil {
		t.Fatal(err)
	}
	// A limit no process may have, root or not: past fs.nr_open.
	pastTheKernel := uint64(1 << 31)
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
			pastTheKernel = n + 1
		}
	}
	for _, tc := range []struct {
		name   string
		table  string
		env    []string
		status int
		says   string // on stdout for 0 and 1, stderr for 2
	}{
		{"all good", good + daemon("b", "sleep", `dir = "/"`, `ready = { exec = ["true"] }`), nil, 0, "b     (sidecar-init's)  /usr/bin/sleep"},
		{"missing program", good + daemon("b", "/nonexistent/prog"), nil, 1, "exec /nonexistent/prog: "},
		{"program not in PATH", good + daemon("b", "no-such-prog"), nil, 1, "no such file or directory (status 127)"},
		// The daemon's PATH is what pass_env leaves it: the default list when it passes none.
		{"program in a PATH pass_env passes", good + daemon("b", "mytool", `pass_env = ["PATH"]`), []string{"PATH=" + tools}, 0, filepath.Join(tools, "mytool")},
		{"program in a PATH pass_env does not pass", good + daemon("b", "mytool", `pass_env = []`), []string{"PATH=" + tools}, 1, "exec mytool: no such file or directory (status 127)"},
		{"not executable", good + daemon("b", plain), nil, 1, "may not execute it: permission denied (status 126)"},
		{"missing dir", good + daemon("b", "/bin/true", `dir = "/nonexistent"`), nil, 1, "dir /nonexistent: "},
		{"exec probe missing", good + daemon("b", "/bin/true", `ready = { exec = ["/nonexistent/probe"] }`), nil, 1, "its ready probe: exec /nonexistent/probe"},
		{"liveness probe missing", good + daemon("b", "/bin/true", `liveness = { exec = ["/nonexistent/alive"] }`), nil, 1, "its liveness probe: exec /nonexistent/alive"},
		{"ready file's dir missing", `ready_file = "/nonexistent/ready"` + "\n" + good, nil, 1, "ready_file /nonexistent/ready: open the ready file's directory /nonexistent: no such file or directory"},
		// The supervisor makes the control socket's directory and its parents at start: a
		// ready file beside the socket (the README's layout) will be written. A review saw
		// check say it would not.
		// A review saw check pass this, and the supervisor then retry the write for ever.
		{"ready file path is a directory", fmt.Sprintf("ready_file = %q\n", shared) + good, nil, 1, "is a directory: it would write no ready file"},
		{"ready file beside a control socket in a missing directory", `ready_file = "/nonexistent-sidecar/x/ready"` + "\n" + `control_socket = "/nonexistent-sidecar/x/control.sock"` + "\n" + good, nil, 0, "note: ready_file /nonexistent-sidecar/x/ready: its directory is made at start, for the control socket"},
		{"ready file above a control socket in a missing directory", `ready_file = "/nonexistent-sidecar/ready"` + "\n" + `control_socket = "/nonexistent-sidecar/x/control.sock"` + "\n" + good, nil, 0, "its directory is made at start"},
		{"ready file below a control socket's missing directory", `ready_file = "/nonexistent-sidecar/x/y/ready"` + "\n" + `control_socket = "/nonexistent-sidecar/x/control.sock"` + "\n" + good, nil, 1, "sidecar-init does not create the directory"},
		// What the supervisor's walk will not follow is no ready file either.
		{"ready file through a symlink others could have put", fmt.Sprintf("ready_file = %q\n", filepath.Join(shared, "link", "ready")) + good, nil, 1, "link is a symlink of uid 0, or in a directory others may change: not followed"},
		{"broken daemon not selected", good + daemon("b", "/nonexistent/prog"), []string{"CLAUDE_BOTTLE_SIDECAR_DAEMONS=a"}, 0, `1 of 2 daemons selected (CLAUDE_BOTTLE_SIDECAR_DAEMONS="a")`},
		// Legitimate (egress alone, say), but worth a line: the supervisor will not wait.
		{"dependency not selected", good + daemon("b", "/bin/true", `after = ["a"]`), []string{"CLAUDE_BOTTLE_SIDECAR_DAEMONS=b"}, 0, "note: b comes after a, which is not selected: it starts without waiting for it"},
		{"unknown key", good + "colour = \"red\"\n", nil, 2, "unknown key"},
		// An unset variable in `check --config "$CFG"`, not a wish for the embedded table
		// (a review saw check read it, over CLAUDE_BOTTLE_SIDECAR_CONFIG too).
		{"empty --config", good, []string{"--config=", "CLAUDE_BOTTLE_SIDECAR_CONFIG=/etc/sidecar-init/daemons.toml"}, 2, "an empty --config names no table"},
		{"unknown daemon selected", good, []string{"CLAUDE_BOTTLE_SIDECAR_DAEMONS=nope"}, 2, `unknown daemon "nope"`},
		{"unknown user", good + daemon("b", "/bin/true", `user = "no-such-user"`), nil, 2, `user "no-such-user": not found`},
		{"bad grace in the environment", good, []string{"CLAUDE_BOTTLE_SIDECAR_GRACE=forever"}, 2, "CLAUDE_BOTTLE_SIDECAR_GRACE"},
		{"bad log level in the environment", good, []string{"CLAUDE_BOTTLE_SIDECAR_LOG_LEVEL=verbose"}, 2, `log level "verbose"`},
		{"grace past docker stop's 10 s", good + daemon("b", "/bin/true", `grace = "12s"`), nil, 0, "note: daemon b's grace 12s (plus up to 1 s) outlasts docker stop's default 10s"},
		{"relative control socket in the environment", good, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=c.sock"}, 2, `CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET: "c.sock" is not an absolute path`},
		{"control socket of the environment with a trailing slash", good, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=/run/x/"}, 2, `CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET: "/run/x/": write it as "/run/x"`},
		// The supervisor wrote the ready file at the cleaned path and said ready, while the
		// path the table names (ENOTDIR) never existed.
		{"ready file with a trailing slash", fmt.Sprintf("ready_file = %q\n", readyFile+"/") + good, nil, 2, "key ready_file"},
		// Blank is unset, as for the other variables (it used to make a socket named " ").
		{"blank control socket in the environment", good, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET= "}, 0, "1 of 1 daemons selected"},
		{"blank log level in the environment", good, []string{"CLAUDE_BOTTLE_SIDECAR_LOG_LEVEL= "}, 0, "1 of 1 daemons selected"},
		// A review saw these pass check, then fail at every run.
		{"ready file at the control socket", `ready_file = "/run/x/ctl.sock"` + "\n" + `control_socket = "/run/x/ctl.sock"` + "\n" + good, nil, 2, "is the control socket's path"},
		{"ready file at the control socket's lock", `ready_file = "/run/x/ctl.sock.lock"` + "\n" + `control_socket = "/run/x/ctl.sock"` + "\n" + good, nil, 2, "is the control socket's path"},
		{"ready file at the control socket of the environment", `ready_file = "/run/x/ctl.sock"` + "\n" + good, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=/run/x/ctl.sock"}, 2, "is the control socket's path"},
		// sidecar-init makes the socket's directory and its parents directories at start:
		// a ready file there could never be written (a review saw check pass it on a fresh
		// container, and the supervisor then retry the write for ever).
		{"ready file at the control socket's directory", `ready_file = "/run/x"` + "\n" + `control_socket = "/run/x/ctl.sock"` + "\n" + good, nil, 2, `key ready_file: "/run/x" is the control socket's directory`},
		{"ready file above the control socket", `ready_file = "/run"` + "\n" + `control_socket = "/run/x/ctl.sock"` + "\n" + good, nil, 2, "is the control socket's directory (or one above it)"},
		{"ready file at the directory of the environment's control socket", `ready_file = "/run/x"` + "\n" + good, []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=/run/x/ctl.sock"}, 2, "is the control socket's directory"},
		// The supervisor removes a file probe's file before each run (a review saw it
		// unlink its own socket at the daemon's first spawn).
		{"file probe at the control socket", `control_socket = "/run/x/ctl.sock"` + "\n" + good + daemon("b", "/bin/true", `ready = { file = "/run/x/ctl.sock" }`), nil, 2, "key daemon[1].ready.file"},
		{"file probe at the environment's control socket", good + daemon("b", "/bin/true", `ready = { file = "/run/x/ctl.sock" }`), []string{"CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET=/run/x/ctl.sock"}, 2, `key daemon[1].ready.file: daemon "b": "/run/x/ctl.sock" is the control socket's path`},
		{"liveness file probe at the control socket's lock", `control_socket = "/run/x/ctl.sock"` + "\n" + good + daemon("b", "/bin/true", `liveness = { file = "/run/x/ctl.sock.lock" }`), nil, 2, "key daemon[1].liveness.file"},
		{"file probe at the ready file", good + daemon("b", "/bin/true", fmt.Sprintf("ready = { file = %q }", readyFile)), nil, 2, "is the ready file"},
		// The supervisor runs without a socket on these (a warning), so health never
		// passes: check says 1 (a review saw it say 0).
		{"control socket path too long", fmt.Sprintf("control_socket = %q\n", filepath.Join(dir, strings.Repeat("d", 120), "control.sock")) + good, nil, 1, "no control socket can be made there: the path is"},
		{"control socket at a file", fmt.Sprintf("control_socket = %q\n", plain) + good, nil, 1, "exists and is not a socket"},
		{"blank notify url in the environment", good, []string{"CLAUDE_BOTTLE_SUPERVISE_URL= "}, 0, "1 of 1 daemons selected"},
		// The supervisor exits 0 at once, before it reads the token: so does check.
		{"nothing selected", `notify_url = "http://127.0.0.1:9/x"` + "\n" + `notify_token_file = "/nonexistent/token"` + "\n" + good, []string{"CLAUDE_BOTTLE_SIDECAR_DAEMONS="}, 0, "no daemons selected"},
		{"missing token file", `notify_url = "http://127.0.0.1:9/x"` + "\n" + `notify_token_file = "/nonexistent/token"` + "\n" + good, nil, 2, "notify_token_file"},
		// At an image build, secrets and volumes are not mounted yet.
		{"missing token file at a build", `notify_url = "http://127.0.0.1:9/x"` + "\n" + `notify_token_file = "/nonexistent/token"` + "\n" + good, []string{"--build"}, 0, "--build: notify_token_file and ready_file's directory not looked at"},
		{"open-files limit", "limit_nofile = 4096\n" + good, nil, 0, "1 of 1 daemons selected"},
		{"open-files limit past the kernel's", fmt.Sprintf("limit_nofile = %d\n", pastTheKernel) + good, nil, 1, fmt.Sprintf("limit_nofile %d: open-files limit not raised as far as asked", pastTheKernel)},
		{"open-files limit at a build", fmt.Sprintf("limit_nofile = %d\n", pastTheKernel) + good, []string{"--build"}, 0, "--build: limit_nofile not looked at"},
		{"ready file's dir missing at a build", `ready_file = "/nonexistent/ready"` + "\n" + good, []string{"--build"}, 0, "not looked at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "daemons.toml")
			table := fmt.Sprintf("ready_file = %q\n", readyFile) + tc.table
			if strings.HasPrefix(tc.table, "ready_file") || strings.HasPrefix(tc.table, "notify_url") {
				// The table sets its own.
				table = tc.table
			}
			if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
				t.Fatal(err)
			}
			// A ready file an earlier run left: check must leave it, as it leaves everything.
			if err := os.WriteFile(readyFile, []byte("earlier\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var args []string
			env := []string{"PATH=/usr/bin:/bin"}
			for _, e := range tc.env {
				if strings.HasPrefix(e, "--") {
					args = append(args, e)
				} else {
					env = append(env, e)
				}
			}
			cmd := exec.Command(binary, append([]string{"check", "--config", cfg}, args...)...)
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			out := stdout.String()
			if status == 2 {
				out = stderr.String()
			}
			if status != tc.status || !strings.Contains(out, tc.says) {
				t.Errorf("exit %d, want %d with %q; stdout:\n%s\nstderr:\n%s", status, tc.status, tc.says, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), `"level"`) {
				t.Errorf("stderr is the supervisor's JSON log, want plain text for a person:\n%s", stderr.String())
			}
			if _, err := os.Stat(record); err == nil {
				t.Fatal("check started a daemon")
			}
			if _, err := os.Stat(readyFile); err != nil {
				t.Errorf("check removed the ready file an earlier run left: %v", err)
			}
		})
	}
}

// check stops where the start would, with its words, when another sidecar-init may answer
// on the control socket (one this user may not reach): a review saw check, run as nobody
// on a socket in root's 0700 directory, exit 0 where the start exits 2. One that answers
// is this container's own, running: a note.
func TestCheckStopsWhereTheStartStopsOnTheControlSocket(t *testing.T) {
	t.Run("another sidecar-init answers", func(t *testing.T) {
		dir := t.TempDir()
		socket := filepath.Join(dir, "control.sock")
		table := daemonTOML(t, filepath.Join(dir, "record"), "a", "1s")
		p := startInit(t, table, false, envControlSocket+"="+socket)
		p.waitLog(`"msg":"control socket listening"`)
		status, out := runAs(t, binary, nil, []string{envControlSocket + "=" + socket}, "check", "--config", writeTable(t, dir, table))
		// Checking a table in a running container (docker exec) is a use of check: told,
		// and the table checked on.
		if status != 0 || !strings.Contains(out, "a sidecar-init runs there; a second one would not start beside it") {
			t.Errorf("check beside a running sidecar-init: exit %d, want 0 and a note:\n%s", status, out)
		}
		p.signal(syscall.SIGTERM)
		p.wait()
	})
	t.Run("cannot tell", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root: runs sidecar-init as nobody against root's directory")
		}
		open := openDir(t)
		bin := copyForOthers(t, open, binary, "sidecar-init", 0o755)
		rootOnly := filepath.Join(open, "run-sidecar-init") // as a root RUN step leaves it
		if err := os.Mkdir(rootOnly, 0o700); err != nil {
			t.Fatal(err)
		}
		table := writeTable(t, open, fmt.Sprintf("control_socket = %q\n[[daemon]]\nname = \"a\"\ncommand = [\"/bin/sleep\", \"30\"]\n",
			filepath.Join(rootOnly, "control.sock")))
		nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
		start, startOut := runAs(t, bin, nobody, nil, "--config", table)
		check, checkOut := runAs(t, bin, nobody, nil, "check", "--config", table)
		const words = "connect: permission denied; not starting the daemons: give this sidecar-init a control_socket it may use"
		if start != 2 || !strings.Contains(startOut, words) {
			t.Fatalf("setup: the start as nobody exited %d, want 2 saying %q:\n%s", start, words, startOut)
		}
		if check != 2 || !strings.Contains(checkOut, words) {
			t.Errorf("check as nobody: exit %d, want 2 saying %q, as the start:\n%s", check, words, checkOut)
		}
	})
}

// writeTable writes the daemon table text into dir and returns its path (readable by all).
func writeTable(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runAs runs bin with args as cred (nil: this test's user), its environment a PATH and env,
// and returns its exit status and all it wrote; one still running after 10 s is killed.
func runAs(t *testing.T, bin string, cred *syscall.Credential, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v still ran after 10 s:\n%s", bin, args, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestLongGraceNote(t *testing.T) {
	for _, tc := range []struct {
		graces []time.Duration
		names  string // the daemon the note names; "" for no note
	}{
		{[]time.Duration{config.DefaultGrace}, ""},
		{[]time.Duration{time.Second, 9 * time.Second}, ""}, // 9 s + 1 s fits docker stop's 10 s
		{[]time.Duration{time.Second, 9500 * time.Millisecond}, "d1"},
		{[]time.Duration{12 * time.Second, 30 * time.Second, time.Second}, "d1"},
		{[]time.Duration{time.Second, time.Duration(math.MaxInt64)}, "d1"}, // grace + 1 s would overflow
	} {
		var daemons []config.Daemon
		for i, grace := range tc.graces {
			daemons = append(daemons, config.Daemon{Name: fmt.Sprintf("d%d", i), Grace: grace})
		}
		note := longGraceNote(daemons)
		if (note == "") != (tc.names == "") || (tc.names != "" && !strings.HasPrefix(note, "daemon "+tc.names+"'s grace")) {
			t.Errorf("graces %v: note %q, want one naming %q", tc.graces, note, tc.names)
		}
		// A reverse stop is bounded by the largest grace (shutdown.go's reverseDeadline, the
		// README): a review saw the note say it adds the graces along each chain.
		if note != "" && !strings.Contains(note, `stop_order = "reverse" too: it stops within the largest grace`) {
			t.Errorf("graces %v: note %q does not say a reverse stop fits in the largest grace", tc.graces, note)
		}
	}
}

// A blank CLAUDE_BOTTLE_SIDECAR_CONFIG is unset, as every variable: the embedded table, not
// a file named " " (a review saw "cannot read the daemon table: open  :").
func TestBlankConfigVariableIsTheEmbeddedTable(t *testing.T) {
	cmd := exec.Command(binary, "check")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAUDE_BOTTLE_SIDECAR_CONFIG= "}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), sidecars.DaemonsTOMLName) || strings.Contains(string(out), "cannot read the daemon table") {
		t.Fatalf("check with a blank %s said:\n%s\nwant the embedded table, %s", envConfig, out, sidecars.DaemonsTOMLName)
	}
}

// A sidecar-init this user cannot tell from a live one (its control socket in root's 0700
// directory, this one run as nobody) may own the ready file: a failed start leaves it, as
// it leaves a live one's (a mutation review found nothing pinned this).
func TestFailedStartLeavesTheReadyFileOfOneItCannotTell(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: runs sidecar-init as nobody against root's directory")
	}
	open := openDir(t)
	bin := copyForOthers(t, open, binary, "sidecar-init", 0o755)
	rootOnly := filepath.Join(open, "run-sidecar-init")
	shared := filepath.Join(open, "shared") // anyone may remove what is in it
	for dir, mode := range map[string]os.FileMode{rootOnly: 0o700, shared: 0o777} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil { // (past the umask)
			t.Fatal(err)
		}
	}
	ready := filepath.Join(shared, "ready")
	if err := os.WriteFile(ready, []byte("ready\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := writeTable(t, open, fmt.Sprintf("control_socket = %q\nready_file = %q\n[[daemon]]\nname = \"a\"\ncommand = [\"/bin/sleep\", \"30\"]\n",
		filepath.Join(rootOnly, "control.sock"), ready))
	if code, out := runAs(t, bin, &syscall.Credential{Uid: 65534, Gid: 65534}, nil, "--config", table, "--bogus"); code != 2 {
		t.Fatalf("exit %d, want 2 (a bad flag):\n%s", code, out)
	}
	if _, err := os.Stat(ready); err != nil {
		t.Errorf("the ready file of a sidecar-init it could not tell from a live one was removed: %v", err)
	}
}

// Daemons that share a user other than root are named, at start and by check: each may
// signal, trace and read the others (a security review had one stand in for the other).
// Root, and daemons without a user, are not.
func TestSharedUserNotes(t *testing.T) {
	as := func(name string, uid uint32) config.Daemon {
		d := config.Daemon{Name: name}
		if uid != ^uint32(0) {
			d.Credential = &procs.Credential{UID: uid, GID: uid, Name: name}
		}
		return d
	}
	none := ^uint32(0)
	for _, tc := range []struct {
		daemons []config.Daemon
		want    []string // names in each note
	}{
		{[]config.Daemon{as("a", 65534), as("b", 1000)}, nil},
		{[]config.Daemon{as("a", 0), as("b", 0), as("c", none), as("d", none)}, nil},
		{[]config.Daemon{as("pipelock", 65534), as("egress", 999), as("supervise", 65534)}, []string{"daemons pipelock, supervise run as one user (uid 65534)"}},
		{[]config.Daemon{as("a", 7), as("b", 8), as("c", 7), as("d", 8)}, []string{"daemons a, c ", "daemons b, d "}},
	} {
		notes := sharedUserNotes(tc.daemons)
		if len(notes) != len(tc.want) {
			t.Errorf("%v: notes %q, want %d", tc.daemons, notes, len(tc.want))
			continue
		}
		for i, want := range tc.want {
			if !strings.Contains(notes[i], want) {
				t.Errorf("note %q lacks %q", notes[i], want)
			}
		}
	}
}

// The bundle's own table gives each unprivileged guard a user of its own.
func TestBundleGuardsHaveUsersOfTheirOwn(t *testing.T) {
	cfg, err := config.Parse(sidecars.DaemonsTOMLName, sidecars.DaemonsTOML)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, d := range cfg.Daemons {
		if d.User == "" || d.User == "root" || strings.HasPrefix(d.User, "0:") {
			continue
		}
		if other, ok := seen[d.User]; ok {
			t.Errorf("daemons %s and %s both run as %q: one compromised could stop or stand in for the other", other, d.Name, d.User)
		}
		seen[d.User] = d.Name
	}
}
