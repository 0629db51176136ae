package link

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/relay"
)

// udpProxy forwards datagrams between one client and a backend, counting
// them. It can drop everything (as if the relay's host went away), or
// move to another backend, dropping what the old one sends (as if the
// relay was killed and restarted).
type udpProxy struct {
	t  *testing.T
	ln *net.UDPConn

	up, down         atomic.Int64 // bytes: client to backend, backend to client
	upPkts, downPkts atomic.Int64
	blackhole        atomic.Bool                 // drop every datagram
	client           atomic.Pointer[net.UDPAddr] // where the client sends from
	out              atomic.Pointer[net.UDPConn] // to the backend
	wg               sync.WaitGroup
}

func startUDPProxy(t *testing.T, backend string) *udpProxy {
	t.Helper()
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{t: t, ln: ln}
	p.setBackend(backend)
	p.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := ln.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.client.Store(from)
			if p.blackhole.Load() {
				continue
			}
			p.up.Add(int64(n))
			p.upPkts.Add(1)
			p.out.Load().Write(buf[:n])
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.out.Load().Close()
		p.wg.Wait()
	})
	return p
}

// setBackend forwards to backend from now on, from a new socket; what the
// previous backend sends is dropped.
func (p *udpProxy) setBackend(backend string) {
	p.t.Helper()
	ba, err := net.ResolveUDPAddr("udp", backend)
	if err != nil {
		p.t.Fatal(err)
	}
	out, err := net.DialUDP("udp", nil, ba)
	if err != nil {
		p.t.Fatal(err)
	}
	if old := p.out.Swap(out); old != nil {
		old.Close()
	}
	p.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := out.Read(buf)
			if err != nil {
				return
			}
			c := p.client.Load()
			if c == nil || p.blackhole.Load() {
				continue
			}
			p.down.Add(int64(n))
			p.downPkts.Add(1)
			p.ln.WriteToUDP(buf[:n], c)
		}
	})
}

// TestQUICIdleRestartReset has the relay of an idle QUIC connection
// vanish and another instance with the same stateless reset key take its
// place, as a relay that was killed and restarted: the connection ends
// with a stateless reset, which only packets longer than QUIC keep-alives
// draw (silenceLoop sends them), not at the QUIC idle timeout.
func TestQUICIdleRestartReset(t *testing.T) {
	ctx := testContext(t)
	var key [32]byte
	rand.Read(key[:])
	withKey := func(c *relay.Config) { c.StatelessResetKey = key }
	addr := startRelay(t, withKey)
	px := startUDPProxy(t, addr.HostPort())
	addr.Port = uint16(px.ln.LocalAddr().(*net.UDPAddr).Port)
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC, TransportIdleTimeout: time.Hour})
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Path MTU discovery's probes, large enough to draw a reset, are over
	// by then: only keep-alive packets and their acknowledgements go.
	time.Sleep(3 * time.Second)
	px.setBackend(startRelay(t, withKey).HostPort())
	start := time.Now()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection outlived its relay")
	}
	t.Logf("the relay restarted: the connection ended after %v", time.Since(start).Round(time.Millisecond))
	var reset *quic.StatelessResetError
	if err := c.Err(); !errors.Is(err, ErrUnreachable) || !errors.As(err, &reset) {
		t.Fatalf("ended with %v, want ErrUnreachable from a stateless reset", err)
	}
}

