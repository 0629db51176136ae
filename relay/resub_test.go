package relay_test

import (
	"crypto/ecdh"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// roundTrips sends txs in as few blocks as they fit in, one block at a
// time, and checks that every one is answered ERR AUTH.
func roundTrips(t *testing.T, w *wireConn, txs, corrs [][]byte) {
	t.Helper()
	for len(txs) > 0 {
		var b queue.BlockBuilder
		b.Use(make([]byte, queue.BlockSize))
		n := 0
		for n < len(txs) && b.Fits(len(txs[n])) {
			b.Add(txs[n])
			n++
		}
		w.write(b.Block())
		for i, c := range corrs[:n] {
			wireErr(t, fmt.Sprintf("SUB %d", i), w.response(c).Command, queue.AUTH)
		}
		txs, corrs = txs[n:], corrs[n:]
	}
}

func newIDBytes() []byte {
	id := queue.NewID()
	return id[:]
}

// TestResubscribeDeleted: section 16, the failure budget. A client that
// resubscribes, after a reconnection, 1,000 queues that no longer exist
// (each SUB correctly authorized with the queue's key, answered ERR AUTH:
// the relay cannot tell a deleted queue from one never created) is not
// held to its session's 20 failures a second while the relay-wide budget
// has room: none of its commands waits, where the session's budget alone
// would take about 49 s. A garbage flood that spends the relay-wide
// budget is slowed down as before. It prints the time the 1,000 SUBs
// took.
func TestResubscribeDeleted(t *testing.T) {
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.CommandRate = 1e6 // only the failure budgets bind
	})
	base := adminServer(t, r.Relay)
	w := dialWire(t, r.addr, wireTCP)
	var (
		ids  [][]byte
		keys []*ecdh.PrivateKey
	)
	// 20 queues deleted, and 980 the relay never saw.
	for range 20 {
		q := w.newQueue(true)
		wireOK(t, "DEL", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}))
		ids, keys = append(ids, q.rid), append(keys, q.rKey)
	}
	for len(ids) < 1000 {
		ids, keys = append(ids, newIDBytes()), append(keys, newKey(t))
	}
	// Reconnected, the client subscribes them all again.
	w = dialWire(t, r.addr, wireTCP)
	var txs, corrs [][]byte
	for i, id := range ids {
		tx, corr := w.tx(keys[i], id, queue.Command{Tag: queue.TagSUB})
		txs, corrs = append(txs, tx), append(corrs, corr)
	}
	start := time.Now()
	roundTrips(t, w, txs, corrs)
	t.Logf("1000 SUBs of queues that do not exist answered in %v", time.Since(start).Round(time.Millisecond))
	fams, _ := scrape(t, base)
	if n := metricSum(t, fams, "hush_relay_commands_delayed_total", "budget=failures"); n != 0 {
		t.Fatalf("%v of the resubscribing client's failures waited, want none", n)
	}

	// A garbage flood that spends the relay-wide budget is slowed down:
	// on a relay whose relay-wide budget is small, so that the flood
	// outruns it on any machine.
	r = startWireRelayWith(t, func(c *relay.Config) {
		c.CommandRate = 1e6
		c.RelayFailureRate = 10
	})
	base = adminServer(t, r.Relay)
	flood := dialWire(t, r.addr, wireTCP)
	txs, corrs = nil, nil
	for range 200 {
		tx, corr := txWithAuth(newIDBytes(), queue.Command{Tag: queue.TagSUB}, randomAuth())
		txs, corrs = append(txs, tx), append(corrs, corr)
	}
	roundTrips(t, flood, txs, corrs)
	waitMetric(t, base, "hush_relay_commands_delayed_total", "budget=failures", 1)
}
