package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/internal/relaytest"
)

// next returns the next event of sub, failing at ctx's end.
func next(ctx context.Context, t *testing.T, sub *agent.Subscription) agent.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatal("the subscription ended")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("no event")
	}
	panic("unreachable")
}

// openClient returns a client with a new home, its events stored
// (client.EventsStored), and the relays rs added; it is closed when the
// test ends.
func openClient(ctx context.Context, t *testing.T, rs ...*relaytest.Process) *client.Client {
	t.Helper()
	home := t.TempDir()
	if err := client.Init(home, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := client.Open(ctx, client.Config{Home: home, Events: client.EventsStored})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	for _, r := range rs {
		if err := cl.AddRelay(r.Addr); err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

// TestEvents follows events through the API: taken once by whoever acks
// first, kept for later subscriptions until then, and the transient ones
// dropped while nobody subscribes.
func TestEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r1, r2 := relaytest.Start(t, t.TempDir()), relaytest.Start(t, t.TempDir())
	alice, bob := openClient(ctx, t, r1, r2), openClient(ctx, t, r1, r2)
	srv := agent.NewServer(alice, agent.Config{})
	defer srv.Close()
	c1, c2 := srv.Pipe(), srv.Pipe()
	defer c1.Close()
	defer c2.Close()

	link, err := c1.Invite(ctx, "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, link, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Two subscribers see the same events; the first ack takes each.
	s1, err := c1.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c2.Subscribe(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	ev := next(ctx, t, s1)
	if ev.Kind != client.EventConnected || ev.Contact != "bob" {
		t.Fatalf("first event %+v, want bob connected", ev)
	}
	if ev2 := next(ctx, t, s2); ev2.ID != ev.ID {
		t.Fatalf("the second subscriber got %+v, want %+v", ev2, ev)
	}
	if taken, err := c2.Ack(ctx, ev.ID); err != nil || !taken {
		t.Fatalf("first ack: %v, %v", taken, err)
	}
	if taken, err := c1.Ack(ctx, ev.ID); err != nil || taken {
		t.Fatalf("second ack: %v, %v, want not taken", taken, err)
	}

	// A message, unacked, comes again to a new subscription.
	if _, err := bob.Send(ctx, "alice", "hello"); err != nil {
		t.Fatal(err)
	}
	msg := next(ctx, t, s1)
	if msg.Kind != client.EventMessage || msg.Text != "hello" || msg.Contact != "bob" || msg.Time.IsZero() {
		t.Fatalf("got %+v, want bob's hello", msg)
	}
	next(ctx, t, s2)
	if err := c1.Unsubscribe(ctx, s1); err != nil {
		t.Fatal(err)
	}
	c2.Close() // ends s2
	s3, err := c1.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if again := next(ctx, t, s3); again.ID != msg.ID || again.Text != "hello" {
		t.Fatalf("the new subscription got %+v, want the unacked message", again)
	}
	if taken, err := c1.Ack(ctx, msg.ID); err != nil || !taken {
		t.Fatalf("ack: %v, %v", taken, err)
	}
	if err := c1.Unsubscribe(ctx, s3); err != nil {
		t.Fatal(err)
	}

	// With no subscription, a sent event is not kept.
	if _, err := c1.Send(ctx, "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c1.Flush(ctx, 0); err != nil || !ok {
		t.Fatalf("flush: %v, %v", ok, err)
	}
	for {
		evs, err := alice.StoredEvents(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("events kept without a subscription: %+v", evs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
