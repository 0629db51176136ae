package client

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

func testInvitation(t testing.TB) invitation {
	keys, err := ratchet.NewInviterKeys()
	if err != nil {
		t.Fatal(err)
	}
	var fp queue.Fingerprint
	fp[0] = 7
	return invitation{
		queue: queueInfo{
			relay:    queue.Address{Fingerprint: fp, Host: "relay.example.org", Onion: strings.Repeat("a", 56) + ".onion", Port: 5223},
			senderID: queue.NewID(),
			e2eKey:   queue.PublicKey(newKey()),
		},
		keys: keys.PublicKeys(),
	}
}

func TestInvitationRoundTrip(t *testing.T) {
	inv := testInvitation(t)
	link := inv.String()
	if !strings.HasPrefix(link, "hush:/invite#") {
		t.Fatalf("link %q", link)
	}
	got, err := parseInvitation(link)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != link || got.queue != inv.queue || !bytes.Equal(got.keys, inv.keys) {
		t.Fatalf("round trip changed the invitation")
	}
	t.Logf("an invitation link has %d characters", len(link))
	for _, bad := range []string{
		"", "hush:/invite#", "https://example.org", link + "A", link[:len(link)-1],
		strings.Replace(link, "hush:/invite#", "hush:/invite#A", 1),
	} {
		if _, err := parseInvitation(bad); !errors.Is(err, ErrBadLink) {
			t.Errorf("parseInvitation(%.40q) = %v, want ErrBadLink", bad, err)
		}
	}
	// A link with a password in the address is refused, even with a
	// correct check: links never carry it.
	pw := inv
	pw.queue.relay.Password = "secret"
	b := []byte{linkVersion}
	a := pw.queue.relay.String()
	b = append(b, byte(len(a)>>8), byte(len(a)))
	b = append(b, a...)
	b = append(b, pw.queue.senderID[:]...)
	b = append(b, pw.queue.e2eKey[:]...)
	b = append(b, pw.keys...)
	if _, err := parseInvitation(linkPrefix + b64(append(b, linkCheck(b)...))); err != ErrBadLink {
		t.Errorf("a link with a password: %v", err)
	}
}

// oldLink returns inv as a version 1 link: the layout without the check.
func oldLink(inv invitation) string {
	b := []byte{linkVersionOld}
	b = inv.queue.append(b)
	b = append(b, inv.keys...)
	return linkPrefix + b64(b)
}

// TestLinkTamper checks that the parser refuses, with exactly ErrBadLink,
// every link made from a valid one by substituting one character (at
// every position, prefix included, by every printable ASCII character and
// space: exhaustive over the base64url alphabet and beyond) or by cutting
// it (every proper prefix and every proper suffix).
func TestLinkTamper(t *testing.T) {
	link := testInvitation(t).String()
	if _, err := parseInvitation(link); err != nil {
		t.Fatal(err)
	}
	var alphabet []byte
	for c := byte(' '); c <= '~'; c++ {
		alphabet = append(alphabet, c)
	}
	buf := []byte(link)
	substituted := 0
	for i := range buf {
		orig := buf[i]
		for _, c := range alphabet {
			if c == orig {
				continue
			}
			buf[i] = c
			if _, err := parseInvitation(string(buf)); err != ErrBadLink {
				t.Fatalf("character %d changed from %q to %q: %v, want ErrBadLink", i, orig, c, err)
			}
			substituted++
		}
		buf[i] = orig
	}
	cut := 0
	for i := range len(link) {
		for _, bad := range []string{link[:i], link[i+1:]} {
			if _, err := parseInvitation(bad); err != ErrBadLink {
				t.Fatalf("link cut to %d characters: %v, want ErrBadLink", len(bad), err)
			}
			cut++
		}
	}
	t.Logf("a %d-character link: %d substitutions and %d cuts refused", len(link), substituted, cut)
}

