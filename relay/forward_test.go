package relay_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// Conformance tests of private message routing, PROTOCOL.md section 20.
// The relays are in-process relays on their own loopback addresses; the
// sending client dials from 127.0.0.4, so that each relay can tell it by
// its source address.

var senderAddr = netip.MustParseAddr("127.0.0.4")

// sources records the source addresses a relay accepted connections from.
type sources struct {
	mu   sync.Mutex
	seen map[netip.Addr]int
}

func watchSources(r *relay.Relay) *sources {
	s := &sources{seen: make(map[netip.Addr]int)}
	relay.SetAdmitHook(r, func(a netip.Addr) {
		s.mu.Lock()
		s.seen[a.Unmap()]++
		s.mu.Unlock()
	})
	return s
}

func (s *sources) count(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[a]
}

// forwardSetup is a forwarding relay F on 127.0.0.1 and a destination D
// on 127.0.0.2, each with an admin server for /metrics.
type forwardSetup struct {
	f, d           *relaytest.Relay
	fSrc, dSrc     *sources
	fAdmin, dAdmin string
}

func newForwardSetup(t *testing.T, editF func(*relay.Config)) *forwardSetup {
	t.Helper()
	s := &forwardSetup{
		f: relaytest.New(t, editF),
		d: relaytest.New(t, func(c *relay.Config) { c.Listen = "127.0.0.2:0" }),
	}
	s.fSrc, s.dSrc = watchSources(s.f.Relay), watchSources(s.d.Relay)
	s.fAdmin, s.dAdmin = adminServer(t, s.f.Relay), adminServer(t, s.d.Relay)
	return s
}

