package client

import (
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"
)

// Isolation says which of a client's queues share a connection (a
// session) to a relay: what one relay can link by the session alone
// (README, Privacy; queue/PROTOCOL.md section 17).
type Isolation string

// Isolation settings, the values of Config.Isolation.
const (
	// IsolationAuto (the zero value) is IsolationContact when relay
	// connections go through Tor (link.Config.Tor is prefer or required),
	// IsolationRelay otherwise. Without Tor, every session of a client
	// comes from its network address, which tells the relay as much as a
	// shared session would, while a session per contact costs a
	// connection, a handshake and keep-alives per contact and relay;
	// under Tor, separate circuits hide that address, and per-contact
	// sessions are worth their cost.
	IsolationAuto Isolation = ""
	// IsolationRelay uses one session per relay for all the contacts
	// whose queues are on it: the relay sees those queues used together.
	// SimpleX calls this isolation per user profile.
	IsolationRelay Isolation = "relay"
	// IsolationContact uses one session per contact and relay: no session
	// carries the queues of two contacts, and under Tor each gets a
	// circuit of its own (SOCKS isolation). Without Tor the sessions
	// still come from one network address. SimpleX calls this isolation
	// per connection.
	IsolationContact Isolation = "contact"
)

// ErrIsolation is returned by Open for a Config.Isolation that is none of
// the settings.
var ErrIsolation = fmt.Errorf("unknown isolation (want %q or %q)", IsolationRelay, IsolationContact)

func (m Isolation) String() string {
	if m == IsolationAuto {
		return "auto"
	}
	return string(m)
}

// valid reports whether m is one of the settings.
func (m Isolation) valid() bool {
	return m == IsolationAuto || m == IsolationRelay || m == IsolationContact
}

// perContact reports whether the client keeps a session per contact.
func (c *Client) perContact() bool {
	switch c.cfg.Isolation {
	case IsolationContact:
		return true
	case IsolationRelay:
		return false
	}
	return c.cfg.Dial.Tor.On()
}

// isolation returns the link isolation value of the contact with the
// given ID: a value of its own with a session per contact (also its SOCKS
// credentials under Tor), "" (one session per relay) otherwise.
func (c *Client) isolation(contactID []byte) string {
	if !c.perContact() {
		return ""
	}
	return hex.EncodeToString(contactID)
}

// inScope reports whether the online client works for the contact with
// the given ID (Config.Contacts).
func (c *Client) inScope(contactID []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scope == nil || c.scope[string(contactID)]
}

// addScope adds the contact with the given ID, just made by Invite or
// Accept, to a limited scope.
func (c *Client) addScope(contactID []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scope != nil {
		c.scope[string(contactID)] = true
	}
}

// staggerDelay draws the delay before the first connection of a link
// that Open starts: uniform in [0, Config.Stagger).
func (c *Client) staggerDelay() time.Duration {
	if c.cfg.Stagger <= 0 {
		return 0
	}
	return mrand.N(c.cfg.Stagger)
}
