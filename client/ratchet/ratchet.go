package ratchet

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// MessageSize is the size of every message: Encrypt returns exactly
	// MessageSize bytes, and Decrypt refuses any other size.
	MessageSize = 14500

	// MaxPlaintext is the size of the largest plaintext Encrypt accepts:
	// MessageSize minus the encrypted header (24-byte nonce, 40-byte
	// header, 16-byte tag), the 2-byte length and the body's 16-byte tag.
	MaxPlaintext = MessageSize - headerSize - lengthSize - chacha20poly1305.Overhead

	// MaxSkip bounds the message keys kept for messages not yet received:
	// a message may skip at most MaxSkip keys of one chain, and at most
	// MaxSkip keys are stored in total. Decrypt fails with
	// ErrTooManySkipped, leaving the state unchanged, for a message that
	// would need more. Stored keys are deleted when used, never evicted.
	MaxSkip = 1000

	adSize          = 2 * keySize
	headerNonceSize = chacha20poly1305.NonceSizeX
	headerPlainSize = keySize + 4 + 4
	headerSize      = headerNonceSize + headerPlainSize + chacha20poly1305.Overhead
	lengthSize      = 2
	bodyPlainSize   = lengthSize + MaxPlaintext

	rootInfo    = "hush/1 ratchet"
	messageInfo = "hush/1 message"
)

var (
	// ErrDecrypt is returned by Decrypt when a message does not
	// authenticate under any header key the ratchet knows, or its body
	// does not authenticate: it was altered, or it is not for this
	// ratchet (or from a chain so old that its keys are gone).
	ErrDecrypt = errors.New("ratchet: message authentication failed")

	// ErrDuplicate is returned by Decrypt when a message's header
	// decrypts but its message key was already used: the message was
	// received before. Callers report it as a duplicate, not as an
	// attack.
	ErrDuplicate = errors.New("ratchet: message already received")

	// ErrTooManySkipped is returned by Decrypt when a message would need
	// more stored message keys than MaxSkip allows.
	ErrTooManySkipped = errors.New("ratchet: too many skipped messages")

	// ErrSyntax is returned when an encoding is malformed: public keys
	// (Join), a hello (Accept), marshaled InviterKeys or Ratchet state, or
	// an authenticated message body with a bad length or padding. It is
	// also returned for low-order X25519 public keys.
	ErrSyntax = errors.New("ratchet: malformed input")

	// ErrNotReady is returned by Encrypt when the ratchet cannot send:
	// the inviter's ratchet before it has decrypted a message, or a
	// sending chain of 2^32-1 messages without an answer.
	ErrNotReady = errors.New("ratchet: cannot send yet")

	// ErrTooLarge is returned by Encrypt for a plaintext longer than
	// MaxPlaintext.
	ErrTooLarge = errors.New("ratchet: plaintext too large")
)

// State flags, also the flags byte of the marshaled state.
const (
	flagSend    = 0x01 // dhr, cks, hks are set
	flagRecv    = 0x02 // ckr, hkr are set
	flagPrevHKr = 0x04 // prevHKr is set
	flagsAll    = flagSend | flagRecv | flagPrevHKr
)

// state is the fixed-size part of a ratchet. It is copied by value, so
// Decrypt and Encrypt work on a copy and commit it at the end.
type state struct {
	flags   byte
	ad      [adSize]byte
	dhs     *ecdh.PrivateKey // our ratchet key pair, never modified
	dhsPub  [keySize]byte    // its public key
	rk      [keySize]byte
	nhks    [keySize]byte
	nhkr    [keySize]byte
	ns      uint32
	pn      uint32
	nr      uint32
	dhr     [keySize]byte // flagSend
	cks     [keySize]byte // flagSend
	hks     [keySize]byte // flagSend
	ckr     [keySize]byte // flagRecv
	hkr     [keySize]byte // flagRecv
	prevHKr [keySize]byte // flagPrevHKr
}

// Ratchet is one side's double ratchet with one contact, made by Join or
// Accept, or restored by UnmarshalRatchet.
//
// A Ratchet is not safe for concurrent use. Encrypt and a successful
// Decrypt change it: callers persist it (MarshalBinary) after each such
// call, before they act on the result, so that a message key is never
// used twice after a crash and a received message is not lost.
type Ratchet struct {
	// rand is crypto/rand, or a fixed stream in tests.
	rand io.Reader
	st   state
	// skipped holds the stored message keys: header key → message
	// number → message key. No inner map is empty.
	skipped map[[keySize]byte]map[uint32][keySize]byte
	// nskipped is the number of message keys in skipped, at most MaxSkip.
	nskipped int
}

// header is a decrypted message header.
type header struct {
	dh [keySize]byte
	pn uint32
	n  uint32
}

