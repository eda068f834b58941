package procfs

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The fixtures are real /proc files of a `sleep` process, with VmHWM and the
// context-switch counts edited so that no two fields share a value (a parser
// that read the wrong line would otherwise still pass).
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	text, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func TestParseStatus(t *testing.T) {
	fixture := readFixture(t, "status.txt")
	tests := []struct {
		name    string
		text    string
		want    Status
		wantErr string
	}{
		{
			name: "real status file",
			text: string(fixture),
			want: Status{Name: "sleep", RSS: 1660, RSSAnon: 104, HWM: 1712, VoluntaryCtxt: 7, InvoluntaryCtxt: 3},
		},
		{
			name: "name with spaces",
			text: "Name:\tmy daemon\nVmHWM:\t9 kB\nVmRSS:\t8 kB\nRssAnon:\t2 kB\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t5\n",
			want: Status{Name: "my daemon", RSS: 8, RSSAnon: 2, HWM: 9, InvoluntaryCtxt: 5},
		},
		{
			name:    "kernel without RssAnon",
			text:    "Name:\tx\nVmHWM:\t9 kB\nVmRSS:\t8 kB\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t5\n",
			wantErr: "found 4 of the 5 fields",
		},
		{
			name:    "garbled number",
			text:    strings.Replace(string(fixture), "1660 kB", "16x0 kB", 1),
			wantErr: "status field VmRSS",
		},
		{
			name:    "empty",
			text:    "",
			wantErr: "found 0 of the 5 fields",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.CtxtSwitches() != tt.want.VoluntaryCtxt+tt.want.InvoluntaryCtxt {
				t.Errorf("CtxtSwitches = %d", got.CtxtSwitches())
			}
		})
	}
}

func TestParsePSS(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    int64
		wantErr bool
	}{
		{name: "real smaps_rollup", text: string(readFixture(t, "smaps_rollup.txt")), want: 403},
		{name: "Pss_Anon and SwapPss are not Pss", text: "Pss_Anon:  5 kB\nSwapPss:  6 kB\nPss:  7 kB\n", want: 7},
		{name: "no Pss line", text: "Rss: 1 kB\nPss_Anon: 5 kB\n", wantErr: true},
		{name: "garbled", text: "Pss: lots kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePSS([]byte(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseCPUTicks(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 11 and 4 in the first line.
	const tail = " S 1 10 10 0 -1 4194560 100 0 0 0 11 4 0 0 20 0 1 0 53955 3133440 357\n"
	tests := []struct {
		name    string
		text    string
		want    int64
		wantErr bool
	}{
		{name: "plain name", text: "42 (tini)" + tail, want: 15},
		{name: "name with spaces and parentheses", text: "42 (a) b (c)" + tail, want: 15},
		{name: "zombie with zero times", text: "7 (true) Z 1 7 7 0 -1 4228 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0\n", want: 0},
		{name: "truncated", text: "42 (tini) S 1 10 10 0 -1 4194560 100 0 0 0 11\n", wantErr: true},
		{name: "no name", text: "42 tini S 1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCPUTicks([]byte(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseChildren(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []int
		wantErr bool
	}{
		{name: "none", text: "", want: []int{}},
		{name: "several with trailing space", text: "12 13 4001 ", want: []int{12, 13, 4001}},
		{name: "garbled", text: "12 x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChildren([]byte(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFootprintAdd(t *testing.T) {
	a := Footprint{RSS: 1, RSSAnon: 2, PSS: 3, HWM: 4}
	b := Footprint{RSS: 10, RSSAnon: 20, PSS: 30, HWM: 40}
	if got, want := a.Add(b), (Footprint{RSS: 11, RSSAnon: 22, PSS: 33, HWM: 44}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestReadSelf checks the readers against this very process, whose figures
// must be non-zero, and whose own thread list must include its pid.
func TestReadSelf(t *testing.T) {
	pid := os.Getpid()
	fp, err := ReadFootprint(pid)
	if err != nil {
		t.Fatal(err)
	}
	if fp.RSS <= 0 || fp.PSS <= 0 || fp.HWM < fp.RSS {
		t.Errorf("implausible footprint %+v", fp)
	}
	if _, err := ReadCPUTicks(pid); err != nil {
		t.Error(err)
	}
	counts, err := TaskCtxtSwitches(pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := counts[pid]; !ok {
		t.Errorf("own main thread %d missing from %v", pid, counts)
	}
	if _, err := Children(pid); err != nil {
		t.Error(err)
	}
}
