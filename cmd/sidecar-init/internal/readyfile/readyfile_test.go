package readyfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
			defer f.Close()
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

// The directory is the one that was there at Open: one swapped in later at the same path
// (a symlink to another directory, say) is never written to.
func TestTheDirectoryIsTheOneThereAtOpen(t *testing.T) {
	base := t.TempDir()
	dir, elsewhere := filepath.Join(base, "run"), filepath.Join(base, "elsewhere")
	for _, d := range []string{dir, elsewhere} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "ready"), []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := Open(filepath.Join(dir, "ready"))
	defer f.Close()
	if err := os.Rename(dir, filepath.Join(base, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, dir); err != nil {
		t.Fatal(err)
	}
	if err := f.Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(elsewhere, "ready")); got != "precious\n" {
		t.Errorf("the swapped-in directory's file holds %q, want it untouched", got)
	}
	if got := read(t, filepath.Join(base, "moved", "ready")); got != "ready\n" {
		t.Errorf("the original directory's ready file holds %q", got)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(elsewhere, "ready")); got != "precious\n" {
		t.Errorf("Remove reached the swapped-in directory: %q", got)
	}
}

func TestADirectoryAtThePathIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f := Open(path)
	defer f.Close()
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
	defer f.Close()
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
	f.Close()
}

// A directory that did not exist at Open and appears later as a symlink (a daemon's) is
// not followed: the walk from / follows no symlink that was not there at Open.
func TestALaterDirectoryIsNotASymlink(t *testing.T) {
	base := t.TempDir()
	elsewhere := filepath.Join(base, "secret")
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(elsewhere, "ready")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := Open(filepath.Join(base, "late", "ready"))
	defer f.Close()
	if err := os.Symlink(elsewhere, filepath.Join(base, "late")); err != nil {
		t.Fatal(err)
	}
	if err := f.Write([]byte("ready\n")); err == nil {
		t.Error("Write through a symlink made after Open succeeded")
	}
	if err := f.Remove(); err == nil {
		t.Error("Remove through a symlink made after Open succeeded")
	}
	if got := read(t, victim); got != "precious\n" {
		t.Errorf("the file behind the symlink holds %q", got)
	}
}

// The symlinks on the path at Open are the image's (/var/run to /run): followed.
func TestSymlinksThereAtOpenAreFollowed(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "run")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(base, "varrun")); err != nil {
		t.Fatal(err)
	}
	f := Open(filepath.Join(base, "varrun", "ready"))
	defer f.Close()
	if err := f.Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(real, "ready")); got != "ready\n" {
		t.Errorf("the ready file holds %q", got)
	}
}

// A directory removed and made again (a start script's rm -rf /run/app; mkdir /run/app)
// gets the ready file in the new one, not a write into the deleted one that never shows.
func TestADirectoryMadeAgainIsUsed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := Open(filepath.Join(dir, "ready"))
	defer f.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Write([]byte("ready\n")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "ready")); got != "ready\n" {
		t.Errorf("the ready file holds %q", got)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "ready")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
}
