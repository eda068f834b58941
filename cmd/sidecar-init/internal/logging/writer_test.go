package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/daemonlog"
)

// stalledOut is a stderr nobody reads: Write blocks until release is closed, then records.
type stalledOut struct {
	release chan struct{}
	entered chan struct{} // closed at the first Write: the drainer is stuck from then on
	once    sync.Once

	mu    sync.Mutex
	buf   bytes.Buffer // guarded by mu
	calls [][]byte     // each Write's bytes, guarded by mu
}

func newStalledOut(t *testing.T) *stalledOut {
	out := &stalledOut{release: make(chan struct{}), entered: make(chan struct{})}
	t.Cleanup(out.unblock) // or the drainer goroutine outlives the test (leakcheck)
	return out
}

func (o *stalledOut) Write(p []byte) (int, error) {
	o.once.Do(func() { close(o.entered) })
	<-o.release
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, bytes.Clone(p))
	return o.buf.Write(p)
}

func (o *stalledOut) unblock() {
	select {
	case <-o.release:
	default:
		close(o.release)
	}
}

func (o *stalledOut) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Split(strings.TrimSuffix(o.buf.String(), "\n"), "\n")
}

// line is one log line of the given length (newline included) with its number in it.
func line(i, length int) []byte {
	head := fmt.Sprintf(`{"n":%d,"pad":"`, i)
	tail := "\"}\n"
	return []byte(head + strings.Repeat("x", max(0, length-len(head)-len(tail))) + tail)
}

// dropReports returns the "log lines dropped" lines' counts, and every other line.
func dropReports(t *testing.T, lines []string) (drops []int, rest []string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(l, `"msg":"log lines dropped`) {
			rest = append(rest, l)
			continue
		}
		var report struct {
			Level   string `json:"level"`
			TS      string `json:"ts"`
			Dropped int    `json:"dropped"`
		}
		if err := json.Unmarshal([]byte(l), &report); err != nil {
			t.Fatalf("the drop report is not JSON: %q: %v", l, err)
		}
		if report.Level != "warn" || report.TS == "" || report.Dropped <= 0 {
			t.Errorf("drop report %q: want level warn, a ts and a positive count", l)
		}
		drops = append(drops, report.Dropped)
	}
	return drops, rest
}

// A blocked stderr: Write never blocks, the overflow is counted, and once stderr takes lines
// again every line is either written or in the one drop report that follows them.
func TestStalledWriterNeverBlocksAndCountsWhatItDrops(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lines     int
		lineLen   int
		wantDrops bool
	}{
		{"under both limits: nothing dropped", 1000, 100, false},
		{"line limit overflows", maxQueuedLines + 5000, 100, true},
		{"byte limit overflows", 100, maxQueuedBytes / 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := newStalledOut(t)
			w := NewWriter(out)
			_, _ = w.Write(line(-1, 50)) // the drainer takes it and blocks in out.Write
			<-out.entered

			began := time.Now()
			for i := range tc.lines {
				if n, err := w.Write(line(i, tc.lineLen)); n != tc.lineLen || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil (a dropped line is still \"written\" for zap)", n, err, tc.lineLen)
				}
			}
			// Generous: on a stalled stderr a single blocking Write would hang here for good.
			if took := time.Since(began); took > 5*time.Second {
				t.Fatalf("%d Writes took %v with stderr stalled", tc.lines, took)
			}
			dropped := int(w.Dropped())
			if tc.wantDrops != (dropped > 0) {
				t.Fatalf("Dropped() = %d after %d lines of %d bytes; want drops: %v", dropped, tc.lines, tc.lineLen, tc.wantDrops)
			}

			out.unblock()
			w.Close(5 * time.Second)
			drops, rest := dropReports(t, out.lines())
			if tc.wantDrops && (len(drops) != 1 || drops[0] != dropped) {
				t.Errorf("drop reports %v, want exactly one, of %d", drops, dropped)
			}
			if !tc.wantDrops && len(drops) != 0 {
				t.Errorf("drop reports %v, want none", drops)
			}
			// Every line is written or counted: the first one (taken before the stall) plus
			// the test's lines.
			if got := len(rest) + dropped; got != tc.lines+1 {
				t.Errorf("%d lines written + %d dropped = %d, want %d", len(rest), dropped, got, tc.lines+1)
			}
			// Written lines keep their order, and are whole.
			last := -2
			for _, l := range rest {
				var v struct{ N int }
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Fatalf("written line is not whole: %.80q", l)
				}
				if v.N <= last {
					t.Fatalf("line %d written after line %d", v.N, last)
				}
				last = v.N
			}
			if w.Dropped() != 0 {
				t.Errorf("Dropped() = %d after the report was written, want 0", w.Dropped())
			}
		})
	}
}

