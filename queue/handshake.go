package queue

import "encoding/binary"

// Handshake block layout (BlockSize bytes; the first block in each
// direction). The client speaks first (a QUIC peer learns of a stream only
// when data arrives on it): it sends a ClientHello with the highest version
// it speaks; the relay answers with a ServerHello giving its range. Both
// use version min(ClientHello.Version, ServerHello.MaxVersion); the relay
// closes the connection if that is below its MinVersion, the client if it
// is below its own lowest version.
//
//	length  uint16 big-endian, 1..BlockSize-2
//	hello   length bytes: ServerHello or ClientHello
//	padding zero bytes up to BlockSize
//
// ServerHello (relay to client):
//
//	minVersion uint16   lowest protocol version the relay speaks
//	maxVersion uint16   highest protocol version the relay speaks
//	sessionKey [32]     the relay's X25519 key for this session only
//	ext                 later versions' fields; ignored by version 1
//
// ClientHello (client to relay):
//
//	version uint16      the highest version the client speaks
//	ext                 later versions' fields; ignored by version 1
const (
	handshakeLengthSize = 2
	serverHelloSize     = 2 + 2 + KeySize
	clientHelloSize     = 2
)

// ServerHello is the relay's handshake message.
type ServerHello struct {
	MinVersion, MaxVersion uint16
	SessionKey             Key
	Ext                    []byte // unknown trailing fields, kept verbatim
}

// ClientHello is the client's handshake message.
type ClientHello struct {
	Version uint16
	Ext     []byte // unknown trailing fields, kept verbatim
}

// AppendBlock appends h as a padded handshake block.
func (h *ServerHello) AppendBlock(b []byte) []byte {
	hello := binary.BigEndian.AppendUint16(nil, h.MinVersion)
	hello = binary.BigEndian.AppendUint16(hello, h.MaxVersion)
	hello = append(hello, h.SessionKey[:]...)
	hello = append(hello, h.Ext...)
	return appendHandshakeBlock(b, hello)
}

// AppendBlock appends h as a padded handshake block.
func (h *ClientHello) AppendBlock(b []byte) []byte {
	hello := binary.BigEndian.AppendUint16(nil, h.Version)
	hello = append(hello, h.Ext...)
	return appendHandshakeBlock(b, hello)
}

func appendHandshakeBlock(b, hello []byte) []byte {
	if len(hello) > BlockSize-handshakeLengthSize {
		panic("queue: hello too long")
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(hello)))
	b = append(b, hello...)
	return appendZeros(b, BlockSize-handshakeLengthSize-len(hello))
}

// ParseServerHello parses a relay's handshake block. It does not check the
// version range against this package's: see Negotiate.
func ParseServerHello(block []byte) (ServerHello, error) {
	hello, err := parseHandshakeBlock(block)
	if err != nil || len(hello) < serverHelloSize {
		return ServerHello{}, ErrSyntax
	}
	p := parser{b: hello}
	h := ServerHello{MinVersion: uint16(p.uint16()), MaxVersion: uint16(p.uint16())}
	p.read(h.SessionKey[:])
	if len(p.b) > 0 {
		h.Ext = p.b
	}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return ServerHello{}, ErrSyntax
	}
	return h, nil
}

// ParseClientHello parses a client's handshake block.
func ParseClientHello(block []byte) (ClientHello, error) {
	hello, err := parseHandshakeBlock(block)
	if err != nil || len(hello) < clientHelloSize {
		return ClientHello{}, ErrSyntax
	}
	h := ClientHello{Version: binary.BigEndian.Uint16(hello)}
	if len(hello) > clientHelloSize {
		h.Ext = hello[clientHelloSize:]
	}
	if h.Version == 0 {
		return ClientHello{}, ErrSyntax
	}
	return h, nil
}

func parseHandshakeBlock(block []byte) ([]byte, error) {
	if len(block) != BlockSize {
		return nil, ErrSyntax
	}
	n := int(binary.BigEndian.Uint16(block))
	if n == 0 || n > BlockSize-handshakeLengthSize {
		return nil, ErrSyntax
	}
	hello := block[handshakeLengthSize : handshakeLengthSize+n]
	if !allZero(block[handshakeLengthSize+n:]) {
		return nil, ErrSyntax
	}
	return hello[:n:n], nil
}

// Negotiate returns the highest version in both [lo, hi] and
// [MinVersion, MaxVersion], and false if the ranges do not overlap.
func Negotiate(lo, hi uint16) (uint16, bool) {
	v := min(hi, uint16(MaxVersion))
	if v < lo || v < MinVersion {
		return 0, false
	}
	return v, true
}
