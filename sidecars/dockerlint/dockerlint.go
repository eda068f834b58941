// Package dockerlint checks a Dockerfile offline with BuildKit's own parser and
// linter (the rules `docker build --check` runs), and adds the pinning rules
// this repository keeps: every image a build pulls names a version, never
// `latest`, and every version ARG has a default.
//
// It lives in its own module so that BuildKit's large dependency tree stays out
// of sidecar-init's go.mod.
package dockerlint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Rule names for the checks this package adds. BuildKit's own findings keep
// BuildKit's rule names (FromAsCasing, UndefinedVar, ...).
const (
	RuleBuildError       = "BuildError"
	RuleUnpinnedImage    = "UnpinnedImage"
	RuleLatestTag        = "LatestTag"
	RuleVersionArgNoDflt = "VersionArgWithoutDefault"
	RuleUnresolvedImage  = "UnresolvedImage"
)

// Finding is one problem, at a 1-based line of the Dockerfile (0 when BuildKit
// gave no location).
type Finding struct {
	Rule    string
	Line    int
	Message string
}

func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s", f.Line, f.Rule, f.Message)
}

// Options says what the checker cannot know from the Dockerfile alone.
type Options struct {
	// NamedContexts are the names a build passes with --build-context. A
	// `COPY --from=NAME` naming one of them copies from that context, not from
	// an image, so it is not checked for a pinned tag.
	NamedContexts []string
}

// Report is what Check found, and what it looked at, so a caller can tell a
// clean file from a file the checker did not understand.
type Report struct {
	Findings []Finding
	// Images are the image references the build pulls, after ARG defaults are
	// substituted, in file order: the `# syntax=` frontend, FROM bases and
	// COPY --from images.
	Images []string
	// GlobalArgs are the defaults of the ARGs declared before the first FROM,
	// the ones FROM lines can use.
	GlobalArgs map[string]string
}

// Check lints the Dockerfile dt (named filename in messages) with BuildKit's
// linter and the pinning rules. An error means the check could not run; a
// Dockerfile BuildKit rejects is a RuleBuildError finding, not an error.
func Check(ctx context.Context, filename string, dt []byte, opt Options) (Report, error) {
	var report Report
	lintFindings, err := buildkitLint(ctx, filename, dt)
	if err != nil {
		return Report{}, err
	}
	report.Findings = append(report.Findings, lintFindings...)

	pinning, err := checkPinning(dt, opt)
	if err != nil {
		return Report{}, fmt.Errorf("check pinning in %s: %w", filename, err)
	}
	report.Findings = append(report.Findings, pinning.Findings...)
	report.Images = pinning.Images
	report.GlobalArgs = pinning.GlobalArgs

	slices.SortStableFunc(report.Findings, func(a, b Finding) int { return a.Line - b.Line })
	return report, nil
}

// buildkitLint runs dockerfile2llb.DockerfileLint, the code behind
// `docker build --check`, without a BuildKit daemon.
func buildkitLint(ctx context.Context, filename string, dt []byte) ([]Finding, error) {
	sourceMap := llb.NewSourceMap(nil, filename, "Dockerfile", dt)
	// DockerfileLint dereferences the source map's Definition; an empty one is
	// enough for line numbers.
	sourceMap.Definition = &llb.Definition{}
	results, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		SourceMap: sourceMap,
		// Without a resolver the converter fetches every image's config from
		// its registry.
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		return nil, fmt.Errorf("lint %s: %w", filename, err)
	}
	var findings []Finding
	for _, warning := range results.Warnings {
		findings = append(findings, Finding{
			Rule:    warning.RuleName,
			Line:    firstLine(warning.Location),
			Message: warning.Detail,
		})
	}
	if results.Error != nil {
		findings = append(findings, Finding{
			Rule:    RuleBuildError,
			Line:    firstLine(&results.Error.Location),
			Message: results.Error.Message,
		})
	}
	return findings, nil
}

func firstLine(location *pb.Location) int {
	if location == nil || len(location.Ranges) == 0 || location.Ranges[0].Start == nil {
		return 0
	}
	return int(location.Ranges[0].Start.Line)
}

// offlineResolver answers every image with an empty Linux image config for
// the requested platform, and never touches a registry.
//
// Refusing to resolve is not enough: DockerfileLint stops at the first base
// image it cannot resolve, before it dispatches the instructions, so the rules
// checked during dispatch (UndefinedVar, SecretsUsedInArgOrEnv, ...) would
// never run and a broken file would pass. The cost of an empty config is that
// the base image's own ENV is unknown: a Dockerfile reading a variable only the
// base image sets (other than PATH, set here) gets an UndefinedVar finding,
// which fails loudly rather than hiding anything.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	platform := ocispecs.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		platform = *opt.ImageOpt.Platform
	}
	config, err := json.Marshal(ocispecs.Image{
		Platform: platform,
		Config: ocispecs.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	})
	if err != nil {
		return "", "", nil, fmt.Errorf("synthesize image config for %s: %w", ref, err)
	}
	// The digest only identifies this synthetic config inside the linter; it
	// names no real image and is never written anywhere.
	return ref, digest.FromBytes(config), config, nil
}

