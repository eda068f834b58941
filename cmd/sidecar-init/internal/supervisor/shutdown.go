package supervisor

import (
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

func (s *Supervisor) onStopSignal(sig syscall.Signal) {
	s.dropRestartsSecondHalves()
	// Reap first: a daemon that is already a zombie died on its own before the stop signal
	// was acted on, and its status must count (select picks among ready channels at random,
	// so the SIGCHLD may still be waiting behind this signal). Except a death of this very
	// signal: one signal sent to every process at once (systemd's KillMode=control-group,
	// `kill -TERM` of the whole tree) reaches the daemons too, and their deaths of it are
	// the stop's, not failures; counting them made the exit status 143 or 0 by chance.
	if !s.stopAsked {
		s.arrivingStop = sig
	}
	s.reap()
	s.arrivingStop = 0
	name := procs.SignalName(sig)
	if s.stopAsked {
		if s.machine.Current() == fsm.SupervisorKilling {
			// A third one: everything was SIGKILLed already; send it again, nothing more.
			s.log.Info("stop signal while every group is being killed", zlog.String("signal", name))
			s.killAll("another stop signal")
			return
		}
		if _, ok := s.fireSupervisor(fsm.SupervisorForce, zlog.String("signal", name)); ok {
			s.killAll("second stop signal")
		}
		return
	}
	s.stopAsked = true
	if s.shuttingDown() {
		// A crash policy that tears the bundle down began this shutdown (perhaps in the reap
		// just above): this is the first stop signal, and the graces stand.
		s.log.Info("stop signal during a shutdown already under way", zlog.String("signal", name))
		return
	}
	if _, ok := s.fireSupervisor(fsm.SupervisorStop, zlog.String("signal", name)); ok {
		s.beginShutdown(sig)
	}
}

// dropRestartsSecondHalves: a stop signal came. The second half of an operator's restart
// goes before the reap that would run it: a run spawned there would only be stopped again
// (a daemon's start-up work done inside a shutdown).
func (s *Supervisor) dropRestartsSecondHalves() {
	for _, d := range s.daemons {
		if d.afterStop == afterStopStart || d.afterStop == afterStopStartOnly {
			d.afterStop = afterStopNothing
		}
	}
}

// beginShutdown cancels daemons not yet spawned and pending restarts, sends every live
// daemon its stop signal and arms its grace; process groups left behind by daemons that
// already died get the same.
func (s *Supervisor) beginShutdown(sig syscall.Signal) {
	now := time.Now()
	s.readyFile.set(false)
	s.stopSignal = sig
	if s.opts.ReverseStop {
		s.reverseDeadline = now.Add(s.largestGrace())
	}
	for _, d := range s.daemons {
		d.afterStop = afterStopNothing
		s.dropAskedStart(d)
		s.stopProbing(d) // nothing becomes ready any more
		switch d.machine.Current() {
		case fsm.DaemonPending, fsm.DaemonBackoff:
			// Cancelled; what its runs left in their groups is stopped below.
			d.restartAt = time.Time{}
			s.fireDaemon(d, fsm.DaemonCancel, zapcore.InfoLevel, detail{reason: "shutdown"})
		case fsm.DaemonStarting, fsm.DaemonRunning:
			if s.opts.ReverseStop && s.anyDependentLive(d) {
				d.awaitingStop = true // its dependents go first
				continue
			}
			s.stopDaemon(d, sig, now, "shutdown")
		case fsm.DaemonUnresponsive:
			// Being stopped already: the shutdown takes that stop over, grace and all.
			s.takeOverStop(d, "shutdown")
		case fsm.DaemonTerminating, fsm.DaemonKilled:
			// An operator's stop already under way: its grace stands.
		}
	}
	for _, d := range s.daemons {
		s.stopOrHoldGroups(d, sig, now)
	}
	s.armTimer(now)
}

// stopOrHoldGroups stops what the dead daemon's runs left in their process groups, or, in a
// reverse-order stop, holds it back while a daemon after it still has processes: a server
// its start script forked is the dependency its dependents use, and it waits for them like
// a live one (stopAwaiting releases it).
func (s *Supervisor) stopOrHoldGroups(d *daemon, sig syscall.Signal, now time.Time) {
	if s.opts.ReverseStop && !d.live() && d.groupsOpen() && s.anyDependentLive(d) {
		d.awaitingStop = true
	}
	if !d.awaitingStop {
		s.stopGroups(d, sig, now)
	}
}

// stopGroups sends the stop signal to what the daemon's runs left in their process groups
// and arms each one's grace: at the start of the shutdown, and for a daemon that dies on
// its own during it (one a reverse-order shutdown held back). A live daemon's own group is
// stopDaemon's; a grace or the looks after a SIGKILL already under way stand.
func (s *Supervisor) stopGroups(d *daemon, sig syscall.Signal, now time.Time) {
	d.pruneGroups()
	stop := stopSignalOf(d, sig)
	for i := range d.groups {
		g := &d.groups[i]
		if (g.pgid == d.pid && d.live()) || !g.deadline.IsZero() {
			continue
		}
		msg := "stopping processes an earlier run of the daemon left in its process group"
		if g.pgid == d.pid {
			msg = "stopping processes left in an exited daemon's process group"
		}
		s.log.Warn(msg, zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", g.pgid), zlog.String("signal", procs.SignalName(stop)))
		s.sendStop(d, g.pgid, stop)
		g.deadline, g.killedAt = s.graceEnd(d, now), time.Time{}
	}
}

// graceEnd is when a stop begun now gets SIGKILL: the daemon's grace, but never past the end
// of a reverse-order shutdown (one overall deadline, the largest grace).
func (s *Supervisor) graceEnd(d *daemon, now time.Time) time.Time {
	end := now.Add(d.cfg.Grace)
	if !s.reverseDeadline.IsZero() && s.reverseDeadline.Before(end) {
		end = s.reverseDeadline
	}
	return end
}

// sendStop sends a stop signal to one of the daemon's process groups, then SIGCONT, as s6,
// runit and systemd do: a stopped process (SIGSTOP, a debugger, a job-control stop) keeps
// its stop signal pending through the whole grace and dies of the SIGKILL instead.
func (s *Supervisor) sendStop(d *daemon, pgid int, stop syscall.Signal) {
	if stop == syscall.SIGCONT || stop == syscall.SIGKILL {
		s.signalPgid(d, pgid, stop)
		return
	}
	s.signalPgid(d, pgid, stop, syscall.SIGCONT)
}

// signalPgid sends one of the daemon's process groups sigs, in order, and says whether
// anyone was in it. The live daemon's own group goes through signalGroup, which also
// reaches a daemon that left it. Two signals at once, a stop and its SIGCONT, cost one
// look at who is in the group, not two.
func (s *Supervisor) signalPgid(d *daemon, pgid int, sigs ...syscall.Signal) bool {
	if pgid == d.pid && d.live() {
		return s.signalGroup(d, sigs...)
	}
	if procs.GroupReused(pgid) {
		// Its leader was reaped, and the group of that id now is another (led by a new
		// process, or in another session): the id was reused after the group emptied
		// unseen. Nobody of this daemon's is in it.
		s.log.Info("process group id reused by a process that is not the daemon's: not signalled, forgotten",
			zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", pgid))
		return false
	}
	someone := false
	for _, sig := range sigs {
		delivered, err := procs.SignalGroup(pgid, sig)
		if err != nil {
			s.log.Error("could not signal a daemon's process group", zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", pgid),
				zlog.String("signal", procs.SignalName(sig)), zlog.Error(err))
		}
		someone = someone || delivered || err != nil
	}
	return someone
}

// After a SIGKILL, a group that still holds processes is looked at every groupRecheck,
// for at most killWait. Its last process is normally a child of ours (or re-parented to
// us), and that reap closes the group; but one whose parent lives outside the group is
// reaped by that parent, or stays a zombie if the parent never waits: the group empties
// without an event here, or never does. Without these looks such a group would hold a
// shutdown for ever; past killWait it is given up (as PID 1, the sweep that follows kills
// the parent, and the zombie comes to us).
const (
	groupRecheck = 100 * time.Millisecond
	killWait     = time.Second
)

// killGroup SIGKILLs one of the daemon's process groups: when its grace runs out (the first
// time, logged, and for the daemon's own run the kill transition), and again at each look
// after that. A group found empty, or given up, is closed (pgid 0, dropped by the next
// prune); the live daemon's own group stays open, since its reap is coming.
func (s *Supervisor) killGroup(d *daemon, g *procGroup, reason string) {
	now := time.Now()
	first := g.killedAt.IsZero()
	if first {
		g.killedAt = now
	}
	own, live := g.pgid == d.pid, d.live()
	someoneLeft := s.signalPgid(d, g.pgid, syscall.SIGKILL)
	if first {
		switch {
		case own && d.machine.Current() == fsm.DaemonTerminating:
			s.fireDaemon(d, fsm.DaemonKill, zapcore.WarnLevel, detail{signal: "SIGKILL", reason: reason})
		case own && d.machine.Current() == fsm.DaemonUnresponsive:
			// No transition: it stays unresponsive until its reap, a failure.
			s.log.Warn("unresponsive daemon did not exit within its grace: SIGKILL to its process group",
				zlog.String("daemon", d.cfg.Name), zlog.Int("pid", d.pid), zlog.Duration("grace", d.cfg.Grace))
		case own && live: // killed already; its reap is on the way
		case !someoneLeft: // it emptied unseen (its last process moved out): nothing killed
		case own:
			s.log.Warn("killed processes left in an exited daemon's process group",
				zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", g.pgid), zlog.String("reason", reason))
		default:
			s.log.Warn("killed processes an earlier run of the daemon left in its process group",
				zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", g.pgid), zlog.String("reason", reason))
		}
	}
	switch {
	case own && live:
		// Its reap is coming and closes the group or not; past killWait, wait for it
		// without looking (a leader stuck in the kernel dies when it can).
		if now.Sub(g.killedAt) >= killWait {
			g.deadline = time.Time{}
			return
		}
	case someoneLeft && !s.giveUpOnGroup(d, g.pgid, g.killedAt, now):
	default:
		g.pgid, g.deadline = 0, time.Time{}
		return
	}
	g.deadline = now.Add(groupRecheck)
}

// giveUpOnGroup says a group SIGKILLed at killedAt still holds processes past killWait,
// and logs it.
func (s *Supervisor) giveUpOnGroup(d *daemon, pgid int, killedAt, now time.Time) bool {
	if now.Sub(killedAt) < killWait {
		return false
	}
	s.log.Warn("processes still in a daemon's process group a second after SIGKILL; not waiting for them",
		zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", pgid))
	return true
}

// stopDaemon sends a live daemon its stop signal and arms its grace (never past the end of
// a reverse-order shutdown).
func (s *Supervisor) stopDaemon(d *daemon, sig syscall.Signal, now time.Time, reason string) {
	d.awaitingStop = false
	stop := s.beginStop(d, sig, now)
	s.fireDaemon(d, fsm.DaemonStop, zapcore.InfoLevel, detail{signal: procs.SignalName(stop), reason: reason})
}

// beginStop sends a live daemon its stop signal (its stop_signal, else sig) and SIGCONT,
// ends its probes and arms its grace; it returns the signal sent. A stop the transition
// says is the caller's: a shutdown's or an operator's, or a failed liveness probe's.
func (s *Supervisor) beginStop(d *daemon, sig syscall.Signal, now time.Time) syscall.Signal {
	stop := stopSignalOf(d, sig)
	s.stopProbing(d) // it is being stopped: nothing to make ready or to check
	s.sendStop(d, d.pid, stop)
	if g := d.group(d.pid); g != nil {
		g.deadline, g.killedAt = s.graceEnd(d, now), time.Time{}
	}
	return stop
}

// anyDependentLive says a daemon that comes after d, directly or through others, still has
// a process: its own, or one left in any of its process groups (they get stopped, with a
// grace, before d is). Through others: in db ← migrate ← app, a migrate that finished (or
// died) must not let db go while app runs. Each daemon is looked at once a call (the walk
// mark), so a table where `after` chains cross (a diamond on each level) costs O(daemons +
// edges), not one visit per path.
func (s *Supervisor) anyDependentLive(d *daemon) bool {
	s.walk++
	return d.anyDependentLiveWalk(s.walk)
}

func (d *daemon) anyDependentLiveWalk(walk uint64) bool {
	for _, dep := range d.dependents {
		if dep.walked == walk {
			continue // seen this call: had it been live, the walk would have ended there
		}
		dep.walked = walk
		if dep.live() || dep.groupsOpen() || dep.anyDependentLiveWalk(walk) {
			return true
		}
	}
	return false
}

// stopAwaiting stops the daemons a reverse-order shutdown held back (their live run, and
// what their runs left in their groups) whose dependents are gone; with force (the
// overall deadline passed) it stops and kills all of them at once.
func (s *Supervisor) stopAwaiting(now time.Time, force bool) {
	stopped := false
	for _, d := range s.daemons {
		if !d.awaitingStop || (!d.live() && !d.groupsOpen()) {
			d.awaitingStop = false
			continue
		}
		reason := "shutdown: the daemons after it are gone"
		switch {
		case force:
			reason = "stop_order reverse: the largest grace ran out"
		case s.anyDependentLive(d):
			continue
		}
		if d.live() {
			s.stopDaemon(d, s.stopSignal, now, reason)
		}
		d.awaitingStop = false
		s.stopGroups(d, s.stopSignal, now)
		if force {
			s.killEverything(d, reason)
		}
		stopped = true
	}
	if stopped {
		s.armTimer(now)
	}
}

// stopSignalOf is the daemon's stop_signal, or else the signal that asked for the stop.
func stopSignalOf(d *daemon, sig syscall.Signal) syscall.Signal {
	if d.cfg.StopSignal != 0 {
		return d.cfg.StopSignal
	}
	return sig
}

// killAll SIGKILLs every open group at once (a second stop signal). A daemon a reverse-order
// shutdown still holds back is stopped first, so that its death is an expected one.
func (s *Supervisor) killAll(reason string) {
	now := time.Now()
	for _, d := range s.daemons {
		if d.awaitingStop && d.live() {
			s.stopDaemon(d, s.stopSignal, now, reason)
		}
		d.awaitingStop = false
		if d.groupsOpen() {
			s.killEverything(d, reason)
		}
	}
	s.armTimer(now)
}

// killEverything SIGKILLs every process group of the daemon: its own run's and its earlier
// runs'.
func (s *Supervisor) killEverything(d *daemon, reason string) {
	for i := range d.groups {
		s.killGroup(d, &d.groups[i], reason)
	}
	d.dropClosedGroups()
}

// closeEmptyGroups forgets the groups that have emptied since (their last processes were
// reaped as orphans).
func (s *Supervisor) closeEmptyGroups() {
	for _, d := range s.daemons {
		d.pruneEmptyGroups()
	}
}

// stopLeftoverGroups: every daemon died on its own, but some left processes in their groups
// (a server a start script forked). Nothing may outlive the supervisor, so they go with it,
// but as at a shutdown: their daemon's stop signal (or SIGTERM) and grace, then SIGKILL.
// It reports whether any group is still open; the supervisor exits once none is.
// With stop_order = "reverse", a daemon's leftovers wait for those of the daemons after it,
// within one deadline (the largest grace), as at a shutdown.
func (s *Supervisor) stopLeftoverGroups() bool {
	now := time.Now()
	if !s.leftoversStopping {
		// As beginShutdown does for what dead daemons left.
		s.leftoversStopping = true
		if s.stopSignal == 0 {
			s.stopSignal = syscall.SIGTERM
		}
		if s.opts.ReverseStop {
			s.reverseDeadline = now.Add(s.largestGrace())
		}
		for _, d := range s.daemons {
			s.stopOrHoldGroups(d, s.stopSignal, now)
		}
	}
	s.stopAwaiting(now, false) // those whose dependents' leftovers are gone now
	open := slices.ContainsFunc(s.daemons, (*daemon).groupsOpen)
	if open {
		s.armTimer(now)
	}
	return open
}

// endLeftoverStop: an operator started or held (stopped) a daemon while what the dead
// daemons left was being stopped, so not every daemon is done any more and the bundle runs
// on. What got its stop
// signal keeps its grace; what a reverse order held back is left alone again, like any
// dead daemon's leftovers; and the reverse order's deadline, which would otherwise stop
// and kill the daemon just started, is dropped. The next time every daemon is done, the
// stop begins afresh.
func (s *Supervisor) endLeftoverStop() {
	if !s.leftoversStopping || s.shuttingDown() {
		return
	}
	s.leftoversStopping = false
	s.reverseDeadline = time.Time{}
	// The look for escaped processes (dealWithEscaped) that every daemon's end began is off
	// too: left set, armTimer would keep pointing the timer at a moment gone by, and the
	// loop would wake at once, again and again, for as long as the daemon stays held.
	s.escapeLookAt, s.sweptEveryone = time.Time{}, false
	for _, d := range s.daemons {
		d.awaitingStop = false
	}
}

// largestGrace is the longest of the daemons' graces: a reverse-order stop's deadline.
func (s *Supervisor) largestGrace() time.Duration {
	var largest time.Duration
	for _, d := range s.daemons {
		largest = max(largest, d.cfg.Grace)
	}
	return largest
}
