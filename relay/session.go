package relay

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"maps"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/queue"
)

// Per-session bounds.
const (
	// maxInFlight bounds the commands of one session waiting for the store.
	// When it is reached the session stops reading (backpressure).
	maxInFlight = 64
	// replyQueue bounds the encoded replies queued for the writer or being
	// written, and those reserved for SENDs and ACKs in the store
	// (commitreply.go). When it is reached, the session stops reading
	// (backpressure): a client that does not read cannot make the relay
	// buffer more than this.
	replyQueue = 64
	// maxKeptTransmissions bounds the scratch slice of parsed transmissions
	// a session keeps between blocks; a block of many small commands makes
	// a larger one that is dropped afterwards.
	maxKeptTransmissions = 64
	// maxAuthCache bounds the cached authorization keys of one session
	// (about 1.3 MiB when full; a session pays only for the queues it
	// uses). When it is full, an eighth of it, chosen by the map's random
	// iteration order, is evicted: random eviction keeps a hit rate of
	// about maxAuthCache/n for a session cycling through n > maxAuthCache
	// queues, where emptying it would keep none.
	maxAuthCache = 16384
	// workerLinger is how long a session's handler and writer goroutines
	// wait for more work before they end. A busy session keeps them, with
	// the stacks they have grown; an idle one has neither.
	workerLinger = time.Second
	// maxPrepared bounds the MSG events that SENDs prepare for their
	// queues' subscribers (preparedEvent), relay-wide: that many block
	// buffers at most, 4 MiB. When it is reached, a SEND prepares none,
	// and its message is delivered from the store.
	maxPrepared = 256
)

// errMalformed closes a session that sent an invalid block or transmission.
var errMalformed = errors.New("malformed block")

// session serves one client connection. Its reader goroutine (run) reads
// blocks and passes each to a handler goroutine, which handles its commands
// in order while the reader waits. A writer goroutine packs replies, events
// and deliveries into blocks. The handler and the writer run only while
// the session is busy (they end after workerLinger without work), so an
// idle session has one goroutine, with a small stack, and no block buffer.
// SENDs and ACKs are answered by the store's commit loop (commitreply.go),
// the other store operations complete in goroutines of their own; at
// most maxInFlight are pending at a time.
type session struct {
	r       *Relay
	seq     uint64 // the session's number, for Config.Observe
	conn    io.ReadWriteCloser
	binding []byte
	key     *ecdh.PrivateKey // this session's X25519 key

	ctx    context.Context // canceled when the session ends
	cancel context.CancelFunc

	tk *ticket // the connection's admission

	newLimit, sendLimit *rate.Limiter
	// forwardLimit is the session's PFWD rate (Config.ForwardRate).
	forwardLimit *rate.Limiter
	// cmdLimit is the budget of all commands (Config.CommandRate),
	// failLimit that of commands answered ERR AUTH or SYNTAX
	// (Config.FailureRate): both are waited for by the handler, so the
	// reader waits too.
	cmdLimit, failLimit *rate.Limiter
	// failures counts the session's ERR AUTH and SYNTAX replies; the
	// handler pays for those it has not yet paid for (paid) from
	// failLimit, else from the relay's failPool, else waits on failLimit.
	failures atomic.Int64
	paid     int64         // used by the handler goroutine only
	inFlight chan struct{} // semaphore
	wg       sync.WaitGroup

	// authCache maps a queue key to its authorization key on this session.
	// Only the goroutine serving the session's current block uses it (see
	// readLoop: one at a time, in order).
	authCache map[queue.Key][32]byte

	// replySlots holds one token per reply queued or being written: at
	// most replyQueue.
	replySlots chan struct{}
	// work passes a block from the reader to the handler goroutine, and
	// served its outcome back; each holds at most one.
	work   chan []byte
	served chan error
	// wake tells a running writer that there is work (capacity 1).
	wake chan struct{}

	closeOnce sync.Once

	hasForwards atomic.Bool

	mu sync.Mutex
	// closed is set by close: no writer starts after it.
	closed bool
	// writing is set while a writer goroutine runs; it clears it, under
	// mu, only when it finds nothing left to write.
	writing bool
	// handling is set while a handler goroutine runs; it clears it, under
	// mu, only when no block is waiting in work.
	handling bool
	// replies are encoded transmissions for the writer, in order.
	replies [][]byte
	// repliesTaken counts the replies the writer has taken (takeWork),
	// for subscription.okAt.
	repliesTaken uint64
	// subs are this session's subscriptions, by recipient ID.
	subs map[queue.ID]*subscription
	// pending are subscriptions that may have a message to deliver.
	pending map[*subscription]struct{}
	// events are END and DELD transmissions; at most one per queue that
	// this session subscribed to, so bounded by MaxSubscriptions.
	events [][]byte
	// forwards are the inner commands of RFWDs being handled, by the
	// corrID given to them (section 20); hasForwards is set once there
	// has been one, so that other sessions' replies skip the lookup.
	forwards map[queue.ID]*forwardedReply
	// writes are this session's store writes not yet answered, by the
	// recipient and sender IDs of their queue: a later command of the
	// session on the same queue waits for them (per-queue order,
	// PROTOCOL.md section 6). At most 2*maxInFlight entries.
	writes map[queue.ID]*queueWrites
}

// queueWrites are the pending writes of one session on one queue.
type queueWrites struct {
	n int // writes pending
	// state is closed once the last write that changes the queue's record
	// (KEY, SKEY, OFF, DEL) is answered; last once the last write of any
	// kind (also SEND, ACK) is. Nil if there was none. The store applies a
	// session's writes in order, so the last one answered implies the
	// earlier ones are durable.
	state, last chan struct{}
}

// subscription is one session's subscription to one queue.
type subscription struct {
	rid    queue.ID
	sess   *session
	msgKey [32]byte

	// Guarded by sess.mu.
	delivered    queue.ID // the message delivered and not yet acknowledged
	hasDelivered bool
	// acking counts this session's ACKs of the queue not yet answered: no
	// MSG is pushed meanwhile, so that an ACK's OK precedes the next MSG.
	acking int
	// arrived is set when a message was stored while hasDelivered held
	// (markPending without recheck, which then has nothing to do);
	// delivery clears it before it reads the queue.
	arrived bool
	// ready is the MSG event of the queue's first message, prepared by
	// its SEND and offered once it was durable (offer), for the writer
	// to seal and send without reading the store; nil if none.
	ready *preparedEvent
	// floor is a store commit number (store.commits) up to which the
	// store has been read for this subscription, or its first message
	// may have changed since (ACK, expiry, SUB): an event prepared for a
	// message stored in that commit or before is not taken (offer), as
	// the message may have been delivered or be gone already. It is
	// math.MaxUint64 while a SUB registers the subscription.
	floor uint64
	// okAt is the number of replies the writer must have taken
	// (session.repliesTaken) before it pushes a MSG for sub: that of the
	// last SUB's OK, so that the OK goes first (PROTOCOL.md section 12).
	// It is math.MaxUint64 while a SUB registers the subscription and
	// queues its OK.
	okAt uint64
	// preparing is set while a SEND not yet durable holds an event it
	// prepared for sub (prepareEvent, until offerEvent): one at a time,
	// so that a burst of SENDs to a queue whose subscriber waits prepares
	// one event, which only the first SEND's message could use, and not
	// one per SEND from the relay-wide maxPrepared.
	preparing bool
	// endEvent is the END or DELD that ended sub while okAt was
	// math.MaxUint64: the SUB queues it after its OK (handleSub), so
	// that the event that ends a subscription never precedes the OK that
	// starts it.
	endEvent []byte
}

