// Package daemonlog labels what daemons write. In "prefix" and "json" mode each daemon's
// stdout and stderr are pipes; two copier goroutines per daemon read them line by line and
// write labelled lines to shared, locked sinks. In "inherit" mode the daemon writes straight
// to the supervisor's fd 1 and 2, as before.
//
// Nothing is dropped: a copier reads until EOF, which comes only when every holder of the
// pipe's write end (grandchildren too) has closed it or died. Nothing else is slowed down
// by a stalled consumer: a copier blocked on its sink stops reading, the pipe fills, and
// the daemon blocks in write(2). That back-pressure is deliberate and reaches only the
// daemons writing to the stalled stream; no call in this package's API waits on a copier.
package daemonlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Mode is how a daemon's output reaches the supervisor's.
type Mode string

const (
	// Inherit passes the supervisor's own fd 1 and 2 to the daemon: no pipes, no labels.
	Inherit Mode = "inherit"
	// Prefix writes each line as "NAME | line" on the stream it came from.
	Prefix Mode = "prefix"
	// JSON writes each line, from either stream, as one JSON object on stderr:
	// {"ts":RFC3339Nano,"daemon":NAME,"stream":"stdout"|"stderr","line":...}.
	JSON Mode = "json"
)

// ParseMode reads a daemon table's log setting. The empty string is Inherit, the default,
// so a daemon without the key needs no special case.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Inherit, nil
	case Inherit, Prefix, JSON:
		return m, nil
	}
	return "", fmt.Errorf("log mode %q: want inherit, prefix or json", s)
}

// MaxLine is the longest piece a copier writes as one line. A longer line is split into
// pieces of MaxLine bytes, each written as a line of its own, so memory per daemon stays
// bounded and no line is dropped.
const MaxLine = 64 << 10

// Sink is one destination stream (the supervisor's stdout, or its stderr) shared by every
// copier and by the supervisor's own log writer. Each Write is one whole line, written
// under the lock, so lines from different daemons never interleave. Create one per stream
// and share it.
//
// Lines from "inherit" daemons bypass the sink (they hold fd 1/2 themselves); the kernel
// keeps their writes whole only up to PIPE_BUF (4096 bytes) when fd 1/2 is a pipe.
type Sink struct {
	st *stream   // shared by the two sinks of one stream (NewSinks)
	w  io.Writer // guarded by st.mu
	fd int       // w's descriptor when w is a file, else -1
	// Labelled lines lost to failed writes (EPIPE, a full disk): lost since the last report
	// and whom to tell, both without mu, which a write blocked on a stalled stream holds for
	// as long as the stream stalls (the supervisor's exit must not wait on it); whether the
	// current run of failures was reported, guarded by st.mu.
	lost     atomic.Uint64
	onLoss   atomic.Pointer[func(lost uint64, err error)]
	reported bool
}

// stream is what the sinks of one destination share: its lock, and torn, the rest of a line
// a failed write cut (a full disk takes part of a write), written first once writes
// succeed again so that the line ends whole instead of the next one, whichever sink writes
// it, being glued to its first half. At most one line; guarded by mu.
type stream struct {
	mu   sync.Mutex
	torn []byte
}

// OnLoss sets what is told when labelled lines are lost to a failed write: at the first
// failure (the lines lost, the error), and once writes succeed again (the lines lost in
// between, nil). It is called from a copier's goroutine, under the sink's lock, and must
// not block (a log line queued). Set it before the first Attach. It never waits for the
// sink's lock: a write blocked on a stalled stream may hold it.
func (s *Sink) OnLoss(f func(lost uint64, err error)) { s.onLoss.Store(&f) }

// TakeLost returns the labelled lines lost and not reported yet, and forgets them: at
// exit, the lines lost since the first failure was reported, writes never having come back.
// It never waits for the sink's lock.
func (s *Sink) TakeLost() uint64 { return s.lost.Swap(0) }