// Close must not wait past its timeout for a stderr nobody reads: PID 1 would hang.
func TestCloseReturnsWithinItsTimeoutWhenStderrIsStalled(t *testing.T) {
	out := newStalledOut(t)
	w := NewWriter(out)
	for i := range 100 {
		_, _ = w.Write(line(i, 100))
	}
	<-out.entered
	const timeout = 200 * time.Millisecond
	began := time.Now()
	w.Close(timeout)
	took := time.Since(began)
	if took < timeout || took > timeout+time.Second {
		t.Errorf("Close(%v) returned after %v with stderr stalled, want about %v", timeout, took, timeout)
	}
	// After Close, Write drops (and counts) instead of queueing or blocking.
	before := w.Dropped()
	if n, err := w.Write(line(0, 40)); n != 40 || err != nil {
		t.Errorf("Write after Close = %d, %v", n, err)
	}
	if w.Dropped() != before+1 {
		t.Errorf("Write after Close: Dropped() = %d, want %d", w.Dropped(), before+1)
	}
}

// With a stderr that keeps up, Close flushes everything, in order, without a drop report.
func TestCloseFlushesEverythingQueued(t *testing.T) {
	var out syncBuffer
	w := NewWriter(&out)
	const n = 5000
	for i := range n {
		_, _ = w.Write(line(i, 80))
	}
	w.Close(5 * time.Second)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines written, want %d", len(lines), n)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, fmt.Sprintf(`{"n":%d,`, i)) {
			t.Fatalf("line %d is %.40q", i, l)
		}
	}
	if err := w.Sync(); err != nil {
		t.Errorf("Sync = %v, want nil (a no-op)", err)
	}
}

// A burst (lines queued while stderr was busy) goes out in a few writes, each of whole lines
// and at most PIPE_BUF bytes so no daemon sharing the pipe can split it; a line longer than
// that is written alone, whole.
func TestBurstIsWrittenAsFewWholeLineWrites(t *testing.T) {
	out := newStalledOut(t)
	w := NewWriter(out)
	_, _ = w.Write(line(0, 100))
	<-out.entered // the drainer holds line 0; the burst queues behind it
	const burst = 200
	for i := 1; i <= burst; i++ {
		length := 100
		if i == burst/2 {
			length = 3 * 4096
		}
		_, _ = w.Write(line(i, length))
	}
	out.unblock()
	w.Close(5 * time.Second)

	out.mu.Lock()
	calls := out.calls
	out.mu.Unlock()
	next := 0
	for _, call := range calls {
		lines := strings.SplitAfter(string(call), "\n")
		if lines[len(lines)-1] != "" {
			t.Fatalf("a write ends inside a line: %.60q", call[max(0, len(call)-60):])
		}
		lines = lines[:len(lines)-1]
		if len(call) > 4096 && len(lines) > 1 {
			t.Errorf("a write of %d lines is %d bytes, over PIPE_BUF (4096)", len(lines), len(call))
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, fmt.Sprintf(`{"n":%d,`, next)) {
				t.Fatalf("line %d is %.40q", next, l)
			}
			next++
		}
	}
	if next != burst+1 {
		t.Fatalf("%d lines written, want %d", next, burst+1)
	}
	// Line 0 alone, 99 lines of 100 bytes in 4096-byte writes (3), the long line, 100 more (3).
	if len(calls) > 8 {
		t.Errorf("%d writes for %d queued lines, want at most 8", len(calls), burst+1)
	}
}

