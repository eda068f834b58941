package procs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const testPasswd = `# a comment, then a blank line

root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob
nohome:x:1002:1002:::/bin/sh
broken line without colons
short:x:1003
baduid:x:notanumber:1:::
toobig:x:4294967296:1:::
minusone:x:4294967295:1:::
+nisuser::::::
alice:x:2000:2000:second alice loses:/nowhere:/bin/sh
crlf:x:1004:1004::/home/crlf:/bin/sh` + "\r\n" + `
dupuid:x:1000:50::/dup:/bin/sh
`

const testGroup = `# groups
root:x:0:
alice:x:1000:
staff:x:50:alice, bob
audio:x:29:bob,alice
wheel:x:10:alicex,xalice
bob:x:1001:
again:x:1000:alice
malformed:x:77
badgid:x:nope:alice
-nisgroup:x:88:alice
crlf:x:1004:` + "\r\n" + `
`

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLookupUser(t *testing.T) {
	passwd := writeTemp(t, "passwd", testPasswd)
	group := writeTemp(t, "group", testGroup)
	for _, tc := range []struct {
		spec string
		want Credential
	}{
		// Member of staff and audio (" bob" is trimmed), primary 1000 listed twice: once.
		// "alicex" and "xalice" are other users. The second alice entry loses.
		{"alice", Credential{UID: 1000, GID: 1000, Groups: []uint32{29, 50, 1000}, Name: "alice", Home: "/home/alice"}},
		{" alice ", Credential{UID: 1000, GID: 1000, Groups: []uint32{29, 50, 1000}, Name: "alice", Home: "/home/alice"}},
		// No shell field: accepted, as os/user does.
		{"bob", Credential{UID: 1001, GID: 1001, Groups: []uint32{29, 50, 1001}, Name: "bob", Home: "/home/bob"}},
		{"nohome", Credential{UID: 1002, GID: 1002, Groups: []uint32{1002}, Name: "nohome", Home: "/"}},
		{"root", Credential{UID: 0, GID: 0, Groups: []uint32{0}, Name: "root", Home: "/root"}},
		{"crlf", Credential{UID: 1004, GID: 1004, Groups: []uint32{1004}, Name: "crlf", Home: "/home/crlf"}},
		// uid:gid with an entry: the first entry with that uid names it; its memberships are
		// added to the given gid (initgroups(name, gid)), its own primary gid is not.
		{"1000:7", Credential{UID: 1000, GID: 7, Groups: []uint32{7, 29, 50, 1000}, Name: "alice", Home: "/home/alice"}},
		{"1001:1001", Credential{UID: 1001, GID: 1001, Groups: []uint32{29, 50, 1001}, Name: "bob", Home: "/home/bob"}},
		// Without an entry: the uid as the name, "/" as home, only the gid.
		{"4242:4343", Credential{UID: 4242, GID: 4343, Groups: []uint32{4343}, Name: "4242", Home: "/"}},
		{"65534:65534", Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "65534", Home: "/"}},
	} {
		got, err := LookupUser(tc.spec, passwd, group)
		if err != nil {
			t.Errorf("LookupUser(%q): %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("LookupUser(%q) = %+v, want %+v", tc.spec, *got, tc.want)
		}
	}
}

