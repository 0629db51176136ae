package relay_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.x: Linux routes all of 127/8 to the loopback interface).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wireTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tcpRefused dials addr from src and reports whether the relay closed
// the connection before completing TLS (the reset may already reach the
// dial).
func tcpRefused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{Timeout: wireTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	return tlsRefused(t, c)
}

// tlsRefused reports whether a TLS handshake on c fails, as it does on a
// connection the relay closed at once; it fails the test on a deadline.
func tlsRefused(t *testing.T, c net.Conn) bool {
	t.Helper()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13})
	ctx, cancel := context.WithTimeout(t.Context(), wireTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("TLS handshake neither completed nor was refused")
	}
	return err != nil
}

// dialQUICFrom opens a QUIC connection to addr from src, or returns the
// error.
func dialQUICFrom(t *testing.T, src, addr string) (*quic.Conn, error) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wireTimeout)
	defer cancel()
	return tr.Dial(ctx, ua, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13}, nil)
}

// metricSum returns the sum of the counters or gauges name whose label
// matches label (name=value, or "" for all).
func metricSum(t *testing.T, fams map[string]*dto.MetricFamily, name, label string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	k, v, _ := strings.Cut(label, "=")
	var sum float64
	for _, m := range f.GetMetric() {
		match := label == ""
		for _, lp := range m.GetLabel() {
			match = match || lp.GetName() == k && lp.GetValue() == v
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// waitMetric polls the relay's metric name{label} (summed over its other
// labels) until it is at least want, and fails the test after
// wireTimeout.
func waitMetric(t *testing.T, base, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(wireTimeout)
	for {
		fams, _ := scrape(t, base)
		got := metricSum(t, fams, name, label)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want at least %v", name, label, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSessionCapPerAddress: section 16. Beyond the per-address cap, a TCP
// connection is closed before TLS and a QUIC attempt is refused with
// CONNECTION_REFUSED; another address is served; a slot freed by a
// session that ends is given to the next connection. Each refusal is
// counted.
func TestSessionCapPerAddress(t *testing.T) {
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.MaxSessionsPerAddress = 2
		c.HandshakeTimeout = 5 * time.Minute // the held connections stay in their handshake
	})
	base := adminServer(t, r.Relay)

	// Two TCP sessions from 127.0.0.2 fill its cap.
	var held []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.2", r.addr)
		if tlsRefused(t, c) {
			t.Fatal("a connection within the cap was refused")
		}
		held = append(held, c)
	}
	waitMetric(t, base, "hush_relay_connections", "", 2)
	if !tcpRefused(t, "127.0.0.2", r.addr) {
		t.Fatal("a third TCP connection from the address completed TLS")
	}
	waitMetric(t, base, "hush_relay_connections_refused_total", "limit=address", 1)
	// QUIC counts against the same cap.
	_, err := dialQUICFrom(t, "127.0.0.2", r.addr)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("QUIC beyond the cap: %v, want CONNECTION_REFUSED", err)
	}
	// (A client may send its Initial again before the refusal reaches it:
	// each attempt is counted.)
	waitMetric(t, base, "hush_relay_connections_refused_total", "transport=quic", 1)
	// Another address has its own cap, over both transports.
	if tcpRefused(t, "127.0.0.3", r.addr) {
		t.Fatal("another address was refused")
	}
	qc, err := dialQUICFrom(t, "127.0.0.3", r.addr)
	if err != nil {
		t.Fatalf("QUIC from another address: %v", err)
	}
	qc.CloseWithError(0, "")
	// A freed slot is given to the next connection.
	held[0].Close()
	waitAdmitted(t, "127.0.0.2", r.addr)
}

// waitAdmitted dials addr from src until the relay completes TLS, and
// fails the test if it still refuses after wireTimeout.
func waitAdmitted(t *testing.T, src, addr string) {
	t.Helper()
	deadline := time.Now().Add(wireTimeout)
	for tcpRefused(t, src, addr) {
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was never freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSessionCapPerPrefix: section 16. The addresses of one network (an
// IPv4 /24: 127.0.0.x here) share the per-prefix cap: once they hold it,
// a connection from a further address of the network is refused before
// TLS over TCP, with CONNECTION_REFUSED over QUIC, and counted with
// limit=prefix, while an address of another /24 (127.0.1.x) and an
// uncapped address of the same /24 are served; a slot freed in the
// network goes to the next connection.
func TestSessionCapPerPrefix(t *testing.T) {
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.MaxSessionsPerAddress = 2
		c.MaxSessionsPerPrefix = 3
		c.UncappedAddresses = []netip.Addr{netip.MustParseAddr("127.0.0.9")}
		c.HandshakeTimeout = 5 * time.Minute // the held connections stay in their handshake
	})
	base := adminServer(t, r.Relay)

	// Two addresses of 127.0.0.0/24 fill its cap of 3, neither its own.
	var held []net.Conn
	for _, src := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"} {
		c := dialFrom(t, src, r.addr)
		held = append(held, c)
	}
	waitMetric(t, base, "hush_relay_connections", "", 3)
	if !tcpRefused(t, "127.0.0.4", r.addr) {
		t.Fatal("a fourth TCP connection from the /24 completed TLS")
	}
	waitMetric(t, base, "hush_relay_connections_refused_total", "limit=prefix", 1)
	_, err := dialQUICFrom(t, "127.0.0.5", r.addr)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("QUIC from the full /24: %v, want CONNECTION_REFUSED", err)
	}
	fams, _ := scrape(t, base)
	if n := metricSum(t, fams, "hush_relay_connections_refused_total", "limit=address"); n != 0 {
		t.Fatalf("%v refusals counted as limit=address, want all as prefix", n)
	}
	// Another /24 has its own cap, over both transports.
	if tcpRefused(t, "127.0.1.2", r.addr) {
		t.Fatal("an address of another /24 was refused")
	}
	qc, err := dialQUICFrom(t, "127.0.1.3", r.addr)
	if err != nil {
		t.Fatalf("QUIC from another /24: %v", err)
	}
	qc.CloseWithError(0, "")
	// An uncapped address of the full /24 is served, and takes nothing
	// from it.
	for range 2 {
		if tlsRefused(t, dialFrom(t, "127.0.0.9", r.addr)) {
			t.Fatal("an uncapped address was refused")
		}
	}
	// A slot freed in the /24 goes to the next connection, from any of
	// its addresses.
	held[2].Close()
	waitAdmitted(t, "127.0.0.4", r.addr)
}

