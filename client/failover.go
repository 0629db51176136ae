package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Errors of failover.
var (
	// ErrRelaysUnreachable is returned by Invite and Accept when none of
	// the configured relays could be used within the relay budget
	// (Config.RelayTimeout) each. The error also wraps one RelayError per
	// relay tried, which says why.
	ErrRelaysUnreachable = errors.New("none of the relays could be used")
	// ErrInviterRelay is returned by Accept when the inviter's relay, which
	// holds the queue the invitation is for, cannot be reached or refuses
	// the connection. The invitation is not used up. The error also wraps
	// a RelayError that names the relay and says why.
	ErrInviterRelay = errors.New("the inviter's relay cannot be used")
)

// RelayError is a failure to use one relay: it could not be reached
// (link.ErrUnreachable, or the caller's context error), it is not the one
// its address pins (link.ErrWrongFingerprint), its TLS is unusable
// (link.ErrTLS), or it refused our password (link.ErrWrongPassword).
type RelayError struct {
	// Relay is the relay's address, without its password.
	Relay queue.Address
	Err   error
}

func (e *RelayError) Error() string { return fmt.Sprintf("relay %s: %v", e.Relay.HostPort(), e.Err) }

func (e *RelayError) Unwrap() error { return e.Err }

// Defaults of Config.RelayTimeout.
const (
	DefaultRelayTimeout    = 5 * time.Second
	DefaultTorRelayTimeout = 30 * time.Second
)

// relayTimeout is the time a command gives one relay before it tries
// another.
func (c *Client) relayTimeout() time.Duration {
	switch {
	case c.cfg.RelayTimeout > 0:
		return c.cfg.RelayTimeout
	case c.cfg.Dial.Tor.On():
		return DefaultTorRelayTimeout
	}
	return DefaultRelayTimeout
}

// try returns the link's live connection, or why its last attempt
// failed. Unlike get, it does not wait for later attempts: it waits,
// within ctx, only for the first one, while the link has made none yet.
// So a relay that is down costs a command no more than one attempt.
func (l *relayLink) try(ctx context.Context) (*link.Conn, error) {
	for {
		l.mu.Lock()
		conn, err, changed := l.conn, l.lastErr, l.changed
		l.mu.Unlock()
		if conn != nil || err != nil {
			return conn, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.ctx.Done():
			return nil, link.ErrClosed
		}
	}
}

// status returns the link's live connection, or nil and why its last
// attempt failed; both are nil while the first attempt is under way.
func (l *relayLink) status() (*link.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn, l.lastErr
}

// RelayState is what a client knows of a relay's reachability.
type RelayState int

// Relay states.
const (
	// RelayConnecting: the first connection attempt is under way.
	RelayConnecting RelayState = iota + 1
	// RelayUp: the client is connected to the relay.
	RelayUp
	// RelayDown: the last attempt to connect failed (RelayStatus.Err says
	// why); the client keeps trying in the background.
	RelayDown
	// RelayRefused: the relay answers but refused to create a queue with
	// the configured password (RelayStatus.Err wraps
	// link.ErrWrongPassword): new contacts do not use it.
	RelayRefused
)

func (s RelayState) String() string {
	switch s {
	case RelayConnecting:
		return "connecting"
	case RelayUp:
		return "up"
	case RelayDown:
		return "down"
	case RelayRefused:
		return "refused"
	}
	return fmt.Sprintf("RelayState(%d)", int(s))
}

// RelayStatus is the state of one relay the client has used or tried in
// this run.
type RelayStatus struct {
	// Relay is the relay's address, without its password.
	Relay queue.Address
	State RelayState
	// Err says why the relay is RelayDown or RelayRefused; nil otherwise.
	Err error
}

// RelayStatus returns the state of each relay that the client has
// connected to or tried since Open (for its contacts' queues, the
// outbox, Invite or Accept), ordered by address. It does not block. Under
// Tor, where a relay has one connection per contact, a relay is up when
// any of them is, and down when all have failed.
func (c *Client) RelayStatus() []RelayStatus {
	byFP := make(map[queue.Fingerprint]*RelayStatus)
	c.mu.Lock()
	links := make([]*relayLink, 0, len(c.links))
	for _, l := range c.links {
		links = append(links, l)
	}
	refused := make(map[queue.Fingerprint]error, len(c.refused))
	for fp, err := range c.refused {
		refused[fp] = err
	}
	c.mu.Unlock()
	for _, l := range links {
		l.mu.Lock()
		addr, conn, err := l.addr, l.conn, l.lastErr
		l.mu.Unlock()
		st := RelayStatus{Relay: addr.WithoutPassword(), State: RelayConnecting}
		switch {
		case conn != nil:
			st.State = RelayUp
		case err != nil:
			st.State, st.Err = RelayDown, err
		}
		prev, ok := byFP[addr.Fingerprint]
		switch {
		case !ok:
			byFP[addr.Fingerprint] = &st
		case st.State == RelayUp, prev.State == RelayDown && st.State == RelayConnecting:
			*prev = st
		}
	}
	for fp, err := range refused {
		if st, ok := byFP[fp]; ok && st.State != RelayDown {
			st.State, st.Err = RelayRefused, err
		}
	}
	out := make([]RelayStatus, 0, len(byFP))
	for _, st := range byFP {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b RelayStatus) int {
		if a.Relay.Host != b.Relay.Host {
			return cmpString(a.Relay.Host, b.Relay.Host)
		}
		return int(a.Relay.Port) - int(b.Relay.Port)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// noteRefused records that the relay refused to create a queue (err), or
// that it created one (err == nil).
func (c *Client) noteRefused(fp queue.Fingerprint, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.refused, fp)
		return
	}
	if c.refused == nil {
		c.refused = make(map[queue.Fingerprint]error)
	}
	c.refused[fp] = err
}

