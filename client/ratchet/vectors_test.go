package ratchet

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the seed files under testdata/fuzz from the current code")

const vectorsFile = "testdata/vectors.json"

// hexBytes is a byte string written as hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type vectorMessage struct {
	From      string   `json:"from"`
	Plaintext string   `json:"plaintext"`
	Message   hexBytes `json:"message"`
}

type vectors struct {
	Comment      []string        `json:"comment"`
	Seed         uint64          `json:"seed"`
	InviterKeys  hexBytes        `json:"inviterKeys"`
	PublicKeys   hexBytes        `json:"publicKeys"`
	Hello        hexBytes        `json:"hello"`
	Messages     []vectorMessage `json:"messages"`
	JoinerState  hexBytes        `json:"joinerState"`
	InviterState hexBytes        `json:"inviterState"`
}

const vectorSeed = 1

// generateVectors runs a whole exchange from one seeded randomness stream
// (see seeded): the inviter's keys, Join (with the derandomized ML-KEM
// encapsulation of crypto/mlkem/mlkemtest drawing its 32 bytes from the
// same stream), Accept, three messages from the joiner, three answers,
// and the final states.
func generateVectors(t *testing.T) vectors {
	rnd := seeded(vectorSeed)
	v := vectors{
		Comment: []string{
			"Test vectors for hush end-to-end encryption (client/ratchet, described in doc.go). Byte strings are hex.",
			"All randomness comes, in the order doc.go gives, from one ChaCha8 stream (math/rand/v2) seeded with the",
			"big-endian uint64 seed followed by \"hush ratchet test seed\" and zeros (32 bytes). The ML-KEM encapsulation",
			"is crypto/mlkem/mlkemtest.Encapsulate768 with 32 bytes read from the stream where Join encapsulates.",
			"Regenerate with: go test ./client/ratchet -run TestVectors -update (only when the format changes on purpose).",
		},
		Seed: vectorSeed,
	}
	k, hello, joiner, inviter := newPairFrom(t, rnd)
	var err error
	if v.InviterKeys, err = k.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	v.PublicKeys = k.PublicKeys()
	v.Hello = hello
	add := func(from string, r, to *Ratchet, text string) {
		msg := encrypt(t, r, text)
		decrypt(t, to, msg, text)
		v.Messages = append(v.Messages, vectorMessage{From: from, Plaintext: text, Message: msg})
	}
	for i := range 3 {
		add("joiner", joiner, inviter, fmt.Sprintf("joiner message %d", i))
	}
	for i := range 3 {
		add("inviter", inviter, joiner, fmt.Sprintf("inviter message %d", i))
	}
	v.JoinerState = marshal(t, joiner)
	v.InviterState = marshal(t, inviter)
	return v
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	if *update {
		b, err := json.MarshalIndent(generateVectors(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(vectorsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVectors compares every byte of a deterministic exchange with
// testdata/vectors.json, and checks that the recorded exchange decrypts
// from the recorded keys alone (the inviter's side from its stored keys).
func TestVectors(t *testing.T) {
	want := loadVectors(t)
	got := generateVectors(t)
	eq := func(name string, g, w []byte) {
		t.Helper()
		if !bytes.Equal(g, w) {
			t.Errorf("%s differs from %s", name, vectorsFile)
		}
	}
	eq("inviter keys", got.InviterKeys, want.InviterKeys)
	eq("public keys", got.PublicKeys, want.PublicKeys)
	eq("hello", got.Hello, want.Hello)
	if len(got.Messages) != len(want.Messages) || len(want.Messages) != 6 {
		t.Fatalf("%d messages, %d in %s", len(got.Messages), len(want.Messages), vectorsFile)
	}
	for i, m := range want.Messages {
		g := got.Messages[i]
		if g.From != m.From || g.Plaintext != m.Plaintext {
			t.Errorf("message %d: %s %q, want %s %q", i, g.From, g.Plaintext, m.From, m.Plaintext)
		}
		eq(fmt.Sprintf("message %d", i), g.Message, m.Message)
	}
	eq("joiner state", got.JoinerState, want.JoinerState)
	eq("inviter state", got.InviterState, want.InviterState)

	// The recorded inviter keys accept the recorded hello and decrypt the
	// joiner's recorded messages.
	k, err := UnmarshalInviterKeys(want.InviterKeys)
	if err != nil {
		t.Fatal(err)
	}
	eq("public keys of the recorded inviter keys", k.PublicKeys(), want.PublicKeys)
	inviter, err := k.Accept(want.Hello)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range want.Messages[:3] {
		decrypt(t, inviter, m.Message, m.Plaintext)
	}
}
