// Command initbench runs sidecar-init and the anchor inits (tini, dumb-init,
// catatonit, s6-svscan, supervisord) side by side, each as PID 1 of a fresh PID
// namespace, and writes docs/benchmarks.md plus the raw samples (issue 7). The
// Go floor (bench/gofloor, the smallest Go PID 1) runs beside them as go-floor and
// go-floor-g, and the C floor (bench/cfloor, the smallest graceful PID 1) as c-floor-g.
//
// One run interleaves everything: each repetition runs every trial for every
// init, with the inits' order rotated each repetition, so drift in the machine
// spreads over all inits instead of landing on one.
//
// It must run as root (CLONE_NEWPID). Typical use:
//
//	go run ./bench/cmd/initbench -sidecar-init bin/sidecar-init            # full run, docs/
//	go run ./bench/cmd/initbench -quick -out /tmp/bench -sidecar-init ...  # CI smoke
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/claude-bottle/sidecar-init/bench/report"
)

type options struct {
	reps        int
	out         string
	quick       bool
	inits       string
	sidecarInit string
	service     string
	orphans     int
	idle        time.Duration
	idleReps    int
	settle      time.Duration
	slow        time.Duration
	slowReps    int
	keep        bool
	ks          string
	baseline    string
	skipReap    bool
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.reps, "reps", 15, "repetitions of every startup/shutdown/footprint and reap trial")
	flag.StringVar(&o.out, "out", "docs", "directory for benchmarks.md and benchmarks-raw.csv")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: 2 reps, K = 1 and 4, 100 orphans, 1 s idle window (unless set explicitly)")
	flag.StringVar(&o.inits, "inits", "", "comma-separated inits to run (default: all of "+strings.Join(initNames(), ",")+")")
	flag.StringVar(&o.sidecarInit, "sidecar-init", "", "path of the sidecar-init binary (without it, sidecar-init is skipped)")
	flag.StringVar(&o.service, "service", "", "path of the service of the start-up, shutdown, footprint and idle trials (default: build bench/tinyservice with cc)")
	flag.IntVar(&o.orphans, "orphans", 5000, "orphans in the reap trial")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle window")
	flag.IntVar(&o.idleReps, "idle-reps", 2, "repetitions of the idle trial (the first N of -reps)")
	flag.DurationVar(&o.settle, "settle", 250*time.Millisecond, "pause after all services are ready, before sampling memory and sending SIGTERM")
	flag.DurationVar(&o.slow, "slow", 10*time.Second, "a trial slower than this marks the (init, trial) slow")
	flag.IntVar(&o.slowReps, "slow-reps", 2, "samples to keep taking of a slow (init, trial)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (always kept when a trial failed)")
	flag.StringVar(&o.ks, "ks", "", "comma-separated service counts of the lifecycle trials (default 1,4,100; 1,4 with -quick), for focused A/B runs")
	flag.StringVar(&o.baseline, "baseline", "", "path of a second sidecar-init build, run beside the subject as \"sidecar-init-baseline\" (A/B runs)")
	flag.BoolVar(&o.skipReap, "skip-reap", false, "leave out the reap trial, for focused A/B runs")
	flag.Parse()

	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		defaults := map[string]func(){
			"reps":      func() { o.reps = 2 },
			"orphans":   func() { o.orphans = 100 },
			"idle":      func() { o.idle = time.Second },
			"idle-reps": func() { o.idleReps = 1 },
			"settle":    func() { o.settle = 100 * time.Millisecond },
		}
		for name, apply := range defaults {
			if !set[name] {
				apply()
			}
		}
	}
	return o
}

