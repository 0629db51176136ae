package link

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/torutil/socks"
)

// Transport is how a connection reaches a relay.
type Transport string

// Transports, the values of Config.Transport and of Conn.Transport.
const (
	// TransportAuto (the zero value, only in Config) tries QUIC first and
	// falls back to TLS over TCP when QUIC does not connect within
	// Config.QUICTimeout.
	TransportAuto Transport = ""
	// TransportQUIC is QUIC over UDP.
	TransportQUIC Transport = "quic"
	// TransportTCP is TLS over TCP.
	TransportTCP Transport = "tcp"
)

// TorMode says whether and how connections go through Tor.
type TorMode string

// String returns the transport's name: "quic", "tcp" or "auto".
func (t Transport) String() string {
	if t == TransportAuto {
		return "auto"
	}
	return string(t)
}

// Tor modes, the values of Config.Tor.
const (
	// TorOff (or "") dials relays directly; an onion-only relay cannot be
	// reached.
	TorOff TorMode = "off"
	// TorPrefer dials a relay's onion host through the SOCKS proxy when the
	// relay has one and the proxy answers, and dials directly otherwise.
	TorPrefer TorMode = "prefer"
	// TorRequired dials only through the SOCKS proxy: TLS over TCP, never
	// QUIC (no UDP socket is opened), never a direct connection, and no
	// name is resolved locally (the proxy resolves it). The onion host is
	// used when the relay has one. A proxy that does not answer is an
	// error (ErrUnreachable wrapping socks.ErrProxyUnreachable).
	TorRequired TorMode = "required"
)

// On reports whether the mode sends connections through Tor: TorPrefer or
// TorRequired.
func (m TorMode) On() bool { return m == TorPrefer || m == TorRequired }

// DefaultSOCKS is the default Tor SOCKS5 proxy.
const DefaultSOCKS = "127.0.0.1:9050"

// Defaults of Config.
const (
	DefaultQUICTimeout      = 3 * time.Second
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultKeepAlive        = 60 * time.Second
	// DefaultTransportKeepAlive and DefaultTransportIdleTimeout let an
	// idle QUIC connection notice a relay that died about a second after
	// it died: a keep-alive packet goes 350 ms after the last packet
	// received, the relay acknowledges it within its max_ack_delay (25 ms
	// by default), and a connection that then receives no packet at all
	// for a quarter of the idle timeout, 1.25 s, though it kept asking,
	// ends (see Conn). A relay that stalls for less than the difference,
	// about 0.9 s (a process stopped for half a second,
	// TestQUICRelayStalled), keeps its connections. A relay that
	// restarted is noticed about 0.6 s after the last packet (see Conn).
	// This costs about 1.1 MB an hour per idle QUIC connection: a
	// keep-alive packet and its acknowledgement every 350 ms, some 55
	// bytes each with their IPv4 and UDP headers (TestQUICKeepAlive logs
	// the figure; at 1 s it was 381 KB). TCP keep-alive probes go at whole
	// seconds (see Config.TransportKeepAlive): one a second, 52-byte
	// segments with their IPv4 headers. 5 s is the least idle timeout
	// quic-go accepts from a peer; the QUIC idle timeout itself is only
	// the last resort.
	DefaultTransportKeepAlive   = 350 * time.Millisecond
	DefaultTransportIdleTimeout = 5 * time.Second
)

