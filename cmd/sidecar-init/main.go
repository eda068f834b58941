// Command sidecar-init is the PID 1 of the sidecar bundle: it starts the bundle's daemons,
// reaps every zombie, forwards signals and stops everything gracefully.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/daemonlog"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/logging"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/supervisor"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
	"github.com/claude-bottle/sidecar-init/sidecars"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Environment variables read by the supervisor.
const (
	envConfig        = "CLAUDE_BOTTLE_SIDECAR_CONFIG"
	envGrace         = "CLAUDE_BOTTLE_SIDECAR_GRACE"
	envLogLevel      = "CLAUDE_BOTTLE_SIDECAR_LOG_LEVEL"
	envNotifyURL     = "CLAUDE_BOTTLE_SUPERVISE_URL"
	envControlSocket = "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET"
)

// notifyFlushTimeout bounds how long exiting waits for the last notifications.
const notifyFlushTimeout = 300 * time.Millisecond

// flushOnClose gives the supervisor a notifier whose Close waits notifyFlushTimeout at most.
type flushOnClose struct{ *notify.Notifier }

func (n flushOnClose) Close() { n.Notifier.Close(notifyFlushTimeout) }

// reservedThreads is how many idle OS threads the runtime keeps in reserve (about 30 KB
// of memory each, and one pid each).
const reservedThreads = 2

// logFlushTimeout bounds how long exiting waits for stderr to take the last log lines. The
// exit's three bounded waits (labelled-log pipes, notifications, this) add up to under 1 s,
// so a stalled stderr or endpoint keeps a shutdown within grace + 1 s.
const logFlushTimeout = 300 * time.Millisecond

func main() {
	isClient := len(os.Args) > 1 && (isClientCommand(os.Args[1]) || os.Args[1] == cmdCheck)
	var signals supervisor.Signals
	if !isClient {
		// First thing: a Go PID 1 that has not asked for SIGTERM exits with status 2 when it
		// gets one (the runtime re-raises it, the kernel ignores it for init, the runtime
		// exits). A client command keeps the defaults: Ctrl-C ends it, like any command.
		signals = notifySignals()
	}
	// Whole lines only on each stream: the supervisor's log and labelled daemon lines
	// share stderr through one sink.
	var sinks supervisor.Sinks
	sinks.Stdout, sinks.Stderr = daemonlog.NewSinks(os.Stdout, os.Stderr)
	logOut := logging.NewWriter(sinks.Stderr)
	var err error
	switch {
	case isClient && os.Args[1] == cmdCheck:
		err = runCheck(os.Args[2:], os.Stdout)
	case isClient:
		err = runClient(os.Args[1:], os.Stdout)
	default:
		err = run(os.Args[1:], signals, sinks, logOut)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		var failed daemonsFailed
		if isClient {
			// A person or a probe reads this: plain text, not the supervisor's JSON log.
			_, _ = fmt.Fprintln(os.Stderr, "sidecar-init:", err)
		} else if !errors.As(err, &failed) {
			if log, lerr := logging.New(logOut, "info"); lerr == nil {
				log.Error("sidecar-init cannot start; nothing was started", zlog.Error(err))
			}
		}
	}
	logOut.Close(logFlushTimeout)
	os.Exit(exitCode(err))
}

// notifySignals asks for exactly the signals the loop handles (procs.StopSignals,
// ForwardedSignals, DroppedSignals and SIGCHLD), one channel per kind. Never signal.Notify
// with no list (it would take SIGURG, the runtime's preemption signal, 20 times a second),
// and never signal.Ignore (children would inherit the ignore).
func notifySignals() supervisor.Signals {
	// os/signal drops what does not fit: room for at least one of each signal of a kind.
	stop := make(chan os.Signal, 8)
	forward := make(chan os.Signal, 64)
	child := make(chan os.Signal, 1) // SIGCHLD coalesces anyway: one pending wake-up is enough
	drop := make(chan os.Signal, 16)
	signal.Notify(stop, osSignals(procs.StopSignals)...)
	signal.Notify(forward, osSignals(procs.ForwardedSignals)...)
	signal.Notify(child, syscall.SIGCHLD)
	signal.Notify(drop, osSignals(procs.DroppedSignals)...)
	return supervisor.Signals{Stop: stop, Forward: forward, Child: child, Drop: drop}
}

