// Command ratios prints, from a benchmarks-raw.csv that initbench wrote, the ratio of two
// inits' medians for every timed metric and K, with the 95 % bootstrap interval the report
// uses (report.RatioIntervalOf: paired by repetition). It is how an A/B of two builds is read
// (initbench -sidecar-init NEW -baseline OLD: ratios -a sidecar-init -b sidecar-init-baseline),
// and how an init is compared with an anchor the goals do not name (-b c-floor-g).
//
//	go run ./bench/cmd/ratios -csv docs/benchmarks-raw.csv -a sidecar-init -b go-floor-g
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/claude-bottle/sidecar-init/bench/report"
)

func main() {
	csvPath := flag.String("csv", "docs/benchmarks-raw.csv", "raw samples written by initbench")
	a := flag.String("a", "sidecar-init", "init whose medians are the numerators")
	b := flag.String("b", "tini", "init whose medians are the denominators")
	flag.Parse()
	if err := run(*csvPath, *a, *b); err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
}

func run(csvPath, a, b string) error {
	f, err := os.Open(csvPath)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	samples, err := report.ReadCSV(f)
	if err != nil {
		return err
	}
	return write(os.Stdout, samples, a, b)
}

// key is one (metric, K) pair the two inits share.
type key struct {
	metric string
	k      int
}

// write prints one line per (metric, K) both inits have samples of, metrics in the
// report's order: medians, ratio and its interval (none with fewer than
// report.MinIntervalN samples a side).
func write(w io.Writer, samples []report.Sample, a, b string) error {
	values := map[string]map[key][]report.Sample{a: {}, b: {}}
	var keys []key
	for _, s := range samples {
		byKey, wanted := values[s.Init]
		if !wanted || !timed(s.Metric) {
			continue
		}
		k := key{s.Metric, s.K}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], s)
	}
	printed := 0
	for _, k := range keys {
		sa, okA := report.Summarize(sampleValues(values[a][k]))
		sb, okB := report.Summarize(sampleValues(values[b][k]))
		if !okA || !okB || sb.Median == 0 {
			continue
		}
		line := fmt.Sprintf("%-12s K = %-3d  %s / %s: %.3g / %.3g = %.3f", k.metric, k.k, a, b, sa.Median, sb.Median, sa.Median/sb.Median)
		if sa.N >= report.MinIntervalN && sb.N >= report.MinIntervalN {
			if in, ok := report.RatioIntervalOf(values[a][k], values[b][k]); ok {
				line += fmt.Sprintf(" (95 %% interval %.2f–%.2f, %s)", in.Lo, in.Hi, pairing(in))
			}
		}
		if _, err := fmt.Fprintf(w, "%s  n = %d, %d\n", line, sa.N, sb.N); err != nil {
			return err
		}
		printed++
	}
	if printed == 0 {
		return fmt.Errorf("no timed metric has samples of both %s and %s", a, b)
	}
	return nil
}

func sampleValues(samples []report.Sample) []float64 {
	values := make([]float64, len(samples))
	for i, s := range samples {
		values[i] = s.Value
	}
	return values
}

// pairing says how an interval was drawn: by repetition, or each init's samples on their
// own (too few repetitions with both: failed trials, or a slow init capped by -slow-reps).
func pairing(in report.Interval) string {
	if in.Paired {
		return "paired"
	}
	return "unpaired"
}

// timed: the metrics a ratio is read for (start-up, shutdown, reaping).
func timed(metric string) bool {
	return slices.Contains([]string{report.Startup, report.Shutdown, report.Reap}, metric)
}
