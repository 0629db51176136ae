package torutil

import (
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnionHostVector checks OnionHost against an address computed by tor
// itself: tor 0.4.9.11, given ADD_ONION ED25519-V3 with the expanded
// secret of RFC 8032's test 1 key, answered with this ServiceID.
func TestOnionHostVector(t *testing.T) {
	pub, _ := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	const want = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion"
	if got := OnionHost(pub); got != want {
		t.Fatalf("OnionHost = %q, want %q", got, want)
	}
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	if got := OnionHost(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)); got != want {
		t.Fatalf("OnionHost of the RFC 8032 seed's key = %q, want %q", got, want)
	}
}

func TestOnionHostShape(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		pub, _, _ := ed25519.GenerateKey(nil)
		h := OnionHost(pub)
		if len(h) != 62 || !strings.HasSuffix(h, "d.onion") || strings.ToLower(h) != h {
			// The last character encodes the version byte 3's low bits
			// after the checksum: always "d".
			t.Fatalf("OnionHost = %q: want 56 lower-case base32 characters ending in d, and .onion", h)
		}
		if seen[h] {
			t.Fatalf("two keys gave %s", h)
		}
		seen[h] = true
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "onion.key")
	k1, err := loadOrCreateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := loadOrCreateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("loading the key file gave another key")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); left != nil {
		t.Errorf("temporary files left behind: %v", left)
	}

	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if _, err := loadOrCreateKey(bad); err == nil {
		t.Error("a corrupt key file was accepted")
	}
	if b, _ := os.ReadFile(bad); !strings.Contains(string(b), "AAAA") {
		t.Error("a corrupt key file was overwritten")
	}
	if _, err := loadOrCreateKey(filepath.Join(dir, "missing", "onion.key")); err == nil {
		t.Error("a key file in a missing directory was created")
	}
}

func TestParseKeywords(t *testing.T) {
	got := parseKeywords(`PROGRESS=75 TAG=enough_dirinfo SUMMARY="Loaded enough directory info to build circuits" WARNING="a \"quoted\" word" FLAG`)
	want := map[string]string{
		"PROGRESS": "75",
		"TAG":      "enough_dirinfo",
		"SUMMARY":  "Loaded enough directory info to build circuits",
		"WARNING":  `a "quoted" word`,
		"FLAG":     "",
	}
	if len(got) != len(want) {
		t.Errorf("got %d keywords %q, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestLogTail(t *testing.T) {
	l := newLogTail(3)
	l.Write([]byte("one\ntwo\nthr"))
	l.Write([]byte("ee\nfour\nfi"))
	if got, want := l.String(), "two\nthree\nfour\nfi\n"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	l.Write([]byte(strings.Repeat("x", 2*maxLineLen) + "\n"))
	lines := strings.Split(strings.TrimSuffix(l.String(), "\n"), "\n")
	if n := len(lines[len(lines)-1]); n != maxLineLen {
		t.Errorf("long line kept as %d bytes, want %d", n, maxLineLen)
	}
}
