package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/queue"
)

// Conn is a connection to an agent: the API as Go methods. Its methods
// are safe for concurrent use; requests are answered in order, except
// Flush, which waits on its own. Close it when done.
type Conn struct {
	c    net.Conn
	done chan struct{} // closed when the reader has ended

	wmu sync.Mutex // held for each write of a whole line

	mu sync.Mutex
	// lastID numbers requests.
	lastID uint64
	// pending are the calls waiting for their answer, by request ID.
	pending map[uint64]chan response
	// subs are the subscriptions, by ID; a notification may create one
	// before Subscribe has its answer.
	subs map[uint64]*Subscription
	// err is why the connection ended.
	err error

	closeOnce sync.Once
}

// Dial connects to the agent of home. It returns ErrNoAgent when none
// runs: no socket, or a stale one that nothing answers on.
func Dial(ctx context.Context, home string) (*Conn, error) {
	path := SocketPath(home)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("%w: %s", ErrPathTooLong, path)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, ErrNoAgent
	}
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// NewConn returns a Conn speaking the API over c, which it owns.
func NewConn(c net.Conn) *Conn {
	cn := &Conn{c: c, done: make(chan struct{}), pending: make(map[uint64]chan response), subs: make(map[uint64]*Subscription)}
	go cn.read()
	return cn
}

// Close ends the connection and waits for its reader. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.c.Close() })
	<-c.done
	return nil
}

// Done is closed when the connection has ended (Close, or the agent
// went away).
func (c *Conn) Done() <-chan struct{} { return c.done }

// incoming is any line from the agent.
type incoming struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *Error          `json:"error"`
	Params json.RawMessage `json:"params"`
}

// read dispatches the agent's lines until the connection ends. It never
// waits for the application: answers go to buffered channels, and a
// subscription's buffer holds a whole Window.
func (c *Conn) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.c, 4096)
	var err error
	for {
		var line []byte
		line, err = readLine(br, maxAnswerLine)
		if err != nil {
			break
		}
		var in incoming
		if err = json.Unmarshal(line, &in); err != nil {
			err = fmt.Errorf("agent: bad line from the agent: %w", err)
			break
		}
		if in.Method == NotificationReceive {
			var p receiveJSON
			if err = json.Unmarshal(in.Params, &p); err != nil {
				err = fmt.Errorf("agent: bad notification: %w", err)
				break
			}
			sub := c.subscription(p.Subscription)
			select {
			case sub.ch <- p.Result.event():
			default:
				err = errors.New("agent: the agent overran a subscription's window")
			}
			if err != nil {
				break
			}
			continue
		}
		if in.Method != "" {
			continue // a notification of a later version
		}
		id, perr := strconv.ParseUint(string(in.ID), 10, 64)
		if perr != nil {
			continue // an answer to no call of ours (a parse error)
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- response{Result: in.Result, Error: in.Error}
		}
	}
	c.c.Close()
	c.mu.Lock()
	c.err = err
	c.pending = nil
	for _, s := range c.subs {
		close(s.ch)
	}
	c.subs = nil
	c.mu.Unlock()
}

// subscription returns the subscription id, making it if needed; nil once
// the connection has ended.
func (c *Conn) subscription(id uint64) *Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		return nil
	}
	s := c.subs[id]
	if s == nil {
		s = &Subscription{ID: id, ch: make(chan Event, Window)}
		c.subs[id] = s
	}
	return s
}

// Call calls method with params (any value that encodes as a JSON object,
// or nil) and decodes the result into result (unless nil). An error from
// the agent is an *Error.
func (c *Conn) Call(ctx context.Context, method string, params, result any) error {
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return ErrClosed
	}
	c.lastID++
	id := c.lastID
	c.pending[id] = ch
	c.mu.Unlock()
	req := Request{ID: json.RawMessage(strconv.FormatUint(id, 10)), Method: method}
	if params != nil {
		req.Params = mustJSON(params)
	}
	line := append(req.AppendJSON(nil), '\n')
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.c.SetWriteDeadline(dl)
	} else {
		c.c.SetWriteDeadline(time.Time{})
	}
	_, err := c.c.Write(line)
	c.wmu.Unlock()
	if err != nil {
		c.c.Close()
		return c.closedErr()
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return r.Error
		}
		if result != nil {
			if err := json.Unmarshal(r.Result, result); err != nil {
				return fmt.Errorf("agent: bad result of %s: %w", method, err)
			}
		}
		return nil
	case <-c.done:
		select {
		case r := <-ch: // answered just before the end
			if r.Error != nil {
				return r.Error
			}
			if result != nil {
				return json.Unmarshal(r.Result, result)
			}
			return nil
		default:
		}
		return c.closedErr()
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		return ctx.Err()
	}
}

