package queue

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"

	x25519c "github.com/cloudflare/circl/dh/x25519"
	"golang.org/x/crypto/chacha20poly1305"
)

// Key-derivation labels. They are part of the protocol.
const (
	// BindingLabel is the TLS exporter label of the session binding, the
	// BindingSize bytes that AuthKey mixes in so that an authorized command
	// is valid on one connection only.
	BindingLabel = "EXPORTER-hush-session-binding"
	BindingSize  = 32

	authInfo    = "hush/1 auth"
	messageInfo = "hush/1 message"
)

// Sealed message layout (the MSG body, exactly SealedSize bytes):
//
//	XChaCha20-Poly1305(key = MessageKey, nonce = msgID, no additional data) of
//	  timestamp uint64 big-endian, Unix seconds when the relay stored it, rounded down to its time unit
//	  bodyLen   uint16 big-endian, 0..MaxMessageSize
//	  body      bodyLen bytes: the SEND body
//	  padding   zero bytes up to MaxMessageSize
const (
	sealedHeaderSize = 8 + 2
	sealedPlainSize  = sealedHeaderSize + MaxMessageSize
	// SealedSize is the size of every MSG body.
	SealedSize = sealedPlainSize + chacha20poly1305.Overhead
)

// ErrOpen is returned by OpenMessage when a sealed message does not
// decrypt: a wrong key, or bytes changed on the way.
var ErrOpen = errors.New("queue: message authentication failed")

// GenerateKey returns a new X25519 private key.
func GenerateKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// PublicKey returns the public half of priv as a Key.
func PublicKey(priv *ecdh.PrivateKey) Key {
	var k Key
	copy(k[:], priv.PublicKey().Bytes())
	return k
}

// ParsePrivateKey returns the X25519 private key with the given 32 bytes.
func ParsePrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().NewPrivateKey(b)
}

// LowOrder reports whether k is a low-order X25519 point (or an encoding
// of one): a key whose agreement with any private key is all zero, so that
// it authorizes nothing and derives no key. PROTOCOL.md sections 8 and 9:
// such keys in commands are answered ERR SYNTAX. It compares k, in
// constant time, with the encodings of such points (lowOrderKeys), instead
// of computing an X25519 (two scalar multiplications, about a third of a
// relay's CPU while it creates queues).
func LowOrder(k Key) bool {
	k[31] &= 0x7f // X25519 ignores the top bit (RFC 7748 section 5)
	found := 0
	for i := range lowOrderKeys {
		found |= subtle.ConstantTimeCompare(k[:], lowOrderKeys[i][:])
	}
	return found == 1
}

// lowOrderKeys are the encodings, top bit clear, of every u-coordinate
// whose X25519 with a clamped scalar (a multiple of the cofactor 8) is
// zero: the points of order 1, 2, 4 and 8 of Curve25519 and of its twist,
// u = 0, 1, p-1 and the two of order 8, and the two non-canonical
// encodings below 2^255 of those, p (for 0) and p+1 (for 1). The same
// list as libsodium's; TestLowOrderPoints and FuzzLowOrder check it
// against X25519 itself.
var lowOrderKeys = [...]Key{
	{},
	{0x01},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

// sharedSecret returns the X25519 of priv and peer (RFC 7748), or
// ErrSyntax when it is all zero (a low-order peer).
func sharedSecret(priv *ecdh.PrivateKey, peer Key) ([]byte, error) {
	var scalar [32]byte
	copy(scalar[:], priv.Bytes())
	s, err := x25519(&scalar, peer)
	clear(scalar[:])
	if err != nil {
		return nil, err
	}
	return s[:], nil
}

// x25519 returns the X25519 of scalar and peer (RFC 7748: the scalar
// clamped, the top bit of peer ignored, a non-canonical peer reduced), or
// ErrSyntax when it is all zero (a low-order peer), the check crypto/ecdh
// makes. It uses circl's Montgomery ladder, which on amd64 with BMI2 and
// ADX takes about two thirds of the CPU time of crypto/ecdh's; a NEW costs
// the relay two of them (see docs/performance.md). The vectors in
// testdata/vectors.json and FuzzX25519, against crypto/ecdh, check that
// both agree.
func x25519(scalar *[32]byte, peer Key) ([32]byte, error) {
	var out, s, p x25519c.Key
	s, p = *scalar, x25519c.Key(peer)
	x25519c.Shared(&out, &s, &p) // its result ignored: low order is judged below, as crypto/ecdh does
	clear(s[:])
	var zero [32]byte
	if subtle.ConstantTimeCompare(out[:], zero[:]) == 1 {
		return [32]byte{}, ErrSyntax
	}
	return out, nil
}

// NewQueueKey is what a relay does for a NEW whose recipient DH key is
// peer: it makes a new X25519 key for the queue and returns its public
// half (for IDS) and the MessageKey it agrees with peer, erasing the
// private half, which nothing needs again. The result is the same as
// that of GenerateKey, PublicKey and MessageKey, at about a third of
// their CPU time (circl's fixed-base multiplication with a precomputed
// table, and x25519). It returns ErrSyntax for a low-order peer.
func NewQueueKey(peer Key) (pub Key, msgKey [32]byte, err error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return pub, msgKey, err
	}
	defer clear(priv[:])
	var s, p x25519c.Key
	s = priv
	x25519c.KeyGen(&p, &s)
	clear(s[:])
	secret, err := x25519(&priv, peer)
	if err != nil {
		return pub, msgKey, err
	}
	msgKey, err = deriveMessageKey(secret[:])
	return Key(p), msgKey, err
}