// skippedKey is a message key to store once a Decrypt succeeds.
type skippedKey struct {
	hk [keySize]byte
	n  uint32
	mk [keySize]byte
}

func newJoinerRatchet(rnd io.Reader, sk *[skSize]byte, bobKey *ecdh.PublicKey, ad *[adSize]byte) (*Ratchet, error) {
	r := &Ratchet{rand: rnd, skipped: map[[keySize]byte]map[uint32][keySize]byte{}}
	st := &r.st
	st.flags = flagSend
	st.ad = *ad
	copy(st.rk[:], sk[:keySize])
	copy(st.hks[:], sk[keySize:2*keySize])
	copy(st.nhkr[:], sk[2*keySize:])
	copy(st.dhr[:], bobKey.Bytes())
	priv, err := readPrivate(rnd)
	if err != nil {
		return nil, err
	}
	st.setDHs(priv)
	dh, err := priv.ECDH(bobKey)
	if err != nil {
		return nil, ErrSyntax
	}
	if err := kdfRK(&st.rk, dh, &st.cks, &st.nhks); err != nil {
		return nil, err
	}
	return r, nil
}

func newInviterRatchet(rnd io.Reader, sk *[skSize]byte, ratchetKey *ecdh.PrivateKey, ad *[adSize]byte) *Ratchet {
	r := &Ratchet{rand: rnd, skipped: map[[keySize]byte]map[uint32][keySize]byte{}}
	st := &r.st
	st.ad = *ad
	copy(st.rk[:], sk[:keySize])
	copy(st.nhkr[:], sk[keySize:2*keySize])
	copy(st.nhks[:], sk[2*keySize:])
	st.setDHs(ratchetKey)
	return r
}

func (st *state) setDHs(priv *ecdh.PrivateKey) {
	st.dhs = priv
	copy(st.dhsPub[:], priv.PublicKey().Bytes())
}

// Encrypt encrypts plaintext (at most MaxPlaintext bytes) for the contact
// and returns a message of exactly MessageSize bytes. It returns
// ErrTooLarge for a longer plaintext and ErrNotReady when the ratchet
// cannot send yet; on any error the ratchet is unchanged.
func (r *Ratchet) Encrypt(plaintext []byte) ([]byte, error) {
	st := r.st
	if st.flags&flagSend == 0 || st.ns == math.MaxUint32 {
		return nil, ErrNotReady
	}
	if len(plaintext) > MaxPlaintext {
		return nil, ErrTooLarge
	}
	out := make([]byte, MessageSize)
	nonce := out[:headerNonceSize]
	if _, err := io.ReadFull(r.rand, nonce); err != nil {
		return nil, fmt.Errorf("ratchet: reading randomness: %w", err)
	}
	var hdr [headerPlainSize]byte
	copy(hdr[:keySize], st.dhsPub[:])
	binary.BigEndian.PutUint32(hdr[keySize:], st.pn)
	binary.BigEndian.PutUint32(hdr[keySize+4:], st.ns)
	newAEAD(&st.hks).Seal(out[len(nonce):len(nonce)], nonce, hdr[:], st.ad[:])

	mk, ck := kdfCK(&st.cks)
	aead, bodyNonce, err := messageAEAD(&mk, nonce)
	if err != nil {
		return nil, err
	}
	body := out[headerSize : headerSize+bodyPlainSize]
	binary.BigEndian.PutUint16(body, uint16(len(plaintext)))
	copy(body[lengthSize:], plaintext)
	bad := bodyAD(&st.ad, out[:headerSize])
	aead.Seal(body[:0], bodyNonce, body, bad[:])

	st.cks = ck
	st.ns++
	r.st = st
	return out, nil
}