func osSignals(sigs []syscall.Signal) []os.Signal {
	out := make([]os.Signal, len(sigs))
	for i, sig := range sigs {
		out[i] = sig
	}
	return out
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// daemonsFailed carries the supervisor's nonzero exit status: the first daemon that died on
// its own with a nonzero status.
type daemonsFailed struct{ status int }

func (e daemonsFailed) Error() string { return fmt.Sprintf("a daemon failed with status %d", e.status) }

// exitCode is the one place exit statuses are decided: 0 on success, the failed daemon's
// status, and 2 for anything that stopped the supervisor before it started a daemon.
func exitCode(err error) int {
	var failed daemonsFailed
	var client clientError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &failed):
		return failed.status
	case errors.As(err, &client):
		return 1
	default:
		return 2
	}
}

// envValue is an environment variable's value with white space trimmed: set but blank is
// unset, for every variable sidecar-init reads (a template's ${VAR:-} or a stray space
// must not stop the bundle, nor name a file " ").
func envValue(name string) string { return strings.TrimSpace(os.Getenv(name)) }

// options is the parsed command line with its environment fallbacks.
type options struct {
	configPath string
	logLevel   string
}

func run(args []string, signals supervisor.Signals, sinks supervisor.Sinks, logOut *logging.Writer) error {
	opts, err := parseArgs(args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			failedBeforeTheTable(opts)
		}
		return err
	}
	log, err := logging.New(logOut, opts.logLevel)
	if err != nil {
		failedBeforeTheTable(opts)
		return usageError{err.Error()}
	}
	if err := validateTables(fsm.SupervisorTable); err != nil {
		return err
	}
	cfg, err := loadConfig(opts.configPath)
	// An earlier run's ready file must not say ready while this run stops at a bad
	// environment, selection, user or token, or selects nothing. A run that starts removes
	// it itself (Supervisor.Run), once it owns the control socket.
	started := false
	defer func() {
		if cfg != nil && !started {
			removeEarlierReadyFile(cfg, log)
		}
	}()
	if err != nil {
		return err
	}
	daemons, err := selectDaemons(cfg)
	if err != nil {
		return err
	}
	if len(daemons) == 0 {
		log.Info("no daemons selected: nothing to supervise, exiting", zlog.String(config.SelectEnv, os.Getenv(config.SelectEnv)))
		return nil
	}
	log.Info("sidecar-init", zlog.String("version", version), zlog.String("config", cfg.Source),
		zlog.Strings("daemons", names(daemons)), zlog.Duration("grace", cfg.Grace))
	if note := longGraceNote(daemons); note != "" {
		log.Warn(note)
	}
	for _, note := range sharedUserNotes(daemons) {
		log.Warn(note)
	}

	if cfg.LimitNofile > 0 {
		// Before the first spawn: the daemons inherit it.
		soft, err := procs.SetOpenFilesLimit(cfg.LimitNofile)
		switch {
		case errors.Is(err, procs.ErrLimitClamped):
			log.Warn("limit_nofile: the daemons get a lower open-files limit than the table asks", zlog.Uint64("limit", soft), zlog.Error(err))
		case err != nil:
			log.Warn("limit_nofile: cannot set the daemons' open-files limit; they keep sidecar-init's", zlog.Error(err))
		default:
			log.Info("open-files limit set for the daemons", zlog.Uint64("limit", soft))
		}
	}

	// Spare threads for the runtime, taken while the container still has pids: see
	// ReserveThreads (measured: a daemon using up pids.max = 40 ended sidecar-init in 1 of
	// 25 runs without them, 0 of 100 with them). Beside the start-up, not in front of it:
	// in front, it cost 0.1-0.5 ms before the first daemon's exec.
	go procs.ReserveThreads(reservedThreads)
	pid1 := os.Getpid() == 1
	if !pid1 {
		if err := procs.BecomeSubreaper(); err != nil {
			log.Warn("not PID 1 and could not become a child subreaper: orphans of the daemons will not be reaped "+
				"here and their exits go unseen; run sidecar-init as the container's PID 1 (ENTRYPOINT, no --init) "+
				"or on Linux ≥ 3.4", zlog.Error(err))
		}
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s for the daemons' stdin: %w", os.DevNull, err)
	}
	defer func() { _ = stdin.Close() }() // read-only /dev/null: nothing to lose on close

	supervised := supervisor.Options{
		Daemons: daemons,
		Environ: os.Environ(),
		Log:     log,
		Signals: signals,
		Stdin:   stdin,
		Sinks:   sinks,
		PID1:    pid1,

		ReadyFile:   cfg.ReadyFile,
		ReverseStop: cfg.StopOrder == config.StopReverse,
	}
	if cfg.NotifyURL != "" {
		notifier, err := notify.New(cfg.NotifyURL, cfg.NotifyTokenFile, log)
		if err != nil {
			return &config.Error{File: cfg.Source, Key: "notify_token_file", Msg: err.Error()}
		}
		supervised.Notifier = flushOnClose{notifier} // closed by the loop, before its last line
		log.Info("daemon events are POSTed to the supervise sidecar", zlog.String("url", cfg.NotifyURL))
	}
	calls := make(chan control.Call)
	server, err := control.Listen(cfg.ControlSocket, calls, log)
	switch refused := socketRefusal(err); {
	case refused != nil:
		return refused
	case err != nil:
		// The daemons matter more than the control socket: run without it, loudly (a
		// path too long for a socket included, known from the table alone: the variable
		// may set it at run time, and the guards must not go down for it; check says 1).
		log.Warn("no control socket: `sidecar-init status|restart|stop|start|signal` will not reach this supervisor; "+
			"set control_socket (or "+envControlSocket+") to a writable path", zlog.Error(err))
	default:
		defer server.CloseAtExit()
		supervised.Calls = calls
		log.Info("control socket listening", zlog.String("path", cfg.ControlSocket))
	}

	started = true
	status := supervisor.New(supervised).Run()
	if status != 0 {
		return daemonsFailed{status}
	}
	return nil
}

