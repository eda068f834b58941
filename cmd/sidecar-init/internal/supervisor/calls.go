package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// onCall answers one control-socket request. Every change goes through the daemon's table,
// like any other event of the loop.
func (s *Supervisor) onCall(req control.Request, now time.Time) control.Response {
	// Reap first, as for a stop signal: a daemon that already died is a zombie whose SIGCHLD
	// may still wait behind this call (select picks at random), and its death, a crash's
	// status included, must be seen before an operator's stop turns it into an expected one.
	s.reap()
	switch req.Cmd {
	case control.CmdStatus:
		return control.Response{OK: true, Daemons: s.status(now)}
	case control.CmdHealth:
		if s.shuttingDown() {
			// The ready file went when the shutdown began: so does "ready", even while a
			// daemon a reverse-order shutdown holds back still runs.
			return control.Response{Error: "not ready: sidecar-init is shutting down"}
		}
		if missing := s.notReady(); len(missing) > 0 {
			return control.Response{Error: "not ready: " + strings.Join(missing, ", ")}
		}
		return control.Response{OK: true, Message: s.healthy()}
	}
	d := s.byName(req.Name)
	if d == nil {
		return control.Response{Error: fmt.Sprintf("unknown daemon %q (running here: %s)", req.Name, s.names())}
	}
	if req.Cmd == control.CmdSignal {
		return s.signalByOperator(d, req.Signal)
	}
	if s.shuttingDown() {
		return control.Response{Error: "sidecar-init is shutting down; " + req.Cmd + " refused"}
	}
	s.log.Info("control request", zlog.String("cmd", req.Cmd), zlog.String("daemon", d.cfg.Name))
	state := d.machine.Current()
	switch req.Cmd {
	case control.CmdStop:
		switch state {
		case fsm.DaemonStarting, fsm.DaemonRunning:
			d.afterStop = afterStopHold
			s.stopDaemon(d, syscall.SIGTERM, now, "operator stop")
			s.armTimer(now)
			return control.Response{OK: true, Message: fmt.Sprintf("%s: stop signal sent; it stays stopped until `sidecar-init start %s`", d.cfg.Name, d.cfg.Name)}
		case fsm.DaemonPending, fsm.DaemonBackoff, fsm.DaemonExited, fsm.DaemonGivenUp:
			s.hold(d, "operator stop")
			// What its runs left in their groups (a dead daemon's workers) goes too.
			s.stopGroups(d, syscall.SIGTERM, now)
			s.armTimer(now)
			return control.Response{OK: true, Message: d.cfg.Name + ": stopped"}
		case fsm.DaemonUnresponsive:
			// Being stopped for failing its liveness probe: the operator's stop takes that
			// stop over, so its death is an expected one and it stays down.
			d.afterStop = afterStopHold
			s.takeOverStop(d, "operator stop")
			return control.Response{OK: true, Message: fmt.Sprintf("%s: already stopping (unresponsive); it stays stopped until `sidecar-init start %s`", d.cfg.Name, d.cfg.Name)}
		case fsm.DaemonTerminating, fsm.DaemonKilled:
			// An operator's restart under way (a shutdown refused the call above): the latest
			// word wins, and it stays down once it has died.
			d.afterStop = afterStopHold
			return control.Response{OK: true, Message: fmt.Sprintf("%s: already stopping; it stays stopped until `sidecar-init start %s`", d.cfg.Name, d.cfg.Name)}
		}
	case control.CmdStart, control.CmdRestart:
		switch state {
		case fsm.DaemonStarting, fsm.DaemonRunning:
			if req.Cmd == control.CmdStart {
				break // running already
			}
			d.afterStop = afterStopStart
			s.stopDaemon(d, syscall.SIGTERM, now, "operator restart")
			s.armTimer(now)
			return control.Response{OK: true, Message: d.cfg.Name + ": stop signal sent; it starts again once it has exited"}
		case fsm.DaemonUnresponsive:
			// Being stopped for failing its liveness probe: the operator's start or restart
			// takes that stop over and starts it once it has died, whatever its restart
			// policy says.
			d.afterStop = afterStopStartOnly
			if req.Cmd == control.CmdRestart {
				d.afterStop = afterStopStart
			}
			s.takeOverStop(d, "operator "+req.Cmd)
			return control.Response{OK: true, Message: d.cfg.Name + ": already stopping (unresponsive); it starts again once it has exited"}
		case fsm.DaemonTerminating, fsm.DaemonKilled:
			// An operator's stop under way: the latest word wins. A start counts as one, as
			// it would once the daemon had stopped; during a restart it changes nothing.
			switch {
			case req.Cmd == control.CmdRestart:
				d.afterStop = afterStopStart
			case d.afterStop != afterStopStart:
				d.afterStop = afterStopStartOnly
			}
			return control.Response{OK: true, Message: d.cfg.Name + ": already stopping; it starts again once it has exited"}
		case fsm.DaemonPending, fsm.DaemonBackoff, fsm.DaemonStopped, fsm.DaemonExited, fsm.DaemonGivenUp:
			verb := "started"
			if req.Cmd == control.CmdRestart {
				verb = "restarted"
			}
			s.startAgain(d, now, "operator "+req.Cmd, req.Cmd == control.CmdRestart)
			return s.startReply(d, verb)
		}
	}
	return control.Response{Error: fmt.Sprintf("%s: cannot %s a daemon that is %s", d.cfg.Name, req.Cmd, state)}
}

