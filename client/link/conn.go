// Package link is the client side of the queue protocol (queue/PROTOCOL.md),
// the mirror of the relay's sessions.
//
// A Conn, made by Dial, is one connection to one relay, over QUIC or TLS
// over TCP, whose identity is checked against the fingerprint the address
// pins. It creates, secures, sends to, subscribes to and reads queues;
// many commands may be in flight at once. Its reader never waits for the
// application: events are buffered, bounded by the number of
// subscriptions, so a response never waits behind unread events.
//
// The messenger, package client, builds on it. Dialing through Tor uses a
// SOCKS proxy only (package torutil/socks): this package links no code
// that starts or controls tor.
package link

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/queue"
)

var (
	// ErrUnreachable is returned by Dial when no transport could connect:
	// the network failed, nothing answered in time, or the connection
	// ended during the handshake. Conn.Err wraps it when the connection
	// was lost: the relay closed it or stopped answering (keep-alives,
	// the QUIC idle timeout), or a restarted relay reset it.
	ErrUnreachable = errors.New("relay unreachable")
	// ErrSilent is wrapped by Conn.Err, with ErrUnreachable, when the
	// connection ended because the relay sent nothing for too long: a
	// keep-alive PING went unanswered, a QUIC connection received no
	// packet at all after a PING (see Conn) or reached its idle timeout.
	// The relay is down, or the network between is; a relay that
	// restarted or closed the connection ends it otherwise.
	ErrSilent = errors.New("the relay sent nothing")
	// ErrTLS is returned by Dial when the TLS handshake failed for a
	// reason other than the relay's identity: a certificate that is
	// expired or not certified by the identity, no TLS 1.3, no hush ALPN.
	ErrTLS = errors.New("tls handshake with the relay failed")
	// ErrWrongFingerprint is returned by Dial when the relay's
	// certificate chain does not end in the identity that the address's
	// fingerprint pins: this is another relay, or someone in between.
	ErrWrongFingerprint = errors.New("the relay's identity does not match the address fingerprint")
	// ErrProtocol is returned by Dial, and by commands, when the relay
	// breaks the queue protocol: a malformed handshake, block or
	// transmission, a response that does not fit its command, or no
	// protocol version in common. The connection is closed.
	ErrProtocol = errors.New("the relay broke the queue protocol")
	// ErrWrongPassword is returned by Create when the relay answers NEW
	// with AUTH: its password differs from the address's. It matches
	// queue.AUTH too.
	ErrWrongPassword = fmt.Errorf("wrong relay password: %w", queue.AUTH)
	// ErrNoMessage is returned by Get when the queue is empty (ERR
	// NO_MSG). It matches queue.NO_MSG too.
	ErrNoMessage = fmt.Errorf("no message in the queue: %w", queue.NO_MSG)
	// ErrClosed is returned by commands when the connection has ended,
	// by Close or by a failure; the error also wraps the failure, which
	// Err returns.
	ErrClosed = errors.New("relay connection closed")
)

// authCacheSize bounds the authorization keys cached per connection; when
// full, an arbitrary entry is evicted.
const authCacheSize = 4096

// extraEvents is how many events beyond two per subscription a connection
// buffers for the application before it takes the relay as broken (see
// Conn.Events).
const extraEvents = 64

// Conn is a connection to one relay, made by Dial.
//
// Its methods are safe for concurrent use, and many commands may be in
// flight at once: each carries a correlation ID that its response echoes.
// Every command blocks until the relay answers, ctx ends or the connection
// ends. A command whose ctx ended may still have reached the relay. A
// relay's ERR is returned as its queue.ErrorCode, so that errors.Is(err,
// queue.AUTH) and errors.Is(err, queue.QUOTA) work.
//
// A connection ends when the relay is lost (Err wraps ErrUnreachable):
// over TCP when the relay's end closes or resets; over QUIC, for a relay
// that restarted, at its stateless reset, which a PING draws when a QUIC
// keep-alive goes unanswered (queue/PROTOCOL.md section 2), and for a
// relay that is down when no packet at all came though the connection kept
// asking (for a quarter of Config.TransportIdleTimeout, 1.25 s by default,
// with a PING among the questions; a relay that stalls for less than
// about 0.9 s keeps it) or at the QUIC idle timeout; and on both when a
// keep-alive PING (Config.KeepAlive) goes unanswered. Err then also wraps
// ErrSilent when the relay sent nothing. Reconnecting is the caller's
// (see Backoff).
//
// Events (MSG, END, DELD) arrive on the Events channel in the relay's
// order. The reader never waits for the application: a command's response
// (an ACK's OK) is never held up by events the application has not read,
// so a goroutine that receives events may send commands and wait for them.
type Conn struct {
	transport  Transport
	conn       stream
	sessionKey queue.Key
	binding    []byte
	password   []byte
	keepAlive  time.Duration
	cover      time.Duration // Config.Cover
	pingWait   time.Duration // how long a keep-alive PING may go unanswered

	// out hands encoded transmissions to the writer, which gives their
	// buffers back to bufs. It holds up to outQueue of them; beyond, a
	// command waits, within its ctx, until the writer takes one. A
	// command that gave up may thus still be sent.
	out chan *[]byte
	// kick wakes a lingering writer for a transmission that cannot share
	// its block (see writeLoop); capacity 1.
	kick chan struct{}
	bufs txBuffers
	// chans recycles the channels, of capacity 1, on which the reader
	// hands a command its response (see exchange).
	chans sync.Pool
	// events is unbuffered: the reader hands an event to an application
	// that is receiving when none waits before it (emit), and
	// deliverLoop hands over the events in waiting, one at a time.
	events chan Event
	wake   chan struct{} // capacity 1: the reader added to waiting
	done   chan struct{} // closed when the connection ends
	wg     sync.WaitGroup

	lastWrite  atomic.Int64  // UnixNano when the last block was written
	blocksRead atomic.Uint64 // blocks read from the relay

	authMu   sync.Mutex
	authKeys map[queue.Key]*authEntry // by queue public key; at most authCacheSize
	// authByPriv holds entries of authKeys by the private key they were
	// asked with, which costs no public key encoding to look up (the
	// same key parsed again is another entry); at most authCacheSize.
	authByPriv map[*ecdh.PrivateKey]*authEntry

	mu      sync.Mutex
	pending map[[queue.CorrIDSize]byte]chan response // one per command awaiting its response
	subs    map[queue.ID]*subscription               // by recipient ID; bounded by the relay's MaxSubscriptions
	// waiting holds the events read from the relay and not yet handed to
	// the application, oldest first: at most
	// 2*(len(subs)+endsWaiting)+extraEvents.
	waiting []Event
	// endsWaiting counts the END and DELD events in waiting: each ended a
	// subscription whose events before it may still wait.
	endsWaiting int
	// handing is set while deliverLoop holds an event taken from waiting
	// and not yet received by the application: emit then queues behind it.
	handing bool
	err     error // why the connection ended; set once, then done is closed
}

