package relay_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// e2eTimeout bounds every end-to-end test.
const e2eTimeout = 30 * time.Second

// e2eTransports runs f as one subtest per transport.
func e2eTransports(t *testing.T, f func(t *testing.T, transport link.Transport)) {
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		t.Run(string(tr), func(t *testing.T) { f(t, tr) })
	}
}

func e2eContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	t.Cleanup(cancel)
	return ctx
}

// e2eRelay is an in-process relay on loopback (relaytest), with the
// fields the tests use.
type e2eRelay struct {
	t    *testing.T
	rt   *relaytest.Relay
	r    *relay.Relay
	cfg  relay.Config
	addr queue.Address
}

// startE2ERelay starts a relay with a new identity and store; edit, if not
// nil, adjusts the configuration first.
func startE2ERelay(t *testing.T, edit func(*relay.Config)) *e2eRelay {
	t.Helper()
	e := &e2eRelay{t: t, rt: relaytest.New(t, edit)}
	e.sync()
	return e
}

// sync points e's fields at the relay running now.
func (e *e2eRelay) sync() { e.r, e.cfg, e.addr = e.rt.Relay, e.rt.Config, e.rt.Address }

// restart closes the relay and starts it again on the same store, on a new
// port (the old one may be taken by then).
func (e *e2eRelay) restart() {
	e.t.Helper()
	e.rt.Restart(e.t)
	e.sync()
}

// dial connects to the relay over transport, closing the connection when
// the test ends.
func (e *e2eRelay) dial(ctx context.Context, transport link.Transport) *link.Conn {
	e.t.Helper()
	return e2eDial(e.t, ctx, e.addr, transport)
}

func e2eDial(t *testing.T, ctx context.Context, addr queue.Address, transport link.Transport) *link.Conn {
	t.Helper()
	c, err := link.Dial(ctx, addr, link.Config{Transport: transport})
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	if c.Transport() != transport {
		t.Fatalf("connected over %s, want %s", c.Transport(), transport)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// e2eSecuredQueue creates a queue on rc and secures it (KEY) with a new
// sender key.
func e2eSecuredQueue(t *testing.T, ctx context.Context, rc *link.Conn) (link.Queue, *ecdh.PrivateKey) {
	t.Helper()
	q, err := rc.Create(ctx)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	sk, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Secure(ctx, q, queue.PublicKey(sk)); err != nil {
		t.Fatalf("secure: %v", err)
	}
	return q, sk
}

// e2eEvent returns the next event of c.
func e2eEvent(t *testing.T, ctx context.Context, c *link.Conn) link.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended: %v", c.Err())
		}
		return ev
	case <-ctx.Done():
		t.Fatalf("no event: %v", ctx.Err())
	}
	panic("unreachable")
}

// e2eMessage returns the next event of c, which must be a message that
// opened, from q.
func e2eMessage(t *testing.T, ctx context.Context, c *link.Conn, q link.Queue) link.Message {
	t.Helper()
	ev := e2eEvent(t, ctx, c)
	if ev.Kind != link.EventMessage || ev.Err != nil || ev.RecipientID != q.RecipientID {
		t.Fatalf("event %v (err %v) for %v, want a message for %v", ev.Kind, ev.Err, ev.RecipientID, q.RecipientID)
	}
	return ev.Message
}

// e2eNoEvent checks that c has no event waiting now.
func e2eNoEvent(t *testing.T, c *link.Conn) {
	t.Helper()
	select {
	case ev := <-c.Events():
		t.Fatalf("unexpected event %v for %v (err %v)", ev.Kind, ev.RecipientID, ev.Err)
	default:
	}
}

func e2eBody(i int) []byte {
	return []byte(fmt.Sprintf("message %d", i))
}