// parseKs reads -ks: positive service counts, comma-separated.
func parseKs(list string) ([]int, error) {
	var ks []int
	for _, field := range strings.Split(list, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || k < 1 {
			return nil, fmt.Errorf("-ks: %q is not a positive service count", field)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

func initNames() []string {
	var names []string
	for _, spec := range allInits("", "", "") {
		names = append(names, spec.name)
	}
	return names
}

func main() {
	// Pdeathsig is tied to the thread that forks (golang/go#27505): keep the
	// main goroutine, which starts every init, on the main thread for good,
	// so an init dies with the harness and never outlives it.
	runtime.LockOSThread()

	o := parseFlags()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "initbench:", err)
		os.Exit(1)
	}
}

// bench holds one run's settings and what it has measured so far.
type bench struct {
	opts    options
	ks      []int
	service string // bench/tinyservice (or -service): start-up, shutdown, footprint, idle
	orphans string // bench/service: the reap trial's service, which leaves the orphans
	goFloor string // bench/gofloor, built into work
	cFloor  string // bench/cfloor, built into work
	work    string
	log     *os.File
	inits   []initSpec
	results report.Results
	dirs    int // trial directories made so far
	// samples and slow track the -slow cap per (init, trial kind).
	samples map[string]int
	slow    map[string]bool
	notes   []string
	pending []report.Sample // samples of the trial under way
}

func run(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: each init runs as PID 1 of a new PID namespace (CLONE_NEWPID)")
	}
	work, err := os.MkdirTemp("", "initbench-")
	if err != nil {
		return fmt.Errorf("make work directory: %w", err)
	}
	log, err := os.Create(filepath.Join(work, "inits.log"))
	if err != nil {
		return fmt.Errorf("create init log: %w", err)
	}
	defer func() { _ = log.Close() }()

	b := &bench{opts: o, work: work, log: log, samples: map[string]int{}, slow: map[string]bool{}}
	b.ks = report.Ks
	if o.quick {
		b.ks = []int{1, 4}
	}
	if o.ks != "" {
		if b.ks, err = parseKs(o.ks); err != nil {
			return err
		}
	}
	if b.service, err = serviceBinary(o.service, work); err != nil {
		return err
	}
	// Only what the chosen trials and inits run, so a focused run needs no more tools; built
	// before the inits are chosen, which skips an init whose executable is missing.
	b.orphans = filepath.Join(work, "bench-orphans-service")
	if !o.skipReap {
		if err := buildStatic("./bench/service", b.orphans); err != nil {
			return fmt.Errorf("build the reap trial's service (run from the module root): %w", err)
		}
	}
	b.goFloor = filepath.Join(work, "gofloor")
	if initsWanted(o.inits, "go-floor", "go-floor-g") {
		if err := buildStatic("./bench/gofloor", b.goFloor); err != nil {
			return fmt.Errorf("build the Go floor (run from the module root): %w", err)
		}
	}
	b.cFloor = filepath.Join(work, "cfloor")
	if initsWanted(o.inits, "c-floor-g") {
		if err := buildC(ccCommand(), "bench/cfloor/cfloor.c", b.cFloor, cFloorFlags); err != nil {
			return fmt.Errorf("build the C floor (run from the module root; `make bench-deps` installs gcc and libc6-dev): %w", err)
		}
	}
	if err := b.chooseInits(); err != nil {
		return err
	}

	began := time.Now()
	b.measureBinaries()
	b.results.Samples, b.pending = append(b.results.Samples, b.pending...), nil
	for rep := 1; rep <= o.reps; rep++ {
		b.repetition(rep)
		fmt.Fprintf(os.Stderr, "initbench: rep %d/%d done, %s elapsed, %d failed trials\n",
			rep, o.reps, time.Since(began).Round(time.Second), len(b.results.Failures))
	}
	b.describe(began)
	if err := b.write(); err != nil {
		return err
	}

	if len(b.results.Failures) > 0 {
		return fmt.Errorf("%d trials failed (listed in %s); init output and trial dirs kept in %s",
			len(b.results.Failures), filepath.Join(o.out, "benchmarks.md"), work)
	}
	if !o.keep {
		return os.RemoveAll(work)
	}
	return nil
}

// serviceBinary returns the service of the lifecycle and idle trials, building
// bench/tinyservice when no path was given.
func serviceBinary(given, work string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	out := filepath.Join(work, "bench-service")
	if err := buildC(ccCommand(), "bench/tinyservice/service.c", out, tinyServiceFlags); err != nil {
		return "", fmt.Errorf("build the bench service (run from the module root; `make bench-deps` installs gcc; or pass -service): %w", err)
	}
	return out, nil
}

