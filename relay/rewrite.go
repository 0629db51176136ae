package relay

// Rewriting a store into a new file: backups (copyLive) and the
// conversion of older formats (migrateStore). A file written key by key
// from one read transaction holds the live data of that transaction and
// nothing else, unlike a copy of the pages (Tx.WriteTo), which keeps
// free pages with acknowledged, expired or deleted data in them.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

// fileWriter fills a new bbolt file, in transactions of at most
// compactTxSize bytes. Values and keys given to put must stay valid until
// finish or abort (bbolt keeps them until the commit).
type fileWriter struct {
	db   *bbolt.DB
	tx   *bbolt.Tx
	size int
}

// newFileWriter opens the bbolt file at path, which must be new or empty.
func newFileWriter(path string) (*fileWriter, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(true)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &fileWriter{db: db, tx: tx}, nil
}

// bucket returns the bucket name of the current transaction, created if
// needed. inOrder says that its keys are put in ascending order (so that
// its pages are filled).
func (w *fileWriter) bucket(name []byte, inOrder bool) (*bbolt.Bucket, error) {
	b, err := w.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	if inOrder {
		b.FillPercent = 1
	}
	return b, nil
}

// put stores k and v in bucket name, committing first if the transaction
// holds compactTxSize bytes.
func (w *fileWriter) put(name, k, v []byte, inOrder bool) error {
	if w.size += len(k) + len(v); w.size > compactTxSize {
		if err := w.tx.Commit(); err != nil {
			return err
		}
		tx, err := w.db.Begin(true)
		if err != nil {
			return err
		}
		w.tx, w.size = tx, len(k)+len(v)
	}
	b, err := w.bucket(name, inOrder)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// finish commits, syncs and closes the file.
func (w *fileWriter) finish() error {
	err := w.tx.Commit()
	if err == nil {
		err = w.db.Sync()
	}
	if cerr := w.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// abort discards the last transaction and closes the file.
func (w *fileWriter) abort() {
	w.tx.Rollback()
	w.db.Close()
}

// copyLive writes every bucket of tx, key by key in key order, into the
// bbolt file at path (new or empty), and syncs it. The file holds the
// live data of tx and nothing else: the pages of the new file that a
// later transaction of the copy frees held only copies of the same live
// data. The message keys are wrapped again under a new ring key of the
// copy's own, which it holds in its "keys" bucket (unwrapped with ring):
// so the copy holds the one key that opens its messages, which opens no
// message that was not live in tx. A nested bucket is not in the relay's
// layout: errCorrupt. It stops, returning ctx.Err(), once ctx is done.
func copyLive(ctx context.Context, tx *bbolt.Tx, path string, ring *keyRing) error {
	w, err := newFileWriter(path)
	if err != nil {
		return fmt.Errorf("backup spool: %w", err)
	}
	bk := ring.detachedKey()
	// A file of an older format (an offline backup before the relay
	// converted it) is copied as it is: restore converts it.
	sealed := true
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(metaVersionKey); len(v) == 1 && v[0] < storeVersion3 {
			sealed = false
		}
	}
	err = tx.ForEach(func(name []byte, src *bbolt.Bucket) error {
		if bytes.Equal(name, bucketRingKeys) || bytes.Equal(name, bucketScrub) {
			return nil // a copy of a copy: its keys are replaced; scrub's filler
		}
		b, err := w.bucket(name, true) // also when empty
		if err != nil {
			return err
		}
		if err := b.SetSequence(src.Sequence()); err != nil {
			return err
		}
		expiry := sealed && bytes.Equal(name, bucketExpiry)
		c := src.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				return fmt.Errorf("%w: nested bucket in %q", errCorrupt, name)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if expiry {
				mk, err := unwrapKey(ring, v, k)
				if err != nil {
					return err
				}
				v = wrapKey(bk, &mk, k)
			}
			if err := w.put(name, k, v, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && sealed {
		err = w.put(bucketRingKeys, binary.BigEndian.AppendUint64(nil, bk.id), encodeKeyEntry(bk), true)
	}
	if err != nil {
		w.abort()
		return err
	}
	return w.finish()
}

// encodeKeyEntry returns the value of key in a "keys" bucket:
// epoch(8)|key(32).
func encodeKeyEntry(key *ringKey) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 40), uint64(key.epoch))
	return append(v, key.raw[:]...)
}

// keysOf returns the ring keys of tx's "keys" bucket, if it has one.
func keysOf(tx *bbolt.Tx) (keys []ringKey, ok bool, err error) {
	b := tx.Bucket(bucketRingKeys)
	if b == nil {
		return nil, false, nil
	}
	err = b.ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) != 40 || binary.BigEndian.Uint64(k) == 0 {
			return fmt.Errorf("%w: keys entry", errCorrupt)
		}
		key := ringKey{id: binary.BigEndian.Uint64(k), epoch: int64(binary.BigEndian.Uint64(v))}
		copy(key.raw[:], v[8:])
		keys = append(keys, key)
		return nil
	})
	return keys, true, err
}

