//go:build unix

package link

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// TestQUICRelayStalled states what a stalled relay costs its connections,
// with the client's default settings, on a real hush-relay process:
//
//   - A relay that stops for 500 ms (SIGSTOP, then SIGCONT: as a process
//     starved of CPU, or paused), five times at random moments, keeps
//     every connection: an idle QUIC one, a busy QUIC one that sends,
//     receives and acknowledges messages in a loop the whole time, and a
//     TCP one. Each still answers a PING, and every message the busy one
//     sent arrived once, in order.
//   - A relay that stops for 3 s is taken as down by QUIC connections
//     (ErrUnreachable, ErrSilent: no packet at all came while they kept
//     asking), as one that died would be, while the TCP connection, whose
//     kernel still acknowledges, stays.
//
// No time is asserted: the stalls are made, and the outcome counted.
func TestQUICRelayStalled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and stops a hush-relay process")
	}
	r := relaytest.Start(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	idle := dialPeer(t, ctx, r.Addr, Config{Transport: TransportQUIC})
	busy := dialPeer(t, ctx, r.Addr, Config{Transport: TransportQUIC})
	tcp := dialPeer(t, ctx, r.Addr, Config{Transport: TransportTCP})
	conns := map[string]*Conn{"idle QUIC": idle, "busy QUIC": busy, "TCP": tcp}

	q, err := busy.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Secure(ctx, q, queue.PublicKey(k)); err != nil {
		t.Fatal(err)
	}
	if err := busy.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	moved := make(chan int, 1)
	loopErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				moved <- i
				return
			default:
			}
			if err := busy.Send(ctx, q.SenderID, k, strconv.AppendInt(nil, int64(i), 10)); err != nil {
				loopErr <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			var ev Event
			select {
			case ev = <-busy.Events():
			case <-ctx.Done():
				loopErr <- fmt.Errorf("message %d: %w", i, ctx.Err())
				return
			}
			if ev.Kind != EventMessage || ev.Err != nil || string(ev.Message.Body) != strconv.Itoa(i) {
				loopErr <- fmt.Errorf("message %d: got %+v (connection: %v)", i, ev, busy.Err())
				return
			}
			if err := busy.Ack(ctx, q, ev.Message.ID); err != nil {
				loopErr <- fmt.Errorf("ack %d: %w", i, err)
				return
			}
		}
	}()

	const stalls, stall = 5, 500 * time.Millisecond
	for range stalls {
		// Anywhere between two keep-alives, and past silenceLimit since
		// the last stall.
		time.Sleep(1500*time.Millisecond + mrand.N(time.Second))
		r.Stop()
		time.Sleep(stall)
		r.Continue()
	}
	time.Sleep(2 * time.Second) // beyond silenceLimit after the last stall
	close(stop)
	select {
	case n := <-moved:
		t.Logf("%d stalls of %v: the busy connection moved %d messages", stalls, stall, n)
	case err := <-loopErr:
		t.Fatalf("busy connection: %v", err)
	}
	for name, c := range conns {
		if err := c.Err(); err != nil {
			t.Fatalf("%s: the connection ended at a stall of %v: %v", name, stall, err)
		}
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("%s: after the stalls: %v", name, err)
		}
	}

	// A stall far longer than silenceLimit (3 s, or until both have
	// ended): the relay is taken as down.
	r.Stop()
	start := time.Now()
	bound := time.After(3 * time.Second)
	for _, c := range []*Conn{idle, busy} {
		select {
		case <-c.Done():
		case <-bound:
		}
	}
	took := time.Since(start)
	r.Continue()
	for name, c := range map[string]*Conn{"idle QUIC": idle, "busy QUIC": busy} {
		if err := c.Err(); !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrSilent) {
			t.Fatalf("%s: after a stall of 3 s: %v, want ErrUnreachable and ErrSilent", name, err)
		}
	}
	t.Logf("a stall of 3 s: both QUIC connections ended within %v", took.Round(time.Millisecond))
	if err := tcp.Ping(ctx); err != nil {
		t.Fatalf("TCP after a stall of 3 s: %v", err)
	}
}
