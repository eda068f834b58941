package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSidecarInitConfig(t *testing.T) {
	got := sidecarInitConfig(services("/b/svc", 2))
	want := "[[daemon]]\nname = 'svc-001'\ncommand = ['/b/svc', '-id', 'svc-001']\n" +
		"\n[[daemon]]\nname = 'svc-002'\ncommand = ['/b/svc', '-id', 'svc-002']\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestSupervisordConfig(t *testing.T) {
	got := supervisordConfig(services("/b/svc", 2))
	for _, want := range []string{
		"[supervisord]\nnodaemon=true\n",
		"\n[program:svc-001]\ncommand=/b/svc -id svc-001\n",
		"\n[program:svc-002]\ncommand=/b/svc -id svc-002\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

// TestFanoutScript runs the generated script with a stand-in for the service
// and checks every service was started with its own arguments, a quote in an
// argument included.
func TestFanoutScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the fan-out script with")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	fake := filepath.Join(dir, "it's a service")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$2\" >>"+shellQuote(out)+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := fanoutScript(services(fake, 3))
	if !strings.HasSuffix(script, "& wait") {
		t.Errorf("script does not wait for the services: %s", script)
	}
	if b, err := exec.Command(sh, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(text))
	slices.Sort(got)
	if want := []string{"svc-001", "svc-002", "svc-003"}; !slices.Equal(got, want) {
		t.Errorf("services started: %v, want %v", got, want)
	}
}

func TestSingleChildArgv(t *testing.T) {
	spec := singleChildInit("tini", "tini", "/usr/bin/tini", "tini -- SERVICE", "--")
	one, err := spec.argv("", services("/b/svc", 1))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/bin/tini", "--", "/b/svc", "-id", "svc-001"}; !slices.Equal(one, want) {
		t.Errorf("K = 1: %v, want %v", one, want)
	}
	four, err := spec.argv("", services("/b/svc", 4))
	if err != nil {
		t.Fatal(err)
	}
	if len(four) != 5 || four[2] != "/bin/sh" || four[3] != "-c" {
		t.Errorf("K = 4: %v, want tini -- /bin/sh -c SCRIPT", four)
	}
}

func TestWriteScanDir(t *testing.T) {
	scan := filepath.Join(t.TempDir(), "scan")
	if err := writeScanDir(scan, services("/b/svc", 2)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svc-001", "svc-002"} {
		target, err := os.Readlink(filepath.Join(scan, name, "run"))
		if err != nil || target != "/b/svc" {
			t.Errorf("%s/run -> %q, %v; want /b/svc", name, target, err)
		}
	}
}

func TestCountStopped(t *testing.T) {
	msgs := []message{
		{kind: 'R', name: "a"}, {kind: 'T', name: "a"}, {kind: 'T', name: "a"}, // a duplicate counts once
		{kind: 'R', name: "b"}, {kind: 'T', name: "c"},
	}
	if got := countStopped(msgs); got != 2 {
		t.Errorf("countStopped = %d, want 2", got)
	}
}

// A service the init handed SIGTERM ignored or blocked fails the trial as soon as it says
// so: counted, it would read as stopped gracefully by an init that left it deaf.
func TestAwaitReadyFailsOnAnInheritedIgnore(t *testing.T) {
	ch, err := openChannel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = ch.drain() }()
	if _, err := ch.file.WriteString("R svc-001\nI svc-002 ignored\nR svc-002\n"); err != nil {
		t.Fatal(err)
	}
	r := &running{started: time.Now(), exited: make(chan exit, 1)}
	_, err = awaitReady(ch, r, services("/b/svc", 2), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "service svc-002 inherited SIGTERM ignored") {
		t.Errorf("awaitReady = %v, want the inherited ignore of svc-002", err)
	}
}

