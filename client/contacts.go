package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// Invite creates a one-time invitation: a new queue on one of the
// configured relays, and the link that lets one person send to it and
// connect. name is what we call the contact ("" picks "contact-N"). The
// contact is StateInvited until the invitee accepts and we process their
// confirmation (in the background while the client is open).
//
// The relay is chosen at random among those that answer: relays already
// connected first, and each other one is given Config.RelayTimeout to
// connect and create the queue before the next is tried. A relay that
// refuses (a wrong fingerprint or password) is skipped at once. When none
// can be used, the error wraps ErrRelaysUnreachable and says why for each.
func (c *Client) Invite(ctx context.Context, name string) (string, error) {
	inv, _, conn, q, _, err := c.invite(ctx, name)
	if err != nil {
		return "", err
	}
	c.subscribeNew(conn, q)
	return inv.String(), nil
}

// invite makes an invitation as Invite describes and stores the invited
// contact, but does not subscribe to its queue: the caller does, with
// subscribeNew, once it has finished with conn. It returns the relay and
// queue, and the contact's name.
func (c *Client) invite(ctx context.Context, name string) (inv invitation, addr queue.Address, conn *link.Conn, q link.Queue, _ string, err error) {
	relays, err := c.Relays()
	if err != nil {
		return inv, addr, nil, q, "", err
	}
	if len(relays) == 0 {
		return inv, addr, nil, q, "", ErrNoRelay
	}
	name, err = c.freeName(name)
	if err != nil {
		return inv, addr, nil, q, "", err
	}
	id := randomID(16)
	addr, conn, q, err = c.createQueue(ctx, c.candidates(relays), c.isolation(id))
	if err != nil {
		return inv, addr, nil, q, "", err
	}
	keys, err := ratchet.NewInviterKeys()
	if err != nil {
		return inv, addr, nil, q, "", err
	}
	ik, err := keys.MarshalBinary()
	if err != nil {
		return inv, addr, nil, q, "", err
	}
	e2e := newKey()
	rec := &contactRecord{
		ID:      id,
		Name:    name,
		State:   StateInvited,
		Created: time.Now(),
		Recv:    recvQueueRecord(addr, q, e2e.Bytes()),
		Inviter: ik,
	}
	if err := c.store.Update(func(tx *vault.Tx) error {
		if _, err := contactByName(tx, name); err == nil {
			return ErrNameTaken
		}
		if err := indexContact(tx, rec); err != nil {
			return err
		}
		return putContact(tx, rec)
	}); err != nil {
		return inv, addr, nil, q, "", err
	}
	c.addScope(id)
	inv = invitation{
		queue: queueInfo{relay: addr.WithoutPassword(), senderID: q.SenderID, e2eKey: queue.PublicKey(e2e)},
		keys:  keys.PublicKeys(),
	}
	return inv, addr, conn, q, name, nil
}

func recvQueueRecord(addr queue.Address, q link.Queue, e2e []byte) recvQueue {
	return recvQueue{
		Relay:        addr.String(),
		RecipientID:  bytes.Clone(q.RecipientID[:]),
		SenderID:     bytes.Clone(q.SenderID[:]),
		RecipientKey: q.RecipientKey.Bytes(),
		MessageKey:   bytes.Clone(q.MessageKey[:]),
		E2EKey:       e2e,
	}
}

// freeName returns name, or a generated one when name is empty, and
// ErrNameTaken when a contact has it.
func (c *Client) freeName(name string) (string, error) {
	recs, err := c.loadContacts()
	if err != nil {
		return "", err
	}
	taken := make(map[string]bool)
	for _, r := range recs {
		taken[r.Name] = true
	}
	if name == "" {
		for i := len(recs) + 1; ; i++ {
			if n := fmt.Sprintf("contact-%d", i); !taken[n] {
				return n, nil
			}
		}
	}
	if taken[name] {
		return "", ErrNameTaken
	}
	return name, nil
}