// checkPinning finds every image the build pulls and checks that each names a
// version, and that every ARG a version comes from has a default. It fills in
// every field of Report but the BuildKit findings.
func checkPinning(dt []byte, opt Options) (Report, error) {
	parsed, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return Report{}, fmt.Errorf("parse: %w", err)
	}
	stages, metaArgs, err := instructions.Parse(parsed.AST, nil)
	if err != nil {
		return Report{}, fmt.Errorf("parse instructions: %w", err)
	}

	var findings []Finding
	// Global ARGs (before the first FROM) are what FROM lines may use.
	globalDefaults := map[string]string{}
	for _, arg := range metaArgs {
		for _, kv := range arg.Args {
			if kv.Value != nil && *kv.Value != "" {
				globalDefaults[kv.Key] = *kv.Value
				continue
			}
			if isVersionArg(kv.Key) {
				findings = append(findings, Finding{
					Rule:    RuleVersionArgNoDflt,
					Line:    startLine(arg.Location()),
					Message: fmt.Sprintf("ARG %s has no default: a build without --build-arg %s would not say which version it uses", kv.Key, kv.Key),
				})
			}
		}
	}
	env := shell.EnvsFromSlice(envSlice(globalDefaults))
	lex := shell.NewLex(parsed.EscapeToken)

	var images []string
	// The syntax directive names the frontend image BuildKit pulls first; a
	// file without one uses the frontend built into the builder.
	if syntax, _, ranges, ok := parser.ParseDirective("syntax", dt); ok {
		images = append(images, syntax)
		findings = append(findings, pinningFindings(syntax, startLine(ranges), "# syntax=")...)
	}
	checkImage := func(word string, line int, what string) {
		ref, unmatched, err := lex.ProcessWord(word, env)
		if err != nil {
			findings = append(findings, Finding{Rule: RuleUnresolvedImage, Line: line,
				Message: fmt.Sprintf("%s %q: cannot expand: %v", what, word, err)})
			return
		}
		if len(unmatched) > 0 {
			findings = append(findings, Finding{Rule: RuleUnresolvedImage, Line: line,
				Message: fmt.Sprintf("%s %q uses %s, which has no global ARG default", what, word, strings.Join(slices.Sorted(maps.Keys(unmatched)), ", "))})
			return
		}
		images = append(images, ref)
		findings = append(findings, pinningFindings(ref, line, what)...)
	}

	var stageNames []string
	for i, stage := range stages {
		line := startLine(stage.Location)
		// FROM scratch pulls nothing, and FROM <earlier stage> builds on it.
		if stage.BaseName != "scratch" && !slices.Contains(stageNames, strings.ToLower(stage.BaseName)) {
			checkImage(stage.BaseName, line, "FROM")
		}
		if stage.Name != "" {
			stageNames = append(stageNames, strings.ToLower(stage.Name))
		}
		findings = append(findings, stageArgFindings(stage, i, globalDefaults)...)
		for _, command := range stage.Commands {
			copyCommand, ok := command.(*instructions.CopyCommand)
			if !ok || copyCommand.From == "" {
				continue
			}
			from := copyCommand.From
			if slices.Contains(stageNames, strings.ToLower(from)) || slices.Contains(opt.NamedContexts, from) {
				continue
			}
			// --from=N names the Nth stage.
			if n, err := strconv.Atoi(from); err == nil && n >= 0 && n < i {
				continue
			}
			checkImage(from, startLine(copyCommand.Location()), "COPY --from")
		}
	}
	return Report{Findings: findings, Images: images, GlobalArgs: globalDefaults}, nil
}

// stageArgFindings flags version ARGs declared inside a stage with neither a
// value nor a global default to inherit.
func stageArgFindings(stage instructions.Stage, index int, globalDefaults map[string]string) []Finding {
	stageName := stage.Name
	if stageName == "" {
		stageName = strconv.Itoa(index)
	}
	var findings []Finding
	for _, command := range stage.Commands {
		arg, ok := command.(*instructions.ArgCommand)
		if !ok {
			continue
		}
		for _, kv := range arg.Args {
			if !isVersionArg(kv.Key) || (kv.Value != nil && *kv.Value != "") {
				continue
			}
			// `ARG NAME` in a stage takes the global ARG NAME's default.
			if _, inherited := globalDefaults[kv.Key]; inherited {
				continue
			}
			findings = append(findings, Finding{
				Rule:    RuleVersionArgNoDflt,
				Line:    startLine(arg.Location()),
				Message: fmt.Sprintf("ARG %s in stage %s has no default and no global ARG default to inherit", kv.Key, stageName),
			})
		}
	}
	return findings
}

// pinningFindings checks one image reference: it must carry a digest, or a
// tag other than latest.
func pinningFindings(ref string, line int, what string) []Finding {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return []Finding{{Rule: RuleUnresolvedImage, Line: line,
			Message: fmt.Sprintf("%s %q is not an image reference: %v", what, ref, err)}}
	}
	if _, hasDigest := named.(reference.Digested); hasDigest {
		return nil
	}
	tagged, hasTag := named.(reference.Tagged)
	if !hasTag {
		return []Finding{{Rule: RuleUnpinnedImage, Line: line,
			Message: fmt.Sprintf("%s %q names no tag, so it means latest: pin a version", what, ref)}}
	}
	if tagged.Tag() == "latest" {
		return []Finding{{Rule: RuleLatestTag, Line: line,
			Message: fmt.Sprintf("%s %q uses the moving tag latest: pin a version", what, ref)}}
	}
	return nil
}

// isVersionArg says whether an ARG holds a version: VERSION or *_VERSION.
func isVersionArg(name string) bool {
	upper := strings.ToUpper(name)
	return upper == "VERSION" || strings.HasSuffix(upper, "_VERSION")
}

func startLine(ranges []parser.Range) int {
	if len(ranges) == 0 {
		return 0
	}
	return ranges[0].Start.Line
}

func envSlice(values map[string]string) []string {
	env := make([]string, 0, len(values))
	for _, key := range slices.Sorted(maps.Keys(values)) {
		env = append(env, key+"="+values[key])
	}
	return env
}