// authEntry is the authorization of one queue's commands on this session.
type authEntry struct {
	key [32]byte // queue.AuthKey

	// mu is held by the command using mac; another command under the same
	// key meanwhile authorizes with a MAC of its own.
	mu  sync.Mutex
	mac hash.Hash // queue.NewAuthMAC(&key), made at its first use
}

// response is a relay's answer to one command, copied out of the block.
// It is small, as it travels on a channel and in the frames of every
// command (a new goroutine's stack grows for each large frame).
type response struct {
	entity    queue.ID
	hasEntity bool
	tag       queue.Tag
	code      queue.ErrorCode // of an ERR
	// cmd is the whole answer, for tags that carry more than their tag
	// (IDS, MSG, LNK, PKEY, FRES); nil for the others.
	cmd *queue.Command
}

// subscription is what the reader needs to open MSG events for a queue.
type subscription struct {
	key      [32]byte // queue.MessageKey
	active   bool     // the relay may deliver: SUB succeeded (or its outcome is unknown)
	inflight int      // Subscribe calls waiting for their SUB
}

// Queue is what a recipient keeps for one queue it created.
type Queue struct {
	// RecipientID names the queue in the recipient's commands.
	RecipientID queue.ID
	// SenderID names the queue in SEND and SKEY: give it to the sender.
	SenderID queue.ID
	// RecipientKey authorizes the recipient's commands.
	RecipientKey *ecdh.PrivateKey
	// MessageKey opens the messages delivered from the queue: the
	// queue.MessageKey of the recipient's DH key and the relay's.
	MessageKey [32]byte
}

// Message is one message delivered from a queue.
type Message struct {
	ID        queue.ID  // what Ack takes
	Timestamp time.Time // when the relay stored it, rounded down by the relay (to the hour by default; PROTOCOL.md section 11)
	Body      []byte    // as sent
}

// EventKind says what a Event reports.
type EventKind int

// Event kinds.
const (
	// EventMessage: a message from a subscribed queue (MSG). Acknowledge
	// it with Ack to receive the next one.
	EventMessage EventKind = iota + 1
	// EventEnd: another connection subscribed to the queue, and this one
	// receives no more from it (END).
	EventEnd
	// EventDeleted: the queue was deleted by another connection (DELD).
	EventDeleted
)

func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventEnd:
		return "end"
	case EventDeleted:
		return "deleted"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something the relay reported without being asked.
type Event struct {
	Kind        EventKind
	RecipientID queue.ID
	// Message is the message of a EventMessage. When Err is set, only its
	// ID is: the message can still be acknowledged.
	Message Message
	// Err is set when an MSG did not open: it wraps queue.ErrOpen (the
	// wrong MessageKey, no subscription on this connection, or bytes
	// changed on the way) or queue.ErrSyntax. Such messages are reported,
	// never dropped.
	Err error
}

