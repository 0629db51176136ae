package ratchet

import (
	"bytes"
	"crypto/ecdh"
	mathrand "math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func TestSizes(t *testing.T) {
	if MessageSize != 14500 || MaxPlaintext != 14402 || HelloSize != 1153 || PublicKeysSize != 1249 || MaxSkip != 1000 {
		t.Fatalf("sizes: message %d, plaintext %d, hello %d, public keys %d, max skip %d",
			MessageSize, MaxPlaintext, HelloSize, PublicKeysSize, MaxSkip)
	}
	k, err := NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(k.PublicKeys()); n != PublicKeysSize {
		t.Fatalf("PublicKeys: %d bytes", n)
	}
	joiner, inviter := newPair(t)
	for _, n := range []int{0, 1, 100, MaxPlaintext} {
		pt := bytes.Repeat([]byte{0xa5}, n)
		msg, err := joiner.Encrypt(pt)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) != MessageSize {
			t.Fatalf("Encrypt(%d bytes) returned %d bytes", n, len(msg))
		}
		got, err := inviter.Decrypt(msg)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Decrypt of %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
	before := marshal(t, joiner)
	if _, err := joiner.Encrypt(make([]byte, MaxPlaintext+1)); err != ErrTooLarge {
		t.Fatalf("Encrypt(MaxPlaintext+1) = %v, want ErrTooLarge", err)
	}
	if !bytes.Equal(before, marshal(t, joiner)) {
		t.Fatal("a failed Encrypt changed the state")
	}
}

// TestInviterSendsSecond checks that the inviter can send only after it
// has decrypted the joiner's first message.
func TestInviterSendsSecond(t *testing.T) {
	joiner, inviter := newPair(t)
	if _, err := inviter.Encrypt([]byte("too early")); err != ErrNotReady {
		t.Fatalf("inviter Encrypt before any Decrypt = %v, want ErrNotReady", err)
	}
	if _, err := restore(t, inviter).Encrypt([]byte("too early")); err != ErrNotReady {
		t.Fatalf("restored inviter Encrypt = %v, want ErrNotReady", err)
	}
	send(t, joiner, inviter, "hello")
	send(t, inviter, joiner, "hi")
}

// TestConversation runs many round trips with messages in both directions
// interleaved, through marshal/unmarshal now and then, and checks that the
// DH ratchet steps each time the direction changes.
func TestConversation(t *testing.T) {
	joiner, inviter := newPair(t)
	send(t, joiner, inviter, "first")
	sides := [2]*Ratchet{joiner, inviter}
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	ratchetKeys := map[[keySize]byte]bool{joiner.st.dhsPub: true, inviter.st.dhsPub: true}
	turns := 0
	for round := range 200 {
		from := round % 2
		// A burst from one side, with the other side's messages in flight
		// and delivered interleaved.
		var mine, theirs [][]byte
		var mineText, theirsText []string
		for i := range 1 + rng.IntN(3) {
			s := text(round*10 + i)
			mine = append(mine, encrypt(t, sides[from], s))
			mineText = append(mineText, s)
		}
		if round > 0 && rng.IntN(2) == 0 {
			s := "crossing " + text(round)
			theirs = append(theirs, encrypt(t, sides[1-from], s))
			theirsText = append(theirsText, s)
		}
		for len(mine)+len(theirs) > 0 {
			if len(theirs) > 0 && (len(mine) == 0 || rng.IntN(2) == 0) {
				decrypt(t, sides[from], theirs[0], theirsText[0])
				theirs, theirsText = theirs[1:], theirsText[1:]
				continue
			}
			decrypt(t, sides[1-from], mine[0], mineText[0])
			mine, mineText = mine[1:], mineText[1:]
		}
		for _, s := range sides {
			if !ratchetKeys[s.st.dhsPub] {
				ratchetKeys[s.st.dhsPub] = true
				turns++
			}
		}
		if round%37 == 0 {
			sides[0], sides[1] = restore(t, sides[0]), restore(t, sides[1])
		}
	}
	if turns < 150 {
		t.Fatalf("only %d DH ratchet steps in 200 rounds", turns)
	}
	for i, s := range sides {
		if s.nskipped != 0 || len(s.skipped) != 0 {
			t.Fatalf("side %d keeps %d skipped keys after in-order delivery", i, s.nskipped)
		}
	}
}

