package fsm

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/states.md from the tables")

const statesDoc = "../docs/states.md"

// TestStatesDocIsCurrent fails when docs/states.md differs from what the tables render;
// `make docs` (this test with -update) regenerates it.
func TestStatesDocIsCurrent(t *testing.T) {
	got, err := RenderDocs()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll("../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(statesDoc, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(statesDoc)
	if err != nil {
		t.Fatalf("%v: run `make docs`", err)
	}
	if string(want) != got {
		t.Fatalf("%s is stale: the tables changed. Run `make docs` and commit the result.", statesDoc)
	}
}

func TestRenderDocsShowsEveryRow(t *testing.T) {
	got, err := RenderDocs()
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []Table{DaemonTable(RestartOnFailure), SupervisorTable} {
		for _, r := range table.Rows {
			for _, src := range r.Src {
				arrow := "    " + string(src) + " --> " + string(r.Dst) + ": " + string(r.Event) + "\n"
				if !strings.Contains(got, arrow) {
					t.Errorf("diagram lacks %q", arrow)
				}
			}
		}
		if !strings.Contains(got, "[*] --> "+string(table.Initial)) {
			t.Errorf("diagram of %s does not start at %q", table.Machine, table.Initial)
		}
	}
	if !strings.Contains(got, "**crash policy:**") {
		t.Error("the crash-policy row is not marked")
	}
	for _, row := range []string{
		"| `never` | `exited` | `exited` | `exited` |",
		"| `on-failure` | `backoff` | `exited` | `backoff` |",
		"| `always` | `backoff` | `backoff` | `backoff` |",
	} {
		if !strings.Contains(got, row) {
			t.Errorf("restart-policy matrix lacks %q", row)
		}
	}
}
