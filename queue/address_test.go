package queue_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// testFingerprint is the fingerprint of the Ed25519 key whose seed is 32
// bytes counting from 0.
func testFingerprint(t *testing.T) (queue.Fingerprint, string) {
	t.Helper()
	pub := ed25519.NewKeyFromSeed(seq(0, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	fp := queue.FingerprintOf(pub)
	return fp, fp.String()
}

func fingerprintString() string {
	pub := ed25519.NewKeyFromSeed(seq(0, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	return queue.FingerprintOf(pub).String()
}

const testOnion = "abcdefg2abcdefg3abcdefg4abcdefg5abcdefg6abcdefg7abcdefgh.onion"

func TestFingerprint(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(seq(0, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	fp := queue.FingerprintOf(pub)
	if fp != sha256.Sum256(pub) {
		t.Error("FingerprintOf is not SHA-256 of the raw public key")
	}
	s := fp.String()
	if len(s) != 43 || s != base64.RawURLEncoding.EncodeToString(fp[:]) {
		t.Errorf("Fingerprint.String = %q", s)
	}
}

func TestParseAddressValid(t *testing.T) {
	fp, f := testFingerprint(t)
	long63 := strings.Repeat("a", 63)
	host253 := strings.Repeat(strings.Repeat("b", 49)+".", 5)[:250] + "com" // 253 characters
	pw128 := strings.Repeat("Az09._~-", 16)
	cases := []struct {
		in        string
		want      queue.Address
		canonical string // String(); "" means in itself
	}{
		{"hush://" + f + "@relay.example.com",
			queue.Address{Fingerprint: fp, Host: "relay.example.com", Port: 5223},
			"hush://" + f + "@relay.example.com:5223"},
		{"hush://" + f + "@0.0.0.0:1",
			queue.Address{Fingerprint: fp, Host: "0.0.0.0", Port: 1}, ""},
		{"hush://" + f + "@255.255.255.255:1",
			queue.Address{Fingerprint: fp, Host: "255.255.255.255", Port: 1}, ""},
		{"hush://" + f + "@10.200.9.100:1",
			queue.Address{Fingerprint: fp, Host: "10.200.9.100", Port: 1}, ""},
		{"hush://" + f + "@1.example.123a:1",
			queue.Address{Fingerprint: fp, Host: "1.example.123a", Port: 1}, ""},
		{"hush://" + f + "@relay.example.com:443",
			queue.Address{Fingerprint: fp, Host: "relay.example.com", Port: 443}, ""},
		{"hush://" + f + ":s3cret@relay.example.com:5223",
			queue.Address{Fingerprint: fp, Password: "s3cret", Host: "relay.example.com", Port: 5223}, ""},
		{"hush://" + f + ":" + pw128 + "@h:1",
			queue.Address{Fingerprint: fp, Password: pw128, Host: "h", Port: 1}, ""},
		{"hush://" + f + "@127.0.0.1:65535",
			queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: 65535}, ""},
		{"hush://" + f + "@[::1]:5223",
			queue.Address{Fingerprint: fp, Host: "::1", Port: 5223}, ""},
		{"hush://" + f + "@[::1]",
			queue.Address{Fingerprint: fp, Host: "::1", Port: 5223}, "hush://" + f + "@[::1]:5223"},
		{"hush://" + f + "@[2001:db8::7]:80",
			queue.Address{Fingerprint: fp, Host: "2001:db8::7", Port: 80}, ""},
		{"hush://" + f + "@relay.example.com," + testOnion + ":5223",
			queue.Address{Fingerprint: fp, Host: "relay.example.com", Onion: testOnion, Port: 5223}, ""},
		{"hush://" + f + ":pw@[2001:db8::7]," + testOnion,
			queue.Address{Fingerprint: fp, Password: "pw", Host: "2001:db8::7", Onion: testOnion, Port: 5223},
			"hush://" + f + ":pw@[2001:db8::7]," + testOnion + ":5223"},
		{"hush://" + f + "@" + testOnion + ":9999",
			queue.Address{Fingerprint: fp, Host: testOnion, Port: 9999}, ""},
		{"hush://" + f + "@localhost:5223",
			queue.Address{Fingerprint: fp, Host: "localhost", Port: 5223}, ""},
		{"hush://" + f + "@" + long63 + ".x-1.a0:5223",
			queue.Address{Fingerprint: fp, Host: long63 + ".x-1.a0", Port: 5223}, ""},
		{"hush://" + f + "@" + host253 + ":5223",
			queue.Address{Fingerprint: fp, Host: host253, Port: 5223}, ""},
		{"hush://" + f + "@onion:5223", // a name, not an onion host
			queue.Address{Fingerprint: fp, Host: "onion", Port: 5223}, ""},
	}
	if len(host253) != 253 {
		t.Fatalf("host253 has %d characters", len(host253))
	}
	for _, c := range cases {
		a, err := queue.ParseAddress(c.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", c.in, err)
			continue
		}
		if a != c.want {
			t.Errorf("ParseAddress(%q) = %+v\nwant %+v", c.in, a, c.want)
		}
		canonical := c.canonical
		if canonical == "" {
			canonical = c.in
		}
		if a.String() != canonical {
			t.Errorf("String() = %q, want %q", a.String(), canonical)
		}
		if b, err := queue.ParseAddress(a.String()); err != nil || b != a {
			t.Errorf("ParseAddress(String()) = %+v, %v", b, err)
		}
	}
}

func TestParseAddressInvalid(t *testing.T) {
	_, f := testFingerprint(t)
	// A 43-character encoding whose last character carries non-zero unused
	// bits: not the canonical encoding of any fingerprint.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	loose := f[:42] + string(alphabet[strings.IndexByte(alphabet, f[42])|1])
	in := []string{
		"",
		"hush://",
		"hush:/" + f + "@h",
		"HUSH://" + f + "@h",
		"https://" + f + "@h",
		" hush://" + f + "@h",
		"hush://" + f + "@h ",
		"hush://" + f,
		"hush://" + f + "h",
		"hush://@h",
		"hush://" + f[:42] + "@h",
		"hush://" + f + "A@h",
		"hush://" + f + "=@h",
		"hush://" + f[:10] + "+" + f[11:] + "@h", // standard, not URL, base64
		"hush://" + f[:10] + "/" + f[11:] + "@h",
		"hush://" + loose + "@h",
		"hush://" + strings.Repeat("!", 43) + "@h",
		// passwords
		"hush://" + f + ":@h",
		"hush://" + f + ":" + strings.Repeat("p", 129) + "@h",
		"hush://" + f + ":p w@h",
		"hush://" + f + ":p%20w@h",
		"hush://" + f + ":p:w@h",
		"hush://" + f + ":p/w@h",
		"hush://" + f + ":p@ss@h",
		"hush://" + f + ":pä@h",
		// hosts
		"hush://" + f + "@",
		"hush://" + f + "@:5223",
		"hush://" + f + "@Relay.example.com",
		"hush://" + f + "@relay_1.example.com",
		"hush://" + f + "@-relay.example.com",
		"hush://" + f + "@relay-.example.com",
		"hush://" + f + "@relay..example.com",
		"hush://" + f + "@relay.example.com.",
		"hush://" + f + "@.relay.example.com",
		"hush://" + f + "@" + strings.Repeat("a", 64) + ".com",
		"hush://" + f + "@" + strings.Repeat("a.", 126) + "ab",
		"hush://" + f + "@relay.example.com/path",
		"hush://" + f + "@relay.example.com?x=1",
		"hush://" + f + "@relay.example.com#f",
		"hush://" + f + "@relay.exämple.com",
		"hush://" + f + "@relay example.com",
		// IPv4: one spelling (section 4)
		"hush://" + f + "@127.000.000.001",
		"hush://" + f + "@127.0.0.01",
		"hush://" + f + "@2130706433",
		"hush://" + f + "@999.1.1.1",
		"hush://" + f + "@1.2.3.256",
		"hush://" + f + "@1.2.3",
		"hush://" + f + "@1.2.3.4.5",
		"hush://" + f + "@0x7f.0.0.1",
		"hush://" + f + "@relay.123",
		"hush://" + f + "@a.1.2.3",
		// ports
		"hush://" + f + "@h:",
		"hush://" + f + "@h:0",
		"hush://" + f + "@h:65536",
		"hush://" + f + "@h:99999999999999999999",
		"hush://" + f + "@h:05",
		"hush://" + f + "@h:+5",
		"hush://" + f + "@h:-1",
		"hush://" + f + "@h:5a",
		"hush://" + f + "@h: 5",
		"hush://" + f + "@h:0x10",
		"hush://" + f + "@h:5223:5223",
		// IPv6
		"hush://" + f + "@::1",
		"hush://" + f + "@2001:db8::1",
		"hush://" + f + "@[::1",
		"hush://" + f + "@::1]",
		"hush://" + f + "@[::1]x",
		"hush://" + f + "@[::1]:",
		"hush://" + f + "@[]",
		"hush://" + f + "@[]:5223",
		"hush://" + f + "@[1.2.3.4]",
		"hush://" + f + "@[::ffff:1.2.3.4]",
		"hush://" + f + "@[2001:DB8::1]",
		"hush://" + f + "@[2001:db8:0:0:0:0:0:1]",
		"hush://" + f + "@[fe80::1%eth0]",
		"hush://" + f + "@[[::1]]",
		"hush://" + f + "@[relay.example.com]",
		// onion hosts
		"hush://" + f + "@abc.onion",
		"hush://" + f + "@" + strings.ToUpper(testOnion[:56]) + ".onion",
		"hush://" + f + "@" + testOnion[:55] + ".onion",
		"hush://" + f + "@" + testOnion[:56] + "a.onion",
		"hush://" + f + "@" + strings.Repeat("1", 56) + ".onion",
		"hush://" + f + "@" + strings.Repeat("8", 56) + ".onion",
		"hush://" + f + "@x." + testOnion,
		"hush://" + f + "@h,",
		"hush://" + f + "@h,example.com",
		"hush://" + f + "@h,abc.onion",
		"hush://" + f + "@" + testOnion + "," + testOnion,
		"hush://" + f + "@h," + testOnion + "," + testOnion,
		"hush://" + f + "@," + testOnion,
		"hush://" + f + "@h,[::1]",
		"hush://" + f + "@h," + testOnion + ":",
	}
	for _, s := range in {
		a, err := queue.ParseAddress(s)
		if !errors.Is(err, queue.ErrAddress) {
			t.Errorf("ParseAddress(%q) = %+v, %v; want ErrAddress", s, a, err)
			continue
		}
		if a != (queue.Address{}) {
			t.Errorf("ParseAddress(%q) returned a non-zero Address with an error", s)
		}
		if !strings.HasPrefix(err.Error(), "invalid relay address: ") {
			t.Errorf("ParseAddress(%q) error %q gives no reason", s, err)
		}
	}
}

func TestAddressMethods(t *testing.T) {
	_, f := testFingerprint(t)
	parse := func(s string) queue.Address {
		t.Helper()
		a, err := queue.ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := parse("hush://" + f + ":pw@relay.example.com," + testOnion + ":7000")
	if got := a.WithoutPassword(); got.Password != "" || got.String() != "hush://"+f+"@relay.example.com,"+testOnion+":7000" {
		t.Errorf("WithoutPassword = %v", got)
	}
	if a.Password != "pw" {
		t.Error("WithoutPassword changed its receiver")
	}
	if got := a.HostPort(); got != "relay.example.com:7000" {
		t.Errorf("HostPort = %q", got)
	}
	if got := a.OnionHostPort(); got != testOnion+":7000" {
		t.Errorf("OnionHostPort = %q", got)
	}
	v6 := parse("hush://" + f + "@[2001:db8::7]")
	if got := v6.HostPort(); got != "[2001:db8::7]:5223" {
		t.Errorf("IPv6 HostPort = %q", got)
	}
	if got := v6.OnionHostPort(); got != "" {
		t.Errorf("OnionHostPort with no onion host = %q", got)
	}
	only := parse("hush://" + f + "@" + testOnion)
	if got := only.OnionHostPort(); got != testOnion+":5223" || got != only.HostPort() {
		t.Errorf("onion-only OnionHostPort = %q", got)
	}
}

func TestIsOnion(t *testing.T) {
	for host, want := range map[string]bool{
		testOnion:                                 true,
		strings.Repeat("a", 56) + ".onion":        true,
		strings.Repeat("2", 56) + ".onion":        true,
		strings.Repeat("a", 55) + ".onion":        false,
		strings.Repeat("a", 57) + ".onion":        false,
		strings.Repeat("A", 56) + ".onion":        false,
		strings.Repeat("1", 56) + ".onion":        false,
		strings.Repeat("a", 56) + ".ONION":        false,
		strings.Repeat("a", 56) + ".onion.":       false,
		strings.Repeat("a", 56):                   false,
		"x." + strings.Repeat("a", 56) + ".onion": false,
		".onion": false,
		"":       false,
	} {
		if got := queue.IsOnion(host); got != want {
			t.Errorf("IsOnion(%q) = %v", host, got)
		}
	}
}

func TestValidPassword(t *testing.T) {
	for pw, want := range map[string]bool{
		"a":                                     true,
		"ABCxyz019._~-":                         true,
		strings.Repeat("x", 128):                true,
		"":                                      false,
		strings.Repeat("x", 129):                false,
		"a b":                                   false,
		"a:b":                                   false,
		"a@b":                                   false,
		"a/b":                                   false,
		"a%b":                                   false,
		"a+b":                                   false,
		"ä":                                     false,
		"a\x00":                                 false,
		strings.Repeat("x", 127) + "\u00e9"[:1]: false,
	} {
		if got := queue.ValidPassword(pw); got != want {
			t.Errorf("ValidPassword(%q) = %v", pw, got)
		}
	}
}
