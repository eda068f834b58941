// Package control is the supervisor's status and control socket: a unix socket speaking
// line-delimited JSON, one request and one response per connection. The server never
// touches supervisor state: it hands each request to the event loop as a Call on a channel
// and writes back what the loop answers.
package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/claude-bottle/sidecar-init/cmd/sidecar-init/internal/zlog"
)

// Commands a client may send.
const (
	CmdStatus  = "status"
	CmdRestart = "restart"
	CmdStop    = "stop"
	CmdStart   = "start"
	CmdHealth  = "health"
	CmdSignal  = "signal"
)

// Request is one client request.
type Request struct {
	Cmd  string `json:"cmd"`
	Name string `json:"name,omitempty"`
	// Signal is the name of the signal `signal` sends (SIGHUP, hup).
	Signal string `json:"signal,omitempty"`
}

// DaemonStatus is one row of `sidecar-init status`.
type DaemonStatus struct {
	Name          string `json:"name"`
	State         string `json:"state"`
	Pid           int    `json:"pid"`
	Uptime        string `json:"uptime"`
	Restarts      int    `json:"restarts"`
	LastExit      string `json:"last_exit"`
	NextRestartIn string `json:"next_restart_in"`
	// WaitingFor names the `after` daemons a start or a restart by policy waits for
	// (pending, or in backoff with its restart due); empty otherwise.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// WaitingForExit are the process groups earlier runs left that a due start or restart
	// waits to see empty (they have the stop signal, then SIGKILL at their grace).
	WaitingForExit []int `json:"waiting_for_exit,omitempty"`
	// LivenessFailures counts the liveness attempts of a running daemon that failed in a
	// row, short of its liveness_failures (LivenessFailuresMax): it is not stopped yet.
	LivenessFailures    int `json:"liveness_failures,omitempty"`
	LivenessFailuresMax int `json:"liveness_failures_max,omitempty"`
}

// Response is the answer to one request.
type Response struct {
	OK      bool           `json:"ok"`
	Error   string         `json:"error,omitempty"`
	Message string         `json:"message,omitempty"`
	Daemons []DaemonStatus `json:"daemons,omitempty"`
}

// Call is a request handed to the event loop with the channel for its answer (buffered:
// the loop never blocks on a client).
type Call struct {
	Request Request
	Reply   chan Response
}

// maxRequest bounds a request line; a real one is a few dozen bytes.
const maxRequest = 4096

// DecodeRequest parses and checks one request line.
func DecodeRequest(line []byte) (Request, error) {
	var req Request
	if len(line) > maxRequest {
		return req, fmt.Errorf("request longer than %d bytes", maxRequest)
	}
	if err := json.Unmarshal(line, &req); err != nil {
		return req, fmt.Errorf("request is not a JSON object: %w", err)
	}
	switch req.Cmd {
	case CmdStatus, CmdHealth:
		if req.Name != "" {
			return req, fmt.Errorf("%s takes no daemon name", req.Cmd)
		}
	case CmdRestart, CmdStop, CmdStart, CmdSignal:
		if req.Name == "" {
			return req, fmt.Errorf("%s needs a daemon name", req.Cmd)
		}
	default:
		return req, fmt.Errorf("unknown command %q (want status, health, restart, stop, start or signal)", req.Cmd)
	}
	switch {
	case req.Cmd == CmdSignal && req.Signal == "":
		return req, fmt.Errorf("signal needs a signal name")
	case req.Cmd != CmdSignal && req.Signal != "":
		return req, fmt.Errorf("%s takes no signal", req.Cmd)
	}
	return req, nil
}

// IdleTimeout drops a client that connects and sends no whole request line in time, and
// again one that does not read its answer (a variable so tests can shorten it). A real
// client writes its request at once.
var IdleTimeout = 2 * time.Second

// MaxClients bounds the connections served at once (a variable so tests can shrink it).
// More wait in the listen backlog and cost no file descriptor: a burst of clients, or
// clients that never send, cannot take the fds the daemons' spawns need.
var MaxClients = 64

