package procs

import (
	"os"
	"path/filepath"
	"testing"
)

func writeProg(t *testing.T, dir, out string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\necho "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// execvp in the daemon (glibc; POSIX: a zero-length PATH prefix is the current directory)
// finds prog in its dir when PATH is set but empty; lookPath finds nothing (SplitList("")
// is empty), so Spawn fails 127 where the daemon's own execvp would succeed.
func TestLookPathEmptyPATHIsTheDaemonsDir(t *testing.T) {
	dir := t.TempDir()
	writeProg(t, dir, "here")
	got, err := lookPath("prog", []string{"PATH="}, dir, nil)
	if want := filepath.Join(dir, "prog"); err != nil || got != want {
		t.Errorf("lookPath(prog, PATH=\"\", dir) = %q, %v; want %q (execvp searches the cwd)", got, err, want)
	}
}

// With two PATH entries in Env, getenv in the daemon (glibc, Go, musl) takes the first;
// lookPath takes the last.
func TestLookPathTakesTheFirstPATHAsGetenvDoes(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	writeProg(t, a, "a")
	writeProg(t, b, "b")
	got, err := lookPath("prog", []string{"PATH=" + a, "PATH=" + b}, "", nil)
	if want := filepath.Join(a, "prog"); err != nil || got != want {
		t.Errorf("lookPath = %q, %v; want %q, the PATH getenv gives the daemon", got, err, want)
	}
}
