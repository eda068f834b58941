package fsm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The expected transitions are written out by hand, not derived from the tables: a test
// computed from the table it checks could not fail.
// wantDaemon is the daemon table under a policy; restarted/failedRestart are where the
// policy sends a clean exit and a failure.
func wantDaemon(clean, failure State) map[State]map[Event]State {
	return map[State]map[Event]State{
		DaemonPending:      {DaemonSpawn: DaemonStarting, DaemonSpawnFailed: failure, DaemonCancel: DaemonExited, DaemonHold: DaemonStopped},
		DaemonStarting:     {DaemonReady: DaemonRunning, DaemonExit: clean, DaemonFail: failure, DaemonStop: DaemonTerminating},
		DaemonRunning:      {DaemonExit: clean, DaemonFail: failure, DaemonStop: DaemonTerminating, DaemonLivenessFailed: DaemonUnresponsive},
		DaemonUnresponsive: {DaemonFail: failure, DaemonStop: DaemonTerminating},
		DaemonTerminating:  {DaemonDied: DaemonExited, DaemonKill: DaemonKilled},
		DaemonKilled:       {DaemonDied: DaemonExited},
		DaemonBackoff:      {DaemonSpawn: DaemonStarting, DaemonSpawnFailed: failure, DaemonGiveUp: DaemonGivenUp, DaemonCancel: DaemonExited, DaemonHold: DaemonStopped, DaemonStart: DaemonPending},
		DaemonStopped:      {DaemonStart: DaemonPending},
		DaemonExited:       {DaemonHold: DaemonStopped, DaemonStart: DaemonPending},
		DaemonGivenUp:      {DaemonHold: DaemonStopped, DaemonStart: DaemonPending},
	}
}

var wantSupervisor = map[State]map[Event]State{
	SupervisorRunning:     {SupervisorDaemonDied: SupervisorDegraded, SupervisorAllDied: SupervisorExited, SupervisorStop: SupervisorTerminating},
	SupervisorDegraded:    {SupervisorDaemonDied: SupervisorDegraded, SupervisorAllDied: SupervisorExited, SupervisorStop: SupervisorTerminating},
	SupervisorTerminating: {SupervisorForce: SupervisorKilling, SupervisorStopped: SupervisorExited},
	SupervisorKilling:     {SupervisorStopped: SupervisorExited},
	SupervisorExited:      {},
}

func TestAllPairs(t *testing.T) {
	for _, tc := range []struct {
		table Table
		want  map[State]map[Event]State
	}{
		{DaemonTable(RestartNever), wantDaemon(DaemonExited, DaemonExited)},
		{DaemonTable(RestartOnFailure), wantDaemon(DaemonExited, DaemonBackoff)},
		{DaemonTable(RestartAlways), wantDaemon(DaemonBackoff, DaemonBackoff)},
		{SupervisorTable, wantSupervisor},
	} {
		if got, want := len(tc.table.States()), len(tc.want); got != want {
			t.Fatalf("%s table has %d states, the test expects %d: update the expectations", tc.table.Machine, got, want)
		}
		for _, state := range tc.table.States() {
			row, known := tc.want[state]
			if !known {
				t.Fatalf("%s: state %q has no expectations", tc.table.Machine, state)
			}
			for _, event := range tc.table.Events() {
				t.Run(tc.table.Machine+"/"+string(state)+"/"+string(event), func(t *testing.T) {
					if (state == DaemonBackoff || state == DaemonGivenUp) && tc.table.dstFrom(DaemonFail, DaemonRunning) != DaemonBackoff {
						// Under restart = "never" nothing leads there (TestBuiltInTablesAreValid).
						t.Skipf("%s is unreachable under restart = never", state)
					}
					m := machineIn(t, tc.table, state)
					tr, err := m.Fire(event)
					want, legal := row[event]
					if !legal {
						var illegal *IllegalEventError
						if !errors.As(err, &illegal) {
							t.Fatalf("Fire(%q) in %q: err = %v, want IllegalEventError", event, state, err)
						}
						if illegal.State != state || illegal.Event != event {
							t.Errorf("IllegalEventError = %+v, want state %q event %q", illegal, state, event)
						}
						if m.Current() != state {
							t.Errorf("illegal event moved the machine to %q", m.Current())
						}
						return
					}
					if err != nil {
						t.Fatalf("Fire(%q) in %q: %v", event, state, err)
					}
					if m.Current() != want || tr.To != want || tr.From != state || tr.Event != event {
						t.Errorf("Fire(%q) in %q: now %q, transition %+v; want %q", event, state, m.Current(), tr, want)
					}
				})
			}
		}
	}
}