// TestHandshakeCapPerPrefix: one network holds at most a quarter of the
// handshake slots, over all its addresses; another network still gets
// its share.
func TestHandshakeCapPerPrefix(t *testing.T) {
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.MaxHandshakes = 8 // two per /24, one per address
		c.HandshakeTimeout = 5 * time.Minute
		c.FirstByteTimeout = 5 * time.Minute // the silent connections stay in their handshake
	})
	base := adminServer(t, r.Relay)
	dialFrom(t, "127.0.2.5", r.addr)
	dialFrom(t, "127.0.2.6", r.addr)
	waitMetric(t, base, "hush_relay_handshakes", "", 2)
	if !tcpRefused(t, "127.0.2.7", r.addr) {
		t.Fatal("a third handshake from one /24 was admitted")
	}
	waitMetric(t, base, "hush_relay_connections_refused_total", "limit=prefix", 1)
	dialFrom(t, "127.0.3.5", r.addr)
	dialFrom(t, "127.0.3.6", r.addr)
	waitMetric(t, base, "hush_relay_handshakes", "", 4)
}

// TestHandshakeShareLeavesNetwork: section 16. One address holds at most
// a sixteenth of the handshake slots, a quarter of its network's share, so
// that an attacker holding as many handshakes as it can from one address
// (connections that complete TLS and then say nothing, as slowloris does
// before the first-byte deadline) keeps out no other address of its
// network: a new session from 127.0.0.3 succeeds at the first try, over
// TCP and QUIC, while 127.0.0.2 holds its share and its further attempts
// over both transports are refused.
func TestHandshakeShareLeavesNetwork(t *testing.T) {
	const maxHandshakes = 16 // one per address, four per /24
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.MaxHandshakes = maxHandshakes
		c.HandshakeTimeout = 5 * time.Minute // the attacker's connections stay in their handshake
	})
	base := adminServer(t, r.Relay)
	held := 0
	for held < maxHandshakes {
		c, ok := holdHandshake(t, "127.0.0.2", r.addr)
		if !ok {
			break
		}
		t.Cleanup(func() { c.Close() })
		held++
	}
	waitMetric(t, base, "hush_relay_handshakes", "", float64(held))
	_, err := dialQUICFrom(t, "127.0.0.2", r.addr)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("QUIC from the address holding its share: %v, want CONNECTION_REFUSED", err)
	}
	for _, transport := range []string{wireTCP, wireQUIC} {
		w := dialWireFrom(t, "127.0.0.3", r.addr, transport)
		tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
		w.send(tx)
		if c := w.response(corr).Command; c.Tag != queue.TagPONG {
			t.Fatalf("PING over %s from the attacker's network: %v", transport, c.Tag)
		}
	}
	if held != 1 {
		t.Fatalf("one address holds %d of %d handshake slots, want 1", held, maxHandshakes)
	}
	fams, _ := scrape(t, base)
	if n := metricSum(t, fams, "hush_relay_connections_refused_total", "limit=prefix"); n != 0 {
		t.Fatalf("%v connections refused for the network's share, want none", n)
	}
	if n := metricSum(t, fams, "hush_relay_connections_refused_total", "limit=address"); n < 2 {
		t.Fatalf("%v connections refused for the address's share, want at least 2", n)
	}
}

