package relay_test

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// TestCrashKeepsAcknowledgedMessages kills the relay process with SIGKILL
// while eight senders (half over QUIC, half over TCP, one queue each) send
// and a recipient receives and acknowledges, restarts it on the same data
// directory, and checks that every SEND answered OK is delivered, and that
// nothing whose ACK was answered OK is delivered again.
func TestCrashKeepsAcknowledgedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a relay process")
	}
	data := t.TempDir()
	proc := relaytest.Start(t, data)
	addr := proc.Addr
	// From the relay's start: building hush-relay, on a loaded machine,
	// can take most of two minutes by itself.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const senders = 8
	recv, err := link.Dial(ctx, addr, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	queues := make(map[queue.ID]link.Queue)
	var qs []link.Queue
	var senderKeys []*ecdh.PrivateKey
	for range senders {
		q, err := recv.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := queue.GenerateKey()
		if err := recv.Secure(ctx, q, queue.PublicKey(k)); err != nil {
			t.Fatal(err)
		}
		if err := recv.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		queues[q.RecipientID] = q
		qs = append(qs, q)
		senderKeys = append(senderKeys, k)
	}

	var (
		mu        sync.Mutex
		sent      int
		acked     = make(map[string]bool) // SEND answered OK
		delivered = make(map[string]int)  // times delivered
		ackedBack = make(map[string]bool) // ACK answered OK: must never come again
		dups      int
	)
	// receive records deliveries from rc until it ends or idle passes
	// without a message.
	receive := func(rc *link.Conn, idle time.Duration) {
		for {
			select {
			case ev, ok := <-rc.Events():
				if !ok {
					return
				}
				if ev.Kind != link.EventMessage || ev.Err != nil {
					t.Errorf("unexpected event %+v", ev)
					return
				}
				body := string(ev.Message.Body)
				mu.Lock()
				delivered[body]++
				if ackedBack[body] {
					dups++
				}
				mu.Unlock()
				if err := rc.Ack(ctx, queues[ev.RecipientID], ev.Message.ID); err != nil {
					continue // the relay died; the message will come again
				}
				mu.Lock()
				ackedBack[body] = true
				mu.Unlock()
			case <-time.After(idle):
				return
			}
		}
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		receive(recv, time.Minute)
	}()

	var wg sync.WaitGroup
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	for g := range senders {
		transport := link.TransportQUIC
		if g%2 == 1 {
			transport = link.TransportTCP
		}
		sc, err := link.Dial(ctx, addr, link.Config{Transport: transport})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, retry := 0, false; ; {
				body := fmt.Sprintf("sender %d message %d", g, i)
				if !retry {
					mu.Lock()
					sent++
					mu.Unlock()
				}
				err := sc.Send(sendCtx, qs[g].SenderID, senderKeys[g], []byte(body))
				if retry = errors.Is(err, queue.QUOTA); retry {
					time.Sleep(10 * time.Millisecond) // the recipient is behind
					continue
				}
				if err != nil {
					return // the relay was killed
				}
				mu.Lock()
				acked[body] = true
				mu.Unlock()
				i++
			}
		}()
	}
	// Let the load run, then kill the relay in the middle of it.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	proc.Kill()
	// QUIC notices a dead peer only at its idle timeout: stop waiting. A
	// SEND still in flight now was not acknowledged.
	stopSending()
	wg.Wait()
	recv.Close()
	<-recvDone

	// Restart on the same data directory and drain every queue.
	proc.Restart()
	addr2 := proc.Addr
	if addr2.Fingerprint != addr.Fingerprint {
		t.Fatalf("the identity changed across the restart")
	}
	rc, err := link.Dial(ctx, addr2, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, q := range qs {
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	receive(rc, 3*time.Second)

	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for body := range acked {
		if delivered[body] == 0 {
			lost++
		}
	}
	t.Logf("sent %d, acknowledged %d, delivered %d (lost %d, delivered again after an acknowledged ACK %d)", sent, len(acked), len(delivered), lost, dups)
	fmt.Printf("crash test: sent %d, acknowledged %d, delivered %d, lost %d\n", sent, len(acked), len(delivered), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages were lost", lost)
	}
	if dups > 0 {
		t.Fatalf("%d messages were delivered again after their ACK was answered OK", dups)
	}
	if len(delivered) < len(acked) || len(delivered) > sent {
		t.Fatalf("delivered %d distinct messages, want between %d and %d", len(delivered), len(acked), sent)
	}
}