// tinyServiceFlags build bench/tinyservice without libc, static and stripped (see the
// file for why). -fno-tree-loop-distribute-patterns stops gcc from turning its loops into
// calls to memcpy or strlen, which no libc here provides.
var tinyServiceFlags = []string{"-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector",
	"-fno-tree-loop-distribute-patterns", "-fno-asynchronous-unwind-tables", "-s"}

// cFloorFlags build bench/cfloor as Debian builds tini: optimised, dynamically linked.
var cFloorFlags = []string{"-O2", "-s"}

// ccCommand is the C compiler the bench builds with: $CC, else cc. Like make, it takes $CC
// as a command line ("ccache gcc").
func ccCommand() []string {
	if cc := strings.Fields(os.Getenv("CC")); len(cc) > 0 {
		return cc
	}
	return []string{"cc"}
}

// buildC compiles one C file of the bench with the compiler command cc.
func buildC(cc []string, src, out string, flags []string) error {
	args := append(append(slices.Clone(cc[1:]), flags...), "-o", out, src)
	cmd := exec.Command(cc[0], args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", cc[0], strings.Join(args, " "), err)
	}
	return nil
}

// buildStatic builds a package of this module static (CGO_ENABLED=0) and stripped, as issue 7
// asks of the bench's own programs.
func buildStatic(pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// initsWanted says whether -inits (inits; "" for all) names one of names.
func initsWanted(inits string, names ...string) bool {
	if inits == "" {
		return true
	}
	return slices.ContainsFunc(strings.Split(inits, ","), func(name string) bool { return slices.Contains(names, name) })
}

func (b *bench) chooseInits() error {
	var wanted []string
	if b.opts.inits != "" {
		wanted = strings.Split(b.opts.inits, ",")
		for _, name := range wanted {
			if !slices.Contains(initNames(), name) {
				return fmt.Errorf("-inits: unknown init %q (known: %s)", name, strings.Join(initNames(), ", "))
			}
		}
	}
	sidecarInit := b.opts.sidecarInit
	if sidecarInit != "" {
		abs, err := filepath.Abs(sidecarInit)
		if err != nil {
			return fmt.Errorf("-sidecar-init: %w", err)
		}
		sidecarInit = abs
	}
	specs := allInits(sidecarInit, b.goFloor, b.cFloor)
	if b.opts.baseline != "" {
		abs, err := filepath.Abs(b.opts.baseline)
		if err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		specs = slices.Insert(specs, 1, sidecarInitSpec("sidecar-init-baseline", abs))
		if wanted != nil {
			wanted = append(wanted, "sidecar-init-baseline")
		}
	}
	for _, spec := range specs {
		if wanted != nil && !slices.Contains(wanted, spec.name) {
			continue
		}
		if why := spec.unavailable(); why != "" {
			msg := fmt.Sprintf("%s skipped: %s", spec.name, why)
			fmt.Fprintln(os.Stderr, "initbench:", msg)
			b.notes = append(b.notes, msg)
			continue
		}
		b.inits = append(b.inits, spec)
		b.results.Inits = append(b.results.Inits, spec.name)
	}
	if len(b.inits) == 0 {
		return errors.New("no init to run")
	}
	b.results.Anchor, b.results.Subject = "tini", "sidecar-init"
	return nil
}

// repetition runs every trial once for every init. Trials of one kind run
// back to back over the inits, in an order rotated by rep.
func (b *bench) repetition(rep int) {
	// A fresh seeded permutation each repetition: a rotation keeps every init's predecessor
	// the same in every repetition (sidecar-init always ran right after supervisord, tini
	// right after sidecar-init), so any carry-over from one trial to the next would land
	// on the same init every time.
	order := slices.Clone(b.inits)
	rng := rand.New(rand.NewPCG(uint64(rep), 0x1b17))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	for _, k := range b.ks {
		kind := fmt.Sprintf("lifecycle K=%d", k)
		for _, spec := range order {
			b.trial(rep, spec, kind, true, func() error { return b.lifecycle(rep, spec, k) })
		}
	}
	if !b.opts.skipReap {
		for _, spec := range order {
			b.trial(rep, spec, "reap", true, func() error { return b.reap(rep, spec) })
		}
	}
	if rep <= b.opts.idleReps {
		for _, spec := range order {
			// Slow by design (the idle window), and capped by -idle-reps.
			b.trial(rep, spec, "idle", false, func() error { return b.idle(rep, spec) })
		}
	}
}

// trial runs one trial and records its failure. With capSlow, an (init,
// trial kind) that once took longer than -slow runs only -slow-reps times:
// supervisord takes about 50 s to reap 5000 orphans.
func (b *bench) trial(rep int, spec initSpec, kind string, capSlow bool, do func() error) {
	key := spec.name + " " + kind
	if b.slow[key] && b.samples[key] >= b.opts.slowReps {
		return
	}
	b.pending = b.pending[:0]
	began := time.Now()
	err := do()
	if took := time.Since(began); capSlow && took > b.opts.slow && !b.slow[key] {
		b.slow[key] = true
		b.notes = append(b.notes, fmt.Sprintf("%s's %s trial took %v (over -slow %v), so it ran at most %d times",
			spec.name, kind, took.Round(100*time.Millisecond), b.opts.slow, b.opts.slowReps))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "initbench: rep %d: %s %s: %v\n", rep, spec.name, kind, err)
		b.results.Failures = append(b.results.Failures, report.Failure{Rep: rep, Init: spec.name, Trial: kind, Err: err.Error()})
		return
	}
	b.samples[key]++
	b.results.Samples = append(b.results.Samples, b.pending...)
}

