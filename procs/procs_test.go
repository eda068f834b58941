package procs

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM}, {"term", syscall.SIGTERM}, {" Hup ", syscall.SIGHUP},
		{"SIGINT", syscall.SIGINT}, {"sigquit", syscall.SIGQUIT}, {"USR1", syscall.SIGUSR1},
		{"SIGKILL", syscall.SIGKILL}, {"SIGWINCH", syscall.SIGWINCH},
		{"SIGRTMIN+3", 37}, {"rtmin", 34}, {"sigRtMax-1", 63}, {"SIGABRT", syscall.SIGABRT},
	} {
		got, err := ParseSignal(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", " ", "SIG", "SIGTERMX", "15", "TERM,INT"} {
		if sig, err := ParseSignal(bad); err == nil || err.Error() == "" {
			t.Errorf("ParseSignal(%q) = %v, want an error with a message", bad, sig)
		}
	}
	if got := SignalName(syscall.SIGKILL); got != "SIGKILL" {
		t.Errorf("SignalName(SIGKILL) = %q", got)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		script string
		code   int
		signal syscall.Signal
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"kill -KILL $$", 137, syscall.SIGKILL},
		{"kill -TERM $$", 143, syscall.SIGTERM},
	} {
		exit := runAndReap(t, []string{"/bin/sh", "-c", tc.script})
		if exit.Code() != tc.code {
			t.Errorf("%q: Code() = %d, want %d", tc.script, exit.Code(), tc.code)
		}
		sig, signaled := exit.Signal()
		if signaled != (tc.signal != 0) || sig != tc.signal {
			t.Errorf("%q: Signal() = %v, %v; want %v", tc.script, sig, signaled, tc.signal)
		}
	}
}

// runAndReap spawns argv and reaps it with ReapAll, as the supervisor does.
func runAndReap(t *testing.T, argv []string) Exit {
	t.Helper()
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	pid, err := Spawn(Spec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}}, os.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	var got *Exit
	for got == nil {
		<-sigchld
		if _, err := ReapAll(func(e Exit) {
			if e.Pid == pid {
				got = &e
			}
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return *got
}

func TestSpawnRunsInItsOwnGroup(t *testing.T) {
	exit := runAndReap(t, []string{"/bin/sh", "-c", `read -r _ _ _ _ pgid _ < /proc/$$/stat; [ "$pgid" = "$$" ] || exit 9`})
	if exit.Code() != 0 {
		t.Fatalf("the daemon is not the leader of its own process group (status %d)", exit.Code())
	}
}

// A daemon starts with no signal blocked, whatever the process that started sidecar-init
// had blocked: the runtime gives a child its forking thread's mask, and a Go thread keeps
// the inherited one but for the signals the runtime needs. A SIGUSR2 or SIGTSTP forwarded
// to a daemon would otherwise wait, never delivered.
func TestSpawnStartsWithNoSignalBlocked(t *testing.T) {
	runtime.LockOSThread() // the mask below is this thread's; Spawn runs on it
	defer runtime.UnlockOSThread()
	var blocked, old unix.Sigset_t
	for _, sig := range []syscall.Signal{syscall.SIGUSR2, syscall.SIGTSTP, syscall.SIGTERM} {
		blocked.Val[(sig-1)/64] |= 1 << ((sig - 1) % 64)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &blocked, &old); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }()
	// (Not a shell: dash clears its mask before it forks a command.)
	exit := runAndReap(t, []string{"/bin/grep", "-q", "^SigBlk:[[:space:]]*0*$", "/proc/self/status"})
	if exit.Code() != 0 {
		t.Fatalf("the daemon started with signals blocked (status %d)", exit.Code())
	}
	var now unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, nil, &now); err != nil {
		t.Fatal(err)
	}
	if now.Val[0]&blocked.Val[0] != blocked.Val[0] {
		t.Errorf("Spawn left its thread's mask changed: %#x, want %#x in it", now.Val[0], blocked.Val[0])
	}
}

