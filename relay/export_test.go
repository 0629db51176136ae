package relay

import (
	"net/netip"

	dto "github.com/prometheus/client_model/go"

	"github.com/hushrelay/hush/queue"
)

// SetForwardHook makes r a forwarding relay that misbehaves: hook sees
// every RFWD and the proxy session ID of the relay-to-relay session it
// goes on before r sends it, may change both (a redirect), and returns
// how many times r sends it (a replay).
func SetForwardHook(r *Relay, hook func(cmd *queue.Command, session *queue.ID) int) {
	r.forwardHook.Store(&hook)
}

// SetAdmitHook makes r tell hook the source address of every connection
// it accepts, before its caps are checked.
func SetAdmitHook(r *Relay, hook func(netip.Addr)) { r.admitHook.Store(&hook) }

// SetWaitHook makes r call hook each time a command starts waiting for
// its session's earlier writes on its queue (per-queue order).
func SetWaitHook(r *Relay, hook func()) { r.waitHook.Store(&hook) }

// PreparedDeliveries returns how many MSG events r sent from memory,
// prepared by their SENDs (messages_delivered_from_memory_total).
func PreparedDeliveries(r *Relay) float64 {
	var m dto.Metric
	if err := r.metrics.messagesPrepared.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// PreparedHeld returns how many prepared MSG events r holds (in flight with
// their SENDs, or offered to subscriptions).
func PreparedHeld(r *Relay) int { return int(r.prepared.Load()) }

// StoreCommits returns the number of group transactions r's store has
// committed: the number of the last one.
func StoreCommits(r *Relay) uint64 { return r.store.commits.Load() }

// SubscriberWaiting reports whether the queue with recipient ID rid has a
// subscription with no message outstanding, no ACK pending and no event
// offered: one whose last read of the store found the queue empty.
func SubscriberWaiting(r *Relay, rid queue.ID) bool {
	r.mu.Lock()
	sub := r.subs[rid]
	r.mu.Unlock()
	if sub == nil {
		return false
	}
	sub.sess.mu.Lock()
	defer sub.sess.mu.Unlock()
	return sub.sess.waitingLocked(sub)
}

// OfferLate prepares the MSG event of a message with ID id, time ts and
// body for the subscriber of queue rid, as a SEND does, and offers it as
// its SEND would once durable, as though that had stored the message, the
// queue's only one, in store transaction commit. It reports whether the
// subscription took it. With deliver, the subscription is then told to
// deliver, as the SEND's notice does; without, the event stays offered.
func OfferLate(r *Relay, rid, id queue.ID, ts int64, body []byte, commit uint64, deliver bool) bool {
	p := r.prepareEvent(rid, &storedMessage{ID: id, Timestamp: ts, Body: body})
	if !r.offerEvent(p, sendResult{RecipientID: rid, First: true, Commit: commit}) {
		return false
	}
	if deliver {
		r.mu.Lock()
		sub := r.subs[rid]
		r.mu.Unlock()
		if sub != nil {
			sub.sess.markPending(sub, false)
		}
	}
	return true
}
