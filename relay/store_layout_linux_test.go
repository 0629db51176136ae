package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

// bodyLayout is one way of keeping 16 KiB message values in bbolt,
// measured by BenchmarkStoreBodyLayout.
type bodyLayout struct {
	name     string
	pageSize int     // 0: bbolt's default (the OS page size, 4096 here)
	nested   bool    // each value in a bucket of its own under rid|seq
	chunk    int     // > 0: the value split into chunks of this size under rid|seq|i
	fill     float64 // the messages bucket's FillPercent (0: bbolt's default)
}

var bodyLayouts = []bodyLayout{
	{name: "flat"},
	{name: "flat-page16k", pageSize: 16 << 10},
	{name: "flat-page64k", pageSize: 64 << 10},
	{name: "nested", nested: true},
	{name: "nested-page8k", nested: true, pageSize: 8 << 10},
	{name: "nested-page16k", nested: true, pageSize: 16 << 10},
	{name: "chunk960", chunk: 960},
	{name: "chunk960-fill1", chunk: 960, fill: 1},
	{name: "chunk1990-fill1", chunk: 1990, fill: 1},
	{name: "chunk4040-fill1", chunk: 4040, fill: 1},
}

// BenchmarkStoreBodyLayout replays the relay's SEND/ACK workload on a real
// bbolt file, synced, for each body layout (issue 19): queues with random
// IDs, each SEND adding the next message of a queue (round robin over the
// queues, as hush-bench throughput sends) with its 16,064-byte value and
// its expiry entry, each ACK removing the oldest message held (its queue's
// head) in a later commit; ops operations a commit, half SENDs and half
// ACKs, held messages in the store at all times. It reports the process's
// CPU time per message (one SEND and one ACK: user and system, fdatasync
// included), the bytes written per message and per commit (wchar of
// /proc/self/io: the process writes nothing else while it runs) and the
// write system calls per message (syscw; bbolt writes each node with
// pwrite, then the meta page). The
// layouts and their figures are in "The store's write amplification
// (issue 19, round four)" in docs/performance.md.
func BenchmarkStoreBodyLayout(b *testing.B) {
	for _, l := range bodyLayouts {
		for _, ops := range []int{16, 56} {
			for _, held := range []int{64, 1024} {
				b.Run(fmt.Sprintf("layout=%s/ops=%d/held=%d", l.name, ops, held), func(b *testing.B) {
					benchLayout(b, l, ops, held)
				})
			}
		}
	}
}

