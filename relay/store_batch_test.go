package relay

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// BenchmarkStoreCommitSize measures what a group commit costs, against
// how many operations share it: n goroutines, each on its own queue, add
// a 16 KiB message and wait for its commit, then read and acknowledge it,
// and the store gathers exactly n operations per commit (GatherOps n,
// GatherWait 1s, gathering always on). It reports the process's CPU time
// (user and system, getrusage) per SEND+ACK pair and the commits per
// pair; the difference between sizes is the fixed cost of a commit (see
// "Latency against CPU: the size of a commit" in docs/performance.md).
func BenchmarkStoreCommitSize(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8, 16, 32} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := openTestStore(b, "", storeOptions{GatherOps: n, GatherWait: time.Second, GatherRate: 1e-9})
			ctx := context.Background()
			k := testKey(13)
			body := make([]byte, queue.MaxMessageSize)
			qs := make([]queueRecord, n)
			for i := range qs {
				qs[i] = createTestQueue(b, s, 1000, &k)
			}
			// every goroutine does its part of one round at a time
			step := func(f func(q queueRecord) error) {
				var wg sync.WaitGroup
				for _, q := range qs {
					wg.Go(func() {
						if err := f(q); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			rounds := max(1, b.N/n)
			cpu0, commits0 := processCPU(), s.commits.Load()
			b.ResetTimer()
			for range rounds {
				step(func(q queueRecord) error {
					ch, err := s.addMessage(ctx, q.SenderID, storedMessage{ID: queue.NewID(), Body: body}, 128)
					if err != nil {
						return err
					}
					return (<-ch).Err
				})
				step(func(q queueRecord) error {
					m, ok, err := s.firstMessage(q.RecipientID)
					if err != nil || !ok {
						return fmt.Errorf("no head message: %v", err)
					}
					ch, err := s.ackMessage(ctx, q.RecipientID, m.ID)
					if err != nil {
						return err
					}
					return <-ch
				})
			}
			b.StopTimer()
			pairs := float64(rounds * n)
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/pairs, "cpu-us/pair")
			b.ReportMetric(float64(s.commits.Load()-commits0)/pairs, "commits/pair")
		})
	}
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
