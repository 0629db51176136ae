package relay_test

import (
	"fmt"
	"testing"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestRemovalNoticeWhenRemoverEnds: PROTOCOL.md section 12. A queue is
// deleted, or the message outstanding with its subscriber acknowledged,
// by another session that ends before its OK can be sent (its
// connection closed while the store commits the operation): once the
// removal is durable the subscriber gets DELD, or the next message,
// all the same; it never has to SUB again. The commit loop is held
// until the removing session has ended, then released; each round is
// repeated, since a notice that depends on the OK can also be lost
// only some of the time.
func TestRemovalNoticeWhenRemoverEnds(t *testing.T) {
	const rounds = 16
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		// remove sends tx on a new session, holds the commit loop until
		// the session has ended, then lets the commit go.
		remove := func(t *testing.T, build func(w *wireConn) []byte) {
			t.Helper()
			ctx := e2eContext(t)
			running, _ := relay.SessionStates(r.Relay)
			w := dialWire(t, r.addr, transport)
			release := relay.HoldCommits(t, r.Relay)
			w.send(build(w))
			relay.WaitQueued(t, r.Relay, 1)
			if err := w.closeW(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the removing session ended", func() bool {
				n, _ := relay.SessionStates(r.Relay)
				return n == running
			})
			release()
			waitFor(t, ctx, "the removing session gone", func() bool {
				_, ending := relay.SessionStates(r.Relay)
				return ending == 0
			})
		}
		t.Run("DEL", func(t *testing.T) {
			sub := dialWire(t, r.addr, transport)
			for i := range rounds {
				q := sub.newQueue(true)
				wireOK(t, "SUB", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
				remove(t, func(w *wireConn) []byte {
					tx, _ := w.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL})
					return tx
				})
				t.Logf("round %d", i)
				sub.event(queue.TagDELD, q.rid)
				// The queue is gone.
				wireErr(t, fmt.Sprintf("round %d: SUB after DELD", i), sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}), queue.AUTH)
			}
		})
		t.Run("ACK", func(t *testing.T) {
			sub, _, q := wireSubscriber(t, r, transport, rounds+1)
			for i := range rounds {
				got, id := sub.nextMessage(q)
				if want := fmt.Sprintf("message %d", i); got != want {
					t.Fatalf("received %q, want %q", got, want)
				}
				// Another session holding the recipient key acknowledges
				// it; the subscriber does not.
				remove(t, func(w *wireConn) []byte {
					tx, _ := w.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id})
					return tx
				})
			}
			got, _ := sub.nextMessage(q)
			if want := fmt.Sprintf("message %d", rounds); got != want {
				t.Fatalf("received %q, want %q", got, want)
			}
		})
	})
}
