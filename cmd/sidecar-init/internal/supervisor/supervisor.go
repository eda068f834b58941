// Package supervisor is sidecar-init's event loop: one goroutine that spawns the daemons,
// reaps every exit, forwards signals, runs the grace and restart timers and answers the
// control socket, firing the events of the fsm tables. It owns all supervisor state;
// nothing else touches a state machine.
package supervisor

import (
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/daemonlog"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// Signals are the loop's inputs from the outside world, one channel per kind so that a storm
// of one kind (10 000 SIGHUPs) cannot crowd a SIGTERM out of a full buffer: os/signal drops
// a signal when its channel is full.
type Signals struct {
	Stop    <-chan os.Signal // procs.StopSignals
	Forward <-chan os.Signal // procs.ForwardedSignals
	Child   <-chan os.Signal // SIGCHLD
	Drop    <-chan os.Signal // procs.DroppedSignals: received so they cannot hurt, then dropped
}

// Notifier takes daemon events for the supervise sidecar; Send must never block.
type Notifier interface {
	Send(notify.Event)
	// Close waits a bounded time for the events queued to be delivered, and logs what was
	// not: the loop calls it once it has ended, before its last log line.
	Close()
}

// Sinks are the supervisor's stdout and stderr, shared line by line.
type Sinks struct {
	Stdout, Stderr *daemonlog.Sink
}

// logDrainTimeout bounds the wait, at exit, for labelled daemon lines still in pipes (the
// copiers reach EOF in microseconds unless a reader stalls or an escaped process holds one).
const logDrainTimeout = 300 * time.Millisecond

// Options configure a Supervisor.
type Options struct {
	Daemons []config.Daemon
	// Environ is the environment every daemon inherits, before its own env is added.
	Environ []string
	Log     *zlog.Logger
	Signals Signals
	// Calls are control-socket requests (nil: no control socket).
	Calls <-chan control.Call
	// Notifier receives every daemon transition (nil: none).
	Notifier Notifier
	// Stdin is every daemon's standard input (normally /dev/null).
	Stdin *os.File
	// Sinks take the lines of daemons whose log mode is prefix or json.
	Sinks Sinks
	// PID1 says whether this process is PID 1 of its namespace: then, once the daemons are
	// done, whatever escaped their process groups can be killed with kill(-1).
	PID1 bool
	// ReadyFile is written whenever every daemon that should run becomes ready, and removed
	// when one stops being so, at start, when the shutdown begins and at exit ("": none).
	ReadyFile string
	// ReverseStop: stop dependents first, each `after` daemon once its dependents are gone,
	// all within the largest grace (stop_order = "reverse").
	ReverseStop bool
	// SupervisorTable defaults to fsm.SupervisorTable; a test passes one with the other
	// crash-policy row.
	SupervisorTable *fsm.Table
}

// Supervisor is the event loop's state. Every field is owned by the loop goroutine.
type Supervisor struct {
	opts    Options
	log     *zlog.Logger
	machine *fsm.Machine
	daemons []*daemon
	byPid   map[int]*daemon
	// probeResults brings the outcome of tcp and file attempts, readiness and liveness,
	// which run beside the loop (exec probes are processes: the loop spawns and reaps them
	// itself). Buffered for two attempts per daemon; a stale one still in flight (an
	// earlier incarnation's, or a liveness attempt given up at its timeout) may wait for
	// the loop, which always takes them.
	probeResults chan probeResult
	// execProbes are the running exec probes, by pid.
	execProbes map[int]execProbe
	// liveAttempts numbers the liveness attempts, so that a late result is told from the
	// current attempt's.
	liveAttempts uint64
	// allReady: every daemon that should run is ready, as last logged (and the ready file
	// written); false again once one is not.
	allReady bool
	// wasAllReady: "every daemon is ready" was logged once, at info.
	wasAllReady bool
	// reverseDeadline bounds a stop_order = "reverse" shutdown: the largest grace.
	reverseDeadline time.Time
	// logPipes are the labelled-log pipes of every spawn, drained until EOF.
	logPipes []*daemonlog.Pipes
	// leftoversStopping: every daemon died on its own and what they left is being stopped.
	leftoversStopping bool
	// unlabelled: the labels whose runs go unlabelled for now (maxUndrainedRuns reached).
	unlabelled map[string]bool
	// firstFailure is the status of the first daemon that died on its own with a nonzero
	// status: the supervisor's exit status. Deaths after the shutdown began do not count.
	firstFailure int
	firstFailed  string // the daemon whose status firstFailure is
	// childrenLeft is what the last wait4 drain said: false once it returned ECHILD.
	childrenLeft bool
	// orphansReaped: the current wait4 drain reaped a process that was no daemon.
	orphansReaped bool
	// stopSignal is the signal that started the shutdown (the default stop signal).
	stopSignal syscall.Signal
	// stopAsked: a stop signal has arrived; the next one SIGKILLs everything.
	stopAsked bool
	// arrivingStop is the first stop signal while the deaths waiting when it was acted on
	// are reaped: a death of that same signal is the stop's, not a failure.
	arrivingStop syscall.Signal
	// stopCaught is a stop signal taken from its channel while a reap waited for it
	// (awaitArrivingStop), acted on at the end of that reap.
	stopCaught syscall.Signal
	// reaped holds a drain's exits of daemons and probes, handled once the drain is done
	// (onExits); orphans' are handled as they come. Reused from drain to drain.
	reaped []procs.Exit
	// handling is the drain onExits is handling, nil between drains: exits wait4 took
	// whose turn may not have come yet (exitedUnhandled).
	handling []procs.Exit
	// sweptEveryone: as PID 1, kill(-1, SIGKILL) was sent to what escaped the groups (since
	// the last spawn).
	sweptEveryone bool
	// escapeLookAt: as PID 1, once the daemons are done, when the children still left are
	// taken for escaped and swept (dealWithEscaped), or looked at again after the sweep;
	// zero when no look is due. sweptAt: when the sweep went.
	escapeLookAt time.Time
	sweptAt      time.Time
	// readyOps is opts.ReadyFile, written and removed without following what a daemon put
	// on its path (nil: none); a test puts one that blocks or fails in its place before Run.
	readyOps readyFileOps
	// readyFile is the worker that does readyOps, told by the loop what the file should
	// say (nil while not running, or with no ready file).
	readyFile *readyFileWorker
	// walk numbers the anyDependentLive calls, for their marks on the daemons.
	walk       uint64
	timer      *time.Timer
	timerArmed bool      // the timer is set and its value not yet received
	timerAt    time.Time // where it is set to go off, while armed
}

// New prepares the daemons; nothing is spawned until Run. The caller validates the tables
// (main does at start-up; a test may hand in a deliberately different one).
func New(opts Options) *Supervisor {
	supervisorTable := fsm.SupervisorTable
	if opts.SupervisorTable != nil {
		supervisorTable = *opts.SupervisorTable
	}
	s := &Supervisor{
		opts:    opts,
		log:     opts.Log,
		machine: fsm.NewMachine(config.ReservedName, supervisorTable),
		byPid:   make(map[int]*daemon, len(opts.Daemons)),
		timer:   time.NewTimer(time.Hour),

		readyOps: openReadyFile(opts.ReadyFile),

		probeResults: make(chan probeResult, 2*len(opts.Daemons)),
		execProbes:   map[int]execProbe{},
		unlabelled:   map[string]bool{},
	}
	s.timer.Stop()
	byName := map[string]*daemon{}
	for _, d := range opts.Daemons {
		dm := &daemon{
			cfg:     d,
			env:     DaemonEnv(opts.Environ, d),
			machine: fsm.NewMachine(d.Name, fsm.DaemonTable(d.Restart)),
		}
		s.daemons = append(s.daemons, dm)
		byName[d.Name] = dm
	}
	for _, d := range s.daemons {
		for _, name := range d.cfg.After {
			if dep, selected := byName[name]; selected {
				d.deps = append(d.deps, dep)
				dep.dependents = append(dep.dependents, d)
			}
		}
	}
	for _, u := range config.UnselectedAfter(opts.Daemons) {
		s.log.Warn("dependency not selected: starting without waiting for it",
			zlog.String("daemon", u.Daemon), zlog.String("dependency", u.After))
	}
	return s
}

// Run spawns the daemons and runs the loop until the supervisor's machine is done. It
// returns the supervisor's exit status.
func (s *Supervisor) Run() int {
	defer s.timer.Stop()
	s.watchLostLines()
	s.readyFile = startReadyFileWorker(s.readyOps, s.log)
	if slices.ContainsFunc(s.daemons, func(d *daemon) bool { return d.cfg.Credential != nil }) {
		// Its thread now, while the container has pids to spare (see StartAsUserWorker).
		procs.StartAsUserWorker()
	}
	// A ready file left by an earlier run (a shared volume, a container restarted in place)
	// would say "ready" before any daemon is; it is written again once they all are. The
	// worker removes it beside the start-up, and before any write (it takes one word at a
	// time, in order).
	s.readyFile.set(false)
	s.log.Info("starting daemons", zlog.Int("count", len(s.daemons)), zlog.Bool("pid1", s.opts.PID1))
	for !s.machine.Done() {
		if d := s.nextToStart(); d != nil {
			// Start-up (and a start once its `after` daemons are ready): one daemon per turn,
			// with a look at the stop channel first, so a signal during a long start-up stops
			// what runs and cancels the rest at once.
			select {
			case sig := <-s.opts.Signals.Stop:
				s.onStopSignal(sig.(syscall.Signal))
			default:
				s.spawn(d, time.Now())
			}
			s.settle()
			continue
		}
		select {
		case sig := <-s.opts.Signals.Stop:
			s.onStopSignal(sig.(syscall.Signal))
		case sig := <-s.opts.Signals.Forward:
			s.forward(sig.(syscall.Signal))
		case <-s.opts.Signals.Child:
			s.onChild()
		case sig := <-s.opts.Signals.Drop:
			s.onDroppedSignal(sig.(syscall.Signal))
		case call := <-s.opts.Calls:
			call.Reply <- s.onCall(call.Request, time.Now())
		case r := <-s.probeResults:
			s.onProbeResult(r, time.Now())
		case <-s.timerC():
			s.timerArmed = false
			s.onTimer(time.Now())
		}
		s.settle()
	}
	// Gone already after a stop signal, not when every daemon died. The removal runs beside
	// the drain of the log pipes, within one bound for both: neither can hold the exit.
	readyFileBy := time.Now().Add(readyFileExitWait)
	s.readyFile.end()
	s.drainLogPipes()
	s.readyFile.awaitEnd(readyFileBy)
	if s.opts.Notifier != nil {
		// Before the last line: "supervisor exiting" says why, and a script reads it with
		// tail -1; the count of undelivered events would otherwise come after it.
		s.opts.Notifier.Close()
	}
	if s.firstFailure != 0 {
		// At error level, so that the cause of a nonzero exit is in the log at every
		// --log-level (at warn or error an info line would be the one missing).
		s.log.Error("supervisor exiting", zlog.Int("exit_code", s.firstFailure), zlog.String("daemon", s.firstFailed))
	} else {
		s.log.Info("supervisor exiting", zlog.Int("exit_code", 0))
	}
	return s.firstFailure
}

// nextToStart is the first daemon, in table order, that may be spawned now: a pending one
// whose `after` daemons are all ready (or that an operator started), or one in backoff
// whose due restart waited; in either case only once what its earlier runs left in their
// groups is gone. nil when none may (or the supervisor is shutting down).
func (s *Supervisor) nextToStart() *daemon {
	if s.shuttingDown() {
		return nil
	}
	for _, d := range s.daemons {
		switch state := d.machine.Current(); {
		case state == fsm.DaemonPending && (d.startAsked || d.depsReady()):
		case state == fsm.DaemonBackoff && d.restartHeld && d.depsSettled():
		default:
			continue
		}
		if !d.oldRunsLeft() { // (their groups close on reaps and on the grace's SIGKILL)
			return d
		}
	}
	return nil
}

func (s *Supervisor) shuttingDown() bool {
	switch s.machine.Current() {
	case fsm.SupervisorTerminating, fsm.SupervisorKilling, fsm.SupervisorExited:
		return true
	}
	return false
}

// drainLogPipes waits, within logDrainTimeout, for the copiers of labelled daemon output to
// reach EOF, so the last lines a daemon wrote appear before the supervisor exits. A process
// that escaped and still holds a pipe (only possible outside PID 1) cannot hold the exit.
func (s *Supervisor) drainLogPipes() {
	defer s.reportLostLines()
	timeout := time.NewTimer(logDrainTimeout)
	defer timeout.Stop()
	for _, p := range s.logPipes {
		select {
		case <-p.Done():
		case <-timeout.C:
			var open []string
			for _, p := range pruneDrained(s.logPipes) {
				if !slices.Contains(open, p.Label()) {
					open = append(open, p.Label())
				}
			}
			s.log.Warn("labelled daemon output still open at exit; the rest is lost", zlog.Strings("labels", open))
			return
		}
	}
}

// watchLostLines has labelled lines lost to a failed write on stdout or stderr (EPIPE, a
// full disk) said in the log, as the supervisor's own dropped lines are: at the first
// failure, and with the count once writes come back (reportLostLines: at exit).
func (s *Supervisor) watchLostLines() {
	for stream, sink := range s.sinks() {
		sink.OnLoss(func(lost uint64, err error) {
			if err != nil {
				s.log.Error("labelled daemon output lost: writing it failed; lost lines are counted until writes succeed again",
					zlog.String("stream", stream), zlog.Uint64("lost_lines", lost), zlog.Error(err))
				return
			}
			s.log.Warn("labelled daemon output written again", zlog.String("stream", stream), zlog.Uint64("lost_lines", lost))
		})
	}
}

// sinks yields the labelled-output sinks there are, by stream, stdout first.
func (s *Supervisor) sinks() iter.Seq2[string, *daemonlog.Sink] {
	return func(yield func(string, *daemonlog.Sink) bool) {
		for _, k := range []struct {
			stream string
			sink   *daemonlog.Sink
		}{{"stdout", s.opts.Sinks.Stdout}, {"stderr", s.opts.Sinks.Stderr}} {
			if k.sink != nil && !yield(k.stream, k.sink) {
				return
			}
		}
	}
}

// reportLostLines logs, at exit, the labelled lines lost since writes last failed.
func (s *Supervisor) reportLostLines() {
	for stream, sink := range s.sinks() {
		if lost := sink.TakeLost(); lost > 0 {
			s.log.Error("labelled daemon output lost: writing it failed until exit",
				zlog.String("stream", stream), zlog.Uint64("lost_lines", lost))
		}
	}
}

func (s *Supervisor) timerC() <-chan time.Time {
	if !s.timerArmed {
		return nil
	}
	return s.timer.C
}

// onChild handles a SIGCHLD: the reaps, or, when a stop signal came too, the stop first,
// so that a death it caused counts as its own (onStopSignal reaps first itself).
func (s *Supervisor) onChild() {
	select {
	case sig := <-s.opts.Signals.Stop:
		s.onStopSignal(sig.(syscall.Signal))
	default:
		s.reap()
	}
}

// onTimer handles whatever deadlines have passed: graces (SIGKILL), restarts, readiness
// and liveness attempts and their timeouts, and the end of a reverse-order shutdown.
func (s *Supervisor) onTimer(now time.Time) {
	// What has already happened counts before any deadline: the loop's select takes ready
	// channels in random order, and a SIGCHLD may not even be in its channel yet (os/signal
	// forwards it from a goroutine of its own). So the exits first, whether or not their
	// SIGCHLD came (wait4 sees every zombie; one system call a timer event): a daemon that
	// died as its grace ran out is reaped, not killed; an exec probe or a oneshot that ended
	// at its timeout gives its result. Then the probe results queued: an attempt that
	// passed as its timeout came is not failed for it.
	select {
	case <-s.opts.Signals.Child: // taken: the reap below drains what it announced
	default:
	}
	s.onChild()
	for drained := false; !drained; {
		select {
		case r := <-s.probeResults:
			s.onProbeResult(r, now)
		default:
			drained = true
		}
	}
	due := func(t time.Time) bool { return !t.IsZero() && !t.After(now) }
	if due(s.reverseDeadline) {
		s.reverseDeadline = time.Time{}
		s.stopAwaiting(now, true)
	}
	for _, d := range s.daemons {
		for i := range d.groups {
			if g := &d.groups[i]; due(g.deadline) {
				s.killGroup(d, g, "grace expired") // or a look after the SIGKILL
			}
		}
		d.dropClosedGroups()
		switch d.machine.Current() {
		case fsm.DaemonBackoff:
			if due(d.restartAt) {
				s.restartNow(d, now)
			}
		case fsm.DaemonStarting:
			if due(d.readyDeadline) {
				s.notReadyInTime(d, now)
			} else if due(d.probeAt) && !d.probing {
				s.probe(d, now)
			}
		case fsm.DaemonRunning:
			if due(d.liveDeadline) {
				s.livenessTimedOut(d, now)
			} else if due(d.liveAt) && d.liveAttempt == 0 {
				s.livenessProbe(d, now)
			}
		}
	}
	s.armTimer(now)
}

// armTimer points the one timer at the earliest deadline: a grace, a restart, a probe
// attempt or its timeout, a look for escaped processes.
func (s *Supervisor) armTimer(now time.Time) {
	var earliest time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (earliest.IsZero() || t.Before(earliest)) {
			earliest = t
		}
	}
	consider(s.reverseDeadline)
	consider(s.escapeLookAt)
	for _, d := range s.daemons {
		for _, g := range d.groups {
			consider(g.deadline)
		}
		switch d.machine.Current() {
		case fsm.DaemonBackoff:
			consider(d.restartAt)
		case fsm.DaemonStarting:
			consider(d.readyDeadline)
			if !d.probing {
				consider(d.probeAt)
			}
		case fsm.DaemonRunning:
			consider(d.liveDeadline)
			if d.liveAttempt == 0 {
				consider(d.liveAt)
			}
		}
	}
	if s.timerArmed && earliest.Equal(s.timerAt) {
		// Already set there. Stop and Reset of a set timer make the Go runtime wake its
		// network poller (a write to an eventfd and a thread woken to re-read its timers):
		// during a shutdown that was once per reaped daemon, about 30 µs of CPU each.
		return
	}
	s.timer.Stop()
	s.timerArmed, s.timerAt = !earliest.IsZero(), earliest
	if s.timerArmed {
		s.timer.Reset(earliest.Sub(now))
	}
}