func TestLookupUserErrors(t *testing.T) {
	passwd := writeTemp(t, "passwd", testPasswd)
	group := writeTemp(t, "group", testGroup)
	missing := filepath.Join(t.TempDir(), "absent")
	for _, tc := range []struct {
		spec, passwd, group string
		wantIn              []string // every one must be in the message
	}{
		{"carol", passwd, group, []string{`"carol"`, "not found", passwd}},
		{"1000", passwd, group, []string{`"1000"`, passwd, "uid:gid"}},
		// Malformed or skipped entries are not found either.
		{"short", passwd, group, []string{`"short"`, "not found"}},
		{"baduid", passwd, group, []string{`"baduid"`, "not found"}},
		{"minusone", passwd, group, []string{`"minusone"`, "not found"}},
		{"+nisuser", passwd, group, []string{"not found"}},
		{"", passwd, group, []string{"empty"}},
		{"  ", passwd, group, []string{"empty"}},
		{"alice", missing, group, []string{`"alice"`, missing}},
		{"alice", passwd, missing, []string{`"alice"`, missing}},
		{"1:", passwd, group, []string{`"1:"`, "gid"}},
		{":1", passwd, group, []string{`":1"`, "uid"}},
		{"a:1", passwd, group, []string{"uid", `"a"`}},
		{"1:2:3", passwd, group, []string{"gid", `"2:3"`}},
		{"-1:0", passwd, group, []string{"uid", `"-1"`}},
		{"0x10:0", passwd, group, []string{"uid", `"0x10"`}},
		{"4294967296:0", passwd, group, []string{"uid", `"4294967296"`}},
		{"4294967295:0", passwd, group, []string{"uid", "unchanged"}},
		{"0:4294967295", passwd, group, []string{"gid", "unchanged"}},
		// A passwd that exists but cannot be read is an error even for uid:gid.
		{"1000:1000", t.TempDir(), group, []string{`"1000:1000"`, "read account database"}},
	} {
		got, err := LookupUser(tc.spec, tc.passwd, tc.group)
		if err == nil {
			t.Errorf("LookupUser(%q, %s, %s) = %+v, want an error", tc.spec, tc.passwd, tc.group, *got)
			continue
		}
		for _, want := range tc.wantIn {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("LookupUser(%q): error %q does not mention %q", tc.spec, err, want)
			}
		}
	}
}

// The numeric form is for images without an entry for their service user; they may have no
// account files at all.
func TestLookupUserNumericWithoutFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent")
	passwd := writeTemp(t, "passwd", testPasswd)
	want := Credential{UID: 1000, GID: 5, Groups: []uint32{5}, Name: "1000", Home: "/"}
	got, err := LookupUser("1000:5", missing, missing)
	if err != nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("no files: got %+v, %v; want %+v", got, err, want)
	}
	// An entry but no group file: named, no memberships.
	want = Credential{UID: 1000, GID: 5, Groups: []uint32{5}, Name: "alice", Home: "/home/alice"}
	got, err = LookupUser("1000:5", passwd, missing)
	if err != nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("no group file: got %+v, %v; want %+v", got, err, want)
	}
}

func TestLookupUserSystemNobody(t *testing.T) {
	got, err := LookupUser("nobody", PasswdPath, GroupPath)
	if err != nil {
		t.Skipf("this machine's %s has no usable nobody: %v", PasswdPath, err)
	}
	if got.UID != 65534 || !slices.Contains(got.Groups, got.GID) {
		t.Errorf("nobody = %+v, want uid 65534 with its gid among its groups", *got)
	}
}

func TestCredentialEnv(t *testing.T) {
	c := Credential{Name: "alice", Home: "/home/alice"}
	want := []string{"HOME=/home/alice", "USER=alice", "LOGNAME=alice"}
	if got := c.Env(); !slices.Equal(got, want) {
		t.Errorf("Env() = %q, want %q", got, want)
	}
}

