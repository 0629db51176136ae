package link

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// forEach runs f(0) to f(n-1), at most width at a time, and returns the
// first error.
func forEach(n, width int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, width)
		once  sync.Once
		first error
	)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err })
			}
		})
	}
	wg.Wait()
	return first
}

// TestDrainManyQueues has 1,000 queues on one relay hold two messages
// each, and one connection subscribe to all of them and drain them,
// acknowledging each message while others are still unread (this stalled
// once more than 64 queues had messages waiting, when the reader waited
// for the application). Every message arrives exactly once and in order,
// on the one connection, with no command timing out. It logs the drain
// time, from the first SUB to the last ACK's OK.
func TestDrainManyQueues(t *testing.T) {
	const nq, per = 1000, 2
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			// No deadline on commands; only a bound on the whole test, far
			// beyond what it needs on a loaded machine.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			addr := startRelay(t, nil)
			// The relay runs a session's commands one after another, each
			// waiting for its commit: many sessions share commits.
			// The test is about flow control, not liveness: an idle
			// timeout far above the default keeps a machine loaded by
			// other tests (the race detector, parallel packages) from
			// ending a busy connection (seen once with 5 s).
			cfg := Config{Transport: tr, TransportIdleTimeout: time.Minute}
			setups := make([]*Conn, 32)
			for i := range setups {
				setups[i] = dialPeer(t, ctx, addr, cfg)
			}
			qs := make([]Queue, nq)
			err := forEach(nq, len(setups), func(i int) error {
				setup := setups[i%len(setups)]
				q, err := setup.Create(ctx)
				if err != nil {
					return err
				}
				k, err := queue.GenerateKey()
				if err != nil {
					return err
				}
				if err := setup.Secure(ctx, q, queue.PublicKey(k)); err != nil {
					return err
				}
				for j := range per {
					if err := setup.Send(ctx, q.SenderID, k, fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
						return err
					}
				}
				qs[i] = q
				return nil
			})
			if err != nil {
				t.Fatalf("filling the queues: %v", err)
			}
			byID := make(map[queue.ID]int, nq)
			for i, q := range qs {
				byID[q.RecipientID] = i
			}

			c := dialPeer(t, ctx, addr, cfg)
			start := time.Now()
			got := make([][]int, nq) // per queue, the j of each message in the order received
			recvDone := make(chan error, 1)
			var acks sync.WaitGroup
			defer acks.Wait()
			go func() {
				for n := 0; n < nq*per; n++ {
					var ev Event
					select {
					case ev = <-c.Events():
					case <-ctx.Done():
						recvDone <- fmt.Errorf("after %d messages: %w", n, ctx.Err())
						return
					}
					if ev.Kind != EventMessage || ev.Err != nil {
						recvDone <- fmt.Errorf("event %+v (connection: %v)", ev, c.Err())
						return
					}
					var i, j int
					if _, err := fmt.Sscanf(string(ev.Message.Body), "%d/%d", &i, &j); err != nil || byID[ev.RecipientID] != i {
						recvDone <- fmt.Errorf("message %q on queue %d", ev.Message.Body, byID[ev.RecipientID])
						return
					}
					got[i] = append(got[i], j)
					// The ACK waits for its OK in a goroutine of its own
					// (one per queue at most: the relay sends a queue's
					// next message after the OK).
					acks.Go(func() {
						if err := c.Ack(ctx, qs[i], ev.Message.ID); err != nil {
							t.Errorf("ack: %v", err)
						}
					})
				}
				recvDone <- nil
			}()
			if err := forEach(nq, 64, func(i int) error { return c.Subscribe(ctx, qs[i]) }); err != nil {
				t.Fatalf("subscribing: %v", err)
			}
			if err := <-recvDone; err != nil {
				t.Fatal(err)
			}
			acks.Wait()
			elapsed := time.Since(start)
			t.Logf("%s: %d queues, %d messages drained in %v", tr, nq, nq*per, elapsed.Round(time.Millisecond))

			// Nothing comes again: a PING's answer follows anything the
			// relay sent before it.
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-c.Events():
				t.Fatalf("an event after the drain: %+v", ev)
			case <-time.After(200 * time.Millisecond):
			}
			want := make([]int, per)
			for j := range want {
				want[j] = j
			}
			for i := range got {
				if !slices.Equal(got[i], want) {
					t.Fatalf("queue %d delivered %v, want %v", i, got[i], want)
				}
			}
			if err := c.Err(); err != nil {
				t.Fatalf("the connection ended: %v", err)
			}
		})
	}
}