// preparedEvent is the MSG event of a message, begun while its SEND was
// handled for a queue whose subscriber had nothing outstanding
// (queue.BeginMessageEvent, the body copied in, not yet sealed). Once the
// SEND is durable, if its message was then its queue's only one, it is
// offered to the subscription, and the writer seals and sends it without
// reading the message back from the store; otherwise it is released and
// delivery reads the store. The store stays the source of truth: only a
// message that is still its queue's first message, and that no read of
// the store for the subscription can have seen, is delivered this way
// (subscription.floor).
type preparedEvent struct {
	buf    *[]byte // a pooled block buffer, holding ev
	ev     []byte
	id     queue.ID
	commit uint64 // the store commit that stored the message
	// sub is the subscription it was prepared for (its preparing mark).
	sub *subscription
}

func newSession(r *Relay, conn io.ReadWriteCloser, binding []byte, tk *ticket) (*session, error) {
	key, err := queue.GenerateKey()
	if err != nil {
		return nil, err
	}
	s := &session{
		r:            r,
		conn:         conn,
		binding:      binding,
		key:          key,
		tk:           tk,
		cmdLimit:     rate.NewLimiter(rate.Limit(r.cfg.CommandRate), max(1, int(r.cfg.CommandRate))),
		failLimit:    rate.NewLimiter(rate.Limit(r.cfg.FailureRate), max(1, int(r.cfg.FailureRate))),
		newLimit:     rate.NewLimiter(rate.Limit(r.cfg.NewRate), max(1, int(r.cfg.NewRate))),
		sendLimit:    rate.NewLimiter(rate.Limit(r.cfg.SendRate), max(1, int(r.cfg.SendRate))),
		forwardLimit: rate.NewLimiter(rate.Limit(r.cfg.ForwardRate), max(1, int(r.cfg.ForwardRate))),
		inFlight:     make(chan struct{}, maxInFlight),
		authCache:    make(map[queue.Key][32]byte),
		replySlots:   make(chan struct{}, replyQueue),
		work:         make(chan []byte, 1),
		served:       make(chan error, 1),
		wake:         make(chan struct{}, 1),
		subs:         make(map[queue.ID]*subscription),
		pending:      make(map[*subscription]struct{}),
		writes:       make(map[queue.ID]*queueWrites),
	}
	s.ctx, s.cancel = context.WithCancel(r.ctx)
	return s, nil
}

// close ends the session: it closes the connection, which ends both
// goroutines. It is idempotent and does not wait.
func (s *session) close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.conn.Close()
	})
}

// run does the hush handshake and serves the session until it ends. It
// returns once every goroutine of the session has finished.
func (s *session) run() error {
	defer s.releaseReady()
	defer s.wg.Wait()
	defer s.close()
	hs := time.AfterFunc(s.r.cfg.HandshakeTimeout, s.close)
	err := s.handshake()
	hs.Stop()
	if err != nil {
		return err
	}
	s.tk.handshakeDone()
	s.observe(0, queue.ID{})
	return s.readLoop()
}

func (s *session) handshake() error {
	// No block buffer until the ClientHello's first byte has come.
	var first [1]byte
	if _, err := io.ReadFull(s.conn, first[:]); err != nil {
		return err
	}
	bp := s.r.getBlock()
	defer s.r.putBlock(bp)
	buf := *bp
	buf[0] = first[0]
	if _, err := io.ReadFull(s.conn, buf[1:]); err != nil {
		return err
	}
	ch, err := queue.ParseClientHello(buf)
	if err != nil {
		return err
	}
	if min(ch.Version, queue.MaxVersion) < queue.MinVersion {
		return errors.New("unsupported version")
	}
	sh := queue.ServerHello{MinVersion: queue.MinVersion, MaxVersion: queue.MaxVersion, SessionKey: queue.PublicKey(s.key)}
	_, err = s.conn.Write(sh.AppendBlock(buf[:0]))
	return err
}

func (s *session) readLoop() error {
	idle := time.AfterFunc(s.r.cfg.IdleTimeout, s.close)
	defer idle.Stop()
	first := make([]byte, 1)
	for {
		// Wait for the next block holding only its first byte: an idle
		// session holds no block buffer.
		if _, err := io.ReadFull(s.conn, first); err != nil {
			return err
		}
		bp := s.r.getBlock()
		buf := *bp
		buf[0] = first[0]
		if _, err := io.ReadFull(s.conn, buf[1:]); err != nil {
			s.r.putBlock(bp)
			return err
		}
		// The block is served by the handler goroutine: handling commands
		// takes a deep stack (cryptography, the store), and this
		// goroutine, which spends most of its life waiting for the next
		// block, keeps a small one. It waits, so commands are still
		// handled one block at a time, in order.
		s.mu.Lock()
		s.work <- buf // never blocks: the previous block has been served
		if !s.handling && !s.closed {
			s.handling = true
			s.wg.Add(1) // before close sets closed, so before run's wg.Wait
			go s.handleLoop()
		}
		s.mu.Unlock()
		select {
		case err := <-s.served:
			s.r.putBlock(bp)
			if err != nil {
				return err
			}
		case <-s.ctx.Done():
			// The handler may still read buf: it is left to the garbage
			// collector, not put back in the pool.
			return s.ctx.Err()
		}
		idle.Reset(s.r.cfg.IdleTimeout)
	}
}

