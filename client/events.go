package client

import (
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
func (c *Client) TakeEvent(id uint64) (bool, error) {
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
		return tx.Delete(bucketEvents, k)
	})
	return taken, err
}

// EventsAdded returns a channel that receives a value after events are
// stored (at most one value waits: a receiver rereads StoredEvents). It
// is for the one reader of an EventsStored client.
func (c *Client) EventsAdded() <-chan struct{} { return c.wakeEvents }
