package relay_test

// Privacy at rest: what the store file and its backups hold once data is
// acknowledged, expired or deleted (PROTOCOL.md section 17, docs/store.md).
// The tests scan the bytes of real files for the exact bytes the relay
// was given.

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// secrets are byte strings that a file must, or must not, hold.
type secrets map[string][]byte

// found returns the names of the secrets that data holds, sorted.
func (s secrets) found(data []byte) []string {
	var names []string
	for name, b := range s {
		if bytes.Contains(data, b) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// privacyBody returns a random SEND body of n bytes.
func privacyBody(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// privacyData is what a privacy test leaves on a relay: messages still
// held, and messages and queues that are gone (acknowledged, or deleted
// with their queue).
type privacyData struct {
	kept       link.Queue // holds the live messages
	keptBodies [][]byte   // its messages' bodies, in order
	live, dead secrets    // IDs (live), bodies and IDs (dead)
}

// leavePrivacyData creates three queues on e: one keeps its messages, one
// has all of them received and acknowledged, one is deleted with its
// messages. Bodies are random, of a small and of the largest size.
func leavePrivacyData(t *testing.T, e *e2eRelay) privacyData {
	t.Helper()
	ctx := e2eContext(t)
	rc := e.dial(ctx, link.TransportTCP)
	d := privacyData{live: secrets{}, dead: secrets{}}
	sizes := []int{900, queue.MaxMessageSize, 2000}
	var acked, deleted link.Queue
	for qi, what := range []string{"kept", "acked", "deleted"} {
		q, sk := e2eSecuredQueue(t, ctx, rc)
		for i, n := range sizes {
			body := privacyBody(n)
			if err := rc.Send(ctx, q.SenderID, sk, body); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s body %d", what, i)
			if qi == 0 {
				d.keptBodies = append(d.keptBodies, body)
			} else {
				d.dead[name] = body
			}
		}
		switch qi {
		case 0:
			d.kept = q
		case 1:
			acked = q
		case 2:
			deleted = q
		}
	}
	for range sizes {
		m, err := rc.Get(ctx, acked)
		if err != nil {
			t.Fatal(err)
		}
		d.dead[fmt.Sprintf("acked message ID %v", m.ID)] = m.ID[:]
		if err := rc.Ack(ctx, acked, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	d.dead["deleted queue's recipient ID"] = deleted.RecipientID[:]
	d.dead["deleted queue's sender ID"] = deleted.SenderID[:]
	d.live["kept queue's recipient ID"] = d.kept.RecipientID[:]
	return d
}

// checkLiveOnly fails the test unless data holds every live secret and no
// dead one.
func checkLiveOnly(t *testing.T, what string, data []byte, d privacyData) {
	t.Helper()
	if got := d.live.found(data); len(got) != len(d.live) {
		t.Errorf("%s holds only %q of the live data: the scan proves nothing", what, got)
	}
	if got := d.dead.found(data); len(got) > 0 {
		t.Errorf("%s holds data acknowledged or deleted before it was written: %q", what, got)
	}
	for i, b := range d.keptBodies {
		if bytes.Contains(data, b) {
			t.Errorf("%s holds live message %d in the clear", what, i)
		}
	}
}

// TestBackupHoldsLiveDataOnly takes a hot backup (the admin /backup's) and
// an offline one (hush-relay backup of a stopped relay) of a store in
// which messages were acknowledged and a queue deleted, and scans both
// for their bytes: they hold the live queues, their messages sealed (a
// relay started on each backup delivers them), and none of the others'
// bytes (PROTOCOL.md section 17).
func TestBackupHoldsLiveDataOnly(t *testing.T) {
	e := startE2ERelay(t, nil)
	d := leavePrivacyData(t, e)
	ctx := e2eContext(t)

	var hot bytes.Buffer
	if _, err := e.r.Backup(ctx, &hot); err != nil {
		t.Fatal(err)
	}
	checkLiveOnly(t, "the hot backup", hot.Bytes(), d)

	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	var cold bytes.Buffer
	if _, err := relay.BackupStore(ctx, e.cfg.StorePath, &cold); err != nil {
		t.Fatal(err)
	}
	checkLiveOnly(t, "the offline backup", cold.Bytes(), d)

	// Both are store files that hold what was live.
	for name, b := range map[string][]byte{"hot": hot.Bytes(), "offline": cold.Bytes()} {
		path := filepath.Join(t.TempDir(), name+".db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := relay.CheckStore(path)
		if err != nil {
			t.Fatalf("%s backup: %v", name, err)
		}
		if rep.Queues != 2 || rep.Messages != len(d.keptBodies) {
			t.Errorf("%s backup: %+v, want 2 queues and %d messages", name, rep, len(d.keptBodies))
		}
		// The bodies are sealed at rest: a relay started on the backup
		// delivers them.
		b := startE2ERelay(t, func(c *relay.Config) { c.StorePath = path })
		rc := b.dial(ctx, link.TransportTCP)
		for i, want := range d.keptBodies {
			m, err := rc.Get(ctx, d.kept)
			if err != nil {
				t.Fatalf("%s backup: message %d: %v", name, i, err)
			}
			if !bytes.Equal(m.Body, want) {
				t.Errorf("%s backup: message %d is not the one sent", name, i)
			}
			if err := rc.Ack(ctx, d.kept, m.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// preciseTimes returns, for every second from from to to that is not a
// multiple of unit, its encodings as a unix time that a store could use:
// 8 and 4 bytes, big- and little-endian, and decimal.
func preciseTimes(from, to time.Time, unit time.Duration) secrets {
	s := secrets{}
	u := int64(unit / time.Second)
	for t := from.Unix(); t <= to.Unix(); t++ {
		if t%u == 0 {
			continue
		}
		name := time.Unix(t, 0).UTC().Format(time.TimeOnly)
		s[name+" uint64be"] = binary.BigEndian.AppendUint64(nil, uint64(t))
		s[name+" uint64le"] = binary.LittleEndian.AppendUint64(nil, uint64(t))
		s[name+" uint32be"] = binary.BigEndian.AppendUint32(nil, uint32(t))
		s[name+" uint32le"] = binary.LittleEndian.AppendUint32(nil, uint32(t))
		s[name+" decimal"] = strconv.AppendInt(nil, t, 10)
	}
	return s
}

// TestNoPreciseTimestampAtRest creates queues (secured and not), sends
// messages, acknowledges some and deletes a queue, and scans the store
// file, its key file and a hot backup for the times of those seconds:
// they hold queue creation times to
// the UTC day and message times to the hour only (PROTOCOL.md sections 11
// and 17), and the messages are delivered with their time to the hour.
func TestNoPreciseTimestampAtRest(t *testing.T) {
	e := startE2ERelay(t, nil)
	from := time.Now()
	d := leavePrivacyData(t, e)
	ctx := e2eContext(t)
	rc := e.dial(ctx, link.TransportTCP)
	if _, err := rc.Create(ctx); err != nil { // never secured
		t.Fatal(err)
	}
	m, err := rc.Get(ctx, d.kept)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Timestamp.Equal(m.Timestamp.Truncate(time.Hour)) || m.Timestamp.After(time.Now()) || time.Since(m.Timestamp) > time.Hour+time.Minute {
		t.Errorf("MSG time %v, want the hour it was stored in", m.Timestamp.UTC())
	}
	var hot bytes.Buffer
	if _, err := e.r.Backup(ctx, &hot); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(e.cfg.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(e.cfg.StorePath + ".keys")
	if err != nil {
		t.Fatal(err)
	}
	precise := preciseTimes(from.Add(-time.Second), to.Add(time.Second), time.Hour)
	for what, b := range map[string][]byte{"relay.db": data, "relay.db.keys": keys, "the hot backup": hot.Bytes()} {
		if got := precise.found(b); len(got) > 0 {
			t.Errorf("%s holds times to the second: %q", what, got)
		}
	}
	// The scan finds the coarse times, in the store's encoding.
	day := from.Truncate(24 * time.Hour).Unix()
	hour := from.Truncate(time.Hour).Unix()
	for what, v := range map[string]int64{"the day of creation": day, "the hour of the messages": hour} {
		if to.Truncate(time.Hour).Unix() != hour {
			break // the hour changed during the test
		}
		if !bytes.Contains(data, binary.BigEndian.AppendUint64(nil, uint64(v))) {
			t.Errorf("relay.db does not hold %s (%d): the scan proves nothing", what, v)
		}
	}
}

// v1Queue is a queue of testdata/store-v1/relay.db, a store written by
// the relay of format version 1 (before times were rounded), with the
// keys to use it (queues.json).
type v1Queue struct {
	RecipientID, SenderID, RecipientKey, MessageKey, SenderKey string
	State                                                      string // messages, acked, suspended, unsecured, deleted
	Bodies                                                     []string
}

// TestStoreFromVersion1 starts a relay on a store of format version 1:
// the relay converts it, the converted file holds no precise time and
// nothing acknowledged or deleted before, and every queue works as before
// with its messages, which are delivered in order, before new ones.
func TestStoreFromVersion1(t *testing.T) {
	qs, old, path := oldStore(t, "testdata/store-v1")
	// The times to the second in the old file: creation times at offset
	// 122 of the 142-byte records, message times at offset 24 of the
	// values.
	precise := secrets{}
	dead := secrets{"v1 deleted body 0": []byte("v1 deleted body 0"), "v1 deleted body 6": []byte("v1 deleted body 6")}
	for _, b := range dead {
		if !bytes.Contains(old, b) {
			t.Fatalf("the version 1 file does not hold %q: the test proves nothing", b)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		tx.Bucket([]byte("queues")).ForEach(func(k, v []byte) error {
			precise[fmt.Sprintf("created %x", k[:4])] = v[122:130]
			return nil
		})
		return tx.Bucket([]byte("messages")).ForEach(func(k, v []byte) error {
			precise[fmt.Sprintf("stored %x", k)] = v[24:32]
			return nil
		})
	})
	db.Close()
	if len(precise) < 10 {
		t.Fatalf("found %d times in the version 1 file", len(precise))
	}

	e, rep, data := convertStore(t, path)
	if rep.Queues != 4 || rep.Unsecured != 1 || rep.Suspended != 1 || rep.Messages != 3+2+5 {
		t.Errorf("converted store: %+v, want 4 queues (1 unsecured, 1 suspended) and 10 messages", rep)
	}
	for _, s := range []secrets{dead, precise} {
		if got := s.found(data); len(got) > 0 {
			t.Errorf("the converted file holds %q", got)
		}
	}

	useConverted(t, e, qs, time.Hour)
}

// oldStore reads the store of an older format in dir, written by the
// relay of that version: its queues (queues.json) and its file
// (relay.db), which it copies to path, in a directory of the test's,
// with its key file (relay.db.keys) if it has one.
func oldStore(t *testing.T, dir string) (qs []v1Queue, old []byte, path string) {
	t.Helper()
	js, err := os.ReadFile(filepath.Join(dir, "queues.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &qs); err != nil {
		t.Fatal(err)
	}
	old, err = os.ReadFile(filepath.Join(dir, "relay.db"))
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "relay.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	// Version 3 sealed the messages under the keys of its key file.
	if keys, err := os.ReadFile(filepath.Join(dir, "relay.db.keys")); err == nil {
		if err := os.WriteFile(path+".keys", keys, 0o600); err != nil {
			t.Fatal(err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return qs, old, path
}

// convertStore starts a relay on the store of an older format at path,
// which converts it, and restarts it (once converted, the file opens as
// it is). It returns the relay, running again, CheckStore's report of
// the converted file, taken while the relay was closed, and the file's
// bytes.
func convertStore(t *testing.T, path string) (e *e2eRelay, rep relay.StoreReport, data []byte) {
	t.Helper()
	e = startE2ERelay(t, func(c *relay.Config) {
		c.StorePath = path
		c.MessageTTL = 100 * 365 * 24 * time.Hour // the file's messages are old
		c.UnsecuredTTL = 100 * 365 * 24 * time.Hour
	})
	e.restart()
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := relay.CheckStore(path)
	if err == nil {
		checkVersion4(t, path)
	}
	e.restart()
	if err != nil {
		t.Fatal(err)
	}
	if data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return e, rep, data
}

// useConverted uses every queue of a converted store as its state says:
// the deleted one is gone, the unsecured one is empty, the others hold
// their bodies, in order, before a new one (refused on the suspended
// one). Old messages' times are multiples of unit.
func useConverted(t *testing.T, e *e2eRelay, qs []v1Queue, unit time.Duration) {
	var err error
	ctx := e2eContext(t)
	rc := e.dial(ctx, link.TransportTCP)
	for _, fq := range qs {
		var q link.Queue
		dec := func(s string) []byte {
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		copy(q.RecipientID[:], dec(fq.RecipientID))
		copy(q.SenderID[:], dec(fq.SenderID))
		copy(q.MessageKey[:], dec(fq.MessageKey))
		if q.RecipientKey, err = ecdh.X25519().NewPrivateKey(dec(fq.RecipientKey)); err != nil {
			t.Fatal(err)
		}
		var sk *ecdh.PrivateKey
		if fq.SenderKey != "" {
			if sk, err = ecdh.X25519().NewPrivateKey(dec(fq.SenderKey)); err != nil {
				t.Fatal(err)
			}
		}
		switch fq.State {
		case "deleted":
			if _, err := rc.Get(ctx, q); !errors.Is(err, queue.AUTH) {
				t.Errorf("GET on the deleted queue: %v, want AUTH", err)
			}
			continue
		case "unsecured":
			if _, err := rc.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
				t.Errorf("GET on the unsecured queue: %v, want no message", err)
			}
			continue
		case "suspended":
			if err := rc.Send(ctx, q.SenderID, sk, []byte("new")); !errors.Is(err, queue.AUTH) {
				t.Errorf("SEND to the suspended queue: %v, want AUTH", err)
			}
		default:
			if err := rc.Send(ctx, q.SenderID, sk, []byte("new")); err != nil {
				t.Fatalf("%s: SEND after the conversion: %v", fq.State, err)
			}
			fq.Bodies = append(fq.Bodies, "new")
		}
		for i, want := range fq.Bodies {
			m, err := rc.Get(ctx, q)
			if err != nil {
				t.Fatalf("%s: message %d: %v", fq.State, i, err)
			}
			if string(m.Body) != want {
				t.Errorf("%s: message %d is %q, want %q", fq.State, i, m.Body, want)
			}
			if want != "new" && !m.Timestamp.Equal(m.Timestamp.Truncate(unit)) {
				t.Errorf("%s: message %d: time %v, want it to the hour", fq.State, i, m.Timestamp)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := rc.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Errorf("%s: after every message: %v, want no message", fq.State, err)
		}
	}
}

// TestStoreFromVersion2 starts a relay on a store of format version 2
// (testdata/store-v2, written by the version 2 relay: bodies in the
// clear, the deleted queue's in free pages): the relay converts it, the
// converted file holds no body in the clear, live or not, and every queue
// works as before with its messages, delivered in order, before new ones.
func TestStoreFromVersion2(t *testing.T) {
	qs, old, path := oldStore(t, "testdata/store-v2")
	bodies := secrets{}
	for _, q := range qs {
		for _, b := range q.Bodies {
			bodies[b] = []byte(b)
		}
	}
	for i := range 7 {
		b := fmt.Sprintf("v2 deleted body %d", i)
		bodies[b] = []byte(b)
	}
	if got := bodies.found(old); len(got) < 10 {
		t.Fatalf("the version 2 file holds %d bodies in the clear: the test proves nothing", len(got))
	}
	if _, err := relay.CheckStore(path); err == nil {
		t.Error("CheckStore accepts a file of version 2")
	}
	e, rep, data := convertStore(t, path)
	if rep.Queues != 4 || rep.Unsecured != 1 || rep.Suspended != 1 || rep.Messages != 3+2+2 {
		t.Errorf("converted store: %+v, want 4 queues (1 unsecured, 1 suspended) and 7 messages", rep)
	}
	if got := bodies.found(data); len(got) > 0 {
		t.Errorf("the converted file holds in the clear %q", got)
	}
	useConverted(t, e, qs, time.Hour)
}

// TestStoreFromVersion3 starts a relay on a store of format version 3
// (testdata/store-v3, written by the version 3 relay, with its key file):
// the relay converts it in place, the file then has no index of queues
// never secured, and every queue works as before with its messages,
// delivered in order, before new ones. hush-relay check refuses the
// version 3 file as older; backup, restore and compact take it and give a
// version 4 file.
func TestStoreFromVersion3(t *testing.T) {
	qs, _, path := oldStore(t, "testdata/store-v3")
	if _, err := relay.CheckStore(path); !errors.Is(err, relay.ErrStoreOld) {
		t.Errorf("CheckStore of a file of version 3 = %v, want ErrStoreOld", err)
	}
	// The offline tools, on copies.
	dir := t.TempDir()
	copyOld := func(name string) string {
		p := filepath.Join(dir, name)
		for _, suffix := range []string{"", ".keys"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	var backup bytes.Buffer
	if _, err := relay.BackupStore(context.Background(), copyOld("backup-of.db"), &backup); err != nil {
		t.Fatalf("BackupStore(version 3): %v", err)
	}
	from := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(from, backup.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(dir, "restored.db")
	if _, err := relay.RestoreStore(from, restored); err != nil {
		t.Fatalf("RestoreStore(a backup of version 3): %v", err)
	}
	compacted := copyOld("compacted.db")
	if _, _, err := relay.CompactStore(compacted); err != nil {
		t.Fatalf("CompactStore(version 3): %v", err)
	}
	for _, p := range []string{restored, compacted} {
		rep, err := relay.CheckStore(p)
		if err != nil || rep.Queues != 4 || rep.Unsecured != 1 || rep.Suspended != 1 || rep.Messages != 3+2+2 {
			t.Errorf("%s: %+v, %v; want 4 queues (1 unsecured, 1 suspended) and 7 messages", filepath.Base(p), rep, err)
		}
		checkVersion4(t, p)
	}

	e, rep, _ := convertStore(t, path)
	if rep.Queues != 4 || rep.Unsecured != 1 || rep.Suspended != 1 || rep.Messages != 3+2+2 {
		t.Errorf("converted store: %+v, want 4 queues (1 unsecured, 1 suspended) and 7 messages", rep)
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	checkVersion4(t, path)
	e.restart()
	useConverted(t, e, qs, time.Hour)
}

// checkVersion4 checks that the store file at path, closed, has format
// version 4 and no index of queues never secured.
func checkVersion4(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("version")); !bytes.Equal(v, []byte{4}) {
			t.Errorf("%s: version %x, want 4", filepath.Base(path), v)
		}
		if tx.Bucket([]byte("unsecured")) != nil {
			t.Errorf("%s: the index of queues never secured is still there", filepath.Base(path))
		}
		return nil
	})
}

// TestRelayErasesKeysAndOverwritesFreePages runs a relay whose message
// time unit, and so its key period, is a second (a message TTL of 256 s)
// and whose sweep runs every 100 ms: after a message is acknowledged and
// a queue deleted, the relay itself erases every key from relay.db.keys
// and overwrites the deleted queue's IDs in relay.db, within a few key
// periods, while the queue it keeps still delivers (the wiring of
// TestStoreScanFindsNoAcknowledgedBody and TestStoreScanFindsNoDeletedQueue
// into the relay's sweep).
func TestRelayErasesKeysAndOverwritesFreePages(t *testing.T) {
	e := startE2ERelay(t, func(c *relay.Config) {
		c.MessageTTL = 256 * time.Second
		c.SweepInterval = 100 * time.Millisecond
	})
	ctx := e2eContext(t)
	rc := e.dial(ctx, link.TransportTCP)
	kept, ksk := e2eSecuredQueue(t, ctx, rc)
	gone, gsk := e2eSecuredQueue(t, ctx, rc)
	for _, q := range []struct {
		q  link.Queue
		sk *ecdh.PrivateKey
	}{{kept, ksk}, {gone, gsk}} {
		if err := rc.Send(ctx, q.q.SenderID, q.sk, privacyBody(5000)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := rc.Get(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Ack(ctx, gone, m.ID); err != nil {
		t.Fatal(err)
	}
	keysAt := func() map[string]bool {
		b, err := os.ReadFile(e.cfg.StorePath + ".keys")
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		for i := 16; i+48 <= len(b); i += 48 {
			if id := binary.BigEndian.Uint64(b[i:]); id != 0 {
				keys[hex.EncodeToString(b[i+16:i+48])] = true
			}
		}
		return keys
	}
	first := keysAt()
	if len(first) == 0 {
		t.Fatal("relay.db.keys holds no key after a SEND")
	}
	if err := rc.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	for {
		now, db := keysAt(), mustRead(t, e.cfg.StorePath)
		erased := true
		for k := range first {
			erased = erased && !now[k]
		}
		if erased && !bytes.Contains(db, gone.RecipientID[:]) && !bytes.Contains(db, gone.SenderID[:]) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the relay did not erase the first keys (%v) or overwrite the deleted queue's IDs (%v, %v)", erased,
				bytes.Contains(db, gone.RecipientID[:]), bytes.Contains(db, gone.SenderID[:]))
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := rc.Get(ctx, kept); err != nil {
		t.Fatalf("the kept queue's message after the erasure: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStoreHoldsNoAddress runs commands over TCP and QUIC from 127.0.0.1
// and scans relay.db, its key file and a hot backup for the client's
// address, in text and as 4 bytes: the store keeps no network address
// (PROTOCOL.md section 17).
func TestStoreHoldsNoAddress(t *testing.T) {
	e := startE2ERelay(t, nil)
	ctx := e2eContext(t)
	for _, tr := range []link.Transport{link.TransportTCP, link.TransportQUIC} {
		rc := e.dial(ctx, tr)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := rc.Send(ctx, q.SenderID, sk, privacyBody(4000)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Send(ctx, q.SenderID, sk, privacyBody(900)); err != nil {
			t.Fatal(err)
		}
		m, err := rc.Get(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	var hot bytes.Buffer
	if _, err := e.r.Backup(ctx, &hot); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	s := secrets{"127.0.0.1": []byte("127.0.0.1"), "127.0.0.1 as 4 bytes": {127, 0, 0, 1}}
	for what, b := range map[string][]byte{"relay.db": mustRead(t, e.cfg.StorePath), "relay.db.keys": mustRead(t, e.cfg.StorePath+".keys"), "the hot backup": hot.Bytes()} {
		if got := s.found(b); len(got) > 0 {
			t.Errorf("%s holds %q", what, got)
		}
	}
}