// reap drains every exit that is ready. Unknown pids are orphans re-parented to us.
func (s *Supervisor) reap() {
	s.reaped = s.reaped[:0]
	left, err := procs.ReapAll(s.takeExit, s.onTraceStop)
	if err != nil {
		// wait4 fails only with EINVAL/EFAULT-type programming errors; say so, keep going.
		s.log.Error("reaping failed", zlog.Error(err))
	}
	s.childrenLeft = left
	s.onExits(s.reaped)
	if sig := s.stopCaught; sig != 0 {
		// Acted on now, before whatever called this reap (an operator's call) goes on as if
		// none had come. (onStopSignal reaps again: s.reaped is done with by now.)
		s.stopCaught = 0
		s.onStopSignal(sig)
	}
	if s.orphansReaped {
		// A group whose last process just went is closed now, not at the shutdown: by then
		// its pgid could be a new process's (pids are reused), which would get the stop
		// signal and grace of a daemon long dead. Once a batch, not once an orphan.
		s.orphansReaped = false
		s.closeEmptyGroups()
	}
}

// takeExit keeps a daemon's or a probe's exit for onExits and handles an orphan's at once:
// the 5000 orphans of a fork bomb's end need no buffer.
func (s *Supervisor) takeExit(e procs.Exit) {
	_, daemon := s.byPid[e.Pid]
	_, probe := s.execProbes[e.Pid]
	if daemon || probe {
		s.reaped = append(s.reaped, e)
		return
	}
	if ce := s.log.Check(zapcore.DebugLevel, "reaped orphan"); ce != nil {
		ce.Write(zlog.Int("pid", e.Pid), zlog.Int("exit_code", e.Code()))
	}
	s.orphansReaped = true
}

