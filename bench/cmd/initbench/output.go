package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/claude-bottle/sidecar-init/bench/report"
	"golang.org/x/sys/unix"
)

// measureBinaries records the on-disk size of what each init runs.
func (b *bench) measureBinaries() {
	for _, spec := range b.inits {
		bin := report.Binary{Init: spec.name, Note: spec.sizeNote}
		for _, path := range append([]string{spec.exe}, spec.extraFiles...) {
			f, err := describeFile(path)
			if err != nil {
				b.notes = append(b.notes, fmt.Sprintf("binary size of %s: %v", spec.name, err))
				continue
			}
			bin.Files = append(bin.Files, f)
		}
		b.results.Binaries = append(b.results.Binaries, bin)
		b.add(1, spec, report.BinarySize, 0, float64(bin.Size()))
	}
	for _, svc := range []struct{ name, path string }{{"(bench service)", b.service}, {"(reap trial's service)", b.orphans}} {
		if f, err := describeFile(svc.path); err == nil {
			b.results.Binaries = append(b.results.Binaries, report.Binary{Init: svc.name, Files: []report.File{f}})
		}
	}
}

// describeFile sizes a file (a directory: the sum of its regular files) and,
// for an ELF file, tells whether it is static and stripped.
func describeFile(path string) (report.File, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return report.File{}, err
	}
	info, err := os.Stat(real)
	if err != nil {
		return report.File{}, err
	}
	f := report.File{Path: real, Size: info.Size()}
	if info.IsDir() {
		f.Size = 0
		err := filepath.WalkDir(real, func(_ string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err == nil {
				f.Size += fi.Size()
			}
			return err
		})
		return f, err
	}
	exe, err := elf.Open(real)
	if err != nil {
		return f, nil // not ELF (a script): size only
	}
	defer func() { _ = exe.Close() }()
	f.ELF = true
	f.Static = true
	for _, prog := range exe.Progs {
		if prog.Type == elf.PT_INTERP {
			f.Static = false
		}
	}
	f.Stripped = exe.Section(".symtab") == nil
	return f, nil
}

// describe writes the report's setup section: machine, method, inits.
func (b *bench) describe(began time.Time) {
	o := b.opts
	s := &b.results.Setup
	args := append([]string{"initbench"}, os.Args[1:]...)
	s.Generated = fmt.Sprintf("Run of %s UTC, %v long: `%s`.",
		began.UTC().Format("2006-01-02 15:04"), time.Since(began).Round(time.Second), strings.Join(args, " "))

	var uts unix.Utsname
	kernel := "unknown"
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	s.Machine = []string{fmt.Sprintf("Machine: Linux %s, %s, %d CPUs, %s RAM, %s; harness built with %s.",
		kernel, cpuModel(), runtime.NumCPU(), memTotal(), debianVersion(), runtime.Version())}

	service, _ := os.Stat(b.service)
	var serviceSize int64
	if service != nil {
		serviceSize = service.Size()
	}
	s.Method = []string{
		"Each init ran as PID 1 of a fresh PID namespace: the harness forks it with `CLONE_NEWPID` and `setsid` (as a container runtime does), stdin `/dev/null`, and times it from outside. No new mount namespace, so `/proc` is the host's (none of these inits reads it).",
		fmt.Sprintf("One interleaved run: each of %d repetitions runs every trial for every init, in a seeded random order drawn afresh each repetition. K = %s.", o.reps, joinInts(b.ks)),
		fmt.Sprintf("Service (start-up, shutdown, footprint, idle): %s. It writes `R name` to a FIFO once it runs and `T name` when SIGTERM arrives, then exits. Ready = the harness has read all K `R` lines; graceful = distinct `T` lines read after PID 1 exited. When the init hands it SIGTERM ignored or blocked (which a real daemon may keep, and then never stops), `bench/tinyservice` says so first (`I name`) and the harness fails that trial.", serviceOrigin(o.service, serviceSize)),
		fmt.Sprintf("After all services are ready the harness waits %v, samples memory (K = 4 and 100), then sends SIGTERM to PID 1.", o.settle),
		fmt.Sprintf("reap: the service is `bench/service`, a static stripped Go program that speaks the same FIFO protocol. It starts a child that forks %d children which exit at once, waits until all are zombies (`waitid(WNOWAIT)`), lists their pids, and exits, which hands them all to PID 1. Start = the earlier of the service waking from reaping that child and the harness first seeing an orphan gone; end = the harness sees the last listed pid gone from `/proc` (checked every %v; re-reading PID 1's 5000-entry children list instead takes about 3 ms a read and slows the init).", o.orphans, reapPoll),
		fmt.Sprintf("idle: K = %d, 1 s after ready, over a %v window, %d repetitions; context switches summed over every thread of the init (and helpers), CPU from `/proc/PID/stat`. A window this short cannot see a wakeup rarer than one per window: the Go runtime's sysmon, idle, still wakes about once a minute (75 s window: 0.027/s for sidecar-init and go-floor).", report.IdleK, o.idle, min(o.idleReps, o.reps)),
		"sidecar-init ran with `--log-level warn`, so logging stays small; its config sets no grace, so the default applies.",
		"tini ran plain, without `-g`: it forwards SIGTERM to its child only. dumb-init and catatonit ran with their defaults.",
		"go-floor and go-floor-g are `bench/gofloor`, not inits to use: the smallest Go PID 1 (os/signal for SIGTERM and SIGCHLD, one child, a `wait4(-1)` reaper). go-floor does what tini does by default: SIGTERM to its child, exit when that child is gone. go-floor-g is graceful like sidecar-init: its child leads a process group, SIGTERM goes to the whole group, and it exits once every process is reaped. Their figures are the floor the Go runtime alone sets under sidecar-init's, from the same run.",
		"c-floor-g is `bench/cfloor`, not an init to use either: go-floor-g in C, without the Go runtime (`sigwaitinfo` for SIGTERM and SIGCHLD in its one thread, as tini does). Its figures are what a graceful stop costs on this machine; tini's are not graceful (the kernel kills its services when it exits).",
		"Single-child inits (tini, dumb-init, catatonit, go-floor, go-floor-g, c-floor-g) at K > 1: one `/bin/sh -c 'SERVICE & … & wait'` starts the K services. The shell forwards no signal, so graceful counts only the services the init itself signals before it exits.",
		"Memory: init plus the per-service helpers it needs (s6: one `s6-supervise` per service); the fan-out shell is workload, not init, and is not counted. \"RSS of the init alone\" leaves helpers out.",
	}
	s.Method = append(s.Method, b.notes...)

	for _, spec := range b.inits {
		s.Inits = append(s.Inits, report.InitSetup{
			Name: spec.name, Version: version(spec), Command: spec.command, Fanout: spec.fanout,
		})
	}
}

