package report

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestSummarize(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   Summary
		wantOK bool
	}{
		{name: "no values", values: nil, wantOK: false},
		{name: "one value", values: []float64{3}, want: Summary{N: 1, Median: 3, Min: 3, Max: 3}, wantOK: true},
		{name: "odd count, unsorted", values: []float64{9, 1, 5}, want: Summary{N: 3, Median: 5, Min: 1, Max: 9}, wantOK: true},
		{name: "even count: mean of the middle two", values: []float64{4, 1, 10, 2}, want: Summary{N: 4, Median: 3, Min: 1, Max: 10}, wantOK: true},
		{name: "ties", values: []float64{7, 7, 7, 1}, want: Summary{N: 4, Median: 7, Min: 1, Max: 7}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.values)
			got, ok := Summarize(tt.values)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", before, got, ok, tt.want, tt.wantOK)
			}
			if !slices.Equal(tt.values, before) {
				t.Errorf("Summarize reordered its input: %v, was %v", tt.values, before)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		value, anchor float64
		want          float64
		wantOK        bool
	}{
		{value: 3, anchor: 2, want: 1.5, wantOK: true},
		{value: 0, anchor: 2, want: 0, wantOK: true},
		{value: 3, anchor: 0, wantOK: false},
	}
	for _, tt := range tests {
		got, ok := Ratio(tt.value, tt.anchor)
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("Ratio(%v, %v) = %v, %v; want %v, %v", tt.value, tt.anchor, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRatioInterval(t *testing.T) {
	spread := func(center, step float64, n int) []float64 {
		values := make([]float64, n)
		for i := range values {
			values[i] = center + step*float64(i-n/2)
		}
		return values
	}
	tests := []struct {
		name           string
		values, anchor []float64
		wantOK         bool
		mustHold       []float64 // ratios the interval must contain
		mustExclude    []float64 // ratios it must not
	}{
		{name: "no values", values: nil, anchor: []float64{1}, wantOK: false},
		{name: "no anchor", values: []float64{1}, anchor: nil, wantOK: false},
		{name: "zero anchor", values: []float64{1, 2}, anchor: []float64{0, 0, 0}, wantOK: false},
		{name: "constant samples: the ratio exactly", values: []float64{3, 3, 3}, anchor: []float64{2, 2}, wantOK: true, mustHold: []float64{1.5}, mustExclude: []float64{1.49, 1.51}},
		{name: "same spread, same centre: 1 is inside", values: spread(20, 1, 15), anchor: spread(20, 1, 15), wantOK: true, mustHold: []float64{1}, mustExclude: []float64{0.6, 1.5}},
		{name: "twice as slow, tight: 1 is outside", values: spread(20, 0.1, 15), anchor: spread(10, 0.1, 15), wantOK: true, mustHold: []float64{2}, mustExclude: []float64{1, 1.9, 2.1}},
		{name: "wide noise: a 1.2x median ratio is not told from 1", values: spread(24, 1, 15), anchor: spread(20, 1, 15), wantOK: true, mustHold: []float64{1, 1.2}, mustExclude: []float64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi, ok := RatioInterval(tt.values, tt.anchor)
			if ok != tt.wantOK {
				t.Fatalf("RatioInterval ok = %v, want %v (interval %v–%v)", ok, tt.wantOK, lo, hi)
			}
			if lo > hi {
				t.Errorf("interval %v–%v is upside down", lo, hi)
			}
			for _, r := range tt.mustHold {
				if r < lo || r > hi {
					t.Errorf("interval %v–%v does not hold %v", lo, hi, r)
				}
			}
			for _, r := range tt.mustExclude {
				if r >= lo && r <= hi {
					t.Errorf("interval %v–%v holds %v", lo, hi, r)
				}
			}
			lo2, hi2, _ := RatioInterval(tt.values, tt.anchor)
			if lo2 != lo || hi2 != hi {
				t.Errorf("not reproducible: %v–%v, then %v–%v", lo, hi, lo2, hi2)
			}
		})
	}
}

// drifting is n repetitions in which the machine drifts (the anchor's samples spread over
// 13–27) and the subject stays within ±2 % of 1.2× the anchor in the same repetition.
func drifting(n int) (values, anchor []float64) {
	for i := range n {
		a := 20 + float64(i-n/2)
		values = append(values, 1.2*a*(1+0.01*float64(i*7%5-2)))
		anchor = append(anchor, a)
	}
	return values, anchor
}

// The harness runs every init once in each repetition, so a drift moves both: resampled in
// pairs the ratio stays near 1.2, resampled on their own the drift makes it look like
// noise that could hold 1.
func TestPairedRatioIntervalKeepsSharedDriftOut(t *testing.T) {
	values, anchor := drifting(15)
	lo, hi, ok := PairedRatioInterval(values, anchor)
	if !ok || lo > 1.2 || hi < 1.2 || lo < 1.15 || hi > 1.25 {
		t.Errorf("paired interval %v–%v (ok %v), want within 1.15–1.25 and holding 1.2", lo, hi, ok)
	}
	if lo, hi, _ := RatioInterval(values, anchor); lo > 1 || hi < 1.3 {
		t.Errorf("independent interval %v–%v: the drift no longer widens it, so this test shows nothing", lo, hi)
	}
	for _, bad := range [][2][]float64{{nil, nil}, {values, anchor[1:]}, {values[:3], []float64{0, 0, 0}}} {
		if _, _, ok := PairedRatioInterval(bad[0], bad[1]); ok {
			t.Errorf("PairedRatioInterval(%v, %v) ok, want no interval", bad[0], bad[1])
		}
	}
}

// RatioIntervalOf pairs by repetition, whatever the order of the samples, when at least
// MinIntervalN repetitions have both inits; otherwise, or when a repetition holds two
// samples of one init, it resamples each init's samples on their own.
func TestRatioIntervalOfPairsByRepetition(t *testing.T) {
	values, anchor := drifting(15)
	samples := func(init string, values []float64, firstRep int) []Sample {
		var s []Sample
		for i, v := range values {
			s = append(s, Sample{Init: init, Metric: Startup, K: 4, Rep: firstRep + i, Value: v})
		}
		return s
	}
	pairedLo, pairedHi, _ := PairedRatioInterval(values, anchor)
	subject := samples("new", values, 1)
	shuffled := slices.Clone(subject)
	for i := range shuffled {
		j := i * 7 % len(shuffled)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	independent := func(values, anchor []Sample) Interval {
		lo, hi, _ := RatioInterval(sampleValues(values), sampleValues(anchor))
		return Interval{Lo: lo, Hi: hi}
	}
	dup := append(samples("old", anchor, 1), Sample{Init: "old", Metric: Startup, K: 4, Rep: 3, Value: 20})
	shifted := samples("old", anchor, 16-MinIntervalN+1) // reps 9–23 against 1–15: 7 in common
	tests := []struct {
		name            string
		values, anchors []Sample
		want            Interval
	}{
		{"every rep has both", subject, samples("old", anchor, 1), Interval{Lo: pairedLo, Hi: pairedHi, Paired: true}},
		{"in another order", shuffled, samples("old", anchor, 1), Interval{Lo: pairedLo, Hi: pairedHi, Paired: true}},
		{"one rep fewer than MinIntervalN in common", subject, shifted, independent(subject, shifted)},
		{"two samples of one init in a rep", subject, dup, independent(subject, dup)},
	}
	for _, tt := range tests {
		got, ok := RatioIntervalOf(tt.values, tt.anchors)
		if !ok || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.name, got, ok, tt.want)
		}
	}
}

