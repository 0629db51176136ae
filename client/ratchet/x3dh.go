package ratchet

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
)

const (
	// PublicKeysSize is the size of the inviter's encoded public keys
	// (InviterKeys.PublicKeys), the part of an invitation link that Join
	// takes.
	PublicKeysSize = 1 + keySize + keySize + mlkem.EncapsulationKeySize768

	// HelloSize is the size of every hello returned by Join and taken by
	// Accept.
	HelloSize = 1 + keySize + keySize + mlkem.CiphertextSize768
)

const (
	version         = 1
	keySize         = 32
	inviterKeysSize = 1 + keySize + keySize + mlkem.SeedSize
	x3dhInfo        = "hush/1 x3dh"
	skSize          = 3 * keySize
)

// InviterKeys are the inviter's secrets for one invitation: an identity
// X25519 key, an initial ratchet X25519 key, and an ML-KEM-768
// decapsulation key. They are used for one Accept: the caller deletes them
// once the contact is made, so that a link works only once.
//
// An InviterKeys is immutable and safe for concurrent use.
type InviterKeys struct {
	identity *ecdh.PrivateKey
	ratchet  *ecdh.PrivateKey
	kem      *mlkem.DecapsulationKey768
	// rand is the randomness of ratchets made by Accept: crypto/rand, or
	// a fixed stream in tests.
	rand io.Reader
}

// NewInviterKeys generates new InviterKeys.
func NewInviterKeys() (*InviterKeys, error) {
	return newInviterKeys(rand.Reader)
}

func newInviterKeys(rnd io.Reader) (*InviterKeys, error) {
	var b [inviterKeysSize]byte
	b[0] = version
	if _, err := io.ReadFull(rnd, b[1:]); err != nil {
		return nil, fmt.Errorf("ratchet: reading randomness: %w", err)
	}
	k, err := parseInviterKeys(b[:])
	if err != nil {
		return nil, err
	}
	k.rand = rnd
	return k, nil
}

// PublicKeys returns the encoding of the inviter's public keys, exactly
// PublicKeysSize bytes: version 1, identity key [32], ratchet key [32],
// ML-KEM-768 encapsulation key [1184].
func (k *InviterKeys) PublicKeys() []byte {
	b := make([]byte, 0, PublicKeysSize)
	b = append(b, version)
	b = append(b, k.identity.PublicKey().Bytes()...)
	b = append(b, k.ratchet.PublicKey().Bytes()...)
	return append(b, k.kem.EncapsulationKey().Bytes()...)
}

// MarshalBinary returns the secret encoding of k for the local store (129
// bytes; see the package documentation). It never fails.
func (k *InviterKeys) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, inviterKeysSize)
	b = append(b, version)
	b = append(b, k.identity.Bytes()...)
	b = append(b, k.ratchet.Bytes()...)
	return append(b, k.kem.Bytes()...), nil
}

// UnmarshalInviterKeys parses the encoding made by InviterKeys.MarshalBinary.
// It returns ErrSyntax for anything else.
func UnmarshalInviterKeys(b []byte) (*InviterKeys, error) {
	k, err := parseInviterKeys(b)
	if err != nil {
		return nil, err
	}
	k.rand = rand.Reader
	return k, nil
}

func parseInviterKeys(b []byte) (*InviterKeys, error) {
	if len(b) != inviterKeysSize || b[0] != version {
		return nil, ErrSyntax
	}
	b = b[1:]
	identity, err := ecdh.X25519().NewPrivateKey(b[:keySize])
	if err != nil {
		return nil, ErrSyntax
	}
	ratchet, err := ecdh.X25519().NewPrivateKey(b[keySize : 2*keySize])
	if err != nil {
		return nil, ErrSyntax
	}
	kem, err := mlkem.NewDecapsulationKey768(b[2*keySize:])
	if err != nil {
		return nil, ErrSyntax
	}
	return &InviterKeys{identity: identity, ratchet: ratchet, kem: kem}, nil
}

// encapsulateFunc encapsulates a shared secret to ek. Join uses
// ek.Encapsulate; the vector test substitutes the derandomized
// encapsulation of crypto/mlkem/mlkemtest.
type encapsulateFunc func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

func encapsulate(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error) {
	sharedKey, ciphertext = ek.Encapsulate()
	return sharedKey, ciphertext, nil
}

// Join is the joiner's half of the key agreement. It takes the inviter's
// public keys from an invitation link and returns the joiner's ratchet and
// the hello (HelloSize bytes) that the inviter needs for Accept. The
// joiner sends the hello together with its first message, encrypted with
// the returned ratchet. It returns ErrSyntax for public keys that are not
// a PublicKeysSize-byte version 1 encoding of valid keys.
func Join(inviterPublicKeys []byte) (r *Ratchet, hello []byte, err error) {
	return join(inviterPublicKeys, rand.Reader, encapsulate)
}