// writeLabelled writes whole labelled lines and counts those a failed write loses.
func (s *Sink) writeLabelled(p []byte) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	n, err := s.writeLocked(p)
	report := s.onLoss.Load()
	switch {
	case err != nil:
		s.lost.Add(uint64(bytes.Count(p[n:], []byte{'\n'})))
		if !s.reported && report != nil {
			s.reported = true
			(*report)(s.lost.Swap(0), err)
		}
	case s.reported:
		s.reported = false
		if lost := s.lost.Swap(0); lost > 0 && report != nil {
			(*report)(lost, nil)
		}
	}
}

// NewSink wraps w, normally os.Stdout or os.Stderr.
func NewSink(w io.Writer) *Sink { return &Sink{st: new(stream), w: w, fd: fdOf(w)} }

// NewSinks makes the sinks of the supervisor's stdout and stderr. When both are the same
// pipe, file or socket (2>&1, a journal stream), they share one lock (a write over
// PIPE_BUF is not atomic, so two locks would let a stdout line and a stderr line mix) and
// one cut line.
func NewSinks(stdout, stderr *os.File) (out, errs *Sink) {
	out, errs = NewSink(stdout), NewSink(stderr)
	outInfo, err1 := stdout.Stat()
	errInfo, err2 := stderr.Stat()
	if err1 == nil && err2 == nil && os.SameFile(outInfo, errInfo) {
		errs.st = out.st
	}
	return out, errs
}

// fdOf is w's descriptor when w is an *os.File, read without File.Fd (which would change
// the file's blocking mode), else -1.
func fdOf(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return -1
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = raw.Control(func(d uintptr) { fd = int(d) })
	return fd
}

// Write writes p, which must be one or more whole lines, in one locked call. It blocks
// while the destination does: callers that must not block (the event loop) write through a
// queue such as logging.Writer. On a failed write, n counts the lines of p that are
// written or will be: the lines after p[:n] are lost, and a line the failure cut is kept
// and finished first by the next write that succeeds.
func (s *Sink) Write(p []byte) (int, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.writeLocked(p)
}

func (s *Sink) writeLocked(p []byte) (int, error) {
	if len(s.st.torn) > 0 {
		n, err := s.writeAll(s.st.torn)
		s.st.torn = s.st.torn[n:]
		if err != nil {
			return 0, err // p goes after the torn line or not at all
		}
		s.st.torn = nil
	}
	n, err := s.writeAll(p)
	if err != nil && n > 0 && p[n-1] != '\n' {
		// Cut inside a line: keep its rest for the next write (the line is not lost).
		end := n + bytes.IndexByte(p[n:], '\n') + 1
		if end <= n {
			end = len(p) // (p should end with a newline)
		}
		s.st.torn = append(s.st.torn[:0], p[n:end]...)
		n = end
	}
	return n, err
}

// writeAll writes p to the stream and returns how much of it went out.
func (s *Sink) writeAll(p []byte) (int, error) {
	written := 0
	for {
		n, err := s.w.Write(p[written:])
		written += n
		if err == nil || s.fd < 0 || !errors.Is(err, syscall.EAGAIN) {
			return written, err
		}
		// A daemon with log = "inherit" shares this open file description and made it
		// non-blocking (Node does, for a pipe): wait until the stream takes more, as the
		// blocking write would have, rather than lose the rest of the line.
		if err := waitWritable(s.fd); err != nil {
			return written, err
		}
	}
}

// waitWritable blocks until fd can take a write (or has failed: the write then says how).
func waitWritable(fd int) error {
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, -1)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Pipes is one spawn's output plumbing. Its methods are for the goroutine that spawns (the
// event loop); only Done may be used from anywhere.
type Pipes struct {
	// childOut and childErr are the write ends the child gets; nil in Inherit mode.
	childOut, childErr *os.File
	childClosed        bool
	// outRead and errRead are the copiers' read ends, for RunEnded; nil in Inherit mode.
	outRead, errRead *os.File
	running          atomic.Int32 // copiers not at EOF yet
	done             chan struct{}
	label            string
}

// Label is the name the lines are labelled with (Attach's name).
func (p *Pipes) Label() string { return p.label }

