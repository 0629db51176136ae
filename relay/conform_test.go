package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// The tests in this file walk queue/PROTOCOL.md: each names the section
// whose rule it checks, and runs over both transports.

// lowOrderKeys are X25519 public keys of low order: u = 0, 1, p-1 and the
// two points of order 8.
var lowOrderKeys = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
}

func lowOrderKey(t *testing.T, h string) queue.Key {
	t.Helper()
	var k queue.Key
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(k) {
		t.Fatal(h)
	}
	copy(k[:], b)
	return k
}

// randomAuth returns an authenticator that authorizes nothing: a client
// cannot derive an authorization key from a low-order key.
func randomAuth() []byte {
	b := make([]byte, queue.AuthSize)
	rand.Read(b)
	return b
}

// txWithAuth returns a transmission of cmd for entity carrying auth as it
// is, and its corrID.
func txWithAuth(entity []byte, cmd queue.Command, auth []byte) ([]byte, []byte) {
	corr := make([]byte, queue.CorrIDSize)
	rand.Read(corr)
	t := queue.Transmission{Auth: auth, CorrID: corr, Entity: entity, Command: cmd}
	return t.Append(nil), corr
}

// TestConformLowOrderKeys: sections 8 and 9, "A command carrying a key
// that is a low-order X25519 point ... is answered ERR SYNTAX, before and
// independently of any queue lookup, and changes nothing."
func TestConformLowOrderKeys(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		good := newKey(t)
		for _, h := range lowOrderKeys {
			low := lowOrderKey(t, h)
			// NEW with a low-order recipientKey (no valid auth can exist)
			// or recipientDHKey (validly authorized).
			tx, corr := txWithAuth(nil, queue.Command{Tag: queue.TagNEW, RecipientKey: low, RecipientDHKey: queue.PublicKey(good)}, randomAuth())
			w.send(tx)
			wireErr(t, "NEW with a low-order recipientKey", w.response(corr).Command, queue.SYNTAX)
			c := w.do(good, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(good), RecipientDHKey: low})
			wireErr(t, "NEW with a low-order recipientDHKey", c, queue.SYNTAX)

			// KEY on the caller's own unsecured queue: SYNTAX, and the
			// queue can still be secured with a valid key afterwards.
			q := w.newQueue(false)
			wireErr(t, "KEY with a low-order key", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: low}), queue.SYNTAX)
			// SKEY with a low-order key, on a live queue and an unknown ID.
			tx, corr = txWithAuth(q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: low}, randomAuth())
			w.send(tx)
			wireErr(t, "SKEY with a low-order key", w.response(corr).Command, queue.SYNTAX)
			unknown := queue.NewID()
			tx, corr = txWithAuth(unknown[:], queue.Command{Tag: queue.TagSKEY, SenderKey: low}, randomAuth())
			w.send(tx)
			wireErr(t, "SKEY with a low-order key on an unknown ID", w.response(corr).Command, queue.SYNTAX)

			wireOK(t, "KEY after the low-order KEY", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(q.sKey)}))
			wireOK(t, "SEND", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}))
		}
	})
}

// TestConformSuspendedKey: section 9, KEY and SKEY on a suspended queue
// are answered ERR AUTH and do not secure it; the messages stay readable.
func TestConformSuspendedKey(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		q := w.newQueue(false)
		wireOK(t, "OFF", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagOFF}))
		wireErr(t, "KEY on a suspended queue", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(q.sKey)}), queue.AUTH)
		wireErr(t, "SKEY on a suspended queue", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(q.sKey)}), queue.AUTH)
		wireErr(t, "SEND on a suspended queue", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), queue.AUTH)
		wireErr(t, "GET on a suspended queue", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}), queue.NO_MSG)
		wireOK(t, "DEL on a suspended queue", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}))
	})
}

// TestConformCorrIDRequired: sections 7 and 15, a command without a
// corrID, PING included, is malformed: the relay closes the session
// without an answer.
func TestConformCorrIDRequired(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		for _, cmd := range []queue.Command{{Tag: queue.TagPING}, {Tag: queue.TagGET}} {
			w := dialWire(t, r.addr, transport)
			entity := []byte(nil)
			if cmd.Tag != queue.TagPING {
				id := queue.NewID()
				entity = id[:]
			}
			tx := queue.Transmission{Entity: entity, Command: cmd}
			if cmd.Tag != queue.TagPING {
				tx.Auth = randomAuth()
			}
			w.send(tx.Append(nil))
			w.expectClosed()
		}
		// PING with a corrID is answered PONG with that corrID.
		w := dialWire(t, r.addr, transport)
		tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
		w.send(tx)
		if c := w.response(corr).Command; c.Tag != queue.TagPONG {
			t.Fatalf("PING: %v", c.Tag)
		}
	})
}

