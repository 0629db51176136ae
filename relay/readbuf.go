package relay

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// readBufSize is the size of the buffer a busy TCP connection reads
// into: a whole block (16 KiB, sent as four TLS records with their
// headers and tags) and the start of the next, in one system call.
const readBufSize = 32 << 10

// tcpConn is a session's TCP connection under its TLS layer.
//
// It reads through a buffer of readBufSize from a pool, held only while
// it holds bytes not yet read: crypto/tls asks for one record at a time,
// and clients send a block as four 4 KiB records, so without it a block
// costs four to eight read system calls. It waits for data without a
// buffer (through the connection's syscall.RawConn), so an idle
// connection holds none.
//
// It also clears the connection's read deadline, the short one set until
// the first byte, once a read returns data.
//
// Only one goroutine reads it at a time (the TLS connection's).
type tcpConn struct {
	net.Conn
	raw   syscall.RawConn // nil: every read goes to Conn.Read
	pool  *sync.Pool      // of *[]byte of readBufSize
	armed bool            // the first byte's deadline is still set

	buf  *[]byte // nil unless it holds unread bytes, (*buf)[r:w]
	r, w int
}

// newTCPConn returns c for a session, with the first byte's deadline
// (set by the caller) armed.
func newTCPConn(c net.Conn, pool *sync.Pool) *tcpConn {
	t := &tcpConn{Conn: c, pool: pool, armed: true}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

func (c *tcpConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf == nil {
		if c.raw == nil || len(p) >= readBufSize {
			n, err := c.Conn.Read(p)
			c.got(n)
			return n, err
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.pool.Put(c.buf)
		c.buf = nil
	}
	return n, nil
}

// got notes that a read returned n bytes.
func (c *tcpConn) got(n int) {
	if n > 0 && c.armed {
		c.armed = false
		c.Conn.SetReadDeadline(time.Time{})
	}
}

// fill reads what the connection has, at least one byte, into a buffer
// from the pool; it returns io.EOF at the end of the stream. The buffer
// is taken only when the socket is readable.
func (c *tcpConn) fill() error {
	var (
		n    int
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		bp, _ := c.pool.Get().(*[]byte)
		if bp == nil {
			b := make([]byte, readBufSize)
			bp = &b
		}
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			c.pool.Put(bp)
			return false // wait until readable
		}
		if rerr != nil || n <= 0 {
			c.pool.Put(bp)
			return true
		}
		c.buf, c.r, c.w = bp, 0, n
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		return io.EOF
	}
	c.got(n)
	return nil
}
