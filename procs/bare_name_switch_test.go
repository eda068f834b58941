package procs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A bare program name is looked up as the daemon's user (AsUser, on the worker thread)
// before anything is forked, so a root sidecar-init without CAP_SETUID and CAP_SETGID
// (--cap-drop ALL) fails there, and the error skipped blameSetup: "exec true: take user
// nobody's identity: groups: operation not permitted", where "/bin/true" gets the message
// that names the capabilities and the fix. Same for Preflight (`sidecar-init check`).
func TestBareNameNamesAUserSwitchItCannotMake(t *testing.T) {
	if os.Getenv("PROCS_BARE_NAME_HELPER") == "1" {
		nobody := &Credential{UID: 65534, GID: 65534, Groups: []uint32{65534}, Name: "nobody", Home: "/"}
		for _, argv0 := range []string{"/bin/true", "true"} {
			spec := Spec{Argv: []string{argv0}, Env: []string{"PATH=/usr/bin:/bin"}, Credential: nobody}
			_, perr := Preflight(spec)
			_, serr := Spawn(spec, os.Stdin)
			for _, err := range []error{perr, serr} {
				if err == nil || !strings.Contains(err.Error(), "switching users takes root with CAP_SETUID and CAP_SETGID") {
					t.Errorf("%s: error %v does not name the user switch", argv0, err)
				}
			}
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-setuid,-setgid", "--inh-caps=-setuid,-setgid",
		os.Args[0], "-test.run=^TestBareNameNamesAUserSwitchItCannotMake$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PROCS_BARE_NAME_HELPER=1", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("without CAP_SETUID and CAP_SETGID: %v\n%s", err, out)
	}
}
