package relay_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// The transports of wire sessions.
const (
	wireQUIC = "quic"
	wireTCP  = "tcp"
)

// wireTransports runs f as one subtest per transport.
func wireTransports(t *testing.T, f func(t *testing.T, transport string)) {
	for _, tr := range []string{wireQUIC, wireTCP} {
		t.Run(tr, func(t *testing.T) { f(t, tr) })
	}
}

// wireRelay is an in-process relay on loopback for wire-level tests.
type wireRelay struct {
	*relay.Relay
	cfg  relay.Config
	addr string // host:port of both listeners
}

// startWireRelayWith starts a relay (relaytest) with the rates of a test
// (NEW and SEND not slowed down); edit, if not nil, adjusts the
// configuration first.
func startWireRelayWith(t *testing.T, edit func(*relay.Config)) *wireRelay {
	t.Helper()
	r := relaytest.New(t, func(c *relay.Config) {
		c.NewRate, c.SendRate = 1e6, 1e6
		if edit != nil {
			edit(c)
		}
	})
	return &wireRelay{Relay: r.Relay, cfg: r.Config, addr: r.HostPort}
}

// wireConn is a hand-driven session: it sends blocks of transmissions
// that it builds itself, so that tests control what shares a block, and
// reads the relay's blocks, keeping what no one has asked for yet.
type wireConn struct {
	t         *testing.T
	transport string
	rw        io.ReadWriter
	closeW    func() error
	deadline  func(time.Time) error
	binding   []byte
	sessKey   queue.Key
	backlog   []queue.Transmission // received, not yet taken
	password  string               // sent in NEW by newQueue
}

// wireTimeout bounds each read of a wire session.
const wireTimeout = 30 * time.Second

// dialWire opens a session to addr over transport: the transport
// handshake (not checking the relay's identity) and the hush handshake.
func dialWire(t *testing.T, addr, transport string) *wireConn {
	t.Helper()
	return dialWireFrom(t, "", addr, transport)
}

// dialWireFrom is dialWire from the loopback address src (127.0.0.x), or
// from the system's choice if src is "". It fails the test if the relay
// refuses the connection.
func dialWireFrom(t *testing.T, src, addr, transport string) *wireConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wireTimeout)
	defer cancel()
	w := &wireConn{t: t, transport: transport}
	tlsConf := &tls.Config{
		InsecureSkipVerify: true, // these tests are about the protocol, not identity
		NextProtos:         []string{queue.ALPN},
		MinVersion:         tls.VersionTLS13,
	}
	var st tls.ConnectionState
	switch transport {
	case wireTCP:
		d := net.Dialer{}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		w.rw, w.closeW, w.deadline = tc, tc.CloseWrite, tc.SetDeadline
		st = tc.ConnectionState()
	case wireQUIC:
		var qc *quic.Conn
		var err error
		if src == "" {
			qc, err = quic.DialAddr(ctx, addr, tlsConf, nil)
		} else {
			qc, err = dialQUICFrom(t, src, addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qc.CloseWithError(0, "") })
		s, err := qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.rw, w.closeW, w.deadline = s, s.Close, s.SetDeadline
		st = qc.ConnectionState().TLS
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	var err error
	if w.binding, err = st.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize); err != nil {
		t.Fatal(err)
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	w.write(hello.AppendBlock(nil))
	block := w.readRaw()
	sh, err := queue.ParseServerHello(block)
	if err != nil {
		t.Fatal(err)
	}
	w.sessKey = sh.SessionKey
	return w
}

func (w *wireConn) write(b []byte) {
	w.t.Helper()
	w.deadline(time.Now().Add(wireTimeout))
	if _, err := w.rw.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wireConn) readRaw() []byte {
	w.t.Helper()
	w.deadline(time.Now().Add(wireTimeout))
	b := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(w.rw, b); err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return b
}

// tx returns a transmission of cmd for entity with a new random corrID,
// authorized by key (none if key is nil), and that corrID.
func (w *wireConn) tx(key *ecdh.PrivateKey, entity []byte, cmd queue.Command) ([]byte, []byte) {
	w.t.Helper()
	corr := make([]byte, queue.CorrIDSize)
	rand.Read(corr)
	t := queue.Transmission{CorrID: corr, Entity: entity, Command: cmd}
	if key != nil {
		ak, err := queue.AuthKey(key, w.sessKey, w.binding)
		if err != nil {
			w.t.Fatal(err)
		}
		t.Auth = queue.AppendAuth(nil, &ak, t.AppendSigned(nil))
	}
	return t.Append(nil), corr
}

// send writes the transmissions in one block.
func (w *wireConn) send(txs ...[]byte) {
	w.t.Helper()
	var b queue.BlockBuilder
	for _, tx := range txs {
		if !b.Fits(len(tx)) {
			w.t.Fatal("the transmissions do not fit in one block")
		}
		b.Add(tx)
	}
	w.write(b.AppendBlock(nil))
}

// take returns the first transmission received that matches, reading
// blocks until one does; the others stay in the backlog.
func (w *wireConn) take(match func(queue.Transmission) bool) queue.Transmission {
	w.t.Helper()
	for {
		for i, tx := range w.backlog {
			if match(tx) {
				w.backlog = append(w.backlog[:i:i], w.backlog[i+1:]...)
				return tx
			}
		}
		raws, err := queue.ParseBlock(nil, w.readRaw())
		if err != nil {
			w.t.Fatalf("the relay sent a malformed block: %v", err)
		}
		for _, raw := range raws {
			tx, _, err := queue.ParseTransmission(raw)
			if err != nil {
				w.t.Fatalf("the relay sent a malformed transmission: %v", err)
			}
			if tx.Auth != nil || tx.Command.Tag.IsCommand() {
				w.t.Fatalf("the relay sent %v with auth %x", tx.Command.Tag, tx.Auth)
			}
			// Copy: the transmission aliases the block.
			tx.CorrID, tx.Entity = bytes.Clone(tx.CorrID), bytes.Clone(tx.Entity)
			tx.Command.Body, tx.Command.Password = bytes.Clone(tx.Command.Body), bytes.Clone(tx.Command.Password)
			w.backlog = append(w.backlog, tx)
		}
	}
}