func newConn(s session, cfg Config) *Conn {
	c := &Conn{
		transport:  s.transport,
		conn:       s.conn,
		sessionKey: s.sessionKey,
		binding:    s.binding,
		password:   s.password,
		keepAlive:  cfg.KeepAlive,
		cover:      cfg.Cover,
		pingWait:   max(cfg.KeepAlive, cfg.HandshakeTimeout),
		out:        make(chan *[]byte, outQueue),
		kick:       make(chan struct{}, 1),
		events:     make(chan Event),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		authKeys:   make(map[queue.Key]*authEntry),
		authByPriv: make(map[*ecdh.PrivateKey]*authEntry),
		pending:    make(map[[queue.CorrIDSize]byte]chan response),
		subs:       make(map[queue.ID]*subscription),
	}
	c.lastWrite.Store(time.Now().UnixNano())
	c.wg.Add(3)
	go c.readLoop()
	go c.writeLoop()
	go c.deliverLoop()
	if c.keepAlive > 0 {
		c.wg.Add(1)
		go c.keepAliveLoop()
	}
	if s.quic != nil {
		c.wg.Add(1)
		go c.silenceLoop(s.quic, cfg.TransportKeepAlive, cfg.TransportIdleTimeout)
	}
	if c.cover > 0 {
		c.wg.Add(1)
		go c.coverLoop()
	}
	return c
}

// Transport returns the transport in use: TransportQUIC or TransportTCP.
func (c *Conn) Transport() Transport { return c.transport }

// Events returns the channel of events, in the relay's order. It is closed
// when the connection ends; events not received by then are dropped, which
// loses nothing: their messages were not acknowledged, and the relay
// delivers them again after the next SUB.
//
// Until the application receives them, events wait in the connection. The
// relay sends one MSG per subscription until it is acknowledged (one more
// after a repeated SUB), then at most an END or DELD, so they are bounded:
// a relay that leaves more than two per subscription (counting those whose
// END or DELD waits) plus 64 waiting has broken the protocol, and the
// connection ends with ErrProtocol.
func (c *Conn) Events() <-chan Event { return c.events }

// Done returns a channel that is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is open, and then why it ended:
// ErrClosed after Close, an error wrapping ErrProtocol if the relay broke
// the protocol, or one wrapping ErrUnreachable and the transport's error
// if the connection was lost.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection and waits for its goroutines. Commands in
// flight return ErrClosed. It is idempotent and always returns nil.
func (c *Conn) Close() error {
	c.shutdown(ErrClosed)
	c.wg.Wait()
	return nil
}

// shutdown ends the connection for cause, unless it has ended already.
func (c *Conn) shutdown(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	close(c.done)
	c.mu.Unlock()
	c.conn.Close()
}

// endedErr is returned by commands once the connection has ended.
func (c *Conn) endedErr() error {
	err := c.Err()
	if err == ErrClosed {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

// Create creates a queue (NEW), with the address's password if it has
// one. It returns ErrWrongPassword if the relay refuses the password.
func (c *Conn) Create(ctx context.Context) (Queue, error) {
	rkey, err := queue.GenerateKey()
	if err != nil {
		return Queue{}, err
	}
	dh, err := queue.GenerateKey()
	if err != nil {
		return Queue{}, err
	}
	return c.CreateWithKeys(ctx, rkey, dh)
}

// CreateWithKeys is Create with the queue's two private keys made by the
// caller with queue.GenerateKey, for example ahead of time: rkey
// authorizes the queue's commands and dh agrees its message key with the
// relay. Each key must be new and serve this one queue only: a key used
// for two queues would let the relay link them.
func (c *Conn) CreateWithKeys(ctx context.Context, rkey, dh *ecdh.PrivateKey) (Queue, error) {
	r, err := c.do(ctx, rkey, nil, &queue.Command{
		Tag:            queue.TagNEW,
		RecipientKey:   queue.PublicKey(rkey),
		RecipientDHKey: queue.PublicKey(dh),
		Password:       c.password,
	}, queue.TagIDS)
	if errors.Is(err, queue.AUTH) {
		return Queue{}, ErrWrongPassword
	}
	if err != nil {
		return Queue{}, err
	}
	mk, err := queue.MessageKey(dh, r.RelayDHKey)
	if err != nil {
		err = fmt.Errorf("%w: unusable relay DH key in IDS", ErrProtocol)
		c.shutdown(err)
		return Queue{}, err
	}
	return Queue{
		RecipientID:  r.RecipientID,
		SenderID:     r.SenderID,
		RecipientKey: rkey,
		MessageKey:   mk,
	}, nil
}

// Secure gives the queue its sender key (KEY): from then on only SEND
// commands authorized by that key are accepted. Securing again with the
// same key succeeds; with another key it fails with queue.AUTH.
func (c *Conn) Secure(ctx context.Context, q Queue, senderKey queue.Key) error {
	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagKEY, SenderKey: senderKey}, queue.TagOK)
	return err
}

// SecureSender secures the queue with sender ID sid with the sender's own
// key (SKEY), as the recipient's Secure would. Securing again with the
// same key succeeds; another key, or a suspended queue, gets queue.AUTH.
func (c *Conn) SecureSender(ctx context.Context, sid queue.ID, senderKey *ecdh.PrivateKey) error {
	_, err := c.do(ctx, senderKey, &sid, &queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(senderKey)}, queue.TagOK)
	return err
}

// Send sends body to the queue with sender ID sid (SEND), authorized by
// the queue's sender key. It returns once the relay has stored the message
// durably. A body larger than the relay accepts gets queue.LARGE (without
// asking the relay when it could not fit in a block), a full queue
// queue.QUOTA.
func (c *Conn) Send(ctx context.Context, sid queue.ID, senderKey *ecdh.PrivateKey, body []byte) error {
	if len(body) > queue.MaxTransmissionSize {
		return queue.LARGE
	}
	_, err := c.do(ctx, senderKey, &sid, &queue.Command{Tag: queue.TagSEND, Body: body}, queue.TagOK)
	return err
}

