package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/config"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
	"github.com/claude-bottle/sidecar-init/procs"
)

// clientTimeout bounds a client's whole exchange with the supervisor.
const clientTimeout = 5 * time.Second

// clientError is a failed client command: exit status 1.
type clientError struct{ msg string }

func (e clientError) Error() string { return e.msg }

func isClientCommand(arg string) bool {
	switch arg {
	case control.CmdStatus, control.CmdHealth, control.CmdRestart, control.CmdStop, control.CmdStart, control.CmdSignal:
		return true
	}
	return false
}

// runClient is `sidecar-init status [--json]`, `sidecar-init health` (exit 0 when every
// daemon that should run is ready, 1 otherwise: a Docker HEALTHCHECK or Kubernetes exec
// probe), `sidecar-init restart|stop|start NAME` and `sidecar-init signal NAME SIGNAL`:
// one request over the control socket (CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET, or the
// default).
func runClient(args []string, stdout io.Writer) error {
	cmd := args[0]
	flags := flag.NewFlagSet("sidecar-init "+cmd, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	asJSON := flags.Bool("json", false, "print JSON (status only)")
	socket := flags.String("socket", "", "control socket (default $"+envControlSocket+", else the table's control_socket)")
	table := flags.String("config", "", "the supervisor's daemon table, for its control_socket (default $"+envConfig+", else the embedded one)")
	takesName := cmd != control.CmdStatus && cmd != control.CmdHealth
	positional := 0 // positional arguments
	usage := "usage: sidecar-init " + cmd + " [--socket PATH | --config FILE]"
	switch {
	case cmd == control.CmdStatus:
		usage = "usage: sidecar-init status [--json] [--socket PATH | --config FILE]"
	case cmd == control.CmdSignal:
		usage += " NAME SIGNAL"
		positional = 2
	case takesName:
		usage += " NAME"
		positional = 1
	}
	if err := flags.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		_, _ = fmt.Fprintln(stdout, usage)
		return err
	} else if err != nil {
		return usageError{fmt.Sprintf("%s: %v\n%s", cmd, err, usage)}
	}
	set := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	req := control.Request{Cmd: cmd}
	switch {
	case flags.NArg() != positional, takesName && flags.Arg(0) == "":
		return usageError{usage}
	// Said, not dropped: a script asking health for JSON, or naming both a socket and a
	// table, would otherwise get what it did not ask for without knowing it.
	case set["json"] && cmd != control.CmdStatus:
		return usageError{fmt.Sprintf("%s: --json is for status only\n%s", cmd, usage)}
	case set["socket"] && set["config"]:
		return usageError{fmt.Sprintf("%s: --socket and --config both name the socket; give one\n%s", cmd, usage)}
	// An empty one given is a mistake (an unset variable in a probe's command line), not
	// a wish for the default: it would reach whatever socket the fallbacks find.
	case set["socket"] && strings.TrimSpace(*socket) == "", set["config"] && strings.TrimSpace(*table) == "":
		return usageError{fmt.Sprintf("%s: an empty --socket or --config names nothing\n%s", cmd, usage)}
	case takesName:
		req.Name = flags.Arg(0)
	}
	if cmd == control.CmdSignal {
		// Checked here too, so that a typo is a usage error (2) before any connection.
		if _, err := procs.ParseSignal(flags.Arg(1)); err != nil {
			if _, swapped := procs.ParseSignal(flags.Arg(0)); swapped == nil {
				// supervisorctl's order is `signal SIG NAME`.
				err = fmt.Errorf("%w; the daemon's name comes first: sidecar-init signal %s %s", err, flags.Arg(1), flags.Arg(0))
			}
			return usageError{fmt.Sprintf("signal: %v\n%s", err, usage)}
		}
		req.Signal = flags.Arg(1)
	}
	path := *socket
	if path == "" {
		// Trimmed as the supervisor trims it (loadConfig): blank is unset.
		path = envValue(envControlSocket)
	}
	if path == "" {
		path = tableSocket(*table, os.Stderr)
	}
	resp, err := control.Do(path, req, clientTimeout)
	if err != nil {
		return clientError{err.Error()}
	}
	if !resp.OK {
		return clientError{resp.Error}
	}
	if err := printAnswer(stdout, cmd, *asJSON, resp); err != nil {
		return clientError{"write the answer: " + err.Error()}
	}
	return nil
}

// tableSocket is the control_socket of the daemon table the supervisor reads (the same
// --config, or $CLAUDE_BOTTLE_SIDECAR_CONFIG, or the embedded one), so a health check finds
// a socket the table moved without being told. Only that key is read, leniently; if even
// that fails, the default socket is tried, with a warning.
func tableSocket(path string, stderr io.Writer) string {
	if path == "" {
		path = envValue(envConfig)
	}
	source, data, err := readTable(path)
	socket := config.DefaultControlSocket
	if err == nil {
		socket, err = config.ControlSocketOf(data)
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "sidecar-init: cannot read control_socket from %s (%v); trying %s\n", source, err, config.DefaultControlSocket)
		return config.DefaultControlSocket
	}
	return socket
}

// printAnswer writes what the supervisor answered: its message, or the status table.
func printAnswer(stdout io.Writer, cmd string, asJSON bool, resp control.Response) error {
	if cmd != control.CmdStatus {
		_, err := fmt.Fprintln(stdout, resp.Message)
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp.Daemons)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tRESTARTS\tLAST EXIT\tNEXT RESTART")
	for _, d := range resp.Daemons {
		pid := "-"
		if d.Pid != 0 {
			pid = fmt.Sprint(d.Pid)
		}
		next := d.NextRestartIn
		if len(d.WaitingFor) > 0 {
			// Its start or restart is due, once these are ready.
			next = "after " + strings.Join(d.WaitingFor, ",")
		}
		if len(d.WaitingForExit) > 0 {
			if next != "" {
				next += "; "
			}
			next += fmt.Sprintf("once its last run's processes exit (pgid %s)", strings.Trim(fmt.Sprint(d.WaitingForExit), "[]"))
		}
		state := d.State
		if d.LivenessFailures > 0 {
			// Still running, but on its way to being stopped as unresponsive.
			state += fmt.Sprintf(" (liveness failing %d/%d)", d.LivenessFailures, d.LivenessFailuresMax)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, state, pid, dash(d.Uptime), d.Restarts, dash(d.LastExit), dash(next))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