// Config configures Dial. The zero value is ready to use: QUIC first,
// TLS over TCP as the fallback, and the defaults below.
type Config struct {
	// Transport is TransportAuto (the zero value) to try QUIC first and
	// fall back to TLS over TCP when QUIC does not connect within
	// QUICTimeout, TransportQUIC or TransportTCP to use only that one.
	// Use TransportTCP with a Tor DialTCP: QUIC sends UDP, which Tor does
	// not carry. An onion host is only ever dialled over TCP.
	Transport Transport
	// DialTCP opens the TCP connection that TLS runs over, for example
	// through a SOCKS5 proxy. It must honour ctx. Default: a net.Dialer's
	// DialContext, with TCP keep-alive probes every TransportKeepAlive
	// while the connection is idle, ending it when TransportIdleTimeout
	// worth of them go unanswered: a relay whose host went away, or
	// restarted without closing its end, is noticed like over QUIC.
	DialTCP func(ctx context.Context, network, addr string) (net.Conn, error)
	// QUICTimeout bounds each QUIC connection attempt (UDP and TLS); with
	// TransportAuto, TCP is tried after it. Default 3 s. It keeps a relay
	// that comes back during an attempt from waiting for QUIC's ever
	// longer retransmissions of its first packet. It is also the QUIC
	// handshake's idle timeout (quic-go's HandshakeIdleTimeout, 5 s if
	// unset), so that a longer QUICTimeout, for a relay busy with
	// thousands of handshakes, is not cut short by it.
	QUICTimeout time.Duration
	// HandshakeTimeout bounds each transport attempt: connecting, the TLS
	// handshake and the hush handshake. Default 15 s.
	HandshakeTimeout time.Duration
	// Cover is the mean wait between cover blocks: PINGs that the
	// connection sends at random, whatever else it sends, each wait drawn
	// from an exponential distribution (a Poisson process), so that an
	// observer who counts the blocks of the link cannot tell when it
	// carries messages (queue/PROTOCOL.md sections 9 and 17). A PING block
	// has the size of every block, and the relay answers it with a PONG
	// block, so both directions are covered. Each costs about 33 KB on the
	// wire (a client block and a relay block with their TLS framing):
	// about 120 MB an hour at 1 s, 12 MB at 10 s. Default 0: no cover.
	Cover time.Duration
	// KeepAlive is the mean of how long the connection may go without
	// writing before a PING is sent: each wait is drawn uniformly from
	// [KeepAlive/2, 3*KeepAlive/2], so that keep-alives have no fixed
	// period. A relay that then sends nothing for KeepAlive or
	// HandshakeTimeout, whichever is longer, is taken as gone and the
	// connection ends with ErrUnreachable. Default 60 s; negative disables
	// keep-alives. Keep 3*KeepAlive/2 below the relay's idle timeout (5
	// minutes by default, queue/PROTOCOL.md section 16).
	KeepAlive time.Duration
	// TransportKeepAlive is how long a connection waits after the last
	// packet it received before it sends a keep-alive packet (a QUIC PING
	// frame, or a TCP keep-alive probe with the default DialTCP; not a
	// hush PING). Default DefaultTransportKeepAlive. It is at most half of
	// TransportIdleTimeout. TCP keep-alive probes can only be timed in
	// whole seconds: they take it rounded up to a second.
	TransportKeepAlive time.Duration
	// TransportIdleTimeout is the QUIC idle timeout the client advertises,
	// and about how long TCP keep-alive probes go unanswered before the
	// connection ends: a connection that receives nothing for this long
	// ends (with ErrUnreachable), so a relay that died, or restarted and
	// lost the connection, is noticed that long after its last packet. A
	// restarted relay is noticed at once when the client sends it a block:
	// its stateless reset ends a QUIC connection (queue/PROTOCOL.md
	// section 2; keep-alive packets are too short to draw one, so the
	// connection sends a PING when a keep-alive goes unanswered), its
	// host's TCP reset a TCP one. A QUIC connection that keeps asking and
	// receives no packet at all ends much sooner: after a quarter of this,
	// or three TransportKeepAlive periods if longer (see Conn). Raise it
	// where a relay may stall for longer than about a second, or a loaded
	// machine may hold its packets up that long. Default
	// DefaultTransportIdleTimeout.
	TransportIdleTimeout time.Duration

	// RetryMin, RetryMax, RetrySlowAfter and RetrySlow set the delays
	// between reconnection attempts (see Backoff; Dial itself makes one
	// attempt). Defaults DefaultRetryMin, DefaultRetryMax,
	// DefaultRetrySlowAfter and DefaultRetrySlow.
	RetryMin, RetryMax, RetrySlowAfter, RetrySlow time.Duration

	// LocalAddr, when valid, is the source address of direct connections,
	// QUIC and TCP (with the default DialTCP), for example one of
	// 127.0.0.0/8 in tests that tell clients apart by address. Default:
	// the system chooses. Not used through Tor.
	LocalAddr netip.Addr

	// Tor is TorOff (or ""), TorPrefer or TorRequired. With Tor, DialTCP
	// is not used: connections go through the SOCKS proxy.
	Tor TorMode
	// SOCKS is the Tor SOCKS5 proxy's host:port. Default DefaultSOCKS.
	SOCKS string
	// Isolation is given to the proxy as SOCKS credentials: connections
	// with different values never share a Tor circuit.
	Isolation string
}