// signalByOperator is `signal NAME SIG`: the signal goes to the daemon's process group,
// whatever its forward_signals says (the operator picked the daemon), and during a
// shutdown too (a SIGQUIT asks a JVM or a Go daemon that does not stop for its stacks). It
// changes no state: a daemon that dies of it has died on its own, as if anyone else had
// sent it; `stop` and `restart` are the way to stop one.
func (s *Supervisor) signalByOperator(d *daemon, name string) control.Response {
	sig, err := procs.ParseSignal(name)
	if err == nil {
		// Logged by its canonical name, as every other line names signals ("USR1", "10"
		// and "SIGUSR1" are one signal to whoever searches the log); one that does not
		// parse, as typed.
		name = procs.SignalName(sig)
	}
	s.log.Info("control request", zlog.String("cmd", control.CmdSignal), zlog.String("daemon", d.cfg.Name), zlog.String("signal", name))
	if err != nil {
		return control.Response{Error: err.Error()}
	}
	if !d.live() {
		return control.Response{Error: fmt.Sprintf("%s has no process to signal (it is %s)", d.cfg.Name, d.machine.Current())}
	}
	return s.sendForOperator(d, sig)
}

// sendForOperator sends sig to the daemon's process group, and at its pid if it left that
// group, and tells the operator who got it. The request names the daemon: it is answered
// OK only if the daemon itself got the signal, and a partial delivery says who did, so a
// retry is a choice made knowing it reaches some processes twice. (A group signal
// succeeds if any one member takes it: the daemon itself may refuse, a setuid program
// that made itself root under a sidecar-init run as another user.)
func (s *Supervisor) sendForOperator(d *daemon, sig syscall.Signal) control.Response {
	name, pgid := procs.SignalName(sig), d.pid
	groupTook, groupErr := procs.SignalGroup(pgid, sig)
	left := false
	if now, err := syscall.Getpgid(d.pid); err == nil && now != pgid {
		left = true
	}
	var daemonErr error
	switch {
	case left:
		daemonErr = syscall.Kill(d.pid, sig)
	case groupTook:
		daemonErr = syscall.Kill(d.pid, 0) // did the daemon itself take it?
		if errors.Is(daemonErr, syscall.EPERM) && sig == syscall.SIGCONT && sameSession(d.pid) {
			// The kernel lets SIGCONT through to any process of the sender's session,
			// whatever its user; kill(pid, 0) has no such exception.
			daemonErr = nil
		}
	case groupErr != nil:
		daemonErr = groupErr
	default:
		return control.Response{Error: fmt.Sprintf("%s: nobody left in its process group (pgid %d); it is being reaped", d.cfg.Name, pgid)}
	}
	others := "the other processes in its process group"
	if left {
		others = "what is left in the process group it left"
	}
	switch {
	case daemonErr != nil && groupTook:
		s.log.Warn("operator's signal reached the daemon's process group, not the daemon", zlog.String("daemon", d.cfg.Name),
			zlog.String("signal", name), zlog.Int("pid", d.pid), zlog.Error(daemonErr))
		return control.Response{Error: fmt.Sprintf("%s: %s reached %s (pgid %d), not the daemon itself (pid %d): %v", d.cfg.Name, name, others, pgid, d.pid, daemonErr)}
	case daemonErr != nil:
		s.log.Warn("operator's signal not sent", zlog.String("daemon", d.cfg.Name), zlog.String("signal", name), zlog.Error(daemonErr))
		return control.Response{Error: fmt.Sprintf("%s: could not send %s: %v", d.cfg.Name, name, daemonErr)}
	case left && groupErr != nil:
		return control.Response{OK: true, Message: fmt.Sprintf("%s: %s sent to pid %d, which left its process group; not to %s (pgid %d): %v", d.cfg.Name, name, d.pid, others, pgid, groupErr)}
	case left && groupTook:
		return control.Response{OK: true, Message: fmt.Sprintf("%s: %s sent to pid %d, which left its process group, and to %s (pgid %d)", d.cfg.Name, name, d.pid, others, pgid)}
	case left:
		return control.Response{OK: true, Message: fmt.Sprintf("%s: %s sent to pid %d, which left its process group (pgid %d, now empty)", d.cfg.Name, name, d.pid, pgid)}
	}
	return control.Response{OK: true, Message: fmt.Sprintf("%s: %s sent to its process group (pgid %d)", d.cfg.Name, name, pgid)}
}

