package fsm

// States and events of a daemon's machine.
const (
	DaemonPending     State = "pending"     // configured, not spawned yet
	DaemonRunning     State = "running"     // spawned; its process group is alive
	DaemonTerminating State = "terminating" // stop signal sent, grace timer armed
	DaemonKilled      State = "killed"      // SIGKILL sent to its group
	DaemonExited      State = "exited"      // reaped, or never started; terminal

	DaemonSpawn       Event = "spawn"
	DaemonSpawnFailed Event = "spawn_failed"
	DaemonCancel      Event = "cancel"
	DaemonDied        Event = "died"
	DaemonStop        Event = "stop"
	DaemonKill        Event = "kill"
)

// DaemonTable is the life of one daemon: spawned once, stopped at shutdown with its stop
// signal, escalated to SIGKILL when its grace runs out, done once reaped.
var DaemonTable = Table{
	Machine: "daemon",
	Initial: DaemonPending,
	Rows: []Row{
		{Event: DaemonSpawn, Src: []State{DaemonPending}, Dst: DaemonRunning,
			Driver: "the loop forked and exec'd the daemon into its own process group"},
		{Event: DaemonSpawnFailed, Src: []State{DaemonPending}, Dst: DaemonExited,
			Driver: "exec failed (ENOENT → status 127, EACCES → 126); counts as a death on its own"},
		{Event: DaemonCancel, Src: []State{DaemonPending}, Dst: DaemonExited,
			Driver: "a stop signal arrived before the daemon was spawned; it never starts"},
		{Event: DaemonDied, Src: []State{DaemonRunning, DaemonTerminating, DaemonKilled}, Dst: DaemonExited,
			Driver: "SIGCHLD: wait4 reaped the daemon's pid (from running: it died on its own)"},
		{Event: DaemonStop, Src: []State{DaemonRunning}, Dst: DaemonTerminating,
			Driver: "shutdown: the stop signal was sent to the daemon's process group and its grace timer armed"},
		{Event: DaemonKill, Src: []State{DaemonTerminating}, Dst: DaemonKilled,
			Driver: "the grace timer fired, or a second stop signal arrived: SIGKILL to the group"},
	},
	Terminal: []State{DaemonExited},
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
			Driver: "a daemon died on its own (reaped while running, or exec failed)", Note: CrashPolicyNote},
		{Event: SupervisorAllDied, Src: []State{SupervisorDegraded}, Dst: SupervisorExited,
			Driver: "every daemon has died on its own: nothing is left to supervise"},
		{Event: SupervisorStop, Src: []State{SupervisorRunning, SupervisorDegraded}, Dst: SupervisorTerminating,
			Driver: "SIGTERM, SIGINT or SIGQUIT: every live daemon gets its stop signal"},
		{Event: SupervisorForce, Src: []State{SupervisorTerminating}, Dst: SupervisorKilling,
			Driver: "a second SIGTERM, SIGINT or SIGQUIT during shutdown: SIGKILL every group now"},
		{Event: SupervisorStopped, Src: []State{SupervisorTerminating, SupervisorKilling}, Dst: SupervisorExited,
			Driver: "every daemon is reaped and every daemon's process group is empty"},
	},
	Terminal: []State{SupervisorExited},
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
