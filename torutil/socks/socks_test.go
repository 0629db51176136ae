package socks_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/privnet"
	"github.com/hushrelay/hush/torutil/socks"
)

// socksRequest is what the test SOCKS5 server saw of one connection.
type socksRequest struct {
	methods  []byte // offered authentication methods
	user     string
	password string
	atyp     byte
	host     string // the name (atyp 3) or the IP (atyp 1, 4)
	port     int
}

// socksServer is a minimal SOCKS5 server (RFC 1928, RFC 1929) that
// accepts username/password authentication, records each request, and
// connects every CONNECT to the fixed address target instead of the
// requested one, relaying bytes both ways.
type socksServer struct {
	ln     net.Listener
	target string
	reqs   chan socksRequest
	wg     sync.WaitGroup
	// fail maps host names to the reply code the server gives them
	// instead of connecting.
	fail map[string]byte
}

func newSOCKSServer(t *testing.T, target string) *socksServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &socksServer{ln: ln, target: target, reqs: make(chan socksRequest, 16), fail: make(map[string]byte)}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *socksServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var r socksRequest
	b := make([]byte, 2, 262)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 5 {
		return
	}
	r.methods = make([]byte, b[1])
	if _, err := io.ReadFull(c, r.methods); err != nil || !bytes.Contains(r.methods, []byte{2}) {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, 2}) // username/password
	// RFC 1929: VER ULEN UNAME PLEN PASSWD
	readString := func() (string, bool) {
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", false
		}
		s := make([]byte, n[0])
		_, err := io.ReadFull(c, s)
		return string(s), err == nil
	}
	var ver [1]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil || ver[0] != 1 {
		return
	}
	var ok bool
	if r.user, ok = readString(); !ok {
		return
	}
	if r.password, ok = readString(); !ok {
		return
	}
	c.Write([]byte{1, 0})
	// VER CMD RSV ATYP DST.ADDR DST.PORT
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[1] != 1 {
		return
	}
	r.atyp = hdr[3]
	switch r.atyp {
	case 1, 4:
		ip := make(net.IP, map[byte]int{1: 4, 4: 16}[r.atyp])
		if _, err := io.ReadFull(c, ip); err != nil {
			return
		}
		r.host = ip.String()
	case 3:
		if r.host, ok = readString(); !ok {
			return
		}
	default:
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return
	}
	r.port = int(binary.BigEndian.Uint16(port[:]))
	s.reqs <- r
	if code := s.fail[r.host]; code != 0 {
		c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	up, err := net.Dial("tcp", s.target)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	c.SetDeadline(time.Time{})
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
	io.Copy(c, up)
}

const testOnion = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion"

