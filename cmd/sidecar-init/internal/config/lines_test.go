package config

import (
	"strings"
	"testing"
)

const linesTable = `# the bundle
grace = "8s"   # [[daemon]] in a comment
notify_url = """
grace = "in a multi-line string"
[[daemon]]
"""

[[daemon]]
name = "a"
command = [
  "/bin/prog",
  "grace = not a key",
  "[[daemon]]",
]
env = { B = "x", C = "} grace = 1" }
'grace' = "1s"

[[ daemon ]]  # b
name = "b"
ready.tcp = "127.0.0.1:1"
"user" = "nobody"
command = ['/bin/x', '''
after = [
''']
after = ["a"]
`

func TestLineOf(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"grace", 2},
		{"notify_url", 3},
		{"daemon[0]", 8},
		{"daemon[0].name", 9},
		{"daemon[0].command", 10},
		{"daemon[0].env", 15},
		{"daemon[0].env.B", 15},
		{"daemon[0].grace", 16}, // quoted, and not the array items or the string above
		{"daemon[1]", 18},
		{"daemon[1].ready.tcp", 20}, // a dotted key
		{"daemon[1].user", 21},
		{"daemon[1].after", 25}, // not the one inside the multi-line literal string
		{"daemon[2]", 0},
		{"daemon[0].restart", 0}, // not set: no line rather than a wrong one
		{"control_socket", 0},
		{"daemon[x].name", 0},
		{"", 0},
	} {
		if got := lineOf([]byte(linesTable), tc.key); got != tc.want {
			t.Errorf("lineOf(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// Errors found after decoding carry the line of their key.
func TestParseErrorsFoundAfterDecodingHaveALine(t *testing.T) {
	table := "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\n# b's grace\ngrace = \"soon\"\n"
	_, err := Parse("bad.toml", []byte(table))
	if err == nil || !strings.HasPrefix(err.Error(), "bad.toml:9: key daemon[1].grace:") {
		t.Fatalf("error %v, want it at bad.toml:9", err)
	}
	cfg, err := Parse("ok.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nuser = \"no-such-user\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Locate(ResolveUsers(cfg.Daemons, cfg.Source, "/nonexistent/passwd", "/nonexistent/group"))
	if err == nil || !strings.HasPrefix(err.Error(), "ok.toml:4: key daemon[0].user:") {
		t.Fatalf("error %v, want it at ok.toml:4", err)
	}
}

func FuzzLineOf(f *testing.F) {
	f.Add(linesTable, "daemon[1].after")
	f.Add("a = [\n'''\n", "a")
	f.Add("[[daemon]]\nx = \"\\\"\"\n", "daemon[0].x")
	f.Fuzz(func(t *testing.T, data, key string) {
		n := lineOf([]byte(data), key)
		lines := strings.Split(data, "\n")
		if n < 0 || n > len(lines) {
			t.Fatalf("line %d of %d", n, len(lines))
		}
		if n > 0 && strings.TrimSpace(lines[n-1]) == "" {
			t.Fatalf("line %d is blank", n)
		}
	})
}
