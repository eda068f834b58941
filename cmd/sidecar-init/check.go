package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/logging"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/notify"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/readyfile"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/supervisor"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
	"github.com/claude-bottle/sidecar-init/fsm"
	"github.com/claude-bottle/sidecar-init/procs"
)

const cmdCheck = "check"

const checkUsage = "usage: sidecar-init check [--config FILE] [--build]"

// runCheck is `sidecar-init check`: what the supervisor checks before it starts anything
// (the log level, the transition tables, the daemon table with the environment's
// overrides, the CLAUDE_BOTTLE_SIDECAR_DAEMONS selection, users, the notification token,
// whether another sidecar-init answers on the control socket),
// plus what it otherwise learns only as each daemon starts: that its program and dir, and
// its exec probes' programs (ready and liveness), are there for its user. It starts nothing and changes nothing,
// so it belongs in an image build (`RUN sidecar-init check --build`: the files mounted at
// run time are not looked at) or a pod's pre-flight. Exit 0: all good; 2: the supervisor
// would refuse to start (the error says why); 1: it would start, but not as configured:
// the daemons listed would die at once with status 127 or 126, never become ready, or be
// stopped as unresponsive at every run, or there would be no ready file or control socket.
func runCheck(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("sidecar-init check", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	table := envValue(envConfig)
	flags.Var((*tablePath)(&table), "config", "the daemon table, a TOML `FILE`; env "+envConfig)
	build := flags.Bool("build", false, "at an image build: skip notify_token_file and ready_file's directory, which are often mounted only at run time")
	if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
		_, _ = fmt.Fprintln(stdout, checkUsage)
		return err
	} else if err != nil {
		return usageError{fmt.Sprintf("check: %v\n%s", err, checkUsage)}
	}
	if flags.NArg() != 0 {
		return usageError{checkUsage}
	}
	if level := envValue(envLogLevel); level != "" {
		if _, err := logging.New(zapcore.AddSync(io.Discard), level); err != nil {
			return usageError{envLogLevel + ": " + err.Error()}
		}
	}
	if err := validateTables(fsm.SupervisorTable); err != nil {
		return err
	}
	cfg, err := loadConfig(table)
	if err != nil {
		return err
	}
	daemons, err := selectDaemons(cfg)
	if err != nil {
		return err
	}
	if len(daemons) == 0 {
		// As the supervisor: nothing selected, it exits 0 at once, before it looks at the
		// token, the limits or the ready file.
		_, _ = fmt.Fprintf(stdout, "%s: no daemons selected (%s=%q): sidecar-init would exit 0 at once\n",
			cfg.Source, config.SelectEnv, os.Getenv(config.SelectEnv))
		return nil
	}
	if cfg.NotifyURL != "" && !*build {
		notifier, err := notify.New(cfg.NotifyURL, cfg.NotifyTokenFile, zlog.Nop())
		if err != nil {
			return &config.Error{File: cfg.Source, Key: "notify_token_file", Msg: err.Error()}
		}
		notifier.Close(0)
	}
	// Where the start would stop because one may be running (a socket this user cannot
	// reach), check says so the same way. One that answers is the running sidecar-init of
	// this container (`docker exec ... sidecar-init check` of a table about to replace its
	// own): said, and the table is checked on. A socket that cannot be made is a start
	// without one, said below.
	noSocket := control.Preflight(cfg.ControlSocket)
	switch refused := socketRefusal(noSocket); {
	case errors.Is(noSocket, control.ErrInUse):
		_, _ = fmt.Fprintf(stdout, "note: %v: a sidecar-init runs there; a second one would not start beside it, and the table is checked as if it were to replace it\n", noSocket)
		noSocket = nil
	case refused != nil:
		return refused
	}

	selection := "unset: all"
	if value, set := os.LookupEnv(config.SelectEnv); set {
		selection = fmt.Sprintf("%q", value)
	}
	_, _ = fmt.Fprintf(stdout, "%s: %d of %d daemons selected (%s=%s)\n", cfg.Source, len(daemons), len(cfg.Daemons), config.SelectEnv, selection)
	var notes []string
	for _, u := range config.UnselectedAfter(daemons) {
		notes = append(notes, fmt.Sprintf("%s comes after %s, which is not selected: it starts without waiting for it", u.Daemon, u.After))
	}
	if note := longGraceNote(daemons); note != "" {
		notes = append(notes, note)
	}
	notes = append(notes, sharedUserNotes(daemons)...)
	for _, line := range notes {
		_, _ = fmt.Fprintln(stdout, "note: "+line)
	}
	failed := 0
	if *build && (cfg.NotifyTokenFile != "" || cfg.ReadyFile != "") {
		_, _ = fmt.Fprintln(stdout, "--build: notify_token_file and ready_file's directory not looked at")
	}
	if *build && cfg.LimitNofile > 0 {
		_, _ = fmt.Fprintln(stdout, "--build: limit_nofile not looked at (the container's limits decide, at run time)")
	}
	if cfg.LimitNofile > 0 && !*build {
		// Tried on this process, as the supervisor would on itself: the container's hard
		// limit and capabilities decide, and they are known only here.
		if _, err := procs.SetOpenFilesLimit(cfg.LimitNofile); err != nil {
			_, _ = fmt.Fprintf(stdout, "limit_nofile %d: %v\n", cfg.LimitNofile, err)
			failed++
		}
	}
	if noSocket != nil {
		_, _ = fmt.Fprintf(stdout, "%v: sidecar-init would run without a control socket (`sidecar-init status|health|stop` would not reach it)\n", noSocket)
		failed++
	}
	if cfg.ReadyFile != "" && !*build {
		// The same walk the supervisor's writes make: a directory reached only through a
		// symlink it will not follow is no ready file either.
		err := readyfile.Open(cfg.ReadyFile).CheckDir()
		switch {
		case err == nil:
		case errors.Is(err, readyfile.ErrIsDirectory):
			_, _ = fmt.Fprintf(stdout, "ready_file %s is a directory: it would write no ready file (it never replaces a directory)\n", cfg.ReadyFile)
			failed++
		case errors.Is(err, fs.ErrNotExist) && madeForTheSocket(filepath.Dir(cfg.ReadyFile), cfg.ControlSocket):
			// control.Listen makes the socket's directory (0700) and its parents first.
			_, _ = fmt.Fprintf(stdout, "note: ready_file %s: its directory is made at start, for the control socket %s\n", cfg.ReadyFile, cfg.ControlSocket)
		case errors.Is(err, fs.ErrNotExist):
			_, _ = fmt.Fprintf(stdout, "ready_file %s: %v (sidecar-init does not create the directory; it would write no ready file)\n", cfg.ReadyFile, err)
			failed++
		default:
			_, _ = fmt.Fprintf(stdout, "ready_file %s: %v (it would write no ready file)\n", cfg.ReadyFile, err)
			failed++
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAME\tUSER\tPROGRAM\tCHECK")
	environ := os.Environ()
	for _, d := range daemons {
		env := supervisor.DaemonEnv(environ, d)
		user := "(sidecar-init's)"
		if d.Credential != nil {
			user = d.Credential.Name
		}
		program, err := procs.Preflight(procs.Spec{Argv: d.Command, Env: env, Dir: d.Dir, Credential: d.Credential})
		for _, probe := range []struct {
			key  string
			argv []string
		}{{"ready", d.Ready.Exec}, {"liveness", d.Liveness.Exec}} {
			if err == nil && len(probe.argv) > 0 {
				if _, perr := procs.Preflight(procs.Spec{Argv: probe.argv, Env: env, Dir: d.Dir, Credential: d.Credential}); perr != nil {
					err = fmt.Errorf("its %s probe: %w", probe.key, perr)
				}
			}
		}
		result := "ok"
		if err != nil {
			result = strings.ReplaceAll(err.Error(), "\n", "; ") // one row a daemon
			failed++
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, user, dash(program), result)
	}
	if err := tw.Flush(); err != nil {
		return clientError{"write the answer: " + err.Error()}
	}
	if failed > 0 {
		return clientError{fmt.Sprintf("check: %d problem(s) above: sidecar-init would start, but not as configured", failed)}
	}
	return nil
}

// selectDaemons applies CLAUDE_BOTTLE_SIDECAR_DAEMONS to the table and resolves the
// selected daemons' users: the supervisor and `check` alike.
func selectDaemons(cfg *config.Config) ([]config.Daemon, error) {
	selection, selected := os.LookupEnv(config.SelectEnv)
	daemons, err := cfg.Select(selection, selected)
	if err != nil {
		return nil, err
	}
	if err := config.ResolveUsers(daemons, cfg.Source, procs.PasswdPath, procs.GroupPath); err != nil {
		return nil, cfg.Locate(err)
	}
	return daemons, nil
}
