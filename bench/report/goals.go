package report

import (
	"fmt"
	"strings"
)

// Verdict is the outcome of one goal.
type Verdict string

const (
	Met         Verdict = "met"
	Missed      Verdict = "missed"
	NotMeasured Verdict = "not measured"
)

// GoalResult is one row of the goals table.
type GoalResult struct {
	Goal     string
	Measured string
	Verdict  Verdict
}

// The limits of issue 7. Ratios compare the subject's median with the anchor's
// from the same run.
const (
	shutdownRatioK4   = 1.25
	shutdownRatioK100 = 1.0
	startupRatioK4    = 1.25
	startupRatioK100  = 1.0
	reapRatio         = 1.1
	rssK4MiB          = 6
	rssAnonK4MiB      = 1.5
	rssK100MiB        = 7
	rssAnonK100MiB    = 2.5
	binaryLimitBytes  = 8e6 // "8 MB", read as the stricter 8·10^6 bytes
)

// Goals checks the subject's figures against issue 7's goals. A goal whose
// figures are missing (a quick run has no K = 100) is NotMeasured, never Met.
func Goals(r Results) []GoalResult {
	return []GoalResult{
		r.ratioGoal(Shutdown, 4, shutdownRatioK4),
		r.ratioGoal(Shutdown, 100, shutdownRatioK100),
		r.gracefulGoal(),
		r.ratioGoal(Startup, 4, startupRatioK4),
		r.ratioGoal(Startup, 100, startupRatioK100),
		r.ratioGoal(Reap, 1, reapRatio),
		r.limitGoal(RSS, 4, rssK4MiB),
		r.limitGoal(RSSAnon, 4, rssAnonK4MiB),
		r.limitGoal(RSS, 100, rssK100MiB),
		r.limitGoal(RSSAnon, 100, rssAnonK100MiB),
		r.zeroGoal(Wakeups, IdleK, "idle: 0 wakeups per second"),
		r.zeroGoal(CPU, IdleK, "idle: no measurable CPU"),
		r.binaryGoal(),
	}
}

// MinIntervalN is the fewest samples a side for which a ratio gets its interval: below it a
// percentile bootstrap of a median says nothing (with n = 2, a -quick run, every resampled
// median is one of three values). cmd/ratios holds to it too.
const MinIntervalN = 8

// failedTrials counts init's failed trials that would have given a sample of m.
func (r Results) failedTrials(init string, m Metric) int {
	trial := fmt.Sprintf("lifecycle K=%d", m.K)
	switch m.ID {
	case Reap:
		trial = "reap"
	case Wakeups, CPU:
		trial = "idle"
	}
	n := 0
	for _, f := range r.Failures {
		if f.Init == init && f.Trial == trial {
			n++
		}
	}
	return n
}

// subjectFailures: a timed-out trial is a censored sample (at least the timeout), not a
// missing one, and dropping it would flatter the init that timed out. A failed trial of
// the subject is a run in which g was not shown to hold, so it misses g, whatever the
// other runs' samples say, and with no sample at all too.
func (r Results) subjectFailures(g GoalResult, m Metric) GoalResult {
	n := r.failedTrials(r.Subject, m)
	if n == 0 {
		return g
	}
	note := fmt.Sprintf("%d failed trials of %s", n, r.Subject)
	if g.Measured != "" {
		note = g.Measured + "; " + note
	}
	return GoalResult{Goal: g.Goal, Measured: note, Verdict: Missed}
}

func metricByID(id string, k int) Metric {
	for _, m := range Catalog() {
		if m.ID == id && m.K == k {
			return m
		}
	}
	panic(fmt.Sprintf("report: no metric %s at K = %d in the catalog", id, k))
}