// Decrypt authenticates and decrypts a message from the contact and
// returns its plaintext. It returns ErrDecrypt for a message that does not
// authenticate (including one that is not MessageSize bytes), ErrDuplicate
// for one received before, ErrTooManySkipped when it would skip too many
// messages (see MaxSkip), and ErrSyntax for an authenticated body with a
// bad length or padding. A message that starts a new receiving chain makes
// a DH ratchet step, which reads a new key from crypto/rand; an error
// reading it is returned as is.
//
// Decrypt is transactional: on any error the ratchet is exactly as before.
// On success the message key is gone: deleted from the stored keys, or
// never stored because the receiving chain moved past it.
func (r *Ratchet) Decrypt(msg []byte) ([]byte, error) {
	if len(msg) != MessageSize {
		return nil, ErrDecrypt
	}
	encHeader := msg[:headerSize]
	st := r.st

	// The current receiving chain.
	if st.flags&flagRecv != 0 {
		if h, ok := openHeader(&st.hkr, &st.ad, encHeader); ok {
			if mk, ok := r.skipped[st.hkr][h.n]; ok {
				return r.decryptStored(&st.hkr, h.n, &mk, msg)
			}
			if h.n < st.nr {
				return nil, ErrDuplicate
			}
			if h.dh != st.dhr {
				return nil, ErrDecrypt // authentic but inconsistent: a broken peer
			}
			return r.decryptChain(st, &h, msg, nil)
		}
	}
	// Older chains with stored message keys.
	for hk, keys := range r.skipped {
		if st.flags&flagRecv != 0 && hk == st.hkr {
			continue
		}
		if h, ok := openHeader(&hk, &st.ad, encHeader); ok {
			if mk, ok := keys[h.n]; ok {
				return r.decryptStored(&hk, h.n, &mk, msg)
			}
			return nil, ErrDuplicate
		}
	}
	// The next chain: a DH ratchet step.
	if h, ok := openHeader(&st.nhkr, &st.ad, encHeader); ok {
		var staged []skippedKey
		if err := skip(&st, h.pn, &staged, r.nskipped); err != nil {
			return nil, err
		}
		if err := r.step(&st, &h.dh); err != nil {
			return nil, err
		}
		return r.decryptChain(st, &h, msg, staged)
	}
	// The previous chain: every message of it that is not stored was
	// received (its end was skipped to PN when the chain changed).
	if st.flags&flagPrevHKr != 0 {
		if _, stored := r.skipped[st.prevHKr]; !stored {
			if _, ok := openHeader(&st.prevHKr, &st.ad, encHeader); ok {
				return nil, ErrDuplicate
			}
		}
	}
	return nil, ErrDecrypt
}

// decryptStored decrypts msg with a stored message key and deletes it.
func (r *Ratchet) decryptStored(hk *[keySize]byte, n uint32, mk *[keySize]byte, msg []byte) ([]byte, error) {
	pt, err := openBody(mk, &r.st.ad, msg)
	if err != nil {
		return nil, err
	}
	keys := r.skipped[*hk]
	delete(keys, n)
	if len(keys) == 0 {
		delete(r.skipped, *hk)
	}
	r.nskipped--
	return pt, nil
}

// decryptChain decrypts msg, message h.n of st's receiving chain, storing
// the keys it skips, and commits st and staged if it succeeds.
func (r *Ratchet) decryptChain(st state, h *header, msg []byte, staged []skippedKey) ([]byte, error) {
	if h.n == math.MaxUint32 {
		return nil, ErrDecrypt // never sent: Encrypt stops before
	}
	if err := skip(&st, h.n, &staged, r.nskipped); err != nil {
		return nil, err
	}
	mk, ck := kdfCK(&st.ckr)
	pt, err := openBody(&mk, &st.ad, msg)
	if err != nil {
		return nil, err
	}
	st.ckr = ck
	st.nr++
	r.st = st
	for _, s := range staged {
		keys := r.skipped[s.hk]
		if keys == nil {
			keys = map[uint32][keySize]byte{}
			r.skipped[s.hk] = keys
		}
		keys[s.n] = s.mk
	}
	r.nskipped += len(staged)
	return pt, nil
}

// skip derives the message keys of st's receiving chain from st.nr up to
// (not including) until and appends them to staged; stored is the number
// of keys stored already.
func skip(st *state, until uint32, staged *[]skippedKey, stored int) error {
	if st.flags&flagRecv == 0 || until <= st.nr {
		return nil
	}
	if until-st.nr > MaxSkip || stored+len(*staged)+int(until-st.nr) > MaxSkip {
		return ErrTooManySkipped
	}
	for ; st.nr < until; st.nr++ {
		mk, ck := kdfCK(&st.ckr)
		*staged = append(*staged, skippedKey{hk: st.hkr, n: st.nr, mk: mk})
		st.ckr = ck
	}
	return nil
}

// step is the DH ratchet step for a message from the peer's new ratchet
// key dhr.
func (r *Ratchet) step(st *state, dhr *[keySize]byte) error {
	peer, err := ecdh.X25519().NewPublicKey(dhr[:])
	if err != nil {
		return ErrDecrypt
	}
	if st.flags&flagRecv != 0 {
		st.prevHKr = st.hkr
		st.flags |= flagPrevHKr
	}
	st.pn = st.ns
	st.ns = 0
	st.nr = 0
	st.hks = st.nhks
	st.hkr = st.nhkr
	st.dhr = *dhr
	st.flags |= flagSend | flagRecv

	dh, err := st.dhs.ECDH(peer)
	if err != nil {
		return ErrDecrypt // a low-order ratchet key
	}
	if err := kdfRK(&st.rk, dh, &st.ckr, &st.nhkr); err != nil {
		return err
	}
	priv, err := readPrivate(r.rand)
	if err != nil {
		return err
	}
	st.setDHs(priv)
	dh, err = priv.ECDH(peer)
	if err != nil {
		return ErrDecrypt
	}
	return kdfRK(&st.rk, dh, &st.cks, &st.nhks)
}

