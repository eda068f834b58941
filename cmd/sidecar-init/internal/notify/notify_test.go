package notify

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// collector is a supervise endpoint that keeps what it receives.
type collector struct {
	mu       sync.Mutex
	events   []Event
	auth     []string
	down     atomic.Bool
	attempts atomic.Int64
	// refuse answers with this status the events of the daemon named "refused".
	refuse int
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.attempts.Add(1)
	if c.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ev.Daemon == "refused" {
		http.Error(w, "refused", c.refuse)
		return
	}
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	c.mu.Unlock()
}

func (c *collector) received() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

func (c *collector) waitFor(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(c.received()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d events, want %d", len(c.received()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c.received()
}

func checkSeqOrder(t *testing.T, events []Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		if events[i].Seq <= events[i-1].Seq {
			t.Fatalf("event %d has seq %d after %d: out of order", i, events[i].Seq, events[i-1].Seq)
		}
	}
}

func TestHTTPDeliversInSeqOrderWithToken(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := New(srv.URL+"/events", token, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	code := 3
	for i := 0; i < 50; i++ {
		n.Send(Event{Daemon: "egress", Event: "fail", From: "running", To: "backoff", ExitCode: &code, NextRestartIn: "1s"})
	}
	events := c.waitFor(t, 50)
	n.Close(time.Second)
	checkSeqOrder(t, events)
	if events[0].Seq != 1 || events[49].Seq != 50 || *events[0].ExitCode != 3 || events[0].NextRestartIn != "1s" {
		t.Errorf("first/last events: %+v / %+v", events[0], events[49])
	}
	for _, a := range c.auth {
		if a != "Bearer s3cret" {
			t.Fatalf("Authorization = %q", a)
		}
	}
}

func TestUnixSocketDelivers(t *testing.T) {
	c := &collector{}
	sock := filepath.Join(t.TempDir(), "supervise.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	n, err := New("unix:"+sock, "", zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		n.Send(Event{Daemon: "git-gate", Event: "spawn"})
	}
	checkSeqOrder(t, c.waitFor(t, 20))
	n.Close(time.Second)
}

// With the endpoint down, Send never blocks, the oldest events are dropped once the queue is
// full, and the count arrives with the first event delivered after it recovers.
func TestDownEndpointDropsOldestAndReportsIt(t *testing.T) {
	c := &collector{}
	c.down.Store(true)
	srv := httptest.NewServer(c)
	defer srv.Close()
	n, err := New(srv.URL, "", zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// The first event is in flight (being retried) before the flood: then exactly the
	// newest QueueSize of the flood wait in the queue and the 100 before them are dropped.
	n.Send(Event{Daemon: "egress", Event: "spawn"})
	for c.attempts.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const flood, extra = QueueSize + 100, 100
	for i := 0; i < flood; i++ {
		n.Send(Event{Daemon: "egress", Event: "spawn"})
	}
	c.down.Store(false)
	const sent = flood + 1
	events := c.waitFor(t, sent-extra)
	n.Close(time.Second)
	checkSeqOrder(t, events)
	var dropped uint64
	for i, ev := range events {
		dropped += ev.Dropped
		if i > 0 && ev.Seq-events[i-1].Seq-1 != ev.Dropped {
			t.Errorf("seq gap %d→%d but dropped = %d", events[i-1].Seq, ev.Seq, ev.Dropped)
		}
	}
	if dropped != extra || len(events) != sent-extra {
		t.Fatalf("received %d events reporting %d dropped; want %d and %d", len(events), dropped, sent-extra, extra)
	}
}

func TestCloseIsBoundedWhenNobodyListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nobody listens there now: every POST is refused
	n, err := New("http://"+addr+"/", "", zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	n.Send(Event{Daemon: "a", Event: "spawn"})
	start := time.Now()
	n.Close(300 * time.Millisecond)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
}

func TestMissingTokenFile(t *testing.T) {
	if _, err := New("http://127.0.0.1:1/", "/nonexistent/token", zlog.Nop()); err == nil {
		t.Fatal("want an error for a missing token file")
	}
}

// A FIFO (or anything but a regular file) at the token's path is an error at once, not a
// start-up that waits for a writer for ever, deaf to SIGTERM. Found by a review.
func TestTokenFileMustBeARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "token")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := New("http://127.0.0.1:1/", fifo, zlog.Nop())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("New with a FIFO token file = %v, want an error saying it is not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("New blocked on a FIFO token file")
	}
	if _, err := New("http://127.0.0.1:1/", t.TempDir(), zlog.Nop()); err == nil {
		t.Fatal("New with a directory as the token file: no error")
	}
}

