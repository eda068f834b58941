package supervisor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/daemonlog"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// daemon is one supervised daemon. Every field is owned by the loop.
type daemon struct {
	cfg     config.Daemon
	env     []string
	machine *fsm.Machine
	// pid is its current (or last) run's, and that run's process group id (each run leads
	// its own group); kept after the daemon died so leftovers in its group can be found.
	pid int
	// runPipes is the live run's labelled-output pipes (nil for inherit), told at its reap.
	runPipes *daemonlog.Pipes
	// groups are its runs' process groups that may still hold processes: the current run's
	// while it lives, and any a dead run left behind (grandchildren can outlive the leader;
	// each restart is a new group). They are stopped at shutdown, each with its own grace.
	groups []procGroup
	// startedAt is when it was last spawned; restartAt when its pending restart is due.
	startedAt time.Time
	restartAt time.Time
	// restarts counts every restart; windowRestarts those since it last stayed up for
	// backoff_reset, which set the backoff and the max_restarts budget.
	restarts       int
	windowRestarts int
	// lastExit describes the last death ("status 3", "signal SIGKILL", "exec failed (127)").
	lastExit exitNote
	// finished: a oneshot whose last run exited with status 0, which makes it ready (see
	// done); cleared at every spawn.
	finished bool
	// heldAfterEnd: held by an operator's stop once its run had ended for good (exited,
	// given up). The hold takes nothing back: for its dependents' restarts it stays settled.
	heldAfterEnd bool
	// afterStop is what an operator's stop or restart wants once the daemon has died.
	afterStop afterStop

	// deps are the selected daemons it comes `after`; dependents those that come after it.
	deps, dependents []*daemon
	// Readiness: the next probe attempt, the wait before the one after, the ready_timeout
	// deadline, whether an attempt is under way, and for which incarnation (pid).
	probeAt       time.Time
	probeInterval time.Duration
	readyDeadline time.Time
	probing       bool
	probeFor      int
	// lastProbeErr is why the last attempt failed, for the ready_timeout line.
	lastProbeErr error
	// Liveness, once ready: the next attempt, the end of the one under way (its
	// liveness_timeout), the number of the one under way (0: none; a result of another is
	// stale), the failures in a row and the last one's error.
	liveAt       time.Time
	liveDeadline time.Time
	liveAttempt  uint64
	liveFailures int
	lastLiveErr  error
	// liveUpTo is when the run last showed it was up: ready, then each passed attempt.
	liveUpTo time.Time
	// liveInFlight counts attempts not back yet, given up or not (a stat on a hung
	// filesystem never returns; an exec probe stuck in the kernel is not reaped): while
	// one is out, the next attempt fails without starting another, so they cannot pile up.
	liveInFlight int
	// awaitingStop: a reverse-order shutdown holds its stop until its dependents are gone.
	awaitingStop bool
	// walked marks it seen by the anyDependentLive call numbered so (Supervisor.walk).
	walked uint64
	// restartHeld: in backoff, its restart is due but held back, by an `after` daemon on its
	// way back (see depsSettled) or by what its last run left, still exiting: the loop spawns
	// it once neither holds.
	restartHeld bool
	// startAsked: pending because an operator started or restarted it, waiting only for what
	// its earlier runs left to exit (an operator's start does not wait for `after` daemons).
	// restartCounted: that wait is a restart's, already in restarts; taken back if a stop
	// or the shutdown drops it before it spawns.
	startAsked     bool
	restartCounted bool
	// everSpawned: a run was attempted (an exec failure included): only then is a start a
	// restart.
	everSpawned bool
	// cancelledFor is the `after` daemon whose end cancelled this one's start: an operator's
	// start of that daemon puts this one back to pending.
	cancelledFor *daemon
}

// procGroup is one of the daemon's process groups and its stop: deadline is when it gets
// SIGKILL (zero: not being stopped); once killedAt (that SIGKILL) is set, it is when the
// group is looked at again.
type procGroup struct {
	pgid     int
	deadline time.Time
	killedAt time.Time
}