// Default storeOptions.MessageUnit and QueueUnit.
const (
	defaultMessageUnit = time.Hour
	defaultQueueUnit   = 24 * time.Hour
)

// floorTime rounds unix time t (not before 1970) down to a multiple of
// unit, taken as 1 s if it is shorter. Multiples of 24 hours are UTC days.
func floorTime(t int64, unit time.Duration) int64 {
	u := max(int64(unit/time.Second), 1)
	return t - t%u
}

// storeFileVersion returns the format version of the store file at path,
// and 0 for a file without buckets, and whether it has a "keys" bucket
// (a backup). db must be open.
func storeFileVersion(db *bbolt.DB) (v byte, backup bool, err error) {
	err = db.View(func(tx *bbolt.Tx) error {
		backup = tx.Bucket(bucketRingKeys) != nil
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if b := meta.Get(metaVersionKey); len(b) == 1 {
			v = b[0]
		}
		return nil
	})
	return v, backup, err
}

// migrateStore converts the store file at path, if it has the format of
// version 1, 2 or 3, to the current one; moves the keys of a backup (a
// file with a "keys" bucket) to the key file of ring; and does nothing to
// another file.
//
// A file of version 3 that is not a backup is converted in place, in one
// transaction: it deletes the "unsecured" bucket (whose freed pages hold
// only what the queue records hold, the IDs and days of creation of the
// live queues never secured; the transaction marks the file for the
// scrub, which overwrites them), and writes the version. Otherwise the
// new file is written beside it, key by key (so it holds none of the old
// file's free pages, with their acknowledged messages and precise times),
// synced and renamed over it, so that a crash leaves the old file or the
// new one; keys that the new file needs are written to the key file,
// synced, before the rename. Converting version 1 rounds the times down
// to opts' units, drops the lifetime message counters and numbers each
// queue's messages from 0; converting versions 1 and 2 seals every
// message under a key of its own, wrapped under ring's current key. db
// must be the open file at path, for writing; migrateStore closes it when
// it replaced the file, and reports that (the caller opens the file
// again).
func migrateStore(db *bbolt.DB, path string, opts storeOptions, ring *keyRing) (replaced bool, err error) {
	v, backup, err := storeFileVersion(db)
	if err != nil {
		return false, err
	}
	var what string
	switch {
	case v == storeVersion1:
		what = "convert version 1"
	case v == storeVersion2:
		what = "convert version 2"
	case (v == storeVersion || v == storeVersion3) && backup:
		what = "take the keys of a backup"
	case v == storeVersion3:
		if err := db.Update(convertVersion3); err != nil {
			return false, fmt.Errorf("convert version 3: %w", err)
		}
		return false, nil
	default:
		return false, nil
	}
	tmp := path + ".migrate"
	os.Remove(tmp) // left by an interrupted run
	w, err := newFileWriter(tmp)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	var keys []ringKey
	err = db.View(func(tx *bbolt.Tx) error {
		if v == storeVersion || v == storeVersion3 {
			var err error
			if keys, _, err = keysOf(tx); err != nil {
				return err
			}
			if err := copyBuckets(tx, w, bucketRingKeys, bucketUnsecured); err != nil {
				return err
			}
			return w.put(bucketMeta, metaVersionKey, []byte{storeVersion}, false)
		}
		key, err := ring.currentKey(time.Now())
		if err != nil {
			return err
		}
		return convertOld(tx, w, opts, v, key)
	})
	if err == nil {
		err = w.finish()
	} else {
		w.abort()
	}
	if err == nil {
		err = ring.adopt(keys)
	}
	if err == nil {
		err = replaceFile(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return true, db.Close()
}

// convertVersion3 converts tx, of a file of version 3, to the current
// version in place (migrateStore).
func convertVersion3(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if tx.Bucket(bucketUnsecured) != nil {
		if err := tx.DeleteBucket(bucketUnsecured); err != nil {
			return err
		}
		if err := meta.Put(metaScrubKey, []byte{1}); err != nil {
			return err
		}
	}
	return meta.Put(metaVersionKey, []byte{storeVersion})
}

// copyBuckets copies every bucket of tx but skip (and scrub's filler) to
// w, key by key.
func copyBuckets(tx *bbolt.Tx, w *fileWriter, skip ...[]byte) error {
	skip = append(skip, bucketScrub)
	return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		for _, s := range skip {
			if bytes.Equal(name, s) {
				return nil
			}
		}
		if _, err := w.bucket(name, true); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("%w: nested bucket in %q", errCorrupt, name)
			}
			return w.put(name, k, v, true)
		})
	})
}

