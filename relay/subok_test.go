package relay_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestSubOKBeforeMessage: PROTOCOL.md section 12, SUB's OK comes before
// the MSG it triggers, also for a message another session sends while the
// SUB is handled. The subscriber's session has every reply slot taken by
// SENDs of its own waiting in the store (the commit loop is held) when its
// SUB comes: the subscription is registered, and the SUB's OK waits for a
// slot. Another session's SEND to the queue commits with those SENDs, and
// their OKs free the slots. The SUB's OK must still leave before the MSG,
// read from the store (the queue held a message before: "store") or
// prepared by the SEND (the queue was empty: "memory"); then every message
// comes once, in order.
func TestSubOKBeforeMessage(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		for _, held := range []int{1, 0} {
			name := "store"
			if held == 0 {
				name = "memory"
			}
			t.Run(name, func(t *testing.T) {
				ctx := e2eContext(t)
				sub, other := dialWire(t, r.addr, transport), dialWire(t, r.addr, transport)
				own, q := sub.newQueue(true), sub.newQueue(true)
				var want []string
				for i := range held {
					body := fmt.Sprintf("message %d", i)
					wireOK(t, "SEND", other.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte(body)}))
					want = append(want, body)
				}
				sends, subCorr, release := sub.subBehindSends(ctx, r, own, q, relay.SubscriberWaiting)
				body := fmt.Sprintf("message %d", held)
				sendTx, sendCorr := other.tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte(body)})
				other.send(sendTx)
				want = append(want, body)
				relay.WaitQueued(t, r.Relay, replySlots+1)
				release()
				wireOK(t, "the other session's SEND", other.response(sendCorr).Command)

				okSeen := false
				ev := sub.take(func(tx queue.Transmission) bool {
					if bytes.Equal(tx.CorrID, subCorr) {
						wireOK(t, "SUB", tx.Command)
						okSeen = true
						return false
					}
					return tx.Command.Tag == queue.TagMSG && bytes.Equal(tx.Entity, q.rid)
				})
				if !okSeen {
					t.Fatal("section 12: a MSG came before the SUB's OK")
				}
				for i, corr := range sends {
					wireOK(t, fmt.Sprintf("SEND %d", i), sub.response(corr).Command)
				}
				for i, w := range want {
					if i > 0 {
						ev = sub.event(queue.TagMSG, q.rid)
					}
					if got := string(q.open(t, ev.Command)); got != w {
						t.Fatalf("message %d: got %q, want %q", i, got, w)
					}
					wireOK(t, "ACK", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: ev.Command.MsgID}))
				}
				// Each once: after a PING's answer, no other MSG.
				tx, corr := sub.tx(nil, nil, queue.Command{Tag: queue.TagPING})
				sub.send(tx)
				sub.response(corr)
				for _, tx := range sub.backlog {
					if tx.Command.Tag == queue.TagMSG {
						t.Fatalf("a MSG after the last message was acknowledged: %x", tx.Command.MsgID)
					}
				}
			})
		}
	})
}