// A token file that is empty, or whose token would break the request's headers, is a
// start-up error that never shows the token.
func TestTokenFileChecks(t *testing.T) {
	for name, content := range map[string]string{
		"empty":      " \n",
		"line break": "s3cret\r\nX-Injected: 1\n",
		"control":    "s3\x00cret",
		"C1 control": "s3\u0085X-Injected: 1cret",
		"DEL":        "s3\x7fcret", // a control character too (RFC 9110 field values exclude it)
		"not UTF-8":  "s3\xff\xfecret",
		// Read in full or refused: cut at the read's bound, this passed as one line.
		"too long": strings.Repeat("s", 64<<10) + "\nsecond line cret",
	} {
		t.Run(name, func(t *testing.T) {
			token := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(token, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := New("http://127.0.0.1:1/", token, zlog.Nop())
			if err == nil || !strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "cret") {
				t.Fatalf("New = %v; want an error naming the file, never the token", err)
			}
		})
	}
}

// An event the endpoint refuses as such (4xx) is logged and dropped, not retried for ever
// in front of every later event; 429 and 408 are retried.
func TestRefusedEventIsDropped(t *testing.T) {
	for _, tc := range []struct {
		status  int
		retried bool
	}{{http.StatusBadRequest, false}, {http.StatusNotFound, false}, {http.StatusPermanentRedirect, false}, {http.StatusTooManyRequests, true}, {http.StatusRequestTimeout, true}} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			c := &collector{refuse: tc.status}
			srv := httptest.NewServer(c)
			defer srv.Close()
			core, logs := observer.New(zapcore.InfoLevel)
			n, err := New(srv.URL, "", zlog.New(core))
			if err != nil {
				t.Fatal(err)
			}
			n.Send(Event{Daemon: "refused", Event: "spawn"})
			n.Send(Event{Daemon: "egress", Event: "spawn"})
			if tc.retried {
				deadline := time.Now().Add(20 * time.Second)
				for c.attempts.Load() < 3 {
					if time.Now().After(deadline) {
						t.Fatalf("a %d was not retried", tc.status)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if len(c.received()) != 0 {
					t.Fatalf("the event behind a %d went first", tc.status)
				}
				n.Close(10 * time.Millisecond)
				return
			}
			events := c.waitFor(t, 1)
			n.Close(time.Second)
			if events[0].Daemon != "egress" || c.attempts.Load() != 2 {
				t.Fatalf("received %+v after %d attempts; want egress's event after one refused attempt", events, c.attempts.Load())
			}
			if logs.FilterMessage("notification refused by the supervise endpoint; dropped").Len() != 1 {
				t.Errorf("the dropped event was not logged: %v", logs.All())
			}
		})
	}
}

// oneAnswer is a notifier whose endpoint takes one connection and answers it with answer.
func oneAnswer(t *testing.T, answer func(net.Conn)) *Notifier {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		answer(conn)
	}()
	n := &Notifier{}
	if err := n.setTarget("http://" + ln.Addr().String() + "/"); err != nil {
		t.Fatal(err)
	}
	return n
}

// An endpoint that answers with an endless status line gets an error after a bounded read,
// not PID 1's memory.
func TestEndlessStatusLineIsBounded(t *testing.T) {
	n := oneAnswer(t, func(conn net.Conn) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		_, _ = conn.Write([]byte("HTTP/1.1 200 "))
		for i := 0; i < 1024; i++ { // 64 MiB, unless the client hangs up first
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	})
	if err := n.post([]byte("{}")); err == nil || !strings.Contains(err.Error(), "status line longer than") {
		t.Fatalf("post = %v; want a too-long status line", err)
	}
}