// onTraceStop: a child made sidecar-init its tracer (PTRACE_TRACEME, as an anti-debugger
// check does) and is stopped at a ptrace stop; it is alive. sidecar-init is no debugger and
// cannot resume it: ptrace calls must come from the thread that forked it, and the runtime
// does not let the loop pick that thread again. It stays as it is, its run live: a probe
// sees it hang, and a stop ends it with SIGKILL once its grace runs out (a traced process
// takes no other signal).
func (s *Supervisor) onTraceStop(e procs.Exit) {
	name := "(not a daemon)"
	if d := s.byPid[e.Pid]; d != nil {
		name = d.cfg.Name
	} else if probe, ok := s.execProbes[e.Pid]; ok {
		name = probe.d.cfg.Name + " (its probe)"
	}
	s.log.Warn("a process stopped under ptrace with sidecar-init as its tracer (it asked with PTRACE_TRACEME); sidecar-init cannot resume it: it stays stopped until SIGKILLed, at a stop once its grace runs out",
		zlog.String("daemon", name), zlog.Int("pid", e.Pid), zlog.String("signal", procs.SignalName(e.Status.StopSignal())))
}

// onExits handles one drain's exits in wait4's order. When one of them is a death that a
// stop signal on its way would excuse, the wait for that signal comes first, before any of
// them: wait4's order is the kernel's, and an operator's restart reaped before that death
// would otherwise spawn its second run only for the shutdown to stop it.
func (s *Supervisor) onExits(exits []procs.Exit) {
	s.handling = exits
	defer func() { s.handling = nil }()
	if slices.ContainsFunc(exits, s.mayBeTheStops) {
		s.awaitArrivingStop()
	}
	for _, e := range exits {
		s.onExit(e)
	}
}

