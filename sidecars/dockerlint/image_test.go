package dockerlint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSidecarImage builds Dockerfile.sidecars with the stub bottle context in
// testdata/bottle and probes what the bundle must contain. It needs a Docker
// engine with the buildx plugin, and skips, saying so, when no engine answers.
func TestSidecarImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar image (minutes): skipped in -short mode")
	}
	requireDockerEngine(t)
	if out, err := docker(t.Context(), time.Minute, "buildx", "version"); err != nil {
		// An engine without buildx cannot build the image the documented way
		// (named build contexts need BuildKit): that is a broken setup, not an
		// absent one.
		t.Fatalf("a Docker engine answers but `docker buildx version` fails (install the docker-buildx-plugin): %v\n%s", err, out)
	}

	repoRoot, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("find the repository root: %v", err)
	}
	bottle, err := filepath.Abs("testdata/bottle")
	if err != nil {
		t.Fatalf("find the stub bottle context: %v", err)
	}
	// The versions the image must carry come from the Dockerfile's own ARG
	// defaults, so bumping one there cannot leave this test behind.
	args := checkFile(t, sidecarsDockerfile, Options{NamedContexts: []string{bottleContext}}).GlobalArgs

	image := fmt.Sprintf("sidecar-init-dockerlint-test:%d", time.Now().UnixNano())
	out, err := docker(t.Context(), 30*time.Minute, "buildx", "build", "--load",
		"--build-context", bottleContext+"="+bottle,
		"-f", filepath.Join(repoRoot, "Dockerfile.sidecars"),
		"-t", image, repoRoot)
	if err != nil {
		t.Fatalf("build %s: %v\n%s", image, err, out)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		if out, err := docker(context.Background(), time.Minute, "image", "rm", "--force", image); err != nil {
			t.Logf("remove %s: %v\n%s", image, err, out)
		}
	})

	probes := []struct {
		name       string
		entrypoint string
		args       []string
		wantOutput string // a substring of the combined output; "" for none
	}{
		{"sidecar-init", "/usr/local/bin/sidecar-init", []string{"--version"}, "sidecar-init " + args["VERSION"]},
		{"pipelock", "/usr/local/bin/pipelock", []string{"version"}, args["PIPELOCK_VERSION"]},
		{"gitleaks", "/usr/local/bin/gitleaks", []string{"version"}, strings.TrimPrefix(args["GITLEAKS_VERSION"], "v")},
		{"mitmdump", "mitmdump", []string{"--version"}, "Mitmproxy: " + args["MITMPROXY_VERSION"]},
		{"git", "git", []string{"--version"}, "git version"},
		{"ssh", "ssh", []string{"-V"}, "OpenSSH"},
		{"egress entrypoint", "/bin/sh", []string{"-n", "/app/egress-entrypoint.sh"}, ""},
		{"egress addon", "/usr/bin/test", []string{"-r", "/app/claude_bottle/egress/addon.py"}, ""},
		{"pipelock config", "/usr/bin/test", []string{"-r", "/etc/pipelock/pipelock.yaml"}, ""},
		{"daemon table", "/usr/bin/test", []string{"-r", "/etc/sidecar-init/daemons.toml"}, ""},
		{"bottle modules", "/usr/local/bin/python3", []string{"-c", "import claude_bottle.supervise, claude_bottle.git_gate"}, ""},
	}
	for _, probe := range probes {
		t.Run(probe.name, func(t *testing.T) {
			runArgs := append([]string{"run", "--rm", "--workdir", "/app", "--entrypoint", probe.entrypoint, image}, probe.args...)
			out, err := docker(t.Context(), 2*time.Minute, runArgs...)
			if err != nil {
				t.Fatalf("docker %s: %v\n%s", strings.Join(runArgs, " "), err, out)
			}
			if !strings.Contains(out, probe.wantOutput) {
				t.Errorf("docker %s: output lacks %q:\n%s", strings.Join(runArgs, " "), probe.wantOutput, out)
			}
		})
	}

	t.Run("no daemons exits 0", func(t *testing.T) {
		// Through the image's own ENTRYPOINT: sidecar-init as PID 1 with the
		// installed table, told to run none of it.
		out, err := docker(t.Context(), 2*time.Minute, "run", "--rm", "--env", "CLAUDE_BOTTLE_SIDECAR_DAEMONS=", image)
		if err != nil {
			t.Fatalf("sidecar-init with CLAUDE_BOTTLE_SIDECAR_DAEMONS=\"\": %v\n%s", err, out)
		}
	})
}

// requireDockerEngine skips the test unless `docker version` reaches an engine.
func requireDockerEngine(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker client on PATH, so no image build: ", err)
	}
	out, err := docker(t.Context(), 20*time.Second, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Skipf("no Docker engine answered `docker version`, so the image cannot be built here: %v: %s", err, strings.TrimSpace(out))
	}
	t.Logf("Docker engine %s", strings.TrimSpace(out))
}

// docker runs the docker client and returns its combined output.
func docker(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out.String(), err
}