// Subscribe subscribes this connection to the queue (SUB): its messages
// arrive as EventMessage events, one at a time, the next after Ack of the
// previous. The first may arrive before Subscribe returns. A subscription
// from another connection ends this one (EventEnd). Subscribing again
// redelivers the unacknowledged message.
func (c *Conn) Subscribe(ctx context.Context, q Queue) error {
	c.mu.Lock()
	s := c.subs[q.RecipientID]
	if s == nil {
		s = new(subscription)
		c.subs[q.RecipientID] = s
	}
	s.key = q.MessageKey
	s.inflight++
	c.mu.Unlock()

	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagSUB}, queue.TagOK)

	c.mu.Lock()
	s.inflight--
	var code queue.ErrorCode
	if !errors.As(err, &code) {
		s.active = true // subscribed, or perhaps subscribed: keep the key
	}
	if !s.active && s.inflight == 0 {
		delete(c.subs, q.RecipientID)
	}
	c.mu.Unlock()
	return err
}

// unsubscribed forgets the subscription to rid unless a Subscribe is in
// flight.
func (c *Conn) unsubscribed(rid queue.ID) {
	c.mu.Lock()
	if s := c.subs[rid]; s != nil {
		s.active = false
		if s.inflight == 0 {
			delete(c.subs, rid)
		}
	}
	c.mu.Unlock()
}

// Get returns the queue's first unacknowledged message without subscribing
// (GET), or ErrNoMessage. Acknowledge it with Ack. GET on a queue this
// connection is subscribed to gets queue.PROHIBITED. If the message does
// not open, Get returns an error wrapping queue.ErrOpen or queue.ErrSyntax
// and a Message with only its ID, which can be acknowledged.
func (c *Conn) Get(ctx context.Context, q Queue) (Message, error) {
	r, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagGET}, queue.TagMSG)
	if errors.Is(err, queue.NO_MSG) {
		return Message{}, ErrNoMessage
	}
	if err != nil {
		return Message{}, err
	}
	return openMessage(&q.MessageKey, r.MsgID, r.Body)
}

// openMessage opens the body of an MSG in place: it overwrites sealed,
// and the Message's Body aliases it.
func openMessage(key *[32]byte, id queue.ID, sealed []byte) (Message, error) {
	ts, body, err := queue.OpenMessageInPlace(key, id, sealed)
	if err != nil {
		return Message{ID: id}, fmt.Errorf("message %v: %w", id, err)
	}
	return Message{ID: id, Timestamp: time.Unix(ts, 0), Body: body}, nil
}

// Ack acknowledges the message msgID, from an event or from Get (ACK);
// the relay then deletes it, and on a subscribed queue the next message
// follows. It returns queue.NO_MSG
// if msgID is not the queue's first message.
func (c *Conn) Ack(ctx context.Context, q Queue, msgID queue.ID) error {
	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagACK, MsgID: msgID}, queue.TagOK)
	return err
}

// Suspend stops the queue accepting messages (OFF): senders get
// queue.AUTH; the recipient can still read what it holds.
func (c *Conn) Suspend(ctx context.Context, q Queue) error {
	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagOFF}, queue.TagOK)
	return err
}

// Delete deletes the queue and its messages (DEL). A subscriber on another
// connection gets EventDeleted.
func (c *Conn) Delete(ctx context.Context, q Queue) error {
	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagDEL}, queue.TagOK)
	if err == nil {
		c.unsubscribed(q.RecipientID)
	}
	return err
}

// SetLink stores data as the link data of queue q under the link ID id,
// with mode (LSET, PROTOCOL.md section 21.1), replacing q's earlier link
// data. data must be queue.LinkDataSize bytes (see queue.SealLinkData).
// queue.AUTH means there is no such queue, it is suspended, or id names
// another queue's link data; queue.QUOTA that the relay's storage is full.
func (c *Conn) SetLink(ctx context.Context, q Queue, id queue.ID, mode queue.LinkMode, data []byte) error {
	if len(data) != queue.LinkDataSize || (mode != queue.LinkOnce && mode != queue.LinkReusable) {
		return queue.SYNTAX
	}
	_, err := c.do(ctx, q.RecipientKey, &q.RecipientID, &queue.Command{Tag: queue.TagLSET, LinkID: id, LinkMode: mode, Body: data}, queue.TagOK)
	return err
}

// GetLink returns the link data with link ID id (LGET), which the relay
// deletes as it answers if it may be read once. queue.AUTH means there is
// none (never stored, read already, or its queue deleted).
func (c *Conn) GetLink(ctx context.Context, id queue.ID) ([]byte, error) {
	r, err := c.do(ctx, nil, &id, &queue.Command{Tag: queue.TagLGET}, queue.TagLNK)
	if err != nil {
		return nil, err
	}
	return r.Body, nil
}

// Ping checks that the relay answers (PING, PONG).
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.do(ctx, nil, nil, &queue.Command{Tag: queue.TagPING}, queue.TagPONG)
	return err
}

