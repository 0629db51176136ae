package link

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpProxy forwards datagrams between one client and a backend, counting
// them, and can drop everything (as if the relay's host went away).
type udpProxy struct {
	ln *net.UDPConn

	up, down         atomic.Int64 // bytes: client to backend, backend to client
	upPkts, downPkts atomic.Int64
	blackhole        atomic.Bool // drop every datagram
	wg               sync.WaitGroup
}

func startUDPProxy(t *testing.T, backend string) *udpProxy {
	t.Helper()
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ba, err := net.ResolveUDPAddr("udp", backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{ln: ln}
	out, err := net.DialUDP("udp", nil, ba)
	if err != nil {
		t.Fatal(err)
	}
	var client atomic.Pointer[net.UDPAddr]
	p.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := ln.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			if p.blackhole.Load() {
				continue
			}
			p.up.Add(int64(n))
			p.upPkts.Add(1)
			out.Write(buf[:n])
		}
	})
	p.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := out.Read(buf)
			if err != nil {
				return
			}
			c := client.Load()
			if c == nil || p.blackhole.Load() {
				continue
			}
			p.down.Add(int64(n))
			p.downPkts.Add(1)
			ln.WriteToUDP(buf[:n], c)
		}
	})
	t.Cleanup(func() { ln.Close(); out.Close(); p.wg.Wait() })
	return p
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
	const idle = 6 * time.Second // longer than DefaultQUICIdleTimeout
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
	if err := c.Err(); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("ended with %v, want ErrUnreachable", err)
	}
}
