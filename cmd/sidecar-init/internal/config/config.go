// Package config reads the daemon table (TOML) and the environment that selects from it.
// Every problem is an error that names the file, the key and, where the TOML decoder gives
// one, the line; the caller exits 2 on any of them before anything is spawned.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

// DefaultGrace is the stop grace when neither the table nor the environment sets one. It
// stays under docker stop's default 10 s, so the supervisor's own SIGKILL comes first.
const DefaultGrace = 8 * time.Second

// Defaults of the restart policy's keys.
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultBackoffReset   = 60 * time.Second
)

// DefaultControlSocket is where the control socket listens unless told otherwise.
const DefaultControlSocket = "/run/sidecar-init/control.sock"

// Config is a validated daemon table.
type Config struct {
	// Source names where the table came from, for logs and errors.
	Source  string
	Grace   time.Duration
	Daemons []Daemon
	// NotifyURL receives every daemon event as a JSON POST: http://... or unix:/path.
	NotifyURL string
	// NotifyTokenFile holds a bearer token for NotifyURL (read at start-up, never logged).
	NotifyTokenFile string
	// ControlSocket is the unix socket of `sidecar-init status|restart|stop|start|health`.
	ControlSocket string
	// StopOrder is "parallel" (every daemon at once) or "reverse" (dependents first).
	StopOrder string
	// ReadyFile is written once every selected daemon is ready, and removed at shutdown.
	ReadyFile string
	// LimitNofile is the open-files soft limit (RLIMIT_NOFILE) every daemon gets; 0: the
	// one sidecar-init was started with.
	LimitNofile uint64

	data []byte // the table's text, for the lines of errors found after Parse (Locate)
}

// minLimitNofile is the least limit_nofile accepted. sidecar-init runs with the limit too
// (its children can only inherit it): its 64 control clients and two pipes for each run
// of a labelled daemon or probe whose output is not all written must fit.
const minLimitNofile = 1024

// Stop orders.
const (
	StopParallel = "parallel"
	StopReverse  = "reverse"
)

// Liveness defaults: an attempt every 10 s, each given 5 s, and 3 failures in a row.
// Interval and timeout may not go below MinLivenessPeriod: "1ns" made the loop fork an
// exec probe back to back (770 a second, 80 % of a CPU, in a review); every 100 ms is
// at most ten attempts a second a daemon.
const (
	DefaultLivenessInterval = 10 * time.Second
	DefaultLivenessTimeout  = 5 * time.Second
	DefaultLivenessFailures = 3
	MinLivenessPeriod       = 100 * time.Millisecond
)

// DefaultReadyTimeout bounds how long a daemon may take to pass its readiness probe.
const DefaultReadyTimeout = 30 * time.Second

// Probe is a daemon's readiness probe: exactly one of its fields is set, or none (ready as
// soon as it is spawned).
type Probe struct {
	TCP  string   `toml:"tcp"`  // host:port that accepts a connection
	File string   `toml:"file"` // a path that exists
	Exec []string `toml:"exec"` // a command that exits 0
}

// IsSet says the daemon has a probe.
func (p Probe) IsSet() bool { return p.TCP != "" || p.File != "" || len(p.Exec) > 0 }

// String describes the probe for logs.
func (p Probe) String() string {
	switch {
	case p.TCP != "":
		return "tcp " + p.TCP
	case p.File != "":
		return "file " + p.File
	case len(p.Exec) > 0:
		return "exec " + strings.Join(p.Exec, " ")
	}
	return "none"
}

// Daemon is one validated [[daemon]] entry.
type Daemon struct {
	Name string
	// Index is its place in the table, for errors found after Parse ("daemon[2].user").
	Index   int
	Command []string
	// Env holds the variables added to the inherited environment as KEY=value, sorted as
	// whole strings.
	Env []string
	// FilterEnv says the daemon inherits only the variables of sidecar-init's environment
	// that PassEnv names (a name, or a prefix ending in '*'; none when empty); otherwise it
	// inherits all of them. Its own pass_env, else the table's.
	FilterEnv bool
	PassEnv   []string
	Dir       string
	// StopSignal is sent at shutdown; 0 means "the signal that started the shutdown".
	StopSignal syscall.Signal
	// Forward lists the signals forwarded to it (from procs.ForwardedSignals); nil: all of
	// them. A daemon that dies of a SIGHUP it does not handle (mitmdump, a plain Python
	// server) leaves it out, so that a reload sent to the bundle reaches only the daemons
	// that reload on it.
	Forward []syscall.Signal
	Grace   time.Duration
	Restart fsm.RestartPolicy
	// Oneshot: the daemon is a task that runs to completion (a migration, a chown of a
	// volume). It is ready once it has exited with status 0, for `after` and for health
	// alike, and that exit is no death for the crash policy.
	Oneshot bool
	// Backoff: the delay before restart n is BackoffInitial·2^(n-1) (with jitter), at most
	// BackoffMax; n resets once the daemon stayed up BackoffReset. Past MaxRestarts within
	// that window (0: no limit) the daemon is given up.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	BackoffReset   time.Duration
	MaxRestarts    int
	// After names daemons that must be ready before this one starts.
	After []string
	Ready Probe
	// ReadyTimeout bounds the wait for Ready; for a oneshot, its run (0: no bound).
	ReadyTimeout time.Duration
	// Liveness is checked once the daemon is ready, LivenessInterval after it became ready
	// and then after each attempt ended; an attempt not done within LivenessTimeout fails,
	// and LivenessFailures failures in a row stop the daemon (stop signal, grace, SIGKILL),
	// a death its restart policy treats as a failure.
	Liveness         Probe
	LivenessInterval time.Duration
	LivenessTimeout  time.Duration
	LivenessFailures int
	// User is "name" or "uid:gid" to run as; empty: the supervisor's own user. Credential
	// is what it resolved to (ResolveUsers).
	User       string
	Credential *procs.Credential
	// Log is "inherit", "prefix" or "json".
	Log string
	// inheritsGrace is true when the daemon has no grace of its own and follows the global one.
	inheritsGrace bool
}

