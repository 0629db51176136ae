package ratchet

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"encoding/binary"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"testing"
)

// seeded returns a deterministic randomness stream for tests.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	copy(s[8:], "hush ratchet test seed")
	return mathrand.NewChaCha8(s)
}

// encapFrom is a derandomized encapsulation drawing its 32 bytes of
// randomness from rnd.
func encapFrom(rnd io.Reader) encapsulateFunc {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		var m [32]byte
		if _, err := io.ReadFull(rnd, m[:]); err != nil {
			return nil, nil, err
		}
		return mlkemtest.Encapsulate768(ek, m[:])
	}
}

// newPairFrom makes an inviter and a joiner from rnd (deterministic) and
// returns their keys, the hello and both ratchets; no message is sent.
func newPairFrom(t testing.TB, rnd io.Reader) (k *InviterKeys, hello []byte, joiner, inviter *Ratchet) {
	t.Helper()
	k, err := newInviterKeys(rnd)
	if err != nil {
		t.Fatal(err)
	}
	joiner, hello, err = join(k.PublicKeys(), rnd, encapFrom(rnd))
	if err != nil {
		t.Fatal(err)
	}
	inviter, err = k.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	return k, hello, joiner, inviter
}

// newPair makes a joiner and an inviter with real randomness.
func newPair(t testing.TB) (joiner, inviter *Ratchet) {
	t.Helper()
	k, err := NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	joiner, hello, err := Join(k.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	if len(hello) != HelloSize {
		t.Fatalf("hello of %d bytes", len(hello))
	}
	inviter, err = k.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	return joiner, inviter
}

func encrypt(t testing.TB, r *Ratchet, text string) []byte {
	t.Helper()
	msg, err := r.Encrypt([]byte(text))
	if err != nil {
		t.Fatalf("Encrypt(%q): %v", text, err)
	}
	if len(msg) != MessageSize {
		t.Fatalf("Encrypt(%q) returned %d bytes", text, len(msg))
	}
	return msg
}

func decrypt(t testing.TB, r *Ratchet, msg []byte, want string) {
	t.Helper()
	pt, err := r.Decrypt(msg)
	if err != nil {
		t.Fatalf("Decrypt (want %q): %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("Decrypt = %q, want %q", pt, want)
	}
}

// send encrypts text on from and decrypts it on to.
func send(t testing.TB, from, to *Ratchet, text string) {
	t.Helper()
	decrypt(t, to, encrypt(t, from, text), text)
}

func marshal(t testing.TB, r *Ratchet) []byte {
	t.Helper()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restore round-trips r through MarshalBinary and UnmarshalRatchet,
// checking that the encoding is stable, and keeps r's randomness.
func restore(t testing.TB, r *Ratchet) *Ratchet {
	t.Helper()
	b := marshal(t, r)
	r2, err := UnmarshalRatchet(b)
	if err != nil {
		t.Fatalf("UnmarshalRatchet: %v", err)
	}
	if b2 := marshal(t, r2); !bytes.Equal(b, b2) {
		t.Fatal("MarshalBinary after UnmarshalRatchet differs")
	}
	r2.rand = r.rand
	return r2
}

// failUnchanged checks that Decrypt(msg) fails with want and leaves r as
// it was.
func failUnchanged(t testing.TB, r *Ratchet, msg []byte, want error) {
	t.Helper()
	before := marshal(t, r)
	pt, err := r.Decrypt(msg)
	if err != want {
		t.Fatalf("Decrypt = %q, %v; want %v", pt, err, want)
	}
	if pt != nil {
		t.Fatal("Decrypt returned a plaintext with an error")
	}
	if !bytes.Equal(before, marshal(t, r)) {
		t.Fatalf("Decrypt failing with %v changed the state", err)
	}
}

func text(i int) string { return fmt.Sprintf("message %d", i) }