// TestOutOfOrder delivers a chain's messages in a random order, and
// messages of an old chain after the DH ratchet moved on.
func TestOutOfOrder(t *testing.T) {
	joiner, inviter := newPair(t)
	var msgs [][]byte
	for i := range 50 {
		msgs = append(msgs, encrypt(t, joiner, text(i)))
	}
	order := mathrand.New(mathrand.NewPCG(3, 4)).Perm(len(msgs))
	for _, i := range order {
		decrypt(t, inviter, msgs[i], text(i))
	}
	if inviter.nskipped != 0 || len(inviter.skipped) != 0 {
		t.Fatalf("%d skipped keys left after every message arrived", inviter.nskipped)
	}
	for _, i := range order[:5] {
		failUnchanged(t, inviter, msgs[i], ErrDuplicate)
	}

	// Across DH ratchet steps: a1..a5 are sent, a1 arrives; b1 answers;
	// a6 on the joiner's new chain arrives before a2..a5.
	var a [7][]byte
	for i := 1; i <= 5; i++ {
		a[i] = encrypt(t, joiner, "a"+text(i))
	}
	decrypt(t, inviter, a[1], "a"+text(1))
	send(t, inviter, joiner, "b1")
	a[6] = encrypt(t, joiner, "a"+text(6))
	decrypt(t, inviter, a[6], "a"+text(6))
	if inviter.nskipped != 4 {
		t.Fatalf("%d keys stored for a2..a5, want 4", inviter.nskipped)
	}
	// Another step on top, so that a2..a5's chain is two steps old.
	send(t, inviter, joiner, "b2")
	send(t, joiner, inviter, "a7")
	inviter = restore(t, inviter)
	for _, i := range []int{3, 2, 5} {
		decrypt(t, inviter, a[i], "a"+text(i))
	}
	failUnchanged(t, inviter, a[3], ErrDuplicate) // its group still has a4
	decrypt(t, inviter, a[4], "a"+text(4))
	if inviter.nskipped != 0 || len(inviter.skipped) != 0 {
		t.Fatalf("%d skipped keys left", inviter.nskipped)
	}
	// The group is gone and the chain is older than the previous one:
	// the header key is gone too, so a duplicate no longer authenticates.
	failUnchanged(t, inviter, a[2], ErrDecrypt)
	failUnchanged(t, inviter, a[6], ErrDuplicate) // previous chain
}

// TestKeysDeleted checks that a used message key is gone: from the stored
// keys, from the marshaled state, and that the message is a duplicate
// afterwards, before and after marshal/unmarshal.
func TestKeysDeleted(t *testing.T) {
	joiner, inviter := newPair(t)
	var msgs [][]byte
	for i := range 4 {
		msgs = append(msgs, encrypt(t, joiner, text(i)))
	}
	decrypt(t, inviter, msgs[3], text(3)) // stores the keys of 0, 1, 2
	hk := inviter.st.hkr
	if n := len(inviter.skipped[hk]); n != 3 || inviter.nskipped != 3 {
		t.Fatalf("%d keys stored (%d counted), want 3", n, inviter.nskipped)
	}
	mk1 := inviter.skipped[hk][1]
	if !bytes.Contains(marshal(t, inviter), mk1[:]) {
		t.Fatal("the marshaled state does not hold a stored message key")
	}
	ckr := inviter.st.ckr

	decrypt(t, inviter, msgs[1], text(1))
	if _, ok := inviter.skipped[hk][1]; ok {
		t.Fatal("the used message key is still stored")
	}
	if inviter.nskipped != 2 {
		t.Fatalf("%d keys counted, want 2", inviter.nskipped)
	}
	if bytes.Contains(marshal(t, inviter), mk1[:]) {
		t.Fatal("the marshaled state still holds the used message key")
	}
	if inviter.st.ckr != ckr {
		t.Fatal("decrypting a stored message changed the chain key")
	}
	failUnchanged(t, inviter, msgs[1], ErrDuplicate)
	failUnchanged(t, inviter, msgs[3], ErrDuplicate)
	restored := restore(t, inviter)
	failUnchanged(t, restored, msgs[1], ErrDuplicate)
	failUnchanged(t, restored, msgs[3], ErrDuplicate)

	// The chain key advanced past a message decrypted in order: its key
	// is neither stored nor derivable from the state any more.
	m4 := encrypt(t, joiner, text(4))
	mk4, _ := kdfCK(&restored.st.ckr)
	decrypt(t, restored, m4, text(4))
	state := marshal(t, restored)
	if bytes.Contains(state, mk4[:]) || bytes.Contains(state, ckr[:]) {
		t.Fatal("the state still holds a used message key or an old chain key")
	}
	failUnchanged(t, restored, m4, ErrDuplicate)
	decrypt(t, restored, msgs[0], text(0))
	decrypt(t, restored, msgs[2], text(2))
	if len(restored.skipped) != 0 || restored.nskipped != 0 {
		t.Fatalf("%d keys left", restored.nskipped)
	}
	failUnchanged(t, restored, msgs[0], ErrDuplicate)
}

