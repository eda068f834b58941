package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// SelectEnv is the variable that picks which daemons run.
const SelectEnv = "CLAUDE_BOTTLE_SIDECAR_DAEMONS"

// Select applies CLAUDE_BOTTLE_SIDECAR_DAEMONS to the table: unset → every daemon; set but
// empty or white space → none; otherwise the named daemons, separated by commas and/or
// white space, each once, always in table order (start order is the table's, not the
// list's). An unknown name is an error that names it and lists the known ones.
func (c *Config) Select(value string, set bool) ([]Daemon, error) {
	if !set {
		return c.Daemons, nil
	}
	wanted := map[string]bool{}
	var unknown []string
	for _, name := range strings.FieldsFunc(value, isSeparator) {
		if !slices.Contains(c.Names(), name) && !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
		wanted[name] = true
	}
	if len(unknown) > 0 {
		return nil, &Error{File: "environment", Key: SelectEnv, Msg: fmt.Sprintf(
			"unknown daemon %s (known in %s: %s)", quoteAll(unknown), c.Source, strings.Join(c.Names(), ", "))}
	}
	selected := []Daemon{}
	for _, d := range c.Daemons {
		if wanted[d.Name] {
			selected = append(selected, d)
		}
	}
	return selected, nil
}

func isSeparator(r rune) bool { return r == ',' || unicode.IsSpace(r) }

func quoteAll(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(quoted, ", ")
}

// Unselected is a daemon of a selection and an `after` daemon the selection left out.
type Unselected struct{ Daemon, After string }

// UnselectedAfter lists, in table order, the `after` daemons a selection leaves out.
// Legitimate (egress alone, with EGRESS_UPSTREAM=none), but such a daemon starts without
// waiting for them and may not work without them (egress without pipelock answers every
// request with 502) while health says ready: the supervisor warns and `check` notes it.
func UnselectedAfter(selected []Daemon) []Unselected {
	names := make(map[string]bool, len(selected))
	for _, d := range selected {
		names[d.Name] = true
	}
	var out []Unselected
	for _, d := range selected {
		for _, after := range d.After {
			if !names[after] {
				out = append(out, Unselected{Daemon: d.Name, After: after})
			}
		}
	}
	return out
}
