package procs

import (
	"errors"
	"fmt"
	"os"
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

var nobody = &Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/"}

// asNobody is AsUser(nobody, fn) that also fails if fn ran on the main thread: the runtime
// parks a main thread whose locked goroutine ended rather than ending it, so whichever test
// calls first would see it, and afterwards the main thread is gone from the pool.
func asNobody(fn func() error) error {
	return AsUser(nobody, func() error {
		if unix.Gettid() == unix.Getpid() {
			return errors.New("ran on the main thread")
		}
		return fn()
	})
}

// reachableDir is a fresh directory every user may enter: t.TempDir's are root's alone.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAsUserChecksPathsAsTheUser: what root could remove but nobody could not stays, and
// what nobody owns goes.
func TestAsUserChecksPathsAsTheUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	dir := reachableDir(t)
	rootOnly := filepath.Join(dir, "root-only")
	theirs := filepath.Join(dir, "theirs")
	for _, d := range []string{rootOnly, theirs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "ready"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}

	err := asNobody(func() error { return os.Remove(filepath.Join(rootOnly, "ready")) })
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("removing a file in root's directory as nobody: %v, want EACCES", err)
	}
	if _, err := os.Stat(filepath.Join(rootOnly, "ready")); err != nil {
		t.Errorf("the file in root's directory: %v, want it still there", err)
	}
	if err := asNobody(func() error { return os.Remove(filepath.Join(theirs, "ready")) }); err != nil {
		t.Errorf("removing a file in nobody's directory as nobody: %v", err)
	}
	if err := AsUser(nil, func() error { return os.Remove(filepath.Join(rootOnly, "ready")) }); err != nil {
		t.Errorf("removing a file in root's directory with no user: %v", err)
	}
}

