package relaytest

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// SOCKS is a SOCKS5 proxy on 127.0.0.1 that stands in for tor's in
// tests: it takes the username and password method (RFC 1929), which tor
// uses to isolate streams, records each connection's username, and
// connects to the target directly (NewSOCKS). It is closed when the test
// ends.
type SOCKS struct {
	ln net.Listener

	mu    sync.Mutex
	users []string
	open  map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewSOCKS starts a SOCKS5 proxy.
func NewSOCKS(t testing.TB) *SOCKS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SOCKS{ln: ln, open: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// Addr returns the proxy's host:port.
func (s *SOCKS) Addr() string { return s.ln.Addr().String() }

// Users returns the usernames of the connections made so far, in order.
func (s *SOCKS) Users() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...)
}

func (s *SOCKS) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.track(c)
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *SOCKS) track(c net.Conn) {
	s.mu.Lock()
	s.open[c] = struct{}{}
	s.mu.Unlock()
}

// serve does the SOCKS5 handshake on c and then relays it to the target.
func (s *SOCKS) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	var b [262]byte
	// Greeting: version, methods; choose username and password (2).
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
		return
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return
	}
	if _, err := c.Write([]byte{5, 2}); err != nil {
		return
	}
	// RFC 1929: version 1, username, password.
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 1 {
		return
	}
	user := make([]byte, b[1])
	if _, err := io.ReadFull(c, user); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:b[0]]); err != nil {
		return
	}
	if _, err := c.Write([]byte{1, 0}); err != nil {
		return
	}
	// Request: version, CONNECT, reserved, address type, address, port.
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[1] != 1 {
		return
	}
	var host string
	switch b[3] {
	case 1:
		if _, err := io.ReadFull(c, b[:4]); err != nil {
			return
		}
		host = net.IP(b[:4]).String()
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return
		}
		host = string(b[:n])
	default:
		return
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	port := binary.BigEndian.Uint16(b[:2])
	r, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	s.track(r)
	defer r.Close()
	s.mu.Lock()
	s.users = append(s.users, string(user))
	s.mu.Unlock()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		io.Copy(r, c)
		r.Close()
	}()
	io.Copy(c, r)
}
