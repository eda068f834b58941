package sidecars

import (
	"net"
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

// TestEgressReadyProbe: `egress-entrypoint.sh --ready` is egress's readiness probe in the
// image's table, and so what `sidecar-init health` (the HEALTHCHECK, a readinessProbe) says
// of egress. It must fail while nothing listens on EGRESS_LISTEN_PORT and pass once
// something does, probing loopback for a wildcard listen address. (Found by a review: a
// probe made to pass always got through the whole suite, integration test included, which
// waits until mitmdump listens before it looks.)
func TestEgressReadyProbe(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on PATH to run the probe's check with (the image has it; Debian: apt-get install python3)")
	}
	probe := func(env ...string) error {
		cmd := exec.Command("./egress-entrypoint.sh", "--ready")
		cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
		out, err := cmd.CombinedOutput()
		if len(out) > 0 {
			t.Logf("probe output: %s", out)
		}
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for _, host := range []string{"", "0.0.0.0", "127.0.0.1"} {
		if err := probe("EGRESS_LISTEN_HOST="+host, "EGRESS_LISTEN_PORT="+port); err != nil {
			t.Errorf("host %q: probe failed with a listener on 127.0.0.1:%s: %v", host, port, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"", "0.0.0.0", "127.0.0.1"} {
		if err := probe("EGRESS_LISTEN_HOST="+host, "EGRESS_LISTEN_PORT="+port); err == nil {
			t.Errorf("host %q: probe passed with nothing listening on 127.0.0.1:%s", host, port)
		}
	}
}
