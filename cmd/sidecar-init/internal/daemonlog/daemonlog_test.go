package daemonlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
	}{
		{"", Inherit}, {"inherit", Inherit}, {"prefix", Prefix}, {"json", JSON},
	} {
		if got, err := ParseMode(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"JSON", "Prefix", " json", "text", "none"} {
		if got, err := ParseMode(bad); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("ParseMode(%q) = %q, %v; want an error quoting it", bad, got, err)
		}
	}
}

func TestAttachRefusesBadArguments(t *testing.T) {
	sink := NewSink(&bytes.Buffer{})
	for _, tc := range []struct {
		mode           Mode
		stdout, stderr *Sink
	}{
		{"text", sink, sink},
		{Prefix, nil, sink},
		{Prefix, sink, nil},
		{JSON, sink, nil},
	} {
		if p, err := Attach("web", tc.mode, tc.stdout, tc.stderr); err == nil || !strings.Contains(err.Error(), "web") {
			t.Errorf("Attach(%q, out %v, err %v) = %v, %v; want an error naming the daemon", tc.mode, tc.stdout != nil, tc.stderr != nil, p, err)
		}
	}
	// JSON writes everything to stderr: no stdout sink needed.
	p, err := Attach("web", JSON, nil, sink)
	if err != nil {
		t.Fatalf("Attach(json, nil stdout): %v", err)
	}
	p.CloseChildEnds()
	<-p.Done()
}

func TestInheritMakesNothing(t *testing.T) {
	p, err := Attach("web", Inherit, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, errf := p.ChildFiles(); out != nil || errf != nil {
		t.Errorf("ChildFiles() = %v, %v; want nil, nil (the supervisor's own fd 1 and 2)", out, errf)
	}
	p.CloseChildEnds()
	select {
	case <-p.Done():
	default:
		t.Error("Done is not closed in inherit mode")
	}
}

// TestChildEndsBlock: O_NONBLOCK is shared with the child through the open file
// description; a daemon must wait on a full pipe, not get EAGAIN and lose the line. Checked
// through SyscallConn, because calling Fd here would itself switch the file to blocking.
func TestChildEndsBlock(t *testing.T) {
	p, err := Attach("web", Prefix, NewSink(&bytes.Buffer{}), NewSink(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.CloseChildEnds(); <-p.Done() }()
	out, errf := p.ChildFiles()
	for _, f := range []*os.File{out, errf} {
		raw, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var flags int
		var fcntlErr error
		if err := raw.Control(func(fd uintptr) { flags, fcntlErr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
			t.Fatal(err)
		}
		if fcntlErr != nil {
			t.Fatal(fcntlErr)
		}
		if flags&unix.O_NONBLOCK != 0 {
			t.Errorf("%s is non-blocking: a daemon writing to it when full would get EAGAIN", f.Name())
		}
	}
}

// outputs collects what the sinks got. Reading the buffers after Done needs no lock: the
// copiers' writes happen before Done closes, and the sinks serialise them.
type outputs struct {
	stdout, stderr         bytes.Buffer
	stdoutSink, stderrSink *Sink
}

func newOutputs() *outputs {
	o := &outputs{}
	o.stdoutSink, o.stderrSink = NewSink(&o.stdout), NewSink(&o.stderr)
	return o
}

// locked reads one of the outputs while copiers may be writing to it: under its sink's lock.
func (o *outputs) locked(b *bytes.Buffer) string {
	o.stdoutSink.st.mu.Lock()
	defer o.stdoutSink.st.mu.Unlock()
	o.stderrSink.st.mu.Lock()
	defer o.stderrSink.st.mu.Unlock()
	return b.String()
}

// daemon is a real process started the way the supervisor will: fork/exec with the pipes
// as fds 1 and 2, then the parent's write ends closed.
type daemon struct {
	pid   int
	pipes *Pipes
}

func start(t testing.TB, name string, mode Mode, o *outputs, script string, stdin *os.File) *daemon {
	t.Helper()
	p, err := Attach(name, mode, o.stdoutSink, o.stderrSink)
	if err != nil {
		t.Fatal(err)
	}
	if stdin == nil {
		devNull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = devNull.Close() }()
		stdin = devNull
	}
	out, errf := p.ChildFiles()
	pid, err := syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", script}, &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/bin:/bin", "LC_ALL=C"},
		Files: []uintptr{stdin.Fd(), out.Fd(), errf.Fd()},
	})
	p.CloseChildEnds()
	if err != nil {
		t.Fatalf("fork/exec %q: %v", script, err)
	}
	return &daemon{pid: pid, pipes: p}
}