// dialSender dials addr from the sender's address over transport.
func dialSender(t *testing.T, ctx context.Context, addr queue.Address, transport link.Transport) *link.Conn {
	t.Helper()
	c, err := link.Dial(ctx, addr, link.Config{Transport: transport, LocalAddr: senderAddr})
	if err != nil {
		t.Fatalf("dial %s from %v: %v", transport, senderAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxy opens a proxied session to d through the sender's connection c.
func proxy(t *testing.T, ctx context.Context, c *link.Conn, d queue.Address) *link.Proxied {
	t.Helper()
	p, err := c.Proxy(ctx, d)
	if err != nil {
		t.Fatalf("PRXY: %v", err)
	}
	return p
}

// TestForwardSendAndSecure: section 20.2. Through a forwarding relay, a
// sender secures a queue (SKEY) and sends to it (SEND); the recipient
// gets every message once and in order; the destination never has a
// connection from the sender's address, the forwarding relay does; and
// the forwarding relay keeps one relay-to-relay session for both
// transports' clients.
func TestForwardSendAndSecure(t *testing.T) {
	s := newForwardSetup(t, nil)
	ctx := testCtx(t)
	rc := e2eDial(t, ctx, s.d.Address, link.TransportTCP) // the recipient, from 127.0.0.1
	for _, transport := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		t.Run(string(transport), func(t *testing.T) {
			q, err := rc.Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Subscribe(ctx, q); err != nil {
				t.Fatal(err)
			}
			sc := dialSender(t, ctx, s.f.Address, transport)
			p := proxy(t, ctx, sc, s.d.Address)
			sk := mustKey(t)
			if err := p.SecureSender(ctx, q.SenderID, sk); err != nil {
				t.Fatalf("forwarded SKEY: %v", err)
			}
			// Securing again with another key: the destination's AUTH,
			// sealed, comes back as the queue's error.
			if err := p.SecureSender(ctx, q.SenderID, mustKey(t)); !errors.Is(err, queue.AUTH) || errors.Is(err, link.ErrForward) {
				t.Fatalf("forwarded SKEY with another key: %v, want the destination's AUTH", err)
			}
			const n = 5
			for i := range n {
				if err := p.Send(ctx, q.SenderID, sk, []byte{byte(i)}); err != nil {
					t.Fatalf("forwarded SEND %d: %v", i, err)
				}
			}
			for i := range n {
				ev := e2eEvent(t, ctx, rc)
				if ev.Err != nil || len(ev.Message.Body) != 1 || ev.Message.Body[0] != byte(i) {
					t.Fatalf("message %d: %+v", i, ev)
				}
				if err := rc.Ack(ctx, q, ev.Message.ID); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	if got := s.dSrc.count(senderAddr); got != 0 {
		t.Errorf("the destination had %d connections from the sender's address", got)
	}
	if got := s.fSrc.count(senderAddr); got != 2 {
		t.Errorf("the forwarding relay had %d connections from the sender, want 2", got)
	}
	fams, _ := scrape(t, s.fAdmin)
	if got := metricValue(t, fams, "hush_relay_forward_sessions", ""); got != 1 {
		t.Errorf("forward_sessions = %v, want 1 (one relay-to-relay session, reused)", got)
	}
	if got := metricValue(t, fams, "hush_relay_forwarded_total", ""); got != 2*(2+5) {
		t.Errorf("forwarded_total = %v, want 14", got)
	}
	fams, _ = scrape(t, s.dAdmin)
	if got := metricValue(t, fams, "hush_relay_forwarded_received_total", ""); got != 14 {
		t.Errorf("forwarded_received_total = %v, want 14", got)
	}
}

func mustKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	t.Cleanup(cancel)
	return ctx
}

// securedQueue creates a queue on the destination and secures it with a
// new sender key, directly.
func (s *forwardSetup) securedQueue(t *testing.T, ctx context.Context) (*link.Conn, link.Queue, *ecdh.PrivateKey) {
	t.Helper()
	rc := e2eDial(t, ctx, s.d.Address, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	return rc, q, sk
}

// stored counts the messages waiting in q, acknowledging each.
func stored(t *testing.T, ctx context.Context, rc *link.Conn, q link.Queue) int {
	t.Helper()
	n := 0
	for {
		m, err := rc.Get(ctx, q)
		if errors.Is(err, link.ErrNoMessage) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// TestForwardTampered: sections 20.2 and 20.4. A forwarding relay that
// changes a bit of the sealed command, or its ephemeral key, gets the
// destination's ERR in clear; the client reports that forwarding failed,
// and nothing is stored.
func TestForwardTampered(t *testing.T) {
	s := newForwardSetup(t, nil)
	ctx := testCtx(t)
	rc, q, sk := s.securedQueue(t, ctx)
	sc := dialSender(t, ctx, s.f.Address, link.TransportTCP)
	p := proxy(t, ctx, sc, s.d.Address)
	for name, tamper := range map[string]func(*queue.Command){
		"sealed bit":    func(c *queue.Command) { c.Sealed[100] ^= 0x04 },
		"sealed tag":    func(c *queue.Command) { c.Sealed[len(c.Sealed)-1] ^= 0x80 },
		"ephemeral key": func(c *queue.Command) { c.EphemeralKey[3] ^= 0x01 },
	} {
		relay.SetForwardHook(s.f.Relay, func(c *queue.Command, _ *queue.ID) int { tamper(c); return 1 })
		err := p.Send(ctx, q.SenderID, sk, []byte("changed on the way"))
		if !errors.Is(err, link.ErrForward) {
			t.Errorf("%s: %v, want ErrForward", name, err)
		}
	}
	relay.SetForwardHook(s.f.Relay, func(*queue.Command, *queue.ID) int { return 1 })
	if n := stored(t, ctx, rc, q); n != 0 {
		t.Fatalf("%d tampered messages stored", n)
	}
	fams, _ := scrape(t, s.dAdmin)
	if got := metricValue(t, fams, "hush_relay_forwarded_refused_total", "reason=open"); got != 3 {
		t.Errorf("forwarded_refused_total{reason=open} = %v, want 3", got)
	}
	// The session still works.
	if err := p.Send(ctx, q.SenderID, sk, []byte("intact")); err != nil {
		t.Fatalf("untampered SEND: %v", err)
	}
	if n := stored(t, ctx, rc, q); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

// TestForwardRedirected: sections 20.3 and 20.4. A forwarding relay that
// sends a command to another destination (its session with another
// relay) gets it refused there: it was sealed for the destination's
// session; and one that answers PRXY with another relay's attestation is
// refused by the client as a wrong fingerprint.
func TestForwardRedirected(t *testing.T) {
	s := newForwardSetup(t, nil)
	other := relaytest.New(t, func(c *relay.Config) { c.Listen = "127.0.0.3:0" })
	otherSrc := watchSources(other.Relay)
	ctx := testCtx(t)
	rc, q, sk := s.securedQueue(t, ctx)
	sc := dialSender(t, ctx, s.f.Address, link.TransportQUIC)
	toD := proxy(t, ctx, sc, s.d.Address)
	toOther := proxy(t, ctx, sc, other.Address)
	if toD == toOther {
		t.Fatal("one proxied session for two destinations")
	}
	// The test learns the other session's ID the way the relay does: from
	// the PRXY answer, here through a hook that records the sessions.
	var (
		mu      sync.Mutex
		otherID queue.ID
	)
	relay.SetForwardHook(s.f.Relay, func(_ *queue.Command, id *queue.ID) int {
		mu.Lock()
		otherID = *id
		mu.Unlock()
		return 1
	})
	if err := toOther.Send(ctx, q.SenderID, sk, []byte("x")); !errors.Is(err, queue.AUTH) {
		t.Fatalf("SEND of D's sender ID through the other relay: %v, want its AUTH", err) // no such queue there
	}
	mu.Lock()
	defer mu.Unlock()
	relay.SetForwardHook(s.f.Relay, func(_ *queue.Command, id *queue.ID) int { *id = otherID; return 1 })
	if err := toD.Send(ctx, q.SenderID, sk, []byte("redirected")); !errors.Is(err, link.ErrForward) {
		t.Fatalf("redirected SEND: %v, want ErrForward", err)
	}
	relay.SetForwardHook(s.f.Relay, func(*queue.Command, *queue.ID) int { return 1 })
	if n := stored(t, ctx, rc, q); n != 0 {
		t.Fatalf("%d redirected messages stored", n)
	}
	// PRXY for D's fingerprint at the other relay's host and port: the
	// forwarding relay pins D's identity and does not reach it.
	wrong := other.Address
	wrong.Fingerprint = s.d.Address.Fingerprint
	if _, err := sc.Proxy(ctx, wrong); !errors.Is(err, link.ErrForward) || !errors.Is(err, queue.PROXY) {
		t.Fatalf("PRXY to D's fingerprint at another relay: %v, want ErrForward and PROXY", err)
	}
	if got := otherSrc.count(senderAddr); got != 0 {
		t.Errorf("the other relay had %d connections from the sender", got)
	}
}

// TestForwardReplayed: section 20.5. A forwarding relay that sends an
// RFWD twice, at once or later on the same session, gets the copy
// refused: the message is stored once.
func TestForwardReplayed(t *testing.T) {
	s := newForwardSetup(t, nil)
	ctx := testCtx(t)
	rc, q, sk := s.securedQueue(t, ctx)
	sc := dialSender(t, ctx, s.f.Address, link.TransportTCP)
	p := proxy(t, ctx, sc, s.d.Address)
	var (
		mu       sync.Mutex
		captured queue.Command
	)
	relay.SetForwardHook(s.f.Relay, func(c *queue.Command, _ *queue.ID) int {
		mu.Lock()
		captured = *c
		mu.Unlock()
		return 2 // sent twice; the client gets the answer to the copy
	})
	err := p.Send(ctx, q.SenderID, sk, []byte("once"))
	if !errors.Is(err, queue.AUTH) {
		t.Fatalf("the answer to the replayed copy: %v, want AUTH (a replay)", err)
	}
	// Later, in place of another command: refused too, and its answer is
	// not the client's (sealed for the captured command).
	relay.SetForwardHook(s.f.Relay, func(c *queue.Command, _ *queue.ID) int {
		mu.Lock()
		defer mu.Unlock()
		*c = captured
		return 1
	})
	if err := p.Send(ctx, q.SenderID, sk, []byte("another")); !errors.Is(err, link.ErrForwardTampered) {
		t.Fatalf("a captured command in place of another: %v, want ErrForwardTampered", err)
	}
	relay.SetForwardHook(s.f.Relay, func(*queue.Command, *queue.ID) int { return 1 })
	if n := stored(t, ctx, rc, q); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	fams, _ := scrape(t, s.dAdmin)
	if got := metricValue(t, fams, "hush_relay_forwarded_refused_total", "reason=replay"); got != 2 {
		t.Errorf("forwarded_refused_total{reason=replay} = %v, want 2", got)
	}
	if got := metricValue(t, fams, "hush_relay_replay_filter_keys", ""); got != 1 {
		t.Errorf("replay_filter_keys = %v, want 1 (the captured command's key)", got)
	}
}

// TestForwardingOff: section 20.6. A relay whose operator turned
// forwarding off answers PRXY and PFWD ERR PROHIBITED, and says so in
// /metrics; it still accepts commands forwarded to it.
func TestForwardingOff(t *testing.T) {
	s := newForwardSetup(t, func(c *relay.Config) { c.DisableForwarding = true })
	ctx := testCtx(t)
	sc := dialSender(t, ctx, s.f.Address, link.TransportTCP)
	if _, err := sc.Proxy(ctx, s.d.Address); !errors.Is(err, link.ErrForward) || !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("PRXY to a relay that does not forward: %v", err)
	}
	fams, _ := scrape(t, s.fAdmin)
	if got := metricValue(t, fams, "hush_relay_forward_enabled", ""); got != 0 {
		t.Errorf("forward_enabled = %v, want 0", got)
	}
	// D forwards to F, which accepts forwarded commands.
	rc := e2eDial(t, ctx, s.f.Address, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	dc := dialSender(t, ctx, s.d.Address, link.TransportTCP)
	if err := proxy(t, ctx, dc, s.f.Address).Send(ctx, q.SenderID, sk, []byte("to F")); err != nil {
		t.Fatalf("SEND forwarded to a relay that does not forward: %v", err)
	}
	fams, _ = scrape(t, s.dAdmin)
	if got := metricValue(t, fams, "hush_relay_forward_enabled", ""); got != 1 {
		t.Errorf("forward_enabled = %v on a relay that forwards", got)
	}
}

// TestForwardSessionsIdleAndBounded: section 20.6. A relay-to-relay
// session is closed when idle, after which the client's PFWD is answered
// ERR PROXY and PRXY opens a new one; beyond the maximum, the least
// recently used idle session makes room.
func TestForwardSessionsIdleAndBounded(t *testing.T) {
	s := newForwardSetup(t, func(c *relay.Config) {
		c.ForwardIdleTimeout = 300 * time.Millisecond
		c.MaxForwardSessions = 1
	})
	other := relaytest.New(t, func(c *relay.Config) { c.Listen = "127.0.0.3:0" })
	ctx := testCtx(t)
	_, q, sk := s.securedQueue(t, ctx)
	sc := dialSender(t, ctx, s.f.Address, link.TransportTCP)
	p := proxy(t, ctx, sc, s.d.Address)
	if err := p.Send(ctx, q.SenderID, sk, []byte("1")); err != nil {
		t.Fatal(err)
	}
	waitMetricBelow(t, s.fAdmin, "hush_relay_forward_sessions", 1)
	if err := p.Send(ctx, q.SenderID, sk, []byte("2")); !errors.Is(err, link.ErrForward) || !errors.Is(err, queue.PROXY) {
		t.Fatalf("PFWD on a closed relay-to-relay session: %v, want ErrForward and PROXY", err)
	}
	p = proxy(t, ctx, sc, s.d.Address)
	if err := p.Send(ctx, q.SenderID, sk, []byte("3")); err != nil {
		t.Fatalf("PFWD after a new PRXY: %v", err)
	}
	// One session at most: PRXY to another destination closes D's.
	proxy(t, ctx, sc, other.Address)
	if err := p.Send(ctx, q.SenderID, sk, []byte("4")); !errors.Is(err, queue.PROXY) {
		t.Fatalf("PFWD on an evicted session: %v, want PROXY", err)
	}
	fams, _ := scrape(t, s.fAdmin)
	if got := metricValue(t, fams, "hush_relay_forward_sessions", ""); got != 1 {
		t.Errorf("forward_sessions = %v, want 1", got)
	}
}

// waitMetricBelow polls the relay's metric name until it is below want.
func waitMetricBelow(t *testing.T, base, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(wireTimeout)
	for {
		fams, _ := scrape(t, base)
		got := metricSum(t, fams, name, "")
		if got < want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want below %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardedCommandRules: sections 20.1 to 20.5, on the wire. The
// destination attests the session RKEY came on; answers in clear the
// RFWDs it cannot open or that break the rules of 20.1; and answers every
// command it opens with FRES, sealed for its client, whatever the
// outcome: PROHIBITED for an inner command other than SEND and SKEY,
// SYNTAX for one without auth, TIME outside the window, AUTH for an
// unknown queue. PRXY and PFWD break the same rules on any relay.
func TestForwardedCommandRules(t *testing.T) {
	d := relaytest.New(t, nil)
	s := dialRaw(t, d.HostPort)
	anyKey := mustKey(t)

	pkey := s.command(nil, nil, queue.Command{Tag: queue.TagRKEY})
	if pkey.Tag != queue.TagPKEY {
		t.Fatalf("RKEY answered %v", pkey.Tag)
	}
	a := pkey.Attestation
	if err := a.Verify(d.Address.Fingerprint, time.Now()); err != nil {
		t.Fatalf("attestation: %v", err)
	}
	if a.SessionKey != s.relayKey || !bytes.Equal(a.Binding[:], s.binding) {
		t.Fatal("the attestation is not of this session")
	}

	seal := func(inner queue.Transmission, ts int64) (queue.Command, queue.ForwardSecret) {
		eph := mustKey(t)
		sealed, sec, err := queue.SealForward(nil, eph, s.relayKey, s.binding, ts, inner.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		return queue.Command{Tag: queue.TagRFWD, EphemeralKey: queue.PublicKey(eph), Sealed: sealed}, sec
	}
	sid := queue.NewID()
	corr := queue.NewID()
	authorized := func(cmd queue.Command) queue.Transmission {
		tx := queue.Transmission{CorrID: corr[:], Entity: sid[:], Command: cmd}
		ak, err := queue.AuthKey(anyKey, s.relayKey, s.binding)
		if err != nil {
			t.Fatal(err)
		}
		tx.Auth = queue.AppendAuth(nil, &ak, tx.AppendSigned(nil))
		return tx
	}
	okRFWD, _ := seal(authorized(queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), time.Now().Unix())

	// In clear.
	clear := []struct {
		name   string
		key    *ecdh.PrivateKey
		entity []byte
		cmd    queue.Command
		want   queue.ErrorCode
	}{
		{"RKEY with an auth", anyKey, nil, queue.Command{Tag: queue.TagRKEY}, queue.SYNTAX},
		{"RFWD with an auth", anyKey, nil, okRFWD, queue.SYNTAX},
		{"RFWD with an entity", nil, sid[:], okRFWD, queue.SYNTAX},
		{"RFWD with a low-order key", nil, nil, queue.Command{Tag: queue.TagRFWD, Sealed: okRFWD.Sealed}, queue.SYNTAX},
		{"RFWD that does not open", nil, nil, queue.Command{Tag: queue.TagRFWD, EphemeralKey: queue.PublicKey(anyKey), Sealed: okRFWD.Sealed}, queue.AUTH},
		{"PRXY with an auth", anyKey, nil, queue.Command{Tag: queue.TagPRXY, Relay: d.Address.WithoutPassword()}, queue.SYNTAX},
		{"PRXY with an entity", nil, sid[:], queue.Command{Tag: queue.TagPRXY, Relay: d.Address.WithoutPassword()}, queue.SYNTAX},
		{"PFWD without a proxy session", nil, nil, queue.Command{Tag: queue.TagPFWD, EphemeralKey: okRFWD.EphemeralKey, Sealed: okRFWD.Sealed}, queue.SYNTAX},
		{"PFWD to an unknown proxy session", nil, sid[:], queue.Command{Tag: queue.TagPFWD, EphemeralKey: okRFWD.EphemeralKey, Sealed: okRFWD.Sealed}, queue.PROXY},
	}
	for _, c := range clear {
		got := s.command(c.key, c.entity, c.cmd)
		if got.Tag != queue.TagERR || got.Error != c.want {
			t.Errorf("%s: answered %v %v, want ERR %v", c.name, got.Tag, got.Error, c.want)
		}
	}

	// Sealed.
	sealedCases := []struct {
		name  string
		inner queue.Transmission
		ts    int64
		want  queue.ErrorCode
	}{
		{"an inner NEW", authorized(queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(anyKey), RecipientDHKey: queue.PublicKey(anyKey)}), 0, queue.PROHIBITED},
		{"an inner SUB", authorized(queue.Command{Tag: queue.TagSUB}), 0, queue.PROHIBITED},
		{"an inner SEND without auth", queue.Transmission{CorrID: corr[:], Entity: sid[:], Command: queue.Command{Tag: queue.TagSEND}}, 0, queue.SYNTAX},
		{"a timestamp 2 minutes old", authorized(queue.Command{Tag: queue.TagSEND}), -120, queue.TIME},
		{"a timestamp 2 minutes ahead", authorized(queue.Command{Tag: queue.TagSEND}), 120, queue.TIME},
		{"a SEND to no queue", authorized(queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), 0, queue.AUTH},
		{"a SKEY of no queue", authorized(queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(anyKey)}), 0, queue.AUTH},
	}
	for _, c := range sealedCases {
		now := time.Now().Unix()
		cmd, sec := seal(c.inner, now+c.ts)
		got := s.command(nil, nil, cmd)
		if got.Tag != queue.TagFRES {
			t.Errorf("%s: answered %v %v, want FRES", c.name, got.Tag, got.Error)
			continue
		}
		rt, resp, err := queue.OpenForwardResponse(&sec, got.Sealed)
		if err != nil {
			t.Errorf("%s: the answer does not open: %v", c.name, err)
			continue
		}
		if rt < now-5 || rt > time.Now().Unix()+5 {
			t.Errorf("%s: relayTime %d, now %d", c.name, rt, now)
		}
		tx, _, err := queue.ParseTransmission(resp)
		if err != nil || tx.Command.Tag != queue.TagERR || tx.Command.Error != c.want {
			t.Errorf("%s: sealed answer %+v (%v), want ERR %v", c.name, tx.Command, err, c.want)
		}
		if c.want != queue.SYNTAX && !bytes.Equal(tx.CorrID, corr[:]) {
			t.Errorf("%s: the sealed answer's corrID is not the inner command's", c.name)
		}
	}
}