func (cfg Config) withDefaults() (Config, error) {
	switch cfg.Transport {
	case TransportAuto, TransportQUIC, TransportTCP:
	default:
		return cfg, fmt.Errorf("unknown transport %q", cfg.Transport)
	}
	switch cfg.Tor {
	case "":
		cfg.Tor = TorOff
	case TorOff, TorPrefer, TorRequired:
	default:
		return cfg, fmt.Errorf("unknown tor mode %q (want off, prefer or required)", cfg.Tor)
	}
	if cfg.Tor == TorRequired && cfg.Transport == TransportQUIC {
		return cfg, errors.New("QUIC cannot go through Tor: use the TCP transport with tor=required")
	}
	if cfg.SOCKS == "" {
		cfg.SOCKS = DefaultSOCKS
	}
	if cfg.QUICTimeout <= 0 {
		cfg.QUICTimeout = DefaultQUICTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.TransportIdleTimeout <= 0 {
		cfg.TransportIdleTimeout = DefaultTransportIdleTimeout
	}
	if cfg.TransportKeepAlive <= 0 {
		cfg.TransportKeepAlive = DefaultTransportKeepAlive
	}
	cfg.TransportKeepAlive = min(cfg.TransportKeepAlive, cfg.TransportIdleTimeout/2)
	if cfg.DialTCP == nil {
		// The kernel times TCP keep-alives in whole seconds (net rounds
		// up): count the probes in the period they really have.
		tcpKeepAlive := (cfg.TransportKeepAlive + time.Second - 1).Truncate(time.Second)
		d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     tcpKeepAlive,
			Interval: tcpKeepAlive,
			Count:    max(1, int(cfg.TransportIdleTimeout/tcpKeepAlive)-1),
		}}
		if cfg.LocalAddr.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(cfg.LocalAddr, 0))
		}
		cfg.DialTCP = d.DialContext
	}
	return cfg, nil
}

// Dial connects to the relay at addr, checks that it holds the identity
// whose fingerprint addr pins, and does the hush handshake. Without Tor it
// dials addr's host; with Tor (cfg.Tor) it dials the onion host, if the
// relay has one, through the SOCKS proxy (see TorPrefer, TorRequired).
//
// Dial blocks until the connection is ready or fails; ctx bounds it, and
// cancelling ctx later has no effect on the connection. The error wraps
// ErrUnreachable, ErrTLS, ErrWrongFingerprint or ErrProtocol, or ctx's
// error when ctx ended first.
func Dial(ctx context.Context, addr queue.Address, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if addr.Host == "" || addr.Port == 0 {
		return nil, errors.New("the relay address has no host or port")
	}
	var s session
	tor := socks.Dialer{Proxy: cfg.SOCKS, Isolation: cfg.Isolation}
	onionTarget := addr.OnionHostPort()
	switch {
	case cfg.Tor == TorRequired:
		target := onionTarget
		if target == "" {
			target = addr.HostPort() // a clearnet relay, reached through a Tor exit
		}
		s, err = dialTCP(ctx, addr, target, cfg, tor.DialContext)
	case cfg.Tor == TorPrefer && onionTarget != "":
		s, err = dialTCP(ctx, addr, onionTarget, cfg, tor.DialContext)
		if errors.Is(err, socks.ErrProxyUnreachable) && !queue.IsOnion(addr.Host) {
			s, err = dialDirect(ctx, addr, cfg) // no proxy: the relay's clearnet host
		}
	case queue.IsOnion(addr.Host):
		return nil, fmt.Errorf("%w: %s is an onion host: dial it with Tor (tor=prefer or required)", ErrUnreachable, addr.Host)
	default:
		s, err = dialDirect(ctx, addr, cfg)
	}
	if err != nil {
		return nil, err
	}
	return newConn(s, cfg), nil
}

// stream is the byte stream that carries a session: a TLS connection over
// TCP, or one QUIC stream (quicStream).
type stream interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// quicStream is the single bidirectional stream of a QUIC connection;
// closing it closes the whole connection.
type quicStream struct {
	conn *quic.Conn
	s    *quic.Stream
	// tr and udp are the transport and socket of a connection from
	// Config.LocalAddr, closed with it; nil otherwise (quic-go closes
	// its own).
	tr  *quic.Transport
	udp *net.UDPConn
}

