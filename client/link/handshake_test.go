package link

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestQUICTimeoutBoundsHandshake dials over QUIC through a proxy that
// drops every datagram for the first 6 s, longer than quic-go's default
// handshake idle timeout (5 s), as a relay busy with thousands of
// handshakes may leave one unanswered: with a QUICTimeout of 40 s the
// dial waits for the relay and succeeds once the datagrams pass, so the
// QUIC handshake is bounded by QUICTimeout, not by quic-go's default.
func TestQUICTimeoutBoundsHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 6 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := startRelay(t, nil)
	px := startUDPProxy(t, addr.HostPort())
	addr.Port = uint16(px.ln.LocalAddr().(*net.UDPAddr).Port)
	px.blackhole.Store(true)
	lift := time.AfterFunc(6*time.Second, func() { px.blackhole.Store(false) })
	defer lift.Stop()
	start := time.Now()
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC, QUICTimeout: 40 * time.Second, HandshakeTimeout: time.Minute})
	t.Logf("connected after %v", time.Since(start).Round(time.Millisecond))
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