// do sends cmd about entity, authorized by key (none if nil), and waits for
// the response, which must have the tag want or be an ERR (returned as its
// queue.ErrorCode). It returns the response if want carries more than
// its tag (see response), else nil.
func (c *Conn) do(ctx context.Context, key *ecdh.PrivateKey, entity *queue.ID, cmd *queue.Command, want queue.Tag) (*queue.Command, error) {
	r, err := c.exchange(ctx, key, entity, cmd, want)
	if err != nil {
		return nil, err
	}
	if r.hasEntity != (entity != nil) || (entity != nil && r.entity != *entity) {
		err = fmt.Errorf("%w: the relay answered %v for another queue", ErrProtocol, cmd.Tag)
		c.shutdown(err)
		return nil, err
	}
	return r.cmd, nil
}

// exchange sends cmd about entity, authorized by key (none if nil), and
// waits for the response, which must have the tag want or be an ERR
// (returned as its queue.ErrorCode). The caller checks the response's
// entity.
func (c *Conn) exchange(ctx context.Context, key *ecdh.PrivateKey, entity *queue.ID, cmd *queue.Command, want queue.Tag) (response, error) {
	if err := ctx.Err(); err != nil {
		return response{}, err
	}
	var corr [queue.CorrIDSize]byte
	rand.Read(corr[:])
	t := queue.Transmission{CorrID: corr[:], Command: *cmd}
	if entity != nil {
		t.Entity = entity[:]
	}
	var auth *authEntry
	if key != nil {
		var err error
		if auth, err = c.authKey(key); err != nil {
			return response{}, err
		}
	}
	// The writer gives the buffer back once it has copied the
	// transmission into a block; until it takes it, it is ours.
	buf := c.bufs.get(len(cmd.Body) + len(cmd.Sealed))
	raw := (*buf)[:0]
	switch {
	case auth == nil:
		raw = t.Append(raw)
	case auth.mu.TryLock():
		if auth.mac == nil {
			auth.mac = queue.NewAuthMAC(&auth.key)
		}
		raw = t.AppendAuthorizedMAC(raw, auth.mac)
		auth.mu.Unlock()
	default:
		raw = t.AppendAuthorized(raw, &auth.key)
	}
	*buf = raw
	if len(raw) > queue.MaxTransmissionSize {
		c.bufs.put(buf)
		return response{}, queue.LARGE
	}

	ch, _ := c.chans.Get().(chan response)
	if ch == nil {
		ch = make(chan response, 1)
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		c.bufs.put(buf)
		c.chans.Put(ch)
		return response{}, c.endedErr()
	}
	c.pending[corr] = ch
	c.mu.Unlock()
	received := false
	defer func() {
		c.mu.Lock()
		_, untaken := c.pending[corr]
		delete(c.pending, corr)
		c.mu.Unlock()
		// The reader sends on ch at most once, after taking it from
		// pending: ch can serve another command unless the reader took
		// it and its response was not received.
		if untaken || received {
			c.chans.Put(ch)
		}
	}()

	select {
	case c.out <- buf:
	case <-ctx.Done():
		c.bufs.put(buf)
		return response{}, ctx.Err()
	case <-c.done:
		c.bufs.put(buf)
		return response{}, c.endedErr()
	}
	if len(raw) > smallTx {
		// It needs a block of its own: a lingering writer sends the
		// block it holds now.
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	var r response
	select {
	case r = <-ch:
	case <-ctx.Done():
		return response{}, ctx.Err()
	case <-c.done:
		select {
		case r = <-ch:
		default:
			return response{}, c.endedErr()
		}
	}
	received = true
	if r.tag == queue.TagERR {
		return r, r.code
	}
	if r.tag != want {
		err := fmt.Errorf("%w: the relay answered %v with %v", ErrProtocol, cmd.Tag, r.tag)
		c.shutdown(err)
		return response{}, err
	}
	return r, nil
}

// authKey returns the authorization of the commands of the queue whose
// key is priv on this session, from the cache when it can.
func (c *Conn) authKey(priv *ecdh.PrivateKey) (*authEntry, error) {
	c.authMu.Lock()
	e := c.authByPriv[priv]
	c.authMu.Unlock()
	if e != nil {
		return e, nil
	}
	pub := queue.PublicKey(priv)
	c.authMu.Lock()
	e = c.authKeys[pub]
	if e != nil {
		cacheAuthKey(c.authByPriv, priv, e)
	}
	c.authMu.Unlock()
	if e != nil {
		return e, nil
	}
	k, err := queue.AuthKey(priv, c.sessionKey, c.binding)
	if err != nil {
		err = fmt.Errorf("%w: unusable session key", ErrProtocol)
		c.shutdown(err)
		return nil, err
	}
	e = &authEntry{key: k}
	c.authMu.Lock()
	cacheAuthKey(c.authKeys, pub, e)
	cacheAuthKey(c.authByPriv, priv, e)
	c.authMu.Unlock()
	return e, nil
}

// cacheAuthKey adds e to the cache m under key, first evicting an
// arbitrary entry if m holds authCacheSize.
func cacheAuthKey[K comparable](m map[K]*authEntry, key K, e *authEntry) {
	if len(m) >= authCacheSize {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[key] = e
}

// A busy connection's writer lingers: when it wrote a block less than
// lingerBusy ago, a block with room for more waits lingerMax for more
// transmissions before it goes, or less if one comes that needs a block
// of its own. Commands that come one at a time at a high rate (the ACK of
// each message a subscriber receives) then share blocks, each of which
// costs both sides the encryption and transport of BlockSize bytes; a
// connection that sends now and then waits for nothing. The transmissions
// that come meanwhile wait in out without waking the writer.
const (
	lingerBusy = 2 * time.Millisecond
	lingerMax  = time.Millisecond
)

// outQueue is how many encoded transmissions wait for the writer before
// commands wait to hand theirs over: more than a block's worth of small
// ones.
const outQueue = 256

// writeLoop writes the transmissions handed over on out, packing all that
// are waiting (and fit) into each block, lingering while it is busy.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	var b queue.BlockBuilder
	var next *[]byte
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var last time.Time // when the previous block was written
	for {
		if next == nil {
			select {
			case next = <-c.out:
			case <-c.done:
				return
			}
		}
		b.Reset()
		b.Add(*next) // fits: exchange checked its size
		c.bufs.put(next)
		next = nil
		armed, lingered := false, false
	fill:
		for {
			select {
			case tx := <-c.out:
				if !b.Add(*tx) {
					next = tx
					break fill
				}
				c.bufs.put(tx)
				continue
			default:
			}
			if lingered || !b.Fits(smallTx) || time.Since(last) >= lingerBusy {
				break
			}
			if !armed {
				// A kick now is stale: its transmission was taken
				// already. Look at out once more after dropping it.
				select {
				case <-c.kick:
				default:
				}
				armed = true
				continue
			}
			lingered = true
			linger.Reset(lingerMax)
			select {
			case <-linger.C:
			case <-c.kick:
				linger.Stop()
			case <-c.done:
				return
			}
		}
		if _, err := c.conn.Write(b.Block()); err != nil {
			c.shutdown(fmt.Errorf("%w: writing: %w", ErrUnreachable, err))
			return
		}
		last = time.Now()
		c.lastWrite.Store(last.UnixNano())
	}
}

// readLoop reads blocks, hands responses to the commands waiting for them
// and queues events for deliverLoop. It never waits for the application.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	block := make([]byte, queue.BlockSize)
	var txs [][]byte
	for {
		if _, err := io.ReadFull(c.conn, block); err != nil {
			if _, ok := errors.AsType[*quic.IdleTimeoutError](err); ok {
				err = fmt.Errorf("%w: %w", ErrSilent, err)
			}
			c.shutdown(fmt.Errorf("%w: reading: %w", ErrUnreachable, err))
			return
		}
		c.blocksRead.Add(1)
		var err error
		txs, err = queue.ParseBlock(txs[:0], block)
		if err != nil {
			c.shutdown(fmt.Errorf("%w: malformed block", ErrProtocol))
			return
		}
		for _, tx := range txs {
			if err := c.handle(tx); err != nil {
				c.shutdown(err)
				return
			}
		}
	}
}