func (s *Supervisor) onExit(e procs.Exit) {
	d := s.byPid[e.Pid]
	if probe, isProbe := s.execProbes[e.Pid]; isProbe {
		delete(s.execProbes, e.Pid)
		// A probe's group is its own and nothing else's: what the probe left running there
		// (`sleep 987 &`) would pile up at every attempt and outlive sidecar-init. Its
		// leader was reaped just now and the group still holds its pgid while anyone is in
		// it, so this reaches only the probe's leftovers.
		if delivered, _ := procs.SignalGroup(e.Pid, syscall.SIGKILL); delivered {
			s.log.Info("killed processes a probe left in its process group",
				zlog.String("daemon", probe.d.cfg.Name), zlog.Int("pgid", e.Pid), zlog.Bool("liveness", probe.liveness))
		}
		s.onProbeResult(probeResult{d: probe.d, pid: probe.forPid, ok: e.Code() == 0,
			err: fmt.Errorf("exec probe exited with status %d", e.Code()), liveness: probe.liveness, attempt: probe.attempt}, time.Now())
		return
	}
	delete(s.byPid, e.Pid)
	if d.runPipes != nil {
		// Its last line without a newline comes out now, not once its leftovers close the pipe.
		d.runPipes.RunEnded()
		d.runPipes = nil
	}
	now := time.Now()
	s.onDaemonExit(d, e, now)
	if s.shuttingDown() {
		s.closeEmptyGroups() // (settle then stops what a reverse order held back for it)
		s.armTimer(now)
	}
}

