// Package logging builds the supervisor's logger: JSON lines on stderr, never sampled, and
// never able to block the event loop.
package logging

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Writer queues whole log lines and writes them from one goroutine, so a stalled stderr (a
// pipe nobody reads) cannot block the event loop that logs. When the queue is full the
// newest line is dropped and counted; the count is written as a line of its own as soon
// as the queue has room, so an operator sees that lines went missing and how many.
type Writer struct {
	out io.Writer

	mu      sync.Mutex
	queue   [][]byte // guarded by mu
	queued  int      // bytes in queue, guarded by mu
	dropped uint64   // lines dropped since the last report, guarded by mu
	// unreported: lines dropped or lost to failed writes whose report failed too (stderr
	// is broken); reported with the next report that gets through. Guarded by mu.
	unreported uint64
	closing    bool     // guarded by mu
	free       [][]byte // recycled line buffers, guarded by mu
	wake       chan struct{}
	finished   chan struct{}
}

// Limits of the queue: whichever is reached first makes the next line a drop.
const (
	maxQueuedLines = 8192
	maxQueuedBytes = 4 << 20
)

// Bounds of the free list of line buffers: enough for a batch of everyday logging (a
// shutdown of 100 daemons logs a few hundred lines, drained as they come), not a burst's
// thousands kept for the process's life. Unbounded, a burst once queued (8192 lines, a
// stalled stderr) left a few MiB of buffers in RssAnon for good (found by a review).
const (
	maxFreeLines   = 256
	maxFreeLineCap = 4096
)

// NewWriter starts the goroutine that writes to out. Close stops it.
func NewWriter(out io.Writer) *Writer {
	w := &Writer{out: out, wake: make(chan struct{}, 1), finished: make(chan struct{})}
	go w.drain()
	return w
}

// Write queues a copy of p (zap reuses its buffer) and never blocks on out.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closing || len(w.queue) >= maxQueuedLines || w.queued+len(p) > maxQueuedBytes {
		w.dropped++
		w.mu.Unlock()
		return len(p), nil
	}
	var line []byte
	if n := len(w.free); n > 0 {
		line, w.free = w.free[n-1][:0], w.free[:n-1]
	}
	line = append(line, p...)
	w.queue = append(w.queue, line)
	w.queued += len(line)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // already woken; the drainer takes everything queued
	}
	return len(p), nil
}

// Sync is a no-op: lines are written as fast as out takes them, and zap's Sync on a pipe
// or terminal would only return EINVAL.
func (w *Writer) Sync() error { return nil }

// Dropped reports how many lines were dropped or lost and not reported yet.
func (w *Writer) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped + w.unreported
}

// Close stops taking lines and waits up to timeout for the queued ones to be written. A
// stderr that nobody reads must not keep PID 1 from exiting, so past the timeout the rest is
// abandoned (the writing goroutine ends when the process does).
func (w *Writer) Close(timeout time.Duration) {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.finished:
	case <-t.C:
	}
}

func (w *Writer) drain() {
	defer close(w.finished)
	var batch [][]byte
	chunk := make([]byte, 0, pipeBuf)
	for range w.wake {
		for {
			w.mu.Lock()
			batch, w.queue = w.queue, batch[:0]
			w.queued = 0
			dropped := w.dropped
			w.dropped = 0
			closing := w.closing
			w.mu.Unlock()
			if len(batch) == 0 && dropped == 0 {
				if closing {
					return
				}
				break
			}
			var lost int
			chunk, lost = w.writeLines(batch, chunk[:0])
			w.mu.Lock()
			w.unreported += dropped + uint64(lost)
			unreported := w.unreported
			w.mu.Unlock()
			if unreported > 0 {
				// A report that fails too is tried again with the next lines, not at once: a
				// broken stderr must not make this goroutine spin.
				// One the sink kept the rest of (cut by a full disk) is delivered: it ends
				// the report first once the stream takes writes again.
				report := fmt.Appendf(nil, `{"level":"warn","ts":%q,"msg":"log lines dropped: stderr was not read fast enough","dropped":%d}`+"\n",
					time.Now().UTC().Format(time.RFC3339Nano), unreported)
				if n, err := w.out.Write(report); err == nil || n == len(report) {
					w.mu.Lock()
					w.unreported -= unreported
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			for _, line := range batch {
				if cap(line) <= maxFreeLineCap && len(w.free) < maxFreeLines {
					w.free = append(w.free, line)
				}
			}
			w.mu.Unlock()
			clear(batch)
		}
	}
}

// pipeBuf is PIPE_BUF on Linux: a write of at most this many bytes to a pipe is never split
// by another process's writes. Daemons with log = "inherit" write to the same stderr.
const pipeBuf = 4096

// writeLines writes the batch's lines gathered into as few writes as keep each write whole
// lines of at most pipeBuf bytes; a longer line goes out alone, whole. A burst (a
// hundred daemons stopping logs three hundred lines) costs a few system calls and wakes the
// reader of the pipe a few times, not once a line. A failed write (EPIPE on a closed
// stderr, ENOSPC on a full disk) loses the lines after what it wrote, counted in lost: they
// are reported with the dropped ones once stderr takes lines again. It returns chunk, the
// gathering buffer, for reuse.
func (w *Writer) writeLines(batch [][]byte, chunk []byte) (_ []byte, lost int) {
	// The lines lost to a failed write are those after what it wrote (the sink keeps and
	// finishes a line the failure cut: see daemonlog.Sink.Write).
	write := func(p []byte) {
		if n, err := w.out.Write(p); err != nil {
			lost += bytes.Count(p[min(n, len(p)):], []byte{'\n'})
		}
	}
	flush := func() {
		write(chunk)
		chunk = chunk[:0]
	}
	for _, line := range batch {
		if len(chunk) > 0 && len(chunk)+len(line) > pipeBuf {
			flush()
		}
		if len(line) > pipeBuf {
			write(line)
			continue
		}
		chunk = append(chunk, line...)
	}
	if len(chunk) > 0 {
		flush()
	}
	return chunk[:0], lost
}
