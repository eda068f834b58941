package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// service is one benchmark service the init must run.
type service struct {
	name string
	argv []string
}

func services(binary string, k int) []service {
	svcs := make([]service, k)
	for i := range svcs {
		name := fmt.Sprintf("svc-%03d", i+1)
		svcs[i] = service{name: name, argv: []string{binary, "-id", name}}
	}
	return svcs
}

// initSpec says how to run one init as PID 1 with a set of services.
type initSpec struct {
	name        string
	debPackage  string   // Debian package, for the version; "" when not from Debian
	exe         string   // the init's executable
	extraFiles  []string // more files the init needs, counted in its binary size
	sizeNote    string
	helperComm  string // per-service helper processes counted with the init (s6-supervise)
	singleChild bool   // runs one child: K > 1 services need a shell to fan out
	command     string // argv shape, for the report
	fanout      string // how K > 1 services are started, for the report
	// argv writes any configuration into dir and returns the init's command line.
	argv func(dir string, svcs []service) ([]string, error)
}

const shellFanout = "one `/bin/sh -c 'SERVICE & … & wait'` (dash) starts them; the shell forwards no signal"

// singleChildInit runs SERVICE directly for K = 1, a fan-out shell for K > 1.
func singleChildInit(name, debPackage, exe, command string, flags ...string) initSpec {
	return initSpec{
		name: name, debPackage: debPackage, exe: exe, singleChild: true,
		command: command, fanout: shellFanout,
		argv: func(_ string, svcs []service) ([]string, error) {
			argv := append([]string{exe}, flags...)
			if len(svcs) == 1 {
				return append(argv, svcs[0].argv...), nil
			}
			return append(argv, "/bin/sh", "-c", fanoutScript(svcs)), nil
		},
	}
}