// diedOnItsOwn applies the crash policy: the supervisor's table decides what a death means.
// exit is the reaped status (nil for an exec failure).
func (s *Supervisor) diedOnItsOwn(d *daemon, status int, exit *procs.Exit, stoppedUnresponsive bool) {
	if s.shuttingDown() {
		return // neither counted nor a crash: the shutdown is already under way
	}
	if d.finished {
		// A oneshot that did its work: no death, whatever the crash policy (settle exits
		// once every daemon is done, finished oneshots included).
		return
	}
	switch {
	case s.arrivingStop != 0 && diedOf(exit, s.arrivingStop) && !stoppedUnresponsive:
		// (Not a daemon stopped as unresponsive: sidecar-init sent it that signal itself,
		// for a failure, before any stop was asked.)
		// Killed by that signal, or exited 128+signal, as the JVM and many trapping
		// scripts do once they have handled it. A daemon that exited 143 of its own in the
		// instant before the stop is excused too: no wait status can tell the two apart,
		// and a stop that gives a JVM's bundle 0 or 143 by chance is the worse of the two.
		s.log.Info("daemon died of the signal that is stopping sidecar-init, sent to it too: not counted as a failure",
			zlog.String("daemon", d.cfg.Name), zlog.String("signal", procs.SignalName(s.arrivingStop)))
	case status != 0 && s.firstFailure == 0:
		s.firstFailure, s.firstFailed = status, d.cfg.Name
	}
	tr, ok := s.fireSupervisor(fsm.SupervisorDaemonDied, zlog.String("daemon", d.cfg.Name), zlog.Int("exit_code", status))
	if ok && tr.To == fsm.SupervisorTerminating && tr.From != fsm.SupervisorTerminating {
		s.beginShutdown(syscall.SIGTERM)
	}
}