// RunEnded tells the copiers that the spawn's own process has been reaped: everything it
// wrote is in the pipes now. Each reads what is there without waiting and ends a last line
// left without its newline, then goes on reading until EOF. Without it, that line (a crash
// message cut short, often the one that says why) waited for EOF, which a process the run
// left holding the pipe (a worker, a setsid'd grandchild) could put off for as long as the
// bundle runs, or for ever. It never blocks; call it from the loop, once the run is reaped.
func (p *Pipes) RunEnded() {
	for _, r := range []*os.File{p.outRead, p.errRead} {
		if r != nil {
			// A deadline in the past wakes a copier blocked in its read at once (and one
			// busy writing, at its next read). A copier done already closed r: no effect.
			_ = r.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// Attach prepares the output of one spawn of the daemon name. For Prefix and JSON it makes
// two pipes and starts their copiers at once: Prefix writes stdout lines to stdout and
// stderr lines to stderr; JSON writes both to stderr (stdout may then be nil). For Inherit
// it makes nothing and Done is already closed.
//
// Call it again for every restart: each spawn gets its own pipes, and the previous ones
// keep copying until their last writer (perhaps an orphaned grandchild) is gone. After
// the spawn, successful or not, call CloseChildEnds, or Done never closes.
func Attach(name string, mode Mode, stdout, stderr *Sink) (*Pipes, error) {
	p := &Pipes{label: name, done: make(chan struct{})}
	var outDest *Sink
	switch mode {
	case Inherit:
		close(p.done)
		return p, nil
	case Prefix:
		outDest = stdout
	case JSON:
		outDest = stderr
	default:
		return nil, fmt.Errorf("daemon %s: log mode %q: want inherit, prefix or json", name, mode)
	}
	if outDest == nil || stderr == nil {
		return nil, fmt.Errorf("daemon %s: log mode %s needs its sinks (stdout %v, stderr %v)", name, mode, stdout != nil, stderr != nil)
	}
	outRead, outWrite, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("daemon %s: stdout pipe: %w", name, err)
	}
	errRead, errWrite, err := pipe()
	if err != nil {
		_ = outRead.Close()
		_ = outWrite.Close()
		return nil, fmt.Errorf("daemon %s: stderr pipe: %w", name, err)
	}
	p.childOut, p.childErr = outWrite, errWrite
	p.outRead, p.errRead = outRead, errRead
	p.running.Store(2)
	go p.copyLines(outRead, newLabeller(name, "stdout", mode, outDest))
	go p.copyLines(errRead, newLabeller(name, "stderr", mode, stderr))
	return p, nil
}

// pipe is os.Pipe (close-on-exec, so no other child inherits it) with the write end put
// back into blocking mode. os.Pipe makes both ends non-blocking for Go's poller, and
// O_NONBLOCK belongs to the open file description the child shares: a daemon writing to a
// full non-blocking pipe gets EAGAIN, which most programs treat as a failed write and so
// lose the line, instead of waiting. File.Fd is documented to set blocking mode. The read
// end stays non-blocking, so an idle copier parks on the poller rather than a thread.
func pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	_ = w.Fd()
	return r, w, nil
}

// GiveChildEnds makes the child's ends of the pipes belong to uid:gid, the user the daemon
// runs as: a pipe is created 0600 and owned by root, so a daemon that is not root could
// not open /dev/stdout or /dev/stderr (its own fd 1 and 2) by name. No-op in Inherit mode.
func (p *Pipes) GiveChildEnds(uid, gid int) error {
	if p.childOut == nil {
		return nil
	}
	if err := p.childOut.Chown(uid, gid); err != nil {
		return err
	}
	return p.childErr.Chown(uid, gid)
}

// ChildFiles are the child's stdout and stderr, for the spawn's file table (as fd 1 and 2).
// Both are nil in Inherit mode, meaning "give it the supervisor's own fd 1 and 2".
func (p *Pipes) ChildFiles() (stdout, stderr *os.File) { return p.childOut, p.childErr }

// CloseChildEnds closes the supervisor's copies of the write ends. Call it right after the
// spawn, whether it succeeded or not: until then the copiers can never see EOF. It never
// blocks and may be called more than once.
func (p *Pipes) CloseChildEnds() {
	if p.childClosed || p.childOut == nil {
		return
	}
	p.childClosed = true
	// Closing a pipe end we own cannot fail in a way that matters here: the descriptor is
	// released either way (close(2): "the file descriptor is freed" even on EINTR).
	_ = p.childOut.Close()
	_ = p.childErr.Close()
}

// Done is closed when both copiers have reached EOF and written everything: every process
// holding the write ends has exited or closed them. At supervisor exit, wait for it with a
// bound; a stalled consumer or a lingering grandchild would otherwise hold the exit.
func (p *Pipes) Done() <-chan struct{} { return p.done }

// copyLines reads r line by line until EOF and hands each line (at most MaxLine bytes,
// without its newline) to label.
func (p *Pipes) copyLines(r *os.File, label *labeller) {
	defer func() {
		_ = r.Close()
		if p.running.Add(-1) == 0 {
			close(p.done)
		}
	}()
	br := bufio.NewReaderSize(&runReader{f: r}, MaxLine)
	// carry is the start of a character that a split cut off, for the next piece; joined
	// is that piece, put together in a buffer of its own.
	var carry, joined []byte
	// partialOut: the last piece written was a partial one (JSON said "partial": true).
	partialOut := false
	withCarry := func(line []byte) []byte {
		if len(carry) == 0 {
			return line
		}
		joined = append(append(joined[:0], carry...), line...)
		carry = carry[:0]
		return joined
	}
	// endLine ends a line left without its newline (at EOF, or when the run ended): one is
	// added. In JSON, a line whose last piece said "partial" ends here too, if need be with
	// an empty piece, so no consumer joins it to whatever comes next.
	endLine := func(line []byte) {
		if line = withCarry(line); len(line) > 0 || (partialOut && label.enc != nil) {
			label.emit(line, false)
		}
		partialOut = false
	}
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			label.emit(withCarry(line[:len(line)-1]), false)
			partialOut = false
			if !lineBuffered(br) {
				label.flush() // the next read may wait for the daemon: nothing waits with it
			}
		case errors.Is(err, bufio.ErrBufferFull):
			// MaxLine bytes and no newline yet: write them as a piece of their own, cut
			// before a character the buffer ends in the middle of (that character's bytes
			// start the next piece, so every piece of UTF-8 text stays UTF-8).
			piece := withCarry(line)
			cut := completeUpTo(piece)
			label.emit(piece[:cut], true)
			label.flush()
			partialOut = true
			carry = append(carry, piece[cut:]...)
			// If the newline comes right after, the line ended with this piece: JSON says
			// so with an empty last piece; in prefix mode the newline is eaten, or it would
			// show up as an empty line.
			next, err := br.Peek(1)
			if len(carry) == 0 && label.enc == nil && len(next) == 1 && next[0] == '\n' {
				_, _ = br.Discard(1)
			}
			if errors.Is(err, errRunEnded) { // said once: Peek took it
				endLine(nil)
				label.flush()
			}
		case errors.Is(err, errRunEnded):
			// The run's process is gone and the pipe is empty: a line it left without its
			// newline ends here, as at EOF, and reading goes on for what its leftovers write.
			endLine(line)
			label.flush()
		default:
			endLine(line)
			if !errors.Is(err, io.EOF) {
				// Reads from a pipe do not fail in practice; if one did, the daemon would see
				// EPIPE from here on, so say where its output went.
				label.emit([]byte("sidecar-init: reading this output failed, the rest is lost: "+err.Error()), false)
			}
			label.flush()
			return
		}
	}
}

