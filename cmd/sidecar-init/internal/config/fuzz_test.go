package config

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// Fuzz targets for everything the supervisor reads from outside: the daemon table and
// CLAUDE_BOTTLE_SIDECAR_DAEMONS. Seed corpora are in testdata/fuzz/<target>/ (replayed by
// every `go test`); `go test -fuzz '^FuzzParse$' -fuzztime 60s .` explores further.
//
// None may panic; every rejection is a *Error naming its source with a message; whatever
// is accepted satisfies the invariants the supervisor relies on.

const fuzzSource = "fuzz.toml"

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n"))
	f.Add([]byte("pass_env = [\"PATH\", \"E_*\"]\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\npass_env = []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(fuzzSource, data)
		if err != nil {
			checkRejection(t, err, fuzzSource)
			// The same input must give the same message: an operator reruns and compares.
			if _, again := Parse(fuzzSource, data); again == nil || again.Error() != err.Error() {
				t.Fatalf("Parse is not deterministic: %q, then %v", err, again)
			}
			return
		}
		checkAccepted(t, cfg)
		again, err := Parse(fuzzSource, data)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("Parse is not deterministic: %+v, then %+v, %v", cfg, again, err)
		}
	})
}

// checkRejection: a rejection is a *Error for this source with a message a person can act on.
func checkRejection(t *testing.T, err error, source string) {
	t.Helper()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %T is not a *config.Error: %v", err, err)
	}
	if cerr.File != source || strings.TrimSpace(cerr.Msg) == "" || !strings.HasPrefix(err.Error(), source) {
		t.Fatalf("rejection without its source or a message: %#v (%q)", cerr, err)
	}
}

// checkAccepted: the invariants the supervisor relies on, checked without calling back into
// the code under test.
func checkAccepted(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Source != fuzzSource || cfg.Grace < 0 {
		t.Fatalf("accepted table: source %q, grace %v", cfg.Source, cfg.Grace)
	}
	names := map[string]int{}
	for i, d := range cfg.Daemons {
		if _, dup := names[d.Name]; dup {
			t.Fatalf("duplicate daemon name %q accepted", d.Name)
		}
		names[d.Name] = i
		if !documentedName(d.Name) {
			t.Fatalf("daemon name %q accepted: it would not survive CLAUDE_BOTTLE_SIDECAR_DAEMONS or the logs", d.Name)
		}
		if len(d.Command) == 0 || d.Command[0] == "" {
			t.Fatalf("daemon %q accepted with an empty command %q", d.Name, d.Command)
		}
		if d.Grace < 0 {
			t.Fatalf("daemon %q accepted with a negative grace %v", d.Name, d.Grace)
		}
		if !slices.IsSorted(d.Env) {
			t.Fatalf("daemon %q: env not sorted: %q", d.Name, d.Env)
		}
		for _, kv := range d.Env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.Contains(k, "\x00") || strings.Contains(v, "\x00") {
				t.Fatalf("daemon %q: bad environment entry %q accepted", d.Name, kv)
			}
		}
		if !d.FilterEnv && d.PassEnv != nil {
			t.Fatalf("daemon %q: a pass_env list %q that filters nothing", d.Name, d.PassEnv)
		}
		for _, entry := range d.PassEnv {
			if name := strings.TrimSuffix(entry, "*"); entry == "" || strings.ContainsAny(name, "=*\x00") {
				t.Fatalf("daemon %q: bad pass_env entry %q accepted", d.Name, entry)
			}
		}
		if d.StopSignal != 0 {
			if sig, err := procs.ParseSignal(procs.SignalName(d.StopSignal)); err != nil || sig != d.StopSignal {
				t.Fatalf("daemon %q: stop signal %d is not a signal with a name", d.Name, d.StopSignal)
			}
		}
		if !slices.Contains(fsm.RestartPolicies, d.Restart) {
			t.Fatalf("daemon %q: restart policy %q accepted", d.Name, d.Restart)
		}
	}
	// Every "after" names a daemon of the table, and the start order has no cycle (Kahn:
	// repeatedly take the daemons whose dependencies are all taken).
	for _, d := range cfg.Daemons {
		for _, dep := range d.After {
			if _, ok := names[dep]; !ok {
				t.Fatalf("daemon %q comes after unknown %q, and was accepted", d.Name, dep)
			}
		}
	}
	taken := map[string]bool{}
	for progress := true; progress; {
		progress = false
		for _, d := range cfg.Daemons {
			if taken[d.Name] {
				continue
			}
			ready := true
			for _, dep := range d.After {
				ready = ready && taken[dep]
			}
			if ready {
				taken[d.Name], progress = true, true
			}
		}
	}
	if len(taken) != len(cfg.Daemons) {
		t.Fatalf("start order with a cycle accepted: %d of %d daemons can ever start", len(taken), len(cfg.Daemons))
	}
}

