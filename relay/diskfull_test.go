//go:build linux

package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// fillDisk appends to path until the filesystem is full (ENOSPC), and
// fails the test on any other error.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// fsFree returns the bytes free on the filesystem holding dir.
func fsFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// waitStorageFull polls the relay's storage_full gauge until it is want
// (1 or 0), and fails the test after wireTimeout.
func waitStorageFull(t *testing.T, base string, want float64) {
	t.Helper()
	deadline := time.Now().Add(wireTimeout)
	for {
		fams, _ := scrape(t, base)
		if metricValue(t, fams, "hush_relay_storage_full", "") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage_full did not become %v", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// diskFullBody is the body of the n-th message of a disk-full test: the
// largest, numbered.
func diskFullBody(n int) []byte {
	b := bytes.Repeat([]byte{byte(n)}, queue.MaxMessageSize)
	binary.BigEndian.PutUint32(b, uint32(n))
	return b
}

// drain GETs and ACKs q's next messages and checks that they are want,
// each exactly once and in order; with last, that no message follows.
func drain(t *testing.T, w *wireConn, q *wireQueue, want [][]byte, last bool) {
	t.Helper()
	for i, b := range want {
		c := w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		if got := q.open(t, c); !bytes.Equal(got, b) {
			t.Fatalf("message %d of %d: got number %d, want %d", i, len(want), binary.BigEndian.Uint32(got), binary.BigEndian.Uint32(b))
		}
		wireOK(t, fmt.Sprintf("ACK %d of %d", i, len(want)), w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: c.MsgID}))
	}
	if last {
		wireErr(t, "GET after the last message", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}), queue.NO_MSG)
	}
}

// diskFullRelay starts a relay whose store is on a tmpfs of size that the
// test mounts (MountSmallFS), with reserve as its free-disk reserve
// (MinFreeDisk), rates that never refuse and a queue quota only the disk
// reaches, and writes another file of otherSize bytes on that disk. It
// returns the relay, its admin server's base URL and the other file.
func diskFullRelay(t *testing.T, size string, reserve int64, otherSize int) (*relaytest.Relay, string, string) {
	t.Helper()
	fs := relay.MountSmallFS(t, size)
	rl := relaytest.New(t, func(c *relay.Config) {
		c.StorePath = filepath.Join(fs, "relay.db")
		c.NewRate, c.SendRate = 1e6, 1e6
		c.QueueQuota = 1 << 20 // only the disk refuses
		c.MinFreeDisk = reserve
	})
	base := adminServer(t, rl.Relay)
	other := filepath.Join(fs, "other")
	if err := os.WriteFile(other, make([]byte, otherSize), 0o600); err != nil {
		t.Fatal(err)
	}
	return rl, base, other
}

// sendUntilRefused SENDs diskFullBody(0), (1), ... to q until the relay
// refuses one, which it must answer with code (at says where the disk is
// then); it returns the bodies answered OK, in order, and fails the test
// if more than limit are.
func sendUntilRefused(t *testing.T, w *wireConn, q *wireQueue, limit int, code queue.ErrorCode, at string) [][]byte {
	t.Helper()
	var sent [][]byte
	for n := 0; ; n++ {
		if n > limit {
			t.Fatalf("no SEND refused after %d messages of %d bytes", limit, queue.MaxMessageSize)
		}
		b := diskFullBody(n)
		c := w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: b})
		if c.Tag == queue.TagERR {
			wireErr(t, fmt.Sprintf("SEND %d %s", n, at), c, code)
			return sent
		}
		wireOK(t, fmt.Sprintf("SEND %d", n), c)
		sent = append(sent, b)
	}
}

