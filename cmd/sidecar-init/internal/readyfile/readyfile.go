// Package readyfile writes and removes sidecar-init's ready file as root without following
// anything a daemon may have put at or on its path. A daemon whose user can write to the
// file's directory could otherwise leave a symlink there (root would truncate and write
// the file it points to), a FIFO (root's open would block, and with it the event loop) or
// a hard link to another file (root would overwrite that file).
//
// So the directory is opened once, when the supervisor starts (before any daemon runs),
// and every later operation is relative to that descriptor: a directory a daemon swaps in
// at the same path later is never entered. The file is written as a new file under a
// temporary name and renamed over the path, which replaces whatever is there (file,
// symlink, FIFO) without opening or following it; readers see the old content or the
// new, never a partial write. Removal is unlinkat, which removes a symlink itself.
package readyfile

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrIsDirectory says the ready file's path is a directory: never sidecar-init's to
// remove or replace (a mistyped path must not delete one).
var ErrIsDirectory = errors.New("the ready file's path is a directory; leaving it")

// File is the ready file at one path. The zero of *File (nil) is "no ready file".
type File struct {
	path, name string
	dir        int // an O_PATH descriptor of the directory, or -1 until it could be opened
}

// Open prepares the ready file at path ("" gives nil: no ready file). It opens the
// directory now if it exists; if not, each later Write or Remove tries again (the README
// asks for a directory that exists before sidecar-init starts).
func Open(path string) *File {
	if path == "" {
		return nil
	}
	f := &File{path: path, name: filepath.Base(path), dir: -1}
	_ = f.openDir()
	return f
}

// Path is the ready file's path, for logs.
func (f *File) Path() string {
	if f == nil {
		return ""
	}
	return f.path
}

func (f *File) openDir() error {
	if f.dir >= 0 {
		return nil
	}
	dir := filepath.Dir(f.path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the ready file's directory %s: %w", dir, err)
	}
	f.dir = fd
	return nil
}

// tmpName is where Write puts the content before the rename: in the same directory (a
// rename does not cross file systems), hidden, and named after the file.
func (f *File) tmpName() string { return "." + f.name + ".sidecar-init-tmp" }

// Write makes the ready file hold content, replacing whatever is at its path.
func (f *File) Write(content []byte) error {
	if f == nil {
		return nil
	}
	if err := f.openDir(); err != nil {
		return err
	}
	tmp := f.tmpName()
	// A temporary file left by a crash, or put there: removed, never opened.
	_ = unix.Unlinkat(f.dir, tmp, 0)
	// O_EXCL: a file this call creates, so no symlink, FIFO or hard link can stand in.
	fd, err := unix.Openat(f.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s in %s: %w", tmp, filepath.Dir(f.path), err)
	}
	_, werr := unix.Write(fd, content)
	cerr := unix.Close(fd)
	if err := errors.Join(werr, cerr); err != nil {
		_ = unix.Unlinkat(f.dir, tmp, 0)
		return fmt.Errorf("write %s in %s: %w", tmp, filepath.Dir(f.path), err)
	}
	if err := unix.Renameat(f.dir, tmp, f.dir, f.name); err != nil {
		_ = unix.Unlinkat(f.dir, tmp, 0)
		if errors.Is(err, unix.EISDIR) {
			return ErrIsDirectory
		}
		return fmt.Errorf("rename %s to %s: %w", tmp, f.path, err)
	}
	return nil
}

// Remove removes the ready file; one that is not there is no error.
func (f *File) Remove() error {
	if f == nil {
		return nil
	}
	if err := f.openDir(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // no directory, no file
		}
		return err
	}
	switch err := unix.Unlinkat(f.dir, f.name, 0); {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EISDIR):
		return ErrIsDirectory
	default:
		return fmt.Errorf("remove %s: %w", f.path, err)
	}
}

// Close lets the directory go.
func (f *File) Close() {
	if f != nil && f.dir >= 0 {
		_ = unix.Close(f.dir)
		f.dir = -1
	}
}
