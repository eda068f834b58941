package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// Readiness probe pacing: the first attempt at once, then 20 ms doubling to 1 s.
const (
	probeFirstInterval = 20 * time.Millisecond
	probeMaxInterval   = time.Second
	probeDialTimeout   = time.Second
)

// probeResult is the outcome of one probe attempt for the daemon incarnation with pid. A
// liveness attempt carries its number (attempt), which tells it from an earlier one given
// up at its liveness_timeout.
type probeResult struct {
	d        *daemon
	pid      int
	ok       bool
	err      error
	liveness bool
	attempt  uint64
}

// execProbe is a running exec probe: its daemon, the incarnation (pid) it probes, and for
// a liveness probe its attempt.
type execProbe struct {
	d        *daemon
	forPid   int
	liveness bool
	attempt  uint64
}

// depSettled: the dependency is not on its way back; it is ready (running), done for good
// (exited, given up), or held by an operator only after it had ended (a oneshot that
// finished: done; any other: heldAfterEnd). A restart waits for that, not for readiness: a
// dependency that will not come back (a task that finished) must not hold its dependents'
// restarts for ever, and neither may a stop that only keeps such a task out of health.
func depSettled(dep *daemon) bool {
	return dep.machine.Current() == fsm.DaemonRunning || dep.machine.Done() || dep.done() ||
		(dep.machine.Current() == fsm.DaemonStopped && dep.heldAfterEnd)
}

// depReady: the dependency is ready (running, or a oneshot that finished), as a first
// start waits for.
func depReady(dep *daemon) bool { return dep.machine.Current() == fsm.DaemonRunning || dep.done() }

// done says the daemon is a oneshot whose last run succeeded, and no operator or policy has
// begun another: for `after` and for health, it is ready. Held by an operator's stop
// afterwards, it stays done: the stop takes nothing back of the work it did.
func (d *daemon) done() bool {
	state := d.machine.Current()
	return d.finished && (state == fsm.DaemonExited || state == fsm.DaemonStopped)
}

// depsSettled says no daemon this one comes `after` holds a due restart back.
func (d *daemon) depsSettled() bool { return d.depsAll(depSettled) }

// depsReady says every daemon this one comes `after` is ready.
func (d *daemon) depsReady() bool { return d.depsAll(depReady) }

// depsAll says ok holds for every daemon this one comes `after` (the loop asks at every
// turn while a daemon waits: no allocation).
func (d *daemon) depsAll(ok func(*daemon) bool) bool {
	for _, dep := range d.deps {
		if !ok(dep) {
			return false
		}
	}
	return true
}

// depsNot names the daemons this one comes `after` for which ok does not hold, for status.
func (d *daemon) depsNot(ok func(*daemon) bool) []string {
	var names []string
	for _, dep := range d.deps {
		if !ok(dep) {
			names = append(names, dep.cfg.Name)
		}
	}
	return names
}

// beginStarting follows a successful spawn: a daemon without a probe is ready at once;
// one with a probe gets its first attempt now and its ready_timeout armed.
func (s *Supervisor) beginStarting(d *daemon, now time.Time) {
	if d.cfg.Oneshot {
		// Starting until it exits: status 0 makes it ready (done). ready_timeout, when set,
		// bounds the run.
		d.readyDeadline = time.Time{}
		if d.cfg.ReadyTimeout > 0 {
			d.readyDeadline = now.Add(d.cfg.ReadyTimeout)
			s.armTimer(now)
		}
		return
	}
	if !d.cfg.Ready.IsSet() {
		s.becomeReady(d)
		return
	}
	d.probeInterval, d.lastProbeErr = probeFirstInterval, nil
	d.readyDeadline = now.Add(d.cfg.ReadyTimeout)
	s.probe(d, now)
	s.armTimer(now)
}

