package fsm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	lfsm "github.com/looplab/fsm"
)

// Machine is one running instance of a Table, named for the logs ("supervisor" or a
// daemon's name). It is not safe for concurrent use: the supervisor's event loop owns it.
type Machine struct {
	name  string
	table Table
	// engine is the table's looplab/fsm FSM, which decides every transition; the machine
	// keeps its own state and hands it to the engine with each event (see engine).
	engine *engine
	state  State
}

// engine is one looplab/fsm FSM for a table, shared by every machine of that table. A
// looplab FSM per machine cost about 5 us and 5.7 KB of maps at each daemon's start (31
// allocations: the table's transitions rebuilt as a map per instance), the largest part
// of the supervisor's own start-up work at 100 daemons after the forks themselves, and
// of its anonymous memory. The FSM's current state is only the state of the machine
// whose event it is running: Fire sets it, runs the event and reads the result, under mu,
// so machines of one table may live in different goroutines (tests run supervisors side
// by side). No callbacks are registered, so an event never leaves the FSM mid-transition.
type engine struct {
	mu  sync.Mutex
	fsm *lfsm.FSM
}

// engineKey names a table by its rows' backing array: Tables are values built once and
// never changed in place (Replace copies), so the same array means the same rows.
type engineKey struct {
	rows *Row
	n    int
}

// engines holds the engine of each table a machine was made of.
var engines sync.Map // engineKey → *engine

func engineOf(t Table) *engine {
	newEngine := func() *engine { return &engine{fsm: lfsm.NewFSM(string(t.Initial), t.lfsmEvents(), nil)} }
	if len(t.Rows) == 0 {
		return newEngine()
	}
	key := engineKey{rows: &t.Rows[0], n: len(t.Rows)}
	if e, ok := engines.Load(key); ok {
		return e.(*engine)
	}
	e, _ := engines.LoadOrStore(key, newEngine())
	return e.(*engine)
}

// fire runs event e on the engine from state from, and returns where it left the FSM
// with looplab's verdict.
func (g *engine) fire(from State, e Event) (State, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fsm.SetState(string(from))
	// Always a background context: a cancelled one would leave looplab/fsm stuck in
	// InTransitionError for good (looplab/fsm#115), and the FSM is shared.
	err := g.fsm.Event(context.Background(), string(e))
	return State(g.fsm.Current()), err
}

// Transition is what one fired event did. From equals To for a row whose source is its
// destination (looplab/fsm reports those as NoTransitionError; here they are legal).
type Transition struct {
	Machine string
	Event   Event
	From    State
	To      State
}

// IllegalEventError says an event has no row from the machine's current state. The
// machine is left where it was.
type IllegalEventError struct {
	Machine string
	Event   Event
	State   State
}

func (e *IllegalEventError) Error() string {
	return fmt.Sprintf("%s: event %q is not allowed in state %q", e.Machine, e.Event, e.State)
}

// NewMachine builds a machine from the table. It registers no callbacks: the caller logs
// each Transition that Fire returns, so there is exactly one place that logs transitions.
// Machines of one table share its looplab FSM (engine); t must not be changed in place
// afterwards (Replace makes a changed copy).
func NewMachine(name string, t Table) *Machine {
	return &Machine{name: name, table: t, engine: engineOf(t), state: t.Initial}
}

func (t Table) lfsmEvents() lfsm.Events {
	events := make(lfsm.Events, 0, len(t.Rows))
	for _, r := range t.Rows {
		src := make([]string, len(r.Src))
		for i, s := range r.Src {
			src[i] = string(s)
		}
		events = append(events, lfsm.EventDesc{Name: string(r.Event), Src: src, Dst: string(r.Dst)})
	}
	return events
}

// Name is the machine's name in logs.
func (m *Machine) Name() string { return m.name }

// Current is the machine's state.
func (m *Machine) Current() State { return m.state }

// Done reports whether the machine is in a final state.
func (m *Machine) Done() bool { return m.table.IsFinal(m.Current()) }

// Fire applies the event. An event with no row from the current state returns an
// *IllegalEventError and changes nothing.
func (m *Machine) Fire(e Event) (Transition, error) {
	from := m.state
	to, err := m.engine.fire(from, e)
	m.state = to
	var noTransition lfsm.NoTransitionError
	switch {
	case err == nil, errors.As(err, &noTransition):
		return Transition{Machine: m.name, Event: e, From: from, To: m.Current()}, nil
	default:
		var invalid lfsm.InvalidEventError
		var unknown lfsm.UnknownEventError
		if errors.As(err, &invalid) || errors.As(err, &unknown) {
			return Transition{}, &IllegalEventError{Machine: m.name, Event: e, State: from}
		}
		return Transition{}, fmt.Errorf("%s: event %q in state %q: %w", m.name, e, from, err)
	}
}