// A root sidecar-init whose container dropped CAP_SETUID and CAP_SETGID (capabilities.drop:
// [ALL]) cannot switch users either: the error names the switch, not the program (found by
// a review: "exec /bin/sleep: operation not permitted", where check named the switch).
func TestSpawnNamesAUserSwitchItCannotMake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: drops CAP_SETUID and CAP_SETGID from its own thread")
	}
	runtime.LockOSThread() // capabilities are the thread's; Spawn forks from it
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps, saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	saved = caps
	for _, c := range []int{unix.CAP_SETUID, unix.CAP_SETGID} {
		caps[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Errorf("restoring the thread's capabilities: %v", err)
		}
	}()
	nobody := &Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/"}
	pid, err := Spawn(Spec{Argv: []string{"/bin/true"}, Credential: nobody}, os.Stdin)
	if err == nil {
		_, _ = syscall.Wait4(pid, nil, 0, nil)
		t.Fatal("spawned as nobody without CAP_SETUID and CAP_SETGID")
	}
	if !strings.Contains(err.Error(), "switching users takes root with CAP_SETUID and CAP_SETGID") || !strings.Contains(err.Error(), "without them") {
		t.Errorf("error %q does not name the user switch", err)
	}
}

func TestSpawnErrors(t *testing.T) {
	dir := t.TempDir()
	noX := filepath.Join(dir, "nox")
	if err := os.Mkdir(noX, 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		spec   Spec
		status int
		says   string // in the error
	}{
		{"missing path", Spec{Argv: []string{filepath.Join(dir, "nope")}}, 127, "no such file"},
		{"not executable", Spec{Argv: []string{plain}}, 126, "permission denied"},
		{"a directory", Spec{Argv: []string{dir}}, 126, ""},
		{"not on PATH", Spec{Argv: []string{"surely-not-a-program"}, Env: []string{"PATH=" + dir}}, 127, ""},
		{"on PATH but not executable", Spec{Argv: []string{"plain"}, Env: []string{"PATH=" + dir}}, 126, ""},
		// The directory is named: the program is fine.
		{"missing dir", Spec{Argv: []string{"/bin/true"}, Dir: filepath.Join(dir, "nodir")}, 127, "dir " + filepath.Join(dir, "nodir") + ": "},
		{"dir is a file", Spec{Argv: []string{"/bin/true"}, Dir: plain}, 127, "dir " + plain + ": not a directory"},
		// Root may enter it, the daemon's user may not: the dir is named, not the program.
		{"dir the user may not enter", Spec{Argv: []string{"/bin/true"}, Dir: dir, Credential: &Credential{UID: 65534, GID: 65534}}, 126, "the daemon's user may not enter"},
		// Root enters a directory whatever its mode: a missing program is the program's fault.
		{"missing program in a dir without x bits", Spec{Argv: []string{filepath.Join(dir, "nope")}, Dir: noX}, 127, "exec " + filepath.Join(dir, "nope") + ": no such file"},
		{"empty argv", Spec{}, 127, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spec.Credential != nil && os.Getuid() != 0 {
				t.Skip("starting a process as another user needs root")
			}
			_, err := Spawn(tc.spec, os.Stdin)
			var se *SpawnError
			if !errors.As(err, &se) || se.Status != tc.status || se.Error() == "" || !strings.Contains(se.Error(), tc.says) {
				t.Fatalf("Spawn = %v, want a SpawnError with status %d saying %q", err, tc.status, tc.says)
			}
		})
	}
}

