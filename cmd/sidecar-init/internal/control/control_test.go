package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// fakeLoop answers calls the way the supervisor's loop does, from one goroutine.
func fakeLoop(calls <-chan Call, done <-chan struct{}) {
	for {
		select {
		case c := <-calls:
			if c.Request.Cmd == CmdStatus {
				c.Reply <- Response{OK: true, Daemons: []DaemonStatus{{Name: "egress", State: "running", Pid: 7}}}
			} else {
				c.Reply <- Response{OK: true, Message: c.Request.Cmd + " " + c.Request.Name}
			}
		case <-done:
			return
		}
	}
}

func listen(t *testing.T) (string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	calls := make(chan Call)
	done := make(chan struct{})
	go fakeLoop(calls, done)
	s, err := Listen(path, calls, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		close(done)
	})
	return path, s
}

func TestPermissionsAndRoundTrip(t *testing.T) {
	path, _ := listen(t)
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode = %v, %v; want a 0600 socket", info.Mode(), err)
	}
	dir, _ := os.Stat(filepath.Dir(path))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", dir.Mode().Perm())
	}
	resp, err := Do(path, Request{Cmd: CmdStatus}, time.Second)
	if err != nil || !resp.OK || len(resp.Daemons) != 1 || resp.Daemons[0].Pid != 7 {
		t.Fatalf("status = %+v, %v", resp, err)
	}
	resp, err = Do(path, Request{Cmd: CmdRestart, Name: "egress"}, time.Second)
	if err != nil || resp.Message != "restart egress" {
		t.Fatalf("restart = %+v, %v", resp, err)
	}
}

func TestManyClientsAtOnce(t *testing.T) {
	path, _ := listen(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := Do(path, Request{Cmd: CmdStatus}, 5*time.Second)
			if err == nil && !resp.OK {
				err = errors.New(resp.Error)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSilentClientIsDropped(t *testing.T) {
	old := IdleTimeout
	IdleTimeout = 100 * time.Millisecond
	defer func() { IdleTimeout = old }()
	path, _ := listen(t)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("a silent client got an answer")
	} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server never dropped the silent client")
	}
	// And the server still serves others.
	if resp, err := Do(path, Request{Cmd: CmdStatus}, time.Second); err != nil || !resp.OK {
		t.Fatalf("after a silent client: %+v, %v", resp, err)
	}
}

func TestBadRequestsGetAnError(t *testing.T) {
	path, _ := listen(t)
	for _, line := range []string{"not json", `{"cmd":"reboot"}`, `{"cmd":"stop"}`, `{"cmd":"status","name":"x"}`, strings.Repeat("x", 5000)} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fmt.Fprintln(conn, line)
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := conn.Read(buf)
		_ = conn.Close()
		if !strings.Contains(string(buf[:n]), `"ok":false`) || !strings.Contains(string(buf[:n]), `"error"`) {
			t.Errorf("request %.20q: answer %q, want an error", line, buf[:n])
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{`{"cmd":"status"}`, true},
		{`{"cmd":"restart","name":"egress"}`, true},
		{`{"cmd":"start","name":"a"}`, true},
		{`{"cmd":"stop","name":"a"}`, true},
		{`{"cmd":"stop"}`, false},
		{`{"cmd":"status","name":"a"}`, false},
		{`{"cmd":"signal","name":"a","signal":"SIGHUP"}`, true},
		{`{"cmd":"signal","name":"a"}`, false},
		{`{"cmd":"signal","signal":"SIGHUP"}`, false},
		{`{"cmd":"stop","name":"a","signal":"SIGHUP"}`, false},
		{`{"cmd":"status","signal":"SIGHUP"}`, false},
		{`{"cmd":""}`, false},
		{`[]`, false},
		{``, false},
	} {
		_, err := DecodeRequest([]byte(tc.line))
		if (err == nil) != tc.ok || (err != nil && err.Error() == "") {
			t.Errorf("DecodeRequest(%q) = %v, want ok=%v", tc.line, err, tc.ok)
		}
	}
}

func TestListenRefusesALiveSocketAndReplacesAStaleOne(t *testing.T) {
	path, _ := listen(t)
	if _, err := Listen(path, make(chan Call), zlog.Nop()); err == nil || !strings.Contains(err.Error(), "another sidecar-init") {
		t.Fatalf("second Listen on a live socket = %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close() // the file stays, nobody listens: stale
	s, err := Listen(stale, make(chan Call), zlog.Nop())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s.Close()
}

// A listener whose backlog is full (its supervisor stopped or busy) refuses connections with
// EAGAIN, not ECONNREFUSED: it is there, and its socket must not be replaced.
func TestListenLeavesALiveSocketWithAFullBacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(fd) }()
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	// Backlog 0 queues one connection; the next connect gets EAGAIN. Nothing accepts.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	queued, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = queued.Close() }()
	if _, err := net.Dial("unix", path); !errors.Is(err, syscall.EAGAIN) {
		t.Skipf("a full backlog did not refuse with EAGAIN here (%v): nothing to test", err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Listen(path, make(chan Call), zlog.Nop()); err == nil {
		s.Close()
		t.Fatal("Listen replaced a live socket whose backlog was full")
	} else if !strings.Contains(err.Error(), "another sidecar-init") {
		t.Errorf("Listen = %v, want it to say another sidecar-init is there", err)
	}
	if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) {
		t.Errorf("the live socket was removed or replaced (%v)", err)
	}
	if live, err := Answering(path); !live || err != nil {
		t.Errorf("Answering = %v, %v; want true", live, err)
	}
}

func TestDoWithNobodyListening(t *testing.T) {
	_, err := Do(filepath.Join(t.TempDir(), "none.sock"), Request{Cmd: CmdStatus}, time.Second)
	if !errors.Is(err, ErrNotListening) || !strings.Contains(err.Error(), "CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET") {
		t.Fatalf("Do = %v, want ErrNotListening with the fix", err)
	}
}

// failingListener fails its first Accepts with an error, as accept4 does when the process
// is out of file descriptors, then accepts as usual.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// A moment out of file descriptors costs the clients of that moment, not the socket: after
// EMFILE the server retries, and the next client gets its answer.
func TestAcceptSurvivesRunningOutOfFDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	calls := make(chan Call)
	done := make(chan struct{})
	go fakeLoop(calls, done)
	file, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(path, &failingListener{Listener: ln, fails: 3, err: emfile}, file, calls, zlog.Nop())
	defer func() {
		s.Close()
		close(done)
	}()
	resp, err := Do(path, Request{Cmd: CmdStatus}, 5*time.Second)
	if err != nil || !resp.OK {
		t.Fatalf("status after three EMFILEs = %+v, %v; want an answer", resp, err)
	}
}

// Only a stale socket is replaced: a regular file or a directory at the path (a mistyped
// CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET) is refused and left as it was.
func TestListenLeavesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "daemons.toml")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, emptyDir} {
		if s, err := Listen(path, make(chan Call), zlog.Nop()); err == nil {
			s.Close()
			t.Errorf("Listen(%s) replaced what is not a socket", path)
		} else if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen(%s) error %q does not say why", path, err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s is gone: %v", path, err)
		}
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me\n" {
		t.Errorf("the file was changed: %q", data)
	}
}