// TestRestoredState encrypts from two copies restored from an older
// state (as after restoring the local store from a backup or a snapshot)
// and from the live ratchet: all three use the same message key, yet no
// two messages share a body key or nonce, or any ciphertext byte run; the
// receiver decrypts the first and reports the others as duplicates.
func TestRestoredState(t *testing.T) {
	joiner, inviter := newPair(t)
	send(t, joiner, inviter, "first")
	send(t, inviter, joiner, "reply")
	snapshot := marshal(t, joiner)

	type sent struct {
		msg   []byte
		mk    [keySize]byte
		key   [32]byte
		nonce [24]byte
	}
	var all []sent
	for i, r := range []*Ratchet{joiner, nil, nil} {
		if r == nil {
			var err error
			if r, err = UnmarshalRatchet(snapshot); err != nil { // crypto/rand, as in the client
				t.Fatal(err)
			}
		}
		mk, _ := kdfCK(&r.st.cks)
		msg := encrypt(t, r, "the same text")
		key, nonce, err := messageKeys(&mk, msg[:headerNonceSize])
		if err != nil {
			t.Fatal(err)
		}
		// The derived pair is the one the body was sealed with.
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			t.Fatal(err)
		}
		bad := bodyAD(&r.st.ad, msg[:headerSize])
		if _, err := aead.Open(nil, nonce[:], msg[headerSize:], bad[:]); err != nil {
			t.Fatalf("message %d: the body does not open with the derived key and nonce: %v", i, err)
		}
		all = append(all, sent{msg, mk, key, nonce})
	}
	for i := range all {
		for j := range i {
			a, b := all[i], all[j]
			if a.mk != b.mk {
				t.Fatalf("messages %d and %d: different message keys; the test needs the same one", j, i)
			}
			if a.key == b.key || a.nonce == b.nonce {
				t.Fatalf("messages %d and %d share a body key (%v) or nonce (%v)", j, i, a.key == b.key, a.nonce == b.nonce)
			}
			if bytes.Equal(a.msg[:headerNonceSize], b.msg[:headerNonceSize]) {
				t.Fatalf("messages %d and %d share a header nonce", j, i)
			}
			// No 16-byte run of the sealed bodies agrees: equal (key, nonce)
			// would give equal keystream over the equal plaintext.
			for k := headerSize; k+16 <= MessageSize; k += 16 {
				if bytes.Equal(a.msg[k:k+16], b.msg[k:k+16]) {
					t.Fatalf("messages %d and %d agree at body bytes %d..%d", j, i, k, k+16)
				}
			}
		}
	}
	decrypt(t, inviter, all[1].msg, "the same text")
	failUnchanged(t, inviter, all[0].msg, ErrDuplicate)
	failUnchanged(t, inviter, all[2].msg, ErrDuplicate)
}

// TestMaxSkip checks both bounds: per message within one chain, and in
// total.
func TestMaxSkip(t *testing.T) {
	joiner, inviter := newPair(t)
	var msgs [][]byte
	for i := range MaxSkip + 4 {
		msgs = append(msgs, encrypt(t, joiner, text(i)))
	}
	// Message MaxSkip+1 would skip MaxSkip+1 keys.
	failUnchanged(t, inviter, msgs[MaxSkip+1], ErrTooManySkipped)
	// Message MaxSkip skips exactly MaxSkip.
	decrypt(t, inviter, msgs[MaxSkip], text(MaxSkip))
	if inviter.nskipped != MaxSkip {
		t.Fatalf("%d keys stored, want %d", inviter.nskipped, MaxSkip)
	}
	inviter = restore(t, inviter)
	decrypt(t, inviter, msgs[MaxSkip+1], text(MaxSkip+1)) // no skip needed
	// Message MaxSkip+3 would store one more key: over the total.
	failUnchanged(t, inviter, msgs[MaxSkip+3], ErrTooManySkipped)
	decrypt(t, inviter, msgs[7], text(7))
	decrypt(t, inviter, msgs[MaxSkip+3], text(MaxSkip+3))
	if inviter.nskipped != MaxSkip {
		t.Fatalf("%d keys stored, want %d", inviter.nskipped, MaxSkip)
	}
	decrypt(t, inviter, msgs[MaxSkip+2], text(MaxSkip+2))
	decrypt(t, inviter, msgs[0], text(0))

	// The bound also covers the end of a chain announced by PN: three
	// messages of the joiner's first chain are never delivered.
	for range 3 {
		encrypt(t, joiner, "lost")
	}
	send(t, inviter, joiner, "answer")
	m := encrypt(t, joiner, "new chain")
	failUnchanged(t, inviter, m, ErrTooManySkipped) // 998 stored + 3
	decrypt(t, inviter, msgs[1], text(1))
	decrypt(t, inviter, m, "new chain")
	if inviter.nskipped != MaxSkip {
		t.Fatalf("%d keys stored, want %d", inviter.nskipped, MaxSkip)
	}
}