// socketRefusal is the start's error when another sidecar-init answers on the control
// socket (control.ErrInUse) or may (control.ErrCannotTell), saying what to do; nil for any
// other error of control.Listen or control.Preflight (the daemons run without a socket).
func socketRefusal(err error) error {
	switch {
	case errors.Is(err, control.ErrInUse):
		// Its daemons are running: a second set would fight them for every port and file
		// (a `docker exec sidecar-init` meant as a client command, say). As supervisord does.
		return fmt.Errorf("%w: it runs the daemons already; not starting a second set (stop it first, or give this one "+
			"its own control_socket)", err)
	case errors.Is(err, control.ErrCannotTell):
		// One may be running (a socket this user may not reach): not a second set either.
		return fmt.Errorf("%w; not starting the daemons: give this sidecar-init a control_socket it may use", err)
	}
	return nil
}

// failedBeforeTheTable: the start failed (a bad flag, a stray argument, a bad log level)
// before the table was read, but an earlier run's ready file must not say ready while this
// one has failed to start (a container restarted in place with a bad command line would
// say ready through its whole crash loop). The table the command line named so far, or
// the environment's, says where it is.
func failedBeforeTheTable(opts options) {
	if cfg, _ := loadConfig(opts.configPath); cfg != nil {
		removeEarlierReadyFile(cfg, zlog.Nop())
	}
}