// A bare name is looked up as execvp in the daemon would: relative PATH entries from the
// daemon's dir, and past a file the daemon's user may not execute.
func TestLookPathAsTheDaemon(t *testing.T) {
	root := reachableDir(t)
	mkprog := func(rel string, mode os.FileMode) string {
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	inDir := mkprog("work/bin/prog", 0o755)
	rootOnly := mkprog("a/tool", 0o700) // owned by the test's user
	forAll := mkprog("b/tool", 0o755)
	locked := mkprog("c/private/tool", 0o755)
	if err := os.Chmod(filepath.Join(root, "c"), 0o700); err != nil {
		t.Fatal(err)
	}
	nobody := &Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}}
	for _, tc := range []struct {
		name, prog, path, dir string
		cred                  *Credential
		want                  string
	}{
		{"relative entry from the daemon's dir", "prog", "bin", filepath.Join(root, "work"), nil, inDir},
		{"empty entry is the daemon's dir", "prog", ":", filepath.Join(root, "work", "bin"), nil, filepath.Join(root, "work", "bin", "prog")},
		{"owner-only file passed over for another user", "tool", filepath.Dir(rootOnly) + ":" + filepath.Dir(forAll), "", nobody, forAll},
		{"owner-only file is the owner's", "tool", filepath.Dir(rootOnly) + ":" + filepath.Dir(forAll), "", &Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}, rootOnly},
		// As execvp in the daemon: an entry it may not search is passed over (root's PATH
		// with /root/.pyenv/shims first, for a daemon run as nobody).
		{"entry in a directory the user may not enter", "tool", filepath.Dir(locked) + ":" + filepath.Dir(forAll), "", nobody, forAll},
		{"entry in a directory its owner may enter", "tool", filepath.Dir(locked) + ":" + filepath.Dir(forAll), "", nil, locked},
		// The child execs it after its chdir: relative to the supervisor's directory, the
		// path would be looked up again from the daemon's.
		{"relative dir and relative entry", "prog", "bin", "work", nil, inDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cred != nil && os.Geteuid() != 0 {
				t.Skip("needs root: only root can look as another user")
			}
			if tc.dir == "work" {
				t.Chdir(root)
			}
			got, err := lookPath(tc.prog, []string{"PATH=" + tc.path}, tc.dir, tc.cred)
			if err != nil || got != tc.want {
				t.Fatalf("lookPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSignalGroupRefusesSpecialGroups(t *testing.T) {
	// Signal 0: should the refusal ever go, kill(-1) and kill(0) only look; a SIGTERM would
	// go to every process the test may signal (as root, the whole machine's), the test
	// runner included, and no failure would be reported.
	for _, pgid := range []int{-1, 0, 1} {
		if _, err := SignalGroup(pgid, 0); err == nil {
			t.Errorf("SignalGroup(%d) should refuse", pgid)
		}
	}
}

func TestSignalGroupEmpty(t *testing.T) {
	exit := runAndReap(t, []string{"/bin/true"})
	// The group of a reaped process with no other members is gone: ESRCH is "not delivered".
	if delivered, err := SignalGroup(exit.Pid, syscall.SIGTERM); delivered || err != nil {
		t.Fatalf("SignalGroup on an empty group = %v, %v", delivered, err)
	}
	if GroupAlive(exit.Pid) {
		t.Fatal("GroupAlive on an empty group")
	}
}

// LeadsAGroup tells a process that leads its own group (as a reused group id's new leader
// does) from one in another's group, and says no when it cannot tell.
func TestLeadsAGroup(t *testing.T) {
	if !procIsOurs() {
		t.Skip("/proc here is another PID namespace's: LeadsAGroup rightly cannot tell")
	}
	leader := exec.Command("/bin/sleep", "100")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	member := exec.Command("/bin/sleep", "100") // in the test's own group
	for _, cmd := range []*exec.Cmd{leader, member} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	}
	if !LeadsAGroup(leader.Process.Pid) {
		t.Error("a process that leads its own group: LeadsAGroup = false")
	}
	if LeadsAGroup(member.Process.Pid) {
		t.Error("a process in another's group: LeadsAGroup = true")
	}
	gone := runAndReap(t, []string{"/bin/true"})
	if LeadsAGroup(gone.Pid) || LeadsAGroup(0) || LeadsAGroup(1) {
		t.Error("LeadsAGroup of a reaped pid, 0 or 1 = true")
	}
}

func TestStatPgrp(t *testing.T) {
	for _, tc := range []struct {
		stat string
		pgrp int
		ok   bool
	}{
		{"812 (sleep) S 1 812 812 0 -1 4194304", 812, true},
		// comm may hold spaces and parentheses: the fields count from its last ')'.
		{"900 (a) b (c)) R 812 77 812 0", 77, true},
		{"900 (x y) Z 1 5", 5, true},
		{"900 (x) S 1", 0, false},
		{"garbage", 0, false},
		{"900 (x) S 1 notanumber", 0, false},
	} {
		pgrp, ok := statPgrp([]byte(tc.stat))
		if pgrp != tc.pgrp || ok != tc.ok {
			t.Errorf("statPgrp(%q) = %d, %v; want %d, %v", tc.stat, pgrp, ok, tc.pgrp, tc.ok)
		}
	}
}

// GroupReused tells a leaderless group in our session (a daemon's leftovers) from one in
// another session (an id reused by a double fork: setsid, fork, the leader exits).
func TestGroupReused(t *testing.T) {
	if !procIsOurs() {
		t.Skip("/proc here is another PID namespace's: GroupReused rightly cannot tell")
	}
	leftovers := func(attr *syscall.SysProcAttr) int {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", "/bin/sleep 100 </dev/null >/dev/null 2>&1 & echo $!")
		cmd.SysProcAttr = attr
		out, err := cmd.Output() // the leader exits at once and is reaped
		if err != nil {
			t.Fatal(err)
		}
		child, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
		return cmd.Process.Pid
	}
	ours := leftovers(&syscall.SysProcAttr{Setpgid: true})
	if !GroupAlive(ours) || GroupReused(ours) {
		t.Errorf("a leaderless group in our session: alive %v, reused %v; want alive, not reused", GroupAlive(ours), GroupReused(ours))
	}
	other := leftovers(&syscall.SysProcAttr{Setsid: true})
	if !GroupAlive(other) || !GroupReused(other) {
		t.Errorf("a leaderless group in another session: alive %v, reused %v; want alive and reused", GroupAlive(other), GroupReused(other))
	}
}

// GroupReused looks first among our own children (a dead daemon's leftovers are re-parented
// to us, PID 1 or subreaper): a leaderless group whose member is our child, in our session,
// is the daemon's, not a reused id.
func TestGroupReusedAmongOurChildren(t *testing.T) {
	if !procIsOurs() {
		t.Skip("/proc here is another PID namespace's: GroupReused rightly cannot tell")
	}
	leader := exec.Command("/bin/sleep", "100")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := leader.Process.Pid
	member := exec.Command("/bin/sleep", "100")
	member.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
	if err := member.Start(); err != nil {
		_ = leader.Process.Kill()
		_ = leader.Wait()
		t.Fatal(err)
	}
	defer func() { _ = member.Process.Kill(); _ = member.Wait() }()
	_ = leader.Process.Kill()
	_ = leader.Wait() // the leader is reaped: the group is leaderless, its member our child
	if !slices.Contains(mustChildren(t), member.Process.Pid) {
		t.Fatalf("Children() lacks our child %d", member.Process.Pid)
	}
	if !GroupAlive(pgid) || GroupReused(pgid) {
		t.Errorf("a leaderless group of our child, in our session: alive %v, reused %v; want alive, not reused", GroupAlive(pgid), GroupReused(pgid))
	}
}

// Children lists the children of every thread: the kernel files a child under the thread
// that forked it, and Go forks from whichever thread the goroutine runs on.
func TestChildrenOfEveryThread(t *testing.T) {
	const n = 8
	pids := make(chan int, n)
	release := make(chan struct{})
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("/bin/sleep", "100")
		cmds = append(cmds, cmd)
		go func() {
			runtime.LockOSThread() // its own thread until release: the forks spread over n threads
			defer runtime.UnlockOSThread()
			if err := cmd.Start(); err != nil {
				pids <- -1
				return
			}
			pids <- cmd.Process.Pid
			<-release
		}()
	}
	var want []int
	for range n {
		want = append(want, <-pids)
	}
	close(release)
	defer func() {
		for _, cmd := range cmds {
			if cmd.Process != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		}
	}()
	got := mustChildren(t)
	for _, pid := range want {
		if pid < 0 || !slices.Contains(got, pid) {
			t.Fatalf("Children() = %v; want every one of %v", got, want)
		}
	}
}

