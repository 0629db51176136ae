package relay_test

import (
	"fmt"
	"testing"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestPreparedOnePerSubscription: a SEND prepares the MSG event of its
// message for a subscriber that waits (delivery from memory), under a
// relay-wide bound of 256. Four sender sessions each write a block of 64
// SENDs to one queue whose subscriber waits, and never read their answers
// until the end; the commit loop is held meanwhile, as a slow disk would.
// One event is prepared for the queue, not one per SEND: so a SEND to
// another queue whose subscriber waits still prepares its own, and both
// first messages are delivered from memory. Every message is delivered
// once, each sender's in order, before any sender reads an answer.
func TestPreparedOnePerSubscription(t *testing.T) {
	const (
		senders = 4
		burst   = 64 // a session's SENDs in flight (the relay's maxInFlight)
	)
	r := startWireRelayWith(t, func(c *relay.Config) { c.QueueQuota = senders * burst })
	ctx := e2eContext(t)
	sub := dialWire(t, r.addr, wireTCP)
	q, q2 := sub.newQueue(true), sub.newQueue(true)
	for _, q := range []*wireQueue{q, q2} {
		wireOK(t, "SUB", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		waitFor(t, ctx, "subscriber waiting", func() bool { return relay.SubscriberWaiting(r.Relay, queue.ID(q.rid)) })
	}
	fromMemory := relay.PreparedDeliveries(r.Relay)

	release := relay.HoldCommits(t, r.Relay)
	ws := make([]*wireConn, senders)
	corrs := make([][][]byte, senders)
	for i := range ws {
		ws[i] = dialWire(t, r.addr, wireTCP)
		var txs [][]byte
		for j := range burst {
			tx, corr := ws[i].tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: fmt.Appendf(nil, "%d %d", i, j)})
			txs, corrs[i] = append(txs, tx), append(corrs[i], corr)
		}
		ws[i].send(txs...)
	}
	relay.WaitQueued(t, r.Relay, senders*burst)
	if n := relay.PreparedHeld(r.Relay); n != 1 {
		t.Errorf("%d events prepared for %d SENDs in flight to one queue, want 1", n, senders*burst)
	}
	other := dialWire(t, r.addr, wireTCP)
	tx, corr := other.tx(q2.sKey, q2.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("other queue")})
	other.send(tx)
	relay.WaitQueued(t, r.Relay, senders*burst+1)
	if n := relay.PreparedHeld(r.Relay); n != 2 {
		t.Errorf("%d events prepared, want 2 (one per queue)", n)
	}
	release()
	wireOK(t, "SEND to the other queue", other.response(corr).Command)

	// The subscriber takes every message, acknowledging each; the senders
	// read nothing yet.
	next := make([]int, senders)
	for range senders * burst {
		body, id := sub.nextMessage(q)
		var i, j int
		if _, err := fmt.Sscanf(body, "%d %d", &i, &j); err != nil || i < 0 || i >= senders {
			t.Fatalf("message %q", body)
		}
		if j != next[i] {
			t.Fatalf("sender %d: message %d, want %d (each once, in order)", i, j, next[i])
		}
		next[i]++
		wireOK(t, "ACK", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id}))
	}
	if body, id := sub.nextMessage(q2); body != "other queue" {
		t.Fatalf("the other queue: %q", body)
	} else {
		wireOK(t, "ACK", sub.do(q2.rKey, q2.rid, queue.Command{Tag: queue.TagACK, MsgID: id}))
	}
	ping, pcorr := sub.tx(nil, nil, queue.Command{Tag: queue.TagPING})
	sub.send(ping)
	sub.response(pcorr)
	for _, tx := range sub.backlog {
		if tx.Command.Tag == queue.TagMSG {
			t.Fatalf("a MSG after every message was acknowledged: %x", tx.Command.MsgID)
		}
	}
	if got := relay.PreparedDeliveries(r.Relay) - fromMemory; got != 2 {
		t.Errorf("%v messages delivered from memory, want 2 (the first of each queue)", got)
	}
	for i, w := range ws {
		for j, c := range corrs[i] {
			wireOK(t, fmt.Sprintf("sender %d, SEND %d", i, j), w.response(c).Command)
		}
	}
	waitFor(t, ctx, "prepared events released", func() bool { return relay.PreparedHeld(r.Relay) == 0 })
}