func (q quicStream) Read(b []byte) (int, error)    { return q.s.Read(b) }
func (q quicStream) Write(b []byte) (int, error)   { return q.s.Write(b) }
func (q quicStream) SetDeadline(t time.Time) error { return q.s.SetDeadline(t) }
func (q quicStream) Close() error {
	err := q.conn.CloseWithError(0, "")
	if q.tr != nil {
		q.tr.Close()
		q.udp.Close()
	}
	return err
}

// clientRecordSize is the plaintext size of the TLS records a client
// sends over TCP: a block travels as BlockSize/clientRecordSize records
// (queue/PROTOCOL.md section 2). The relay's TLS stack keeps a receive
// buffer as large as the largest record a connection has carried, for the
// connection's life, so smaller records make every idle session cheaper
// for the relay.
const clientRecordSize = 4096

// tlsStream is a client's TLS connection. Its Write sends records of
// clientRecordSize bytes (DynamicRecordSizingDisabled makes each Write of
// at most that many bytes exactly one record), and the records of one
// Write leave together, in one write to the socket (see gatherConn).
type tlsStream struct {
	*tls.Conn
	raw *gatherConn // under Conn
}

func newTLSStream(raw net.Conn, conf *tls.Config) tlsStream {
	g := &gatherConn{Conn: raw}
	return tlsStream{Conn: tls.Client(g, conf), raw: g}
}

// Write writes b as records of clientRecordSize bytes, gathered and sent
// in one write to the socket.
func (t tlsStream) Write(b []byte) (int, error) {
	t.raw.gather()
	n := 0
	for len(b) > 0 {
		m, err := t.Conn.Write(b[:min(len(b), clientRecordSize)])
		n += m
		if err != nil {
			t.raw.flush()
			return n, err
		}
		b = b[m:]
	}
	if err := t.raw.flush(); err != nil {
		return 0, err
	}
	return n, nil
}

// Close closes the connection. While gathered records are being written
// it closes the socket at once, as tls.Conn.Close does during a Write,
// rather than wait to send its close_notify alert behind them.
func (t tlsStream) Close() error {
	if t.raw.flushing.Load() {
		return t.raw.Conn.Close()
	}
	return t.Conn.Close()
}

// gatherConn is the socket under a client's TLS connection. Between
// gather and flush it keeps what TLS writes (the records of one block)
// and flush writes it in one system call: four records of a block cost
// one write, not four. Outside of them, writes go straight through
// (the handshake, alerts). The buffer, one block's records, is kept for
// the connection's life.
type gatherConn struct {
	net.Conn
	flushing atomic.Bool // a flush is writing

	mu        sync.Mutex
	gathering bool
	buf       []byte
}

func (g *gatherConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	if g.gathering {
		g.buf = append(g.buf, p...)
		g.mu.Unlock()
		return len(p), nil
	}
	g.mu.Unlock()
	return g.Conn.Write(p)
}

// gather starts keeping writes.
func (g *gatherConn) gather() {
	g.mu.Lock()
	g.gathering = true
	g.mu.Unlock()
}

// flush writes what was kept since gather, in one write, and stops
// keeping writes. Only one goroutine calls gather and flush.
func (g *gatherConn) flush() error {
	g.mu.Lock()
	g.gathering = false
	b := g.buf
	g.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	g.flushing.Store(true)
	_, err := g.Conn.Write(b)
	g.flushing.Store(false)
	g.mu.Lock()
	g.buf = b[:0]
	g.mu.Unlock()
	return err
}

// session is an established, handshaken connection.
type session struct {
	transport  Transport
	conn       stream
	quic       *quic.Conn // the QUIC connection under conn; nil over TCP
	binding    []byte     // TLS exporter value
	sessionKey queue.Key  // the relay's X25519 key for this session
	password   []byte     // from the address, for NEW
}

