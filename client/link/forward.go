package link

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hushrelay/hush/queue"
)

// Errors of private routing (queue/PROTOCOL.md section 20).
var (
	// ErrForward is returned by Proxy and by a Proxied's commands when the
	// forwarding relay did not forward: it does not reach the destination
	// or has closed its session with it (the error wraps queue.PROXY: ask
	// Proxy again), forwarding is off on it (queue.PROHIBITED), or the
	// destination could not open the command, which the forwarding relay
	// or someone on its path changed. The command had no effect, unless
	// the forwarding relay lies.
	ErrForward = errors.New("the forwarding relay did not forward the command")
	// ErrForwardTampered is returned when the forwarding relay gave an
	// attestation or an answer that is not the destination's: a signature
	// that does not verify, an answer that does not open. The forwarding
	// relay misbehaves; do not use it.
	ErrForwardTampered = errors.New("the forwarding relay changed what the destination relay sent")
)

// Proxied is a destination relay reached through a forwarding relay (a
// relay-to-relay session of the forwarding relay, whose key the
// destination attested): SecureSender and Send go to the destination
// sealed, so that it does not see this client's address, and the
// forwarding relay sees neither the queue nor the message. Made by
// Conn.Proxy; safe for concurrent use. It is good until the forwarding
// relay closes its session with the destination (errors wrapping
// ErrForward and queue.PROXY) or the Conn ends.
type Proxied struct {
	conn       *Conn
	dest       queue.Address
	id         queue.ID // the proxy session ID
	sessionKey queue.Key
	binding    []byte
	// offset is the destination's clock minus ours, in seconds, from its
	// last answer: forwarded commands carry the destination's time.
	offset atomic.Int64
}

// Proxy asks the relay of c to forward commands to the relay at dest
// (PRXY), and checks the destination's attestation of the session it is
// given against dest's fingerprint. Errors: ErrForward wrapping
// queue.PROXY (the forwarding relay could not reach dest) or
// queue.PROHIBITED (it does not forward); ErrWrongFingerprint (it reached
// another relay than dest pins); ErrForwardTampered (a forged
// attestation).
func (c *Conn) Proxy(ctx context.Context, dest queue.Address) (*Proxied, error) {
	r, err := c.exchange(ctx, nil, nil, &queue.Command{Tag: queue.TagPRXY, Relay: dest.WithoutPassword()}, queue.TagPKEY)
	var code queue.ErrorCode
	if errors.As(err, &code) {
		return nil, fmt.Errorf("%w: %w", ErrForward, code)
	}
	if err != nil {
		return nil, err
	}
	if !r.hasEntity {
		err := fmt.Errorf("%w: PKEY without a proxy session ID", ErrProtocol)
		c.shutdown(err)
		return nil, err
	}
	a := r.cmd.Attestation
	if err := a.Verify(dest.Fingerprint, time.Now()); err != nil {
		if errors.Is(err, queue.ErrChainIdentity) {
			return nil, fmt.Errorf("%w (through the forwarding relay): %w", ErrWrongFingerprint, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrForwardTampered, err)
	}
	return &Proxied{conn: c, dest: dest.WithoutPassword(), id: r.entity, sessionKey: a.SessionKey, binding: a.Binding[:]}, nil
}

// Destination returns the destination relay's address, without password.
func (p *Proxied) Destination() queue.Address { return p.dest }

// Conn returns the connection to the forwarding relay.
func (p *Proxied) Conn() *Conn { return p.conn }

// SecureSender is Conn.SecureSender (SKEY) through the forwarding relay.
func (p *Proxied) SecureSender(ctx context.Context, sid queue.ID, senderKey *ecdh.PrivateKey) error {
	return p.forward(ctx, senderKey, sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(senderKey)})
}

// Send is Conn.Send (SEND) through the forwarding relay.
func (p *Proxied) Send(ctx context.Context, sid queue.ID, senderKey *ecdh.PrivateKey, body []byte) error {
	if len(body) > queue.MaxMessageSize {
		return queue.LARGE
	}
	return p.forward(ctx, senderKey, sid, queue.Command{Tag: queue.TagSEND, Body: body})
}

// forward sends cmd for the queue with sender ID sid, authorized by key
// on the destination's attested session, sealed (PFWD), and returns the
// destination's answer: nil for OK, its queue.ErrorCode for ERR. After
// ERR TIME, it sends the command again, once, stamped with the
// destination's clock.
func (p *Proxied) forward(ctx context.Context, key *ecdh.PrivateKey, sid queue.ID, cmd queue.Command) error {
	ak, err := queue.AuthKey(key, p.sessionKey, p.binding)
	if err != nil {
		return fmt.Errorf("%w: unusable attested session key", ErrForwardTampered)
	}
	for attempt := 0; ; attempt++ {
		corr := queue.NewID()
		inner := queue.Transmission{CorrID: corr[:], Entity: sid[:], Command: cmd}
		inner.Auth = queue.AppendAuth(make([]byte, 0, queue.AuthSize), &ak, inner.AppendSigned(nil))
		eph, err := queue.GenerateKey()
		if err != nil {
			return err
		}
		ts := time.Now().Unix() + p.offset.Load()
		sealed, sec, err := queue.SealForward(make([]byte, 0, queue.ForwardSealedSize), eph, p.sessionKey, p.binding, ts, inner.Append(nil))
		if err != nil {
			return fmt.Errorf("%w: unusable attested session key", ErrForwardTampered)
		}
		r, err := p.conn.do(ctx, nil, &p.id, &queue.Command{Tag: queue.TagPFWD, EphemeralKey: queue.PublicKey(eph), Sealed: sealed}, queue.TagFRES)
		var code queue.ErrorCode
		if errors.As(err, &code) {
			return fmt.Errorf("%w: %w", ErrForward, code)
		}
		if err != nil {
			return err
		}
		rt, resp, err := queue.OpenForwardResponse(&sec, r.Sealed)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrForwardTampered, err)
		}
		p.offset.Store(rt - time.Now().Unix())
		t, _, err := queue.ParseTransmission(resp)
		if err != nil || string(t.CorrID) != string(corr[:]) || (t.Entity != nil && string(t.Entity) != string(sid[:])) {
			return fmt.Errorf("%w: the destination's answer does not fit the command", ErrProtocol)
		}
		switch {
		case t.Command.Tag == queue.TagOK:
			return nil
		case t.Command.Tag == queue.TagERR && t.Command.Error == queue.TIME && attempt == 0:
			continue // stamped with the destination's clock now
		case t.Command.Tag == queue.TagERR:
			return t.Command.Error
		}
		return fmt.Errorf("%w: the destination answered %v with %v", ErrProtocol, cmd.Tag, t.Command.Tag)
	}
}
