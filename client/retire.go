package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// ErrNoOtherRelay is returned by RetireRelay when contacts have queues on
// the relay and no other relay is configured to move them to.
var ErrNoOtherRelay = errors.New("no other relay is configured to move the contacts to (add one first)")

// retireWidth is how many rotations RetireRelay starts at once.
const retireWidth = 4

// RetireReport says what RetireRelay did, by contact name, oldest first.
type RetireReport struct {
	// Moving are the contacts whose receiving queue was on the relay:
	// their rotation (Rotate) started, or was under way.
	Moving []string
	// Pending are those of Moving that still had a queue on the relay when
	// RetireRelay returned: their clients have not answered yet.
	Pending []string
	// Asked are the contacts whose queue that we send to is on the relay:
	// the queue is theirs, and they were asked to rotate it (QASK).
	Asked []string
	// Failed says why the rotation of some of Moving could not start (for
	// example a contact whose handshake is not complete): their queues
	// stay on the relay, and RetireRelay does not wait for them.
	Failed map[string]error
	// Removed says the relay was removed from the configuration.
	Removed bool
}

// RetireRelay moves every contact off the configured relay with
// fingerprint fp, then removes it from the configuration
// (queue/PROTOCOL.md section 19.11, "Removing a relay"): it starts the
// rotation of every receiving queue of ours on the relay onto another
// relay, asks (QASK) every contact whose queue we send to is on it to
// rotate that queue, and, when wait is set, waits within ctx until none
// of our receiving queues is left on the relay (each rotation needs its
// contact's client to answer), and removes the relay. If ctx ends first,
// the relay stays configured (new queues avoid it only while rotations
// are under way: call RetireRelay again) and the error wraps ctx's, with
// the report. Without wait, it removes the relay at once and the
// rotations go on in the background. The contacts' messages use the
// relay until their queues have moved. It returns ErrNoSuchRelay for a
// relay not configured, and ErrNoOtherRelay when queues of ours are on
// it and it is the only relay.
func (c *Client) RetireRelay(ctx context.Context, fp queue.Fingerprint, wait bool) (RetireReport, error) {
	rep := RetireReport{Failed: make(map[string]error)}
	relays, err := c.Relays()
	if err != nil {
		return rep, err
	}
	found, others := false, 0
	for _, a := range relays {
		if a.Fingerprint == fp {
			found = true
		} else {
			others++
		}
	}
	if !found {
		return rep, ErrNoSuchRelay
	}
	recs, err := c.loadContacts()
	if err != nil {
		return rep, err
	}
	var ours []*contactRecord
	for _, r := range recs {
		if r.State == StateGone {
			continue
		}
		if onRelay(r.Recv.Relay, fp) {
			ours = append(ours, r)
			rep.Moving = append(rep.Moving, r.Name)
		}
		if r.Send != nil && r.Ratchet != nil && onRelay(r.Send.Relay, fp) {
			if err := c.askRotation(r.ID); err != nil {
				return rep, err
			}
			rep.Asked = append(rep.Asked, r.Name)
		}
	}
	if len(rep.Asked) > 0 {
		notify(c.wakeOutbox)
	}
	if len(ours) > 0 && others == 0 {
		return rep, ErrNoOtherRelay
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, retireWidth)
	)
	for _, r := range ours {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := c.rotate(ctx, r, &fp)
			if err != nil && !errors.Is(err, ErrRotating) {
				mu.Lock()
				rep.Failed[r.Name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Wait for the rotations that started: a contact whose rotation could
	// not start (a handshake not complete) keeps its queue on the relay.
	var started []string
	for _, name := range rep.Moving {
		if rep.Failed[name] == nil {
			started = append(started, name)
		}
	}
	if wait {
		for {
			rep.Pending, err = c.onRelayStill(started, fp)
			if err != nil {
				return rep, err
			}
			if len(rep.Pending) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return rep, fmt.Errorf("%w: %d contacts not moved yet", ctx.Err(), len(rep.Pending))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if err := c.RemoveRelay(fp); err != nil {
		return rep, err
	}
	rep.Removed = true
	if !wait {
		rep.Pending, err = c.onRelayStill(started, fp)
	}
	return rep, err
}

// onRelay reports whether the canonical address s is the relay fp's.
func onRelay(s string, fp queue.Fingerprint) bool {
	a, err := queue.ParseAddress(s)
	return err == nil && a.Fingerprint == fp
}

// onRelayStill returns those of the contacts called names that have a
// receiving queue (of any rotation state) on the relay fp.
func (c *Client) onRelayStill(names []string, fp queue.Fingerprint) ([]string, error) {
	recs, err := c.loadContacts()
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var out []string
	for _, r := range recs {
		if !want[r.Name] || r.State == StateGone {
			continue
		}
		for _, q := range r.recvQueues() {
			if onRelay(q.Relay, fp) {
				out = append(out, r.Name)
				break
			}
		}
	}
	return out, nil
}

// askRotation queues QASK to the contact with id: a request to rotate
// the queue we send to.
func (c *Client) askRotation(id []byte) error {
	return c.updateContact(id, func(tx *vault.Tx, rec *contactRecord) error {
		if rec.Send == nil || rec.Ratchet == nil || rec.State == StateGone {
			return errStop
		}
		r, err := ratchet.UnmarshalRatchet(rec.Ratchet)
		if err != nil {
			return err
		}
		env, err := c.seal(rec, r, envelopeMessage, nil, payloadQAsk, nil)
		if err != nil {
			return err
		}
		return c.queueSend(tx, rec, env, false, false)
	})
}
