package ratchet

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Fuzz targets. Seeds: f.Add below, and files in the Go corpus format
// under testdata/fuzz/<FuzzName>/ (written by TestFuzzSeedFiles with
// -update). The fixtures are deterministic (seeded randomness and
// derandomized ML-KEM encapsulation), so the seed files stay valid.
// Run one target with, for example:
//
//	go test -run='^$' -fuzz='^FuzzDecrypt$' -fuzztime=20s ./client/ratchet

type seed struct {
	name string
	data []byte
}

// decryptFixture is a receiver state with a current receiving chain, a
// previous one and stored keys in two chains, and messages for it.
func decryptFixture(t testing.TB) (state []byte, seeds []seed) {
	_, _, joiner, inviter := newPairFrom(t, seeded(100))
	send(t, joiner, inviter, "one")
	old := encrypt(t, joiner, "stored, old chain")
	send(t, joiner, inviter, "two")
	send(t, inviter, joiner, "answer")
	dup := encrypt(t, joiner, "duplicate")
	decrypt(t, inviter, dup, "duplicate")
	stored := encrypt(t, joiner, "stored, current chain")
	next := encrypt(t, joiner, "next")
	decrypt(t, inviter, next, "next")
	current := encrypt(t, joiner, "current chain")
	send(t, inviter, joiner, "answer 2")
	newChain := encrypt(t, joiner, "new chain")
	state = marshal(t, inviter)
	tampered := bytes.Clone(current)
	tampered[MessageSize-1] ^= 1
	return state, []seed{
		{"stored-old-chain", old},
		{"stored-current-chain", stored},
		{"current-chain", current},
		{"new-chain", newChain},
		{"duplicate", dup},
		{"tampered", tampered},
		{"short", current[:headerSize]},
	}
}

// FuzzDecrypt checks that Decrypt never panics, fails only with its
// documented errors, and never changes the state when it fails.
func FuzzDecrypt(f *testing.F) {
	state, seeds := decryptFixture(f)
	for _, s := range seeds {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := UnmarshalRatchet(state)
		if err != nil {
			t.Fatal(err)
		}
		r.rand = seeded(101)
		pt, err := r.Decrypt(msg)
		after := marshal(t, r)
		if err != nil {
			if err != ErrDecrypt && err != ErrDuplicate && err != ErrTooManySkipped && err != ErrSyntax {
				t.Fatalf("Decrypt error %v is not one of the package's errors", err)
			}
			if pt != nil || !bytes.Equal(after, state) {
				t.Fatalf("Decrypt failing with %v returned a plaintext or changed the state", err)
			}
			return
		}
		if len(msg) != MessageSize || len(pt) > MaxPlaintext || bytes.Equal(after, state) {
			t.Fatalf("Decrypt of %d bytes succeeded with %d bytes and the state unchanged: %v", len(msg), len(pt), bytes.Equal(after, state))
		}
		if _, err := r.Decrypt(msg); err != ErrDuplicate {
			t.Fatalf("decrypting a message twice: %v, want ErrDuplicate", err)
		}
	})
}

func ratchetSeeds(t testing.TB) []seed {
	_, _, joiner, inviter := newPairFrom(t, seeded(200))
	seeds := []seed{{"joiner-initial", marshal(t, joiner)}, {"inviter-initial", marshal(t, inviter)}}
	send(t, joiner, inviter, "one")
	encrypt(t, joiner, "skipped")
	send(t, joiner, inviter, "two")
	send(t, inviter, joiner, "answer")
	seeds = append(seeds, seed{"joiner-after-step", marshal(t, joiner)})
	encrypt(t, joiner, "skipped 2")
	send(t, joiner, inviter, "three")
	return append(seeds, seed{"inviter-two-groups", marshal(t, inviter)})
}

// FuzzUnmarshalRatchet checks that UnmarshalRatchet fails only with
// ErrSyntax, that whatever it accepts marshals to the same bytes, and that
// an accepted state can be used.
func FuzzUnmarshalRatchet(f *testing.F) {
	for _, s := range ratchetSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := UnmarshalRatchet(data)
		if err != nil {
			if err != ErrSyntax {
				t.Fatalf("UnmarshalRatchet error %v is not ErrSyntax", err)
			}
			return
		}
		if b := marshal(t, r); !bytes.Equal(b, data) {
			t.Fatal("MarshalBinary differs from the accepted encoding")
		}
		r.rand = seeded(201)
		msg, err := r.Encrypt([]byte("fuzz"))
		if err != nil && err != ErrNotReady {
			t.Fatalf("Encrypt: %v", err)
		}
		if err == nil && len(msg) != MessageSize {
			t.Fatalf("Encrypt returned %d bytes", len(msg))
		}
	})
}

