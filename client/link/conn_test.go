package link

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// peer is the relay side of a session, driven by hand: it lets tests make
// a relay misbehave in ways the real one does not.
type peer struct {
	t   *testing.T
	rw  io.ReadWriteCloser
	key *ecdh.PrivateKey
}

// handshake reads the ClientHello and answers with a ServerHello for
// versions lo..hi.
func (p *peer) handshake(lo, hi uint16) bool {
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(p.rw, block); err != nil {
		return false
	}
	if _, err := queue.ParseClientHello(block); err != nil {
		p.t.Errorf("peer: ClientHello: %v", err)
		return false
	}
	k, err := queue.GenerateKey()
	if err != nil {
		p.t.Error(err)
		return false
	}
	p.key = k
	sh := queue.ServerHello{MinVersion: lo, MaxVersion: hi, SessionKey: queue.PublicKey(k)}
	_, err = p.rw.Write(sh.AppendBlock(nil))
	return err == nil
}

// read returns the transmissions of the next block from the client.
func (p *peer) read() ([]queue.Transmission, bool) {
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(p.rw, block); err != nil {
		return nil, false
	}
	raws, err := queue.ParseBlock(nil, block)
	if err != nil {
		p.t.Errorf("peer: block from the client: %v", err)
		return nil, false
	}
	var txs []queue.Transmission
	for _, raw := range raws {
		tx, _, err := queue.ParseTransmission(raw)
		if err != nil {
			p.t.Errorf("peer: transmission from the client: %v", err)
			return nil, false
		}
		txs = append(txs, tx)
	}
	return txs, true
}

// write sends txs in one block.
func (p *peer) write(txs ...queue.Transmission) bool {
	var b queue.BlockBuilder
	for _, tx := range txs {
		if !b.Add(tx.Append(nil)) {
			p.t.Error("peer: transmissions do not fit a block")
		}
	}
	_, err := p.rw.Write(b.AppendBlock(nil))
	return err == nil
}

// startPeer serves every session with script, after a version 1 handshake.
func startPeer(t *testing.T, script func(p *peer)) queue.Address {
	t.Helper()
	id := newTestIdentity(t)
	s := startTestServer(t, id.cert, id.fp, queue.ALPN, func(rw io.ReadWriteCloser) {
		p := &peer{t: t, rw: rw}
		if p.handshake(queue.MinVersion, queue.MaxVersion) {
			script(p)
		}
	})
	return s.addr
}

// drain reads and discards what the client sends until it closes.
func (p *peer) drain() {
	for {
		if _, ok := p.read(); !ok {
			return
		}
	}
}

// peerQueues returns n queues, with new IDs and keys, for a peer to
// deliver messages from.
func peerQueues(n int) []Queue {
	qs := make([]Queue, n)
	for i := range qs {
		rkey, _ := queue.GenerateKey()
		qs[i] = Queue{RecipientID: queue.NewID(), RecipientKey: rkey}
		rand.Read(qs[i].MessageKey[:])
	}
	return qs
}

func dialPeer(t *testing.T, ctx context.Context, addr queue.Address, cfg Config) *Conn {
	t.Helper()
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitEnded waits for c to end and checks that it ended because of want,
// that Events was closed and that commands now fail with ErrClosed.
func waitEnded(t *testing.T, ctx context.Context, c *Conn, want error) {
	t.Helper()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end")
	}
	if err := c.Err(); !errors.Is(err, want) {
		t.Fatalf("ended with %v, want %v", err, want)
	}
	for range c.Events() {
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) || !errors.Is(err, want) {
		t.Fatalf("ping after the end: %v, want ErrClosed and %v", err, want)
	}
}

// TestHandshakeFailures has the relay fail the hush handshake.
func TestHandshakeFailures(t *testing.T) {
	cases := []struct {
		name  string
		serve func(p *peer)
		want  error
	}{
		// The peer waits for the client to hang up: closing a QUIC
		// connection discards stream data not yet delivered.
		{"malformed ServerHello", func(p *peer) {
			io.ReadFull(p.rw, make([]byte, queue.BlockSize))
			p.rw.Write(make([]byte, queue.BlockSize))
			io.Copy(io.Discard, p.rw)
		}, ErrProtocol},
		{"no common version", func(p *peer) {
			p.handshake(queue.MaxVersion+1, queue.MaxVersion+2)
			io.Copy(io.Discard, p.rw)
		}, ErrProtocol},
		{"closed after the ClientHello", func(p *peer) {
			io.ReadFull(p.rw, make([]byte, queue.BlockSize))
		}, ErrUnreachable},
		{"silent", func(p *peer) { io.Copy(io.Discard, p.rw) }, ErrUnreachable},
	}
	for _, tc := range cases {
		for _, tr := range transports {
			t.Run(tc.name+"/"+string(tr), func(t *testing.T) {
				ctx := testContext(t)
				id := newTestIdentity(t)
				s := startTestServer(t, id.cert, id.fp, queue.ALPN, func(rw io.ReadWriteCloser) {
					tc.serve(&peer{t: t, rw: rw})
				})
				c, err := Dial(ctx, s.addr, Config{Transport: tr, HandshakeTimeout: 2 * time.Second})
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				t.Log(err)
			})
		}
	}
}

