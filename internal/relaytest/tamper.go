package relaytest

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TamperLinks flips one bit in the sealed part of every link data (PROTOCOL.md
// section 21.2) held in the relay store file at path, whose relay must be
// stopped, and returns how many it changed.
func TamperLinks(t testing.TB, path string) int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("links"))
		if b == nil {
			return errors.New("no links bucket")
		}
		var keys, vals [][]byte
		b.ForEach(func(k, v []byte) error {
			keys, vals = append(keys, append([]byte(nil), k...)), append(vals, append([]byte(nil), v...))
			return nil
		})
		for i, k := range keys {
			v := vals[i]
			v[len(v)-100] ^= 0x01 // in the ciphertext, after the queue ID and mode
			if err := b.Put(k, v); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("tampering with the links of %s: %v", path, err)
	}
	return n
}