// candidates returns relays in the order a command tries them: those
// with a live connection and those not tried yet first, together, so
// that new queues spread evenly over the relays that answer (ranking
// connected relays first kept a fresh client on the first relays it
// reached); then those whose last attempt failed, and those not reached
// yet in this run that this run or an earlier one found down less than
// rememberDown ago (a command without an agent opens the client anew
// each time: it remembers what the previous one found); then those that
// refused us; each group shuffled.
func (c *Client) candidates(relays []queue.Address) []queue.Address {
	rank := make(map[queue.Fingerprint]int) // absent: 0
	c.mu.Lock()
	for fp := range c.downBefore {
		rank[fp] = 1
	}
	for k, l := range c.links {
		conn, err := l.status()
		r := 0
		if conn == nil && (err != nil || c.downBefore[k.fp]) {
			r = 1
		}
		if old, ok := rank[k.fp]; !ok || r < old {
			rank[k.fp] = r
		}
	}
	for fp := range c.refused {
		rank[fp] = 2
	}
	c.mu.Unlock()
	out := slices.Clone(relays)
	mrand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b queue.Address) int {
		return rank[a.Fingerprint] - rank[b.Fingerprint]
	})
	return out
}

// createQueue creates a queue for the contact with isolation iso on the
// first of relays that answers and takes our password, trying them in
// order (see candidates) for at most the relay budget each. It returns
// the relay used and a connection to it; when none could be used, an
// error wrapping ErrRelaysUnreachable and each relay's RelayError. It
// stops, with ctx's error, when ctx ends.
func (c *Client) createQueue(ctx context.Context, relays []queue.Address, iso string) (queue.Address, *link.Conn, link.Queue, error) {
	var errs []error
	for _, addr := range relays {
		conn, q, err := c.createOn(ctx, addr, iso)
		if err == nil {
			return addr, conn, q, nil
		}
		if ctx.Err() != nil {
			errs = append(errs, &RelayError{addr.WithoutPassword(), err})
			return queue.Address{}, nil, link.Queue{}, fmt.Errorf("%w: %w", ctx.Err(), relayErrors(errs))
		}
		c.cfg.Logger.Debug("relay skipped", "err", err)
		errs = append(errs, &RelayError{addr.WithoutPassword(), err})
	}
	return queue.Address{}, nil, link.Queue{}, fmt.Errorf("%w: %w", ErrRelaysUnreachable, relayErrors(errs))
}

// relayErrors is the failures of several relays, on one line.
type relayErrors []error

func (e relayErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e relayErrors) Unwrap() []error { return e }

// createOn creates a queue on addr's relay within the relay budget.
func (c *Client) createOn(ctx context.Context, addr queue.Address, iso string) (*link.Conn, link.Queue, error) {
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	l := c.linkTo(addr, iso)
	conn, err := l.try(rctx)
	if err != nil {
		return nil, link.Queue{}, l.budgetErr(rctx, err)
	}
	q, err := conn.Create(rctx)
	if errors.Is(err, link.ErrWrongPassword) {
		c.noteRefused(addr.Fingerprint, err)
	}
	if err != nil {
		return nil, link.Queue{}, l.budgetErr(rctx, err)
	}
	c.noteRefused(addr.Fingerprint, nil)
	return conn, q, nil
}

// budgetErr describes err, met on l within the relay budget rctx: when
// the budget itself expired, why the link's last attempt failed, or
// link.ErrUnreachable if it made none.
func (l *relayLink) budgetErr(rctx context.Context, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return err
	}
	if _, last := l.status(); last != nil {
		return last
	}
	return fmt.Errorf("%w: no answer within %v", link.ErrUnreachable, l.c.relayTimeout())
}

// subscribeNew subscribes to the queue q just created on conn, within a
// relay budget of its own rather than the caller's, whose deadline may be
// near: the contact is stored, and a queue left unsubscribed on a live
// connection would not be read until the link reconnects. If it fails
// while conn is still open, it closes conn, so that the link reconnects
// and subscribes to every queue, q included. A SendOnly client does not
// subscribe.
func (c *Client) subscribeNew(conn *link.Conn, q link.Queue) {
	if c.cfg.Offline || c.cfg.SendOnly {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
	defer cancel()
	if err := conn.Subscribe(ctx, q); err != nil {
		c.cfg.Logger.Debug("subscribing to a new queue", "err", err)
		conn.Close()
	}
}