// kdfRK replaces rk with the new root key and sets ck and nhk.
func kdfRK(rk *[keySize]byte, dh []byte, ck, nhk *[keySize]byte) error {
	out, err := hkdf.Key(sha256.New, dh, rk[:], rootInfo, 3*keySize)
	if err != nil {
		return fmt.Errorf("ratchet: hkdf: %w", err)
	}
	copy(rk[:], out[:keySize])
	copy(ck[:], out[keySize:2*keySize])
	copy(nhk[:], out[2*keySize:])
	return nil
}

// kdfCK returns the message key and the next chain key of ck.
func kdfCK(ck *[keySize]byte) (mk, next [keySize]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x01})
	m.Sum(mk[:0])
	m.Reset()
	m.Write([]byte{0x02})
	m.Sum(next[:0])
	return mk, next
}

// messageKeys derives the body key and body nonce of a message from its
// message key mk and its random header nonce (headerNonceSize bytes):
// HKDF-SHA256(salt = none, ikm = MK, info = messageInfo | header nonce).
// The header nonce makes them differ for every message even when mk is
// used again, as it is after a state is restored from an older copy.
func messageKeys(mk *[keySize]byte, headerNonce []byte) (key [chacha20poly1305.KeySize]byte, nonce [chacha20poly1305.NonceSizeX]byte, err error) {
	var info [len(messageInfo) + headerNonceSize]byte
	copy(info[:], messageInfo)
	copy(info[len(messageInfo):], headerNonce)
	out, err := hkdf.Key(sha256.New, mk[:], nil, string(info[:]), len(key)+len(nonce))
	if err != nil {
		return key, nonce, fmt.Errorf("ratchet: hkdf: %w", err)
	}
	copy(key[:], out)
	copy(nonce[:], out[len(key):])
	return key, nonce, nil
}

// messageAEAD returns the body cipher and nonce of message key mk and the
// message's header nonce.
func messageAEAD(mk *[keySize]byte, headerNonce []byte) (cipher.AEAD, []byte, error) {
	key, nonce, err := messageKeys(mk, headerNonce)
	if err != nil {
		return nil, nil, err
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, nil, fmt.Errorf("ratchet: %w", err)
	}
	return aead, nonce[:], nil
}

// newAEAD returns the header cipher of header key hk.
func newAEAD(hk *[keySize]byte) cipher.AEAD {
	aead, err := chacha20poly1305.NewX(hk[:])
	if err != nil {
		panic("ratchet: " + err.Error()) // unreachable: the key has the right size
	}
	return aead
}

// openHeader decrypts encHeader (headerSize bytes) under hk.
func openHeader(hk *[keySize]byte, ad *[adSize]byte, encHeader []byte) (header, bool) {
	var h header
	var buf [headerPlainSize]byte
	n := headerNonceSize
	p, err := newAEAD(hk).Open(buf[:0], encHeader[:n], encHeader[n:], ad[:])
	if err != nil {
		return h, false
	}
	copy(h.dh[:], p[:keySize])
	h.pn = binary.BigEndian.Uint32(p[keySize:])
	h.n = binary.BigEndian.Uint32(p[keySize+4:])
	return h, true
}

// openBody decrypts the body of msg with message key mk.
func openBody(mk *[keySize]byte, ad *[adSize]byte, msg []byte) ([]byte, error) {
	aead, nonce, err := messageAEAD(mk, msg[:headerNonceSize])
	if err != nil {
		return nil, err
	}
	bad := bodyAD(ad, msg[:headerSize])
	body, err := aead.Open(nil, nonce, msg[headerSize:], bad[:])
	if err != nil {
		return nil, ErrDecrypt
	}
	n := int(binary.BigEndian.Uint16(body))
	if n > MaxPlaintext {
		return nil, ErrSyntax
	}
	for _, c := range body[lengthSize+n:] {
		if c != 0 {
			return nil, ErrSyntax
		}
	}
	pt := make([]byte, n)
	copy(pt, body[lengthSize:])
	return pt, nil
}

// bodyAD is the associated data of a message body: AD and the encrypted
// header.
func bodyAD(ad *[adSize]byte, encHeader []byte) [adSize + headerSize]byte {
	var b [adSize + headerSize]byte
	copy(b[:adSize], ad[:])
	copy(b[adSize:], encHeader)
	return b
}