// Preflight (`sidecar-init check`) tells what Listen then does, making nothing itself: a
// refusal where Listen refuses, ErrNoSocket where it fails, nil where it makes the socket.
func TestPreflightForetellsListen(t *testing.T) {
	live, _ := listen(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	// dir + "/" + name: exactly n bytes.
	ofLength := func(n int) string { return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1)) }
	for _, tc := range []struct {
		name, path string
		want       error // nil: Listen makes the socket
	}{
		{"nothing there", filepath.Join(dir, "new.sock"), nil},
		{"in a directory not made yet", filepath.Join(dir, "run", "x", "c.sock"), nil},
		{"a stale socket", stale, nil},
		{"a live socket", live, ErrInUse},
		// bind(2) takes 107 bytes at most: a review saw check say nothing of it.
		{"a path as long as a socket's may be", ofLength(MaxPathLen), nil},
		{"a path one byte too long", ofLength(MaxPathLen + 1), ErrNoSocket},
		{"a file", file, ErrNoSocket},
		{"a directory", dir, ErrNoSocket},
		{"below a file", filepath.Join(file, "c.sock"), ErrNoSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Preflight(tc.path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Preflight(%s) = %v, want %v", tc.path, err, tc.want)
			}
			if _, serr := os.Lstat(filepath.Dir(tc.path)); tc.name == "in a directory not made yet" && serr == nil {
				t.Fatal("Preflight made the socket's directory")
			}
			s, lerr := Listen(tc.path, make(chan Call), zlog.Nop())
			if lerr == nil {
				s.Close()
			}
			switch {
			case tc.want == nil && lerr != nil:
				t.Errorf("Preflight saw nothing wrong, Listen = %v", lerr)
			case errors.Is(tc.want, ErrNoSocket) && (lerr == nil || errors.Is(lerr, ErrInUse) || errors.Is(lerr, ErrCannotTell)):
				t.Errorf("Preflight = %v, Listen = %v; want a failure the supervisor runs without a socket on", err, lerr)
			case errors.Is(tc.want, ErrInUse) && (lerr == nil || lerr.Error() != err.Error()):
				t.Errorf("Preflight = %v, Listen = %v; want the same refusal", err, lerr)
			}
		})
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me\n" {
		t.Errorf("the file was changed: %q", data)
	}
}