// commitOps returns the number of store operations the relay committed.
func commitOps(t *testing.T, base string) float64 {
	t.Helper()
	fams, _ := scrape(t, base)
	f, ok := fams["hush_relay_store_commit_operations"]
	if !ok || len(f.GetMetric()) == 0 {
		t.Fatal("no hush_relay_store_commit_operations")
	}
	return f.GetMetric()[0].GetHistogram().GetSampleSum()
}

// TestConformSKeyNoWrite: section 8, uniform failure. SKEY on a live
// secured queue with another key is answered ERR AUTH without a store
// write, as an unknown ID is, and SKEY again with the queue's own key
// answers OK without one; neither changes the queue.
func TestConformSKeyNoWrite(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		base := adminServer(t, r.Relay)
		w := dialWire(t, r.addr, transport)
		q := w.newQueue(false)
		wireOK(t, "SKEY", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(q.sKey)}))
		before := commitOps(t, base)
		other := newKey(t)
		wireErr(t, "SKEY with another key", w.do(other, q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(other)}), queue.AUTH)
		wireOK(t, "SKEY again", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(q.sKey)}))
		wireErr(t, "KEY with another key", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(other)}), queue.AUTH)
		if after := commitOps(t, base); after != before {
			t.Fatalf("the store committed %v operations for commands that change nothing", after-before)
		}
		wireOK(t, "SEND with the first key", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}))
	})
}

// TestConformPasswordLengths: section 9 (NEW), a wrong password of any
// length, or none, is answered ERR AUTH; the right one is accepted.
func TestConformPasswordLengths(t *testing.T) {
	const pw = "correct-horse"
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) { c.Password = pw })
		w := dialWire(t, r.addr, transport)
		for _, guess := range []string{"", "c", "correct-hors", "correct-horsf", "correct-horse-", string(bytes.Repeat([]byte("x"), queue.MaxPasswordSize))} {
			k, dh := newKey(t), newKey(t)
			c := w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh), Password: []byte(guess)})
			wireErr(t, "NEW with password "+guess, c, queue.AUTH)
		}
		w.password = pw
		w.newQueue(true)
	})
}

// TestConformRotationChecked: section 3, a relay serves only a chain that
// clients accept. SetCertificate refuses a chain of another identity or
// length, an online certificate not certified by the identity, one not
// valid now and one without its private key; after each refusal the relay
// serves the certificate it served before, which passes the clients'
// check (queue.VerifyChain).
func TestConformRotationChecked(t *testing.T) {
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	first, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := relay.CertificateFingerprint(first)
	r := startWireRelayWith(t, func(c *relay.Config) { c.Certificate = first })
	foreign, _ := relay.IssueCertificate(other, 0)
	second, _ := relay.IssueCertificate(id, 0)
	expired, err := relay.IssueCertificate(id, -time.Minute) // valid until an hour ago less a minute
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cert tls.Certificate
		want error
	}{
		{"another identity", foreign, relay.ErrWrongIdentity},
		{"online certificate of another identity", tls.Certificate{Certificate: [][]byte{foreign.Certificate[0], first.Certificate[1]}, PrivateKey: foreign.PrivateKey}, queue.ErrChainCertificate},
		{"three certificates", tls.Certificate{Certificate: [][]byte{second.Certificate[0], second.Certificate[1], second.Certificate[1]}, PrivateKey: second.PrivateKey}, relay.ErrWrongIdentity},
		{"online certificate only", tls.Certificate{Certificate: second.Certificate[:1], PrivateKey: second.PrivateKey}, relay.ErrWrongIdentity},
		{"expired", expired, queue.ErrChainCertificate},
		{"another private key", tls.Certificate{Certificate: second.Certificate, PrivateKey: first.PrivateKey}, queue.ErrChainCertificate},
	}
	served := func() []*x509.Certificate {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.addr, &tls.Config{
			InsecureSkipVerify: true, // checked below, as clients do
			NextProtos:         []string{queue.ALPN},
			MinVersion:         tls.VersionTLS13,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates
	}
	for _, tc := range cases {
		if err := r.SetCertificate(tc.cert); !errors.Is(err, tc.want) {
			t.Fatalf("%s: SetCertificate: %v, want %v", tc.name, err, tc.want)
		}
		chain := served()
		if !bytes.Equal(chain[0].Raw, first.Certificate[0]) {
			t.Fatalf("%s: the relay serves another certificate after a refused rotation", tc.name)
		}
		if err := queue.VerifyChain(chain, fp, time.Now()); err != nil {
			t.Fatalf("%s: the served chain fails the clients' check: %v", tc.name, err)
		}
	}
	if err := r.SetCertificate(second); err != nil {
		t.Fatal(err)
	}
	if chain := served(); !bytes.Equal(chain[0].Raw, second.Certificate[0]) || queue.VerifyChain(chain, fp, time.Now()) != nil {
		t.Fatal("a valid rotation was not served")
	}
}