// response returns the response with corrID corr.
func (w *wireConn) response(corr []byte) queue.Transmission {
	w.t.Helper()
	return w.take(func(tx queue.Transmission) bool { return bytes.Equal(tx.CorrID, corr) })
}

// event returns the next event (empty corrID) with tag tag for entity.
func (w *wireConn) event(tag queue.Tag, entity []byte) queue.Transmission {
	w.t.Helper()
	return w.take(func(tx queue.Transmission) bool {
		return tx.CorrID == nil && tx.Command.Tag == tag && bytes.Equal(tx.Entity, entity)
	})
}

// do sends one command in its own block and returns its response.
func (w *wireConn) do(key *ecdh.PrivateKey, entity []byte, cmd queue.Command) queue.Command {
	w.t.Helper()
	tx, corr := w.tx(key, entity, cmd)
	w.send(tx)
	return w.response(corr).Command
}

// replySlots is the relay's bound of a session's replies not yet written.
const replySlots = 64

// subBehindSends takes every reply slot of w's session with SENDs of its
// own to the queue own, held in r's store (r's commits are held until
// release is called), and sends a SUB of q in the same block after them,
// so that the SUB's OK waits for a slot. It returns once the SENDs are
// queued for commit and the subscription is registered, as registered
// (relay.Subscribed, relay.SubscriberWaiting) reports, with the SENDs'
// correlation IDs in order and the SUB's.
func (w *wireConn) subBehindSends(ctx context.Context, r *wireRelay, own, q *wireQueue, registered func(*relay.Relay, queue.ID) bool) (sends [][]byte, subCorr []byte, release func()) {
	w.t.Helper()
	release = relay.HoldCommits(w.t, r.Relay)
	var txs [][]byte
	for i := range replySlots {
		tx, corr := w.tx(own.sKey, own.sid, queue.Command{Tag: queue.TagSEND, Body: []byte{byte(i)}})
		txs, sends = append(txs, tx), append(sends, corr)
	}
	subTx, subCorr := w.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB})
	w.send(append(txs, subTx)...)
	relay.WaitQueued(w.t, r.Relay, replySlots)
	waitFor(w.t, ctx, "subscription registered", func() bool { return registered(r.Relay, queue.ID(q.rid)) })
	return sends, subCorr, release
}

// expectClosed checks that the relay closes the session, within 10 s,
// without sending another block.
func (w *wireConn) expectClosed() {
	w.t.Helper()
	w.deadline(time.Now().Add(10 * time.Second))
	n, err := io.ReadFull(w.rw, make([]byte, queue.BlockSize))
	if err == nil {
		w.t.Fatal("the relay answered with a block")
	}
	// A QUIC idle timeout counts as closed: the relay's QUIC idle timeout
	// is its session idle timeout (PROTOCOL.md section 2), and a QUIC
	// connection that times out ends silently. A read deadline does not.
	var ne net.Error
	var idle *quic.IdleTimeoutError
	if errors.As(err, &ne) && ne.Timeout() && !errors.As(err, &idle) {
		w.t.Fatalf("the relay did not close the session: %v", err)
	}
	if n != 0 {
		w.t.Fatalf("read %d bytes before the end", n)
	}
}

// wireQueue is a queue created on a wire session, with its keys.
type wireQueue struct {
	rid, sid   []byte
	rKey, sKey *ecdh.PrivateKey // sKey: the sender key, not yet used
	msgKey     [32]byte
}

func wireOK(t *testing.T, what string, c queue.Command) {
	t.Helper()
	if c.Tag != queue.TagOK {
		t.Fatalf("%s: %v %v, want OK", what, c.Tag, c.Error)
	}
}

func wireErr(t *testing.T, what string, c queue.Command, code queue.ErrorCode) {
	t.Helper()
	if c.Tag != queue.TagERR || c.Error != code {
		t.Fatalf("%s: %v %v, want ERR %v", what, c.Tag, c.Error, code)
	}
}

func newKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newQueue creates a queue (NEW) and, with secure, secures it (KEY) with
// its sender key.
func (w *wireConn) newQueue(secure bool) *wireQueue {
	w.t.Helper()
	q := &wireQueue{rKey: newKey(w.t), sKey: newKey(w.t)}
	dh := newKey(w.t)
	ids := w.do(q.rKey, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(q.rKey), RecipientDHKey: queue.PublicKey(dh), Password: []byte(w.password)})
	if ids.Tag != queue.TagIDS {
		w.t.Fatalf("NEW: %v %v", ids.Tag, ids.Error)
	}
	q.rid, q.sid = bytes.Clone(ids.RecipientID[:]), bytes.Clone(ids.SenderID[:])
	var err error
	if q.msgKey, err = queue.MessageKey(dh, ids.RelayDHKey); err != nil {
		w.t.Fatal(err)
	}
	if secure {
		wireOK(w.t, "KEY", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(q.sKey)}))
	}
	return q
}

// open returns the body of a MSG of q.
func (q *wireQueue) open(t *testing.T, c queue.Command) []byte {
	t.Helper()
	if c.Tag != queue.TagMSG {
		t.Fatalf("got %v %v, want MSG", c.Tag, c.Error)
	}
	_, body, err := queue.OpenMessage(&q.msgKey, c.MsgID, c.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