// errRunEnded is runReader's word that the run's process was reaped and the pipe holds
// nothing more for now.
var errRunEnded = errors.New("the run's process ended and its output is all read")

// runReader reads a copier's pipe. After RunEnded (a read deadline in the past), it reads
// without waiting until the pipe is empty, says errRunEnded once, then waits as before.
type runReader struct {
	f        *os.File
	draining bool
}

func (r *runReader) Read(b []byte) (int, error) {
	if !r.draining {
		n, err := r.f.Read(b)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if err := r.f.SetReadDeadline(time.Time{}); err != nil {
			return n, err
		}
		r.draining = true
		if n > 0 {
			return n, nil
		}
	}
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var readErr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, readErr = unix.Read(int(fd), b)
			if !errors.Is(readErr, unix.EINTR) {
				return true // never wait for more: that is what draining means
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case readErr == nil && n > 0:
		return n, nil
	case readErr == nil:
		return 0, io.EOF
	case errors.Is(readErr, unix.EAGAIN):
		r.draining = false
		return 0, errRunEnded
	}
	return 0, readErr
}

// lineBuffered says a whole line is already read into br: the next ReadSlice returns it
// without waiting on the pipe.
func lineBuffered(br *bufio.Reader) bool {
	buffered, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(buffered, '\n') >= 0
}