// removeEarlierReadyFile removes the ready file an earlier run left, so it cannot say ready
// while this run starts or fails to. Not while another sidecar-init answers on the control
// socket: the file is that live one's (a mistyped second start must not flip an outside
// consumer to "not ready" for good). A socket nobody answers on is a dead run's.
func removeEarlierReadyFile(cfg *config.Config, log *zlog.Logger) {
	if cfg.ReadyFile == "" {
		return
	}
	if socket := cfg.ControlSocket; cfg.ReadyFile == socket || cfg.ReadyFile == control.LockPath(socket) ||
		madeForTheSocket(cfg.ReadyFile, socket) {
		// A ready_file refuseSocketClashes refuses was never a ready file: what is there is
		// the socket's, its lock's (which stays in place) or its directory.
		return
	}
	// Cannot tell (another user's socket): as good as live, the file may be its.
	switch live, err := control.Answering(cfg.ControlSocket); {
	case live:
		log.Info("another sidecar-init answers on the control socket: its ready file is left alone",
			zlog.String("control_socket", cfg.ControlSocket), zlog.String("ready_file", cfg.ReadyFile))
		return
	case err != nil:
		log.Info("cannot tell whether another sidecar-init answers on the control socket: the ready file, maybe its, is left alone",
			zlog.String("control_socket", cfg.ControlSocket), zlog.String("ready_file", cfg.ReadyFile), zlog.Error(err))
		return
	}
	supervisor.RemoveReadyFile(cfg.ReadyFile, log)
}

func parseArgs(args []string) (options, error) {
	opts := options{configPath: envValue(envConfig), logLevel: envValue(envLogLevel)}
	if opts.logLevel == "" {
		opts.logLevel = "info"
	}
	flags := flag.NewFlagSet("sidecar-init", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flags.Var((*tablePath)(&opts.configPath), "config", "the daemon table, a TOML `FILE`; env "+envConfig)
	flags.StringVar(&opts.logLevel, "log-level", opts.logLevel, "debug, info, warn or error; env "+envLogLevel)
	showVersion := flags.Bool("version", false, "print the version and exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			flags.SetOutput(os.Stdout)
			_, _ = fmt.Fprintln(os.Stdout, "usage: sidecar-init [--config FILE] [--log-level LEVEL] [--version]\n       sidecar-init status [--json] | health | restart NAME | stop NAME | start NAME | signal NAME SIGNAL\n       sidecar-init check [--config FILE] [--build]")
			flags.PrintDefaults()
			return opts, err
		}
		return opts, usageError{fmt.Sprintf("%v (usage: sidecar-init [--config FILE] [--log-level LEVEL] [--version])", err)}
	}
	if arg := flags.Arg(0); arg == "check" || isClientCommand(arg) {
		// `sidecar-init --config F status`: the flags went before the command.
		return opts, usageError{fmt.Sprintf("unexpected argument %q: a command goes first, its flags after it (sidecar-init %s --config FILE)", arg, arg)}
	} else if flags.NArg() > 0 {
		return opts, usageError{fmt.Sprintf("unexpected argument %q: daemons come from the table, not the command line", arg)}
	}
	if *showVersion {
		_, _ = fmt.Fprintln(os.Stdout, "sidecar-init", version)
		return opts, flag.ErrHelp
	}
	return opts, nil
}

// tablePath is --config, the supervisor's and check's. Given but empty (or white space)
// it is an unset variable in a command line (`--config "$CFG"`), not a wish for the
// embedded table: a usage error, as for the client commands (960054a). Set refuses it, so
// the path named before it (or the environment's) stays: the one whose ready file a bad
// command line removes (failedBeforeTheTable).
type tablePath string

func (p *tablePath) String() string { return string(*p) }