// probe starts one attempt. tcp and file attempts run in a goroutine and report on
// probeResults; an exec probe is a process the loop spawns and reaps like any other.
func (s *Supervisor) probe(d *daemon, now time.Time) {
	d.probing = true
	d.probeFor = d.pid
	s.attempt(d, d.cfg.Ready, probeResult{d: d, pid: d.pid}, probeDialTimeout, now)
}

// attempt runs one attempt of probe for d's live run; r says which (readiness, or a
// liveness attempt) and comes back with the outcome on probeResults, or from the exec
// probe's reap.
func (s *Supervisor) attempt(d *daemon, probe config.Probe, r probeResult, dialTimeout time.Duration, now time.Time) {
	if len(probe.Exec) > 0 {
		// As the daemon runs: its user, environment and directory.
		spec := procs.Spec{Argv: probe.Exec, Env: d.env, Dir: d.cfg.Dir, Credential: d.cfg.Credential}
		// Its output labelled like the daemon's ("NAME.probe"), so log = "json" keeps the
		// container's output JSON lines.
		afterSpawn, _ := s.labelOutput(d, d.cfg.Name+config.ProbeLabelSuffix, &spec) // its leftovers die with it
		pid, err := procs.Spawn(spec, s.opts.Stdin)
		afterSpawn()
		if err != nil {
			last, msg := d.lastProbeErr, "readiness probe cannot be executed; the daemon cannot become ready"
			if r.liveness {
				last, msg = d.lastLiveErr, "liveness probe cannot be executed; each attempt fails, and the daemon will be stopped as unresponsive"
			}
			if last == nil || last.Error() != err.Error() {
				// Not a "not ready yet": the probe itself cannot run, and every retry will
				// say the same; once, where the operator looks.
				s.log.Warn(msg, zlog.String("daemon", d.cfg.Name), zlog.Error(err))
			}
			r.err = err
			s.onProbeResult(r, now)
			return
		}
		s.forgetGroupID(pid) // the probe leads a group of that id now
		s.execProbes[pid] = execProbe{d: d, forPid: r.pid, liveness: r.liveness, attempt: r.attempt}
		return
	}
	go func(r probeResult) {
		switch {
		case probe.TCP != "":
			conn, err := net.DialTimeout("tcp", probe.TCP, dialTimeout)
			if err == nil {
				_ = conn.Close()
			}
			r.ok, r.err = err == nil, err
		case probe.File != "":
			_, err := os.Stat(probe.File)
			r.ok, r.err = err == nil, err
		}
		s.probeResults <- r // buffered: one outstanding attempt per daemon and kind
	}(r)
}

// stopProbing ends the daemon's readiness and liveness checks: its incarnation died, ran
// out of ready_timeout, is unresponsive or is being stopped, or the shutdown began. No
// more attempts and no deadlines; a result still on its way is stale (it no longer matches
// probeFor or liveAttempt), and the exec probes' process groups are SIGKILLed (reaped like
// any child).
func (s *Supervisor) stopProbing(d *daemon) {
	d.readyDeadline, d.probeAt = time.Time{}, time.Time{}
	d.probing, d.probeFor = false, 0
	d.liveAt, d.liveDeadline, d.liveAttempt = time.Time{}, time.Time{}, 0
	for pid, probe := range s.execProbes {
		if probe.d == d {
			if err := s.killProbe(pid); err != nil {
				s.log.Error("could not kill a probe", zlog.String("daemon", d.cfg.Name), zlog.Error(err))
			}
		}
	}
}

// killProbe SIGKILLs a running exec probe: its process group, and the probe itself at its
// pid, as signalGroup does for a daemon: a probe that moved itself to another process group
// (setpgid) is not reached by its own group's signal, and unkilled it would never be reaped,
// holding every next liveness attempt and the supervisor's exit for ever. Its pid cannot
// have been reused: it is our child, not reaped yet. One reaped in the drain being handled
// is dead already, and its pid free again: left alone (its reap kills what it left).
func (s *Supervisor) killProbe(pid int) error {
	if reapedIn(s.handling, pid) {
		return nil
	}
	_, err := procs.SignalGroup(pid, syscall.SIGKILL)
	if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) && err == nil {
		err = kerr
	}
	return err
}

