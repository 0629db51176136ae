package client

import (
	"bytes"

	"github.com/hushrelay/hush/client/internal/vault"
)

// CorruptReceipts changes the hash kept for every message to the contact
// called name that awaits its receipt, as if we had sent other messages,
// and returns how many it changed.
func CorruptReceipts(c *Client, name string) (int, error) {
	n := 0
	err := c.store.Update(func(tx *vault.Tx) error {
		rec, err := contactByName(tx, name)
		if err != nil {
			return err
		}
		for s := rec.ReceiptFrom; s != 0 && s <= rec.SendSeq; s++ {
			k := receiptKey(tx, rec.ID, s)
			h, err := tx.Get(bucketReceipts, k)
			if err != nil {
				continue
			}
			h[0] ^= 1
			if err := tx.PutIndex(bucketReceipts, k, h); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// ChangeOutbox replaces the envelope of each message in c's outbox by what
// change returns for it and its seq, or deletes the entry, as if the
// message were lost, when change returns nil. It returns how many entries
// it changed or deleted.
func ChangeOutbox(c *Client, change func(seq uint64, env []byte) []byte) (int, error) {
	n := 0
	err := c.store.Update(func(tx *vault.Tx) error {
		type entry struct {
			k []byte
			e outboxEntry
		}
		var all []entry
		err := tx.ForEach(bucketOutbox, nil, func(k, v []byte) error {
			var e outboxEntry
			if err := unmarshal(v, &e); err != nil {
				return err
			}
			all = append(all, entry{k, e})
			return nil
		})
		if err != nil {
			return err
		}
		for _, x := range all {
			env := change(x.e.Seq, bytes.Clone(x.e.Envelope))
			switch {
			case env == nil:
				err = tx.Delete(bucketOutbox, x.k)
			case !bytes.Equal(env, x.e.Envelope):
				x.e.Envelope = env
				err = tx.Put(bucketOutbox, x.k, marshal(x.e))
			default:
				continue
			}
			if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