func TestWakeupsSince(t *testing.T) {
	before := activity{switches: map[int]int64{10: 5, 11: 7, 12: 1}}
	// Task 12 exited (its count is lost, as /proc no longer shows it); task
	// 13 was born and counts from zero.
	after := activity{switches: map[int]int64{10: 6, 11: 7, 13: 2}}
	if got := after.wakeupsSince(before); got != 3 {
		t.Errorf("wakeupsSince = %d, want 3", got)
	}
}

func TestParseKs(t *testing.T) {
	got, err := parseKs("4, 100")
	if err != nil || !slices.Equal(got, []int{4, 100}) {
		t.Fatalf("parseKs(\"4, 100\") = %v, %v; want [4 100]", got, err)
	}
	for _, bad := range []string{"", "0", "-1", "4,x"} {
		if _, err := parseKs(bad); err == nil {
			t.Errorf("parseKs(%q) accepted a bad list", bad)
		}
	}
}

// TestTinyService builds bench/tinyservice as the harness does and runs it through the
// harness's own FIFO reader: its lines, its name without -id, its exit, and its refusals.
// Its aarch64 half runs under qemu-user where a cross compiler and qemu are installed.
func TestTinyService(t *testing.T) {
	for _, target := range []struct {
		name   string
		cc     []string
		runner string
	}{
		{"native", ccCommand(), ""},
		{"aarch64 under qemu", []string{"aarch64-linux-gnu-gcc"}, "qemu-aarch64"},
	} {
		t.Run(target.name, func(t *testing.T) {
			if _, err := exec.LookPath(target.cc[0]); err != nil {
				t.Skipf("no C compiler %s to build bench/tinyservice with (`make bench-deps` installs gcc; gcc-aarch64-linux-gnu and qemu-user for the aarch64 half)", target.cc[0])
			}
			if target.runner != "" {
				if _, err := exec.LookPath(target.runner); err != nil {
					t.Skipf("no %s to run the aarch64 build with (Debian: qemu-user)", target.runner)
				}
			}
			testTinyService(t, target.cc, target.runner)
		})
	}
}

