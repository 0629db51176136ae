// Package client is the hush client library: the messenger.
//
// A Client (Init, Open) is one person's hush: contacts made from one-time
// invitation links (Invite, Accept), each a pair of queues on two relays,
// end-to-end encrypted with a hybrid X25519 + ML-KEM-768 agreement and a
// double ratchet (package client/ratchet); messages to send (Send) wait in
// an encrypted local store until a relay accepts them; received messages
// are stored before they are acknowledged, and reach the application once
// through Events. See the package example.
//
// Connections to relays are package client/link's.
package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Errors of the contact layer.
var (
	// ErrNotInitialized is returned by Open when the home directory holds
	// no store: run Init first.
	ErrNotInitialized = errors.New("hush is not initialized here (run hush init)")
	// ErrExists is returned by Init when the home directory already holds
	// a store.
	ErrExists = errors.New("hush is already initialized here")
	// ErrWrongPassphrase is returned by Open when the passphrase or key
	// file does not unlock the store.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrPassphraseRequired is returned by Open when the store is locked by
	// a passphrase and none was given.
	ErrPassphraseRequired = errors.New("this store needs its passphrase")
	// ErrInUse is returned by Open when another Client, in this or another
	// process (an agent, say), has the store open.
	ErrInUse = vault.ErrLocked
	// ErrNoRelay is returned by Invite and Accept when no relay is
	// configured.
	ErrNoRelay = errors.New("no relay configured (add one with hush relays add)")
	// ErrNameTaken is returned by Invite and Accept when another contact
	// has the name.
	ErrNameTaken = errors.New("a contact with this name exists")
	// ErrNoContact is returned by Send for an unknown contact name.
	ErrNoContact = errors.New("no such contact")
	// ErrNotConnected is returned by Send while the contact has not
	// accepted the invitation yet.
	ErrNotConnected = errors.New("the contact has not accepted the invitation yet")
	// ErrBadLink is returned by Accept, before any network use, for a link
	// that is not a whole, unchanged invitation link: its integrity check
	// catches any changed character and any cut.
	ErrBadLink = errors.New("not a valid hush invitation link")
	// ErrOldLink is returned by Accept for a whole invitation link of an
	// earlier format (one made by hush before links had an integrity
	// check). It matches ErrBadLink too.
	ErrOldLink = fmt.Errorf("%w: it was made by an older version of hush", ErrBadLink)
	// ErrInvitationUsed is returned by Accept when the invitation was
	// already accepted (or withdrawn): links work once.
	ErrInvitationUsed = errors.New("this invitation was already used")
	// ErrTooLong is returned by Send for a text over MaxTextSize bytes.
	ErrTooLong = errors.New("message too long")
)

// Problems reported in EventProblem events.
var (
	// ErrTampered: a message did not decrypt or authenticate; it was
	// changed on the way, or is not from the contact.
	ErrTampered = errors.New("a message did not decrypt: changed on the way or not from this contact")
	// ErrDuplicate: a message arrived again; it is not shown twice.
	ErrDuplicate = errors.New("a message arrived twice")
	// ErrGap: messages are missing before this one.
	ErrGap = errors.New("messages are missing")
	// ErrBadHash: the message does not follow the previous one received.
	ErrBadHash = errors.New("the message does not follow the previous one")
)

// Files in the home directory.
const (
	storeFile = "hush.db"
	keyFile   = "hush.key"
)

