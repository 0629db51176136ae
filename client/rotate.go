package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// Queue rotation (queue/PROTOCOL.md section 19.11) moves the queue we
// receive a contact's messages on to a new queue, on another relay when
// one is configured, with four end-to-end messages on the contact:
//
//	QADD  (we -> contact, on the queue we send to): the new queue's info
//	QKEY  (contact -> us, on our old queue): its sender key for it; we KEY
//	QUSE  (we -> contact): send to the new queue from now on
//	QTEST (contact -> us, on the new queue): its first message there
//
// The first message processed on the new queue completes the rotation;
// the old queue, drained by then, is deleted (DEL).

// RotationState is where the rotation of a contact's receiving queue is.
type RotationState string

// Rotation states.
const (
	// RotationNone: no rotation under way.
	RotationNone RotationState = ""
	// RotationAdding: the new queue exists and QADD is sent (or waits in
	// the outbox); the contact has not answered QKEY yet.
	RotationAdding RotationState = "adding"
	// RotationSecuring: the contact's QKEY arrived; the client secures
	// the new queue (KEY) and then sends QUSE.
	RotationSecuring RotationState = "securing"
	// RotationSwitching: QUSE is sent; the contact's messages move to the
	// new queue, and the first one processed there completes the
	// rotation.
	RotationSwitching RotationState = "switching"
	// RotationDeleting: the rotation is complete and the old queue waits
	// to be deleted on its relay.
	RotationDeleting RotationState = "deleting"
)

// Errors of rotation.
var (
	// ErrRotating is returned by Rotate when a rotation of the contact's
	// receiving queue is under way already.
	ErrRotating = errors.New("a rotation of this contact's queue is under way")
	// ErrRotationAbandoned is reported (EventProblem) when a rotation
	// ends before the switch: the contact did not answer within the
	// rotation timeout, or the new queue was lost. The old queue stays
	// in use.
	ErrRotationAbandoned = errors.New("the queue rotation was abandoned; the old queue stays in use")
)

const (
	// rotationTick is how often the rotation loop retries the network
	// steps that failed (KEY, DEL), while any waits.
	rotationTick = 5 * time.Second
	// rotationIdle is how often it looks for due rotations otherwise.
	rotationIdle = time.Minute
	// drainGrace is how long a message on a rotation's new queue waits
	// for the messages before it, once the old queue's relay has been
	// connected (and its queue subscribed) that long without delivering
	// them: they are then taken as lost (ErrGap), as they would be
	// without a rotation.
	drainGrace = time.Minute
	// askInterval is how often a contact's request to rotate (QASK) is
	// honoured at most.
	askInterval = time.Hour
	// rotateRetry is how long an automatic rotation that could not start
	// (no relay answered) waits before the next attempt.
	rotateRetry = time.Hour
)

// recvRotation is a rotation of our receiving queue under way.
type recvRotation struct {
	State   RotationState
	Started time.Time
	// New is the new queue, subscribed from its creation.
	New recvQueue
	// SenderKey is the contact's sender key for New (QKEY), X25519
	// public; set from RotationSecuring on.
	SenderKey []byte `json:",omitempty"`
}

// sendRotation is the contact's rotation of the queue we send to: the
// queue it announced (QADD) and our keys for it.
type sendRotation struct {
	Relay    string // canonical address, without password
	SenderID []byte
	AuthKey  []byte // our sender authorization key, X25519 private
	EnvKey   []byte // our envelope key for the queue, X25519 private
	PeerE2E  []byte // the queue's end-to-end key
}

// rotationState is what Contact.Rotation shows of r.
func (r *contactRecord) rotationState() RotationState {
	switch {
	case r.Rotation != nil:
		return r.Rotation.State
	case len(r.OldRecv) > 0:
		return RotationDeleting
	}
	return RotationNone
}

// Rotation payload bodies (payload kinds payloadQAdd .. payloadQAsk):
//
//	QADD:  queue info (appendQueueInfo) of the new queue
//	QKEY:  senderID [24] of the new queue | senderKey [32] X25519 public
//	QUSE:  senderID [24] of the new queue
//	QTEST: empty
//	QASK:  empty
const (
	qkeySize = queue.IDSize + queue.KeySize
	quseSize = queue.IDSize
)

