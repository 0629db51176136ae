package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

// atRest is one message as the store holds it, with what a scan looks
// for: its body and ID in the clear, its sealed value, its message key
// and the expiry value that wraps it.
type atRest struct {
	name    string
	body    []byte
	id      queue.ID
	ek      []byte // its expiry entry's key
	sealed  []byte
	wrapped []byte
	msgKey  [32]byte
}

// messagesAtRest returns the messages of queue rid as the store holds
// them, with their message keys.
func messagesAtRest(t *testing.T, s *store, rid queue.ID, name string) []atRest {
	t.Helper()
	var out []atRest
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := bucketsOf(tx)
		c := b.messages.Cursor()
		for k, v := c.Seek(rid[:]); k != nil && bytes.HasPrefix(k, rid[:]); k, v = c.Next() {
			m, err := openStoredMessage(s, tx, k, v)
			if err != nil {
				return err
			}
			sm, _ := decodeMessage(v)
			ek := expiryKey(sm.Timestamp, rid, binary.BigEndian.Uint64(k[queue.IDSize:]))
			w := b.expiry.Get(ek)
			mk, err := unwrapKey(s.ring, w, ek)
			if err != nil {
				return err
			}
			out = append(out, atRest{
				name: fmt.Sprintf("%s message %d", name, len(out)), body: m.Body, id: m.ID,
				ek: ek, sealed: bytes.Clone(v), wrapped: bytes.Clone(w), msgKey: mk,
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleartext returns the byte strings of ms that no file may hold at any
// time: bodies, IDs and message keys.
func cleartext(ms []atRest) secretSet {
	s := secretSet{}
	for _, m := range ms {
		s[m.name+" body"] = m.body
		s[m.name+" ID"] = m.id[:]
		s[m.name+" message key"] = m.msgKey[:]
	}
	return s
}

// secretSet are byte strings that a file must not hold.
type secretSet map[string][]byte

func (s secretSet) in(data []byte) []string {
	var names []string
	for name, b := range s {
		if bytes.Contains(data, b) {
			names = append(names, name)
		}
	}
	return names
}

// ringKeys returns the raw keys of s's ring.
func ringKeys(s *store) secretSet {
	s.ring.mu.Lock()
	defer s.ring.mu.Unlock()
	out := secretSet{}
	for id, k := range s.ring.keys {
		out[fmt.Sprintf("ring key %x", id)] = bytes.Clone(k.raw[:])
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStoreScanFindsNoAcknowledgedBody stores messages of the largest and
// of small sizes in four queues, keeps one queue's, acknowledges the
// second's, deletes the third with its messages and lets the fourth's
// expire, and scans the raw bytes of relay.db, of its key file and of a
// hot backup (PROTOCOL.md section 17, docs/store.md "Erasure"):
//
//   - at any time, no file holds a body, a message ID or a message key in
//     the clear;
//   - before the keys are erased (the bound): the ring key that wraps the
//     gone messages' keys is in relay.db.keys, so whatever of their sealed
//     values and wrapped keys bbolt's free pages still hold can be opened
//     (the test counts and opens them);
//   - the hot backup holds none of the gone messages' sealed values or
//     wrapped keys, nor the relay's ring key, only a key of its own; a
//     store made from it delivers the live message;
//   - once the key period is over and the rotation has run, no file holds
//     a ring key that wrapped a gone message's key, and the live message
//     is still delivered (its key was wrapped again), also after a
//     restart.
func TestStoreScanFindsNoAcknowledgedBody(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.db")
	s, err := openStore(path, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()
	done := waiter[error](t)
	sent := waiter[sendResult](t)
	now := time.Now()
	hour := floorTime(now.Unix(), time.Hour)
	k := testKey(3)
	sizes := []int{queue.MaxMessageSize, 900, 2000}
	fill := func(q queueRecord, ts int64, n int) {
		for i := range n {
			body := make([]byte, sizes[i%len(sizes)])
			rand.Read(body)
			m := storedMessage{ID: queue.NewID(), Timestamp: ts, Body: body}
			if r := sent(s.addMessage(ctx, q.SenderID, m, 100)); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	kept := createTestQueue(t, s, hour, &k)
	acked := createTestQueue(t, s, hour, &k)
	deleted := createTestQueue(t, s, hour, &k)
	expired := createTestQueue(t, s, hour, &k)
	fill(kept, hour, 1)
	fill(acked, hour, 3)
	fill(deleted, hour, 3)
	fill(expired, hour-10*3600, 3)

	live := messagesAtRest(t, s, kept.RecipientID, "kept")
	var gone []atRest
	gone = append(gone, messagesAtRest(t, s, acked.RecipientID, "acknowledged")...)
	gone = append(gone, messagesAtRest(t, s, deleted.RecipientID, "deleted")...)
	gone = append(gone, messagesAtRest(t, s, expired.RecipientID, "expired")...)
	if len(live) != 1 || len(gone) != 9 {
		t.Fatalf("%d live and %d gone messages, want 1 and 9", len(live), len(gone))
	}
	for range 3 {
		m, ok, err := s.firstMessage(acked.RecipientID)
		if err != nil || !ok {
			t.Fatalf("firstMessage: %v %v", ok, err)
		}
		if err := done(s.ackMessage(ctx, acked.RecipientID, m.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := done(s.deleteQueue(ctx, deleted.RecipientID)); err != nil {
		t.Fatal(err)
	}
	if msgs, _, err := s.sweep(ctx, hour-3600, 0, 0, nil); err != nil || msgs != 3 {
		t.Fatalf("sweep: %d messages, %v; want 3", msgs, err)
	}

	// Before the erasure.
	never := cleartext(append(append([]atRest(nil), live...), gone...))
	oldKeys := ringKeys(s)
	if len(oldKeys) == 0 {
		t.Fatal("no ring key")
	}
	db, keys := readFile(t, path), readFile(t, keyPath(path))
	for what, data := range map[string][]byte{"relay.db": db, "relay.db.keys": keys} {
		if got := never.in(data); len(got) > 0 {
			t.Errorf("%s holds in the clear: %q", what, got)
		}
	}
	if got := oldKeys.in(keys); len(got) != len(oldKeys) {
		t.Fatalf("relay.db.keys holds %d of the %d ring keys", len(got), len(oldKeys))
	}
	// The bound: what bbolt's free pages still hold of the gone messages
	// can be opened with the key file as long as their ring key is in it.
	fromDisk, err := openKeyRing(keyPath(path), time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	opened, whole := 0, 0
	for _, m := range gone {
		if !bytes.Contains(db, m.sealed) || !bytes.Contains(db, m.wrapped) {
			continue
		}
		whole++
		mk, err := unwrapKey(fromDisk, m.wrapped, m.ek)
		if err != nil {
			t.Fatalf("%s: the key file does not open its wrapped key: %v", m.name, err)
		}
		sm, _ := decodeMessage(m.sealed)
		body, err := sm.openBody(messageAEAD(&mk), nil)
		if err != nil || !bytes.Equal(body, m.body) {
			t.Fatalf("%s: its sealed value does not open: %v", m.name, err)
		}
		opened++
	}
	t.Logf("before the erasure: %d of the %d gone messages are whole in relay.db's free pages, and the key file opens %d of them", whole, len(gone), opened)

	// A hot backup holds the live message only, under a key of its own.
	var hot bytes.Buffer
	_, err = backupVia(ctx, s.db, s.ring, &s.rotMu, dir, &hot)
	if err != nil {
		t.Fatal(err)
	}
	sealedGone := secretSet{}
	for _, m := range gone {
		sealedGone[m.name+" sealed"] = m.sealed
		sealedGone[m.name+" wrapped key"] = m.wrapped
	}
	for what, set := range map[string]secretSet{"in the clear": never, "sealed": sealedGone, "ring keys": oldKeys} {
		if got := set.in(hot.Bytes()); len(got) > 0 {
			t.Errorf("the hot backup holds %s: %q", what, got)
		}
	}
	restored := filepath.Join(t.TempDir(), "relay.db")
	if err := os.WriteFile(restored, hot.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := openStore(restored, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok, err := rs.firstMessage(kept.RecipientID); err != nil || !ok || !bytes.Equal(m.Body, live[0].body) {
		t.Errorf("the store made from the backup: %v %v, want the live message", ok, err)
	}
	if ok, err := rs.readFirstMessage(acked.RecipientID, nil, func(storedMessage) {}); ok || err != nil {
		t.Errorf("the store made from the backup has a message of the acknowledged queue: %v %v", ok, err)
	}
	backupKey := ringKeys(rs)
	rs.Close()
	if len(backupKey) != 1 {
		t.Errorf("the store made from the backup has %d keys, want the backup's one", len(backupKey))
	}
	if got := backupKey.in(hot.Bytes()); len(got) != 1 {
		t.Error("the backup does not hold its key")
	}
	if got := backupKey.in(readFile(t, restored)); len(got) > 0 {
		t.Error("the store made from the backup holds the backup's key in relay.db, not only in relay.db.keys")
	}

	// The rotation after the key period.
	rewrapped, erased, err := s.rotate(ctx, now.Add(2*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rewrapped != 1 || erased != len(oldKeys) {
		t.Errorf("rotate: %d message keys wrapped again, %d ring keys erased; want 1 and %d", rewrapped, erased, len(oldKeys))
	}
	db, keys = readFile(t, path), readFile(t, keyPath(path))
	for what, data := range map[string][]byte{"relay.db": db, "relay.db.keys": keys, "the hot backup": hot.Bytes()} {
		if got := oldKeys.in(data); len(got) > 0 {
			t.Errorf("after the erasure, %s holds %q", what, got)
		}
		if got := never.in(data); len(got) > 0 {
			t.Errorf("after the erasure, %s holds in the clear: %q", what, got)
		}
	}
	if len(keys) != keyFileSize {
		t.Errorf("relay.db.keys is %d bytes, want %d (slots overwritten in place)", len(keys), keyFileSize)
	}
	if fromDisk, err = openKeyRing(keyPath(path), time.Hour, true); err != nil {
		t.Fatal(err)
	}
	for _, m := range gone {
		if _, err := unwrapKey(fromDisk, m.wrapped, m.ek); !errors.Is(err, errKeyGone) {
			t.Errorf("%s: after the erasure, the key file opens its wrapped key (%v)", m.name, err)
		}
	}
	// The live message is delivered with its key wrapped again, also
	// after a restart.
	for round := range 2 {
		if m, ok, err := s.firstMessage(kept.RecipientID); err != nil || !ok || !bytes.Equal(m.Body, live[0].body) || m.ID != live[0].id {
			t.Fatalf("round %d: the live message: %v %v", round, ok, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = openStore(path, storeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := func() (StoreReport, error) { s.Close(); return CheckStore(path) }(); err != nil || rep.Messages != 1 {
		t.Errorf("CheckStore: %+v %v", rep, err)
	}
}

// TestSealedValuesTamper flips every bit of a sealed message value and of
// its wrapped key: each flip in a sealed part, or in the wrapped key, is
// refused with errCorrupt (a flip of the ring key id with errKeyGone); a
// flip of the time in the clear moves the message's expiry entry, whose
// key is the wrapped key's additional data, so its key is not found.
func TestSealedValuesTamper(t *testing.T) {
	ring := newMemRing(time.Hour)
	key, err := ring.currentKey(time.Unix(3600*1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	mk := newMessageKey()
	m := storedMessage{ID: queue.NewID(), Timestamp: 3600 * 1000, Body: []byte("a body to tamper with")}
	v := sealMessage(nil, &mk, m)
	var rid queue.ID
	ek := expiryKey(m.Timestamp, rid, 7)
	w := wrapKey(key, &mk, ek)
	for i := range len(v) * 8 {
		bad := bytes.Clone(v)
		bad[i/8] ^= 1 << (i % 8)
		sm, err := decodeMessage(bad)
		if err != nil {
			t.Fatal(err)
		}
		g := messageAEAD(&mk)
		_, errID := sm.openID(g)
		_, errBody := sm.openBody(g, nil)
		switch {
		case i/8 < 8:
			if sm.Timestamp == m.Timestamp {
				t.Fatalf("bit %d: the time did not change", i)
			}
		case i/8 < 8+sealedIDSize:
			if !errors.Is(errID, errCorrupt) || errBody != nil {
				t.Fatalf("bit %d of the sealed ID: %v, %v", i, errID, errBody)
			}
		default:
			if !errors.Is(errBody, errCorrupt) || errID != nil {
				t.Fatalf("bit %d of the sealed body: %v, %v", i, errID, errBody)
			}
		}
	}
	for i := range len(w) * 8 {
		bad := bytes.Clone(w)
		bad[i/8] ^= 1 << (i % 8)
		_, err := unwrapKey(ring, bad, ek)
		want := errCorrupt
		if i/8 < 8 {
			want = errKeyGone
		}
		if !errors.Is(err, want) {
			t.Fatalf("bit %d of the wrapped key: %v, want %v", i, err, want)
		}
	}
	if _, err := unwrapKey(ring, w, expiryKey(m.Timestamp+1, rid, 7)); !errors.Is(err, errCorrupt) {
		t.Errorf("a wrapped key moved to another expiry entry: %v", err)
	}
	got, err := unwrapKey(ring, w, ek)
	if err != nil || got != mk {
		t.Fatalf("unwrap: %v", err)
	}
}

// TestSealedValueVector pins the layout of a sealed message value
// (atrest.go): a fixed message key, ID, time and body.
func TestSealedValueVector(t *testing.T) {
	var mk [32]byte
	for i := range mk {
		mk[i] = byte(i)
	}
	var id queue.ID
	for i := range id {
		id[i] = byte(0xa0 + i)
	}
	got := sealMessage(nil, &mk, storedMessage{ID: id, Timestamp: 1_700_000_000 - 1_700_000_000%3600, Body: []byte("hush")})
	const want = "000000006553ede0ae1d177d1189251aa001039eb4813f3662f2e4e09c34d698f0a6077cf115e698618c3c3b89a613317da3cc942a76f831ef2f50875407647aab386fcf"
	if h := fmt.Sprintf("%x", got); h != want {
		t.Errorf("sealed value\n%s, want\n%s", h, want)
	}
}

// FuzzKeyFile opens arbitrary bytes as a key file: it is refused with
// errKeyFile or read, never a panic, and the keys read are the non-empty
// slots.
func FuzzKeyFile(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.keys")
	r, err := openKeyRing(path, time.Hour, false)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := r.currentKey(time.Unix(3600*500000, 0)); err != nil {
		f.Fatal(err)
	}
	r.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:keyHeaderSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "relay.db.keys")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := openKeyRing(path, time.Hour, true)
		if err != nil {
			if !errors.Is(err, errKeyFile) {
				t.Fatalf("error %v is not errKeyFile", err)
			}
			return
		}
		n := 0
		for i := range keySlots {
			if binary.BigEndian.Uint64(b[keyHeaderSize+i*keySlotSize:]) != 0 {
				n++
			}
		}
		if r.len() != n {
			t.Fatalf("%d keys read from %d slots in use", r.len(), n)
		}
	})
}

// FuzzUnwrapKey unwraps arbitrary expiry values: refused with errCorrupt
// or errKeyGone, never a panic.
func FuzzUnwrapKey(f *testing.F) {
	ring := newMemRing(time.Hour)
	key, err := ring.currentKey(time.Unix(3600*500000, 0))
	if err != nil {
		f.Fatal(err)
	}
	mk := newMessageKey()
	ek := expiryKey(3600, queue.ID{}, 0)
	f.Add(wrapKey(key, &mk, ek))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		if _, err := unwrapKey(ring, v, ek); err != nil && !errors.Is(err, errCorrupt) && !errors.Is(err, errKeyGone) {
			t.Fatalf("error %v", err)
		}
	})
}

// randomRecord returns a queue record with random IDs and keys.
func randomRecord(created int64) queueRecord {
	rec := queueRecord{RecipientID: queue.NewID(), SenderID: queue.NewID(), Created: created}
	rand.Read(rec.RecipientKey[:])
	rand.Read(rec.MessageKey[:])
	return rec
}

// TestStoreScanFindsNoDeletedQueue creates 300 queues with random IDs and
// keys, a message in each, deletes two thirds of them (DEL, and the
// expiry of queues never secured), and scans the raw bytes of relay.db:
// before the scrub, the deleted queues' IDs and keys can be in free pages
// (the test counts them: the bound); after it, none is, while the live
// queues' are and they work; a hot backup never holds them
// (PROTOCOL.md section 17, docs/store.md "Erasure").
func TestStoreScanFindsNoDeletedQueue(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.db")
	s := openTestStore(t, path, storeOptions{})
	ctx := context.Background()
	done := waiter[error](t)
	sent := waiter[sendResult](t)
	hour := floorTime(time.Now().Unix(), time.Hour)
	if n, err := s.scrub(ctx); err != nil || n != 0 {
		t.Fatalf("a scrub of a new store: %d pages, %v", n, err)
	}
	var live []queueRecord
	dead := secretSet{}
	liveSet := secretSet{}
	add := func(set secretSet, rec queueRecord, i int) {
		set[fmt.Sprintf("queue %d recipient ID", i)] = bytes.Clone(rec.RecipientID[:])
		set[fmt.Sprintf("queue %d sender ID", i)] = bytes.Clone(rec.SenderID[:])
		set[fmt.Sprintf("queue %d recipient key", i)] = bytes.Clone(rec.RecipientKey[:])
		set[fmt.Sprintf("queue %d message key", i)] = bytes.Clone(rec.MessageKey[:])
		if rec.Secured {
			set[fmt.Sprintf("queue %d sender key", i)] = bytes.Clone(rec.SenderKey[:])
		}
	}
	var toDelete []queueRecord
	for i := range 300 {
		rec := randomRecord(hour)
		switch i % 3 {
		case 0, 1: // kept, deleted by DEL: secured, with a message
			rec.Secured = true
			rand.Read(rec.SenderKey[:])
		case 2: // never secured, expires
			rec.Created = hour - 30*24*3600
		}
		if err := done(s.createQueue(ctx, rec)); err != nil {
			t.Fatal(err)
		}
		if rec.Secured {
			body := make([]byte, 3000)
			rand.Read(body)
			if r := sent(s.addMessage(ctx, rec.SenderID, storedMessage{ID: queue.NewID(), Timestamp: hour, Body: body}, 10)); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		switch i % 3 {
		case 0:
			live = append(live, rec)
			add(liveSet, rec, i)
		case 1:
			toDelete = append(toDelete, rec)
			add(dead, rec, i)
		default:
			add(dead, rec, i)
		}
	}
	for _, rec := range toDelete {
		if err := done(s.deleteQueue(ctx, rec.RecipientID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, q, err := s.sweep(ctx, 0, hour-24*3600, 0, nil); err != nil || q != 100 {
		t.Fatalf("sweep: %d queues, %v; want 100", q, err)
	}

	before := dead.in(readFile(t, path))
	t.Logf("before the scrub: relay.db's free pages hold %d of the %d IDs and keys of the deleted queues", len(before), len(dead))

	var hot bytes.Buffer
	_, err := backupVia(ctx, s.db, s.ring, &s.rotMu, dir, &hot)
	if err != nil {
		t.Fatal(err)
	}
	if got := dead.in(hot.Bytes()); len(got) > 0 {
		t.Errorf("the hot backup holds %d IDs and keys of deleted queues, such as %q", len(got), got[0])
	}

	// The need for a scrub survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, path, storeOptions{})
	pages, err := s.scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := readFile(t, path)
	if got := dead.in(db); len(got) > 0 {
		t.Errorf("after the scrub (%d pages), relay.db holds %d IDs and keys of deleted queues, such as %q", pages, len(got), got[0])
	}
	if got := liveSet.in(db); len(got) != len(liveSet) {
		t.Errorf("relay.db holds %d of the %d IDs and keys of the live queues: the scan proves nothing", len(got), len(liveSet))
	}
	if n, err := s.scrub(ctx); err != nil || n != 0 {
		t.Errorf("a scrub with nothing deleted since: %d pages, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, path, storeOptions{})
	if n, err := s.scrub(ctx); err != nil || n != 0 {
		t.Errorf("a scrub after a restart with nothing deleted since the last: %d pages, %v", n, err)
	}
	for _, rec := range live {
		if _, ok, err := s.firstMessage(rec.RecipientID); err != nil || !ok {
			t.Fatalf("a live queue's message after the scrub: %v %v", ok, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := CheckStore(path); err != nil || rep.Queues != 100 || rep.Messages != 100 {
		t.Errorf("CheckStore after the scrub: %+v %v", rep, err)
	}
}

// TestOfflineBackupOfVersion2 backs up a stopped store of format version
// 2 (as hush-relay backup does before the new relay first opened it): the
// copy keeps that format, and restore converts it.
func TestOfflineBackupOfVersion2(t *testing.T) {
	old, err := os.ReadFile("testdata/store-v2/relay.db")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "old.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := BackupStore(context.Background(), path, &b); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(backup, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := RestoreStore(backup, filepath.Join(dir, "relay.db"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Queues != 4 || rep.Messages != 7 {
		t.Errorf("restored: %+v, want 4 queues and 7 messages", rep)
	}
	if bytes.Contains(readFile(t, filepath.Join(dir, "relay.db")), []byte("v2 messages body 0")) {
		t.Error("the restored store holds a body in the clear")
	}
}

// BenchmarkSealAtRest measures what sealing adds to one message of the
// largest size: the seal on SEND, the wrap in the commit loop, the
// unwrap and the opening of ID and body on delivery, the unwrap and the
// opening of the ID on ACK.
func BenchmarkSealAtRest(b *testing.B) {
	ring := newMemRing(time.Hour)
	key, err := ring.currentKey(time.Unix(3600*500000, 0))
	if err != nil {
		b.Fatal(err)
	}
	m := storedMessage{ID: queue.NewID(), Timestamp: 3600, Body: make([]byte, queue.MaxMessageSize)}
	ek := expiryKey(3600, queue.ID{}, 0)
	buf := make([]byte, 0, messageValueCap)
	out := make([]byte, 0, queue.MaxMessageSize)
	b.SetBytes(queue.MaxMessageSize)
	b.ReportAllocs()
	for b.Loop() {
		mk := newMessageKey()
		v := sealMessage(buf[:0], &mk, m)
		w := wrapKey(key, &mk, ek)
		for ack := range 2 { // delivery, then ACK
			k, err := unwrapKey(ring, w, ek)
			if err != nil {
				b.Fatal(err)
			}
			sm, _ := decodeMessage(v)
			g := messageAEAD(&k)
			if _, err := sm.openID(g); err != nil {
				b.Fatal(err)
			}
			if ack == 0 {
				if out, err = sm.openBody(g, out[:0]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// TestStoreScrubsTheOldIndex makes a file of format version 3 whose index
// of queues never secured is a tree of pages of its own: 300 such queues,
// each created at a time of its own (so that no queue record followed by
// the next key looks like an index key), with the index written as the
// version 3 relay wrote it (created(8)|rid(24) -> empty) and version 3.
// Every index key is in the file before the open; the open converts it
// (no index, version 4), and after the scrub none of the keys is in the
// file. check refuses a version 4 file that still has the index.
func TestStoreScrubsTheOldIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path, storeOptions{})
	var keys [][]byte
	for _, q := range createTestQueues(t, s, 300) { // created a second apart
		k := binary.BigEndian.AppendUint64(nil, uint64(q.Created))
		keys = append(keys, append(k, q.RecipientID[:]...))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setIndex := func(version byte) {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bucketUnsecured)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := b.Put(k, []byte{}); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaVersionKey, []byte{version})
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *bbolt.Tx) error {
			if st := tx.Bucket(bucketUnsecured).Stats(); st.LeafPageN < 2 || st.BranchPageN < 1 {
				t.Fatalf("the index has %d leaf and %d branch pages: not a tree of its own", st.LeafPageN, st.BranchPageN)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The keys found in the file, in one pass: all begin with the same 5
	// bytes (the creation times are close).
	want := make(map[string]bool)
	for _, k := range keys {
		want[string(k)] = true
	}
	found := func() int {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seen := make(map[string]bool)
		for at := 0; ; at++ {
			i := bytes.Index(data[at:], keys[0][:5])
			if i < 0 {
				return len(seen)
			}
			at += i
			if k := string(data[at:min(at+len(keys[0]), len(data))]); want[k] {
				seen[k] = true
			}
		}
	}
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// check flags a version 4 file with the index as damaged.
	setIndex(storeVersion)
	if _, err := CheckStore(path); !errors.Is(err, ErrStoreDamaged) {
		t.Errorf("CheckStore of a version 4 file with the index of version 3 = %v, want ErrStoreDamaged", err)
	}

	if err := os.WriteFile(path, clean, 0o600); err != nil {
		t.Fatal(err)
	}
	setIndex(storeVersion3)
	if n := found(); n != len(keys) {
		t.Fatalf("the version 3 file holds %d of the %d index keys: the test proves nothing", n, len(keys))
	}
	s = openTestStore(t, path, storeOptions{})
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaVersionKey); !bytes.Equal(v, []byte{storeVersion}) || tx.Bucket(bucketUnsecured) != nil {
			t.Errorf("converted file: version %x, index there %v", v, tx.Bucket(bucketUnsecured) != nil)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pages, err := s.scrub(context.Background())
	if err != nil || pages == 0 {
		t.Fatalf("scrub after the conversion: %d pages, %v", pages, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := found(); n != 0 {
		t.Errorf("after the conversion and the scrub, the file holds %d of the %d index keys", n, len(keys))
	}
	if _, err := CheckStore(path); err != nil {
		t.Errorf("CheckStore of the converted file: %v", err)
	}
}
