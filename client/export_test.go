package client

import (
	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Exported for the tests of package client_test.

// EnvelopeClearSize is the size of an envelope's clear part before its
// random nonce: what a relay sees that is not random or encrypted.
const EnvelopeClearSize = envelopeClearSize

// OutboxEnvelopes returns the envelopes waiting in c's outbox, oldest
// first: exactly the SEND bodies c will give the relays.
func OutboxEnvelopes(c *Client) ([][]byte, error) {
	var envs [][]byte
	err := c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketOutbox, nil, func(_, v []byte) error {
			var e outboxEntry
			if err := unmarshal(v, &e); err != nil {
				return err
			}
			envs = append(envs, e.Envelope)
			return nil
		})
	})
	return envs, err
}

// ReceivedSeq returns the payload seq of the last message c received from
// the contact called name.
func ReceivedSeq(c *Client, name string) (uint64, error) {
	var seq uint64
	err := c.store.View(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		seq = rec.RecvSeq
		return nil
	})
	return seq, err
}

// ContactRelays returns the fingerprints of the relays of the contact
// called name: the one we receive on, and the one we send to (zero while
// the contact has not confirmed).
func ContactRelays(c *Client, name string) (recv, send queue.Fingerprint, err error) {
	err = c.store.View(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		a, err := queue.ParseAddress(rec.Recv.Relay)
		if err != nil {
			return err
		}
		recv = a.Fingerprint
		if rec.Send != nil {
			a, err := queue.ParseAddress(rec.Send.Relay)
			if err != nil {
				return err
			}
			send = a.Fingerprint
		}
		return nil
	})
	return recv, send, err
}

// QueueIDs returns the IDs a relay sees for the contact called name: the
// recipient ID of the queue we receive on, and the sender ID of the one
// we send to (zero while the contact has not confirmed).
func QueueIDs(c *Client, name string) (recv, send queue.ID, err error) {
	err = c.store.View(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		copy(recv[:], rec.Recv.RecipientID)
		if rec.Send != nil {
			copy(send[:], rec.Send.SenderID)
		}
		return nil
	})
	return recv, send, err
}

// RecvQueue returns the relay and keys of the queue c receives the
// contact called name's messages on.
func RecvQueue(c *Client, name string) (queue.Address, link.Queue, error) {
	var (
		addr queue.Address
		q    link.Queue
	)
	err := c.store.View(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		if addr, err = queue.ParseAddress(rec.Recv.Relay); err != nil {
			return err
		}
		q, err = rec.Recv.queue()
		return err
	})
	return addr, q, err
}
