package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// peer is the other side of a contact made without relays: the joiner's
// ratchet and keys, sending to our receiving queue.
type peer struct {
	r        *ratchet.Ratchet
	envKey   *ecdh.PrivateKey
	e2e      queue.Key // our queue's end-to-end public key
	seq      uint64
	prevHash [32]byte
}

// localContact returns a connected contact record named name, whose peer
// can send to it (as the joiner) and which can send (to a queue nobody
// reads). No relay is involved: the records are as Accept and process
// would leave them.
func localContact(t testing.TB, name string) (*contactRecord, *peer) {
	t.Helper()
	keys, err := ratchet.NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	joiner, hello, err := ratchet.Join(keys.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := keys.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{r: joiner, envKey: newKey()}
	// Our ratchet can send once it has decrypted a message.
	first, err := joiner.Encrypt(p.payload(payloadText, "first"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Decrypt(first); err != nil {
		t.Fatal(err)
	}
	st, err := ours.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	e2e := newKey()
	p.e2e = queue.PublicKey(e2e)
	var fp queue.Fingerprint
	addr := queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: 9}
	rid, sid := queue.NewID(), queue.NewID()
	rec := &contactRecord{
		ID: randomID(16), Name: name, State: StateConnected, Created: time.Now(),
		Recv: recvQueue{Relay: addr.String(), RecipientID: rid[:], SenderID: sid[:],
			RecipientKey: newKey().Bytes(), MessageKey: make([]byte, 32), E2EKey: e2e.Bytes()},
		Send: &sendQueue{Relay: addr.String(), SenderID: sid[:], AuthKey: newKey().Bytes(),
			EnvKey: newKey().Bytes(), PeerE2E: p.e2e[:], Secured: true, Confirmed: true},
		Ratchet: st, RecvSeq: p.seq, LastRecv: bytes.Clone(p.prevHash[:]),
	}
	return rec, p
}

// payload returns the peer's next payload, advancing its seq and hash.
func (p *peer) payload(kind byte, text string) []byte {
	p.seq++
	pl := payload{seq: p.seq, prevHash: p.prevHash, kind: kind, time: time.Now().UnixMilli(), body: []byte(text)}
	b := pl.append(nil)
	p.prevHash = sha256.Sum256(b)
	return b
}

// message returns the event of a relay delivering the peer's next text to
// rid.
func (p *peer) message(t testing.TB, rid []byte, text string) link.Event {
	t.Helper()
	msg, err := p.r.Encrypt(p.payload(payloadText, text))
	if err != nil {
		t.Fatal(err)
	}
	env, err := sealEnvelope(envelopeMessage, p.envKey, p.e2e, nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	ev := link.Event{Kind: link.EventMessage, Message: link.Message{ID: queue.NewID(), Body: env}}
	copy(ev.RecipientID[:], rid)
	return ev
}

// openOffline makes a store in a new home and opens it offline: nothing
// is sent, nothing connects.
func openOffline(t testing.TB) *Client {
	t.Helper()
	home := t.TempDir()
	if err := Init(home, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), Config{Home: home, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// addContacts stores n contacts named prefix0... and returns the last
// one's record and peer.
func addContacts(t testing.TB, c *Client, prefix string, n int) (*contactRecord, *peer) {
	t.Helper()
	rec, p := localContact(t, prefix)
	err := c.store.Update(func(tx *vault.Tx) error {
		for i := range n {
			r := *rec
			r.ID, r.Name = randomID(16), fmt.Sprintf("%s%d", prefix, i)
			rid := queue.NewID()
			r.Recv.RecipientID = rid[:]
			if i == n-1 {
				r = *rec
				r.Name = fmt.Sprintf("%s%d", prefix, i)
				rec.Name = r.Name
			}
			if err := indexContact(tx, &r); err != nil {
				return err
			}
			if err := putContact(tx, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec, p
}

// TestIndexLookups finds contacts by name and by receiving queue through
// the index buckets, and refuses names and queues that are not there.
func TestIndexLookups(t *testing.T) {
	c := openOffline(t)
	rec, p := addContacts(t, c, "c", 50)
	err := c.store.View(func(tx *vault.Tx) error {
		for i := range 50 {
			name := fmt.Sprintf("c%d", i)
			r, err := contactByName(tx, name)
			if err != nil || r.Name != name {
				t.Errorf("contactByName(%q): %v", name, err)
				continue
			}
			var rid queue.ID
			copy(rid[:], r.Recv.RecipientID)
			if r2, err := c.contactByRecipient(tx, rid); err != nil || !bytes.Equal(r2.ID, r.ID) {
				t.Errorf("contactByRecipient of %q: %v", name, err)
			}
		}
		if _, err := contactByName(tx, "c50"); !errors.Is(err, ErrNoContact) {
			t.Errorf("an unknown name: %v", err)
		}
		if _, err := c.contactByRecipient(tx, queue.NewID()); !errors.Is(err, ErrNoContact) {
			t.Errorf("an unknown queue: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A message from the last contact's peer is processed as theirs.
	if _, ack := c.receive(p.message(t, rec.Recv.RecipientID, "through the index")); !ack {
		t.Fatal("the message was not processed")
	}
	ev := <-c.Events()
	if ev.Kind != EventMessage || ev.Contact != rec.Name || ev.Text != "through the index" {
		t.Fatalf("event %+v", ev)
	}
}

// TestIndexBuiltForOlderStore opens a store whose contacts were written
// without index entries (as before the index buckets): Open indexes them
// once, and lookups find them.
func TestIndexBuiltForOlderStore(t *testing.T) {
	c := openOffline(t)
	rec, _ := localContact(t, "old")
	err := c.store.Update(func(tx *vault.Tx) error {
		if err := tx.Delete(bucketMeta, []byte(metaIndex)); err != nil {
			return err
		}
		return putContact(tx, rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	find := func(c *Client) error {
		return c.store.View(func(tx *vault.Tx) error {
			_, err := contactByName(tx, "old")
			return err
		})
	}
	if err := find(c); !errors.Is(err, ErrNoContact) {
		t.Fatalf("before: %v, want ErrNoContact (the record is not indexed)", err)
	}
	home := c.cfg.Home
	c.Close()
	c, err = Open(context.Background(), Config{Home: home, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := find(c); err != nil {
		t.Fatalf("after Open: %v", err)
	}
	if cs, err := c.Contacts(); err != nil || len(cs) != 1 {
		t.Fatalf("contacts %+v, %v", cs, err)
	}
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPerMessage measures what one sent message (Send: encrypt and
// store in the outbox) and one received message (decrypt, check and store
// as an event) cost the client, with 10, 100 and 1,000 contacts: the
// contact is found through the index buckets, so the figures stay flat.
// Wall time includes the store's fsync; cpu-µs/op is the process's CPU.
//
//	go test -run '^$' -bench BenchmarkPerMessage ./client
func BenchmarkPerMessage(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("send/contacts=%d", n), func(b *testing.B) {
			c := openOffline(b)
			rec, _ := addContacts(b, c, "c", n)
			b.ResetTimer()
			start := cpuTime(b)
			for range b.N {
				if _, err := c.Send(ctx, rec.Name, "hello"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
		})
		b.Run(fmt.Sprintf("receive/contacts=%d", n), func(b *testing.B) {
			c := openOffline(b)
			rec, p := addContacts(b, c, "c", n)
			evs := make([]link.Event, b.N)
			for i := range evs {
				evs[i] = p.message(b, rec.Recv.RecipientID, "hello")
			}
			b.ResetTimer()
			start := cpuTime(b)
			for _, ev := range evs {
				if _, ack := c.receive(ev); !ack {
					b.Fatal("not processed")
				}
			}
			b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
