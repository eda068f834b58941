package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/fsm"
)

const good = `
grace = "5s"

[[daemon]]
name = "egress"
command = ["/app/egress-entrypoint.sh", "--flag"]
env = { MITM_PORT = "8080", A = "1" }
dir = "/"
stop_signal = "SIGINT"
grace = "2s"

[[daemon]]
name = "pipelock"
command = ["pipelock", "run"]

[[daemon]]
name = "git-gate"
command = ["git-gate"]

[[daemon]]
name = "supervise"
command = ["supervise"]
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("daemons.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Grace != 5*time.Second {
		t.Errorf("grace = %v", cfg.Grace)
	}
	want := Daemon{Name: "egress", Command: []string{"/app/egress-entrypoint.sh", "--flag"},
		Env: []string{"A=1", "MITM_PORT=8080"}, Dir: "/", StopSignal: syscall.SIGINT, Grace: 2 * time.Second,
		Restart: fsm.RestartNever, BackoffInitial: DefaultBackoffInitial, BackoffMax: DefaultBackoffMax, BackoffReset: DefaultBackoffReset,
		ReadyTimeout: DefaultReadyTimeout, Log: "inherit"}
	if !reflect.DeepEqual(cfg.Daemons[0], want) {
		t.Errorf("daemon[0] = %+v, want %+v", cfg.Daemons[0], want)
	}
	if d := cfg.Daemons[1]; d.Grace != 5*time.Second || d.StopSignal != 0 {
		t.Errorf("daemon[1] should inherit the global grace and the shutdown's signal: %+v", d)
	}
	if got := cfg.Names(); !reflect.DeepEqual(got, []string{"egress", "pipelock", "git-gate", "supervise"}) {
		t.Errorf("names = %v", got)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Grace != DefaultGrace || cfg.Daemons[0].Grace != DefaultGrace {
		t.Errorf("grace = %v / %v, want %v", cfg.Grace, cfg.Daemons[0].Grace, DefaultGrace)
	}
}

func TestOverrideGrace(t *testing.T) {
	cfg, err := Parse("daemons.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.OverrideGrace("300ms"); err != nil {
		t.Fatal(err)
	}
	if cfg.Daemons[0].Grace != 2*time.Second {
		t.Errorf("a daemon's own grace must survive the override: %v", cfg.Daemons[0].Grace)
	}
	if cfg.Daemons[1].Grace != 300*time.Millisecond {
		t.Errorf("daemon without its own grace = %v, want the override", cfg.Daemons[1].Grace)
	}
	err = cfg.OverrideGrace("soon")
	if err == nil || !strings.Contains(err.Error(), "CLAUDE_BOTTLE_SIDECAR_GRACE") || !strings.Contains(err.Error(), `"soon"`) {
		t.Errorf("bad override: %v", err)
	}
}

// TestParseErrorsAreStable: with several mistakes in one table, every run names the same
// one, the first in the order fileTable and fileDaemon declare their fields (map entries by
// sorted key). BurntSushi/toml alone reports whichever its Go map walk meets first, which
// changed from run to run (FuzzParse found it in CI).
func TestParseErrorsAreStable(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"two mistyped daemon keys", "[[daemon]]\nafter = \"a\"\nname = [1]\ncommand = [\"x\"]\n", "key daemon[0].name"},
		{"mistyped keys at two levels", "stop_order = 1\ngrace = 2\n[[daemon]]\nname = 3\n", "key grace"},
		{"mistyped probe keys", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { exec = \"x\", file = 1, tcp = 2 }\n", "key daemon[0].ready.tcp"},
		{"mistyped env values", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { B = 1, A = 2, C = 3 }\n", "key daemon[0].env.A"},
		{"bad env names", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { \"B=\" = \"1\", \"A=\" = \"2\", \"C=\" = \"3\" }\n", `"A="`},
		{"unknown key before a mistyped one", "[[daemon]]\nname = 1\nNAME = \"a\"\n", "key daemon[0].NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, first := Parse("bad.toml", []byte(tc.toml))
			if first == nil || !strings.Contains(first.Error(), tc.want) {
				t.Fatalf("Parse: %v, want an error naming %s", first, tc.want)
			}
			for range 50 {
				if _, err := Parse("bad.toml", []byte(tc.toml)); err == nil || err.Error() != first.Error() {
					t.Fatalf("Parse is not deterministic: %q, then %v", first, err)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string // every piece must appear in the message
	}{
		{"syntax error names the line", "grace = \"1s\"\nname = = \"a\"\n", []string{"bad.toml:2", "key name"}},
		{"wrong type names the line and key", "[[daemon]]\nname = \"a\"\ncommand = \"/bin/true\"\n", []string{"bad.toml:3: key daemon[0].command", "incompatible types"}},
		// The decoder has one line per key path: the last daemon's. It is given only when right.
		{"wrong type in the last daemon", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n[[daemon]]\nname = \"b\"\ncommand = \"y\"\n", []string{"bad.toml:6: key daemon[1].command"}},
		{"wrong type in an earlier daemon", "[[daemon]]\nname = \"a\"\ncommand = \"x\"\n[[daemon]]\nname = \"b\"\ncommand = [\"y\"]\n", []string{"bad.toml:3: key daemon[0].command"}},
		{"unknown top-level key", "grace = \"1s\"\ngraze = \"2s\"\n", []string{"bad.toml", "key graze", "unknown key (known here: grace, notify_url"}},
		{"unknown daemon key", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nrestrat = \"always\"\n", []string{"key daemon[0].restrat", "unknown key (known here: name, command,"}},
		{"a probe's label as a name", "[[daemon]]\nname = \"web.probe\"\ncommand = [\"x\"]\n", []string{"daemon[0].name", `"web.probe" ends in ".probe"`}},
		{"the supervisor's own name", "[[daemon]]\nname = \"supervisor\"\ncommand = [\"x\"]\n", []string{"daemon[0].name", `"supervisor" is reserved`}},
		{"duplicate names", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n[[daemon]]\nname = \"a\"\ncommand = [\"y\"]\n", []string{"daemon[1].name", `duplicate daemon name "a"`, "daemon[0]"}},
		{"empty command", "[[daemon]]\nname = \"a\"\ncommand = []\n", []string{"daemon[0].command", `daemon "a"`, "empty"}},
		{"oneshot restarting always", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\noneshot = true\nrestart = \"always\"\n", []string{"key daemon[0].restart", `daemon "a": a oneshot cannot restart "always"`}},
		{"oneshot with a probe", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\noneshot = true\nready = { tcp = \"127.0.0.1:1\" }\n", []string{"key daemon[0].ready", "a oneshot is ready when it exits with status 0"}},
		{"oneshot not a bool", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\noneshot = \"yes\"\n", []string{"bad.toml:4: key daemon[0].oneshot", "incompatible types"}},
		{"missing command", "[[daemon]]\nname = \"a\"\n", []string{"daemon[0].command", "empty"}},
		{"empty argv[0]", "[[daemon]]\nname = \"a\"\ncommand = [\"\"]\n", []string{"daemon[0].command"}},
		{"no daemons", "grace = \"1s\"\n", []string{"key daemon", "no [[daemon]] entries", "CLAUDE_BOTTLE_SIDECAR_DAEMONS"}},
		{"empty file", "", []string{"no [[daemon]] entries"}},
		{"NUL in command", "[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\", \"x\\u0000y\"]\n", []string{"daemon[0].command", "command[1]", "NUL"}},
		{"NUL in dir", "[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\ndir = \"/\\u0000\"\n", []string{"daemon[0].dir", "NUL"}},
		{"NUL in ready exec", "[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\nready = { exec = [\"/bin/true\\u0000\"] }\n", []string{"daemon[0].ready.exec", "exec[0]", "NUL"}},
		{"NUL in ready file", "[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\nready = { file = \"/x\\u0000\" }\n", []string{"daemon[0].ready.file", "NUL"}},
		{"missing name", "[[daemon]]\ncommand = [\"x\"]\n", []string{"daemon[0].name", "needs a name"}},
		{"name with a comma", "[[daemon]]\nname = \"a,b\"\ncommand = [\"x\"]\n", []string{"daemon[0].name", `"a,b" is not a valid name`}},
		// Relative paths resolve in sidecar-init's working directory, not a client's.
		{"relative control socket", "control_socket = \"run/c.sock\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"bad.toml:1: key control_socket", `"run/c.sock" is not an absolute path`}},
		{"relative ready file", "ready_file = \"ready\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"bad.toml:1: key ready_file", `"ready" is not an absolute path`}},
		// readyfile.Open and the socket's bind take such a path lexically, or not at all:
		// the file or socket would not be at the path the table names.
		{"ready file with a trailing slash", "ready_file = \"/run/ready/\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"bad.toml:1: key ready_file", `"/run/ready/": write it as "/run/ready"`}},
		{"ready file ending in a dot", "ready_file = \"/run/x/ready/.\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"key ready_file", `write it as "/run/x/ready"`}},
		{"ready file through ..", "ready_file = \"/run/x/../ready\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"key ready_file", `write it as "/run/ready"`}},
		{"control socket with a trailing slash", "control_socket = \"/run/sidecar-init/\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"bad.toml:1: key control_socket", `write it as "/run/sidecar-init"`}},
		{"control socket with a double slash", "control_socket = \"/run//c.sock\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"key control_socket", `write it as "/run/c.sock"`}},
		{"bad global duration", "grace = \"eight\"\n", []string{"key grace", `bad duration "eight"`}},
		{"negative duration", "grace = \"-1s\"\n", []string{"key grace", "negative"}},
		{"bad daemon duration", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\ngrace = \"8 s\"\n", []string{"daemon[0].grace", `daemon "a"`, "bad duration"}},
		{"unknown signal", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGSTOPPP\"\n", []string{"daemon[0].stop_signal", `unknown signal name "SIGSTOPPP"`}},
		{"unknown restart policy", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nrestart = \"sometimes\"\n", []string{"daemon[0].restart", `unknown restart policy "sometimes"`, "on-failure"}},
		{"zero backoff", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nbackoff_initial = \"0s\"\n", []string{"daemon[0].backoff_initial", "positive"}},
		{"bad backoff", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nbackoff_reset = \"a while\"\n", []string{"daemon[0].backoff_reset", "bad duration"}},
		{"max below initial", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nbackoff_initial = \"10s\"\nbackoff_max = \"1s\"\n", []string{"daemon[0].backoff_max", "below backoff_initial"}},
		{"negative max_restarts", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nmax_restarts = -1\n", []string{"daemon[0].max_restarts", "-1"}},
		{"notify_url scheme", "notify_url = \"https://x\"\n", []string{"key notify_url", "http://host"}},
		{"notify_url relative unix", "notify_url = \"unix:run/s.sock\"\n", []string{"key notify_url", "absolute path"}},
		{"blank user", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nuser = \"   \"\n", []string{"key daemon[0].user", "user is blank"}},
		{"empty user", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nuser = \"\"\n", []string{"key daemon[0].user", "user is blank"}},
		{"tcp probe port 0", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"127.0.0.1:0\" }\n", []string{"daemon[0].ready.tcp", "not 1-65535"}},
		{"tcp probe port too big", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"127.0.0.1:99999\" }\n", []string{"daemon[0].ready.tcp", "not 1-65535"}},
		{"tcp probe empty port", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"127.0.0.1:\" }\n", []string{"daemon[0].ready.tcp", "not 1-65535"}},
		// net.Dial looks " 127.0.0.1" up as a name, and no name holds white space: a probe
		// that could never pass, found only at ready_timeout (status 137).
		{"tcp probe host with white space", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \" 127.0.0.1:8080\" }\n", []string{"daemon[0].ready.tcp", `host " 127.0.0.1" holds white space or a control character`}},
		{"liveness tcp host with a control character", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { tcp = \"local\\thost:80\" }\n", []string{"daemon[0].liveness.tcp", "white space or a control character"}},
		{"tcp probe NUL", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"127.0.0.1:80\\u0000\" }\n", []string{"daemon[0].ready.tcp", "NUL"}},
		{"limit_nofile too low", "limit_nofile = 1000\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"limit_nofile", "want at least 1024", "runs with this limit too"}},
		{"limit_nofile a string", "limit_nofile = \"65536\"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"limit_nofile"}},
		{"forward_signals SIGTERM", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nforward_signals = [\"SIGHUP\", \"SIGTERM\"]\n", []string{"daemon[0].forward_signals", "SIGTERM is not a signal sidecar-init forwards", "SIGHUP, SIGUSR1"}},
		{"forward_signals unknown", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nforward_signals = [\"SIGHUPP\"]\n", []string{"daemon[0].forward_signals", `unknown signal name "SIGHUPP"`}},
		{"forward_signals a string", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nforward_signals = \"SIGHUP\"\n", []string{"forward_signals"}},
		{"stop_signal SIGSTOP", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGSTOP\"\n", []string{"daemon[0].stop_signal", "SIGSTOP suspends a process"}},
		{"stop_signal SIGTSTP", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"tstp\"\n", []string{"daemon[0].stop_signal", "SIGTSTP suspends a process"}},
		{"stop_signal SIGCHLD", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGCHLD\"\n", []string{"daemon[0].stop_signal", "SIGCHLD does not ask a process to stop"}},
		{"stop_signal SIGURG", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGURG\"\n", []string{"daemon[0].stop_signal", "SIGURG does not ask a process to stop"}},
		{"stop_signal SIGCONT", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \"cont\"\n", []string{"daemon[0].stop_signal", "SIGCONT does not ask a process to stop"}},
		{"notify_url credentials", "notify_url = \"http://user:s3cret@h/e\"\n", []string{"key notify_url", "http://user:xxxxx@h/e", "notify_token_file"}},
		{"notify_url port", "notify_url = \"http://h:99999/e\"\n", []string{"key notify_url", "port 99999 is not 1-65535"}},
		{"case-variant table", "[[Daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"key Daemon", `case-sensitive: "daemon"`}},
		{"case-variant key", "[[daemon]]\nName = \"a\"\ncommand = [\"x\"]\n", []string{"key daemon[0].Name", `case-sensitive: "name"`}},
		{"case-variant probe key", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { TCP = \"127.0.0.1:1\" }\n", []string{"key daemon[0].ready.TCP", `"tcp"`}},
		{"unknown after", "[[daemon]]\nname = \"egress\"\ncommand = [\"x\"]\nafter = [\"pipelok\"]\n", []string{"daemon[0].after", `"egress" comes after "pipelok"`}},
		{"cycle names both", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nafter = [\"b\"]\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\nafter = [\"a\"]\n", []string{"cycle", "a → b → a"}},
		{"self cycle", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nafter = [\"a\"]\n", []string{"cycle", "a → a"}},
		{"two probes", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"127.0.0.1:1\", file = \"/x\" }\n", []string{"daemon[0].ready", "exactly one"}},
		{"bad tcp probe", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"localhost\" }\n", []string{"daemon[0].ready.tcp", "host:port"}},
		{"relative file probe", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { file = \"run/ok\" }\n", []string{"daemon[0].ready.file", "absolute"}},
		{"unknown probe key", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { http = \"x\" }\n", []string{"key daemon[0].ready.http", "unknown key (known here: tcp, file, exec)"}},
		{"bad ready_timeout", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready_timeout = \"0s\"\n", []string{"daemon[0].ready_timeout", "positive"}},
		{"two liveness probes", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { tcp = \"127.0.0.1:1\", exec = [\"/x\"] }\n", []string{"daemon[0].liveness", "exactly one", "liveness = {"}},
		{"bad liveness tcp", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { tcp = \"h:0\" }\n", []string{"daemon[0].liveness.tcp", "1-65535"}},
		{"relative liveness file", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { file = \"ok\" }\n", []string{"daemon[0].liveness.file", "absolute"}},
		{"empty liveness exec", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"\"] }\n", []string{"daemon[0].liveness.exec", "empty command"}},
		{"liveness on a oneshot", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\noneshot = true\nliveness = { exec = [\"/bin/true\"] }\n", []string{"daemon[0].liveness", "oneshot"}},
		{"zero liveness_interval", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"/bin/true\"] }\nliveness_interval = \"0s\"\n", []string{"daemon[0].liveness_interval", "at least 100ms"}},
		{"liveness_interval too short", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"/bin/true\"] }\nliveness_interval = \"1ns\"\n", []string{"daemon[0].liveness_interval", "at least 100ms, not 1ns"}},
		{"liveness_timeout too short", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"/bin/true\"] }\nliveness_timeout = \"99ms\"\n", []string{"daemon[0].liveness_timeout", "at least 100ms, not 99ms"}},
		{"bad liveness_timeout", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"/bin/true\"] }\nliveness_timeout = \"soon\"\n", []string{"daemon[0].liveness_timeout", "bad duration"}},
		{"zero liveness_failures", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness = { exec = [\"/bin/true\"] }\nliveness_failures = 0\n", []string{"daemon[0].liveness_failures", "1 or more"}},
		{"liveness tuning without a probe", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nliveness_timeout = \"1s\"\nliveness_failures = 2\n", []string{"daemon[0].liveness_timeout", "without a liveness probe"}},
		{"bad log mode", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nlog = \"syslog\"\n", []string{"daemon[0].log", "inherit, prefix or json"}},
		{"bad stop_order", "stop_order = \"random\"\n", []string{"key stop_order", "reverse"}},
		{"probe not a table", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = \"127.0.0.1:80\"\n", []string{"key daemon[0].ready", "type string; destination is a table"}},
		{"env not a table", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = [\"A=1\"]\n", []string{"key daemon[0].env", "destination is a table"}},
		{"pass_env entry empty", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\npass_env = [\"PATH\", \"\"]\n", []string{"key daemon[0].pass_env", `daemon "a": an empty entry`}},
		{"pass_env entry with '='", "pass_env = [\"A=1\"]\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n", []string{"bad.toml:1: key pass_env", `"A=1": a variable name has no '='`}},
		{"pass_env entry with NUL", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\npass_env = [\"A\\u0000\"]\n", []string{"key daemon[0].pass_env", `a variable name has no '=' or NUL`}},
		{"pass_env '*' inside", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\npass_env = [\"EGRESS_*_PORT\"]\n", []string{"key daemon[0].pass_env", `"EGRESS_*_PORT": '*' may only end an entry`}},
		{"pass_env not a list", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\npass_env = \"PATH\"\n", []string{"bad.toml:4: key daemon[0].pass_env", "incompatible types"}},
		{"daemon entry not a table", "daemon = [\"x\"]\n", []string{"key daemon[0]", "destination is a table"}},
		{"second daemon not a table", "daemon = [{ name = \"a\", command = [\"x\"] }, 2]\n", []string{"key daemon[1]", "type int64"}},
		{"probe not a table keeps its line", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = \"h:1\"\n", []string{"bad.toml:4: key daemon[0].ready", "type string; destination is a table"}},
		{"array of tables where a table belongs", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n[[daemon.ready]]\ntcp = \"h:1\"\n", []string{"key daemon[0].ready", "type []map[string]any; destination is a table"}},
		{"quoted env name in an earlier daemon", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { \"A.B\" = 1 }\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\nenv = { \"A.B\" = \"ok\" }\n", []string{"bad.toml:4: key daemon[0].env.A.B: incompatible types"}},
		{"quoted env name in the last daemon", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { \"A.B\" = 1 }\n", []string{"bad.toml:4: key daemon[0].env.A.B: incompatible types"}},
		{"key set only in an earlier daemon keeps its line", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\ngrace = 5\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\n", []string{"bad.toml:4: key daemon[0].grace"}},
		{"env name set only in an earlier daemon keeps its line", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { A = 1 }\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\nenv = { B = \"x\" }\n", []string{"bad.toml:4: key daemon[0].env.A"}},
		{"unknown key in the second daemon", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n[[daemon]]\nname = \"b\"\ncommand = [\"x\"]\nrestrat = \"always\"\n", []string{"key daemon[1].restrat", "unknown key"}},
		{"unknown table", "[daemons]\nx = 1\n", []string{"key daemons", "unknown key (known here: grace,"}},
		{"bad env name", "[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { \"A=B\" = \"1\" }\n", []string{"daemon[0].env", `"A=B"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.toml))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T is not a *config.Error: %v", err, err)
			}
			for _, piece := range tc.want {
				if !strings.Contains(err.Error(), piece) {
					t.Errorf("error %q lacks %q", err, piece)
				}
			}
		})
	}
}