func (p *tablePath) Set(value string) error {
	if strings.TrimSpace(value) == "" {
		return errors.New("an empty --config names no table (an unset variable?); leave it out for " + envConfig + " or the embedded table")
	}
	*p = tablePath(value)
	return nil
}

// validateTables checks the transition tables at start-up: looplab/fsm itself checks none of
// this, and a broken table must stop the supervisor before any daemon exists. Runnable, not
// Validate: a state nothing leads to is dead rows only (degraded once the crash policy is
// flipped to tear down, backoff under restart = "never"); the tests hold the shipped tables
// to Validate.
func validateTables(supervisorTable fsm.Table) error {
	for _, t := range []fsm.Table{fsm.DaemonTable(fsm.RestartNever), fsm.DaemonTable(fsm.RestartOnFailure), fsm.DaemonTable(fsm.RestartAlways), supervisorTable} {
		if err := t.Runnable(); err != nil {
			return fmt.Errorf("internal error: %w", err)
		}
	}
	return nil
}

// readTable reads the daemon table at path, or gives the embedded one when path is empty,
// with the name errors give it. The supervisor and the client commands read it alike.
func readTable(path string) (source string, data []byte, err error) {
	if path == "" {
		return sidecars.DaemonsTOMLName, sidecars.DaemonsTOML, nil
	}
	if data, err = os.ReadFile(path); err != nil {
		return path, nil, &config.Error{File: path, Msg: fmt.Sprintf("cannot read the daemon table: %v", err)}
	}
	return path, data, nil
}

func loadConfig(path string) (*config.Config, error) {
	source, data, err := readTable(path)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(source, data)
	if err != nil {
		return nil, err
	}
	// The socket first: an error in the environment still gives the table back, and its
	// ready_file is removed unless a sidecar-init answers on the socket this run would use.
	if path := envValue(envControlSocket); path != "" {
		if err := cfg.SetControlSocket(path); err != nil {
			return cfg, &config.Error{File: "environment", Key: envControlSocket, Msg: err.Error()}
		}
	}
	// Set but empty is unset, as for the other variables: a template's ${GRACE:-} must not
	// stop the bundle.
	if grace := envValue(envGrace); grace != "" {
		if err := cfg.OverrideGrace(grace); err != nil {
			return cfg, err
		}
	}
	if url, ok := os.LookupEnv(envNotifyURL); ok {
		// White space only is empty, as for the other variables: no notifications.
		if err := cfg.SetNotifyURL(strings.TrimSpace(url)); err != nil {
			return cfg, &config.Error{File: "environment", Key: envNotifyURL, Msg: err.Error()}
		}
	}
	if err := refuseSocketClashes(cfg); err != nil {
		return cfg, cfg.Locate(err)
	}
	return cfg, nil
}

// refuseSocketClashes refuses, once the environment's socket is applied, a path the
// supervisor writes or removes that is the control socket's, its lock's, or the socket's
// directory: what is certain from the table alone not to work, at every run.
func refuseSocketClashes(cfg *config.Config) error {
	// Both paths are clean (config refuses others).
	socket, lock := cfg.ControlSocket, control.LockPath(cfg.ControlSocket)
	if ready := cfg.ReadyFile; ready != "" {
		switch {
		case ready == socket || ready == lock:
			// The ready file is renamed over its path: the socket would be gone for good.
			return &config.Error{File: cfg.Source, Key: "ready_file", Msg: fmt.Sprintf(
				"%q is the control socket's path (or its lock's, beside it): the ready file written there would end the socket; give it a path of its own", ready)}
		case madeForTheSocket(ready, socket):
			// control.Listen makes these directories (MkdirAll) before the first daemon.
			return &config.Error{File: cfg.Source, Key: "ready_file", Msg: fmt.Sprintf(
				"%q is the control socket's directory (or one above it), which sidecar-init makes a directory at start: no ready file can be written there; give it a path of its own (%s, beside the socket)",
				ready, filepath.Join(filepath.Dir(socket), "ready"))}
		}
	}
	for i, d := range cfg.Daemons {
		for _, probe := range []struct{ key, path string }{{"ready", d.Ready.File}, {"liveness", d.Liveness.File}} {
			if probe.path == "" {
				continue
			}
			var what string
			switch filepath.Clean(probe.path) {
			case socket, lock:
				what = "the control socket's path (or its lock's, beside it): the file is removed before each run of the daemon, which would end the socket"
			case cfg.ReadyFile:
				what = "the ready file: the file is removed before each run of the daemon, and the ready file is written only once every daemon is ready"
			default:
				continue
			}
			return &config.Error{File: cfg.Source, Key: fmt.Sprintf("daemon[%d].%s.file", i, probe.key), Msg: fmt.Sprintf(
				"daemon %q: %q is %s; give the probe a file of its own", d.Name, probe.path, what)}
		}
	}
	return nil
}

