package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hushrelay/hush/client"
)

// defaultRotateWait is how long "hush rotate" waits, by default, for the
// rotation to complete: a few seconds when the contact's hush is online.
const defaultRotateWait = 30 * time.Second

// defaultRetireWait is how long "hush relays remove" waits, by default,
// for the contacts to move off the relay.
const defaultRetireWait = 2 * time.Minute

// rotate is "hush rotate": it starts the rotation of our queue for the
// contact's messages, and waits up to wait for it to complete.
func (c *cmd) rotate(ctx context.Context, name string, timeout, wait time.Duration) error {
	s, err := c.openFor(ctx, need{contacts: []string{name}})
	if err != nil {
		return err
	}
	defer s.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	err = s.Rotate(rctx, name, timeout)
	cancel()
	if err != nil {
		return c.relayError(timeout, c.contactError(err, name))
	}
	ct, done := c.awaitRotation(ctx, s, name, wait)
	if !done {
		c.flush(ctx, s, defaultFlushTimeout) // QADD, at least, goes now
	}
	if c.json {
		return c.emit(map[string]any{"rotating": name, "rotation": string(ct.Rotation), "complete": done, "receive_relay": ct.ReceiveRelay.String()})
	}
	if done {
		fmt.Fprintf(c.env.stdout, "rotated: %s's messages now come on a new queue, on %s; the old queue is deleted\n", clean(name), ct.ReceiveRelay.HostPort())
		return nil
	}
	fmt.Fprintf(c.env.stdout, "rotating our queue for %s (now %s): it completes when their hush answers,\n"+
		"while hush receive, chat or the agent runs here (see hush contacts)\n", clean(name), ct.Rotation)
	return nil
}

// awaitRotation waits up to wait for the rotation of name's queue to
// complete, and returns the contact and whether it did.
func (c *cmd) awaitRotation(ctx context.Context, s *session, name string, wait time.Duration) (client.Contact, bool) {
	deadline := time.Now().Add(wait)
	for {
		var ct client.Contact
		list, err := s.Contacts(ctx)
		if err != nil {
			return ct, false
		}
		for _, x := range list {
			if x.Name == name {
				ct = x
			}
		}
		if ct.Rotation == client.RotationNone || ct.Rotation == client.RotationDeleting {
			return ct, true
		}
		if !time.Now().Before(deadline) {
			return ct, false
		}
		select {
		case <-ctx.Done():
			return ct, false
		case <-time.After(200 * time.Millisecond):
		}
	}
}
