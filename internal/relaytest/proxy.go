package relaytest

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Record is one TLS record that crossed a Proxy: what an observer of the
// network between a client and a relay sees of the hush protocol over
// TCP.
type Record struct {
	// Time is when its last byte arrived at the proxy.
	Time time.Time
	// Up is true for a record from the client to the relay.
	Up bool
	// Conn numbers the proxied connections from 1, in the order they
	// were accepted.
	Conn int
	// Type is the record's content type (23 for application data, which
	// every record after the ClientHello is in TLS 1.3).
	Type byte
	// Len is the length of its body, without the 5-byte header.
	Len int
}

// Proxy is a TCP proxy on 127.0.0.1 that forwards every connection to
// one address and records the TLS records that cross it, in both
// directions (NewProxy). It is closed when the test ends.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	records []Record
	conns   int
	open    map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewProxy starts a recording proxy to target (host:port).
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, open: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's host:port: dial it instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Records returns the records seen so far, in the order they arrived.
func (p *Proxy) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		r, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns++
		n := p.conns
		p.open[c], p.open[r] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(r, c, n, true)
		go p.pipe(c, r, n, false)
	}
}

// pipe copies from src to dst, recording the TLS records on the way, and
// closes both at the end.
func (p *Proxy) pipe(dst, src net.Conn, conn int, up bool) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.open, dst)
		delete(p.open, src)
		p.mu.Unlock()
	}()
	var hdr [5]byte
	buf := make([]byte, 1<<15)
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[3:5]))
		body := buf[:n]
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		p.mu.Lock()
		p.records = append(p.records, Record{Time: time.Now(), Up: up, Conn: conn, Type: hdr[0], Len: n})
		p.mu.Unlock()
		if _, err := dst.Write(hdr[:]); err != nil {
			return
		}
		if _, err := dst.Write(body); err != nil {
			return
		}
	}
}