// machineIn drives a fresh machine into state along the table's own rows (breadth first),
// so the test never reaches into looplab/fsm's internals.
func machineIn(t *testing.T, table Table, state State) *Machine {
	t.Helper()
	type path []Event
	paths := map[State]path{table.Initial: nil}
	queue := []State{table.Initial}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, r := range table.Rows {
			for _, src := range r.Src {
				if _, seen := paths[r.Dst]; src == s && !seen {
					paths[r.Dst] = append(append(path{}, paths[s]...), r.Event)
					queue = append(queue, r.Dst)
				}
			}
		}
	}
	p, ok := paths[state]
	if !ok {
		t.Fatalf("%s: no path to %q", table.Machine, state)
	}
	m := NewMachine("test", table)
	for _, e := range p {
		if _, err := m.Fire(e); err != nil {
			t.Fatalf("driving to %q: %v", state, err)
		}
	}
	if m.Current() != state {
		t.Fatalf("drove to %q, got %q", state, m.Current())
	}
	return m
}

func TestBuiltInTablesAreValid(t *testing.T) {
	for _, table := range []Table{DaemonTable(RestartOnFailure), DaemonTable(RestartAlways), SupervisorTable} {
		if err := table.Validate("enter_state", "leave_"+string(table.Initial)); err != nil {
			t.Errorf("%v", err)
		}
	}
	// Under restart = "never" the restart rows are dead code, and the validator says so:
	// backoff and given_up are unreachable, and nothing else is wrong.
	err := DaemonTable(RestartNever).Validate()
	want := `daemon table is invalid: state "backoff" is unreachable from "pending"; state "given_up" is unreachable from "pending"; final state "given_up" is unreachable`
	if err == nil || err.Error() != want {
		t.Errorf("restart = never: Validate() = %v, want %s", err, want)
	}
}

