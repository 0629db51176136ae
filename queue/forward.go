package queue

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Private message routing (PROTOCOL.md section 20): a client asks a relay
// of its choice (the forwarding relay) to pass a SEND or SKEY to another
// relay (the destination), sealed from the client to the destination, so
// that the destination never sees the client's network address and the
// forwarding relay never sees the queue or the message.
//
// Sizes, in bytes:
//
//	forwarded request plaintext (ForwardPlainSize = 16096):
//	  timestamp uint64  Unix seconds, by the destination's clock as the client estimates it
//	  innerLen  uint16  1..MaxForwardedSize
//	  inner     [innerLen] one transmission (section 7): SEND or SKEY, with auth, corrID and entity
//	  padding   zeros up to ForwardPlainSize
//	sealed request (ForwardSealedSize = 16112): XChaCha20-Poly1305(reqKey,
//	  nonce = 24 zero bytes, ad = ephemeralKey) of the plaintext
//
//	forwarded response plaintext (forwardResponsePlainSize = 138):
//	  relayTime uint64  Unix seconds, the destination's clock
//	  respLen   uint16  1..MaxForwardedResponseSize
//	  resp      [respLen] one transmission: the destination's answer
//	  padding   zeros up to forwardResponsePlainSize
//	response (ForwardResponseSize = 178): nonce [24] random |
//	  XChaCha20-Poly1305(resKey, nonce, ad = ephemeralKey) of the plaintext
const (
	// MaxForwardedSize is the largest inner transmission: the largest SEND
	// transmission (3 length bytes, auth, corrID, entity, tag, bodyLen,
	// MaxMessageSize bytes of body).
	MaxForwardedSize = 3 + AuthSize + CorrIDSize + IDSize + 1 + 2 + MaxMessageSize
	// ForwardPlainSize is the size of every forwarded request's plaintext.
	ForwardPlainSize = 8 + 2 + MaxForwardedSize
	// ForwardSealedSize is the size of the sealed field of PFWD and RFWD.
	ForwardSealedSize = ForwardPlainSize + chacha20poly1305.Overhead
	// MaxForwardedResponseSize is the largest inner response transmission.
	MaxForwardedResponseSize = 128
	forwardResponsePlainSize = 8 + 2 + MaxForwardedResponseSize
	// ForwardResponseSize is the size of FRES's response field.
	ForwardResponseSize = chacha20poly1305.NonceSizeX + forwardResponsePlainSize + chacha20poly1305.Overhead

	// MaxAddressSize bounds PRXY's address.
	MaxAddressSize = 512
	// MaxCertificateSize bounds each DER certificate of PKEY.
	MaxCertificateSize = 2048
	// SignatureSize is the size of PKEY's Ed25519 signature.
	SignatureSize = ed25519.SignatureSize

	// ForwardWindow is how far a forwarded command's timestamp may be from
	// the destination's clock, either way: beyond it the command is
	// answered ERR TIME. A destination remembers the ephemeral key of every
	// command it accepted until its timestamp is ForwardWindow in the past,
	// and refuses a command whose key it remembers (a replay).
	ForwardWindow = 60 * time.Second
)

// Key-derivation and signature labels of private routing.
const (
	forwardInfo = "hush/1 forward"
	// attestLabel prefixes the message an attestation signs.
	attestLabel = "hush/1 session attestation"
)

// Errors of private routing.
var (
	// ErrAttestation is returned by Attestation.Verify when the signature
	// does not verify with the online certificate's key.
	ErrAttestation = errors.New("queue: the session key attestation does not verify")
)

// Attestation is PKEY's payload: a destination relay's session key and
// session binding of one session, signed by its online key, with the
// certificate chain that ties that key to the relay's identity. Through
// it a client checks, against the fingerprint in the destination's
// address, a session it does not hold itself (the forwarding relay's).
//
// Layout:
//
//	sessionKey  [32]  the destination's X25519 key of that session (its ServerHello's)
//	binding     [32]  that session's binding (section 2)
//	onlineLen   uint16 1..MaxCertificateSize
//	online      [onlineLen]   DER: the online certificate
//	identityLen uint16 1..MaxCertificateSize
//	identity    [identityLen] DER: the identity certificate
//	signature   [64]  Ed25519 by the online key of
//	                  "hush/1 session attestation" | sessionKey | binding
type Attestation struct {
	SessionKey Key
	Binding    [BindingSize]byte
	Chain      [ChainLength][]byte
	Signature  [SignatureSize]byte
}

