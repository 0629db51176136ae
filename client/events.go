package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hushrelay/hush/client/internal/vault"
)

// EventMode says how a Client hands its events to the application.
type EventMode int

// Event modes.
const (
	// EventsChannel: through Events, each event removed from the store
	// once the application has received it. The default.
	EventsChannel EventMode = iota
	// EventsStored: events stay in the store, each with an ID, until the
	// application removes it with TakeEvent; StoredEvents reads them and
	// EventsAdded signals new ones. Events is not fed. For a program that
	// hands events on to others and must not lose one when it dies (the
	// agent, package client/agent).
	EventsStored
)

// StoredEvent is an event kept in the store, with its ID. IDs increase
// in the order events happen and are never reused in a store.
type StoredEvent struct {
	ID uint64
	Event
}

// StoredEvents returns at most max of the stored events whose IDs are
// above after, oldest first. It is meant for EventsStored; in
// EventsChannel mode it races with Events.
func (c *Client) StoredEvents(after uint64, max int) ([]StoredEvent, error) {
	var out []StoredEvent
	err := c.store.View(func(tx *vault.Tx) error {
		return tx.ForEachFrom(bucketEvents, seqKey(after+1), func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: event key of %d bytes", vault.ErrCorrupt, len(k))
			}
			id := binary.BigEndian.Uint64(k)
			var rec eventRecord
			if err := unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, StoredEvent{ID: id, Event: Event{Kind: rec.Kind, Contact: rec.Contact, Relay: rec.Relay, Text: rec.Text,
				Seq: rec.Seq, Time: rec.Time, Problem: problemFrom(rec.Problem)}})
			if len(out) >= max {
				return errStop
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return out, nil
}

// TakeEvent removes the stored event id and reports whether it was
// there: of several callers taking one event, exactly one gets true. The
// removal is durable when TakeEvent returns.
func (c *Client) TakeEvent(id uint64) (bool, error) { return c.TakeEventAs(id, nil) }

// TakenKept is how many takes with a token the store remembers, for
// TookEvent: the most recent ones.
const TakenKept = 1024

// MaxTakeToken is the longest token TakeEventAs takes, in bytes.
const MaxTakeToken = 64

// ErrBadToken is returned by TakeEventAs and TookEvent when the token is
// longer than MaxTakeToken, and by TookEvent when it is empty.
var ErrBadToken = errors.New("the take token is empty or too long")

// TakeEventAs is TakeEvent for a taker that names itself with token (a
// random value of its own, at most MaxTakeToken bytes; nil for none): if
// it takes the event, the same transaction records (id, token), so that a
// taker who never got the answer (the process serving it died) can ask
// TookEvent, after, whether the take was its own.
func (c *Client) TakeEventAs(id uint64, token []byte) (bool, error) {
	if len(token) > MaxTakeToken {
		return false, ErrBadToken
	}
	taken := false
	err := c.store.Update(func(tx *vault.Tx) error {
		k := seqKey(id)
		switch _, err := tx.Get(bucketEvents, k); {
		case errors.Is(err, vault.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		taken = true
		if err := tx.Delete(bucketEvents, k); err != nil {
			return err
		}
		if len(token) == 0 {
			return nil
		}
		n, err := tx.Seq(bucketTaken)
		if err != nil {
			return err
		}
		if err := tx.Put(bucketTaken, seqKey(n), append(seqKey(id), token...)); err != nil {
			return err
		}
		if n > TakenKept {
			return tx.Delete(bucketTaken, seqKey(n-TakenKept))
		}
		return nil
	})
	return taken, err
}

// TookEvent reports whether event id was taken by TakeEventAs with token,
// as far as the store remembers (the last TakenKept takes with a token).
// A false answer with the event still stored means that nobody took it.
func (c *Client) TookEvent(id uint64, token []byte) (bool, error) {
	if len(token) == 0 || len(token) > MaxTakeToken {
		return false, ErrBadToken
	}
	want := append(seqKey(id), token...)
	took := false
	err := c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketTaken, nil, func(k, v []byte) error {
			if bytes.Equal(v, want) {
				took = true
				return errStop
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return took, nil
}

// EventsAdded returns a channel that receives a value after events are
// stored (at most one value waits: a receiver rereads StoredEvents). It
// is for the one reader of an EventsStored client.
func (c *Client) EventsAdded() <-chan struct{} { return c.wakeEvents }
