// Package fsm holds the state machines of sidecar-init: one for each daemon and one for the
// supervisor. It is pure: states, events, the transition tables, their validation and the
// rendering of docs/states.md. It makes no system calls; procs/ does the effects and the
// supervisor's event loop decides which event to fire.
package fsm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// State is a state of a machine.
type State string

// Event is an input to a machine.
type Event string

// Row is one transition: Event moves a machine from any of Src to Dst. Driver says what, in
// the running process, fires the event; it is rendered into docs/states.md.
type Row struct {
	Event  Event
	Src    []State
	Dst    State
	Driver string
	// Note marks a row worth pointing at in the docs, such as the crash-policy row.
	Note string
}

// Table is the whole transition table of one kind of machine.
type Table struct {
	// Machine names the kind of machine ("daemon", "supervisor") in docs and errors.
	Machine string
	Initial State
	Rows    []Row
	// Final states are where a machine is done: nothing happens to it unless asked from
	// outside (an operator's start). The supervisor counts a daemon there as finished.
	Final []State
}

// States returns every state the table names, initial first, the rest sorted.
func (t Table) States() []State {
	seen := map[State]bool{t.Initial: true}
	var rest []State
	add := func(s State) {
		if !seen[s] {
			seen[s] = true
			rest = append(rest, s)
		}
	}
	for _, r := range t.Rows {
		for _, s := range r.Src {
			add(s)
		}
		add(r.Dst)
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i] < rest[j] })
	return append([]State{t.Initial}, rest...)
}

// Events returns every event the table names, sorted.
func (t Table) Events() []Event {
	seen := map[Event]bool{}
	var out []Event
	for _, r := range t.Rows {
		if !seen[r.Event] {
			seen[r.Event] = true
			out = append(out, r.Event)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// IsFinal reports whether s is one of the table's final states.
func (t Table) IsFinal(s State) bool {
	for _, x := range t.Final {
		if x == s {
			return true
		}
	}
	return false
}

// Replace returns a copy of the table with the row for (event, any of src) swapped for row.
// It exists so that a policy can be flipped in one place (and tested that way).
func (t Table) Replace(event Event, src State, row Row) (Table, error) {
	out := t
	out.Rows = make([]Row, len(t.Rows))
	copy(out.Rows, t.Rows)
	for i, r := range out.Rows {
		if r.Event != event {
			continue
		}
		for _, s := range r.Src {
			if s == src {
				out.Rows[i] = row
				return out, nil
			}
		}
	}
	return Table{}, fmt.Errorf("%s table: no row for event %q from %q", t.Machine, event, src)
}

// Validate checks what looplab/fsm does not: no (event, source) pair appears twice (the
// library silently keeps the last), every state is reachable from the initial state, there
// is a final state and every one is reachable, and every callback key names a real state
// or event (the library silently drops misspelled keys).
func (t Table) Validate(callbackKeys ...string) error {
	return t.check(true, callbackKeys)
}

// Runnable checks what would make the table wrong to run: an incomplete row, an (event,
// source) pair twice, no final state or none that can be reached, a callback key that
// names nothing. A state that nothing leads to is only dead rows: degraded under the
// tear-down crash policy, backoff and given_up under restart = "never" (a final state, so
// long as another is reachable). Validate reports it; Runnable, what sidecar-init checks at
// every start, does not, so flipping the crash-policy row stays the one-line edit the
// binary accepts.
func (t Table) Runnable(callbackKeys ...string) error {
	return t.check(false, callbackKeys)
}

func (t Table) check(everyStateReachable bool, callbackKeys []string) error {
	var problems []string
	type pair struct {
		e Event
		s State
	}
	seen := map[pair]bool{}
	next := map[State][]State{}
	for _, r := range t.Rows {
		if r.Event == "" || r.Dst == "" || len(r.Src) == 0 {
			problems = append(problems, fmt.Sprintf("row %q → %q is incomplete", r.Event, r.Dst))
		}
		for _, s := range r.Src {
			if seen[pair{r.Event, s}] {
				problems = append(problems, fmt.Sprintf("event %q from %q appears twice", r.Event, s))
			}
			seen[pair{r.Event, s}] = true
			next[s] = append(next[s], r.Dst)
		}
	}
	reached := map[State]bool{t.Initial: true}
	queue := []State{t.Initial}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, d := range next[s] {
			if !reached[d] {
				reached[d] = true
				queue = append(queue, d)
			}
		}
	}
	for _, s := range t.States() {
		if everyStateReachable && !reached[s] {
			problems = append(problems, fmt.Sprintf("state %q is unreachable from %q", s, t.Initial))
		}
	}
	if len(t.Final) == 0 {
		problems = append(problems, "no final state")
	}
	finalReached := false
	for _, s := range t.Final {
		finalReached = finalReached || reached[s]
		if everyStateReachable && !reached[s] {
			problems = append(problems, fmt.Sprintf("final state %q is unreachable", s))
		}
	}
	if !everyStateReachable && len(t.Final) > 0 && !finalReached {
		// The machine could never be done: whatever else is dead, this is fatal. (Validate
		// has named each unreachable final state already.)
		problems = append(problems, "no final state is reachable")
	}
	for _, k := range callbackKeys {
		if !t.knowsCallbackKey(k) {
			problems = append(problems, fmt.Sprintf("callback key %q names no state or event", k))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s table is invalid: %s", t.Machine, strings.Join(problems, "; "))
	}
	return nil
}

// knowsCallbackKey mirrors looplab/fsm's key grammar: "state"/"event" alone, the generic
// "{before,leave,enter,after}_{event,state}", and a prefixed or bare state or event name.
func (t Table) knowsCallbackKey(key string) bool {
	switch key {
	case "before_event", "leave_state", "enter_state", "after_event":
		return true
	}
	isState := func(s string) bool {
		for _, x := range t.States() {
			if string(x) == s {
				return true
			}
		}
		return false
	}
	isEvent := func(s string) bool {
		for _, x := range t.Events() {
			if string(x) == s {
				return true
			}
		}
		return false
	}
	for _, p := range []string{"before_", "after_"} {
		if name, ok := strings.CutPrefix(key, p); ok {
			return isEvent(name)
		}
	}
	for _, p := range []string{"leave_", "enter_"} {
		if name, ok := strings.CutPrefix(key, p); ok {
			return isState(name)
		}
	}
	return isState(key) || isEvent(key)
}

// Dst is where event e leads from state from, if the table has that row.
func (t Table) Dst(e Event, from State) (State, bool) {
	for _, r := range t.Rows {
		if r.Event == e && slices.Contains(r.Src, from) {
			return r.Dst, true
		}
	}
	return "", false
}
