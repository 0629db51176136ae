package relay_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestPreparedEventReleasedWhenSessionEnds: senders fill a block with
// SENDs to queues whose subscriber waits (each SEND prepares a MSG event)
// and reset the connection while the relay handles it, so that the
// session ends in the middle of the block. Once every session has ended,
// the relay holds no prepared event: one held for good would count
// against the relay-wide bound for good, and delivery from memory would
// stop once it is reached.
func TestPreparedEventReleasedWhenSessionEnds(t *testing.T) {
	rl := relaytest.New(t, nil).Relay
	addr := rl.Addr().String()
	sub := dialRaw(t, addr)
	sub.tc.SetDeadline(time.Now().Add(5 * time.Minute))
	const iters = 80
	type q struct {
		sid queue.ID
		sk  *ecdh.PrivateKey
	}
	qs := make([]q, iters)
	for i := range qs {
		rKey, _ := queue.GenerateKey()
		dhKey, _ := queue.GenerateKey()
		sKey, _ := queue.GenerateKey()
		ids := sub.command(rKey, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(rKey), RecipientDHKey: queue.PublicKey(dhKey)})
		if got := sub.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(sKey)}); got.Tag != queue.TagOK {
			t.Fatalf("KEY: %v", got.Tag)
		}
		if got := sub.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagSUB}); got.Tag != queue.TagOK {
			t.Fatalf("SUB: %v", got.Tag)
		}
		qs[i] = q{ids.SenderID, sKey}
	}
	sub.tc.SetDeadline(time.Time{})
	go io.Copy(io.Discard, sub.plain) // the subscriber reads everything
	for i := range qs {
		s := dialRaw(t, addr)
		ak, err := queue.AuthKey(qs[i].sk, s.relayKey, s.binding)
		if err != nil {
			t.Fatal(err)
		}
		var b queue.BlockBuilder
		corr := make([]byte, queue.CorrIDSize)
		rand.Read(corr)
		ping := queue.Transmission{CorrID: corr, Command: queue.Command{Tag: queue.TagPING}}
		b.Add(ping.Append(nil))
		for {
			corr := make([]byte, queue.CorrIDSize)
			rand.Read(corr)
			tx := queue.Transmission{CorrID: corr, Entity: qs[i].sid[:], Command: queue.Command{Tag: queue.TagSEND, Body: []byte("x")}}
			tx.Auth = queue.AppendAuth(nil, &ak, tx.AppendSigned(nil))
			if !b.Add(tx.Append(nil)) {
				break
			}
		}
		if _, err := s.plain.Write(b.AppendBlock(nil)); err != nil {
			t.Fatal(err)
		}
		// Vary the moment of the reset within the block's handling.
		time.Sleep(time.Duration(mrand.IntN(3000)) * time.Microsecond)
		s.wire.Conn.(*net.TCPConn).SetLinger(0)
		s.tc.Close() // RST: the relay's next write fails and ends the session mid-block
	}
	sub.tc.Close()
	ctx := e2eContext(t)
	waitFor(t, ctx, "every session ended", func() bool { return relay.LiveSessions(rl) == 0 })
	if n := relay.PreparedHeld(rl); n != 0 {
		t.Fatalf("%d prepared events held after every session ended, want 0", n)
	}
}

// TestSubTakeoverTakesNoOldEvent: SUBs from two sessions take the
// queue's subscription from each other, again and again, while the event
// of a message stored before them all is offered late (a SEND whose offer
// was delayed, as OfferLate models). The event is never taken: a message
// stored before a SUB is delivered from the store, after the SUB's OK,
// also in the moment the new subscription is registered and has not read
// the store yet. With the message acknowledged before the SUBs
// ("acked"), it is never delivered again either.
func TestSubTakeoverTakesNoOldEvent(t *testing.T) {
	for _, acked := range []bool{true, false} {
		name := "unacked"
		if acked {
			name = "acked"
		}
		t.Run(name, func(t *testing.T) { testSubTakeover(t, acked) })
	}
}

