package readyfile

import (
	"os"
	"testing"

	"github.com/claude-bottle/sidecar-init/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