// TestConformTLS: section 2, TLS 1.3 only, the ALPN hush/1 only, no
// session tickets, and (QUIC) one bidirectional stream and no
// unidirectional one.
func TestConformTLS(t *testing.T) {
	r := startWireRelayWith(t, nil)
	dial := func(conf *tls.Config) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.addr, conf)
	}
	// TLS 1.2 is refused.
	if c, err := dial(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("the relay completed a TLS 1.2 handshake")
	}
	// Another ALPN, or none, is refused.
	for _, protos := range [][]string{{"h2"}, nil} {
		c, err := dial(&tls.Config{InsecureSkipVerify: true, NextProtos: protos, MinVersion: tls.VersionTLS13})
		if err != nil {
			continue // refused in the handshake
		}
		// Go's server completes the handshake without ALPN; the relay
		// must then close the connection without speaking.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write((&queue.ClientHello{Version: 1}).AppendBlock(nil))
		if n, err := io.ReadFull(c, make([]byte, queue.BlockSize)); err == nil || n > 0 {
			t.Fatalf("ALPN %v: the relay answered", protos)
		}
		c.Close()
	}
	// No session ticket: a second connection with the same session cache
	// does not resume.
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c, err := dial(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13, ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		// Tickets arrive after the handshake, with the first data read.
		c.Write((&queue.ClientHello{Version: 1}).AppendBlock(nil))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadFull(c, make([]byte, queue.BlockSize))
		if c.ConnectionState().DidResume {
			t.Fatalf("connection %d resumed a TLS session", i)
		}
		c.Close()
	}

	// QUIC: a second bidirectional stream and a unidirectional one cannot
	// be opened.
	qc, err := quic.DialAddr(t.Context(), r.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	if _, err := qc.OpenStream(); err != nil {
		t.Fatalf("the first stream: %v", err)
	}
	if _, err := qc.OpenStream(); err == nil {
		t.Fatal("the relay allows a second bidirectional stream")
	}
	if _, err := qc.OpenUniStream(); err == nil {
		t.Fatal("the relay allows a unidirectional stream")
	}
}

// TestConformRecordSizes: section 2, "A relay MUST accept records of any
// size TLS allows": a ClientHello and a command written in records of 100
// bytes are answered.
func TestConformRecordSizes(t *testing.T) {
	r := startWireRelayWith(t, nil)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.addr, &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wireTimeout))
	writeSmall := func(b []byte) {
		for len(b) > 0 {
			n := min(100, len(b))
			if _, err := c.Write(b[:n]); err != nil { // one record per Write
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	writeSmall((&queue.ClientHello{Version: 1}).AppendBlock(nil))
	if _, err := io.ReadFull(c, make([]byte, queue.BlockSize)); err != nil {
		t.Fatal(err)
	}
	ping := queue.Transmission{CorrID: bytes.Repeat([]byte{7}, queue.CorrIDSize), Command: queue.Command{Tag: queue.TagPING}}
	var b queue.BlockBuilder
	b.Add(ping.Append(nil))
	writeSmall(b.AppendBlock(nil))
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(c, block); err != nil {
		t.Fatal(err)
	}
	txs, err := queue.ParseBlock(nil, block)
	if err != nil || len(txs) != 1 {
		t.Fatal(err)
	}
	if tx, _, err := queue.ParseTransmission(txs[0]); err != nil || tx.Command.Tag != queue.TagPONG || !bytes.Equal(tx.CorrID, ping.CorrID) {
		t.Fatalf("PING in small records: %+v %v", tx, err)
	}
}

// rawHandshake opens the transport (TLS or QUIC) without the hush
// handshake, for tests of the handshake itself.
func rawHandshake(t *testing.T, addr, transport string) *wireConn {
	t.Helper()
	w := &wireConn{t: t, transport: transport}
	conf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13}
	switch transport {
	case wireTCP:
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		w.rw, w.closeW, w.deadline = c, c.CloseWrite, c.SetDeadline
	case wireQUIC:
		qc, err := quic.DialAddr(t.Context(), addr, conf, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { qc.CloseWithError(0, "") })
		s, err := qc.OpenStreamSync(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		w.rw, w.closeW, w.deadline = s, s.Close, s.SetDeadline
	}
	return w
}

// TestConformHandshake: section 5. A malformed handshake block closes the
// connection; a ClientHello of a later version gets version 1; every
// session has its own session key, never a low-order one; a client that
// sends no ClientHello within the handshake deadline is closed.
func TestConformHandshake(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) { c.HandshakeTimeout = 2 * time.Second })
		hello := func(length int, body []byte) []byte {
			b := make([]byte, queue.BlockSize)
			b[0], b[1] = byte(length>>8), byte(length)
			copy(b[2:], body)
			return b
		}
		padded := hello(2, []byte{0, 1})
		padded[queue.BlockSize-1] = 1
		for name, block := range map[string][]byte{
			"length 0":         hello(0, nil),
			"length 16383":     hello(16383, nil),
			"version 0":        hello(2, []byte{0, 0}),
			"shorter than 2":   hello(1, []byte{0}),
			"non-zero padding": padded,
		} {
			w := rawHandshake(t, r.addr, transport)
			w.write(block)
			t.Run(name, func(t *testing.T) { w.t = t; w.expectClosed() })
		}
		// A later version, with ext bytes, is answered with version 1.
		w := rawHandshake(t, r.addr, transport)
		w.write(hello(5, []byte{0, 9, 0xaa, 0xbb, 0xcc}))
		sh, err := queue.ParseServerHello(w.readRaw())
		if err != nil || sh.MinVersion != 1 || sh.MaxVersion != 1 {
			t.Fatalf("ServerHello %+v, %v", sh, err)
		}
		// Session keys differ and are not of low order.
		a, b := dialWire(t, r.addr, transport), dialWire(t, r.addr, transport)
		if a.sessKey == b.sessKey || queue.LowOrder(a.sessKey) {
			t.Fatal("two sessions share a session key, or it is of low order")
		}
		// Nothing sent: closed at the handshake deadline.
		w = rawHandshake(t, r.addr, transport)
		w.expectClosed()
	})
}

