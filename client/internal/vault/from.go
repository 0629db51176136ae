package vault

import "bytes"

// ForEachFrom is ForEach over the keys of bucket from start on (all keys
// if start is empty), in byte-wise key order: the keys before start are
// not read, so a reader that goes through a bucket in batches pays for
// each value once.
func (tx *Tx) ForEachFrom(bucket, start []byte, fn func(key, value []byte) error) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	b := tx.tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, box := c.Seek(start); k != nil; k, box = c.Next() {
		if box == nil { // a nested bucket; vault makes none
			continue
		}
		plain, err := tx.open(bucket, k, box)
		if err != nil {
			return err
		}
		if err := fn(bytes.Clone(k), plain); err != nil {
			return err
		}
	}
	return nil
}
