package fsm

// States and events of a daemon's machine.
const (
	DaemonPending      State = "pending"      // configured, not spawned yet (or waiting for its `after`)
	DaemonStarting     State = "starting"     // spawned, its readiness probe has not passed yet
	DaemonRunning      State = "running"      // spawned and ready
	DaemonUnresponsive State = "unresponsive" // failed its liveness probe: stop signal sent, grace timer armed; its death is a failure
	DaemonTerminating  State = "terminating"  // stop signal sent, grace timer armed
	DaemonKilled       State = "killed"       // SIGKILL sent to its group
	DaemonBackoff      State = "backoff"      // died; waiting for its restart timer
	DaemonStopped      State = "stopped"      // held down by an operator's stop until a start
	DaemonExited       State = "exited"       // reaped (or never started) and not restarting: done
	DaemonGivenUp      State = "given_up"     // died too often in a row, each run shorter than backoff_reset: done

	DaemonSpawn          Event = "spawn"
	DaemonSpawnFailed    Event = "spawn_failed"
	DaemonReady          Event = "ready"
	DaemonLivenessFailed Event = "liveness_failed"
	DaemonExit           Event = "exit" // died on its own with status 0
	DaemonFail           Event = "fail" // died on its own with a nonzero status or a signal
	DaemonGiveUp         Event = "give_up"
	DaemonStop           Event = "stop"
	DaemonKill           Event = "kill"
	DaemonDied           Event = "died" // reaped after a stop
	DaemonCancel         Event = "cancel"
	DaemonHold           Event = "hold"
	DaemonStart          Event = "start"
)

// RestartPolicy is a daemon's `restart` key.
type RestartPolicy string

