package procs

import (
	"os"
	"testing"

	"github.com/claude-bottle/sidecar-init/internal/leakcheck"
)

// TestMain fails the package's tests when they leave goroutines running.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