func TestDialerSOCKS(t *testing.T) {
	srv := newSOCKSServer(t, privnet.EchoServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dial := func(d socks.Dialer, addr string) socksRequest {
		t.Helper()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		privnet.RoundTrip(t, c, "hello through "+addr+"\n")
		return <-srv.reqs
	}

	a := socks.Dialer{Proxy: srv.ln.Addr().String(), Isolation: "contact-a"}
	r := dial(a, testOnion+":5223")
	if r.atyp != 3 || r.host != testOnion || r.port != 5223 {
		t.Errorf("onion target arrived as atyp %d host %q port %d, want a name (3) %q port 5223", r.atyp, r.host, r.port, testOnion)
	}
	if r.user != "contact-a" {
		t.Errorf("SOCKS username = %q, want the Isolation value", r.user)
	}
	if !bytes.Contains(r.methods, []byte{2}) {
		t.Errorf("offered methods %v lack username/password (2)", r.methods)
	}

	b := socks.Dialer{Proxy: srv.ln.Addr().String(), Isolation: "contact-b"}
	rb := dial(b, "relay.example.com:443")
	if rb.atyp != 3 || rb.host != "relay.example.com" {
		t.Errorf("name target arrived as atyp %d host %q, want it unresolved", rb.atyp, rb.host)
	}
	if rb.user == r.user {
		t.Errorf("Dialers with different Isolation both sent username %q", rb.user)
	}

	def := socks.Dialer{Proxy: srv.ln.Addr().String()}
	rd := dial(def, "127.0.0.1:80")
	if rd.atyp != 1 || rd.host != "127.0.0.1" {
		t.Errorf("IP target arrived as atyp %d host %q", rd.atyp, rd.host)
	}
	if rd.user != socks.DefaultIsolation {
		t.Errorf("empty Isolation sent username %q, want %q", rd.user, socks.DefaultIsolation)
	}
	if rd2 := dial(def, "127.0.0.1:80"); rd2.user != rd.user {
		t.Errorf("the default isolation changed between dials: %q, %q", rd.user, rd2.user)
	}
}

func TestDialerTorReplies(t *testing.T) {
	srv := newSOCKSServer(t, privnet.EchoServer(t))
	srv.fail[testOnion] = 0xf0
	srv.fail["refused.example"] = 5
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := socks.Dialer{Proxy: srv.ln.Addr().String()}
	for host, want := range map[string]string{
		testOnion:         "onion service descriptor not found",
		"refused.example": "connection refused",
	} {
		c, err := d.DialContext(ctx, "tcp", host+":80")
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", host)
		}
		<-srv.reqs
		t.Logf("%s: %v", host, err)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("dial %s: %v, want %q", host, err, want)
		}
		if errors.Is(err, socks.ErrProxyUnreachable) {
			t.Errorf("dial %s: a refusal reported as an unreachable proxy", host)
		}
	}
}

func TestDialerRejects(t *testing.T) {
	srv := newSOCKSServer(t, privnet.EchoServer(t))
	d := socks.Dialer{Proxy: srv.ln.Addr().String()}
	ctx := context.Background()
	for _, network := range []string{"udp", "tcp4", "unix"} {
		if c, err := d.DialContext(ctx, network, testOnion+":80"); err == nil {
			c.Close()
			t.Errorf("DialContext(%q) succeeded", network)
		}
	}
	long := socks.Dialer{Proxy: d.Proxy, Isolation: string(bytes.Repeat([]byte("x"), 256))}
	if c, err := long.DialContext(ctx, "tcp", testOnion+":80"); err == nil {
		c.Close()
		t.Error("a 256-byte Isolation was accepted")
	}
	if c, err := d.DialContext(ctx, "tcp", testOnion); err == nil {
		c.Close()
		t.Error("an address without a port was accepted")
	}
	select {
	case r := <-srv.reqs:
		t.Errorf("a rejected dial reached the proxy: %+v", r)
	default:
	}
}

func TestDialerProxyUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := socks.Dialer{Proxy: dead}.DialContext(ctx, "tcp", testOnion+":5223")
	if err == nil {
		c.Close()
		t.Fatal("dial through a closed port succeeded")
	}
	if !errors.Is(err, socks.ErrProxyUnreachable) {
		t.Fatalf("err = %v, want ErrProxyUnreachable", err)
	}
	t.Logf("dead proxy: %v", err)
	if !bytes.Contains([]byte(err.Error()), []byte(dead)) {
		t.Errorf("error %q does not name the proxy address %s", err, dead)
	}
	if ctx.Err() != nil {
		t.Errorf("the dial used up its 10 s context: %v", ctx.Err())
	}
}

func TestDialerCancel(t *testing.T) {
	// A proxy that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	d := socks.Dialer{Proxy: ln.Addr().String()}

	for _, mode := range []string{"cancel", "deadline"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			want := context.Canceled
			if mode == "deadline" {
				ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				want = context.DeadlineExceeded
			} else {
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			done := make(chan error, 1)
			go func() {
				c, err := d.DialContext(ctx, "tcp", testOnion+":"+strconv.Itoa(5223))
				if c != nil {
					c.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
				if errors.Is(err, socks.ErrProxyUnreachable) {
					t.Fatalf("a silent proxy reported as unreachable: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("DialContext ignored the context for 20 s")
			}
		})
	}
}