// Version 1 queue records: version(1) flags(1) sid(24) rkey(32) skey(32)
// msgkey(32) created(8) nextSeq(8) count(4).
const queueRecordSizeV1 = 1 + 1 + queue.IDSize + 3*queue.KeySize + 8 + 8 + 4

// Message values of versions 1 and 2: msgID(24)|ts(8)|body.
const oldMessageHeaderSize = queue.IDSize + 8

// convertOld writes the live data of tx, a file of version 1 or 2, to w
// in the current format, with every message sealed under a key of its
// own wrapped under key, and without the index of queues never secured.
func convertOld(tx *bbolt.Tx, w *fileWriter, opts storeOptions, version byte, key *ringKey) error {
	if opts.MessageUnit <= 0 {
		opts.MessageUnit = defaultMessageUnit
	}
	if opts.QueueUnit <= 0 {
		opts.QueueUnit = defaultQueueUnit
	}
	src := bucketsOf(tx)
	for _, name := range [][]byte{bucketQueues, bucketSenders, bucketMessages, bucketExpiry, bucketUnsecured} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q missing", errCorrupt, name)
		}
		if bytes.Equal(name, bucketUnsecured) {
			continue
		}
		if _, err := w.bucket(name, false); err != nil {
			return err
		}
	}
	var total countDelta
	err := src.queues.ForEach(func(k, v []byte) error {
		var rid queue.ID
		copy(rid[:], k)
		var q queueState
		if version == storeVersion1 {
			if len(k) != queue.IDSize || len(v) != queueRecordSizeV1 || v[0] != 1 {
				return fmt.Errorf("%w: version 1 queue record", errCorrupt)
			}
			// The version 2 record is the version 1 record without its
			// last 12 bytes, with the version and the creation time
			// changed.
			var err error
			if q, err = decodeQueue(rid, append([]byte{queueRecordVersion}, v[1:queueRecordSize]...)); err != nil {
				return err
			}
			q.Created = floorTime(q.Created, opts.QueueUnit)
		} else {
			var err error
			if len(k) != queue.IDSize {
				return fmt.Errorf("%w: queue key", errCorrupt)
			}
			if q, err = decodeQueue(rid, v); err != nil {
				return err
			}
		}
		if err := w.put(bucketQueues, k, q.encode(), true); err != nil {
			return err
		}
		total.queues++
		var seq uint64
		c := src.messages.Cursor()
		for mk, mv := c.Seek(rid[:]); mk != nil && bytes.HasPrefix(mk, rid[:]); mk, mv = c.Next() {
			if len(mk) != messageKeySize || len(mv) < oldMessageHeaderSize || len(mv)-oldMessageHeaderSize > queue.MaxMessageSize {
				return fmt.Errorf("%w: message entry", errCorrupt)
			}
			var m storedMessage
			copy(m.ID[:], mv)
			m.Timestamp = int64(binary.BigEndian.Uint64(mv[queue.IDSize:]))
			m.Body = mv[oldMessageHeaderSize:]
			if version == storeVersion1 {
				m.Timestamp = floorTime(m.Timestamp, opts.MessageUnit)
			} else {
				seq = binary.BigEndian.Uint64(mk[queue.IDSize:])
			}
			msgKey := newMessageKey()
			val := sealMessage(make([]byte, 0, messageOverhead+len(m.Body)), &msgKey, m)
			if err := w.put(bucketMessages, messageKey(rid, seq), val, true); err != nil {
				return err
			}
			ek := expiryKey(m.Timestamp, rid, seq)
			if err := w.put(bucketExpiry, ek, wrapKey(key, &msgKey, ek), false); err != nil {
				return err
			}
			total.messages++
			total.bytes += int64(len(val))
			seq++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := src.senders.ForEach(func(k, v []byte) error { return w.put(bucketSenders, k, v, true) }); err != nil {
		return err
	}
	// Other buckets (link data) are copied as they are.
	if err := copyBuckets(tx, w, bucketMeta, bucketQueues, bucketSenders, bucketMessages, bucketExpiry, bucketUnsecured); err != nil {
		return err
	}
	if err := w.put(bucketMeta, metaVersionKey, []byte{storeVersion}, false); err != nil {
		return err
	}
	return w.put(bucketMeta, metaCountsKey, total.encode(), false)
}
