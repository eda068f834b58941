package readyfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// What a daemon able to write to the ready file's directory could leave at its path is
// replaced, never followed, opened or written through.
func TestWriteReplacesWhatIsAtThePath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path, victim string)
	}{
		{"nothing", func(*testing.T, string, string) {}},
		{"an earlier run's file", func(t *testing.T, path, _ string) {
			if err := os.WriteFile(path, []byte("earlier\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symlink to another file", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"a hard link to another file", func(t *testing.T, path, victim string) {
			if err := os.Link(victim, path); err != nil {
				t.Fatal(err)
			}
		}},
		// Opened for writing, a FIFO without a reader blocks: the whole event loop with it.
		{"a FIFO", func(t *testing.T, path, _ string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"a stale temporary file that is a symlink", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, filepath.Join(filepath.Dir(path), ".ready.sidecar-init-tmp")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, victim := filepath.Join(dir, "ready"), filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, path, victim)
			f := Open(path)
			if err := f.Write([]byte("ready\n")); err != nil {
				t.Fatal(err)
			}
			if got := read(t, victim); got != "precious\n" {
				t.Errorf("the other file holds %q, want it untouched", got)
			}
			info, err := os.Lstat(path)
			if err != nil || !info.Mode().IsRegular() || read(t, path) != "ready\n" {
				t.Errorf("the ready file: %v, %v; want a regular file holding ready", info, err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 2 {
				t.Errorf("the directory holds %d entries, want the ready file and the other: %v", len(entries), entries)
			}
			if err := f.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Remove: %v", err)
			}
		})
	}
}

// Remove takes a symlink away, not what it points to.
func TestRemoveDoesNotFollowASymlink(t *testing.T) {
	dir := t.TempDir()
	path, victim := filepath.Join(dir, "ready"), filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if err := Open(path).Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlink: %v, want it gone", err)
	}
	if got := read(t, victim); got != "precious\n" {
		t.Errorf("the other file holds %q", got)
	}
}

func TestADirectoryAtThePathIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f := Open(path)
	if err := f.Write([]byte("x")); !errors.Is(err, ErrIsDirectory) {
		t.Errorf("Write = %v, want ErrIsDirectory", err)
	}
	if err := f.Remove(); !errors.Is(err, ErrIsDirectory) {
		t.Errorf("Remove = %v, want ErrIsDirectory", err)
	}
	if info, err := os.Stat(path); err != nil || !info.IsDir() {
		t.Errorf("the directory: %v, %v", info, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

// A directory missing at Open is looked for again at each use; Remove of a file whose
// directory does not exist is no error.
func TestAMissingDirectoryIsLookedForAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	f := Open(filepath.Join(dir, "ready"))
	if err := f.Remove(); err != nil {
		t.Errorf("Remove with no directory: %v", err)
	}
	if err := f.Write([]byte("x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write with no directory = %v, want ErrNotExist", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Write([]byte("ready\n")); err != nil || read(t, filepath.Join(dir, "ready")) != "ready\n" {
		t.Errorf("Write once the directory exists: %v", err)
	}
}

func TestNoReadyFile(t *testing.T) {
	f := Open("")
	if f != nil {
		t.Fatalf("Open(\"\") = %v, want nil", f)
	}
	if err := f.Write([]byte("x")); err != nil {
		t.Error(err)
	}
	if err := f.Remove(); err != nil {
		t.Error(err)
	}
}

// needsRoot skips a test that must make files of another user.
func needsRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test makes symlinks and directories of another user")
	}
}

// secretIn makes base/secret, root's alone, holding a file named ready: what an attack
// through the ready file's path would reach.
func secretIn(t *testing.T, base string) (secret, victim string) {
	t.Helper()
	secret = filepath.Join(base, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(secret, "ready")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, victim
}

// wantRefused checks that neither Remove nor Write of f got through to victim.
func wantRefused(t *testing.T, f *File, victim string) {
	t.Helper()
	if err := f.Remove(); err == nil {
		t.Errorf("%s: Remove succeeded", f.Path())
	}
	if err := f.Write([]byte("x")); err == nil {
		t.Errorf("%s: Write succeeded", f.Path())
	}
	if got := read(t, victim); got != "precious\n" {
		t.Fatalf("%s: the file in the root-only directory holds %q", f.Path(), got)
	}
}

// A symlink a daemon put on the path (its own, or root's it could have moved: in a
// directory it may write to) is not followed, whether made before Open (an earlier run,
// a volume that outlives the container) or after.
func TestASymlinkADaemonCouldHavePutIsNotFollowed(t *testing.T) {
	needsRoot(t)
	for _, tc := range []struct {
		name       string
		linkOwner  int
		beforeOpen bool
	}{
		{"the daemon's, made before Open", 65534, true},
		{"the daemon's, made after Open", 65534, false},
		{"root's, in the daemon's directory", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			secret, victim := secretIn(t, base)
			shared := filepath.Join(base, "shared")
			if err := os.Mkdir(shared, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(shared, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			plant := func() {
				link := filepath.Join(shared, "app")
				if err := os.Symlink(secret, link); err != nil {
					t.Fatal(err)
				}
				if err := os.Lchown(link, tc.linkOwner, tc.linkOwner); err != nil {
					t.Fatal(err)
				}
			}
			if tc.beforeOpen {
				plant()
			}
			f := Open(filepath.Join(shared, "app", "ready"))
			if !tc.beforeOpen {
				plant()
			}
			wantRefused(t, f, victim)
		})
	}
}

// Root's symlinks in root's directories are the image's (/var/run to /run): followed,
// one dangling at Open too, once its target exists (/etc/app to /run/app, made later).
func TestTheImagesSymlinksAreFollowed(t *testing.T) {
	needsRoot(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("run", filepath.Join(base, "varrun")); err != nil { // relative, as Debian's
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(run, "app"), filepath.Join(base, "app")); err != nil {
		t.Fatal(err)
	}
	viaVarRun := Open(filepath.Join(base, "varrun", "ready"))
	if err := viaVarRun.Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(run, "ready")); got != "ready\n" {
		t.Errorf("through varrun: %q", got)
	}
	dangling := Open(filepath.Join(base, "app", "ready"))
	if err := dangling.Write([]byte("x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write before the target exists = %v, want ErrNotExist", err)
	}
	if err := os.Mkdir(filepath.Join(run, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := dangling.Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(run, "app", "ready")); got != "ready\n" {
		t.Errorf("through the once dangling symlink: %q", got)
	}
}

// Root's symlink in a directory others may write to is not followed, sticky or not: a
// daemon may have renamed it there from a directory of its own (sticky keeps others from
// removing an entry, not from adding one). Nor is a ".." taken out of a directory others
// may change: moved elsewhere between two steps of the walk, its parent is theirs to pick.
func TestNoSymlinkOrDotDotWhereOthersMayWrite(t *testing.T) {
	needsRoot(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	secret, victim := secretIn(t, base)
	sticky := filepath.Join(base, "tmp")
	if err := os.Mkdir(sticky, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(sticky, "app")); err != nil { // root's
		t.Fatal(err)
	}
	sub := filepath.Join(base, "pub", "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{sub, filepath.Dir(sub)} {
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("pub/sub/../../secret", filepath.Join(base, "up")); err != nil { // root's, in root's 0755
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(sticky, "app", "ready"), filepath.Join(base, "up", "ready")} {
		wantRefused(t, Open(path), victim)
	}
}

// Root's symlink in root's directory is not followed once the walk has come down through
// a directory others may change: a daemon that owns a directory on the path (a volume, an
// emptyDir) can rename a root directory of its tree onto the path (a rename within one
// parent needs no write permission on the directory moved), and the root symlink in it
// would take root anywhere. An absolute target starts again from /, and is trusted again.
func TestNoSymlinkBelowADirectoryOthersMayChange(t *testing.T) {
	needsRoot(t)
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	secret, victim := secretIn(t, base)
	shared := filepath.Join(base, "shared") // the daemon's volume
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Root's directory, with root's symlink in it, where the daemon renamed it (root-made
	// content in a volume: a release layout, an image's files copied in).
	moved := filepath.Join(shared, "run")
	if err := os.Mkdir(moved, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(moved, "status")); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, Open(filepath.Join(moved, "status", "ready")), victim)

	// Under root's sticky directory (/tmp), root's own directory cannot have been moved
	// there by others: its root symlinks are still followed.
	sticky := filepath.Join(base, "tmp")
	if err := os.Mkdir(sticky, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	rootsOwn := filepath.Join(sticky, "app")
	run := filepath.Join(base, "run")
	for _, d := range []string{rootsOwn, run} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(run, filepath.Join(rootsOwn, "state")); err != nil {
		t.Fatal(err)
	}
	if err := Open(filepath.Join(rootsOwn, "state", "ready")).Write([]byte("ready\n")); err != nil {
		t.Fatalf("through root's symlink in root's directory under a sticky /tmp: %v", err)
	}
	if got := read(t, filepath.Join(run, "ready")); got != "ready\n" {
		t.Errorf("through root's symlink under a sticky directory: %q", got)
	}
}

// A ready_file whose name is valid (up to 255 bytes) is written, though its temporary
// name, which is longer, would not be a valid name: ENAMETOOLONG at every try, while check
// found nothing wrong.
func TestALongNameIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("r", 255))
	f := Open(path)
	if err := f.CheckDir(); err != nil {
		t.Fatalf("CheckDir: %v", err)
	}
	if err := f.Write([]byte("ready\n")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := read(t, path); got != "ready\n" {
		t.Errorf("the ready file holds %q", got)
	}
}

// The directory at the path is the one used, each time: one removed and made again (a
// start script's rm -rf /run/app; mkdir /run/app) or renamed away and replaced gets the
// ready file in the new one, where a reader looks, and what the old one holds is left.
func TestTheDirectoryAtThePathNowIsUsed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(dir, base string) error
		old    string // where the old directory's file is now, "" when it is gone
	}{
		{"removed and made again", func(dir, _ string) error { return os.RemoveAll(dir) }, ""},
		{"renamed away and replaced", func(dir, base string) error { return os.Rename(dir, filepath.Join(base, "app.old")) }, "app.old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "app")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			f := Open(filepath.Join(dir, "ready"))
			if err := f.Write([]byte("first\n")); err != nil {
				t.Fatal(err)
			}
			if err := tc.remove(dir, base); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := f.Write([]byte("ready\n")); err != nil {
				t.Fatal(err)
			}
			if got := read(t, filepath.Join(dir, "ready")); got != "ready\n" {
				t.Errorf("the ready file at the path holds %q", got)
			}
			if err := f.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "ready")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Remove: %v", err)
			}
			if tc.old != "" {
				if got := read(t, filepath.Join(base, tc.old, "ready")); got != "first\n" {
					t.Errorf("the old directory's file holds %q, want it left", got)
				}
			}
		})
	}
}

// On a read-only mount, unlink fails with EROFS before it looks for the name: with nothing
// there, Remove has nothing to do and says so (a review saw a warning at every removal).
// What is there stays an error.
func TestRemoveOnAReadOnlyMount(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "present"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount here to make a read-only directory (%v): needs root", err)
	}
	defer func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }()
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only here (%v)", err)
	}
	if err := Open(filepath.Join(dir, "absent")).Remove(); err != nil {
		t.Errorf("Remove of nothing on a read-only mount = %v, want nil", err)
	}
	if err := Open(filepath.Join(dir, "present")).Remove(); !errors.Is(err, unix.EROFS) {
		t.Errorf("Remove of a file on a read-only mount = %v, want EROFS", err)
	}
	if err := Open(filepath.Join(dir, "sub")).Remove(); !errors.Is(err, ErrIsDirectory) {
		t.Errorf("Remove of a directory on a read-only mount = %v, want ErrIsDirectory (said once a run)", err)
	}
	// check's look: no write could go there.
	if err := Open(filepath.Join(dir, "ready")).CheckDir(); !errors.Is(err, unix.EROFS) {
		t.Errorf("CheckDir on a read-only mount = %v, want EROFS", err)
	}
}

