// Package procfs reads the few /proc figures the init benchmark reports: memory
// (status, smaps_rollup), context switches, CPU time, and a process's children.
//
// Parsing is split from reading so the parsers can be tested on fixture text.
// Memory figures are in KiB, as the kernel prints them ("kB" in /proc is KiB).
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Status holds the fields of /proc/PID/status (or /proc/PID/task/TID/status)
// that the benchmark uses.
type Status struct {
	Name            string
	RSS             int64 // VmRSS, KiB
	RSSAnon         int64 // RssAnon, KiB: heap, stacks and other private anonymous pages
	HWM             int64 // VmHWM, KiB: peak RSS
	VoluntaryCtxt   int64 // voluntary_ctxt_switches: the task slept and was woken
	InvoluntaryCtxt int64 // nonvoluntary_ctxt_switches: the task was preempted
}

// CtxtSwitches is how often the task was switched out. An idle task that never
// wakes up has a count that does not move.
func (s Status) CtxtSwitches() int64 { return s.VoluntaryCtxt + s.InvoluntaryCtxt }

// ParseStatus parses the text of /proc/PID/status. Every field of Status must
// be present: a kernel without RssAnon (before 4.5) is an error, not a zero.
func ParseStatus(text []byte) (Status, error) {
	var s Status
	targets := map[string]*int64{
		"VmRSS":                      &s.RSS,
		"RssAnon":                    &s.RSSAnon,
		"VmHWM":                      &s.HWM,
		"voluntary_ctxt_switches":    &s.VoluntaryCtxt,
		"nonvoluntary_ctxt_switches": &s.InvoluntaryCtxt,
	}
	seen := 0
	nameSeen := false
	for line := range strings.Lines(string(text)) {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if key == "Name" {
			s.Name = value
			nameSeen = true
			continue
		}
		target, wanted := targets[key]
		if !wanted {
			continue
		}
		n, err := parseNumber(value)
		if err != nil {
			return Status{}, fmt.Errorf("status field %s: %w", key, err)
		}
		*target = n
		seen++
	}
	if seen != len(targets) || !nameSeen {
		return Status{}, fmt.Errorf("status: found %d of the %d fields wanted (Name, VmRSS, RssAnon, VmHWM, ctxt switches)", seen, len(targets))
	}
	return s, nil
}

// ParsePSS returns the Pss line of /proc/PID/smaps_rollup, in KiB.
func ParsePSS(text []byte) (int64, error) {
	for line := range strings.Lines(string(text)) {
		key, value, ok := strings.Cut(line, ":")
		if ok && key == "Pss" {
			n, err := parseNumber(strings.TrimSpace(value))
			if err != nil {
				return 0, fmt.Errorf("smaps_rollup Pss: %w", err)
			}
			return n, nil
		}
	}
	return 0, errors.New("smaps_rollup: no Pss line")
}

// parseNumber parses "1234" or "1234 kB".
func parseNumber(value string) (int64, error) {
	value = strings.TrimSuffix(value, " kB")
	return strconv.ParseInt(strings.TrimSpace(value), 10, 64)
}

// ParseCPUTicks returns utime+stime from the text of /proc/PID/stat, in clock
// ticks (sysconf(_SC_CLK_TCK), 100 on Linux). For a process (not a task) this
// includes threads that have already exited.
//
// The command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')' (proc(5)).
func ParseCPUTicks(text []byte) (int64, error) {
	end := bytes.LastIndexByte(text, ')')
	if end < 0 {
		return 0, errors.New("stat: no ')' after the command name")
	}
	// After ")": field 3 (state) is rest[0]; utime is field 14, stime 15.
	rest := strings.Fields(string(text[end+1:]))
	const utimeIndex, stimeIndex = 14 - 3, 15 - 3
	if len(rest) <= stimeIndex {
		return 0, fmt.Errorf("stat: %d fields after the command name, want more than %d", len(rest), stimeIndex)
	}
	utime, err := strconv.ParseInt(rest[utimeIndex], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	stime, err := strconv.ParseInt(rest[stimeIndex], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return utime + stime, nil
}

// ParseChildren parses /proc/PID/task/TID/children: pids separated by spaces.
func ParseChildren(text []byte) ([]int, error) {
	fields := strings.Fields(string(text))
	pids := make([]int, 0, len(fields))
	for _, f := range fields {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("children: %w", err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Footprint is the memory of one process or the sum over several, in KiB.
type Footprint struct {
	RSS, RSSAnon, PSS, HWM int64
}

// Add returns the sum of two footprints. Summing RSS counts shared pages once
// per process, as `ps` would; PSS divides them fairly and sums exactly.
func (f Footprint) Add(g Footprint) Footprint {
	return Footprint{RSS: f.RSS + g.RSS, RSSAnon: f.RSSAnon + g.RSSAnon, PSS: f.PSS + g.PSS, HWM: f.HWM + g.HWM}
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(text)
}

// ReadFootprint reads the memory of one process.
func ReadFootprint(pid int) (Footprint, error) {
	status, err := ReadStatus(pid)
	if err != nil {
		return Footprint{}, err
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Footprint{}, err
	}
	pss, err := ParsePSS(rollup)
	if err != nil {
		return Footprint{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return Footprint{RSS: status.RSS, RSSAnon: status.RSSAnon, PSS: pss, HWM: status.HWM}, nil
}

// ReadCPUTicks reads utime+stime of a whole process (all its threads).
func ReadCPUTicks(pid int) (int64, error) {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseCPUTicks(text)
}

// Tasks lists the thread ids of a process.
func Tasks(pid int) ([]int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a task directory
		}
		tids = append(tids, tid)
	}
	return tids, nil
}

// TaskCtxtSwitches maps each live thread of pid to its context-switch count.
// /proc/PID/status alone would show the main thread only, and a Go program
// does most of its waking on other threads.
func TaskCtxtSwitches(pid int) (map[int]int64, error) {
	tids, err := Tasks(pid)
	if err != nil {
		return nil, err
	}
	counts := make(map[int]int64, len(tids))
	for _, tid := range tids {
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited since the listing
		}
		if err != nil {
			return nil, err
		}
		status, err := ParseStatus(text)
		if err != nil {
			return nil, fmt.Errorf("task %d of %d: %w", tid, pid, err)
		}
		counts[tid] = status.CtxtSwitches()
	}
	return counts, nil
}

// Children lists the children of every thread of pid, zombies included (a
// zombie stays on its parent's list until it is reaped). A multi-threaded
// init's children hang off whichever thread forked them, so all are read.
func Children(pid int) ([]int, error) {
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("pid %d: no /proc/%d/task/*/children (gone, or a kernel without CONFIG_PROC_CHILDREN)", pid, pid)
	}
	var all []int
	for _, path := range paths {
		text, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited since the listing
		}
		if err != nil {
			return nil, err
		}
		pids, err := ParseChildren(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, pids...)
	}
	return all, nil
}