// Accept accepts an invitation link: it creates our own queue on a relay
// other than the inviter's, secures the inviter's queue for us, and queues
// the confirmation. The contact is StateJoining until the inviter
// confirms.
//
// Our relay is chosen as Invite chooses, among the configured relays
// other than the inviter's; only when none of them can be used does our
// queue go on the inviter's relay too, if it is configured
// (Contact.SharedRelay says so). The inviter's relay must answer within
// Config.RelayTimeout, else Accept returns an error wrapping
// ErrInviterRelay, and the invitation can still be used later. When none
// of our relays can be used the error wraps ErrRelaysUnreachable.
//
// inviteLink may be a short link (PROTOCOL.md section 21.3): of an
// invitation, whose data Accept reads from its relay first (a link read
// already gives ErrInvitationUsed, data changed on the relay ErrLinkData),
// or of a contact address, for which Accept is RequestContact showing no
// name.
func (c *Client) Accept(ctx context.Context, inviteLink, name string) (Contact, error) {
	var (
		inv   invitation
		short *queue.ShortLink
		err   error
	)
	if queue.IsShortLink(inviteLink) {
		l, err := queue.ParseShortLink(inviteLink)
		if err != nil {
			return Contact{}, fmt.Errorf("%w: %w", ErrBadLink, err)
		}
		if l.Kind == queue.LinkAddress {
			return c.RequestContact(ctx, inviteLink, name, "")
		}
		short = &l
	} else if inv, err = parseInvitation(inviteLink); err != nil {
		return Contact{}, err
	}
	relays, err := c.Relays()
	if err != nil {
		return Contact{}, err
	}
	if len(relays) == 0 {
		return Contact{}, ErrNoRelay
	}
	if name, err = c.freeName(name); err != nil {
		return Contact{}, err
	}
	id := randomID(16)
	iso := c.isolation(id)
	if short != nil {
		if inv, err = c.fetchInvitation(ctx, *short, iso); err != nil {
			return Contact{}, err
		}
	}
	r, hello, err := ratchet.Join(inv.keys)
	if err != nil {
		return Contact{}, ErrBadLink
	}
	// Our queue goes on a relay other than the inviter's if one answers,
	// else on the inviter's if it is ours too.
	var others []queue.Address
	var inviters *queue.Address
	for _, a := range relays {
		if a.Fingerprint != inv.queue.relay.Fingerprint {
			others = append(others, a)
		} else {
			inviters = &a
		}
	}
	ourRelays := c.candidates(others)
	if inviters != nil {
		ourRelays = append(ourRelays, *inviters)
	}
	c.linkTo(ourRelays[0], iso) // starts connecting meanwhile

	// The inviter's relay first: without it the invitation cannot be used,
	// so it gets the whole relay budget, for more than one attempt; or,
	// with private routing (Config.Routing), a session to it through one
	// of our relays, so that it never sees our address.
	theirs, err := c.inviterSender(ctx, inv.queue.relay, iso)
	if err != nil {
		rerr := &RelayError{inv.queue.relay.WithoutPassword(), err}
		if ctx.Err() != nil {
			return Contact{}, fmt.Errorf("%w: %w", ctx.Err(), rerr)
		}
		return Contact{}, fmt.Errorf("%w: %w", ErrInviterRelay, rerr)
	}
	ours, oconn, q, err := c.createQueue(ctx, ourRelays, iso)
	if err != nil {
		return Contact{}, err
	}
	shared := ours.Fingerprint == inv.queue.relay.Fingerprint

	// Secure the inviter's queue: it fails if the link was used.
	authKey, envKey := newKey(), newKey()
	if err := theirs.SecureSender(ctx, inv.queue.senderID, authKey); err != nil {
		dctx, cancel := context.WithTimeout(c.ctx, c.relayTimeout())
		if derr := oconn.Delete(dctx, q); derr != nil {
			c.cfg.Logger.Debug("deleting the unused queue", "err", derr)
		}
		cancel()
		if errors.Is(err, queue.AUTH) && !errors.Is(err, link.ErrForward) {
			return Contact{}, ErrInvitationUsed
		}
		return Contact{}, fmt.Errorf("%w: %w", ErrInviterRelay, &RelayError{inv.queue.relay.WithoutPassword(), err})
	}
	e2e := newKey()
	rec := &contactRecord{
		ID:          id,
		Name:        name,
		State:       StateJoining,
		Created:     time.Now(),
		SharedRelay: shared,
		Recv:        recvQueueRecord(ours, q, e2e.Bytes()),
		Send: &sendQueue{
			Relay:    inv.queue.relay.String(),
			SenderID: bytes.Clone(inv.queue.senderID[:]),
			AuthKey:  authKey.Bytes(),
			EnvKey:   envKey.Bytes(),
			PeerE2E:  bytes.Clone(inv.queue.e2eKey[:]),
			Secured:  true,
		},
	}
	info := queueInfo{relay: ours.WithoutPassword(), senderID: q.SenderID, e2eKey: queue.PublicKey(e2e)}
	err = c.store.Update(func(tx *vault.Tx) error {
		if _, err := contactByName(tx, name); err == nil {
			return ErrNameTaken
		}
		if err := indexContact(tx, rec); err != nil {
			return err
		}
		env, err := c.seal(rec, r, envelopeConfirmation, hello, payloadConfirm, info.append(nil))
		if err != nil {
			return err
		}
		return c.queueSend(tx, rec, env, false, false)
	})
	if err != nil {
		return Contact{}, err
	}
	c.addScope(id)
	notify(c.wakeOutbox)
	c.subscribeNew(oconn, q)
	return Contact{Name: name, State: StateJoining, Created: rec.Created, SharedRelay: shared, Outbox: 1}, nil
}

