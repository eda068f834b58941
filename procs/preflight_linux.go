package procs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Preflight finds out, without starting anything, what Spawn would learn only by failing:
// that spec's program resolves (in the daemon's PATH, as Spawn looks) to a file the
// daemon's user may execute, and that its dir is a directory that user may enter. The
// kernel decides both (faccessat with the user's filesystem identity, through AsUser), so
// every directory on the way counts. It returns the program's path; its errors are
// *SpawnError with the status the daemon would die with (127, 126).
//
// It cannot see what only the exec finds: a script's interpreter, a binary for another
// architecture, a mount with noexec.
func Preflight(spec Spec) (string, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return "", &SpawnError{Err: errors.New("empty command"), Status: 127}
	}
	spec.Credential = spec.Credential.switchTo()
	fail := func(err error) (string, error) {
		return "", &SpawnError{Argv0: spec.Argv[0], Err: blameSwitch(spec.Credential, err), Status: statusFor(err)}
	}
	path, err := lookPath(spec.Argv[0], spec.Env, spec.Dir, spec.Credential)
	if err != nil {
		return fail(err)
	}
	err = AsUser(spec.Credential, func() error {
		if spec.Dir != "" {
			info, err := os.Stat(spec.Dir)
			switch {
			case err != nil:
				return fmt.Errorf("dir %s: %w", spec.Dir, err)
			case !info.IsDir():
				return fmt.Errorf("dir %s: %w", spec.Dir, syscall.ENOTDIR)
			}
			if err := mayExecuteAs(spec.Dir, info, spec.Credential); err != nil {
				return fmt.Errorf("dir %s: the daemon's user may not enter it: %w", spec.Dir, err)
			}
		}
		program := path
		if !filepath.IsAbs(program) && spec.Dir != "" {
			program = filepath.Join(spec.Dir, program) // where the daemon, in its dir, finds it
		}
		info, err := os.Stat(program)
		switch {
		case err != nil:
			return err // a *PathError: it names the program
		case info.IsDir():
			return fmt.Errorf("%s is a directory: %w", program, syscall.EACCES)
		}
		if err := mayExecuteAs(program, info, spec.Credential); err != nil {
			return fmt.Errorf("%s: the daemon's user may not execute it: %w", program, err)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return path, nil
}

// mayExecuteAs asks the kernel whether the thread's filesystem identity (AsUser's) may
// execute path, or search it if it is a directory: faccessat2 with AT_EACCESS, which
// counts the fsuid, the groups and the mount (noexec). Not x/sys's Faccessat: where
// faccessat2 is missing (Linux before 5.8) or refused (an older seccomp profile), that
// emulates it with the effective uid, which AsUser leaves at 0, and would pass anything
// with an x bit. Here the fallback is the mode bits for cred; the stat that gave info,
// made as the user, has walked the directories on the way already.
func mayExecuteAs(path string, info os.FileInfo, cred *Credential) error {
	err := faccessat2(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS)
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return err
	}
	if mayExecute(info, cred) {
		return nil
	}
	return unix.EACCES
}

// faccessat2 is unix.Faccessat2; a test stands in for a kernel without it.
var faccessat2 = unix.Faccessat2