// handleLoop serves the blocks the reader passes in s.work, answering each
// on s.served, until none has come for workerLinger or the session ends.
func (s *session) handleLoop() {
	defer s.wg.Done()
	linger := time.NewTimer(workerLinger)
	defer linger.Stop()
	var txs [][]byte // scratch for the parsed transmissions
	for {
		select {
		case block := <-s.work:
			var err error
			txs, err = s.serveBlock(block, txs)
			if cap(txs) > maxKeptTransmissions {
				txs = nil
			}
			s.served <- err
			linger.Reset(workerLinger)
		case <-linger.C:
			s.mu.Lock()
			if len(s.work) == 0 {
				s.handling = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			linger.Reset(workerLinger)
		case <-s.ctx.Done():
			return
		}
	}
}

// serveBlock handles the commands of block in order. txs is scratch space
// for the parsed transmissions, returned for reuse. Nothing handle starts
// keeps a reference to block: it is reused once serveBlock returns.
func (s *session) serveBlock(block []byte, txs [][]byte) ([][]byte, error) {
	txs, err := queue.ParseBlock(txs[:0], block)
	if err != nil {
		return txs, errMalformed
	}
	for _, raw := range txs {
		t, signed, err := queue.ParseTransmission(raw)
		// Every command carries a corrID (section 7): without one, its
		// response could not be told from an event.
		if err != nil || !t.Command.Tag.IsCommand() || t.CorrID == nil {
			return txs, errMalformed
		}
		// The budgets: every command, then the errors it and earlier
		// commands were answered with.
		if err := s.r.wait(s.ctx, s.cmdLimit, s.r.metrics.delayedCommands); err != nil {
			return txs, err
		}
		if err := s.handle(t, signed); err != nil {
			return txs, err
		}
		for n := s.failures.Load(); s.paid < n; s.paid++ {
			// The session's own budget first, then the relay-wide one;
			// only when both are spent does the session wait, for its
			// own.
			if s.failLimit.Allow() || (s.r.failPool != nil && s.r.failPool.Allow()) {
				continue
			}
			if err := s.r.wait(s.ctx, s.failLimit, s.r.metrics.delayedFailures); err != nil {
				return txs, err
			}
		}
	}
	return txs, nil
}

// wait waits until l allows one more event, or ctx is done; it counts in
// c the waits that were not immediate.
func (r *Relay) wait(ctx context.Context, l *rate.Limiter, c prometheus.Counter) error {
	res := l.Reserve()
	d := res.Delay()
	if d == 0 {
		return nil
	}
	c.Inc()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return ctx.Err()
	}
}

// getBlock returns a BlockSize buffer from the relay's pool. Sessions hold
// block buffers only while they read or write a block, so idle sessions
// cost none. Its contents are arbitrary: readers overwrite all of it and
// BlockBuilder pads what it builds.
func (r *Relay) getBlock() *[]byte {
	if bp, ok := r.blocks.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, queue.BlockSize)
	return &b
}

// putBlock returns a buffer from getBlock to the pool. The caller must no
// longer use it.
func (r *Relay) putBlock(bp *[]byte) {
	r.blocks.Put(bp)
}

// reply queues a response for the writer, blocking while replyQueue
// replies are queued or being written. It returns an error once the
// session has ended.
func (s *session) reply(corrID, entity []byte, cmd queue.Command) error {
	return s.replyThen(corrID, entity, cmd, nil)
}