func fanoutScript(svcs []service) string {
	var b strings.Builder
	for _, s := range svcs {
		for _, arg := range s.argv {
			b.WriteString(shellQuote(arg) + " ")
		}
		b.WriteString("& ")
	}
	b.WriteString("wait")
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sidecarInitSpec runs a sidecar-init build: the subject, or a baseline build to compare it
// with (-baseline).
func sidecarInitSpec(name, exe string) initSpec {
	return initSpec{
		name: name, exe: exe,
		command: "sidecar-init --config FILE --log-level warn",
		fanout:  "K `[[daemon]]` entries in a generated TOML config",
		argv: func(dir string, svcs []service) ([]string, error) {
			conf := filepath.Join(dir, "sidecar-init.toml")
			if err := os.WriteFile(conf, []byte(sidecarInitConfig(svcs)), 0o644); err != nil {
				return nil, fmt.Errorf("write sidecar-init config: %w", err)
			}
			return []string{exe, "--config", conf, "--log-level", "warn"}, nil
		},
	}
}

// goFloorSpec runs bench/gofloor, the smallest Go PID 1: not an init to use, but the floor
// the Go runtime sets under sidecar-init's figures, measured in the same run. go-floor does
// what tini does by default (SIGTERM to its one child); go-floor-g, with -g, is graceful
// like sidecar-init (SIGTERM to its child's process group, exit once every process is
// reaped). Both are single-child inits like tini.
func goFloorSpec(name, exe, command string, flags ...string) initSpec {
	spec := singleChildInit(name, "", exe, command, flags...)
	spec.sizeNote = "bench/gofloor, built by the harness (static, stripped)"
	return spec
}

// cFloorSpec runs bench/cfloor, the smallest graceful PID 1 in C: not an init to use, but
// the floor of a graceful stop on the machine, without the Go runtime (see cfloor.c).
func cFloorSpec(exe string) initSpec {
	spec := singleChildInit("c-floor-g", "", exe, "cfloor SERVICE")
	spec.sizeNote = "bench/cfloor, built by the harness (cc -O2 -s, dynamically linked like Debian's tini)"
	return spec
}

// allInits lists the inits in report order, the subject first. sidecarInit is
// the path given with -sidecar-init ("" when none).
func allInits(sidecarInit, goFloor, cFloor string) []initSpec {
	return []initSpec{
		sidecarInitSpec("sidecar-init", sidecarInit),
		singleChildInit("tini", "tini", "/usr/bin/tini", "tini -- SERVICE", "--"),
		singleChildInit("dumb-init", "dumb-init", "/usr/bin/dumb-init", "dumb-init SERVICE"),
		singleChildInit("catatonit", "catatonit", "/usr/bin/catatonit", "catatonit -- SERVICE", "--"),
		goFloorSpec("go-floor", goFloor, "gofloor SERVICE"),
		goFloorSpec("go-floor-g", goFloor, "gofloor -g SERVICE", "-g"),
		cFloorSpec(cFloor),
		{
			name: "s6-svscan", debPackage: "s6", exe: "/usr/bin/s6-svscan",
			extraFiles: []string{"/usr/bin/s6-supervise"},
			helperComm: "s6-supervise",
			command:    "s6-svscan SCANDIR",
			fanout:     "K service directories, each `run` a symlink to SERVICE (one s6-supervise each)",
			argv: func(dir string, svcs []service) ([]string, error) {
				scan := filepath.Join(dir, "scan")
				if err := writeScanDir(scan, svcs); err != nil {
					return nil, err
				}
				return []string{"/usr/bin/s6-svscan", scan}, nil
			},
		},
		{
			name: "supervisord", debPackage: "supervisor", exe: "/usr/bin/supervisord",
			extraFiles: supervisordRuntime(),
			sizeNote:   "a Python script: the python3 interpreter and the supervisor package are counted (not libpython's shared libraries)",
			command:    "supervisord -n -c FILE",
			fanout:     "K `[program:x]` sections in a generated config",
			argv: func(dir string, svcs []service) ([]string, error) {
				conf := filepath.Join(dir, "supervisord.conf")
				if err := os.WriteFile(conf, []byte(supervisordConfig(svcs)), 0o644); err != nil {
					return nil, fmt.Errorf("write supervisord config: %w", err)
				}
				return []string{"/usr/bin/supervisord", "-n", "-c", conf}, nil
			},
		},
	}
}

// sidecarInitConfig is a config with one [[daemon]] per service and the
// defaults for everything else (stop signal SIGTERM, grace 8 s).
func sidecarInitConfig(svcs []service) string {
	var b strings.Builder
	for i, s := range svcs {
		if i > 0 {
			b.WriteString("\n")
		}
		quoted := make([]string, len(s.argv))
		for j, arg := range s.argv {
			quoted[j] = tomlString(arg)
		}
		fmt.Fprintf(&b, "[[daemon]]\nname = %s\ncommand = [%s]\n", tomlString(s.name), strings.Join(quoted, ", "))
	}
	return b.String()
}

// tomlString quotes s as a TOML literal string; the paths and names here never
// hold a single quote or a newline, and a literal string needs no escapes.
func tomlString(s string) string {
	if strings.ContainsAny(s, "'\n") {
		panic(fmt.Sprintf("tomlString: %q needs escaping", s))
	}
	return "'" + s + "'"
}

// supervisordConfig keeps supervisord's defaults (startsecs, stopwaitsecs,
// autorestart) and only sends its own log and the programs' output nowhere.
func supervisordConfig(svcs []service) string {
	var b strings.Builder
	b.WriteString("[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\nloglevel=warn\npidfile=%(here)s/supervisord.pid\nchildlogdir=%(here)s\n")
	for _, s := range svcs {
		fmt.Fprintf(&b, "\n[program:%s]\ncommand=%s\nstdout_logfile=NONE\nstderr_logfile=NONE\n", s.name, strings.Join(s.argv, " "))
	}
	return b.String()
}

// writeScanDir makes an s6 scan directory with one service directory per
// service. Each run file is a symlink to the service binary, which names
// itself after its working directory (s6-supervise runs ./run in it).
func writeScanDir(scan string, svcs []service) error {
	for _, s := range svcs {
		svcDir := filepath.Join(scan, s.name)
		if err := os.MkdirAll(svcDir, 0o755); err != nil {
			return fmt.Errorf("make s6 service dir: %w", err)
		}
		if err := os.Symlink(s.argv[0], filepath.Join(svcDir, "run")); err != nil {
			return fmt.Errorf("make s6 run file: %w", err)
		}
	}
	return nil
}

// supervisordRuntime is what supervisord's script needs besides itself: the
// interpreter its #! line names and the supervisor package.
func supervisordRuntime() []string {
	var files []string
	if python, err := filepath.EvalSymlinks("/usr/bin/python3"); err == nil {
		files = append(files, python)
	}
	pkg, _ := filepath.Glob("/usr/lib/python3/dist-packages/supervisor") // a fixed pattern cannot be malformed
	return append(files, pkg...)
}

// available reports why spec cannot run here, or "" when it can.
func (spec initSpec) unavailable() string {
	if spec.exe == "" {
		return "no path given (-sidecar-init)"
	}
	for _, f := range append([]string{spec.exe}, spec.extraFiles...) {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("%v (make bench-deps installs the anchors)", err)
		}
	}
	if spec.singleChild {
		if _, err := exec.LookPath("/bin/sh"); err != nil {
			return "no /bin/sh for the fan-out"
		}
	}
	return ""
}
