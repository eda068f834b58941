// Package readyfile writes and removes sidecar-init's ready file as root without following
// anything a daemon may have put at or on its path. A daemon whose user can write to the
// file's directory could otherwise leave a symlink there (root would truncate and write
// the file it points to), a FIFO (root's open would block, and with it the event loop) or
// a hard link to another file (root would overwrite that file).
//
// So the directory's path is resolved when the supervisor starts, before any daemon runs
// (the symlinks there then, /var/run say, are the image's), and opened from / one
// component at a time, following no symlink: one a daemon puts on the way later makes the
// open fail rather than lead elsewhere. The directory stays open, and every operation is
// relative to it; it is looked up again only when it has been deleted (and perhaps made
// again), or did not exist yet. The file is written as a new file under a temporary name
// and renamed over the path, which replaces whatever is there (file, symlink, FIFO)
// without opening or following it; readers see the old content or the new, never a
// partial write. Removal is unlinkat, which removes a symlink itself.
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
	// dirPath is the directory as resolved at Open: absolute, the symlinks then on its
	// path followed; the part that did not exist yet is kept as written.
	dirPath string
	dir     int // an O_PATH descriptor of the directory, or -1 until it could be opened
}

// Open prepares the ready file at path ("" gives nil: no ready file), resolving and
// opening its directory now if it exists.
func Open(path string) *File {
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	f := &File{path: path, name: filepath.Base(abs), dirPath: resolveNow(filepath.Dir(abs)), dir: -1}
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

// resolveNow follows the symlinks on dir's path as they are now, as far as the path
// exists; the rest is appended as it is.
func resolveNow(dir string) string {
	existing, rest := dir, ""
	for {
		if real, err := filepath.EvalSymlinks(existing); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return dir
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = parent
	}
}

// openDir makes f.dir the directory at dirPath: the one already open unless it has been
// deleted since, else a fresh walk from / that follows no symlink.
func (f *File) openDir() error {
	if f.dir >= 0 {
		var st unix.Stat_t
		if unix.Fstat(f.dir, &st) == nil && st.Nlink > 0 {
			return nil
		}
		f.forgetDir() // deleted (and perhaps made again): look it up anew
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	for _, name := range strings.Split(strings.Trim(f.dirPath, "/"), "/") {
		if name == "" {
			continue
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		_ = unix.Close(fd)
		if errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("open the ready file's directory %s: %s is not a directory, or is a symlink put there since sidecar-init started: %w", f.dirPath, name, err)
		}
		if err != nil {
			return fmt.Errorf("open the ready file's directory %s: %w", f.dirPath, err)
		}
		fd = next
	}
	f.dir = fd
	return nil
}

func (f *File) forgetDir() {
	if f.dir >= 0 {
		_ = unix.Close(f.dir)
		f.dir = -1
	}
}

// tmpName is where Write puts the content before the rename: in the same directory (a
// rename does not cross file systems), hidden, and named after the file.
func (f *File) tmpName() string { return "." + f.name + ".sidecar-init-tmp" }

// Write makes the ready file hold content, replacing whatever is at its path.
func (f *File) Write(content []byte) error {
	if f == nil {
		return nil
	}
	err := f.write(content)
	if errors.Is(err, unix.ENOENT) {
		// The directory went between the look and the write (or its file system does not
		// count links to a deleted directory): once more, from a fresh look.
		f.forgetDir()
		err = f.write(content)
	}
	return err
}

func (f *File) write(content []byte) error {
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
	if f != nil {
		f.forgetDir()
	}
}
