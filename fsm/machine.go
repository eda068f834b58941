package fsm

import (
	"context"
	"errors"
	"fmt"

	lfsm "github.com/looplab/fsm"
)

// Machine is one running instance of a Table, named for the logs ("supervisor" or a
// daemon's name). It is not safe for concurrent use: the supervisor's event loop owns it.
type Machine struct {
	name  string
	table Table
	fsm   *lfsm.FSM
	// state is fsm.Current() as of the last Fire. A Machine belongs to one goroutine (the
	// supervisor's loop), and looplab's Current takes a lock and defers its unlock on every
	// read: the loop reads every daemon's state after each exit, and at 100 daemons those
	// reads were the largest part of the supervisor's own CPU during a shutdown (perf).
	state State
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
func NewMachine(name string, t Table) *Machine {
	return &Machine{name: name, table: t, fsm: lfsm.NewFSM(string(t.Initial), t.lfsmEvents(), nil), state: t.Initial}
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
	from := m.Current()
	// Always a background context: a cancelled one would leave looplab/fsm stuck in
	// InTransitionError for good (looplab/fsm#115).
	err := m.fsm.Event(context.Background(), string(e))
	m.state = State(m.fsm.Current())
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
