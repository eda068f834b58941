package dockerlint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestCopySourcesExist: every COPY source of Dockerfile.sidecars from the main context or
// the bottle context (its stub in testdata/bottle) exists. BuildKit's linter never looks at
// the context, and no machine here builds the image, so a renamed script or a wrong source
// passed the whole suite (found by a review).
func TestCopySourcesExist(t *testing.T) {
	dt, err := os.ReadFile(sidecarsDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatal(err)
	}
	stages, _, err := instructions.Parse(parsed.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := map[string]string{"": "../..", bottleContext: "testdata/bottle"}
	var checked int
	for _, stage := range stages {
		for _, command := range stage.Commands {
			c, ok := command.(*instructions.CopyCommand)
			if !ok {
				continue
			}
			root, ok := roots[c.From]
			if !ok {
				continue // another stage or an image
			}
			for _, src := range c.SourcePaths {
				matches, err := filepath.Glob(filepath.Join(root, src))
				if err != nil || len(matches) == 0 {
					t.Errorf("line %d: COPY source %q is not in the %q context (%s)", c.Location()[0].Start.Line, src, c.From, root)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no COPY source checked")
	}
}