// TestConformMalformed: sections 6, 7 and 15. The relay closes the session
// without an answer on a malformed block or transmission, a relay tag, or
// a command without a corrID; other sessions go on.
func TestConformMalformed(t *testing.T) {
	block := func(count int, parts ...[]byte) []byte {
		b := []byte{byte(count >> 8), byte(count)}
		for _, p := range parts {
			b = append(b, p...)
		}
		return append(b, make([]byte, queue.BlockSize-len(b))...)
	}
	corr := bytes.Repeat([]byte{1}, queue.CorrIDSize)
	ping := (&queue.Transmission{CorrID: corr, Command: queue.Command{Tag: queue.TagPING}}).Append(nil)
	withLen := func(tx []byte) []byte { return append([]byte{byte(len(tx) >> 8), byte(len(tx))}, tx...) }
	padded := block(1, withLen(ping))
	padded[queue.BlockSize-1] = 1
	cases := map[string][]byte{
		"section 6: count 0":                  block(0),
		"section 6: count 5461":               block(5461, withLen(ping)),
		"section 6: length 0":                 block(1, []byte{0, 0}),
		"section 6: length past the end":      block(1, []byte{0x40, 0x00}, ping),
		"section 6: non-zero padding":         padded,
		"section 7: authLen 31":               block(1, withLen(append([]byte{31}, make([]byte, 31)...))),
		"section 7: corrLen 23":               block(1, withLen(append([]byte{0, 23}, append(make([]byte, 23), 0, 0x0a)...))),
		"section 7: no corrID":                block(1, withLen([]byte{0, 0, 0, 0x0a})),
		"section 9: unknown tag":              block(1, withLen(append(append([]byte{0, 24}, corr...), 0, 0x7f))),
		"section 9: trailing byte":            block(1, withLen(append(append([]byte{0, 24}, corr...), 0, 0x0a, 0))),
		"section 15: relay tag":               block(1, withLen(append(append([]byte{0, 24}, corr...), 0, 0x82))),
		"section 9: NEW passwordLen over 128": block(1, withLen(append(append(append([]byte{32}, make([]byte, 32)...), append([]byte{24}, corr...)...), append(append([]byte{0, 0x01}, make([]byte, 64)...), 129)...))),
	}
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		other := dialWire(t, r.addr, transport)
		for name, b := range cases {
			t.Run(name, func(t *testing.T) {
				w := dialWire(t, r.addr, transport)
				w.write(b)
				w.expectClosed()
				other.t = t
				tx, c := other.tx(nil, nil, queue.Command{Tag: queue.TagPING})
				other.send(tx)
				if got := other.response(c).Command; got.Tag != queue.TagPONG {
					t.Fatalf("another session after it: %v", got.Tag)
				}
			})
		}
	})
}