// seal builds the next payload to rec's contact, encrypts it with r and
// wraps it in an envelope; it updates rec (ratchet, seq, hash) but does not
// store it.
func (c *Client) seal(rec *contactRecord, r *ratchet.Ratchet, kind byte, hello []byte, pkind byte, body []byte) ([]byte, error) {
	p := payload{seq: rec.SendSeq + 1, kind: pkind, time: time.Now().UnixMilli(), body: body}
	copy(p.prevHash[:], rec.LastSent)
	plain := p.append(nil)
	msg, err := r.Encrypt(plain)
	if err != nil {
		return nil, err
	}
	envKey, err := queue.ParsePrivateKey(rec.Send.EnvKey)
	if err != nil {
		return nil, err
	}
	var peer queue.Key
	copy(peer[:], rec.Send.PeerE2E)
	env, err := sealEnvelope(kind, envKey, peer, hello, msg)
	if err != nil {
		return nil, err
	}
	st, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(plain)
	rec.Ratchet, rec.SendSeq, rec.LastSent = st, p.seq, h[:]
	return env, nil
}

// queueSend stores rec and an outbox entry for env, in tx.
func (c *Client) queueSend(tx *vault.Tx, rec *contactRecord, env []byte, connects, text bool) error {
	return c.queueEntry(tx, rec, outboxEntry{Envelope: env, Connects: connects, Text: text})
}

// queueEntry stores rec and the outbox entry e, completed with rec's send
// queue and seq, in tx.
func (c *Client) queueEntry(tx *vault.Tx, rec *contactRecord, e outboxEntry) error {
	if err := putContact(tx, rec); err != nil {
		return err
	}
	n, err := tx.Seq(bucketOutbox)
	if err != nil {
		return err
	}
	e.Contact, e.Relay, e.SenderID, e.AuthKey = rec.ID, rec.Send.Relay, rec.Send.SenderID, rec.Send.AuthKey
	e.Secure, e.Seq = !rec.Send.Secured, rec.SendSeq
	return tx.Put(bucketOutbox, seqKey(n), marshal(e))
}

