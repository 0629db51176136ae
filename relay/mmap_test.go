package relay

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hushrelay/hush/queue"
)

// rssFile returns the process's RssFile from /proc/self/status, in bytes.
func rssFile(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("RssFile:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			t.Fatalf("/proc/self/status: %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			t.Fatalf("/proc/self/status: %q: %v", line, err)
		}
		return kb << 10
	}
	t.Fatal("/proc/self/status: no RssFile")
	return 0
}

// createTestQueues creates n unsecured queues, submitted all at once so
// that they share group commits, and returns them.
func createTestQueues(t testing.TB, s *store, n int) []queueRecord {
	t.Helper()
	done := waiter[error](t)
	recs := make([]queueRecord, n)
	chs := make([]<-chan error, n)
	for i := range recs {
		recs[i] = newTestRecord(1_700_000_000 + int64(i))
		copy(recs[i].MessageKey[:], recs[i].SenderID[:]) // distinct per queue
		ch, err := s.createQueue(context.Background(), recs[i])
		if err != nil {
			t.Fatalf("createQueue: %v", err)
		}
		chs[i] = ch
	}
	for i, ch := range chs {
		if err := done(ch, nil); err != nil {
			t.Fatalf("createQueue %d: %v", i, err)
		}
	}
	return recs
}

// checkTestQueues reads every queue back by both IDs and reports the first
// difference; it may run on any goroutine.
func checkTestQueues(t testing.TB, s *store, recs []queueRecord) bool {
	t.Helper()
	for i, want := range recs {
		got, ok, err := s.queueByRecipient(want.RecipientID)
		if err != nil || !ok || got != want {
			t.Errorf("queue %d by recipient: ok %v, err %v, equal %v", i, ok, err, got == want)
			return false
		}
		got, ok, err = s.queueBySender(want.SenderID)
		if err != nil || !ok || got != want {
			t.Errorf("queue %d by sender: ok %v, err %v, equal %v", i, ok, err, got == want)
			return false
		}
	}
	return true
}

// TestStoreTrimMapping fills a store, maps its whole file by reading every
// queue, and checks that a trim takes the file's pages out of the process
// and that everything still reads back.
func TestStoreTrimMapping(t *testing.T) {
	if !canDropMapping {
		t.Skip("mapping trims work on Linux only")
	}
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path, storeOptions{MappedLimit: -1}) // only this test trims
	recs := createTestQueues(t, s, 40000)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var used int64 // the pages in use, which reading every queue maps
	if err := s.db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	if used <= 2*storeTrimChunk {
		t.Fatalf("store uses %d bytes, want more than two trim chunks (%d bytes) for a meaningful test", used, 2*storeTrimChunk)
	}

	// Start from nothing mapped.
	if _, dropped, err := s.trimMapping(0); err != nil || !dropped {
		t.Fatalf("trimMapping(0) = dropped %v, %v", dropped, err)
	}
	base := rssFile(t)
	shared, err := fileResident()
	if err != nil {
		t.Fatal(err)
	}
	if !checkTestQueues(t, s, recs) {
		return
	}
	mapped := rssFile(t)
	t.Logf("file %.1f MiB, %.1f MiB used; RssFile %.1f MiB trimmed, %.1f MiB after reading %d queues",
		float64(fi.Size())/(1<<20), float64(used)/(1<<20), float64(base)/(1<<20), float64(mapped)/(1<<20), len(recs))
	if mapped-base < used/2 {
		t.Fatalf("reading every queue mapped %d bytes of %d used: the test measures nothing", mapped-base, used)
	}

	// A limit above the current residency: nothing to do.
	if _, dropped, err := s.trimMapping(mapped + fi.Size()); err != nil || dropped {
		t.Fatalf("trimMapping(above) = dropped %v, %v", dropped, err)
	}
	limit := shared + 8<<20
	trims := s.trims.Load()
	resident, dropped, err := s.trimMapping(limit)
	if err != nil || !dropped {
		t.Fatalf("trimMapping(%d) = dropped %v, %v (resident %d)", limit, dropped, err, resident)
	}
	if resident <= limit {
		t.Errorf("trimMapping reported resident %d, not above the limit %d", resident, limit)
	}
	if n := s.trims.Load() - trims; n != 1 {
		t.Errorf("trims counted %d, want 1", n)
	}
	after := rssFile(t)
	t.Logf("RssFile %.1f MiB after the trim (limit %.1f MiB)", float64(after)/(1<<20), float64(limit)/(1<<20))
	if after > limit {
		t.Errorf("RssFile %d after the trim, want at most the limit %d", after, limit)
	}
	// Every chunk was dropped, not only the first: back to where the
	// reads started, but for a few pages of the test's own code.
	if after-base > storeTrimChunk/8 {
		t.Errorf("RssFile %d after the trim, %d more than before the reads", after, after-base)
	}

	checkTestQueues(t, s, recs)
	if again := rssFile(t); again-after < used/2 {
		t.Errorf("reading every queue again mapped only %d bytes", again-after)
	}
}