// TestQUICRelayKilled kills a real relay process with SIGKILL under an
// idle QUIC connection and leaves it down: the connection ends with
// ErrUnreachable and ErrSilent because its PING drew no packet at all,
// not at the QUIC idle timeout. The idle timeout is raised to 16 s so
// that the silence check (after 4 s without a packet, a quarter of it)
// ends the connection long before it, however loaded the machine. It logs
// how long that took. A TCP connection notices at once (the relay's host
// closes it): checked too.
func TestQUICRelayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a hush-relay process")
	}
	r := relaytest.Start(t, t.TempDir()) // builds hush-relay first
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const idle = 16 * time.Second
	qc := dialPeer(t, ctx, r.Addr, Config{Transport: TransportQUIC, TransportIdleTimeout: idle})
	tc := dialPeer(t, ctx, r.Addr, Config{Transport: TransportTCP, TransportIdleTimeout: idle})
	for _, c := range []*Conn{qc, tc} {
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // idle: only keep-alives go
	r.Kill()
	start := time.Now()
	type end struct {
		tr Transport
		d  time.Duration // -1 if it did not end
	}
	ended := make(chan end, 2)
	for _, c := range []*Conn{qc, tc} {
		go func() {
			select {
			case <-c.Done():
				ended <- end{c.Transport(), time.Since(start)}
			case <-ctx.Done():
				ended <- end{c.Transport(), -1}
			}
		}()
	}
	for range 2 {
		e := <-ended
		if e.d < 0 {
			t.Fatalf("%v: the connection outlived its relay", e.tr)
		}
		t.Logf("%v: the relay was killed: the connection ended after %v", e.tr, e.d.Round(time.Millisecond))
	}
	err := qc.Err()
	if _, idled := errors.AsType[*quic.IdleTimeoutError](err); !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrSilent) || idled {
		t.Fatalf("QUIC ended with %v, want ErrUnreachable and ErrSilent before the idle timeout", err)
	}
	if err := tc.Err(); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrSilent) {
		t.Fatalf("TCP ended with %v, want ErrUnreachable from the closed connection", err)
	}
}

// TestQUICKeepAlive idles a QUIC connection, with the default keep-alive
// settings, through a proxy that counts its packets: keep-alive packets
// keep it open (it logs what they cost an hour). Then the proxy drops
// everything, as if the relay's host went away: the connection ends with
// ErrUnreachable (it logs how long that took).
func TestQUICKeepAlive(t *testing.T) {
	ctx := testContext(t)
	addr := startRelay(t, nil)
	px := startUDPProxy(t, addr.HostPort())
	addr.Port = uint16(px.ln.LocalAddr().(*net.UDPAddr).Port)
	c := dialPeer(t, ctx, addr, Config{Transport: TransportQUIC})
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Let path MTU discovery, whose probes are large, settle.
	time.Sleep(3 * time.Second)
	up0, down0, pu0, pd0 := px.up.Load(), px.down.Load(), px.upPkts.Load(), px.downPkts.Load()
	const idle = 6 * time.Second // longer than DefaultTransportIdleTimeout
	time.Sleep(idle)
	pkts := px.upPkts.Load() - pu0 + px.downPkts.Load() - pd0
	bytes := px.up.Load() - up0 + px.down.Load() - down0 + 28*pkts // with IPv4 and UDP headers
	t.Logf("idle for %v: %d packets, %d bytes with IPv4 and UDP headers: %d KB an hour", idle, pkts, bytes, bytes*int64(time.Hour/idle)/1000)
	if px.upPkts.Load() == pu0 {
		t.Fatal("no keep-alive packet while idle")
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("after idling: %v", err)
	}

	px.blackhole.Store(true)
	start := time.Now()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection outlived its relay")
	}
	t.Logf("the relay went silent: the connection ended after %v", time.Since(start).Round(time.Millisecond))
	if err := c.Err(); !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrSilent) {
		t.Fatalf("ended with %v, want ErrUnreachable and ErrSilent", err)
	}
}

// TestKeepAliveIntervalIsRandom draws keep-alive intervals: each lies in
// [d/2, 3d/2], they are not all alike (nearly all distinct), and they
// reach both ends of the range, so that PINGs have no fixed period. No
// timing is measured: the function that the keep-alive loop waits by is
// tested.
func TestKeepAliveIntervalIsRandom(t *testing.T) {
	const d = 60 * time.Second
	const n = 1000
	seen := make(map[time.Duration]bool)
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range n {
		v := keepAliveInterval(d)
		if v < d/2 || v > 3*d/2 {
			t.Fatalf("interval %v outside [%v, %v]", v, d/2, 3*d/2)
		}
		seen[v] = true
		lo, hi = min(lo, v), max(hi, v)
	}
	if len(seen) < n-10 {
		t.Errorf("%d distinct intervals of %d", len(seen), n)
	}
	// With 1,000 uniform draws, each quarter of the range is hit with
	// probability 1 - 0.75^1000.
	if lo > 3*d/4 || hi < 5*d/4 {
		t.Errorf("intervals span [%v, %v] only, want beyond [%v, %v]", lo, hi, 3*d/4, 5*d/4)
	}
	if keepAliveInterval(time.Millisecond) == 0 {
		t.Error("an interval of 0")
	}
}
