package link

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
	"github.com/hushrelay/hush/torutil/socks"
)

// testTimeout bounds every test that touches the network.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testIdentity is a relay identity and a certificate chain issued for it.
type testIdentity struct {
	key   ed25519.PrivateKey
	fp    queue.Fingerprint
	cert  tls.Certificate
	chain []*x509.Certificate // [leaf, identity CA]
}

func newTestIdentity(t *testing.T) testIdentity {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := relay.IssueCertificate(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	return testIdentity{key: key, fp: queue.FingerprintOf(pub), cert: cert, chain: parseChain(t, cert.Certificate)}
}

func parseChain(t *testing.T, ders [][]byte) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	return chain
}

// leafFor issues an online certificate valid from notBefore to notAfter,
// naming ca as its issuer and signed by signer (normally ca's key).
func leafFor(t *testing.T, ca *x509.Certificate, signer ed25519.PrivateKey, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	parent := *ca
	parent.PublicKey = signer.Public() // x509 insists that they match
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "test leaf"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}
}

// ecdsaChain is a chain whose CA key is not Ed25519.
func ecdsaChain(t *testing.T) []*x509.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ecdsa ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseChain(t, [][]byte{der})[0]
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return parseChain(t, [][]byte{leafDER, der})
}

func TestVerifyChain(t *testing.T) {
	id := newTestIdentity(t)
	other := newTestIdentity(t)
	now := time.Now()
	ca := id.chain[1]
	expired := parseChain(t, leafFor(t, ca, id.key, now.Add(-48*time.Hour), now.Add(-24*time.Hour)).Certificate)
	notYet := parseChain(t, leafFor(t, ca, id.key, now.Add(24*time.Hour), now.Add(48*time.Hour)).Certificate)
	// A leaf that names the pinned CA as its issuer but was signed by
	// another key.
	forged := parseChain(t, leafFor(t, ca, other.key, now.Add(-time.Hour), now.Add(time.Hour)).Certificate)

	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  error
	}{
		{"valid", id.chain, nil},
		{"another identity", other.chain, ErrWrongFingerprint},
		{"leaf only", id.chain[:1], ErrWrongFingerprint},
		{"CA only", id.chain[1:], ErrWrongFingerprint},
		{"three certificates", []*x509.Certificate{id.chain[0], id.chain[1], id.chain[1]}, ErrWrongFingerprint},
		{"no certificates", nil, ErrWrongFingerprint},
		{"CA key not Ed25519", ecdsaChain(t), ErrWrongFingerprint},
		{"leaf of another identity", []*x509.Certificate{other.chain[0], id.chain[1]}, ErrTLS},
		{"leaf signed by another key", forged, ErrTLS},
		{"leaf as its own CA", []*x509.Certificate{id.chain[0], id.chain[0]}, ErrWrongFingerprint},
		{"expired leaf", expired, ErrTLS},
		{"leaf not yet valid", notYet, ErrTLS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyChain(tc.chain, id.fp, now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if errors.Is(err, ErrTLS) && errors.Is(err, ErrWrongFingerprint) {
				t.Fatalf("%v is both ErrTLS and ErrWrongFingerprint", err)
			}
		})
	}
}

// testServer accepts connections on both transports, on one port number,
// with the given certificate and ALPN, and hands each session's stream (a
// TLS connection, or a QUIC connection's first stream) to serve.
type testServer struct {
	addr queue.Address
	wg   sync.WaitGroup
}