// holdHandshake opens a TCP connection from src and completes TLS but
// not the hush handshake, so that the connection holds a handshake slot
// until the handshake deadline; it reports false, with no connection, if
// the relay refused it.
func holdHandshake(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{Timeout: wireTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	if tlsRefused(t, c) {
		c.Close()
		return nil, false
	}
	return c, true
}

// TestSessionCapRelayWide: the relay-wide cap refuses every address once
// full, and a session within it works as usual.
func TestSessionCapRelayWide(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) { c.MaxSessions = 1 })
		w := dialWire(t, r.addr, transport)
		tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
		w.send(tx)
		if c := w.response(corr).Command; c.Tag != queue.TagPONG {
			t.Fatalf("PING: %v", c.Tag)
		}
		switch transport {
		case wireTCP:
			if !tcpRefused(t, "127.0.0.4", r.addr) {
				t.Fatal("a connection beyond the relay-wide cap completed TLS")
			}
		case wireQUIC:
			if _, err := dialQUICFrom(t, "127.0.0.4", r.addr); err == nil {
				t.Fatal("a QUIC connection beyond the relay-wide cap was accepted")
			}
		}
		base := adminServer(t, r.Relay)
		waitMetric(t, base, "hush_relay_connections_refused_total", "limit=sessions", 1)
	})
}

