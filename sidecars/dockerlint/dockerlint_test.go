package dockerlint

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sidecarsDockerfile is the file this module exists to check.
const sidecarsDockerfile = "../../Dockerfile.sidecars"

// bottleContext is the named build context Dockerfile.sidecars copies from.
const bottleContext = "bottle"

func checkFile(t *testing.T, path string, opt Options) Report {
	t.Helper()
	dt, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	report, err := Check(context.Background(), path, dt, opt)
	if err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
	return report
}

func TestSidecarsDockerfileIsClean(t *testing.T) {
	report := checkFile(t, sidecarsDockerfile, Options{NamedContexts: []string{bottleContext}})
	for _, finding := range report.Findings {
		t.Errorf("%s %v", sidecarsDockerfile, finding)
	}

	// The checker must have seen every image the bundle is built from, each
	// with its version filled in from the ARG defaults; a file it did not
	// understand would otherwise pass with no findings.
	wantRepositories := []string{
		"docker/dockerfile:",
		"golang:",
		"ghcr.io/luckypipewrench/pipelock:",
		"ghcr.io/gitleaks/gitleaks:",
		"mitmproxy/mitmproxy:",
	}
	for _, repository := range wantRepositories {
		if !slices.ContainsFunc(report.Images, func(image string) bool { return strings.HasPrefix(image, repository) }) {
			t.Errorf("no image from %s among the images checked: %q", repository, report.Images)
		}
	}

	// One place to bump versions: each is a global ARG with a default.
	for _, arg := range []string{"GO_VERSION", "PIPELOCK_VERSION", "GITLEAKS_VERSION", "MITMPROXY_VERSION"} {
		if report.GlobalArgs[arg] == "" {
			t.Errorf("%s has no global ARG %s with a default (global ARGs: %v)", sidecarsDockerfile, arg, report.GlobalArgs)
		}
	}
}

// TestCheckFixtures proves each rule fires on a file that breaks it, and stays
// quiet on one that does not, so a clean result for Dockerfile.sidecars means
// something.
func TestCheckFixtures(t *testing.T) {
	tests := []struct {
		file       string
		wantRules  []string // every finding's rule, in line order
		wantImages []string
	}{
		{
			file:       "bad/no-tag.Dockerfile",
			wantRules:  []string{RuleUnpinnedImage},
			wantImages: []string{"debian"},
		},
		{
			file:       "bad/latest.Dockerfile",
			wantRules:  []string{RuleLatestTag},
			wantImages: []string{"debian:latest"},
		},
		{
			file:       "bad/latest-syntax.Dockerfile",
			wantRules:  []string{RuleLatestTag},
			wantImages: []string{"docker/dockerfile:latest", "debian:bookworm-slim"},
		},
		{
			file:       "bad/lowercase-as.Dockerfile",
			wantRules:  []string{"FromAsCasing"},
			wantImages: []string{"golang:1.26.8-bookworm", "debian:bookworm-slim"},
		},
		{
			file: "bad/version-arg-without-default.Dockerfile",
			wantRules: []string{
				RuleVersionArgNoDflt,      // global ARG TOOL_VERSION
				"InvalidDefaultArgInFrom", // BuildKit agrees about line 3,
				RuleBuildError,            // and cannot build it,
				RuleUnresolvedImage,       // and neither can we.
				RuleVersionArgNoDflt,      // stage ARG SCRIPT_VERSION
			},
			wantImages: []string{"debian:bookworm-slim"},
		},
		{
			file:       "bad/copy-from-unpinned-image.Dockerfile",
			wantRules:  []string{RuleUnpinnedImage},
			wantImages: []string{"debian:bookworm-slim", "busybox"},
		},
		{
			file:       "bad/undefined-var.Dockerfile",
			wantRules:  []string{"UndefinedVar"},
			wantImages: []string{"debian:bookworm-slim"},
		},
		{
			file:       "good/pinned.Dockerfile",
			wantRules:  nil,
			wantImages: []string{"docker/dockerfile:1.28", "debian:bookworm-slim"},
		},
	}
	for _, test := range tests {
		t.Run(test.file, func(t *testing.T) {
			report := checkFile(t, filepath.Join("testdata", test.file), Options{NamedContexts: []string{"payload"}})
			var gotRules []string
			for _, finding := range report.Findings {
				gotRules = append(gotRules, finding.Rule)
			}
			if !slices.Equal(gotRules, test.wantRules) {
				t.Errorf("rules = %q, want %q; findings:\n%s", gotRules, test.wantRules, findingLines(report.Findings))
			}
			if !slices.Equal(report.Images, test.wantImages) {
				t.Errorf("images = %q, want %q", report.Images, test.wantImages)
			}
			for _, finding := range report.Findings {
				if finding.Line == 0 {
					t.Errorf("finding without a line number: %v", finding)
				}
			}
		})
	}
}

// TestNamedContextMustBeDeclared checks that COPY --from=bottle counts as an
// unpinned image when bottle is not declared a named context: the exemption
// comes from Options, not from the name.
func TestNamedContextMustBeDeclared(t *testing.T) {
	report := checkFile(t, sidecarsDockerfile, Options{})
	var unpinned int
	for _, finding := range report.Findings {
		if finding.Rule == RuleUnpinnedImage && strings.Contains(finding.Message, `"`+bottleContext+`"`) {
			unpinned++
		}
	}
	if unpinned == 0 {
		t.Errorf("COPY --from=%s without Options.NamedContexts: no %s finding; findings:\n%s",
			bottleContext, RuleUnpinnedImage, findingLines(report.Findings))
	}
}

func findingLines(findings []Finding) string {
	var lines strings.Builder
	for _, finding := range findings {
		lines.WriteString("\t" + finding.String() + "\n")
	}
	return lines.String()
}

// TestEgressConfdirIsInTheImage: the mitmproxy base image declares egress's confdir a
// VOLUME without creating it (its entrypoint, which sidecar-init replaces, made it at every
// start), so Dockerfile.sidecars must create it owned by mitmproxy, egress's user in
// daemons.toml; otherwise Docker mounts a root-owned directory there and egress dies
// writing its CA. No engine here builds the image, so the line itself is held to that.
func TestEgressConfdirIsInTheImage(t *testing.T) {
	text, err := os.ReadFile(sidecarsDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	const confdir = "/home/mitmproxy/.mitmproxy"
	table, err := os.ReadFile("../daemons.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(table), "confdir "+confdir) || !strings.Contains(string(table), `user = "mitmproxy"`) {
		t.Fatalf("daemons.toml no longer says egress runs as mitmproxy with confdir %s: update this test", confdir)
	}
	var created bool
	for _, line := range strings.Split(string(text), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] == "ENTRYPOINT" {
			break
		}
		created = created || (strings.HasPrefix(line, "RUN install -d -o mitmproxy -g mitmproxy") && slices.Contains(fields, confdir))
	}
	if !created {
		t.Errorf("%s does not create %s owned by mitmproxy before its ENTRYPOINT", sidecarsDockerfile, confdir)
	}
}
