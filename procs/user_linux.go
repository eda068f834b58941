package procs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Credential is who a daemon runs as: its uid, primary gid and supplementary groups, plus
// the name and home directory its HOME and USER should carry.
type Credential struct {
	UID, GID uint32
	// Groups are the supplementary groups, sorted, without duplicates; they always include
	// GID. Spawn sets exactly these, so the daemon never keeps the supervisor's (root's).
	Groups []uint32
	// Name and Home come from the passwd entry; for a "uid:gid" without one, Name is the
	// uid in decimal and Home is "/".
	Name, Home string
}

// switchTo is the credential a start or file check must switch to: nil when there is none,
// or when it is the process's own uid and gid and the process is not root. Switching to
// it would take what a non-root process lacks (setgroups needs CAP_SETGID even for the
// groups it has), and there is nothing to change: a sidecar-init run as nobody (docker run
// --user, runAsUser) runs a daemon with `user = "nobody"` as it is, with its own groups, as
// supervisord does.
func (c *Credential) switchTo() *Credential {
	if c == nil {
		return nil
	}
	if euid := os.Geteuid(); euid != 0 && c.UID == uint32(euid) && c.GID == uint32(os.Getegid()) {
		return nil
	}
	return c
}

// Env is HOME, USER and LOGNAME for the credential, for the caller to put into the
// daemon's environment (Spawn does not touch Env). Apply them before the daemon table's own
// env so an explicit setting there wins.
func (c *Credential) Env() []string {
	return []string{"HOME=" + c.Home, "USER=" + c.Name, "LOGNAME=" + c.Name}
}

// Default locations of the account databases.
const (
	PasswdPath = "/etc/passwd"
	GroupPath  = "/etc/group"
)

// LookupUser resolves a daemon's user setting. spec is a user name, or "uid:gid" in decimal.
//
// It parses the passwd(5) and group(5) files itself rather than using os/user: the binary is
// built without cgo, where os/user reads the same files but only at fixed paths, and a
// config error should say which file lacked which name. NSS sources other than files
// (LDAP, systemd-userdb) are out of reach either way; containers do not use them.
//
// A name must be in passwdPath (the first entry wins, as getpwnam(3) with "files" does);
// its supplementary groups are those listing it as a member in groupPath plus its primary
// group, which is what initgroups(3) gives a login. "uid:gid" needs no entry at all (images
// without one for their service user are common), and missing files are then fine; when
// passwdPath has an entry with that uid, its name's memberships are added as initgroups(name,
// gid) would.
//
// Comments, blank lines, NIS "+"/"-" lines and malformed lines are skipped.
func LookupUser(spec, passwdPath, groupPath string) (*Credential, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("user: empty; want a name or uid:gid")
	}
	if uidText, gidText, numeric := strings.Cut(spec, ":"); numeric {
		return lookupIDs(spec, uidText, gidText, passwdPath, groupPath)
	}
	return lookupName(spec, passwdPath, groupPath)
}

func lookupName(name, passwdPath, groupPath string) (*Credential, error) {
	users, err := readPasswd(passwdPath)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	i := slices.IndexFunc(users, func(u passwdEntry) bool { return u.name == name })
	if i < 0 {
		hint := ""
		if _, err := strconv.ParseUint(name, 10, 32); err == nil {
			hint = `; for a numeric id without an entry write "uid:gid"`
		}
		return nil, fmt.Errorf("user %q: not found in %s%s", name, passwdPath, hint)
	}
	u := users[i]
	groups, err := readGroups(groupPath)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return &Credential{
		UID: u.uid, GID: u.gid, Name: u.name, Home: homeOrRoot(u.home),
		Groups: memberships(groups, u.name, u.gid),
	}, nil
}

func lookupIDs(spec, uidText, gidText, passwdPath, groupPath string) (*Credential, error) {
	uid, err := parseID(uidText)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid: %w; want uid:gid in decimal", spec, err)
	}
	gid, err := parseID(gidText)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid: %w; want uid:gid in decimal", spec, err)
	}
	c := &Credential{UID: uid, GID: gid, Name: strconv.FormatUint(uint64(uid), 10), Home: "/", Groups: []uint32{gid}}
	users, err := readPasswd(passwdPath)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil // scratch-like images: the numeric form exists for them
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", spec, err)
	}
	i := slices.IndexFunc(users, func(u passwdEntry) bool { return u.uid == uid })
	if i < 0 {
		return c, nil
	}
	c.Name, c.Home = users[i].name, homeOrRoot(users[i].home)
	groups, err := readGroups(groupPath)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", spec, err)
	}
	c.Groups = memberships(groups, c.Name, gid)
	return c, nil
}

// parseID reads a decimal uid or gid. 4294967295 is (uid_t)-1, which setuid(2) and
// setgid(2) take as "leave unchanged": running a daemon with it would silently keep root.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal id", s)
	}
	if n == 1<<32-1 {
		return 0, fmt.Errorf("%q is (uid_t)-1, which set*id(2) take as \"unchanged\"", s)
	}
	return uint32(n), nil
}

// homeOrRoot: login(1) uses "/" when the passwd entry has no home directory.
func homeOrRoot(home string) string {
	if home == "" {
		return "/"
	}
	return home
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	gid     uint32
	members []string
}

// readPasswd parses name:password:uid:gid:gecos:home[:shell] lines. Like os/user's pure-Go
// reader it accepts a missing shell field.
func readPasswd(path string) ([]passwdEntry, error) {
	var users []passwdEntry
	err := eachRecord(path, func(fields []string) {
		if len(fields) < 6 || fields[0] == "" {
			return
		}
		uid, err := parseID(fields[2])
		if err != nil {
			return
		}
		gid, err := parseID(fields[3])
		if err != nil {
			return
		}
		users = append(users, passwdEntry{name: fields[0], uid: uid, gid: gid, home: fields[5]})
	})
	return users, err
}

// readGroups parses name:password:gid:member,member lines.
func readGroups(path string) ([]groupEntry, error) {
	var groups []groupEntry
	err := eachRecord(path, func(fields []string) {
		if len(fields) != 4 || fields[0] == "" {
			return
		}
		gid, err := parseID(fields[2])
		if err != nil {
			return
		}
		var members []string
		for m := range strings.SplitSeq(fields[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		groups = append(groups, groupEntry{gid: gid, members: members})
	})
	return groups, err
}

// eachRecord calls record with the colon-separated fields of every line of path that is not
// blank, a comment, or a NIS compat entry ("+name", "-name": meaningless without NIS).
func eachRecord(path string, record func(fields []string)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read account database: %w", err)
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		text := strings.TrimSuffix(string(line), "\r")
		if text == "" || text[0] == '#' || text[0] == '+' || text[0] == '-' {
			continue
		}
		record(strings.Split(text, ":"))
	}
	return nil
}

// memberships is initgroups(3): primary plus every group that lists name as a member,
// sorted and without duplicates.
func memberships(groups []groupEntry, name string, primary uint32) []uint32 {
	ids := []uint32{primary}
	for _, g := range groups {
		if slices.Contains(g.members, name) {
			ids = append(ids, g.gid)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
