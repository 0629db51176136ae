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
	f.Add(appendMessage(nil, m))
	f.Add(appendMessage(nil, storedMessage{ID: m.ID}))
	f.Add(appendMessage(nil, m)[:messageHeaderSize-1])
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMessage(v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeMessage error %v is not errCorrupt", err)
			}
			return
		}
		if len(m.Body) > queue.MaxMessageSize {
			t.Fatalf("decodeMessage accepted a %d-byte body", len(m.Body))
		}
		if got := appendMessage(nil, m); !bytes.Equal(got, v) {
			t.Fatalf("decodeMessage(%x) re-encodes to %x", v, got)
		}
	})
}

// TestDecodeMessageBounds checks the limits of a stored message: a header
// and at most queue.MaxMessageSize bytes of body, which delivery seals
// (SealMessage panics beyond it, so the store must refuse it first).
func TestDecodeMessageBounds(t *testing.T) {
	header := make([]byte, messageHeaderSize)
	binary.BigEndian.PutUint64(header[queue.IDSize:], 42)
	for _, tc := range []struct {
		name string
		v    []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"short header", header[:messageHeaderSize-1], false},
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
		case tc.ok && (m.Timestamp != 42 || len(m.Body) != len(tc.v)-messageHeaderSize):
			t.Errorf("%s: timestamp %d, body %d bytes", tc.name, m.Timestamp, len(m.Body))
		}
	}
}
