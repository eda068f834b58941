package procs

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// asUserMu makes AsUser calls one at a time: each saves and restores the process's
// dumpable flag, which the kernel keeps for the whole process.
var asUserMu sync.Mutex

// AsUser runs fn with cred's filesystem identity: the kernel checks every path fn touches
// as it would for the daemon (its fsuid, fsgid and exactly its Groups; root's capabilities
// that override file permissions drop with the fsuid), so a file operation the supervisor
// does on a daemon's behalf, on a path the daemon can influence (a symlink in a directory
// it owns), can do no more than the daemon could itself. A nil cred runs fn as the caller.
//
// Linux keeps credentials per thread, and the raw setfsuid, setfsgid and setgroups calls
// change only the calling one. fn runs on a thread of its own that is locked and never
// unlocked, so the Go runtime ends that thread with fn's goroutine and no other goroutine
// ever runs with the identity; never on the main thread, which the runtime cannot end (it
// would park it for good, still with the identity). fn must not start goroutines that
// touch files: they would run on other threads, as the caller. Cost: one thread's creation
// per call (tens of microseconds), paid only for daemons with a user.
//
// Changing a thread's fsuid makes the kernel mark the whole process not dumpable, which
// among other things hides its /proc/PID/fd and environ from a root without
// CAP_SYS_PTRACE (`docker exec` as root, by default); AsUser puts the flag back as it was.
func AsUser(cred *Credential, fn func() error) error {
	if cred == nil {
		return fn()
	}
	asUserMu.Lock()
	defer asUserMu.Unlock()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			done <- runAs(cred, fn) // the thread ends with this goroutine
			return
		}
		// The main thread: keep it locked to this goroutine, so the one below cannot run on
		// it, and give it back untouched afterwards.
		defer runtime.UnlockOSThread()
		offMain := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked
			offMain <- runAs(cred, fn)
		}()
		done <- <-offMain
	}()
	return <-done
}

// runAs gives the calling thread cred's identity, runs fn, and puts the thread's identity
// (belt and braces: the thread ends anyway) and the process's dumpable flag back.
func runAs(cred *Credential, fn func() error) (err error) {
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("read the dumpable flag: %w", err)
	}
	saved, err := unix.Getgroups()
	if err != nil {
		return fmt.Errorf("read the supervisor's groups: %w", err)
	}
	savedUID, _ := unix.SetfsuidRetUid(-1)
	savedGID, _ := unix.SetfsgidRetGid(-1)
	defer func() {
		err = errors.Join(err, become(saved, savedGID, savedUID, "the supervisor's"))
		if e := unix.Prctl(unix.PR_SET_DUMPABLE, uintptr(dumpable), 0, 0, 0); e != nil {
			err = errors.Join(err, fmt.Errorf("restore the dumpable flag to %d: %w", dumpable, e))
		}
	}()
	groups := make([]int, len(cred.Groups))
	for i, g := range cred.Groups {
		groups[i] = int(g)
	}
	if err := become(groups, int(cred.GID), int(cred.UID), "user "+cred.Name+"'s"); err != nil {
		return err
	}
	return fn()
}

// become sets the calling thread's groups, fsgid and fsuid and checks each: setfsuid and
// setfsgid report failure only by not changing anything. (An fsuid other than 0 clears only
// the file capabilities, not CAP_SETUID or CAP_SETGID, so the way back works too.)
func become(groups []int, gid, uid int, whose string) error {
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("take %s groups: %w", whose, err)
	}
	_, _ = unix.SetfsgidRetGid(gid)
	if got, _ := unix.SetfsgidRetGid(-1); got != gid {
		return fmt.Errorf("take %s gid %d: the filesystem gid stayed %d (CAP_SETGID missing?)", whose, gid, got)
	}
	_, _ = unix.SetfsuidRetUid(uid)
	if got, _ := unix.SetfsuidRetUid(-1); got != uid {
		return fmt.Errorf("take %s uid %d: the filesystem uid stayed %d (CAP_SETUID missing?)", whose, uid, got)
	}
	return nil
}