func dialQUIC(ctx context.Context, addr queue.Address, cfg Config) (session, error) {
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	v := &verifier{fp: addr.Fingerprint}
	qctx, qcancel := context.WithTimeout(hctx, cfg.QUICTimeout)
	qcfg := &quic.Config{
		HandshakeIdleTimeout:  cfg.QUICTimeout,
		KeepAlivePeriod:       cfg.TransportKeepAlive,
		MaxIdleTimeout:        cfg.TransportIdleTimeout,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
	var (
		conn *quic.Conn
		err  error
		qs   quicStream
	)
	if cfg.LocalAddr.IsValid() {
		conn, qs.tr, qs.udp, err = dialQUICFrom(qctx, cfg.LocalAddr, addr.HostPort(), v.tlsConfig(), qcfg)
	} else {
		conn, err = quic.DialAddr(qctx, addr.HostPort(), v.tlsConfig(), qcfg)
	}
	qcancel()
	if err != nil {
		return session{}, v.classify(ctx, TransportQUIC, err)
	}
	qs.conn = conn
	st, err := conn.OpenStreamSync(hctx)
	if err != nil {
		qs.Close()
		return session{}, dialFailed(ctx, TransportQUIC, err)
	}
	qs.s = st
	s := session{
		transport: TransportQUIC,
		conn:      qs,
		quic:      conn,
		password:  []byte(addr.Password),
	}
	cs := conn.ConnectionState().TLS
	s.binding, err = cs.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize)
	if err != nil {
		err = fmt.Errorf("%w: session binding: %w", ErrTLS, err)
	} else {
		err = s.handshake(ctx, hctx)
	}
	if err != nil {
		s.conn.Close()
		return session{}, err
	}
	return s, nil
}

// dialQUICFrom dials a QUIC connection from a UDP socket bound to local.
// The caller closes the transport and the socket after the connection.
func dialQUICFrom(ctx context.Context, local netip.Addr, target string, tc *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Transport, *net.UDPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, nil, nil, err
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return nil, nil, nil, err
	}
	tr := &quic.Transport{Conn: udp}
	conn, err := tr.Dial(ctx, raddr, tc, qc)
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, nil, nil, err
	}
	return conn, tr, udp, nil
}

// dialDirect dials addr's clearnet host over cfg.Transport, QUIC first
// by default.
func dialDirect(ctx context.Context, addr queue.Address, cfg Config) (s session, err error) {
	switch cfg.Transport {
	case TransportQUIC:
		return dialQUIC(ctx, addr, cfg)
	case TransportTCP:
		return dialTCP(ctx, addr, addr.HostPort(), cfg, cfg.DialTCP)
	}
	s, err = dialQUIC(ctx, addr, cfg)
	if errors.Is(err, ErrUnreachable) {
		quicErr := err
		s, err = dialTCP(ctx, addr, addr.HostPort(), cfg, cfg.DialTCP)
		if errors.Is(err, ErrUnreachable) {
			err = fmt.Errorf("%w (quic: %v)", err, quicErr)
		}
	}
	return s, err
}

// dialTCP dials target with dial (directly, or through the SOCKS proxy)
// and runs TLS and the hush handshake for addr's relay over it.
func dialTCP(ctx context.Context, addr queue.Address, target string, cfg Config, dial func(context.Context, string, string) (net.Conn, error)) (session, error) {
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	raw, err := dial(hctx, "tcp", target)
	if err != nil {
		return session{}, dialFailed(ctx, TransportTCP, err)
	}
	v := &verifier{fp: addr.Fingerprint}
	ts := newTLSStream(raw, v.tlsConfig())
	tc := ts.Conn
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return session{}, v.classify(ctx, TransportTCP, err)
	}
	s := session{transport: TransportTCP, conn: ts, password: []byte(addr.Password)}
	cs := tc.ConnectionState()
	s.binding, err = cs.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize)
	if err != nil {
		err = fmt.Errorf("%w: session binding: %w", ErrTLS, err)
	} else {
		err = s.handshake(ctx, hctx)
	}
	if err != nil {
		tc.Close()
		return session{}, err
	}
	return s, nil
}