// TestE2EDeliverInOrder creates and secures a queue, sends several
// messages from another connection, subscribes, and receives them in
// order, acknowledging each; the bodies arrive intact, whatever their size.
func TestE2EDeliverInOrder(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)

		big := make([]byte, queue.MaxMessageSize)
		rand.Read(big)
		bodies := [][]byte{e2eBody(0), {}, big, e2eBody(3), bytes.Repeat([]byte{0}, 100), e2eBody(5)}
		// The relay sends times to the hour (PROTOCOL.md section 11).
		before := time.Now().Truncate(time.Hour)
		for i, b := range bodies {
			if err := sc.Send(ctx, q.SenderID, sk, b); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		seen := make(map[queue.ID]bool)
		for i, want := range bodies {
			m := e2eMessage(t, ctx, rc, q)
			if !bytes.Equal(m.Body, want) {
				t.Fatalf("message %d: body of %d bytes, want %d bytes %.20q", i, len(m.Body), len(want), want)
			}
			if m.Timestamp.Before(before) || m.Timestamp.After(time.Now()) || !m.Timestamp.Equal(m.Timestamp.Truncate(time.Hour)) {
				t.Errorf("message %d: timestamp %v, sent after %v", i, m.Timestamp, before)
			}
			if seen[m.ID] {
				t.Fatalf("message %d: ID %v seen before", i, m.ID)
			}
			seen[m.ID] = true
			e2eNoEvent(t, rc) // one at a time: the next follows the ACK
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatalf("ack %d: %v", i, err)
			}
		}
		// Messages sent while subscribed are pushed too.
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(99)); err != nil {
			t.Fatal(err)
		}
		m := e2eMessage(t, ctx, rc, q)
		if !bytes.Equal(m.Body, e2eBody(99)) {
			t.Fatalf("pushed message: %q", m.Body)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		// Acknowledged messages are gone.
		other := e.dial(ctx, transport)
		if _, err := other.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Fatalf("get after acknowledging everything: %v, want ErrNoMessage", err)
		}
	})
}

// TestE2EConcurrentCommands sends many messages concurrently over one
// connection (many commands in flight, several per block) and receives
// them all.
func TestE2EConcurrentCommands(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		const n = 100
		q, sk := e2eSecuredQueue(t, ctx, rc)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				if err := sc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
					errs <- fmt.Errorf("send %d: %w", i, err)
				}
				if err := sc.Ping(ctx); err != nil {
					errs <- fmt.Errorf("ping %d: %w", i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		got := make(map[string]bool)
		for range n {
			m := e2eMessage(t, ctx, rc, q)
			got[string(m.Body)] = true
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			if !got[string(e2eBody(i))] {
				t.Errorf("message %d not delivered", i)
			}
		}
	})
}