// A goal's interval is drawn by repetition, and says so when it could not be.
func TestRatioGoalIntervalIsPairedByRepetition(t *testing.T) {
	values, anchor := drifting(15)
	r := Results{Inits: []string{"sidecar-init", "tini"}, Anchor: "tini", Subject: "sidecar-init"}
	add(&r, "sidecar-init", Startup, 4, values...)
	add(&r, "tini", Startup, 4, anchor...)
	lo, hi, _ := PairedRatioInterval(values, anchor)
	paired := fmt.Sprintf("; 95 %% interval %s–%s×", formatRatio(lo), formatRatio(hi))
	unpaired := "; unpaired 95 % interval"
	goal := func(r Results) GoalResult {
		for _, g := range Goals(r) {
			if g.Goal == "startup, K = 4 ≤ 1.25× tini" {
				return g
			}
		}
		t.Fatal("no start-up goal at K = 4")
		return GoalResult{}
	}
	if g := goal(r); !strings.HasSuffix(g.Measured, paired) {
		t.Errorf("measured %q, want it to end in the paired %q", g.Measured, paired)
	}
	// The anchor's samples from other repetitions: none pairs.
	for i := range r.Samples {
		if r.Samples[i].Init == "tini" {
			r.Samples[i].Rep += 100
		}
	}
	if g := goal(r); !strings.Contains(g.Measured, unpaired) {
		t.Errorf("measured %q, want %q", g.Measured, unpaired)
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v       float64
		integer bool
		want    string
	}{
		{0, false, "0"},
		{1234.4, false, "1234"},
		{123.45, false, "123"},
		{12.345, false, "12.3"},
		{1.2345, false, "1.23"},
		{0.12345, false, "0.123"},
		{0.012345, false, "0.0123"},
		{-2.5, false, "-2.50"},
		{100, true, "100"},
		{99.5, true, "99.5"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.v, tt.integer); got != tt.want {
			t.Errorf("formatValue(%v, %v) = %q, want %q", tt.v, tt.integer, got, tt.want)
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	samples := []Sample{
		{Init: "tini", Metric: Startup, K: 4, Rep: 1, Value: 3.25},
		{Init: "sidecar-init", Metric: BinarySize, K: 0, Rep: 1, Value: 6.5e6},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, samples); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "init,metric,k,rep,value\ntini,startup_ms,4,1,3.25\n") {
		t.Errorf("unexpected CSV:\n%s", buf.String())
	}
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, samples) {
		t.Errorf("round trip: got %+v, want %+v", got, samples)
	}

	for _, bad := range []string{"", "a,b,c,d,e\n", "init,metric,k,rep,value\ntini,startup_ms,four,1,3\n"} {
		if _, err := ReadCSV(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadCSV(%q) succeeded, want an error", bad)
		}
	}
}

