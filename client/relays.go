package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Errors of relay management.
var (
	// ErrRelayConflict is returned by AddRelay when another relay, with
	// another fingerprint, is configured with the same host (or onion
	// host) and port.
	ErrRelayConflict = errors.New("another relay is configured with this host and port")
	// ErrNoSuchRelay is returned by RemoveRelay when no configured relay
	// has the fingerprint.
	ErrNoSuchRelay = errors.New("no such relay configured")
)

// sameEndpoint reports whether a and b name the same host (or the same
// onion host) and port.
func sameEndpoint(a, b queue.Address) bool {
	return a.Port == b.Port && (a.Host == b.Host || a.Onion != "" && a.Onion == b.Onion)
}

// CheckRelay connects to the relay at addr as the client's Config.Dial
// says, and checks that it is the relay the address pins and that it
// takes the address's password, by creating a queue and deleting it at
// once. The error wraps link.ErrUnreachable, link.ErrWrongFingerprint,
// link.ErrTLS, link.ErrProtocol or link.ErrWrongPassword, or ctx's error.
// It uses a connection of its own, closed before it returns.
func (c *Client) CheckRelay(ctx context.Context, addr queue.Address) error {
	dc := c.cfg.Dial
	dc.Isolation = c.isolation(randomID(16))
	conn, err := link.Dial(ctx, addr, dc)
	if err != nil {
		return err
	}
	defer conn.Close()
	q, err := conn.Create(ctx)
	if err != nil {
		return err
	}
	return conn.Delete(ctx, q)
}

// RemoveRelay removes the configured relay with the fingerprint fp, so
// that new contacts do not use it. The queues that contacts already have
// on it stay, and are still used: RelayContacts lists those contacts. It
// returns ErrNoSuchRelay when no configured relay has fp.
func (c *Client) RemoveRelay(fp queue.Fingerprint) error {
	return c.store.Update(func(tx *vault.Tx) error {
		var key []byte
		err := tx.ForEach(bucketRelays, nil, func(k, v []byte) error {
			if a, err := queue.ParseAddress(string(v)); err == nil && a.Fingerprint == fp {
				key = slices.Clone(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if key == nil {
			return ErrNoSuchRelay
		}
		return tx.Delete(bucketRelays, key)
	})
}

// RelayContacts returns the names of the contacts that have a queue, in
// either direction, on the relay with the fingerprint fp, oldest first.
func (c *Client) RelayContacts(fp queue.Fingerprint) ([]string, error) {
	recs, err := c.loadContacts()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range recs {
		relays := []string{r.Recv.Relay}
		if r.Send != nil {
			relays = append(relays, r.Send.Relay)
		}
		for _, s := range relays {
			a, err := queue.ParseAddress(s)
			if err != nil {
				return nil, fmt.Errorf("contact %q: %w", r.Name, err)
			}
			if a.Fingerprint == fp {
				names = append(names, r.Name)
				break
			}
		}
	}
	return names, nil
}