// onProbeResult: ready, or another attempt after a longer wait. A result for an earlier
// incarnation of the daemon, or for one no longer starting, is stale and dropped.
func (s *Supervisor) onProbeResult(r probeResult, now time.Time) {
	if r.liveness {
		s.onLivenessResult(r, now)
		return
	}
	d := r.d
	if r.pid != d.probeFor {
		return
	}
	d.probing = false
	if d.machine.Current() != fsm.DaemonStarting || r.pid != d.pid {
		return
	}
	if r.ok && s.exitedUnhandled(d.pid) {
		// It passed for a run that has exited, its death not handled yet (an exit just after
		// onTimer's reap, or an exec probe reaped before its daemon in one wait4 batch): a
		// daemon that exits before it is ready is not ready, and its reap decides (its
		// dependents cancelled, not spawned on a dead daemon).
		if ce := s.log.Check(zapcore.DebugLevel, "readiness probe passed on a daemon that has exited: its reap decides"); ce != nil {
			ce.Write(zlog.String("daemon", d.cfg.Name))
		}
		return
	}
	if r.ok {
		s.becomeReady(d)
		return
	}
	d.lastProbeErr = r.err
	if ce := s.log.Check(zapcore.DebugLevel, "not ready yet"); ce != nil {
		ce.Write(zlog.String("daemon", d.cfg.Name), zlog.String("probe", d.cfg.Ready.String()), zlog.Error(r.err))
	}
	d.probeAt = now.Add(d.probeInterval)
	d.probeInterval = min(2*d.probeInterval, probeMaxInterval)
	s.armTimer(now)
}

// exitedUnhandled says the run with pid has exited and its death is not handled yet: a
// zombie (procs.Exited), or reaped in the drain being handled. wait4(-1) hands the
// calling thread's children first, oldest first, then the other threads': an exec probe
// forked on the thread that now reaps comes before its daemon forked on another, and by
// the probe's onExit, waitid no longer sees the daemon's zombie. (Only the drain being
// handled: an earlier drain's pids are handled, and may be new processes' by now.)
func (s *Supervisor) exitedUnhandled(pid int) bool {
	return reapedIn(s.handling, pid) || procs.Exited(pid)
}

// reapedIn says pid is among exits.
func reapedIn(exits []procs.Exit, pid int) bool {
	for _, e := range exits {
		if e.Pid == pid {
			return true
		}
	}
	return false
}

func (s *Supervisor) becomeReady(d *daemon) {
	d.readyDeadline, d.probeAt = time.Time{}, time.Time{}
	reason := "no readiness probe"
	if d.cfg.Ready.IsSet() {
		reason = "probe passed: " + d.cfg.Ready.String()
	}
	s.fireDaemon(d, fsm.DaemonReady, zapcore.InfoLevel, detail{reason: reason})
	s.startLiveness(d)
}

// notReadyInTime: the probe did not pass within ready_timeout. That is a failed start: the
// group is SIGKILLed, and its reaped death (a failure) goes to the restart policy.
func (s *Supervisor) notReadyInTime(d *daemon, now time.Time) {
	fields := []zlog.Field{zlog.String("daemon", d.cfg.Name), zlog.String("probe", d.cfg.Ready.String()),
		zlog.Duration("ready_timeout", d.cfg.ReadyTimeout)}
	if d.lastProbeErr != nil {
		fields = append(fields, zlog.String("last_probe_error", d.lastProbeErr.Error()))
	}
	msg := "daemon not ready within ready_timeout: killing it; its restart policy decides what follows"
	if d.cfg.Oneshot {
		msg = "oneshot not finished within ready_timeout: killing it; its restart policy decides what follows"
	}
	s.log.Error(msg, fields...)
	s.stopProbing(d)
	s.signalGroup(d, syscall.SIGKILL)
	s.armTimer(now)
}

