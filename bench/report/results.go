package report

// Results is everything one benchmark run produced.
type Results struct {
	Inits    []string // report column order
	Anchor   string   // ratios are to this init's medians ("tini")
	Subject  string   // the goals are checked for this init ("sidecar-init")
	Samples  []Sample
	Failures []Failure
	Binaries []Binary
	Setup    Setup
}

// Failure is a trial that produced no samples, and why.
type Failure struct {
	Rep   int
	Init  string
	Trial string
	Err   string
}

// Binary lists the files one init runs from.
type Binary struct {
	Init  string
	Files []File
	Note  string // e.g. "Python script: the interpreter and package are counted"
}

// File is one file of a Binary. Static and Stripped only mean something for ELF.
type File struct {
	Path     string
	Size     int64
	ELF      bool
	Static   bool // no PT_INTERP: needs no dynamic loader
	Stripped bool // no .symtab
}

// Size is the sum of the sizes of the files.
func (b Binary) Size() int64 {
	var total int64
	for _, f := range b.Files {
		total += f.Size
	}
	return total
}

// Setup is the prose the report opens with: how, where and when it ran.
type Setup struct {
	Generated string   // date and command line
	Machine   []string // kernel, CPU, memory
	Method    []string // one bullet each
	Inits     []InitSetup
}

// InitSetup says how one init was run.
type InitSetup struct {
	Name    string
	Version string
	Command string // the argv shape, e.g. "tini -- SERVICE"
	Fanout  string // how K > 1 services were started
}

// Values returns the samples of one (init, metric, K), in run order.
func (r Results) Values(init, metric string, k int) []float64 {
	var values []float64
	for _, s := range r.Samples {
		if s.Init == init && s.Metric == metric && s.K == k {
			values = append(values, s.Value)
		}
	}
	return values
}

// samplesOf returns the samples of one (init, metric), in run order.
func (r Results) samplesOf(init string, m Metric) []Sample {
	var samples []Sample
	for _, s := range r.Samples {
		if s.Init == init && s.Metric == m.ID && s.K == m.K {
			samples = append(samples, s)
		}
	}
	return samples
}

// Summary summarizes one (init, metric).
func (r Results) Summary(init string, m Metric) (Summary, bool) {
	return Summarize(r.Values(init, m.ID, m.K))
}

// AnchorRatio is the ratio of init's median to the anchor's for metric m.
func (r Results) AnchorRatio(init string, m Metric) (float64, bool) {
	s, ok := r.Summary(init, m)
	if !ok {
		return 0, false
	}
	a, ok := r.Summary(r.Anchor, m)
	if !ok {
		return 0, false
	}
	return Ratio(s.Median, a.Median)
}

// measured reports whether any init has a sample of m.
func (r Results) measured(m Metric) bool {
	for _, s := range r.Samples {
		if s.Metric == m.ID && s.K == m.K {
			return true
		}
	}
	return false
}
