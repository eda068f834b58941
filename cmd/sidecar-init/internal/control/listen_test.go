package control

// Listen's refusals and its chmod, on conditions a review found (a directory it may not
// search, a flock that fails, a socket swapped for a symlink). Most need root.

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// onRestrictedThread runs f on a locked thread that lost the capabilities that bypass file
// modes (and, with seccompFlock, whose flock(2) fails with ENOLCK, as on an NFSv3 mount
// without lockd). The thread is never unlocked: it ends with its goroutine.
func onRestrictedThread(t *testing.T, seccompFlock bool, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		header := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&header, &data[0]); err != nil {
			done <- err
			return
		}
		data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH | 1<<unix.CAP_FOWNER
		if err := unix.Capset(&header, &data[0]); err != nil {
			done <- err
			return
		}
		if seccompFlock {
			filter := []unix.SockFilter{
				{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
				{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_FLOCK},
				{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOLCK)},
				{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
			}
			prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				done <- err
				return
			}
			if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
				done <- err
				return
			}
		}
		done <- f()
	}()
	return <-done
}

// A live sidecar-init's socket in a directory this instance may not search: README, "So
// does one that cannot tell (a connect refused with "permission denied" ...)": exit 2, as
// `sidecar-init check` says (Preflight gives ErrCannotTell). Listen failed at MkdirAll
// first with a plain EACCES, and main ran a second set of daemons beside the live one.
func TestListenCannotTellBehindAnUnsearchableDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	calls := make(chan Call)
	done := make(chan struct{})
	defer close(done)
	go fakeLoop(calls, done)
	priv := filepath.Join(t.TempDir(), "priv")
	path := filepath.Join(priv, "sub", "control.sock")
	live, err := Listen(path, calls, zlog.Nop()) // makes priv/ and priv/sub/, 0700
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := os.Chown(priv, 12345, 12345); err != nil { // another user's: no search for us
		t.Fatal(err)
	}
	var preflight, listen error
	err = onRestrictedThread(t, false, func() error {
		preflight = Preflight(path)
		s, err := Listen(path, make(chan Call), zlog.Nop())
		if err == nil {
			s.Close()
		}
		listen = err
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(preflight, ErrCannotTell) {
		t.Fatalf("Preflight = %v; want ErrCannotTell", preflight)
	}
	if !errors.Is(listen, ErrCannotTell) && !errors.Is(listen, ErrInUse) {
		t.Fatalf("Preflight says %v, but Listen = %v: main takes that for \"no socket\" and starts the daemons beside the live one", preflight, listen)
	}
}

// flock(2) on the lock file fails with something other than EWOULDBLOCK (ENOLCK: NFSv3
// without lockd; some FUSE and 9p mounts). Listen returned that error without looking at
// the socket: beside a live sidecar-init main started a second set of daemons, and with
// none there it ran without a control socket for good. The lock only closes a rare race:
// like an unusable lock file, a failing flock is gone around, and the look decides.
func TestListenLooksEvenWhenFlockFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (capset)")
	}
	calls := make(chan Call)
	done := make(chan struct{})
	defer close(done)
	go fakeLoop(calls, done)
	path := filepath.Join(t.TempDir(), "control.sock")
	live, err := Listen(path, calls, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var second error
	if err := onRestrictedThread(t, true, func() error {
		s, err := Listen(path, make(chan Call), zlog.Nop())
		if err == nil {
			s.Close()
		}
		second = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(second, ErrInUse) {
		t.Errorf("Listen beside a live server with flock failing = %v; want ErrInUse (main would start a second set of daemons)", second)
	}
	live.Close()
	var alone error
	if err := onRestrictedThread(t, true, func() error {
		s, err := Listen(path, make(chan Call), zlog.Nop())
		if err == nil {
			s.Close()
		}
		alone = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if alone != nil {
		t.Errorf("Listen with nobody there and flock failing = %v; want a socket made without the lock", alone)
	}
}

// The socket swapped for a symlink between the bind and the chmod (by whoever may write
// its directory): the chmod must not follow it and make the target 0600. A socket the
// umask did not make 0600 (a directory's default ACL) is made so through its descriptor.
func TestChmodSocketFollowsNoSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	old := unix.Umask(0o022)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	made, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := chmodSocket(path, made); err != nil {
		t.Fatalf("chmodSocket of the socket just made: %v", err)
	}
	if info, err := os.Lstat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("socket made 0644: after chmodSocket %v, %v; want 0600", info.Mode(), err)
	}

	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, filepath.Join(dir, "moved.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if err := chmodSocket(path, made); err == nil {
		t.Error("chmodSocket went on with a symlink at the socket's path")
	}
	if info, err := os.Stat(victim); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("the symlink's target: %v, %v; want it left 0755", info.Mode(), err)
	}
}
