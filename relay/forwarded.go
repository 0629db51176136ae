package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/hushrelay/hush/queue"
)

// Private message routing on a session (PROTOCOL.md section 20): PRXY and
// PFWD from clients, served through the forwarder; RKEY and RFWD from
// forwarding relays, whose inner commands this relay handles as commands
// of the relay-to-relay session.

// forwardedReply is what a session keeps of one inner command it handles
// for a forwarding relay, to seal the answer for the client.
type forwardedReply struct {
	outer []byte // the RFWD's corrID
	inner []byte // the inner command's corrID
	sec   queue.ForwardSecret
}

// replayVerdict is the replay filter's answer to a forwarded command.
type replayVerdict int

const (
	replayNew    replayVerdict = iota // first seen, within the window: handle it
	replaySeen                        // its ephemeral key was seen: a replay
	replayWindow                      // its timestamp is outside the window
	replayFull                        // the filter is full: refuse for now
)

// replayFilter remembers the ephemeral keys of the forwarded commands a
// relay accepted, relay-wide, until their timestamps leave the window
// (queue.ForwardWindow): a command whose key it holds is a replay, and one
// whose timestamp is outside the window is refused, so nothing older
// needs remembering. It holds at most capacity keys, in buckets of one
// window by timestamp (a replay carries the same timestamp, so it is
// looked up in one bucket), and never evicts a key early.
type replayFilter struct {
	window   int64 // seconds
	capacity int

	mu      sync.Mutex
	n       int
	buckets map[int64]map[queue.Key]struct{} // by timestamp / window
}

func newReplayFilter(capacity int) *replayFilter {
	return &replayFilter{
		window:   int64(queue.ForwardWindow / time.Second),
		capacity: capacity,
		buckets:  make(map[int64]map[queue.Key]struct{}),
	}
}

// admit checks a command with ephemeral key eph and timestamp ts at Unix
// time now, and remembers eph if it is new.
func (f *replayFilter) admit(eph queue.Key, ts, now int64) replayVerdict {
	if ts < now-f.window || ts > now+f.window {
		return replayWindow
	}
	b := ts / f.window
	f.mu.Lock()
	defer f.mu.Unlock()
	// Drop the buckets whose every timestamp is out of the window.
	for old, keys := range f.buckets {
		if (old+1)*f.window <= now-f.window {
			f.n -= len(keys)
			delete(f.buckets, old)
		}
	}
	keys := f.buckets[b]
	if _, seen := keys[eph]; seen {
		return replaySeen
	}
	if f.n >= f.capacity {
		return replayFull
	}
	if keys == nil {
		keys = make(map[queue.Key]struct{})
		f.buckets[b] = keys
	}
	keys[eph] = struct{}{}
	f.n++
	return replayNew
}