func TestRestartKeys(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(`
notify_url = "unix:/run/supervise.sock"
notify_token_file = "/run/secrets/token"
control_socket = "/tmp/c.sock"
[[daemon]]
name = "a"
command = ["x"]
restart = "on-failure"
backoff_initial = "50ms"
backoff_max = "2s"
backoff_reset = "10s"
max_restarts = 3
`))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Daemons[0]
	if d.Restart != fsm.RestartOnFailure || d.BackoffInitial != 50*time.Millisecond || d.BackoffMax != 2*time.Second ||
		d.BackoffReset != 10*time.Second || d.MaxRestarts != 3 {
		t.Errorf("restart keys = %+v", d)
	}
	if cfg.NotifyURL != "unix:/run/supervise.sock" || cfg.NotifyTokenFile != "/run/secrets/token" || cfg.ControlSocket != "/tmp/c.sock" {
		t.Errorf("top-level keys = %+v", cfg)
	}
	if err := cfg.SetNotifyURL("http://127.0.0.1:9/events"); err != nil || cfg.NotifyURL != "http://127.0.0.1:9/events" {
		t.Errorf("SetNotifyURL = %v, %q", err, cfg.NotifyURL)
	}
	def, _ := Parse("t.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n"))
	if def.ControlSocket != DefaultControlSocket || def.NotifyURL != "" || def.Daemons[0].Restart != fsm.RestartNever {
		t.Errorf("defaults = %+v", def)
	}
}

