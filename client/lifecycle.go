package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// HandshakeExpiry is how long, by default (Config.HandshakeExpiry), a
// contact may stay invited or joining: the relays' default lifetime of a
// queue that was never secured (relay.DefaultUnsecuredTTL), after which
// its invitation cannot complete. The client then forgets it.
const HandshakeExpiry = 7 * 24 * time.Hour

// More contact states.
const (
	// StateGone: the contact forgot us (hush forget): they deleted their
	// queue, and we delete ours; only Forget remains to do.
	StateGone ContactState = "gone"
	// StateExpired: the handshake did not complete within the expiry
	// (Contact.Expires); the client forgets the contact soon.
	StateExpired ContactState = "expired"
)

// Errors of the contact lifecycle.
var (
	// ErrContactGone is returned by Send to a contact who forgot us, and
	// reported (EventProblem) when their notice arrives.
	ErrContactGone = errors.New("the contact deleted this conversation (hush forget) and its queue; forget them too")
	// ErrBadName is returned by Rename for an empty name.
	ErrBadName = errors.New("a contact's name must not be empty")
)

// expiry returns the configured handshake expiry.
func (c *Client) expiry() time.Duration {
	if c.cfg.HandshakeExpiry > 0 {
		return c.cfg.HandshakeExpiry
	}
	return HandshakeExpiry
}

// halfMade reports whether rec's handshake has not completed.
func halfMade(rec *contactRecord) bool {
	return rec.State == StateInvited || rec.State == StateJoining
}

// contactOf is what the application sees of rec, pending messages in its
// outbox.
func (c *Client) contactOf(rec *contactRecord, pending int, now time.Time) Contact {
	ct := Contact{Name: rec.Name, State: rec.State, Created: rec.Created, SharedRelay: rec.SharedRelay, Outbox: pending, Receipts: rec.Receipts}
	if halfMade(rec) {
		ct.Expires = rec.Created.Add(c.expiry())
		if !now.Before(ct.Expires) {
			ct.State = StateExpired
		}
	}
	return ct
}