// sameSession says pid is in this process's session (daemons are spawned with setpgid,
// never setsid, so a daemon that did not leave it is).
func sameSession(pid int) bool {
	theirs, err := unix.Getsid(pid)
	ours, _ := unix.Getsid(0)
	return err == nil && theirs == ours
}

// hold takes a daemon that has no process (pending, in backoff, exited or given up) to
// stopped: a pending start or restart is dropped.
func (s *Supervisor) hold(d *daemon, reason string) {
	// A held daemon keeps the supervisor running, as a started one does: what the dead
	// daemons left is no longer on its way out with it (a reverse order's deadline would
	// otherwise SIGKILL the groups it held back without their grace).
	s.endLeftoverStop()
	s.dropAskedStart(d)
	d.restartAt, d.restartHeld, d.cancelledFor = time.Time{}, false, nil
	d.heldAfterEnd = d.machine.Done()
	s.fireDaemon(d, fsm.DaemonHold, zapcore.InfoLevel, detail{reason: reason})
}

// startAgain starts a daemon that an operator asked for: through pending (the start row),
// with a fresh backoff window. A restart of a daemon that has run counts in its restarts
// (the first start of one that never ran is no restart). It spawns at once,
// unless what its earlier runs left is still in their groups: that gets the stop signal
// and the grace, and the loop spawns it once they are empty (a new run never overlaps an
// old one). Daemons whose start was cancelled because this one was done go back to pending.
func (s *Supervisor) startAgain(d *daemon, now time.Time, reason string, countsAsRestart bool) {
	if !d.everSpawned || (d.machine.Current() == fsm.DaemonPending && d.restartCounted) {
		// Its first run; or asked again while the last restart waits for what the last
		// run left: still one restart to come.
		countsAsRestart = false
	}
	s.endLeftoverStop()
	d.windowRestarts = 0
	if countsAsRestart {
		d.restarts++ // first, so that the start line carries the count its spawn will
		d.restartCounted = true
	}
	if d.machine.Current() != fsm.DaemonPending {
		// From backoff the pending restart is dropped: this start takes its place.
		d.restartAt, d.restartHeld = time.Time{}, false
		s.fireDaemon(d, fsm.DaemonStart, zapcore.InfoLevel, detail{reason: reason})
	}
	s.reviveCancelledDependents(d)
	// An operator's start does not wait for `after` daemons: the operator decides.
	if d.oldRunsLeft() {
		d.startAsked = true
		s.stopGroups(d, syscall.SIGTERM, now)
		s.armTimer(now)
		s.log.Info("start waits for the processes its last run left to exit", zlog.String("daemon", d.cfg.Name))
		return
	}
	s.spawn(d, now)
}