// Writers from many goroutines (zap may log from more than the loop) never interleave
// within a line; run with -race.
func TestConcurrentWritesStayWholeLines(t *testing.T) {
	var out syncBuffer
	w := NewWriter(&out)
	var wg sync.WaitGroup
	const writers, each = 8, 500
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, _ = w.Write(line(g*each+i, 120))
			}
		}()
	}
	wg.Wait()
	w.Close(5 * time.Second)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*each {
		t.Fatalf("%d lines, want %d", len(lines), writers*each)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("interleaved line: %.80q", l)
		}
	}
}

// The writer's own goroutine must not spin while idle.
func TestIdleWriterDoesNotBusyLoop(t *testing.T) {
	var out countingOut
	w := NewWriter(&out)
	_, _ = w.Write(line(0, 10))
	time.Sleep(50 * time.Millisecond)
	if got := out.writes(); got != 1 {
		t.Errorf("%d writes to stderr for one line, want 1", got)
	}
	w.Close(time.Second)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type countingOut struct {
	mu sync.Mutex
	n  int // guarded by mu
}

func (c *countingOut) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return len(p), nil
}

func (c *countingOut) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// failingOut fails every write while failing is set (ENOSPC, EPIPE), and records the rest.
type failingOut struct {
	mu       sync.Mutex
	failing  bool
	attempts int
	buf      bytes.Buffer
}

func (o *failingOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attempts++
	if o.failing {
		return 0, errors.New("no space left on device")
	}
	return o.buf.Write(p)
}

// A stderr whose every write fails: one line costs its write and one failed report, and
// then the writer waits for the next line; it does not retry the report in a loop.
func TestBrokenStderrDoesNotSpin(t *testing.T) {
	out := &failingOut{failing: true}
	w := NewWriter(out)
	_, _ = w.Write(line(0, 10))
	time.Sleep(50 * time.Millisecond)
	out.mu.Lock()
	attempts := out.attempts
	out.mu.Unlock()
	if attempts != 2 {
		t.Errorf("%d writes for one line to a broken stderr, want 2 (the line, its report)", attempts)
	}
	w.Close(time.Second)
}

// Lines lost to a failed write count as dropped: once stderr takes lines again, the
// report says how many went missing.
func TestFailedWritesAreCountedAsDropped(t *testing.T) {
	out := &failingOut{failing: true}
	w := NewWriter(out)
	const lost = 50
	for i := 0; i < lost; i++ {
		_, _ = w.Write(line(i, 100))
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.Dropped() != lost { // the failed report keeps the count for the next one
		if time.Now().After(deadline) {
			t.Fatalf("dropped = %d, want %d", w.Dropped(), lost)
		}
		time.Sleep(time.Millisecond)
	}
	out.mu.Lock()
	out.failing = false
	out.mu.Unlock()
	_, _ = w.Write(line(lost, 100))
	w.Close(5 * time.Second)
	drops, rest := dropReports(t, strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n"))
	if !slices.Equal(drops, []int{lost}) || len(rest) != 1 {
		t.Fatalf("reports %v and %d other lines; want one report of %d and the last line", drops, len(rest), lost)
	}
}

// fullDisk takes room more bytes, then fails with ENOSPC (a full disk takes part of a
// write), until more room is given.
type fullDisk struct {
	mu   sync.Mutex
	room int
	got  bytes.Buffer
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(p) <= d.room {
		d.room -= len(p)
		return d.got.Write(p)
	}
	n, _ := d.got.Write(p[:d.room])
	d.room = 0
	return n, syscall.ENOSPC
}

func (d *fullDisk) setRoom(n int) {
	d.mu.Lock()
	d.room = n
	d.mu.Unlock()
}

func (d *fullDisk) left() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.room
}

func (d *fullDisk) free() {
	d.mu.Lock()
	d.room = 1 << 20
	d.mu.Unlock()
}

// cutLineOne writes lines 0 to 2 of 100 bytes, through the sink main gives the writer, to
// a disk with room for line 0 and half of line 1: line 1 is cut, line 2 lost (counted).
func cutLineOne(t *testing.T) (*fullDisk, *Writer) {
	t.Helper()
	disk := &fullDisk{room: 100 + 50}
	w := NewWriter(daemonlog.NewSink(disk))
	for i := range 3 {
		_, _ = w.Write(line(i, 100))
	}
	for deadline := time.Now().Add(5 * time.Second); w.Dropped() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("line 2 was never counted lost")
		}
	}
	return disk, w
}