// TestAsUserLeavesNoThreadChanged: after the calls, no thread of this process may keep
// the user's identity: not the worker (it takes its own back after each call), and no
// other goroutine's thread, or they would act as nobody. Every thread must be back to
// fsuid 0, and the process as dumpable as before (the kernel clears the flag on an fsuid
// change).
func TestAsUserLeavesNoThreadChanged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	const before = 1
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, before, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := asNobody(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if after, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || after != before {
		t.Errorf("dumpable flag %d (%v) after the calls, %d before: the kernel clears it on an fsuid change", after, err, before)
	}
	// The threads end just after the calls return; give them a moment, not a fixed sleep.
	deadline := time.Now().Add(5 * time.Second)
	for {
		changed := threadsNotRoot(t)
		if len(changed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads still with another filesystem identity 5 s after the calls: %v", changed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadsNotRoot lists this process's threads whose fsuid or fsgid is not 0 (the fourth
// field of Uid: and Gid: in /proc/self/task/TID/status).
func threadsNotRoot(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, task := range tasks {
		status, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "status"))
		if err != nil {
			continue // ended meanwhile
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			key, value, _ := strings.Cut(line, ":")
			if fields := strings.Fields(value); (key == "Uid" || key == "Gid") && len(fields) == 4 && fields[3] != "0" {
				changed = append(changed, "pid "+strconv.Itoa(os.Getpid())+" task "+task.Name()+" "+key+" "+strings.Join(fields, " "))
			}
		}
	}
	return changed
}

// TestAsUserNeverOnTheMainThread: without the hand-off, the first call landed on the main
// thread in each of 3 runs of this test alone.
func TestAsUserNeverOnTheMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	for i := range 100 {
		if err := asNobody(func() error { return nil }); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestRunAsRestoresTheThread: runAs gives the thread back as it found it, so even a thread
// that did not end would carry nothing of the user.
func TestRunAsRestoresTheThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	type ids struct {
		fsuid, fsgid int
		groups       []int
		during       string
		err          error
	}
	got := make(chan ids, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread must end with the goroutine
		var r ids
		_, r.err = runAs(&Credential{UID: 65534, GID: 65534, Groups: []uint32{29, 65534}, Name: "nobody"}, func() error {
			uid, _ := unix.SetfsuidRetUid(-1)
			gid, _ := unix.SetfsgidRetGid(-1)
			groups, err := unix.Getgroups()
			r.during = fmt.Sprint(uid, gid, groups)
			return err
		})
		r.fsuid, _ = unix.SetfsuidRetUid(-1)
		r.fsgid, _ = unix.SetfsgidRetGid(-1)
		r.groups, _ = unix.Getgroups()
		got <- r
	}()
	saved, err := unix.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.during != "65534 65534 [29 65534]" {
		t.Errorf("during fn: fsuid fsgid groups = %s, want 65534 65534 [29 65534]", r.during)
	}
	if r.fsuid != 0 || r.fsgid != 0 || !slices.Equal(r.groups, saved) {
		t.Errorf("after: fsuid %d fsgid %d groups %v, want 0 0 %v", r.fsuid, r.fsgid, r.groups, saved)
	}
}

// One worker thread serves every call: a PID 1 that needed a new thread per call would
// crash once a daemon had used up the container's pids.
func TestAsUserKeepsOneThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	tids := map[int]bool{}
	for range 20 {
		if err := asNobody(func() error { tids[unix.Gettid()] = true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(tids) != 1 {
		t.Errorf("the calls ran on %d threads, want 1: %v", len(tids), tids)
	}
}

// The file capabilities go from the effective set even where the kernel leaves them on an
// fsuid change (SECBIT_NO_SETUID_FIXUP), and come back afterwards.
func TestAsUserDropsFileCapabilitiesTheKernelLeaves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	effective := func() (uint32, error) {
		header := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		err := unix.Capget(&header, &data[0])
		return data[0].Effective, err
	}
	const dacOverride = 1 << unix.CAP_DAC_OVERRIDE
	const secbitNoSetuidFixup = 1 << 2 // linux/securebits.h: SECURE_NO_SETUID_FIXUP is bit 2
	// On the worker's thread (securebits are per thread): no fix-up from the next call on.
	if err := asNobody(func() error { return unix.Prctl(unix.PR_SET_SECUREBITS, secbitNoSetuidFixup, 0, 0, 0) }); err != nil {
		t.Skipf("cannot set SECBIT_NO_SETUID_FIXUP here: %v", err)
	}
	t.Cleanup(func() {
		if err := AsUser(&Credential{Name: "root"}, func() error { return unix.Prctl(unix.PR_SET_SECUREBITS, 0, 0, 0, 0) }); err != nil {
			t.Errorf("clear the securebits again: %v", err)
		}
	})
	var during uint32
	err := asNobody(func() error {
		var err error
		during, err = effective()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if during&dacOverride != 0 {
		t.Errorf("CAP_DAC_OVERRIDE effective while acting as nobody (effective %#x)", during)
	}
	var after uint32
	if err := AsUser(&Credential{Name: "root"}, func() error { var err error; after, err = effective(); return err }); err != nil {
		t.Fatal(err)
	}
	if after&dacOverride == 0 {
		t.Errorf("CAP_DAC_OVERRIDE not back after the call (effective %#x)", after)
	}
}

// A panic in fn reaches the caller, and a Goexit in fn (t.Fatal) returns an error rather
// than leaving the caller, and every later call, waiting for ever; AsUser works after both.
func TestAsUserSurvivesPanicAndGoexit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can take another user's filesystem identity")
	}
	recovered := func() (r any) {
		defer func() { r = recover() }()
		_ = asNobody(func() error { panic("fn's panic") })
		return nil
	}()
	if recovered != "fn's panic" {
		t.Errorf("recovered %v, want fn's panic", recovered)
	}
	if err := asNobody(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("a Goexit in fn returned no error")
	}
	var during int
	if err := asNobody(func() error { during, _ = unix.SetfsuidRetUid(-1); return nil }); err != nil || during != 65534 {
		t.Errorf("a call after both: fsuid %d, %v", during, err)
	}
	if changed := threadsNotRoot(t); len(changed) > 0 {
		// The worker threads of the panic and the Goexit ended; the new one is root again.
		deadline := time.Now().Add(5 * time.Second)
		for len(changed) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			changed = threadsNotRoot(t)
		}
		if len(changed) > 0 {
			t.Errorf("threads with another identity: %v", changed)
		}
	}
}
