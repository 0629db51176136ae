package queue_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// TestMessageEventVector builds the MSG event of the worked example
// (PROTOCOL.md section 18.4) both ways, AppendMessageEvent and
// BeginMessageEvent with the body written in place, and compares the bytes.
func TestMessageEventVector(t *testing.T) {
	v := loadVectors(t)
	e := v.Examples
	m := helloMessage(t, v)
	rid, id, mk := asID(t, e.MsgRecipientID), asID(t, m.MsgID), [32]byte(m.MessageKey)
	if got := queue.AppendMessageEvent(nil, rid, &mk, id, m.Timestamp, m.Body); !bytes.Equal(got, e.MsgTransmission) {
		t.Errorf("AppendMessageEvent differs from the example:\n%x\nwant\n%x", got, e.MsgTransmission)
	}
	ev, body := queue.BeginMessageEvent(nil, rid, id, m.Timestamp, len(m.Body))
	if len(body) != len(m.Body) {
		t.Fatalf("body space of %d bytes, want %d", len(body), len(m.Body))
	}
	copy(body, m.Body)
	if got := queue.SealMessageEvent(ev, &mk); !bytes.Equal(got, e.MsgTransmission) {
		t.Error("BeginMessageEvent and SealMessageEvent differ from the example")
	}
	if len(e.MsgTransmission) != queue.MessageEventSize {
		t.Errorf("MessageEventSize %d, the example has %d bytes", queue.MessageEventSize, len(e.MsgTransmission))
	}
}

// TestMessageEventEncoding compares AppendMessageEvent with the
// Transmission and SealMessage it stands for, over body sizes from empty to
// the largest and after a prefix in dst, and checks that the body space
// BeginMessageEvent returns lies in the event, that what dst's memory held
// before is overwritten, and that sealing needs no new memory.
func TestMessageEventEncoding(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	for _, n := range []int{0, 1, 15, 16, 1000, queue.MaxMessageSize - 1, queue.MaxMessageSize} {
		for _, prefix := range [][]byte{nil, []byte("earlier transmissions")} {
			rid, id := queue.NewID(), queue.NewID()
			body := make([]byte, n)
			rand.Read(body)
			const ts = 1700000000
			tx := queue.Transmission{Entity: rid[:], Command: queue.Command{
				Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, &key, id, ts, body),
			}}
			want := tx.Append(bytes.Clone(prefix))
			if got := queue.AppendMessageEvent(bytes.Clone(prefix), rid, &key, id, ts, body); !bytes.Equal(got, want) {
				t.Errorf("AppendMessageEvent, %d-byte body, %d-byte prefix: differs from Transmission.Append", n, len(prefix))
			}
			// Memory that held something else: only the body space
			// keeps it until written.
			used := bytes.Repeat([]byte{0xa5}, len(prefix)+queue.MessageEventSize)
			ev, slot := queue.BeginMessageEvent(append(used[:0], prefix...), rid, id, ts, n)
			if !bytes.Equal(ev[:len(prefix)], prefix) {
				t.Fatal("BeginMessageEvent changed dst's bytes")
			}
			copy(slot, body)
			if n > 0 && !bytes.Contains(ev, body) {
				t.Fatal("the body written into the body space is not in the event")
			}
			before := &ev[0]
			sealed := queue.SealMessageEvent(ev, &key)
			if &sealed[0] != before || len(sealed) != len(prefix)+queue.MessageEventSize {
				t.Errorf("%d-byte body: SealMessageEvent did not seal in place (%d bytes)", n, len(sealed))
			}
			if !bytes.Equal(sealed, want) {
				t.Errorf("%d-byte body, %d-byte prefix: BeginMessageEvent and SealMessageEvent differ from Transmission.Append", n, len(prefix))
			}
		}
	}
}

// TestMessageEventTamper flips bits of a MSG event: a flipped bit of the
// recipient ID changes only the entity, and every other flip makes the
// event fail to parse or its message fail to open.
func TestMessageEventTamper(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	rid, id := queue.NewID(), queue.NewID()
	ev := queue.AppendMessageEvent(nil, rid, &key, id, 1700000000, []byte("tamper with me"))
	const ridStart, ridEnd = 3, 3 + queue.IDSize
	for i := 0; i < len(ev); i++ {
		// Every byte of the header, then one in 61 of the sealed message
		// (each open costs a pass over SealedSize bytes).
		if i > 80 && i%61 != 0 && i != len(ev)-1 {
			continue
		}
		bad := bytes.Clone(ev)
		bad[i] ^= 1 << (i % 8)
		tx, _, err := queue.ParseTransmission(bad)
		if err != nil {
			continue // the layout no longer holds
		}
		if tx.Command.Tag != queue.TagMSG {
			continue // another command: not a MSG any more
		}
		_, _, err = queue.OpenMessage(&key, tx.Command.MsgID, tx.Command.Body)
		if i >= ridStart && i < ridEnd {
			if err != nil || bytes.Equal(tx.Entity, rid[:]) {
				t.Errorf("flip at %d (recipient ID): entity %x, open %v", i, tx.Entity, err)
			}
			continue
		}
		if !errors.Is(err, queue.ErrOpen) {
			t.Errorf("flip at byte %d: the message opens (%v)", i, err)
		}
	}
}

// TestMessageEventPanics checks the programmer errors.
func TestMessageEventPanics(t *testing.T) {
	var key [32]byte
	for name, f := range map[string]func(){
		"body too large": func() { queue.BeginMessageEvent(nil, queue.ID{}, queue.ID{}, 0, queue.MaxMessageSize+1) },
		"negative body":  func() { queue.BeginMessageEvent(nil, queue.ID{}, queue.ID{}, 0, -1) },
		"short event":    func() { queue.SealMessageEvent(make([]byte, 100), &key) },
		"large append": func() {
			queue.AppendMessageEvent(nil, queue.ID{}, &key, queue.ID{}, 0, make([]byte, queue.MaxMessageSize+1))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