// TestOldLink checks that a whole version 1 link is refused with
// ErrOldLink (which matches ErrBadLink), and a changed one with ErrBadLink.
func TestOldLink(t *testing.T) {
	link := oldLink(testInvitation(t))
	if _, err := parseInvitation(link); err != ErrOldLink || !errors.Is(err, ErrBadLink) {
		t.Fatalf("a version 1 link: %v, want ErrOldLink", err)
	}
	if _, err := parseInvitation(link[:len(link)-3]); err != ErrBadLink {
		t.Fatalf("a cut version 1 link: %v, want ErrBadLink", err)
	}
}

func TestEnvelopeSealOpenTamper(t *testing.T) {
	recipient, sender := newKey(), newKey()
	hello := bytes.Repeat([]byte{1}, ratchet.HelloSize)
	msg := bytes.Repeat([]byte{2}, ratchet.MessageSize)
	for _, kind := range []byte{envelopeConfirmation, envelopeMessage} {
		var h []byte
		if kind == envelopeConfirmation {
			h = hello
		}
		env, err := sealEnvelope(kind, sender, queue.PublicKey(recipient), h, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != EnvelopeSize {
			t.Fatalf("envelope of %d bytes, want %d", len(env), EnvelopeSize)
		}
		e, err := openEnvelope(env, recipient)
		if err != nil || e.kind != kind || !bytes.Equal(e.message, msg) || !bytes.Equal(e.hello, h) {
			t.Fatalf("open: %v", err)
		}
		for _, i := range []int{0, 1, 2, 40, envelopeHeaderSize - 1, envelopeHeaderSize, 5000, EnvelopeSize - 1} {
			bad := bytes.Clone(env)
			bad[i] ^= 0x01
			if _, err := openEnvelope(bad, recipient); err == nil {
				t.Errorf("kind %d: flipping byte %d went unnoticed", kind, i)
			}
		}
		if _, err := openEnvelope(env, newKey()); err == nil {
			t.Errorf("opened with the wrong key")
		}
	}
}

// TestEnvelopeHeaderSameForEveryKind seals 32 confirmations and 32
// messages from one sender to one queue: their clear part (version and
// sender key) is the same bytes, and at no position do the envelopes of
// one kind agree on a byte unless those of the other kind agree on the
// same byte, so nothing outside the AEAD tells the kinds apart. An
// authentic envelope of an unknown kind is refused.
func TestEnvelopeHeaderSameForEveryKind(t *testing.T) {
	recipient, sender := newKey(), newKey()
	hello := bytes.Repeat([]byte{1}, ratchet.HelloSize)
	msg := bytes.Repeat([]byte{2}, ratchet.MessageSize)
	seal := func(kind byte, hello []byte) []byte {
		t.Helper()
		env, err := sealEnvelope(kind, sender, queue.PublicKey(recipient), hello, msg)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	const n = 32
	var byKind [2][][]byte
	for range n {
		byKind[0] = append(byKind[0], seal(envelopeConfirmation, hello))
		byKind[1] = append(byKind[1], seal(envelopeMessage, nil))
	}
	clearPart := byKind[0][0][:envelopeClearSize]
	for k, envs := range byKind {
		for i, env := range envs {
			if !bytes.Equal(env[:envelopeClearSize], clearPart) {
				t.Fatalf("kind %d, envelope %d: clear part differs", k, i)
			}
		}
	}
	// constant reports whether all envelopes agree at byte p, and on what.
	constant := func(envs [][]byte, p int) (byte, bool) {
		for _, e := range envs[1:] {
			if e[p] != envs[0][p] {
				return 0, false
			}
		}
		return envs[0][p], true
	}
	fixed := 0
	for p := range EnvelopeSize {
		c, cok := constant(byKind[0], p)
		m, mok := constant(byKind[1], p)
		if cok != mok || c != m {
			t.Fatalf("byte %d tells the kinds apart: confirmations %d (constant %v), messages %d (constant %v)", p, c, cok, m, mok)
		}
		if cok {
			fixed++
		}
	}
	if fixed != envelopeClearSize {
		t.Fatalf("%d fixed bytes, want the %d of the clear part", fixed, envelopeClearSize)
	}
	if _, err := openEnvelope(seal(3, nil), recipient); err == nil {
		t.Fatal("an envelope of kind 3 opened")
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	p := payload{seq: 42, kind: payloadText, time: 1700000000000, body: []byte("hi")}
	p.prevHash[3] = 9
	b := p.append(nil)
	got, err := parsePayload(b)
	if err != nil || got.seq != 42 || got.prevHash != p.prevHash || got.kind != payloadText || got.time != p.time || string(got.body) != "hi" {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, b[:payloadHeaderSize-1], append([]byte{0, 0, 0, 0, 0, 0, 0, 0}, b[8:]...)} {
		if _, err := parsePayload(bad); err == nil {
			t.Errorf("parsePayload(%x) accepted", bad)
		}
	}
}

// FuzzParseInvitation checks that the link parser fails only with
// ErrBadLink or ErrOldLink, and that a link it accepts is canonical: it is
// exactly what the parsed invitation encodes to. Seeds: testdata/fuzz
// (checked by TestLinkSeeds) and the ones added here.
func FuzzParseInvitation(f *testing.F) {
	inv := testInvitation(f)
	f.Add(inv.String())
	f.Add(oldLink(inv))
	f.Add("hush:/invite#AQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := parseInvitation(s)
		if err != nil {
			if err != ErrBadLink && err != ErrOldLink {
				t.Fatalf("error %v is neither ErrBadLink nor ErrOldLink", err)
			}
			return
		}
		link := inv.String()
		if link != strings.TrimSpace(s) {
			t.Fatalf("accepted %q, which encodes to %q", s, link)
		}
		again, err := parseInvitation(link)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", link, err)
		}
		if again.String() != link || again.queue != inv.queue || !bytes.Equal(again.keys, inv.keys) {
			t.Fatalf("not stable: %q", link)
		}
	})
}

func FuzzParsePayload(f *testing.F) {
	p := payload{seq: 1, kind: payloadConfirm, time: 5, body: []byte("x")}
	f.Add(p.append(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayload(b)
		if err != nil {
			return
		}
		if got := p.append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzParseQueueInfo(f *testing.F) {
	q := testInvitation(f).queue
	f.Add(q.append(nil))
	f.Add(append(q.append(nil), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, rest, err := parseQueueInfo(b)
		if err != nil {
			return
		}
		if got := append(q.append(nil), rest...); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	recipient, sender := newKey(), newKey()
	env, err := sealEnvelope(envelopeMessage, sender, queue.PublicKey(recipient), nil, make([]byte, ratchet.MessageSize))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env[:200], uint16(0))
	f.Add([]byte{1, 2}, uint16(100))
	f.Fuzz(func(t *testing.T, mask []byte, at uint16) {
		// Arbitrary short inputs, and a valid envelope with mask XORed in
		// at an offset: neither may panic, and a changed one never opens.
		openEnvelope(mask, recipient)
		bad := bytes.Clone(env)
		changed := false
		for i, m := range mask {
			j := (int(at) + i) % len(bad)
			bad[j] ^= m
			changed = changed || m != 0
		}
		if _, err := openEnvelope(bad, recipient); err == nil && changed && !bytes.Equal(bad, env) {
			t.Fatalf("a changed envelope opened")
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestLinkSeeds checks that the link parser's seed files still say what
// their names say: "valid" parses, "old-version" is ErrOldLink, the others
// are ErrBadLink.
func TestLinkSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseInvitation")
	want := map[string]error{"valid": nil, "old-version": ErrOldLink, "truncated": ErrBadLink,
		"no-prefix": ErrBadLink, "one-character-changed": ErrBadLink}
	for name, werr := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		q, ok := strings.CutPrefix(string(b), "go test fuzz v1\nstring(")
		q, ok2 := strings.CutSuffix(q, ")\n")
		s, err := strconv.Unquote(q)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s is not one string in the Go corpus format", name)
		}
		if _, err := parseInvitation(s); err != werr {
			t.Errorf("seed %s: %v, want %v", name, err, werr)
		}
	}
}