// The restart policies.
const (
	RestartNever     RestartPolicy = "never"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// RestartPolicies lists the valid policies, in the order the docs show them.
var RestartPolicies = []RestartPolicy{RestartNever, RestartOnFailure, RestartAlways}

// afterDeath is where a death on its own leads under policy p: backoff (then a restart) or
// exited. failed says the death was a failure (nonzero status, signal, exec failure).
func afterDeath(p RestartPolicy, failed bool) State {
	if p == RestartAlways || (p == RestartOnFailure && failed) {
		return DaemonBackoff
	}
	return DaemonExited
}

// daemonTables holds the table of each policy, built once: the reap path looks rows up
// on every death and must not rebuild a table each time.
var daemonTables = func() map[RestartPolicy]Table {
	tables := map[RestartPolicy]Table{}
	for _, p := range append([]RestartPolicy{""}, RestartPolicies...) {
		tables[p] = buildDaemonTable(p)
	}
	return tables
}()

// DaemonTable is the life of one daemon under restart policy p. The policy is the
// destinations of the three "died on its own" rows (spawn_failed, exit, fail): backoff when
// the policy restarts after that kind of death, exited when it does not. Everything else
// is the same for every policy. The empty policy is "never".
func DaemonTable(p RestartPolicy) Table {
	if t, ok := daemonTables[p]; ok {
		return t
	}
	return buildDaemonTable(p)
}

func buildDaemonTable(p RestartPolicy) Table {
	policyNote := "restart policy (" + string(p) + ")"
	return Table{
		Machine: "daemon",
		Initial: DaemonPending,
		Rows: []Row{
			{Event: DaemonSpawn, Src: []State{DaemonPending, DaemonBackoff}, Dst: DaemonStarting,
				Driver: "the loop forked and exec'd the daemon into its own process group (at start-up once its `after` daemons are ready; when its restart timer fires and none of them is on its way back; on an operator's start or restart), never before what its earlier runs left in their groups has exited"},
			{Event: DaemonReady, Src: []State{DaemonStarting}, Dst: DaemonRunning,
				Driver: "its readiness probe passed (tcp, file or exec), or at once when it has none (a oneshot never fires ready: it stays starting until its exit with status 0, which makes it count as ready for `after` and health)"},
			{Event: DaemonLivenessFailed, Src: []State{DaemonRunning}, Dst: DaemonUnresponsive,
				Driver: "its liveness probe failed liveness_failures times in a row: the stop signal and SIGCONT went to its process group and its grace timer is armed (SIGKILL when it runs out, with no transition); its death will be a failure"},
			{Event: DaemonSpawnFailed, Src: []State{DaemonPending, DaemonBackoff}, Dst: afterDeath(p, true),
				Driver: "exec failed (ENOENT → status 127, EACCES → 126): a failure", Note: policyNote},
			{Event: DaemonExit, Src: []State{DaemonStarting, DaemonRunning}, Dst: afterDeath(p, false),
				Driver: "SIGCHLD: reaped with status 0, no stop asked for (a oneshot: finished, ready for `after` and health, and no death for the crash policy)", Note: policyNote},
			{Event: DaemonFail, Src: []State{DaemonStarting, DaemonRunning, DaemonUnresponsive}, Dst: afterDeath(p, true),
				Driver: "SIGCHLD: reaped with a nonzero status or killed by a signal, no stop asked for (also after SIGKILL for not being ready within ready_timeout); or reaped with any status after the stop liveness_failed sent", Note: policyNote},
			{Event: DaemonGiveUp, Src: []State{DaemonBackoff}, Dst: DaemonGivenUp,
				Driver: "max_restarts restarts in a row died before backoff_reset: no more restarts"},
			{Event: DaemonStop, Src: []State{DaemonStarting, DaemonRunning, DaemonUnresponsive}, Dst: DaemonTerminating,
				Driver: "shutdown, or an operator's stop or restart: the stop signal went to its process group and its grace timer is armed (from unresponsive, the stop under way and its grace stand: its death becomes an expected one)"},
			{Event: DaemonKill, Src: []State{DaemonTerminating}, Dst: DaemonKilled,
				Driver: "the grace timer fired, or a second stop signal arrived: SIGKILL to the group (or the stop took over a liveness stop whose SIGKILL had gone already)"},
			{Event: DaemonDied, Src: []State{DaemonTerminating, DaemonKilled}, Dst: DaemonExited,
				Driver: "SIGCHLD: reaped after its stop signal (an expected death: not counted)"},
			{Event: DaemonCancel, Src: []State{DaemonPending, DaemonBackoff}, Dst: DaemonExited,
				Driver: "shutdown before it was (re)spawned (a pending restart is dropped; one that died on its own during the shutdown is never restarted), or a daemon it comes `after` is done for good (other than a oneshot that finished): it does not start (until an operator starts that daemon)"},
			{Event: DaemonHold, Src: []State{DaemonPending, DaemonExited, DaemonBackoff, DaemonGivenUp}, Dst: DaemonStopped,
				Driver: "an operator's stop: it stays down (after its death, if it was running; a pending start or restart is dropped) until a start; what its runs left in their groups gets the stop signal too"},
			{Event: DaemonStart, Src: []State{DaemonStopped, DaemonExited, DaemonGivenUp, DaemonBackoff}, Dst: DaemonPending,
				Driver: "an operator's start, or the second half of an operator's restart (from backoff, the pending restart is dropped); the loop spawns it at once (once what its last run left has exited, which gets the stop signal and the grace), with a fresh backoff window; daemons it had cancelled go back to pending"},
		},
		Final: []State{DaemonExited, DaemonGivenUp},
	}
}

// States and events of the supervisor's machine.
const (
	SupervisorRunning     State = "running"     // every daemon that was started is alive
	SupervisorDegraded    State = "degraded"    // some daemon died on its own; the rest run on
	SupervisorTerminating State = "terminating" // stop signals sent; waiting for the groups to empty
	SupervisorKilling     State = "killing"     // a second stop signal: every group SIGKILLed
	SupervisorExited      State = "exited"      // nothing left to wait for; terminal

	SupervisorDaemonDied Event = "daemon_died"
	SupervisorAllDied    Event = "all_died"
	SupervisorStop       Event = "stop"
	SupervisorForce      Event = "force"
	SupervisorStopped    Event = "stopped"
)

// CrashPolicyNote marks the crash-policy row in the docs.
const CrashPolicyNote = "crash policy"

// SupervisorTable is the supervisor's life. Its first row is the crash policy.
var SupervisorTable = Table{
	Machine: "supervisor",
	Initial: SupervisorRunning,
	Rows: []Row{
		// The crash policy, "log and leave alone": a daemon that dies on its own leaves the
		// others running. To tear the bundle down on a crash instead, make Dst
		// SupervisorTerminating: the loop stops every daemon when the supervisor enters it.
		{Event: SupervisorDaemonDied, Src: []State{SupervisorRunning, SupervisorDegraded}, Dst: SupervisorDegraded,
			Driver: "a daemon died on its own (reaped while starting or running, or exec failed) or after the stop its failed liveness probe brought, restarting or not", Note: CrashPolicyNote},
		{Event: SupervisorAllDied, Src: []State{SupervisorRunning, SupervisorDegraded}, Dst: SupervisorExited,
			Driver: "every daemon is exited or given up: nothing is left to supervise (from running: every daemon a oneshot that finished)"},
		{Event: SupervisorStop, Src: []State{SupervisorRunning, SupervisorDegraded}, Dst: SupervisorTerminating,
			Driver: "SIGTERM, SIGINT or SIGQUIT: every live daemon gets its stop signal (one unresponsive keeps the stop under way, and its grace)"},
		{Event: SupervisorForce, Src: []State{SupervisorTerminating}, Dst: SupervisorKilling,
			Driver: "a second SIGTERM, SIGINT or SIGQUIT during shutdown: SIGKILL every group now"},
		{Event: SupervisorStopped, Src: []State{SupervisorTerminating, SupervisorKilling}, Dst: SupervisorExited,
			Driver: "every daemon is reaped and every daemon's process group is empty"},
	},
	Final: []State{SupervisorExited},
}

// TearDownOnCrash is the supervisor table with the other crash policy, the bundle's old
// one: a daemon that dies on its own takes the whole bundle down, and the supervisor exits
// with that daemon's status. It differs from SupervisorTable in the crash-policy row only.
func TearDownOnCrash() Table {
	t, err := SupervisorTable.Replace(SupervisorDaemonDied, SupervisorRunning, Row{
		Event: SupervisorDaemonDied, Src: []State{SupervisorRunning, SupervisorDegraded}, Dst: SupervisorTerminating,
		Driver: "a daemon died on its own: stop every other daemon", Note: CrashPolicyNote,
	})
	if err != nil {
		panic(err) // the row is in the literal above; a test covers this
	}
	return t
}