// add appends one sample per value, reps counting from 1.
func add(r *Results, init, metric string, k int, values ...float64) {
	for i, v := range values {
		r.Samples = append(r.Samples, Sample{Init: init, Metric: metric, K: k, Rep: i + 1, Value: v})
	}
}

// fixture is a small run: sidecar-init meets some goals, misses others, and
// K = 100 was not run at all.
func fixture() Results {
	r := Results{Inits: []string{"sidecar-init", "tini", "s6-svscan"}, Anchor: "tini", Subject: "sidecar-init"}
	add(&r, "sidecar-init", Startup, 4, 4.0, 5.0, 6.0)
	add(&r, "tini", Startup, 4, 4.0, 4.0, 5.0)
	add(&r, "s6-svscan", Startup, 4, 20, 19, 21)
	add(&r, "sidecar-init", Shutdown, 4, 1.0, 1.4, 1.2)
	add(&r, "tini", Shutdown, 4, 1.0, 0.9, 1.1)
	add(&r, "sidecar-init", Graceful, 4, 4, 4, 3)
	add(&r, "tini", Graceful, 4, 0, 0, 0)
	add(&r, "sidecar-init", Graceful, 1, 1, 1, 1)
	add(&r, "sidecar-init", Reap, 1, 25, 26)
	add(&r, "tini", Reap, 1, 24, 24)
	add(&r, "sidecar-init", RSS, 4, 5000, 5100, 5200)
	add(&r, "sidecar-init", RSSAnon, 4, 2000, 2000, 2000)
	add(&r, "s6-svscan", RSS, 4, 7700)
	add(&r, "sidecar-init", Wakeups, IdleK, 0, 0.1, 0)
	add(&r, "tini", Wakeups, IdleK, 1, 1, 1)
	add(&r, "sidecar-init", CPU, IdleK, 0, 0, 0)
	add(&r, "sidecar-init", BinarySize, 0, 6_500_000)
	r.Binaries = []Binary{
		{Init: "sidecar-init", Files: []File{{Path: "/bin/sidecar-init", Size: 6_500_000, ELF: true, Static: true, Stripped: true}}},
		{Init: "s6-svscan", Files: []File{{Path: "/usr/bin/s6-svscan", Size: 26936, ELF: true}, {Path: "/usr/bin/s6-supervise", Size: 39328, ELF: true}}},
		{Init: "supervisord", Files: []File{{Path: "/usr/bin/supervisord", Size: 975}}, Note: "a Python script"},
	}
	r.Failures = []Failure{{Rep: 2, Init: "tini", Trial: "lifecycle K=4", Err: "timed out | twice"}}
	r.Setup = Setup{
		Generated: "Run of 2026-01-02 03:04 UTC.",
		Machine:   []string{"Machine: test"},
		Method:    []string{"Method: test"},
		Inits:     []InitSetup{{Name: "tini", Version: "Debian 0.19.0", Command: "tini -- SERVICE", Fanout: "a shell"}},
	}
	return r
}