// tamperPositions returns a sample of byte positions across a message:
// every header byte, the first and last bytes of the body, and a stride.
func tamperPositions() []int {
	var pos []int
	for i := range headerSize + 8 {
		pos = append(pos, i)
	}
	for i := headerSize + 8; i < MessageSize-32; i += 211 {
		pos = append(pos, i)
	}
	for i := MessageSize - 32; i < MessageSize; i++ {
		pos = append(pos, i)
	}
	return pos
}

// TestTamper flips bits across messages of each kind (next in the current
// chain, starting a new chain, stored key) and checks that each altered
// copy fails with ErrDecrypt, changes nothing, and that the genuine
// message decrypts afterwards.
func TestTamper(t *testing.T) {
	joiner, inviter := newPair(t)
	send(t, joiner, inviter, "first")
	send(t, inviter, joiner, "reply")
	skipped := encrypt(t, joiner, "skipped")
	current := encrypt(t, joiner, "current")
	decrypt(t, inviter, current, "current")
	current = encrypt(t, joiner, "current 2")
	send(t, inviter, joiner, "reply 2")
	newChain := encrypt(t, joiner, "new chain")

	check := func(name string, msg []byte, want string) {
		t.Helper()
		for _, p := range tamperPositions() {
			bad := bytes.Clone(msg)
			bad[p] ^= 1 << (p % 8)
			before := marshal(t, inviter)
			if pt, err := inviter.Decrypt(bad); err != ErrDecrypt {
				t.Fatalf("%s: bit %d of byte %d flipped: Decrypt = %q, %v; want ErrDecrypt", name, p%8, p, pt, err)
			}
			if !bytes.Equal(before, marshal(t, inviter)) {
				t.Fatalf("%s: a failed Decrypt changed the state", name)
			}
		}
		for _, bad := range [][]byte{msg[:MessageSize-1], append(bytes.Clone(msg), 0), nil, make([]byte, MessageSize)} {
			failUnchanged(t, inviter, bad, ErrDecrypt)
		}
		decrypt(t, inviter, msg, want)
	}
	check("current chain", current, "current 2")
	check("new chain", newChain, "new chain")
	check("stored key", skipped, "skipped")

	// A message from another conversation does not authenticate.
	other, _ := newPair(t)
	failUnchanged(t, inviter, encrypt(t, other, "stranger"), ErrDecrypt)
	send(t, joiner, inviter, "still working")
	send(t, inviter, joiner, "both ways")
}

