package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// The store's decoders read values from a file that may be damaged. The fuzz
// targets check that they never panic, that a rejected value is errCorrupt,
// and that an accepted one re-encodes to the same bytes (one encoding per
// value). Seeds are in testdata/fuzz/<FuzzName>/, besides those added here.

func FuzzDecodeQueue(f *testing.F) {
	rec := newTestRecord(1_700_000_000)
	q := queueState{queueRecord: rec}
	f.Add(q.encode())
	q.Secured, q.Suspended = true, true
	f.Add(q.encode())
	f.Add(q.encode()[:queueRecordSize-1])
	f.Fuzz(func(t *testing.T, v []byte) {
		var rid queue.ID
		copy(rid[:], "recipient id....................")
		q, err := decodeQueue(rid, v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeQueue error %v is not errCorrupt", err)
			}
			return
		}
		if q.RecipientID != rid {
			t.Fatalf("decodeQueue recipient ID %x, want %x", q.RecipientID, rid)
		}
		if got := q.encode(); !bytes.Equal(got, v) {
			t.Fatalf("decodeQueue(%x) re-encodes to %x", v, got)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	m := storedMessage{ID: queue.NewID(), Timestamp: 1_700_000_000, Body: []byte("hello")}
	k := newMessageKey()
	f.Add(sealMessage(nil, &k, m))
	f.Add(sealMessage(nil, &k, storedMessage{ID: m.ID}))
	f.Add(sealMessage(nil, &k, m)[:messageOverhead-1])
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMessage(v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeMessage error %v is not errCorrupt", err)
			}
			return
		}
		if m.bodySize() > queue.MaxMessageSize || m.bodySize() < 0 {
			t.Fatalf("decodeMessage accepted a %d-byte body", m.bodySize())
		}
		got := binary.BigEndian.AppendUint64(nil, uint64(m.Timestamp))
		if got = append(append(got, m.id...), m.body...); !bytes.Equal(got, v) {
			t.Fatalf("decodeMessage(%x) re-encodes to %x", v, got)
		}
		// Opening a garbled value fails with errCorrupt, without a panic.
		g := messageAEAD(&k)
		if _, err := m.openID(g); err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("openID error %v is not errCorrupt", err)
		}
		if _, err := m.openBody(g, nil); err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("openBody error %v is not errCorrupt", err)
		}
	})
}

// TestDecodeMessageBounds checks the limits of a stored message: a header
// and at most queue.MaxMessageSize bytes of body, which delivery seals
// (SealMessage panics beyond it, so the store must refuse it first).
func TestDecodeMessageBounds(t *testing.T) {
	header := make([]byte, messageOverhead)
	binary.BigEndian.PutUint64(header, 42)
	for _, tc := range []struct {
		name string
		v    []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"short header", header[:messageOverhead-1], false},
		{"empty body", header, true},
		{"largest body", append(bytes.Clone(header), make([]byte, queue.MaxMessageSize)...), true},
		{"body one byte too long", append(bytes.Clone(header), make([]byte, queue.MaxMessageSize+1)...), false},
	} {
		m, err := decodeMessage(tc.v)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && !errors.Is(err, errCorrupt):
			t.Errorf("%s: err %v, want errCorrupt", tc.name, err)
		case tc.ok && (m.Timestamp != 42 || m.bodySize() != len(tc.v)-messageOverhead):
			t.Errorf("%s: timestamp %d, body %d bytes", tc.name, m.Timestamp, m.bodySize())
		}
	}
}