// group is the daemon's open process group with id pgid, or nil.
func (d *daemon) group(pgid int) *procGroup {
	for i := range d.groups {
		if d.groups[i].pgid == pgid && pgid != 0 {
			return &d.groups[i]
		}
	}
	return nil
}

// groupsOpen says some process group of the daemon may still hold processes.
func (d *daemon) groupsOpen() bool {
	return len(d.groups) > 0
}

// pruneGroups forgets the groups that have emptied or were closed; the live daemon's own
// group stays until its reap.
func (d *daemon) pruneGroups() {
	d.groups = slices.DeleteFunc(d.groups, func(g procGroup) bool {
		return g.pgid == 0 || ((g.pgid != d.pid || !d.live()) && !leftGroupAlive(g.pgid))
	})
}

// pruneEmptyGroups forgets the groups that have emptied, without pruneGroups' look for a
// reused id (a read of /proc): for the reap of every batch of orphans, where a group that
// stays listed a while longer costs nothing. Whatever signals a group, or waits for one,
// prunes it first with pruneGroups.
func (d *daemon) pruneEmptyGroups() {
	d.groups = slices.DeleteFunc(d.groups, func(g procGroup) bool {
		return g.pgid == 0 || ((g.pgid != d.pid || !d.live()) && !procs.GroupAlive(g.pgid))
	})
}

// leftGroupAlive says a process group whose leader was reaped still holds what the leader
// left. Not when the id was reused: a group that emptied without a reap here (its last
// process moved out with setsid) frees the id, and a new process may lead a group of that
// id now (another daemon's run, a probe, a daemon's worker): signalling it would hit
// processes that are not the leftovers.
func leftGroupAlive(pgid int) bool {
	return procs.GroupAlive(pgid) && !procs.GroupReused(pgid)
}

// forgetGroupID drops pgid from every daemon's groups: a process spawned here now leads a
// group of that id, so an entry an earlier run left for it names an emptied group whose
// id was reused (its last process moved out with setsid, unseen), not leftovers.
func (s *Supervisor) forgetGroupID(pgid int) {
	for _, d := range s.daemons {
		d.groups = slices.DeleteFunc(d.groups, func(g procGroup) bool { return g.pgid == pgid })
	}
}

// dropClosedGroups forgets the groups closed after a SIGKILL (pgid 0).
func (d *daemon) dropClosedGroups() {
	d.groups = slices.DeleteFunc(d.groups, func(g procGroup) bool { return g.pgid == 0 })
}

// exitNote is what status shows as a daemon's LAST EXIT, kept in its parts and written out
// only when asked: formatted at every death, it was an allocation on the reap path
// (BenchmarkDeath).
type exitNote struct {
	kind exitKind
	// exit, for exitDied; unresponsive: the run was stopped for failing its liveness probe.
	exit         procs.Exit
	unresponsive bool
	status       int // exitSpawnFailed: 127 or 126
	// dependency and its state, for exitCancelled.
	dependency      string
	dependencyState fsm.State
}

type exitKind uint8

const (
	exitNone        exitKind = iota
	exitDied                 // "status 3", "signal SIGKILL", "unresponsive, then status 0"
	exitFinished             // a oneshot: "finished (status 0)"
	exitSpawnFailed          // "exec failed (127)"
	exitCancelled            // it never ran: "cancelled (setup exited)"
)

func (n exitNote) String() string {
	switch n.kind {
	case exitNone:
		return "" // it never died
	case exitDied:
		what := fmt.Sprintf("status %d", n.exit.Code())
		if sig, ok := n.exit.Signal(); ok {
			what = "signal " + procs.SignalName(sig)
		}
		if n.unresponsive {
			what = "unresponsive, then " + what
		}
		return what
	case exitFinished:
		return "finished (status 0)"
	case exitSpawnFailed:
		return fmt.Sprintf("exec failed (%d)", n.status)
	case exitCancelled:
		return fmt.Sprintf("cancelled (%s %s)", n.dependency, n.dependencyState)
	}
	return ""
}

