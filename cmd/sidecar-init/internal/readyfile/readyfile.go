// Package readyfile writes and removes sidecar-init's ready file as root without following
// anything a daemon may have put at or on its path. A daemon whose user can write to a
// directory on that path could otherwise leave a symlink there (root would truncate and
// write, or remove, the file it points to), a FIFO (root's open would block, and with it
// the event loop) or a hard link to another file (root would overwrite that file). The
// directory may outlive a run (an emptyDir, a shared volume, a container restarted in
// place), so what a daemon of an earlier run left counts too.
//
// So each operation walks the directory's path from / one component at a time, and
// follows a symlink only when it is root's (or sidecar-init's own user's) in a directory
// only they may change: the image's (/var/run to /run), never one a daemon made, then or
// in an earlier run, nor one it could have moved there (sticky /tmp included); a ".." in
// a target is taken only out of such a directory too. The walk is fresh each time (it
// runs only when readiness changes), so a directory removed and made again, renamed away
// and replaced, or mounted over, is the one at the path now. The file is written as a new
// file under a temporary name and renamed over the path, which replaces whatever is there
// (file, symlink, FIFO) without opening or following it; readers see the old content or
// the new, never a partial write. Removal is unlinkat, which removes a symlink itself.
package readyfile

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrIsDirectory says the ready file's path is a directory: never sidecar-init's to
// remove or replace (a mistyped path must not delete one).
var ErrIsDirectory = errors.New("the ready file's path is a directory; leaving it")

// File is the ready file at one path. The zero of *File (nil) is "no ready file".
type File struct {
	path, name string
	dirPath    string // absolute and clean
}

// Open prepares the ready file at path ("" gives nil: no ready file). Nothing is opened
// until a Write or Remove.
func Open(path string) *File {
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	return &File{path: path, name: filepath.Base(abs), dirPath: filepath.Dir(abs)}
}

// Path is the ready file's path, for logs.
func (f *File) Path() string {
	if f == nil {
		return ""
	}
	return f.path
}

// maxSymlinks bounds the symlinks one walk follows, as the kernel's own limit (40) does.
const maxSymlinks = 40

// openDir walks dirPath from / and returns an O_PATH descriptor of the directory there.
func (f *File) openDir() (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	fail := func(err error) (int, error) {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("open the ready file's directory %s: %w", f.dirPath, err)
	}
	todo, followed := components(f.dirPath), 0
	// movable: the walk came down through a directory others may change, so the directory
	// it is in (and everything under it) may have been renamed there by them, a root
	// directory holding a root symlink included (a rename within one parent needs no write
	// permission on the directory moved). No symlink is trusted below such a point; an
	// absolute target starts again from /. A ".." out of a directory only ours keeps it: that
	// directory cannot have been moved, so its parent is the one the walk came from.
	movable := false
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		var dir unix.Stat_t
		if err := unix.Fstat(fd, &dir); err != nil {
			return fail(err)
		}
		if name == ".." && !onlyOurs(dir) {
			// ".." is the directory's parent now: one that others may move (a daemon's
			// own, renamed elsewhere between two steps of the walk) has a parent of
			// their choosing.
			return fail(fmt.Errorf(".. out of a directory others may change (uid %d, mode %#o): not followed", dir.Uid, dir.Mode&0o7777))
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			_ = unix.Close(next)
			return fail(err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			_ = unix.Close(fd)
			fd = next
			if name != ".." && !fixedIn(st, dir) {
				movable = true
			}
			continue
		case unix.S_IFLNK:
		default:
			_ = unix.Close(next)
			return fail(fmt.Errorf("%s: %w", name, unix.ENOTDIR))
		}
		followed++
		if movable || !trusted(st, dir) || followed > maxSymlinks {
			_ = unix.Close(next)
			switch {
			case followed > maxSymlinks:
				return fail(fmt.Errorf("%s: %w", name, unix.ELOOP))
			case !trusted(st, dir):
				return fail(fmt.Errorf("%s is a symlink of uid %d, or in a directory others may change: not followed (a daemon could have put it there)", name, st.Uid))
			}
			return fail(fmt.Errorf("%s is a symlink below a directory others may change: not followed (a daemon could have moved its directory there)", name))
		}
		target, err := readlink(next)
		_ = unix.Close(next)
		if err != nil {
			return fail(err)
		}
		if filepath.IsAbs(target) {
			_ = unix.Close(fd)
			if fd, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return -1, fmt.Errorf("open /: %w", err)
			}
			movable = false
		}
		todo = append(components(target), todo...)
	}
	return fd, nil
}

// components splits a path into the names a walk opens; "." goes, ".." stays (openat
// takes it to the parent of the directory the walk is in).
func components(path string) []string {
	var names []string
	for _, name := range strings.Split(path, "/") {
		if name != "" && name != "." {
			names = append(names, name)
		}
	}
	return names
}

