package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/queue"
)

// Errors of the agent.
var (
	// ErrRunning is returned by Listen when an agent already answers on
	// the home's socket.
	ErrRunning = errors.New("an agent is already running for this home")
	// ErrNoAgent is returned by Dial when no agent runs for the home: no
	// socket, or one left by an agent that died.
	ErrNoAgent = errors.New("no agent is running for this home")
	// ErrClosed is returned by a Conn's calls once it is closed or its
	// agent has gone, and by the agent while it shuts down.
	ErrClosed = errors.New("the connection to the agent is closed")
	// ErrPathTooLong is returned by Listen and Dial when the socket's path
	// does not fit in a Unix socket address.
	ErrPathTooLong = errors.New("the home directory's path is too long for a Unix socket")
)

// SocketFile is the name of the agent's socket in the home directory.
const SocketFile = "hush.sock"

// maxSocketPath is the longest path a Unix socket address holds (sun_path
// of 108 bytes, with its terminating zero).
const maxSocketPath = 107

// writeTimeout bounds one write to a connection: a peer that does not
// read for this long is disconnected.
const writeTimeout = time.Minute

// SocketPath returns the path of the agent's socket for home.
func SocketPath(home string) string { return filepath.Join(home, SocketFile) }

// Listen makes the agent's socket in home, with mode 0600, and returns its
// listener. A socket left by an agent that died (nothing answers on it) is
// replaced; if an agent answers, Listen returns ErrRunning. The caller
// must hold the home's store (client.Open), which only one process can:
// that makes the check and the replacement safe.
func Listen(home string) (*net.UnixListener, error) {
	path := SocketPath(home)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("%w: %s", ErrPathTooLong, path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err == nil {
			c.Close()
			return nil, ErrRunning
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("checking the socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The home directory is 0700 (client.Init), so nobody else could
	// reach the socket before this.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Config configures a Server. Zero values are the documented defaults.
type Config struct {
	// Version is what the version method answers; default "devel".
	Version string
	// Logger receives operational logs, wrapped in queue.RedactHandler so
	// that no network address or port reaches it; default: discard.
	Logger *slog.Logger
}

// Server serves a client's API (docs/agent.md) on connections: a Unix
// socket for other processes (Serve), or a pipe in this process (Pipe).
// The client must be open with client.EventsStored, and stays the
// caller's to close, after the Server.
type Server struct {
	cl  *client.Client
	cfg Config

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once

	// subs counts the open subscriptions of all connections.
	subs atomic.Int64

	mu sync.Mutex
	// lns are the listeners being served.
	lns map[net.Listener]struct{}
	// conns are the open connections.
	conns map[*serverConn]struct{}
	// changed is closed, and replaced, when events are added to the store.
	changed chan struct{}
}

// NewServer returns a server of cl's API. Close it when done.
func NewServer(cl *client.Client, cfg Config) *Server {
	if cfg.Version == "" {
		cfg.Version = "devel"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = slog.New(queue.RedactHandler(cfg.Logger.Handler()))
	s := &Server{cl: cl, cfg: cfg, lns: make(map[net.Listener]struct{}), conns: make(map[*serverConn]struct{}), changed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(s.watchEvents)
	return s
}

// watchEvents wakes the subscriptions when events are added.
func (s *Server) watchEvents() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.cl.EventsAdded():
			if s.subs.Load() == 0 {
				s.dropTransient()
			}
			s.mu.Lock()
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	}
}

// transient are the kinds of events that concern the moment: they reach
// the subscriptions open when they happen, and are not kept for later
// ones (so that an agent without subscribers does not pile them up).
var transient = map[client.EventKind]bool{client.EventSent: true, client.EventDelivered: true, client.EventRelayDown: true, client.EventRelayUp: true}

// dropTransient removes the stored transient events.
func (s *Server) dropTransient() {
	var cursor uint64
	for {
		evs, err := s.cl.StoredEvents(cursor, Window)
		if err != nil {
			s.cfg.Logger.Error("reading events", "err", err)
			return
		}
		for _, ev := range evs {
			cursor = ev.ID
			if transient[ev.Kind] {
				if _, err := s.cl.TakeEvent(ev.ID); err != nil {
					s.cfg.Logger.Error("dropping an event", "err", err)
					return
				}
			}
		}
		if len(evs) < Window {
			return
		}
	}
}

// eventsChanged returns the channel closed at the next addition of events.
func (s *Server) eventsChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Serve accepts connections on ln and serves each, until Close (then it
// returns nil) or an accept error. It closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.serveConn(c)
	}
}

// Pipe returns a Conn to the server within this process. Closing it ends
// its connection, not the server.
func (s *Server) Pipe() *Conn {
	a, b := net.Pipe()
	s.serveConn(a)
	return NewConn(b)
}

// Close stops serving: it closes the listeners and connections and waits
// for their goroutines. It is idempotent. It does not close the client.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.cancel()
		for ln := range s.lns {
			ln.Close()
		}
		for sc := range s.conns {
			sc.c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

// serverConn is one connection to the server.
type serverConn struct {
	s *Server
	c net.Conn

	ctx    context.Context // canceled when the connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // subscriptions and flushes

	wmu sync.Mutex // held for each write of a whole line

	mu sync.Mutex
	// subs are the connection's subscriptions, by ID.
	subs    map[uint64]*subscription
	lastSub uint64
}

// subscription is one subscribeReceive of a connection.
type subscription struct {
	id      uint64
	contact string // "" for all
	cancel  context.CancelFunc
	acked   chan struct{} // capacity 1: an in-flight event was acked
	// inflight are the IDs sent and not yet acked; guarded by serverConn.mu.
	inflight map[uint64]bool
}

func (s *Server) serveConn(c net.Conn) {
	sc := &serverConn{s: s, c: c, subs: make(map[uint64]*subscription)}
	sc.ctx, sc.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		sc.read()
		sc.cancel()
		sc.mu.Lock()
		s.subs.Add(-int64(len(sc.subs)))
		sc.subs = nil
		sc.mu.Unlock()
		c.Close()
		sc.wg.Wait()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
}

// read handles the connection's requests, in order, until it ends.
func (sc *serverConn) read() {
	br := bufio.NewReaderSize(sc.c, 4096)
	for {
		line, err := readLine(br, MaxLine)
		if errors.Is(err, errLineTooLong) {
			sc.write(response{JSONRPC: "2.0", ID: json.RawMessage("null"),
				Error: &Error{Code: CodeParse, Message: fmt.Sprintf("parse error: line longer than %d bytes", MaxLine)}})
			return
		}
		if err != nil {
			return
		}
		if len(line) == 0 {
			continue
		}
		req, perr := ParseRequest(line)
		if perr != nil {
			id := req.ID
			if id == nil {
				id = json.RawMessage("null")
			}
			sc.write(response{JSONRPC: "2.0", ID: id, Error: perr})
			continue
		}
		if req.Method == MethodFlush {
			// A flush waits, on its own, so that acks and sends behind it
			// go on.
			sc.wg.Go(func() { sc.answer(req, sc.call(req)) })
			continue
		}
		sc.answer(req, sc.call(req))
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline; at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// result is a method's outcome: a value to answer, or an error, and what
// to run once the answer is written.
type result struct {
	value any
	err   error
	after func()
}

func (sc *serverConn) answer(req Request, r result) {
	if req.ID != nil {
		resp := response{JSONRPC: "2.0", ID: req.ID}
		if r.err != nil {
			resp.Error = errorOf(r.err)
		} else {
			resp.Result = mustJSON(r.value)
		}
		sc.write(resp)
	}
	if r.after != nil {
		r.after()
	}
}

// write writes v as one line; a failed or timed-out write ends the
// connection.
func (sc *serverConn) write(v any) bool {
	b := append(mustJSON(v), '\n')
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := sc.c.Write(b); err != nil {
		sc.c.Close()
		return false
	}
	return true
}

func params(req Request, v any) error {
	if req.Params == nil {
		return nil
	}
	if err := json.Unmarshal(req.Params, v); err != nil {
		return &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
	}
	return nil
}

func missing(name string) error {
	return &Error{Code: CodeInvalidParams, Message: "invalid params: " + name + " is required"}
}

// required returns missing(name) if v, a required param, is empty.
func required(name, v string) error {
	if v == "" {
		return missing(name)
	}
	return nil
}

// within returns a context of the connection's that ends after seconds,
// a method's timeout param (0: def), or the error of a timeout out of
// range.
func (sc *serverConn) within(seconds float64, def time.Duration) (context.Context, context.CancelFunc, error) {
	d, err := timeout(seconds, def)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(sc.ctx, d)
	return ctx, cancel, nil
}

// timedParams decodes req's params into p, checks them with check (if not
// nil), and returns within's context for *seconds, the timeout param that
// the decoding set (0: def). The caller calls cancel once the method is
// done.
func (sc *serverConn) timedParams(req Request, p any, seconds *float64, def time.Duration, check func() error) (context.Context, context.CancelFunc, error) {
	if err := params(req, p); err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	return sc.within(*seconds, def)
}

func badToken() error {
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: token longer than %d bytes", client.MaxTakeToken)}
}

// call runs one request's method.
func (sc *serverConn) call(req Request) result {
	if sc.s.ctx.Err() != nil {
		return result{err: &Error{Code: CodeClosing, Message: "the agent is shutting down"}}
	}
	cl := sc.s.cl
	switch req.Method {
	case MethodVersion:
		return result{value: VersionResult{sc.s.cfg.Version}}
	case MethodAddRelay:
		var p AddRelayParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		addr, err := queue.ParseAddress(p.Address)
		if err != nil {
			return result{err: &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: %q is not a relay address: %v", p.Address, err)}}
		}
		if p.Check {
			ctx, cancel, err := sc.within(p.Timeout, DefaultCheckTimeout)
			if err != nil {
				return result{err: err}
			}
			err = cl.CheckRelay(ctx, addr)
			cancel()
			if err != nil {
				return result{err: err}
			}
		}
		if err := cl.AddRelay(addr); err != nil {
			return result{err: err}
		}
		relays, err := cl.Relays()
		if err != nil {
			return result{err: err}
		}
		return result{value: AddRelayResult{Added: addr.WithoutPassword().String(), Relays: len(relays), Checked: p.Check}}
	case MethodRemoveRelay:
		var p RemoveRelayParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		var addr queue.Address
		if b, err := base64.RawURLEncoding.DecodeString(p.Fingerprint); err != nil || len(b) != len(addr.Fingerprint) {
			return result{err: &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: %q is not a relay fingerprint", p.Fingerprint)}}
		} else {
			copy(addr.Fingerprint[:], b)
		}
		relays, err := cl.Relays()
		if err != nil {
			return result{err: err}
		}
		for _, r := range relays {
			if r.Fingerprint == addr.Fingerprint {
				addr = r.WithoutPassword()
			}
		}
		var res RemoveRelayResult
		if p.Move {
			ctx, cancel, err := sc.within(p.Timeout, DefaultRetireTimeout)
			if err != nil {
				return result{err: err}
			}
			rep, err := cl.RetireRelay(ctx, addr.Fingerprint, p.Wait)
			cancel()
			if err != nil && !(errors.Is(err, context.DeadlineExceeded) && sc.ctx.Err() == nil) {
				return result{err: err}
			}
			res = RemoveRelayResult{Moving: rep.Moving, Pending: rep.Pending, Asked: rep.Asked, Kept: !rep.Removed}
			for name, err := range rep.Failed {
				if res.Failed == nil {
					res.Failed = make(map[string]string)
				}
				res.Failed[name] = err.Error()
			}
		} else if err := cl.RemoveRelay(addr.Fingerprint); err != nil {
			return result{err: err}
		}
		users, err := cl.RelayContacts(addr.Fingerprint)
		if err != nil {
			return result{err: err}
		}
		if users == nil {
			users = []string{}
		}
		res.Removed, res.Contacts, res.Relays = addr.String(), users, len(relays)-1
		if res.Kept {
			res.Relays = len(relays)
		}
		return result{value: res}
	case MethodRelayStatus:
		out := RelayStatusResult{Relays: []RelayStatusJSON{}}
		for _, st := range cl.RelayStatus() {
			j := RelayStatusJSON{Relay: st.Relay.String(), State: st.State.String()}
			if st.Err != nil {
				j.Error = st.Err.Error()
			}
			out.Relays = append(out.Relays, j)
		}
		return result{value: out}
	case MethodListRelays:
		relays, err := cl.Relays()
		if err != nil {
			return result{err: err}
		}
		out := ListRelaysResult{Relays: make([]RelayJSON, 0, len(relays))}
		for _, a := range relays {
			out.Relays = append(out.Relays, RelayJSON{a.WithoutPassword().String(), a.Password != ""})
		}
		return result{value: out}
	case MethodInvite:
		var p InviteParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, nil)
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		invite := cl.Invite
		if p.Short {
			invite = cl.InviteShort
		}
		link, err := invite(ctx, p.Name)
		if err != nil {
			return result{err: err}
		}
		return result{value: InviteResult{link}}
	case MethodAccept:
		var p AcceptParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, func() error { return required("link", p.Link) })
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		var ct client.Contact
		if p.Show != "" {
			ct, err = cl.RequestContact(ctx, p.Link, p.Name, p.Show)
		} else {
			ct, err = cl.Accept(ctx, p.Link, p.Name)
		}
		if err != nil {
			return result{err: err}
		}
		return result{value: AcceptResult{contactJSON(ct)}}
	case MethodContacts:
		list, err := cl.Contacts()
		if err != nil {
			return result{err: err}
		}
		out := ContactsResult{Contacts: make([]ContactJSON, 0, len(list))}
		for _, ct := range list {
			out.Contacts = append(out.Contacts, contactJSON(ct))
		}
		return result{value: out}
	case MethodSend:
		var p SendParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		switch {
		case p.Contact == "":
			return result{err: missing("contact")}
		case p.Text == "":
			return result{err: missing("text")}
		}
		seq, err := cl.Send(sc.ctx, p.Contact, p.Text)
		if err != nil {
			return result{err: err}
		}
		return result{value: SendResult{seq}}
	case MethodFlush:
		var p FlushParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultFlushTimeout, nil)
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		err = cl.Flush(ctx)
		if err != nil && ctx.Err() == nil {
			return result{err: err}
		}
		return result{value: FlushResult{err == nil}}
	case MethodSubscribe:
		var p SubscribeParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		sub := sc.subscribe(p.Contact)
		// The answer goes first, then the events.
		return result{value: SubscribeResult{sub.id}, after: func() { sc.start(sub) }}
	case MethodUnsubscribe:
		var p UnsubscribeParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		sc.mu.Lock()
		sub, ok := sc.subs[p.Subscription]
		delete(sc.subs, p.Subscription)
		sc.mu.Unlock()
		if ok {
			sc.s.subs.Add(-1)
		}
		if !ok {
			return result{err: &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: no subscription %d", p.Subscription)}}
		}
		sub.cancel()
		return result{value: struct{}{}}
	case MethodForget:
		var p ForgetParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, func() error { return required("contact", p.Contact) })
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		if err := cl.Forget(ctx, p.Contact); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	case MethodRotate:
		var p RotateParams
		ctx, cancel, err := sc.timedParams(req, &p, &p.Timeout, DefaultRelayTimeout, func() error { return required("contact", p.Contact) })
		if err != nil {
			return result{err: err}
		}
		defer cancel()
		if err := cl.Rotate(ctx, p.Contact); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	case MethodRename:
		var p RenameParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		if p.Contact == "" {
			return result{err: missing("contact")}
		}
		if err := cl.Rename(p.Contact, p.Name); err != nil {
			return result{err: err}
		}
		return result{value: struct{}{}}
	case MethodCreateAddress, MethodAddress, MethodAutoAccept, MethodDeleteAddress, MethodRequests, MethodAcceptRequest, MethodRejectRequest:
		return sc.callAddress(req)
	case MethodReceipts, MethodSetReceipts:
		return sc.callReceipts(req)
	case MethodAck:
		var p AckParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		if p.ID == 0 {
			return result{err: missing("id")}
		}
		if len(p.Token) > client.MaxTakeToken {
			return result{err: badToken()}
		}
		sc.acked(p.ID)
		removed, err := cl.TakeEventAs(p.ID, []byte(p.Token))
		if err != nil {
			return result{err: err}
		}
		return result{value: AckResult{removed}}
	case MethodTaken:
		var p TakenParams
		if err := params(req, &p); err != nil {
			return result{err: err}
		}
		switch {
		case p.ID == 0:
			return result{err: missing("id")}
		case p.Token == "":
			return result{err: missing("token")}
		case len(p.Token) > client.MaxTakeToken:
			return result{err: badToken()}
		}
		took, err := cl.TookEvent(p.ID, []byte(p.Token))
		if err != nil {
			return result{err: err}
		}
		return result{value: TakenResult{took}}
	}
	return result{err: &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("method not found: %q", req.Method)}}
}

func (sc *serverConn) subscribe(contact string) *subscription {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.lastSub++
	sub := &subscription{id: sc.lastSub, contact: contact, acked: make(chan struct{}, 1), inflight: make(map[uint64]bool)}
	sc.subs[sub.id] = sub
	sc.s.subs.Add(1)
	return sub
}

// acked frees id's place in the window of the subscriptions that sent it.
func (sc *serverConn) acked(id uint64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, sub := range sc.subs {
		if sub.inflight[id] {
			delete(sub.inflight, id)
			select {
			case sub.acked <- struct{}{}:
			default:
			}
		}
	}
}

// start runs sub: it sends the stored events, oldest first, then each new
// one, at most Window unacknowledged.
func (sc *serverConn) start(sub *subscription) {
	ctx, cancel := context.WithCancel(sc.ctx)
	sc.mu.Lock()
	sub.cancel = cancel
	if _, ok := sc.subs[sub.id]; !ok { // unsubscribed already
		cancel()
	}
	sc.mu.Unlock()
	sc.wg.Go(func() {
		defer cancel()
		var cursor uint64
		for {
			changed := sc.s.eventsChanged()
			evs, err := sc.s.cl.StoredEvents(cursor, Window)
			if err != nil {
				sc.s.cfg.Logger.Error("reading events", "err", err)
			}
			for _, ev := range evs {
				cursor = ev.ID
				// A request concerns no contact yet (its Contact is the
				// name it shows): like relay events, every subscription
				// gets it.
				if sub.contact != "" && ev.Kind != client.EventRequest && ev.Contact != sub.contact && ev.Contact != "" {
					continue
				}
				if !sc.waitWindow(ctx, sub) {
					return
				}
				sc.mu.Lock()
				sub.inflight[ev.ID] = true
				sc.mu.Unlock()
				n := notification{JSONRPC: "2.0", Method: NotificationReceive, Params: receiveJSON{Subscription: sub.id, Result: eventJSON(ev)}}
				if !sc.write(n) {
					return
				}
			}
			if len(evs) == Window {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	})
}

// waitWindow waits until sub has room for one more event in flight.
func (sc *serverConn) waitWindow(ctx context.Context, sub *subscription) bool {
	for {
		sc.mu.Lock()
		n := len(sub.inflight)
		sc.mu.Unlock()
		if n < Window {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-sub.acked:
		}
	}
}