// rotationMsg is a parsed rotation payload body.
type rotationMsg struct {
	kind      byte
	info      queueInfo // QADD
	senderID  queue.ID  // QKEY, QUSE
	senderKey queue.Key // QKEY
}

// appendRotation appends the body of m.
func (m *rotationMsg) append(b []byte) []byte {
	switch m.kind {
	case payloadQAdd:
		return m.info.append(b)
	case payloadQKey:
		b = append(b, m.senderID[:]...)
		return append(b, m.senderKey[:]...)
	case payloadQUse:
		return append(b, m.senderID[:]...)
	}
	return b
}

// errRotationMsg is returned by parseRotation for a body that is not
// the one canonical encoding of its kind.
var errRotationMsg = errors.New("malformed rotation message")

// parseRotation parses the body of a payload of a rotation kind: it must
// be exactly the layout of its kind, with nothing after it.
func parseRotation(kind byte, body []byte) (rotationMsg, error) {
	m := rotationMsg{kind: kind}
	switch kind {
	case payloadQAdd:
		info, rest, err := parseQueueInfo(body)
		if err != nil || len(rest) != 0 {
			return rotationMsg{}, errRotationMsg
		}
		m.info = info
	case payloadQKey:
		if len(body) != qkeySize {
			return rotationMsg{}, errRotationMsg
		}
		copy(m.senderID[:], body)
		copy(m.senderKey[:], body[queue.IDSize:])
	case payloadQUse:
		if len(body) != quseSize {
			return rotationMsg{}, errRotationMsg
		}
		copy(m.senderID[:], body)
	case payloadQTest, payloadQAsk:
		if len(body) != 0 {
			return rotationMsg{}, errRotationMsg
		}
	default:
		return rotationMsg{}, errRotationMsg
	}
	return m, nil
}

// Rotate starts moving the receiving queue of the contact called name to
// a new queue (queue/PROTOCOL.md section 19.11): on a configured relay
// other than the current one (and other than the relay of the queue we
// send to) when one answers, else on the current relay, else on the
// relay we send to. It creates the new queue and queues QADD, and
// returns; the rotation goes on in the background while the client is
// online, and needs the contact's client to answer: Contact.Rotation
// says where it is, EventRotated says it is complete. A rotation that
// the contact does not answer within half the handshake expiry
// (Config.HandshakeExpiry, 3.5 days by default) is abandoned
// (ErrRotationAbandoned). It returns ErrNoContact, ErrNotConnected for a
// contact not connected, ErrContactGone, ErrRotating when a rotation is
// under way, and the errors of Invite when no relay can be used.
func (c *Client) Rotate(ctx context.Context, name string) error {
	rec, err := c.contactNamed(name)
	if err != nil {
		return err
	}
	return c.rotate(ctx, rec, nil)
}

// contactNamed returns the contact called name.
func (c *Client) contactNamed(name string) (*contactRecord, error) {
	var rec *contactRecord
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		rec, err = contactByName(tx, name)
		return err
	})
	return rec, err
}

// rotatable returns nil if a rotation of rec's receiving queue may start.
func rotatable(rec *contactRecord) error {
	switch {
	case rec.State == StateGone:
		return ErrContactGone
	case rec.State != StateConnected || rec.Send == nil || rec.Ratchet == nil:
		return ErrNotConnected
	case rec.Rotation != nil:
		return ErrRotating
	}
	return nil
}