// Events never delivered are logged at exit: those still queued and those dropped.
func TestCloseReportsWhatWasNotDelivered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // every POST is refused
	core, logs := observer.New(zapcore.InfoLevel)
	n, err := New("http://"+addr+"/", "", zlog.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < QueueSize+10; i++ {
		n.Send(Event{Daemon: "a", Event: "spawn"})
	}
	// At least one: the sender taking an event mid-run reports the drops so far, and the
	// drops after it start a run of their own.
	if full := logs.FilterMessage("notification queue full: dropping the oldest events until the supervise endpoint takes them"); full.Len() < 1 {
		t.Errorf("no queue-full line for the run of drops")
	}
	n.Close(50 * time.Millisecond)
	lost := logs.FilterMessage("notifications not delivered before exit").All()
	if len(lost) != 1 {
		t.Fatalf("no line about the lost events: %v", logs.All())
	}
	m := lost[0].ContextMap()
	// One in flight went back to the head of the queue; between 9 and 10 were dropped
	// (the sender may have taken the first before the queue filled).
	undelivered, dropped := m["undelivered"].(int64), m["dropped"].(uint64)
	if undelivered+int64(dropped) != QueueSize+10 || dropped < 9 {
		t.Fatalf("undelivered %d, dropped %d; want them to add up to %d", undelivered, dropped, QueueSize+10)
	}
}

// An event Sent after the sender found the queue empty, but before it waited, and then
// Close: the sender sees its wake-up and the quit at once and must take the event, not
// quit with it. The test puts the event in the queue without the wake-up, once the sender
// waits, which leaves the quit alone: the case the select could pick.
func TestCloseDeliversAnEventSentJustBefore(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	core, logs := observer.New(zapcore.InfoLevel)
	n, err := New(srv.URL+"/events", "", zlog.New(core))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the sender is waiting on an empty queue by then
	n.mu.Lock()
	n.seq++
	n.queue = append(n.queue, Event{Seq: n.seq, Daemon: "egress", Event: "spawn"})
	n.mu.Unlock()
	n.Close(5 * time.Second)
	if got := c.received(); len(got) != 1 {
		t.Errorf("the endpoint received %d events, want the one sent before Close", len(got))
	}
	if lost := logs.FilterMessage("notifications not delivered before exit"); lost.Len() != 0 {
		t.Errorf("an event a healthy endpoint took was reported lost: %v", lost.All()[0].ContextMap())
	}
}

// An event still being sent when Close gives up counts as undelivered too.
func TestCloseCountsTheEventInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() { // accepts, reads nothing, never answers
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn
		}
	}()
	core, logs := observer.New(zapcore.InfoLevel)
	n, err := New("http://"+ln.Addr().String()+"/", "", zlog.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		n.Send(Event{Daemon: "a", Event: "spawn"})
	}
	conn := <-accepted // the first is in flight
	defer func() { _ = conn.Close() }()
	n.Close(100 * time.Millisecond)
	lost := logs.FilterMessage("notifications not delivered before exit").All()
	if len(lost) != 1 || lost[0].ContextMap()["undelivered"] != int64(3) {
		t.Fatalf("lines %v; want undelivered 3 (two queued, one in flight)", lost)
	}
}

// Interim responses (1xx but 101) come before the final one and are read past, their
// headers however long; the final status decides. A 101, or a ninth interim response,
// is a refusal that sending again would not change.
func TestInterimResponsesAreReadPast(t *testing.T) {
	interim := func(n int) string {
		return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </"+strings.Repeat("x", 2*maxStatusLine)+">; rel=preload\r\n\r\n", n)
	}
	for _, tc := range []struct {
		name     string
		response string
		want     int // 0: accepted
		final    bool
	}{
		{"103 then 204", interim(1) + "HTTP/1.1 204 No Content\r\n\r\n", 0, false},
		{"100 Continue then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false},
		{"eight, then 204", interim(maxInterim) + "HTTP/1.1 204 No Content\r\n\r\n", 0, false},
		{"two, then 503", interim(2) + "HTTP/1.1 503 Service Unavailable\r\n\r\n", 503, false},
		{"one too many", interim(maxInterim+1) + "HTTP/1.1 204 No Content\r\n\r\n", 103, true},
		{"101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 101, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := oneAnswer(t, func(conn net.Conn) {
				if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
					_ = req.Body.Close()
					_, _ = conn.Write([]byte(tc.response))
				}
			})
			err := n.post([]byte("{}"))
			var r rejected
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("post = %v; want accepted", err)
			case tc.want != 0 && (!errors.As(err, &r) || r.code != tc.want || r.final() != tc.final):
				t.Fatalf("post = %v; want a refusal %d, final %v", err, tc.want, tc.final)
			}
		})
	}
}

