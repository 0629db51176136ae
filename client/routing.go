package client

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Routing says when the client hands the commands it sends to a queue
// (SEND, and the SKEY that secures a queue, when accepting an invitation
// among others) to a forwarding relay of its own, which forwards them to
// the queue's relay: private message routing, queue/PROTOCOL.md section
// 20. The queue's relay then sees the forwarding relay's network address,
// never the client's (README, Privacy).
type Routing string

// Routing settings, the values of Config.Routing.
const (
	// RoutingAuto (the zero value) is RoutingNever when every relay
	// connection goes through Tor (link.Config.Tor is required), which
	// hides the client's address from every relay already, and
	// RoutingUnknown otherwise (TorPrefer reaches relays without an onion
	// host directly).
	RoutingAuto Routing = ""
	// RoutingAlways sends every command to a queue through a forwarding
	// relay: one of the configured relays (Client.Relays) other than the
	// queue's own.
	RoutingAlways Routing = "always"
	// RoutingUnknown sends through a forwarding relay the commands to
	// queues on relays that are not among the configured ones
	// (Client.Relays: a relay removed is not), such as the contacts'
	// relays, and directly those to the configured relays, which the user
	// chose.
	RoutingUnknown Routing = "unknown"
	// RoutingNever sends every command directly to the queue's relay,
	// which sees the client's address (or Tor's, under Tor).
	RoutingNever Routing = "never"
)

// Errors of private routing.
var (
	// ErrRouting is returned by Open for a Config.Routing that is none of
	// the settings.
	ErrRouting = fmt.Errorf("unknown routing (want %q, %q or %q)", RoutingAlways, RoutingUnknown, RoutingNever)
	// ErrNoForwarder is returned (wrapped, with each forwarding relay's
	// RelayError) when the routing setting asks for private routing to a
	// queue's relay and no forwarding relay could be used: none is
	// configured besides the queue's relay, none answers, or none
	// forwards (forwarding off, a broken attestation). Nothing is then
	// sent directly. (When a forwarding relay answers that it cannot
	// reach the queue's relay, that relay is down: the error wraps
	// link.ErrUnreachable instead, and messages wait as for a relay that
	// is down.) Accept
	// returns it (wrapped in ErrInviterRelay, the invitation still
	// usable); the outbox keeps the message, retries it with backoff, and
	// reports it once in an EventProblem for the contact until a send to
	// it succeeds again.
	ErrNoForwarder = errors.New("private routing: no forwarding relay forwarded the message, and it is not sent directly")
)

func (r Routing) String() string {
	if r == RoutingAuto {
		return "auto"
	}
	return string(r)
}

// valid reports whether r is one of the settings.
func (r Routing) valid() bool {
	switch r {
	case RoutingAuto, RoutingAlways, RoutingUnknown, RoutingNever:
		return true
	}
	return false
}

// routes holds the client's proxied sessions, and the contacts whose
// sends private routing currently fails (reported once). Its zero value
// is ready.
type routes struct {
	mu sync.Mutex
	// proxied are the sessions to destination relays through forwarding
	// relays, by destination and isolation.
	proxied map[linkKey]*link.Proxied
	// failing holds the IDs of the contacts told of ErrNoForwarder since
	// their last successful send.
	failing map[string]bool
}

// routing returns the effective setting: RoutingAuto resolved.
func (c *Client) routing() Routing {
	if c.cfg.Routing != RoutingAuto {
		return c.cfg.Routing
	}
	if c.cfg.Dial.Tor == link.TorRequired {
		return RoutingNever
	}
	return RoutingUnknown
}

// private reports whether commands to queues on dest's relay go through
// a forwarding relay, as the routing setting says.
func (c *Client) private(dest queue.Address) (bool, error) {
	switch c.routing() {
	case RoutingAlways:
		return true, nil
	case RoutingNever:
		return false, nil
	}
	relays, err := c.Relays()
	if err != nil {
		return false, err
	}
	for _, a := range relays {
		if a.Fingerprint == dest.Fingerprint {
			return false, nil
		}
	}
	return true, nil
}

