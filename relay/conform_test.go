package relay_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"testing"
	"time"

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