func TestValidateCatches(t *testing.T) {
	base := Table{Machine: "m", Initial: "a", Final: []State{"c"}, Rows: []Row{
		{Event: "go", Src: []State{"a"}, Dst: "b"},
		{Event: "end", Src: []State{"b"}, Dst: "c"},
	}}
	if err := base.Validate(); err != nil {
		t.Fatalf("base table: %v", err)
	}
	for _, tc := range []struct {
		name      string
		mutate    func(Table) Table
		callbacks []string
		want      string
	}{
		{"duplicate event and source", func(tb Table) Table {
			tb.Rows = append(tb.Rows, Row{Event: "go", Src: []State{"a"}, Dst: "c"})
			return tb
		}, nil, `event "go" from "a" appears twice`},
		{"unreachable state", func(tb Table) Table {
			tb.Rows = append(tb.Rows, Row{Event: "odd", Src: []State{"x"}, Dst: "c"})
			return tb
		}, nil, `state "x" is unreachable`},
		{"no final state", func(tb Table) Table {
			tb.Final = nil
			return tb
		}, nil, "no final state"},
		{"unreachable final state", func(tb Table) Table {
			tb.Final = append(tb.Final, "z")
			return tb
		}, nil, `final state "z" is unreachable`},
		{"misspelled callback key", func(tb Table) Table { return tb }, []string{"enter_bb"}, `callback key "enter_bb"`},
		{"callback on unknown event", func(tb Table) Table { return tb }, []string{"before_og"}, `callback key "before_og"`},
		{"incomplete row", func(tb Table) Table {
			tb.Rows = append(tb.Rows, Row{Event: "x", Dst: "c"})
			return tb
		}, nil, "incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.mutate(base).Validate(tc.callbacks...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for _, key := range []string{"enter_state", "before_event", "enter_b", "after_go", "go", "b", "leave_a"} {
		if err := base.Validate(key); err != nil {
			t.Errorf("key %q should be accepted: %v", key, err)
		}
	}
}

// The crash policy is one row: flipping its destination is the whole edit.
func TestCrashPolicyIsOneRow(t *testing.T) {
	var policy []Row
	for _, r := range SupervisorTable.Rows {
		if r.Note == CrashPolicyNote {
			policy = append(policy, r)
		}
	}
	if len(policy) != 1 || policy[0].Event != SupervisorDaemonDied {
		t.Fatalf("want exactly one crash-policy row on %q, got %+v", SupervisorDaemonDied, policy)
	}
	flipped := TearDownOnCrash()
	m := NewMachine("supervisor", flipped)
	if _, err := m.Fire(SupervisorDaemonDied); err != nil || m.Current() != SupervisorTerminating {
		t.Fatalf("with the flipped row a crash should move running → terminating; got %q, %v", m.Current(), err)
	}
	// The only consequence the validator sees: nothing leads to degraded any more.
	err := flipped.Validate()
	if err == nil || !strings.Contains(err.Error(), `state "degraded" is unreachable`) ||
		strings.Count(err.Error(), ";") != 0 {
		t.Fatalf("flipped table: Validate() = %v, want only degraded unreachable", err)
	}
	if len(flipped.Rows) != len(SupervisorTable.Rows) {
		t.Fatalf("flipping changed the number of rows")
	}
	// What sidecar-init checks at start accepts it: the flip is the whole edit.
	if err := flipped.Runnable(); err != nil {
		t.Fatalf("flipped table: Runnable() = %v, want nil", err)
	}
}

// Runnable finds what Validate finds, but a state nothing leads to (dead rows only).
func TestRunnableIgnoresOnlyUnreachableStates(t *testing.T) {
	if err := DaemonTable(RestartNever).Runnable(); err != nil {
		t.Errorf("restart = never: Runnable() = %v, want nil (only dead rows)", err)
	}
	base := Table{Machine: "m", Initial: "a", Final: []State{"c"}, Rows: []Row{
		{Event: "go", Src: []State{"a"}, Dst: "b"},
		{Event: "end", Src: []State{"b"}, Dst: "c"},
		{Event: "odd", Src: []State{"x"}, Dst: "c"}, // x: unreachable, fine to run
	}}
	if err := base.Runnable(); err != nil {
		t.Fatalf("Runnable() = %v, want nil", err)
	}
	if err := (Table{Machine: "m", Initial: "a", Final: []State{"c", "z"}, Rows: base.Rows}).Runnable(); err != nil {
		t.Errorf("one final state unreachable, another reachable: Runnable() = %v, want nil", err)
	}
	for name, tb := range map[string]Table{
		"duplicate":          {Machine: "m", Initial: "a", Final: []State{"c"}, Rows: append(slices.Clone(base.Rows), Row{Event: "go", Src: []State{"a"}, Dst: "c"})},
		"no final reachable": {Machine: "m", Initial: "a", Final: []State{"z"}, Rows: base.Rows},
		"incomplete":         {Machine: "m", Initial: "a", Final: []State{"c"}, Rows: append(slices.Clone(base.Rows), Row{Event: "y", Dst: "c"})},
	} {
		if err := tb.Runnable(); err == nil {
			t.Errorf("%s: Runnable() = nil, want an error", name)
		}
	}
	if err := base.Runnable("enter_bb"); err == nil {
		t.Errorf("misspelled callback key: Runnable() = nil, want an error")
	}
}

func TestReplaceUnknownRow(t *testing.T) {
	if _, err := SupervisorTable.Replace("nope", SupervisorRunning, Row{}); err == nil {
		t.Fatal("Replace of a missing row should fail")
	}
}