func mustChildren(t *testing.T) []int {
	t.Helper()
	pids, err := Children()
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// A child that made us its tracer (PTRACE_TRACEME; here SysProcAttr.Ptrace) stops at its
// exec with SIGTRAP, and wait4 reports the stop without WUNTRACED. It is alive: ReapAll
// hands it to onTraceStop, not to onExit (the supervisor took it for a death with status
// -1, restarted it beside the live process and exited 255; found by a review), and reports
// its real death later.
func TestReapAllTellsATraceStopFromAnExit(t *testing.T) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	runtime.LockOSThread() // the tracer is the forking thread
	defer runtime.UnlockOSThread()
	pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "30"}, &syscall.ProcAttr{
		Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Ptrace: true, Setpgid: true}})
	if err != nil {
		t.Fatalf("starting a traced child: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _, _ = syscall.Wait4(pid, nil, 0, nil) })
	var exits, stops []Exit
	drain := func() {
		t.Helper()
		<-sigchld
		if _, err := ReapAll(func(e Exit) { exits = append(exits, e) }, func(e Exit) { stops = append(stops, e) }); err != nil {
			t.Fatal(err)
		}
	}
	for len(stops) == 0 && len(exits) == 0 {
		drain()
	}
	if len(exits) != 0 || stops[0].Pid != pid || !stops[0].Status.Stopped() {
		t.Fatalf("exits %+v, stops %+v: want the exec's trace stop of %d and no exit", exits, stops, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for len(exits) == 0 {
		drain()
	}
	if exits[0].Pid != pid || exits[0].Code() != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit %+v, want %d killed by SIGKILL", exits[0], pid)
	}
}

// BenchmarkReapAll measures the reap path per exit (spawn excluded from the timer); it should
// not allocate.
func BenchmarkReapAll(b *testing.B) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	b.ReportAllocs()
	var reaped int
	count := func(Exit) { reaped++ }
	for b.Loop() {
		b.StopTimer()
		if _, err := Spawn(Spec{Argv: []string{"/bin/true"}}, os.Stdin); err != nil {
			b.Fatal(err)
		}
		<-sigchld
		b.StartTimer()
		if _, err := ReapAll(count, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reaped)/float64(b.N), "reaped/op")
}

// Every signal a process can catch has exactly one fate: stop, forward, drop, reap
// (SIGCHLD), or it is one the Go runtime keeps. A signal in none of them would get the
// runtime's default, which for several is a crash of PID 1.
func TestEverySignalHasOneFate(t *testing.T) {
	fates := map[syscall.Signal][]string{}
	add := func(fate string, sigs ...syscall.Signal) {
		for _, sig := range sigs {
			fates[sig] = append(fates[sig], fate)
		}
	}
	add("stop", StopSignals...)
	add("forward", ForwardedSignals...)
	add("drop", DroppedSignals...)
	add("ignore", IgnoredSignals...)
	add("reap", syscall.SIGCHLD)
	add("runtime", RuntimeSignals...)
	add("uncatchable", syscall.SIGKILL, syscall.SIGSTOP)
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if got := fates[sig]; len(got) != 1 {
			t.Errorf("%s (%d) has fates %v, want exactly one", SignalName(sig), int(sig), got)
		}
	}
	if len(fates) != 64 {
		t.Errorf("%d signals have a fate, want 64 (a set holds a number that is no signal)", len(fates))
	}
	for _, sig := range FaultSignals {
		if !slices.Contains(DroppedSignals, sig) {
			t.Errorf("fault signal %s is not dropped", SignalName(sig))
		}
	}
}