// documentedName is the documented name rule, written out by hand: letters, digits, '.', '_',
// '-', starting with a letter or digit; ASCII only.
func documentedName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		alnum := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return false
		}
	}
	return true
}

// selectTable is the table FuzzSelect selects from: names with every allowed character.
const selectTable = `
[[daemon]]
name = "egress"
command = ["x"]
[[daemon]]
name = "pipelock"
command = ["x"]
[[daemon]]
name = "git-gate"
command = ["x"]
[[daemon]]
name = "a.b_c-1"
command = ["x"]
[[daemon]]
name = "9"
command = ["x"]
`

func FuzzSelect(f *testing.F) {
	cfg, err := Parse("daemons.toml", []byte(selectTable))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("egress,pipelock", true)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, value string, set bool) {
		got, err := cfg.Select(value, set)
		if !set {
			if err != nil || !reflect.DeepEqual(got, cfg.Daemons) {
				t.Fatalf("Select(unset) = %v, %v; want every daemon", names(got), err)
			}
			return
		}
		tokens := splitSelection(value)
		var unknown []string
		for _, tok := range tokens {
			if !slices.Contains(cfg.Names(), tok) {
				unknown = append(unknown, tok)
			}
		}
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.Key != SelectEnv || strings.TrimSpace(cerr.Msg) == "" {
				t.Fatalf("rejection %#v (%v): want a *Error for %s with a message", err, err, SelectEnv)
			}
			if len(unknown) == 0 {
				t.Fatalf("Select(%q) rejected every name known: %v", value, err)
			}
			for _, u := range unknown {
				if !strings.Contains(err.Error(), strconv.Quote(u)) {
					t.Fatalf("Select(%q): the error does not name unknown %q: %v", value, u, err)
				}
			}
			return
		}
		if len(unknown) > 0 {
			t.Fatalf("Select(%q) accepted unknown names %q", value, unknown)
		}
		// Exactly the named daemons, each once, in table order.
		var want []string
		for _, d := range cfg.Daemons {
			if slices.Contains(tokens, d.Name) {
				want = append(want, d.Name)
			}
		}
		if !slices.Equal(names(got), want) {
			t.Fatalf("Select(%q) = %q, want %q (the named ones, once each, in table order)", value, names(got), want)
		}
	})
}

// splitSelection is the documented syntax, written out by hand: names separated by commas
// and/or Unicode white space.
func splitSelection(value string) []string {
	var tokens []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			tokens = append(tokens, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(value); {
		r, width := utf8.DecodeRuneInString(value[i:]) // an invalid byte: RuneError, width 1
		if r == ',' || unicode.IsSpace(r) {
			flush()
		} else {
			cur.WriteString(value[i : i+width])
		}
		i += width
	}
	flush()
	return tokens
}

func names(daemons []Daemon) []string {
	out := make([]string, len(daemons))
	for i, d := range daemons {
		out[i] = d.Name
	}
	return out
}