// TestE2ESenderSecures takes the SKEY path: the sender secures the queue
// with its own key, then sends.
func TestE2ESenderSecures(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, err := rc.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sk, _ := queue.GenerateKey()
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(0)); !errors.Is(err, queue.AUTH) {
			t.Fatalf("send to an unsecured queue: %v, want AUTH", err)
		}
		if err := sc.SecureSender(ctx, q.SenderID, sk); err != nil {
			t.Fatalf("skey: %v", err)
		}
		if err := sc.SecureSender(ctx, q.SenderID, sk); err != nil {
			t.Fatalf("skey again with the same key: %v", err)
		}
		other, _ := queue.GenerateKey()
		if err := sc.SecureSender(ctx, q.SenderID, other); !errors.Is(err, queue.AUTH) {
			t.Fatalf("skey with another key: %v, want AUTH", err)
		}
		if err := rc.Secure(ctx, q, queue.PublicKey(other)); !errors.Is(err, queue.AUTH) {
			t.Fatalf("key with another key: %v, want AUTH", err)
		}
		if err := sc.Send(ctx, q.SenderID, other, e2eBody(1)); !errors.Is(err, queue.AUTH) {
			t.Fatalf("send with another key: %v, want AUTH", err)
		}
		for i := range 3 {
			if err := sc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			m := e2eMessage(t, ctx, rc, q)
			if !bytes.Equal(m.Body, e2eBody(i)) {
				t.Fatalf("message %d: %q", i, m.Body)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestE2EGet reads a queue without subscribing.
func TestE2EGet(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)

		_, err := rc.Get(ctx, q)
		if !errors.Is(err, link.ErrNoMessage) || !errors.Is(err, queue.NO_MSG) {
			t.Fatalf("get on an empty queue: %v, want ErrNoMessage", err)
		}
		for i := range 2 {
			if err := rc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatal(err)
			}
		}
		m0, err := rc.Get(ctx, q)
		if err != nil || !bytes.Equal(m0.Body, e2eBody(0)) {
			t.Fatalf("get: %q, %v", m0.Body, err)
		}
		again, err := rc.Get(ctx, q)
		if err != nil || again.ID != m0.ID || !bytes.Equal(again.Body, m0.Body) {
			t.Fatalf("get before the ack: %v %q, %v; want the same message", again.ID, again.Body, err)
		}
		if err := rc.Ack(ctx, q, queue.NewID()); !errors.Is(err, queue.NO_MSG) {
			t.Fatalf("ack of an unknown message: %v, want NO_MSG", err)
		}
		if err := rc.Ack(ctx, q, m0.ID); err != nil {
			t.Fatal(err)
		}
		m1, err := rc.Get(ctx, q)
		if err != nil || !bytes.Equal(m1.Body, e2eBody(1)) {
			t.Fatalf("get after the ack: %q, %v", m1.Body, err)
		}
		if err := rc.Ack(ctx, q, m1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Fatalf("get on the emptied queue: %v, want ErrNoMessage", err)
		}
		// GET on a queue this connection subscribed to is prohibited.
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Get(ctx, q); !errors.Is(err, queue.PROHIBITED) {
			t.Fatalf("get on a subscribed queue: %v, want PROHIBITED", err)
		}
		// Another connection may still GET.
		other := e.dial(ctx, transport)
		if _, err := other.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Fatalf("get from another connection: %v, want ErrNoMessage", err)
		}
	})
}

// TestE2ESuspend suspends a queue: senders get AUTH, the recipient still
// reads what it holds.
func TestE2ESuspend(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(0)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Suspend(ctx, q); err != nil {
			t.Fatalf("off: %v", err)
		}
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(1)); !errors.Is(err, queue.AUTH) {
			t.Fatalf("send to a suspended queue: %v, want AUTH", err)
		}
		m, err := rc.Get(ctx, q)
		if err != nil || !bytes.Equal(m.Body, e2eBody(0)) {
			t.Fatalf("get from a suspended queue: %q, %v", m.Body, err)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Fatalf("get: %v, want ErrNoMessage (the refused message was not stored)", err)
		}
	})
}

// TestE2EDelete deletes a queue: its subscriber on another connection gets
// EventDeleted, and every later command for it gets AUTH.
func TestE2EDelete(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sub := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(0)); err != nil {
			t.Fatal(err)
		}
		if err := sub.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		e2eMessage(t, ctx, sub, q)
		if err := rc.Delete(ctx, q); err != nil {
			t.Fatalf("del: %v", err)
		}
		ev := e2eEvent(t, ctx, sub)
		if ev.Kind != link.EventDeleted || ev.RecipientID != q.RecipientID {
			t.Fatalf("event %v for %v, want deleted for %v", ev.Kind, ev.RecipientID, q.RecipientID)
		}
		if err := sc.Send(ctx, q.SenderID, sk, e2eBody(1)); !errors.Is(err, queue.AUTH) {
			t.Fatalf("send to a deleted queue: %v, want AUTH", err)
		}
		if _, err := rc.Get(ctx, q); !errors.Is(err, queue.AUTH) {
			t.Fatalf("get on a deleted queue: %v, want AUTH", err)
		}
		if err := sub.Subscribe(ctx, q); !errors.Is(err, queue.AUTH) {
			t.Fatalf("sub to a deleted queue: %v, want AUTH", err)
		}
		if err := rc.Delete(ctx, q); !errors.Is(err, queue.AUTH) {
			t.Fatalf("del of a deleted queue: %v, want AUTH", err)
		}
	})
}