// Real-time signal names are the ones `kill -l` prints (bash's builtin, from the C
// library's numbering), and every name parses back; no other spelling is accepted.
func TestRealtimeSignalNamesMatchKillL(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("no bash to ask `kill -l` (%v); the names are still checked to parse back below", err)
	}
	for sig := sigRTMin; sig <= sigRTMax; sig++ {
		out, err := exec.Command(bash, "-c", "kill -l "+strconv.Itoa(int(sig))).Output()
		if err != nil {
			t.Fatalf("kill -l %d: %v", sig, err)
		}
		if want := "SIG" + strings.TrimSpace(string(out)); SignalName(sig) != want {
			t.Errorf("SignalName(%d) = %q, kill -l says %q", sig, SignalName(sig), want)
		}
	}
}

func TestEverySignalNameParsesBack(t *testing.T) {
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if sig == 32 || sig == 33 {
			continue // no name: glibc's and the runtime's thread signals
		}
		name := SignalName(sig)
		if got, err := ParseSignal(name); err != nil || got != sig {
			t.Errorf("ParseSignal(SignalName(%d) = %q) = %v, %v", sig, name, got, err)
		}
	}
	for _, bad := range []string{"SIGRTMAX-27", "SIGRTMIN+16", "SIGRTMIN+03", "SIGRTMIN+", "SIGRTMIN-1", "SIGRTMAX+1", "SIGRT"} {
		if sig, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) = %v, want an error: one spelling per signal, as kill -l prints it", bad, sig)
		}
	}
}