// TestRelayBreaksProtocol has the relay send what it must not: the
// connection ends with ErrProtocol.
func TestRelayBreaksProtocol(t *testing.T) {
	garbage := make([]byte, queue.BlockSize)
	rand.Read(garbage)
	garbage[0], garbage[1] = 0xff, 0xff
	rid := queue.NewID()
	cases := []struct {
		name   string
		script func(p *peer)
	}{
		{"malformed block", func(p *peer) { p.rw.Write(garbage) }},
		{"malformed transmission", func(p *peer) {
			var b queue.BlockBuilder
			b.Add([]byte{0, 0, 0, 0x7f})
			p.rw.Write(b.AppendBlock(nil))
		}},
		{"a command", func(p *peer) {
			p.write(queue.Transmission{Command: queue.Command{Tag: queue.TagPING}})
		}},
		{"OK without a correlation ID", func(p *peer) {
			p.write(queue.Transmission{Command: queue.Command{Tag: queue.TagOK}})
		}},
		{"END without a queue", func(p *peer) {
			p.write(queue.Transmission{Command: queue.Command{Tag: queue.TagEND}})
		}},
		{"wrong response", func(p *peer) {
			txs, _ := p.read() // the PING
			p.write(queue.Transmission{CorrID: txs[0].CorrID, Command: queue.Command{Tag: queue.TagOK}})
		}},
		{"response with an entity", func(p *peer) {
			txs, _ := p.read()
			p.write(queue.Transmission{CorrID: txs[0].CorrID, Entity: rid[:], Command: queue.Command{Tag: queue.TagPONG}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			addr := startPeer(t, func(p *peer) {
				tc.script(p)
				p.drain()
			})
			c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
			err := c.Ping(ctx) // answered wrongly, or ended by the reader
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ping: %v, want ErrProtocol", err)
			}
			waitEnded(t, ctx, c, ErrProtocol)
			t.Log(c.Err())
		})
	}
}

// TestEventsReportUnopenedMessages checks that MSG events that do not open
// are reported with their ID, not dropped, and that END and DELD end
// subscriptions.
func TestEventsReportUnopenedMessages(t *testing.T) {
	ctx := testContext(t)
	rkey, _ := queue.GenerateKey()
	q := Queue{RecipientID: queue.NewID(), RecipientKey: rkey}
	rand.Read(q.MessageKey[:])
	var wrongKey [32]byte
	rand.Read(wrongKey[:])
	other := queue.NewID()
	ids := []queue.ID{queue.NewID(), queue.NewID(), queue.NewID(), queue.NewID(), queue.NewID()}
	msg := func(rid queue.ID, key *[32]byte, id queue.ID, body string) queue.Transmission {
		return queue.Transmission{Entity: rid[:], Command: queue.Command{
			Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, key, id, 1700000000, []byte(body)),
		}}
	}
	addr := startPeer(t, func(p *peer) {
		txs, ok := p.read() // SUB
		if !ok || len(txs) != 1 || txs[0].Command.Tag != queue.TagSUB || len(txs[0].Auth) != queue.AuthSize {
			t.Errorf("peer: want one authorized SUB, got %+v", txs)
			return
		}
		p.write(
			queue.Transmission{CorrID: txs[0].CorrID, Entity: q.RecipientID[:], Command: queue.Command{Tag: queue.TagOK}},
			msg(q.RecipientID, &q.MessageKey, ids[0], "first"),
		)
		p.write(msg(q.RecipientID, &wrongKey, ids[1], "tampered"))
		p.write(msg(other, &q.MessageKey, ids[2], "not subscribed"))
		p.write(queue.Transmission{Entity: q.RecipientID[:], Command: queue.Command{Tag: queue.TagEND}})
		p.write(msg(q.RecipientID, &q.MessageKey, ids[3], "after the end"))
		p.write(queue.Transmission{Entity: other[:], Command: queue.Command{Tag: queue.TagDELD}})
		p.drain()
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC})
	if err := c.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	next := func() Event {
		t.Helper()
		select {
		case ev := <-c.Events():
			return ev
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return Event{}
	}
	ev := next()
	if ev.Kind != EventMessage || ev.Err != nil || string(ev.Message.Body) != "first" || ev.Message.ID != ids[0] ||
		!ev.Message.Timestamp.Equal(time.Unix(1700000000, 0)) || ev.RecipientID != q.RecipientID {
		t.Fatalf("first event: %+v", ev)
	}
	for i, want := range []queue.ID{ids[1], ids[2]} {
		ev = next()
		if ev.Kind != EventMessage || !errors.Is(ev.Err, queue.ErrOpen) || ev.Message.ID != want || ev.Message.Body != nil {
			t.Fatalf("unopened message %d: %+v", i, ev)
		}
	}
	if ev = next(); ev.Kind != EventEnd || ev.RecipientID != q.RecipientID {
		t.Fatalf("want end, got %+v", ev)
	}
	if ev = next(); ev.Kind != EventMessage || !errors.Is(ev.Err, queue.ErrOpen) || ev.Message.ID != ids[3] {
		t.Fatalf("message after the end: %+v", ev)
	}
	if ev = next(); ev.Kind != EventDeleted || ev.RecipientID != other {
		t.Fatalf("want deleted, got %+v", ev)
	}
}

// TestKeepAliveDetectsSilentRelay has a relay that reads but never
// answers: the keep-alive PING goes unanswered and the connection ends.
func TestKeepAliveDetectsSilentRelay(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ctx := testContext(t)
			addr := startPeer(t, func(p *peer) { p.drain() })
			c := dialPeer(t, ctx, addr, Config{Transport: tr, KeepAlive: 100 * time.Millisecond, HandshakeTimeout: time.Second})
			waitEnded(t, ctx, c, ErrUnreachable)
		})
	}
}