// handle processes one transmission from the relay. It copies what it
// keeps: tx aliases the block buffer.
func (c *Conn) handle(tx []byte) error {
	t, _, err := queue.ParseTransmission(tx)
	if err != nil {
		return fmt.Errorf("%w: malformed transmission", ErrProtocol)
	}
	if t.Command.Tag.IsCommand() {
		return fmt.Errorf("%w: the relay sent the command %v", ErrProtocol, t.Command.Tag)
	}
	var r response
	if t.Entity != nil {
		r.hasEntity = true
		copy(r.entity[:], t.Entity)
	}
	if t.CorrID != nil {
		corr := [queue.CorrIDSize]byte(t.CorrID)
		c.mu.Lock()
		ch := c.pending[corr]
		delete(c.pending, corr) // a second response with this corrID is ignored
		c.mu.Unlock()
		if ch != nil { // else the command gave up waiting
			r.tag = t.Command.Tag
			switch r.tag {
			case queue.TagOK, queue.TagPONG:
			case queue.TagERR:
				r.code = t.Command.Error
			default:
				cmd := t.Command
				cmd.Body = append([]byte(nil), t.Command.Body...)
				cmd.Sealed = append([]byte(nil), t.Command.Sealed...)
				for i, c := range t.Command.Attestation.Chain {
					cmd.Attestation.Chain[i] = append([]byte(nil), c...)
				}
				r.cmd = &cmd
			}
			ch <- r // buffered, and never sent to twice
		}
		return nil
	}

	switch t.Command.Tag {
	case queue.TagMSG, queue.TagEND, queue.TagDELD:
	default:
		return fmt.Errorf("%w: %v without a correlation ID", ErrProtocol, t.Command.Tag)
	}
	if !r.hasEntity {
		return fmt.Errorf("%w: %v without a queue", ErrProtocol, t.Command.Tag)
	}
	ev := Event{RecipientID: r.entity}
	switch t.Command.Tag {
	case queue.TagMSG:
		ev.Kind = EventMessage
		c.mu.Lock()
		s := c.subs[r.entity]
		var key [32]byte
		if s != nil {
			key = s.key
		}
		c.mu.Unlock()
		if s == nil {
			ev.Message.ID = t.Command.MsgID
			ev.Err = fmt.Errorf("message %v: %w: not subscribed on this connection", t.Command.MsgID, queue.ErrOpen)
		} else {
			// Opened in the block buffer, then the body alone copied out.
			ev.Message, ev.Err = openMessage(&key, t.Command.MsgID, t.Command.Body)
			ev.Message.Body = bytes.Clone(ev.Message.Body)
		}
	case queue.TagEND:
		ev.Kind = EventEnd
		c.unsubscribed(r.entity)
	case queue.TagDELD:
		ev.Kind = EventDeleted
		c.unsubscribed(r.entity)
	}
	return c.emit(ev)
}

