// Package procs does the effects of sidecar-init: fork/exec into a new process group,
// signalling a group, the wait4 reap loop, the subreaper prctl, wait-status decoding, and
// file work with a daemon's identity (AsUser). Its one piece of state is AsUser's worker
// thread; the supervisor's event loop owns every pid it hands back.
package procs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec is what to start: argv (argv[0] is a path, or a name looked up in the PATH of Env),
// the whole environment, an optional working directory and an optional user.
type Spec struct {
	Argv []string
	Env  []string
	Dir  string
	// Credential, when set, is who the daemon runs as: uid, gid and exactly its Groups
	// (root's supplementary groups are dropped). Spawn leaves Env alone: the caller adds
	// HOME and USER (Credential.Env). The switch happens in the child before chdir and exec,
	// so Dir and the program must be reachable by that user (else EACCES: status 126).
	Credential *Credential
	// Stdout and Stderr, when set, replace the supervisor's own fds 1 and 2 (labelled logs:
	// the write ends of pipes the supervisor reads).
	Stdout, Stderr *os.File
}

// SpawnError is a failed start. Status is what a shell would report for it: 127 when the
// program is missing, 126 when it is there but cannot be executed.
type SpawnError struct {
	Argv0  string
	Err    error
	Status int
}

func (e *SpawnError) Error() string {
	return fmt.Sprintf("exec %s: %v (status %d)", e.Argv0, e.Err, e.Status)
}

func (e *SpawnError) Unwrap() error { return e.Err }

// OutOfResources says the start failed for lack of file descriptors, memory or processes,
// not because of the command: the same command may well start later.
func (e *SpawnError) OutOfResources() bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.ENOMEM} {
		if errors.Is(e.Err, errno) {
			return true
		}
	}
	return false
}

// Spawn forks and execs spec in a new process group whose id is the child's pid, with stdin
// from stdin (normally /dev/null: daemons must not fight over a terminal, and a background
// group reading one would stop on SIGTTIN) and stdout/stderr shared with the supervisor.
//
// It never waits: the caller's reap loop owns the pid. syscall.ForkExec reports exec
// failures synchronously through a pipe and reaps the failed child itself, so a
// *SpawnError leaves no zombie behind.
func Spawn(spec Spec, stdin *os.File) (pid int, err error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return 0, &SpawnError{Err: errors.New("empty command"), Status: 127}
	}
	spec.Credential = spec.Credential.switchTo()
	path, err := lookPath(spec.Argv[0], spec.Env, spec.Dir, spec.Credential)
	if err != nil {
		return 0, &SpawnError{Argv0: spec.Argv[0], Err: blameSwitch(spec.Credential, err), Status: statusFor(err)}
	}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{stdin.Fd(), fdOr(spec.Stdout, 1), fdOr(spec.Stderr, 2)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	if c := spec.Credential; c != nil {
		// Go's child calls setgroups, setgid, setuid in that order (syscall/exec_linux.go):
		// groups and gid while still root, the uid last. Empty Groups is setgroups(0).
		attr.Sys.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}
		// The child is a vfork (CLONE_VM) until its exec: its setuid marks the memory it
		// shares with the supervisor not dumpable, and with it the supervisor, whose
		// /proc/PID/fd and environ a root without CAP_SYS_PTRACE (`docker exec`) could then
		// no longer read. The mark was meant for the child, which has its own memory once it
		// has exec'd; the supervisor's flag is put back.
		if dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err == nil {
			defer func() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, uintptr(dumpable), 0, 0, 0) }()
		}
	}
	unblockAll := startWithNoSignalBlocked()
	pid, err = syscall.ForkExec(path, spec.Argv, attr)
	unblockAll()
	if err != nil {
		return 0, &SpawnError{Argv0: spec.Argv[0], Err: blameSetup(spec.Dir, spec.Credential, err), Status: statusFor(err)}
	}
	return pid, nil
}

// startWithNoSignalBlocked makes the next fork on this goroutine's thread give its child no
// blocked signal, and returns what puts the thread back. The runtime gives a child its
// forking thread's mask, and a Go thread keeps the mask the process started with, but for
// the signals the runtime needs (SIGTERM, SIGINT, SIGHUP, SIGQUIT among them). A daemon
// started under a starter that blocked, say, SIGUSR2 or SIGTSTP would never get one
// forwarded to it. A daemon starts with none blocked, as under dumb-init. The thread may
// take any signal meanwhile: the runtime has a handler for each.
func startWithNoSignalBlocked() (restore func()) {
	runtime.LockOSThread()
	var none, old unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &none, &old); err != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	return func() {
		_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
		runtime.UnlockOSThread()
	}
}

// blameSetup names the user switch or the working directory when it, not the program, made
// the start fail: the child's setuid fails with EPERM and its chdir with the same ENOENT,
// ENOTDIR or EACCES an exec would, and "exec prog: no such file or directory" would send
// the operator looking for the program. Only looked at after a failure: a start that works
// pays nothing.
func blameSetup(dir string, cred *Credential, err error) error {
	if errors.Is(err, syscall.EPERM) && cred != nil {
		return blameSwitch(cred, err)
	}
	pathErr := errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EACCES)
	if dir == "" || !pathErr {
		return err
	}
	switch info, serr := os.Stat(dir); {
	case serr != nil:
		return fmt.Errorf("dir %s: %w", dir, serr)
	case !info.IsDir():
		return fmt.Errorf("dir %s: %w", dir, syscall.ENOTDIR)
	}
	// Stat ran as root: a daemon running as another user may still be unable to get there
	// (root enters any directory, whatever its mode, so for root this says nothing).
	if !errors.Is(err, syscall.EACCES) || cred == nil || cred.UID == 0 {
		return err
	}
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if info, serr := os.Stat(p); serr == nil && !mayExecute(info, cred) {
			return fmt.Errorf("dir %s: the daemon's user may not enter %s: %w", dir, p, syscall.EACCES)
		}
		if p == filepath.Dir(p) {
			return err
		}
	}
}