// handshake does the hush handshake on s.conn within hctx: the client
// sends a ClientHello with its version (the highest it speaks) and reads
// the relay's ServerHello, whose range must contain that version. The
// client speaks first because a QUIC relay learns of the stream only when
// data arrives on it; the relay closes the connection if it does not
// speak the version.
func (s *session) handshake(ctx, hctx context.Context) error {
	dl, _ := hctx.Deadline()
	s.conn.SetDeadline(dl)
	stop := context.AfterFunc(hctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) })
	hello := queue.ClientHello{Version: queue.MaxVersion}
	_, err := s.conn.Write(hello.AppendBlock(make([]byte, 0, queue.BlockSize)))
	block := make([]byte, queue.BlockSize)
	if err == nil {
		_, err = io.ReadFull(s.conn, block)
	}
	if !stop() && err == nil {
		err = hctx.Err()
	}
	if err != nil {
		return dialFailed(ctx, s.transport, fmt.Errorf("hush handshake: %w", err))
	}
	sh, err := queue.ParseServerHello(block)
	if err != nil {
		return fmt.Errorf("%w: malformed ServerHello", ErrProtocol)
	}
	if _, ok := queue.Negotiate(sh.MinVersion, sh.MaxVersion); !ok {
		return fmt.Errorf("%w: the relay speaks versions %d to %d, this client %d to %d", ErrProtocol, sh.MinVersion, sh.MaxVersion, queue.MinVersion, queue.MaxVersion)
	}
	s.sessionKey = sh.SessionKey
	return s.conn.SetDeadline(time.Time{})
}

// dialFailed wraps an error met while connecting or handshaking: ctx's
// error if the caller's ctx ended, else ErrUnreachable. The expiry of the
// dial's own timeouts is described, not wrapped, so that it does not look
// like the caller's deadline.
func dialFailed(ctx context.Context, transport Transport, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("dial %s: %w", transport, context.Cause(ctx))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, transport, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnreachable, transport, err)
}

// verifier checks the relay's certificate chain against the pinned
// fingerprint during one TLS handshake. It records its verdict because the
// TLS stacks report it only as an alert (quic-go as a transport error).
type verifier struct {
	fp queue.Fingerprint

	mu  sync.Mutex
	err error // the verification failure, if any
}

func (v *verifier) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		NextProtos:             []string{queue.ALPN},
		SessionTicketsDisabled: true,
		// Every block travels in one full-size record from the first one
		// on, as the relay sends them, instead of records that grow with
		// the bytes sent.
		DynamicRecordSizingDisabled: true,
		// The chain is checked against the pinned identity by
		// VerifyConnection; there is no name to check.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verifyConnection,
	}
}

func (v *verifier) verifyConnection(cs tls.ConnectionState) error {
	err := verifyChain(cs.PeerCertificates, v.fp, time.Now())
	if err == nil && cs.NegotiatedProtocol != queue.ALPN {
		err = fmt.Errorf("%w: the relay did not agree to %s", ErrTLS, queue.ALPN)
	}
	if err != nil {
		v.mu.Lock()
		v.err = err
		v.mu.Unlock()
	}
	return err
}

// classify wraps a failed TLS connection attempt: the verifier's verdict
// if it rejected the relay, ctx's error if the caller gave up, ErrTLS if
// the TLS handshake itself failed, else ErrUnreachable.
func (v *verifier) classify(ctx context.Context, transport Transport, err error) error {
	v.mu.Lock()
	verr := v.err
	v.mu.Unlock()
	if verr != nil {
		return verr
	}
	if ctx.Err() != nil {
		return dialFailed(ctx, transport, err)
	}
	var qerr *quic.TransportError
	tlsFailed := errors.As(err, &qerr) && qerr.ErrorCode.IsCryptoError()
	if transport == TransportTCP {
		tlsFailed = isTLSFailure(err)
	}
	if tlsFailed {
		return fmt.Errorf("%w: %s: %w", ErrTLS, transport, err)
	}
	return dialFailed(ctx, transport, err)
}

// isTLSFailure reports whether a TLS-over-TCP handshake error is TLS's own
// (an alert from the relay, a record that is not TLS, or the client
// rejecting what the relay sent) rather than the connection failing.
func isTLSFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op == "remote error" // crypto/tls's form of a received alert
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// verifyChain checks a relay's certificate chain with the check relays
// apply too (queue.VerifyChain): a chain that is not the pinned identity's
// is ErrWrongFingerprint; an online certificate it does not certify, or
// that is not valid now, is ErrTLS.
func verifyChain(certs []*x509.Certificate, fp queue.Fingerprint, now time.Time) error {
	err := queue.VerifyChain(certs, fp, now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, queue.ErrChainIdentity):
		return fmt.Errorf("%w: %w", ErrWrongFingerprint, err)
	}
	return fmt.Errorf("%w: %w", ErrTLS, err)
}