func testTinyService(t *testing.T, cc []string, runner string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tiny")
	if err := buildC(cc, "../../tinyservice/service.c", bin, tinyServiceFlags); err != nil {
		t.Fatal(err)
	}
	command := func(args ...string) *exec.Cmd {
		if runner != "" {
			return exec.Command(runner, append([]string{bin}, args...)...)
		}
		return exec.Command(bin, args...)
	}
	ch, err := openChannel(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = ch.drain() }()
	env := []string{envFIFO + "=" + ch.path()}
	next := func() message {
		t.Helper()
		select {
		case m := <-ch.msgs:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no line from the service in 10 s")
			return message{}
		}
	}

	t.Run("named by -id, SIGTERM after a stop and continue", func(t *testing.T) {
		cmd := command("-x", "-id", "svc-001")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if m := next(); m.kind != 'R' || m.name != "svc-001" {
			t.Fatalf("first line %c %s, want R svc-001", m.kind, m.name)
		}
		// A stop and a continue make rt_sigtimedwait fail with EINTR (signal(7)): the wait
		// must resume. Each signal waits for the state it brings, or SIGTERM would be
		// pending before the wait ever failed.
		for _, step := range []struct {
			sig   syscall.Signal
			state byte
		}{{syscall.SIGSTOP, 'T'}, {syscall.SIGCONT, 'S'}, {syscall.SIGTERM, 0}} {
			if err := cmd.Process.Signal(step.sig); err != nil {
				t.Fatal(err)
			}
			if step.state != 0 {
				waitForState(t, cmd.Process.Pid, step.state)
			}
		}
		if m := next(); m.kind != 'T' || m.name != "svc-001" {
			t.Fatalf("second line %c %s, want T svc-001", m.kind, m.name)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	})
	t.Run("named by its working directory", func(t *testing.T) {
		wd := filepath.Join(dir, "svc-042")
		if err := os.Mkdir(wd, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := command()
		cmd.Env, cmd.Dir = env, wd
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		if m := next(); m.kind != 'R' || m.name != "svc-042" {
			t.Fatalf("first line %c %s, want R svc-042", m.kind, m.name)
		}
	})
	// An init that hands its daemons SIGTERM ignored (signal.Ignore: SIG_IGN survives
	// execve) or blocked (so does the mask) leaves a daemon with the default disposition deaf
	// to its stop signal. The service blocks SIGTERM and waits for it with sigtimedwait,
	// which takes it all the same: so it says what it inherited, before "R", and writes no
	// "T" for graceful to count.
	for _, inherited := range []string{"ignored", "blocked"} {
		t.Run("SIGTERM inherited "+inherited, func(t *testing.T) {
			cmd := inheriting(inherited, command("-id", "svc-001"))
			cmd.Env = append(cmd.Env, env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			if m := next(); m.kind != 'I' || m.name != "svc-001" || m.arg != inherited {
				t.Fatalf("first line %c %s %s, want I svc-001 %s", m.kind, m.name, m.arg, inherited)
			}
			if m := next(); m.kind != 'R' || m.name != "svc-001" {
				t.Fatalf("second line %c %s, want R svc-001", m.kind, m.name)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit after SIGTERM: %v, want status 0", err)
			}
			// The FIFO keeps order: a "T" written before the exit comes before this line.
			if _, err := ch.file.WriteString("Z after-exit\n"); err != nil {
				t.Fatal(err)
			}
			if m := next(); m.kind != 'Z' {
				t.Errorf("line %c %s after the exit: graceful would count a service that inherited SIGTERM %s", m.kind, m.name, inherited)
			}
		})
	}
	for _, tc := range []struct {
		name, stderr string
		env          []string
	}{
		{"no FIFO", "$INITBENCH_FIFO is not set", nil},
		{"orphan mode asked", "orphan mode", append([]string{envOrphans + "=10"}, env...)},
		{"FIFO missing", "open $INITBENCH_FIFO failed", []string{envFIFO + "=" + filepath.Join(dir, "none")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := command("-id", "x")
			cmd.Env = tc.env
			out, err := cmd.CombinedOutput()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
				t.Fatalf("got %v (%s), want exit status 1", err, out)
			}
			if !strings.Contains(string(out), tc.stderr) {
				t.Errorf("stderr %q lacks %q", out, tc.stderr)
			}
		})
	}
}

// envInherit asks the test binary, run again, to exec its arguments with SIGTERM "ignored"
// or "blocked": what an init that calls signal.Ignore, or forks with SIGTERM in its mask,
// hands its daemons.
const envInherit = "INITBENCH_TEST_INHERIT"

func TestMain(m *testing.M) {
	if how := os.Getenv(envInherit); how != "" {
		execInheriting(how, os.Args[1:])
	}
	os.Exit(m.Run())
}

// inheriting returns cmd run through the test binary with SIGTERM ignored or blocked.
func inheriting(how string, cmd *exec.Cmd) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	wrapped := exec.Command(self, append([]string{cmd.Path}, cmd.Args[1:]...)...)
	wrapped.Env = []string{envInherit + "=" + how}
	return wrapped
}

func execInheriting(how string, argv []string) {
	// The mask is the thread's: keep the one that execs.
	runtime.LockOSThread()
	switch how {
	case "ignored":
		signal.Ignore(syscall.SIGTERM)
	case "blocked":
		var set unix.Sigset_t
		set.Val[0] = 1 << (unix.SIGTERM - 1)
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
			fmt.Fprintln(os.Stderr, "block SIGTERM:", err)
			os.Exit(2)
		}
	default:
		fmt.Fprintf(os.Stderr, "$%s: %q is neither ignored nor blocked\n", envInherit, how)
		os.Exit(2)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envInherit+"=") })
	err := syscall.Exec(argv[0], argv, env)
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", argv[0], err)
	os.Exit(2)
}