// Server accepts clients on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	// file is the socket as created, so that Close removes it and never a socket another
	// sidecar-init has since made at the same path.
	file  os.FileInfo
	calls chan<- Call
	log   *zlog.Logger
	done  chan struct{}
	wg    sync.WaitGroup
	slots chan struct{} // one per connection being served

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu: the connections being served
}

// LockPath is the lock file kept beside the control socket at path: two sidecar-inits
// started at once take turns on it.
func LockPath(socket string) string { return socket + ".lock" }

// Listen creates the socket at path (directory 0700, socket 0600: only root may control the
// supervisor), replacing a stale socket left by an earlier run. Anything else at path is
// left alone: a mistyped path must not delete a file.
func Listen(path string, calls chan<- Call, log *zlog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		// A directory this user may not enter may hold a live sidecar-init's socket: the
		// look decides (ErrCannotTell, ErrInUse) before "no socket" does.
		if ierr := inUse(path); ierr != nil {
			return nil, ierr
		}
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	// Two sidecar-inits started at the same moment could both find no one answering, each
	// remove the other's fresh socket and listen, one of them unreachable: the lock makes
	// the look, the removal and the listen one instance's at a time. It is held only for
	// those (a newer instance may still take the path once the socket there stopped
	// answering), never waited for (the loser of the race exits 2 with ErrInUse, as beside
	// a running instance), and the lock file stays: removing it would let another instance lock a new file
	// while one holds the old.
	// Read-only and 0644: flock needs no more, and a later instance run as another user (a
	// socket in a shared directory) can still take its turn. Non-blocking: a FIFO put at
	// the path would otherwise hold the start-up until someone opens it for writing.
	lock, err := unix.Open(LockPath(path), unix.O_RDONLY|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
	var st unix.Stat_t
	if err == nil {
		if err = unix.Fstat(lock, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			err = fmt.Errorf("not a regular file (mode %#o)", st.Mode)
		}
		if err != nil {
			_ = unix.Close(lock)
		}
	}
	if err != nil {
		// Another user's, mode 0600, or something else put at the path (a FIFO, a
		// directory): the lock only closes a rare race, and the look below still finds a
		// listening instance, so the socket is made without it.
		log.Debug("control socket lock not usable; going on without it", zlog.String("path", LockPath(path)), zlog.Error(err))
		return listenLocked(path, calls, log)
	}
	defer func() { _ = unix.Close(lock) }() // the unlock
	if err := unix.Flock(lock, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("control socket %s: %w (it is creating the socket this moment: %s.lock)", path, ErrInUse, path)
		}
		// ENOLCK, EINVAL (a filesystem without flock): as for a lock file that cannot be
		// opened, the look below still finds a listening instance.
		log.Debug("control socket lock not usable; going on without it", zlog.String("path", LockPath(path)), zlog.Error(err))
	}
	return listenLocked(path, calls, log)
}

// ErrInUse is Listen's error when another sidecar-init has the socket, or is making it.
var ErrInUse = errors.New("another sidecar-init is using this control socket")

// Answering says whether something listens on the socket at path: a connection succeeds,
// or is refused for a full backlog (EAGAIN: a supervisor stopped or busy, but there). A
// connect refused for permission is ErrCannotTell, so a live socket is never taken for a
// stale one; any other failure means nobody can be listening there.
func Answering(path string) (bool, error) {
	conn, err := net.Dial("unix", path)
	switch {
	case err == nil:
		_ = conn.Close()
		return true, nil
	case errors.Is(err, syscall.EAGAIN):
		return true, nil
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return false, fmt.Errorf("%w: %w", ErrCannotTell, err)
	}
	// ECONNREFUSED: a socket nobody listens on, or not a socket. ENOENT: nothing there.
	// Anything else (a path too long for a socket, ELOOP) is a path no sidecar-init can
	// listen on either.
	return false, nil
}

// ErrCannotTell is Answering's error when the connect is refused for permission (another
// user's socket, or a directory this user may not enter): a sidecar-init may be listening
// there or not.
var ErrCannotTell = errors.New("cannot tell whether a sidecar-init listens there")