// TestE2EAuthIndistinguishable checks that a wrong key and an unknown queue
// get the same answer, for senders and recipients.
func TestE2EAuthIndistinguishable(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		wrong, _ := queue.GenerateKey()

		var errs []error
		// SEND: wrong key, unknown queue.
		errs = append(errs, rc.Send(ctx, q.SenderID, wrong, e2eBody(0)))
		errs = append(errs, rc.Send(ctx, queue.NewID(), sk, e2eBody(0)))
		// SUB: wrong key, unknown queue.
		bad := q
		bad.RecipientKey = wrong
		errs = append(errs, rc.Subscribe(ctx, bad))
		unknown := q
		unknown.RecipientID = queue.NewID()
		errs = append(errs, rc.Subscribe(ctx, unknown))
		for i, err := range errs {
			if err != queue.AUTH || !errors.Is(err, queue.AUTH) {
				t.Errorf("case %d: %v, want exactly AUTH", i, err)
			}
		}
		// The queue still works with the right keys.
		if err := rc.Send(ctx, q.SenderID, sk, e2eBody(1)); err != nil {
			t.Fatal(err)
		}
		if m, err := rc.Get(ctx, q); err != nil || !bytes.Equal(m.Body, e2eBody(1)) {
			t.Fatalf("get: %q, %v", m.Body, err)
		}
	})
}

// TestE2ESecondSubscriber subscribes from a second connection: the first
// gets EventEnd, the second the messages, starting with the one the first
// had not acknowledged.
func TestE2ESecondSubscriber(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		first := e.dial(ctx, transport)
		second := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, first)
		for i := range 3 {
			if err := sc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := first.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		m := e2eMessage(t, ctx, first, q)
		if err := first.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		unacked := e2eMessage(t, ctx, first, q)
		if !bytes.Equal(unacked.Body, e2eBody(1)) {
			t.Fatalf("second message: %q", unacked.Body)
		}

		if err := second.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		ev := e2eEvent(t, ctx, first)
		if ev.Kind != link.EventEnd || ev.RecipientID != q.RecipientID {
			t.Fatalf("first subscriber: event %v for %v, want end", ev.Kind, ev.RecipientID)
		}
		for i := 1; i < 4; i++ {
			if i == 3 {
				if err := sc.Send(ctx, q.SenderID, sk, e2eBody(3)); err != nil {
					t.Fatal(err)
				}
			}
			m := e2eMessage(t, ctx, second, q)
			if !bytes.Equal(m.Body, e2eBody(i)) {
				t.Fatalf("second subscriber, message %d: %q", i, m.Body)
			}
			if err := second.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		// The first connection no longer receives, and still works.
		if err := first.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		e2eNoEvent(t, first)
	})
}

// TestE2ELimits checks QUOTA and LARGE.
func TestE2ELimits(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, func(c *relay.Config) { c.QueueQuota = 3 })
		rc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		for i := range 3 {
			if err := rc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		if err := rc.Send(ctx, q.SenderID, sk, e2eBody(3)); !errors.Is(err, queue.QUOTA) {
			t.Fatalf("4th send: %v, want QUOTA", err)
		}
		m, err := rc.Get(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		if err := rc.Send(ctx, q.SenderID, sk, e2eBody(3)); err != nil {
			t.Fatalf("send after an ack made room: %v", err)
		}

		q2, sk2 := e2eSecuredQueue(t, ctx, rc)
		if err := rc.Send(ctx, q2.SenderID, sk2, make([]byte, queue.MaxMessageSize+1)); !errors.Is(err, queue.LARGE) {
			t.Fatalf("send of %d bytes: %v, want LARGE", queue.MaxMessageSize+1, err)
		}
		if err := rc.Send(ctx, q2.SenderID, sk2, make([]byte, queue.MaxMessageSize)); err != nil {
			t.Fatalf("send of %d bytes: %v", queue.MaxMessageSize, err)
		}
	})
}