// attestMessage returns what an attestation signs.
func attestMessage(sessionKey Key, binding []byte) []byte {
	m := make([]byte, 0, len(attestLabel)+KeySize+BindingSize)
	m = append(m, attestLabel...)
	m = append(m, sessionKey[:]...)
	return append(m, binding...)
}

// SignAttestation returns the attestation of a session with the given key
// and binding, by a relay whose online private key is online and whose
// chain (DER, online certificate first) is chain. It panics unless chain
// has ChainLength certificates and binding BindingSize bytes.
func SignAttestation(online ed25519.PrivateKey, chain [][]byte, sessionKey Key, binding []byte) Attestation {
	if len(chain) != ChainLength || len(binding) != BindingSize {
		panic("queue: attestation of a wrong chain or binding")
	}
	a := Attestation{SessionKey: sessionKey}
	copy(a.Binding[:], binding)
	copy(a.Chain[:], chain)
	copy(a.Signature[:], ed25519.Sign(online, attestMessage(sessionKey, binding)))
	return a
}

// Verify checks a at time now for the relay whose address pins fp: the
// chain is fp's (queue.VerifyChain, whose errors it returns wrapped), and
// the signature verifies with the online certificate's key (else
// ErrAttestation).
func (a Attestation) Verify(fp Fingerprint, now time.Time) error {
	certs, err := ParseChain(a.Chain[:])
	if err != nil {
		return err
	}
	if err := VerifyChain(certs, fp, now); err != nil {
		return err
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("%w: the online key is not Ed25519", ErrAttestation)
	}
	if !ed25519.Verify(pub, attestMessage(a.SessionKey, a.Binding[:]), a.Signature[:]) {
		return ErrAttestation
	}
	return nil
}

func (a *Attestation) append(b []byte) []byte {
	b = append(b, a.SessionKey[:]...)
	b = append(b, a.Binding[:]...)
	for _, c := range a.Chain {
		if len(c) == 0 || len(c) > MaxCertificateSize {
			panic("queue: attestation certificate of a wrong size")
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
	}
	return append(b, a.Signature[:]...)
}

func (p *parser) attestation(a *Attestation) {
	p.read(a.SessionKey[:])
	p.read(a.Binding[:])
	for i := range a.Chain {
		n := p.uint16()
		if n == 0 || n > MaxCertificateSize {
			p.bad = true
			return
		}
		a.Chain[i] = p.next(n)
	}
	p.read(a.Signature[:])
}

// ForwardSecret is what one forwarded command's two ends keep to seal and
// open its response: the ephemeral key that names it and the response key.
type ForwardSecret struct {
	Ephemeral Key
	resKey    [32]byte
}

// forwardKeys derives the request and response keys of the command whose
// ephemeral key agreement with the destination's session key is secret:
//
//	reqKey | resKey = HKDF-SHA256(IKM = secret, salt = binding,
//	                              info = "hush/1 forward", L = 64)
func forwardKeys(secret, binding []byte) (req, res [32]byte) {
	if len(binding) != BindingSize {
		panic("queue: session binding of the wrong size")
	}
	k, err := hkdf.Key(sha256.New, secret, binding, forwardInfo, 64)
	if err != nil {
		panic(err) // unreachable: 64 bytes of SHA-256 HKDF
	}
	copy(req[:], k[:32])
	copy(res[:], k[32:])
	return req, res
}

func newAEAD(key *[32]byte) interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
} {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err) // the key size is fixed
	}
	return aead
}