// inUse is Listen's refusal of a path a sidecar-init answers on (ErrInUse), or may
// (ErrCannotTell); nil when nobody can be listening there.
func inUse(path string) error {
	if live, err := Answering(path); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	} else if live {
		return fmt.Errorf("control socket %s: %w (it is listening there)", path, ErrInUse)
	}
	return nil
}

// MaxPathLen is the longest path a unix socket can be bound at: sun_path holds 108 bytes,
// the NUL that ends the path among them (unix(7)); a longer one is EINVAL.
const MaxPathLen = 107

// ErrNoSocket is Preflight's error for a path where Listen would make no socket: the
// supervisor would run the daemons without one.
var ErrNoSocket = errors.New("no control socket can be made there")

// Preflight says, making and changing nothing, what Listen would meet at path (for
// `sidecar-init check`): Listen's own error wrapping ErrInUse or ErrCannotTell where the
// supervisor would not start, one wrapping ErrNoSocket where Listen would fail (a path too
// long for a socket, something other than a socket at it, a path through something other
// than a directory), nil otherwise. What only the making finds out (a directory this user
// may not write, a read-only or full filesystem) it cannot see.
func Preflight(path string) error {
	if err := inUse(path); err != nil {
		return err
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("control socket %s: %w: the path is %d bytes, past the %d a unix socket's may have; give it a shorter one",
			path, ErrNoSocket, len(path), MaxPathLen)
	}
	info, err := os.Lstat(path)
	switch {
	case err == nil && info.Mode()&os.ModeSocket == 0:
		// removeSocket leaves it: a mistyped path must not delete a file.
		return fmt.Errorf("control socket %s: %w: it exists and is not a socket (%s), which is left alone; move it or give the socket another path",
			path, ErrNoSocket, info.Mode().Type())
	case errors.Is(err, syscall.ENOTDIR):
		// The directory cannot be made either (MkdirAll).
		return fmt.Errorf("control socket %s: %w: a directory on its path is not a directory", path, ErrNoSocket)
	case err != nil:
		// Missing (or a symlink loop on the way): Listen's MkdirAll makes the directories
		// that are missing, but not in place of a symlink that leads nowhere or in circles.
		if derr := makeableDir(filepath.Dir(path)); derr != nil {
			return fmt.Errorf("control socket %s: %w: its directory cannot be made: %w", path, ErrNoSocket, derr)
		}
	}
	return nil
}