// Send queues a text message to the contact called name and returns its
// sequence number. The message is in the store when Send returns; it is
// sent in the background (see Flush) and retried until the relay accepts it.
func (c *Client) Send(ctx context.Context, name, text string) (uint64, error) {
	if len(text) > MaxTextSize {
		return 0, ErrTooLong
	}
	var seq uint64
	err := c.store.Update(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		if rec.State == StateGone {
			return ErrContactGone
		}
		if rec.State == StateInvited || rec.Send == nil || rec.Ratchet == nil {
			return ErrNotConnected
		}
		r, err := ratchet.UnmarshalRatchet(rec.Ratchet)
		if err != nil {
			return err
		}
		env, err := c.seal(rec, r, envelopeMessage, nil, payloadText, []byte(text))
		if err != nil {
			return err
		}
		seq = rec.SendSeq
		if err := awaitReceipt(tx, rec); err != nil {
			return err
		}
		return c.queueSend(tx, rec, env, false, true)
	})
	if err != nil {
		return 0, err
	}
	notify(c.wakeOutbox)
	return seq, nil
}

// receive handles a message delivered to one of our queues and reports
// whether to acknowledge it to the relay, on queue q: yes once its effects
// are stored, or when it can never be processed. A message on the new
// queue of a rotation that must wait for the old queue to drain
// (rotate.go) is not acknowledged, and is delivered again later.
func (c *Client) receive(ev link.Event) (q link.Queue, ack bool) {
	if c.isAddressQueue(ev.RecipientID) {
		return c.receiveRequest(ev)
	}
	var (
		out  processed
		id   []byte
		gone *contactRecord
		held *holdError
	)
	err := c.store.Update(func(tx *vault.Tx) error {
		rec, err := c.contactByRecipient(tx, ev.RecipientID)
		if err != nil {
			return err
		}
		id = rec.ID
		rq := rec.recvQueue(ev.RecipientID)
		if q, err = rq.queue(); err != nil {
			return err
		}
		out, err = c.process(tx, rec, rq, ev)
		if err == nil && rec.State == StateGone {
			gone = rec
		}
		return err
	})
	switch {
	case err == nil:
	case errors.As(err, &held):
		c.hold(id, ev.RecipientID, held.seq)
		notify(c.wakeRotate)
		return q, false
	case errors.Is(err, ErrNoContact):
		// Not ours (any more): without its key, it cannot be acknowledged.
		return q, false
	default:
		c.cfg.Logger.Error("processing a message", "err", err)
		return q, false // the relay delivers it again
	}
	notify(c.wakeEvents)
	if out.queued {
		notify(c.wakeOutbox)
	}
	if out.rotation {
		notify(c.wakeRotate)
	}
	c.received(id, out.onNew)
	if gone != nil {
		c.wg.Go(func() { c.contactGone(gone) })
	}
	return q, true
}

// processed is what process did besides storing.
type processed struct {
	queued   bool // an outgoing message was queued
	rotation bool // the rotation loop has work (rotate.go)
	onNew    bool // the message came on the new queue of a rotation
}

