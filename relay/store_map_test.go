package relay

import (
	"context"
	"math"
	"os"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

// TestStoreNoRemap stores messages of the largest size until the store file has grown
// through several doublings, and counts the remaps of its memory mapping
// (a new start or end in /proc/self/maps) after every group commit: with
// the mapping sized by storeMapSize there are none, where bbolt would
// otherwise remap at each doubling of the file, with every read
// transaction waited for. It then checks that the messages read back.
func TestStoreNoRemap(t *testing.T) {
	if !canDropMapping {
		t.Skip("reads the mapping from /proc/self/maps: Linux only")
	}
	if math.MaxInt != math.MaxInt64 {
		t.Skip("the mapping is pre-sized on 64-bit systems only")
	}
	const (
		queues = 64
		rounds = 40 // of one message per queue, submitted at once
		size   = queue.MaxMessageSize
	)
	s := openTestStore(t, "", storeOptions{MappedLimit: -1})
	recs := make([]queueRecord, queues)
	var senderKey queue.Key
	for i := range recs {
		recs[i] = createTestQueue(t, s, 1_700_000_000, &senderKey)
	}
	mapping := func() (addr, end uintptr) {
		t.Helper()
		addr = s.db.Info().Data
		end, err := mappingEnd(addr)
		if err != nil {
			t.Fatal(err)
		}
		return addr, end
	}
	used := func() (n int64) {
		t.Helper()
		if err := s.db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	addr, end := mapping()
	startUsed := used()
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	startFile := fi.Size()
	sent := waiter[sendResult](t)
	ids := make([][]queue.ID, queues)
	remaps, commits := 0, 0
	for r := range rounds {
		chs := make([]<-chan sendResult, queues)
		for i, rec := range recs {
			body := make([]byte, size) // the store reads it until the commit
			body[0], body[1] = byte(r), byte(i)
			m := storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: body}
			ids[i] = append(ids[i], m.ID)
			ch, err := s.addMessage(context.Background(), rec.SenderID, m, rounds)
			if err != nil {
				t.Fatalf("addMessage: %v", err)
			}
			chs[i] = ch
		}
		for i, ch := range chs {
			if res := sent(ch, nil); res.Err != nil {
				t.Fatalf("round %d, queue %d: %v", r, i, res.Err)
			}
		}
		commits++
		if a, e := mapping(); a != addr || e != end {
			remaps++
			addr, end = a, e
		}
	}
	grown := used()
	if fi, err = os.Stat(s.db.Path()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds of %d messages of %d bytes: pages in use %.2f -> %.1f MiB, file %.1f -> %.1f MiB, mapping %.0f MiB, %d remaps",
		rounds, queues, size, float64(startUsed)/(1<<20), float64(grown)/(1<<20), float64(startFile)/(1<<20), float64(fi.Size())/(1<<20), float64(end-addr)/(1<<20), remaps)
	// bbolt's own mapping is the smallest power of two, at least 32 KiB,
	// that holds the file: growing it eight times over would have remapped
	// at least three times.
	if grown < 8*max(startUsed, 32<<10) {
		t.Fatalf("pages in use grew from %d to %d bytes: too little for a meaningful test", startUsed, grown)
	}
	if remaps != 0 {
		t.Errorf("the mapping moved or grew after %d of %d rounds", remaps, commits)
	}
	if int64(end-addr) < storeMapSize {
		t.Errorf("mapping of %d bytes, want at least storeMapSize (%d)", end-addr, storeMapSize)
	}
	// Every message is there once, in order: read each queue's first
	// and acknowledge it, a round of acknowledgements at a time.
	acked := waiter[error](t)
	for r := range rounds {
		chs := make([]<-chan error, queues)
		for i, rec := range recs {
			m, ok, err := s.firstMessage(rec.RecipientID)
			if err != nil || !ok {
				t.Fatalf("queue %d, message %d: ok %v, %v", i, r, ok, err)
			}
			if m.ID != ids[i][r] || len(m.Body) != size || m.Body[0] != byte(r) || m.Body[1] != byte(i) {
				t.Fatalf("queue %d: message %d differs", i, r)
			}
			ch, err := s.ackMessage(context.Background(), rec.RecipientID, m.ID)
			if err != nil {
				t.Fatalf("ackMessage: %v", err)
			}
			chs[i] = ch
		}
		for i, ch := range chs {
			if err := acked(ch, nil); err != nil {
				t.Fatalf("ACK of queue %d, message %d: %v", i, r, err)
			}
		}
	}
	for i, rec := range recs {
		if _, ok, err := s.firstMessage(rec.RecipientID); ok || err != nil {
			t.Errorf("queue %d: a message left after all were acknowledged (%v)", i, err)
		}
	}
	if a, e := mapping(); a != addr || e != end {
		t.Errorf("the mapping moved or grew during the acknowledgements")
	}
}