// A start that failed for lack of resources says so: the daemon table is not the cause.
func TestSpawnErrorOutOfResources(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.EMFILE, true}, {syscall.ENFILE, true}, {syscall.EAGAIN, true}, {syscall.ENOMEM, true},
		{&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EMFILE}, true},
		{syscall.ENOENT, false}, {syscall.EACCES, false}, {syscall.ENOEXEC, false},
	} {
		e := &SpawnError{Argv0: "/x", Err: tc.err, Status: statusFor(tc.err)}
		if got := e.OutOfResources(); got != tc.want {
			t.Errorf("%v: OutOfResources() = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Exited sees a child that has exited, leaves it to be reaped, and says no for one that
// runs or is gone.
func TestExited(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Exited(pid) {
		t.Fatal("a running child: Exited = true")
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !Exited(pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed child never read as exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !Exited(pid) {
		t.Fatal("Exited reaped the child: a second look says no")
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Pid() != pid {
		t.Fatalf("the child was not left for its reap: %v", err)
	}
	if Exited(pid) || Exited(0) || Exited(-1) {
		t.Fatal("a reaped pid, 0 or -1: Exited = true")
	}
}

// A group whose processes this process may not signal is alive: kill(-pgid, 0) fails with
// EPERM, and GroupAlive must not take that for empty. A sidecar-init that is not root meets
// it when a daemon made itself root (a setuid program): its shutdown then waits for that
// group through the grace and the looks after SIGKILL, instead of exiting past it. The
// check runs on one locked thread whose real and effective uid are nobody's (set with the
// raw system call: Go's Setresuid changes every thread); the saved uid stays root's, so
// the thread can come back.
func TestGroupAliveWhenNotPermittedToSignal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the group must belong to a user this test can then stop being")
	}
	rootsGroup := exec.Command("/bin/sleep", "100")
	rootsGroup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := rootsGroup.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rootsGroup.Process.Kill(); _ = rootsGroup.Wait() }()
	pgid := rootsGroup.Process.Pid

	type result struct {
		alive   bool
		err     error
		setup   error
		restore error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() {
			if r.restore == nil && r.setup == nil {
				runtime.UnlockOSThread() // back to root: the thread may serve others again
			} // (otherwise the goroutine ends locked, and its thread with it)
			done <- r
		}()
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, 65534, 65534, 0); errno != 0 {
			r.setup = errno
			return
		}
		_, r.err = SignalGroup(pgid, 0)
		r.alive = GroupAlive(pgid)
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, 0, 0, 0); errno != 0 {
			r.restore = errno
		}
	}()
	r := <-done
	if r.setup != nil || r.restore != nil {
		t.Fatalf("switching the thread's uid: to nobody %v, back to root %v", r.setup, r.restore)
	}
	if !errors.Is(r.err, unix.EPERM) {
		t.Errorf("SignalGroup(%d, 0) as nobody = %v, want EPERM (the group is root's)", pgid, r.err)
	}
	if !r.alive {
		t.Errorf("GroupAlive(%d) as nobody = false for root's live group: EPERM taken for empty", pgid)
	}
}
