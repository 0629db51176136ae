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
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hushrelay/hush/queue"
)

// storeTestWait bounds every wait for a result, so that a broken store
// fails the test instead of hanging it. It is not a timing assertion.
const storeTestWait = 20 * time.Second

func openTestStore(t testing.TB, path string, opts storeOptions) *store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "relay.db")
	}
	s, err := openStore(path, opts)
	if err != nil {
		t.Fatalf("openStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waiter returns a function that waits for the result of a submitted
// operation, for use as done(s.createQueue(ctx, rec)).
func waiter[T any](t testing.TB) func(ch <-chan T, err error) T {
	return func(ch <-chan T, err error) T {
		t.Helper()
		return result(t, ch, err)
	}
}

// result waits for the result of a submitted operation.
func result[T any](t testing.TB, ch <-chan T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(storeTestWait):
		t.Fatalf("no result after %v", storeTestWait)
		panic("unreachable")
	}
}

func testKey(b byte) queue.Key {
	var k queue.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func newTestRecord(created int64) queueRecord {
	rec := queueRecord{
		RecipientID:  queue.NewID(),
		SenderID:     queue.NewID(),
		RecipientKey: testKey(1),
		Created:      created,
	}
	copy(rec.MessageKey[:], bytes.Repeat([]byte{7}, 32))
	return rec
}

// createTestQueue creates a queue and, if senderKey is not nil, secures it.
func createTestQueue(t testing.TB, s *store, created int64, senderKey *queue.Key) queueRecord {
	done := waiter[error](t)
	t.Helper()
	ctx := context.Background()
	rec := newTestRecord(created)
	if err := done(s.createQueue(ctx, rec)); err != nil {
		t.Fatalf("createQueue: %v", err)
	}
	if senderKey != nil {
		if err := done(s.secureQueue(ctx, rec.RecipientID, *senderKey)); err != nil {
			t.Fatalf("secureQueue: %v", err)
		}
		rec.Secured, rec.SenderKey = true, *senderKey
	}
	return rec
}

func send(t testing.TB, s *store, sid queue.ID, body string, ts int64, quota int) (storedMessage, sendResult) {
	sent := waiter[sendResult](t)
	t.Helper()
	m := storedMessage{ID: queue.NewID(), Timestamp: ts, Body: []byte(body)}
	return m, sent(s.addMessage(context.Background(), sid, m, quota))
}

// openStoredMessage opens the message value v of entry k of the
// messages bucket in tx.
func openStoredMessage(s *store, tx *bbolt.Tx, k, v []byte) (storedMessage, error) {
	var rid queue.ID
	copy(rid[:], k)
	m, g, err := bucketsOf(tx).openMessage(s.ring, rid, binary.BigEndian.Uint64(k[queue.IDSize:]), v)
	if err != nil {
		return storedMessage{}, err
	}
	id, err := m.openID(g)
	if err != nil {
		return storedMessage{}, err
	}
	body, err := m.openBody(g, nil)
	return storedMessage{ID: id, Timestamp: m.Timestamp, Body: body}, err
}

// bucketKeys returns the keys of a bucket that start with prefix.
func bucketKeys(t testing.TB, s *store, bucket []byte, prefix []byte) [][]byte {
	t.Helper()
	var keys [][]byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// bucketNames returns the names of the buckets of s's file.
func bucketNames(t testing.TB, s *store) []string {
	t.Helper()
	var names []string
	if err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// bucketContains reports whether any key of bucket contains id.
func bucketContains(t testing.TB, s *store, bucket []byte, id queue.ID) bool {
	for _, k := range bucketKeys(t, s, bucket, nil) {
		if bytes.Contains(k, id[:]) {
			return true
		}
	}
	return false
}

// blockLoop submits an operation that holds the commit loop inside its
// write transaction until the returned release is called, so that a test
// can queue operations behind it and know they are still pending. Release is
// also registered as a cleanup.
func blockLoop(t testing.TB, s *store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ch, err := s.submitErr(context.Background(), func(storeTx) error {
		once.Do(func() { close(entered) })
		<-gate
		return nil
	})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case <-entered:
	case <-time.After(storeTestWait):
		t.Fatal("the commit loop did not start the blocking operation")
	}
	var released sync.Once
	release = func() {
		released.Do(func() {
			close(gate)
			if err := <-ch; err != nil {
				t.Errorf("blocking operation: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

func TestStoreCreateLookup(t *testing.T) {
	done := waiter[error](t)
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path, storeOptions{})
	ctx := context.Background()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("store file mode %v, want 0600", perm)
	}

	rec := newTestRecord(1000)
	rec.SenderKey = testKey(9) // not secured: must not be kept
	if err := done(s.createQueue(ctx, rec)); err != nil {
		t.Fatalf("createQueue: %v", err)
	}
	want := rec
	want.SenderKey = queue.Key{}

	got, ok, err := s.queueByRecipient(rec.RecipientID)
	if err != nil || !ok || got != want {
		t.Fatalf("queueByRecipient = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	got, ok, err = s.queueBySender(rec.SenderID)
	if err != nil || !ok || got != want {
		t.Fatalf("queueBySender = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if _, ok, err := s.queueByRecipient(rec.SenderID); ok || err != nil {
		t.Errorf("queueByRecipient(sender ID) = %v, %v; want absent", ok, err)
	}
	if _, ok, err := s.queueBySender(queue.NewID()); ok || err != nil {
		t.Errorf("queueBySender(unknown) = %v, %v; want absent", ok, err)
	}
	if buckets := bucketNames(t, s); slices.Contains(buckets, string(bucketUnsecured)) {
		t.Errorf("a store of version %d has the buckets %q, an index of queues never secured among them", storeVersion, buckets)
	}

	// An ID in use, in either role and either index, is refused.
	for name, r := range map[string]queueRecord{
		"same recipient ID":      {RecipientID: rec.RecipientID, SenderID: queue.NewID()},
		"same sender ID":         {RecipientID: queue.NewID(), SenderID: rec.SenderID},
		"recipient ID as sender": {RecipientID: queue.NewID(), SenderID: rec.RecipientID},
		"sender ID as recipient": {RecipientID: rec.SenderID, SenderID: queue.NewID()},
		"equal IDs":              {RecipientID: rec.RecipientID, SenderID: rec.RecipientID},
	} {
		if err := done(s.createQueue(ctx, r)); err != errExists {
			t.Errorf("createQueue(%s) = %v, want errExists", name, err)
		}
	}
	if n, err := s.countQueues(); err != nil || n != 1 {
		t.Errorf("countQueues = %d, %v; want 1", n, err)
	}
	if got, _, _ := s.queueByRecipient(rec.RecipientID); got != want {
		t.Errorf("a refused createQueue changed the queue: %+v", got)
	}
}

func TestStoreSecure(t *testing.T) {
	done := waiter[error](t)
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k1, k2 := testKey(0x11), testKey(0x22)

	// KEY, by recipient ID.
	a := createTestQueue(t, s, 1000, nil)
	for i := range 2 { // the second time is idempotent
		if err := done(s.secureQueue(ctx, a.RecipientID, k1)); err != nil {
			t.Fatalf("secureQueue #%d: %v", i+1, err)
		}
	}
	if err := done(s.secureQueue(ctx, a.RecipientID, k2)); err != errKeyMismatch {
		t.Errorf("secureQueue with another key = %v, want errKeyMismatch", err)
	}
	if err := done(s.secureBySender(ctx, a.SenderID, k2)); err != errKeyMismatch {
		t.Errorf("secureBySender with another key = %v, want errKeyMismatch", err)
	}
	if err := done(s.secureBySender(ctx, a.SenderID, k1)); err != nil {
		t.Errorf("secureBySender with the same key = %v", err)
	}
	got, _, _ := s.queueByRecipient(a.RecipientID)
	if !got.Secured || got.SenderKey != k1 {
		t.Errorf("after KEY: Secured %v, SenderKey %x", got.Secured, got.SenderKey[:4])
	}

	// SKEY, by sender ID.
	b := createTestQueue(t, s, 1000, nil)
	for i := range 2 {
		if err := done(s.secureBySender(ctx, b.SenderID, k2)); err != nil {
			t.Fatalf("secureBySender #%d: %v", i+1, err)
		}
	}
	if err := done(s.secureBySender(ctx, b.SenderID, k1)); err != errKeyMismatch {
		t.Errorf("secureBySender with another key = %v, want errKeyMismatch", err)
	}
	if got, _, _ := s.queueBySender(b.SenderID); !got.Secured || got.SenderKey != k2 {
		t.Errorf("after SKEY: Secured %v, SenderKey %x", got.Secured, got.SenderKey[:4])
	}

	// Unknown IDs; a recipient ID is not a sender ID and vice versa.
	if err := done(s.secureQueue(ctx, queue.NewID(), k1)); err != errNotFound {
		t.Errorf("secureQueue(unknown) = %v, want errNotFound", err)
	}
	if err := done(s.secureBySender(ctx, b.RecipientID, k2)); err != errNotFound {
		t.Errorf("secureBySender(recipient ID) = %v, want errNotFound", err)
	}
	if err := done(s.secureQueue(ctx, b.SenderID, k2)); err != errNotFound {
		t.Errorf("secureQueue(sender ID) = %v, want errNotFound", err)
	}

	// A suspended queue refuses SKEY, even with its own key; KEY still
	// answers as before.
	c := createTestQueue(t, s, 1000, nil)
	if err := done(s.suspendQueue(ctx, c.RecipientID)); err != nil {
		t.Fatalf("suspendQueue: %v", err)
	}
	if err := done(s.secureBySender(ctx, c.SenderID, k1)); err != errSuspended {
		t.Errorf("secureBySender(suspended) = %v, want errSuspended", err)
	}
	if got, _, _ := s.queueByRecipient(c.RecipientID); got.Secured || !got.Suspended {
		t.Errorf("suspended queue: Secured %v, Suspended %v", got.Secured, got.Suspended)
	}
	if err := done(s.suspendQueue(ctx, c.RecipientID)); err != nil {
		t.Errorf("suspendQueue again: %v", err)
	}
	if err := done(s.suspendQueue(ctx, queue.NewID())); err != errNotFound {
		t.Errorf("suspendQueue(unknown) = %v, want errNotFound", err)
	}
}

func TestStoreMessagesInOrder(t *testing.T) {
	done := waiter[error](t)
	sent := waiter[sendResult](t)
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(3)
	q := createTestQueue(t, s, 1000, &k)

	if _, ok, err := s.firstMessage(q.RecipientID); ok || err != nil {
		t.Fatalf("firstMessage(empty) = %v, %v", ok, err)
	}
	buf := []byte("one")
	m1 := storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: buf}
	r1 := sent(s.addMessage(ctx, q.SenderID, m1, 10))
	copy(buf, "XXX") // the store copied the body when addMessage returned
	m2, r2 := send(t, s, q.SenderID, "two", 2001, 10)
	m3, r3 := send(t, s, q.SenderID, "", 0, 10) // empty body, timestamp set by the store
	for i, r := range []sendResult{r1, r2, r3} {
		if r.Err != nil || r.RecipientID != q.RecipientID || r.First != (i == 0) {
			t.Errorf("send #%d = %+v; want no error, the recipient ID, First %v", i+1, r, i == 0)
		}
	}

	check := func(want storedMessage, body string) {
		t.Helper()
		got, ok, err := s.firstMessage(q.RecipientID)
		if err != nil || !ok || got.ID != want.ID || string(got.Body) != body || got.Timestamp != want.Timestamp && want.Timestamp != 0 {
			t.Fatalf("firstMessage = %v, %+v, %v; want ID %v body %q ts %d", ok, got, err, want.ID, body, want.Timestamp)
		}
		if want.Timestamp == 0 && got.Timestamp < time.Now().Add(-time.Hour).Unix() {
			t.Errorf("store-set timestamp %d is not now", got.Timestamp)
		}
		clear(got.Body) // a copy: must not change the store
	}
	check(m1, "one")
	check(m1, "one")

	if err := done(s.ackMessage(ctx, q.RecipientID, m2.ID)); err != errNotFound {
		t.Errorf("ack of a message that is not the head = %v, want errNotFound", err)
	}
	if err := done(s.ackMessage(ctx, queue.NewID(), m1.ID)); err != errNotFound {
		t.Errorf("ack on an unknown queue = %v, want errNotFound", err)
	}
	if err := done(s.ackMessage(ctx, q.RecipientID, m1.ID)); err != nil {
		t.Fatalf("ack m1: %v", err)
	}
	if err := done(s.ackMessage(ctx, q.RecipientID, m1.ID)); err != errNotFound {
		t.Errorf("second ack of m1 = %v, want errNotFound", err)
	}
	check(m2, "two")
	if err := done(s.ackMessage(ctx, q.RecipientID, m2.ID)); err != nil {
		t.Fatalf("ack m2: %v", err)
	}
	check(m3, "")
	if _, r := send(t, s, q.SenderID, "four", 2003, 10); r.Err != nil || r.First {
		t.Errorf("send behind m3 = %+v, want not First", r)
	}
	if err := done(s.ackMessage(ctx, q.RecipientID, m3.ID)); err != nil {
		t.Fatalf("ack m3: %v", err)
	}
	first, _, _ := s.firstMessage(q.RecipientID)
	if err := done(s.ackMessage(ctx, q.RecipientID, first.ID)); err != nil || string(first.Body) != "four" {
		t.Fatalf("ack m4 (%q): %v", first.Body, err)
	}
	if _, ok, err := s.firstMessage(q.RecipientID); ok || err != nil {
		t.Errorf("firstMessage after acking all = %v, %v", ok, err)
	}
	if _, r := send(t, s, q.SenderID, "five", 2004, 10); r.Err != nil || !r.First {
		t.Errorf("send to an emptied queue = %+v, want First", r)
	}
	if n := len(bucketKeys(t, s, bucketExpiry, nil)); n != 1 {
		t.Errorf("%d expiry entries for 1 message", n)
	}
}

func TestStoreSendRefused(t *testing.T) {
	done := waiter[error](t)
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(4)
	const quota = 2

	q := createTestQueue(t, s, 1000, &k)
	m1, _ := send(t, s, q.SenderID, "1", 2000, quota)
	send(t, s, q.SenderID, "2", 2000, quota)
	if _, r := send(t, s, q.SenderID, "3", 2000, quota); r.Err != errQuota || r.RecipientID != q.RecipientID {
		t.Errorf("send over quota = %+v, want errQuota", r)
	}
	// The refused message left nothing behind.
	if n := len(bucketKeys(t, s, bucketMessages, q.RecipientID[:])); n != quota {
		t.Errorf("%d messages stored, want %d", n, quota)
	}
	if n := len(bucketKeys(t, s, bucketExpiry, nil)); n != quota {
		t.Errorf("%d expiry entries, want %d", n, quota)
	}
	// After an ACK there is room for exactly one more.
	if err := done(s.ackMessage(ctx, q.RecipientID, m1.ID)); err != nil {
		t.Fatal(err)
	}
	if _, r := send(t, s, q.SenderID, "3", 2000, quota); r.Err != nil {
		t.Errorf("send after an ACK freed room = %v", r.Err)
	}
	if _, r := send(t, s, q.SenderID, "4", 2000, quota); r.Err != errQuota {
		t.Errorf("send over quota = %v, want errQuota", r.Err)
	}
	if _, r := send(t, s, q.SenderID, "x", 2000, 0); r.Err != errQuota {
		t.Errorf("send with quota 0 = %v, want errQuota", r.Err)
	}

	unsecured := createTestQueue(t, s, 1000, nil)
	if _, r := send(t, s, unsecured.SenderID, "x", 2000, quota); r.Err != errNotSecured {
		t.Errorf("send to a queue never secured = %v, want errNotSecured", r.Err)
	}

	suspended := createTestQueue(t, s, 1000, &k)
	sm, _ := send(t, s, suspended.SenderID, "before OFF", 2000, quota)
	if err := done(s.suspendQueue(ctx, suspended.RecipientID)); err != nil {
		t.Fatal(err)
	}
	if _, r := send(t, s, suspended.SenderID, "x", 2000, quota); r.Err != errSuspended {
		t.Errorf("send to a suspended queue = %v, want errSuspended", r.Err)
	}
	// Its messages stay readable and can be acknowledged.
	if got, ok, _ := s.firstMessage(suspended.RecipientID); !ok || got.ID != sm.ID {
		t.Errorf("suspended queue lost its message")
	}
	if err := done(s.ackMessage(ctx, suspended.RecipientID, sm.ID)); err != nil {
		t.Errorf("ack on a suspended queue: %v", err)
	}

	if _, r := send(t, s, queue.NewID(), "x", 2000, quota); r.Err != errNotFound || r.RecipientID != (queue.ID{}) {
		t.Errorf("send to an unknown sender ID = %+v, want errNotFound", r)
	}
	if _, r := send(t, s, q.RecipientID, "x", 2000, quota); r.Err != errNotFound {
		t.Errorf("send to a recipient ID = %v, want errNotFound", r.Err)
	}
	if _, r := send(t, s, unsecured.SenderID, "x", 2000, quota); r.Err != errNotSecured {
		t.Errorf("send to a queue never secured = %v, want errNotSecured", r.Err)
	}
	if n := len(bucketKeys(t, s, bucketMessages, unsecured.RecipientID[:])); n != 0 {
		t.Errorf("%d messages stored in a queue never secured", n)
	}
}

func TestStoreDelete(t *testing.T) {
	done := waiter[error](t)
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(5)
	del := createTestQueue(t, s, 1000, &k)
	keep := createTestQueue(t, s, 1000, &k)
	for i := range 5 {
		send(t, s, del.SenderID, fmt.Sprint("del ", i), 2000+int64(i), 10)
		send(t, s, keep.SenderID, fmt.Sprint("keep ", i), 2000+int64(i), 10)
	}
	unsecured := createTestQueue(t, s, 1000, nil)

	for _, rid := range []queue.ID{del.RecipientID, unsecured.RecipientID} {
		if err := done(s.deleteQueue(ctx, rid)); err != nil {
			t.Fatalf("deleteQueue: %v", err)
		}
	}
	for _, q := range []queueRecord{del, unsecured} {
		for _, b := range [][]byte{bucketQueues, bucketSenders, bucketMessages, bucketExpiry} {
			if bucketContains(t, s, b, q.RecipientID) || bucketContains(t, s, b, q.SenderID) {
				t.Errorf("bucket %s still holds an ID of a deleted queue", b)
			}
		}
		if _, ok, _ := s.queueBySender(q.SenderID); ok {
			t.Error("queueBySender finds a deleted queue")
		}
	}
	if _, ok, _ := s.firstMessage(del.RecipientID); ok {
		t.Error("firstMessage finds a message of a deleted queue")
	}
	if err := done(s.deleteQueue(ctx, del.RecipientID)); err != errNotFound {
		t.Errorf("second deleteQueue = %v, want errNotFound", err)
	}
	if _, r := send(t, s, del.SenderID, "late", 3000, 10); r.Err != errNotFound {
		t.Errorf("send to a deleted queue = %v, want errNotFound", r.Err)
	}

	// The other queue is untouched.
	if n := len(bucketKeys(t, s, bucketMessages, keep.RecipientID[:])); n != 5 {
		t.Errorf("kept queue holds %d messages, want 5", n)
	}
	if n := len(bucketKeys(t, s, bucketExpiry, nil)); n != 5 {
		t.Errorf("%d expiry entries, want the kept queue's 5", n)
	}
	if got, ok, _ := s.firstMessage(keep.RecipientID); !ok || string(got.Body) != "keep 0" {
		t.Errorf("kept queue's head = %q", got.Body)
	}
	if n, _ := s.countQueues(); n != 1 {
		t.Errorf("countQueues = %d, want 1", n)
	}
}

func TestStoreReopen(t *testing.T) {
	done := waiter[error](t)
	path := filepath.Join(t.TempDir(), "relay.db")
	ctx := context.Background()
	k := testKey(6)

	s, err := openStore(path, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q := createTestQueue(t, s, 1000, &k)
	unsecured := createTestQueue(t, s, 1001, nil)
	suspended := createTestQueue(t, s, 1002, &k)
	if err := done(s.suspendQueue(ctx, suspended.RecipientID)); err != nil {
		t.Fatal(err)
	}
	suspended.Suspended = true
	var msgs []storedMessage
	for i := range 4 {
		m, r := send(t, s, q.SenderID, fmt.Sprint("message ", i), 2000+int64(i), 10)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		msgs = append(msgs, m)
	}
	if err := done(s.ackMessage(ctx, q.RecipientID, msgs[0].ID)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTestStore(t, path, storeOptions{})
	for _, want := range []queueRecord{q, unsecured, suspended} {
		if got, ok, err := s.queueByRecipient(want.RecipientID); err != nil || !ok || got != want {
			t.Errorf("after reopen queueByRecipient = %+v, %v, %v; want %+v", got, ok, err, want)
		}
		if got, ok, err := s.queueBySender(want.SenderID); err != nil || !ok || got != want {
			t.Errorf("after reopen queueBySender = %+v, %v, %v; want %+v", got, ok, err, want)
		}
	}
	if n, _ := s.countQueues(); n != 3 {
		t.Errorf("countQueues = %d, want 3", n)
	}
	// Sequence numbers continue: a new message goes behind the old ones.
	if _, r := send(t, s, q.SenderID, "after reopen", 3000, 10); r.Err != nil || r.First {
		t.Errorf("send after reopen = %+v", r)
	}
	var bodies []string
	for {
		m, ok, err := s.firstMessage(q.RecipientID)
		if err != nil || !ok {
			break
		}
		bodies = append(bodies, string(m.Body))
		if err := done(s.ackMessage(ctx, q.RecipientID, m.ID)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"message 1", "message 2", "message 3", "after reopen"}
	if fmt.Sprint(bodies) != fmt.Sprint(want) {
		t.Errorf("after reopen, messages %q; want %q", bodies, want)
	}
}

func TestStoreSweep(t *testing.T) {
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(7)
	const now, quota = 500, 7

	// An old secured queue and a recent one, each with 5 expired messages
	// and one recent message.
	oldQ := createTestQueue(t, s, 50, &k)
	newQ := createTestQueue(t, s, 2000, &k)
	for i := range 5 {
		send(t, s, oldQ.SenderID, "old", 100+int64(i), quota)
		send(t, s, newQ.SenderID, "old", 105+int64(i), quota)
	}
	send(t, s, oldQ.SenderID, "recent A", 1000, quota)
	send(t, s, newQ.SenderID, "recent B", 1001, quota)
	// Ten expired queues never secured, two recent ones.
	var expired, recent []queueRecord
	for i := range 10 {
		expired = append(expired, createTestQueue(t, s, 100+int64(i), nil))
	}
	for i := range 2 {
		recent = append(recent, createTestQueue(t, s, 1000+int64(i), nil))
	}

	before := s.commits.Load()
	msgs, queues, err := s.sweep(ctx, now, now, 3, nil)
	if err != nil || msgs != 10 || queues != 10 {
		t.Fatalf("sweep = %d messages, %d queues, %v; want 10, 10", msgs, queues, err)
	}
	// 20 deletions in transactions of at most 3.
	if n := s.commits.Load() - before; n < 7 {
		t.Errorf("sweep used %d transactions for 20 deletions in batches of 3", n)
	}

	for _, q := range []queueRecord{oldQ, newQ} {
		if _, ok, _ := s.queueByRecipient(q.RecipientID); !ok {
			t.Error("sweep removed a secured queue")
		}
	}
	for q, body := range map[queueRecord]string{oldQ: "recent A", newQ: "recent B"} {
		if m, ok, _ := s.firstMessage(q.RecipientID); !ok || string(m.Body) != body {
			t.Errorf("head after sweep = %q, want %q", m.Body, body)
		}
	}
	for _, q := range expired {
		if _, ok, _ := s.queueByRecipient(q.RecipientID); ok {
			t.Error("sweep left an expired queue never secured")
		}
		if _, ok, _ := s.queueBySender(q.SenderID); ok {
			t.Error("sweep left a sender index entry")
		}
	}
	for _, q := range recent {
		if _, ok, _ := s.queueByRecipient(q.RecipientID); !ok {
			t.Error("sweep removed a recent queue never secured")
		}
	}
	for name, want := range map[string]int{"messages": 2, "expiry": 2, "senders": 4, "queues": 4} {
		if n := len(bucketKeys(t, s, []byte(name), nil)); n != want {
			t.Errorf("bucket %s holds %d keys after sweep, want %d", name, n, want)
		}
	}
	// The message counts were decremented: each queue holds 1 and takes
	// quota-1 more.
	for i := range quota - 1 {
		if _, r := send(t, s, oldQ.SenderID, "refill", 3000, quota); r.Err != nil {
			t.Fatalf("refill #%d: %v", i, r.Err)
		}
	}
	if _, r := send(t, s, oldQ.SenderID, "over", 3000, quota); r.Err != errQuota {
		t.Errorf("send over quota after sweep = %v, want errQuota", r.Err)
	}

	if msgs, queues, err := s.sweep(ctx, now, now, 3, nil); err != nil || msgs != 0 || queues != 0 {
		t.Errorf("second sweep = %d, %d, %v; want nothing", msgs, queues, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.sweep(canceled, 5000, 5000, 3, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("sweep with a canceled context = %v", err)
	}
}

// TestStoreSweepQueuesInChunks sweeps 300 queues, 7 to a read
// transaction and 50 to a sweep, from the middle of the bucket, while
// other queues are created and expired ones secured: the expired queues
// never secured go, each within one round of sweeps (8 at most, as the
// bucket grows to 400), and neither the secured ones, old or new, nor the young ones
// never secured; each expired queue secured meanwhile is either secured
// and kept or deleted (its KEY then finds no queue).
func TestStoreSweepQueuesInChunks(t *testing.T) {
	s := openTestStore(t, "", storeOptions{SweepScan: 50, SweepChunk: 7})
	ctx := context.Background()
	k := testKey(9)
	const cutoff = 500
	var expired, kept []queueRecord
	for i := range 100 {
		expired = append(expired, createTestQueue(t, s, 100, nil))
		kept = append(kept, createTestQueue(t, s, 1000, nil), createTestQueue(t, s, int64(100+i%2*900), &k))
	}
	s.scanMu.Lock()
	s.scanNext = bytes.Clone(kept[0].RecipientID[:])
	s.scanMu.Unlock()

	// Secured while the sweeps run: every third expired queue.
	var raced []queueRecord
	for i, q := range expired {
		if i%3 == 0 {
			raced = append(raced, q)
		}
	}
	secured := make([]error, len(raced))
	created := make(chan queueRecord, 100)
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i, q := range raced {
			ch, err := s.secureQueue(ctx, q.RecipientID, k)
			if err == nil {
				err = <-ch
			}
			secured[i] = err
		}
	}()
	go func() {
		defer wg.Done()
		defer close(created)
		for i := range 100 {
			rec := newTestRecord(1000)
			if i%2 == 0 {
				rec.Created = 100
				rec.Secured, rec.SenderKey = true, k
			}
			ch, err := s.createQueue(ctx, rec)
			if err == nil {
				err = <-ch
			}
			if err != nil {
				errs <- err
				return
			}
			created <- rec
		}
	}()

	gone := make(map[queue.ID]bool)
	deleted := 0
	for sweeps := 0; ; sweeps++ {
		_, n, err := s.sweep(ctx, 0, cutoff, 3, func(rid queue.ID, del bool) {
			if !del || gone[rid] {
				t.Errorf("sweep reported %v, deleted %v, more than once or not deleted", rid, del)
			}
			gone[rid] = true
		})
		if err != nil {
			t.Fatal(err)
		}
		deleted += n
		if len(gone) != deleted {
			t.Fatalf("sweep reported %d queues deleted and %d calls of expired", deleted, len(gone))
		}
		if sweeps == 8 {
			break // a round of 400 queues at most, 50 a sweep
		}
		if sweeps == 5 {
			wg.Wait()
		}
	}
	close(errs)
	for err := range errs {
		t.Fatalf("createQueue: %v", err)
	}
	for rec := range created {
		kept = append(kept, rec)
	}
	for _, q := range kept {
		if got, ok, _ := s.queueByRecipient(q.RecipientID); !ok || got != q {
			t.Fatalf("the sweep changed or removed a queue it must keep (secured %v, created %d): %v", q.Secured, q.Created, ok)
		}
	}
	racedGone := 0
	for i, q := range raced {
		got, ok, _ := s.queueByRecipient(q.RecipientID)
		switch {
		case secured[i] == nil && ok && got.Secured && !gone[q.RecipientID]:
		case secured[i] == errNotFound && !ok && gone[q.RecipientID]:
			racedGone++
		default:
			t.Errorf("expired queue secured during the sweeps: KEY %v, there %v (secured %v), reported deleted %v", secured[i], ok, got.Secured, gone[q.RecipientID])
		}
	}
	for i, q := range expired {
		if i%3 == 0 {
			continue
		}
		if _, ok, _ := s.queueByRecipient(q.RecipientID); ok || !gone[q.RecipientID] {
			t.Errorf("an expired queue never secured is there after a round of sweeps (%v), reported %v", ok, gone[q.RecipientID])
		}
		if _, ok, _ := s.queueBySender(q.SenderID); ok {
			t.Error("the sweep left a sender index entry")
		}
	}
	if want := len(expired) - len(raced) + racedGone; deleted != want {
		t.Errorf("sweeps deleted %d queues, want %d", deleted, want)
	}
	t.Logf("%d of the %d expired queues secured during the sweeps were deleted first", racedGone, len(raced))
	if n, err := s.countQueues(); err != nil || n != len(kept)+len(raced)-racedGone {
		t.Errorf("countQueues = %d, %v; want %d", n, err, len(kept)+len(raced)-racedGone)
	}
}

// TestStoreSweepPastDamagedRecord damages two records of a real file (a
// queue record cut short, and a key of the wrong length): each sweep that
// reads one reports it, without naming a queue, and goes on, so that a
// round of sweeps deletes every other expired queue never secured, and the
// next round reports the damage again.
func TestStoreSweepPastDamagedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	opts := storeOptions{SweepScan: 10, SweepChunk: 3}
	s := openTestStore(t, path, opts)
	var qs []queueRecord
	for range 30 {
		qs = append(qs, createTestQueue(t, s, 100, nil))
	}
	s.Close()
	damaged := qs[7].RecipientID
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketQueues)
		if err := b.Put(damaged[:], []byte{2, 0, 1}); err != nil {
			return err
		}
		return b.Put([]byte("bad"), []byte{2})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, path, opts)
	ctx := context.Background()
	sweepRound := func() (deleted, reports int) {
		t.Helper()
		// A round of 32 records, 10 a sweep.
		for range 4 {
			_, n, err := s.sweep(ctx, 0, 500, 0, nil)
			deleted += n
			if err == nil {
				continue
			}
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("sweep: %v, want errCorrupt", err)
			}
			for _, q := range qs {
				if strings.Contains(err.Error(), fmt.Sprintf("%x", q.RecipientID[:4])) {
					t.Fatalf("the sweep's error names a queue: %v", err)
				}
			}
			reports++
		}
		return deleted, reports
	}
	if deleted, reports := sweepRound(); deleted != len(qs)-1 || reports < 1 {
		t.Errorf("a round of sweeps past two damaged records deleted %d queues (want %d) and reported %d errors", deleted, len(qs)-1, reports)
	}
	for i, q := range qs {
		if i == 7 {
			continue
		}
		if _, ok, _ := s.queueByRecipient(q.RecipientID); ok {
			t.Error("an expired queue never secured is there after a round of sweeps")
		}
	}
	// Only the damaged records are left: each sweep reads both.
	if deleted, reports := sweepRound(); deleted != 0 || reports != 4 {
		t.Errorf("the next round deleted %d queues and reported %d errors; want 0 and 4", deleted, reports)
	}
}

// TestStoreSweepGoesOnAfterRestart opens the store again before each
// sweep: the sweeps go on from where the process before stopped (the
// "scan" key of the meta bucket), so that ceil(40 / 10) sweeps, each in a
// new process, delete all 40 expired queues. A sweep without a queue
// bound (the relay's first after a start) moves nothing and writes no
// position.
func TestStoreSweepGoesOnAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	opts := storeOptions{SweepScan: 10, SweepChunk: 4}
	s := openTestStore(t, path, opts)
	ctx := context.Background()
	var qs []queueRecord
	for range 40 {
		qs = append(qs, createTestQueue(t, s, 100, nil))
	}
	s.Close()
	total := 0
	for i := range 4 {
		s = openTestStore(t, path, opts)
		start := bytes.Clone(s.scanNext)
		if i == 0 && len(start) != queue.IDSize {
			t.Fatalf("a new file's sweep starts at %d bytes, want a random ID", len(start))
		}
		if i > 0 && len(start) != scanPrefix {
			t.Fatalf("the sweep starts at %d bytes after a restart, want the %d kept", len(start), scanPrefix)
		}
		if _, n, err := s.sweep(ctx, 0, 0, 0, nil); err != nil || n != 0 || !bytes.Equal(s.scanNext, start) {
			t.Fatalf("a sweep of messages only: %d queues, %v, position moved %v", n, err, !bytes.Equal(s.scanNext, start))
		}
		if i == 0 && len(bucketKeys(t, s, bucketMeta, metaScanKey)) != 0 {
			t.Fatal("a sweep of messages only wrote a position")
		}
		_, n, err := s.sweep(ctx, 0, 500, 0, nil)
		if err != nil || n != 10 {
			t.Fatalf("sweep %d: %d queues, %v; want 10", i, n, err)
		}
		total += n
		s.Close()
	}
	s = openTestStore(t, path, opts)
	if n, err := s.countQueues(); err != nil || n != 0 || total != len(qs) {
		t.Errorf("after 4 sweeps, each in a new process: %d queues left (%v), %d deleted; want 0 and %d", n, err, total, len(qs))
	}
}

// TestStoreSweepChecksAgain has a queue read by the sweep as expired and
// never secured, then secured (KEY queued before the sweep's deletion),
// and another read so, then deleted (DEL queued so): the deletion checks
// each again and keeps the first, leaves the second alone, and deletes a
// third, still expired.
func TestStoreSweepChecksAgain(t *testing.T) {
	s := openTestStore(t, "", storeOptions{SweepChunk: 3})
	ctx, cancel := context.WithTimeout(context.Background(), storeTestWait)
	defer cancel()
	k := testKey(10)
	q := createTestQueue(t, s, 100, nil)
	deleted := createTestQueue(t, s, 100, nil)
	other := createTestQueue(t, s, 100, nil)
	release := blockLoop(t, s)
	key, err := s.secureQueue(ctx, q.RecipientID, k) // queued behind the block
	if err != nil {
		t.Fatal(err)
	}
	del, err := s.deleteQueue(ctx, deleted.RecipientID)
	if err != nil {
		t.Fatal(err)
	}
	type swept struct {
		n   int
		err error
	}
	done := make(chan swept, 1)
	go func() {
		_, n, err := s.sweep(ctx, 0, 500, 0, nil)
		done <- swept{n, err}
	}()
	// The sweep reads the three queues as candidates while the loop is
	// held (reads do not wait for it), then queues its deletion behind the
	// KEY and the DEL.
	for len(s.ops) < 3 {
		select {
		case r := <-done:
			t.Fatalf("the sweep ended (%d queues, %v) before it queued its deletion", r.n, r.err)
		case <-ctx.Done():
			t.Fatal("the sweep did not queue its deletion")
		default:
			runtime.Gosched()
		}
	}
	release()
	if err := result(t, key, nil); err != nil {
		t.Fatalf("KEY: %v", err)
	}
	if err := result(t, del, nil); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	r := <-done
	if r.err != nil || r.n != 1 {
		t.Fatalf("sweep = %d queues, %v; want 1 (the queue secured meanwhile kept, the one deleted left alone)", r.n, r.err)
	}
	if got, ok, _ := s.queueByRecipient(q.RecipientID); !ok || !got.Secured {
		t.Errorf("the queue secured after the sweep read it: there %v, secured %v", ok, got.Secured)
	}
	if _, ok, _ := s.queueByRecipient(other.RecipientID); ok {
		t.Error("the other expired queue is still there")
	}
	if n, err := s.countQueues(); err != nil || n != 1 {
		t.Errorf("countQueues = %d, %v; want 1", n, err)
	}
}

// TestStoreConcurrentSends has 50 goroutines pipeline sends to 5 queues
// through a short pending queue (so that submitters block): every send
// succeeds and each goroutine's messages are stored in its order.
func TestStoreConcurrentSends(t *testing.T) {
	s := openTestStore(t, "", storeOptions{QueueLen: 8})
	ctx := context.Background()
	k := testKey(8)
	const goroutines, perGoroutine, nQueues = 50, 20, 5
	var qs []queueRecord
	for range nQueues {
		qs = append(qs, createTestQueue(t, s, 1000, &k))
	}

	before := s.commits.Load()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			q := qs[g%nQueues]
			var chs []<-chan sendResult
			for i := range perGoroutine {
				m := storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: fmt.Appendf(nil, "%d %d", g, i)}
				ch, err := s.addMessage(ctx, q.SenderID, m, goroutines*perGoroutine)
				if err != nil {
					t.Errorf("addMessage: %v", err)
					return
				}
				chs = append(chs, ch)
			}
			for _, ch := range chs {
				if r := result(t, ch, nil); r.Err != nil || r.RecipientID != q.RecipientID {
					t.Errorf("send: %+v", r)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d sends in %d commits", goroutines*perGoroutine, s.commits.Load()-before)

	// Read each queue's messages in stored order, in one transaction.
	total := 0
	next := make(map[int]int) // goroutine -> next expected index
	err := s.db.View(func(tx *bbolt.Tx) error {
		for qi, q := range qs {
			c := tx.Bucket(bucketMessages).Cursor()
			for k, v := c.Seek(q.RecipientID[:]); bytes.HasPrefix(k, q.RecipientID[:]); k, v = c.Next() {
				m, err := openStoredMessage(s, tx, k, v)
				if err != nil {
					return err
				}
				var g, i int
				if _, err := fmt.Sscanf(string(m.Body), "%d %d", &g, &i); err != nil {
					return fmt.Errorf("body %q: %v", m.Body, err)
				}
				if g%nQueues != qi || i != next[g] {
					return fmt.Errorf("queue %d: message %d of goroutine %d, want message %d of a goroutine sending to it", qi, i, g, next[g])
				}
				next[g]++
				total++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != goroutines*perGoroutine {
		t.Errorf("%d messages stored, want %d", total, goroutines*perGoroutine)
	}
}

// TestStoreGroupCommit shows that operations submitted while a commit is in
// progress share the next one.
func TestStoreGroupCommit(t *testing.T) {
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(9)
	q := createTestQueue(t, s, 1000, &k)
	const senders = 50

	release := blockLoop(t, s)
	before := s.commits.Load()
	chs := make([]<-chan sendResult, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			var err error
			chs[i], err = s.addMessage(ctx, q.SenderID, storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: []byte("x")}, senders)
			if err != nil {
				t.Errorf("addMessage: %v", err)
			}
		})
	}
	wg.Wait() // all 50 are queued behind the blocked commit
	release()
	firsts := 0
	for _, ch := range chs {
		if ch == nil {
			t.FailNow()
		}
		r := result(t, ch, nil)
		if r.Err != nil {
			t.Errorf("send: %v", r.Err)
		}
		if r.First {
			firsts++
		}
	}
	// One commit for the blocking operation, one for all the sends.
	if n := s.commits.Load() - before; n != 2 {
		t.Errorf("%d sends took %d commits, want 2", senders, n)
	}
	if firsts != 1 {
		t.Errorf("%d sends reported First, want exactly 1", firsts)
	}
	if n := len(bucketKeys(t, s, bucketMessages, q.RecipientID[:])); n != senders {
		t.Errorf("%d messages stored, want %d", n, senders)
	}
}

// TestStoreGroupIsolation checks that in one group commit a refused
// operation, and one that fails after it may have written, affect only
// themselves.
func TestStoreGroupIsolation(t *testing.T) {
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(10)
	full := createTestQueue(t, s, 1000, &k)
	send(t, s, full.SenderID, "fills it", 2000, 1)
	good := createTestQueue(t, s, 1000, &k)

	release := blockLoop(t, s)
	before := s.commits.Load()
	ch1, err1 := s.addMessage(ctx, good.SenderID, storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: []byte("a")}, 10)
	chFull, errFull := s.addMessage(ctx, full.SenderID, storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: []byte("refused")}, 1)
	// An operation that writes and then fails: the group is rolled back
	// and applied again without it.
	chBad, errBad := s.submitErr(ctx, func(b storeTx) error {
		if err := b.messages.Put(messageKey(good.RecipientID, 999), []byte("half-written")); err != nil {
			return err
		}
		return errCorrupt
	})
	ch2, err2 := s.addMessage(ctx, good.SenderID, storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: []byte("b")}, 10)
	release()

	if r := result(t, ch1, err1); r.Err != nil || !r.First {
		t.Errorf("first send = %+v", r)
	}
	if r := result(t, chFull, errFull); r.Err != errQuota {
		t.Errorf("send to the full queue = %v, want errQuota", r.Err)
	}
	if err := result(t, chBad, errBad); err != errCorrupt {
		t.Errorf("failing operation = %v, want errCorrupt", err)
	}
	if r := result(t, ch2, err2); r.Err != nil || r.First {
		t.Errorf("second send = %+v", r)
	}
	if n := s.commits.Load() - before; n != 2 {
		t.Errorf("%d commits, want 2 (the blocking operation, then the group)", n)
	}
	var bodies []string
	for _, key := range bucketKeys(t, s, bucketMessages, good.RecipientID[:]) {
		s.db.View(func(tx *bbolt.Tx) error {
			m, err := openStoredMessage(s, tx, key, tx.Bucket(bucketMessages).Get(key))
			if err != nil {
				t.Error(err)
			}
			bodies = append(bodies, string(m.Body))
			return nil
		})
	}
	if fmt.Sprint(bodies) != "[a b]" {
		t.Errorf("stored %q, want [a b] and nothing of the failed operation", bodies)
	}
	if n := len(bucketKeys(t, s, bucketMessages, full.RecipientID[:])); n != 1 {
		t.Errorf("the full queue holds %d messages, want 1", n)
	}
}

func TestStoreClosePending(t *testing.T) {
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(11)
	q := createTestQueue(t, s, 1000, &k)

	release := blockLoop(t, s)
	var pending []<-chan sendResult
	for range 5 {
		ch, err := s.addMessage(ctx, q.SenderID, storedMessage{ID: queue.NewID(), Body: []byte("x")}, 10)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, ch)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Let Close begin, then let the blocked commit finish.
	deadline := time.Now().Add(storeTestWait)
	for {
		select {
		case <-s.closing:
		default:
			if time.Now().After(deadline) {
				t.Fatal("Close did not start")
			}
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	release()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(storeTestWait):
		t.Fatal("Close hangs")
	}
	for i, ch := range pending {
		if r := result(t, ch, nil); r.Err != errClosed {
			t.Errorf("pending send #%d = %v, want errClosed", i, r.Err)
		}
	}

	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.addMessage(ctx, q.SenderID, storedMessage{ID: queue.NewID()}, 10); err != errClosed {
		t.Errorf("addMessage after Close = %v, want errClosed", err)
	}
	if _, err := s.deleteQueue(ctx, q.RecipientID); err != errClosed {
		t.Errorf("deleteQueue after Close = %v, want errClosed", err)
	}
	if _, _, err := s.queueByRecipient(q.RecipientID); err != errClosed {
		t.Errorf("queueByRecipient after Close = %v, want errClosed", err)
	}
	if _, _, err := s.sweep(ctx, 1, 1, 1, nil); err != errClosed {
		t.Errorf("sweep after Close = %v, want errClosed", err)
	}
}

// TestStoreSubmitFull checks that submission blocks while the pending queue
// is full, until its context is done.
func TestStoreSubmitFull(t *testing.T) {
	s := openTestStore(t, "", storeOptions{QueueLen: 1})
	k := testKey(12)
	q := createTestQueue(t, s, 1000, &k)

	release := blockLoop(t, s)
	queued, err := s.suspendQueue(context.Background(), q.RecipientID) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.deleteQueue(ctx, q.RecipientID); err != context.DeadlineExceeded {
		t.Errorf("submit to a full queue = %v, want context.DeadlineExceeded", err)
	}
	release()
	if err := result(t, queued, nil); err != nil {
		t.Errorf("queued operation: %v", err)
	}
	if got, ok, _ := s.queueByRecipient(q.RecipientID); !ok || !got.Suspended {
		t.Error("the queued operation did not run, or the refused one did")
	}
}

func TestStoreVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.db")
	s, err := openStore(path, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	rewrite := func(path string, fn func(tx *bbolt.Tx) error) {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaVersionKey, []byte{storeVersion + 1})
	})
	if _, err := openStore(path, storeOptions{}); !errors.Is(err, errStoreVersion) {
		t.Errorf("openStore(version %d) = %v, want errStoreVersion", storeVersion+1, err)
	}

	other := filepath.Join(dir, "other.db")
	rewrite(other, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something else"))
		return err
	})
	if _, err := openStore(other, storeOptions{}); !errors.Is(err, errStoreVersion) {
		t.Errorf("openStore(another bbolt file) = %v, want errStoreVersion", err)
	}
}

func TestStoreLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	openTestStore(t, path, storeOptions{})
	if s, err := openStore(path, storeOptions{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, berrors.ErrTimeout) {
		if err == nil {
			s.Close()
		}
		t.Errorf("second openStore = %v, want berrors.ErrTimeout", err)
	}
}

// BenchmarkStoreAddAck measures durable add+ack pairs of 16 KiB messages,
// each goroutine on its own queue: ops/s counts pairs.
func BenchmarkStoreAddAck(b *testing.B) {
	s := openTestStore(b, "", storeOptions{})
	ctx := context.Background()
	k := testKey(13)
	body := make([]byte, queue.MaxMessageSize)
	const parallelism = 16
	b.SetParallelism(parallelism)
	// One queue per RunParallel goroutine, created before the timer starts.
	queues := make([]queueRecord, parallelism*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range queues {
		wg.Go(func() { queues[i] = createTestQueue(b, s, 1000, &k) })
	}
	wg.Wait()
	var nextG atomic.Int64
	b.SetBytes(int64(len(body)))
	before := s.commits.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := int(nextG.Add(1) - 1)
		if g >= len(queues) {
			b.Error("more goroutines than queues")
			return
		}
		q := queues[g]
		for pb.Next() {
			id := queue.NewID()
			ch, err := s.addMessage(ctx, q.SenderID, storedMessage{ID: id, Body: body}, 128)
			if err != nil {
				b.Error(err)
				return
			}
			if r := <-ch; r.Err != nil {
				b.Error(r.Err)
				return
			}
			if m, ok, err := s.firstMessage(q.RecipientID); err != nil || !ok || m.ID != id {
				b.Error("head is not the message just sent", err)
				return
			}
			ack, err := s.ackMessage(ctx, q.RecipientID, id)
			if err != nil {
				b.Error(err)
				return
			}
			if err := <-ack; err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(s.commits.Load()-before)/float64(b.N), "commits/op")
}

// TestStoreMessageValuesReused sends messages of many sizes, concurrently
// and each waiting for its commit, so that addMessage's pooled value
// buffers are reused across commits (and after a failed SEND), and checks
// that every stored body reads back intact and in order.
func TestStoreMessageValuesReused(t *testing.T) {
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(9)
	const queues, perQueue = 4, 40
	const quota = perQueue
	recs := make([]queueRecord, queues)
	for i := range recs {
		recs[i] = createTestQueue(t, s, 100, &k)
	}
	bodies := make([][][]byte, queues)
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() {
			for j := range perQueue + 1 {
				body := make([]byte, (j*397+i*4001)%(queue.MaxMessageSize+1))
				rand.Read(body)
				m := storedMessage{ID: queue.NewID(), Timestamp: 200, Body: body}
				want := bytes.Clone(body)
				ch, err := s.addMessage(ctx, rec.SenderID, m, quota)
				if err != nil {
					t.Error(err)
					return
				}
				// The caller's buffer is free once addMessage returns.
				clear(body)
				r := <-ch
				switch {
				case j < perQueue && r.Err != nil:
					t.Errorf("send %d: %v", j, r.Err)
				case j == perQueue && !errors.Is(r.Err, errQuota):
					t.Errorf("send over the quota: %v, want errQuota", r.Err)
				case j < perQueue:
					bodies[i] = append(bodies[i], want)
				}
			}
		})
	}
	wg.Wait()
	for i, rec := range recs {
		for j, want := range bodies[i] {
			m, ok, err := s.firstMessage(rec.RecipientID)
			if err != nil || !ok {
				t.Fatalf("queue %d message %d: %v, %v", i, j, ok, err)
			}
			if !bytes.Equal(m.Body, want) {
				t.Fatalf("queue %d message %d: body of %d bytes differs from the %d sent", i, j, len(m.Body), len(want))
			}
			if err := waiter[error](t)(s.ackMessage(ctx, rec.RecipientID, m.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestStoreGather checks when the commit loop waits for more operations
// (see "Writes" in the file comment): not under light load, where a lone
// operation commits at once; under load, until the batch holds GatherOps
// or its oldest operation has been queued for GatherWait; and never past
// Close, which commits what was taken and returns.
func TestStoreGather(t *testing.T) {
	noop := func(storeTx) error { return nil }
	submit := func(t *testing.T, s *store) <-chan error {
		t.Helper()
		ch, err := s.submitErr(context.Background(), noop)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		return ch
	}
	wait := func(t *testing.T, ch <-chan error) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("operation: %v", err)
			}
		case <-time.After(storeTestWait):
			t.Fatalf("operation not committed within %v", storeTestWait)
		}
	}
	// engage commits one operation and lets a rate window pass: with the
	// tiny GatherRate of these stores, the loop gathers from the next
	// operation on.
	engage := func(t *testing.T, s *store) {
		t.Helper()
		wait(t, submit(t, s))
		time.Sleep(gatherWindow + 10*time.Millisecond)
	}
	// A GatherWait longer than storeTestWait: waiting for it would fail.
	const long = 2 * storeTestWait

	t.Run("light load", func(t *testing.T) {
		s := openTestStore(t, "", storeOptions{GatherWait: long, GatherOps: 4, GatherRate: 1e9})
		engage(t, s)
		for range 5 {
			wait(t, submit(t, s))
		}
	})
	t.Run("under load", func(t *testing.T) {
		s := openTestStore(t, "", storeOptions{GatherWait: long, GatherOps: 4, GatherRate: 1e-3})
		engage(t, s)
		before := s.commits.Load()
		first := submit(t, s)
		time.Sleep(20 * time.Millisecond) // the loop holds first and waits
		select {
		case err := <-first:
			t.Fatalf("a lone operation under load committed at once (%v)", err)
		default:
		}
		rest := []<-chan error{submit(t, s), submit(t, s), submit(t, s)}
		wait(t, first)
		for _, ch := range rest {
			wait(t, ch)
		}
		if n := s.commits.Load() - before; n != 1 {
			t.Errorf("4 operations took %d commits, want 1", n)
		}
	})
	t.Run("close", func(t *testing.T) {
		s := openTestStore(t, "", storeOptions{GatherWait: long, GatherOps: 4, GatherRate: 1e-3})
		engage(t, s)
		ch := submit(t, s)
		time.Sleep(20 * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		wait(t, ch) // committed, not failed with errClosed
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(storeTestWait):
			t.Fatal("Close waited for the gathering")
		}
	})
	t.Run("pause", func(t *testing.T) {
		// 50 operations a second turn gathering on; after a pause the
		// rate of the window before a lone operation is below that.
		s := openTestStore(t, "", storeOptions{GatherWait: long, GatherOps: 4, GatherRate: 50})
		var chs []<-chan error
		for range 20 {
			chs = append(chs, submit(t, s))
		}
		for _, ch := range chs {
			wait(t, ch)
		}
		time.Sleep(gatherWindow + 10*time.Millisecond)
		chs = chs[:0]
		for range 4 { // about 180 a second in the window before: gathered
			chs = append(chs, submit(t, s))
		}
		for _, ch := range chs {
			wait(t, ch)
		}
		time.Sleep(3 * gatherWindow)
		wait(t, submit(t, s)) // 4 in 300ms before it: at once
	})
	t.Run("queued long enough", func(t *testing.T) {
		// GatherWait counts from when an operation was queued: one that
		// has waited that long already (behind a slow commit) is committed
		// at once, though the batch is short of GatherOps. The loop takes
		// it as submit would have queued it GatherWait ago.
		s := openTestStore(t, "", storeOptions{GatherWait: long, GatherOps: 4, GatherRate: 1e-3})
		engage(t, s)
		before := s.commits.Load()
		ch := make(chan error, 1)
		s.ops <- &storeOp{apply: noop, finish: func(err error) { ch <- err }, queued: time.Now().Add(-long)}
		wait(t, ch)
		if n := s.commits.Load() - before; n != 1 {
			t.Errorf("%d commits, want 1", n)
		}
	})
}

// TestStoreCounts: the counts of queues, messages and message bytes that
// the commit loop keeps follow every kind of write (domain errors
// included), match a walk of the file, survive a reopen, and are
// computed once for a file without them.
func TestStoreCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path, storeOptions{})
	ctx := context.Background()
	done := waiter[error](t)
	k := testKey(7)
	check := func(what string, s *store, queues, msgs, bytes int64) {
		t.Helper()
		got := s.total.snapshot()
		if want := (countDelta{queues: queues, messages: msgs, bytes: bytes}); got != want {
			t.Fatalf("%s: counts %+v, want %+v", what, got, want)
		}
		q, m := 0, 0
		var b int64
		if err := s.view(readQueues|readMessages, func(tx storeTx) error {
			q = tx.queues.Stats().KeyN
			return tx.messages.ForEach(func(_, v []byte) error { m++; b += int64(len(v)); return nil })
		}); err != nil {
			t.Fatal(err)
		}
		if int64(q) != queues || int64(m) != msgs || b != bytes {
			t.Fatalf("%s: the file holds %d queues, %d messages, %d bytes", what, q, m, b)
		}
	}
	const hdr = messageOverhead
	a := createTestQueue(t, s, 1000, &k)
	b := createTestQueue(t, s, 1000, &k)
	old := createTestQueue(t, s, 10, nil) // expires unsecured
	check("three queues", s, 3, 0, 0)
	m1, _ := send(t, s, a.SenderID, "12345", 1000, 2)
	send(t, s, a.SenderID, "123", 1000, 2)
	if _, r := send(t, s, a.SenderID, "over quota", 1000, 2); r.Err != errQuota {
		t.Fatalf("SEND over the quota: %v", r.Err)
	}
	send(t, s, b.SenderID, "old", 20, 2) // expires
	send(t, s, b.SenderID, "b", 1000, 2)
	check("four messages", s, 3, 4, 4*hdr+5+3+3+1)
	if err := done(s.ackMessage(ctx, a.RecipientID, m1.ID)); err != nil {
		t.Fatal(err)
	}
	if err := done(s.ackMessage(ctx, a.RecipientID, m1.ID)); err != errNotFound {
		t.Fatalf("ACK again: %v", err)
	}
	check("after an ACK", s, 3, 3, 3*hdr+3+3+1)
	if _, _, err := s.sweep(ctx, 100, 100, 0, nil); err != nil {
		t.Fatal(err)
	}
	check("after the sweep", s, 2, 2, 2*hdr+3+1)
	if err := done(s.deleteQueue(ctx, a.RecipientID)); err != nil {
		t.Fatal(err)
	}
	check("after a DEL", s, 1, 1, hdr+1)
	_ = old

	// Reopened, and reopened without the recorded counts.
	s.Close()
	s = openTestStore(t, path, storeOptions{})
	check("reopened", s, 1, 1, hdr+1)
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaCountsKey) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, path, storeOptions{})
	check("counted again", s, 1, 1, hdr+1)
	s.Close()
	if _, err := CheckStore(path); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkStoreReads measures the reads on every message's path: the
// queue by its sender ID (SEND) and the head message (delivery), on a
// queue holding one message of the largest size.
func BenchmarkStoreReads(b *testing.B) {
	s := openTestStore(b, "", storeOptions{})
	k := testKey(13)
	q := createTestQueue(b, s, 1000, &k)
	send(b, s, q.SenderID, string(make([]byte, queue.MaxMessageSize)), 1000, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, ok, err := s.queueBySender(q.SenderID); !ok || err != nil {
			b.Fatal("queueBySender", err)
		}
		if ok, err := s.readFirstMessage(q.RecipientID, nil, func(storedMessage) {}); !ok || err != nil {
			b.Fatal("readFirstMessage", err)
		}
	}
}

// TestStoreSendAfterAcksEmptyPages sends to a queue in the same group
// commit as ACKs that empty whole leaf pages of the messages bucket right
// after the queue's last message. The new message must take the number
// after that message and come out last, each message exactly once:
// bbolt's Cursor.Prev, unlike Seek and Next, does not skip a leaf emptied
// by deletes earlier in the same write transaction (bbolt rebalances only
// at commit) and returns nil on it, which next took for an empty queue,
// so the new message was numbered 0 and went before the queue's messages:
// the one outstanding with the subscriber then had its ACK refused and
// was delivered a second time after the new one (hush-bench throughput's
// "duplicated 1").
func TestStoreSendAfterAcksEmptyPages(t *testing.T) {
	done := waiter[error](t)
	sent := waiter[sendResult](t)
	s := openTestStore(t, "", storeOptions{})
	ctx := context.Background()
	k := testKey(12)
	qs := []queueRecord{createTestQueue(t, s, 1000, &k), createTestQueue(t, s, 1000, &k), createTestQueue(t, s, 1000, &k)}
	slices.SortFunc(qs, func(x, y queueRecord) int { return bytes.Compare(x.RecipientID[:], y.RecipientID[:]) })
	a, b, c := qs[0], qs[1], qs[2] // their messages are stored in this order
	// Values of the largest size overflow a page each: a leaf holds two
	// to four of them, so b's 24 messages fill leaves of their own.
	body := bytes.Repeat([]byte{'x'}, queue.MaxMessageSize)
	fill := func(q queueRecord, n int) []storedMessage {
		t.Helper()
		ms := make([]storedMessage, n)
		for i := range ms {
			ms[i] = storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: body}
			if r := sent(s.addMessage(ctx, q.SenderID, ms[i], 128)); r.Err != nil {
				t.Fatalf("send %d: %v", i, r.Err)
			}
		}
		return ms
	}
	am := fill(a, 3)
	bm := fill(b, 24)
	fill(c, 3)
	// a's messages are numbered from 1 on: a new message numbered 0
	// would go first.
	if err := done(s.ackMessage(ctx, a.RecipientID, am[0].ID)); err != nil {
		t.Fatalf("ack: %v", err)
	}

	release := blockLoop(t, s)
	before := s.commits.Load()
	acks := make([]<-chan error, len(bm))
	for i, m := range bm {
		var err error
		if acks[i], err = s.ackMessage(ctx, b.RecipientID, m.ID); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	last := storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: body}
	ch, err := s.addMessage(ctx, a.SenderID, last, 128)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	release()
	for i, ch := range acks {
		if err := result(t, ch, nil); err != nil {
			t.Fatalf("ack %d of b's messages: %v", i, err)
		}
	}
	if r := result(t, ch, nil); r.Err != nil || r.First {
		t.Errorf("send behind two messages = %+v, want no error, not First", r)
	}
	// One commit for the blocking operation, one for the ACKs and the SEND.
	if n := s.commits.Load() - before; n != 2 {
		t.Fatalf("the ACKs and the SEND took %d commits with the blocking one, want 2 (one transaction)", n)
	}

	// a is read as a subscriber reads it: the head, acknowledged, in turn.
	want := []queue.ID{am[1].ID, am[2].ID, last.ID}
	for i, id := range want {
		m, ok, err := s.firstMessage(a.RecipientID)
		if err != nil || !ok {
			t.Fatalf("message %d of a: %v, %v; want %d messages", i, ok, err, len(want))
		}
		if m.ID != id {
			t.Fatalf("message %d of a is %v, want %v (the message sent last is %v)", i, m.ID, id, last.ID)
		}
		if err := done(s.ackMessage(ctx, a.RecipientID, m.ID)); err != nil {
			t.Fatalf("ack of message %d of a: %v", i, err)
		}
	}
	if m, ok, err := s.firstMessage(a.RecipientID); ok || err != nil {
		t.Fatalf("a holds %v (%v) after its %d messages were acknowledged", m.ID, err, len(want))
	}
}