// TestSpawnAsUser runs a real process under each credential and reads the kernel's view of
// it: /proc/PID/status lists real, effective, saved and filesystem ids, and the
// supplementary groups. The child is cat on a pipe, so it stays alive until the pipe closes.
func TestSpawnAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can switch a child to another uid")
	}
	// Give this process supplementary groups of its own (root here often has none), so a
	// child that kept them, instead of getting exactly its Groups, shows up.
	saved, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups([]int{4, 27}); err != nil {
		t.Fatalf("setgroups for the test: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Setgroups(saved); err != nil {
			t.Errorf("restore groups %v: %v", saved, err)
		}
	})
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		cred       Credential
		wantGroups string
	}{
		{"nobody", Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}}, "65534"},
		{"supplementary", Credential{UID: 65534, GID: 65534, Groups: []uint32{29, 50, 65534}}, "29 50 65534"},
		// No groups: root's supplementary groups must still be dropped.
		{"no groups", Credential{UID: 1234, GID: 4321}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdin, hold, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stdin.Close() }()
			pid, err := Spawn(Spec{Argv: []string{"/bin/cat"}, Env: []string{"PATH=/usr/bin:/bin"}, Credential: &tc.cred}, stdin)
			if err != nil {
				_ = hold.Close()
				t.Fatal(err)
			}
			status, readErr := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
			_ = hold.Close() // cat reads EOF and exits
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
				t.Fatalf("wait4 %d: %v", pid, err)
			}
			if readErr != nil {
				t.Fatal(readErr)
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("cat ended with %v, want status 0", ws)
			}
			uid, gid := strconv.Itoa(int(tc.cred.UID)), strconv.Itoa(int(tc.cred.GID))
			want := map[string]string{
				"Uid":    strings.Join([]string{uid, uid, uid, uid}, " "),
				"Gid":    strings.Join([]string{gid, gid, gid, gid}, " "),
				"Groups": tc.wantGroups,
			}
			for line := range strings.SplitSeq(string(status), "\n") {
				key, value, _ := strings.Cut(line, ":")
				if w, ok := want[key]; ok {
					if got := strings.Join(strings.Fields(value), " "); got != w {
						t.Errorf("%s: %q, want %q", key, got, w)
					}
					delete(want, key)
				}
			}
			if len(want) > 0 {
				t.Errorf("/proc/%d/status lacks %v", pid, want)
			}
			// The child's setuid, in memory it shares with the supervisor until its exec,
			// must not leave the supervisor not dumpable.
			if dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || dumpable != 1 {
				t.Errorf("the supervisor's dumpable flag is %d (%v) after the spawn, want 1", dumpable, err)
			}
		})
	}
}

// TestSpawnAsUserWithUnreachableDir: the uid switch happens before chdir, so a working
// directory only root may enter is a failed start with status 126, not a silent root chdir.
func TestSpawnAsUserWithUnreachableDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can switch a child to another uid")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pid, err := Spawn(Spec{Argv: []string{"/bin/true"}, Dir: dir, Credential: &Credential{UID: 65534, GID: 65534}}, os.Stdin)
	var spawnErr *SpawnError
	if !errors.As(err, &spawnErr) || spawnErr.Status != 126 || !errors.Is(err, syscall.EACCES) {
		if err == nil {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}
		t.Fatalf("Spawn in a root-only dir as nobody = %d, %v; want a SpawnError with EACCES and status 126", pid, err)
	}
}

func FuzzLookupUser(f *testing.F) {
	f.Add(testPasswd, testGroup, "alice")
	f.Add(testPasswd, testGroup, "1000:7")
	f.Add("a:x:1:2:::\n", "g:x:3:a,a,,a\n", "a")
	f.Add("::::::\n:\n", "::::\n", ":")
	f.Add("a:x:4294967295:0:::\n", "g:x:-1:a\n", "0:0")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		dir := t.TempDir()
		passwdPath, groupPath := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
		if err := os.WriteFile(passwdPath, []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(groupPath, []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LookupUser(spec, passwdPath, groupPath)
		if err != nil {
			if err.Error() == "" {
				t.Error("error without a message")
			}
			return
		}
		if c.UID == 1<<32-1 || c.GID == 1<<32-1 {
			t.Errorf("%+v: (uid_t)-1 would leave the id unchanged", *c)
		}
		if c.Name == "" || c.Home == "" {
			t.Errorf("%+v: empty name or home", *c)
		}
		if !slices.Contains(c.Groups, c.GID) || !slices.IsSorted(c.Groups) || len(slices.Compact(slices.Clone(c.Groups))) != len(c.Groups) {
			t.Errorf("%+v: groups must be sorted, unique and include the gid", *c)
		}
	})
}
