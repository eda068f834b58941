package sidecars

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEgressUpstream runs egress-entrypoint.sh with a stand-in mitmdump that prints its
// arguments: traffic goes to pipelock unless EGRESS_UPSTREAM says otherwise, and an empty
// value (Compose's `${X}` with X unset) must not turn the firewall off; only "none" does,
// and says so on stderr.
func TestEgressUpstream(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\necho \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "mitmdump"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	addon := filepath.Join(dir, "addon.py")
	if err := os.WriteFile(addon, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const pipelock = "--mode upstream:http://127.0.0.1:8888"
	for _, tc := range []struct {
		name     string
		env      []string
		args     string // in mitmdump's arguments
		noMode   bool   // no --mode at all
		warnings string // on stderr
	}{
		{name: "unset", args: pipelock},
		{name: "empty", env: []string{"EGRESS_UPSTREAM="}, args: pipelock},
		{name: "another proxy", env: []string{"EGRESS_UPSTREAM=http://10.0.0.1:3128"}, args: "--mode upstream:http://10.0.0.1:3128"},
		{name: "none", env: []string{"EGRESS_UPSTREAM=none"}, noMode: true, warnings: "does not pass pipelock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("./egress-entrypoint.sh", "--extra")
			cmd.Env = append([]string{"PATH=" + dir + ":/usr/bin:/bin", "EGRESS_ADDON=" + addon}, tc.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			got := string(out)
			if tc.noMode == strings.Contains(got, "--mode") || !strings.Contains(got, tc.args) || !strings.HasSuffix(strings.TrimSpace(got), "--extra") {
				t.Errorf("mitmdump got %q, want %q (no --mode: %v), then the script's own arguments", got, tc.args, tc.noMode)
			}
			if tc.warnings == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.warnings) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.warnings)
			}
		})
	}
}