func (c *Conn) closedErr() error {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil && !errors.Is(c.err, net.ErrClosed) {
		return fmt.Errorf("%w (%v)", ErrClosed, c.err)
	}
	return ErrClosed
}

// seconds converts a timeout for the API; zero stays zero (the default).
func seconds(d time.Duration) float64 { return d.Seconds() }

// Version returns the agent's version.
func (c *Conn) Version(ctx context.Context) (string, error) {
	var r VersionResult
	err := c.Call(ctx, MethodVersion, nil, &r)
	return r.Version, err
}

// AddRelay adds a relay (client.Client.AddRelay) and returns the number
// configured.
func (c *Conn) AddRelay(ctx context.Context, addr queue.Address) (int, error) {
	var r AddRelayResult
	err := c.Call(ctx, MethodAddRelay, AddRelayParams{Address: addr.String()}, &r)
	return r.Relays, err
}

// Relays returns the configured relays; their passwords are not shown,
// only whether they have one.
func (c *Conn) Relays(ctx context.Context) ([]RelayJSON, error) {
	var r ListRelaysResult
	err := c.Call(ctx, MethodListRelays, nil, &r)
	return r.Relays, err
}

// AddRelayChecked is AddRelay after client.CheckRelay: the agent connects
// to the relay within timeout (0: DefaultCheckTimeout) and adds it only
// if it works.
func (c *Conn) AddRelayChecked(ctx context.Context, addr queue.Address, timeout time.Duration) (int, error) {
	var r AddRelayResult
	err := c.Call(ctx, MethodAddRelay, AddRelayParams{Address: addr.String(), Check: true, Timeout: timeout.Seconds()}, &r)
	return r.Relays, err
}

// RemoveRelay is client.RemoveRelay and client.RelayContacts.
func (c *Conn) RemoveRelay(ctx context.Context, fp queue.Fingerprint) (RemoveRelayResult, error) {
	var r RemoveRelayResult
	err := c.Call(ctx, MethodRemoveRelay, RemoveRelayParams{Fingerprint: fp.String()}, &r)
	return r, err
}

// RetireRelay is client.RetireRelay: it moves every contact off the relay
// and then removes it; with wait, the agent waits up to timeout (0:
// DefaultRetireTimeout) for all to move, and keeps the relay configured
// (Kept) if they have not.
func (c *Conn) RetireRelay(ctx context.Context, fp queue.Fingerprint, wait bool, timeout time.Duration) (RemoveRelayResult, error) {
	var r RemoveRelayResult
	err := c.Call(ctx, MethodRemoveRelay, RemoveRelayParams{Fingerprint: fp.String(), Move: true, Wait: wait, Timeout: seconds(timeout)}, &r)
	return r, err
}

// RelayStatus is client.RelayStatus.
func (c *Conn) RelayStatus(ctx context.Context) ([]RelayStatusJSON, error) {
	var r RelayStatusResult
	err := c.Call(ctx, MethodRelayStatus, nil, &r)
	return r.Relays, err
}

// Invite makes an invitation (client.Client.Invite); the agent tries for
// at most timeout (0: DefaultRelayTimeout).
func (c *Conn) Invite(ctx context.Context, name string, timeout time.Duration) (string, error) {
	var r InviteResult
	err := c.Call(ctx, MethodInvite, InviteParams{Name: name, Timeout: seconds(timeout)}, &r)
	return r.Link, err
}

// Accept accepts an invitation (client.Client.Accept); the agent tries
// for at most timeout (0: DefaultRelayTimeout).
func (c *Conn) Accept(ctx context.Context, link, name string, timeout time.Duration) (client.Contact, error) {
	var r AcceptResult
	err := c.Call(ctx, MethodAccept, AcceptParams{Link: link, Name: name, Timeout: seconds(timeout)}, &r)
	return r.Contact.contact(), err
}

