package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/claude-bottle/sidecar-init/bench/report"
)

func TestWrite(t *testing.T) {
	var samples []report.Sample
	for rep := 1; rep <= 10; rep++ {
		samples = append(samples,
			report.Sample{Init: "new", Metric: report.Shutdown, K: 4, Rep: rep, Value: 3},
			report.Sample{Init: "old", Metric: report.Shutdown, K: 4, Rep: rep, Value: 2},
			report.Sample{Init: "new", Metric: report.Startup, K: 100, Rep: rep, Value: 10},
			report.Sample{Init: "old", Metric: report.Startup, K: 100, Rep: rep, Value: 20},
			report.Sample{Init: "other", Metric: report.Startup, K: 100, Rep: rep, Value: 1},
			report.Sample{Init: "new", Metric: report.RSS, K: 4, Rep: rep, Value: 5e6},
			report.Sample{Init: "old", Metric: report.RSS, K: 4, Rep: rep, Value: 4e6},
		)
	}
	samples = append(samples, report.Sample{Init: "new", Metric: report.Reap, K: 1, Rep: 1, Value: 20})
	var out strings.Builder
	if err := write(&out, samples, "new", "old"); err != nil {
		t.Fatal(err)
	}
	want := "shutdown_ms  K = 4    new / old: 3 / 2 = 1.500 (95 % interval 1.50–1.50, paired)  n = 10, 10\n" +
		"startup_ms   K = 100  new / old: 10 / 20 = 0.500 (95 % interval 0.50–0.50, paired)  n = 10, 10\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := write(&out, samples, "new", "nobody"); err == nil {
		t.Error("no error for an init without samples")
	}
}

// A -quick run has 2 samples a side: a percentile bootstrap of a median of 2 says nothing
// (every resampled median is one of three values), so no interval is printed below
// report.MinIntervalN samples on either side, as the report does.
func TestWriteShowsNoIntervalFromFewSamples(t *testing.T) {
	var samples []report.Sample
	for rep := 1; rep < report.MinIntervalN; rep++ {
		samples = append(samples,
			report.Sample{Init: "new", Metric: report.Shutdown, K: 4, Rep: rep, Value: 3 + float64(rep)},
			report.Sample{Init: "old", Metric: report.Shutdown, K: 4, Rep: rep, Value: 2},
		)
	}
	samples = append(samples, report.Sample{Init: "new", Metric: report.Shutdown, K: 4, Rep: report.MinIntervalN, Value: 3})
	var out strings.Builder
	if err := write(&out, samples, "new", "old"); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("shutdown_ms  K = 4    new / old: 6.5 / 2 = 3.250  n = %d, %d\n", report.MinIntervalN, report.MinIntervalN-1)
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// The interval is drawn by repetition, as the report's: initbench runs both inits once in
// each, so a drift of the machine moves both and stays out of their ratio. Without enough
// repetitions in common it says it is unpaired.
func TestWritePairsByRepetition(t *testing.T) {
	var samples []report.Sample
	var values, anchor []float64
	for rep := 1; rep <= 15; rep++ {
		old := 12 + float64(rep) // the machine slows down through the run
		values, anchor = append(values, 1.2*old*(1+0.01*float64(rep*7%5-2))), append(anchor, old)
		samples = append(samples,
			report.Sample{Init: "new", Metric: report.Startup, K: 4, Rep: rep, Value: values[rep-1]},
			report.Sample{Init: "old", Metric: report.Startup, K: 4, Rep: rep, Value: old},
			report.Sample{Init: "older", Metric: report.Startup, K: 4, Rep: rep + 100, Value: old})
	}
	lo, hi, _ := report.PairedRatioInterval(values, anchor)
	for _, tc := range []struct{ b, want string }{
		{"old", fmt.Sprintf("(95 %% interval %.2f–%.2f, paired)", lo, hi)},
		{"older", ", unpaired)"},
	} {
		var out strings.Builder
		if err := write(&out, samples, "new", tc.b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("new / %s: %q lacks %q", tc.b, out.String(), tc.want)
		}
	}
}