// process applies one delivered message, which came on rec's receiving
// queue rq, to rec, in tx: the handshake steps, decryption, checks, the
// steps of queue rotation, and the events for the application. It
// returns a *holdError, and changes nothing, for a message on a rotation's new
// queue that must wait for the old queue to drain.
func (c *Client) process(tx *vault.Tx, rec *contactRecord, rq *recvQueue, ev link.Event) (processed, error) {
	onNew := rec.Rotation != nil && rq == &rec.Rotation.New
	for _, id := range rec.Recent {
		if bytes.Equal(id, ev.Message.ID[:]) {
			return processed{}, nil // processed before; the ACK was lost
		}
	}
	rec.Recent = append(rec.Recent, bytes.Clone(ev.Message.ID[:]))
	if len(rec.Recent) > recentIDs {
		rec.Recent = rec.Recent[len(rec.Recent)-recentIDs:]
	}
	report := func(p error) error {
		if err := c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Time: time.Now(), Problem: p}); err != nil {
			return err
		}
		return putContact(tx, rec)
	}
	if ev.Err != nil {
		return processed{}, report(fmt.Errorf("%w (relay layer)", ErrTampered))
	}
	e2e, err := queue.ParsePrivateKey(rq.E2EKey)
	if err != nil {
		return processed{}, err
	}
	env, err := openEnvelope(ev.Message.Body, e2e)
	if err != nil {
		return processed{}, report(fmt.Errorf("%w (envelope)", ErrTampered))
	}
	var r *ratchet.Ratchet
	if rec.State == StateInvited {
		if env.kind != envelopeConfirmation {
			return processed{}, report(fmt.Errorf("%w (expected a confirmation)", ErrTampered))
		}
		keys, err := ratchet.UnmarshalInviterKeys(rec.Inviter)
		if err != nil {
			return processed{}, err
		}
		if r, err = keys.Accept(env.hello); err != nil {
			return processed{}, report(fmt.Errorf("%w (confirmation)", ErrTampered))
		}
	} else {
		if rec.Ratchet == nil {
			return processed{}, report(fmt.Errorf("%w (no session)", ErrTampered))
		}
		if r, err = ratchet.UnmarshalRatchet(rec.Ratchet); err != nil {
			return processed{}, err
		}
	}
	plain, err := r.Decrypt(env.message)
	switch {
	case errors.Is(err, ratchet.ErrDuplicate):
		return processed{}, report(ErrDuplicate)
	case err != nil:
		return processed{}, report(fmt.Errorf("%w (%v)", ErrTampered, err))
	}
	p, err := parsePayload(plain)
	if err != nil {
		return processed{}, report(fmt.Errorf("%w (payload)", ErrTampered))
	}
	if onNew && p.seq > rec.RecvSeq+1 && !c.drainWaived(rec.ID) {
		// Messages sent before it are still on the old queue.
		return processed{}, &holdError{p.seq}
	}
	// Order and integrity: seq follows, and the hash chains.
	switch {
	case p.seq <= rec.RecvSeq:
		return processed{}, report(ErrDuplicate)
	case p.seq > rec.RecvSeq+1:
		if err := c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: p.seq, Time: time.Now(),
			Problem: fmt.Errorf("%w: %d before message %d", ErrGap, p.seq-rec.RecvSeq-1, p.seq)}); err != nil {
			return processed{}, err
		}
	case !bytes.Equal(p.prevHash[:], append(rec.LastRecv, make([]byte, 32-len(rec.LastRecv))...)):
		if err := c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: p.seq, Time: time.Now(),
			Problem: fmt.Errorf("%w: message %d", ErrBadHash, p.seq)}); err != nil {
			return processed{}, err
		}
	}
	h := sha256.Sum256(plain)
	rec.RecvSeq, rec.LastRecv = p.seq, h[:]
	st, err := r.MarshalBinary()
	if err != nil {
		return processed{}, err
	}
	rec.Ratchet = st
	sent := time.UnixMilli(p.time)
	out := processed{onNew: onNew, rotation: onNew}
	if onNew {
		// The old queue is drained: the new one replaces it.
		if err := c.completeRotation(tx, rec); err != nil {
			return processed{}, err
		}
	}

	switch p.kind {
	case payloadConfirm:
		if rec.State != StateInvited {
			return processed{}, report(fmt.Errorf("%w (a second confirmation)", ErrTampered))
		}
		info, rest, err := parseQueueInfo(p.body)
		if err != nil || len(rest) != 0 {
			return processed{}, report(fmt.Errorf("%w (confirmation)", ErrTampered))
		}
		recvAddr, _ := queue.ParseAddress(rec.Recv.Relay)
		rec.SharedRelay = info.relay.Fingerprint == recvAddr.Fingerprint
		rec.Inviter = nil
		rec.State = StateJoining // until the relay accepts our ready message
		rec.Send = &sendQueue{
			Relay:    info.relay.String(),
			SenderID: bytes.Clone(info.senderID[:]),
			AuthKey:  newKey().Bytes(),
			EnvKey:   newKey().Bytes(),
			PeerE2E:  bytes.Clone(info.e2eKey[:]),
		}
		env, err := c.seal(rec, r, envelopeMessage, nil, payloadReady, nil)
		if err != nil {
			return processed{}, err
		}
		out.queued = true
		return out, c.queueSend(tx, rec, env, true, false)
	case payloadReady:
		if rec.State != StateJoining || rec.Send == nil {
			return processed{}, report(fmt.Errorf("%w (unexpected ready)", ErrTampered))
		}
		rec.State = StateConnected
		if err := c.pushEvent(tx, Event{Kind: EventConnected, Contact: rec.Name, Seq: p.seq, Time: sent}); err != nil {
			return processed{}, err
		}
	case payloadText:
		if rec.State == StateJoining {
			// The inviter's first text can overtake nothing (one queue, in
			// order), but a ready message lost to a relay's expiry would
			// leave us here: the text proves the contact is connected.
			rec.State = StateConnected
			if err := c.pushEvent(tx, Event{Kind: EventConnected, Contact: rec.Name, Time: sent}); err != nil {
				return processed{}, err
			}
		}
		if err := c.pushEvent(tx, Event{Kind: EventMessage, Contact: rec.Name, Text: string(p.body), Seq: p.seq, Time: sent}); err != nil {
			return processed{}, err
		}
		// Stored: the receipt goes in the same transaction (section 19.12).
		if on, err := receiptsOn(tx, rec); err != nil {
			return processed{}, err
		} else if on && rec.Send != nil {
			env, err := c.seal(rec, r, envelopeMessage, nil, payloadReceipt, appendReceipt(nil, p.seq, h[:]))
			if err != nil {
				return processed{}, err
			}
			out.queued = true
			return out, c.queueEntry(tx, rec, outboxEntry{Envelope: env, Receipt: true})
		}
	case payloadQAdd, payloadQKey, payloadQUse, payloadQTest, payloadQAsk:
		o, err := c.processRotation(tx, rec, r, p)
		if err != nil {
			return processed{}, err
		}
		out.queued = out.queued || o.queued
		out.rotation = out.rotation || o.rotation
	case payloadReceipt:
		if err := c.receiveReceipt(tx, rec, p); err != nil {
			return processed{}, err
		}
	case payloadGone:
		rec.State, rec.Send = StateGone, nil
		if err := c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Seq: p.seq, Time: sent, Problem: ErrContactGone}); err != nil {
			return processed{}, err
		}
	}
	return out, putContact(tx, rec)
}

// queueGone handles the news that our receiving queue rid for the
// contact with id no longer exists on its relay (AUTH to SUB, or DELD):
// an old queue of a rotation is then deleted already, the new queue of a
// rotation not yet switched to ends the rotation, and the problem is
// reported otherwise.
func (c *Client) queueGone(id []byte, rid queue.ID) {
	c.store.Update(func(tx *vault.Tx) error {
		v, err := tx.Get(bucketContacts, id)
		if err != nil {
			return err
		}
		var rec contactRecord
		if err := unmarshal(v, &rec); err != nil {
			return err
		}
		if done, err := c.rotationQueueGone(tx, &rec, rid); done || err != nil {
			return err
		}
		return c.pushEvent(tx, Event{Kind: EventProblem, Contact: rec.Name, Time: time.Now(),
			Problem: errors.New("our receiving queue for this contact is gone from its relay")})
	})
	notify(c.wakeEvents)
}