// proxyTo returns a session to dest's relay through a forwarding relay,
// for the isolation iso (see Client.isolation): the one used last, while
// its connection lives, else a new one through the first configured
// relay other than dest's (in the order of candidates) whose connection
// comes within the relay budget and that forwards to dest (PRXY, the
// attestation checked against dest's fingerprint). When none does, the
// error wraps one RelayError per relay tried, and link.ErrUnreachable
// if one of them answered that it could not reach dest (ERR PROXY: dest
// is down, or that relay's relay-to-relay sessions are all busy), else
// ErrNoForwarder; when ctx ends first, ctx's error.
func (c *Client) proxyTo(ctx context.Context, dest queue.Address, iso string) (*link.Proxied, error) {
	key := linkKey{dest.Fingerprint, iso}
	c.routes.mu.Lock()
	p := c.routes.proxied[key]
	c.routes.mu.Unlock()
	if p != nil && p.Conn().Err() == nil {
		return p, nil
	}
	relays, err := c.Relays()
	if err != nil {
		return nil, err
	}
	var fwd []queue.Address
	for _, a := range relays {
		if a.Fingerprint != dest.Fingerprint {
			fwd = append(fwd, a)
		}
	}
	if len(fwd) == 0 {
		return nil, fmt.Errorf("%w: no relay is configured besides %s (add one with hush relays add)", ErrNoForwarder, dest.HostPort())
	}
	var errs []error
	for _, a := range c.candidates(fwd) {
		p, err := c.proxyVia(ctx, a, dest, iso)
		if err == nil {
			c.routes.mu.Lock()
			if c.routes.proxied == nil {
				c.routes.proxied = make(map[linkKey]*link.Proxied)
			}
			c.routes.proxied[key] = p
			c.routes.mu.Unlock()
			return p, nil
		}
		errs = append(errs, &RelayError{a.WithoutPassword(), err})
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), relayErrors(errs))
		}
		if errors.Is(err, link.ErrForwardTampered) {
			c.cfg.Logger.Warn("a forwarding relay changed what the destination relay sent; trying another")
		} else {
			c.cfg.Logger.Debug("forwarding relay skipped", "err", err)
		}
	}
	for _, err := range errs {
		if errors.Is(err, queue.PROXY) {
			// A forwarding relay answered, and could not reach dest:
			// dest is down, as a direct send would have found.
			return nil, fmt.Errorf("%w: no forwarding relay reached it: %w", link.ErrUnreachable, relayErrors(errs))
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoForwarder, relayErrors(errs))
}

// proxyVia asks the relay at fwd to forward to dest, within the relay
// budget.
func (c *Client) proxyVia(ctx context.Context, fwd, dest queue.Address, iso string) (*link.Proxied, error) {
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	l := c.linkTo(fwd, iso)
	conn, err := l.try(rctx)
	if err != nil {
		return nil, l.budgetErr(rctx, err)
	}
	p, err := conn.Proxy(rctx, dest.WithoutPassword())
	if err != nil {
		return nil, l.budgetErr(rctx, err)
	}
	return p, nil
}

// forwardFailed forgets p after a command through it failed with err,
// if err says that the forwarding, not the destination, failed (so that
// the next command asks for a session again, maybe through another
// relay), and reports whether it did.
func (c *Client) forwardFailed(p *link.Proxied, err error) bool {
	if !errors.Is(err, link.ErrForward) && !errors.Is(err, link.ErrForwardTampered) &&
		!errors.Is(err, link.ErrClosed) && p.Conn().Err() == nil {
		return false
	}
	c.routes.mu.Lock()
	defer c.routes.mu.Unlock()
	for k, q := range c.routes.proxied {
		if q == p {
			delete(c.routes.proxied, k)
		}
	}
	return true
}

// routeFailing reports ErrNoForwarder for the contact with the given ID
// in an EventProblem, unless it was reported since the contact's last
// successful send.
func (c *Client) routeFailing(contactID []byte, cause error) {
	c.routes.mu.Lock()
	told := c.routes.failing[string(contactID)]
	if !told {
		if c.routes.failing == nil {
			c.routes.failing = make(map[string]bool)
		}
		c.routes.failing[string(contactID)] = true
	}
	c.routes.mu.Unlock()
	if told {
		return
	}
	c.problem(contactID, cause)
}

