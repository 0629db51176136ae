package relay_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// nextMessage returns the next event of c, which must be a message that
// opened.
func nextMessage(t *testing.T, ctx context.Context, c *link.Conn) link.Message {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok || ev.Kind != link.EventMessage || ev.Err != nil {
			t.Fatalf("event %v (err %v, open %v), want a message", ev.Kind, ev.Err, ok)
		}
		return ev.Message
	case <-ctx.Done():
		t.Fatal("no message")
	}
	panic("unreachable")
}

// noMessage checks, after a PING on c has been answered, that c has no
// event waiting.
func noMessage(t *testing.T, ctx context.Context, c *link.Conn) {
	t.Helper()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-c.Events():
		t.Fatalf("unexpected event %v, message %x", ev.Kind, ev.Message.ID)
	default:
	}
}

// waitFor waits, until ctx is done, for cond to hold.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestDeliveryFromMemory sends messages to a subscribed queue one at a
// time: the first, sent while the subscriber waits with the queue empty,
// is delivered from the MSG event its SEND prepared, without a read of
// the store, and opens to its body like one read back; every message is
// delivered once, in order, whichever way it goes; and once the sessions
// end the relay holds no prepared event.
func TestDeliveryFromMemory(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc, sc := e.dial(ctx, transport), e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		// The PONG leaves after the read of the store that SUB started.
		if err := rc.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		base := relay.PreparedDeliveries(e.r)
		const n = 20
		for i := range n {
			body := make([]byte, queue.MaxMessageSize-i)
			rand.Read(body)
			copy(body, fmt.Sprintf("message %d", i))
			if err := sc.Send(ctx, q.SenderID, sk, body); err != nil {
				t.Fatal(err)
			}
			m := nextMessage(t, ctx, rc)
			if !bytes.Equal(m.Body, body) {
				t.Fatalf("message %d: got %q..., want %q...", i, m.Body[:12], body[:12])
			}
			if i == 0 {
				if got := relay.PreparedDeliveries(e.r) - base; got != 1 {
					t.Fatalf("the first message: %v delivered from memory, want 1", got)
				}
				noMessage(t, ctx, rc)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatalf("ACK of message %d: %v", i, err)
			}
		}
		noMessage(t, ctx, rc)
		t.Logf("%v of %d messages delivered from memory", relay.PreparedDeliveries(e.r)-base, n)
		// A message stored with a backlog is read from the store.
		for i := range 3 {
			if err := sc.Send(ctx, q.SenderID, sk, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			m := nextMessage(t, ctx, rc)
			if !bytes.Equal(m.Body, []byte{byte(i)}) {
				t.Fatalf("backlog message %d: got %x", i, m.Body)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		noMessage(t, ctx, rc)
		rc.Close()
		sc.Close()
		waitFor(t, ctx, "prepared events released", func() bool { return relay.PreparedHeld(e.r) == 0 })
	})
}

// TestPreparedEventNotRedelivered offers a subscription, late, the event
// of a message its subscriber has already received from the store and
// acknowledged, as a SEND's goroutine delayed past both would: the
// subscription refuses it (the store was read after the message was
// stored), the next message comes next, and an event of a later commit is
// taken (the refusal was the commit's).
func TestPreparedEventNotRedelivered(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	rc, sc := e.dial(ctx, link.TransportTCP), e.dial(ctx, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	// The message is stored before the subscription: its delivery reads
	// it from the store.
	if err := sc.Send(ctx, q.SenderID, sk, []byte("first")); err != nil {
		t.Fatal(err)
	}
	stored := relay.StoreCommits(e.r) // that of the SEND, or later
	if err := rc.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	m := nextMessage(t, ctx, rc)
	if string(m.Body) != "first" {
		t.Fatalf("got %q", m.Body)
	}
	if err := rc.Ack(ctx, q, m.ID); err != nil {
		t.Fatal(err)
	}
	// The read after the ACK found the queue empty.
	waitFor(t, ctx, "subscriber waiting", func() bool { return relay.SubscriberWaiting(e.r, q.RecipientID) })
	if relay.OfferLate(e.r, q.RecipientID, m.ID, m.Timestamp.Unix(), m.Body, stored, true) {
		t.Fatal("the subscription took the event of a message it was delivered from the store")
	}
	noMessage(t, ctx, rc)
	if err := sc.Send(ctx, q.SenderID, sk, []byte("second")); err != nil {
		t.Fatal(err)
	}
	m2 := nextMessage(t, ctx, rc)
	if string(m2.Body) != "second" || m2.ID == m.ID {
		t.Fatalf("got %q (%x), want the second message", m2.Body, m2.ID)
	}
	if err := rc.Ack(ctx, q, m2.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "subscriber waiting", func() bool { return relay.SubscriberWaiting(e.r, q.RecipientID) })
	// Control: an event of a commit after every read is taken and
	// delivered (its message is not in the store: its ACK finds none).
	fake := queue.NewID()
	if !relay.OfferLate(e.r, q.RecipientID, fake, m.Timestamp.Unix(), []byte("control"), relay.StoreCommits(e.r)+1, true) {
		t.Fatal("the subscription refused the event of a later commit")
	}
	m3 := nextMessage(t, ctx, rc)
	if m3.ID != fake || string(m3.Body) != "control" {
		t.Fatalf("got %q (%x), want the control event", m3.Body, m3.ID)
	}
	if err := rc.Ack(ctx, q, fake); !errors.Is(err, queue.NO_MSG) {
		t.Fatalf("ACK of the control event: %v, want NO_MSG", err)
	}
	rc.Close()
	sc.Close()
	waitFor(t, ctx, "prepared events released", func() bool { return relay.PreparedHeld(e.r) == 0 })
}

// TestPreparedEventsReleased ends subscriptions holding an event offered
// and not yet sent, in each way one ends: the subscriber's connection
// closes, another session subscribes (END), the queue is deleted by
// another session (DELD) or by the subscriber's own; and a sender
// connection closes with SENDs to waiting subscribers in flight. Every
// event goes back to the relay-wide budget.
func TestPreparedEventsReleased(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	offered := func(rc *link.Conn, q link.Queue) {
		t.Helper()
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "subscriber waiting", func() bool { return relay.SubscriberWaiting(e.r, q.RecipientID) })
		if !relay.OfferLate(e.r, q.RecipientID, queue.NewID(), 0, []byte("held"), relay.StoreCommits(e.r)+1, false) {
			t.Fatal("the event was refused")
		}
		if got := relay.PreparedHeld(e.r); got != 1 {
			t.Fatalf("%d events held, want 1", got)
		}
	}
	released := func(how string) {
		t.Helper()
		waitFor(t, ctx, how+": event released", func() bool { return relay.PreparedHeld(e.r) == 0 })
	}

	rc := e.dial(ctx, link.TransportTCP)
	q, _ := e2eSecuredQueue(t, ctx, rc)
	offered(rc, q)
	rc.Close()
	released("connection closed")

	rc, other := e.dial(ctx, link.TransportTCP), e.dial(ctx, link.TransportTCP)
	q, _ = e2eSecuredQueue(t, ctx, rc)
	offered(rc, q)
	if err := other.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	released("subscribed elsewhere")

	q, _ = e2eSecuredQueue(t, ctx, rc)
	offered(rc, q)
	if err := other.Delete(ctx, q); err != nil {
		t.Fatal(err)
	}
	released("deleted by another session")

	q, _ = e2eSecuredQueue(t, ctx, rc)
	offered(rc, q)
	if err := rc.Delete(ctx, q); err != nil {
		t.Fatal(err)
	}
	released("deleted by the subscriber")

	// SENDs in flight to waiting subscribers when the sender's
	// connection closes.
	sc := e.dial(ctx, link.TransportTCP)
	const queues = 96
	qs := make([]link.Queue, queues)
	sks := make([]*ecdh.PrivateKey, queues)
	for i := range qs {
		qs[i], sks[i] = e2eSecuredQueue(t, ctx, rc)
		if err := rc.Subscribe(ctx, qs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, queues)
	body := make([]byte, queue.MaxMessageSize)
	for i := range qs {
		go func() { sent <- sc.Send(ctx, qs[i].SenderID, sks[i], body) }()
	}
	first := <-sent
	sc.Close()
	for range queues - 1 {
		<-sent
	}
	if first != nil {
		t.Fatalf("the first SEND: %v", first)
	}
	rc.Close()
	other.Close()
	released("sender closed")
}
