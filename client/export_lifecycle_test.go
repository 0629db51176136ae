package client

import "github.com/hushrelay/hush/client/internal/vault"

// StoredContactEntries counts the entries of c's store that belong to
// contacts: records and index entries.
func StoredContactEntries(c *Client) (int, error) {
	n := 0
	err := c.store.View(func(tx *vault.Tx) error {
		for _, b := range [][]byte{bucketContacts, bucketByName, bucketByRecipient} {
			if err := tx.ForEach(b, nil, func(_, _ []byte) error { n++; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
