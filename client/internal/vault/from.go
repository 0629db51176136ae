package vault

// ForEachFrom is ForEach over the keys of bucket from start on (all keys
// if start is empty), in byte-wise key order: the keys before start are
// not read, so a reader that goes through a bucket in batches pays for
// each value once.
func (tx *Tx) ForEachFrom(bucket, start []byte, fn func(key, value []byte) error) error {
	return tx.forEach(bucket, start, nil, fn)
}
