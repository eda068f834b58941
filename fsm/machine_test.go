package fsm

import (
	"errors"
	"sync"
	"testing"
)

// Machines of one table share its looplab FSM (engine): each must still move on its own.
func TestMachinesOfOneTableAreIndependent(t *testing.T) {
	a := NewMachine("a", DaemonTable(RestartOnFailure))
	b := NewMachine("b", DaemonTable(RestartOnFailure))
	if _, err := a.Fire(DaemonSpawn); err != nil {
		t.Fatal(err)
	}
	if b.Current() != DaemonPending {
		t.Fatalf("b moved with a: %q", b.Current())
	}
	var illegal *IllegalEventError
	if _, err := b.Fire(DaemonReady); !errors.As(err, &illegal) || illegal.State != DaemonPending {
		t.Fatalf("ready on pending b: %v, want an IllegalEventError from pending (a is starting)", err)
	}
	if tr, err := a.Fire(DaemonReady); err != nil || tr.From != DaemonStarting || tr.To != DaemonRunning {
		t.Fatalf("ready on starting a: %+v, %v", tr, err)
	}
	if b.Current() != DaemonPending {
		t.Fatalf("b moved with a: %q", b.Current())
	}

	// A changed copy of a table has its own engine, even once the original has one.
	plain := NewMachine("supervisor", SupervisorTable)
	flipped := NewMachine("supervisor", TearDownOnCrash())
	for _, c := range []struct {
		m    *Machine
		want State
	}{{plain, SupervisorDegraded}, {flipped, SupervisorTerminating}, {NewMachine("again", SupervisorTable), SupervisorDegraded}} {
		if _, err := c.m.Fire(SupervisorDaemonDied); err != nil || c.m.Current() != c.want {
			t.Errorf("daemon_died from running: %q, %v; want %q", c.m.Current(), err, c.want)
		}
	}
}

// Only the package's own tables, with their rows as built, share an engine: two tables
// over one array, made with different rows, a prefix of a package table, and a package
// table edited in place each follow their own rows.
func TestMachinesFollowTheirOwnRows(t *testing.T) {
	array := make([]Row, 1, 4)
	array[0] = Row{Event: "go", Src: []State{"a"}, Dst: "b"}
	toX := Table{Machine: "m", Initial: "a", Rows: array[:2]}
	toX.Rows[1] = Row{Event: "on", Src: []State{"b"}, Dst: "x"}
	mx := NewMachine("x", toX)
	toY := Table{Machine: "m", Initial: "a", Rows: array[:2]}
	toY.Rows[1] = Row{Event: "on", Src: []State{"b"}, Dst: "y"} // toX's second row too, now
	my := NewMachine("y", toY)
	for _, m := range []*Machine{mx, my} {
		for _, e := range []Event{"go", "on"} {
			if _, err := m.Fire(e); err != nil {
				t.Fatalf("%s: %s: %v", m.Name(), e, err)
			}
		}
	}
	if mx.Current() != "x" || my.Current() != "y" {
		t.Errorf("two tables over one array: %s in %q, %s in %q; want x and y", mx.Name(), mx.Current(), my.Name(), my.Current())
	}

	// A prefix of SupervisorTable (the crash-policy row alone) starts at the same row.
	full := NewMachine("full", SupervisorTable)
	prefix := Table{Machine: "supervisor", Initial: SupervisorRunning, Rows: SupervisorTable.Rows[:1]}
	short := NewMachine("prefix", prefix)
	if _, err := full.Fire(SupervisorStop); err != nil {
		t.Fatalf("stop on the full table: %v", err)
	}
	var illegal *IllegalEventError
	if _, err := short.Fire(SupervisorStop); !errors.As(err, &illegal) {
		t.Errorf("stop on a table without its row: %v (now %q), want an IllegalEventError", err, short.Current())
	}

	// SupervisorTable's crash-policy row edited in place once its engine exists (not
	// something to do: every copy of the table sees it; restored at once).
	NewMachine("before", SupervisorTable)
	policy := &SupervisorTable.Rows[0]
	saved := policy.Dst
	policy.Dst = SupervisorTerminating
	edited := NewMachine("edited", SupervisorTable)
	policy.Dst = saved
	if _, err := edited.Fire(SupervisorDaemonDied); err != nil || edited.Current() != SupervisorTerminating {
		t.Errorf("edited crash-policy row: %q, %v; want %q", edited.Current(), err, SupervisorTerminating)
	}
	if m := NewMachine("after", SupervisorTable); m.engine != full.engine {
		t.Errorf("SupervisorTable as built no longer shares its engine")
	}
}

// Tests run supervisors side by side, so machines of one table fire from several
// goroutines at once; each must see only its own state.
func TestMachinesOfOneTableInParallel(t *testing.T) {
	lifecycle := []struct {
		event    Event
		from, to State
	}{
		{DaemonSpawn, DaemonPending, DaemonStarting},
		{DaemonReady, DaemonStarting, DaemonRunning},
		{DaemonStop, DaemonRunning, DaemonTerminating},
		{DaemonDied, DaemonTerminating, DaemonExited},
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 2000 {
				m := NewMachine("parallel", DaemonTable(RestartNever))
				for _, step := range lifecycle {
					tr, err := m.Fire(step.event)
					if err != nil || tr.From != step.from || tr.To != step.to {
						t.Errorf("goroutine %d: %s: %+v, %v; want %s → %s", g, step.event, tr, err, step.from, step.to)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