// rotate starts the rotation of rec's receiving queue, as Rotate says,
// never onto the relay avoid (nil: none).
func (c *Client) rotate(ctx context.Context, rec *contactRecord, avoid *queue.Fingerprint) error {
	if err := rotatable(rec); err != nil {
		return err
	}
	relays, err := c.rotationRelays(rec, avoid)
	if err != nil {
		return err
	}
	if len(relays) == 0 {
		return ErrNoRelay
	}
	addr, conn, q, err := c.createQueue(ctx, relays, c.isolation(rec.ID))
	if err != nil {
		return err
	}
	e2e := newKey()
	newQ := recvQueueRecord(addr, q, e2e.Bytes())
	err = c.updateContact(rec.ID, func(tx *vault.Tx, cur *contactRecord) error {
		if err := rotatable(cur); err != nil {
			return err
		}
		r, err := ratchet.UnmarshalRatchet(cur.Ratchet)
		if err != nil {
			return err
		}
		cur.Rotation = &recvRotation{State: RotationAdding, Started: time.Now(), New: newQ}
		if c.cfg.RotateEvery > 0 {
			cur.RotateAt = c.nextRotation(time.Now())
		}
		m := rotationMsg{kind: payloadQAdd, info: queueInfo{relay: addr.WithoutPassword(), senderID: q.SenderID, e2eKey: queue.PublicKey(e2e)}}
		env, err := c.seal(cur, r, envelopeMessage, nil, payloadQAdd, m.append(nil))
		if err != nil {
			return err
		}
		if err := tx.PutIndex(bucketByRecipient, tx.Blind(indexRecipient, newQ.RecipientID), cur.ID); err != nil {
			return err
		}
		return c.queueSend(tx, cur, env, false, false)
	})
	if err != nil {
		dctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
		if derr := conn.Delete(dctx, q); derr != nil {
			c.cfg.Logger.Debug("deleting the unused queue", "err", derr)
		}
		cancel()
		return err
	}
	notify(c.wakeOutbox)
	notify(c.wakeRotate) // its timeout is due later
	c.subscribeNew(conn, q)
	return nil
}

// rotationRelays returns the relays a rotation of rec's receiving queue
// tries, in order: the configured relays other than the current one and
// than the relay we send to (see candidates), then the current relay,
// then the relay we send to; never avoid.
func (c *Client) rotationRelays(rec *contactRecord, avoid *queue.Fingerprint) ([]queue.Address, error) {
	relays, err := c.Relays()
	if err != nil {
		return nil, err
	}
	var cur, send queue.Fingerprint
	if a, err := queue.ParseAddress(rec.Recv.Relay); err == nil {
		cur = a.Fingerprint
	}
	if rec.Send != nil {
		if a, err := queue.ParseAddress(rec.Send.Relay); err == nil {
			send = a.Fingerprint
		}
	}
	var others, tail []queue.Address
	var sendRelay *queue.Address
	for _, a := range relays {
		switch {
		case avoid != nil && a.Fingerprint == *avoid:
		case a.Fingerprint == cur:
			tail = append([]queue.Address{a}, tail...)
		case a.Fingerprint == send:
			sendRelay = &a
		default:
			others = append(others, a)
		}
	}
	if sendRelay != nil {
		tail = append(tail, *sendRelay)
	}
	return append(c.candidates(others), tail...), nil
}

// nextRotation draws when a contact's next automatic rotation is due,
// after now: uniform in [3/4, 5/4] of Config.RotateEvery.
func (c *Client) nextRotation(now time.Time) time.Time {
	every := c.cfg.RotateEvery
	return now.Add(every*3/4 + mrand.N(every/2+1))
}