func TestStartKeys(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(`
stop_order = "reverse"
ready_file = "/run/ready"
[[daemon]]
name = "pipelock"
command = ["x"]
ready = { tcp = "127.0.0.1:8888" }
ready_timeout = "5s"
user = "nobody"
log = "json"
[[daemon]]
name = "egress"
command = ["y"]
after = ["pipelock"]
ready = { exec = ["/bin/true"] }
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StopOrder != StopReverse || cfg.ReadyFile != "/run/ready" {
		t.Errorf("top level = %+v", cfg)
	}
	p, e := cfg.Daemons[0], cfg.Daemons[1]
	if p.Ready.TCP != "127.0.0.1:8888" || p.ReadyTimeout != 5*time.Second || p.User != "nobody" || p.Log != "json" || p.Ready.String() != "tcp 127.0.0.1:8888" {
		t.Errorf("pipelock = %+v", p)
	}
	if len(e.After) != 1 || e.After[0] != "pipelock" || e.Ready.String() != "exec /bin/true" || e.Log != "inherit" {
		t.Errorf("egress = %+v", e)
	}
}

func TestLivenessKeys(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(`
[[daemon]]
name = "egress"
command = ["x"]
liveness = { exec = ["/bin/probe", "--live"] }
liveness_interval = "30s"
liveness_timeout = "2s"
liveness_failures = 5
[[daemon]]
name = "gate"
command = ["y"]
liveness = { tcp = "127.0.0.1:9418" }
[[daemon]]
name = "plain"
command = ["z"]
`))
	if err != nil {
		t.Fatal(err)
	}
	e, g, p := cfg.Daemons[0], cfg.Daemons[1], cfg.Daemons[2]
	if e.Liveness.String() != "exec /bin/probe --live" || e.LivenessInterval != 30*time.Second || e.LivenessTimeout != 2*time.Second || e.LivenessFailures != 5 {
		t.Errorf("egress = %+v", e)
	}
	if g.Liveness.TCP != "127.0.0.1:9418" || g.LivenessInterval != 10*time.Second || g.LivenessTimeout != 5*time.Second || g.LivenessFailures != 3 { // the documented defaults, not the constants: a changed default must fail here
		t.Errorf("gate (defaults) = %+v", g)
	}
	if p.Liveness.IsSet() || p.LivenessInterval != 0 || p.LivenessFailures != 0 {
		t.Errorf("plain (no liveness) = %+v", p)
	}
}

// A oneshot's run is unbounded unless ready_timeout says otherwise; on-failure retries it.
func TestOneshotKeys(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(`
[[daemon]]
name = "setup"
command = ["x"]
oneshot = true
[[daemon]]
name = "migrate"
command = ["y"]
oneshot = true
restart = "on-failure"
ready_timeout = "2m"
[[daemon]]
name = "app"
command = ["z"]
after = ["setup", "migrate"]
`))
	if err != nil {
		t.Fatal(err)
	}
	setup, migrate, app := cfg.Daemons[0], cfg.Daemons[1], cfg.Daemons[2]
	if !setup.Oneshot || setup.ReadyTimeout != 0 || setup.Restart != fsm.RestartNever {
		t.Errorf("setup = %+v, want a oneshot with no run bound", setup)
	}
	if !migrate.Oneshot || migrate.ReadyTimeout != 2*time.Minute || migrate.Restart != fsm.RestartOnFailure {
		t.Errorf("migrate = %+v", migrate)
	}
	if app.Oneshot || app.ReadyTimeout != DefaultReadyTimeout {
		t.Errorf("app = %+v, want a daemon", app)
	}
}

// validName replaced a package regexp (compiled at every start of PID 1): it must say what
// the documented rule says (documentedName, FuzzParse's oracle, both ways).
func TestValidNameFollowsTheDocumentedRule(t *testing.T) {
	for _, name := range []string{"", "a", "egress", "git-gate", "a.b_c-d", "9lives", ".hidden", "_x", "-x",
		"a b", "a,b", "ü", "aü", "a\n", "A", "Z9", "a/b", "a:b", "a..b", "a-"} {
		if got, want := validName(name), documentedName(name); got != want {
			t.Errorf("validName(%q) = %v, the documented rule says %v", name, got, want)
		}
	}
}

// decodeError reads the type errors BurntSushi/toml writes as text (md.e in its decode.go):
// `toml: line N (last key %q): msg`, or without "line N " when it has no position.
func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		text string
		line int
		key  string
		msg  string
		ok   bool
	}{
		{`toml: line 3 (last key "daemon.command"): incompatible types: TOML value has type string; destination has type slice`,
			3, "daemon.command", "incompatible types: TOML value has type string; destination has type slice", true},
		{`toml: line 12 (last key ""): x`, 12, "", "x", true},
		{`toml: (last key "grace"): x`, 0, "grace", "x", true},
		{`toml: line 8 (last key "daemon.env.\"A.B\""): incompatible types`, 8, `daemon.env."A.B"`, "incompatible types", true},
		{`toml: line 3 (last key "a"): x"): y`, 3, "a", `x"): y`, true},
		{`toml: line 3 (last key "a"): `, 3, "a", "", true},
		{`toml: line 3 (last key "a"b"): x`, 0, "", "", false},
		{`toml: line (last key "a"): x`, 0, "", "", false},
		{`toml: line 3x (last key "a"): x`, 0, "", "", false},
		{`toml: line +3 (last key "a"): x`, 0, "", "", false},
		{`toml: line 3 (last key "a"): two` + "\n" + `lines`, 0, "", "", false},
		{`toml: line 3 (last key "a"):`, 0, "", "", false},
		{`toml: line 3 (last key a): x`, 0, "", "", false},
		{"toml: line 3 (last key `a`): x", 0, "", "", false},
		{`line 3 (last key "a"): x`, 0, "", "", false},
		{`toml: cannot decode to a map with non-string key type`, 0, "", "", false},
	} {
		line, key, msg, ok := decodeError(tc.text)
		if ok != tc.ok || line != tc.line || key != tc.key || msg != tc.msg {
			t.Errorf("decodeError(%q) = %d, %q, %q, %v; want %d, %q, %q, %v",
				tc.text, line, key, msg, ok, tc.line, tc.key, tc.msg, tc.ok)
		}
	}
}