// trusted says a symlink may be followed: root's or sidecar-init's own user's, in a
// directory only they may change. Not in one others may write to, sticky or not: the
// sticky bit keeps others from removing or renaming an entry, not from adding one, and a
// daemon can rename a root symlink it can reach (or hard-link one, where
// protected_hardlinks is off) into /tmp.
func trusted(link, dir unix.Stat_t) bool {
	return ours(link.Uid) && onlyOurs(dir)
}

// onlyOurs says only root or sidecar-init's user may change the directory: theirs, and
// not writable by group or others.
func onlyOurs(dir unix.Stat_t) bool {
	return ours(dir.Uid) && dir.Mode&0o022 == 0
}

// fixedIn says only root or sidecar-init's user may have put the entry st in dir, under its
// name: dir is only theirs, or it is theirs and sticky and st is theirs too (the sticky bit
// keeps others from renaming an entry they do not own, and a directory moves to another
// parent only with write permission on it).
func fixedIn(st, dir unix.Stat_t) bool {
	return onlyOurs(dir) || (ours(dir.Uid) && dir.Mode&unix.S_ISVTX != 0 && ours(st.Uid))
}

func ours(uid uint32) bool { return uid == 0 || uid == uint32(unix.Geteuid()) }

// readlink reads the target of the symlink open (O_PATH|O_NOFOLLOW) at fd.
func readlink(fd int) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", fmt.Errorf("readlink: %w", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// tmpName is where Write puts the content before the rename: in the same directory (a
// rename does not cross file systems), hidden, and named after the file: as much of its
// name as fits in a name (255 bytes), or a ready file named near that limit, valid itself,
// would never be written (ENAMETOOLONG at every try, while `check` finds nothing wrong).
func (f *File) tmpName() string {
	const suffix, nameMax = ".sidecar-init-tmp", 255
	name := f.name
	if n := nameMax - len(suffix) - 1; len(name) > n {
		name = name[:n]
	}
	return "." + name + suffix
}

// Write makes the ready file hold content, replacing whatever is at its path.
func (f *File) Write(content []byte) error {
	if f == nil {
		return nil
	}
	dir, err := f.openDir()
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(dir) }()
	tmp := f.tmpName()
	// A temporary file left by a crash, or put there: removed, never opened.
	_ = unix.Unlinkat(dir, tmp, 0)
	// O_EXCL: a file this call creates, so no symlink, FIFO or hard link can stand in.
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s in %s: %w", tmp, f.dirPath, err)
	}
	_, werr := unix.Write(fd, content)
	cerr := unix.Close(fd)
	if err := errors.Join(werr, cerr); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return fmt.Errorf("write %s in %s: %w", tmp, f.dirPath, err)
	}
	if err := unix.Renameat(dir, tmp, dir, f.name); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		if errors.Is(err, unix.EISDIR) {
			return ErrIsDirectory
		}
		return fmt.Errorf("rename %s to %s: %w", tmp, f.path, err)
	}
	return nil
}

// Remove removes the ready file; one that is not there, or whose directory is not, is no
// error.
func (f *File) Remove() error {
	if f == nil {
		return nil
	}
	dir, err := f.openDir()
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(dir) }()
	switch err := unix.Unlinkat(dir, f.name, 0); {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EISDIR):
		return ErrIsDirectory
	case errors.Is(err, unix.EROFS) && !f.exists(dir):
		// A read-only mount refuses the unlink before it looks: nothing there to remove.
		return nil
	case errors.Is(err, unix.EROFS) && f.isDir(dir):
		return ErrIsDirectory // what it is, read-only or not
	default:
		return fmt.Errorf("remove %s: %w", f.path, err)
	}
}

// CheckDir walks to the directory as Write and Remove do, and says why it could not
// (`sidecar-init check`): missing, or reached only through a symlink it will not follow;
// or the path itself is a directory, which no write can replace (ErrIsDirectory).
func (f *File) CheckDir() error {
	if f == nil {
		return nil
	}
	dir, err := f.openDir()
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(dir) }() // a directory opened to look: nothing to lose
	if f.isDir(dir) {
		return ErrIsDirectory
	}
	// The writes' temporary file and rename need the directory writable: a read-only mount
	// says EROFS here, even to root.
	if err := unix.Faccessat(dir, ".", unix.W_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("the ready file's directory %s is not writable: %w", filepath.Dir(f.path), err)
	}
	return nil
}

// isDir says a directory is at the file's name in dir.
func (f *File) isDir(dir int) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, f.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// exists says something is at the file's name in dir (a symlink too, not followed).
func (f *File) exists(dir int) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, f.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}
