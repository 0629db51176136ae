package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

// TestNoLifetimeCounter sends and acknowledges messages on a queue and
// checks that its record did not change (it counts nothing), and that the
// numbers of the messages held start again from 0 once the queue is
// empty, so that neither tells how many messages a queue ever received
// (PROTOCOL.md section 17, docs/store.md).
func TestNoLifetimeCounter(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"), storeOptions{})
	ctx := context.Background()
	acked := waiter[error](t)
	key := testKey(3)
	q := createTestQueue(t, s, 86400, &key)
	record := func() []byte {
		var v []byte
		if err := s.db.View(func(tx *bbolt.Tx) error {
			v = bytes.Clone(tx.Bucket(bucketQueues).Get(q.RecipientID[:]))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	seqs := func() []uint64 {
		var out []uint64
		for _, k := range bucketKeys(t, s, bucketMessages, q.RecipientID[:]) {
			out = append(out, binary.BigEndian.Uint64(k[len(q.RecipientID):]))
		}
		return out
	}
	before := record()
	for round := range 3 {
		for i := range 5 {
			if _, r := send(t, s, q.SenderID, "x", 3600, 10); r.Err != nil || r.First != (i == 0) {
				t.Fatalf("round %d, send %d: %+v", round, i, r)
			}
		}
		if got := seqs(); len(got) != 5 || got[0] != 0 || got[4] != 4 {
			t.Fatalf("round %d: messages numbered %v, want 0 to 4", round, got)
		}
		if got := record(); !bytes.Equal(got, before) {
			t.Fatalf("round %d: the queue record changed with its messages:\n%x\n%x", round, before, got)
		}
		// The quota counts the messages held.
		if _, r := send(t, s, q.SenderID, "x", 3600, 5); r.Err != errQuota {
			t.Fatalf("round %d: send beyond the quota: %v", round, r.Err)
		}
		for range 5 {
			m, ok, err := s.firstMessage(q.RecipientID)
			if err != nil || !ok {
				t.Fatalf("firstMessage: %v %v", ok, err)
			}
			if err := acked(s.ackMessage(ctx, q.RecipientID, m.ID)); err != nil {
				t.Fatal(err)
			}
		}
		if got := record(); !bytes.Equal(got, before) {
			t.Fatalf("round %d: the queue record changed after the ACKs", round)
		}
	}
	// Acknowledging from the head leaves the others numbered as they were:
	// a new message follows the last one held.
	send(t, s, q.SenderID, "a", 3600, 10)
	send(t, s, q.SenderID, "b", 3600, 10)
	m, _, _ := s.firstMessage(q.RecipientID)
	if err := acked(s.ackMessage(ctx, q.RecipientID, m.ID)); err != nil {
		t.Fatal(err)
	}
	send(t, s, q.SenderID, "c", 3600, 10)
	if got := seqs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("messages numbered %v, want 1 and 2", got)
	}
}
