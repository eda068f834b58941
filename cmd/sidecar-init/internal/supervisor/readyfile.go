package supervisor

import (
	"errors"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/readyfile"
	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// readyFileOps is what is done to the ready file: *readyfile.File, or in a test one whose
// calls block or fail.
type readyFileOps interface {
	Write(content []byte) error
	Remove() error
	Path() string
}

// openReadyFile is the ready file at path, nil for none (never a nil *readyfile.File in the
// interface, which would not compare equal to nil).
func openReadyFile(path string) readyFileOps {
	if f := readyfile.Open(path); f != nil {
		return f
	}
	return nil
}

// readyFileRetry is when a failed write or removal of the ready file is first tried again
// while the loop's word stands: `health` answers meanwhile, and the file must follow it once
// it can (its directory mounted or made late, a full disk freed, a volume back from an
// error). The wait doubles with each failure up to readyFileRetryMax, so a path that never
// works (a symlink the walk refuses) does not wake an idle supervisor every second.
const (
	readyFileRetry    = time.Second
	readyFileRetryMax = 30 * time.Second
)

// readyFileRetryAfter is the wait after the nth failure in a row (n ≥ 1): 1 s, 2 s, 4 s …
// up to readyFileRetryMax (the shift stops at 2⁵ s, past it).
func readyFileRetryAfter(n int) time.Duration {
	return min(readyFileRetry<<min(n-1, 5), readyFileRetryMax)
}

// readyFileExitWait bounds the wait, at exit, for the ready file's last removal, as the
// other exit waits are bounded (logDrainTimeout): a file system that stopped answering must
// not hold the exit. It runs beside the drain of the log pipes, so the two cost 300 ms at
// most together and a shutdown stays within the grace plus 1 s.
const readyFileExitWait = 300 * time.Millisecond

// readyFileWorker owns the ready file. Every operation on it (the walk from / with openat
// and fstat, then a create and a rename, or an unlink) is a system call that waits for the
// file system, and on a mount that stops answering (an NFS server gone, a FUSE daemon
// stuck) it does not return. Made by the loop, it froze the loop: no stop signal acted on,
// no reap, no control socket, no daemon stopped. So the loop only says what the file should
// say, and this goroutine makes it so and retries what failed: an operation that cannot
// finish leaves the file out of date, nothing more.
type readyFileWorker struct {
	file readyFileOps
	log  *zlog.Logger
	// want is the loop's word: every daemon ready or not. One slot, and the loop replaces a
	// word the worker has not taken yet: only the latest matters, and the loop never waits
	// for a worker that is busy (or stuck).
	want chan bool
	exit chan struct{} // closed by the loop as it ends: remove the file, then end
	done chan struct{} // closed by the worker as it ends
	// dirWarned: the path was found to be a directory, and said so; once a run is enough,
	// the path will not stop being one. Owned by the worker.
	dirWarned bool
}

// startReadyFileWorker starts the worker for file (nil: no ready file, no worker). It does
// nothing until told.
func startReadyFileWorker(file readyFileOps, log *zlog.Logger) *readyFileWorker {
	if file == nil {
		return nil
	}
	w := &readyFileWorker{file: file, log: log, want: make(chan bool, 1), exit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// set says whether the file should say ready. Only the loop calls it, so the slot it has
// emptied is still empty when it sends: it never blocks.
func (w *readyFileWorker) set(ready bool) {
	if w == nil {
		return
	}
	select {
	case <-w.want: // a word not taken yet: this one replaces it
	default:
	}
	w.want <- ready
}

// end asks for the last removal and the worker's end; awaitEnd waits for them.
func (w *readyFileWorker) end() {
	if w != nil {
		close(w.exit)
	}
}

// awaitEnd waits until the worker has ended, or until deadline: a removal stuck in the
// kernel is left there, and the file may go on saying ready, which the log says.
func (w *readyFileWorker) awaitEnd(deadline time.Time) {
	if w == nil {
		return
	}
	select {
	case <-w.done:
		// Done already: said before the timer, which may have expired too (the drain of
		// the log pipes beside it can use up the whole bound) and would win half the time.
		return
	default:
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	select {
	case <-w.done:
	case <-timeout.C:
		w.log.Warn("the ready file was not removed in time at exit: its file system does not answer; it may still say ready",
			zlog.String("path", w.file.Path()), zlog.Duration("waited", readyFileExitWait))
	}
}

// run applies the loop's latest word, and tries again after a failure (1 s, doubling to
// 30 s) until it succeeds or a new word comes. Idle when there is nothing to do.
func (w *readyFileWorker) run() {
	defer close(w.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var (
		ready    bool             // the loop's latest word
		failures int              // failed attempts at it in a row
		retryC   <-chan time.Time // retry.C while a retry is due, else nil
	)
	for {
		select {
		case ready = <-w.want:
			failures = 0
		case <-retryC:
		case <-w.exit:
			// Whatever the last word: at exit nothing is ready any more.
			w.remove(0)
			return
		}
		retryC = nil
		var ok bool
		if ready {
			ok = w.write(failures)
		} else {
			ok = w.remove(failures)
		}
		if ok {
			failures = 0
			continue
		}
		failures++
		// Go 1.23 timers: Reset leaves no stale tick of an earlier setting in retry.C.
		retry.Reset(readyFileRetryAfter(failures))
		retryC = retry.C
	}
}

// write writes the ready file and reports whether it did (logged by attempted).
func (w *readyFileWorker) write(failures int) bool {
	err := w.file.Write([]byte(time.Now().UTC().Format(time.RFC3339Nano) + "\n"))
	return w.attempted(err, failures, zapcore.ErrorLevel, "could not write the ready file",
		"; trying again while every daemon is ready (after 1 s, doubling to 30 s)", "wrote the ready file")
}

// remove removes the ready file and reports whether it is gone (or never ours: a
// directory), as write does: a failure is tried again, or the file would say ready while
// `health` does not (a volume's passing error, EIO or ESTALE, made it stay for good).
func (w *readyFileWorker) remove(failures int) bool {
	err := w.file.Remove()
	if errors.Is(err, readyfile.ErrIsDirectory) {
		// Never ours: a mistyped path must not delete a directory. Nothing to try again.
		if !w.dirWarned {
			w.dirWarned = true
			w.log.Warn("the ready file's path is a directory; leaving it", zlog.String("path", w.file.Path()))
		}
		return true
	}
	return w.attempted(err, failures, zapcore.WarnLevel, "could not remove the ready file", "", "removed the ready file")
}

// attempted logs an attempt and says whether it succeeded: its first failure in a row at
// level first (failed, then firstTail), the next ones at debug (failed, again), and a
// success after failures as done, with how many there were.
func (w *readyFileWorker) attempted(err error, failures int, first zapcore.Level, failed, firstTail, done string) bool {
	path := zlog.String("path", w.file.Path())
	if err != nil {
		level, msg := zapcore.DebugLevel, failed+", again"
		if failures == 0 {
			level, msg = first, failed+firstTail
		}
		if ce := w.log.Check(level, msg); ce != nil {
			ce.Write(path, zlog.Error(err))
		}
		return false
	}
	if failures > 0 {
		w.log.Info(done, path, zlog.Int("failed_attempts", failures))
	}
	return true
}

// RemoveReadyFile removes the ready file at path ("": none), so that it never says ready
// while nothing is: for a start that fails before a supervisor runs (main). It waits
// readyFileExitWait at most, as a supervisor's exit does: a start on a hung mount must
// still end.
func RemoveReadyFile(path string, log *zlog.Logger) {
	w := startReadyFileWorker(openReadyFile(path), log)
	deadline := time.Now().Add(readyFileExitWait)
	w.end()
	w.awaitEnd(deadline)
}