// makeableDir says, making nothing, whether os.MkdirAll(dir) could succeed as far as the
// names on the way go: each missing one is missing for Lstat too (not a dangling symlink),
// and the first that exists is a directory once symlinks are followed.
func makeableDir(dir string) error {
	for {
		info, err := os.Stat(dir)
		switch {
		case err == nil && info.IsDir():
			return nil
		case err == nil:
			return fmt.Errorf("%s is not a directory", dir)
		case !errors.Is(err, os.ErrNotExist):
			return err // ELOOP, say
		}
		if _, lerr := os.Lstat(dir); lerr == nil {
			return fmt.Errorf("%s is a symlink to nothing", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func listenLocked(path string, calls chan<- Call, log *zlog.Logger) (*Server, error) {
	if err := inUse(path); err != nil {
		return nil, err
	}
	if err := removeSocket(path); err != nil {
		return nil, fmt.Errorf("stale control socket: %w", err)
	}
	// The umask keeps the socket private from its first moment, before the chmod.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the socket itself, only if it is still this one (removal by path alone
	// would take a socket a newer sidecar-init made there after ours stopped accepting).
	ln.SetUnlinkOnClose(false)
	file, err := os.Lstat(path)
	if err == nil {
		err = chmodSocket(path, file)
	}
	if err != nil {
		_ = ln.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("control socket permissions: %w", err)
	}
	return startServer(path, ln, file, calls, log), nil
}

// chmodSocket makes the socket at path, file as Lstat saw it, 0600 without following a
// symlink: whoever may write the directory (an existing one keeps its mode) could have put
// one there since the bind, and root's chmod by path would then make any file 0600. The
// umask made the socket 0600 already unless the directory has a default ACL (which takes
// the umask's place): only then is the mode changed, through the descriptor.
func chmodSocket(path string, file os.FileInfo) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	want, ok := file.Sys().(*syscall.Stat_t)
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Dev != want.Dev || st.Ino != want.Ino {
		return fmt.Errorf("%s is no longer the socket just made: someone who may write its directory replaced it", path)
	}
	if st.Mode&0o7777 == 0o600 {
		return nil
	}
	// fchmod refuses an O_PATH descriptor; its /proc link reaches the inode itself.
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), 0o600)
}

// startServer starts accepting clients on ln, the socket at path.
func startServer(path string, ln net.Listener, file os.FileInfo, calls chan<- Call, log *zlog.Logger) *Server {
	s := &Server{
		path: path, ln: ln, file: file, calls: calls, log: log, done: make(chan struct{}),
		slots: make(chan struct{}, MaxClients), conns: map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s
}

// removeSocket removes path if it is a socket, and refuses if it is anything else.
func removeSocket(path string) error {
	info, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case info.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("%s exists and is not a socket (%s); not removing it", path, info.Mode().Type())
	}
	return os.Remove(path)
}

// Close removes the socket if it is still ours, stops accepting, ends every connection (a
// client that sent nothing yet included: exit must not wait for its deadline) and waits
// for the connection goroutines.
func (s *Server) Close() {
	s.removeOwnSocket()
	s.mu.Lock()
	close(s.done)
	for conn := range s.conns {
		// Reads end now; an answer still gets written, with a short deadline (serve).
		_ = conn.SetReadDeadline(time.Now())
		_ = conn.SetWriteDeadline(time.Now().Add(closingWriteTimeout))
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
}

// CloseAtExit is Close for a process about to exit: with no client connected it only
// removes the socket, and leaves the listener and the accept goroutine to the exit, which
// ends them anyway; closing the listener first cost a wake-up of the runtime's network
// poller and a turn of that goroutine in front of every exit. A client that connects
// after the socket is gone finds no socket; one already in the listen backlog is reset by
// the exit, as by Close. With a client connected it is Close, whose answer still gets
// written.
func (s *Server) CloseAtExit() {
	s.mu.Lock()
	served := len(s.conns)
	s.mu.Unlock()
	if served > 0 {
		s.Close()
		return
	}
	s.removeOwnSocket()
}

// removeOwnSocket removes the socket at the path if it is still the one this server made.
// Before the listener is closed, while it still holds the socket's inode: a newer
// sidecar-init cannot have made one at the path yet (it would have found ours answering),
// and once ours is closed its inode number can come back at once for the newer one's.
func (s *Server) removeOwnSocket() {
	if now, err := os.Lstat(s.path); err == nil && os.SameFile(now, s.file) {
		_ = os.Remove(s.path)
	}
}

// closingWriteTimeout bounds the write of an answer once Close has begun ("sidecar-init is
// shutting down"), so a client that does not read cannot hold the exit.
const closingWriteTimeout = 100 * time.Millisecond

// Accept retry pacing when the process is out of file descriptors or memory: like
// net/http's server, wait 5 ms doubling to 1 s, so a moment of fd shortage costs the
// clients of that moment, not the socket for good (health checks would fail from then on).
const (
	acceptRetryFirst = 5 * time.Millisecond
	acceptRetryMax   = time.Second
)

func (s *Server) accept() {
	defer s.wg.Done()
	var retry time.Duration
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.done:
			return
		}
		conn, err := s.ln.Accept()
		if err == nil {
			if retry > 0 {
				s.log.Info("control socket accepting again")
				retry = 0
			}
			// The read deadline is set before the connection is tracked, so that the
			// deadline Close sets on every tracked connection is the last word.
			_ = conn.SetReadDeadline(time.Now().Add(IdleTimeout))
			if !s.track(conn) {
				_ = conn.Close()
				<-s.slots
				return
			}
			s.wg.Add(1)
			go s.serve(conn)
			continue
		}
		<-s.slots
		select {
		case <-s.done:
			return
		default:
		}
		if !resourceShortage(err) {
			s.log.Error("control socket stopped accepting", zlog.Error(err))
			return
		}
		if retry == 0 {
			s.log.Warn("control socket cannot accept a client; retrying", zlog.Error(err))
			retry = acceptRetryFirst
		} else {
			retry = min(2*retry, acceptRetryMax)
		}
		wait := time.NewTimer(retry)
		select {
		case <-s.done:
			wait.Stop()
			return
		case <-wait.C:
		}
	}
}