// processRotation applies a rotation payload p from rec's contact, whose
// ratchet is r, in tx; process stores rec after it.
func (c *Client) processRotation(tx *vault.Tx, rec *contactRecord, r *ratchet.Ratchet, p payload) (processed, error) {
	var out processed
	m, err := parseRotation(p.kind, p.body)
	if err != nil {
		return out, c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: p.seq, Time: time.Now(),
			Problem: fmt.Errorf("%w (rotation message)", ErrTampered)})
	}
	switch m.kind {
	case payloadQAdd:
		// The contact rotates the queue we send to: keys for the new one,
		// and QKEY on the current one. A later QADD replaces an earlier
		// one that never got to QUSE.
		if rec.Send == nil {
			return out, nil
		}
		auth := newKey()
		rec.SendRotation = &sendRotation{
			Relay:    m.info.relay.String(),
			SenderID: bytes.Clone(m.info.senderID[:]),
			AuthKey:  auth.Bytes(),
			EnvKey:   newKey().Bytes(),
			PeerE2E:  bytes.Clone(m.info.e2eKey[:]),
		}
		k := rotationMsg{kind: payloadQKey, senderID: m.info.senderID, senderKey: queue.PublicKey(auth)}
		env, err := c.seal(rec, r, envelopeMessage, nil, payloadQKey, k.append(nil))
		if err != nil {
			return out, err
		}
		out.queued = true
		return out, c.queueSend(tx, rec, env, false, false)
	case payloadQKey:
		rot := rec.Rotation
		if rot == nil || rot.State != RotationAdding || !bytes.Equal(rot.New.SenderID, m.senderID[:]) {
			c.cfg.Logger.Debug("a QKEY for no rotation under way")
			return out, nil
		}
		rot.State, rot.SenderKey = RotationSecuring, bytes.Clone(m.senderKey[:])
		out.rotation = true
	case payloadQUse:
		sr := rec.SendRotation
		if sr == nil || !bytes.Equal(sr.SenderID, m.senderID[:]) {
			c.cfg.Logger.Debug("a QUSE for no rotation under way")
			return out, nil
		}
		// Switch: what is queued already goes to the old queue, in order,
		// before QTEST and everything after it on the new one.
		rec.Send = &sendQueue{
			Relay:     sr.Relay,
			SenderID:  sr.SenderID,
			AuthKey:   sr.AuthKey,
			EnvKey:    sr.EnvKey,
			PeerE2E:   sr.PeerE2E,
			Secured:   true, // the contact secured it (KEY) before QUSE
			Confirmed: true,
		}
		rec.SendRotation = nil
		rec.SharedRelay = sameRelay(rec.Recv.Relay, rec.Send.Relay)
		env, err := c.seal(rec, r, envelopeMessage, nil, payloadQTest, nil)
		if err != nil {
			return out, err
		}
		out.queued = true
		return out, c.queueSend(tx, rec, env, false, false)
	case payloadQTest:
		// Nothing to do: its arrival on the new queue is what counts.
	case payloadQAsk:
		if time.Since(rec.AskedAt) >= askInterval {
			rec.Asked, rec.AskedAt = true, time.Now()
			out.rotation = true
		}
	}
	return out, nil
}

// sameRelay reports whether two canonical addresses name one relay.
func sameRelay(a, b string) bool {
	x, err1 := queue.ParseAddress(a)
	y, err2 := queue.ParseAddress(b)
	return err1 == nil && err2 == nil && x.Fingerprint == y.Fingerprint
}

// completeRotation makes the new queue of rec's rotation its receiving
// queue, in tx, once a message on it was processed: the old queue is
// drained, and goes to OldRecv to be deleted.
func (c *Client) completeRotation(tx *vault.Tx, rec *contactRecord) error {
	rec.OldRecv = append(rec.OldRecv, rec.Recv)
	rec.Recv = rec.Rotation.New
	rec.Rotation = nil
	if rec.Send != nil {
		rec.SharedRelay = sameRelay(rec.Recv.Relay, rec.Send.Relay)
	}
	c.unhold(rec.ID)
	ev := Event{Kind: EventRotated, Contact: rec.Name, Time: time.Now()}
	if a, err := queue.ParseAddress(rec.Recv.Relay); err == nil {
		ev.Relay = a.HostPort()
	}
	return c.pushEvent(tx, ev)
}

// rotationQueueGone handles, in tx, the news that the receiving queue rid
// of rec is gone from its relay, if it is an old queue or the new queue
// of a rotation, and reports whether it was.
func (c *Client) rotationQueueGone(tx *vault.Tx, rec *contactRecord, rid queue.ID) (bool, error) {
	for i, old := range rec.OldRecv {
		if bytes.Equal(old.RecipientID, rid[:]) {
			rec.OldRecv = slices.Delete(rec.OldRecv, i, i+1)
			if err := tx.Delete(bucketByRecipient, tx.Blind(indexRecipient, rid[:])); err != nil {
				return true, err
			}
			return true, putContact(tx, rec)
		}
	}
	rot := rec.Rotation
	if rot == nil || !bytes.Equal(rot.New.RecipientID, rid[:]) {
		return false, nil
	}
	if rot.State == RotationSwitching {
		// The contact may send to it already: the problem is real.
		return false, nil
	}
	return true, c.abandonRotation(tx, rec, errors.New("the new queue is gone from its relay"))
}

