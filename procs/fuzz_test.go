package procs

import (
	"strings"
	"testing"
)

// FuzzParseSignal: signal names come from the daemon table (stop_signal). No panic; every
// rejection has a message; an accepted name is a real signal's name, spelled as documented
// ("SIGTERM", "term", "Hup": any ASCII case, with or without SIG, surrounding white space),
// and nothing else. Seed corpus: testdata/fuzz/FuzzParseSignal/.
func FuzzParseSignal(f *testing.F) {
	for _, seed := range []string{"SIGTERM", "term", " Hup ", "SIGKILL", "", "SIG", "15", "SIGRTMIN+1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		sig, err := ParseSignal(name)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("ParseSignal(%q) rejected it with an empty message", name)
			}
			if sig != 0 {
				t.Fatalf("ParseSignal(%q) = %d with an error, want 0", name, sig)
			}
			return
		}
		if sig <= 0 || sig >= 65 {
			t.Fatalf("ParseSignal(%q) = %d: not a Linux signal number", name, sig)
		}
		canonical := SignalName(sig)
		if again, err := ParseSignal(canonical); err != nil || again != sig {
			t.Fatalf("ParseSignal(SignalName(%d) = %q) = %d, %v: the log's name does not parse back", sig, canonical, again, err)
		}
		spelled := asciiUpper(strings.TrimSpace(name))
		if spelled != canonical && "SIG"+spelled != canonical {
			t.Fatalf("ParseSignal(%q) = %s: accepted a spelling that is not the name in any ASCII case", name, canonical)
		}
	})
}

// asciiUpper upper-cases ASCII letters only: the documented "any case" is ASCII case. (Go's
// strings.ToUpper maps 'ſ' to 'S' and 'ı' to 'I', which no operator means by SIGTERM.)
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