// TestDiskFull: section 16, full storage, on a real full disk: the store
// on a 10 MiB tmpfs the test mounts, with a free-disk reserve of 2 MiB and
// another file taking 3 MiB. SENDs of the largest body are answered OK
// until the reserve, then ERR QUOTA, never ERR INTERNAL (no commit
// fails); NEW is refused too. The other file then takes the disk's last
// byte: with nothing free at all, DEL and ACK still succeed, and once the
// drained messages' pages are free in the store, SEND works again in
// them. Once the other file is gone, NEW and SEND work as before. After a
// restart, every SEND answered OK is received exactly once, in order.
func TestDiskFull(t *testing.T) {
	rl, base, other := diskFullRelay(t, "10m", 2<<20, 3<<20)
	fs := filepath.Dir(other)
	w := dialWire(t, rl.HostPort, wireTCP)
	q, spare := w.newQueue(true), w.newQueue(true)

	// Fill the disk to its reserve.
	sent := sendUntilRefused(t, w, q, 2000, queue.QUOTA, "at the reserve")
	if len(sent) < 100 {
		t.Fatalf("only %d messages stored before the reserve, want the disk's free space (at least 100)", len(sent))
	}
	t.Logf("%d messages of %d bytes stored before the reserve; %d KiB free on the disk", len(sent), queue.MaxMessageSize, fsFree(t, fs)>>10)
	k, dh := newKey(t), newKey(t)
	wireErr(t, "NEW at the reserve", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.QUOTA)

	// The disk full to its last byte: DEL and ACK still work.
	fillDisk(t, other)
	if free := fsFree(t, fs); free != 0 {
		t.Fatalf("%d bytes still free after filling the disk", free)
	}
	wireOK(t, "DEL on a full disk", w.do(spare.rKey, spare.rid, queue.Command{Tag: queue.TagDEL}))
	half := len(sent) / 2
	drain(t, w, q, sent[:half], false)
	// The drained messages' pages are free in the store file: the relay
	// takes messages again, in them, although the disk is still full.
	waitStorageFull(t, base, 0)
	for n, end := len(sent), len(sent)+10; n < end; n++ {
		b := diskFullBody(n)
		wireOK(t, fmt.Sprintf("SEND %d in the freed pages of a full disk", n), w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: b}))
		sent = append(sent, b)
	}
	// The disk has space again.
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	waitStorageFull(t, base, 0)
	w.newQueue(false)
	b := diskFullBody(len(sent))
	wireOK(t, "SEND once the disk has space", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: b}))
	sent = append(sent, b)
	fams, _ := scrape(t, base)
	if n := metricValue(t, fams, "hush_relay_store_commit_errors_total", ""); n != 0 {
		t.Fatalf("%v commits failed, want none: the reserve keeps them from the disk's end", n)
	}
	if n := metricValue(t, fams, "hush_relay_storage_refusals_total", ""); n < 2 {
		t.Fatalf("storage_refusals_total = %v, want at least 2", n)
	}

	// Nothing acknowledged is lost, nothing comes twice.
	rl.Restart(t)
	w = dialWire(t, rl.HostPort, wireTCP)
	drain(t, w, q, sent[half:], true)
}

// TestDiskFullNoReserve: without a free-disk reserve the store reaches
// the disk's end: the SEND whose commit finds no space is answered ERR
// INTERNAL (it was not stored), and from then on NEW and SEND are answered
// ERR QUOTA while ACK works; once another file frees space, SEND works
// again. Every SEND answered OK is received exactly once, in order.
func TestDiskFullNoReserve(t *testing.T) {
	rl, base, other := diskFullRelay(t, "8m", -1, 2<<20)
	w := dialWire(t, rl.HostPort, wireTCP)
	q := w.newQueue(true)
	sent := sendUntilRefused(t, w, q, 1000, queue.INTERNAL, "at the disk's end")
	wireErr(t, "SEND after the disk was found full", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: diskFullBody(len(sent))}), queue.QUOTA)
	k, dh := newKey(t), newKey(t)
	wireErr(t, "NEW after the disk was found full", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.QUOTA)
	half := len(sent) / 2
	drain(t, w, q, sent[:half], false)
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	waitStorageFull(t, base, 0)
	b := diskFullBody(len(sent))
	wireOK(t, "SEND once the disk has space", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: b}))
	sent = append(sent, b)
	rl.Restart(t)
	w = dialWire(t, rl.HostPort, wireTCP)
	drain(t, w, q, sent[half:], true)
}