func benchLayout(b *testing.B, l bodyLayout, ops, held int) {
	const nq = 1024
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "layout.db"), 0o600, &bbolt.Options{
		PageSize:     l.pageSize,
		FreelistType: bbolt.FreelistMapType,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rids := make([]queue.ID, nq)
	sids := make([]queue.ID, nq)
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketQueues, bucketSenders, bucketMessages, bucketExpiry} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		rec := make([]byte, 130)
		for i := range rids {
			rids[i], sids[i] = queue.NewID(), queue.NewID()
			if err := tx.Bucket(bucketQueues).Put(rids[i][:], rec); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSenders).Put(sids[i][:], rids[i][:]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, messageOverhead+16000)
	rand.Read(val)
	wrapped := make([]byte, 80)
	ts := int64(1 << 30)
	var (
		fifo []int // queue index of each message held, oldest first
		next int   // the queue of the next SEND
	)
	send := func(tx *bbolt.Tx) error {
		qi := next
		next = (next + 1) % nq
		rid := queue.ID(tx.Bucket(bucketSenders).Get(sids[qi][:]))
		if tx.Bucket(bucketQueues).Get(rid[:]) == nil {
			return errNotFound
		}
		msgs := tx.Bucket(bucketMessages)
		if l.fill > 0 {
			msgs.FillPercent = l.fill
		}
		seq := layoutNext(msgs, rid)
		if err := layoutPut(msgs, l, rid, seq, val); err != nil {
			return err
		}
		fifo = append(fifo, qi)
		return tx.Bucket(bucketExpiry).Put(expiryKey(ts, rid, seq), wrapped)
	}
	ack := func(tx *bbolt.Tx) error {
		qi := fifo[0]
		fifo = fifo[1:]
		rid := rids[qi]
		if tx.Bucket(bucketQueues).Get(rid[:]) == nil {
			return errNotFound
		}
		msgs := tx.Bucket(bucketMessages)
		if l.fill > 0 {
			msgs.FillPercent = l.fill
		}
		seq, head, ok := layoutHead(msgs, l, rid)
		if !ok || len(head) < 48 {
			return fmt.Errorf("queue %d: no head", qi)
		}
		ek := expiryKey(ts, rid, seq)
		if tx.Bucket(bucketExpiry).Get(ek) == nil {
			return fmt.Errorf("queue %d: no expiry entry", qi)
		}
		if err := layoutDelete(msgs, l, rid, seq); err != nil {
			return err
		}
		return tx.Bucket(bucketExpiry).Delete(ek)
	}
	// Fill the store with held messages, in commits of ops/2 SENDs.
	for len(fifo) < held {
		if err := db.Update(func(tx *bbolt.Tx) error {
			for range min(ops/2, held-len(fifo)) {
				if err := send(tx); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	commits := max(1, b.N*2/ops)
	msgs := commits * ops / 2
	w0, n0, cpu0, st0 := procIO(b, "wchar"), procIO(b, "syscw"), processCPU(), db.Stats()
	b.ResetTimer()
	for range commits {
		if err := db.Update(func(tx *bbolt.Tx) error {
			for range ops / 2 {
				if err := send(tx); err != nil {
					return err
				}
			}
			for range ops / 2 {
				if err := ack(tx); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st1 := db.Stats()
	cpu, w, n, st := processCPU()-cpu0, procIO(b, "wchar")-w0, procIO(b, "syscw")-n0, st1.Sub(&st0)
	b.ReportMetric(float64(cpu.Microseconds())/float64(msgs), "cpu-us/msg")
	b.ReportMetric(float64(w)/float64(msgs), "written-B/msg")
	b.ReportMetric(float64(w)/float64(commits), "written-B/commit")
	b.ReportMetric(float64(n)/float64(msgs), "writes/msg")
	b.ReportMetric(float64(st.TxStats.GetPageAlloc())/float64(msgs), "alloc-B/msg")
	b.ReportMetric(float64(st.TxStats.GetSplit())/float64(commits), "splits/commit")
	b.ReportMetric(float64(st.TxStats.GetRebalance())/float64(commits), "rebalances/commit")
	b.ReportMetric(float64(st1.FreePageN+st1.PendingPageN), "free-pages")
	b.ReportMetric(float64(st1.FreelistInuse), "freelist-B")
	b.ReportMetric(0, "ns/op")
	// The store still holds every queue's messages in order.
	if err := db.View(func(tx *bbolt.Tx) error {
		n, got := len(fifo), 0
		c := tx.Bucket(bucketMessages).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == messageKeySize || (l.chunk > 0 && len(k) == messageKeySize+1 && k[messageKeySize] == 0) {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d messages held, want %d", got, n)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}

// layoutNext returns the sequence number of queue rid's next message:
// one after the last key under rid.
func layoutNext(msgs *bbolt.Bucket, rid queue.ID) uint64 {
	c := msgs.Cursor()
	k, _ := c.Seek(rid[:])
	if !bytes.HasPrefix(k, rid[:]) {
		return 0
	}
	var last uint64
	for ; bytes.HasPrefix(k, rid[:]) && len(k) >= messageKeySize; k, _ = c.Next() {
		last = binary.BigEndian.Uint64(k[queue.IDSize:])
	}
	return last + 1
}

// layoutPut stores val as queue rid's message seq in layout l.
func layoutPut(msgs *bbolt.Bucket, l bodyLayout, rid queue.ID, seq uint64, val []byte) error {
	mk := messageKey(rid, seq)
	switch {
	case l.nested:
		bk, err := msgs.CreateBucket(mk)
		if err != nil {
			return err
		}
		return bk.Put([]byte{0}, val)
	case l.chunk > 0:
		for i := 0; i*l.chunk < len(val); i++ {
			if err := msgs.Put(append(mk, byte(i)), val[i*l.chunk:min(len(val), (i+1)*l.chunk)]); err != nil {
				return err
			}
		}
		return nil
	default:
		return msgs.Put(mk, val)
	}
}

// layoutHead returns the oldest message of queue rid and the first bytes
// of its value (at least its time and sealed ID).
func layoutHead(msgs *bbolt.Bucket, l bodyLayout, rid queue.ID) (seq uint64, head []byte, ok bool) {
	k, v := msgs.Cursor().Seek(rid[:])
	if len(k) < messageKeySize || !bytes.HasPrefix(k, rid[:]) {
		return 0, nil, false
	}
	seq = binary.BigEndian.Uint64(k[queue.IDSize:])
	if l.nested {
		v = msgs.Bucket(k).Get([]byte{0})
	}
	return seq, v, true
}

// layoutDelete removes queue rid's message seq in layout l.
func layoutDelete(msgs *bbolt.Bucket, l bodyLayout, rid queue.ID, seq uint64) error {
	mk := messageKey(rid, seq)
	switch {
	case l.nested:
		return msgs.DeleteBucket(mk)
	case l.chunk > 0:
		for i := 0; i < math.MaxUint8; i++ {
			k := append(mk, byte(i))
			if msgs.Get(k) == nil {
				return nil
			}
			if err := msgs.Delete(k); err != nil {
				return err
			}
		}
		return nil
	default:
		return msgs.Delete(mk)
	}
}

// procIO returns the field name of /proc/self/io: wchar, the bytes this
// process has passed to write system calls, or syscw, their number.
func procIO(b *testing.B, name string) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/self/io", name)
	return 0
}
