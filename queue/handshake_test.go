package queue_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

func TestServerHelloLayout(t *testing.T) {
	h := queue.ServerHello{MinVersion: 1, MaxVersion: 1, SessionKey: key(0x30)}
	block := h.AppendBlock([]byte("p"))
	if block[0] != 'p' || len(block) != 1+queue.BlockSize {
		t.Fatalf("AppendBlock did not append one block")
	}
	block = block[1:]
	want := cat(u16(36), u16(1), u16(1), key(0x30))
	if !bytes.Equal(block[:len(want)], want) {
		t.Errorf("ServerHello block starts %x\nwant %x", block[:len(want)], want)
	}
	if !bytes.Equal(block[len(want):], make([]byte, queue.BlockSize-len(want))) {
		t.Error("padding is not zero")
	}
	p, err := queue.ParseServerHello(block)
	if err != nil {
		t.Fatal(err)
	}
	if p.MinVersion != 1 || p.MaxVersion != 1 || p.SessionKey != h.SessionKey || p.Ext != nil {
		t.Errorf("ParseServerHello = %+v", p)
	}
}

func TestServerHelloExt(t *testing.T) {
	for _, n := range []int{1, 2, 100, queue.BlockSize - 2 - 36} {
		h := queue.ServerHello{MinVersion: 1, MaxVersion: 7, SessionKey: key(9), Ext: seq(0x11, n)}
		block := h.AppendBlock(nil)
		if len(block) != queue.BlockSize {
			t.Fatalf("ext %d: block of %d bytes", n, len(block))
		}
		p, err := queue.ParseServerHello(block)
		if err != nil {
			t.Fatalf("ext %d: %v", n, err)
		}
		if p.MinVersion != 1 || p.MaxVersion != 7 || p.SessionKey != h.SessionKey || !bytes.Equal(p.Ext, h.Ext) {
			t.Errorf("ext %d: ParseServerHello = %+v", n, p)
		}
		if !bytes.Equal(p.AppendBlock(nil), block) {
			t.Errorf("ext %d: re-encoding differs", n)
		}
	}
	mustPanic(t, "ServerHello too long for a block", func() {
		h := queue.ServerHello{MinVersion: 1, MaxVersion: 1, Ext: make([]byte, queue.BlockSize-2-36+1)}
		h.AppendBlock(nil)
	})
}

func TestClientHelloLayout(t *testing.T) {
	h := queue.ClientHello{Version: 1}
	block := h.AppendBlock(nil)
	want := cat(u16(2), u16(1))
	if len(block) != queue.BlockSize || !bytes.Equal(block[:4], want) || !bytes.Equal(block[4:], make([]byte, queue.BlockSize-4)) {
		t.Errorf("ClientHello block starts %x, want %x then zeros", block[:8], want)
	}
	p, err := queue.ParseClientHello(block)
	if err != nil || p.Version != 1 || p.Ext != nil {
		t.Errorf("ParseClientHello = %+v, %v", p, err)
	}
	for _, n := range []int{1, 3, queue.BlockSize - 2 - 2} {
		h := queue.ClientHello{Version: 0x0102, Ext: seq(0x21, n)}
		block := h.AppendBlock(nil)
		p, err := queue.ParseClientHello(block)
		if err != nil || p.Version != 0x0102 || !bytes.Equal(p.Ext, h.Ext) {
			t.Errorf("ext %d: ParseClientHello = %v, %v", n, p.Version, err)
		}
		if !bytes.Equal(p.AppendBlock(nil), block) {
			t.Errorf("ext %d: re-encoding differs", n)
		}
	}
	mustPanic(t, "ClientHello too long for a block", func() {
		h := queue.ClientHello{Version: 1, Ext: make([]byte, queue.BlockSize-2-2+1)}
		h.AppendBlock(nil)
	})
}

func TestParseHelloRejects(t *testing.T) {
	server := func() []byte {
		h := queue.ServerHello{MinVersion: 1, MaxVersion: 2, SessionKey: key(1)}
		return h.AppendBlock(nil)
	}
	client := func() []byte {
		h := queue.ClientHello{Version: 1}
		return h.AppendBlock(nil)
	}
	withLen := func(b []byte, n int) []byte { binary.BigEndian.PutUint16(b, uint16(n)); return b }
	with := func(b []byte, at int, v byte) []byte { b[at] = v; return b }

	serverCases := map[string][]byte{
		"empty":            nil,
		"short block":      server()[:queue.BlockSize-1],
		"long block":       append(server(), 0),
		"zero length":      withLen(server(), 0),
		"length too big":   withLen(server(), queue.BlockSize-1),
		"length 0xffff":    withLen(server(), 0xffff),
		"hello too short":  withLen(server(), 35),
		"hello of 4":       withLen(server(), 4),
		"min version 0":    with(with(server(), 2, 0), 3, 0),
		"min above max":    with(server(), 3, 3),
		"padding not zero": with(server(), 2+36, 1),
		"last byte":        with(server(), queue.BlockSize-1, 1),
		"all zero":         make([]byte, queue.BlockSize),
		"a client hello":   client(),
	}
	for name, b := range serverCases {
		if h, err := queue.ParseServerHello(b); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("ParseServerHello %s = %+v, %v; want ErrSyntax", name, h, err)
		}
	}
	clientCases := map[string][]byte{
		"empty":            nil,
		"short block":      client()[:queue.BlockSize-1],
		"long block":       append(client(), 0),
		"zero length":      withLen(client(), 0),
		"length 1":         withLen(client(), 1),
		"length too big":   withLen(client(), queue.BlockSize-1),
		"version 0":        with(client(), 3, 0),
		"padding not zero": with(client(), 4, 1),
		"last byte":        with(client(), queue.BlockSize-1, 1),
		"all zero":         make([]byte, queue.BlockSize),
	}
	for name, b := range clientCases {
		if h, err := queue.ParseClientHello(b); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("ParseClientHello %s = %+v, %v; want ErrSyntax", name, h, err)
		}
	}
	// A ServerHello block is a well-formed ClientHello with an extension:
	// the two are told apart by direction, not by content.
	if h, err := queue.ParseClientHello(server()); err != nil || h.Version != 1 || len(h.Ext) != 34 {
		t.Errorf("ParseClientHello(ServerHello block) = %+v, %v", h, err)
	}
}

func TestNegotiate(t *testing.T) {
	cases := []struct {
		lo, hi uint16
		v      uint16
		ok     bool
	}{
		{1, 1, 1, true},
		{1, 2, 1, true},
		{1, 0xffff, 1, true},
		{0, 1, 1, true},
		{0, 0, 0, false},
		{2, 2, 0, false},
		{2, 9, 0, false},
		{0xffff, 0xffff, 0, false},
		{2, 1, 0, false}, // an empty range
		{1, 0, 0, false},
	}
	for _, c := range cases {
		v, ok := queue.Negotiate(c.lo, c.hi)
		if v != c.v || ok != c.ok {
			t.Errorf("Negotiate(%d, %d) = %d, %v; want %d, %v", c.lo, c.hi, v, ok, c.v, c.ok)
		}
	}
	// The negotiated version is always one this package speaks.
	for lo := range uint16(5) {
		for hi := range uint16(5) {
			if v, ok := queue.Negotiate(lo, hi); ok && (v < queue.MinVersion || v > queue.MaxVersion || v < lo || v > hi) {
				t.Errorf("Negotiate(%d, %d) = %d", lo, hi, v)
			}
		}
	}
}
