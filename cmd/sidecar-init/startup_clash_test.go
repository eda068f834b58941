package main

// A table refused for its ready_file, and a control socket whose directory cannot be made:
// what the start and check do (found by a review of the start-up path).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A table refused because its ready_file is the control socket's lock (README: "a
// ready_file at the control socket's path (or its lock's, control.sock.lock) ... exit 2
// before anything starts") must not remove that file on its way out: it is not a ready
// file, and the lock is documented to stay in place ("removing it would let another
// instance lock a new file while one holds the old", control.Listen).
func TestRefusedReadyFileAtTheLockLeavesTheLock(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "control.sock")
	lock := socket + ".lock"
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("control_socket = %q\nready_file = %q\n[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\n", socket, lock)
	cfg := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--config", cfg},            // refused table
		{"--config", cfg, "--bogus"}, // bad command line: failedBeforeTheTable, same table
	} {
		cmd := exec.Command(binary, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Fatalf("%v: exit %d, want 2\n%s", args, code, out)
		}
		if _, err := os.Lstat(lock); err != nil {
			t.Errorf("%v: the refused table removed the control socket's lock file: %v\n%s", args, err, out)
			_ = os.WriteFile(lock, nil, 0o644)
		}
	}
}

// `check` must say (exit 1) when the start would run without a control socket. A
// directory on the socket's path that is a dangling symlink (or a symlink loop): the
// start's MkdirAll fails ("no control socket" warning, daemons run on), check says ok.
func TestCheckSeesTheSocketDirectoryTheStartCannotMake(t *testing.T) {
	for _, kind := range []string{"dangling", "loop"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			link := filepath.Join(dir, "run")
			target := filepath.Join(dir, "nowhere")
			if kind == "loop" {
				target = link
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			socket := filepath.Join(link, "control.sock")
			table := fmt.Sprintf("control_socket = %q\n[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\n", socket)
			cfg := filepath.Join(dir, "daemons.toml")
			if err := os.WriteFile(cfg, []byte(table), 0o644); err != nil {
				t.Fatal(err)
			}
			start := exec.Command(binary, "--config", cfg)
			start.Env = []string{"PATH=/usr/bin:/bin"}
			startOut, _ := start.CombinedOutput()
			if !strings.Contains(string(startOut), "no control socket") {
				t.Fatalf("the start made a socket after all:\n%s", startOut)
			}
			check := exec.Command(binary, "check", "--config", cfg)
			check.Env = []string{"PATH=/usr/bin:/bin"}
			checkOut, _ := check.CombinedOutput()
			if code := check.ProcessState.ExitCode(); code != 1 {
				t.Errorf("check exit %d, want 1: the start runs without a control socket\ncheck:\n%s\nstart:\n%s", code, checkOut, startOut)
			}
		})
	}
}
