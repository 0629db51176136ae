package relay

import (
	"context"
	"crypto/ecdh"
	"crypto/subtle"
	"errors"
	"io"
	"maps"
	"sync"
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
	// replyQueue bounds the encoded replies waiting for the writer. When it
	// is full, the session stops reading (backpressure): a client that does
	// not read cannot make the relay buffer more than this.
	replyQueue = 64
	// maxAuthCache bounds the cached authorization keys of one session;
	// when full it is emptied.
	maxAuthCache = 4096
)

// errMalformed closes a session that sent an invalid block or transmission.
var errMalformed = errors.New("malformed block")

// session serves one client connection. Its reader goroutine (run) parses
// blocks and handles commands in order; its writer goroutine packs replies,
// events and deliveries into blocks. Store operations complete in their own
// goroutines, at most maxInFlight at a time.
type session struct {
	r       *Relay
	conn    io.ReadWriteCloser
	binding []byte
	key     *ecdh.PrivateKey // this session's X25519 key

	ctx    context.Context // canceled when the session ends
	cancel context.CancelFunc

	newLimit, sendLimit *rate.Limiter
	inFlight            chan struct{} // semaphore
	wg                  sync.WaitGroup

	// authCache maps a queue key to its authorization key on this session.
	// Only the reader goroutine uses it.
	authCache map[queue.Key][32]byte

	replies chan []byte   // encoded transmissions for the writer
	wake    chan struct{} // capacity 1: the writer has pending work

	closeOnce sync.Once

	mu sync.Mutex
	// subs are this session's subscriptions, by recipient ID.
	subs map[queue.ID]*subscription
	// pending are subscriptions that may have a message to deliver.
	pending map[*subscription]struct{}
	// events are END and DELD transmissions; at most one per queue that
	// this session subscribed to, so bounded by MaxSubscriptions.
	events [][]byte
}

// subscription is one session's subscription to one queue.
type subscription struct {
	rid    queue.ID
	sess   *session
	msgKey [32]byte

	// Guarded by sess.mu.
	delivered    queue.ID // the message delivered and not yet acknowledged
	hasDelivered bool
}

func newSession(r *Relay, conn io.ReadWriteCloser, binding []byte) (*session, error) {
	key, err := queue.GenerateKey()
	if err != nil {
		return nil, err
	}
	s := &session{
		r:         r,
		conn:      conn,
		binding:   binding,
		key:       key,
		newLimit:  rate.NewLimiter(rate.Limit(r.cfg.NewRate), max(1, int(r.cfg.NewRate))),
		sendLimit: rate.NewLimiter(rate.Limit(r.cfg.SendRate), max(1, int(r.cfg.SendRate))),
		inFlight:  make(chan struct{}, maxInFlight),
		authCache: make(map[queue.Key][32]byte),
		replies:   make(chan []byte, replyQueue),
		wake:      make(chan struct{}, 1),
		subs:      make(map[queue.ID]*subscription),
		pending:   make(map[*subscription]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(r.ctx)
	return s, nil
}

// close ends the session: it closes the connection, which ends both
// goroutines. It is idempotent and does not wait.
func (s *session) close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.conn.Close()
	})
}

// run does the hush handshake and serves the session until it ends. It
// returns once every goroutine of the session has finished.
func (s *session) run() error {
	defer s.wg.Wait()
	defer s.close()
	hs := time.AfterFunc(s.r.cfg.HandshakeTimeout, s.close)
	err := s.handshake()
	hs.Stop()
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go s.writeLoop()
	return s.readLoop()
}

