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
