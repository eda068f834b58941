// Package config reads the daemon table (TOML) and the environment that selects from it.
// Every problem is an error that names the file, the key and, where the TOML decoder gives
// one, the line; the caller exits 2 on any of them before anything is spawned.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/claude-bottle/sidecar-init/procs"
)

// DefaultGrace is the stop grace when neither the table nor the environment sets one. It
// stays under docker stop's default 10 s, so the supervisor's own SIGKILL comes first.
const DefaultGrace = 8 * time.Second

// Config is a validated daemon table.
type Config struct {
	// Source names where the table came from, for logs and errors.
	Source  string
	Grace   time.Duration
	Daemons []Daemon
}

// Daemon is one validated [[daemon]] entry.
type Daemon struct {
	Name    string
	Command []string
	// Env holds the variables added to the inherited environment, sorted by key.
	Env []string
	Dir string
	// StopSignal is sent at shutdown; 0 means "the signal that started the shutdown".
	StopSignal syscall.Signal
	Grace      time.Duration
	// inheritsGrace is true when the daemon has no grace of its own and follows the global one.
	inheritsGrace bool
}

// fileTable mirrors the TOML file; it is decoded, then validated into a Config.
type fileTable struct {
	Grace   *string      `toml:"grace"`
	Daemons []fileDaemon `toml:"daemon"`
}

type fileDaemon struct {
	Name       string            `toml:"name"`
	Command    []string          `toml:"command"`
	Env        map[string]string `toml:"env"`
	Dir        string            `toml:"dir"`
	StopSignal string            `toml:"stop_signal"`
	Grace      *string           `toml:"grace"`
}

// Error is a config problem: the file, the key (when one is to blame), the line (when the
// decoder gives one) and what is wrong.
type Error struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// namePattern keeps daemon names usable in CLAUDE_BOTTLE_SIDECAR_DAEMONS (split on commas and
// white space) and in logs.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// decodeErrorPattern matches BurntSushi/toml's type-mismatch errors, which are not
// toml.ParseError values: `toml: line 3 (last key "daemon.command"): incompatible types: ...`.
var decodeErrorPattern = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// Parse decodes and validates a daemon table. source names it in errors.
func Parse(source string, data []byte) (*Config, error) {
	var raw fileTable
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{File: source, Line: perr.Position.Line, Key: perr.LastKey, Msg: perr.Message}
		}
		// Type mismatches come back as plain text that still carries the line and key.
		if m := decodeErrorPattern.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{File: source, Line: line, Key: m[2], Msg: m[3]}
		}
		return nil, &Error{File: source, Msg: err.Error()}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, &Error{File: source, Key: keys[0], Msg: fmt.Sprintf(
			"unknown key (unknown: %s; known: grace, daemon.name, daemon.command, daemon.env, daemon.dir, daemon.stop_signal, daemon.grace)",
			strings.Join(keys, ", "))}
	}

	cfg := &Config{Source: source, Grace: DefaultGrace}
	if raw.Grace != nil {
		if cfg.Grace, err = parseGrace(*raw.Grace); err != nil {
			return nil, &Error{File: source, Key: "grace", Msg: err.Error()}
		}
	}
	seen := map[string]int{}
	for i, d := range raw.Daemons {
		key := func(field string) string { return fmt.Sprintf("daemon[%d].%s", i, field) }
		if d.Name == "" {
			return nil, &Error{File: source, Key: key("name"), Msg: "missing or empty: every daemon needs a name"}
		}
		if !namePattern.MatchString(d.Name) {
			return nil, &Error{File: source, Key: key("name"), Msg: fmt.Sprintf(
				"%q is not a valid name (letters, digits, '.', '_', '-'; starting with a letter or digit)", d.Name)}
		}
		if first, dup := seen[d.Name]; dup {
			return nil, &Error{File: source, Key: key("name"), Msg: fmt.Sprintf(
				"duplicate daemon name %q (also daemon[%d])", d.Name, first)}
		}
		seen[d.Name] = i
		if len(d.Command) == 0 || d.Command[0] == "" {
			return nil, &Error{File: source, Key: key("command"), Msg: fmt.Sprintf(
				"daemon %q: command is empty (want an argv array such as [\"/usr/bin/prog\", \"--flag\"])", d.Name)}
		}
		daemon := Daemon{Name: d.Name, Command: d.Command, Dir: d.Dir, Grace: -1}
		for k, v := range d.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
				return nil, &Error{File: source, Key: key("env"), Msg: fmt.Sprintf(
					"daemon %q: bad environment variable %q (names must be non-empty, without '=' or NUL)", d.Name, k)}
			}
			daemon.Env = append(daemon.Env, k+"="+v)
		}
		sort.Strings(daemon.Env)
		if d.StopSignal != "" {
			sig, err := procs.ParseSignal(d.StopSignal)
			if err != nil {
				return nil, &Error{File: source, Key: key("stop_signal"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
			daemon.StopSignal = sig
		}
		if d.Grace != nil {
			if daemon.Grace, err = parseGrace(*d.Grace); err != nil {
				return nil, &Error{File: source, Key: key("grace"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
		}
		cfg.Daemons = append(cfg.Daemons, daemon)
	}
	cfg.resolveGrace()
	return cfg, nil
}

// OverrideGrace replaces the table's global grace (CLAUDE_BOTTLE_SIDECAR_GRACE); daemons with
// a grace of their own keep it.
func (c *Config) OverrideGrace(value string) error {
	grace, err := parseGrace(value)
	if err != nil {
		return &Error{File: "environment", Key: "CLAUDE_BOTTLE_SIDECAR_GRACE", Msg: err.Error()}
	}
	c.Grace = grace
	c.resolveGrace()
	return nil
}

// resolveGrace gives daemons without a grace of their own (marked -1 while parsing) the
// global one, and remembers that they follow it.
func (c *Config) resolveGrace() {
	for i := range c.Daemons {
		if c.Daemons[i].Grace < 0 || c.Daemons[i].inheritsGrace {
			c.Daemons[i].Grace = c.Grace
			c.Daemons[i].inheritsGrace = true
		}
	}
}

func parseGrace(value string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(value))
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. \"8s\" or \"500ms\")", value)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", value)
	}
	return d, nil
}

// Names lists the daemons' names in table order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Daemons))
	for i, d := range c.Daemons {
		names[i] = d.Name
	}
	return names
}