// waitForState polls /proc until the process is in state (R, S, T, …), for up to 10 s.
func waitForState(t *testing.T, pid int, state byte) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// The state follows the command name, which is in parentheses and may hold any byte.
		i := bytes.LastIndexByte(stat, ')')
		switch {
		case i < 0 || i+2 >= len(stat):
			t.Fatalf("unreadable /proc/%d/stat: %q", pid, stat)
		case stat[i+2] == state:
			return
		case stat[i+2] == 'Z':
			t.Fatalf("process %d exited while waiting for state %c", pid, state)
		}
	}
	t.Fatalf("process %d not in state %c after 10 s", pid, state)
}

// TestCFloor builds bench/cfloor as the harness does and stops it as the bench does: both
// services of a fan-out shell must get SIGTERM (graceful), and cfloor must exit 0 once
// they are all reaped.
func TestCFloor(t *testing.T) {
	cc := ccCommand()
	if _, err := exec.LookPath(cc[0]); err != nil {
		t.Skipf("no C compiler (%s) to build bench/cfloor with: `make bench-deps` installs gcc and libc6-dev", cc[0])
	}
	dir := t.TempDir()
	floor, tiny := filepath.Join(dir, "cfloor"), filepath.Join(dir, "tiny")
	if err := buildC(cc, "../../cfloor/cfloor.c", floor, cFloorFlags); err != nil {
		t.Fatal(err)
	}
	if err := buildC(cc, "../../tinyservice/service.c", tiny, tinyServiceFlags); err != nil {
		t.Fatal(err)
	}
	ch, err := openChannel(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = ch.drain() }()
	argv, err := cFloorSpec(floor).argv(dir, services(tiny, 2))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{envFIFO + "=" + ch.path()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := func(kind byte) []string {
		t.Helper()
		var names []string
		for len(names) < 2 {
			select {
			case m := <-ch.msgs:
				if m.kind != kind {
					t.Fatalf("line %c %s, want %c", m.kind, m.name, kind)
				}
				names = append(names, m.name)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d %c lines in 10 s, want 2", len(names), kind)
			}
		}
		slices.Sort(names)
		return names
	}
	if got := lines('R'); !slices.Equal(got, []string{"svc-001", "svc-002"}) {
		t.Fatalf("ready: %v", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := lines('T'); !slices.Equal(got, []string{"svc-001", "svc-002"}) {
		t.Fatalf("got SIGTERM: %v", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("cfloor after SIGTERM: %v, want exit status 0", err)
	}

	// Unlike gofloor -g, which looks the program up before it forks and exits 127, cfloor
	// forks first: its child exits 127, and cfloor, everyone reaped, exits 0. The failure
	// is on stderr. (The bench always runs an existing program.)
	out, err := exec.Command(floor, filepath.Join(dir, "no-such-program")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cfloor: exec") {
		t.Errorf("missing program: %v, stderr %q; want status 0 and the exec error", err, out)
	}
}

// The floors are built only when -inits wants them. Built after the inits were chosen (6e39c8c),
// they were skipped as missing in every run.
func TestInitsWanted(t *testing.T) {
	for _, tc := range []struct {
		inits string
		names []string
		want  bool
	}{
		{"", []string{"c-floor-g"}, true},
		{"sidecar-init,tini,go-floor-g,c-floor-g", []string{"c-floor-g"}, true},
		{"sidecar-init,tini,go-floor-g", []string{"go-floor", "go-floor-g"}, true},
		{"sidecar-init,tini", []string{"go-floor", "go-floor-g"}, false},
		{"c-floor-g-x", []string{"c-floor-g"}, false},
	} {
		if got := initsWanted(tc.inits, tc.names...); got != tc.want {
			t.Errorf("initsWanted(%q, %v) = %v, want %v", tc.inits, tc.names, got, tc.want)
		}
	}
}