func TestGoals(t *testing.T) {
	got := map[string]GoalResult{}
	for _, g := range Goals(fixture()) {
		got[g.Goal] = g
	}
	tests := []struct {
		goal     string
		verdict  Verdict
		measured string
	}{
		// 1.2 / 1.0: over 1.25? No: met.
		{"shutdown, K = 4 ≤ 1.25× tini", NotMeasured, "1.20× (1.20 vs 1.00 ms); 1 failed trials of tini"},
		{"shutdown, K = 100 ≤ 1.00× tini", NotMeasured, ""},
		// One K = 4 run lost a service.
		{"graceful = K in every run", Missed, "K = 1: 3 of 3 runs; K = 4: 2 of 3 runs"},
		// 5 / 4 = 1.25: the limit itself is met.
		{"startup, K = 4 ≤ 1.25× tini", NotMeasured, "1.25× (5.00 vs 4.00 ms); 1 failed trials of tini"},
		// 25.5 / 24 = 1.0625.
		{"reap orphans ≤ 1.10× tini", Met, "1.06× (25.5 vs 24.0 ms)"},
		// 5100 KiB = 4.98 MiB.
		{"RSS, K = 4 ≤ 6.00 MiB", Met, "4.98 MiB (max 5.08)"},
		// 2000 KiB = 1.95 MiB.
		{"RssAnon, K = 4 ≤ 1.50 MiB", Missed, "1.95 MiB (max 1.95)"},
		{"RSS, K = 100 ≤ 7.00 MiB", NotMeasured, ""},
		// One run woke: 0 in every run is missed, though the median is 0.
		{"idle: 0 wakeups per second (K = 4)", Missed, "2 of 3 runs at 0 /s (max 0.100)"},
		{"idle: no measurable CPU (K = 4)", Met, "3 of 3 runs at 0 ms/s (max 0)"},
		{"static stripped binary ≤ 8.00 MB", Met, "6.50 MB, static, stripped"},
	}
	for _, tt := range tests {
		g, ok := got[tt.goal]
		if !ok {
			t.Errorf("no goal %q among %v", tt.goal, got)
			continue
		}
		if g.Verdict != tt.verdict || g.Measured != tt.measured {
			t.Errorf("%s: got %q, %q; want %q, %q", tt.goal, g.Verdict, g.Measured, tt.verdict, tt.measured)
		}
	}
}

// The verdict compares the unrounded ratio with the limit, so a ratio that rounds to the
// limit is printed with the decimals that tell them apart: 20.08 / 20 = 1.004 is no
// "1.00×" missed against "≤ 1.00×". The limit itself is printed as it is.
func TestRatioGoalPrintsTheRatioItJudges(t *testing.T) {
	for _, tt := range []struct {
		subject float64
		want    string
		verdict Verdict
	}{
		{20.08, "1.004× (20.1 vs 20.0 ms)", Missed},
		{20.0008, "1.00004× (20.0 vs 20.0 ms)", Missed},
		{19.92, "0.996× (19.9 vs 20.0 ms)", Met},
		{20, "1.00× (20.0 vs 20.0 ms)", Met},
		{20.2, "1.01× (20.2 vs 20.0 ms)", Missed},
	} {
		r := Results{Inits: []string{"sidecar-init", "tini"}, Anchor: "tini", Subject: "sidecar-init"}
		add(&r, "sidecar-init", Startup, 100, tt.subject)
		add(&r, "tini", Startup, 100, 20)
		for _, g := range Goals(r) {
			if g.Goal == "startup, K = 100 ≤ 1.00× tini" && (g.Measured != tt.want || g.Verdict != tt.verdict) {
				t.Errorf("%v vs 20 ms: %q, %s; want %q, %s", tt.subject, g.Measured, g.Verdict, tt.want, tt.verdict)
			}
		}
	}
}

func TestGoalsMissedRatioAndBinary(t *testing.T) {
	r := fixture()
	add(&r, "sidecar-init", Shutdown, 100, 10)
	add(&r, "tini", Shutdown, 100, 8)
	r.Binaries[0].Files[0].Stripped = false
	for _, g := range Goals(r) {
		switch g.Goal {
		case "shutdown, K = 100 ≤ 1.00× tini", "static stripped binary ≤ 8.00 MB":
			if g.Verdict != Missed {
				t.Errorf("%s: verdict %q (%s), want missed", g.Goal, g.Verdict, g.Measured)
			}
		}
	}
}

func TestMarkdownGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Markdown(&buf, fixture(), "raw.csv"); err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/benchmarks.golden.md"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./bench/report -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Markdown output differs from %s (go test ./bench/report -update rewrites it):\n%s", golden, buf.String())
	}
}

// TestMarkdownShowsOnlyMeasuredMetrics: a quick run without K = 100 must not
// print empty K = 100 tables, and every init gets a column.
func TestMarkdownShowsOnlyMeasuredMetrics(t *testing.T) {
	var buf bytes.Buffer
	if err := Markdown(&buf, fixture(), "raw.csv"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "### startup, K = 100") {
		t.Error("report has a table for a metric with no samples")
	}
	if !strings.Contains(out, "| metric | unit | sidecar-init | tini | s6-svscan |") {
		t.Error("medians table lacks a column per init")
	}
	if !strings.Contains(out, `timed out \| twice`) {
		t.Error("a | inside a cell is not escaped")
	}
}