func testSubTakeover(t *testing.T, acked bool) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	a, b, sc := e.dial(ctx, link.TransportTCP), e.dial(ctx, link.TransportTCP), e.dial(ctx, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, a)
	if err := sc.Send(ctx, q.SenderID, sk, []byte("first")); err != nil {
		t.Fatal(err)
	}
	stored := relay.StoreCommits(e.r) // that of the SEND, or later, but before the SUBs
	if err := a.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	m := nextMessage(t, ctx, a)
	if acked {
		if err := a.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	var redelivered atomic.Int64
	var wg sync.WaitGroup
	for _, c := range []*link.Conn{a, b} {
		wg.Go(func() {
			for ev := range c.Events() {
				if ev.Kind == link.EventMessage && ev.Message.ID == m.ID {
					redelivered.Add(1)
				}
			}
		})
	}
	var stop atomic.Bool
	var taken, offered atomic.Int64
	var og sync.WaitGroup
	og.Go(func() {
		for !stop.Load() {
			offered.Add(1)
			if relay.OfferLate(e.r, q.RecipientID, m.ID, m.Timestamp.Unix(), m.Body, stored, true) {
				taken.Add(1)
			}
		}
	})
	for i := range 400 {
		c := a
		if i%2 == 0 {
			c = b
		}
		if err := c.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	og.Wait()
	for _, c := range []*link.Conn{a, b} {
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	wg.Wait()
	if offered.Load() == 0 {
		t.Fatal("no late offer made")
	}
	if taken.Load() > 0 {
		t.Errorf("the event of message %x, stored before every SUB, was taken %d times (of %d offers), want 0", m.ID, taken.Load(), offered.Load())
	}
	if acked && redelivered.Load() > 0 {
		t.Errorf("message %x, acknowledged before, was delivered %d times, want 0", m.ID, redelivered.Load())
	}
	if !acked && redelivered.Load() == 0 {
		t.Errorf("message %x, not acknowledged, was never delivered again on 400 SUBs", m.ID)
	}
}

// TestOfferAfterRemovalRefused: a message sent to a queue whose
// subscriber waits is stored, then removed (acknowledged by another
// session holding the recipient key, expired, or its queue deleted)
// before its SEND offers its event and before the removal's notice
// reaches the subscriber. The subscriber does not take the event: the
// message is durably gone.
func TestOfferAfterRemovalRefused(t *testing.T) {
	for _, kind := range []string{"ack", "expire", "del"} {
		t.Run(kind, func(t *testing.T) {
			ctx := e2eContext(t)
			e := startE2ERelay(t, nil)
			rc, other := e.dial(ctx, link.TransportTCP), e.dial(ctx, link.TransportTCP)
			q, _ := e2eSecuredQueue(t, ctx, rc)
			if err := rc.Subscribe(ctx, q); err != nil {
				t.Fatal(err)
			}
			if err := rc.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "subscriber waiting", func() bool { return relay.SubscriberWaiting(e.r, q.RecipientID) })
			id, ts, commit, first := relay.StoreSendOnly(e.r, q.SenderID, []byte("gone"))
			if !first {
				t.Fatal("the message stored is not the queue's only one")
			}
			switch kind {
			case "ack":
				m, err := other.Get(ctx, q)
				if err != nil || m.ID != id {
					t.Fatalf("GET: %v, message %x, want %x", err, m.ID, id)
				}
				if err := relay.StoreAckOnly(e.r, q.RecipientID, id); err != nil {
					t.Fatal(err)
				}
			case "expire":
				if n, err := relay.StoreExpireOnly(e.r, ts+1); err != nil || n != 1 {
					t.Fatalf("expired %d messages (%v), want 1", n, err)
				}
			case "del":
				if err := relay.StoreDeleteOnly(e.r, q.RecipientID); err != nil {
					t.Fatal(err)
				}
			}
			if relay.OfferLate(e.r, q.RecipientID, id, ts, []byte("gone"), commit, true) {
				t.Fatalf("the event of a message removed (%s) was taken", kind)
			}
			noMessage(t, ctx, rc)
		})
	}
}