// TestHandshakeCapAndFirstByte: connections that send nothing hold
// handshake slots only until the first-byte deadline; while they hold
// them, new connections are refused (one address holds at most a quarter
// of the slots); afterwards sessions work again.
func TestHandshakeCapAndFirstByte(t *testing.T) {
	r := startWireRelayWith(t, func(c *relay.Config) {
		c.MaxHandshakes = 4 // one per address
		// Long enough for the steps below on a loaded machine under -race,
		// during which the silent connections must stay.
		c.FirstByteTimeout = 3 * time.Second
	})
	base := adminServer(t, r.Relay)
	silent := []net.Conn{dialFrom(t, "127.0.0.5", r.addr)}
	waitMetric(t, base, "hush_relay_handshakes", "", 1)
	// The address's share is taken.
	if !tcpRefused(t, "127.0.0.5", r.addr) {
		t.Fatal("a second handshake from one address was admitted")
	}
	waitMetric(t, base, "hush_relay_connections_refused_total", "limit=address", 1)
	// (Each of its own /24, so that only the per-address share and the
	// cap bind.)
	for _, src := range []string{"127.0.1.6", "127.0.2.7", "127.0.3.8"} {
		silent = append(silent, dialFrom(t, src, r.addr))
	}
	waitMetric(t, base, "hush_relay_handshakes", "", 4)
	if !tcpRefused(t, "127.0.4.9", r.addr) {
		t.Fatal("a handshake beyond the cap was admitted")
	}
	waitMetric(t, base, "hush_relay_connections_refused_total", "limit=handshakes", 1)
	// The silent connections are closed at the first-byte deadline.
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(wireTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			t.Fatalf("a silent connection was not closed: %v", err)
		}
	}
	waitMetric(t, base, "hush_relay_handshake_failures_total", "", 4)
	w := dialWire(t, r.addr, wireTCP)
	tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
	w.send(tx)
	if c := w.response(corr).Command; c.Tag != queue.TagPONG {
		t.Fatalf("PING after the silent connections: %v", c.Tag)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCommandBudgets: section 16. A session over its command budget, or
// its budget of refused commands, is slowed down, never answered with an
// error or closed: a block of PINGs well over the budget is answered
// PONG each, a block of commands with garbage authorizations is answered
// ERR AUTH each; both waits are counted. NEW over the relay-wide rate,
// from two sessions, is answered IDS each.
func TestCommandBudgets(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) {
			c.CommandRate, c.FailureRate, c.RelayNewRate = 20, 4, 3
			c.RelayFailureRate = -1 // the session's own failure budget alone
		})
		base := adminServer(t, r.Relay)
		w := dialWire(t, r.addr, transport)
		var txs, corrs [][]byte
		for range 40 {
			tx, corr := w.tx(nil, nil, queue.Command{Tag: queue.TagPING})
			txs, corrs = append(txs, tx), append(corrs, corr)
		}
		w.send(txs...)
		for i, c := range corrs {
			if got := w.response(c).Command; got.Tag != queue.TagPONG {
				t.Fatalf("PING %d over the budget: %v", i, got.Tag)
			}
		}
		waitMetric(t, base, "hush_relay_commands_delayed_total", "budget=commands", 1)
		txs, corrs = nil, nil
		for range 10 {
			id := make([]byte, queue.IDSize)
			tx, corr := txWithAuth(id, queue.Command{Tag: queue.TagSUB}, randomAuth())
			txs, corrs = append(txs, tx), append(corrs, corr)
		}
		w.send(txs...)
		for i, c := range corrs {
			wireErr(t, fmt.Sprintf("garbage SUB %d", i), w.response(c).Command, queue.AUTH)
		}
		waitMetric(t, base, "hush_relay_commands_delayed_total", "budget=failures", 1)
		// The relay-wide NEW rate, over two sessions.
		other := dialWire(t, r.addr, transport)
		newCorrs := map[*wireConn][][]byte{}
		for _, c := range []*wireConn{w, other} {
			txs = nil
			for range 4 {
				k, dh := newKey(t), newKey(t)
				tx, corr := c.tx(k, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)})
				txs, newCorrs[c] = append(txs, tx), append(newCorrs[c], corr)
			}
			c.send(txs...)
		}
		for c, corrs := range newCorrs {
			for i, corr := range corrs {
				if got := c.response(corr).Command; got.Tag != queue.TagIDS {
					t.Fatalf("NEW %d over the relay-wide rate: %v %v", i, got.Tag, got.Error)
				}
			}
		}
		waitMetric(t, base, "hush_relay_commands_delayed_total", "budget=relay_new", 1)
	})
}
