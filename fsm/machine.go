package fsm

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// engine is a looplab/fsm FSM that decides the transitions of a table's machines. The
// package's own tables (one per restart policy, the supervisor's) each have one, shared by
// all their machines: a looplab FSM per machine cost about 5 us and 5.7 KB of maps at each
// daemon's start (31 allocations: the table's transitions rebuilt per instance), the
// largest part of the supervisor's own start-up work at 100 daemons after the forks
// themselves, and of its anonymous memory. Any other table (a Replace'd copy, a test's)
// gets an engine per machine, as before. The FSM's current state is only the state of the
// machine whose event it is running: Fire sets it, runs the event and reads the result,
// under mu, so machines of one table may live in different goroutines (tests run
// supervisors side by side). No callbacks are registered, so an event never leaves the
// FSM mid-transition.
type engine struct {
	mu  sync.Mutex
	fsm *lfsm.FSM
	// rows, for a shared engine: a deep copy of the rows its FSM was built from.
	rows []Row
}

func newEngine(t Table) *engine {
	return &engine{fsm: lfsm.NewFSM(string(t.Initial), t.lfsmEvents(), nil)}
}

// sharedEngine is the engine of one of the package's own tables, made with its first
// machine.
type sharedEngine struct {
	once   sync.Once
	engine *engine
}

// sharedEngines is keyed by the first row of each of the package's own tables: a Table
// copied by value shares its rows' array. Built once and only read after.
var sharedEngines = func() map[*Row]*sharedEngine {
	shared := map[*Row]*sharedEngine{&SupervisorTable.Rows[0]: {}}
	for _, t := range daemonTables {
		shared[&t.Rows[0]] = &sharedEngine{}
	}
	return shared
}()

// engineOf gives t's shared engine when t is one of the package's own tables with its
// rows as the engine was built from (rows changed in place since, or a slice of them, get
// their own engine), and a new engine otherwise.
func engineOf(t Table) *engine {
	if len(t.Rows) == 0 {
		return newEngine(t)
	}
	shared, ok := sharedEngines[&t.Rows[0]]
	if !ok {
		return newEngine(t)
	}
	shared.once.Do(func() {
		e := newEngine(t)
		e.rows = make([]Row, len(t.Rows))
		for i, r := range t.Rows {
			e.rows[i] = r
			e.rows[i].Src = slices.Clone(r.Src)
		}
		shared.engine = e
	})
	if !sameTransitions(shared.engine.rows, t.Rows) {
		return newEngine(t)
	}
	return shared.engine
}

// sameTransitions: a and b make the same FSM (Driver and Note are for the docs only).
func sameTransitions(a, b []Row) bool {
	return slices.EqualFunc(a, b, func(x, y Row) bool {
		return x.Event == y.Event && x.Dst == y.Dst && slices.Equal(x.Src, y.Src)
	})
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
// Machines of the package's own tables share a looplab FSM (engine).
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
	// A self-loop row's NoTransitionError, without callbacks, equals selfLoop: errors.Is
	// against it needs no target on the heap, as errors.As does (whose target escaped at
	// every fire, on the reap path). failed() takes any other form of it.
	if err == nil || errors.Is(err, selfLoop) {
		return Transition{Machine: m.name, Event: e, From: from, To: m.Current()}, nil
	}
	return m.failed(e, from, err)
}

// selfLoop is the error looplab returns for a row whose source is its destination, made
// once (as an error value, boxing it would allocate at each comparison).
var selfLoop error = lfsm.NoTransitionError{}

// failed is Fire's verdict on an error of looplab's other than a self-loop's.
func (m *Machine) failed(e Event, from State, err error) (Transition, error) {
	var noTransition lfsm.NoTransitionError
	var invalid lfsm.InvalidEventError
	var unknown lfsm.UnknownEventError
	switch {
	case errors.As(err, &noTransition): // wrapped, should a version of looplab wrap it
		return Transition{Machine: m.name, Event: e, From: from, To: m.Current()}, nil
	case errors.As(err, &invalid) || errors.As(err, &unknown):
		return Transition{}, &IllegalEventError{Machine: m.name, Event: e, State: from}
	}
	return Transition{}, fmt.Errorf("%s: event %q in state %q: %w", m.name, e, from, err)
}
