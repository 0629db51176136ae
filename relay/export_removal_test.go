package relay

import (
	"context"
	"time"

	"github.com/hushrelay/hush/queue"
)

// LiveSessions returns the number of r's sessions that have not ended:
// one that ended has released its events.
func LiveSessions(r *Relay) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// StoreSendOnly stores a message of body in the queue with sender ID sid
// as a SEND does, but only that: it models a SEND whose offer and notice
// are still to come. It returns the message's ID and time, the store
// commit that stored it, and whether it was the queue's only message.
func StoreSendOnly(r *Relay, sid queue.ID, body []byte) (id queue.ID, ts int64, commit uint64, first bool) {
	msg := storedMessage{ID: queue.NewID(), Timestamp: floorTime(time.Now().Unix(), r.messageUnit()), Body: body}
	ch, err := r.store.addMessage(context.Background(), sid, msg, r.cfg.QueueQuota)
	if err != nil {
		panic(err)
	}
	res := <-ch
	if res.Err != nil {
		panic(res.Err)
	}
	return msg.ID, msg.Timestamp, res.Commit, res.First
}

// StoreAckOnly commits an ACK of message id of queue rid, with no notice
// to the queue's subscriber: it models an ACK of another session whose
// notice is still to come (or never comes, its session having ended).
func StoreAckOnly(r *Relay, rid, id queue.ID) error {
	ch, err := r.store.ackMessage(context.Background(), rid, id)
	if err != nil {
		return err
	}
	return <-ch
}

// StoreDeleteOnly commits a DEL of queue rid, with no notice to its
// subscriber.
func StoreDeleteOnly(r *Relay, rid queue.ID) error {
	ch, err := r.store.deleteQueue(context.Background(), rid)
	if err != nil {
		return err
	}
	return <-ch
}

// StoreExpireOnly removes, as the expiry sweep does, the messages stored
// before unix time before, with no notice to their subscribers.
func StoreExpireOnly(r *Relay, before int64) (msgs int, err error) {
	msgs, _, err = r.store.sweep(context.Background(), before, 0, 0, nil)
	return msgs, err
}

// SessionStates returns the numbers of r's sessions that are running and
// of those that have ended (their connection closed, their context
// canceled) but still wait for their goroutines or store operations.
func SessionStates(r *Relay) (running, ending int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.sessions {
		if s.ctx.Err() != nil {
			ending++
		} else {
			running++
		}
	}
	return running, ending
}

// Subscribed reports whether the queue with recipient ID rid has a
// subscription registered.
func Subscribed(r *Relay, rid queue.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subs[rid] != nil
}
