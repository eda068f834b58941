// Package report turns benchmark samples into figures (median, min–max, n,
// ratio to the anchor), checks sidecar-init's goals from issue 7, and renders
// docs/benchmarks.md and the raw-sample CSV.
package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Sample is one measurement: one metric of one init in one repetition.
type Sample struct {
	Init   string
	Metric string // a Metric.ID
	K      int    // number of services; 0 where it does not apply (binary size)
	Rep    int
	Value  float64 // in the metric's raw unit (Metric.RawUnit)
}

// Summary is what the report prints for one (metric, init).
type Summary struct {
	N                int
	Median, Min, Max float64
}

// Summarize returns the median, extremes and count of values. The median of
// an even count is the mean of the two middle values. ok is false for no values.
func Summarize(values []float64) (s Summary, ok bool) {
	if len(values) == 0 {
		return Summary{}, false
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	median := sorted[n/2]
	if n%2 == 0 {
		median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return Summary{N: n, Median: median, Min: sorted[0], Max: sorted[n-1]}, true
}

// Ratio is value/anchor; ok is false when the anchor is zero (no ratio exists:
// tini's graceful count, a 0 wakeups/s idle rate).
func Ratio(value, anchor float64) (ratio float64, ok bool) {
	if anchor == 0 {
		return 0, false
	}
	return value / anchor, true
}

// bootstrapResamples is how many resamples RatioInterval draws: enough that the 2.5th and
// 97.5th percentiles move by well under the medians' own resolution between seeds.
const bootstrapResamples = 2000

// RatioInterval is a 95 % percentile-bootstrap interval of the ratio of the median of
// values to the median of anchor: each is resampled on its own, with replacement. It says
// how far this run's noise alone moves a ratio, so a goal missed by less than that is told
// from one missed for sure. The seed is fixed, so the same raw samples give the same
// report. ok is false without samples, or when a resampled anchor median is 0.
func RatioInterval(values, anchor []float64) (lo, hi float64, ok bool) {
	if len(values) == 0 || len(anchor) == 0 {
		return 0, 0, false
	}
	rng := rand.New(rand.NewPCG(7, 7))
	resample := func(dst, src []float64) Summary {
		for i := range dst {
			dst[i] = src[rng.IntN(len(src))]
		}
		s, _ := Summarize(dst)
		return s
	}
	a, b := make([]float64, len(values)), make([]float64, len(anchor))
	ratios := make([]float64, bootstrapResamples)
	for i := range ratios {
		v, w := resample(a, values), resample(b, anchor)
		if ratios[i], ok = Ratio(v.Median, w.Median); !ok {
			return 0, 0, false
		}
	}
	slices.Sort(ratios)
	return ratios[bootstrapResamples*25/1000], ratios[bootstrapResamples*975/1000-1], true
}

var csvHeader = []string{"init", "metric", "k", "rep", "value"}

// WriteCSV writes samples as CSV with a header row, values in raw units.
func WriteCSV(w io.Writer, samples []Sample) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	for _, s := range samples {
		row := []string{s.Init, s.Metric, strconv.Itoa(s.K), strconv.Itoa(s.Rep), strconv.FormatFloat(s.Value, 'g', -1, 64)}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv row: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads what WriteCSV wrote.
func ReadCSV(r io.Reader) ([]Sample, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], csvHeader) {
		return nil, fmt.Errorf("read csv: header is not %v", csvHeader)
	}
	samples := make([]Sample, 0, len(rows)-1)
	for i, row := range rows[1:] {
		k, errK := strconv.Atoi(row[2])
		rep, errRep := strconv.Atoi(row[3])
		value, errValue := strconv.ParseFloat(row[4], 64)
		if errK != nil || errRep != nil || errValue != nil {
			return nil, fmt.Errorf("read csv: line %d: bad number in %v", i+2, row)
		}
		samples = append(samples, Sample{Init: row[0], Metric: row[1], K: k, Rep: rep, Value: value})
	}
	return samples, nil
}