// An endpoint slower than the events for a long time makes one run of drops: said once as
// it begins, its count at most once a dropLogEvery and when the queue empties, not a pair
// of warnings for every event taken (a soak test: 4.4 warnings a second, for as long as
// the endpoint lags). The counts logged add up to the drops, as the events report them.
func TestARunOfDropsIsLoggedSparingly(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	n := &Notifier{log: zlog.New(core), wake: make(chan struct{}, 1)} // no sender: the test takes
	full := func() int {
		return logs.FilterMessage("notification queue full: dropping the oldest events until the supervise endpoint takes them").Len()
	}
	var reported uint64
	take := func() {
		ev, ok := n.next()
		if !ok {
			t.Fatal("nothing queued")
		}
		reported += ev.Dropped
		n.done() // delivered
	}
	for range QueueSize + 5 {
		n.Send(Event{})
	}
	take()                                // reports 5: the first count of the run is logged at once
	for round := 0; round < 50; round++ { // the endpoint lags: each event taken, two more come
		n.Send(Event{})
		n.Send(Event{})
		take()
	}
	for len(n.queue) > 0 {
		take() // it catches up: the run ends, its count so far is logged
	}
	if got := full(); got != 1 {
		t.Errorf("%d queue-full lines for one run of drops, want 1", got)
	}
	var logged uint64
	lines := logs.FilterMessage("notifications dropped: the supervise endpoint did not keep up").All()
	for _, e := range lines {
		logged += e.ContextMap()["dropped"].(uint64)
	}
	if len(lines) != 2 || logged != reported || reported != 5+50 {
		t.Errorf("%d drop lines adding up to %d, events reporting %d; want 2 lines, 55 drops", len(lines), logged, reported)
	}
	for range QueueSize + 1 { // a new run, once the last one ended
		n.Send(Event{})
	}
	if got := full(); got != 2 {
		t.Errorf("%d queue-full lines after a second run began, want 2", got)
	}
}

// Each drop is counted once in the log: one stamped on an event taken but never delivered
// (Close while it is retried) goes in "notifications not delivered before exit" only, not
// also in a "notifications dropped" line (found by a review: 9 drops logged for 7).
func TestCloseLogsEachDropOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	finished := make(chan struct{})
	close(finished) // no sender: the test takes, as deliver would
	n := &Notifier{log: zlog.New(core), wake: make(chan struct{}, 1), quit: make(chan struct{}), finished: finished}
	for range QueueSize + 5 {
		n.Send(Event{})
	}
	if ev, _ := n.next(); ev.Dropped != 5 {
		t.Fatalf("first taken reports %d", ev.Dropped)
	}
	n.done()      // delivered; its 5 logged at once
	for range 3 { // two more dropped
		n.Send(Event{})
	}
	ev, _ := n.next() // reports 2, within dropLogEvery of the last line: not logged yet
	if ev.Dropped != 2 {
		t.Fatalf("second taken reports %d", ev.Dropped)
	}
	// The endpoint fails it until Close: deliver puts it back at the head, as it does.
	n.mu.Lock()
	n.queue = append([]Event{ev}, n.queue...)
	n.inFlight = nil
	n.mu.Unlock()
	n.Close(0)

	var logged uint64
	for _, msg := range []string{"notifications dropped: the supervise endpoint did not keep up", "notifications not delivered before exit"} {
		for _, e := range logs.FilterMessage(msg).All() {
			logged += e.ContextMap()["dropped"].(uint64)
		}
	}
	if logged != 7 {
		for _, e := range logs.All() {
			t.Log(e.Message, e.ContextMap())
		}
		t.Errorf("the log counts %d drops; 7 events were dropped", logged)
	}
}