// A tcp probe may name its port as a dial does: a number or a service name.
func TestTCPProbeServiceName(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nready = { tcp = \"localhost:http\" }\n"))
	if err != nil || cfg.Daemons[0].Ready.TCP != "localhost:http" {
		t.Fatalf("Parse = %v", err)
	}
}

// Signals that some daemon takes as its stop are accepted, even those ignored by default:
// Apache's httpd stops gracefully on SIGWINCH.
func TestStopSignalsSomeDaemonsUse(t *testing.T) {
	for name, want := range map[string]syscall.Signal{"SIGWINCH": syscall.SIGWINCH, "SIGQUIT": syscall.SIGQUIT, "SIGUSR1": syscall.SIGUSR1, "SIGRTMIN+3": syscall.Signal(37)} {
		cfg, err := Parse("t.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\nstop_signal = \""+name+"\"\n"))
		if err != nil || cfg.Daemons[0].StopSignal != want {
			t.Errorf("stop_signal %s: %v", name, err)
		}
	}
}

// forward_signals: left out, a daemon gets every signal sidecar-init forwards; listed, only
// those; empty, none.
func TestForwardSignals(t *testing.T) {
	tests := []struct {
		line string
		want map[syscall.Signal]bool
	}{
		{"", map[syscall.Signal]bool{syscall.SIGHUP: true, syscall.SIGUSR1: true, syscall.SIGUSR2: true, syscall.SIGWINCH: true, syscall.SIGABRT: true}},
		{"forward_signals = []", map[syscall.Signal]bool{syscall.SIGHUP: false, syscall.SIGUSR1: false, syscall.SIGWINCH: false}},
		{`forward_signals = ["hup", "SIGHUP", "usr2"]`, map[syscall.Signal]bool{syscall.SIGHUP: true, syscall.SIGUSR1: false, syscall.SIGUSR2: true, syscall.SIGABRT: false}},
	}
	for _, tt := range tests {
		cfg, err := Parse("t.toml", []byte("[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n"+tt.line+"\n"))
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		for sig, want := range tt.want {
			if got := cfg.Daemons[0].Forwards(sig); got != want {
				t.Errorf("%q: Forwards(%v) = %v, want %v", tt.line, sig, got, want)
			}
		}
	}
}