func (r Results) ratioGoal(id string, k int, limit float64) GoalResult {
	m := metricByID(id, k)
	g := GoalResult{Goal: fmt.Sprintf("%s ≤ %.2f× %s", m.Title, limit, r.Anchor), Verdict: NotMeasured}
	s, okS := r.Summary(r.Subject, m)
	a, okA := r.Summary(r.Anchor, m)
	if !okS || !okA {
		return r.subjectFailures(g, m)
	}
	ratio, ok := Ratio(s.Median, a.Median)
	if !ok {
		g.Measured = "anchor median is 0: no ratio"
		return r.subjectFailures(g, m)
	}
	g.Measured = fmt.Sprintf("%s× (%s vs %s %s)", formatRatioBeside(ratio, limit), formatValue(s.Median*m.Scale, m.Integer),
		formatValue(a.Median*m.Scale, m.Integer), m.Unit)
	if s.N >= MinIntervalN && a.N >= MinIntervalN {
		if in, ok := RatioIntervalOf(r.samplesOf(r.Subject, m), r.samplesOf(r.Anchor, m)); ok {
			g.Measured += fmt.Sprintf("; %s95 %% interval %s–%s×", yesNo(in.Paired, "", "unpaired "), formatRatio(in.Lo), formatRatio(in.Hi))
		}
	}
	g.Verdict = verdict(ratio <= limit)
	// The anchor's failed trial leaves the ratio unknown (its figure is censored too).
	if n := r.failedTrials(r.Anchor, m); n > 0 {
		g.Measured += fmt.Sprintf("; %d failed trials of %s", n, r.Anchor)
		g.Verdict = NotMeasured
	}
	return r.subjectFailures(g, m)
}

// gracefulGoal: every service gets its stop signal in every run, at every K.
func (r Results) gracefulGoal() GoalResult {
	goal := "graceful = K in every run"
	var parts []string
	all := true
	for _, k := range Ks {
		values := r.Values(r.Subject, Graceful, k)
		if len(values) == 0 {
			continue
		}
		full := 0
		for _, v := range values {
			if v == float64(k) {
				full++
			}
		}
		all = all && full == len(values)
		parts = append(parts, fmt.Sprintf("K = %d: %d of %d runs", k, full, len(values)))
	}
	if len(parts) == 0 {
		return GoalResult{Goal: goal, Verdict: NotMeasured}
	}
	// A lifecycle trial that failed (say, the init did not exit within the shutdown timeout)
	// is a run in which graceful was not shown to hold.
	for _, f := range r.Failures {
		if f.Init == r.Subject && strings.HasPrefix(f.Trial, "lifecycle") {
			all = false
			parts = append(parts, "failed: rep "+fmt.Sprint(f.Rep)+" "+f.Trial)
		}
	}
	return GoalResult{Goal: goal, Measured: strings.Join(parts, "; "), Verdict: verdict(all)}
}

func (r Results) limitGoal(id string, k int, limitMiB float64) GoalResult {
	m := metricByID(id, k)
	g := GoalResult{Goal: fmt.Sprintf("%s ≤ %s MiB", m.Title, formatValue(limitMiB, false)), Verdict: NotMeasured}
	if s, ok := r.Summary(r.Subject, m); ok {
		g.Measured = fmt.Sprintf("%s MiB (max %s)", formatValue(s.Median*m.Scale, false), formatValue(s.Max*m.Scale, false))
		g.Verdict = verdict(s.Median*m.Scale <= limitMiB)
	}
	return r.subjectFailures(g, m)
}

// zeroGoal: the figure is 0 in every run, as graceful is K in every run. Judged on the
// median, one run that woke passed with an odd count of runs and missed with an even one.
func (r Results) zeroGoal(id string, k int, goal string) GoalResult {
	m := metricByID(id, k)
	g := GoalResult{Goal: fmt.Sprintf("%s (K = %d)", goal, k), Verdict: NotMeasured}
	if values := r.Values(r.Subject, m.ID, m.K); len(values) > 0 {
		s, _ := Summarize(values)
		zero := 0
		for _, v := range values {
			if v == 0 {
				zero++
			}
		}
		g.Measured = fmt.Sprintf("%d of %d runs at 0 %s (max %s)", zero, len(values), m.Unit, formatValue(s.Max, false))
		g.Verdict = verdict(zero == len(values))
	}
	return r.subjectFailures(g, m)
}

func (r Results) binaryGoal() GoalResult {
	goal := fmt.Sprintf("static stripped binary ≤ %s MB", formatValue(binaryLimitBytes/bytesPerMB, false))
	for _, b := range r.Binaries {
		if b.Init != r.Subject || len(b.Files) == 0 {
			continue
		}
		static, stripped := true, true
		for _, f := range b.Files {
			static = static && f.ELF && f.Static
			stripped = stripped && f.ELF && f.Stripped
		}
		measured := fmt.Sprintf("%s MB, %s, %s", formatValue(float64(b.Size())/bytesPerMB, false),
			yesNo(static, "static", "not static"), yesNo(stripped, "stripped", "not stripped"))
		return GoalResult{Goal: goal, Measured: measured, Verdict: verdict(static && stripped && float64(b.Size()) <= binaryLimitBytes)}
	}
	return GoalResult{Goal: goal, Verdict: NotMeasured}
}

func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