// Forwards says the daemon gets sig when sidecar-init forwards it.
func (d Daemon) Forwards(sig syscall.Signal) bool {
	return d.Forward == nil || slices.Contains(d.Forward, sig)
}

// parseForward reads forward_signals: names of forwarded signals; empty, none (never nil).
func parseForward(names []string) ([]syscall.Signal, error) {
	sigs := []syscall.Signal{}
	for _, name := range names {
		sig, err := procs.ParseSignal(name)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(procs.ForwardedSignals, sig) {
			forwarded := make([]string, len(procs.ForwardedSignals))
			for i, f := range procs.ForwardedSignals {
				forwarded[i] = procs.SignalName(f)
			}
			return nil, fmt.Errorf("%s is not a signal sidecar-init forwards (forward_signals lists some of %s)",
				procs.SignalName(sig), strings.Join(forwarded, ", "))
		}
		if !slices.Contains(sigs, sig) {
			sigs = append(sigs, sig)
		}
	}
	return sigs, nil
}

// fileTable mirrors the TOML file; it is decoded, then validated into a Config.
type fileTable struct {
	Grace           *string      `toml:"grace"`
	NotifyURL       string       `toml:"notify_url"`
	NotifyTokenFile string       `toml:"notify_token_file"`
	ControlSocket   string       `toml:"control_socket"`
	StopOrder       string       `toml:"stop_order"`
	ReadyFile       string       `toml:"ready_file"`
	LimitNofile     *int64       `toml:"limit_nofile"`
	PassEnv         *[]string    `toml:"pass_env"`
	Daemons         []fileDaemon `toml:"daemon"`
}