func TestLimitNofile(t *testing.T) {
	for line, want := range map[string]uint64{"": 0, "limit_nofile = 65536": 65536, "limit_nofile = 1024": 1024} {
		cfg, err := Parse("t.toml", []byte(line+"\n[[daemon]]\nname = \"a\"\ncommand = [\"x\"]\n"))
		if err != nil {
			t.Errorf("%q: %v", line, err)
		} else if cfg.LimitNofile != want {
			t.Errorf("%q: limit %d, want %d", line, cfg.LimitNofile, want)
		}
	}
}

// A NUL byte in a path the supervisor binds, dials or writes can never work: the kernel
// refuses it, or cuts the path at it (a socket at another path). A review saw these pass,
// then fail at every run.
func TestNULInAPathKeyIsAnError(t *testing.T) {
	const daemon = "[[daemon]]\nname = \"a\"\ncommand = [\"/bin/true\"]\n"
	for key, top := range map[string]string{
		"ready_file":     `ready_file = "/run/re\u0000ady"`,
		"control_socket": `control_socket = "/run/c\u0000tl.sock"`,
		"notify_url":     `notify_url = "unix:/run/n\u0000.sock"`,
	} {
		_, err := Parse("t.toml", []byte(top+"\n"+daemon))
		var cerr *Error
		if !errors.As(err, &cerr) || cerr.Key != key || !strings.Contains(cerr.Msg, "NUL") {
			t.Errorf("%s: error %v, want a configuration error on %s naming the NUL", top, err, key)
		}
	}
	var c Config
	if err := c.SetControlSocket("/run/c\x00tl.sock"); err == nil {
		t.Error("SetControlSocket (the environment's) took a NUL")
	}
}