// TestE2EPassword checks that NEW needs the relay's password and SEND
// does not.
func TestE2EPassword(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, func(c *relay.Config) { c.Password = "open-sesame" })

		none := e2eDial(t, ctx, e.addr.WithoutPassword(), transport)
		if _, err := none.Create(ctx); !errors.Is(err, link.ErrWrongPassword) {
			t.Fatalf("create without the password: %v, want ErrWrongPassword", err)
		}
		wrongAddr := e.addr
		wrongAddr.Password = "open-barley"
		wrong := e2eDial(t, ctx, wrongAddr, transport)
		if _, err := wrong.Create(ctx); !errors.Is(err, link.ErrWrongPassword) || !errors.Is(err, queue.AUTH) {
			t.Fatalf("create with a wrong password: %v, want ErrWrongPassword", err)
		}
		rc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := none.Send(ctx, q.SenderID, sk, e2eBody(0)); err != nil {
			t.Fatalf("send without the password: %v", err)
		}
		if m, err := rc.Get(ctx, q); err != nil || !bytes.Equal(m.Body, e2eBody(0)) {
			t.Fatalf("get: %q, %v", m.Body, err)
		}
	})
}

// TestE2ERestart sends messages, restarts the relay on the same store and
// receives them all, in order.
func TestE2ERestart(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		const n = 20
		for i := range n {
			if err := rc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		e.restart()
		select {
		case <-rc.Done():
		case <-ctx.Done():
			t.Fatal("the connection outlived the relay")
		}
		if err := rc.Ping(ctx); !errors.Is(err, link.ErrClosed) {
			t.Fatalf("ping on a connection to a stopped relay: %v, want ErrClosed", err)
		}

		rc = e.dial(ctx, transport)
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			m := e2eMessage(t, ctx, rc, q)
			if !bytes.Equal(m.Body, e2eBody(i)) {
				t.Fatalf("message %d: %q", i, m.Body)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		if err := rc.Send(ctx, q.SenderID, sk, e2eBody(n)); err != nil {
			t.Fatalf("send after the restart: %v", err)
		}
	})
}

