package relay

// Link data (PROTOCOL.md section 21): at most one per queue, stored by
// LSET and read by LGET.
//
// # Layout (in the same file and format version as the queues)
//
//	bucket "links"
//	  linkID(24)                -> link record, 2073 bytes:
//	                                 rid   24 bytes, the queue's recipient ID
//	                                 mode  1 byte, queue.LinkOnce or queue.LinkReusable
//	                                 data  queue.LinkDataSize bytes, as the client sealed it
//	bucket "queue-links"
//	  rid(24)                   -> linkID(24), for the queues that have link data
//
// Both buckets are created when a file that has none is opened (files
// written before link data existed). A queue's link data is deleted with
// the queue (storeTx.deleteQueue), so it never outlives it.

import (
	"bytes"
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

var (
	bucketLinks      = []byte("links")
	bucketQueueLinks = []byte("queue-links")
)

const (
	linkRecordSize = queue.IDSize + 1 + queue.LinkDataSize
	// linkCost is what one link counts in storedBytes: its record, its
	// index entry and B-tree overhead.
	linkCost = linkRecordSize + 64
)

// initLinks creates the link buckets of a file that has none.
func initLinks(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketLinks, bucketQueueLinks} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// linkRecord is one queue's link data as stored.
type linkRecord struct {
	RecipientID queue.ID
	Mode        queue.LinkMode
	Data        []byte
}

func decodeLink(v []byte) (linkRecord, error) {
	var l linkRecord
	if len(v) != linkRecordSize {
		return l, fmt.Errorf("%w: link record", errCorrupt)
	}
	copy(l.RecipientID[:], v)
	l.Mode = queue.LinkMode(v[queue.IDSize])
	l.Data = v[queue.IDSize+1:]
	return l, nil
}

// getLink returns the link data with ID id; ok is false when there is
// none. Data aliases the transaction's pages.
func (b storeTx) getLink(id queue.ID) (l linkRecord, ok bool, err error) {
	if b.links == nil { // a read transaction on a file without links
		return l, false, nil
	}
	v := b.links.Get(id[:])
	if v == nil {
		return l, false, nil
	}
	l, err = decodeLink(v)
	return l, err == nil, err
}

// deleteLinkOf deletes the link data of queue rid, if it has any.
func (b storeTx) deleteLinkOf(rid queue.ID) error {
	id := b.queueLinks.Get(rid[:])
	if id == nil {
		return nil
	}
	if err := b.noteFreed(); err != nil {
		return err
	}
	if err := b.links.Delete(bytes.Clone(id)); err != nil {
		return err
	}
	b.countLinks(-1)
	return b.queueLinks.Delete(rid[:])
}

// setLink stores the link data of queue rid under id (LSET), replacing
// the queue's earlier link data. errNotFound if there is no such queue,
// errSuspended if it is suspended, errKeyMismatch if id names another
// queue's link data.
func (s *store) setLink(ctx context.Context, rid, id queue.ID, mode queue.LinkMode, data []byte) (<-chan error, error) {
	v := make([]byte, 0, linkRecordSize)
	v = append(v, rid[:]...)
	v = append(v, byte(mode))
	v = append(v, data...)
	if len(v) != linkRecordSize {
		return nil, fmt.Errorf("relay store: link data of %d bytes", len(data))
	}
	return s.submitErr(ctx, func(b storeTx) error {
		q, ok, err := b.getQueue(rid)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		if q.Suspended {
			return errSuspended
		}
		old, found, err := b.getLink(id)
		if err != nil {
			return err
		}
		if found && old.RecipientID != rid {
			return errKeyMismatch
		}
		if err := b.deleteLinkOf(rid); err != nil {
			return err
		}
		if err := b.links.Put(id[:], v); err != nil {
			return err
		}
		b.countLinks(1)
		return b.queueLinks.Put(rid[:], bytes.Clone(id[:]))
	})
}

// readLink returns the link data with ID id for LGET: that of a reusable
// link from a read transaction, that of a one-time link from the commit
// loop, which deletes it in the same transaction, so that it is returned
// once. errNotFound when there is none.
func (s *store) readLink(ctx context.Context, id queue.ID) ([]byte, error) {
	var (
		data  []byte
		found bool
		once  bool
	)
	err := s.view(readLinks, func(b storeTx) error {
		l, ok, err := b.getLink(id)
		if ok && l.Mode == queue.LinkReusable {
			data = bytes.Clone(l.Data)
		}
		found, once = ok, ok && l.Mode != queue.LinkReusable
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, errNotFound
	case !once:
		return data, nil
	}
	ch, err := s.submitErr(ctx, func(b storeTx) error {
		l, ok, err := b.getLink(id)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		data = bytes.Clone(l.Data)
		if l.Mode == queue.LinkReusable { // replaced meanwhile
			return nil
		}
		return b.deleteLinkOf(l.RecipientID)
	})
	if err != nil {
		return nil, err
	}
	select {
	case err = <-ch:
	case <-ctx.Done():
		// The operation may still run: if it does, the data is gone
		// unread, as if the session had ended before the answer.
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}
