// Package notify POSTs daemon events to the supervise sidecar, without ever blocking the
// event loop: Send only queues; one goroutine sends, retries with backoff, and when the
// queue is full drops the oldest event and reports how many were dropped with the next.
package notify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// Event is one daemon event as POSTed, one JSON object per request.
type Event struct {
	Seq           uint64    `json:"seq"`
	Time          time.Time `json:"time"`
	Daemon        string    `json:"daemon"`
	Pid           int       `json:"pid,omitempty"`
	Event         string    `json:"event"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	ExitCode      *int      `json:"exit_code,omitempty"`
	Signal        string    `json:"signal,omitempty"`
	Restarts      int       `json:"restarts"`
	NextRestartIn string    `json:"next_restart_in,omitempty"`
	// Reason is the transition's reason as the log gives it ("shutdown", "operator stop",
	// "oneshot finished": a oneshot's exit with status 0 is its success, not a death).
	Reason string `json:"reason,omitempty"`
	// Dropped counts events dropped (queue full) since the previous one that was sent.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Tuning; the bounds the issue asks for.
const (
	QueueSize      = 1024
	requestTimeout = 2 * time.Second
	retryFirst     = 100 * time.Millisecond
	retryMax       = 5 * time.Second
)

// Notifier sends events to one URL.
type Notifier struct {
	url   string // for logs
	token string
	// network and address to dial, and the request's Host and path.
	network, address, host, path string
	log                          *zlog.Logger

	mu      sync.Mutex
	queue   []Event // guarded by mu; oldest first
	dropped uint64  // guarded by mu: dropped and not reported yet
	seq     uint64  // guarded by mu
	// A run of drops (overloaded: the queue filled and has not emptied since) is said once
	// as it begins, and its count at most once a dropLogEvery and when it ends: an endpoint
	// slower than the events for days must not write a warning for every event (a soak
	// test saw 4.4 a second). unlogged: reported in events, not logged yet. Guarded by mu.
	overloaded bool
	unlogged   uint64
	loggedAt   time.Time
	closing    bool // guarded by mu
	// inFlight is the event being sent (nil between events), for Close's count: one still
	// being tried when Close gives up is as undelivered as a queued one. Guarded by mu.
	inFlight *Event

	wake     chan struct{}
	quit     chan struct{} // closed by Close: stop retrying, flush what can be flushed
	finished chan struct{}
}

// New starts a notifier for rawURL (http://... or unix:/path). tokenFile, when set, holds a
// bearer token; it is read once here and never logged.
func New(rawURL, tokenFile string, log *zlog.Logger) (*Notifier, error) {
	n := &Notifier{url: rawURL, log: log, wake: make(chan struct{}, 1), quit: make(chan struct{}), finished: make(chan struct{})}
	if err := n.setTarget(rawURL); err != nil {
		return nil, err
	}
	if tokenFile != "" {
		data, err := readTokenFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("notify_token_file: %w", err)
		}
		n.token = strings.TrimSpace(string(data))
		if err := checkToken(n.token); err != nil {
			// Never the token itself in the message: it goes to the log.
			return nil, fmt.Errorf("notify_token_file %s: %w", tokenFile, err)
		}
	}
	go n.run()
	return n, nil
}

// maxTokenFile bounds what is read of the token file: a bearer token is a line, not a
// megabyte.
const maxTokenFile = 64 << 10

// readTokenFile reads a regular file only. Opened O_NONBLOCK, so a FIFO at the path (or a
// device) cannot hold the start-up, before any daemon exists, and with it every stop
// signal: an open of a FIFO with no writer would wait for one for ever.
func readTokenFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): the token must be in a file", path, info.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err == nil && len(data) > maxTokenFile {
		return nil, fmt.Errorf("%s is longer than %d bytes: a token is one line", path, maxTokenFile)
	}
	return data, err
}

// checkToken refuses a token that would turn authentication off (empty) or break the
// request's headers: a control character would end the Authorization line early, and the
// rest would be headers of its own; bytes past ASCII (a C1 control such as U+0085, invalid
// UTF-8) go out raw and mean different things to different servers. A bearer token is
// printable ASCII (RFC 6750's b64token is a subset).
func checkToken(token string) error {
	if token == "" {
		return errors.New("the file is empty: no bearer token (leave notify_token_file unset to send none)")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c < 0x20 || c > 0x7e {
			return errors.New("the token holds a control character, a line break or a byte past ASCII; a bearer token is one line of printable ASCII")
		}
	}
	return nil
}

// dropLogEvery bounds how often the count of a run of drops is logged (a variable for the
// tests).
var dropLogEvery = time.Minute

// Send queues ev with the next sequence number and returns at once. When the queue is full
// the oldest queued event is dropped and counted; the first drop of a run is logged at
// once (the count goes out with the next event taken, and is logged as next says).
func (n *Notifier) Send(ev Event) {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return
	}
	n.seq++
	ev.Seq = n.seq
	firstDrop := false
	if len(n.queue) >= QueueSize {
		n.queue = n.queue[1:]
		n.dropped++
		firstDrop, n.overloaded = !n.overloaded, true
	}
	n.queue = append(n.queue, ev)
	n.mu.Unlock()
	if firstDrop {
		n.log.Warn("notification queue full: dropping the oldest events until the supervise endpoint takes them",
			zlog.String("url", n.url), zlog.Int("queue", QueueSize))
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Close stops taking events and gives the sender up to timeout to deliver what is queued,
// then logs what was never delivered: still queued, and dropped since the last delivery.
func (n *Notifier) Close(timeout time.Duration) {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	close(n.quit)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-n.finished:
	case <-t.C:
	}
	n.mu.Lock()
	if n.unlogged > 0 {
		n.logDropped() // reported in events that were delivered (or refused), not logged yet
	}
	left, dropped := len(n.queue), n.dropped
	for _, ev := range n.queue {
		dropped += ev.Dropped // taken for sending with its count, then put back
	}
	if n.inFlight != nil {
		left++
		dropped += n.inFlight.Dropped
	}
	n.mu.Unlock()
	if left > 0 || dropped > 0 {
		n.log.Warn("notifications not delivered before exit", zlog.Int("undelivered", left),
			zlog.Uint64("dropped", dropped), zlog.String("url", n.url))
	}
}

// next takes the oldest event, stamping it with the drop count it must report.
func (n *Notifier) next() (Event, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) == 0 {
		return Event{}, false
	}
	ev := n.queue[0]
	n.queue = n.queue[1:]
	if n.dropped > 0 {
		ev.Dropped = n.dropped
		n.dropped = 0
	}
	n.inFlight = &ev
	return ev, true
}

// queued says events wait to be taken.
func (n *Notifier) queued() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue) > 0
}

// logDropped logs the drops reported in events since the last such line. With mu held.
func (n *Notifier) logDropped() {
	n.log.Warn("notifications dropped: the supervise endpoint did not keep up", zlog.Uint64("dropped", n.unlogged))
	n.unlogged, n.loggedAt = 0, time.Now()
}

func (n *Notifier) run() {
	defer close(n.finished)
	for {
		ev, ok := n.next()
		if !ok {
			select {
			case <-n.wake:
				continue
			case <-n.quit:
				// An event Sent between the look at the queue and this select, then Close:
				// both cases are ready, and the select picks either. Quit with it queued and
				// a healthy endpoint's event would be reported as never delivered.
				if n.queued() {
					continue
				}
				return
			}
		}
		if !n.deliver(ev) {
			return
		}
	}
}

// deliver retries one event with backoff until it is accepted (true), or until Close
// while it fails (false: the sender gives up; Close reports what is left).
func (n *Notifier) deliver(ev Event) bool {
	body, err := json.Marshal(ev)
	if err != nil {
		n.log.Error("notification not encodable", zlog.Error(err))
		n.done()
		return true
	}
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		err := n.post(body)
		if err == nil {
			n.done()
			return true
		}
		var refused rejected
		if errors.As(err, &refused) && refused.final() {
			// Sent again, it would be refused again, and hold every later event back.
			n.log.Error("notification refused by the supervise endpoint; dropped", zlog.String("url", n.url),
				zlog.Uint64("seq", ev.Seq), zlog.String("daemon", ev.Daemon), zlog.Error(err))
			n.done()
			return true
		}
		if attempt == 1 || attempt%10 == 0 {
			n.log.Warn("notification not delivered; retrying", zlog.String("url", n.url), zlog.Uint64("seq", ev.Seq),
				zlog.Int("attempt", attempt), zlog.Error(err))
		}
		select {
		case <-n.quit:
			// Shutting down: keep the event at the head so Close counts it as undelivered.
			n.mu.Lock()
			n.queue = append([]Event{ev}, n.queue...)
			n.inFlight = nil
			n.mu.Unlock()
			return false
		case <-time.After(delay):
		}
		// Meanwhile Send keeps queueing, dropping the oldest when full; the count goes out
		// with the next event delivered.
		delay = min(2*delay, retryMax)
	}
}

// done: the event in flight is delivered, or dropped and logged.
// done ends the event in flight, delivered or refused for good: the drops it reported are
// logged now or with a later line of the run (an event put back at Close is counted by
// Close's own line instead, once).
func (n *Notifier) done() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inFlight != nil {
		n.unlogged += n.inFlight.Dropped
	}
	n.inFlight = nil
	runEnds := len(n.queue) == 0
	if n.unlogged > 0 && (runEnds || time.Since(n.loggedAt) >= dropLogEvery) {
		n.logDropped()
	}
	if runEnds {
		n.overloaded = false
	}
}

// setTarget splits http://host[:port]/path or unix:/path into what post dials and sends.
func (n *Notifier) setTarget(rawURL string) error {
	if sock, ok := strings.CutPrefix(rawURL, "unix:"); ok {
		n.network, n.address, n.host, n.path = "unix", sock, "localhost", "/"
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("notify url %q: want http://host[:port]/path or unix:/path", rawURL)
	}
	n.network, n.address, n.host, n.path = "tcp", u.Host, u.Host, u.RequestURI()
	if u.Port() == "" {
		n.address = net.JoinHostPort(u.Hostname(), "80")
	}
	return nil
}

// post sends one event as an HTTP/1.1 POST on a fresh connection and accepts any 2xx.
// It is written by hand rather than with net/http: one request shape is all it needs, and
// net/http costs the binary about 1.5 MB and the resident set about 1 MB (issue 7's
// footprint goals).
func (n *Notifier) post(body []byte) error {
	// One deadline for the whole request, connect included: the README's "2 s per request".
	deadline := time.Now().Add(requestTimeout)
	conn, err := (&net.Dialer{Deadline: deadline}).Dial(n.network, n.address)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(deadline)
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		n.path, n.host, len(body))
	if n.token != "" {
		req.WriteString("Authorization: Bearer " + n.token + "\r\n")
	}
	req.WriteString("Connection: close\r\nUser-Agent: sidecar-init\r\n\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return err
	}
	// Only the status lines are read, at most maxStatusLine of each: an endpoint that
	// streams an endless line must not grow PID 1's memory.
	r := bufio.NewReaderSize(conn, maxStatusLine)
	for interim := 0; ; interim++ {
		code, status, err := readStatus(r)
		switch {
		case err != nil:
			return err
		case code/100 == 2:
			return nil
		case code/100 == 1 && code != 101 && interim < maxInterim:
			// An interim response (100 Continue, 103 Early Hints): the final one follows
			// (RFC 9110, 15.2). Taken for a refusal, the event was sent again, and again.
			if err := skipHeaders(r); err != nil {
				return err
			}
			continue
		}
		return rejected{code: code, status: status}
	}
}

// readStatus reads a status line ("HTTP/1.1 204 No Content") and returns its code and
// what follows the version.
func readStatus(r *bufio.Reader) (int, string, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return 0, "", fmt.Errorf("not an HTTP response: a status line longer than %d bytes", maxStatusLine)
	case err != nil:
		return 0, "", fmt.Errorf("reading the response: %w", err)
	}
	status := string(line)
	fields := strings.Fields(status)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/1.") {
		return 0, "", fmt.Errorf("not an HTTP response: %q", strings.TrimSpace(status))
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", fmt.Errorf("not an HTTP response: %q", strings.TrimSpace(status))
	}
	return code, strings.Join(fields[1:], " "), nil
}

// skipHeaders reads past an interim response's header lines, up to the empty line that
// ends them. A line longer than the buffer is read and dropped a buffer at a time.
func skipHeaders(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			return fmt.Errorf("reading the response: %w", err)
		}
		if !long && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// maxInterim bounds the interim responses taken before the final one; past it the next
// status line is the answer, a refusal unless it is a 2xx.
const maxInterim = 8

// maxStatusLine bounds the response's status line ("HTTP/1.1 204 No Content").
const maxStatusLine = 512

// rejected is an answer other than 2xx.
type rejected struct {
	code   int
	status string
}

func (r rejected) Error() string { return "HTTP " + r.status }

// final: sent again, this request would get the same answer, so it is not: a 4xx (the
// endpoint refuses it as such), a 3xx (redirects are not followed; a notify_url missing
// its trailing slash, say) or a 1xx left without a final answer. 408 (timeout) and 429 (too many requests) are about the moment,
// and so is every 5xx.
func (r rejected) final() bool {
	switch r.code / 100 {
	case 1, 3:
		// 1xx here: 101 (no upgrade was asked for) or one interim response too many.
		return true
	case 4:
		return r.code != 408 && r.code != 429
	}
	return false
}
