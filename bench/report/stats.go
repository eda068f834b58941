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
	a, b := make([]float64, len(values)), make([]float64, len(anchor))
	return bootstrap(func(rng *rand.Rand) (float64, bool) {
		for i := range a {
			a[i] = values[rng.IntN(len(values))]
		}
		for i := range b {
			b[i] = anchor[rng.IntN(len(anchor))]
		}
		return medianRatio(a, b)
	})
}

// PairedRatioInterval is RatioInterval for samples taken in pairs: values[i] and anchor[i]
// come from the same repetition, and a resample draws repetitions, the two samples of one
// together. The harness runs every init once in each repetition, so what drifts from one
// repetition to the next (the machine's phase, a neighbour's load) moves both inits:
// resampled on their own, that shared drift widens the interval; drawn in pairs, it stays
// out of the ratio. ok is false without pairs, for slices of different lengths, or when a
// resampled anchor median is 0.
func PairedRatioInterval(values, anchor []float64) (lo, hi float64, ok bool) {
	if len(values) == 0 || len(values) != len(anchor) {
		return 0, 0, false
	}
	a, b := make([]float64, len(values)), make([]float64, len(anchor))
	return bootstrap(func(rng *rand.Rand) (float64, bool) {
		for i := range a {
			j := rng.IntN(len(values))
			a[i], b[i] = values[j], anchor[j]
		}
		return medianRatio(a, b)
	})
}

// Interval is a ratio's 95 % bootstrap interval, and how it was drawn.
type Interval struct {
	Lo, Hi float64
	Paired bool // by repetition (PairedRatioInterval); else each init's samples on their own
}

// RatioIntervalOf is the interval of the ratio of the median of values to that of anchor,
// the samples of one metric and K of two inits: paired by repetition when at least
// MinIntervalN repetitions have one sample of each (the reps with only one side are left
// out of it), else independent (RatioInterval over all the samples, as before pairing).
// A repetition with two samples of one init (two runs' CSVs joined) pairs nothing.
func RatioIntervalOf(values, anchor []Sample) (Interval, bool) {
	if x, y, ok := pairByRep(values, anchor); ok && len(x) >= MinIntervalN {
		lo, hi, ok := PairedRatioInterval(x, y)
		return Interval{Lo: lo, Hi: hi, Paired: true}, ok
	}
	lo, hi, ok := RatioInterval(sampleValues(values), sampleValues(anchor))
	return Interval{Lo: lo, Hi: hi}, ok
}

// pairByRep returns the values of the repetitions both have, in rep order; ok is false
// when a repetition holds two samples of one side.
func pairByRep(values, anchor []Sample) (x, y []float64, ok bool) {
	byRep := func(samples []Sample) (map[int]float64, bool) {
		m := make(map[int]float64, len(samples))
		for _, s := range samples {
			if _, dup := m[s.Rep]; dup {
				return nil, false
			}
			m[s.Rep] = s.Value
		}
		return m, true
	}
	v, okV := byRep(values)
	w, okW := byRep(anchor)
	if !okV || !okW {
		return nil, nil, false
	}
	var reps []int
	for rep := range v {
		if _, both := w[rep]; both {
			reps = append(reps, rep)
		}
	}
	slices.Sort(reps)
	for _, rep := range reps {
		x, y = append(x, v[rep]), append(y, w[rep])
	}
	return x, y, true
}

func sampleValues(samples []Sample) []float64 {
	values := make([]float64, len(samples))
	for i, s := range samples {
		values[i] = s.Value
	}
	return values
}

// bootstrap draws bootstrapResamples ratios, from a fixed seed, and returns their 2.5th and
// 97.5th percentiles; ok is false when a draw has no ratio.
func bootstrap(draw func(*rand.Rand) (float64, bool)) (lo, hi float64, ok bool) {
	rng := rand.New(rand.NewPCG(7, 7))
	ratios := make([]float64, bootstrapResamples)
	for i := range ratios {
		if ratios[i], ok = draw(rng); !ok {
			return 0, 0, false
		}
	}
	slices.Sort(ratios)
	return ratios[bootstrapResamples*25/1000], ratios[bootstrapResamples*975/1000-1], true
}

// medianRatio is the ratio of the medians of two non-empty resamples.
func medianRatio(values, anchor []float64) (float64, bool) {
	v, _ := Summarize(values)
	w, _ := Summarize(anchor)
	return Ratio(v.Median, w.Median)
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