// arrivingStopWait bounds how long a reap waits for a stop signal that may be on its way
// (awaitArrivingStop). Measured gap when it was: about 0.3 ms. A variable for the tests,
// which make the wait certain to see the stop.
var arrivingStopWait = 10 * time.Millisecond

// awaitArrivingStop: a daemon died of a stop signal (or exited 128+it) on its own, no stop
// asked yet (mayBeTheStops). One signal sent to every process at once (a kill of the whole
// tree, systemd's KillMode=control-group) would also be on its way to sidecar-init, sent
// first, yet its SIGCHLD can reach the loop first: the kernel hands the two signals to two
// threads, and the Go runtime's handler of the stop can run after the other's. Seen in
// about 1 run in 100 (2 in 20 on a loaded machine) of a kill -TERM of sidecar-init then of
// its 20 daemons, the stop 0.3 ms behind: exit 143 instead of 0. So a drain with such a
// death waits a moment for the stop signal; one that comes is acted on once the drain is
// handled, and excuses the deaths of that signal now as it would have then. Costs
// arrivingStopWait only when none comes: a daemon someone else killed with that signal.
func (s *Supervisor) awaitArrivingStop() {
	t := time.NewTimer(arrivingStopWait)
	defer t.Stop()
	select {
	case sig := <-s.opts.Signals.Stop:
		s.stopCaught = sig.(syscall.Signal)
		s.arrivingStop = s.stopCaught
		s.dropRestartsSecondHalves()
	case <-t.C:
	}
}

// mayBeTheStops says e is a death that a stop signal on its way would excuse: a daemon that
// was up (not one sidecar-init was stopping, as unresponsive or for an operator) died of a
// stop signal or exited 128+it, while no stop is asked or under way.
func (s *Supervisor) mayBeTheStops(e procs.Exit) bool {
	d := s.byPid[e.Pid]
	if d == nil || s.stopAsked || s.arrivingStop != 0 || s.shuttingDown() {
		return false
	}
	if state := d.machine.Current(); state != fsm.DaemonRunning && state != fsm.DaemonStarting {
		return false
	}
	return slices.ContainsFunc(procs.StopSignals, func(sig syscall.Signal) bool { return diedOf(&e, sig) })
}

// diedOf says the daemon was killed by sig, or exited with the status a process that
// handled sig by exiting reports (128+sig).
func diedOf(exit *procs.Exit, sig syscall.Signal) bool {
	return exit != nil && exit.Code() == 128+int(sig)
}

// onDroppedSignal logs a dropped signal: a fault signal at warn, since someone sent it with
// kill and an operator may be asking why nothing happened.
func (s *Supervisor) onDroppedSignal(sig syscall.Signal) {
	switch {
	case sig == syscall.SIGPIPE:
		// Never log a SIGPIPE: it comes from writing to a broken stdout or stderr, and
		// logging it would write there again and raise the next one, for ever (the chaos
		// suite caught a debug-level supervisor spinning at 95 % of a core).
	case slices.Contains(procs.FaultSignals, sig):
		s.log.Warn("fault signal sent to the supervisor dropped; it is not forwarded to the daemons",
			zlog.String("signal", procs.SignalName(sig)))
	default:
		s.log.Debug("signal dropped", zlog.String("signal", procs.SignalName(sig)))
	}
}

// forward sends a forwarded signal to every live daemon's group whose forward_signals
// takes it.
func (s *Supervisor) forward(sig syscall.Signal) {
	var leftOut []string
	for _, d := range s.daemons {
		switch {
		case !d.live():
		case d.cfg.Forwards(sig):
			s.signalGroup(d, sig)
		default:
			leftOut = append(leftOut, d.cfg.Name)
		}
	}
	if len(leftOut) > 0 {
		// Said at info: an operator whose reload reached only some daemons asks why.
		s.log.Info("signal not forwarded to the daemons whose forward_signals leaves it out",
			zlog.String("signal", procs.SignalName(sig)), zlog.Strings("not_forwarded_to", leftOut))
		return
	}
	if ce := s.log.Check(zapcore.DebugLevel, "signal forwarded"); ce != nil {
		ce.Write(zlog.String("signal", procs.SignalName(sig)))
	}
}