// TestTamperedHello flips bits of the hello: the inviter refuses it
// (ErrSyntax: version, non-canonical keys) or accepts it and then cannot
// decrypt the joiner's first message (ErrDecrypt); it never decrypts.
func TestTamperedHello(t *testing.T) {
	k, err := NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	joiner, hello, err := Join(k.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	first := encrypt(t, joiner, "first")
	refused, undecryptable := 0, 0
	try := func(p int, bit uint) {
		bad := bytes.Clone(hello)
		bad[p] ^= 1 << bit
		r, err := k.Accept(bad)
		if err != nil {
			if err != ErrSyntax {
				t.Fatalf("byte %d bit %d: Accept error %v, want ErrSyntax", p, bit, err)
			}
			refused++
			return
		}
		if pt, err := r.Decrypt(first); err != ErrDecrypt {
			t.Fatalf("byte %d bit %d: Decrypt = %q, %v; want ErrDecrypt", p, bit, pt, err)
		}
		undecryptable++
	}
	for p := range 1 + 2*keySize { // version and X25519 keys: every bit
		for bit := range uint(8) {
			try(p, bit)
		}
	}
	for p := 1 + 2*keySize; p < HelloSize; p++ { // KEM ciphertext: one bit per byte
		try(p, uint(p%8))
	}
	// The version byte (8 bits) and the top bit of each key are refused.
	if refused != 8+2 {
		t.Fatalf("%d tampered hellos refused, want 10", refused)
	}
	t.Logf("%d tampered hellos refused, %d accepted but undecryptable", refused, undecryptable)

	for _, bad := range [][]byte{nil, hello[:HelloSize-1], append(bytes.Clone(hello), 0)} {
		if _, err := k.Accept(bad); err != ErrSyntax {
			t.Fatalf("Accept(%d bytes) = %v, want ErrSyntax", len(bad), err)
		}
	}
	// Low-order and non-canonical keys.
	for _, key := range [][]byte{make([]byte, 32), nonCanonical()} {
		for _, off := range []int{1, 1 + keySize} {
			bad := bytes.Clone(hello)
			copy(bad[off:], key)
			if _, err := k.Accept(bad); err != ErrSyntax {
				t.Fatalf("Accept with key %x at %d = %v, want ErrSyntax", key, off, err)
			}
		}
	}

	r, err := k.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	decrypt(t, r, first, "first")
}

// nonCanonical returns 2^255-19 = p, the smallest non-canonical X25519
// encoding (equal to 0).
func nonCanonical() []byte {
	b := bytes.Repeat([]byte{0xff}, 32)
	b[0], b[31] = 0xed, 0x7f
	return b
}

func TestCanonicalX25519(t *testing.T) {
	pMinus1 := nonCanonical()
	pMinus1[0] = 0xec
	top := make([]byte, 32)
	top[31] = 0x80
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{make([]byte, 32), true},
		{pMinus1, true},
		{nonCanonical(), false},
		{bytes.Repeat([]byte{0xff}, 32), false},
		{top, false},
		{make([]byte, 31), false},
	} {
		if got := canonicalX25519(c.b); got != c.want {
			t.Errorf("canonicalX25519(%x) = %v", c.b, got)
		}
	}
}

func TestJoinSyntax(t *testing.T) {
	k, err := NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.PublicKeys()
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(pub)
		f(b)
		return b
	}
	cases := map[string][]byte{
		"empty":                  nil,
		"short":                  pub[:PublicKeysSize-1],
		"long":                   append(bytes.Clone(pub), 0),
		"version":                mutate(func(b []byte) { b[0] = 2 }),
		"identity non-canonical": mutate(func(b []byte) { b[1+31] |= 0x80 }),
		"ratchet non-canonical":  mutate(func(b []byte) { copy(b[1+keySize:], nonCanonical()) }),
		"identity low order":     mutate(func(b []byte) { copy(b[1:], make([]byte, 32)) }),
		"ratchet low order":      mutate(func(b []byte) { copy(b[1+keySize:], make([]byte, 32)) }),
		// A coefficient of 4095 >= q = 3329.
		"KEM key out of range": mutate(func(b []byte) { b[1+2*keySize] = 0xff; b[1+2*keySize+1] |= 0x0f }),
	}
	for name, b := range cases {
		if _, _, err := Join(b); err != ErrSyntax {
			t.Errorf("%s: Join = %v, want ErrSyntax", name, err)
		}
	}
	if _, _, err := Join(pub); err != nil {
		t.Fatal(err)
	}
}

func TestInviterKeysMarshal(t *testing.T) {
	k, err := NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != inviterKeysSize || b[0] != version {
		t.Fatalf("InviterKeys encoding of %d bytes, version %d", len(b), b[0])
	}
	k2, err := UnmarshalInviterKeys(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.PublicKeys(), k2.PublicKeys()) {
		t.Fatal("restored InviterKeys have other public keys")
	}
	b2, _ := k2.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("InviterKeys encoding is not stable")
	}
	joiner, hello, err := Join(k.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	inviter, err := k2.Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	send(t, joiner, inviter, "via restored keys")
	send(t, inviter, joiner, "reply")
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(bytes.Clone(b), 0), append([]byte{2}, b[1:]...)} {
		if _, err := UnmarshalInviterKeys(bad); err != ErrSyntax {
			t.Fatalf("UnmarshalInviterKeys(%d bytes) = %v, want ErrSyntax", len(bad), err)
		}
	}
}