// TestE2EWrongFingerprint dials a relay with another relay's fingerprint.
func TestE2EWrongFingerprint(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		addr := e.addr
		addr.Fingerprint[0] ^= 1
		c, err := link.Dial(ctx, addr, link.Config{Transport: transport})
		if err == nil {
			c.Close()
			t.Fatal("dial succeeded")
		}
		if !errors.Is(err, link.ErrWrongFingerprint) || errors.Is(err, link.ErrUnreachable) || errors.Is(err, link.ErrTLS) {
			t.Fatalf("dial: %v, want only ErrWrongFingerprint", err)
		}
		// The relay is fine with the right fingerprint.
		if err := e.dial(ctx, transport).Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestE2EDefaultTransport dials with the default transport, which is QUIC
// when UDP works.
func TestE2EDefaultTransport(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	c, err := link.Dial(ctx, e.addr, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Transport() != link.TransportQUIC {
		t.Fatalf("transport %s, want quic", c.Transport())
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// e2eRaw is a hand-driven session: TLS over TCP or a QUIC stream, after
// the hush handshake.
type e2eRaw struct {
	rw       io.ReadWriter
	closeW   func() error // closes the write side
	deadline func(time.Time) error
}

// dialRawE2E opens a session by hand: the transport with the hush ALPN
// (not checking the relay's identity), and the hush handshake.
func dialRawE2E(t *testing.T, ctx context.Context, addr queue.Address, transport link.Transport) *e2eRaw {
	t.Helper()
	tlsConf := &tls.Config{
		InsecureSkipVerify: true, // this test is about blocks, not identity
		NextProtos:         []string{queue.ALPN},
		MinVersion:         tls.VersionTLS13,
	}
	var raw *e2eRaw
	switch transport {
	case link.TransportTCP:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr.HostPort())
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		raw = &e2eRaw{rw: tc, closeW: tc.CloseWrite, deadline: tc.SetDeadline}
	case link.TransportQUIC:
		qc, err := quic.DialAddr(ctx, addr.HostPort(), tlsConf, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qc.CloseWithError(0, "") })
		st, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		raw = &e2eRaw{rw: st, closeW: st.Close, deadline: st.SetDeadline}
	}
	dl, _ := ctx.Deadline()
	raw.deadline(dl)
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := raw.rw.Write(hello.AppendBlock(nil)); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(raw.rw, block); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.ParseServerHello(block); err != nil {
		t.Fatal(err)
	}
	return raw
}

// expectClosed checks that the relay closes the session within a few
// seconds: reading ends with an error other than a timeout, and no block
// arrives.
func (r *e2eRaw) expectClosed(t *testing.T) {
	t.Helper()
	r.deadline(time.Now().Add(10 * time.Second))
	n, err := io.ReadFull(r.rw, make([]byte, queue.BlockSize))
	if err == nil {
		t.Fatalf("the relay answered with a block")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the relay did not close the session: %v", err)
	}
	if n != 0 {
		t.Fatalf("read %d bytes before the end", n)
	}
}

// TestE2EMalformedInput sends malformed and truncated blocks on raw
// sessions: the relay closes each of them, and other sessions, old and
// new, keep working.
func TestE2EMalformedInput(t *testing.T) {
	garbage := make([]byte, queue.BlockSize)
	rand.Read(garbage)
	garbage[0], garbage[1] = 0xff, 0xff // a count that cannot be

	block := func(tx []byte) []byte {
		var b queue.BlockBuilder
		b.Add(tx)
		return b.AppendBlock(nil)
	}
	unknownTag := block([]byte{0, 0, 0, 0x7f})
	relayTag := block((&queue.Transmission{CorrID: make([]byte, queue.CorrIDSize), Command: queue.Command{Tag: queue.TagOK}}).Append(nil))
	nonZeroPadding := block((&queue.Transmission{CorrID: make([]byte, queue.CorrIDSize), Command: queue.Command{Tag: queue.TagPING}}).Append(nil))
	nonZeroPadding[len(nonZeroPadding)-1] = 1

	cases := []struct {
		name      string
		data      []byte
		closeSend bool
	}{
		{"garbage", garbage, false},
		{"unknown tag", unknownTag, false},
		{"relay tag", relayTag, false},
		{"non-zero padding", nonZeroPadding, false},
		{"truncated", garbage[:100], true},
	}
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		sc := e.dial(ctx, transport)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		for i, tc := range cases {
			raw := dialRawE2E(t, ctx, e.addr, transport)
			if _, err := raw.rw.Write(tc.data); err != nil {
				t.Fatalf("%s: write: %v", tc.name, err)
			}
			if tc.closeSend {
				if err := raw.closeW(); err != nil {
					t.Fatalf("%s: close the write side: %v", tc.name, err)
				}
			}
			raw.expectClosed(t)

			// The established connections still work, and so does a new one.
			if err := sc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
				t.Fatalf("after %s: send: %v", tc.name, err)
			}
			m := e2eMessage(t, ctx, rc, q)
			if !bytes.Equal(m.Body, e2eBody(i)) {
				t.Fatalf("after %s: received %q", tc.name, m.Body)
			}
			if err := rc.Ack(ctx, q, m.ID); err != nil {
				t.Fatal(err)
			}
			if err := e.dial(ctx, transport).Ping(ctx); err != nil {
				t.Fatalf("after %s: new connection: %v", tc.name, err)
			}
		}
	})
}