// emit queues ev for the application, or fails if the relay has left
// more events waiting than the protocol allows (see Events). When no event
// waits before it and the application is receiving, it hands ev over at
// once, without waking deliverLoop.
func (c *Conn) emit(ev Event) error {
	c.mu.Lock()
	// While c.err is nil, done is open and deliverLoop has not closed
	// events; the send does not block.
	if len(c.waiting) == 0 && !c.handing && c.err == nil {
		select {
		case c.events <- ev:
			c.mu.Unlock()
			return nil
		default:
		}
	}
	if len(c.waiting) >= 2*(len(c.subs)+c.endsWaiting)+extraEvents {
		n := len(c.waiting)
		c.mu.Unlock()
		return fmt.Errorf("%w: %d events waiting, more than two per subscription", ErrProtocol, n)
	}
	c.waiting = append(c.waiting, ev)
	if ev.Kind == EventEnd || ev.Kind == EventDeleted {
		c.endsWaiting++
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// deliverLoop hands the waiting events to the application, oldest first,
// and closes the Events channel when the connection ends.
func (c *Conn) deliverLoop() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		c.mu.Lock()
		n := len(c.waiting)
		var ev Event
		if n > 0 {
			ev = c.waiting[0]
			c.waiting[0] = Event{}
			c.waiting = c.waiting[1:]
			if ev.Kind == EventEnd || ev.Kind == EventDeleted {
				c.endsWaiting--
			}
			if n == 1 {
				c.waiting = nil // let the array go
			}
			c.handing = true
		}
		c.mu.Unlock()
		if n == 0 {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		select {
		case c.events <- ev:
		case <-c.done:
			return
		}
		c.mu.Lock()
		c.handing = false
		c.mu.Unlock()
	}
}

// silenceGrace is the least time a QUIC connection waits for the answer
// to a keep-alive packet before silenceLoop suspects the relay, and the
// least time it waits after its first PING, or after a late check, before
// it ends the connection.
const silenceGrace = 250 * time.Millisecond

// silenceLimit returns how long a QUIC connection may receive no packet at
// all, while it keeps asking, before silenceLoop ends it: a quarter of the
// idle timeout, and at least three keep-alive periods and eight round
// trips, so that a relay that stalls for less than silenceLimit minus one
// keep-alive period keeps its connections.
func silenceLimit(keepAlive, idleTimeout, rtt time.Duration) time.Duration {
	return max(idleTimeout/4, 3*keepAlive, 8*rtt)
}

// silenceLoop notices a relay that restarted, or is down, while the
// connection was idle. quic-go sends a keep-alive packet (a PING frame) a
// keep-alive period after the last packet it received, and a live relay
// acknowledges it at once (within its max_ack_delay). QUIC keep-alive
// packets are too short to draw a stateless reset from a restarted relay
// (queue/PROTOCOL.md section 2), so when nothing came from the relay for a
// keep-alive period and then silenceGrace (or four round trips, if
// longer), it sends a PING: a block, whose packets draw the reset that
// ends the connection at once (QUIC resends them while they go
// unacknowledged). It sends one for each silence: on a loaded machine,
// where acknowledgements come late, PINGs would add to the load. A relay
// that answers in time costs nothing more than the keep-alive packets.
//
// A relay that is down answers nothing: when no packet at all (any
// datagram quic-go read for the connection, even one it could not open)
// came for silenceLimit, 1.25 s with the defaults, though the connection
// sent at least two packets in that silence, the PING among them,
// silenceGrace or more before, it ends the connection (ErrSilent) instead
// of waiting for the QUIC idle timeout. The silence is counted by checks,
// four a keep-alive period, each adding the time since the previous one
// but at most two check intervals: a check that comes more than three
// intervals after the previous one (this process was starved, and may not
// have read what arrived) adds nothing, and the connection then waits
// silenceGrace more before it ends, so that a busy client is not taken
// for a dead relay. The relay may stall too: one that sends nothing for
// less than silenceLimit minus a keep-alive period (about 0.9 s with the
// defaults) keeps the connection.
func (c *Conn) silenceLoop(qc *quic.Conn, keepAlive, idleTimeout time.Duration) {
	defer c.wg.Done()
	period := keepAlive / 4
	tick := time.NewTicker(period)
	defer tick.Stop()
	st := qc.ConnectionStats()
	last := time.Now() // the previous check
	var (
		received, bytesIn = st.PacketsReceived, st.BytesReceived
		sentBefore        = st.PacketsSent // packets sent when the silence began
		silence           time.Duration    // since the last packet, over on-time checks
		settle            time.Duration    // left to wait after a late check
		sincePing         time.Duration    // since the PING, over on-time checks
		pinged            bool             // a PING was sent for this silence
		sentThen          uint64           // packets sent before it
	)
	for {
		select {
		case <-tick.C:
		case <-c.done:
			return
		}
		now := time.Now()
		step := now.Sub(last)
		last = now
		st = qc.ConnectionStats()
		if st.PacketsReceived != received || st.BytesReceived != bytesIn {
			received, bytesIn, sentBefore = st.PacketsReceived, st.BytesReceived, st.PacketsSent
			silence, settle, sincePing, pinged = 0, 0, 0, false
			continue
		}
		if step > 3*period {
			settle = silenceGrace
			continue
		}
		step = min(step, 2*period)
		silence += step
		settle = max(0, settle-step)
		if pinged {
			sincePing += step
		}
		rtt := st.SmoothedRTT
		grace := max(silenceGrace, 4*rtt)
		if pinged && settle == 0 && silence >= silenceLimit(keepAlive, idleTimeout, rtt) &&
			sincePing >= grace && st.PacketsSent > sentThen && st.PacketsSent >= sentBefore+2 {
			c.shutdown(fmt.Errorf("%w: %w for %v after a PING", ErrUnreachable, ErrSilent, silence.Round(time.Millisecond)))
			return
		}
		if pinged || silence < keepAlive+grace {
			continue
		}
		pinged, sentThen = true, st.PacketsSent
		limit := silenceLimit(keepAlive, idleTimeout, rtt)
		c.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			c.Ping(ctx) // answered, reset or lost: the outcome shows elsewhere
		})
	}
}