// TestSlowApplication has the relay deliver messages that the application
// does not read: the connection buffers them, an ACK sent meanwhile gets its
// OK, and every event arrives in order once the application reads.
func TestSlowApplication(t *testing.T) {
	ctx := testContext(t)
	const n = 5
	qs := peerQueues(n)
	ackID := queue.NewID()
	addr := startPeer(t, func(p *peer) {
		for range n { // one SUB per queue, answered OK and a MSG
			txs, ok := p.read()
			if !ok {
				return
			}
			for _, tx := range txs {
				rid := queue.ID(tx.Entity)
				i := slices.IndexFunc(qs, func(q Queue) bool { return q.RecipientID == rid })
				id := queue.NewID()
				p.write(
					queue.Transmission{CorrID: tx.CorrID, Entity: tx.Entity, Command: queue.Command{Tag: queue.TagOK}},
					queue.Transmission{Entity: tx.Entity, Command: queue.Command{
						Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, &qs[i].MessageKey, id, 0, []byte{byte(i)}),
					}},
				)
			}
		}
		for {
			txs, ok := p.read()
			if !ok {
				return
			}
			for _, tx := range txs {
				if tx.Command.Tag == queue.TagACK {
					p.write(queue.Transmission{CorrID: tx.CorrID, Entity: tx.Entity, Command: queue.Command{Tag: queue.TagOK}})
				}
			}
		}
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
	for _, q := range qs {
		if err := c.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody reads Events: the ACK of a message not yet read still gets
	// its OK.
	if err := c.Ack(ctx, qs[0], ackID); err != nil {
		t.Fatalf("ack while events wait: %v", err)
	}
	for i := range n {
		select {
		case ev := <-c.Events():
			if ev.Err != nil || ev.RecipientID != qs[i].RecipientID || !bytes.Equal(ev.Message.Body, []byte{byte(i)}) {
				t.Fatalf("event %d: %+v", i, ev)
			}
		case <-ctx.Done():
			t.Fatal("no event")
		}
	}
}

// TestSlowApplicationEnds has the relay deliver a message on each of many
// queues and then end every subscription (END, as when another client
// subscribes to them all) while the application reads nothing: the
// messages and ENDs wait within the bound, and all arrive in order.
func TestSlowApplicationEnds(t *testing.T) {
	ctx := testContext(t)
	const n = 3 * extraEvents
	qs := peerQueues(n)
	addr := startPeer(t, func(p *peer) {
		for subscribed := 0; subscribed < n; {
			txs, ok := p.read()
			if !ok {
				return
			}
			for _, tx := range txs {
				subscribed++
				rid := queue.ID(tx.Entity)
				i := slices.IndexFunc(qs, func(q Queue) bool { return q.RecipientID == rid })
				id := queue.NewID()
				p.write(
					queue.Transmission{CorrID: tx.CorrID, Entity: tx.Entity, Command: queue.Command{Tag: queue.TagOK}},
					queue.Transmission{Entity: tx.Entity, Command: queue.Command{
						Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, &qs[i].MessageKey, id, 0, []byte{byte(i)}),
					}},
				)
			}
		}
		for _, q := range qs {
			p.write(queue.Transmission{Entity: q.RecipientID[:], Command: queue.Command{Tag: queue.TagEND}})
		}
		p.drain()
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
	for _, q := range qs {
		if err := c.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is read until every event waits (one of them in the hands
	// of deliverLoop).
	for {
		c.mu.Lock()
		waiting := len(c.waiting)
		c.mu.Unlock()
		if waiting == 2*n-1 || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var got []Event
	for len(got) < 2*n {
		select {
		case ev := <-c.Events():
			got = append(got, ev)
		case <-ctx.Done():
			t.Fatalf("%d events, then none (connection: %v)", len(got), c.Err())
		}
	}
	for i, ev := range got {
		want, kind := qs[i%n], EventMessage
		if i >= n {
			kind = EventEnd
		}
		if ev.RecipientID != want.RecipientID || ev.Kind != kind {
			t.Fatalf("event %d: %v on queue %d, want %v on queue %d", i, ev.Kind, slices.IndexFunc(qs, func(q Queue) bool { return q.RecipientID == ev.RecipientID }), kind, i%n)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the connection ended: %v", err)
	}
}

// TestRelayFloodsEvents has the relay send more events than it may (the
// protocol allows one MSG per subscription until it is acknowledged): the
// connection ends with ErrProtocol instead of buffering without bound.
func TestRelayFloodsEvents(t *testing.T) {
	ctx := testContext(t)
	rkey, _ := queue.GenerateKey()
	q := Queue{RecipientID: queue.NewID(), RecipientKey: rkey}
	rand.Read(q.MessageKey[:])
	addr := startPeer(t, func(p *peer) {
		txs, ok := p.read()
		if !ok {
			return
		}
		p.write(queue.Transmission{CorrID: txs[0].CorrID, Entity: q.RecipientID[:], Command: queue.Command{Tag: queue.TagOK}})
		for range 2 * (2 + extraEvents) {
			id := queue.NewID()
			if !p.write(queue.Transmission{Entity: q.RecipientID[:], Command: queue.Command{
				Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, &q.MessageKey, id, 0, nil),
			}}) {
				return
			}
		}
		p.drain()
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC})
	if err := c.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end")
	}
	if err := c.Err(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ended with %v, want ErrProtocol", err)
	}
	t.Log(c.Err())
}

// TestLateResponseAfterGivingUp has the relay answer commands whose ctx
// ended only after the next command was sent: each late answer (an ERR)
// is dropped, and the next command, which may reuse the first one's
// resources, gets its own answer, round after round.
func TestLateResponseAfterGivingUp(t *testing.T) {
	ctx := testContext(t)
	const rounds = 20
	arrived := make(chan struct{})
	addr := startPeer(t, func(p *peer) {
		for range rounds {
			first, ok := p.read()
			if !ok || len(first) != 1 {
				return
			}
			arrived <- struct{}{}
			second, ok := p.read()
			if !ok || len(second) != 1 {
				return
			}
			late := queue.Transmission{CorrID: first[0].CorrID, Command: queue.Command{Tag: queue.TagERR, Error: queue.AUTH}}
			own := queue.Transmission{CorrID: second[0].CorrID, Command: queue.Command{Tag: queue.TagPONG}}
			if !p.write(late) || !p.write(own) {
				return
			}
		}
		p.drain()
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP, KeepAlive: -1})
	for i := range rounds {
		gctx, giveUp := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- c.Ping(gctx) }()
		<-arrived
		giveUp()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: the PING given up: %v, want context.Canceled", i, err)
		}
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("round %d: the next PING: %v, want its own PONG", i, err)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the connection ended: %v", err)
	}
}

// TestCloseWhileWaiting closes a connection while a command waits for its
// response.
func TestCloseWhileWaiting(t *testing.T) {
	ctx := testContext(t)
	addr := startPeer(t, func(p *peer) { p.drain() })
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC})
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(ctx) }()
	// Close only once the PING is in flight.
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != ErrClosed {
		t.Fatalf("ping in flight: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	waitEnded(t, ctx, c, ErrClosed)
	if c.Err() != ErrClosed {
		t.Fatalf("Err: %v, want ErrClosed", c.Err())
	}
}

// startRelay runs a real relay on loopback (relaytest.New) and returns
// its address.
func startRelay(t *testing.T, edit func(*relay.Config)) queue.Address {
	t.Helper()
	return relaytest.New(t, edit).Address
}

// TestKeepAliveKeepsSession idles longer than the relay's idle timeout:
// keep-alives (ten per timeout) keep the session; without them the relay
// ends it. It waits out idle times (the idle session's end, then twice
// the timeout for the kept one), so its bound is a generous one against a
// hang, not testTimeout, which a loaded machine's dials eat into.
func TestKeepAliveKeepsSession(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			const idleTimeout = 5 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			addr := startRelay(t, func(c *relay.Config) { c.IdleTimeout = idleTimeout })
			kept := dialPeer(t, ctx, addr, Config{Transport: tr, KeepAlive: idleTimeout / 10})
			idle := dialPeer(t, ctx, addr, Config{Transport: tr, KeepAlive: -1})
			select {
			case <-idle.Done():
			case <-ctx.Done():
				t.Fatal("the relay did not end the idle session")
			}
			if err := idle.Err(); err == nil || errors.Is(err, ErrClosed) {
				t.Fatalf("idle session ended with %v", err)
			}
			time.Sleep(idleTimeout) // the kept session has now idled twice the timeout
			if err := kept.Ping(ctx); err != nil {
				t.Fatalf("ping on the kept session: %v", err)
			}
		})
	}
}