// Contacts returns the contacts (client.Client.Contacts).
func (c *Conn) Contacts(ctx context.Context) ([]client.Contact, error) {
	var r ContactsResult
	if err := c.Call(ctx, MethodContacts, nil, &r); err != nil {
		return nil, err
	}
	out := make([]client.Contact, 0, len(r.Contacts))
	for _, j := range r.Contacts {
		out = append(out, j.contact())
	}
	return out, nil
}

// Send queues a message (client.Client.Send) and returns its sequence
// number.
func (c *Conn) Send(ctx context.Context, contact, text string) (uint64, error) {
	var r SendResult
	err := c.Call(ctx, MethodSend, SendParams{contact, text}, &r)
	return r.Seq, err
}

// Flush waits, at most timeout (0: DefaultFlushTimeout), until the relays
// took every queued message, and reports whether they did.
func (c *Conn) Flush(ctx context.Context, timeout time.Duration) (bool, error) {
	var r FlushResult
	err := c.Call(ctx, MethodFlush, FlushParams{seconds(timeout)}, &r)
	return r.Flushed, err
}

// Forget forgets a contact (client.Client.Forget); the agent tries for at
// most timeout (0: DefaultRelayTimeout) to delete its queue. The notice to
// the contact may wait in the outbox: see Flush.
func (c *Conn) Forget(ctx context.Context, contact string, timeout time.Duration) error {
	return c.Call(ctx, MethodForget, ForgetParams{contact, seconds(timeout)}, nil)
}

// Rotate starts the rotation of a contact's receiving queue
// (client.Client.Rotate); the agent tries for at most timeout (0:
// DefaultRelayTimeout) to create the new queue. The rotation goes on in
// the background: Contacts shows where it is, and a "rotated" event says
// it is complete.
func (c *Conn) Rotate(ctx context.Context, contact string, timeout time.Duration) error {
	return c.Call(ctx, MethodRotate, RotateParams{contact, seconds(timeout)}, nil)
}

// Rename renames a contact (client.Client.Rename).
func (c *Conn) Rename(ctx context.Context, contact, name string) error {
	return c.Call(ctx, MethodRename, RenameParams{contact, name}, nil)
}

// Subscription is a stream of events from the agent.
type Subscription struct {
	ID uint64
	ch chan Event // capacity Window
}

// Events returns the subscription's events. It is closed when the
// connection ends. Ack every event received (the agent sends at most
// Window unacknowledged ones).
func (s *Subscription) Events() <-chan Event { return s.ch }

// Subscribe subscribes to the events of the contact called contact and
// those of no contact (relays down and up), or to all if contact is "":
// first those stored, then each as it happens.
func (c *Conn) Subscribe(ctx context.Context, contact string) (*Subscription, error) {
	var r SubscribeResult
	if err := c.Call(ctx, MethodSubscribe, SubscribeParams{contact}, &r); err != nil {
		return nil, err
	}
	s := c.subscription(r.Subscription)
	if s == nil {
		return nil, c.closedErr()
	}
	return s, nil
}

// Unsubscribe ends a subscription.
func (c *Conn) Unsubscribe(ctx context.Context, s *Subscription) error {
	return c.Call(ctx, MethodUnsubscribe, UnsubscribeParams{s.ID}, nil)
}

// Ack acknowledges the event id and reports whether that removed it from
// the store: true for exactly one of those who ack an event. Show an
// event only once Ack returned true, and it is shown once.
func (c *Conn) Ack(ctx context.Context, id uint64) (bool, error) {
	var r AckResult
	err := c.Call(ctx, MethodAck, AckParams{ID: id}, &r)
	return r.Removed, err
}

// AckAs is Ack naming the ack with token (random, at most
// client.MaxTakeToken bytes, new for each ack). When AckAs fails with
// ErrClosed, the agent may or may not have removed the event: Taken,
// asked of the next agent, or client.Client.TookEvent of the store
// opened once the agent is gone, tells whether this ack removed it.
func (c *Conn) AckAs(ctx context.Context, id uint64, token string) (bool, error) {
	var r AckResult
	err := c.Call(ctx, MethodAck, AckParams{ID: id, Token: token}, &r)
	return r.Removed, err
}

// Taken reports whether event id was removed by an ack with token (of
// the last client.TakenKept acks with a token).
func (c *Conn) Taken(ctx context.Context, id uint64, token string) (bool, error) {
	var r TakenResult
	err := c.Call(ctx, MethodTaken, TakenParams{ID: id, Token: token}, &r)
	return r.Taken, err
}