// cancelOrphanedStarts: a pending daemon whose `after` daemon is done for good (exited or
// given up) can never start; say so, rather than wait for ever.
func (s *Supervisor) cancelOrphanedStarts() {
	for _, d := range s.daemons {
		if d.machine.Current() != fsm.DaemonPending || d.startAsked {
			continue // (an operator's start does not wait for `after` daemons)
		}
		for _, dep := range d.deps {
			if dep.machine.Done() && !dep.done() {
				d.cancelledFor = dep
				// What status shows in LAST EXIT: it never ran, and why.
				d.lastExit = exitNote{kind: exitCancelled, dependency: dep.cfg.Name, dependencyState: dep.machine.Current()}
				s.log.Error("not starting a daemon: a daemon it comes after is done",
					zlog.String("daemon", d.cfg.Name), zlog.String("dependency", dep.cfg.Name), zlog.String("dependency_state", string(dep.machine.Current())))
				s.fireDaemon(d, fsm.DaemonCancel, zapcore.ErrorLevel, detail{reason: dep.cfg.Name + " is " + string(dep.machine.Current())})
				break
			}
		}
	}
}

// notReady lists the daemons that should be running and are not ready (held stopped ones
// are not expected to run).
func (s *Supervisor) notReady() []string {
	var out []string
	for _, d := range s.daemons {
		if !d.readyOrHeld() {
			out = append(out, fmt.Sprintf("%s (%s)", d.cfg.Name, d.machine.Current()))
		}
	}
	return out
}

func (d *daemon) readyOrHeld() bool {
	state := d.machine.Current()
	return state == fsm.DaemonRunning || state == fsm.DaemonStopped || d.done()
}

// checkAllReady keeps the ready file to what `health` answers: written (and "every daemon
// is ready" logged) when every daemon that should run becomes ready, removed (and logged)
// when one stops being so, a guard that died say, so that nothing reading the file is told
// "ready" of a bundle that is not. The loop only says which (readyFileWorker does the
// file's system calls, which a hung mount can hold for good). It runs after every event,
// so it must not allocate unless readiness changed.
func (s *Supervisor) checkAllReady() {
	ready := true
	for _, d := range s.daemons {
		if !d.readyOrHeld() {
			ready = false
			break
		}
	}
	if ready == s.allReady {
		return
	}
	s.allReady = ready
	// The first time is a milestone of the start-up, at info. Later changes follow deaths and
	// restarts that are logged already (a death at warn): at debug, or a crash loop would
	// log two more lines a cycle.
	level := zapcore.DebugLevel
	if !s.wasAllReady {
		level, s.wasAllReady = zapcore.InfoLevel, true
	}
	if !ready {
		if ce := s.log.Check(zapcore.DebugLevel, "not every daemon is ready any more"); ce != nil {
			var notReady []string
			for _, d := range s.daemons {
				if !d.readyOrHeld() {
					notReady = append(notReady, d.cfg.Name)
				}
			}
			ce.Write(zlog.Strings("not_ready", notReady))
		}
		s.readyFile.set(false)
		return
	}
	if ce := s.log.Check(level, "every daemon is ready"); ce != nil {
		held := s.held() // counted apart, as `health` does
		fields := []zlog.Field{zlog.Int("ready", len(s.daemons)-len(held))}
		if len(held) > 0 {
			fields = append(fields, zlog.Strings("held", held))
		}
		ce.Write(fields...)
	}
	// No debug.FreeOSMemory here: without a readiness probe a daemon is "ready" the moment
	// it is spawned, so a forced collection takes CPU the daemons want while they start and
	// holds up the ready file (0.6 ms of start-up at K = 4, for about 0.5 MiB of RssAnon at
	// K = 100; measured in commit e718166).
	s.readyFile.set(true)
}