// TestConformErrorCodes: sections 9 and 14, every error code a client can
// cause, each where the tables of section 9 give it, with the response
// echoing the command's corrID and entity.
func TestConformErrorCodes(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) {
			c.QueueQuota = 2
			c.MaxMessageSize = 100
			c.MaxSubscriptions = 1
		})
		w := dialWire(t, r.addr, transport)
		q := w.newQueue(true)
		unknown := queue.NewID()
		// Echo: the response carries the command's corrID and entity.
		tx, corr := w.tx(q.rKey, unknown[:], queue.Command{Tag: queue.TagSUB})
		w.send(tx)
		resp := w.response(corr)
		if !bytes.Equal(resp.Entity, unknown[:]) || resp.Auth != nil {
			t.Fatalf("section 9: response entity %x auth %x", resp.Entity, resp.Auth)
		}
		wireErr(t, "section 14 AUTH: unknown ID", resp.Command, queue.AUTH)
		wireErr(t, "section 14 AUTH: wrong key", w.do(q.sKey, q.rid, queue.Command{Tag: queue.TagSUB}), queue.AUTH)
		wireErr(t, "section 14 AUTH: SEND on an unsecured queue", w.do(q.sKey, w.newQueue(false).sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), queue.AUTH)

		// LARGE depends on the body only.
		wireErr(t, "section 14 LARGE", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: make([]byte, 101)}), queue.LARGE)
		wireErr(t, "section 14 LARGE on an unknown ID", w.do(q.sKey, unknown[:], queue.Command{Tag: queue.TagSEND, Body: make([]byte, 101)}), queue.LARGE)
		// QUOTA after the quota of messages.
		for range 2 {
			wireOK(t, "SEND", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}))
		}
		wireErr(t, "section 14 QUOTA", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), queue.QUOTA)
		// NO_MSG: ACK of another ID, GET of an empty queue.
		wireErr(t, "section 14 NO_MSG: ACK", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: queue.NewID()}), queue.NO_MSG)
		e := w.newQueue(true)
		wireErr(t, "section 14 NO_MSG: GET", w.do(e.rKey, e.rid, queue.Command{Tag: queue.TagGET}), queue.NO_MSG)
		// PROHIBITED: GET on a queue this session subscribes to, SUB over
		// the limit, NEW while draining.
		wireOK(t, "SUB", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		w.event(queue.TagMSG, q.rid)
		wireErr(t, "section 14 PROHIBITED: GET while subscribed", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}), queue.PROHIBITED)
		wireErr(t, "section 14 PROHIBITED: SUB over the limit", w.do(e.rKey, e.rid, queue.Command{Tag: queue.TagSUB}), queue.PROHIBITED)
		r.SetDraining(true)
		k, dh := newKey(t), newKey(t)
		wireErr(t, "section 14 PROHIBITED: NEW while draining", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.PROHIBITED)
		r.SetDraining(false)
		// SYNTAX: no auth, an auth on PING, an entity on NEW or PING, none
		// on a queue command.
		tx, corr = w.tx(nil, q.rid, queue.Command{Tag: queue.TagGET})
		w.send(tx)
		wireErr(t, "section 14 SYNTAX: no auth", w.response(corr).Command, queue.SYNTAX)
		tx, corr = txWithAuth(nil, queue.Command{Tag: queue.TagPING}, randomAuth())
		w.send(tx)
		wireErr(t, "section 14 SYNTAX: auth on PING", w.response(corr).Command, queue.SYNTAX)
		tx, corr = w.tx(nil, q.rid, queue.Command{Tag: queue.TagPING})
		w.send(tx)
		wireErr(t, "section 14 SYNTAX: entity on PING", w.response(corr).Command, queue.SYNTAX)
		wireErr(t, "section 14 SYNTAX: entity on NEW", w.do(k, q.rid, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}), queue.SYNTAX)
		wireErr(t, "section 14 SYNTAX: no entity on SUB", w.do(q.rKey, nil, queue.Command{Tag: queue.TagSUB}), queue.SYNTAX)
		// IDS has an empty entity.
		tx, corr = w.tx(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)})
		w.send(tx)
		if ids := w.response(corr); ids.Command.Tag != queue.TagIDS || ids.Entity != nil {
			t.Fatalf("section 9: IDS %v with entity %x", ids.Command.Tag, ids.Entity)
		}
		// INTERNAL (the store failing) cannot be caused by a client; the
		// relay's store tests cover it (TestStoreClosePending).
	})
}

// TestConformSessionBinding: section 8, an authenticator is valid on its
// session only: the same transmission bytes sent on another session are
// answered ERR AUTH.
func TestConformSessionBinding(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		a, b := dialWire(t, r.addr, transport), dialWire(t, r.addr, transport)
		q := a.newQueue(true)
		tx, corr := a.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		b.send(tx)
		wireErr(t, "replayed on another session", b.response(corr).Command, queue.AUTH)
		a.send(tx)
		wireErr(t, "on its own session (empty queue)", a.response(corr).Command, queue.NO_MSG)
	})
}

