package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, the
// accepted one wrapped in a tcpConn over pool.
func tcpPair(t *testing.T, pool *sync.Pool) (*tcpConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan net.Conn, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	peer := <-dialed
	if peer == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return newTCPConn(c, pool), peer
}

func randN(t *testing.T, n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// TestTCPConnReads reads 1 MiB, written in chunks of random sizes, with
// reads of random sizes (as crypto/tls makes them: a record header, then
// a few KiB), and checks that every byte arrives once and in order, that
// the end of the stream is io.EOF, and that the connection holds a
// buffer only while it holds unread bytes.
func TestTCPConnReads(t *testing.T) {
	var pool sync.Pool
	c, peer := tcpPair(t, &pool)
	if c.raw == nil {
		t.Fatal("no RawConn for a TCP connection: the buffer is not used")
	}
	want := make([]byte, 1<<20)
	rand.Read(want)
	go func() {
		defer peer.Close()
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+randN(t, 40000))
			if _, err := peer.Write(rest[:n]); err != nil {
				t.Error(err)
				return
			}
			rest = rest[n:]
		}
	}()
	var got []byte
	p := make([]byte, readBufSize+100)
	buffered := 0
	for {
		n, err := c.Read(p[:1+randN(t, 6000)])
		got = append(got, p[:n]...)
		if c.buf != nil {
			buffered++
			if c.r == c.w {
				t.Fatal("the connection holds a buffer with nothing left to read")
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("a read returned nothing and no error")
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written, in order", len(got), len(want))
	}
	if buffered == 0 {
		t.Error("no read went through the buffer")
	}
	if c.buf != nil {
		t.Error("the connection holds a buffer at the end of the stream")
	}
	// A read as large as the buffer goes straight to the connection.
	if n, err := c.Read(p); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read after the end: %d, %v", n, err)
	}
}

// TestTCPConnWaits checks that a read that waits for data (the path on
// which the connection takes no buffer until the socket is readable)
// gets the data that comes, and holds no buffer once it is read.
func TestTCPConnWaits(t *testing.T) {
	var pool sync.Pool
	c, peer := tcpPair(t, &pool)
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		p := make([]byte, 16)
		n, err := c.Read(p)
		done <- result{p[:n], err}
	}()
	time.Sleep(50 * time.Millisecond) // most likely waiting by now
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.b) != "hello" {
		t.Fatalf("read %q, %v", r.b, r.err)
	}
	if c.buf != nil {
		t.Error("the connection holds a buffer with nothing left to read")
	}
}

// TestTCPConnDeadline checks that the first byte's deadline applies to a
// buffered read (a timeout error) and is cleared once data has come.
func TestTCPConnDeadline(t *testing.T) {
	var pool sync.Pool
	c, peer := tcpPair(t, &pool)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	p := make([]byte, 16)
	_, err := c.Read(p)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	peer.Write([]byte("x"))
	if n, err := c.Read(p); n != 1 || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	if c.armed {
		t.Error("the first byte's deadline is still armed after data came")
	}
}