// completeUpTo is where the incomplete UTF-8 sequence b ends with starts, or len(b): the
// last character starts at most utf8.UTFMax-1 bytes back if it is cut. Bytes that are not
// UTF-8 at all are never held back.
func completeUpTo(b []byte) int {
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}

// labeller turns a daemon's raw lines into labelled ones on its sink. One per copier: its
// buffers are not shared.
//
// Lines read together are written together: emit gathers labelled lines and flush writes
// them, whole lines in writes of at most pipeBuf bytes (a longer line goes alone). A daemon
// printing short lines fast then costs one system call per few hundred lines, not one per
// line, and a write of at most PIPE_BUF bytes to a pipe stays whole beside what "inherit"
// daemons write to the same stream.
type labeller struct {
	sink   *Sink
	prefix []byte // "NAME | " in Prefix mode; nil in JSON mode
	out    []byte // labelled lines not written yet
	buf    bytes.Buffer
	enc    *json.Encoder
	record struct {
		TS     string `json:"ts"`
		Daemon string `json:"daemon"`
		Stream string `json:"stream"`
		Line   string `json:"line"`
		// Partial: the line goes on in the next record (it was longer than MaxLine).
		Partial bool `json:"partial,omitempty"`
	}
}

// pipeBuf is PIPE_BUF on Linux: a write of at most this many bytes to a pipe is never split
// by another process's writes.
const pipeBuf = 4096

func newLabeller(name, stream string, mode Mode, sink *Sink) *labeller {
	l := &labeller{sink: sink}
	if mode == Prefix {
		l.prefix = []byte(name + " | ")
		return l
	}
	l.record.Daemon, l.record.Stream = name, stream
	l.enc = json.NewEncoder(&l.buf)
	// Log lines are full of <, > and &; \u003c helps nobody reading a container's output.
	l.enc.SetEscapeHTML(false)
	return l
}

// emit labels one line, or a piece of a long one that the next continues (partial), for
// the next flush; lines gathered before it that it would push past pipeBuf are written
// first.
func (l *labeller) emit(line []byte, partial bool) {
	start := len(l.out)
	if l.enc == nil {
		l.out = append(append(append(l.out, l.prefix...), line...), '\n')
	} else {
		// The time the lines were read (one stamp for the lines read together), in UTC like
		// the supervisor's own log lines. Bytes that are not UTF-8 become U+FFFD: JSON
		// strings cannot carry them.
		if start == 0 {
			l.record.TS = time.Now().UTC().Format(time.RFC3339Nano)
		}
		l.record.Line, l.record.Partial = string(line), partial
		l.buf.Reset()
		if err := l.enc.Encode(&l.record); err != nil {
			return // a struct of strings always encodes
		}
		l.out = append(l.out, l.buf.Bytes()...)
	}
	if start > 0 && len(l.out) > pipeBuf {
		l.write(l.out[:start])
		l.out = l.out[:copy(l.out, l.out[start:])]
	}
}

// flush writes the lines gathered so far.
func (l *labeller) flush() {
	if len(l.out) > 0 {
		l.write(l.out)
		l.out = l.out[:0]
	}
}

// write writes whole labelled lines. A failed write (EPIPE on a closed stdout, say) loses
// these lines only, counted and reported through the sink; the copier keeps reading so the
// daemon is never blocked or killed by it.
func (l *labeller) write(lines []byte) { l.sink.writeLabelled(lines) }