// Config configures a Client. Zero values are the documented defaults.
type Config struct {
	// Home is the directory of the store. Required.
	Home string
	// Passphrase unlocks the store; nil means the key file in Home.
	Passphrase []byte
	// Dial says how relays are reached.
	Dial link.Config
	// RelayTimeout is how long Invite and Accept wait for one relay to
	// connect and answer before they try another. Default
	// DefaultRelayTimeout, or DefaultTorRelayTimeout with Tor.
	RelayTimeout time.Duration
	// Offline keeps the client from connecting to relays until a command
	// needs one: no subscriptions, no background sending.
	Offline bool
	// Contacts, when not nil, names the contacts an online client works
	// for, so that it connects only to the relays they need: it subscribes
	// to their queues only, the outbox sends (and Flush waits for) their
	// messages only, and only their unfinished handshakes expire. Invite
	// and Accept add the contact they make. Names of no contact are
	// ignored. nil: every contact.
	Contacts []string
	// SendOnly keeps an online client from subscribing to any queue: it
	// connects only to send what waits in the outbox (for Contacts), and
	// for the calls that need a relay (Invite, Accept, Forget).
	SendOnly bool
	// Isolation says which queues share a session to a relay: one
	// session per relay, or one per contact (and, under Tor, a circuit
	// per contact). Default IsolationAuto: per contact under Tor, per
	// relay without.
	Isolation Isolation
	// Routing says which commands to queues go through a forwarding
	// relay, so that the queue's relay does not see the client's address
	// (private message routing). Default RoutingAuto: RoutingNever when
	// link.Config.Tor is required, RoutingUnknown otherwise.
	Routing Routing
	// Stagger spreads the first connections of the links Open starts (to
	// subscribe to the client's queues) over a random delay each, uniform
	// in [0, Stagger), so that the relays do not all see the client come
	// online at the same instant. A call that needs a link waiting for
	// its delay starts it at once. Default 0: no delay.
	Stagger time.Duration
	// RotateEvery is how often the online client rotates each contact's
	// receiving queue on its own (queue/PROTOCOL.md section 19.11): each
	// contact's next rotation is drawn uniformly between 3/4 and 5/4 of
	// RotateEvery after its last one, so that a client's rotations do
	// not happen together. Default 0: no automatic rotation (Rotate
	// still rotates on request; the agent sets its own default, see
	// README).
	RotateEvery time.Duration
	// Logger receives operational logs, wrapped in queue.RedactHandler so
	// that errors that embed network addresses (dial errors) lose them;
	// default: discard.
	Logger *slog.Logger
	// Events says how events reach the application; the default is
	// EventsChannel (see Events).
	Events EventMode
	// HandshakeExpiry is how long a contact may stay invited or joining
	// before the client forgets it; default HandshakeExpiry.
	HandshakeExpiry time.Duration
	// NewCircuits, when set under Tor, is called after a relay link's
	// attempts have failed torNewCircuitsAfter times in a row, to make tor
	// build new circuits and forget the onion service descriptors it
	// cached (torutil.Tor.NewCircuits, for a client that controls its
	// tor). Without it, a link still reaches a restarted onion relay:
	// each attempt uses a circuit of its own. Default: nil.
	NewCircuits func() error
}

// Init creates the store in home, which it creates if missing and sets
// to mode 0700 if it exists, so that only its owner can list or reach the
// files in it. A nil passphrase means no passphrase: a random key is
// written to the key file hush.key (mode 0600) instead.
func Init(home string, passphrase []byte) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return err
	}
	path := filepath.Join(home, storeFile)
	if _, err := os.Stat(path); err == nil {
		return ErrExists
	}
	v, err := vault.Create(path, secret(home, passphrase))
	if errors.Is(err, vault.ErrExists) {
		return ErrExists
	}
	if err != nil {
		return err
	}
	return v.Close()
}

func secret(home string, passphrase []byte) vault.Secret {
	if passphrase != nil {
		return vault.Secret{Passphrase: passphrase}
	}
	return vault.Secret{KeyFile: filepath.Join(home, keyFile)}
}

