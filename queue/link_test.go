package queue_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/hushrelay/hush/queue"
)

// linkVector is one link data vector (PROTOCOL.md section 21.2): the link
// key, link ID and data of a content.
type linkVector struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Content hexBytes `json:"content"`
	LinkKey hexBytes `json:"linkKey"`
	LinkID  hexBytes `json:"linkID"`
	DataKey hexBytes `json:"dataKey"`
	Data    hexBytes `json:"data"`
	// Short is the short link of the data on the relay of the examples
	// (fingerprint 0x00..0x1f, 127.0.0.1:5223).
	Short string `json:"short"`
}

func linkRelay() queue.Address {
	var fp queue.Fingerprint
	copy(fp[:], seq(0, len(fp)))
	return queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: queue.DefaultPort}
}

func generateLinkVectors(t *testing.T) []linkVector {
	var out []linkVector
	for _, in := range []struct {
		name    string
		kind    queue.LinkKind
		content []byte
	}{
		{"invitation", queue.LinkInvitation, []byte("an invitation's bytes")},
		{"address-empty", queue.LinkAddress, []byte{}},
		{"max", queue.LinkInvitation, seq(0x01, queue.MaxLinkContent)},
	} {
		k, data, err := queue.SealLinkData(in.kind, in.content)
		if err != nil {
			t.Fatal(err)
		}
		id, dk := queue.LinkKeys(k)
		out = append(out, linkVector{
			Name: in.name, Kind: string(rune(in.kind)), Content: in.content, LinkKey: k[:], LinkID: id[:],
			DataKey: dk[:], Data: data,
			Short: queue.ShortLink{Relay: linkRelay(), Kind: in.kind, Key: k}.String(),
		})
	}
	return out
}

func TestLinkVectors(t *testing.T) {
	v := loadVectors(t)
	if len(v.Links) == 0 {
		t.Fatal("no link vectors")
	}
	for _, lv := range v.Links {
		kind := queue.LinkKind(lv.Kind[0])
		k, data, err := queue.SealLinkData(kind, lv.Content)
		if err != nil {
			t.Fatalf("%s: %v", lv.Name, err)
		}
		if !bytes.Equal(k[:], lv.LinkKey) || !bytes.Equal(data, lv.Data) {
			t.Errorf("%s: SealLinkData differs from the vector", lv.Name)
		}
		id, dk := queue.LinkKeys(k)
		if !bytes.Equal(id[:], lv.LinkID) || !bytes.Equal(dk[:], lv.DataKey) {
			t.Errorf("%s: LinkKeys differ from the vector", lv.Name)
		}
		got, err := queue.OpenLinkData(k, kind, lv.Data)
		if err != nil || !bytes.Equal(got, lv.Content) {
			t.Errorf("%s: OpenLinkData = %x, %v", lv.Name, got, err)
		}
		l, err := queue.ParseShortLink(lv.Short)
		if err != nil || l.Key != k || l.Kind != kind || l.ID() != id || l.Relay != linkRelay() {
			t.Errorf("%s: ParseShortLink(%q) = %+v, %v", lv.Name, lv.Short, l, err)
		}
	}
}

