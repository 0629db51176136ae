package relay_test

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hushrelay/hush/internal/relaytest"
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

// TestFirstSweepReadsNoQueues: docs/store.md "The sweep" and README.md's
// unsecured_ttl. The first sweep after a start removes expired messages
// but reads no queue records, so an expired queue never secured outlives
// it; a later sweep removes it, and keeps the secured queue.
func TestFirstSweepReadsNoQueues(t *testing.T) {
	ctx := e2eContext(t)
	rl := relaytest.New(t, func(c *relay.Config) {
		c.NewRate, c.SendRate = 1e6, 1e6
		c.MessageTTL = time.Second
		c.UnsecuredTTL = time.Second
		c.SweepInterval = time.Hour // only the first sweep of each start
	})
	w := dialWire(t, rl.HostPort, wireTCP)
	w.newQueue(false)
	kept := w.newQueue(true)
	wireOK(t, "SEND", w.do(kept.sKey, kept.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("expires")}))
	// Past both expiries: a whole unit (1 s) older than the TTL (1 s).
	time.Sleep(3 * time.Second)

	// waitExpired waits, within the test's bound, until a sweep of rl's
	// current start has removed a message or a queue, and returns the
	// metrics of a scrape begun after that: a scrape reads its metrics
	// at different moments, so the one that saw the count could hold a
	// store gauge read before the sweep's commit.
	waitExpired := func(metric string) map[string]*dto.MetricFamily {
		t.Helper()
		base := adminServer(t, rl.Relay)
		for {
			fams, _ := scrape(t, base)
			if metricValue(t, fams, metric, "") >= 1 {
				fams, _ = scrape(t, base)
				return fams
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no %s", metric)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	rl.Restart(t)
	fams := waitExpired("hush_relay_messages_expired_total")
	for name, want := range map[string]float64{
		"hush_relay_messages_expired_total": 1,
		"hush_relay_queues_expired_total":   0,
		"hush_relay_queues":                 2,
	} {
		if got := metricValue(t, fams, name, ""); got != want {
			t.Errorf("after the first sweep: %s = %v, want %v", name, got, want)
		}
	}

	rl.Config.SweepInterval = 50 * time.Millisecond
	rl.Restart(t)
	fams = waitExpired("hush_relay_queues_expired_total")
	for name, want := range map[string]float64{
		"hush_relay_queues_expired_total": 1,
		"hush_relay_queues":               1,
	} {
		if got := metricValue(t, fams, name, ""); got != want {
			t.Errorf("after a later sweep: %s = %v, want %v", name, got, want)
		}
	}
	w = dialWire(t, rl.HostPort, wireTCP)
	wireErr(t, "GET of the secured queue", w.do(kept.rKey, kept.rid, queue.Command{Tag: queue.TagGET}), queue.NO_MSG)
}