// TestStateMarshal checks that both sides can be restored at every stage
// and go on talking, and that UnmarshalRatchet is strict.
func TestStateMarshal(t *testing.T) {
	joiner, inviter := newPair(t)
	joiner, inviter = restore(t, joiner), restore(t, inviter)
	send(t, joiner, inviter, "one")
	skipped := encrypt(t, joiner, "skipped")
	send(t, joiner, inviter, "two")
	joiner, inviter = restore(t, joiner), restore(t, inviter)
	send(t, inviter, joiner, "three")
	send(t, joiner, inviter, "four")
	joiner, inviter = restore(t, joiner), restore(t, inviter)
	send(t, joiner, inviter, "five")
	if inviter.st.flags != flagsAll || inviter.nskipped != 1 {
		t.Fatalf("state flags %#x with %d stored keys; want all flags and 1 key", inviter.st.flags, inviter.nskipped)
	}
	state := marshal(t, inviter)
	decrypt(t, inviter, skipped, "skipped")

	syntax := func(name string, b []byte) {
		t.Helper()
		if _, err := UnmarshalRatchet(b); err != ErrSyntax {
			t.Errorf("%s: UnmarshalRatchet = %v, want ErrSyntax", name, err)
		}
	}
	for n := range len(state) {
		if _, err := UnmarshalRatchet(state[:n]); err != ErrSyntax {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(state), err)
		}
	}
	mutate := func(off int, f func(b []byte)) []byte {
		b := bytes.Clone(state)
		f(b[off:])
		return b
	}
	counters := 2 + adSize + 4*keySize
	syntax("trailing byte", append(bytes.Clone(state), 0))
	syntax("version", mutate(0, func(b []byte) { b[0] = 2 }))
	syntax("unknown flag", mutate(1, func(b []byte) { b[0] |= 0x08 }))
	syntax("receive without send", mutate(1, func(b []byte) { b[0] = flagRecv }))
	syntax("previous without receive", mutate(1, func(b []byte) { b[0] = flagSend | flagPrevHKr }))
	fresh := marshal(t, newInviterRatchet(nil, &[skSize]byte{}, mustPriv(t), &[adSize]byte{}))
	if len(fresh) != stateFixedSize+2 {
		t.Fatalf("a fresh inviter state has %d bytes", len(fresh))
	}
	if _, err := UnmarshalRatchet(fresh); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{counters + 3, counters + 7, counters + 11} { // Ns, PN, Nr without chains
		b := bytes.Clone(fresh)
		b[off] = 1
		syntax("counter without its chain", b)
	}
	groups := len(state) - 2 - (4 + keySize) - 2 - keySize
	syntax("two groups declared", mutate(groups, func(b []byte) { b[1] = 2 }))
	syntax("empty group", mutate(groups+2+keySize, func(b []byte) { b[1] = 0 }))
	syntax("N = 2^32-1", mutate(groups+2+keySize+2, func(b []byte) { copy(b, []byte{0xff, 0xff, 0xff, 0xff}) }))

	// A stored key in the current receiving chain must be below Nr.
	j2, i2 := newPair(t)
	send(t, j2, i2, "one")
	encrypt(t, j2, "skipped")
	send(t, j2, i2, "two")
	s2 := marshal(t, i2)
	nOff := len(s2) - 4 - keySize
	if n := s2[nOff+3]; n != 1 {
		t.Fatalf("stored N = %d, want 1", n)
	}
	b := bytes.Clone(s2)
	b[nOff+3] = 2 // Nr is 3
	if _, err := UnmarshalRatchet(b); err != nil {
		t.Fatalf("stored N = 2 below Nr = 3: %v", err)
	}
	b[nOff+3] = 3
	syntax("stored N = Nr", b)

	// Two groups in decreasing order of header key.
	j3, i3 := newPair(t)
	send(t, j3, i3, "one")
	encrypt(t, j3, "skipped 1")
	send(t, j3, i3, "two")
	send(t, i3, j3, "answer")
	encrypt(t, j3, "skipped 2")
	send(t, j3, i3, "three")
	if len(i3.skipped) != 2 {
		t.Fatalf("%d groups", len(i3.skipped))
	}
	s3 := marshal(t, i3)
	g := len(s3) - 2*(keySize+2+4+keySize)
	swapped := bytes.Clone(s3[:g])
	swapped = append(swapped, s3[g+keySize+2+4+keySize:]...)
	swapped = append(swapped, s3[g:g+keySize+2+4+keySize]...)
	syntax("groups out of order", swapped)
}

func mustPriv(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := readPrivate(seeded(7))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