func startTestServer(t *testing.T, cert tls.Certificate, fp queue.Fingerprint, alpn string, serve func(io.ReadWriteCloser)) *testServer {
	t.Helper()
	conf := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		NextProtos:             []string{alpn},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
	// The UDP port of a free TCP port may be taken (by another process's
	// QUIC client): try other ports.
	var (
		ln  net.Listener
		ql  *quic.Listener
		err error
	)
	for range 20 {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ql, err = quic.ListenAddr(ln.Addr().String(), conf, nil); err == nil {
			break
		}
		ln.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	s := &testServer{addr: queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: uint16(port)}}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var open []io.Closer
	track := func(c io.Closer) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			s.wg.Go(func() {
				tc := tls.Server(c, conf)
				defer tc.Close()
				if tc.HandshakeContext(ctx) == nil && serve != nil {
					serve(tc)
				}
			})
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			qc, err := ql.Accept(ctx)
			if err != nil {
				return
			}
			track(closerFunc(func() error { return qc.CloseWithError(0, "") }))
			s.wg.Go(func() {
				defer qc.CloseWithError(0, "")
				st, err := qc.AcceptStream(ctx)
				if err == nil && serve != nil {
					serve(testQUICStream{st, qc})
				}
			})
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		ql.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type testQUICStream struct {
	*quic.Stream
	conn *quic.Conn
}

func (s testQUICStream) Close() error { return s.conn.CloseWithError(0, "") }

var transports = []Transport{TransportQUIC, TransportTCP}

// TestDialIdentity dials servers with the wrong identity or a bad
// certificate over both transports: the error says which.
func TestDialIdentity(t *testing.T) {
	id := newTestIdentity(t)
	other := newTestIdentity(t)
	now := time.Now()
	expired := leafFor(t, id.chain[1], id.key, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	cases := []struct {
		name string
		cert tls.Certificate
		alpn string
		want error
	}{
		{"another identity", other.cert, queue.ALPN, ErrWrongFingerprint},
		{"expired certificate", expired, queue.ALPN, ErrTLS},
		{"another ALPN", id.cert, "h2", ErrTLS},
	}
	for _, tc := range cases {
		for _, tr := range transports {
			t.Run(tc.name+"/"+string(tr), func(t *testing.T) {
				ctx := testContext(t)
				s := startTestServer(t, tc.cert, id.fp, tc.alpn, nil)
				c, err := Dial(ctx, s.addr, Config{Transport: tr})
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				for _, e := range []error{ErrUnreachable, ErrTLS, ErrWrongFingerprint, ErrProtocol} {
					if e != tc.want && errors.Is(err, e) {
						t.Fatalf("%v is also %v", err, e)
					}
				}
			})
		}
	}
}

// TestDialNoFallbackOnIdentity checks that a wrong identity over QUIC is
// reported as such, without trying TCP.
func TestDialNoFallbackOnIdentity(t *testing.T) {
	ctx := testContext(t)
	id, other := newTestIdentity(t), newTestIdentity(t)
	s := startTestServer(t, other.cert, id.fp, queue.ALPN, nil)
	var tcpDials int
	var mu sync.Mutex
	_, err := Dial(ctx, s.addr, Config{DialTCP: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		tcpDials++
		mu.Unlock()
		return new(net.Dialer).DialContext(ctx, network, addr)
	}})
	if !errors.Is(err, ErrWrongFingerprint) {
		t.Fatalf("got %v, want ErrWrongFingerprint", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tcpDials != 0 {
		t.Fatalf("dialled TCP %d times after QUIC found the wrong identity", tcpDials)
	}
}

// closedPort returns a loopback port that nothing listens on, on TCP or
// UDP.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return uint16(port)
}

// TestDialUnreachable dials a port where nothing listens.
func TestDialUnreachable(t *testing.T) {
	id := newTestIdentity(t)
	addr := queue.Address{Fingerprint: id.fp, Host: "127.0.0.1", Port: closedPort(t)}
	for _, tr := range []Transport{TransportQUIC, TransportTCP, TransportAuto} {
		t.Run("transport="+string(tr), func(t *testing.T) {
			ctx := testContext(t)
			_, err := Dial(ctx, addr, Config{
				Transport:        tr,
				QUICTimeout:      300 * time.Millisecond,
				HandshakeTimeout: time.Second,
			})
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("got %v, want ErrUnreachable", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%v: the caller's context had not ended", err)
			}
		})
	}
}

// TestDialCanceled checks that a caller's cancellation is reported as
// such, not as an unreachable relay.
func TestDialCanceled(t *testing.T) {
	id := newTestIdentity(t)
	addr := queue.Address{Fingerprint: id.fp, Host: "127.0.0.1", Port: closedPort(t)}
	for _, tr := range []Transport{TransportQUIC, TransportTCP} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Dial(ctx, addr, Config{Transport: tr})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: got %v, want context.Canceled", tr, err)
		}
	}
}