// TestConformEvents: sections 10 and 12. A subscriber gets its queue's
// messages as MSG events (empty corrID, the recipient ID as entity), one
// at a time: the next only after its ACK's OK; the same message again
// after a new SUB, as the same sealed bytes (section 11); END when another
// session subscribes; DELD when another session deletes the queue. GET
// does not end a subscription of another session.
func TestConformEvents(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		sub, other, q := wireSubscriber(t, r, transport, 2)
		ev := sub.event(queue.TagMSG, q.rid)
		if ev.CorrID != nil || ev.Auth != nil {
			t.Fatalf("section 10: MSG event with corrID %x auth %x", ev.CorrID, ev.Auth)
		}
		if got := string(q.open(t, ev.Command)); got != "message 0" {
			t.Fatalf("first message %q", got)
		}
		// Window of one: a PING's answer comes, no second MSG.
		tx, corr := sub.tx(nil, nil, queue.Command{Tag: queue.TagPING})
		sub.send(tx)
		sub.response(corr)
		for _, tx := range sub.backlog {
			if tx.Command.Tag == queue.TagMSG {
				t.Fatal("section 12: a second MSG before the ACK")
			}
		}
		// SUB again: the same message, the same sealed bytes.
		wireOK(t, "SUB again", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		again := sub.event(queue.TagMSG, q.rid)
		if again.Command.MsgID != ev.Command.MsgID || !bytes.Equal(again.Command.Body, ev.Command.Body) {
			t.Fatal("section 11: a message delivered twice is sealed differently")
		}
		// GET from another session does not end the subscription.
		if m := other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}); m.Tag != queue.TagMSG {
			t.Fatalf("GET: %v", m.Tag)
		}
		// The ACK's OK comes before the next MSG.
		tx, corr = sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: ev.Command.MsgID})
		sub.send(tx)
		okSeen := false
		next := sub.take(func(tx queue.Transmission) bool {
			if bytes.Equal(tx.CorrID, corr) {
				okSeen = true
				return false
			}
			return tx.Command.Tag == queue.TagMSG
		})
		if !okSeen {
			t.Fatal("section 12: the next MSG came before the ACK's OK")
		}
		if got := string(q.open(t, next.Command)); got != "message 1" {
			t.Fatalf("second message %q", got)
		}
		// END: another session subscribes.
		wireOK(t, "SUB from the other session", other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		sub.event(queue.TagEND, q.rid)
		other.event(queue.TagMSG, q.rid)
		// DELD: the first session deletes the queue; the subscriber (now
		// the other session) is told.
		wireOK(t, "DEL", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}))
		other.event(queue.TagDELD, q.rid)
		wireErr(t, "section 9: a command after DEL", other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}), queue.AUTH)
	})
}

// TestConformIdleTimeout: sections 15 and 16, a session that sends no
// block for the idle timeout is closed; PINGs keep it open.
func TestConformIdleTimeout(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) { c.IdleTimeout = 2 * time.Second })
		w := dialWire(t, r.addr, transport)
		for range 4 {
			time.Sleep(time.Second)
			tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
			w.send(tx)
			w.response(corr)
		}
		w.expectClosed()
	})
}

// TestConformClientHello: section 2, "TLS parameters a client offers": the
// reference client's TLS ClientHello, over both transports, offers what
// the section lists.
func TestConformClientHello(t *testing.T) {
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := relay.CertificateFingerprint(cert)
	wireTransports(t, func(t *testing.T, transport string) {
		got := make(chan *tls.ClientHelloInfo, 1)
		conf := &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{queue.ALPN},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				got <- h
				return nil, errors.New("recorded")
			},
		}
		var port int
		if transport == wireTCP {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				if c, err := ln.Accept(); err == nil {
					tls.Server(c, conf).Handshake()
					c.Close()
				}
			}()
			port = ln.Addr().(*net.TCPAddr).Port
		} else {
			ln, err := quic.ListenAddr("127.0.0.1:0", conf, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port = ln.Addr().(*net.UDPAddr).Port
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		// A host name, so that the server_name rule is visible.
		link.Dial(ctx, queue.Address{Fingerprint: fp, Host: "localhost", Port: uint16(port)}, link.Config{Transport: link.Transport(transport)})
		var h *tls.ClientHelloInfo
		select {
		case h = <-got:
		case <-ctx.Done():
			t.Fatal("no ClientHello")
		}
		aesFirst := []uint16{0x1301, 0x1302, 0x1303}
		chachaFirst := []uint16{0x1303, 0x1301, 0x1302}
		if !slices.Equal(h.CipherSuites, aesFirst) && !slices.Equal(h.CipherSuites, chachaFirst) {
			t.Errorf("cipher suites %04x", h.CipherSuites)
		}
		checks := []struct {
			name      string
			got, want []uint16
		}{
			{"supported_versions", h.SupportedVersions, []uint16{0x0304}},
			{"supported_groups", curveIDs(h.SupportedCurves), []uint16{0x11ec, 0x11eb, 0x11ed, 0x001d, 0x0017, 0x0018, 0x0019}},
			{"signature_algorithms", schemes(h.SignatureSchemes), []uint16{0x0804, 0x0403, 0x0807, 0x0805, 0x0806, 0x0503, 0x0603}},
		}
		extensions := []uint16{11, 65281, 23, 18, 5, 10, 13, 50, 16, 43, 51}
		if transport == wireQUIC {
			extensions = []uint16{0, 11, 65281, 23, 18, 57, 5, 10, 13, 50, 16, 43, 51}
		}
		checks = append(checks, struct {
			name      string
			got, want []uint16
		}{"extensions", h.Extensions, extensions})
		for _, c := range checks {
			if !slices.Equal(c.got, c.want) {
				t.Errorf("%s %04x, want %04x", c.name, c.got, c.want)
			}
		}
		if !slices.Equal(h.SupportedProtos, []string{queue.ALPN}) || !slices.Equal(h.SupportedPoints, []uint8{0}) {
			t.Errorf("ALPN %q, point formats %v", h.SupportedProtos, h.SupportedPoints)
		}
		if wantSNI := map[string]string{wireTCP: "", wireQUIC: "localhost"}[transport]; h.ServerName != wantSNI {
			t.Errorf("server_name %q, want %q", h.ServerName, wantSNI)
		}
	})
}