// SealForward seals the inner transmission of a forwarded command for the
// destination session whose key is sessionKey and binding binding, under
// the client's fresh ephemeral key eph (one per command: the destination
// refuses a key it has seen), with the timestamp ts (Unix seconds, the
// destination's clock as the client estimates it). It appends the
// ForwardSealedSize sealed bytes to dst and returns the secret that opens
// the response. It returns ErrSyntax for a low-order session key, and
// panics if inner is empty or over MaxForwardedSize bytes.
func SealForward(dst []byte, eph *ecdh.PrivateKey, sessionKey Key, binding []byte, ts int64, inner []byte) ([]byte, ForwardSecret, error) {
	if len(inner) == 0 || len(inner) > MaxForwardedSize {
		panic("queue: forwarded transmission of a wrong size")
	}
	s, err := sharedSecret(eph, sessionKey)
	if err != nil {
		return dst, ForwardSecret{}, err
	}
	req, res := forwardKeys(s, binding)
	sec := ForwardSecret{Ephemeral: PublicKey(eph), resKey: res}
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(inner)))
	dst = append(dst, inner...)
	dst = appendZeros(dst, ForwardPlainSize-(len(dst)-start))
	var nonce [chacha20poly1305.NonceSizeX]byte
	return newAEAD(&req).Seal(dst[:start], nonce[:], dst[start:], sec.Ephemeral[:]), sec, nil
}

// OpenForward opens a forwarded command at the destination, which holds
// the session's private key priv and binding: it returns the timestamp,
// the inner transmission (a new slice) and the secret that seals the
// response. It returns ErrSyntax for a low-order ephemeral key or a
// malformed plaintext and ErrOpen if sealed does not authenticate.
func OpenForward(priv *ecdh.PrivateKey, binding []byte, eph Key, sealed []byte) (ts int64, inner []byte, sec ForwardSecret, err error) {
	if len(sealed) != ForwardSealedSize {
		return 0, nil, sec, ErrSyntax
	}
	s, err := sharedSecret(priv, eph)
	if err != nil {
		return 0, nil, sec, err
	}
	req, res := forwardKeys(s, binding)
	var nonce [chacha20poly1305.NonceSizeX]byte
	plain, err := newAEAD(&req).Open(nil, nonce[:], sealed, eph[:])
	if err != nil {
		return 0, nil, sec, ErrOpen
	}
	ts = int64(binary.BigEndian.Uint64(plain))
	n := int(binary.BigEndian.Uint16(plain[8:]))
	if n == 0 || n > MaxForwardedSize || !allZero(plain[10+n:]) {
		return 0, nil, sec, ErrSyntax
	}
	return ts, plain[10 : 10+n], ForwardSecret{Ephemeral: eph, resKey: res}, nil
}

// SealForwardResponse appends to dst the response of a forwarded command
// (ForwardResponseSize bytes): resp, the destination's answer
// transmission, with the destination's clock relayTime, under a random
// nonce (a destination may answer a replayed command too: no nonce is
// used twice). It panics if resp is empty or over MaxForwardedResponseSize.
func SealForwardResponse(dst []byte, sec *ForwardSecret, nonce [chacha20poly1305.NonceSizeX]byte, relayTime int64, resp []byte) []byte {
	if len(resp) == 0 || len(resp) > MaxForwardedResponseSize {
		panic("queue: forwarded response of a wrong size")
	}
	dst = append(dst, nonce[:]...)
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, uint64(relayTime))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(resp)))
	dst = append(dst, resp...)
	dst = appendZeros(dst, forwardResponsePlainSize-(len(dst)-start))
	return newAEAD(&sec.resKey).Seal(dst[:start], nonce[:], dst[start:], sec.Ephemeral[:])
}

// OpenForwardResponse opens a forwarded command's response with the
// client's secret: the destination's clock and its answer transmission (a
// new slice). It returns ErrOpen if the response does not authenticate
// (the forwarding relay changed it, or it is not the destination's), and
// ErrSyntax if its plaintext is malformed.
func OpenForwardResponse(sec *ForwardSecret, res []byte) (relayTime int64, resp []byte, err error) {
	if len(res) != ForwardResponseSize {
		return 0, nil, ErrSyntax
	}
	nonce := res[:chacha20poly1305.NonceSizeX]
	plain, err := newAEAD(&sec.resKey).Open(nil, nonce, res[chacha20poly1305.NonceSizeX:], sec.Ephemeral[:])
	if err != nil {
		return 0, nil, ErrOpen
	}
	relayTime = int64(binary.BigEndian.Uint64(plain))
	n := int(binary.BigEndian.Uint16(plain[8:]))
	if n == 0 || n > MaxForwardedResponseSize || !allZero(plain[10+n:]) {
		return 0, nil, ErrSyntax
	}
	return relayTime, plain[10 : 10+n], nil
}