// madeForTheSocket says sidecar-init makes dir at start: it is the control socket's
// directory or one of its parents, which control.Listen creates when missing.
func madeForTheSocket(dir, socket string) bool {
	socketDir := filepath.Clean(filepath.Dir(socket))
	dir = filepath.Clean(dir)
	return dir == socketDir || strings.HasPrefix(socketDir, dir+string(filepath.Separator)) || dir == string(filepath.Separator)
}

func names(daemons []config.Daemon) []string {
	out := make([]string, len(daemons))
	for i, d := range daemons {
		out[i] = d.Name
	}
	return out
}

// dockerStopTimeout is how long `docker stop` waits after SIGTERM before it SIGKILLs the
// container (Kubernetes waits terminationGracePeriodSeconds, 30 s by default).
const dockerStopTimeout = 10 * time.Second

// sharedUserNotes names the daemons that run as one user other than root. Processes of one
// uid may signal, trace and read each other (/proc/PID/environ, their descriptors: a
// listening socket taken with pidfd_getfd), so a compromised guard could stop another or
// answer in its place (a security review did, between two daemons run as nobody). A note,
// not an error: a table may want it, and it is the image's users that fix it.
func sharedUserNotes(daemons []config.Daemon) []string {
	byUID := map[uint32][]string{}
	var uids []uint32
	for _, d := range daemons {
		if c := d.Credential; c != nil && c.UID != 0 {
			if byUID[c.UID] == nil {
				uids = append(uids, c.UID)
			}
			byUID[c.UID] = append(byUID[c.UID], d.Name)
		}
	}
	var notes []string
	for _, uid := range uids {
		if names := byUID[uid]; len(names) > 1 {
			notes = append(notes, fmt.Sprintf("daemons %s run as one user (uid %d): each may signal, trace and read the others "+
				"(environment, descriptors, memory), so one compromised is all of them compromised; give each a user of its own",
				strings.Join(names, ", "), uid))
		}
	}
	return notes
}

// longGraceNote warns when a grace would outlast docker stop's default wait: the container
// is then SIGKILLed, sidecar-init and all, before the daemon's grace ends. "" otherwise.
func longGraceNote(daemons []config.Daemon) string {
	var longest config.Daemon
	for _, d := range daemons {
		if d.Grace > longest.Grace {
			longest = d
		}
	}
	// A group still holding processes after its SIGKILL gets one more second (README).
	if longest.Grace <= dockerStopTimeout-time.Second { // (not Grace+1s: a grace near the longest duration would overflow)
		return ""
	}
	return fmt.Sprintf("daemon %s's grace %v (plus up to 1 s) outlasts docker stop's default %v: the container is SIGKILLed "+
		"before it ends; give docker stop --time, Compose stop_grace_period or Kubernetes terminationGracePeriodSeconds "+
		"more than the grace (stop_order = \"reverse\" too: it stops within the largest grace, whatever the `after` chains)", longest.Name, longest.Grace, dockerStopTimeout)
}
