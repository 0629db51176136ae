package relay_test

import (
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestUnsecuredExpiryDELD: PROTOCOL.md sections 12 and 16. A queue never
// secured is deleted by the relay once its expiry has passed; its
// subscriber receives DELD, and the subscription ends, as when another
// session deletes it. A secured queue the same session subscribes to is
// not deleted and gets no DELD.
func TestUnsecuredExpiryDELD(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) {
			c.UnsecuredTTL = time.Second
			c.SweepInterval = 100 * time.Millisecond
		})
		w := dialWire(t, r.addr, transport)
		q, kept := w.newQueue(false), w.newQueue(true)
		for _, q := range []*wireQueue{q, kept} {
			wireOK(t, "SUB", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		}
		w.event(queue.TagDELD, q.rid) // within the read bound: expiry after about 2 s
		wireErr(t, "SUB after DELD", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}), queue.AUTH)
		wireOK(t, "SUB of the secured queue", w.do(kept.rKey, kept.rid, queue.Command{Tag: queue.TagSUB}))
		for _, tx := range w.backlog {
			if tx.Command.Tag == queue.TagDELD {
				t.Fatalf("DELD for %x, want none", tx.Entity)
			}
		}
	})
}