// signalGroup sends the daemon's current process group sigs, in order, and says whether
// anyone was in it.
func (s *Supervisor) signalGroup(d *daemon, sigs ...syscall.Signal) bool {
	delivered, failed := false, false
	for _, sig := range sigs {
		ok, err := procs.SignalGroup(d.pid, sig)
		if err != nil {
			failed = true
			s.log.Error("could not signal a daemon's process group", zlog.String("daemon", d.cfg.Name),
				zlog.String("signal", procs.SignalName(sig)), zlog.Error(err))
		}
		delivered = delivered || ok
	}
	if d.live() {
		// A daemon that moved itself to another group (setpgid) is not reached by its own
		// group's signal, whether or not others are still in that group: it still gets its
		// signals, at its pid. (Unreaped, its pid cannot have been reused.)
		if pgid, perr := syscall.Getpgid(d.pid); perr == nil && pgid != d.pid {
			for _, sig := range sigs {
				if syscall.Kill(d.pid, sig) == nil {
					delivered = true
				}
			}
			if ce := s.log.Check(zapcore.DebugLevel, "daemon left its process group; signalled at its pid"); ce != nil {
				ce.Write(zlog.String("daemon", d.cfg.Name), zlog.Int("pgid", pgid), zlog.String("signal", procs.SignalName(sigs[0])))
			}
		}
	}
	if !delivered && !failed {
		// ESRCH: nobody is left in the group (tini: "child was already dead").
		if ce := s.log.Check(zapcore.DebugLevel, "process group already empty"); ce != nil {
			ce.Write(zlog.String("daemon", d.cfg.Name), zlog.String("signal", procs.SignalName(sigs[0])))
		}
	}
	// EPERM would mean someone is there that we may not signal: not empty.
	return delivered || failed
}

// settle fires the supervisor's "nothing left" events once their condition holds.
func (s *Supervisor) settle() {
	switch s.machine.Current() {
	case fsm.SupervisorRunning, fsm.SupervisorDegraded:
		s.cancelOrphanedStarts()
		s.checkAllReady()
	}
	switch s.machine.Current() {
	case fsm.SupervisorRunning, fsm.SupervisorDegraded:
		// (Running: every daemon a oneshot that finished.) Exec probes are killed with
		// their daemon; wait for them to be reaped too.
		if s.allDaemonsDone() && len(s.execProbes) == 0 {
			if s.stopLeftoverGroups() {
				return // wait for them to go: reaps, and the looks and SIGKILL at their grace
			}
			if s.dealWithEscaped() {
				return // wait for the SIGCHLDs of the sweep
			}
			s.fireSupervisor(fsm.SupervisorAllDied)
		}
	case fsm.SupervisorTerminating, fsm.SupervisorKilling:
		// Groups close on reaps and on the looks after a SIGKILL: a daemon a reverse-order
		// shutdown holds back goes once its dependents' last processes have.
		s.stopAwaiting(time.Now(), false)
		if s.anyDaemonLive() || s.anyGroupOpen() || len(s.execProbes) > 0 {
			return
		}
		if s.dealWithEscaped() {
			return // wait for the SIGCHLDs of the sweep
		}
		s.fireSupervisor(fsm.SupervisorStopped)
	}
}

// dealWithEscaped runs once the daemons are done, before either exit: processes that left
// their daemon's group (setsid) are still children of ours. As PID 1 they are killed
// (kill(-1)) so that none outlives the exit's drain of the log pipes it holds, and it says
// whether their reaps are still to come (the loop reaps until wait4 says no child is left).
// Outside PID 1 they cannot be stopped; their pids are logged.
func (s *Supervisor) dealWithEscaped() (waiting bool) {
	if !s.opts.PID1 {
		s.reportEscaped()
		return false
	}
	if s.childrenLeft {
		s.reap() // what is ready now, before deciding anything escaped
	}
	if !s.childrenLeft {
		s.escapeLookAt = time.Time{}
		return false
	}
	now := time.Now()
	if s.sweptEveryone {
		// Their reaps end the wait, as for a group after its SIGKILL; and, as for a group, a
		// look every groupRecheck gives up past killWait. What the sweep could not kill (a
		// process that made itself root under a non-root sidecar-init, one stuck in the
		// kernel) must not hold the exit for ever: as PID 1, the exit ends it anyway.
		if now.Sub(s.sweptAt) < killWait {
			s.escapeLookAt = now.Add(groupRecheck)
			s.armTimer(now)
			return true
		}
		pids, _ := procs.Children()
		s.log.Warn("processes that escaped their daemon's process group are still there a second after the SIGKILL to every process: "+
			"exiting without their reaps (a process this sidecar-init may not signal, or one stuck in the kernel)", zlog.Ints("pids", pids))
		s.escapeLookAt = time.Time{}
		return false
	}
	// A child left now is in a daemon's group, SIGKILLed with it a moment ago and not dead
	// yet, or it escaped its group (setsid). /proc cannot always tell them apart (it may be
	// another PID namespace's), so the dying get groupRecheck: their SIGCHLDs end the wait,
	// and only what is left after it escaped. Sweeping at once took the first kind for the
	// second: a warning and a kill(-1) whenever the last daemon left a process behind.
	if s.escapeLookAt.IsZero() {
		s.escapeLookAt = now.Add(groupRecheck)
		s.armTimer(now)
		return true
	}
	if now.Before(s.escapeLookAt) {
		return true
	}
	s.sweptEveryone, s.sweptAt = true, now
	s.escapeLookAt = now.Add(groupRecheck)
	s.armTimer(now)
	s.log.Warn("killing processes that escaped their daemon's process group")
	if err := procs.KillEveryone(syscall.SIGKILL); err != nil {
		s.log.Error("kill(-1, SIGKILL) failed", zlog.Error(err))
	}
	return true
}