// Through the sink main gives it: after a full disk every line is whole JSON (the line the
// disk cut is finished first once it has room), and the drop report counts only the line
// lost after the cut.
func TestFullDiskLeavesEveryLineWhole(t *testing.T) {
	disk, w := cutLineOne(t)
	disk.free()
	_, _ = w.Write(line(3, 100))
	w.Close(5 * time.Second)
	lines := strings.Split(strings.TrimSuffix(disk.got.String(), "\n"), "\n")
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %d is not one JSON object: %q", i, l)
		}
	}
	drops, rest := dropReports(t, lines)
	if !slices.Equal(drops, []int{1}) || len(rest) != 3 || !strings.HasPrefix(rest[1], `{"n":1,`) || !strings.HasPrefix(rest[2], `{"n":3,`) {
		t.Fatalf("drop reports %v, lines %q: want lines 0, 1 and 3, and one report of 1", drops, rest)
	}
}

// A drop report the full disk cuts is finished by the sink, as any line: it is delivered,
// and the next report does not count the same lines again (found by a review: two
// reports of 1 for one lost line).
func TestCutDropReportIsReportedOnce(t *testing.T) {
	disk, w := cutLineOne(t)
	// Room for the rest of line 1, line 3 and the start of the drop report.
	disk.setRoom(50 + 100 + 30)
	_, _ = w.Write(line(3, 100))
	for deadline := time.Now().Add(5 * time.Second); disk.left() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the drop report was never tried")
		}
	}
	time.Sleep(50 * time.Millisecond)
	disk.free()
	_, _ = w.Write(line(4, 100))
	w.Close(5 * time.Second)
	lines := strings.Split(strings.TrimSuffix(disk.got.String(), "\n"), "\n")
	drops, rest := dropReports(t, lines)
	if len(rest) != 4 || !slices.Equal(drops, []int{1}) {
		t.Fatalf("drop reports %v for 1 lost line; lines %d: %q", drops, len(rest), lines)
	}
}

// A line logged while Close runs (a copier's OnLoss, the notifier or control goroutines
// still going at exit) is dropped, and its drop report, written to a stderr that stalls,
// must not hold Close past its timeout. (A review found that a Close that skipped its
// timer when the writer looked idle hung here.)
func TestLineLoggedDuringAnIdleCloseCannotHoldIt(t *testing.T) {
	for i := range 20 {
		out := newStalledOut(t)
		w := NewWriter(out)
		go func() {
			for {
				w.mu.Lock()
				closing := w.closing
				w.mu.Unlock()
				if closing {
					_, _ = w.Write([]byte("late line\n"))
					return
				}
			}
		}()
		returned := make(chan struct{})
		go func() { w.Close(20 * time.Millisecond); close(returned) }()
		select {
		case <-returned:
		case <-time.After(3 * time.Second):
			t.Fatalf("iteration %d: Close(20ms) still waiting after 3s (stderr stalled, a line logged during Close)", i)
		}
		out.unblock()
	}
}

// A burst queued behind a stalled stderr is written once it drains, and its buffers are not
// all kept for reuse: the free list stays bounded, or a burst's thousands of lines would
// stay in the process's memory for good.
func TestBurstLeavesABoundedFreeList(t *testing.T) {
	out := newStalledOut(t)
	w := NewWriter(out)
	_, _ = w.Write(line(0, 200))
	<-out.entered // the drainer is stuck on the first line: the rest queue up
	const n = 4 * maxFreeLines
	for i := 1; i <= n; i++ {
		_, _ = w.Write(line(i, 200))
	}
	out.unblock()
	w.Close(5 * time.Second)
	if got := len(out.lines()); got != n+1 {
		t.Fatalf("%d lines written, want %d", got, n+1)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.free) > maxFreeLines {
		t.Errorf("%d buffers kept for reuse after the burst, want at most %d", len(w.free), maxFreeLines)
	}
}
