package supervisor

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// A liveness probe asks a ready daemon, liveness_interval after each attempt ended, whether
// it still does its job: a readiness probe stops once the daemon is ready, so a guard that hangs while it
// holds its port (a deadlocked proxy) would otherwise count as healthy for ever.
// liveness_failures failures in a row make it unresponsive: it gets its stop signal and
// grace, then SIGKILL, as Kubernetes does on a failed liveness probe, and its death goes
// to its restart policy as a failure.

// startLiveness arms the first liveness attempt of a daemon that just became ready.
func (s *Supervisor) startLiveness(d *daemon) {
	if !d.cfg.Liveness.IsSet() {
		return
	}
	now := time.Now()
	d.liveFailures, d.lastLiveErr, d.liveUpTo = 0, nil, now
	d.liveAt = now.Add(d.cfg.LivenessInterval)
	s.armTimer(now)
}

// livenessProbe starts one liveness attempt, bounded by liveness_timeout.
func (s *Supervisor) livenessProbe(d *daemon, now time.Time) {
	d.liveAt = time.Time{}
	if d.liveInFlight > 0 {
		// The last attempt is still blocked (a stat on a hung mount, an exec probe stuck in
		// the kernel past its SIGKILL): no second one beside it.
		s.livenessFailed(d, errors.New("the previous attempt has not returned yet (a hung filesystem or resolver, or a probe stuck in the kernel?)"), now)
		return
	}
	s.liveAttempts++
	d.liveAttempt, d.liveInFlight = s.liveAttempts, 1 // (before attempt: a spawn failure reports at once)
	d.liveDeadline = now.Add(d.cfg.LivenessTimeout)
	s.attempt(d, d.cfg.Liveness, probeResult{d: d, pid: d.pid, liveness: true, attempt: d.liveAttempt}, d.cfg.LivenessTimeout, now)
	s.armTimer(now)
}

// onLivenessResult counts a liveness attempt's outcome. One for an attempt given up at its
// timeout, for an earlier run, or for a daemon no longer running is stale and dropped.
func (s *Supervisor) onLivenessResult(r probeResult, now time.Time) {
	d := r.d
	d.liveInFlight-- // stale or not, that attempt is back
	if r.attempt != d.liveAttempt {
		return
	}
	d.liveAttempt, d.liveDeadline = 0, time.Time{}
	if d.machine.Current() != fsm.DaemonRunning || r.pid != d.pid {
		return
	}
	if !r.ok {
		s.livenessFailed(d, r.err, now)
		return
	}
	if d.liveFailures > 0 {
		s.log.Info("liveness probe passed again", zlog.String("daemon", d.cfg.Name),
			zlog.String("probe", d.cfg.Liveness.String()), zlog.Int("failures_before", d.liveFailures))
	}
	d.liveFailures, d.lastLiveErr, d.liveUpTo = 0, nil, now
	d.liveAt = now.Add(d.cfg.LivenessInterval)
	s.armTimer(now)
}

// livenessTimedOut gives up the attempt under way at its liveness_timeout: a failure. An
// exec probe still running is SIGKILLed (its reap is then stale); a dial or a stat still
// blocked reports later, stale too. (One that ended as the deadline came was reaped, and
// its outcome counted, at the top of onTimer.)
func (s *Supervisor) livenessTimedOut(d *daemon, now time.Time) {
	for pid, probe := range s.execProbes {
		if probe.d == d && probe.liveness {
			if err := s.killProbe(pid); err != nil {
				s.log.Error("could not kill a liveness probe", zlog.String("daemon", d.cfg.Name), zlog.Int("pid", pid), zlog.Error(err))
			}
		}
	}
	d.liveAttempt, d.liveDeadline = 0, time.Time{}
	s.livenessFailed(d, fmt.Errorf("no answer within liveness_timeout %v", d.cfg.LivenessTimeout), now)
}

// livenessFailed counts a failed attempt: the next one after liveness_interval, or, at
// liveness_failures in a row, the daemon is unresponsive and is stopped.
func (s *Supervisor) livenessFailed(d *daemon, err error, now time.Time) {
	if s.exitedUnhandled(d.pid) {
		// The daemon is gone and its SIGCHLD not handled yet (or its reap is later in this
		// batch): the probe failed because it died, and its reap says how. Stopping it as
		// unresponsive would make a death of its own, an exit 0 say, a liveness failure.
		if ce := s.log.Check(zapcore.DebugLevel, "liveness probe failed on a daemon that has exited: its reap decides"); ce != nil {
			ce.Write(zlog.String("daemon", d.cfg.Name), zlog.Error(err))
		}
		d.liveAt = now.Add(d.cfg.LivenessInterval) // (dropped at the reap)
		s.armTimer(now)
		return
	}
	d.liveFailures++
	d.lastLiveErr = err
	s.log.Warn("liveness probe failed", zlog.String("daemon", d.cfg.Name), zlog.String("probe", d.cfg.Liveness.String()),
		zlog.Int("failures", d.liveFailures), zlog.Int("liveness_failures", d.cfg.LivenessFailures), zlog.Error(err))
	if d.liveFailures < d.cfg.LivenessFailures {
		d.liveAt = now.Add(d.cfg.LivenessInterval)
		s.armTimer(now)
		return
	}
	reason := fmt.Sprintf("liveness probe failed %d times in a row (%s): %v", d.liveFailures, d.cfg.Liveness.String(), err)
	stop := s.beginStop(d, syscall.SIGTERM, now)
	s.fireDaemon(d, fsm.DaemonLivenessFailed, zapcore.ErrorLevel, detail{signal: procs.SignalName(stop), reason: reason})
	s.armTimer(now)
}

// takeOverStop: a shutdown or an operator stops a daemon already being stopped as
// unresponsive. Its stop signal went out and its grace stands; its death becomes an
// expected one (died, not fail), so the restart policy is not asked.
func (s *Supervisor) takeOverStop(d *daemon, reason string) {
	d.awaitingStop = false
	s.fireDaemon(d, fsm.DaemonStop, zapcore.InfoLevel, detail{reason: reason + " (its stop as unresponsive was under way: its grace stands)"})
	if g := d.group(d.pid); g != nil && !g.killedAt.IsZero() {
		// Its grace had run out already: the state says SIGKILL went, as it would have.
		s.fireDaemon(d, fsm.DaemonKill, zapcore.WarnLevel, detail{signal: "SIGKILL", reason: "grace expired before the " + reason})
	}
}

// unresponsiveStatus is the status a daemon stopped as unresponsive counts with in the
// supervisor's exit status: its own, or, when it answered the stop with 0, what the stop
// signal would have given had it killed it (143 for SIGTERM). The stop was for a failure,
// and a status 0 would hide it from whatever reads the container's exit (a Job, a
// restartPolicy OnFailure).
func unresponsiveStatus(d *daemon, e procs.Exit) int {
	if code := e.Code(); code != 0 {
		return code
	}
	return 128 + int(stopSignalOf(d, syscall.SIGTERM))
}
