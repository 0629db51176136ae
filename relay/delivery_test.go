package relay_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// TestDeliveryExactlyOnceUnderLoad puts the load of hush-bench throughput
// on a relay: two sender connections with four SENDs in flight each, over
// 16 queues of two receiver connections that acknowledge every message
// in a goroutine of its own, so that ACKs and SENDs of many queues share
// group commits (and ACKs empty whole pages of the store in the
// transaction of a SEND). Counted: every message answered OK is delivered
// exactly once, those of one sending goroutine to one queue in the order
// it sent them, no ACK is refused, and the queues are empty at the end.
func TestDeliveryExactlyOnceUnderLoad(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		const (
			queues    = 16
			receivers = 2
			senders   = 2
			window    = 4  // sending goroutines per sender connection
			perSender = 48 // SENDs of each goroutine, spread over the queues
		)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		e := startE2ERelay(t, nil)
		rcs := make([]*link.Conn, receivers)
		for i := range rcs {
			rcs[i] = e.dial(ctx, transport)
		}
		scs := make([]*link.Conn, senders)
		for i := range scs {
			scs[i] = e.dial(ctx, transport)
		}
		qs := make([]link.Queue, queues)
		sks := make([]*ecdh.PrivateKey, queues)
		byRID := make(map[queue.ID]int)
		for i := range qs {
			qs[i], sks[i] = e2eSecuredQueue(t, ctx, rcs[i%receivers])
			byRID[qs[i].RecipientID] = i
		}

		// A message's body starts with the key that names it:
		//	queue uint16 | sender uint8 | goroutine uint8 | n uint32
		// where n counts the goroutine's messages to the queue from 1;
		// the rest is random, up to the largest size.
		type stream struct{ q, s, g int }
		var (
			mu         sync.Mutex
			sent       = make(map[string]bool) // answered OK
			deliveries = make(map[string]int)
			lastN      = make(map[stream]uint32) // per stream, the n delivered last
			problems   []string
			acked      int // ACKs answered OK
		)
		problem := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if len(problems) < 20 {
				problems = append(problems, fmt.Sprintf(format, args...))
			}
		}

		var ackWG sync.WaitGroup
		var recvWG sync.WaitGroup
		for _, rc := range rcs {
			recvWG.Go(func() {
				for ev := range rc.Events() {
					qi, ok := byRID[ev.RecipientID]
					if ev.Kind != link.EventMessage || ev.Err != nil || !ok || len(ev.Message.Body) < 8 {
						problem("event %v (err %v) for queue %v", ev.Kind, ev.Err, ev.RecipientID)
						continue
					}
					b := ev.Message.Body
					key := string(b[:8])
					st := stream{int(binary.BigEndian.Uint16(b)), int(b[2]), int(b[3])}
					n := binary.BigEndian.Uint32(b[4:])
					mu.Lock()
					deliveries[key]++
					dup := deliveries[key] > 1
					prev := lastN[st]
					if !dup {
						lastN[st] = n
					}
					mu.Unlock()
					switch {
					case st.q != qi:
						problem("a message to queue %d delivered from queue %d", st.q, qi)
					case dup:
						problem("message %d of sender %d goroutine %d to queue %d delivered again", n, st.s, st.g, st.q)
					case n != prev+1:
						problem("message %d of sender %d goroutine %d to queue %d delivered after message %d", n, st.s, st.g, st.q, prev)
					}
					ackWG.Go(func() {
						if err := rc.Ack(ctx, qs[qi], ev.Message.ID); err != nil {
							problem("ACK of message %d of sender %d goroutine %d to queue %d: %v", n, st.s, st.g, st.q, err)
							return
						}
						mu.Lock()
						acked++
						mu.Unlock()
					})
				}
			})
		}
		for i, q := range qs {
			if err := rcs[i%receivers].Subscribe(ctx, q); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
		}

		var sendWG sync.WaitGroup
		for si, sc := range scs {
			for g := range window {
				sendWG.Go(func() {
					counts := make([]uint32, queues)
					for i := range perSender {
						qi := (g*senders + si + i) % queues
						counts[qi]++
						body := make([]byte, queue.MaxMessageSize)
						rand.Read(body)
						binary.BigEndian.PutUint16(body, uint16(qi))
						body[2], body[3] = byte(si), byte(g)
						binary.BigEndian.PutUint32(body[4:], counts[qi])
						if err := sc.Send(ctx, qs[qi].SenderID, sks[qi], body); err != nil {
							problem("send %d of sender %d goroutine %d: %v", i, si, g, err)
							return
						}
						mu.Lock()
						sent[string(body[:8])] = true
						mu.Unlock()
					}
				})
			}
		}
		sendWG.Wait()

		// Wait until every message sent has been acknowledged (a refused
		// ACK is a problem, so then this waits for the deadline).
		for {
			mu.Lock()
			n, enough, failed := acked, acked >= len(sent), len(problems) > 0
			mu.Unlock()
			if enough || failed {
				break
			}
			if ctx.Err() != nil {
				t.Errorf("%d of %d messages acknowledged before the deadline", n, senders*window*perSender)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Nothing is left to deliver again (asked with a deadline of its
		// own, so that a queue left behind shows after a timeout too).
		gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer gcancel()
		other := e.dial(gctx, transport)
		for i, q := range qs {
			if m, err := other.Get(gctx, q); !errors.Is(err, link.ErrNoMessage) {
				t.Errorf("queue %d still holds a message (%v, %v)", i, m.ID, err)
			}
		}
		for _, rc := range rcs {
			rc.Close()
		}
		recvWG.Wait()
		ackWG.Wait()

		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Error(p)
		}
		if len(sent) != senders*window*perSender {
			t.Errorf("%d messages answered OK, want %d", len(sent), senders*window*perSender)
		}
		lost, dups, unknown := 0, 0, 0
		for k := range sent {
			switch deliveries[k] {
			case 0:
				lost++
			case 1:
			default:
				dups++
			}
		}
		for k := range deliveries {
			if !sent[k] {
				unknown++
			}
		}
		if lost != 0 || dups != 0 || unknown != 0 {
			t.Errorf("of %d messages sent, %d never delivered, %d delivered more than once, and %d delivered were never sent", len(sent), lost, dups, unknown)
		}
	})
}