// keepAliveLoop sends a PING whenever nothing was written for an interval
// drawn by keepAliveInterval (a new one after each PING), and ends the
// connection if the relay then sends nothing for pingWait.
func (c *Conn) keepAliveLoop() {
	defer c.wg.Done()
	next := keepAliveInterval(c.keepAlive)
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		idle := time.Since(time.Unix(0, c.lastWrite.Load()))
		if idle < next {
			t.Reset(next - idle)
			continue
		}
		blocks := c.blocksRead.Load()
		ctx, cancel := context.WithTimeout(context.Background(), c.pingWait)
		err := c.Ping(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && blocks == c.blocksRead.Load() {
			c.shutdown(fmt.Errorf("%w: %w: no answer to a keep-alive PING in %v", ErrUnreachable, ErrSilent, c.pingWait))
			return
		}
		next = keepAliveInterval(c.keepAlive)
		t.Reset(next)
	}
}

// maxCoverInFlight bounds the cover PINGs awaiting their PONG: beyond it,
// a cover block is skipped (a relay that slow answers nothing else
// either).
const maxCoverInFlight = 4

// coverLoop sends a PING after each wait drawn from an exponential
// distribution of mean c.cover, whatever else the connection sends, until
// the connection ends (Config.Cover). It does not wait for the PONG
// before the next wait, so that the blocks keep their Poisson timing.
func (c *Conn) coverLoop() {
	defer c.wg.Done()
	inFlight := make(chan struct{}, maxCoverInFlight)
	t := time.NewTimer(coverInterval(c.cover))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		select {
		case inFlight <- struct{}{}:
			c.wg.Go(func() {
				defer func() { <-inFlight }()
				ctx, cancel := context.WithTimeout(context.Background(), c.pingWait)
				defer cancel()
				c.Ping(ctx) // the outcome shows elsewhere (keep-alives, reads)
			})
		default:
		}
		t.Reset(coverInterval(c.cover))
	}
}

// coverInterval draws the wait before the next cover block: exponential
// with mean d, so that cover blocks form a Poisson process, whose count in
// any second is independent of the seconds before.
func coverInterval(d time.Duration) time.Duration {
	return time.Duration(mrand.ExpFloat64() * float64(d))
}

// keepAliveInterval returns how long the connection waits without writing
// before its next PING: uniformly random in [d/2, 3d/2], so that an
// observer of the link cannot tell keep-alives from messages by a fixed
// period after the last block.
func keepAliveInterval(d time.Duration) time.Duration {
	return d/2 + mrand.N(d+1)
}

// smallTx is the capacity of the buffers of commands without a body: the
// fields before the command and the longest such command (NEW with a
// password, PRXY with its address) fit.
const smallTx = 1024

// txBuffers recycles the buffers that commands encode their transmissions
// in, two sizes: smallTx bytes for commands without a body, and
// MaxTransmissionSize for the others. A buffer is taken by a command and
// given back by the writer once it has copied it into a block (or by the
// command if the writer never took it). Its methods are safe for
// concurrent use.
type txBuffers struct {
	small, large sync.Pool // of *[]byte
}

// get returns an empty buffer with room for a transmission whose
// variable-length fields hold n bytes.
func (p *txBuffers) get(n int) *[]byte {
	if n == 0 {
		if b, ok := p.small.Get().(*[]byte); ok {
			return b
		}
		b := make([]byte, 0, smallTx)
		return &b
	}
	if b, ok := p.large.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, queue.MaxTransmissionSize)
	return &b
}

// put gives a buffer back. One that grew beyond its size (a transmission
// too large to send) is dropped.
func (p *txBuffers) put(b *[]byte) {
	switch cap(*b) {
	case smallTx:
		*b = (*b)[:0]
		p.small.Put(b)
	case queue.MaxTransmissionSize:
		*b = (*b)[:0]
		p.large.Put(b)
	}
}