func curveIDs(cs []tls.CurveID) []uint16 {
	out := make([]uint16, len(cs))
	for i, c := range cs {
		out[i] = uint16(c)
	}
	return out
}

func schemes(ss []tls.SignatureScheme) []uint16 {
	out := make([]uint16, len(ss))
	for i, s := range ss {
		out[i] = uint16(s)
	}
	return out
}

// TestConformAuthBeforeState: section 9, "Authorization is checked before
// anything that depends on the queue's state, so QUOTA, NO_MSG and
// PROHIBITED answers are only given to a holder of the right key", and a
// wrong password comes before drain mode's PROHIBITED.
func TestConformAuthBeforeState(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) {
			c.QueueQuota = 1
			c.MaxSubscriptions = 1
			c.Password = "pw"
		})
		w := dialWire(t, r.addr, transport)
		w.password = "pw"
		full, empty := w.newQueue(true), w.newQueue(true)
		wireOK(t, "SEND", w.do(full.sKey, full.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}))
		wrong := newKey(t)
		wireErr(t, "SEND with a wrong key to a full queue", w.do(wrong, full.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")}), queue.AUTH)
		wireErr(t, "GET with a wrong key on an empty queue", w.do(wrong, empty.rid, queue.Command{Tag: queue.TagGET}), queue.AUTH)
		wireErr(t, "ACK with a wrong key", w.do(wrong, full.rid, queue.Command{Tag: queue.TagACK, MsgID: queue.NewID()}), queue.AUTH)
		wireOK(t, "SUB", w.do(full.rKey, full.rid, queue.Command{Tag: queue.TagSUB}))
		wireErr(t, "SUB over the limit with a wrong key", w.do(wrong, empty.rid, queue.Command{Tag: queue.TagSUB}), queue.AUTH)
		wireErr(t, "GET while subscribed with a wrong key", w.do(wrong, full.rid, queue.Command{Tag: queue.TagGET}), queue.AUTH)
		r.SetDraining(true)
		k, dh := newKey(t), newKey(t)
		wireErr(t, "NEW while draining with a wrong password", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh), Password: []byte("wrong")}), queue.AUTH)
		wireErr(t, "NEW while draining with the password", w.do(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh), Password: []byte("pw")}), queue.PROHIBITED)
	})
}

// TestConformRatesSlowDown: section 16, a session over its NEW or SEND
// rate is slowed down, never answered with an error: a burst of commands
// well over the rates, sent in one block, is answered IDS and OK each.
func TestConformRatesSlowDown(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) { c.NewRate, c.SendRate = 2, 4 })
		w := dialWire(t, r.addr, transport)
		var txs, corrs [][]byte
		for range 6 {
			k, dh := newKey(t), newKey(t)
			tx, corr := w.tx(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)})
			txs, corrs = append(txs, tx), append(corrs, corr)
		}
		w.send(txs...)
		for i, c := range corrs {
			if got := w.response(c).Command; got.Tag != queue.TagIDS {
				t.Fatalf("NEW %d over the rate: %v %v", i, got.Tag, got.Error)
			}
		}
		q := w.newQueue(true)
		txs, corrs = nil, nil
		for range 12 {
			tx, corr := w.tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("x")})
			txs, corrs = append(txs, tx), append(corrs, corr)
		}
		w.send(txs...)
		for i, c := range corrs {
			wireOK(t, fmt.Sprintf("SEND %d over the rate", i), w.response(c).Command)
		}
	})
}

// TestConformGetThenAck: section 12, "After GET, the client ACKs as usual;
// no MSG is pushed after that ACK unless the session subscribes."
func TestConformGetThenAck(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		q := w.newQueue(true)
		for _, b := range []string{"one", "two"} {
			wireOK(t, "SEND", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte(b)}))
		}
		m := w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		if got := string(q.open(t, m)); got != "one" {
			t.Fatalf("GET: %q", got)
		}
		wireOK(t, "ACK", w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: m.MsgID}))
		// A PING's answer comes after anything the ACK could have pushed.
		tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
		w.send(tx)
		w.response(corr)
		for _, tx := range w.backlog {
			if tx.Command.Tag == queue.TagMSG {
				t.Fatal("a MSG was pushed after the ACK of a GET")
			}
		}
		if got := string(q.open(t, w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET}))); got != "two" {
			t.Fatalf("second GET: %q", got)
		}
	})
}