// reportEscaped logs the children that will outlive the supervisor (only possible outside
// PID 1): processes that left their daemon's process group (setsid). Members of a daemon's
// group are not counted: those were just SIGKILLed and are dying.
func (s *Supervisor) reportEscaped() {
	s.reap()
	if !s.childrenLeft {
		return
	}
	pids, _ := procs.Children()
	escaped := pids[:0]
	for _, pid := range pids {
		if pgid, err := syscall.Getpgid(pid); err != nil || !s.isDaemonGroup(pgid) {
			escaped = append(escaped, pid)
		}
	}
	if len(escaped) > 0 {
		s.log.Warn("could not stop processes that escaped their daemon's process group; they outlive the supervisor",
			zlog.Ints("pids", escaped))
	}
}

// isDaemonGroup says pgid is the group of some daemon's incarnation, current or earlier.
func (s *Supervisor) isDaemonGroup(pgid int) bool {
	for _, d := range s.daemons {
		if d.pid == pgid || d.group(pgid) != nil {
			return true
		}
	}
	return false
}

// allDaemonsDone: every daemon is exited or given up (a daemon in backoff, or held
// stopped by an operator, keeps the supervisor alive).
func (s *Supervisor) allDaemonsDone() bool {
	for _, d := range s.daemons {
		if !d.machine.Done() {
			return false
		}
	}
	return true
}

func (s *Supervisor) anyDaemonLive() bool {
	for _, d := range s.daemons {
		if d.live() {
			return true
		}
	}
	return false
}

func (s *Supervisor) anyGroupOpen() bool {
	for _, d := range s.daemons {
		if d.groupsOpen() {
			return true
		}
	}
	return false
}

// fireSupervisor is the one place the supervisor's transitions are applied and logged
// (fireDaemon is the daemons').
func (s *Supervisor) fireSupervisor(e fsm.Event, fields ...zlog.Field) (fsm.Transition, bool) {
	tr, err := s.machine.Fire(e)
	if err != nil {
		s.log.Warn("illegal event not applied", zlog.String("machine", config.ReservedName), zlog.String("event", string(e)),
			zlog.String("state", string(s.machine.Current())), zlog.Error(err))
		return tr, false
	}
	if ce := s.log.Check(zapcore.InfoLevel, "transition"); ce != nil {
		ce.Write(append([]zlog.Field{
			zlog.String("machine", config.ReservedName), zlog.String("event", string(tr.Event)),
			zlog.String("from", string(tr.From)), zlog.String("to", string(tr.To)),
		}, fields...)...)
	}
	return tr, true
}

// DaemonEnv is the environment d runs with (its exec probes too): environ (only what its
// pass_env names, when it has one), then HOME, USER and LOGNAME of its user if it has
// one, then the table's env, each replacing what came before under the same name. A
// daemon with a pass_env that leaves it no PATH gets procs.DefaultPath, the list its
// command was found in: its own lookups would otherwise use another (execvp's /bin:/usr/bin),
// and a program it runs from /usr/local/bin would start failing only once it is called.
func DaemonEnv(environ []string, d config.Daemon) []string {
	if d.FilterEnv {
		environ = slices.DeleteFunc(slices.Clone(environ), func(kv string) bool { return !d.Passes(envName(kv)) })
	}
	if d.Credential != nil {
		// A merge of its own: mergeEnv replaces what came before, not what comes with, and
		// a user's HOME beside the table's would leave two (getenv takes the first).
		environ = mergeEnv(environ, d.Credential.Env())
	}
	environ = mergeEnv(environ, d.Env)
	if d.FilterEnv && !slices.ContainsFunc(environ, func(kv string) bool { return envName(kv) == "PATH" }) {
		environ = append(environ, "PATH="+procs.DefaultPath) // (a copy of ours: the filter's)
	}
	return environ
}

// mergeEnv adds the daemon's variables to the inherited environment, replacing any that
// share a name.
func mergeEnv(base, extra []string) []string {
	if len(extra) == 0 {
		return base
	}
	override := make(map[string]bool, len(extra))
	for _, kv := range extra {
		override[envName(kv)] = true
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		if !override[envName(kv)] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// envName is the name of an environment entry: what comes before its first '=' (all of
// it when it has none).
func envName(kv string) string {
	name, _, _ := strings.Cut(kv, "=")
	return name
}