type fileDaemon struct {
	Name           string            `toml:"name"`
	Command        []string          `toml:"command"`
	Env            map[string]string `toml:"env"`
	PassEnv        *[]string         `toml:"pass_env"`
	Dir            string            `toml:"dir"`
	StopSignal     string            `toml:"stop_signal"`
	ForwardSignals *[]string         `toml:"forward_signals"`
	Grace          *string           `toml:"grace"`

	Restart        string  `toml:"restart"`
	Oneshot        bool    `toml:"oneshot"`
	BackoffInitial *string `toml:"backoff_initial"`
	BackoffMax     *string `toml:"backoff_max"`
	BackoffReset   *string `toml:"backoff_reset"`
	MaxRestarts    *int    `toml:"max_restarts"`

	After        []string `toml:"after"`
	Ready        *Probe   `toml:"ready"`
	ReadyTimeout *string  `toml:"ready_timeout"`

	Liveness         *Probe  `toml:"liveness"`
	LivenessInterval *string `toml:"liveness_interval"`
	LivenessTimeout  *string `toml:"liveness_timeout"`
	LivenessFailures *int    `toml:"liveness_failures"`

	User *string `toml:"user"`
	Log  string  `toml:"log"`
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

// ProbeLabelSuffix ends the label of a daemon's exec probe output (NAME.probe): no daemon's
// name may end so, or its lines and a probe's would be one label.
const ProbeLabelSuffix = ".probe"

// ReservedName is the supervisor's own machine in the log ("machine":"supervisor"): a
// daemon of that name would make its transitions look like the supervisor's.
const ReservedName = "supervisor"

// validName keeps daemon names usable in CLAUDE_BOTTLE_SIDECAR_DAEMONS (split on commas and
// white space) and in logs: ASCII letters, digits, '.', '_' and '-', starting with a letter
// or digit (what `^[A-Za-z0-9][A-Za-z0-9_.-]*$` says). Written out rather than a package
// regexp: PID 1 compiled its regexps at every start, before it could spawn anything.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// decodeError splits BurntSushi/toml's type-mismatch errors, which are not toml.ParseError
// values: `toml: line 3 (last key "daemon.command"): incompatible types: ...`, without the
// "line 3 " when the decoder has no position for the key. The key is Go-quoted, so one that
// needs quotes in TOML (env."A.B") arrives escaped: "daemon.env.\"A.B\"".
func decodeError(text string) (line int, key, msg string, ok bool) {
	rest, found := strings.CutPrefix(text, "toml: ")
	if !found {
		return 0, "", "", false
	}
	if afterLine, hasLine := strings.CutPrefix(rest, "line "); hasLine {
		digits, afterDigits, found := strings.Cut(afterLine, " ")
		if !found || digits == "" || strings.Trim(digits, "0123456789") != "" {
			return 0, "", "", false
		}
		var err error
		if line, err = strconv.Atoi(digits); err != nil {
			return 0, "", "", false
		}
		rest = afterDigits
	}
	rest, found = strings.CutPrefix(rest, "(last key ")
	if !found {
		return 0, "", "", false
	}
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil || quoted[0] != '"' {
		return 0, "", "", false
	}
	key, _ = strconv.Unquote(quoted) // QuotedPrefix vouched for it
	msg, found = strings.CutPrefix(rest[len(quoted):], "): ")
	if !found || strings.Contains(msg, "\n") {
		return 0, "", "", false
	}
	return line, key, msg, true
}

// ControlSocketOf reads only the table's control_socket (the default when it sets none),
// for the client commands. Leniently: a key it does not know, or a bad value elsewhere, is
// not its business; a health check must not fail because the table on disk changed after
// the supervisor read it.
func ControlSocketOf(data []byte) (string, error) {
	var t struct {
		ControlSocket string `toml:"control_socket"`
	}
	if _, err := toml.Decode(string(data), &t); err != nil {
		return "", err
	}
	if t.ControlSocket == "" {
		return DefaultControlSocket, nil
	}
	return t.ControlSocket, nil
}

// Parse decodes and validates a daemon table. source names it in errors.
func Parse(source string, data []byte) (*Config, error) {
	cfg, err := parse(source, data)
	if err != nil {
		return nil, locate(err, source, data)
	}
	cfg.data = data
	return cfg, nil
}

// Locate gives an error about this table found after Parse (ResolveUsers') the line of its
// key, as Parse does for its own.
func (c *Config) Locate(err error) error { return locate(err, c.Source, c.data) }

// locate fills in the line of a *Error about source's key when the decoder gave none.
func locate(err error, source string, data []byte) error {
	var cerr *Error
	if errors.As(err, &cerr) && cerr.File == source && cerr.Line == 0 && cerr.Key != "" {
		cerr.Line = lineOf(data, cerr.Key)
	}
	return err
}

func parse(source string, data []byte) (*Config, error) {
	var raw fileTable
	if err := decodeTable(data, &raw); err != nil {
		var perr toml.ParseError
		var cerr *Error
		switch {
		case errors.As(err, &cerr):
			cerr.File = source
			return nil, cerr
		case errors.As(err, &perr):
			return nil, &Error{File: source, Line: perr.Position.Line, Key: perr.LastKey, Msg: perr.Message}
		}
		return nil, &Error{File: source, Msg: err.Error()}
	}

	cfg := &Config{Source: source, Grace: DefaultGrace, NotifyTokenFile: raw.NotifyTokenFile, ControlSocket: DefaultControlSocket}
	if raw.ControlSocket != "" {
		if err := cfg.SetControlSocket(raw.ControlSocket); err != nil {
			return nil, &Error{File: source, Key: "control_socket", Msg: err.Error()}
		}
	}
	if raw.ReadyFile != "" && !filepath.IsAbs(raw.ReadyFile) {
		return nil, &Error{File: source, Key: "ready_file", Msg: notAbsolute(raw.ReadyFile)}
	}
	if hasNUL(raw.ReadyFile) {
		return nil, &Error{File: source, Key: "ready_file", Msg: nulInPath(raw.ReadyFile)}
	}
	if raw.ReadyFile != "" && filepath.Clean(raw.ReadyFile) != raw.ReadyFile {
		return nil, &Error{File: source, Key: "ready_file", Msg: notClean(raw.ReadyFile)}
	}
	cfg.ReadyFile = raw.ReadyFile
	if raw.LimitNofile != nil {
		if *raw.LimitNofile < minLimitNofile {
			return nil, &Error{File: source, Key: "limit_nofile", Msg: fmt.Sprintf(
				"%d: want at least %d open files: sidecar-init runs with this limit too, for its control clients and the daemons' log pipes (leave the key out to keep the container's limit)",
				*raw.LimitNofile, minLimitNofile)}
		}
		cfg.LimitNofile = uint64(*raw.LimitNofile)
	}
	switch cfg.StopOrder = raw.StopOrder; cfg.StopOrder {
	case "":
		cfg.StopOrder = StopParallel
	case StopParallel, StopReverse:
	default:
		return nil, &Error{File: source, Key: "stop_order", Msg: fmt.Sprintf("%q: want \"parallel\" or \"reverse\"", raw.StopOrder)}
	}
	err := cfg.SetNotifyURL(raw.NotifyURL)
	if err != nil {
		return nil, &Error{File: source, Key: "notify_url", Msg: err.Error()}
	}
	if raw.Grace != nil {
		if cfg.Grace, err = parseGrace(*raw.Grace); err != nil {
			return nil, &Error{File: source, Key: "grace", Msg: err.Error()}
		}
	}
	var tablePassEnv []string
	if raw.PassEnv != nil {
		if tablePassEnv, err = parsePassEnv(*raw.PassEnv); err != nil {
			return nil, &Error{File: source, Key: "pass_env", Msg: err.Error()}
		}
	}
	seen := map[string]int{}
	for i, d := range raw.Daemons {
		key := func(field string) string { return fmt.Sprintf("daemon[%d].%s", i, field) }
		if d.Name == "" {
			return nil, &Error{File: source, Key: key("name"), Msg: "missing or empty: every daemon needs a name"}
		}
		if !validName(d.Name) {
			return nil, &Error{File: source, Key: key("name"), Msg: fmt.Sprintf(
				"%q is not a valid name (letters, digits, '.', '_', '-'; starting with a letter or digit)", d.Name)}
		}
		if strings.HasSuffix(d.Name, ProbeLabelSuffix) {
			return nil, &Error{File: source, Key: key("name"), Msg: fmt.Sprintf(
				"%q ends in %q, which labels exec probes' output (\"web.probe\" is web's probe): rename the daemon", d.Name, ProbeLabelSuffix)}
		}
		if d.Name == ReservedName {
			return nil, &Error{File: source, Key: key("name"), Msg: fmt.Sprintf(
				"%q is reserved: the log's transition lines name the supervisor's own machine so (\"machine\":\"supervisor\"); rename the daemon", d.Name)}
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
		if i := slices.IndexFunc(d.Command, hasNUL); i >= 0 {
			return nil, &Error{File: source, Key: key("command"), Msg: fmt.Sprintf(
				"daemon %q: command[%d] contains a NUL byte (exec cannot pass one)", d.Name, i)}
		}
		if hasNUL(d.Dir) {
			return nil, &Error{File: source, Key: key("dir"), Msg: fmt.Sprintf("daemon %q: dir contains a NUL byte", d.Name)}
		}
		daemon := Daemon{Name: d.Name, Index: i, Command: d.Command, Dir: d.Dir, Grace: -1}
		for _, k := range slices.Sorted(maps.Keys(d.Env)) { // the first bad name is the same at every run
			v := d.Env[k]
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return nil, &Error{File: source, Key: key("env"), Msg: fmt.Sprintf(
					"daemon %q: bad environment variable name %q (names must be non-empty, without '=' or NUL)", d.Name, k)}
			}
			if strings.Contains(v, "\x00") {
				return nil, &Error{File: source, Key: key("env"), Msg: fmt.Sprintf(
					"daemon %q: the value of environment variable %q contains a NUL byte", d.Name, k)}
			}
			daemon.Env = append(daemon.Env, k+"="+v)
		}
		sort.Strings(daemon.Env)
		switch {
		case d.PassEnv != nil:
			daemon.FilterEnv = true
			if daemon.PassEnv, err = parsePassEnv(*d.PassEnv); err != nil {
				return nil, &Error{File: source, Key: key("pass_env"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
		case raw.PassEnv != nil:
			daemon.FilterEnv, daemon.PassEnv = true, tablePassEnv
		}
		if d.StopSignal != "" {
			sig, err := procs.ParseSignal(d.StopSignal)
			switch sig {
			case syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
				// They suspend a process (SIGSTOP cannot even be caught): every stop would wait
				// out the grace, then SIGKILL.
				err = fmt.Errorf("%s suspends a process and does not end it (want e.g. SIGTERM, SIGINT, SIGQUIT)", procs.SignalName(sig))
			case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG:
				// Ignored by default and never a request to stop: the same wait, then SIGKILL.
				// (SIGWINCH is ignored by default too, but Apache's httpd takes it as its
				// graceful stop, so it stays allowed.)
				err = fmt.Errorf("%s does not ask a process to stop (want e.g. SIGTERM, SIGINT, SIGQUIT)", procs.SignalName(sig))
			}
			if err != nil {
				return nil, &Error{File: source, Key: key("stop_signal"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
			daemon.StopSignal = sig
		}
		if d.ForwardSignals != nil {
			if daemon.Forward, err = parseForward(*d.ForwardSignals); err != nil {
				return nil, &Error{File: source, Key: key("forward_signals"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
		}
		if d.Grace != nil {
			if daemon.Grace, err = parseGrace(*d.Grace); err != nil {
				return nil, &Error{File: source, Key: key("grace"), Msg: fmt.Sprintf("daemon %q: %v", d.Name, err)}
			}
		}
		for _, parse := range []func(*Daemon) *Error{d.parseRestart, d.parseStart, d.parseLiveness} {
			if err := parse(&daemon); err != nil {
				err.File, err.Key = source, key(err.Key)
				return nil, err
			}
		}
		cfg.Daemons = append(cfg.Daemons, daemon)
	}
	if len(cfg.Daemons) == 0 {
		// Most likely the wrong file. Running none is asked for with an empty
		// CLAUDE_BOTTLE_SIDECAR_DAEMONS, not an empty table.
		return nil, &Error{File: source, Key: "daemon", Msg: "no [[daemon]] entries: the table needs at least one (to run none, set " + SelectEnv + " to empty)"}
	}
	if err := cfg.checkAfter(); err != nil {
		err.File = source
		return nil, err
	}
	cfg.resolveGrace()
	return cfg, nil
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// parsePassEnv checks a pass_env list: variable names, or prefixes ending in '*' ("EGRESS_*";
// "*" alone passes everything). A '*' anywhere else would read as a pattern it is not.
func parsePassEnv(list []string) ([]string, error) {
	for _, entry := range list {
		name := strings.TrimSuffix(entry, "*")
		switch {
		case entry == "":
			return nil, errors.New("an empty entry (want a variable name such as \"PATH\", or a prefix such as \"EGRESS_*\")")
		case strings.ContainsAny(entry, "=\x00"):
			return nil, fmt.Errorf("%q: a variable name has no '=' or NUL", entry)
		case strings.Contains(name, "*"):
			return nil, fmt.Errorf("%q: '*' may only end an entry (a prefix such as \"EGRESS_*\")", entry)
		}
	}
	return slices.Clip(list), nil
}

// Passes says the daemon inherits the variable name from sidecar-init's environment.
func (d Daemon) Passes(name string) bool {
	if !d.FilterEnv {
		return true
	}
	for _, entry := range d.PassEnv {
		if prefix, ok := strings.CutSuffix(entry, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == entry {
			return true
		}
	}
	return false
}

// durationKey parses the value of a daemon's duration key, which must be at least least
// (time.Nanosecond: positive).
func durationKey(name, key, value string, least time.Duration) (time.Duration, *Error) {
	v, err := parseGrace(value)
	switch {
	case err != nil:
	case least <= time.Nanosecond && v == 0:
		err = fmt.Errorf("%s must be positive", key)
	case v < least:
		err = fmt.Errorf("%s must be at least %v, not %v", key, least, v)
	}
	if err != nil {
		return 0, &Error{Key: key, Msg: fmt.Sprintf("daemon %q: %v", name, err)}
	}
	return v, nil
}

// checkProbe validates a ready or liveness probe (key says which).
func checkProbe(name, key string, p Probe) *Error {
	set := 0
	for _, isSet := range []bool{p.TCP != "", p.File != "", len(p.Exec) > 0} {
		if isSet {
			set++
		}
	}
	if set != 1 {
		return &Error{Key: key, Msg: fmt.Sprintf("daemon %q: a probe is exactly one of tcp, file or exec (%s = { tcp = \"127.0.0.1:8888\" })", name, key)}
	}
	if p.TCP != "" {
		if err := checkHostPort(p.TCP); err != nil {
			return &Error{Key: key + ".tcp", Msg: fmt.Sprintf("daemon %q: %v", name, err)}
		}
	}
	if p.File != "" && !strings.HasPrefix(p.File, "/") {
		return &Error{Key: key + ".file", Msg: fmt.Sprintf("daemon %q: %q is not an absolute path", name, p.File)}
	}
	if len(p.Exec) > 0 && p.Exec[0] == "" {
		return &Error{Key: key + ".exec", Msg: fmt.Sprintf("daemon %q: empty command", name)}
	}
	if i := slices.IndexFunc(p.Exec, hasNUL); i >= 0 {
		return &Error{Key: key + ".exec", Msg: fmt.Sprintf("daemon %q: exec[%d] contains a NUL byte", name, i)}
	}
	if hasNUL(p.File) {
		return &Error{Key: key + ".file", Msg: fmt.Sprintf("daemon %q: the path contains a NUL byte", name)}
	}
	return nil
}

// parseLiveness fills the liveness check: the probe, how often, how long an attempt may
// take, and how many failures in a row make the daemon unresponsive.
func (d fileDaemon) parseLiveness(daemon *Daemon) *Error {
	if d.Liveness == nil {
		// A tuning key without the probe is most likely a probe that went missing (a
		// misspelt key is caught by the spelling check; a removed one is not): say so. In
		// a fixed order, for a stable error.
		for _, tuning := range []struct {
			key string
			set bool
		}{{"liveness_interval", d.LivenessInterval != nil}, {"liveness_timeout", d.LivenessTimeout != nil},
			{"liveness_failures", d.LivenessFailures != nil}} {
			if tuning.set {
				return &Error{Key: tuning.key, Msg: fmt.Sprintf("daemon %q: %s without a liveness probe (liveness = { exec = [...] }): nothing to tune", d.Name, tuning.key)}
			}
		}
		return nil
	}
	daemon.LivenessInterval, daemon.LivenessTimeout, daemon.LivenessFailures =
		DefaultLivenessInterval, DefaultLivenessTimeout, DefaultLivenessFailures
	if d.Oneshot {
		return &Error{Key: "liveness", Msg: fmt.Sprintf("daemon %q: a oneshot is a task that ends; it takes no liveness probe (ready_timeout bounds its run)", d.Name)}
	}
	if err := checkProbe(d.Name, "liveness", *d.Liveness); err != nil {
		return err
	}
	daemon.Liveness = *d.Liveness
	for _, f := range []struct {
		key   string
		value *string
		into  *time.Duration
	}{
		{"liveness_interval", d.LivenessInterval, &daemon.LivenessInterval},
		{"liveness_timeout", d.LivenessTimeout, &daemon.LivenessTimeout},
	} {
		if f.value == nil {
			continue
		}
		v, err := durationKey(d.Name, f.key, *f.value, MinLivenessPeriod)
		if err != nil {
			return err
		}
		*f.into = v
	}
	if d.LivenessFailures != nil {
		if *d.LivenessFailures < 1 {
			return &Error{Key: "liveness_failures", Msg: fmt.Sprintf("daemon %q: liveness_failures must be 1 or more, not %d", d.Name, *d.LivenessFailures)}
		}
		daemon.LivenessFailures = *d.LivenessFailures
	}
	return nil
}

// checkHostPort accepts host:port with a port a connection can be made to (1-65535), and
// nothing a dial could never reach (a probe that can never pass is a start that fails at
// ready_timeout, status 137, instead of this error).
func checkHostPort(addr string) error {
	if hasNUL(addr) {
		return errors.New("the address contains a NUL byte")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	// The resolver takes such a host as a name to look up, and no name holds one: the
	// dial fails at every attempt ("no such host").
	if strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q: the host %q holds white space or a control character, which no dial can resolve; write the address alone (\"127.0.0.1:8080\")", addr, host)
	}
	if err := checkPort(port); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

// checkPort accepts a port a connection can be made to: 1-65535, or a service name
// ("http"), which a dial accepts too (/etc/services).
func checkPort(port string) error {
	if n, err := net.LookupPort("tcp", port); err != nil || n < 1 || n > 65535 {
		if port == "" {
			port = `""`
		}
		return fmt.Errorf("port %s is not 1-65535 or a known service name", port)
	}
	return nil
}

// decodeTable decodes the table into raw one value at a time, in a fixed order: in each
// table the keys' spelling first, then the fields in the order fileTable, fileDaemon and
// Probe declare them, then map entries by sorted key. BurntSushi/toml walks each table in
// Go map order, so a file with two mistyped values was reported by either of them, changing
// from one run to the next (FuzzParse found it); an operator who reruns must see the same
// message. A syntax error comes back as toml.ParseError, every other problem as *Error.
func decodeTable(data []byte, raw *fileTable) error {
	var top map[string]toml.Primitive
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&top)
	if err != nil {
		return err
	}
	return decodeFields(&md, top, reflect.ValueOf(raw).Elem(), place{})
}

// decodeFields decodes table into the struct rv: the keys' spelling first, then field by
// field in declaration order. at names rv in errors ("daemon[0]"; "" at the top).
func decodeFields(md *toml.MetaData, table map[string]toml.Primitive, rv reflect.Value, at place) error {
	known := keysOf(rv.Type())
	if err := checkSpelling(table, known, at); err != nil {
		return err
	}
	for i, key := range known {
		if value, ok := table[key]; ok {
			if err := decodeInOrder(md, value, rv.Field(i), at.child(key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldKeys caches keysOf: a table of K daemons decodes K structs of each type, and
// reading the tags by reflection each time was a tenth of the parse (BenchmarkParse).
var fieldKeys sync.Map // reflect.Type → []string

// keysOf lists the toml keys of struct type t, in the order of its fields. The slice is
// shared: callers only read it.
func keysOf(t reflect.Type) []string {
	if known, ok := fieldKeys.Load(t); ok {
		return known.([]string)
	}
	known := make([]string, t.NumField())
	for i := range known {
		known[i] = t.Field(i).Tag.Get("toml")
	}
	fieldKeys.Store(t, known)
	return known
}

// place is where a value sits, for errors: its path with array indexes ("daemon[2].command"),
// and what is needed to tell whether BurntSushi/toml's line for it is right. The decoder
// keeps one line per key path, so in an array of tables "daemon.command" has the line of the
// last daemon that sets it: right for that daemon, wrong for the ones before it.
type place struct {
	path string
	// inEntry: inside an entry of an array of tables, with later the entries after it
	// (decoded only for an error, by md) and rel our path below it.
	inEntry bool
	md      *toml.MetaData
	later   []toml.Primitive
	rel     []string
	// nested: inside an array of tables within another one, where no line is trusted (the
	// daemon table has none).
	nested bool
}

func (p place) child(key string) place {
	c := p
	c.path = key
	if p.path != "" {
		c.path = p.path + "." + key
	}
	if p.inEntry {
		c.rel = append(slices.Clip(p.rel), key)
	}
	return c
}

func (p place) item(md *toml.MetaData, i int, items []toml.Primitive) place {
	return place{path: fmt.Sprintf("%s[%d]", p.path, i), inEntry: true, md: md, later: items[i+1:],
		nested: p.nested || p.inEntry}
}

// lineIsOurs: no later entry of the array sets the same key, so the decoder's line is ours.
func (p place) lineIsOurs() bool {
	if p.nested {
		return false
	}
	for _, entry := range p.later {
		var value any
		if err := p.md.PrimitiveDecode(entry, &value); err != nil {
			// Not seen: decoding into any takes every TOML value. Were it to fail, the line
			// is not trusted.
			return false
		}
		for _, key := range p.rel {
			table, _ := value.(map[string]any)
			if value = table[key]; value == nil {
				break
			}
		}
		if value != nil {
			return false
		}
	}
	return true
}

// decodeInOrder decodes value into rv, descending into the tables and arrays of tables that
// hold more than one value, so that their values are decoded in a fixed order too.
func decodeInOrder(md *toml.MetaData, value toml.Primitive, rv reflect.Value, at place) error {
	switch t := rv.Type(); {
	case t.Kind() == reflect.Struct:
		table, err := tableOf(md, value, at)
		if err != nil {
			return err
		}
		return decodeFields(md, table, rv, at)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		rv.Set(reflect.New(t.Elem()))
		return decodeInOrder(md, value, rv.Elem(), at)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		var items []toml.Primitive
		if err := md.PrimitiveDecode(value, &items); err != nil {
			return at.mismatch(err)
		}
		rv.Set(reflect.MakeSlice(t, len(items), len(items)))
		for i, item := range items {
			if err := decodeInOrder(md, item, rv.Index(i), at.item(md, i, items)); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() == reflect.Map:
		table, err := tableOf(md, value, at)
		if err != nil {
			return err
		}
		rv.Set(reflect.MakeMapWithSize(t, len(table)))
		for _, key := range slices.Sorted(maps.Keys(table)) {
			elem := reflect.New(t.Elem()).Elem()
			if err := decodeInOrder(md, table[key], elem, at.child(key)); err != nil {
				return err
			}
			rv.SetMapIndex(reflect.ValueOf(key), elem)
		}
		return nil
	}
	return at.mismatch(md.PrimitiveDecode(value, rv.Addr().Interface()))
}

// mismatch turns the decoder's type error (plain text carrying a line and a key) into an
// *Error for this place, with the line when it can be trusted.
func (p place) mismatch(err error) error {
	if err == nil {
		return nil
	}
	line, _, msg, ok := decodeError(err.Error())
	if !ok {
		return &Error{Key: p.path, Msg: err.Error()}
	}
	if !p.lineIsOurs() {
		line = 0
	}
	return &Error{Key: p.path, Line: line, Msg: msg}
}

// tableOf decodes a value that must be a table. BurntSushi/toml decodes any other value
// into a map as an empty one, without an error, so `env = "A=1"` gave a daemon no
// variables and `ready = "127.0.0.1:80"` an empty probe; the type is checked first.
func tableOf(md *toml.MetaData, value toml.Primitive, at place) (map[string]toml.Primitive, error) {
	// A table decodes into the map at once; only what is not one needs the look at its
	// type below (a second decode of the whole value, which was a seventh of the parse).
	var table map[string]toml.Primitive
	if err := md.PrimitiveDecode(value, &table); err == nil && table != nil {
		return table, nil
	}
	var raw any
	if err := md.PrimitiveDecode(value, &raw); err != nil {
		return nil, at.mismatch(err)
	}
	if _, ok := raw.(map[string]any); !ok {
		// Decoded into a struct, the value fails with the decoder's own error, which
		// carries the line it has for the key.
		err := at.mismatch(md.PrimitiveDecode(value, &struct{}{}))
		var cerr *Error
		if !errors.As(err, &cerr) {
			cerr = &Error{Key: at.path}
		}
		// In the decoder's own words for the type (fmtType): []any, not []interface {}.
		found := strings.ReplaceAll(fmt.Sprintf("%T", raw), "interface {}", "any")
		cerr.Msg = "incompatible types: TOML value has type " + found + "; destination is a table"
		return nil, cerr
	}
	table = nil
	return table, at.mismatch(md.PrimitiveDecode(value, &table))
}

// parseRestart fills the restart policy and its backoff. The returned *Error carries only
// the field's name in Key; the caller completes File and Key.
func (d fileDaemon) parseRestart(daemon *Daemon) *Error {
	daemon.Restart = fsm.RestartNever
	if d.Restart != "" {
		daemon.Restart = fsm.RestartPolicy(d.Restart)
		if !slices.Contains(fsm.RestartPolicies, daemon.Restart) {
			return &Error{Key: "restart", Msg: fmt.Sprintf("daemon %q: unknown restart policy %q (want never, on-failure or always)", d.Name, d.Restart)}
		}
	}
	daemon.Oneshot = d.Oneshot
	if d.Oneshot && daemon.Restart == fsm.RestartAlways {
		return &Error{Key: "restart", Msg: fmt.Sprintf("daemon %q: a oneshot cannot restart \"always\": it would run again after it succeeded (want on-failure, to retry until it succeeds, or never)", d.Name)}
	}
	for _, f := range []struct {
		key   string
		value *string
		into  *time.Duration
		deflt time.Duration
	}{
		{"backoff_initial", d.BackoffInitial, &daemon.BackoffInitial, DefaultBackoffInitial},
		{"backoff_max", d.BackoffMax, &daemon.BackoffMax, DefaultBackoffMax},
		{"backoff_reset", d.BackoffReset, &daemon.BackoffReset, DefaultBackoffReset},
	} {
		*f.into = f.deflt
		if f.value == nil {
			continue
		}
		v, err := durationKey(d.Name, f.key, *f.value, time.Nanosecond)
		if err != nil {
			return err
		}
		*f.into = v
	}
	if daemon.BackoffMax < daemon.BackoffInitial {
		return &Error{Key: "backoff_max", Msg: fmt.Sprintf("daemon %q: backoff_max %v is below backoff_initial %v", d.Name, daemon.BackoffMax, daemon.BackoffInitial)}
	}
	if d.MaxRestarts != nil {
		if *d.MaxRestarts < 0 {
			return &Error{Key: "max_restarts", Msg: fmt.Sprintf("daemon %q: max_restarts must be 0 (no limit) or more, not %d", d.Name, *d.MaxRestarts)}
		}
		daemon.MaxRestarts = *d.MaxRestarts
	}
	return nil
}

// checkSpelling: every key of table is a known one (a field's tag), spelled exactly. BurntSushi/toml matches keys to struct fields without regard to case, so
// "Daemon" would decode too, and "[[dAemon]]" beside "[[daemon]]" made which one won depend
// on map order (FuzzParse found it). Of several unknown keys, the first in sorted order is
// reported, for a stable error.
func checkSpelling(table map[string]toml.Primitive, known []string, at place) error {
	var unknown []string
	for key := range table {
		if !slices.Contains(known, key) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		key := slices.Min(unknown) // not whichever the map walk meets first
		msg := fmt.Sprintf("unknown key (known here: %s)", strings.Join(known, ", "))
		for _, want := range known {
			if strings.EqualFold(want, key) {
				msg = fmt.Sprintf("unknown key (keys are case-sensitive: %q)", want)
			}
		}
		return &Error{Key: at.child(key).path, Msg: msg}
	}
	return nil
}

// parseStart fills what governs the daemon's start: after, ready, ready_timeout, user, log.
func (d fileDaemon) parseStart(daemon *Daemon) *Error {
	daemon.After = d.After
	if d.User != nil {
		if daemon.User = strings.TrimSpace(*d.User); daemon.User == "" {
			// Blank must not mean "no user", which is root: a value that went missing (an
			// empty variable in a templated table) would run the daemon with privileges.
			return &Error{Key: "user", Msg: fmt.Sprintf("daemon %q: user is blank (a name, or \"uid:gid\"; leave the key out to run as sidecar-init's own user)", d.Name)}
		}
	}
	daemon.ReadyTimeout = DefaultReadyTimeout
	if d.Oneshot {
		// A oneshot may run as long as its work takes, unless ready_timeout says otherwise.
		daemon.ReadyTimeout = 0
	}
	if d.ReadyTimeout != nil {
		v, err := durationKey(d.Name, "ready_timeout", *d.ReadyTimeout, time.Nanosecond)
		if err != nil {
			return err
		}
		daemon.ReadyTimeout = v
	}
	if d.Ready != nil && d.Oneshot {
		return &Error{Key: "ready", Msg: fmt.Sprintf("daemon %q: a oneshot is ready when it exits with status 0; it takes no probe (ready_timeout still bounds its run)", d.Name)}
	}
	if d.Ready != nil {
		if err := checkProbe(d.Name, "ready", *d.Ready); err != nil {
			return err
		}
		daemon.Ready = *d.Ready
	}
	switch daemon.Log = d.Log; daemon.Log {
	case "":
		daemon.Log = "inherit"
	case "inherit", "prefix", "json":
	default:
		return &Error{Key: "log", Msg: fmt.Sprintf("daemon %q: log %q: want inherit, prefix or json", d.Name, d.Log)}
	}
	return nil
}

// checkAfter rejects `after` names that are not daemons of the table, and cycles (naming
// every daemon in the cycle).
func (c *Config) checkAfter() *Error {
	index := map[string]int{}
	for i, d := range c.Daemons {
		index[d.Name] = i
	}
	for i, d := range c.Daemons {
		for _, dep := range d.After {
			if _, ok := index[dep]; !ok {
				return &Error{Key: fmt.Sprintf("daemon[%d].after", i), Msg: fmt.Sprintf(
					"daemon %q comes after %q, which is not in the table (known: %s)", d.Name, dep, strings.Join(c.Names(), ", "))}
			}
		}
	}
	const (
		unvisited = iota
		onPath
		finished
	)
	mark := make([]int, len(c.Daemons))
	var path []string
	var visit func(i int) *Error
	visit = func(i int) *Error {
		mark[i] = onPath
		path = append(path, c.Daemons[i].Name)
		for _, dep := range c.Daemons[i].After {
			j := index[dep]
			switch mark[j] {
			case onPath:
				start := slices.Index(path, dep)
				cycle := append(append([]string{}, path[start:]...), dep)
				return &Error{Key: fmt.Sprintf("daemon[%d].after", i), Msg: fmt.Sprintf(
					"start order has a cycle: %s", strings.Join(cycle, " → "))}
			case unvisited:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = finished
		return nil
	}
	for i := range c.Daemons {
		if mark[i] == unvisited {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetNotifyURL checks and sets where daemon events are POSTed: http://host[:port]/path or
// unix:/absolute/path; empty turns notification off.
func (c *Config) SetNotifyURL(raw string) error {
	if raw == "" {
		c.NotifyURL = ""
		return nil
	}
	if path, ok := strings.CutPrefix(raw, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("%q: a unix socket needs an absolute path (unix:/run/supervise.sock)", raw)
		}
		if hasNUL(path) {
			return errors.New(nulInPath(path))
		}
		c.NotifyURL = raw
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want http://host[:port]/path or unix:/path", raw)
	}
	if u.User != nil {
		// It would be logged with the URL, and is not sent: the token file is the way.
		return fmt.Errorf("%s: credentials in the URL are not supported; put a bearer token in notify_token_file", u.Redacted())
	}
	if port := u.Port(); port != "" {
		if err := checkPort(port); err != nil {
			return fmt.Errorf("%q: %w", raw, err)
		}
	}
	c.NotifyURL = raw
	return nil
}

// SetControlSocket sets the control socket's path (control_socket, or
// CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET). It must be absolute: a relative one would be
// made in sidecar-init's working directory, where a client (`docker exec ... sidecar-init
// status`) started elsewhere never finds it. And clean (notClean): "/run/sidecar-init/"
// names a directory, where no socket can be bound.
func (c *Config) SetControlSocket(path string) error {
	if !filepath.IsAbs(path) {
		return errors.New(notAbsolute(path))
	}
	if hasNUL(path) {
		return errors.New(nulInPath(path))
	}
	if filepath.Clean(path) != path {
		return errors.New(notClean(path))
	}
	c.ControlSocket = path
	return nil
}

// nulInPath: the kernel would cut the path at the NUL (a socket bound, or dialled, at
// another path), or refuse it at every use.
func nulInPath(path string) string {
	return fmt.Sprintf("%q holds a NUL byte, which no path may", path)
}

// notClean: the ready file's writes clean the path (readyfile.Open), so the file would be
// written where the path the table names can never be (stat "/run/ready/" is ENOTDIR), and
// a socket's bind takes none ending in "/": whoever reads the path as written would never
// find it.
func notClean(path string) string {
	return fmt.Sprintf("%q: write it as %q (a trailing \"/\", \"//\", \".\" or \"..\" makes a path that is not where the file would be)", path, filepath.Clean(path))
}

func notAbsolute(path string) string {
	return fmt.Sprintf("%q is not an absolute path", path)
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

// ResolveUsers looks up the `user` of each selected daemon in passwdPath and groupPath
// (no cgo, no NSS: the files the image has), only for the daemons that will run, so a
// table naming an image's users still loads where those users do not exist.
func ResolveUsers(daemons []Daemon, source, passwdPath, groupPath string) error {
	for i := range daemons {
		if daemons[i].User == "" {
			continue
		}
		cred, err := procs.LookupUser(daemons[i].User, passwdPath, groupPath)
		if err != nil {
			return &Error{File: source, Key: fmt.Sprintf("daemon[%d].user", daemons[i].Index),
				Msg: fmt.Sprintf("daemon %q: %v", daemons[i].Name, err)}
		}
		daemons[i].Credential = cred
	}
	return nil
}

// Names lists the daemons' names in table order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Daemons))
	for i, d := range c.Daemons {
		names[i] = d.Name
	}
	return names
}
