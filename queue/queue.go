// Package queue is the hush queue protocol: queue IDs, keys, relay
// addresses, the fixed-size blocks that carry transmissions, the handshake,
// every command, event and error code, and the small amount of cryptography
// that relay and client must agree on (command authorization and the
// relay-to-recipient re-encryption).
//
// The package does no I/O. Encoders are Append-style; parsers check every
// length before slicing and accept exactly one encoding of each value, so
// that a parsed value re-encodes to the same bytes. Parsed values alias the
// input buffer: copy what must outlive it.
//
// queue/PROTOCOL.md is the normative description of the bytes.
package queue

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
)

// Protocol versions this package speaks.
const (
	MinVersion = 1
	MaxVersion = 1
)

// ALPN is the TLS application protocol negotiated on both transports.
const ALPN = "hush/1"

// Sizes of fixed fields, in bytes.
const (
	// BlockSize is the size of every block on the wire, in both directions.
	BlockSize = 16384
	// IDSize is the size of a recipient ID, a sender ID and a message ID.
	IDSize = 24
	// CorrIDSize is the size of a correlation ID chosen by the client.
	CorrIDSize = 24
	// KeySize is the size of an X25519 public key.
	KeySize = 32
	// AuthSize is the size of a command authenticator (HMAC-SHA256).
	AuthSize = 32
	// MaxMessageSize is the largest SEND body a relay accepts; a larger one
	// is answered with ERR LARGE.
	MaxMessageSize = 16000
	// MaxPasswordSize is the largest relay password, in bytes.
	MaxPasswordSize = 128
)

// ID is a recipient, sender or message ID: 24 random bytes.
type ID [IDSize]byte

// NewID returns a fresh random ID. It panics if the system's random source
// fails, which Go documents as never happening.
func NewID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

// String returns the base64url (unpadded) encoding of id. It is meant for
// debugging and tests; hush never logs queue IDs at the default level.
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Key is an X25519 public key.
type Key [KeySize]byte

// ErrSyntax is returned by every parser in this package when its input is
// not exactly one valid encoding. It is deliberately uninformative: input
// from the network is untrusted.
var ErrSyntax = errors.New("queue: malformed input")