// abandonRotation ends rec's rotation before the switch, in tx: its new
// queue goes to OldRecv, to be deleted, and the problem is reported.
func (c *Client) abandonRotation(tx *vault.Tx, rec *contactRecord, why error) error {
	rec.OldRecv = append(rec.OldRecv, rec.Rotation.New)
	rec.Rotation = nil
	if err := c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Time: time.Now(),
		Problem: fmt.Errorf("%w: %v", ErrRotationAbandoned, why)}); err != nil {
		return err
	}
	return putContact(tx, rec)
}

// updateContact applies f to the stored contact with id, in one
// transaction, and stores it; f returning errStop changes nothing.
func (c *Client) updateContact(id []byte, f func(tx *vault.Tx, rec *contactRecord) error) error {
	err := c.store.Update(func(tx *vault.Tx) error {
		v, err := tx.Get(bucketContacts, id)
		if errors.Is(err, vault.ErrNotFound) {
			return ErrNoContact
		}
		if err != nil {
			return err
		}
		var rec contactRecord
		if err := unmarshal(v, &rec); err != nil {
			return err
		}
		if err := f(tx, &rec); err != nil {
			return err
		}
		return putContact(tx, &rec)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// rotationLoop drives the network steps of rotations until Close: KEY
// for a rotation the contact answered, DEL of old queues, abandoning
// rotations not answered in time, the holds of new queues, rotations the
// contacts asked for, and the automatic rotations (Config.RotateEvery).
func (c *Client) rotationLoop() {
	defer c.wg.Done()
	for {
		pending, due := c.rotationPass()
		wait := rotationIdle
		if pending {
			wait = rotationTick
		}
		if !due.IsZero() {
			wait = max(min(wait, time.Until(due)), 0)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeRotate:
		case <-time.After(wait):
		}
	}
}

// rotationPass makes one pass over the contacts in scope, and reports
// whether work remains that waits for a relay, and when the next
// automatic rotation, or abandonment of a rotation, is due (zero for
// none).
func (c *Client) rotationPass() (pending bool, due time.Time) {
	recs, err := c.loadContacts()
	if err != nil {
		c.cfg.Logger.Error("rotation", "err", err)
		return true, due
	}
	now := time.Now()
	for _, rec := range recs {
		if c.ctx.Err() != nil {
			return false, due
		}
		if rec.State == StateGone || !c.inScope(rec.ID) {
			continue
		}
		if rot := rec.Rotation; rot != nil {
			if rot.State != RotationSwitching {
				// Wake up when it is to be abandoned.
				if at := rot.Started.Add(c.expiry() / 2); due.IsZero() || at.Before(due) {
					due = at
				}
			}
			switch {
			case rot.State != RotationSwitching && now.Sub(rot.Started) > c.expiry()/2:
				err := c.updateContact(rec.ID, func(tx *vault.Tx, cur *contactRecord) error {
					if cur.Rotation == nil || !bytes.Equal(cur.Rotation.New.RecipientID, rot.New.RecipientID) || cur.Rotation.State == RotationSwitching {
						return errStop
					}
					return c.abandonRotation(tx, cur, errors.New("the contact did not answer in time"))
				})
				if err != nil {
					c.cfg.Logger.Error("abandoning a rotation", "err", err)
				}
				notify(c.wakeEvents)
				pending = true
			case rot.State == RotationSecuring:
				if err := c.secureNew(rec); err != nil {
					c.cfg.Logger.Debug("securing a new queue; will retry", "err", err)
					pending = true
				}
			case rot.State == RotationSwitching && c.held(rec.ID):
				pending = true
				c.checkHold(rec)
			}
		}
		for i := range rec.OldRecv {
			if err := c.deleteOld(rec, &rec.OldRecv[i]); err != nil {
				c.cfg.Logger.Debug("deleting an old queue; will retry", "err", err)
				pending = true
			}
		}
		if rec.Rotation == nil && rotatable(rec) == nil {
			at, err := c.rotateIfDue(rec, now)
			if err != nil {
				c.cfg.Logger.Debug("rotating", "err", err)
			}
			if !at.IsZero() && (due.IsZero() || at.Before(due)) {
				due = at
			}
		}
	}
	return pending, due
}

// rotateIfDue starts the rotation of rec if its contact asked for one or
// its automatic rotation is due, and returns when the next automatic one
// is due (zero for none).
func (c *Client) rotateIfDue(rec *contactRecord, now time.Time) (time.Time, error) {
	auto := c.cfg.RotateEvery > 0
	switch {
	case rec.Asked:
	case auto && rec.RotateAt.IsZero():
		at := c.nextRotation(now)
		return at, c.updateContact(rec.ID, func(_ *vault.Tx, cur *contactRecord) error {
			cur.RotateAt = at
			return nil
		})
	case auto && !now.Before(rec.RotateAt):
	case auto:
		return rec.RotateAt, nil
	default:
		return time.Time{}, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, 4*c.relayTimeout())
	defer cancel()
	err := c.rotate(ctx, rec, nil)
	if err == nil || errors.Is(err, ErrRotating) || errors.Is(err, ErrNoContact) {
		if rec.Asked {
			return time.Time{}, c.updateContact(rec.ID, func(_ *vault.Tx, cur *contactRecord) error {
				cur.Asked = false
				return nil
			})
		}
		return time.Time{}, nil
	}
	if auto {
		c.updateContact(rec.ID, func(_ *vault.Tx, cur *contactRecord) error {
			cur.RotateAt = now.Add(rotateRetry)
			return nil
		})
	}
	return time.Time{}, err
}

// secureNew secures the new queue of rec's rotation with the contact's
// sender key (KEY), then queues QUSE: the switch.
func (c *Client) secureNew(rec *contactRecord) error {
	rot := rec.Rotation
	addr, err := queue.ParseAddress(rot.New.Relay)
	if err != nil {
		return err
	}
	q, err := rot.New.queue()
	if err != nil {
		return err
	}
	var sk queue.Key
	copy(sk[:], rot.SenderKey)
	ctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
	defer cancel()
	conn, err := c.linkTo(addr, c.isolation(rec.ID)).try(ctx)
	if err != nil {
		return err
	}
	err = conn.Secure(ctx, q, sk)
	if errors.Is(err, queue.AUTH) {
		// Gone, or secured by someone else: this queue cannot be used.
		err = c.updateContact(rec.ID, func(tx *vault.Tx, cur *contactRecord) error {
			if cur.Rotation == nil || !bytes.Equal(cur.Rotation.New.RecipientID, rot.New.RecipientID) {
				return errStop
			}
			return c.abandonRotation(tx, cur, errors.New("the relay refused to secure the new queue"))
		})
		notify(c.wakeEvents)
		return err
	}
	if err != nil {
		return err
	}
	err = c.updateContact(rec.ID, func(tx *vault.Tx, cur *contactRecord) error {
		if cur.Rotation == nil || cur.Rotation.State != RotationSecuring || !bytes.Equal(cur.Rotation.New.RecipientID, rot.New.RecipientID) {
			return errStop
		}
		if cur.Send == nil || cur.Ratchet == nil {
			return errStop
		}
		r, err := ratchet.UnmarshalRatchet(cur.Ratchet)
		if err != nil {
			return err
		}
		cur.Rotation.State = RotationSwitching
		var sid queue.ID
		copy(sid[:], rot.New.SenderID)
		m := rotationMsg{kind: payloadQUse, senderID: sid}
		env, err := c.seal(cur, r, envelopeMessage, nil, payloadQUse, m.append(nil))
		if err != nil {
			return err
		}
		return c.queueSend(tx, cur, env, false, false)
	})
	notify(c.wakeOutbox)
	return err
}

// deleteOld deletes the old queue old of rec on its relay (DEL), then
// forgets it.
func (c *Client) deleteOld(rec *contactRecord, old *recvQueue) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
	defer cancel()
	if err := c.deleteQueue(ctx, rec.ID, old, c.linkTry); err != nil {
		return err
	}
	var rid queue.ID
	copy(rid[:], old.RecipientID)
	return c.updateContact(rec.ID, func(tx *vault.Tx, cur *contactRecord) error {
		if done, err := c.rotationQueueGone(tx, cur, rid); err != nil || !done {
			return orErr(err, errStop)
		}
		return nil
	})
}

// orErr returns err, or def when err is nil.
func orErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// heldQueue is a rotation's new queue whose delivered message waits for
// the old queue to drain: the relay delivers it again after another SUB.
type heldQueue struct {
	rid   queue.ID
	seq   uint64    // the held message's payload seq
	since time.Time // first held
	// waived: the wait is over (drainGrace); the message is processed,
	// and the messages before it are reported missing.
	waived bool
	// resub: a SUB to deliver it again is under way.
	resub bool
}

// holdError is returned by process for a message that must wait: its
// payload seq is seq.
type holdError struct{ seq uint64 }

func (e *holdError) Error() string { return "the message waits for the old queue to drain" }

// hold records that the new queue rid of the contact with id holds back
// the message with payload seq.
func (c *Client) hold(id []byte, rid queue.ID, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds == nil {
		c.holds = make(map[string]*heldQueue)
	}
	h := c.holds[string(id)]
	if h == nil || h.rid != rid {
		c.holds[string(id)] = &heldQueue{rid: rid, seq: seq, since: time.Now()}
		return
	}
	h.seq, h.resub = seq, false
}

// unhold forgets the hold of the contact with id.
func (c *Client) unhold(id []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.holds, string(id))
}

// held reports whether the contact with id has a hold.
func (c *Client) held(id []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds[string(id)] != nil
}

// drainWaived reports whether the hold of the contact with id is waived.
func (c *Client) drainWaived(id []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.holds[string(id)]
	return h != nil && h.waived
}

// received is called after a message of the contact with id was
// processed: if one of its old queue, a message its new queue holds back
// may follow it now, and is asked for again.
func (c *Client) received(id []byte, onNew bool) {
	if onNew {
		return
	}
	c.resubscribe(id)
}

// resubscribe subscribes again, in the background, to the new queue of
// the contact with id that holds a message back, so that its relay
// delivers the message again.
func (c *Client) resubscribe(id []byte) {
	c.mu.Lock()
	h := c.holds[string(id)]
	if h == nil || h.resub {
		c.mu.Unlock()
		return
	}
	h.resub = true
	c.mu.Unlock()
	c.wg.Go(func() {
		err := c.subscribeHeld(id)
		if err != nil {
			c.cfg.Logger.Debug("subscribing again to a new queue", "err", err)
			c.mu.Lock()
			if h := c.holds[string(id)]; h != nil {
				h.resub = false
			}
			c.mu.Unlock()
		}
	})
}

func (c *Client) subscribeHeld(id []byte) error {
	var rec contactRecord
	err := c.store.View(func(tx *vault.Tx) error {
		v, err := tx.Get(bucketContacts, id)
		if err != nil {
			return err
		}
		return unmarshal(v, &rec)
	})
	if err != nil {
		return err
	}
	if rec.Rotation == nil {
		c.unhold(id)
		return nil
	}
	addr, err := queue.ParseAddress(rec.Rotation.New.Relay)
	if err != nil {
		return err
	}
	q, err := rec.Rotation.New.queue()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
	defer cancel()
	conn, err := c.linkTo(addr, c.isolation(id)).get(ctx)
	if err != nil {
		return err
	}
	return conn.Subscribe(ctx, q)
}

// checkHold asks for the message held by rec's new queue again when the
// messages before it have arrived meanwhile, and waives the hold once the
// old queue's relay has been connected for drainGrace since the hold
// began without delivering them.
func (c *Client) checkHold(rec *contactRecord) {
	c.mu.Lock()
	h := c.holds[string(rec.ID)]
	ready := h != nil && rec.RecvSeq+1 >= h.seq
	c.mu.Unlock()
	if ready {
		c.resubscribe(rec.ID)
		return
	}
	addr, err := queue.ParseAddress(rec.Recv.Relay)
	if err != nil {
		return
	}
	l := c.linkTo(addr, c.isolation(rec.ID))
	l.mu.Lock()
	up, since := l.conn != nil, l.since
	l.mu.Unlock()
	c.mu.Lock()
	h = c.holds[string(rec.ID)]
	waive := h != nil && up && time.Since(h.since) >= drainGrace && time.Since(since) >= drainGrace
	if waive {
		h.waived, h.resub = true, false
	}
	c.mu.Unlock()
	if waive {
		c.resubscribe(rec.ID)
	}
}