type afterStop int

const (
	afterStopNothing afterStop = iota // a shutdown: it stays exited
	afterStopHold                     // an operator's stop: held in stopped
	afterStopStart                    // an operator's restart: started again at once
	// afterStopStartOnly: an operator's start while its stop was under way: started again
	// at once too, but as a start, as it would be had it come once the daemon was stopped.
	afterStopStartOnly
)

// dropAskedStart drops an operator's start or restart still waiting for what the last run
// left: a restart that will not happen leaves the count, and the log says so (the start
// line carried it).
func (s *Supervisor) dropAskedStart(d *daemon) {
	if d.startAsked && d.restartCounted {
		d.restarts--
		s.log.Info("restart dropped before it spawned: not counted", zlog.String("daemon", d.cfg.Name), zlog.Int("restarts", d.restarts))
	}
	d.startAsked, d.restartCounted = false, false
}

// live says the daemon has a process that has not been reaped.
func (d *daemon) live() bool {
	return liveState(d.machine.Current())
}

// liveState: a daemon in this state has a process that has not been reaped.
func liveState(state fsm.State) bool {
	switch state {
	case fsm.DaemonStarting, fsm.DaemonRunning, fsm.DaemonUnresponsive, fsm.DaemonTerminating, fsm.DaemonKilled:
		return true
	}
	return false
}

// detail is what a transition's log line and notification carry besides the transition.
type detail struct {
	// exit is the reaped status, for deaths (died). A value, not a pointer to the caller's:
	// det's strings reach the notification, and with them any pointer in det, which put
	// every reaped exit on the heap (BenchmarkDeath).
	exit     procs.Exit
	died     bool
	status   int    // exec failure status (spawn_failed)
	signal   string // a signal sent (stop, kill)
	reason   string
	hasState bool // status is set
}

// spawn starts the daemon (from pending or backoff). An exec failure is that daemon's death
// with status 127/126; the others still start.
func (s *Supervisor) spawn(d *daemon, now time.Time) {
	from := d.machine.Current()
	spec := procs.Spec{Argv: d.cfg.Command, Env: d.env, Dir: d.cfg.Dir, Credential: d.cfg.Credential}
	afterSpawn, pipes := s.labelOutput(d, d.cfg.Name, &spec)
	defer afterSpawn()
	d.pruneGroups() // the last run's group, still occupied, stays with any grace under way
	// A run ends a cancellation and an operator's waiting start: neither may outlive it (a
	// later end of this run of its own is no cancellation an operator's start of an `after`
	// daemon should undo).
	d.restartHeld, d.startAsked, d.restartCounted, d.cancelledFor, d.finished, d.heldAfterEnd = false, false, false, nil, false, false
	if !d.everSpawned {
		// Its first run: a LAST EXIT it has is a cancellation's ("cancelled (setup exited)"),
		// which no longer holds (an operator started it, directly or after a stop).
		d.lastExit = exitNote{}
	}
	d.everSpawned = true
	// An operator's start after every daemon had died: what this run leaves behind was not
	// there when escaped processes were last swept, so the next sweep must kill again.
	s.sweptEveryone, s.escapeLookAt = false, time.Time{}
	if from == fsm.DaemonBackoff {
		// An attempt that fails to exec counts too, or a missing binary would be retried at
		// backoff_initial for ever and never reach max_restarts.
		d.restarts++
		d.windowRestarts++
	}
	s.removeStaleProbeFile(d)
	pid, err := procs.Spawn(spec, s.opts.Stdin)
	if err != nil {
		status := 126
		msg := "daemon failed to start: check its command, dir and user in the daemon table"
		var spawnErr *procs.SpawnError
		if errors.As(err, &spawnErr) {
			status = spawnErr.Status
			if spawnErr.OutOfResources() {
				msg = "daemon failed to start: the system is short of file descriptors, memory or processes (check ulimit -n and -u, and memory)"
			}
		}
		s.log.Error(msg, zlog.String("daemon", d.cfg.Name), zlog.Strings("command", d.cfg.Command), zlog.Error(err))
		d.lastExit = exitNote{kind: exitSpawnFailed, status: status}
		d.pid = 0
		d.startedAt = time.Time{}
		s.dieOnItsOwn(d, fsm.DaemonSpawnFailed, detail{status: status, hasState: true}, zapcore.ErrorLevel, status, now)
		return
	}
	d.pid = pid
	d.runPipes = pipes
	s.forgetGroupID(pid)
	d.groups = append(d.groups, procGroup{pgid: pid})
	d.startedAt = now
	d.restartAt = time.Time{}
	s.byPid[pid] = d
	s.fireDaemon(d, fsm.DaemonSpawn, zapcore.InfoLevel, detail{})
	s.beginStarting(d, now)
}