func (s *session) handshake() error {
	buf := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(s.conn, buf); err != nil {
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
	buf := make([]byte, queue.BlockSize)
	var txs [][]byte
	for {
		if _, err := io.ReadFull(s.conn, buf); err != nil {
			return err
		}
		idle.Reset(s.r.cfg.IdleTimeout)
		var err error
		if txs, err = queue.ParseBlock(txs[:0], buf); err != nil {
			return errMalformed
		}
		for _, raw := range txs {
			t, signed, err := queue.ParseTransmission(raw)
			if err != nil || !t.Command.Tag.IsCommand() {
				return errMalformed
			}
			if err := s.handle(t, signed); err != nil {
				return err
			}
		}
	}
}

// reply queues a response for the writer, blocking while the reply queue
// is full. It returns an error once the session has ended.
func (s *session) reply(corrID, entity []byte, cmd queue.Command) error {
	t := queue.Transmission{CorrID: corrID, Entity: entity, Command: cmd}
	b := t.Append(nil)
	select {
	case s.replies <- b:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *session) replyErr(corrID, entity []byte, code queue.ErrorCode) error {
	s.r.metrics.countError(code)
	return s.reply(corrID, entity, queue.Command{Tag: queue.TagERR, Error: code})
}

// verify reports whether auth authorizes signed under the queue key k.
func (s *session) verify(k queue.Key, signed, auth []byte) bool {
	ak, ok := s.authCache[k]
	if !ok {
		var err error
		ak, err = queue.AuthKey(s.key, k, s.binding)
		if err != nil {
			return false
		}
		if len(s.authCache) >= maxAuthCache {
			clear(s.authCache)
		}
		s.authCache[k] = ak
	}
	return queue.VerifyAuth(&ak, signed, auth)
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
		if t.Auth != nil || t.Entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.reply(corrID, nil, queue.Command{Tag: queue.TagPONG})
	}
	if t.CorrID == nil || t.Auth == nil {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	if cmd.Tag == queue.TagNEW {
		if t.Entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handleNew(corrID, cmd, signed, t.Auth)
	}
	id, ok := entityID(&t)
	if !ok {
		return s.replyErr(corrID, entity, queue.SYNTAX)
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
	if !s.verify(key, signed, t.Auth) || !found {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	switch cmd.Tag {
	case queue.TagKEY:
		ch, err := s.r.store.secureQueue(s.ctx, id, cmd.SenderKey)
		return s.await(ch, err, corrID, entity, queue.AUTH, nil, nil)
	case queue.TagSUB:
		return s.handleSub(corrID, entity, rec)
	case queue.TagACK:
		ch, err := s.r.store.ackMessage(s.ctx, id, cmd.MsgID)
		return s.await(ch, err, corrID, entity, queue.NO_MSG, s.r.metrics.messagesAcked, func() { s.acked(id, cmd.MsgID) })
	case queue.TagGET:
		return s.handleGet(corrID, entity, rec)
	case queue.TagOFF:
		ch, err := s.r.store.suspendQueue(s.ctx, id)
		return s.await(ch, err, corrID, entity, queue.AUTH, nil, nil)
	case queue.TagDEL:
		ch, err := s.r.store.deleteQueue(s.ctx, id)
		return s.await(ch, err, corrID, entity, queue.AUTH, s.r.metrics.queuesDeleted, func() { s.deleted(id) })
	}
	return errMalformed // unreachable: IsCommand covers every tag above
}

// await answers a store operation once it is durable: OK, or the error
// code its error maps to, with notFound for errNotFound. done, if not nil,
// counts the durable successes. then, if not nil, runs after a successful
// OK is queued. It blocks while maxInFlight operations are pending.
func (s *session) await(ch <-chan error, err error, corrID, entity []byte, notFound queue.ErrorCode, done prometheus.Counter, then func()) error {
	if err != nil {
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return s.async(func() {
		if err := <-ch; err != nil {
			code := errorCode(err)
			if errors.Is(err, errNotFound) {
				code = notFound
			}
			s.replyErr(corrID, entity, code)
			return
		}
		if done != nil {
			done.Inc()
		}
		if s.reply(corrID, entity, queue.Command{Tag: queue.TagOK}) == nil && then != nil {
			then()
		}
	})
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
	ok := s.verify(cmd.RecipientKey, signed, auth)
	if pw := s.r.cfg.Password; pw != "" {
		ok = subtle.ConstantTimeCompare([]byte(pw), cmd.Password) == 1 && ok
	}
	if !ok {
		return s.replyErr(corrID, nil, queue.AUTH)
	}
	if s.r.draining.Load() {
		return s.replyErr(corrID, nil, queue.PROHIBITED)
	}
	relayKey, err := queue.GenerateKey()
	if err != nil {
		return s.replyErr(corrID, nil, queue.INTERNAL)
	}
	msgKey, err := queue.MessageKey(relayKey, cmd.RecipientDHKey)
	if err != nil {
		return s.replyErr(corrID, nil, queue.SYNTAX)
	}
	rec := queueRecord{
		RecipientID:  queue.NewID(),
		SenderID:     queue.NewID(),
		RecipientKey: cmd.RecipientKey,
		MessageKey:   msgKey,
		Created:      time.Now().Unix(),
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
		s.reply(corrID, nil, queue.Command{
			Tag: queue.TagIDS, RecipientID: rec.RecipientID, SenderID: rec.SenderID,
			RelayDHKey: queue.PublicKey(relayKey),
		})
	})
}

func (s *session) handleSKey(corrID, entity []byte, sid queue.ID, cmd queue.Command, signed, auth []byte) error {
	rec, found, err := s.r.store.queueBySender(sid)
	if err != nil {
		return s.replyErr(corrID, entity, queue.INTERNAL)
	}
	// The key is in the command: the same work whether or not the queue exists.
	if !s.verify(cmd.SenderKey, signed, auth) || !found || rec.Suspended {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	ch, err := s.r.store.secureBySender(s.ctx, sid, cmd.SenderKey)
	return s.await(ch, err, corrID, entity, queue.AUTH, nil, nil)
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
	if !s.verify(key, signed, auth) || !found || !rec.Secured || rec.Suspended {
		return s.replyErr(corrID, entity, queue.AUTH)
	}
	msg := storedMessage{ID: queue.NewID(), Timestamp: time.Now().Unix(), Body: cmd.Body} // addMessage copies it
	ch, err := s.r.store.addMessage(s.ctx, sid, msg, s.r.cfg.QueueQuota)
	if err != nil {
		return s.replyErr(corrID, entity, errorCode(err))
	}
	return s.async(func() {
		res := <-ch
		if res.Err != nil {
			s.replyErr(corrID, entity, errorCode(res.Err))
			return
		}
		s.r.metrics.messagesReceived.Inc()
		s.reply(corrID, entity, queue.Command{Tag: queue.TagOK})
		s.r.notify(res.RecipientID)
	})
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
	s.mu.Unlock()
	if old := s.r.subscribe(sub); old != nil && old != sub {
		old.sess.ended(old, queue.TagEND)
	}
	if err := s.reply(corrID, entity, queue.Command{Tag: queue.TagOK}); err != nil {
		return err
	}
	s.markPending(sub)
	return nil
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

// acked runs after a durable ACK: the subscription, if this session holds
// it, may deliver the next message.
func (s *session) acked(rid, msgID queue.ID) {
	s.mu.Lock()
	sub, ok := s.subs[rid]
	if ok && sub.hasDelivered && sub.delivered == msgID {
		sub.hasDelivered = false
	}
	s.mu.Unlock()
	if ok {
		s.markPending(sub)
	}
}

// deleted runs after a durable DEL: the subscription ends, with DELD to
// its session if that is another one.
func (s *session) deleted(rid queue.ID) {
	sub := s.r.unsubscribe(rid)
	if sub == nil {
		return
	}
	if sub.sess == s {
		s.mu.Lock()
		delete(s.subs, rid)
		delete(s.pending, sub)
		s.mu.Unlock()
		return
	}
	sub.sess.ended(sub, queue.TagDELD)
}

// ended removes sub from this session and queues the event tag (END or
// DELD) for its queue.
func (s *session) ended(sub *subscription, tag queue.Tag) {
	t := queue.Transmission{Entity: sub.rid[:], Command: queue.Command{Tag: tag}}
	s.mu.Lock()
	if s.subs[sub.rid] == sub {
		delete(s.subs, sub.rid)
	}
	delete(s.pending, sub)
	s.events = append(s.events, t.Append(nil))
	s.mu.Unlock()
	s.signal()
}

// markPending asks the writer to deliver sub's head message, unless one is
// already delivered and not yet acknowledged.
func (s *session) markPending(sub *subscription) {
	s.mu.Lock()
	if s.subs[sub.rid] != sub || sub.hasDelivered {
		s.mu.Unlock()
		return
	}
	s.pending[sub] = struct{}{}
	s.mu.Unlock()
	s.signal()
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// subscriptions returns a copy of the session's subscriptions.
func (s *session) subscriptions() map[queue.ID]*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.subs)
}

// writeLoop packs replies, events and deliveries into blocks and writes
// them. Replies come first, so an OK precedes the MSG it makes possible.
func (s *session) writeLoop() {
	defer s.wg.Done()
	defer s.close()
	var b queue.BlockBuilder
	out := make([]byte, 0, queue.BlockSize)
	flush := func() bool {
		if b.Count() == 0 {
			return true
		}
		out = b.AppendBlock(out[:0])
		b.Reset()
		_, err := s.conn.Write(out)
		return err == nil
	}
	add := func(tx []byte) bool {
		if !b.Fits(len(tx)) && !flush() {
			return false
		}
		b.Add(tx)
		return true
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case tx := <-s.replies:
			if !add(tx) {
				return
			}
		case <-s.wake:
		}
		// Take whatever else is ready without waiting.
	drain:
		for {
			select {
			case tx := <-s.replies:
				if !add(tx) {
					return
				}
			default:
				break drain
			}
		}
		for _, tx := range s.takeEvents() {
			if !add(tx) {
				return
			}
		}
		for _, sub := range s.takePending() {
			tx, ok := s.delivery(sub)
			if ok && !add(tx) {
				return
			}
		}
		if !flush() {
			return
		}
	}
}

func (s *session) takeEvents() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events
	s.events = nil
	return ev
}

func (s *session) takePending() []*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	subs := make([]*subscription, 0, len(s.pending))
	for sub := range s.pending {
		subs = append(subs, sub)
	}
	clear(s.pending)
	return subs
}

// delivery returns the MSG event for sub's head message, and false if
// there is none or sub no longer needs one.
func (s *session) delivery(sub *subscription) ([]byte, bool) {
	m, ok, err := s.r.store.firstMessage(sub.rid)
	if err != nil || !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sub.rid] != sub || sub.hasDelivered {
		return nil, false
	}
	sub.delivered, sub.hasDelivered = m.ID, true
	t := queue.Transmission{Entity: sub.rid[:], Command: msgCommand(&sub.msgKey, m)}
	s.r.metrics.messagesDelivered.Inc()
	return t.Append(nil), true
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