// Client is one person's hush: their contacts, relays and messages. Its
// methods are safe for concurrent use. Close it when done.
type Client struct {
	cfg   Config
	store *vault.Vault

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	events      chan Event    // unbuffered: see Events
	wakeEvents  chan struct{} // capacity 1
	wakeOutbox  chan struct{} // capacity 1
	wakeRotate  chan struct{} // capacity 1: the rotation loop has work
	outboxEmpty chan struct{} // capacity 1: signalled when the outbox drains

	closeOnce sync.Once

	// mu guards the fields below it. It is held only to read or change
	// them, never across a store transaction, a relay's answer or any
	// other wait: transactions take it (sendOutbox, Flush and process,
	// through inScope and drainWaived), and a transaction may wait for
	// another to end (a commit that grows the store's file waits for
	// every open transaction, and holds new ones back meanwhile; see
	// vault.Vault.View), so a goroutine that waited for the store holding
	// mu could stop them all, for good. A relayLink's mu is taken after
	// it, if both are.
	mu sync.Mutex
	// links are the relay connections, by relay fingerprint.
	links map[linkKey]*relayLink

	// scope holds the IDs of the contacts in Config.Contacts, and those
	// Invite and Accept made since; nil: every contact.
	scope map[string]bool

	// relayDown says, by relay, whether the last attempt to reach it
	// failed; a relay not yet tried is not in it (see reachable).
	relayDown map[queue.Fingerprint]bool
	// downBefore holds the relays that a run found down less than
	// rememberDown before this one opened, until this run reaches them
	// (see candidates).
	downBefore map[queue.Fingerprint]bool

	// refused holds the relays that refused to create a queue (a wrong
	// password), and why; nil until one does.
	refused map[queue.Fingerprint]error

	// addrRID is the recipient ID of our contact address's queue (zero
	// for none), once addrKnown (see isAddressQueue).
	addrRID   queue.ID
	addrKnown bool

	// holds are the rotations whose new queue delivered a message that
	// waits for the old queue to drain, by contact ID (rotate.go).
	holds map[string]*heldQueue

	// routes holds the sessions of private routing (routing.go).
	routes routes
}

