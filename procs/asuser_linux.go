package procs

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// AsUser runs fn with cred's filesystem identity: the kernel checks every path fn touches
// as it would for the daemon (its fsuid, fsgid and exactly its Groups, without the
// capabilities that override file permissions), so a file operation the supervisor does on
// a daemon's behalf, on a path the daemon can influence (a symlink in a directory it owns),
// can do no more than the daemon could itself. A nil cred runs fn as the caller.
//
// Linux keeps credentials per thread, and the raw setfsuid, setfsgid, setgroups and capset
// calls change only the calling one. fn runs on one worker thread kept for AsUser alone: a
// goroutine locked to it for good, started by StartAsUserWorker or the first call, never on
// the main thread. It takes cred's identity, runs fn and takes its own back, checking each
// step; if it cannot get its own back, the worker goroutine ends without unlocking and the
// runtime ends the thread with it, so no other goroutine ever runs with a daemon's
// identity. One thread for the process's life, not one per call: a PID 1 that needed a new
// thread for each daemon start would crash (the runtime cannot go on without a thread it
// asks for) once a daemon has used up the container's pids; and started before any daemon
// (StartAsUserWorker). fn must not start goroutines that touch files: they would run on
// other threads, as the caller; nor call AsUser: it would wait for itself. Calls are one
// at a time. A panic in fn is raised in the caller.
//
// Changing a thread's fsuid makes the kernel mark the whole process not dumpable, which
// hides its /proc/PID/fd and environ from a root without CAP_SYS_PTRACE (`docker exec` as
// root, by default); AsUser puts the flag back as it was.
func AsUser(cred *Credential, fn func() error) error {
	if cred = cred.switchTo(); cred == nil {
		return fn()
	}
	worker.Lock()
	defer worker.Unlock()
	startWorker()
	done := make(chan asUserResult, 1)
	worker.jobs <- asUserJob{cred: cred, fn: fn, done: done}
	r := <-done
	if r.threadGone {
		worker.jobs = nil // the next call starts a new worker
	}
	if r.panicked {
		panic(r.panicValue) // fn's, raised where the caller can see (and recover) it
	}
	return r.err
}

var worker struct {
	sync.Mutex
	jobs chan asUserJob // nil until started, and after a worker had to end
}

// StartAsUserWorker starts AsUser's worker thread now, if it is not running: the supervisor
// calls it before it spawns anything when a daemon has a user. Started at the first call
// instead, the thread it takes out of the runtime's pool could be needed again once a
// daemon has used up the container's pids, and the runtime, refused a new thread, would
// end the process (measured: 9 of 10 runs, with pids.max = 40).
func StartAsUserWorker() {
	worker.Lock()
	defer worker.Unlock()
	startWorker()
}

// startWorker starts the worker and waits until it holds its thread. worker's lock held.
func startWorker() {
	if worker.jobs != nil {
		return
	}
	worker.jobs = make(chan asUserJob)
	locked := make(chan struct{})
	go startAsUserWorker(worker.jobs, locked)
	<-locked
}

type asUserJob struct {
	cred *Credential
	fn   func() error
	done chan<- asUserResult
}

type asUserResult struct {
	err        error
	threadGone bool
	panicked   bool
	panicValue any
}

// startAsUserWorker locks a thread for asUserWorker. The main thread is never that thread:
// the runtime parks a main thread whose locked goroutine ended rather than ending it. So
// if this goroutine finds itself there, it holds the main thread until a second goroutine,
// which cannot run on it meanwhile, has locked a thread of its own, then lets it go.
func startAsUserWorker(jobs <-chan asUserJob, ready chan<- struct{}) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		close(ready)
		asUserWorker(jobs)
		return
	}
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(locked)
		asUserWorker(jobs)
	}()
	<-locked
	runtime.UnlockOSThread()
	close(ready)
}

// asUserWorker serves AsUser calls on its locked thread for the process's life, or until
// the thread could not take its own identity back: it then returns still locked, and the
// runtime ends the thread.
func asUserWorker(jobs <-chan asUserJob) {
	for job := range jobs {
		if !serveAsUser(job) {
			return
		}
	}
}

// serveAsUser runs one call and says whether the thread may serve another. A panic in fn
// goes back to the caller, to be raised there; fn calling runtime.Goexit (t.Fatal in a
// test) ends the worker, and the caller gets an error rather than waiting for ever. Either
// way runAs's restore has run, and the thread is not used again.
func serveAsUser(job asUserJob) (keep bool) {
	answered := false
	defer func() {
		if answered {
			return
		}
		r := recover()
		job.done <- asUserResult{panicked: r != nil, panicValue: r, threadGone: true,
			err: errors.New("AsUser: fn ended its goroutine (runtime.Goexit)")}
		keep = false
	}()
	restored, err := runAs(job.cred, job.fn)
	answered = true
	job.done <- asUserResult{err: err, threadGone: !restored}
	return restored
}

