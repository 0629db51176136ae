package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// sendTimeout bounds one attempt to hand a message to a relay.
const sendTimeout = 20 * time.Second

// outboxLoop sends the outbox, oldest first, until Close. A message stays
// in the outbox until its relay answers OK; failures are retried with
// backoff. Messages to one contact go in order: a failure holds back the
// ones behind it.
func (c *Client) outboxLoop() {
	defer c.wg.Done()
	b := link.NewBackoff(c.cfg.Dial)
	for {
		progress, pending, err := c.sendOutbox()
		if err != nil {
			c.cfg.Logger.Error("outbox", "err", err)
		}
		if pending == 0 {
			notify(c.outboxEmpty)
		}
		var retry <-chan time.Time
		switch {
		case progress:
			b.Reset()
			continue
		case pending > 0:
			retry = time.After(b.Next(nil))
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeOutbox:
			b.Reset()
		case <-retry:
		}
	}
}

// sendOutbox makes one pass over the outbox, for the contacts in scope
// (Config.Contacts). It reports whether any message was accepted and how
// many of theirs remain.
func (c *Client) sendOutbox() (progress bool, pending int, err error) {
	type item struct {
		key []byte
		e   outboxEntry
	}
	var items []item
	err = c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketOutbox, nil, func(k, v []byte) error {
			var e outboxEntry
			if err := unmarshal(v, &e); err != nil {
				return err
			}
			if c.inScope(e.Contact) {
				items = append(items, item{bytes.Clone(k), e})
			}
			return nil
		})
	})
	if err != nil {
		return false, 0, err
	}
	blocked := make(map[string]bool) // contacts with an earlier failure
	// down holds the relays that could not be reached in this pass: the
	// messages to them wait for the next, and cost no more time in this
	// one, so that one relay that is down holds up no other.
	down := make(map[string]bool)
	pending = len(items)
	for _, it := range items {
		if c.ctx.Err() != nil {
			return progress, pending, nil
		}
		if blocked[string(it.e.Contact)] || down[it.e.Relay] {
			blocked[string(it.e.Contact)] = true // keep its order
			continue
		}
		err := c.sendEntry(it.e)
		if errors.Is(err, errRelayDown) {
			c.cfg.Logger.Debug("send failed; will retry", "err", err)
			down[it.e.Relay] = true
			// The contact's later messages may be for another relay
			// (after a rotation, rotate.go): they wait too, in order.
			blocked[string(it.e.Contact)] = true
			continue
		}
		if errors.Is(err, queue.AUTH) || errors.Is(err, queue.LARGE) {
			// The relay will never take it: the queue is gone, suspended,
			// or not ours. Report it and drop it.
			c.dropEntry(it.key, it.e, err)
			pending--
			progress = true
			continue
		}
		if err != nil {
			c.cfg.Logger.Debug("send failed; will retry", "err", err)
			blocked[string(it.e.Contact)] = true
			continue
		}
		if err := c.sent(it.key, it.e); err != nil {
			return progress, pending, err
		}
		pending--
		progress = true
	}
	return progress, pending, nil
}

// errRelayDown is returned by sendEntry when the message's relay could not
// be reached within the relay budget.
var errRelayDown = errors.New("the relay could not be reached")

// sendEntry hands one message to its relay.
func (c *Client) sendEntry(e outboxEntry) error {
	addr, err := queue.ParseAddress(e.Relay)
	if err != nil {
		return err
	}
	auth, err := queue.ParsePrivateKey(e.AuthKey)
	if err != nil {
		return err
	}
	var sid queue.ID
	copy(sid[:], e.SenderID)
	switch priv, err := c.private(addr); {
	case err != nil:
		return err
	case priv:
		return c.sendForwarded(e, addr, sid, auth)
	}
	gctx, gcancel := context.WithTimeout(c.ctx, c.relayTimeout())
	conn, err := c.linkTo(addr, c.isolation(e.Contact)).try(gctx)
	gcancel()
	if err != nil {
		return fmt.Errorf("%w: %w", errRelayDown, err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, sendTimeout)
	defer cancel()
	if e.Secure {
		if err := conn.SecureSender(ctx, sid, auth); err != nil {
			return err
		}
	}
	err = conn.Send(ctx, sid, auth, e.Envelope)
	if errors.Is(err, queue.QUOTA) {
		return err // the recipient is behind: retry later
	}
	return err
}

// sent removes an accepted message from the outbox and records what it
// changes.
func (c *Client) sent(key []byte, e outboxEntry) error {
	err := c.store.Update(func(tx *vault.Tx) error {
		if err := tx.Delete(bucketOutbox, key); err != nil {
			return err
		}
		v, err := tx.Get(bucketContacts, e.Contact)
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var rec contactRecord
		if err := unmarshal(v, &rec); err != nil {
			return err
		}
		if rec.Send != nil {
			rec.Send.Secured = true
		}
		if e.Connects && rec.State != StateConnected {
			rec.State = StateConnected
			if err := c.pushEvent(tx, Event{Kind: EventConnected, Contact: rec.Name, Time: time.Now()}); err != nil {
				return err
			}
		}
		if e.Text {
			if err := c.pushEvent(tx, Event{Kind: EventSent, Contact: rec.Name, Seq: e.Seq, Time: time.Now()}); err != nil {
				return err
			}
		}
		return putContact(tx, &rec)
	})
	notify(c.wakeEvents)
	return err
}

func (c *Client) dropEntry(key []byte, e outboxEntry, cause error) {
	c.store.Update(func(tx *vault.Tx) error {
		if err := tx.Delete(bucketOutbox, key); err != nil {
			return err
		}
		if e.Receipt {
			c.cfg.Logger.Debug("a delivery receipt refused for good", "err", cause)
			return nil
		}
		name := ""
		if v, err := tx.Get(bucketContacts, e.Contact); err == nil {
			var rec contactRecord
			if unmarshal(v, &rec) == nil {
				name = rec.Name
			}
		}
		return c.pushEvent(tx, Event{Kind: EventProblem, Contact: name, Seq: e.Seq, Time: time.Now(),
			Problem: errors.Join(errors.New("the relay refused a message for good"), cause)})
	})
	notify(c.wakeEvents)
}

// Flush waits until the outbox is empty, that is until relays accepted
// every queued message (to the contacts in scope: Config.Contacts), or
// ctx ends. It needs an online client.
func (c *Client) Flush(ctx context.Context) error {
	if c.cfg.Offline {
		return errors.New("client: Flush on an offline client")
	}
	for {
		n := 0
		err := c.store.View(func(tx *vault.Tx) error {
			return tx.ForEach(bucketOutbox, nil, func(_, v []byte) error {
				var e outboxEntry
				if err := unmarshal(v, &e); err != nil {
					return err
				}
				if !c.inScope(e.Contact) {
					return nil
				}
				n++
				return errStop
			})
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if n == 0 {
			return nil
		}
		notify(c.wakeOutbox)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.outboxEmpty:
		case <-time.After(200 * time.Millisecond):
		}
	}
}