// routeWorks records that a send to the contact with the given ID
// succeeded, so that the next failure of private routing is reported.
func (c *Client) routeWorks(contactID []byte) {
	c.routes.mu.Lock()
	delete(c.routes.failing, string(contactID))
	c.routes.mu.Unlock()
}

// sendForwarded hands the outbox entry e, for the queue sid on dest's
// relay, to a forwarding relay (see sendEntry). A failure of the
// forwarding, not of the destination, wraps errRelayDown (and
// ErrNoForwarder when no forwarding relay could be used): the message
// waits.
func (c *Client) sendForwarded(e outboxEntry, dest queue.Address, sid queue.ID, auth *ecdh.PrivateKey) error {
	iso := c.isolation(e.Contact)
	p, err := c.proxyTo(c.ctx, dest, iso)
	if err != nil {
		if c.ctx.Err() == nil && errors.Is(err, ErrNoForwarder) {
			c.routeFailing(e.Contact, err)
		}
		return fmt.Errorf("%w: %w", errRelayDown, err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, sendTimeout)
	defer cancel()
	if e.Secure {
		err = p.SecureSender(ctx, sid, auth)
	}
	if err == nil {
		err = p.Send(ctx, sid, auth, e.Envelope)
	}
	if err != nil && c.forwardFailed(p, err) {
		// Not the destination's answer: ERR in clear from the forwarding
		// relay, a broken seal, a lost connection. errRelayDown comes
		// first so that no code it wraps (an AUTH of the forwarding
		// relay's) is taken for the destination's.
		return fmt.Errorf("%w: %w", errRelayDown, err)
	}
	if err == nil {
		c.routeWorks(e.Contact)
	}
	return err
}

// problem stores an EventProblem for the contact with the given ID.
func (c *Client) problem(contactID []byte, p error) {
	err := c.store.Update(func(tx *vault.Tx) error {
		name := ""
		if v, err := tx.Get(bucketContacts, contactID); err == nil {
			var rec contactRecord
			if unmarshal(v, &rec) == nil {
				name = rec.Name
			}
		}
		return c.pushEvent(tx, Event{Kind: EventProblem, Contact: name, Time: time.Now(), Problem: p})
	})
	if err != nil {
		c.cfg.Logger.Error("storing an event", "err", err)
	}
	notify(c.wakeEvents)
}

// securer is a connection or a proxied session that can secure a queue.
type securer interface {
	SecureSender(ctx context.Context, sid queue.ID, senderKey *ecdh.PrivateKey) error
}

// inviterSender returns what Accept secures the inviter's queue on dest
// with: a session through a forwarding relay when the routing setting
// says so (errors as proxyTo's), else the connection of the link to dest
// for the isolation iso, waited for within the relay budget.
func (c *Client) inviterSender(ctx context.Context, dest queue.Address, iso string) (securer, error) {
	switch priv, err := c.private(dest); {
	case err != nil:
		return nil, err
	case priv:
		return c.proxyTo(ctx, dest, iso)
	}
	tctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	l := c.linkTo(dest, iso)
	conn, err := l.get(tctx)
	if err != nil {
		return nil, l.budgetErr(tctx, err)
	}
	return conn, nil
}

// sendVia is sendTo through a forwarding relay: errors wrap
// ErrNoForwarder when no forwarding relay forwarded, a
// RelayError of relay's for another failure, except the destination's
// AUTH, returned as is.
func (c *Client) sendVia(ctx context.Context, relay queue.Address, sid queue.ID, key *ecdh.PrivateKey, body []byte) error {
	p, err := c.proxyTo(ctx, relay, "")
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.relayTimeout())
	defer cancel()
	err = p.Send(rctx, sid, key, body)
	switch {
	case err == nil:
		return nil
	case c.forwardFailed(p, err):
		// Not the destination's answer: no code it wraps is the
		// destination's.
		return fmt.Errorf("%w: %v", ErrNoForwarder, err)
	case errors.Is(err, queue.AUTH):
		return err
	}
	return &RelayError{relay, err}
}