// TestConformCommandAgain: section 15, what a command that took effect
// gives when it is sent again on a new session (as a client does when its
// session closed before the response): SEND a second copy of the message,
// NEW a second queue, KEY with the same key, SUB and OFF OK again (the
// first session's subscription ends with END), ACK ERR NO_MSG, DEL ERR
// AUTH, and ACK on the deleted queue ERR AUTH.
func TestConformCommandAgain(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		a := dialWire(t, r.addr, transport)
		q := a.newQueue(true)
		send := queue.Command{Tag: queue.TagSEND, Body: []byte("again")}
		wireOK(t, "SEND", a.do(q.sKey, q.sid, send))
		b := dialWire(t, r.addr, transport)
		wireOK(t, "SEND again", b.do(q.sKey, q.sid, send))
		first := b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		wireOK(t, "ACK", b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: first.MsgID}))
		second := b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
		if first.Tag != queue.TagMSG || second.Tag != queue.TagMSG || first.MsgID == second.MsgID ||
			string(q.open(t, first)) != "again" || string(q.open(t, second)) != "again" {
			t.Fatalf("section 15: SEND sent again is not a second copy (%v %x, %v %x)", first.Tag, first.MsgID, second.Tag, second.MsgID)
		}
		wireOK(t, "ACK of the second copy", b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: second.MsgID}))
		c := dialWire(t, r.addr, transport)
		wireErr(t, "section 15: ACK again", c.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: second.MsgID}), queue.NO_MSG)
		wireOK(t, "section 15: KEY again with the same key", c.do(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(q.sKey)}))
		wireOK(t, "SUB", b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		wireOK(t, "section 15: SUB again", c.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
		b.event(queue.TagEND, q.rid)
		wireOK(t, "OFF", b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagOFF}))
		wireOK(t, "section 15: OFF again", c.do(q.rKey, q.rid, queue.Command{Tag: queue.TagOFF}))
		wireOK(t, "DEL", b.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}))
		c.event(queue.TagDELD, q.rid)
		d := dialWire(t, r.addr, transport)
		wireErr(t, "section 15: DEL again", d.do(q.rKey, q.rid, queue.Command{Tag: queue.TagDEL}), queue.AUTH)
		wireErr(t, "section 15: ACK on the deleted queue", d.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: second.MsgID}), queue.AUTH)
		// NEW sent again makes a second queue: its own IDs.
		p := d.newQueue(false)
		if bytes.Equal(p.rid, q.rid) || bytes.Equal(p.sid, q.sid) {
			t.Fatal("section 15: a second NEW gave the first queue's IDs")
		}
	})
}

// TestConformAckThenSub: sections 6 and 12, ACK then SUB of the same
// queue, pipelined in one block on one session. The SUB sees the ACK's
// effect and is answered after it: the ACK's OK, then the SUB's OK, then
// the message after the one acknowledged, which is never delivered
// again. The relay's commits are held with the ACK queued and released
// only once a command waits for the session's earlier writes on its
// queue (relay.SetWaitHook): a SUB that does not wait for the ACK is
// answered, and could deliver the acknowledged message again, while the
// ACK cannot have committed. (Such a SUB made TestReSubRedelivers fail
// in 4 to 9 of 100 runs.)
func TestConformAckThenSub(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		ctx := e2eContext(t)
		r := startWireRelayWith(t, nil)
		sub, _, q := wireSubscriber(t, r, transport, 2)
		body, id := sub.nextMessage(q)
		if body != "message 0" {
			t.Fatalf("got %q, want message 0", body)
		}
		release := relay.HoldCommits(t, r.Relay)
		waiting := make(chan struct{}, 1)
		relay.SetWaitHook(r.Relay, func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		})
		go func() {
			select {
			case <-waiting:
				release()
			case <-ctx.Done():
			}
		}()
		ackTx, ackCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id})
		subTx, subCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB})
		sub.send(ackTx, subTx)
		// In order of arrival: the two answers and the MSGs of q, until
		// the first MSG after the SUB's OK. Every MSG is of message 1 and
		// comes after the ACK's OK.
		acked, subscribed := false, false
		for !subscribed {
			tx := sub.take(func(tx queue.Transmission) bool {
				return bytes.Equal(tx.CorrID, ackCorr) || bytes.Equal(tx.CorrID, subCorr) ||
					tx.CorrID == nil && tx.Command.Tag == queue.TagMSG && bytes.Equal(tx.Entity, q.rid)
			})
			switch {
			case bytes.Equal(tx.CorrID, ackCorr):
				wireOK(t, "ACK", tx.Command)
				acked = true
				continue
			case bytes.Equal(tx.CorrID, subCorr):
				if !acked {
					t.Fatalf("the SUB was answered %v before the ACK sent before it", tx.Command.Tag)
				}
				wireOK(t, "SUB", tx.Command)
				subscribed = true
				body, _ = sub.nextMessage(q)
			case !acked:
				t.Fatal("a MSG came before the ACK's answer")
			default:
				body = string(q.open(t, tx.Command))
			}
			if body != "message 1" {
				t.Fatalf("after the ACK of message 0, then SUB: got %q, want message 1", body)
			}
		}
	})
}