// resourceShortage: accept failed for lack of fds, buffers or memory; the socket itself is
// fine. (A client that gave up first, ECONNABORTED, Go's poller already retries.)
func resourceShortage(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// track records a connection being served, unless Close has begun (then false).
func (s *Server) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done: // (closed under mu: a connection tracked here gets Close's deadlines)
		return false
	default:
	}
	s.conns[conn] = struct{}{}
	return true
}

func (s *Server) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		_ = conn.Close()
		<-s.slots
	}()
	line, err := bufio.NewReader(io.LimitReader(conn, maxRequest+1)).ReadBytes('\n')
	if len(line) == 0 {
		return // hung up, or sent nothing before the deadline
	}
	resp := Response{Error: fmt.Sprintf("incomplete request: %v", err)}
	// A last line without its newline is still a request (io.EOF after data).
	if err == nil || errors.Is(err, io.EOF) {
		resp = s.handle(bytes.TrimRight(line, "\r\n"))
	}
	data, _ := json.Marshal(resp)
	// The answer gets its own deadline: a half-sent request used up the read's, and its
	// client still gets told why it was refused. Under the lock, so that it never undoes
	// the short one Close sets.
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		_ = conn.SetWriteDeadline(time.Now().Add(IdleTimeout))
	}
	s.mu.Unlock()
	_, _ = conn.Write(append(data, '\n'))
}

func (s *Server) handle(line []byte) Response {
	req, err := DecodeRequest(line)
	if err != nil {
		return Response{Error: err.Error()}
	}
	call := Call{Request: req, Reply: make(chan Response, 1)}
	select {
	case s.calls <- call:
	case <-s.done:
		return Response{Error: "sidecar-init is shutting down"}
	}
	select {
	case resp := <-call.Reply:
		return resp
	case <-s.done:
		return Response{Error: "sidecar-init is shutting down"}
	}
}

// ErrNotListening says no supervisor answers on the socket.
var ErrNotListening = errors.New("no sidecar-init is listening")

// Do sends one request to the supervisor listening at path and returns its answer.
func Do(path string, req Request, timeout time.Duration) (Response, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	switch {
	case errors.Is(err, syscall.EACCES):
		// The socket is its owner's alone: the user sidecar-init runs as (root, unless the
		// container runs it as another), named when the directory lets us see it.
		owner := "the user sidecar-init runs as (root, unless started as another)"
		if info, serr := os.Stat(path); serr == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				owner = fmt.Sprintf("uid %d, the user sidecar-init runs as", st.Uid)
			}
		}
		return Response{}, fmt.Errorf("%s: permission denied: the control socket is for %s alone (0600 in a 0700 directory); run this as that user: %w", path, owner, err)
	case errors.Is(err, syscall.EAGAIN):
		// A unix socket's connect fails at once when the listen backlog is full.
		return Response{}, fmt.Errorf("sidecar-init on %s is busy: its queue of waiting clients is full; try again: %w", path, err)
	}
	if err != nil {
		return Response{}, fmt.Errorf("%w on %s (is it running? does CLAUDE_BOTTLE_SIDECAR_CONTROL_SOCKET match its control_socket?): %w",
			ErrNotListening, path, err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	data, _ := json.Marshal(req)
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return Response{}, fmt.Errorf("send to %s: %w", path, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0) {
		return Response{}, fmt.Errorf("read answer from %s: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("answer from %s is not JSON: %w", path, err)
	}
	return resp, nil
}