// threadIdentity is what runAs changes on the thread.
type threadIdentity struct {
	fsuid, fsgid int
	groups       []int
	caps         [2]unix.CapUserData
}

func currentIdentity() (threadIdentity, error) {
	var id threadIdentity
	var err error
	if id.groups, err = unix.Getgroups(); err != nil {
		return id, fmt.Errorf("read the supervisor's groups: %w", err)
	}
	id.fsuid, _ = unix.SetfsuidRetUid(-1) // -1 changes nothing and returns the current id
	id.fsgid, _ = unix.SetfsgidRetGid(-1)
	header := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	if err := unix.Capget(&header, &id.caps[0]); err != nil {
		return id, fmt.Errorf("read the supervisor's capabilities: %w", err)
	}
	return id, nil
}

// fileCapabilities override file permissions; the kernel clears them from the effective
// set when the fsuid goes from 0 to another id, but not under SECBIT_NO_SETUID_FIXUP, nor
// for a supervisor that is not root and holds them some other way.
var fileCapabilities = []int{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH,
	unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_LINUX_IMMUTABLE, unix.CAP_MKNOD, unix.CAP_MAC_OVERRIDE}

// runAs gives the calling thread cred's identity, runs fn, and gives the thread back its
// own identity and the process its dumpable flag. restored is false when the thread may
// still hold some of cred's identity.
func runAs(cred *Credential, fn func() error) (restored bool, err error) {
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		return true, fmt.Errorf("read the dumpable flag: %w", err)
	}
	own, err := currentIdentity()
	if err != nil {
		return true, err
	}
	defer func() {
		if rerr := setIdentity(own, "take the supervisor's own identity back"); rerr != nil {
			restored, err = false, errors.Join(err, rerr)
		}
		// PR_SET_DUMPABLE takes 0 or 1 only (EINVAL for 2, which every call would then
		// return). 2, SUID_DUMP_ROOT, comes from the fs.suid_dumpable sysctl at a change of
		// credentials, and the switch back just made one: the kernel has set it again.
		if dumpable != 0 && dumpable != 1 {
			return
		}
		if e := unix.Prctl(unix.PR_SET_DUMPABLE, uintptr(dumpable), 0, 0, 0); e != nil {
			err = errors.Join(err, fmt.Errorf("restore the dumpable flag to %d: %w", dumpable, e))
		}
	}()
	theirs := threadIdentity{fsuid: int(cred.UID), fsgid: int(cred.GID), caps: own.caps}
	for _, g := range cred.Groups {
		theirs.groups = append(theirs.groups, int(g))
	}
	if cred.UID != 0 {
		for _, c := range fileCapabilities {
			theirs.caps[c/32].Effective &^= 1 << (c % 32)
		}
	}
	if err := setIdentity(theirs, "take user "+cred.Name+"'s identity"); err != nil {
		return true, err
	}
	return true, fn()
}

// setIdentity sets what of want differs from the thread's identity now, and checks that
// it took (setfsuid and setfsgid report failure only by not changing anything). The order
// matters only in that it always works back: an fsuid other than 0 clears the file
// capabilities, not CAP_SETUID, CAP_SETGID or CAP_SETPCAP.
func setIdentity(want threadIdentity, what string) error {
	now, err := currentIdentity()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !slices.Equal(now.groups, want.groups) {
		if err := unix.Setgroups(want.groups); err != nil {
			return fmt.Errorf("%s: groups: %w", what, err)
		}
	}
	if now.fsgid != want.fsgid {
		_, _ = unix.SetfsgidRetGid(want.fsgid)
		if got, _ := unix.SetfsgidRetGid(-1); got != want.fsgid {
			return fmt.Errorf("%s: the filesystem gid stayed %d, not %d (CAP_SETGID missing?)", what, got, want.fsgid)
		}
	}
	if now.fsuid != want.fsuid {
		_, _ = unix.SetfsuidRetUid(want.fsuid)
		if got, _ := unix.SetfsuidRetUid(-1); got != want.fsuid {
			return fmt.Errorf("%s: the filesystem uid stayed %d, not %d (CAP_SETUID missing?)", what, got, want.fsuid)
		}
	}
	// Read again: the fsuid change itself moves the file capabilities.
	if now, err = currentIdentity(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if now.caps != want.caps {
		header := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		if err := unix.Capset(&header, &want.caps[0]); err != nil {
			return fmt.Errorf("%s: capabilities: %w", what, err)
		}
	}
	return nil
}