func acceptFixture(t testing.TB) (*InviterKeys, []seed) {
	k, hello, _, _ := newPairFrom(t, seeded(300))
	tampered := bytes.Clone(hello)
	tampered[HelloSize/2] ^= 0x10
	lowOrder := bytes.Clone(hello)
	clear(lowOrder[1 : 1+keySize])
	return k, []seed{
		{"valid", hello},
		{"tampered-ciphertext", tampered},
		{"low-order-key", lowOrder},
		{"short", hello[:HelloSize-1]},
	}
}

// FuzzAccept checks that Accept fails only with ErrSyntax and that a
// ratchet it returns is usable.
func FuzzAccept(f *testing.F) {
	k, seeds := acceptFixture(f)
	for _, s := range seeds {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, hello []byte) {
		r, err := k.Accept(hello)
		if err != nil {
			if err != ErrSyntax {
				t.Fatalf("Accept error %v is not ErrSyntax", err)
			}
			return
		}
		if len(hello) != HelloSize {
			t.Fatalf("Accept took a hello of %d bytes", len(hello))
		}
		if _, err := r.Encrypt(nil); err != ErrNotReady {
			t.Fatalf("a new inviter ratchet Encrypt: %v", err)
		}
		if b := marshal(t, r); !bytes.Equal(marshal(t, restore(t, r)), b) {
			t.Fatal("state not stable")
		}
	})
}

func joinSeeds(t testing.TB) []seed {
	k, err := newInviterKeys(seeded(400))
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PublicKeys()
	badKEM := bytes.Clone(pub)
	badKEM[1+2*keySize] = 0xff
	badKEM[1+2*keySize+1] |= 0x0f
	topBit := bytes.Clone(pub)
	topBit[1+keySize-1] |= 0x80
	return []seed{{"valid", pub}, {"kem-key-out-of-range", badKEM}, {"non-canonical", topBit}, {"short", pub[:100]}}
}

// FuzzJoin checks that Join fails only with ErrSyntax and that what it
// returns is usable.
func FuzzJoin(f *testing.F) {
	for _, s := range joinSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, pub []byte) {
		rnd := seeded(401)
		r, hello, err := join(pub, rnd, encapFrom(rnd))
		if err != nil {
			if err != ErrSyntax {
				t.Fatalf("Join error %v is not ErrSyntax", err)
			}
			return
		}
		if len(pub) != PublicKeysSize || len(hello) != HelloSize {
			t.Fatalf("Join took %d bytes of public keys, gave %d bytes of hello", len(pub), len(hello))
		}
		if msg, err := r.Encrypt([]byte("fuzz")); err != nil || len(msg) != MessageSize {
			t.Fatalf("Encrypt after Join: %d bytes, %v", len(msg), err)
		}
	})
}

// corpusFile encodes one []byte input in the Go fuzzing corpus format.
func corpusFile(data []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n")
}

// TestFuzzSeedFiles checks that each fuzz target has seed files in the Go
// corpus format under testdata/fuzz, and that the generated seeds are
// there as generated; with -update it (re)writes them (leaving any other
// file, such as a crasher kept as a regression case, alone).
func TestFuzzSeedFiles(t *testing.T) {
	_, decryptSeeds := decryptFixture(t)
	_, acceptSeeds := acceptFixture(t)
	targets := map[string][]seed{
		"FuzzDecrypt":          decryptSeeds,
		"FuzzUnmarshalRatchet": ratchetSeeds(t),
		"FuzzAccept":           acceptSeeds,
		"FuzzJoin":             joinSeeds(t),
	}
	for target, seeds := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds {
			name := filepath.Join(dir, "seed-"+s.name)
			want := corpusFile(s.data)
			if *update {
				if err := os.WriteFile(name, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generated seed (regenerate with -update)", name)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), "go test fuzz v1\n") {
				t.Errorf("%s/%s is not in the Go corpus format", target, e.Name())
			}
		}
	}
}
