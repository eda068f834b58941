package main

import (
	"strings"
	"testing"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/control"
)

// The status table's NEXT RESTART says what a waiting daemon waits for.
func TestStatusTable(t *testing.T) {
	var out strings.Builder
	err := printAnswer(&out, control.CmdStatus, false, control.Response{OK: true, Daemons: []control.DaemonStatus{
		{Name: "db", State: "backoff", Restarts: 1, LastExit: "signal SIGKILL", NextRestartIn: "59m59.9s"},
		{Name: "app", State: "backoff", Restarts: 1, LastExit: "status 1", WaitingFor: []string{"db", "gate"}},
		{Name: "web", State: "running", Pid: 42, Uptime: "3s"},
		{Name: "gate", State: "running", Pid: 43, Uptime: "1h0m0s", LivenessFailures: 2, LivenessFailuresMax: 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME  STATE                           PID  UPTIME  RESTARTS  LAST EXIT       NEXT RESTART\n" +
		"db    backoff                         -    -       1         signal SIGKILL  59m59.9s\n" +
		"app   backoff                         -    -       1         status 1        after db,gate\n" +
		"web   running                         42   3s      0         -               -\n" +
		"gate  running (liveness failing 2/3)  43   1h0m0s  0         -               -\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}
}