// AuthKey derives the key that authorizes one queue's commands on one
// session: HKDF-SHA256 of the X25519 secret between the queue's
// authorization key and the relay's session key, salted with the session
// binding (the TLS exporter value). The client calls it with the queue's
// private key and the relay's session key; the relay with its session
// private key and the queue's key. It returns ErrSyntax for a low-order
// peer key, and panics unless binding has BindingSize bytes (a programmer
// error that would silently lose the session binding).
func AuthKey(priv *ecdh.PrivateKey, peer Key, binding []byte) ([32]byte, error) {
	var k [32]byte
	if len(binding) != BindingSize {
		panic("queue: session binding of the wrong size")
	}
	s, err := sharedSecret(priv, peer)
	if err != nil {
		return k, err
	}
	d, err := hkdf.Key(sha256.New, s, binding, authInfo, len(k))
	if err != nil {
		return k, err
	}
	copy(k[:], d)
	return k, nil
}

// AppendAuth appends the authenticator of a transmission's signed part:
// HMAC-SHA256 under the AuthKey.
func AppendAuth(dst []byte, key *[32]byte, signed []byte) []byte {
	m := NewAuthMAC(key)
	m.Write(signed)
	return m.Sum(dst)
}

// NewAuthMAC returns the MAC that AppendAuth computes under key, for a
// caller that authenticates many transmissions under one key (see
// Transmission.AppendAuthorizedMAC): keying it costs allocations and two
// SHA-256 blocks, which Reset spares. It is not safe for concurrent use.
func NewAuthMAC(key *[32]byte) hash.Hash {
	return hmac.New(sha256.New, key[:])
}

// VerifyAuth reports, in constant time, whether auth authenticates signed
// under key.
func VerifyAuth(key *[32]byte, signed, auth []byte) bool {
	var buf [AuthSize]byte
	return hmac.Equal(AppendAuth(buf[:0], key, signed), auth)
}

// MessageKey derives the key that seals messages delivered from a queue:
// HKDF-SHA256 (no salt) of the X25519 secret between the relay's per-queue
// key and the recipient's DH key from NEW. It returns ErrSyntax for a
// low-order peer key.
func MessageKey(priv *ecdh.PrivateKey, peer Key) ([32]byte, error) {
	s, err := sharedSecret(priv, peer)
	if err != nil {
		return [32]byte{}, err
	}
	return deriveMessageKey(s)
}

// deriveMessageKey derives the MessageKey from the X25519 secret s.
func deriveMessageKey(s []byte) ([32]byte, error) {
	var k [32]byte
	d, err := hkdf.Key(sha256.New, s, nil, messageInfo, len(k))
	if err != nil {
		return k, err
	}
	copy(k[:], d)
	return k, nil
}

// SealMessage appends to dst the sealed form of body, stored at unix time
// ts, for delivery as message id. It panics if body exceeds MaxMessageSize.
func SealMessage(dst []byte, key *[32]byte, id ID, ts int64, body []byte) []byte {
	if len(body) > MaxMessageSize {
		panic("queue: message too large to seal")
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err) // the key size is fixed
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(body)))
	dst = append(dst, body...)
	dst = appendZeros(dst, sealedPlainSize-(len(dst)-start))
	return aead.Seal(dst[:start], id[:], dst[start:], nil)
}

// OpenMessage decrypts a sealed message, returning the relay's timestamp and
// the body (a new slice). It returns ErrOpen if the message does not
// authenticate and ErrSyntax if the authenticated contents are malformed.
func OpenMessage(key *[32]byte, id ID, sealed []byte) (ts int64, body []byte, err error) {
	return openMessage(nil, key, id, sealed)
}

// OpenMessageInPlace is OpenMessage decrypting in sealed's memory: it
// overwrites sealed, whether or not the message opens, and body aliases
// it. A receiver that copies the body out anyway spares a SealedSize
// allocation per message.
func OpenMessageInPlace(key *[32]byte, id ID, sealed []byte) (ts int64, body []byte, err error) {
	return openMessage(sealed[:0], key, id, sealed)
}

// openMessage opens sealed into dst, which is empty and may be sealed's
// memory, or nil.
func openMessage(dst []byte, key *[32]byte, id ID, sealed []byte) (ts int64, body []byte, err error) {
	if len(sealed) != SealedSize {
		return 0, nil, ErrSyntax
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err)
	}
	plain, err := aead.Open(dst, id[:], sealed, nil)
	if err != nil {
		return 0, nil, ErrOpen
	}
	ts = int64(binary.BigEndian.Uint64(plain))
	n := int(binary.BigEndian.Uint16(plain[8:]))
	if n > MaxMessageSize || !allZero(plain[sealedHeaderSize+n:]) {
		return 0, nil, ErrSyntax
	}
	return ts, plain[sealedHeaderSize : sealedHeaderSize+n], nil
}