// removeStaleProbeFile removes, before a run, the file its `file` probe waits for: one an
// earlier run left (a crash, a container restarted in place) would pass the first attempt,
// which comes as the daemon is spawned, before the daemon could remove it itself, and its
// dependents would start on a daemon not ready. systemd removes a stale PIDFile the same
// way. A directory is left alone. Synchronous, one lstat and one unlink in the loop, unlike
// the ready file's operations (readyFileWorker): the spawn must wait for it, or the first
// probe attempt could see the stale file, and off the loop that wait would be a step of its
// own before every spawn. On a mount that stops answering it holds the loop up.
//
// For a daemon with a `user`, both are done with that user's filesystem identity: the path
// may run through a directory the daemon owns, where it could put a symlink to anywhere,
// and root would follow it and remove a file of that name the daemon could not remove.
func (s *Supervisor) removeStaleProbeFile(d *daemon) {
	s.removeStaleFile(d, d.cfg.Ready.File, "readiness")
	if live := d.cfg.Liveness.File; live != d.cfg.Ready.File {
		// A liveness file an earlier run left would pass every attempt of this one.
		s.removeStaleFile(d, live, "liveness")
	}
}

// removeStaleFile is removeStaleProbeFile for one path ("": none) of a probe of kind.
func (s *Supervisor) removeStaleFile(d *daemon, path, kind string) {
	if path == "" {
		return
	}
	fields := []zlog.Field{zlog.String("daemon", d.cfg.Name), zlog.String("path", path)}
	if d.cfg.Credential != nil {
		fields = append(fields, zlog.String("user", d.cfg.Credential.Name))
	}
	var isDir, removed bool
	err := procs.AsUser(d.cfg.Credential, func() error {
		info, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.IsDir() {
			isDir = true
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
		return nil
	})
	switch {
	case err != nil:
		s.log.Warn("cannot remove the "+kind+" file an earlier run left: the probe may pass for this run on the last one's word",
			append(fields, zlog.Error(err))...)
	case isDir:
		s.log.Warn("the file a "+kind+" probe waits for is a directory: it passes at once", fields...)
	case removed:
		s.log.Info("removed the "+kind+" file an earlier run left", fields...)
	}
}

// labelOutput points spec's stdout and stderr at labelled pipes when the daemon's log mode
// is prefix or json (lines labelled with label), and returns what to call once the child is
// spawned: it holds its copies of the pipes' ends then, and without closing ours EOF would
// never come.
func (s *Supervisor) labelOutput(d *daemon, label string, spec *procs.Spec) (afterSpawn func(), pipes *daemonlog.Pipes) {
	mode := daemonlog.Mode(d.cfg.Log)
	if mode == "" || mode == daemonlog.Inherit {
		return func() {}, nil
	}
	if afterSpawn, past := s.pastUndrainedBound(d, label, spec); past {
		return afterSpawn, nil
	}
	pipes, err := daemonlog.Attach(label, mode, s.opts.Sinks.Stdout, s.opts.Sinks.Stderr)
	if err != nil {
		// Out of fds, most likely: it still runs, with unlabelled output.
		s.log.Error("cannot label the output; it goes to stdout and stderr as it is",
			zlog.String("daemon", d.cfg.Name), zlog.String("label", label), zlog.Error(err))
		return func() {}, nil
	}
	if c := d.cfg.Credential; c != nil {
		if err := pipes.GiveChildEnds(int(c.UID), int(c.GID)); err != nil {
			// Only opening /dev/stdout by name is affected; fd 1 and 2 work regardless.
			s.log.Warn("cannot give the labelled-output pipes to the daemon's user: opening /dev/stdout will fail for it",
				zlog.String("daemon", d.cfg.Name), zlog.String("label", label), zlog.Error(err))
		}
	}
	spec.Stdout, spec.Stderr = pipes.ChildFiles()
	s.logPipes = append(s.logPipes, pipes)
	return pipes.CloseChildEnds, pipes
}

// pastUndrainedBound says the label has maxUndrainedRuns runs whose output is not all
// written yet, and then points spec at /dev/null: the run's output is discarded. Not at
// sidecar-init's own stdout and stderr, as it once was: a daemon decides itself whether its
// runs drain (a setsid'd child holding its pipe does it), and a run writing there, raw,
// could forge sidecar-init's JSON lines or glue a line without its newline onto the next
// (found by a security review: forged transitions of a daemon that did not exist). A probe
// blocked on a stalled stream would not pass either. Said once a stall.
func (s *Supervisor) pastUndrainedBound(d *daemon, label string, spec *procs.Spec) (afterSpawn func(), past bool) {
	s.logPipes = pruneDrained(s.logPipes)
	undrained := 0
	for _, p := range s.logPipes {
		if p.Label() == label {
			undrained++
		}
	}
	if undrained < maxUndrainedRuns {
		if s.unlabelled[label] {
			delete(s.unlabelled, label)
			s.log.Info("labelled output drains again", zlog.String("daemon", d.cfg.Name), zlog.String("label", label))
		}
		return nil, false
	}
	if !s.unlabelled[label] {
		s.unlabelled[label] = true
		msg := "labelled output is not being drained: each run started until it is has its output discarded, for that whole run " +
			"(a stdout or stderr nobody reads, or processes earlier runs left holding their pipes)"
		if label != d.cfg.Name {
			msg = "labelled output is not being drained: the probes' output is discarded until it is " +
				"(a stdout or stderr nobody reads, or processes earlier attempts left holding their pipes)"
		}
		s.log.Warn(msg, zlog.String("daemon", d.cfg.Name), zlog.String("label", label), zlog.Int("undrained_runs", undrained))
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		// Out of descriptors: the daemons' stdin, /dev/null opened for reading, where every
		// write fails. No output at all is still no raw output.
		spec.Stdout, spec.Stderr = s.opts.Stdin, s.opts.Stdin
		return func() {}, true
	}
	spec.Stdout, spec.Stderr = null, null
	return func() { _ = null.Close() }, true // ours, write-only: nothing to lose
}

// restartNow restarts a daemon in backoff whose restart is due: at once, unless one of its
// `after` daemons is on its way back (restarting, starting, held stopped), and then once it
// is ready. A restart must not run ahead of a dependency that is itself restarting: it
// would fail again and spend its max_restarts while the dependency comes back. Nor may it
// run beside what the crashed run left in its group (stopped at the crash, with its
// grace): a worker still holding the port would make every new run fail.
func (s *Supervisor) restartNow(d *daemon, now time.Time) {
	settled, oldLeft := d.depsSettled(), d.oldRunsLeft()
	if settled && !oldLeft {
		s.spawn(d, now)
		return
	}
	d.restartAt, d.restartHeld = time.Time{}, true
	if !settled {
		s.log.Info("restart waits for the daemons it comes after to be ready or done",
			zlog.String("daemon", d.cfg.Name), zlog.Strings("after", d.cfg.After))
	}
	if oldLeft {
		s.log.Info("restart waits for the processes its last run left to exit",
			zlog.String("daemon", d.cfg.Name))
	}
}

// oldRunsLeft says processes of the daemon's earlier runs are still in their groups. A new
// run waits for them: it never overlaps an earlier one (ports, locks, a readiness probe
// passing on the old run's listener).
func (d *daemon) oldRunsLeft() bool {
	if d.live() {
		return false
	}
	d.pruneGroups()
	return d.groupsOpen()
}

// onDaemonExit handles a reaped daemon: a death on its own, or the end of a stop.
func (s *Supervisor) onDaemonExit(d *daemon, e procs.Exit, now time.Time) {
	duringShutdown := s.shuttingDown() // (a crash can begin one, under the tear-down policy)
	d.lastExit = exitNote{kind: exitDied, exit: e}
	s.stopProbing(d) // its probes probe an incarnation that is gone
	if state := d.machine.Current(); state == fsm.DaemonRunning || state == fsm.DaemonStarting || state == fsm.DaemonUnresponsive {
		event, level, det, status := fsm.DaemonExit, zapcore.InfoLevel, detail{exit: e, died: true}, e.Code()
		switch {
		case state == fsm.DaemonUnresponsive:
			// Stopped for failing its liveness probe: a failure, whatever its status.
			event, level, det.reason = fsm.DaemonFail, zapcore.WarnLevel, "stopped as unresponsive"
			status = unresponsiveStatus(d, e)
			d.lastExit.unresponsive = true // status tells a hang from a crash
		case e.Code() != 0:
			event, level = fsm.DaemonFail, zapcore.WarnLevel
		case d.cfg.Oneshot:
			d.finished, det.reason = true, "oneshot finished"
			d.lastExit = exitNote{kind: exitFinished} // status tells it from a guard that died
		}
		s.dieOnItsOwn(d, event, det, level, status, now)
		s.afterGroupLeaderExit(d)
		if duringShutdown && (!d.awaitingStop || !s.anyDependentLive(d)) {
			// Held back by a reverse-order shutdown, it died before its turn: what it left
			// in its group gets the stop signal and the grace now, or, while daemons after
			// it still run, once they are gone (stopAwaiting).
			d.awaitingStop = false
			s.stopGroups(d, s.stopSignal, now)
		}
		return
	}
	s.fireDaemon(d, fsm.DaemonDied, zapcore.InfoLevel, detail{exit: e, died: true})
	s.afterGroupLeaderExit(d)
	switch d.afterStop {
	case afterStopHold:
		s.fireDaemon(d, fsm.DaemonHold, zapcore.InfoLevel, detail{reason: "operator stop"})
	case afterStopStart:
		s.startAgain(d, now, "operator restart", true)
	case afterStopStartOnly:
		s.startAgain(d, now, "operator start", false)
	}
	d.afterStop = afterStopNothing
}

func (s *Supervisor) afterGroupLeaderExit(d *daemon) {
	g := d.group(d.pid)
	switch {
	case g == nil:
	case !leftGroupAlive(g.pgid):
		g.pgid = 0
		d.dropClosedGroups()
	case !g.killedAt.IsZero():
		// SIGKILLed already, and the looks stopped while the leader lived: look again now,
		// or give the group up, so that it cannot hold a shutdown for ever.
		s.killGroup(d, g, "")
		d.dropClosedGroups()
		s.armTimer(time.Now())
	}
}

// dieOnItsOwn fires the death row that the daemon's restart policy set (backoff or
// exited), schedules the restart or gives up, then tells the supervisor's crash policy.
func (s *Supervisor) dieOnItsOwn(d *daemon, event fsm.Event, det detail, level zapcore.Level, status int, now time.Time) {
	from := d.machine.Current()
	dst, _ := fsm.DaemonTable(d.cfg.Restart).Dst(event, from)
	// Nothing restarts once the shutdown has begun: a daemon dying on its own then (one a
	// reverse-order shutdown holds back, say) goes from backoff straight to exited.
	cancel := dst == fsm.DaemonBackoff && s.shuttingDown()
	giveUp := false
	if dst == fsm.DaemonBackoff && !cancel {
		// A run stopped as unresponsive was up only until its last passed liveness attempt
		// (or until it became ready, if none passed): a probe that never passes must not
		// start a fresh window at every stop and so escape max_restarts.
		upTo := now
		switch {
		case from == fsm.DaemonUnresponsive:
			upTo = d.liveUpTo
		case from == fsm.DaemonStarting && !d.cfg.Oneshot:
			// Never ready, so never up: a readiness probe that never passes, its run
			// SIGKILLed at every ready_timeout, is given up too, whatever ready_timeout
			// is against backoff_reset. (A oneshot's run is its work: a long one that
			// fails was up.)
			upTo = d.startedAt
		}
		if !d.startedAt.IsZero() && upTo.Sub(d.startedAt) >= d.cfg.BackoffReset {
			d.windowRestarts = 0 // it stayed up long enough: a fresh start
		}
		giveUp = d.cfg.MaxRestarts > 0 && d.windowRestarts >= d.cfg.MaxRestarts
		if !giveUp {
			d.restartAt = now.Add(backoffDelay(d.cfg, d.windowRestarts))
		}
	}
	s.fireDaemon(d, event, level, det)
	if dst == fsm.DaemonBackoff && !cancel && !giveUp {
		// It will run again: what this run left in its group is stopped now, with the
		// grace, so that the restart need not wait past its backoff for it.
		s.stopGroups(d, syscall.SIGTERM, now)
	}
	if cancel {
		s.fireDaemon(d, fsm.DaemonCancel, zapcore.InfoLevel, detail{reason: "shutdown"})
	}
	if giveUp {
		s.fireDaemon(d, fsm.DaemonGiveUp, zapcore.ErrorLevel, detail{reason: fmt.Sprintf(
			"%d restarts in a row died before backoff_reset %v (max_restarts %d)", d.windowRestarts, d.cfg.BackoffReset, d.cfg.MaxRestarts)})
	}
	var exit *procs.Exit // (nil: an exec failure)
	if det.died {
		exit = &det.exit
	}
	s.diedOnItsOwn(d, status, exit, from == fsm.DaemonUnresponsive)
	s.armTimer(now)
}

// backoffDelay is the wait before the restart that follows n restarts in the current
// window: backoff_initial doubled n times, at most backoff_max, with ±20 % jitter so that
// daemons crashing together do not restart in lockstep.
func backoffDelay(cfg config.Daemon, n int) time.Duration {
	delay := cfg.BackoffInitial
	for i := 0; i < n && delay < cfg.BackoffMax; i++ {
		delay = min(delay, cfg.BackoffMax/2) * 2 // (doubling past BackoffMax could overflow)
	}
	delay = min(delay, cfg.BackoffMax)
	// Capped in floating point: +20 % of a delay near the longest duration would overflow
	// time.Duration, and the restart would come at once.
	jittered := float64(delay) * (0.8 + 0.4*rand.Float64())
	if jittered >= float64(cfg.BackoffMax) {
		return cfg.BackoffMax
	}
	return time.Duration(jittered)
}

// fireDaemon is the one place a daemon's transitions are applied, logged and notified.
func (s *Supervisor) fireDaemon(d *daemon, e fsm.Event, level zapcore.Level, det detail) {
	tr, err := d.machine.Fire(e)
	if err != nil {
		s.log.Warn("illegal event not applied", zlog.String("machine", d.cfg.Name), zlog.String("event", string(e)),
			zlog.String("state", string(d.machine.Current())), zlog.Error(err))
		return
	}
	// The exit code as a value, not a pointer: a pointer made here would put it (or det) on
	// the heap at every transition, logged and notified or not (the reap path's
	// allocations, BenchmarkDeath).
	exitCode, hasExitCode := 0, false
	signal := det.signal
	switch {
	case det.died:
		exitCode, hasExitCode = det.exit.Code(), true
		if sig, ok := det.exit.Signal(); ok {
			signal = procs.SignalName(sig)
		}
	case det.hasState:
		exitCode, hasExitCode = det.status, true
	}
	// The pid of a process in the transition: the one spawned, or the one there when it
	// came (a death, a stop, readiness). A start, hold, cancel or give-up concerns none,
	// and d.pid is then a dead run's. (0: a spawn that failed.)
	var pid int
	if liveState(tr.From) || liveState(tr.To) {
		pid = d.pid
	}
	// How long the run that just died lasted: a crash loop's runs of a second tell another
	// story than a crash after a day (supervisord and s6-svstat say it too).
	ranFor := time.Duration(-1)
	if det.died && !d.startedAt.IsZero() {
		ranFor = time.Since(d.startedAt).Round(time.Millisecond)
	}
	var nextRestart time.Duration
	if tr.To == fsm.DaemonBackoff && !d.restartAt.IsZero() {
		nextRestart = time.Until(d.restartAt).Round(time.Millisecond)
	}
	if ce := s.log.Check(level, "transition"); ce != nil {
		fields := make([]zlog.Field, 0, 11)
		fields = append(fields, zlog.String("machine", tr.Machine), zlog.String("event", string(tr.Event)),
			zlog.String("from", string(tr.From)), zlog.String("to", string(tr.To)))
		if pid > 0 {
			fields = append(fields, zlog.Int("pid", pid))
		}
		if hasExitCode {
			fields = append(fields, zlog.Int("exit_code", exitCode))
		}
		if ranFor >= 0 {
			fields = append(fields, zlog.Duration("ran_for", ranFor))
		}
		if signal != "" {
			fields = append(fields, zlog.String("signal", signal))
		}
		if det.reason != "" {
			fields = append(fields, zlog.String("reason", det.reason))
		}
		if d.restarts > 0 {
			fields = append(fields, zlog.Int("restarts", d.restarts))
		}
		if nextRestart > 0 {
			fields = append(fields, zlog.Duration("next_restart_in", nextRestart))
		}
		ce.Write(fields...)
	}
	if s.opts.Notifier != nil {
		ev := notify.Event{Time: time.Now().UTC(), Daemon: d.cfg.Name, Pid: pid, Event: string(tr.Event),
			From: string(tr.From), To: string(tr.To), Signal: signal, Restarts: d.restarts,
			Reason: det.reason}
		if hasExitCode {
			code := exitCode // (a variable of this branch: on the heap only when notifying)
			ev.ExitCode = &code
		}
		if nextRestart > 0 {
			ev.NextRestartIn = nextRestart.String()
		}
		s.opts.Notifier.Send(ev)
	}
}

// maxUndrainedRuns bounds the runs of one label (a daemon, or its exec probe) whose
// labelled output is not all written yet. Each holds two pipes, a copier and its 64 KiB
// buffer until its last line is out; a stdout nobody reads (a paused terminal, a stuck log
// driver) would otherwise pile them up at every probe attempt and every crash-loop
// restart, without end (a review: 700 descriptors and 32 MB in 30 s). Past it, a run's
// output is discarded, for that whole run (pastUndrainedBound).
const maxUndrainedRuns = 8

// pruneDrained drops the pipes of earlier spawns whose copiers reached EOF, so that a daemon
// restarting for days does not grow the list (the chaos suite saw RSS climb under a crash
// loop with log = "prefix").
func pruneDrained(pipes []*daemonlog.Pipes) []*daemonlog.Pipes {
	kept := pipes[:0]
	for _, p := range pipes {
		select {
		case <-p.Done():
		default:
			kept = append(kept, p)
		}
	}
	clear(pipes[len(kept):])
	return kept
}