// size returns the number of keys held.
func (f *replayFilter) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// handleForwarding serves the four commands of private routing. None
// carries an auth.
func (s *session) handleForwarding(t queue.Transmission, corrID, entity []byte) error {
	cmd := t.Command
	if t.Auth != nil {
		return s.replyErr(corrID, entity, queue.SYNTAX)
	}
	switch cmd.Tag {
	case queue.TagPRXY:
		if entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handlePRXY(corrID, cmd.Relay)
	case queue.TagPFWD:
		id, ok := entityID(&t)
		if !ok {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handlePFWD(corrID, id, cmd)
	case queue.TagRKEY:
		if entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handleRKEY(corrID)
	case queue.TagRFWD:
		if entity != nil {
			return s.replyErr(corrID, entity, queue.SYNTAX)
		}
		return s.handleRFWD(corrID, cmd)
	}
	return errMalformed
}

// handlePRXY opens or reuses a relay-to-relay session to dest and answers
// its attestation, with the proxy session ID as entity.
func (s *session) handlePRXY(corrID []byte, dest queue.Address) error {
	if s.r.cfg.DisableForwarding {
		return s.replyErr(corrID, nil, queue.PROHIBITED)
	}
	return s.async(func() {
		p, err := s.r.forwarder.open(s.ctx, dest)
		if err != nil {
			if s.ctx.Err() == nil {
				s.r.metrics.forwardFailures.Inc()
				s.replyErr(corrID, nil, queue.PROXY)
			}
			return
		}
		s.reply(corrID, p.id[:], queue.Command{Tag: queue.TagPKEY, Attestation: p.attest})
	})
}

// handlePFWD passes a sealed command to the destination of the proxy
// session id, after the session's and the destination's rates.
func (s *session) handlePFWD(corrID []byte, id queue.ID, cmd queue.Command) error {
	if s.r.cfg.DisableForwarding {
		return s.replyErr(corrID, id[:], queue.PROHIBITED)
	}
	// The sealed bytes alias the block: copy them before going async.
	rfwd := queue.Command{Tag: queue.TagRFWD, EphemeralKey: cmd.EphemeralKey, Sealed: clone(cmd.Sealed)}
	times, via := 1, id
	if hook := s.r.forwardHook.Load(); hook != nil {
		times = (*hook)(&rfwd, &via)
	}
	p := s.r.forwarder.lookup(via)
	if p == nil {
		s.r.metrics.forwardFailures.Inc()
		return s.replyErr(corrID, id[:], queue.PROXY)
	}
	if err := s.r.wait(s.ctx, s.forwardLimit, s.r.metrics.delayedForwards); err != nil {
		return err
	}
	if err := s.r.wait(s.ctx, p.limit, s.r.metrics.delayedForwards); err != nil {
		return err
	}
	return s.async(func() {
		ctx, cancel := context.WithTimeout(s.ctx, forwardAnswerTimeout)
		defer cancel()
		var (
			a   queue.Command
			err error
		)
		for range times { // once, but for tests of a relay that replays
			a, err = p.do(ctx, rfwd)
		}
		switch {
		case err != nil:
			if s.ctx.Err() == nil {
				s.r.metrics.forwardFailures.Inc()
				s.replyErr(corrID, id[:], queue.PROXY)
			}
		case a.Tag == queue.TagFRES:
			s.r.metrics.forwarded.Inc()
			s.reply(corrID, id[:], queue.Command{Tag: queue.TagFRES, Sealed: a.Sealed})
		case a.Tag == queue.TagERR:
			// The destination could not open the command: its answer in
			// clear, which the client takes as a failure of forwarding.
			s.r.metrics.forwardFailures.Inc()
			s.reply(corrID, id[:], queue.Command{Tag: queue.TagERR, Error: a.Error})
		default:
			s.r.metrics.forwardFailures.Inc()
			p.close() // the destination broke the protocol
			s.replyErr(corrID, id[:], queue.PROXY)
		}
	})
}

// handleRKEY answers a forwarding relay with the attestation of this
// session's key and binding, by the online key the relay serves now.
func (s *session) handleRKEY(corrID []byte) error {
	cert := s.r.cert.Load().cert
	online, ok := cert.PrivateKey.(ed25519.PrivateKey)
	if !ok {
		return s.replyErr(corrID, nil, queue.INTERNAL)
	}
	a := queue.SignAttestation(online, cert.Certificate, queue.PublicKey(s.key), s.binding)
	return s.reply(corrID, nil, queue.Command{Tag: queue.TagPKEY, Attestation: a})
}

// handleRFWD opens a forwarded command, checks it against the replay
// filter, and handles its inner SEND or SKEY as a command of this
// session, whose answer reply seals for the client.
func (s *session) handleRFWD(corrID []byte, cmd queue.Command) error {
	s.r.metrics.forwardedReceived.Inc()
	ts, inner, sec, err := queue.OpenForward(s.key, s.binding, cmd.EphemeralKey, cmd.Sealed)
	switch {
	case errors.Is(err, queue.ErrOpen):
		s.r.metrics.forwardedRefused[refusedOpen].Inc()
		return s.replyErr(corrID, nil, queue.AUTH)
	case err != nil:
		s.r.metrics.forwardedRefused[refusedOpen].Inc()
		return s.replyErr(corrID, nil, queue.SYNTAX)
	}
	fr := &forwardedReply{outer: corrID, sec: sec}
	t, signed, err := queue.ParseTransmission(inner)
	if err != nil || t.CorrID == nil || t.Auth == nil || t.Entity == nil {
		return s.replyForwardedErr(fr, nil, queue.SYNTAX)
	}
	fr.inner = t.CorrID
	switch s.r.replay.admit(cmd.EphemeralKey, ts, time.Now().Unix()) {
	case replaySeen:
		s.r.metrics.forwardedRefused[refusedReplay].Inc()
		return s.replyForwardedErr(fr, t.Entity, queue.AUTH)
	case replayWindow:
		s.r.metrics.forwardedRefused[refusedTime].Inc()
		return s.replyForwardedErr(fr, t.Entity, queue.TIME)
	case replayFull:
		s.r.metrics.forwardedRefused[refusedFull].Inc()
		return s.replyForwardedErr(fr, t.Entity, queue.QUOTA)
	}
	if t.Command.Tag != queue.TagSEND && t.Command.Tag != queue.TagSKEY {
		return s.replyForwardedErr(fr, t.Entity, queue.PROHIBITED)
	}
	// The inner command goes through handle under a corrID of this
	// relay's own, by which reply finds it: the client's may be anything.
	local := queue.NewID()
	s.mu.Lock()
	if s.forwards == nil {
		s.forwards = make(map[queue.ID]*forwardedReply)
	}
	s.forwards[local] = fr
	s.mu.Unlock()
	s.hasForwards.Store(true)
	t.CorrID = local[:]
	return s.handle(t, signed)
}

// replyForwardedErr answers a forwarded command with an ERR sealed for the
// client.
func (s *session) replyForwardedErr(fr *forwardedReply, entity []byte, code queue.ErrorCode) error {
	s.r.metrics.countError(code)
	cmd := s.sealForwarded(fr, entity, queue.Command{Tag: queue.TagERR, Error: code})
	return s.reply(fr.outer, nil, cmd)
}

// sealForwarded returns the FRES that carries answer, for entity, to the
// client of a forwarded command.
func (s *session) sealForwarded(fr *forwardedReply, entity []byte, answer queue.Command) queue.Command {
	t := queue.Transmission{CorrID: fr.inner, Entity: entity, Command: answer}
	var nonce [24]byte
	rand.Read(nonce[:])
	res := queue.SealForwardResponse(make([]byte, 0, queue.ForwardResponseSize), &fr.sec, nonce, time.Now().Unix(), t.Append(nil))
	return queue.Command{Tag: queue.TagFRES, Sealed: res}
}

// forwardedAnswer returns, for a reply to corrID, the FRES that carries it
// to the client when corrID is that of an inner forwarded command.
func (s *session) forwardedAnswer(corrID, entity []byte, cmd queue.Command) (outer []byte, fres queue.Command, ok bool) {
	if !s.hasForwards.Load() || len(corrID) != queue.IDSize {
		return nil, cmd, false
	}
	s.mu.Lock()
	fr := s.forwards[queue.ID(corrID)]
	delete(s.forwards, queue.ID(corrID))
	s.mu.Unlock()
	if fr == nil {
		return nil, cmd, false
	}
	return fr.outer, s.sealForwarded(fr, entity, cmd), true
}
