package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestStorageFull: section 16, the stored-bytes cap. While the store holds
// its cap, NEW and SEND are answered ERR QUOTA, and GET, ACK and DEL work;
// every SEND answered OK is received exactly once; once messages are
// acknowledged, SEND and NEW work again. The counts the commit loop keeps
// match the store after a restart.
func TestStorageFull(t *testing.T) {
	const body = 1000
	rl := relaytest.New(t, func(c *relay.Config) {
		c.NewRate, c.SendRate = 1e6, 1e6
		c.MaxStoredBytes = 2*256 + 10*(body+64) // two queues and ten messages
	})
	base := adminServer(t, rl.Relay)
	w := dialWire(t, rl.HostPort, wireTCP)
	q, spare := w.newQueue(true), w.newQueue(true)

	// Fill the store: every SEND is answered OK until the cap, then QUOTA.
	var sent [][]byte
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("no SEND refused after 100 messages")
		}
		b := bytes.Repeat([]byte{byte(i)}, body)
		c := w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: b})
		if c.Tag == queue.TagERR {
			wireErr(t, "SEND at the cap", c, queue.QUOTA)
			break
		}
		wireOK(t, fmt.Sprintf("SEND %d", i), c)
		sent = append(sent, b)
	}
	if len(sent) != 10 {
		t.Fatalf("%d messages stored before the cap, want 10", len(sent))
	}
	k, dh := newKey(t), newKey(t)
	wireErr(t, "NEW at the cap", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.QUOTA)
	fams, _ := scrape(t, base)
	if got := metricValue(t, fams, "hush_relay_storage_full", ""); got != 1 {
		t.Fatalf("storage_full = %v, want 1", got)
	}
	if got := metricValue(t, fams, "hush_relay_storage_refusals_total", ""); got != 2 {
		t.Fatalf("storage_refusals_total = %v, want 2", got)
	}
	if got := metricValue(t, fams, "hush_relay_stored_bytes", ""); got != 2*256+10*(body+64) {
		t.Fatalf("stored_bytes = %v, want %d", got, 2*256+10*(body+64))
	}

	// DEL works while full.
	wireOK(t, "DEL while full", w.do(spare.rKey, spare.rid, queue.Command{Tag: queue.TagDEL}))
	// GET and ACK drain the queue, each message once and in order.
	for i, want := range sent {
		c := w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		if got := q.open(t, c); !bytes.Equal(got, want) {
			t.Fatalf("message %d: got %d bytes of %d, want %d of %d", i, len(got), got[0], len(want), want[0])
		}
		wireOK(t, fmt.Sprintf("ACK %d while full", i), w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: c.MsgID}))
	}
	wireErr(t, "GET after the last ACK", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}), queue.NO_MSG)

	// Service resumes.
	wireOK(t, "SEND after the ACKs", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("again")}))
	w.newQueue(false)
	fams, _ = scrape(t, base)
	if got := metricValue(t, fams, "hush_relay_storage_full", ""); got != 0 {
		t.Fatalf("storage_full = %v after the ACKs, want 0", got)
	}

	// The counts survive a restart (they are in the file).
	rl.Restart(t)
	fams, _ = scrape(t, adminServer(t, rl.Relay))
	for _, m := range []struct {
		name string
		want float64
	}{
		{"hush_relay_queues", 2},
		{"hush_relay_messages_stored", 1},
		{"hush_relay_stored_bytes", 2*256 + 5 + 64},
	} {
		if got := metricValue(t, fams, m.name, ""); got != m.want {
			t.Errorf("after a restart, %s = %v, want %v", m.name, got, m.want)
		}
	}
}

// TestDiskReserve: below the free-disk reserve (here, more than any disk
// has), NEW and SEND are answered ERR QUOTA while ACK and DEL work.
func TestDiskReserve(t *testing.T) {
	rl := relaytest.New(t, func(c *relay.Config) { c.NewRate, c.SendRate = 1e6, 1e6 })
	w := dialWire(t, rl.HostPort, wireTCP)
	q := w.newQueue(true)
	wireOK(t, "SEND", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("kept")}))
	rl.Config.MinFreeDisk = math.MaxInt64
	rl.Restart(t)
	base := adminServer(t, rl.Relay)
	w = dialWire(t, rl.HostPort, wireTCP)
	wireErr(t, "SEND below the reserve", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), queue.QUOTA)
	k, dh := newKey(t), newKey(t)
	wireErr(t, "NEW below the reserve", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.QUOTA)
	c := w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
	if got := q.open(t, c); string(got) != "kept" {
		t.Fatalf("GET below the reserve: %q", got)
	}
	wireOK(t, "ACK below the reserve", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: c.MsgID}))
	wireOK(t, "DEL below the reserve", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}))
	fams, _ := scrape(t, base)
	if got := metricValue(t, fams, "hush_relay_storage_full", ""); got != 1 {
		t.Fatalf("storage_full = %v, want 1", got)
	}
}

// TestBackupSlowReader: a backup whose reader does not read holds nothing
// of the store: while it waits, SENDs that grow the store's file are
// answered OK; the backup, read afterwards, is a consistent store holding
// the state of its moment.
func TestBackupSlowReader(t *testing.T) {
	rl := relaytest.New(t, func(c *relay.Config) { c.NewRate, c.SendRate = 1e6, 1e6 })
	w := dialWire(t, rl.HostPort, wireTCP)
	q := w.newQueue(true)
	wireOK(t, "SEND before the backup", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("before")}))

	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := rl.Backup(t.Context(), pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	// The backup has started writing (its spool is complete) and now
	// waits for this reader.
	first := make([]byte, 1)
	if _, err := io.ReadFull(pr, first); err != nil {
		t.Fatal(err)
	}
	// Grow the store's file well beyond its size at the backup.
	body := bytes.Repeat([]byte{1}, queue.MaxMessageSize)
	for i := range 100 {
		qq := q
		if i%50 == 0 {
			qq = w.newQueue(true)
		}
		wireOK(t, fmt.Sprintf("SEND %d during the backup", i), w.do(qq.sKey, qq.sid, queue.Command{Tag: queue.TagSEND, Body: body}))
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(first)
	if _, err := io.Copy(f, pr); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("backup: %v", err)
	}
	rep, err := relay.CheckStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Queues != 1 || rep.Messages != 1 {
		t.Fatalf("the backup holds %d queues and %d messages, want the 1 and 1 of its moment", rep.Queues, rep.Messages)
	}
	// No spool is left behind.
	left, err := filepath.Glob(filepath.Join(filepath.Dir(rl.Config.StorePath), ".backup-*"))
	if err != nil || len(left) != 0 {
		t.Fatalf("spool files left: %v %v", left, err)
	}
}
