package client

import (
	"bytes"
	"encoding/base64"
	"errors"
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
	// A link with a password in the address is refused: links never carry it.
	pw := inv
	pw.queue.relay.Password = "secret"
	b := []byte{linkVersion}
	a := pw.queue.relay.String()
	b = append(b, byte(len(a)>>8), byte(len(a)))
	b = append(b, a...)
	b = append(b, pw.queue.senderID[:]...)
	b = append(b, pw.queue.e2eKey[:]...)
	b = append(b, pw.keys...)
	if _, err := parseInvitation(linkPrefix + b64(b)); !errors.Is(err, ErrBadLink) {
		t.Errorf("a link with a password: %v", err)
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

func FuzzParseInvitation(f *testing.F) {
	f.Add(testInvitation(f).String())
	f.Add("hush:/invite#AQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := parseInvitation(s)
		if err != nil {
			return
		}
		link := inv.String()
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