// A trial of the subject that failed (a shutdown that timed out) fails its goals; one of
// the anchor's leaves the ratio unknown. Neither is dropped as if it had not run.
func TestFailedTrialsBlockVerdicts(t *testing.T) {
	r := fixture()
	add(&r, "sidecar-init", Shutdown, 100, 5)
	add(&r, "tini", Shutdown, 100, 8)
	r.Failures = append(r.Failures, Failure{Rep: 3, Init: "sidecar-init", Trial: "lifecycle K=100", Err: "timed out"})
	for _, g := range Goals(r) {
		switch g.Goal {
		case "shutdown, K = 100 ≤ 1.00× tini", "graceful = K in every run":
			if g.Verdict != Missed {
				t.Errorf("%s: verdict %q (%s), want missed after a failed trial", g.Goal, g.Verdict, g.Measured)
			}
		}
	}
}

// "0 wakeups per second" holds in every run, as graceful does: judged on the median, one
// run at 5/s missed with 2 reps and met with 3, as the parity of -idle-reps fell.
func TestZeroGoalHoldsInEveryRun(t *testing.T) {
	for _, tt := range []struct {
		wakeups  []float64
		verdict  Verdict
		measured string
	}{
		{[]float64{0, 5}, Missed, "1 of 2 runs at 0 /s (max 5.00)"},
		{[]float64{0, 0, 5}, Missed, "2 of 3 runs at 0 /s (max 5.00)"},
		{[]float64{0, 0, 0}, Met, "3 of 3 runs at 0 /s (max 0)"},
	} {
		r := Results{Anchor: "tini", Subject: "sidecar-init"}
		add(&r, "sidecar-init", Wakeups, IdleK, tt.wakeups...)
		for _, g := range Goals(r) {
			if g.Goal == "idle: 0 wakeups per second (K = 4)" && (g.Verdict != tt.verdict || g.Measured != tt.measured) {
				t.Errorf("%v: %s, %q; want %s, %q", tt.wakeups, g.Verdict, g.Measured, tt.verdict, tt.measured)
			}
		}
	}
}

// A failed trial of the subject is a run in which its goals were not shown to hold: it
// misses every goal that trial measures, the memory and idle ones as the ratios, and says
// how many failed, even when no trial gave a sample.
func TestFailedTrialsOfTheSubjectMissTheirGoals(t *testing.T) {
	r := fixture()
	r.Failures = append(r.Failures,
		Failure{Rep: 4, Init: "sidecar-init", Trial: "lifecycle K=4", Err: "timed out"},
		Failure{Rep: 1, Init: "sidecar-init", Trial: "lifecycle K=100", Err: "timed out"},
		Failure{Rep: 2, Init: "sidecar-init", Trial: "lifecycle K=100", Err: "timed out"},
		Failure{Rep: 1, Init: "sidecar-init", Trial: "idle", Err: "init exited early"},
		Failure{Rep: 2, Init: "sidecar-init", Trial: "idle", Err: "init exited early"},
		Failure{Rep: 3, Init: "sidecar-init", Trial: "idle", Err: "init exited early"},
	)
	tests := []struct{ goal, measured string }{
		{"RSS, K = 4 ≤ 6.00 MiB", "4.98 MiB (max 5.08); 1 failed trials of sidecar-init"},
		{"RSS, K = 100 ≤ 7.00 MiB", "2 failed trials of sidecar-init"},
		{"idle: 0 wakeups per second (K = 4)", "2 of 3 runs at 0 /s (max 0.100); 3 failed trials of sidecar-init"},
		{"idle: no measurable CPU (K = 4)", "3 of 3 runs at 0 ms/s (max 0); 3 failed trials of sidecar-init"},
		{"shutdown, K = 4 ≤ 1.25× tini", "1.20× (1.20 vs 1.00 ms); 1 failed trials of tini; 1 failed trials of sidecar-init"},
		{"startup, K = 100 ≤ 1.00× tini", "2 failed trials of sidecar-init"},
	}
	got := map[string]GoalResult{}
	for _, g := range Goals(r) {
		got[g.Goal] = g
	}
	for _, tt := range tests {
		if g := got[tt.goal]; g.Verdict != Missed || g.Measured != tt.measured {
			t.Errorf("%s: %s, %q; want missed, %q", tt.goal, g.Verdict, g.Measured, tt.measured)
		}
	}
}
