package relay_test

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestEventAfterSubOK: PROTOCOL.md sections 10 and 12, the END or DELD
// that ends a subscription never comes before the OK of the SUB that
// started it. The subscriber's reply slots are all taken by its own SENDs
// held in the store when its SUB comes (as in TestSubOKBeforeMessage), so
// its OK waits; meanwhile another session takes the subscription over
// (END) or deletes the queue (DELD). The OK must come first, then the
// event. (Found by the review of ff8e3de.)
func TestEventAfterSubOK(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		for _, tag := range []queue.Tag{queue.TagEND, queue.TagDELD} {
			t.Run(tag.String(), func(t *testing.T) {
				ctx := e2eContext(t)
				sub, other := dialWire(t, r.addr, transport), dialWire(t, r.addr, transport)
				own, q := sub.newQueue(true), sub.newQueue(true)
				sends, subCorr, release := sub.subBehindSends(ctx, r, own, q, relay.Subscribed)
				if tag == queue.TagEND {
					wireOK(t, "SUB of the other session", other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
					release()
				} else {
					tx, corr := other.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL})
					other.send(tx)
					relay.WaitQueued(t, r.Relay, replySlots+1)
					release()
					wireOK(t, "DEL", other.response(corr).Command)
				}
				first := sub.take(func(tx queue.Transmission) bool {
					return bytes.Equal(tx.CorrID, subCorr) || tx.CorrID == nil && tx.Command.Tag == tag && bytes.Equal(tx.Entity, q.rid)
				})
				for i, corr := range sends {
					wireOK(t, fmt.Sprintf("SEND %d", i), sub.response(corr).Command)
				}
				if !bytes.Equal(first.CorrID, subCorr) {
					c := sub.response(subCorr).Command
					t.Fatalf("%v came before the SUB's OK (then the SUB got %v)", tag, c.Tag)
				}
				wireOK(t, "SUB", first.Command)
				sub.event(tag, q.rid)
			})
		}
	})
}

// TestSubRacingDel: PROTOCOL.md section 12, a SUB that races a DEL of
// the queue from another session gets ERR AUTH, or OK and then DELD:
// never OK alone (a subscription of a gone queue). Each round sends the
// SUB some time after the DEL, a time that moves towards the moment the
// DEL commits (later after an OK, earlier after an ERR AUTH), so that in
// some rounds the SUB looks the queue up before the DEL commits and
// registers after the DEL's notice ran. (Found by the review of fa64523,
// with a pause in handleSub; this is the version without one.)
func TestSubRacingDel(t *testing.T) {
	const rounds = 300
	r := startWireRelayWith(t, nil)
	owner, b := dialWire(t, r.addr, wireTCP), dialWire(t, r.addr, wireTCP)
	oks := 0
	delay := time.Millisecond
	for i := range rounds {
		q := owner.newQueue(true)
		delTx, delCorr := owner.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL})
		subTx, subCorr := b.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB})
		owner.send(delTx)
		for start := time.Now(); time.Since(start) < delay; {
			// A busy wait: a timer's slack is as long as the window.
		}
		b.send(subTx)
		wireOK(t, "DEL", owner.response(delCorr).Command)
		step := time.Duration(10+mrand.IntN(40)) * time.Microsecond
		c := b.response(subCorr).Command
		if c.Tag == queue.TagERR && c.Error == queue.AUTH {
			delay = max(0, delay-step)
			continue
		}
		wireOK(t, fmt.Sprintf("round %d: SUB", i), c)
		oks++
		delay += step
		// Answered OK: DELD must follow. (The read fails the test after
		// its bound if it never comes.)
		b.event(queue.TagDELD, q.rid)
	}
	t.Logf("%d of %d SUBs answered OK, then DELD; the last delay %v", oks, rounds, delay)
}

// TestReSubRedelivers: PROTOCOL.md sections 6, 9 and 12, SUB again on a
// session delivers the queue's first message after the SUB's OK, also
// when that message was being pushed as the SUB came (after the ACK of
// the message before it). Each round ACKs the message received and sends
// SUB again at a random moment after it, so that in some the relay's
// writer is reading the next message from the store as the SUB is
// handled. The SUB sees the ACK's effect (per-queue order): the ACK's OK
// comes before the SUB's, every MSG after the ACK's OK is of the next
// message (the acknowledged one is never delivered again), and one comes
// after the SUB's OK. (Found by the review of ff8e3de, with a pause in
// the writer; this is the version without one. TestConformAckThenSub is
// the deterministic test of the order.)
func TestReSubRedelivers(t *testing.T) {
	const rounds = 150
	r := startWireRelayWith(t, func(c *relay.Config) { c.QueueQuota = rounds + 1 })
	sub, other := dialWire(t, r.addr, wireTCP), dialWire(t, r.addr, wireTCP)
	q := sub.newQueue(true)
	for i := range rounds + 1 {
		wireOK(t, "SEND", other.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: fmt.Appendf(nil, "message %d", i)}))
	}
	wireOK(t, "SUB", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
	body, id := sub.nextMessage(q)
	for i := range rounds {
		if want := fmt.Sprintf("message %d", i); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
		ackTx, ackCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id})
		sub.send(ackTx)
		time.Sleep(time.Duration(mrand.IntN(2000)) * time.Microsecond)
		subTx, subCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB})
		sub.send(subTx)
		// In order of arrival: the ACK's OK, the SUB's OK, and the MSGs
		// of q, until the first MSG after the SUB's OK.
		next := fmt.Sprintf("message %d", i+1)
		acked, subscribed := false, false
		for {
			tx := sub.take(func(tx queue.Transmission) bool {
				return bytes.Equal(tx.CorrID, ackCorr) || bytes.Equal(tx.CorrID, subCorr) ||
					tx.CorrID == nil && tx.Command.Tag == queue.TagMSG && bytes.Equal(tx.Entity, q.rid)
			})
			switch {
			case bytes.Equal(tx.CorrID, ackCorr):
				wireOK(t, fmt.Sprintf("round %d: ACK", i), tx.Command)
				acked = true
				continue
			case bytes.Equal(tx.CorrID, subCorr):
				if !acked {
					t.Fatalf("round %d: the SUB was answered %v before the ACK sent before it", i, tx.Command.Tag)
				}
				wireOK(t, fmt.Sprintf("round %d: SUB", i), tx.Command)
				subscribed = true
				continue
			}
			body, id = string(q.open(t, tx.Command)), tx.Command.MsgID
			if acked && body != next {
				t.Fatalf("round %d: got %q after the ACK of message %d, want %q", i, body, i, next)
			}
			if subscribed {
				break
			}
		}
	}
}
