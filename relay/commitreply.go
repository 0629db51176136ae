package relay

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hushrelay/hush/queue"
)

// SENDs, ACKs and DELs are answered by the store's commit loop itself, with no
// goroutine per operation: an operation's finish function leaves its
// answer, and what must follow it, in the relay's commitWork, and once
// every operation of a group commit is finished (store OnFinished) the
// answers are queued, each session's all at once, then what follows them
// runs (the subscribers are told of new messages, the session's waits for
// the writes end), and then the writer of each session the commit gave
// work to is woken, once. The answers that one commit makes ready for a
// session thus leave in one block (when they fit), whatever the
// gathering wait (see "Writes" in docs/store.md).
//
// The commit loop must never wait for a session: before a SEND or ACK is
// submitted, the session's handler reserves a slot of replyQueue (and of
// maxInFlight) for its answer, blocking while they are full, as reply
// does; the answer then takes the slot without waiting.

// commitWork is what the operations of one group commit left for the
// sessions. Only the commit loop's goroutine uses it (and the store's
// Close, once the loop has ended: the store's calls of finish and
// OnFinished never overlap).
type commitWork struct {
	// replies are the encoded answers, by session, in the order of the
	// operations.
	replies map[*session][][]byte
	// then run once the answers are queued, in the order of the
	// operations.
	then []func()
	// wake are the sessions whose writers have work.
	wake map[*session]struct{}
}

func newCommitWork() *commitWork {
	return &commitWork{replies: make(map[*session][][]byte), wake: make(map[*session]struct{})}
}

// answer leaves the answer b for session s, and then to run once it is
// queued.
func (w *commitWork) answer(s *session, b []byte, then func()) {
	w.replies[s] = append(w.replies[s], b)
	w.then = append(w.then, then)
}

// finish queues the answers, runs what follows them, wakes the writers
// and empties w.
func (w *commitWork) finish() {
	for s, rs := range w.replies {
		s.mu.Lock()
		s.replies = append(s.replies, rs...) // their slots are reserved
		s.mu.Unlock()
		w.wake[s] = struct{}{}
	}
	clear(w.replies)
	for i, f := range w.then {
		f()
		w.then[i] = nil
	}
	w.then = w.then[:0]
	for s := range w.wake {
		s.mu.Lock()
		if len(s.replies) > 0 || len(s.events) > 0 || len(s.pending) > 0 {
			s.startWriterLocked()
		}
		s.mu.Unlock()
	}
	clear(w.wake)
}

// reserveStoreReply reserves what the answer to a store operation that
// the commit loop answers needs: an in-flight slot and a reply slot. It
// blocks while either is full and returns an error once the session has
// ended. The operation's finish function gives back the in-flight slot
// (releaseStoreReply) once it has queued the answer (storeAnswered); the
// writer gives back the reply slot once it has written the answer.
func (s *session) reserveStoreReply() error {
	select {
	case s.inFlight <- struct{}{}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	select {
	case s.replySlots <- struct{}{}:
	case <-s.ctx.Done():
		<-s.inFlight
		return s.ctx.Err()
	}
	// run waits for the answer, as it waits for the goroutines of async.
	s.wg.Add(1)
	return nil
}

// cancelStoreReply gives back what reserveStoreReply reserved, for an
// operation that was not submitted.
func (s *session) cancelStoreReply() {
	<-s.replySlots
	s.releaseStoreReply()
}

// releaseStoreReply is the last thing an operation's finish function
// does: it gives back the in-flight slot.
func (s *session) releaseStoreReply() {
	<-s.inFlight
	s.wg.Done()
}

// storeAnswered leaves the answer to a store operation for which
// reserveStoreReply was called in the relay's commitWork: OK for a nil
// err, else the error code err maps to, with notFound for errNotFound.
// ok counts the durable successes, begun is when the command was handled.
// then runs once the answer is queued; it must call releaseStoreReply
// last. storeAnswered runs on the commit loop's goroutine, in an
// operation's finish function, and does not block.
func (s *session) storeAnswered(err error, corrID, entity []byte, notFound queue.ErrorCode, ok prometheus.Counter, begun time.Time, then func()) {
	cmd := queue.Command{Tag: queue.TagOK}
	if err != nil {
		code := errorCode(err)
		if errors.Is(err, errNotFound) {
			code = notFound
		}
		s.r.metrics.countError(code)
		if code == queue.AUTH || code == queue.SYNTAX {
			s.failures.Add(1)
		}
		cmd = queue.Command{Tag: queue.TagERR, Error: code}
	} else {
		ok.Inc()
		s.r.noteWrite(time.Since(begun))
	}
	if outer, fres, fwd := s.forwardedAnswer(corrID, entity, cmd); fwd {
		corrID, entity, cmd = outer, nil, fres
	}
	t := queue.Transmission{CorrID: corrID, Entity: entity, Command: cmd}
	s.r.commitWork.answer(s, t.Append(nil), then)
}

// notifyAfterCommit tells the subscriber of rid, if any, that its queue
// may have a message to deliver (a SEND) or, with head, that its first
// message may have changed (an ACK; as notifyHead). It runs in what
// follows an answer of the commit loop: the subscriber's writer is woken
// with the others of the commit.
func (r *Relay) notifyAfterCommit(rid queue.ID, head bool) {
	r.mu.Lock()
	sub := r.subs[rid]
	r.mu.Unlock()
	if sub != nil && sub.sess.mark(sub, head) {
		r.commitWork.wake[sub.sess] = struct{}{}
	}
}