// TestLinkDataTamper: every bit flipped in the data, the wrong key or
// kind, and data that a holder of the link key seals for other content
// are refused.
func TestLinkDataTamper(t *testing.T) {
	k, data, err := queue.SealLinkData(queue.LinkInvitation, []byte("the real invitation"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(data) * 8 {
		d := bytes.Clone(data)
		d[i/8] ^= 1 << (i % 8)
		if _, err := queue.OpenLinkData(k, queue.LinkInvitation, d); !errors.Is(err, queue.ErrLinkData) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	if _, err := queue.OpenLinkData(k, queue.LinkAddress, data); !errors.Is(err, queue.ErrLinkData) {
		t.Errorf("the wrong kind: %v", err)
	}
	k2 := k
	k2[0] ^= 1
	if _, err := queue.OpenLinkData(k2, queue.LinkInvitation, data); !errors.Is(err, queue.ErrLinkData) {
		t.Errorf("the wrong key: %v", err)
	}
	if _, err := queue.OpenLinkData(k, queue.LinkInvitation, data[1:]); !errors.Is(err, queue.ErrLinkData) {
		t.Errorf("short data: %v", err)
	}
	// Someone who holds the link (so the data key) but not a second
	// preimage of SHA-256 cannot make other data that opens under it.
	forged := forgeLinkData(t, k, []byte("the attacker's invitation"))
	if _, err := queue.OpenLinkData(k, queue.LinkInvitation, forged); !errors.Is(err, queue.ErrLinkData) {
		t.Errorf("data forged with the link's data key: %v", err)
	}
	if _, _, err := queue.SealLinkData(queue.LinkInvitation, make([]byte, queue.MaxLinkContent+1)); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("content over MaxLinkContent: %v", err)
	}
	if _, _, err := queue.SealLinkData('x', nil); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("unknown kind: %v", err)
	}
}

// forgeLinkData seals content as link data under the data key of k, as
// section 21.2 describes, without k being its hash.
func forgeLinkData(t *testing.T, k queue.LinkKey, content []byte) []byte {
	t.Helper()
	id, dk := queue.LinkKeys(k)
	plain := cat(byte(queue.LinkInvitation), u16(len(content)), content)
	plain = append(plain, make([]byte, queue.LinkDataSize-16-len(plain))...)
	return xsealForTest(t, dk[:], id[:], plain)
}

func TestShortLink(t *testing.T) {
	k, _, err := queue.SealLinkData(queue.LinkAddress, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, relay := range []string{
		"hush://" + fingerprintString() + "@127.0.0.1:5223",
		"hush://" + fingerprintString() + "@relay.example.com:5223",
		"hush://" + fingerprintString() + "@[2001:db8::7]:443",
	} {
		a, err := queue.ParseAddress(relay)
		if err != nil {
			t.Fatal(err)
		}
		l := queue.ShortLink{Relay: a, Kind: queue.LinkAddress, Key: k}
		s := l.String()
		// The target of section 21.3: about 100 characters at most for a
		// relay of a short host name.
		if len(s) > 100 {
			t.Errorf("%s: %d characters", s, len(s))
		}
		if !queue.IsShortLink(s) {
			t.Errorf("IsShortLink(%q) = false", s)
		}
		if got, err := queue.ParseShortLink(s); err != nil || got != l {
			t.Errorf("ParseShortLink(%q) = %+v, %v", s, got, err)
		}
		t.Logf("%d characters: %s", len(s), s)
	}
	a := linkRelay()
	a.Password = "pw"
	good := queue.ShortLink{Relay: linkRelay(), Kind: queue.LinkInvitation, Key: k}.String()
	if withPW := (queue.ShortLink{Relay: a, Kind: queue.LinkInvitation, Key: k}).String(); withPW != good {
		t.Errorf("String kept the password: %s", withPW)
	}
	for _, bad := range []string{
		strings.Replace(good, "@", ":pw@", 1),               // a password
		strings.Replace(good, ":5223/", "/", 1),             // not canonical
		strings.Replace(good, "/i#", "/x#", 1),              // unknown kind
		strings.Replace(good, "/i#", "/ii#", 1),             // kind of two letters
		strings.Replace(good, "/i#", "#", 1),                // no kind
		good[:len(good)-1],                                  // a key cut short
		good + "A",                                          // a key too long
		good[:len(good)-1] + "B",                            // non-canonical base64 (unused low bits set)
		strings.Replace(good, "#", "", 1),                   // no key
		"hush://" + fingerprintString() + "@127.0.0.1:5223", // an address
		"hush:/invite#" + strings.Repeat("A", 40),           // a long link
	} {
		if _, err := queue.ParseShortLink(bad); !errors.Is(err, queue.ErrShortLink) {
			t.Errorf("ParseShortLink(%q) = %v", bad, err)
		}
	}
	if addr := "hush://" + fingerprintString() + "@127.0.0.1:5223"; queue.IsShortLink(addr) {
		t.Error("IsShortLink of a relay address")
	}
}

func shortLinkSeeds() []stringSeed {
	var k queue.LinkKey
	copy(k[:], seq(0x40, queue.LinkKeySize))
	good := queue.ShortLink{Relay: linkRelay(), Kind: queue.LinkInvitation, Key: k}.String()
	return []stringSeed{
		{"invitation", good},
		{"address", strings.Replace(good, "/i#", "/a#", 1)},
		{"onion", "hush://" + fingerprintString() + "@" + testOnion + ":5223/a#" + good[len(good)-22:]},
		{"no-kind", strings.Replace(good, "/i#", "#", 1)},
		{"password", strings.Replace(good, "@", ":pw@", 1)},
	}
}

func FuzzParseShortLink(f *testing.F) {
	for _, s := range shortLinkSeeds() {
		f.Add(s.s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := queue.ParseShortLink(s)
		if err != nil {
			if !errors.Is(err, queue.ErrShortLink) || l != (queue.ShortLink{}) {
				t.Fatalf("ParseShortLink(%q) = %+v, %v", s, l, err)
			}
			return
		}
		if l.Relay.Password != "" {
			t.Fatalf("ParseShortLink(%q) kept a password", s)
		}
		if got := l.String(); got != strings.TrimSpace(s) {
			t.Fatalf("ParseShortLink(%q) re-encodes as %q", s, got)
		}
		if !queue.IsShortLink(s) {
			t.Fatalf("IsShortLink(%q) = false for a short link", s)
		}
	})
}

type linkDataSeed struct {
	name string
	data []byte
	flip uint32
}

// linkDataSeeds are link data (sealed under fuzzLinkKey's content) with a
// bit to flip (flip 0 flips none).
func linkDataSeeds() []linkDataSeed {
	_, data, err := queue.SealLinkData(queue.LinkInvitation, []byte("fuzz"))
	if err != nil {
		panic(err)
	}
	return []linkDataSeed{
		{"valid", data, 0},
		{"flip-first", data, 1},
		{"flip-last", data, uint32(len(data) * 8)},
		{"short", data[:100], 0},
	}
}

func FuzzOpenLinkData(f *testing.F) {
	for _, s := range linkDataSeeds() {
		f.Add(s.data, s.flip)
	}
	k, want, err := queue.SealLinkData(queue.LinkInvitation, []byte("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, flip uint32) {
		d := bytes.Clone(data)
		if flip > 0 && len(d) > 0 {
			i := int(flip-1) % (len(d) * 8)
			d[i/8] ^= 1 << (i % 8)
		}
		content, err := queue.OpenLinkData(k, queue.LinkInvitation, d)
		if err != nil {
			if !errors.Is(err, queue.ErrLinkData) {
				t.Fatalf("OpenLinkData error %v is not ErrLinkData", err)
			}
			return
		}
		if !bytes.Equal(d, want) || string(content) != "fuzz" {
			t.Fatalf("OpenLinkData accepted other data (%q)", content)
		}
	})
}

func xsealForTest(t *testing.T, key, nonce, plain []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	return aead.Seal(nil, nonce, plain, nil)
}