// wait reaps the daemon, then waits for its output to be copied.
func (d *daemon) wait(t testing.TB) syscall.WaitStatus {
	t.Helper()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(d.pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				t.Fatalf("wait4 %d: %v", d.pid, err)
			}
			break
		}
	}
	<-d.pipes.Done()
	return ws
}

func run(t *testing.T, mode Mode, script string) *outputs {
	t.Helper()
	o := newOutputs()
	start(t, "web", mode, o, script, nil).wait(t)
	return o
}

func TestPrefix(t *testing.T) {
	// The last line has no newline: it is flushed at EOF with one added. The empty line
	// stays a (labelled) empty line.
	o := run(t, Prefix, `echo out1; echo err1 >&2; echo; echo "out2 <&> \"q\""; echo err2 >&2; printf partial`)
	if want := "web | out1\nweb | \nweb | out2 <&> \"q\"\nweb | partial\n"; o.stdout.String() != want {
		t.Errorf("stdout = %q, want %q", o.stdout.String(), want)
	}
	if want := "web | err1\nweb | err2\n"; o.stderr.String() != want {
		t.Errorf("stderr = %q, want %q", o.stderr.String(), want)
	}
}

type record struct {
	TS      string `json:"ts"`
	Daemon  string `json:"daemon"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
	Partial bool   `json:"partial"`
}

// decodeJSONLines checks that every line is one JSON object with exactly the four keys,
// and "partial": true on a piece of a longer line.
func decodeJSONLines(t *testing.T, text string) []record {
	t.Helper()
	var records []record
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line == "" {
			t.Fatalf("line %d is empty", i+1)
		}
		var keys map[string]any
		if err := json.Unmarshal([]byte(line), &keys); err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		if p, ok := keys["partial"]; ok && p != true {
			t.Errorf("line %d %.80q: partial is only ever true", i+1, line)
		}
		if _, ok := keys["partial"]; len(keys) != 4 && (!ok || len(keys) != 5) {
			t.Errorf("line %d %.80q: want exactly ts, daemon, stream, line (and partial)", i+1, line)
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.TS); err != nil {
			t.Errorf("line %d: ts %q: %v", i+1, r.TS, err)
		}
		records = append(records, r)
	}
	return records
}

func TestJSON(t *testing.T) {
	o := run(t, JSON, `echo out1; echo err1 >&2; printf 'tab\there <a href="x">&</a>\n'; printf 'bad \377 utf8\n' >&2; printf partial`)
	if o.stdout.Len() != 0 {
		t.Errorf("json mode wrote to stdout: %q", o.stdout.String())
	}
	if strings.Contains(o.stderr.String(), `\u003c`) {
		t.Errorf("HTML-escaped output: %q", o.stderr.String())
	}
	byStream := map[string][]string{}
	for _, r := range decodeJSONLines(t, o.stderr.String()) {
		if r.Daemon != "web" {
			t.Errorf("daemon = %q, want web", r.Daemon)
		}
		byStream[r.Stream] = append(byStream[r.Stream], r.Line)
	}
	// The two streams are copied independently: order holds within each.
	want := map[string][]string{
		"stdout": {"out1", "tab\there <a href=\"x\">&</a>", "partial"},
		"stderr": {"err1", "bad \uFFFD utf8"},
	}
	for stream, lines := range want {
		if !slices.Equal(byStream[stream], lines) {
			t.Errorf("%s lines = %q, want %q", stream, byStream[stream], lines)
		}
	}
	if len(byStream) != 2 {
		t.Errorf("streams = %v, want stdout and stderr only", byStream)
	}
}

// checkSequence checks lines are prefix+"1" .. prefix+n, each once, in order.
func checkSequence(t *testing.T, lines []string, prefix string, n int) {
	t.Helper()
	if len(lines) != n {
		t.Errorf("%d lines, want %d", len(lines), n)
	}
	for i, line := range lines {
		if want := prefix + strconv.Itoa(i+1); line != want {
			t.Fatalf("line %d = %q, want %q", i+1, line, want)
		}
	}
}

func TestBurstArrivesWholeAndInOrder(t *testing.T) {
	const n = 100_000
	t.Run("prefix", func(t *testing.T) {
		o := run(t, Prefix, "seq 1 "+strconv.Itoa(n))
		checkSequence(t, strings.Split(strings.TrimSuffix(o.stdout.String(), "\n"), "\n"), "web | ", n)
	})
	t.Run("json", func(t *testing.T) {
		o := run(t, JSON, "seq 1 "+strconv.Itoa(n))
		var lines []string
		for _, r := range decodeJSONLines(t, o.stderr.String()) {
			lines = append(lines, r.Line)
		}
		checkSequence(t, lines, "", n)
	})
}

func TestLastLinesBeforeExit(t *testing.T) {
	for _, mode := range []Mode{Prefix, JSON} {
		t.Run(string(mode), func(t *testing.T) {
			o := newOutputs()
			ws := start(t, "web", mode, o, `echo first; echo dying >&2; printf 'no newline'; kill -KILL $$`, nil).wait(t)
			if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("status %v, want killed by SIGKILL", ws)
			}
			all := o.stdout.String() + o.stderr.String()
			for _, want := range []string{"first", "dying", "no newline"} {
				if !strings.Contains(all, want) {
					t.Errorf("%q missing from %q", want, all)
				}
			}
		})
	}
}

// TestGrandchildKeepsTheCopierGoing: the daemon exits, but a process it left behind still
// holds its stdout. The copier must run until that one is gone too.
func TestGrandchildKeepsTheCopierGoing(t *testing.T) {
	gate, hold, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gate.Close() }()
	o := newOutputs()
	// The background subshell waits on fd 3 (the test's pipe): a non-interactive shell gives
	// a background job /dev/null as stdin, so it is passed explicitly.
	d := start(t, "web", Prefix, o, `exec 3<&0; (read x <&3; echo from-grandchild) & echo parent-done`, gate)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(d.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.pipes.Done():
		t.Fatal("Done closed while the grandchild still holds stdout")
	default:
	}
	_ = hold.Close() // the grandchild reads EOF, writes and exits
	<-d.pipes.Done()
	if want := "web | parent-done\nweb | from-grandchild\n"; o.stdout.String() != want {
		t.Errorf("stdout = %q, want %q", o.stdout.String(), want)
	}
}

// RunEnded: the daemon died leaving a line without its newline while a grandchild holds its
// stdout. The line comes out then, not at EOF, and the copier goes on to the grandchild's
// lines. Also when the line ended exactly at a split (JSON then ends it with an empty
// piece, as at EOF).
func TestRunEndedEndsTheLastLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   Mode
		last   string // shell that writes the daemon's last output
		before func(o *outputs) bool
		after  func(o *outputs) string
	}{
		{"prefix", Prefix, `printf 'crash reason'`,
			func(o *outputs) bool { return o.locked(&o.stdout) == "web | crash reason\n" },
			func(o *outputs) string {
				if want := "web | crash reason\nweb | from-grandchild\n"; o.stdout.String() != want {
					return fmt.Sprintf("stdout = %q, want %q", o.stdout.String(), want)
				}
				return ""
			}},
		{"json, a line of exactly MaxLine", JSON, fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a`, MaxLine),
			func(o *outputs) bool { return strings.Count(o.locked(&o.stderr), "\n") == 2 },
			func(o *outputs) string {
				var records []record
				for _, line := range strings.SplitAfter(o.stderr.String(), "\n") {
					var r record
					if json.Unmarshal([]byte(line), &r) == nil {
						records = append(records, r)
					}
				}
				if len(records) != 3 || len(records[0].Line) != MaxLine || !records[0].Partial ||
					records[1].Line != "" || records[1].Partial || records[2].Line != "from-grandchild" {
					return fmt.Sprintf("records %d, want a partial piece, an empty last piece, the grandchild's line", len(records))
				}
				return ""
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate, hold, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = gate.Close() }()
			o := newOutputs()
			d := start(t, "web", tc.mode, o, `exec 3<&0; (read x <&3; echo from-grandchild) & `+tc.last, gate)
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(d.pid, &ws, 0, nil); err != nil {
				t.Fatal(err)
			}
			d.pipes.RunEnded()
			for deadline := time.Now().Add(10 * time.Second); !tc.before(o); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					errOut := o.locked(&o.stderr)
					t.Fatalf("the last line did not come out after RunEnded: stdout %q, stderr %d bytes ending %q",
						o.locked(&o.stdout), len(errOut), errOut[max(0, len(errOut)-80):])
				}
			}
			_ = hold.Close() // the grandchild reads EOF, writes and exits
			<-d.pipes.Done()
			if msg := tc.after(o); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestLongLinesAreSplitNotDropped(t *testing.T) {
	for _, tc := range []struct {
		length int
		pieces []int
	}{
		{MaxLine - 1, []int{MaxLine - 1}},
		{MaxLine, []int{MaxLine}}, // exactly the limit: no empty line after it
		{MaxLine + 1, []int{MaxLine, 1}},
		{200 << 10, []int{MaxLine, MaxLine, MaxLine, 200<<10 - 3*MaxLine}},
	} {
		t.Run(strconv.Itoa(tc.length), func(t *testing.T) {
			o := run(t, Prefix, fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a; echo; echo after`, tc.length))
			lines := strings.Split(strings.TrimSuffix(o.stdout.String(), "\n"), "\n")
			var got []int
			for _, line := range lines[:len(lines)-1] {
				piece, ok := strings.CutPrefix(line, "web | ")
				if !ok || strings.Trim(piece, "a") != "" {
					t.Fatalf("line %.40q... is not a labelled piece of the long line", line)
				}
				got = append(got, len(piece))
			}
			if !slices.Equal(got, tc.pieces) {
				t.Errorf("pieces %v, want %v", got, tc.pieces)
			}
			if last := lines[len(lines)-1]; last != "web | after" {
				t.Errorf("last line %q, want %q", last, "web | after")
			}
		})
	}
}

// lineWriter records each Write's lines and fails the test unless the write is whole
// lines, at most pipeBuf bytes of them unless it is one longer line.
type lineWriter struct {
	t     *testing.T
	lines []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if len(p) == 0 || p[len(p)-1] != '\n' {
		w.t.Errorf("a write of %.80q does not end a line", p)
		return len(p), nil
	}
	lines := strings.Split(string(p[:len(p)-1]), "\n")
	if len(p) > pipeBuf && len(lines) > 1 {
		w.t.Errorf("a write of %d bytes holds %d lines: over PIPE_BUF, only one line may go at once", len(p), len(lines))
	}
	w.lines = append(w.lines, lines...)
	return len(p), nil
}

// TestManyDaemonsShareTheSinks: lines from daemons writing at the same time reach a shared
// sink as whole lines, each daemon's in its own order.
func TestManyDaemonsShareTheSinks(t *testing.T) {
	const daemons, n = 8, 20_000
	stdout, stderr := &lineWriter{t: t}, &lineWriter{t: t}
	o := &outputs{stdoutSink: NewSink(stdout), stderrSink: NewSink(stderr)}
	var started []*daemon
	for i := range daemons {
		mode := Prefix
		if i%2 == 1 {
			mode = JSON
		}
		started = append(started, start(t, "d"+strconv.Itoa(i), mode, o, fmt.Sprintf("seq 1 %d; seq 1 %d >&2", n, n), nil))
	}
	for _, d := range started {
		d.wait(t)
	}
	per := map[string][]string{}
	for _, line := range stdout.lines {
		name, rest, _ := strings.Cut(line, " | ")
		per[name+" stdout"] = append(per[name+" stdout"], rest)
	}
	for _, line := range stderr.lines {
		if strings.HasPrefix(line, "{") {
			var r record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			per[r.Daemon+" "+r.Stream] = append(per[r.Daemon+" "+r.Stream], r.Line)
			continue
		}
		name, rest, _ := strings.Cut(line, " | ")
		per[name+" stderr"] = append(per[name+" stderr"], rest)
	}
	if len(per) != 2*daemons {
		t.Errorf("%d (daemon, stream) pairs, want %d", len(per), 2*daemons)
	}
	for key, lines := range per {
		t.Run(key, func(t *testing.T) { checkSequence(t, lines, "", n) })
	}
}

// gateWriter blocks every Write until released: a consumer that stopped reading.
type gateWriter struct {
	entered     chan struct{}
	enteredOnce sync.Once
	release     chan struct{}
	buf         bytes.Buffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.enteredOnce.Do(func() { close(g.entered) })
	<-g.release
	return g.buf.Write(p)
}

// blockedInPipeWrite reports whether pid sleeps in the kernel's pipe write, from
// /proc/PID/stat (state) and /proc/PID/wchan (where it sleeps).
func blockedInPipeWrite(t *testing.T, pid int) bool {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) == 0 || fields[0] != "S" {
		return false
	}
	wchan, err := os.ReadFile(filepath.Join(dir, "wchan"))
	if err != nil {
		t.Fatal(err)
	}
	if string(wchan) == "0" {
		t.Skipf("pid %d sleeps but this kernel hides where (/proc/PID/wchan is 0): cannot show it is blocked on its pipe", pid)
	}
	return strings.Contains(string(wchan), "pipe_write")
}

// TestStalledConsumerSlowsOnlyTheDaemon: while stdout is not read, the daemon cannot
// finish writing (about 1.3 MB, far more than the pipe and the copier's buffer hold) and
// sleeps in pipe_write; the caller's goroutine and another daemon on stderr carry on.
// Released, every line arrives in order.
func TestStalledConsumerSlowsOnlyTheDaemon(t *testing.T) {
	const n = 200_000 // seq 1 200000 writes 1 288 895 bytes
	stalled := &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(stalled.release) // let the copier and the daemon finish
		}
	}()
	var stderr bytes.Buffer
	o := &outputs{stdoutSink: NewSink(stalled), stderrSink: NewSink(&stderr)}
	d := start(t, "stalled", Prefix, o, "exec seq 1 "+strconv.Itoa(n), nil)
	<-stalled.entered
	for !blockedInPipeWrite(t, d.pid) {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(d.pid, &ws, syscall.WNOHANG, nil); err != nil || pid == d.pid {
			t.Fatalf("the daemon ended (%v, %v) while its stdout was stalled: its output was buffered without bound", ws, err)
		}
		time.Sleep(time.Millisecond) // polling interval only; nothing is asserted on time
	}
	select {
	case <-d.pipes.Done():
		t.Fatal("Done closed while the daemon is blocked writing")
	default:
	}

	// Another daemon, started and finished from another goroutine, writes to stderr, which
	// is not stalled.
	other := make(chan error, 1)
	go func() {
		p, err := Attach("other", Prefix, o.stdoutSink, o.stderrSink)
		if err != nil {
			other <- err
			return
		}
		_, errf := p.ChildFiles()
		pid, err := syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", "seq 1 1000 >&2"},
			&syscall.ProcAttr{Env: []string{"PATH=/usr/bin:/bin"}, Files: []uintptr{0, errf.Fd(), errf.Fd()}})
		p.CloseChildEnds()
		if err == nil {
			var ws syscall.WaitStatus
			_, err = syscall.Wait4(pid, &ws, 0, nil)
		}
		<-p.Done()
		other <- err
	}()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	checkSequence(t, lines, "other | ", 1000)
	if !blockedInPipeWrite(t, d.pid) {
		t.Error("the stalled daemon moved on while its stdout was stalled")
	}

	released = true
	close(stalled.release)
	if ws := d.wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("seq ended with %v, want status 0", ws)
	}
	checkSequence(t, strings.Split(strings.TrimSuffix(stalled.buf.String(), "\n"), "\n"), "stalled | ", n)
}

// BenchmarkBurst measures a 100 000-line burst through each mode, fork/exec included.
// BenchmarkBurst: 100 000 short lines through a copier, into memory and into /dev/null
// (where each sink write is a system call, as on a real stdout).
func BenchmarkBurst(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = devNull.Close() }()
	for _, mode := range []Mode{Prefix, JSON} {
		for _, dest := range []string{"memory", "devnull"} {
			b.Run(string(mode)+"/"+dest, func(b *testing.B) {
				for b.Loop() {
					o := newOutputs()
					if dest == "devnull" {
						o.stdoutSink, o.stderrSink = NewSink(devNull), NewSink(devNull)
					}
					start(b, "web", mode, o, "seq 1 100000", nil).wait(b)
				}
				b.ReportMetric(float64(b.N)*100_000/b.Elapsed().Seconds(), "lines/s")
			})
		}
	}
}

// blockingPipe is a pipe whose write end is an *os.File outside Go's poller, as os.Stdout
// is when sidecar-init starts with a blocking stdout.
func blockingPipe(t *testing.T) (r *os.File, w *os.File, wfd int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	return r, w, fds[1]
}

// readLines reads r until EOF and returns its lines.
func readLines(r *os.File) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var data bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			data.Write(buf[:n])
			if err != nil {
				break
			}
			time.Sleep(50 * time.Microsecond) // a reader slower than the writer: the pipe fills
		}
		out <- strings.Split(strings.TrimSuffix(data.String(), "\n"), "\n")
	}()
	return out
}

// A daemon with log = "inherit" shares the supervisor's stdout and may make it
// non-blocking (Node does): a full pipe then answers EAGAIN, and the sink waits for room
// rather than lose the rest of the line.
func TestSinkWaitsOnANonBlockingStream(t *testing.T) {
	r, w, wfd := blockingPipe(t)
	if err := unix.SetNonblock(wfd, true); err != nil { // what the daemon does to the shared description
		t.Fatal(err)
	}
	sink := NewSink(w)
	lines := readLines(r)
	want := strings.Repeat("x", 20000)
	for i := 0; i < 100; i++ {
		if n, err := sink.Write([]byte(want + "\n")); err != nil || n != len(want)+1 {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	_ = w.Close()
	got := <-lines
	if len(got) != 100 {
		t.Fatalf("%d lines arrived, want 100", len(got))
	}
	for i, line := range got {
		if line != want {
			t.Fatalf("line %d is %d bytes, want %d", i, len(line), len(want))
		}
	}
}

// When stdout and stderr are one pipe (2>&1), their sinks share one lock, so lines
// written to both never mix: a write over PIPE_BUF is not atomic (a signal that interrupts
// it once part is written makes the write return short, and the rest is a second write).
func TestOnePipeForStdoutAndStderr(t *testing.T) {
	_, w, _ := blockingPipe(t)
	if out, errs := NewSinks(w, w); out.st != errs.st {
		t.Error("stdout and stderr are one pipe, but their sinks have a lock each")
	}
	_, w2, _ := blockingPipe(t)
	if out, errs := NewSinks(w, w2); out.st == errs.st {
		t.Error("two different pipes share a lock")
	}
}

// In JSON mode the pieces of a long line say that the next record continues them: a
// consumer can put the line back together, a line of exactly MaxLine bytes included.
func TestJSONPiecesOfALongLine(t *testing.T) {
	for _, tc := range []struct {
		length int
		pieces []int
	}{
		{MaxLine - 1, []int{MaxLine - 1}},
		{MaxLine, []int{MaxLine, 0}},
		{MaxLine + 1, []int{MaxLine, 1}},
	} {
		t.Run(strconv.Itoa(tc.length), func(t *testing.T) {
			o := run(t, JSON, fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a; echo; echo after`, tc.length))
			records := decodeJSONLines(t, o.stderr.String())
			var got []int
			for i, r := range records[:len(records)-1] {
				got = append(got, len(r.Line))
				if last := i == len(records)-2; r.Partial == last {
					t.Errorf("piece %d of %d: partial = %v", i+1, len(records)-1, r.Partial)
				}
			}
			if !slices.Equal(got, tc.pieces) {
				t.Errorf("pieces %v, want %v", got, tc.pieces)
			}
			if last := records[len(records)-1]; last.Line != "after" || last.Partial {
				t.Errorf("last record %+v, want the line after, whole", last)
			}
		})
	}
}