// reviveCancelledDependents puts back to pending the daemons whose start was cancelled
// because d was done for good (and, through them, theirs): d is coming back, so they start
// once it is ready, as at start-up.
func (s *Supervisor) reviveCancelledDependents(d *daemon) {
	for _, dep := range d.dependents {
		if dep.cancelledFor != d || dep.machine.Current() != fsm.DaemonExited {
			continue
		}
		// It never ran: the cancellation was its only LAST EXIT, and no longer holds.
		dep.cancelledFor, dep.lastExit = nil, exitNote{}
		s.fireDaemon(dep, fsm.DaemonStart, zapcore.InfoLevel, detail{reason: "a daemon it comes after was started by an operator: " + d.cfg.Name})
		s.reviveCancelledDependents(dep)
	}
}

// startReply tells the operator what a start or restart did: spawned, or failed to exec
// (then the client exits 1).
func (s *Supervisor) startReply(d *daemon, done string) control.Response {
	switch state := d.machine.Current(); {
	case state == fsm.DaemonStarting, state == fsm.DaemonRunning:
		return control.Response{OK: true, Message: d.cfg.Name + ": " + done}
	case state == fsm.DaemonPending && d.startAsked:
		return control.Response{OK: true, Message: d.cfg.Name + ": starts once the processes its last run left have exited (stop signal sent; SIGKILL after its grace)"}
	default:
		return control.Response{Error: fmt.Sprintf("%s: could not start: %s (now %s)", d.cfg.Name, d.lastExit, state)}
	}
}

func (s *Supervisor) status(now time.Time) []control.DaemonStatus {
	out := make([]control.DaemonStatus, 0, len(s.daemons))
	for _, d := range s.daemons {
		st := control.DaemonStatus{Name: d.cfg.Name, State: string(d.machine.Current()), Restarts: d.restarts, LastExit: d.lastExit.String()}
		if d.live() {
			st.Pid = d.pid
			st.Uptime = now.Sub(d.startedAt).Round(time.Second).String()
		}
		state := d.machine.Current()
		switch {
		case state == fsm.DaemonBackoff && !d.restartAt.IsZero():
			// Due already (the loop takes it next): 0s, never a negative delay.
			st.NextRestartIn = max(d.restartAt.Sub(now), 0).Round(time.Millisecond).String()
		case state == fsm.DaemonBackoff && d.restartHeld:
			st.WaitingFor = d.depsNot(depSettled)
		case state == fsm.DaemonPending && !d.startAsked: // an operator's start waits for no `after` daemon
			st.WaitingFor = d.depsNot(depReady)
		}
		if state == fsm.DaemonRunning && d.liveFailures > 0 {
			st.LivenessFailures, st.LivenessFailuresMax = d.liveFailures, d.cfg.LivenessFailures
		}
		if (state == fsm.DaemonBackoff && d.restartHeld) || (state == fsm.DaemonPending && d.startAsked) {
			for _, g := range d.groups {
				if g.pgid != 0 {
					st.WaitingForExit = append(st.WaitingForExit, g.pgid)
				}
			}
		}
		out = append(out, st)
	}
	return out
}

// healthy is the health answer when every daemon is ready or held: the operator is not
// told "all ready" of a daemon held stopped.
func (s *Supervisor) healthy() string {
	held := s.held()
	switch {
	case len(held) == 0 && len(s.daemons) == 1:
		return "ready: its one daemon"
	case len(held) == 0:
		return fmt.Sprintf("ready: all %d daemons", len(s.daemons))
	}
	return fmt.Sprintf("ready: %d of %d daemons; held stopped: %s", len(s.daemons)-len(held), len(s.daemons), strings.Join(held, ", "))
}

// held names the daemons an operator holds stopped: not expected to run, so counted apart
// from the ready ones.
func (s *Supervisor) held() []string {
	var names []string
	for _, d := range s.daemons {
		if d.machine.Current() == fsm.DaemonStopped {
			names = append(names, d.cfg.Name)
		}
	}
	return names
}

func (s *Supervisor) byName(name string) *daemon {
	for _, d := range s.daemons {
		if d.cfg.Name == name {
			return d
		}
	}
	return nil
}

func (s *Supervisor) names() string {
	names := ""
	for i, d := range s.daemons {
		if i > 0 {
			names += ", "
		}
		names += d.cfg.Name
	}
	return names
}