// blameSwitch names the user switch when err is its EPERM: the child's setgroups/setgid/
// setuid, or AsUser's setgroups/setfsgid/setfsuid on its worker thread (a bare program
// name is looked up as the daemon's user before anything is forked). A non-root
// sidecar-init (docker run --user, runAsUser), or a root one whose container dropped the
// capabilities (capabilities.drop: [ALL], --cap-drop ALL), may run daemons only as its own
// user. Any other err is returned as it is.
func blameSwitch(cred *Credential, err error) error {
	if cred == nil || !errors.Is(err, syscall.EPERM) {
		return err
	}
	return fmt.Errorf("run as user %s (uid %d, gid %d): switching users takes root with CAP_SETUID and CAP_SETGID, and sidecar-init runs as uid %d%s: remove the daemon's user, or give sidecar-init root and those capabilities: %w",
		cred.Name, cred.UID, cred.GID, os.Geteuid(), capsNote(), err)
}

// capsNote says when this thread lacks CAP_SETUID or CAP_SETGID (a container that dropped
// them), for the error of a user switch that failed.
func capsNote() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return ""
	}
	for _, c := range []int{unix.CAP_SETUID, unix.CAP_SETGID} {
		if data[c/32].Effective&(1<<(c%32)) == 0 {
			return " without them"
		}
	}
	return ""
}

// statusFor maps an exec error to a shell's status: 127 "command not found" for a missing
// file or directory, 126 "found but not executable" for the rest (EACCES, ENOEXEC, ...).
func statusFor(err error) int {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return 127
	}
	return 126
}

// DefaultPath is where a bare program name is looked up when the daemon's environment has
// no PATH (Debian's and systemd's default). A daemon whose pass_env passes no PATH is given
// this one, so that what it runs itself is found where its command was.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves a bare program name in the PATH of the daemon's own environment (not
// the supervisor's), as execvp in the daemon would: a relative PATH entry ("" is ".") is
// taken from the daemon's dir, where it runs, and a file the daemon may not execute (its
// mode, a directory on the way its user may not search, a noexec mount) is passed over for
// the next entry. Each candidate is looked at with the daemon's filesystem identity
// (AsUser), as the kernel will look at it for the daemon's exec. The result is absolute
// when it came from a relative entry, because the child execs it after its chdir. Names
// with a slash are used as they are.
func lookPath(name string, env []string, workDir string, cred *Credential) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathList := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathList = v
			break // the first, as getenv in the daemon reads it (glibc, musl, Go)
		}
	}
	// strings.Split, not filepath.SplitList: a PATH set but empty is one empty entry, the
	// current directory, for execvp (POSIX), where SplitList gives none.
	found := ""
	err := AsUser(cred, func() error {
		firstErr := error(syscall.ENOENT)
		for _, dir := range strings.Split(pathList, ":") {
			if dir == "" {
				dir = "."
			}
			if !filepath.IsAbs(dir) && workDir != "" {
				dir = filepath.Join(workDir, dir)
			}
			candidate := filepath.Join(dir, name)
			info, err := os.Stat(candidate)
			if err != nil || info.IsDir() {
				if errors.Is(err, syscall.EACCES) {
					firstErr = syscall.EACCES // a directory the daemon may not search, as execvp
				}
				continue
			}
			if err := mayExecuteAs(candidate, info, cred); err != nil {
				// Remember it, as execvp does, so a non-executable match reports EACCES (126)
				// rather than "not found" (127) when nothing better turns up.
				firstErr = syscall.EACCES
				continue
			}
			found = candidate
			return nil
		}
		return firstErr
	})
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(found) {
		// Relative to the supervisor's working directory, which the child has until its
		// chdir to workDir: after it, the same relative path would name another file.
		if abs, err := filepath.Abs(found); err == nil {
			found = abs
		}
	}
	return found, nil
}

// mayExecute says the file's mode lets the daemon's user execute it: root (no credential,
// or uid 0) needs any x bit, another user the bit of its class (owner, group, other), as the
// kernel decides. (Directories on the way are not checked: their x bits decide too.)
func mayExecute(info os.FileInfo, cred *Credential) bool {
	mode := info.Mode().Perm()
	st, ok := info.Sys().(*syscall.Stat_t)
	if cred == nil || cred.UID == 0 || !ok {
		return mode&0o111 != 0
	}
	switch {
	case st.Uid == cred.UID:
		return mode&0o100 != 0
	case st.Gid == cred.GID || slices.Contains(cred.Groups, st.Gid):
		return mode&0o010 != 0
	}
	return mode&0o001 != 0
}

// fdOr is f's descriptor, or fallback when f is nil.
func fdOr(f *os.File, fallback uintptr) uintptr {
	if f == nil {
		return fallback
	}
	return f.Fd()
}