// A split never cuts a UTF-8 character in two: its bytes start the next piece, so both
// pieces stay UTF-8 and JSON keeps the character (not three U+FFFD).
func TestSplitKeepsCharactersWhole(t *testing.T) {
	// MaxLine-1 ASCII bytes, then a 3-byte character across the boundary.
	script := fmt.Sprintf(`head -c %d /dev/zero | tr '\0' E; printf '\342\202\254tail\n'`, MaxLine-1)
	t.Run("prefix", func(t *testing.T) {
		o := run(t, Prefix, script)
		lines := strings.Split(strings.TrimSuffix(o.stdout.String(), "\n"), "\n")
		if len(lines) != 2 || lines[1] != "web | €tail" || !utf8.ValidString(lines[0]) || len(lines[0]) != len("web | ")+MaxLine-1 {
			t.Fatalf("pieces %d, last %q", len(lines), lines[len(lines)-1])
		}
	})
	t.Run("json", func(t *testing.T) {
		o := run(t, JSON, script)
		records := decodeJSONLines(t, o.stderr.String())
		if len(records) != 2 || !records[0].Partial || records[1].Line != "€tail" || strings.ContainsRune(records[0].Line, utf8.RuneError) {
			t.Fatalf("records %d, last %+v", len(records), records[len(records)-1])
		}
	})
}