// A symlink is followed only when both it and its directory are root's alone: a daemon's
// symlink in root's 0755 directory (made while the directory was the daemon's, or in an
// earlier run) is not, nor root's symlink in a directory the daemon's group may write to
// (root:daemon 0775): the group could have moved a root symlink in.
func TestASymlinkIsFollowedOnlyWhenItAndItsDirectoryAreRoots(t *testing.T) {
	needsRoot(t)
	for _, tc := range []struct {
		name      string
		linkOwner int
		dirMode   os.FileMode
	}{
		{"the daemon's, in root's 0755 directory", 65534, 0o755},
		{"root's, in a group-writable directory", 0, 0o775},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			secret, victim := secretIn(t, base)
			dir := filepath.Join(base, "etc")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 0, 65534); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil { // past the umask
				t.Fatal(err)
			}
			link := filepath.Join(dir, "app")
			if err := os.Symlink(secret, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, tc.linkOwner, tc.linkOwner); err != nil {
				t.Fatal(err)
			}
			wantRefused(t, Open(filepath.Join(link, "ready")), victim)
		})
	}
}

// The ready file is for anyone to read (0644): a probe run as another user (an exec probe
// with a non-root user, a sidecar reading a shared volume) looks for it.
func TestTheReadyFileIsWorldReadable(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "ready")
	if err := Open(path).Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o644 {
		t.Errorf("ready file mode %#o, want 0644", got)
	}
}