func join(pub []byte, rnd io.Reader, encap encapsulateFunc) (*Ratchet, []byte, error) {
	if len(pub) != PublicKeysSize || pub[0] != version {
		return nil, nil, ErrSyntax
	}
	ikInviter, err := parsePublic(pub[1 : 1+keySize])
	if err != nil {
		return nil, nil, err
	}
	rkInviter, err := parsePublic(pub[1+keySize : 1+2*keySize])
	if err != nil {
		return nil, nil, err
	}
	kemInviter, err := mlkem.NewEncapsulationKey768(pub[1+2*keySize:])
	if err != nil {
		return nil, nil, ErrSyntax
	}

	ik, err := readPrivate(rnd)
	if err != nil {
		return nil, nil, err
	}
	ek, err := readPrivate(rnd)
	if err != nil {
		return nil, nil, err
	}
	ss, ct, err := encap(kemInviter)
	if err != nil {
		return nil, nil, fmt.Errorf("ratchet: encapsulating: %w", err)
	}
	dh1, err1 := ik.ECDH(rkInviter)
	dh2, err2 := ek.ECDH(ikInviter)
	dh3, err3 := ek.ECDH(rkInviter)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, ErrSyntax // a low-order inviter key
	}
	sk, err := deriveSK(dh1, dh2, dh3, ss)
	if err != nil {
		return nil, nil, err
	}

	var ad [adSize]byte
	copy(ad[:keySize], ik.PublicKey().Bytes())
	copy(ad[keySize:], ikInviter.Bytes())
	r, err := newJoinerRatchet(rnd, &sk, rkInviter, &ad)
	if err != nil {
		return nil, nil, err
	}

	hello := make([]byte, 0, HelloSize)
	hello = append(hello, version)
	hello = append(hello, ik.PublicKey().Bytes()...)
	hello = append(hello, ek.PublicKey().Bytes()...)
	hello = append(hello, ct...)
	return r, hello, nil
}

// Accept is the inviter's half of the key agreement: it takes the hello
// that came with the joiner's first message and returns the inviter's
// ratchet, which decrypts that message next. It returns ErrSyntax for a
// hello that is not a HelloSize-byte version 1 encoding of valid keys. A
// hello altered on the way is either refused or yields a ratchet that
// cannot decrypt the joiner's messages (ErrDecrypt). Accept does not
// change k.
func (k *InviterKeys) Accept(hello []byte) (*Ratchet, error) {
	if len(hello) != HelloSize || hello[0] != version {
		return nil, ErrSyntax
	}
	ikJoiner, err := parsePublic(hello[1 : 1+keySize])
	if err != nil {
		return nil, err
	}
	ekJoiner, err := parsePublic(hello[1+keySize : 1+2*keySize])
	if err != nil {
		return nil, err
	}
	ss, err := k.kem.Decapsulate(hello[1+2*keySize:])
	if err != nil {
		return nil, ErrSyntax
	}
	dh1, err1 := k.ratchet.ECDH(ikJoiner)
	dh2, err2 := k.identity.ECDH(ekJoiner)
	dh3, err3 := k.ratchet.ECDH(ekJoiner)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, ErrSyntax // a low-order joiner key
	}
	sk, err := deriveSK(dh1, dh2, dh3, ss)
	if err != nil {
		return nil, err
	}
	var ad [adSize]byte
	copy(ad[:keySize], ikJoiner.Bytes())
	copy(ad[keySize:], k.identity.PublicKey().Bytes())
	rnd := k.rand
	if rnd == nil {
		rnd = rand.Reader
	}
	return newInviterRatchet(rnd, &sk, k.ratchet, &ad), nil
}

// deriveSK computes the X3DH output: root key, HKa, NHKb.
func deriveSK(dh1, dh2, dh3, ss []byte) ([skSize]byte, error) {
	var sk [skSize]byte
	ikm := make([]byte, 0, 4*keySize+len(ss))
	for range keySize {
		ikm = append(ikm, 0xff)
	}
	ikm = append(ikm, dh1...)
	ikm = append(ikm, dh2...)
	ikm = append(ikm, dh3...)
	ikm = append(ikm, ss...)
	out, err := hkdf.Key(sha256.New, ikm, make([]byte, sha256.Size), x3dhInfo, skSize)
	if err != nil {
		return sk, fmt.Errorf("ratchet: hkdf: %w", err)
	}
	copy(sk[:], out)
	return sk, nil
}

// parsePublic parses a canonical X25519 public key: below 2^255-19, so
// that every key has one encoding and a hello cannot be altered without
// changing the agreed keys.
func parsePublic(b []byte) (*ecdh.PublicKey, error) {
	if !canonicalX25519(b) {
		return nil, ErrSyntax
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, ErrSyntax
	}
	return pub, nil
}

// canonicalX25519 reports whether the 32-byte little-endian b is below
// p = 2^255-19.
func canonicalX25519(b []byte) bool {
	if len(b) != keySize || b[31]&0x80 != 0 {
		return false
	}
	if b[31] != 0x7f || b[0] < 0xed {
		return true
	}
	for _, c := range b[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}

// readPrivate reads an X25519 private key from rnd.
func readPrivate(rnd io.Reader) (*ecdh.PrivateKey, error) {
	var b [keySize]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, fmt.Errorf("ratchet: reading randomness: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}
