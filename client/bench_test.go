package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
)

// BenchmarkInviteToConnected measures, over loopback with two relays, the
// time from Invite to both sides seeing EventConnected.
func BenchmarkInviteToConnected(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r1, r2 := startRelay(b), startRelay(b)
	alice, bob := newPerson(b, r1, r2).c, newPerson(b, r1, r2).c
	b.ResetTimer()
	for i := range b.N {
		link, err := alice.Invite(ctx, fmt.Sprintf("b%d", i))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Accept(ctx, link, fmt.Sprintf("a%d", i)); err != nil {
			b.Fatal(err)
		}
		waitKind(b, ctx, alice, client.EventConnected)
		waitKind(b, ctx, bob, client.EventConnected)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/connect")
}

// BenchmarkRoundTrip measures, over loopback with two relays, the time for
// a message to go from one contact to the other and a reply to come back.
func BenchmarkRoundTrip(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r1, r2 := startRelay(b), startRelay(b)
	alice, bob := newPerson(b, r1, r2).c, newPerson(b, r1, r2).c
	link, err := alice.Invite(ctx, "b")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.Accept(ctx, link, "a"); err != nil {
		b.Fatal(err)
	}
	waitKind(b, ctx, alice, client.EventConnected)
	waitKind(b, ctx, bob, client.EventConnected)
	b.ResetTimer()
	for range b.N {
		if _, err := alice.Send(ctx, "b", "ping"); err != nil {
			b.Fatal(err)
		}
		waitKind(b, ctx, bob, client.EventMessage)
		if _, err := bob.Send(ctx, "a", "pong"); err != nil {
			b.Fatal(err)
		}
		waitKind(b, ctx, alice, client.EventMessage)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/roundtrip")
}

func waitKind(b *testing.B, ctx context.Context, c *client.Client, k client.EventKind) {
	for {
		select {
		case ev := <-c.Events():
			if ev.Kind == k {
				return
			}
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
	}
}