// TestEventsInOrder has the relay deliver many messages on a few queues,
// the next of each queue after its ACK, to an application that receives
// them at an uneven pace and acknowledges each on a goroutine of its own
// (events then go to it straight from the reader when nothing waits, and
// through the waiting list when it is slow): every message arrives exactly
// once, in the order the relay sent them.
func TestEventsInOrder(t *testing.T) {
	ctx := testContext(t)
	const n, rounds = 8, 100
	qs := peerQueues(n)
	addr := startPeer(t, func(p *peer) {
		var seq uint32 // the relay's order over all queues
		sent := make(map[queue.ID]int)
		msg := func(tx queue.Transmission) queue.Transmission {
			rid := queue.ID(tx.Entity)
			i := slices.IndexFunc(qs, func(q Queue) bool { return q.RecipientID == rid })
			id := queue.NewID()
			body := binary.BigEndian.AppendUint32(nil, seq)
			seq++
			sent[rid]++
			return queue.Transmission{Entity: tx.Entity, Command: queue.Command{
				Tag: queue.TagMSG, MsgID: id, Body: queue.SealMessage(nil, &qs[i].MessageKey, id, 0, body),
			}}
		}
		for {
			txs, ok := p.read()
			if !ok {
				return
			}
			for _, tx := range txs {
				out := []queue.Transmission{{CorrID: tx.CorrID, Entity: tx.Entity, Command: queue.Command{Tag: queue.TagOK}}}
				if tx.Command.Tag == queue.TagSUB || sent[queue.ID(tx.Entity)] < rounds {
					out = append(out, msg(tx))
				}
				if !p.write(out...) {
					return
				}
			}
		}
	})
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
	for _, q := range qs {
		if err := c.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var acks sync.WaitGroup
	defer acks.Wait()
	next := uint32(0) // the least sequence number still to come
	for got := 0; got < n*rounds; got++ {
		if got%7 == 3 {
			// A slow moment: events queue up in the connection.
			time.Sleep(time.Millisecond)
		}
		var ev Event
		select {
		case ev = <-c.Events():
		case <-ctx.Done():
			t.Fatalf("%d events, then none (connection: %v)", got, c.Err())
		}
		if ev.Kind != EventMessage || ev.Err != nil || len(ev.Message.Body) != 4 {
			t.Fatalf("event %d: %+v", got, ev)
		}
		if s := binary.BigEndian.Uint32(ev.Message.Body); s < next {
			t.Fatalf("event %d: message %d after %d", got, s, next-1)
		} else {
			next = s + 1
		}
		q := qs[slices.IndexFunc(qs, func(q Queue) bool { return q.RecipientID == ev.RecipientID })]
		acks.Go(func() {
			if err := c.Ack(ctx, q, ev.Message.ID); err != nil {
				t.Errorf("ack: %v", err)
			}
		})
	}
	if next != n*rounds {
		t.Fatalf("the last message was %d, want %d", next-1, n*rounds-1)
	}
}