// Open opens the store in cfg.Home. Unless cfg.Offline, it connects to the
// relays of the client's queues, subscribes to them and starts sending
// what waits in the outbox, in the background, until Close.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Home == "" {
		return nil, errors.New("client: no home directory")
	}
	if !cfg.Isolation.valid() {
		return nil, fmt.Errorf("client: %w: %q", ErrIsolation, string(cfg.Isolation))
	}
	if !cfg.Routing.valid() {
		return nil, fmt.Errorf("client: %w: %q", ErrRouting, string(cfg.Routing))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = slog.New(queue.RedactHandler(cfg.Logger.Handler()))
	path := filepath.Join(cfg.Home, storeFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotInitialized
	}
	sec := secret(cfg.Home, cfg.Passphrase)
	if cfg.Passphrase == nil {
		if _, err := os.Stat(sec.KeyFile); errors.Is(err, os.ErrNotExist) {
			return nil, ErrPassphraseRequired
		}
	}
	v, err := vault.Open(path, sec)
	if errors.Is(err, vault.ErrWrongKey) {
		return nil, ErrWrongPassphrase
	}
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:         cfg,
		store:       v,
		events:      make(chan Event),
		wakeEvents:  make(chan struct{}, 1),
		wakeOutbox:  make(chan struct{}, 1),
		wakeRotate:  make(chan struct{}, 1),
		outboxEmpty: make(chan struct{}, 1),
		links:       make(map[linkKey]*relayLink),
		relayDown:   make(map[queue.Fingerprint]bool),
	}
	if err := c.buildIndex(); err != nil {
		v.Close()
		return nil, err
	}
	if err := c.dropSentEvents(); err != nil {
		v.Close()
		return nil, err
	}
	if err := v.View(func(tx *vault.Tx) error {
		var err error
		c.downBefore, err = downBefore(tx, time.Now())
		return err
	}); err != nil {
		v.Close()
		return nil, err
	}
	if cfg.Contacts != nil {
		if err := c.setScope(cfg.Contacts); err != nil {
			v.Close()
			return nil, err
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.Events == EventsChannel {
		c.wg.Add(1)
		go c.emitLoop()
	}
	if !cfg.Offline {
		if err := c.goOnline(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// setScope sets the scope to the contacts called names.
func (c *Client) setScope(names []string) error {
	recs, err := c.loadContacts()
	if err != nil {
		return err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	c.scope = make(map[string]bool, len(names))
	for _, r := range recs {
		if want[r.Name] {
			c.scope[string(r.ID)] = true
		}
	}
	return nil
}

// goOnline starts a link to every relay that holds one of the queues we
// receive on for the contacts in scope (unless SendOnly), each after its
// stagger delay, and the outbox sender.
func (c *Client) goOnline() error {
	contacts, err := c.recvRecords()
	if err != nil {
		return err
	}
	for _, ct := range contacts {
		if c.cfg.SendOnly || ct.State == StateGone || !c.inScope(ct.ID) {
			continue
		}
		for _, rq := range ct.recvQueues() {
			addr, err := queue.ParseAddress(rq.Relay)
			if err != nil {
				return fmt.Errorf("contact %q: %w", ct.Name, err)
			}
			c.startLink(addr, c.isolation(ct.ID), c.staggerDelay())
		}
	}
	c.wg.Add(1)
	go c.outboxLoop()
	if !c.cfg.SendOnly {
		c.wg.Add(1)
		go c.rotationLoop()
	}
	c.wg.Add(1)
	go c.expireLoop()
	if !c.cfg.SendOnly && c.inScope(nil) {
		c.wg.Go(c.acceptPending)
	}
	return nil
}

// Close stops the background work, closes relay connections and the
// store. It is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		c.mu.Lock()
		for _, l := range c.links {
			l.close()
		}
		c.mu.Unlock()
		c.wg.Wait()
		if rerr := c.rememberStillDown(time.Now()); rerr != nil {
			c.cfg.Logger.Error("storing the relays' state", "err", rerr)
		}
		err = c.store.Close()
	})
	return err
}

// AddRelay adds a relay that the client may create queues on. Adding one
// again replaces its address (for example a new password, or a new
// host). It returns an error wrapping ErrRelayConflict when another relay
// is configured with the same host (or onion host) and port: remove that
// one first (RemoveRelay). AddRelay does not connect; see CheckRelay.
func (c *Client) AddRelay(addr queue.Address) error {
	return c.store.Update(func(tx *vault.Tx) error {
		key := randomID(16) // the store's keys are in clear: not the fingerprint
		err := tx.ForEach(bucketRelays, nil, func(k, v []byte) error {
			a, err := queue.ParseAddress(string(v))
			switch {
			case err != nil:
			case a.Fingerprint == addr.Fingerprint:
				key = bytes.Clone(k)
			case sameEndpoint(a, addr):
				return fmt.Errorf("%w: %s", ErrRelayConflict, a.WithoutPassword())
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Put(bucketRelays, key, []byte(addr.String()))
	})
}

// Relays returns the configured relays, in no particular order.
func (c *Client) Relays() ([]queue.Address, error) {
	var out []queue.Address
	err := c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketRelays, nil, func(_, v []byte) error {
			a, err := queue.ParseAddress(string(v))
			if err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// ContactState is where a contact is in its life.
type ContactState string

// Contact states.
const (
	// StateInvited: we invited; the contact has not accepted yet.
	StateInvited ContactState = "invited"
	// StateJoining: we accepted; the inviter has not confirmed yet.
	StateJoining ContactState = "joining"
	// StateConnected: both directions work.
	StateConnected ContactState = "connected"
)

// Contact is what the application sees of a contact.
type Contact struct {
	Name    string
	State   ContactState
	Created time.Time
	// SharedRelay is true when both directions use the same relay (only
	// one was configured), which then sees both.
	SharedRelay bool
	// Outbox counts messages to this contact that the relay has not yet
	// accepted.
	Outbox int
	// Expires is when an unfinished handshake (invited, joining) expires;
	// zero for others.
	Expires time.Time
	// ReceiveRelay is the relay of the queue we receive the contact's
	// messages on, and SendRelay the relay of the queue we send to (zero
	// until the contact has confirmed), both without passwords.
	ReceiveRelay, SendRelay queue.Address
	// Rotation says where the rotation of our receiving queue is
	// (RotationNone when none is under way).
	Rotation RotationState
	// Receipts is whether we send the contact delivery receipts:
	// ReceiptsDefault follows the global setting (Client.Receipts).
	Receipts ReceiptMode
}

// Contacts returns every contact, oldest first.
func (c *Client) Contacts() ([]Contact, error) {
	recs, err := c.loadContacts()
	if err != nil {
		return nil, err
	}
	pending := make(map[string]int)
	err = c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketOutbox, nil, func(_, v []byte) error {
			var e outboxEntry
			if err := unmarshal(v, &e); err != nil {
				return err
			}
			pending[string(e.Contact)]++
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]Contact, 0, len(recs))
	now := time.Now()
	for _, r := range recs {
		ct := c.contactOf(r, pending[string(r.ID)], now)
		if a, err := queue.ParseAddress(r.Recv.Relay); err == nil {
			ct.ReceiveRelay = a.WithoutPassword()
		}
		if r.Send != nil {
			if a, err := queue.ParseAddress(r.Send.Relay); err == nil {
				ct.SendRelay = a.WithoutPassword()
			}
		}
		ct.Rotation = r.rotationState()
		out = append(out, ct)
	}
	return out, nil
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventMessage: a message from a contact (Text, Seq, Time).
	EventMessage EventKind = iota + 1
	// EventConnected: a contact is connected: messages work both ways.
	EventConnected
	// EventSent: the relay accepted a message to the contact (Seq).
	EventSent
	// EventProblem: something went wrong with a contact's messages
	// (Problem wraps ErrTampered, ErrDuplicate, ErrGap, ErrBadHash or
	// ErrReceiptMismatch, or
	// says why a queue stopped working).
	EventProblem
	// EventRelayDown: the relay named by Relay cannot be reached (Problem
	// says why); messages through it wait. It comes once, when an attempt
	// to reach the relay fails after it answered (or on the first
	// attempt).
	EventRelayDown
	// EventRelayUp: the relay named by Relay answers again after an
	// EventRelayDown, and what waited for it goes on.
	EventRelayUp
	// EventRequest: a contact request arrived at our contact address:
	// Text is its ID (for AcceptRequest and RejectRequest), Contact the
	// name it shows, maybe empty.
	EventRequest
	// EventRotated: the rotation of our receiving queue for the contact
	// is complete: its messages now come on a new queue, on the relay
	// named by Relay (host and port); the old queue is deleted next.
	EventRotated
	// EventDelivered: the contact's client has stored our message Seq
	// (a delivery receipt bound to it by its hash, PROTOCOL.md section
	// 19.12); Time is when the receipt was written.
	EventDelivered
)

func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventConnected:
		return "connected"
	case EventSent:
		return "sent"
	case EventProblem:
		return "problem"
	case EventRelayDown:
		return "relay-down"
	case EventRelayUp:
		return "relay-up"
	case EventRequest:
		return "request"
	case EventRotated:
		return "rotated"
	case EventDelivered:
		return "delivered"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something that happened to a contact, or to a relay.
type Event struct {
	Kind    EventKind
	Contact string
	// Relay names the relay of EventRelayDown and EventRelayUp by its
	// host and port.
	Relay   string
	Text    string
	Seq     uint64
	Time    time.Time
	Problem error
}

// Events returns the channel of events. It is unbuffered, and events are
// kept in the store until the application receives them, so each is seen
// once, and none is lost when the application is not listening (they come
// at the next Open). EventSent, EventRelayDown and EventRelayUp are the
// exception: they concern one run of the client, and those not received
// before Close are dropped at the next Open.
func (c *Client) Events() <-chan Event { return c.events }

// randomID returns n random bytes.
func randomID(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// newKey returns a new X25519 key; the system's random source does not fail.
func newKey() *ecdh.PrivateKey {
	k, err := queue.GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
}

// dropSentEvents deletes the EventSent, EventRelayDown and EventRelayUp
// events of earlier runs.
func (c *Client) dropSentEvents() error {
	return c.store.Update(func(tx *vault.Tx) error {
		var stale [][]byte
		err := tx.ForEach(bucketEvents, nil, func(k, v []byte) error {
			var rec eventRecord
			if err := unmarshal(v, &rec); err != nil {
				return err
			}
			if rec.Kind == EventSent || rec.Kind == EventRelayDown || rec.Kind == EventRelayUp {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := tx.Delete(bucketEvents, k); err != nil {
				return err
			}
		}
		return nil
	})
}