// setIdleTimeout changes IdleTimeout for one test.
func setIdleTimeout(t *testing.T, d time.Duration) {
	old := IdleTimeout
	IdleTimeout = d
	t.Cleanup(func() { IdleTimeout = old })
}

// dialSilent connects and sends nothing.
func dialSilent(t *testing.T, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Close ends the connections of clients that have sent nothing yet: exit (within the
// grace plus a second) must not wait for their deadline.
func TestCloseDoesNotWaitForSilentClients(t *testing.T) {
	setIdleTimeout(t, time.Hour)
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, make(chan Call), zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		dialSilent(t, path)
	}
	if resp, err := Do(path, Request{Cmd: "bogus"}, 5*time.Second); err != nil || resp.OK {
		t.Fatalf("a bad request = %+v, %v; want an error answer (the clients above are being served)", resp, err)
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for clients that sent nothing (IdleTimeout is an hour)")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// Close removes its own socket only: one that a newer sidecar-init made at the same path,
// once ours stopped answering, stays.
func TestCloseLeavesANewerSocket(t *testing.T) { newerSocketStays(t, (*Server).Close) }

// newerSocketStays: a server at the path made after the old one's socket was removed
// still answers once closeIt has closed the old one.
func newerSocketStays(t *testing.T, closeIt func(*Server)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	calls := make(chan Call)
	done := make(chan struct{})
	defer close(done)
	go fakeLoop(calls, done)
	old, err := Listen(path, calls, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	newer, err := Listen(path, calls, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	closeIt(old)
	if resp, err := Do(path, Request{Cmd: CmdStatus}, 5*time.Second); err != nil || !resp.OK {
		t.Fatalf("the newer server after the old one closed: %+v, %v", resp, err)
	}
}

// A client whose request line never ends is told why when its time is up.
func TestHalfARequestGetsAnAnswer(t *testing.T) {
	setIdleTimeout(t, 100*time.Millisecond)
	path, _ := listen(t)
	conn := dialSilent(t, path)
	if _, err := conn.Write([]byte(`{"cmd":"sta`)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if !strings.Contains(string(buf[:n]), `"error":"incomplete request`) {
		t.Fatalf("answer to half a request = %q, %v; want an incomplete-request error", buf[:n], err)
	}
}

// At most MaxClients connections are served at once; the rest wait in the listen backlog
// without holding a file descriptor, and are served once a slot frees.
func TestClientsBeyondTheCapWait(t *testing.T) {
	setIdleTimeout(t, time.Hour)
	old := MaxClients
	MaxClients = 2
	t.Cleanup(func() { MaxClients = old })
	path, _ := listen(t)
	first, _ := dialSilent(t, path), dialSilent(t, path)
	if _, err := Do(path, Request{Cmd: CmdStatus}, 300*time.Millisecond); err == nil {
		t.Fatal("a third client was served while two held both slots")
	}
	_ = first.Close()
	if resp, err := Do(path, Request{Cmd: CmdStatus}, 5*time.Second); err != nil || !resp.OK {
		t.Fatalf("after a slot freed: %+v, %v", resp, err)
	}
}

// A request the loop took but will never answer (it has ended) is told, at Close, that
// sidecar-init is shutting down: the connection's end leaves room for that answer.
func TestRequestWaitingAtCloseIsAnswered(t *testing.T) {
	requestWaitingIsAnswered(t, (*Server).Close)
}

// requestWaitingIsAnswered: a request the loop took and never answers gets the
// shutting-down answer when the server is closed with closeIt.
func requestWaitingIsAnswered(t *testing.T, closeIt func(*Server)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	calls := make(chan Call)
	s, err := Listen(path, calls, zlog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	answer := make(chan error, 1)
	go func() {
		resp, err := Do(path, Request{Cmd: CmdRestart, Name: "x"}, 5*time.Second)
		if err == nil && resp.Error != "sidecar-init is shutting down" {
			err = fmt.Errorf("answer %+v", resp)
		}
		answer <- err
	}()
	<-calls // taken, never answered
	closeIt(s)
	if err := <-answer; err != nil {
		t.Fatalf("a request waiting at the close: %v; want the shutting-down answer", err)
	}
}

// A newer sidecar-init that takes the path while the old one closes keeps its socket: the
// old one removes its own before its listener (and inode) goes.
func TestCloseNeverRemovesANewerSocket(t *testing.T) {
	for i := 0; i < 100; i++ {
		path := filepath.Join(t.TempDir(), "control.sock")
		old, err := Listen(path, make(chan Call), zlog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		newer := make(chan *Server, 1)
		go func() {
			for {
				if s, err := Listen(path, make(chan Call), zlog.Nop()); err == nil {
					newer <- s
					return
				}
			}
		}()
		old.Close()
		s := <-newer
		_, err = os.Lstat(path)
		s.Close()
		if err != nil {
			t.Fatalf("run %d: the newer server's socket is gone after the old one closed: %v", i, err)
		}
	}
}

// Two sidecar-inits started at the same moment: one gets the socket, the other is told,
// and never both (which left one listening on a socket no client could reach).
func TestTwoListensAtOnceGiveOneSocket(t *testing.T) {
	calls := make(chan Call)
	done := make(chan struct{})
	defer close(done)
	go fakeLoop(calls, done)
	for round := range 200 {
		path := filepath.Join(t.TempDir(), "control.sock")
		servers := make(chan *Server, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s, err := Listen(path, calls, zlog.Nop()); err == nil {
					servers <- s
				}
			}()
		}
		wg.Wait()
		close(servers)
		got := 0
		for s := range servers {
			got++
			s.Close()
		}
		if got != 1 {
			t.Fatalf("round %d: %d of two simultaneous Listens got the socket, want 1", round, got)
		}
	}
}

// The lock file another user's run left, even one it could not read (0600, as builds
// before 0644 made it), does not keep a later run from its socket.
func TestLockFileOfAnotherUserIsNoObstacle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lock file must belong to another user than the listener")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	if err := os.WriteFile(path+".lock", nil, 0o600); err != nil { // as an older build left it
		t.Fatal(err)
	}
	if err := os.Chown(path+".lock", 12345, 12345); err != nil {
		t.Fatal(err)
	}
	// Root without CAP_DAC_OVERRIDE is bound by the modes as another user would be.
	err := onRestrictedThread(t, false, func() error {
		s, err := Listen(path, make(chan Call), zlog.Nop())
		if err == nil {
			s.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("Listen with another user's 0600 lock file: %v", err)
	}
}

// Whatever else is at the lock file's path (a FIFO, whose open would block, or a
// directory) is gone around: the socket is made without the lock.
func TestLockPathThatIsNoFileIsGoneAround(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(string) error
	}{
		{"FIFO", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "control.sock")
			if err := tc.plant(path + ".lock"); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				s, err := Listen(path, make(chan Call), zlog.Nop())
				if err == nil {
					s.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Listen still blocked after 5 s")
			}
		})
	}
}

// CloseAtExit removes this server's socket, and no other; with a request under way it is
// Close, and the request is answered rather than cut off by the exit.
func TestCloseAtExit(t *testing.T) {
	t.Run("nobody connected", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "control.sock")
		s, err := Listen(path, make(chan Call), zlog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() // the exit's part, for the leak check
		s.CloseAtExit()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket left behind: %v", err)
		}
	})
	t.Run("a newer socket", func(t *testing.T) {
		newerSocketStays(t, func(s *Server) {
			s.CloseAtExit()
			t.Cleanup(s.Close) // the exit's part, for the leak check
		})
	})
	t.Run("a request waiting", func(t *testing.T) { requestWaitingIsAnswered(t, (*Server).CloseAtExit) })
}

// A supervisor whose queue of waiting clients is full refuses a connect at once (EAGAIN):
// the client says it is busy, not that nobody listens (found by a review).
func TestFullBacklogIsBusyNotAbsent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // never accepts: the queue fills
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		_, err := Do(path, Request{Cmd: CmdHealth}, 50*time.Millisecond)
		if err == nil || i == 10 {
			t.Fatalf("call %d: %v, want a refusal for a full queue", i, err)
		}
		if errors.Is(err, syscall.EAGAIN) {
			if !strings.Contains(err.Error(), "is busy") || errors.Is(err, ErrNotListening) {
				t.Fatalf("full queue: %v; want it called busy", err)
			}
			return
		}
	}
}