// Forget forgets the contact called name, whatever its state: it deletes
// our receiving queue on its relay (DEL), tells the contact, if the
// contact can be told, so that their client deletes its queue in turn
// (the notice waits in the outbox until a relay takes it: see Flush), and
// removes the contact's record, keys and queued messages from the store.
// If our queue's relay cannot be reached within ctx, Forget changes
// nothing and returns the error.
func (c *Client) Forget(ctx context.Context, name string) error {
	var rec *contactRecord
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		rec, err = contactByName(tx, name)
		return err
	})
	if err != nil {
		return err
	}
	if err := c.deleteRecvQueue(ctx, rec); err != nil {
		return fmt.Errorf("deleting our queue on its relay: %w", err)
	}
	err = c.store.Update(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		// Drop what waits to be sent to the contact.
		var drop [][]byte
		err = tx.ForEach(bucketOutbox, nil, func(k, v []byte) error {
			var e outboxEntry
			if err := unmarshal(v, &e); err != nil {
				return err
			}
			if bytes.Equal(e.Contact, rec.ID) {
				drop = append(drop, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := tx.Delete(bucketOutbox, k); err != nil {
				return err
			}
		}
		// The notice, self-contained in the outbox: it outlives the record.
		if rec.State != StateGone && rec.Send != nil && rec.Ratchet != nil {
			r, err := ratchet.UnmarshalRatchet(rec.Ratchet)
			if err != nil {
				return err
			}
			env, err := c.seal(rec, r, envelopeMessage, nil, payloadGone, nil)
			if err != nil {
				return err
			}
			if err := c.queueSend(tx, rec, env, false, false); err != nil {
				return err
			}
		}
		if err := dropReceipts(tx, rec); err != nil {
			return err
		}
		if err := tx.Delete(bucketByName, tx.Blind(indexName, []byte(rec.Name))); err != nil {
			return err
		}
		for _, rq := range rec.recvQueues() {
			if err := tx.Delete(bucketByRecipient, tx.Blind(indexRecipient, rq.RecipientID)); err != nil {
				return err
			}
		}
		return tx.Delete(bucketContacts, rec.ID)
	})
	if err != nil {
		return err
	}
	notify(c.wakeOutbox)
	return nil
}

// deleteRecvQueue deletes rec's receiving queues on their relays: Recv,
// and the new and old queues of a rotation (recvQueues); a queue already
// gone (AUTH) is not an error.
func (c *Client) deleteRecvQueue(ctx context.Context, rec *contactRecord) error {
	for _, rq := range rec.recvQueues() {
		if err := c.deleteQueue(ctx, rec.ID, rq, c.linkGet); err != nil {
			return err
		}
	}
	return nil
}

// deleteQueue deletes the receiving queue rq of the contact with id on
// its relay (DEL), over a connection that conn gives; a queue already
// gone (AUTH) is not an error.
func (c *Client) deleteQueue(ctx context.Context, id []byte, rq *recvQueue, conn func(context.Context, *relayLink) (*link.Conn, error)) error {
	addr, err := queue.ParseAddress(rq.Relay)
	if err != nil {
		return err
	}
	q, err := rq.queue()
	if err != nil {
		return err
	}
	cn, err := conn(ctx, c.linkTo(addr, c.isolation(id)))
	if err != nil {
		return err
	}
	if err := cn.Delete(ctx, q); err != nil && !errors.Is(err, queue.AUTH) {
		return err
	}
	return nil
}

// linkGet and linkTry are relayLink.get and relayLink.try as functions.
func (c *Client) linkGet(ctx context.Context, l *relayLink) (*link.Conn, error) { return l.get(ctx) }
func (c *Client) linkTry(ctx context.Context, l *relayLink) (*link.Conn, error) { return l.try(ctx) }

// contactGone handles the notice of a contact who forgot us, in the
// background: it deletes our receiving queue for them.
func (c *Client) contactGone(rec *contactRecord) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	if err := c.deleteRecvQueue(ctx, rec); err != nil {
		c.cfg.Logger.Debug("deleting the queue of a contact who left", "err", err)
	}
}

// Rename gives the contact called name the name newName.
func (c *Client) Rename(name, newName string) error {
	if newName == "" {
		return ErrBadName
	}
	if newName == name {
		return nil
	}
	return c.store.Update(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		if _, err := contactByName(tx, newName); err == nil {
			return ErrNameTaken
		} else if !errors.Is(err, ErrNoContact) {
			return err
		}
		if err := tx.Delete(bucketByName, tx.Blind(indexName, []byte(name))); err != nil {
			return err
		}
		rec.Name = newName
		if err := tx.PutIndex(bucketByName, tx.Blind(indexName, []byte(newName)), rec.ID); err != nil {
			return err
		}
		return putContact(tx, rec)
	})
}

// expireLoop forgets, now and then until Close, the contacts whose
// handshake did not complete within the expiry.
func (c *Client) expireLoop() {
	defer c.wg.Done()
	every := min(c.expiry()/2, time.Hour)
	for {
		c.expire()
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (c *Client) expire() {
	recs, err := c.loadContacts()
	if err != nil {
		c.cfg.Logger.Error("expiring contacts", "err", err)
		return
	}
	now := time.Now()
	for _, r := range recs {
		if !halfMade(r) || now.Before(r.Created.Add(c.expiry())) || !c.inScope(r.ID) {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
		err := c.Forget(ctx, r.Name)
		cancel()
		if err != nil && !errors.Is(err, ErrNoContact) {
			c.cfg.Logger.Debug("forgetting an expired contact; will retry", "err", err)
			continue
		}
		c.store.Update(func(tx *vault.Tx) error {
			return c.pushEvent(tx, Event{Kind: EventProblem, Contact: r.Name, Time: now,
				Problem: fmt.Errorf("the invitation was not completed within %v: contact forgotten", c.expiry())})
		})
		notify(c.wakeEvents)
	}
}