func TestCompleteUpTo(t *testing.T) {
	euro := "€" // e2 82 ac
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0}, {"abc", 3}, {"ab" + euro, 5}, {"ab" + euro[:1], 2}, {"ab" + euro[:2], 2},
		{"a" + "𝄞"[:3], 1}, {"a" + "𝄞", 5}, {"a\xff", 2}, {"a\x82\xac", 3},
	} {
		if got := completeUpTo([]byte(tc.in)); got != tc.want {
			t.Errorf("completeUpTo(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// Output that ends right after a split (exactly MaxLine bytes, no newline) still ends its
// line in JSON: the last record is not "partial".
func TestJSONLineCutAtEOFEnds(t *testing.T) {
	o := run(t, JSON, fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a`, MaxLine))
	records := decodeJSONLines(t, o.stderr.String())
	if len(records) != 2 || !records[0].Partial || len(records[0].Line) != MaxLine || records[1].Partial || records[1].Line != "" {
		t.Fatalf("%d records, last %+v; want the piece and an empty end", len(records), records[len(records)-1])
	}
}

// flakyWriter fails its first fails writes with EPIPE, then takes everything.
type flakyWriter struct {
	fails int
	got   bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if w.fails > 0 {
		w.fails--
		return 0, syscall.EPIPE
	}
	return w.got.Write(p)
}

// Lines a failed write loses are told: at the first failure, then with the count lost in
// between once writes succeed again; what is never followed by a success waits for
// TakeLost. The supervisor's own lines through Write are not counted (its writer counts
// them).
func TestSinkReportsLostLines(t *testing.T) {
	w := &flakyWriter{fails: 3}
	s := NewSink(w)
	type report struct {
		lost uint64
		err  bool
	}
	var reports []report
	s.OnLoss(func(lost uint64, err error) { reports = append(reports, report{lost, err != nil}) })
	l := newLabeller("web", "stdout", Prefix, s)
	l.write([]byte("web | a\nweb | b\n"))       // fails: reported at once
	l.write([]byte("web | c\n"))                // fails: counted
	_, _ = s.Write([]byte("supervisor line\n")) // fails: not the sink's to count
	l.write([]byte("web | d\n"))                // succeeds: the count is reported
	if want := []report{{2, true}, {1, false}}; !slices.Equal(reports, want) {
		t.Errorf("reports %v, want %v", reports, want)
	}
	w.fails = 1
	l.write([]byte("web | e\n")) // fails again: reported again
	l.write([]byte("x\n"))       // succeeds: nothing lost since that report, nothing said
	if n := s.TakeLost(); n != 0 {
		t.Errorf("TakeLost = %d after writes came back, want 0", n)
	}
	w.fails = 2
	l.write([]byte("web | f\n")) // fails: reported
	l.write([]byte("web | g\nweb | h\n"))
	if n := s.TakeLost(); n != 2 {
		t.Errorf("TakeLost = %d, want the 2 lines lost since the last report", n)
	}
	if got := w.got.String(); got != "web | d\nx\n" {
		t.Errorf("written %q", got)
	}
}

// fullDisk takes room more bytes, then fails with ENOSPC, as a full disk takes part of a
// write.
type fullDisk struct {
	room int
	got  bytes.Buffer
}

func (w *fullDisk) Write(p []byte) (int, error) {
	if len(p) <= w.room {
		w.room -= len(p)
		return w.got.Write(p)
	}
	n, _ := w.got.Write(p[:w.room])
	w.room = 0
	return n, syscall.ENOSPC
}

// A line a full disk cut is finished, first thing, once the disk takes writes again: the
// next line is not glued to its first half. It is not counted lost; the lines after it
// are, and only they.
func TestLineCutByAFullDiskEndsWhole(t *testing.T) {
	w := &fullDisk{room: len("web | a\nweb | b")}
	s := NewSink(w)
	var lost []uint64
	s.OnLoss(func(n uint64, err error) { lost = append(lost, n) })
	l := newLabeller("web", "stdout", Prefix, s)
	l.write([]byte("web | a\nweb | bb\nweb | c\n")) // cut inside b; c lost
	l.write([]byte("web | d\n"))                    // still full: lost, b still held
	w.room = 1 << 20                                // space freed
	l.write([]byte("web | e\n"))
	if got, want := w.got.String(), "web | a\nweb | bb\nweb | e\n"; got != want {
		t.Errorf("written %q, want %q", got, want)
	}
	if want := []uint64{1, 1}; !slices.Equal(lost, want) {
		t.Errorf("lost reported %v, want %v (c at the failure, then d)", lost, want)
	}
}

// When stdout and stderr are one file (2>&1), a line the disk cut on one is finished before
// the other writes: the two sinks share the cut line as they share the lock.
func TestLineCutOnOneStreamIsFinishedBeforeTheOther(t *testing.T) {
	disk := &fullDisk{room: len("web | a\nweb | b")}
	out, errs := NewSink(disk), NewSink(disk)
	errs.st = out.st // as NewSinks does for one file
	_, _ = out.Write([]byte("web | a\nweb | bb\n"))
	disk.room = 1 << 20
	_, _ = errs.Write([]byte("web | c\n"))
	if got, want := disk.got.String(), "web | a\nweb | bb\nweb | c\n"; got != want {
		t.Errorf("written %q, want %q", got, want)
	}
}

// blockedWriter never returns from Write until release is closed: a stream nobody reads.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// OnLoss and TakeLost never wait for the sink's lock, which a write blocked on a stalled
// stream holds: the supervisor calls them at start and at exit, and its exit must stay
// bounded (chaos' stalled-stderr scenario hung a minute before this).
func TestLossBookkeepingNeverWaitsOnAStalledStream(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := NewSink(blockedWriter{release})
	writing := make(chan struct{})
	go func() {
		close(writing)
		_, _ = s.Write([]byte("a line nobody reads\n"))
	}()
	<-writing
	for s.st.mu.TryLock() { // free still: wait until the writer holds it
		s.st.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		s.OnLoss(func(uint64, error) {})
		_ = s.TakeLost()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("OnLoss or TakeLost waited for a write blocked on a stalled stream")
	}
}