// TestStoreTrimMappingConcurrent trims the mapping all the time, from
// trimLoop (limit 1 byte) and from another goroutine, while the file
// grows (so bbolt remaps it) and readers check queues, for the race
// detector and for bbolt's remapping. Every queue must read back intact.
func TestStoreTrimMappingConcurrent(t *testing.T) {
	if !canDropMapping {
		t.Skip("mapping trims work on Linux only")
	}
	type trim struct {
		resident int64
		err      error
	}
	trimmed := make(chan trim, 1)
	s := openTestStore(t, "", storeOptions{
		MappedLimit: 1,
		OnTrim: func(resident int64, _ time.Duration, err error) {
			select {
			case trimmed <- trim{resident, err}:
			default:
			}
		},
	})
	var (
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.trimMapping(0); err != nil {
				t.Errorf("trimMapping: %v", err)
				return
			}
		}
	})
	var all []queueRecord
	for range 8 {
		recs := createTestQueues(t, s, 2500)
		all = append(all, recs...)
		wg.Go(func() {
			for range 3 {
				checkTestQueues(t, s, recs)
			}
		})
	}
	checkTestQueues(t, s, all)
	select {
	case tr := <-trimmed:
		if tr.err != nil || tr.resident <= 1 {
			t.Errorf("trimLoop: resident %d, %v", tr.resident, tr.err)
		}
	case <-time.After(storeTestWait):
		t.Errorf("trimLoop did not trim within %v", storeTestWait)
	}
	close(stop)
	wg.Wait()
	if s.trims.Load() == 0 {
		t.Error("no trim counted")
	}
}

// BenchmarkStoreTrimMapping measures a trim of a fully mapped 20,000-queue
// store (about 10 MB): the /proc reads and the madvise.
func BenchmarkStoreTrimMapping(b *testing.B) {
	if !canDropMapping {
		b.Skip("mapping trims work on Linux only")
	}
	s := openTestStore(b, "", storeOptions{MappedLimit: -1})
	recs := createTestQueues(b, s, 20000)
	ids := make([]queue.ID, len(recs))
	for i, r := range recs {
		ids[i] = r.RecipientID
	}
	for b.Loop() {
		b.StopTimer()
		for _, id := range ids {
			s.queueByRecipient(id)
		}
		b.StartTimer()
		if _, dropped, err := s.trimMapping(0); err != nil || !dropped {
			b.Fatalf("trimMapping = dropped %v, %v", dropped, err)
		}
	}
}

// TestTrimDue checks when trimLoop may drop: at once before its first
// drop and once the store has been at rest for storeTrimRest, and while
// the store is busy only storeTrimBusyGap after its last drop (half a
// check early).
func TestTrimDue(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name                 string
		lastDrop, lastActive time.Time
		want                 bool
	}{
		{"no drop yet, busy", time.Time{}, now, true},
		{"no drop yet, at rest", time.Time{}, ago(time.Hour), true},
		{"dropped at the last check, busy", ago(storeTrimInterval), now, false},
		{"dropped a second ago, busy until the last check", ago(time.Second), ago(storeTrimInterval), false},
		{"busy until just under the rest", ago(2 * storeTrimRest), ago(storeTrimRest - time.Millisecond), false},
		{"at rest for storeTrimRest", ago(2 * storeTrimRest), ago(storeTrimRest), true},
		{"busy, a check before the gap", ago(storeTrimBusyGap - storeTrimInterval), now, false},
		{"busy, half a check before the gap", ago(storeTrimBusyGap - storeTrimInterval/2), now, true},
		{"busy, past the gap", ago(2 * storeTrimBusyGap), now, true},
	} {
		if got := trimDue(now, c.lastDrop, c.lastActive); got != c.want {
			t.Errorf("%s: trimDue = %v, want %v", c.name, got, c.want)
		}
	}
	if storeTrimRest >= storeTrimBusyGap {
		t.Errorf("storeTrimRest %v is not shorter than storeTrimBusyGap %v: a store at rest would wait as long as a busy one", storeTrimRest, storeTrimBusyGap)
	}
}