func (b *bench) write() error {
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return fmt.Errorf("make output directory: %w", err)
	}
	const rawName = "benchmarks-raw.csv"
	var raw bytes.Buffer
	if err := report.WriteCSV(&raw, b.results.Samples); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.opts.out, rawName), raw.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write raw samples: %w", err)
	}
	var doc bytes.Buffer
	if err := report.Markdown(&doc, b.results, rawName); err != nil {
		return err
	}
	path := filepath.Join(b.opts.out, "benchmarks.md")
	if err := os.WriteFile(path, doc.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "initbench: wrote %s and %s\n", path, rawName)
	return nil
}

// version is the Debian package version, or for sidecar-init the Go version
// it was built with and a hash of the binary (it has no release yet).
func version(spec initSpec) string {
	if spec.debPackage != "" {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", spec.debPackage).Output()
		if err != nil {
			return "unknown"
		}
		return "Debian " + string(out)
	}
	data, err := os.ReadFile(spec.exe)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(data)
	v := "sha256 " + hex.EncodeToString(sum[:6])
	if info, err := buildinfo.ReadFile(spec.exe); err == nil {
		v = info.GoVersion + ", " + v
		for _, setting := range info.Settings {
			if setting.Key == "vcs.revision" {
				v += ", commit " + setting.Value[:min(12, len(setting.Value))]
			}
		}
	}
	return v
}

func cpuModel() string {
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		return v
	}
	return "unknown CPU"
}

func memTotal() string {
	v := procField("/proc/meminfo", "MemTotal")
	var kib int64
	if _, err := fmt.Sscanf(v, "%d kB", &kib); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

func debianVersion() string {
	data, err := os.ReadFile("/etc/debian_version")
	if err != nil {
		return "not Debian"
	}
	return "Debian " + strings.TrimSpace(string(data))
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ", ")
}

// serviceOrigin names the lifecycle trials' service, with its size, for the report.
func serviceOrigin(given string, size int64) string {
	if given != "" {
		return fmt.Sprintf("`%s` (%d bytes), given with -service", given, size)
	}
	return fmt.Sprintf("`bench/tinyservice` (%d bytes), static and stripped C without libc, eight system calls at most: the \"tiny static program\" of issue 7. A Go service (about 1 ms of CPU to start, its runtime) or a static glibc one (as much here: glibc's start-up runs CPUID about a hundred times, each a VM exit) would add the same cost to every init's figures and pull every ratio towards 1", size)
}
