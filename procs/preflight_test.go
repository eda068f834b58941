package procs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPreflight(t *testing.T) {
	t.Run("faccessat2", testPreflight)
	// Where faccessat2 is missing or refused: the same answers, from the mode bits.
	for _, errno := range []syscall.Errno{syscall.ENOSYS, syscall.EPERM} {
		t.Run("without faccessat2 ("+errno.Error()+")", func(t *testing.T) {
			faccessat2 = func(int, string, uint32, int) error { return errno }
			defer func() { faccessat2 = unix.Faccessat2 }()
			testPreflight(t)
		})
	}
}

func testPreflight(t *testing.T) {
	dir := reachableDir(t)
	write := func(rel string, mode os.FileMode) string {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return path
	}
	prog := write("bin/prog", 0o755)
	plain := write("bin/plain", 0o644)
	ownerOnly := write("bin/owner-only", 0o700)
	locked := filepath.Join(dir, "locked")
	lockedProg := write("locked/prog", 0o755)
	if err := os.Chmod(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	path := []string{"PATH=" + filepath.Join(dir, "bin")}
	// The kernel takes one class of mode bits: the owner's for the owner (even when the
	// group or others may execute), the group's for a member of the group, supplementary
	// groups included.
	ownerDenied := write("bin/owner-denied", 0o011)
	groupOnly := write("staff/group-only", 0o750)
	for _, chown := range []struct {
		path     string
		uid, gid int
	}{{ownerDenied, 65534, 65534}, {groupOnly, 0, 50}} {
		if os.Geteuid() == 0 {
			if err := os.Chown(chown.path, chown.uid, chown.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	staffMember := &Credential{UID: 65534, GID: 65534, Groups: []uint32{50, 65534}, Name: "nobody", Home: "/"}
	tests := []struct {
		name     string
		spec     Spec
		asNobody bool
		want     string // the path, or "" for an error
		status   int
		says     string
	}{
		{name: "absolute program", spec: Spec{Argv: []string{prog}}, want: prog},
		{name: "found in the daemon's PATH", spec: Spec{Argv: []string{"prog"}, Env: path}, want: prog},
		{name: "relative to its dir", spec: Spec{Argv: []string{"bin/prog"}, Dir: dir}, want: "bin/prog"},
		{name: "missing", spec: Spec{Argv: []string{filepath.Join(dir, "nope")}}, status: 127, says: "nope"},
		{name: "not in PATH", spec: Spec{Argv: []string{"nope"}, Env: path}, status: 127},
		{name: "not executable", spec: Spec{Argv: []string{plain}}, status: 126, says: "may not execute"},
		{name: "a directory", spec: Spec{Argv: []string{filepath.Join(dir, "bin")}}, status: 126, says: "is a directory"},
		{name: "missing dir", spec: Spec{Argv: []string{prog}, Dir: filepath.Join(dir, "gone")}, status: 127, says: "dir "},
		{name: "dir is a file", spec: Spec{Argv: []string{prog}, Dir: prog}, status: 127, says: "not a directory"},
		{name: "empty command", spec: Spec{}, status: 127},
		{name: "owner-only program as nobody", spec: Spec{Argv: []string{ownerOnly}}, asNobody: true, status: 126, says: "may not execute"},
		{name: "program in a dir nobody may not enter", spec: Spec{Argv: []string{lockedProg}}, asNobody: true, status: 126},
		{name: "dir nobody may not enter", spec: Spec{Argv: []string{prog}, Dir: locked}, asNobody: true, status: 126, says: "may not enter"},
		{name: "what nobody may run", spec: Spec{Argv: []string{"prog"}, Env: path, Dir: dir}, asNobody: true, want: prog},
		// As execvp: a PATH entry the user may not search makes "permission denied" (126),
		// not "not found" (127), when nothing else is found.
		{name: "only in a PATH entry nobody may not search", spec: Spec{Argv: []string{"prog"}, Env: []string{"PATH=" + locked}}, asNobody: true, status: 126},
		{name: "owner's bits deny the owner", spec: Spec{Argv: []string{ownerDenied}}, asNobody: true, status: 126, says: "may not execute"},
		{name: "group-only program for a supplementary member", spec: Spec{Argv: []string{groupOnly}, Credential: staffMember}, asNobody: true, want: groupOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.asNobody {
				if os.Geteuid() != 0 {
					t.Skip("needs root: only root can check as another user")
				}
				if tc.spec.Credential == nil {
					tc.spec.Credential = nobody
				}
			}
			got, err := Preflight(tc.spec)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("Preflight = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var se *SpawnError
			if !errors.As(err, &se) || se.Status != tc.status || !strings.Contains(se.Error(), tc.says) {
				t.Fatalf("Preflight = %q, %v; want a SpawnError with status %d saying %q", got, err, tc.status, tc.says)
			}
		})
	}
}