// pass_env: a daemon's own list, else the table's, else the whole environment; `env` and a
// user's variables are added after the filter (TestDaemonEnv).
func TestPassEnv(t *testing.T) {
	cfg, err := Parse("t.toml", []byte(`pass_env = ["PATH", "EGRESS_*"]
[[daemon]]
name = "table"
command = ["x"]
[[daemon]]
name = "own"
command = ["x"]
pass_env = ["TOKEN"]
[[daemon]]
name = "none"
command = ["x"]
pass_env = []
`))
	if err != nil {
		t.Fatal(err)
	}
	all, err := Parse("t.toml", []byte("[[daemon]]\nname = \"all\"\ncommand = [\"x\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	daemons := slices.Concat(cfg.Daemons, all.Daemons)
	for _, tc := range []struct {
		variable string
		passes   []bool // table, own, none, all
	}{
		{"PATH", []bool{true, false, false, true}},
		{"EGRESS_PORT", []bool{true, false, false, true}},
		{"EGRESS_", []bool{true, false, false, true}},
		{"EGRESS", []bool{false, false, false, true}},
		{"XEGRESS_PORT", []bool{false, false, false, true}},
		{"PATHS", []bool{false, false, false, true}},
		{"TOKEN", []bool{false, true, false, true}},
		{"TOKEN2", []bool{false, false, false, true}},
	} {
		for i, d := range daemons {
			if got := d.Passes(tc.variable); got != tc.passes[i] {
				t.Errorf("%s passes %s: %v, want %v", d.Name, tc.variable, got, tc.passes[i])
			}
		}
	}
	if !daemons[2].FilterEnv || len(daemons[2].PassEnv) != 0 || daemons[3].FilterEnv {
		t.Errorf("pass_env = [] filters everything out, and no pass_env filters nothing: %+v, %+v", daemons[2], daemons[3])
	}
}