// add records a sample of the trial under way; trial keeps them only if the trial succeeds,
// so a failed trial (a shutdown timeout) leaves no startup or memory sample behind.
func (b *bench) add(rep int, spec initSpec, metric string, k int, value float64) {
	b.pending = append(b.pending, report.Sample{Init: spec.name, Metric: metric, K: k, Rep: rep, Value: value})
}

// prepared is an init ready to start: its trial dir, FIFO, argv and env.
type prepared struct {
	dir  string
	ch   *channel
	svcs []service
	argv []string
	env  []string
}

// prepare makes a trial's directory, FIFO and command line: k copies of the service binary
// under spec.
func (b *bench) prepare(spec initSpec, binary string, k int, extraEnv ...string) (*prepared, error) {
	b.dirs++
	dir := filepath.Join(b.work, fmt.Sprintf("trial-%05d-%s", b.dirs, spec.name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make trial dir: %w", err)
	}
	ch, err := openChannel(dir)
	if err != nil {
		return nil, err
	}
	svcs := services(binary, k)
	argv, err := spec.argv(dir, svcs)
	if err != nil {
		_, _ = ch.drain() // the config error is the one worth reporting
		return nil, err
	}
	env := append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", envFIFO + "=" + ch.path()}, extraEnv...)
	return &prepared{dir: dir, ch: ch, svcs: svcs, argv: argv, env: env}, nil
}

// finish stops the FIFO reader and removes the trial dir of a trial that
// went well; a failed trial's dir stays for a look.
// startReady starts the init of a prepared trial and waits until all its services are
// ready; on failure the init is already killed.
func (b *bench) startReady(p *prepared) (*running, time.Time, error) {
	r, err := startInit(p.argv, p.env, p.dir, b.log)
	if err != nil {
		return nil, time.Time{}, err
	}
	readyAt, err := awaitReady(p.ch, r, p.svcs, startupTimeout)
	if err != nil {
		r.kill()
		return nil, time.Time{}, err
	}
	return r, readyAt, nil
}

func (p *prepared) finish(trialErr error) error {
	_, err := p.ch.drain()
	if trialErr != nil {
		return trialErr
	}
	if err != nil {
		return err
	}
	return os.RemoveAll(p.dir)
}

const (
	startupTimeout  = 30 * time.Second
	shutdownTimeout = 30 * time.Second
	reapTimeout     = 180 * time.Second
)

// lifecycle: start with k services (startup), sample memory at the footprint
// Ks, SIGTERM PID 1 (shutdown), count the services that got SIGTERM (graceful).
func (b *bench) lifecycle(rep int, spec initSpec, k int) (err error) {
	p, err := b.prepare(spec, b.service, k)
	if err != nil {
		return err
	}
	defer func() { err = p.finish(err) }()

	r, readyAt, err := b.startReady(p)
	if err != nil {
		return err
	}
	b.add(rep, spec, report.Startup, k, ms(readyAt.Sub(r.started)))

	time.Sleep(b.opts.settle)
	if slices.Contains(report.FootprintKs, k) {
		initOnly, total, n, err := footprint(r.pid, spec.helperComm)
		if err != nil {
			r.kill()
			return err
		}
		if spec.helperComm != "" && n != k {
			r.kill()
			return fmt.Errorf("found %d %s helpers, want %d", n, spec.helperComm, k)
		}
		b.add(rep, spec, report.RSS, k, float64(total.RSS))
		b.add(rep, spec, report.RSSInit, k, float64(initOnly.RSS))
		b.add(rep, spec, report.RSSAnon, k, float64(total.RSSAnon))
		b.add(rep, spec, report.PSS, k, float64(total.PSS))
		b.add(rep, spec, report.HWM, k, float64(total.HWM))
	}

	sent, e, err := r.terminate(shutdownTimeout)
	if err != nil {
		return err
	}
	b.add(rep, spec, report.Shutdown, k, ms(e.at.Sub(sent)))
	// PID 1 has exited, so the kernel has killed and reaped everything else
	// in its namespace: every line a service wrote is in the FIFO by now.
	rest, err := p.ch.drain()
	if err != nil {
		return err
	}
	b.add(rep, spec, report.Graceful, k, float64(countStopped(rest)))
	return nil
}

// reap: one service leaves -orphans zombies to PID 1; time until all reaped.
func (b *bench) reap(rep int, spec initSpec) (err error) {
	p, err := b.prepare(spec, b.orphans, 1, fmt.Sprintf("%s=%d", envOrphans, b.opts.orphans))
	if err != nil {
		return err
	}
	defer func() { err = p.finish(err) }()

	r, _, err := b.startReady(p)
	if err != nil {
		return err
	}
	defer r.kill()
	releasedNanos, doneNanos, err := watchReap(p.ch, r, reapTimeout)
	if err != nil {
		return err
	}
	b.add(rep, spec, report.Reap, 1, float64(doneNanos-releasedNanos)/1e6)
	return nil
}

// idle: with K = 4 services up and settled, how often the init wakes and how
// much CPU it uses over the idle window.
func (b *bench) idle(rep int, spec initSpec) (err error) {
	p, err := b.prepare(spec, b.service, report.IdleK)
	if err != nil {
		return err
	}
	defer func() { err = p.finish(err) }()

	r, _, err := b.startReady(p)
	if err != nil {
		return err
	}
	defer r.kill()
	// Let start-up work finish (supervisord moves a program to RUNNING after
	// startsecs = 1 s) so the window sees the steady state.
	time.Sleep(max(time.Second, b.opts.settle))
	hs, err := helpers(r.pid, spec.helperComm)
	if err != nil {
		return err
	}
	pids := append([]int{r.pid}, hs...)
	before, err := readActivity(pids)
	if err != nil {
		return err
	}
	began := time.Now()
	time.Sleep(b.opts.idle)
	after, err := readActivity(pids)
	window := time.Since(began).Seconds()
	if err != nil {
		return err
	}
	b.add(rep, spec, report.Wakeups, report.IdleK, float64(after.wakeupsSince(before))/window)
	cpuMs := float64(after.cpuTicks-before.cpuTicks) * 1000 / clockTicksPerSecond
	b.add(rep, spec, report.CPU, report.IdleK, cpuMs/window)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