// TestDialOnionNeverQUIC checks that an onion host is never dialled over
// QUIC (which would leave Tor) nor directly: without Tor it is an error
// and nothing is dialled; with Tor it goes to the SOCKS proxy, and a dead
// proxy is a clear error.
func TestDialOnionNeverQUIC(t *testing.T) {
	ctx := testContext(t)
	id := newTestIdentity(t)
	addr := queue.Address{Fingerprint: id.fp, Host: strings.Repeat("a", 56) + ".onion", Port: 5223}
	if _, err := Dial(ctx, addr, Config{Transport: TransportQUIC}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("quic to an onion host: %v, want ErrUnreachable", err)
	}
	var dialled string
	_, err := Dial(ctx, addr, Config{DialTCP: func(ctx context.Context, network, a string) (net.Conn, error) {
		dialled = a
		return nil, errors.New("no tor here")
	}})
	if !errors.Is(err, ErrUnreachable) || dialled != "" {
		t.Fatalf("default transport to an onion host: %v, dialled %q", err, dialled)
	}
	for _, mode := range []TorMode{TorRequired, TorPrefer} {
		_, err = Dial(ctx, addr, Config{Tor: mode, SOCKS: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(closedPort(t)))),
			DialTCP: func(ctx context.Context, network, a string) (net.Conn, error) {
				dialled = a
				return nil, errors.New("direct dial")
			}})
		if !errors.Is(err, ErrUnreachable) || !errors.Is(err, socks.ErrProxyUnreachable) || dialled != "" {
			t.Fatalf("tor=%s with a dead proxy: %v, dialled %q", mode, err, dialled)
		}
	}
}

// TestDialConfig checks Config validation.
func TestDialConfig(t *testing.T) {
	ctx := testContext(t)
	id := newTestIdentity(t)
	addr := queue.Address{Fingerprint: id.fp, Host: "127.0.0.1", Port: closedPort(t)}
	if _, err := Dial(ctx, addr, Config{Transport: "udp"}); err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("unknown transport: %v", err)
	}
	if _, err := Dial(ctx, queue.Address{Fingerprint: id.fp}, Config{}); err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("no host: %v", err)
	}
}

// sentRecorder is a net.Conn that keeps a copy of everything written to it.
type sentRecorder struct {
	net.Conn
	mu   sync.Mutex
	sent []byte
}

func (c *sentRecorder) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *sentRecorder) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.sent)
}

// TestTCPRecordFraming checks the client's TLS records on the wire
// (queue/PROTOCOL.md section 2): after its handshake records, every record
// the client sends carries 4,096 bytes of plaintext, four per block.
func TestTCPRecordFraming(t *testing.T) {
	ctx := testContext(t)
	addr := startRelay(t, nil)
	var conn *sentRecorder
	cfg := Config{Transport: TransportTCP, DialTCP: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			return nil, err
		}
		conn = &sentRecorder{Conn: c}
		return conn, nil
	}}
	c := dialPeer(t, ctx, addr, cfg)
	const pings = 3
	for range pings {
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wire := conn.bytes()
	// TLS records: type(1) version(2) length(2) then length bytes.
	var appLens []int
	for len(wire) > 0 {
		if len(wire) < 5 {
			t.Fatalf("%d bytes left after the last whole record", len(wire))
		}
		typ, n := wire[0], int(binary.BigEndian.Uint16(wire[3:5]))
		if len(wire) < 5+n {
			t.Fatalf("record of %d bytes cut short", n)
		}
		if typ == 23 { // application_data: everything after the ClientHello
			appLens = append(appLens, n)
		}
		wire = wire[5+n:]
	}
	// The first encrypted record is the client's Finished message; then
	// come the ClientHello block and one block per PING.
	const want = clientRecordSize + 1 + 16 // plaintext, content type, AEAD tag
	if len(appLens) != 1+4*(1+pings) {
		t.Fatalf("client sent %d encrypted records %v, want 1 + 4 x %d", len(appLens), appLens, 1+pings)
	}
	for i, n := range appLens[1:] {
		if n != want {
			t.Errorf("record %d: length %d, want %d", i+1, n, want)
		}
	}
}