// replyThen is reply; queued, if not nil, runs under s.mu once the reply
// is queued, before the writer can take it.
func (s *session) replyThen(corrID, entity []byte, cmd queue.Command, queued func()) error {
	if outer, fres, ok := s.forwardedAnswer(corrID, entity, cmd); ok {
		// The answer to a forwarded command, sealed for its client.
		corrID, entity, cmd = outer, nil, fres
	}
	t := queue.Transmission{CorrID: corrID, Entity: entity, Command: cmd}
	b := t.Append(nil)
	select {
	case s.replySlots <- struct{}{}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	s.mu.Lock()
	s.replies = append(s.replies, b)
	if queued != nil {
		queued()
	}
	s.startWriterLocked()
	s.mu.Unlock()
	return nil
}

func (s *session) replyErr(corrID, entity []byte, code queue.ErrorCode) error {
	s.r.metrics.countError(code)
	if code == queue.AUTH || code == queue.SYNTAX {
		s.failures.Add(1)
	}
	return s.reply(corrID, entity, queue.Command{Tag: queue.TagERR, Error: code})
}

// verify reports whether auth authorizes signed under the queue key k. The
// authorization key is cached for the next commands when keep is set and
// auth is valid: callers set keep only for the key of a queue that exists
// (or that NEW is creating), so that the cache holds keys of queues the
// session really uses, not keys a client makes up to fill it.
func (s *session) verify(k queue.Key, signed, auth []byte, keep bool) bool {
	ak, cached := s.authCache[k]
	if !cached {
		var err error
		ak, err = queue.AuthKey(s.key, k, s.binding)
		if err != nil {
			return false
		}
	}
	ok := queue.VerifyAuth(&ak, signed, auth)
	if ok && keep && !cached {
		s.cacheAuthKey(k, ak)
	}
	return ok
}

// cacheAuthKey adds ak, the authorization key for queue key k, to the
// session's cache, evicting an eighth of the cache first if it is full.
func (s *session) cacheAuthKey(k queue.Key, ak [32]byte) {
	if len(s.authCache) >= maxAuthCache {
		evict := maxAuthCache / 8
		for old := range s.authCache {
			delete(s.authCache, old)
			if evict--; evict == 0 {
				break
			}
		}
	}
	s.authCache[k] = ak
}

// observe hands a Sighting to Config.Observe, if set.
func (s *session) observe(tag queue.Tag, id queue.ID) {
	if s.r.cfg.Observe != nil {
		s.r.cfg.Observe(Sighting{Session: s.seq, Tag: tag, Queue: id})
	}
}

// entityID returns t's entity as an ID, and false if it has none.
func entityID(t *queue.Transmission) (queue.ID, bool) {
	var id queue.ID
	if len(t.Entity) != queue.IDSize {
		return id, false
	}
	copy(id[:], t.Entity)
	return id, true
}

// handle serves one command. It returns an error only when the session
// must end.
func (s *session) handle(t queue.Transmission, signed []byte) error {
	cmd := t.Command
	// The buffer the transmission aliases is reused for the next block:
	// copy what outlives this call.
	corrID := clone(t.CorrID)
	entity := clone(t.Entity)
	s.r.metrics.countCommand(cmd.Tag)
	if cmd.Tag == queue.TagPING {
		s.observe(cmd.Tag, queue.ID{})
		if t.Auth != nil || t.Entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		d := s.r.pongDelay()
		if d == 0 {
			return s.reply(corrID, nil, queue.Command{Tag: queue.TagPONG})
		}
		return s.async(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				s.reply(corrID, nil, queue.Command{Tag: queue.TagPONG})
			case <-s.ctx.Done():
			}
		})
	}
	if cmd.Tag == queue.TagLGET {
		return s.handleLGet(corrID, entity, &t)
	}
	switch cmd.Tag {
	case queue.TagPRXY, queue.TagPFWD, queue.TagRKEY, queue.TagRFWD:
		return s.handleForwarding(t, corrID, entity)
	}
	if t.Auth == nil {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	if cmd.Tag == queue.TagNEW {
		if t.Entity != nil || queue.LowOrder(cmd.RecipientKey) || queue.LowOrder(cmd.RecipientDHKey) {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handleNew(corrID, cmd, signed, t.Auth)
	}
	id, ok := entityID(&t)
	if !ok {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	s.observe(cmd.Tag, id)
	// A low-order key is refused before any lookup (sections 8, 9).
	if (cmd.Tag == queue.TagKEY || cmd.Tag == queue.TagSKEY) && queue.LowOrder(cmd.SenderKey) {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	// Per-queue order: the lookup sees this session's earlier writes on
	// the queue. GET and SUB wait for its SENDs and ACKs too: GET reads
	// the first message and SUB delivers it after its OK, which must see
	// an earlier ACK's removal and follow that ACK's answer.
	all := cmd.Tag == queue.TagGET || cmd.Tag == queue.TagSUB
	if err := s.waitWrites(id, all); err != nil {
		return err
	}
	switch cmd.Tag {
	case queue.TagSEND:
		return s.handleSend(corrID, entity, id, cmd, signed, t.Auth)
	case queue.TagSKEY:
		return s.handleSKey(corrID, entity, id, cmd, signed, t.Auth)
	}
	// The remaining commands are the recipient's.
	rec, found, err := s.r.store.queueByRecipient(id)
	if err != nil {
		return s.replyErr(corrID, entity, queue.INTERNAL)
	}
	key := s.r.dummyKey
	if found {
		key = rec.RecipientKey
	}
	if !s.verify(key, signed, t.Auth, found) || !found {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	switch cmd.Tag {
	case queue.TagKEY:
		// Suspended or already secured: answered without a write.
		switch {
		case rec.Suspended:
			return s.replyErr(corrID, entity, queue.AUTH)
		case rec.Secured && subtle.ConstantTimeCompare(rec.SenderKey[:], cmd.SenderKey[:]) != 1:
			return s.replyErr(corrID, entity, queue.AUTH)
		case rec.Secured:
			return s.reply(corrID, entity, queue.Command{Tag: queue.TagOK})
		}
		done := s.startWrite(&rec, true)
		ch, err := s.r.store.secureQueue(s.ctx, id, cmd.SenderKey)
		return s.await(ch, err, corrID, entity, queue.AUTH, done)
	case queue.TagSUB:
		return s.handleSub(corrID, entity, rec)
	case queue.TagACK:
		return s.handleAck(corrID, entity, &rec, cmd.MsgID)
	case queue.TagGET:
		return s.handleGet(corrID, entity, rec)
	case queue.TagOFF:
		done := s.startWrite(&rec, true)
		ch, err := s.r.store.suspendQueue(s.ctx, id)
		return s.await(ch, err, corrID, entity, queue.AUTH, done)
	case queue.TagDEL:
		return s.handleDel(corrID, entity, &rec)
	case queue.TagLSET:
		return s.handleLSet(corrID, entity, rec, cmd)
	}
	return errMalformed // unreachable: IsCommand covers every tag above
}

// await answers a store operation once it is durable: OK, or the error
// code its error maps to, with notFound for errNotFound. finish, if not
// nil, runs last, in every case. It blocks while maxInFlight operations
// are pending.
func (s *session) await(ch <-chan error, err error, corrID, entity []byte, notFound queue.ErrorCode, finish func()) error {
	begun := time.Now()
	if err != nil {
		if finish != nil {
			finish()
		}
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return s.async(func() {
		if finish != nil {
			defer finish()
		}
		if err := <-ch; err != nil {
			code := errorCode(err)
			if errors.Is(err, errNotFound) {
				code = notFound
			}
			s.replyErr(corrID, entity, code)
			return
		}
		s.r.noteWrite(time.Since(begun))
		s.reply(corrID, entity, queue.Command{Tag: queue.TagOK})
	})
}

// startWrite records a write of this session on rec's queue and returns
// the function to call once it is answered. state marks a write of the
// queue's record (KEY, SKEY, OFF, DEL, LSET). more are other IDs the
// write is about (LSET's link ID). Commands of the session on the
// same queue that come later wait for it (waitWrites).
func (s *session) startWrite(rec *queueRecord, state bool, more ...queue.ID) (done func()) {
	ch := make(chan struct{})
	ids := append([]queue.ID{rec.RecipientID, rec.SenderID}, more...)
	s.mu.Lock()
	for _, id := range ids {
		w := s.writes[id]
		if w == nil {
			w = &queueWrites{}
			s.writes[id] = w
		}
		w.n++
		w.last = ch
		if state {
			w.state = ch
		}
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		for _, id := range ids {
			if w := s.writes[id]; w != nil {
				if w.n--; w.n == 0 {
					delete(s.writes, id)
				}
			}
		}
		s.mu.Unlock()
		close(ch)
	}
}

// waitWrites waits until this session's writes on the queue with ID id
// (recipient or sender ID) are answered: those of its record, or, with
// all, every write. It returns an error only when the session ends.
func (s *session) waitWrites(id queue.ID, all bool) error {
	s.mu.Lock()
	var ch chan struct{}
	if w := s.writes[id]; w != nil {
		ch = w.state
		if all {
			ch = w.last
		}
	}
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	if h := s.r.waitHook.Load(); h != nil {
		(*h)()
	}
	select {
	case <-ch:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// async runs f in its own goroutine, at most maxInFlight at a time; it
// blocks while that many are running.
func (s *session) async(f func()) error {
	select {
	case s.inFlight <- struct{}{}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.inFlight }()
		f()
	}()
	return nil
}

// errorCode maps a store error to the code a client sees.
func errorCode(err error) queue.ErrorCode {
	switch {
	case errors.Is(err, errQuota):
		return queue.QUOTA
	case errors.Is(err, errNotFound), errors.Is(err, errKeyMismatch),
		errors.Is(err, errSuspended), errors.Is(err, errNotSecured):
		return queue.AUTH
	}
	return queue.INTERNAL
}

func (s *session) handleNew(corrID []byte, cmd queue.Command, signed, auth []byte) error {
	if err := s.newLimit.Wait(s.ctx); err != nil {
		return err
	}
	if err := s.r.wait(s.ctx, s.r.newLimit, s.r.metrics.delayedNew); err != nil {
		return err
	}
	// The key is not cached: a session creating many queues would fill
	// its cache (and the relay's memory) with keys it may never use again;
	// the first command on the new queue caches it.
	ok := s.verify(cmd.RecipientKey, signed, auth, false)
	if s.r.cfg.Password != "" {
		// Hashes of equal length: the comparison takes the same time
		// whatever the length of the guess.
		h := sha256.Sum256(cmd.Password)
		ok = subtle.ConstantTimeCompare(s.r.passwordHash[:], h[:]) == 1 && ok
	}
	if !ok {
		return s.replyErr(corrID, nil, queue.AUTH)
	}
	if s.r.draining.Load() {
		return s.replyErr(corrID, nil, queue.PROHIBITED)
	}
	if s.r.storageFull() {
		s.r.refuseStorage()
		return s.replyErr(corrID, nil, queue.QUOTA)
	}
	// The queue's own relay key: only its public half and the message key
	// it agrees are needed.
	relayKey, msgKey, err := queue.NewQueueKey(cmd.RecipientDHKey)
	switch {
	case errors.Is(err, queue.ErrSyntax):
		return s.replyErr(corrID, nil, queue.SYNTAX)
	case err != nil:
		return s.replyErr(corrID, nil, queue.INTERNAL)
	}
	rec := queueRecord{
		RecipientID:  queue.NewID(),
		SenderID:     queue.NewID(),
		RecipientKey: cmd.RecipientKey,
		MessageKey:   msgKey,
		Created:      floorTime(time.Now().Unix(), s.r.queueUnit()),
	}
	ch, err := s.r.store.createQueue(s.ctx, rec)
	if err != nil {
		return s.replyErr(corrID, nil, errorCode(err))
	}
	return s.async(func() {
		if err := <-ch; err != nil {
			s.replyErr(corrID, nil, queue.INTERNAL)
			return
		}
		s.r.metrics.queuesCreated.Inc()
		s.observe(queue.TagNEW, rec.RecipientID)
		s.reply(corrID, nil, queue.Command{
			Tag: queue.TagIDS, RecipientID: rec.RecipientID, SenderID: rec.SenderID,
			RelayDHKey: relayKey,
		})
	})
}

func (s *session) handleSKey(corrID, entity []byte, sid queue.ID, cmd queue.Command, signed, auth []byte) error {
	rec, found, err := s.r.store.queueBySender(sid)
	if err != nil {
		return s.replyErr(corrID, entity, queue.INTERNAL)
	}
	// The key is in the command: the same work whether or not the queue
	// exists. A queue secured already is answered without a write, so that
	// a live queue costs no more than an unknown ID (section 8).
	if !s.verify(cmd.SenderKey, signed, auth, found) || !found || rec.Suspended ||
		rec.Secured && subtle.ConstantTimeCompare(rec.SenderKey[:], cmd.SenderKey[:]) != 1 {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	if rec.Secured {
		return s.reply(corrID, entity, queue.Command{Tag: queue.TagOK})
	}
	done := s.startWrite(&rec, true)
	ch, err := s.r.store.secureBySender(s.ctx, sid, cmd.SenderKey)
	return s.await(ch, err, corrID, entity, queue.AUTH, done)
}

func (s *session) handleSend(corrID, entity []byte, sid queue.ID, cmd queue.Command, signed, auth []byte) error {
	if len(cmd.Body) > s.r.cfg.MaxMessageSize {
		return s.replyErr(corrID, entity, queue.LARGE)
	}
	if err := s.sendLimit.Wait(s.ctx); err != nil {
		return err
	}
	rec, found, err := s.r.store.queueBySender(sid)
	if err != nil {
		return s.replyErr(corrID, entity, queue.INTERNAL)
	}
	key := s.r.dummyKey
	if found && rec.Secured {
		key = rec.SenderKey
	}
	if !s.verify(key, signed, auth, found && rec.Secured) || !found || !rec.Secured || rec.Suspended {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	if s.r.storageFull() {
		s.r.refuseStorage()
		return s.replyErr(corrID, entity, queue.QUOTA)
	}
	msg := storedMessage{ID: queue.NewID(), Timestamp: floorTime(time.Now().Unix(), s.r.messageUnit()), Body: cmd.Body} // addMessageFunc copies it
	begun := time.Now()
	if err := s.reserveStoreReply(); err != nil {
		return err
	}
	done := s.startWrite(&rec, false)
	pre := s.r.prepareEvent(rec.RecipientID, &msg)
	// Answered by the commit loop (commitreply.go).
	err = s.r.store.addMessageFunc(s.ctx, sid, msg, s.r.cfg.QueueQuota, func(res sendResult) {
		s.storeAnswered(res.Err, corrID, entity, queue.AUTH, s.r.metrics.messagesReceived, begun, func() {
			s.r.offerEvent(pre, res)
			if res.Err == nil {
				s.r.notifyAfterCommit(res.RecipientID, false)
			}
			done()
			s.releaseStoreReply()
		})
	})
	if err != nil {
		s.cancelStoreReply()
		done()
		s.r.offerEvent(pre, sendResult{Err: err})
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return nil
}

// handleAck serves ACK of the message msgID on rec's queue, which the
// recipient key authorized.
func (s *session) handleAck(corrID, entity []byte, rec *queueRecord, msgID queue.ID) error {
	begun := time.Now()
	if err := s.reserveStoreReply(); err != nil {
		return err
	}
	rid := rec.RecipientID
	s.startAck(rid)
	done := s.startWrite(rec, false)
	// Answered by the commit loop (commitreply.go).
	err := s.r.store.ackMessageFunc(s.ctx, rid, msgID, func(err error) {
		s.storeAnswered(err, corrID, entity, queue.NO_MSG, s.r.metrics.messagesAcked, begun, func() {
			if err == nil {
				s.r.notifyAfterCommit(rid, true)
			}
			if s.endAck(rid) {
				s.r.commitWork.wake[s] = struct{}{}
			}
			done()
			s.releaseStoreReply()
		})
	})
	if err != nil {
		s.cancelStoreReply()
		if s.endAck(rid) {
			s.wakeWriter()
		}
		done()
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return nil
}

// handleDel serves DEL of rec's queue, which the recipient key
// authorized. Like SEND and ACK it is answered by the commit loop
// (commitreply.go), and the queue's subscription ends there, with DELD to
// its subscriber in another session, once the deletion is durable:
// whether or not this session is still there to be answered.
func (s *session) handleDel(corrID, entity []byte, rec *queueRecord) error {
	begun := time.Now()
	if err := s.reserveStoreReply(); err != nil {
		return err
	}
	rid := rec.RecipientID
	done := s.startWrite(rec, true)
	err := s.r.store.deleteQueueFunc(s.ctx, rid, func(err error) {
		s.storeAnswered(err, corrID, entity, queue.AUTH, s.r.metrics.queuesDeleted, begun, func() {
			if err == nil {
				s.deleted(rid)
			}
			done()
			s.releaseStoreReply()
		})
	})
	if err != nil {
		s.cancelStoreReply()
		done()
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return nil
}

func (s *session) handleSub(corrID, entity []byte, rec queueRecord) error {
	s.mu.Lock()
	sub, ok := s.subs[rec.RecipientID]
	if !ok && len(s.subs) >= s.r.cfg.MaxSubscriptions {
		s.mu.Unlock()
		return s.replyErr(corrID, entity, queue.PROHIBITED)
	}
	if !ok {
		sub = &subscription{rid: rec.RecipientID, sess: s, msgKey: rec.MessageKey}
		s.subs[rec.RecipientID] = sub
	}
	sub.hasDelivered = false // SUB again redelivers the head message
	// Until the floor is set below, no event is taken: sub is visible to
	// SENDs once registered, and a message stored before this SUB may
	// have been delivered and removed before, without a notice to sub.
	// Until the writer has taken the OK, no MSG is pushed (okAt): a SEND
	// may mark sub pending once it is registered.
	sub.floor, sub.okAt = math.MaxUint64, math.MaxUint64
	s.dropReadyLocked(sub)
	s.mu.Unlock()
	if old := s.r.subscribe(sub); old != nil && old != sub {
		old.sess.ended(old, queue.TagEND)
	}
	// A DEL that committed after handle looked the queue up may have run
	// its notice (deleted) before sub was registered, and sub would never
	// get DELD: look again now that it is registered. A DEL that commits
	// later finds sub and ends it with DELD.
	if _, found, err := s.r.store.queueByRecipient(rec.RecipientID); err != nil || !found {
		s.r.unsubscribeSub(sub)
		s.mu.Lock()
		s.forgetLocked(sub)
		s.mu.Unlock()
		code := queue.AUTH
		if err != nil {
			code = queue.INTERNAL
		}
		return s.replyErr(corrID, entity, code)
	}
	return s.replyThen(corrID, entity, queue.Command{Tag: queue.TagOK}, func() {
		// What the store holds now is delivered from the store, after
		// the OK.
		sub.floor = s.r.store.commits.Load()
		sub.okAt = s.repliesTaken + uint64(len(s.replies))
		if s.subs[sub.rid] == sub {
			s.pending[sub] = struct{}{}
		}
		if sub.endEvent != nil {
			// Ended (END, DELD) while the OK waited: after it.
			s.events = append(s.events, sub.endEvent)
			sub.endEvent = nil
		}
	})
}

func (s *session) handleGet(corrID, entity []byte, rec queueRecord) error {
	s.mu.Lock()
	_, subscribed := s.subs[rec.RecipientID]
	s.mu.Unlock()
	if subscribed {
		return s.replyErr(corrID, entity, queue.PROHIBITED)
	}
	m, ok, err := s.r.store.firstMessage(rec.RecipientID)
	switch {
	case err != nil:
		return s.replyErr(corrID, entity, queue.INTERNAL)
	case !ok:
		return s.replyErr(corrID, entity, queue.NO_MSG)
	}
	if err := s.reply(corrID, entity, msgCommand(&rec.MessageKey, m)); err != nil {
		return err
	}
	s.r.metrics.messagesDelivered.Inc()
	return nil
}

func msgCommand(key *[32]byte, m storedMessage) queue.Command {
	return queue.Command{
		Tag:   queue.TagMSG,
		MsgID: m.ID,
		Body:  queue.SealMessage(make([]byte, 0, queue.SealedSize), key, m.ID, m.Timestamp, m.Body),
	}
}

// startAck notes an ACK of this session on queue rid: while it is pending,
// the session's subscription to rid, if any, pushes no MSG.
func (s *session) startAck(rid queue.ID) {
	s.mu.Lock()
	if sub, ok := s.subs[rid]; ok {
		sub.acking++
	}
	s.mu.Unlock()
}

// endAck runs after the ACK noted by startAck is answered: the
// subscription may deliver again, the next message if the ACK removed the
// one delivered. It reports whether it marked the subscription pending:
// the caller then wakes the writer.
func (s *session) endAck(rid queue.ID) bool {
	s.mu.Lock()
	sub, ok := s.subs[rid]
	if ok && sub.acking > 0 {
		sub.acking--
	}
	s.mu.Unlock()
	return ok && s.mark(sub, true)
}

// deleted runs once a DEL of this session is durable, on the commit
// loop (handleDel): the subscription ends, with DELD to its session if
// that is another one. It does not block.
func (s *session) deleted(rid queue.ID) {
	sub := s.r.unsubscribe(rid)
	if sub == nil {
		return
	}
	if sub.sess == s {
		s.mu.Lock()
		s.forgetLocked(sub)
		s.mu.Unlock()
		return
	}
	sub.sess.ended(sub, queue.TagDELD)
}

// forgetLocked removes sub from this session, with nothing to its
// client: no delivery, pending mark or event offered stays. s.mu is held.
func (s *session) forgetLocked(sub *subscription) {
	if s.subs[sub.rid] == sub {
		delete(s.subs, sub.rid)
	}
	delete(s.pending, sub)
	s.dropReadyLocked(sub)
}

// ended removes sub from this session and queues the event tag (END or
// DELD) for its queue.
func (s *session) ended(sub *subscription, tag queue.Tag) {
	t := queue.Transmission{Entity: sub.rid[:], Command: queue.Command{Tag: tag}}
	s.mu.Lock()
	s.forgetLocked(sub)
	if sub.okAt == math.MaxUint64 {
		// Its SUB's OK is not queued yet: the event follows it.
		sub.endEvent = t.Append(nil)
	} else {
		s.events = append(s.events, t.Append(nil))
		s.startWriterLocked()
	}
	s.mu.Unlock()
}

// markPending asks the writer to deliver sub's head message, unless one is
// already delivered and not yet acknowledged (it then only sets arrived,
// for delivery). With recheck, it asks even then: the delivered message may be gone (acknowledged by another
// session, expired), and the writer delivers the head if it is another
// message.
func (s *session) markPending(sub *subscription, recheck bool) {
	if s.mark(sub, recheck) {
		s.wakeWriter()
	}
}

// mark is markPending without waking the writer: it reports whether it
// marked sub pending, and the caller must then wake the writer.
func (s *session) mark(sub *subscription, recheck bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sub.rid] != sub {
		return false
	}
	if recheck {
		// The first message may be gone: an event prepared before is
		// not taken.
		s.raiseFloorLocked(sub)
	}
	if sub.hasDelivered && !recheck {
		sub.arrived = true
		return false
	}
	s.pending[sub] = struct{}{}
	return true
}

// wakeWriter starts a writer goroutine, or wakes the one running, unless
// the session has ended.
func (s *session) wakeWriter() {
	s.mu.Lock()
	s.startWriterLocked()
	s.mu.Unlock()
}

// startWriterLocked starts a writer goroutine, or wakes the one running,
// unless the session has ended. s.mu must be held. A running writer looks
// for work under s.mu before it exits, so whatever the caller queued under
// the same lock gets written.
func (s *session) startWriterLocked() {
	if s.closed {
		return
	}
	if s.writing {
		select {
		case s.wake <- struct{}{}:
		default: // already woken
		}
		return
	}
	s.writing = true
	s.wg.Add(1) // before close sets closed, so before run's wg.Wait
	go s.writeLoop()
}

// subscriptions returns a copy of the session's subscriptions.
func (s *session) subscriptions() map[queue.ID]*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.subs)
}

// writeLoop packs replies, events and deliveries into blocks and writes
// them, until it has found nothing to write for workerLinger. Replies come
// first, so an OK precedes the MSG it makes possible.
func (s *session) writeLoop() {
	defer s.wg.Done()
	// The builder borrows a pooled block buffer while there is something to
	// write.
	var b queue.BlockBuilder
	var held *[]byte
	defer func() {
		if held != nil {
			s.r.putBlock(held)
		}
	}()
	flush := func() bool {
		if b.Count() == 0 {
			return true
		}
		_, err := s.conn.Write(b.Block())
		b.Reset()
		return err == nil
	}
	add := func(tx []byte) bool {
		if held == nil {
			held = s.r.getBlock()
			b.Use(*held)
		}
		if !b.Fits(len(tx)) && !flush() {
			return false
		}
		b.Add(tx)
		return true
	}
	linger := time.NewTimer(workerLinger)
	defer linger.Stop()
	for {
		replies, events, pending, ok := s.takeWork()
		if !ok {
			select {
			case <-s.wake:
				// Woken by the first of the replies that a group commit
				// makes ready at once (and the woken writer runs next on
				// its processor): let the others queue theirs first, so
				// that they leave in one block rather than one each.
				runtime.Gosched()
			case <-linger.C:
				if s.stopWriting() {
					return
				}
				linger.Reset(workerLinger)
			case <-s.ctx.Done():
				return
			}
			continue
		}
		for _, tx := range replies {
			if !add(tx) {
				s.close()
				return
			}
		}
		for _, tx := range events {
			if !add(tx) {
				s.close()
				return
			}
		}
		if len(pending) > 0 {
			// One more pooled block buffer, for this round only, for the
			// MSG events of messages read from the store.
			txBuf := s.r.getBlock()
			for _, sub := range pending {
				tx, p, ok := s.delivery(sub, *txBuf)
				if ok && !add(tx) {
					s.r.releaseEvent(p)
					s.r.putBlock(txBuf)
					s.close()
					return
				}
				s.r.releaseEvent(p)
			}
			s.r.putBlock(txBuf)
		}
		if !flush() {
			s.close()
			return
		}
		for range replies {
			<-s.replySlots
		}
		linger.Reset(workerLinger)
	}
}

// takeWork takes the queued replies, events and subscriptions to deliver,
// and returns false if there are none.
func (s *session) takeWork() (replies, events [][]byte, pending []*subscription, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.replies) == 0 && len(s.events) == 0 && len(s.pending) == 0 {
		return nil, nil, nil, false
	}
	replies, s.replies = s.replies, nil
	s.repliesTaken += uint64(len(replies))
	events, s.events = s.events, nil
	if len(s.pending) > 0 {
		pending = make([]*subscription, 0, len(s.pending))
		for sub := range s.pending {
			pending = append(pending, sub)
		}
		clear(s.pending)
	}
	return replies, events, pending, true
}

// stopWriting marks the writer stopped and returns true, unless work has
// been queued: the writer must then go on.
func (s *session) stopWriting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.replies) > 0 || len(s.events) > 0 || len(s.pending) > 0 {
		return false
	}
	s.writing = false
	return true
}

// delivery returns the MSG event for sub's head message, and false if
// there is none or sub no longer needs one. The event is sub's prepared
// one, returned as p too, for the caller to release once it has copied
// the event; or, with p nil, the message is read from the store, its body
// opened straight into the event, which is built and sealed in txBuf:
// scratch space (a block buffer holds a MSG) reused by the next call, so
// the caller copies the event before then.
func (s *session) delivery(sub *subscription, txBuf []byte) (tx []byte, p *preparedEvent, ok bool) {
	s.mu.Lock()
	if s.repliesTaken < sub.okAt {
		// The SUB's OK is not taken yet: the SUB marks sub pending again
		// as it queues its OK, and it is delivered after it.
		s.mu.Unlock()
		return nil, nil, false
	}
	sub.arrived = false
	p, sub.ready = sub.ready, nil
	if p != nil && s.r.store.removals.removedSince(sub.rid, p.commit) {
		// Its message may be gone (acknowledged by another session,
		// expired, its queue deleted) with the notice still to come: the
		// store is read instead.
		s.r.releaseEvent(p)
		p = nil
	}
	if p != nil {
		// Window of one, as below.
		push := s.subs[sub.rid] == sub && sub.acking == 0 && !(sub.hasDelivered && sub.delivered == p.id)
		if push {
			sub.delivered, sub.hasDelivered = p.id, true
			s.r.metrics.messagesDelivered.Inc()
			s.r.metrics.messagesPrepared.Inc()
		}
		s.mu.Unlock()
		if !push {
			return nil, p, false
		}
		return queue.SealMessageEvent(p.ev, &sub.msgKey), p, true
	}
	// The read below sees at least every commit up to the floor.
	s.raiseFloorLocked(sub)
	s.mu.Unlock()
	var (
		id queue.ID
		ev []byte
	)
	ok, err := s.r.store.openFirstMessage(sub.rid, func(id queue.ID) bool {
		s.mu.Lock()
		again := sub.hasDelivered && sub.delivered == id
		s.mu.Unlock()
		return !again // delivered and not acknowledged: no need to open and seal it
	}, func(mid queue.ID, ts int64, n int) []byte {
		var body []byte
		id = mid
		ev, body = queue.BeginMessageEvent(txBuf[:0], sub.rid, mid, ts, n)
		return body
	})
	if err == nil && !ok {
		// The queue is empty: the message delivered, if any, is gone
		// (expired, or acknowledged by another session), and the next SEND
		// is delivered at once. Only this goroutine delivers, so no
		// delivery raced the read. A SEND stored after the read began
		// whose notice came before this lock found hasDelivered still set
		// and marked nothing, only arrived: the queue is read again, or
		// its message would wait for the next SEND.
		s.mu.Lock()
		if s.subs[sub.rid] == sub && sub.acking == 0 {
			sub.hasDelivered = false
			if sub.arrived {
				s.pending[sub] = struct{}{} // this writer takes it next
			}
		}
		s.mu.Unlock()
	}
	if err != nil || !ok || ev == nil {
		return nil, nil, false
	}
	s.mu.Lock()
	// Window of one: the head is pushed unless it is the message delivered
	// already, or an ACK of this session is pending (its OK goes first).
	// A SUB handled since the okAt check above (SUB again on this
	// session) queues its OK, which must go first: it marks sub pending
	// again as it does.
	if s.subs[sub.rid] != sub || sub.acking > 0 || sub.hasDelivered && sub.delivered == id || s.repliesTaken < sub.okAt {
		s.mu.Unlock()
		return nil, nil, false
	}
	sub.delivered, sub.hasDelivered = id, true
	s.mu.Unlock()
	s.r.metrics.messagesDelivered.Inc()
	return queue.SealMessageEvent(ev, &sub.msgKey), nil, true
}

// prepareEvent returns the MSG event of msg, a message being stored in
// queue rid, begun for delivery from memory (preparedEvent), or nil if
// the queue's subscriber has a message outstanding or an event prepared
// already, there is none, or maxPrepared events exist. It copies
// msg.Body. The event must be given to offerEvent once the SEND is
// durable, or has failed.
func (r *Relay) prepareEvent(rid queue.ID, msg *storedMessage) *preparedEvent {
	r.mu.Lock()
	sub := r.subs[rid]
	r.mu.Unlock()
	if sub == nil || !sub.sess.startPrepare(sub) {
		return nil
	}
	if r.prepared.Add(1) > maxPrepared {
		r.prepared.Add(-1)
		sub.sess.endPrepare(sub)
		return nil
	}
	bp := r.getBlock()
	ev, body := queue.BeginMessageEvent((*bp)[:0], rid, msg.ID, msg.Timestamp, len(msg.Body))
	copy(body, msg.Body)
	return &preparedEvent{buf: bp, ev: ev, id: msg.ID, sub: sub}
}

// releaseEvent gives p's buffer back; p may be nil.
func (r *Relay) releaseEvent(p *preparedEvent) {
	if p == nil {
		return
	}
	r.putBlock(p.buf)
	p.buf, p.ev = nil, nil
	r.prepared.Add(-1)
}

// offerEvent hands p, prepared for the SEND whose outcome is res, to the
// subscriber of its queue if the SEND is durable and its message was the
// queue's only one once stored (and the subscriber takes it), or
// releases it; either way the subscription p was prepared for may have
// another prepared. It reports whether the subscriber took p. p may be
// nil.
func (r *Relay) offerEvent(p *preparedEvent, res sendResult) bool {
	if p == nil {
		return false
	}
	var sub *subscription
	if res.Err == nil && res.First {
		p.commit = res.Commit
		r.mu.Lock()
		sub = r.subs[res.RecipientID]
		r.mu.Unlock()
	}
	if sub != p.sub {
		p.sub.sess.endPrepare(p.sub) // offer does it for its own
	}
	if sub != nil && sub.sess.offer(sub, p) {
		return true
	}
	r.releaseEvent(p)
	return false
}

// waitingLocked reports whether sub, a subscription of this session, has
// no message outstanding, no event offered and none being prepared: one a
// SEND to its queue may prepare an event for. s.mu is held.
func (s *session) waitingLocked(sub *subscription) bool {
	return !s.closed && s.subs[sub.rid] == sub && !sub.hasDelivered && sub.acking == 0 && sub.ready == nil && !sub.preparing
}

// startPrepare marks sub as having an event being prepared, if it is
// waiting, and reports whether it did.
func (s *session) startPrepare(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waitingLocked(sub) {
		return false
	}
	sub.preparing = true
	return true
}

// endPrepare clears sub's mark of startPrepare.
func (s *session) endPrepare(sub *subscription) {
	s.mu.Lock()
	sub.preparing = false
	s.mu.Unlock()
}

// offer makes p sub's event to deliver, and reports whether it did. It
// does not if the session has ended, sub is no longer its subscription,
// a message is outstanding or an ACK pending, or a read of the store for
// sub may have seen p's message, or its queue's first message changed
// since it was stored (p.commit <= sub.floor, or a removal of the
// queue's committed since: removalTable). A later message that was
// its queue's only one replaces an earlier: the earlier one is gone.
// It clears sub's preparing mark if p was prepared for sub.
func (s *session) offer(sub *subscription, p *preparedEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.sub == sub {
		sub.preparing = false
	}
	if s.closed || s.subs[sub.rid] != sub || sub.hasDelivered || sub.acking > 0 || p.commit <= sub.floor ||
		s.r.store.removals.removedSince(sub.rid, p.commit) {
		return false
	}
	if sub.ready != nil {
		if sub.ready.commit >= p.commit {
			return false
		}
		s.r.releaseEvent(sub.ready)
	}
	sub.ready = p
	return true
}

// raiseFloorLocked raises sub's floor to the store's last commit, and
// drops sub's event if it was prepared for a message stored up to it.
// s.mu must be held.
func (s *session) raiseFloorLocked(sub *subscription) {
	sub.floor = max(sub.floor, s.r.store.commits.Load())
	if sub.ready != nil && sub.ready.commit <= sub.floor {
		s.dropReadyLocked(sub)
	}
}

// dropReadyLocked releases sub's event, if any. s.mu must be held.
func (s *session) dropReadyLocked(sub *subscription) {
	if sub.ready != nil {
		s.r.releaseEvent(sub.ready)
		sub.ready = nil
	}
}

// releaseReady releases the events of the session's subscriptions, once
// it has ended (close keeps offer from adding more).
func (s *session) releaseReady() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		s.dropReadyLocked(sub)
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// handleLSet stores the link data of rec's queue (LSET, PROTOCOL.md
// section 21.1), paced like NEW since it stores data.
func (s *session) handleLSet(corrID, entity []byte, rec queueRecord, cmd queue.Command) error {
	if err := s.newLimit.Wait(s.ctx); err != nil {
		return err
	}
	if err := s.r.wait(s.ctx, s.r.newLimit, s.r.metrics.delayedNew); err != nil {
		return err
	}
	if rec.Suspended {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	if s.r.storageFull() {
		s.r.refuseStorage()
		return s.replyErr(corrID, entity, queue.QUOTA)
	}
	done := s.startWrite(&rec, true, cmd.LinkID)
	ch, err := s.r.store.setLink(s.ctx, rec.RecipientID, cmd.LinkID, cmd.LinkMode, cmd.Body)
	return s.await(ch, err, corrID, entity, queue.AUTH, done)
}

// handleLGet answers LGET (PROTOCOL.md section 21.1): the link data named
// by the entity, which the store deletes first if it may be read once.
// It is not authorized: an auth is answered ERR SYNTAX, as for PING.
func (s *session) handleLGet(corrID, entity []byte, t *queue.Transmission) error {
	id, ok := entityID(t)
	if t.Auth != nil || !ok {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	// Per-queue order: an LSET of this session for this link ID first.
	if err := s.waitWrites(id, true); err != nil {
		return err
	}
	return s.async(func() {
		data, err := s.r.store.readLink(s.ctx, id)
		if err != nil {
			s.replyErr(corrID, entity, errorCode(err))
			return
		}
		s.reply(corrID, entity, queue.Command{Tag: queue.TagLNK, Body: data})
	})
}
