package queue_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"

	"github.com/hushrelay/hush/queue"
)

// The fuzz targets check a round-trip property of every parser: whatever a
// parser accepts re-encodes to exactly the same bytes, so each value has one
// encoding. Blocks and handshake blocks are BlockSize bytes; to keep the
// corpus small and let the mutator reach every block, an input shorter than
// a block is padded with zeros to BlockSize (every block is some input
// followed by zeros), and an input of any other length is parsed as is.
//
// Seeds: f.Add below, and files in the Go corpus format under
// testdata/fuzz/<FuzzName>/ (written by TestFuzzSeedFiles with -update).
// Run one target with, for example:
//
//	go test -run='^$' -fuzz='^FuzzParseBlock$' -fuzztime=20s ./queue

func padTo(data []byte, size int) []byte {
	if len(data) >= size {
		return data
	}
	b := make([]byte, size)
	copy(b, data)
	return b
}

// trimZeros drops trailing zero bytes: the inverse of padTo for seeds.
func trimZeros(b []byte) []byte {
	return bytes.TrimRight(b, "\x00")
}

func FuzzParseBlock(f *testing.F) {
	for _, s := range blockSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) != queue.BlockSize {
			if _, err := queue.ParseBlock(nil, data); !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("ParseBlock accepted %d bytes", len(data))
			}
		}
		block := padTo(data, queue.BlockSize)
		txs, err := queue.ParseBlock(nil, block)
		if err != nil {
			if !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("ParseBlock error %v is not ErrSyntax", err)
			}
			return
		}
		if len(block) != queue.BlockSize || len(txs) == 0 || len(txs) > queue.MaxTransmissions {
			t.Fatalf("ParseBlock accepted %d bytes with %d transmissions", len(block), len(txs))
		}
		var bb queue.BlockBuilder
		for i, tx := range txs {
			if !bb.Fits(len(tx)) || !bb.Add(tx) {
				t.Fatalf("transmission %d (%d bytes) of a parsed block does not fit a builder", i, len(tx))
			}
		}
		if got := bb.AppendBlock(nil); !bytes.Equal(got, block) {
			t.Fatalf("rebuilt block differs")
		}
		for _, tx := range txs {
			queue.ParseTransmission(tx) // must not panic
		}
	})
}

func FuzzParseTransmission(f *testing.F) {
	for _, s := range transmissionSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		tx, signed, err := queue.ParseTransmission(raw)
		if err != nil {
			if !errors.Is(err, queue.ErrSyntax) || signed != nil {
				t.Fatalf("ParseTransmission error %v (signed %d bytes)", err, len(signed))
			}
			return
		}
		for name, f := range map[string]struct {
			b    []byte
			size int
		}{"auth": {tx.Auth, queue.AuthSize}, "corrID": {tx.CorrID, queue.CorrIDSize}, "entity": {tx.Entity, queue.IDSize}} {
			if f.b != nil && len(f.b) != f.size {
				t.Fatalf("%s of %d bytes", name, len(f.b))
			}
		}
		if got := tx.Append(nil); !bytes.Equal(got, raw) {
			t.Fatalf("Append = %x\nwant %x", trim(got), trim(raw))
		}
		if got := tx.AppendSigned(nil); !bytes.Equal(got, signed) {
			t.Fatalf("AppendSigned differs from the signed part")
		}
		if len(raw)-len(signed) != 1+len(tx.Auth) || !bytes.Equal(raw[1+len(tx.Auth):], signed) {
			t.Fatalf("signed part is not everything after the authenticator")
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range commandSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := queue.ParseCommand(b)
		if err != nil {
			if !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("ParseCommand error %v is not ErrSyntax", err)
			}
			return
		}
		if strings.HasPrefix(c.Tag.String(), "Tag(") {
			t.Fatalf("accepted unknown tag %v", c.Tag)
		}
		if c.Tag == queue.TagERR && strings.HasPrefix(c.Error.String(), "ErrorCode(") {
			t.Fatalf("accepted unknown error code %v", c.Error)
		}
		if c.Tag == queue.TagMSG && len(c.Body) != queue.SealedSize {
			t.Fatalf("accepted MSG body of %d bytes", len(c.Body))
		}
		if len(c.Password) > queue.MaxPasswordSize {
			t.Fatalf("accepted password of %d bytes", len(c.Password))
		}
		if got := c.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("Append = %x\nwant %x", trim(got), trim(b))
		}
	})
}

func FuzzParseServerHello(f *testing.F) {
	for _, s := range serverHelloSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		block := padTo(data, queue.BlockSize)
		h, err := queue.ParseServerHello(block)
		if err != nil {
			if !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("error %v is not ErrSyntax", err)
			}
			return
		}
		if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
			t.Fatalf("accepted version range [%d, %d]", h.MinVersion, h.MaxVersion)
		}
		if got := h.AppendBlock(nil); !bytes.Equal(got, block) {
			t.Fatalf("AppendBlock differs from the parsed block")
		}
		if v, ok := queue.Negotiate(h.MinVersion, h.MaxVersion); ok &&
			(v < h.MinVersion || v > h.MaxVersion || v < queue.MinVersion || v > queue.MaxVersion) {
			t.Fatalf("Negotiate(%d, %d) = %d", h.MinVersion, h.MaxVersion, v)
		}
	})
}

func FuzzParseClientHello(f *testing.F) {
	for _, s := range clientHelloSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		block := padTo(data, queue.BlockSize)
		h, err := queue.ParseClientHello(block)
		if err != nil {
			if !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("error %v is not ErrSyntax", err)
			}
			return
		}
		if h.Version == 0 {
			t.Fatal("accepted version 0")
		}
		if got := h.AppendBlock(nil); !bytes.Equal(got, block) {
			t.Fatalf("AppendBlock differs from the parsed block")
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range addressSeeds() {
		f.Add(s.s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := queue.ParseAddress(s)
		if err != nil {
			if !errors.Is(err, queue.ErrAddress) {
				t.Fatalf("ParseAddress(%q) error %v does not wrap ErrAddress", s, err)
			}
			if a != (queue.Address{}) {
				t.Fatalf("ParseAddress(%q) returned an address with an error", s)
			}
			return
		}
		if a.Port == 0 || a.Host == "" || (a.Password != "" && !queue.ValidPassword(a.Password)) {
			t.Fatalf("ParseAddress(%q) = %+v", s, a)
		}
		if a.Onion != "" && (!queue.IsOnion(a.Onion) || queue.IsOnion(a.Host)) {
			t.Fatalf("ParseAddress(%q): onion host %q after host %q", s, a.Onion, a.Host)
		}
		s1 := a.String()
		b, err := queue.ParseAddress(s1)
		if err != nil {
			t.Fatalf("ParseAddress(%q) ok, but its String %q does not parse: %v", s, s1, err)
		}
		if b != a {
			t.Fatalf("ParseAddress(%q) = %+v, but String %q parses as %+v", s, a, s1, b)
		}
		if s2 := b.String(); s2 != s1 {
			t.Fatalf("String is not canonical: %q then %q", s1, s2)
		}
		// The only freedom in an address is leaving out the default port.
		if s1 != s && s1 != s+fmt.Sprintf(":%d", queue.DefaultPort) {
			t.Fatalf("%q has canonical form %q", s, s1)
		}
		// One spelling of IPv4 (section 4): a numeric host is a dotted quad
		// as netip prints it.
		if labels := strings.Split(a.Host, "."); strings.Trim(labels[len(labels)-1], "0123456789") == "" {
			if ip, err := netip.ParseAddr(a.Host); err != nil || !ip.Is4() || ip.String() != a.Host {
				t.Fatalf("ParseAddress(%q) accepted the numeric host %q", s, a.Host)
			}
		}
		a.HostPort()
		a.OnionHostPort()
		if w := a.WithoutPassword(); w.Password != "" {
			t.Fatal("WithoutPassword kept the password")
		} else if _, err := queue.ParseAddress(w.String()); err != nil {
			t.Fatalf("WithoutPassword().String() %q does not parse: %v", w.String(), err)
		}
	})
}

// fuzzMessageKey and fuzzMessageID are fixed: FuzzOpenMessage explores the
// sealed bytes, the body and the timestamp.
var (
	fuzzMessageKey = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	fuzzMessageID  = queue.ID{0xaa, 0xbb, 0xcc}
)

func FuzzOpenMessage(f *testing.F) {
	for _, s := range openMessageSeeds() {
		f.Add(s.data, s.body, s.ts, s.flip)
	}
	f.Fuzz(func(t *testing.T, data, body []byte, ts int64, flip uint32) {
		k := fuzzMessageKey
		// data as a sealed message, as given and padded to SealedSize:
		// never a panic, only ErrSyntax (wrong size) or ErrOpen, unless it
		// happens to be a real sealed message, which must then seal back to
		// the same bytes.
		for _, s := range [][]byte{data, padTo(data, queue.SealedSize)} {
			gotTS, got, err := queue.OpenMessage(&k, fuzzMessageID, s)
			// In place, the same outcome.
			inTS, in, inErr := queue.OpenMessageInPlace(&k, fuzzMessageID, bytes.Clone(s))
			if inTS != gotTS || !bytes.Equal(in, got) || !errors.Is(inErr, err) {
				t.Fatalf("OpenMessageInPlace = %d, %d bytes, %v; OpenMessage = %d, %d bytes, %v", inTS, len(in), inErr, gotTS, len(got), err)
			}
			switch {
			case err == nil:
				if again := queue.SealMessage(nil, &k, fuzzMessageID, gotTS, got); !bytes.Equal(again, s) {
					t.Fatal("an opened message does not seal back to the same bytes")
				}
			case len(s) != queue.SealedSize:
				if !errors.Is(err, queue.ErrSyntax) {
					t.Fatalf("%d bytes: %v, want ErrSyntax", len(s), err)
				}
			case !errors.Is(err, queue.ErrOpen) && !errors.Is(err, queue.ErrSyntax):
				t.Fatalf("OpenMessage error %v", err)
			}
		}
		// Seal then open gives the body back.
		if len(body) > queue.MaxMessageSize {
			body = body[:queue.MaxMessageSize]
		}
		sealed := queue.SealMessage(nil, &k, fuzzMessageID, ts, body)
		if len(sealed) != queue.SealedSize {
			t.Fatalf("sealed %d bytes", len(sealed))
		}
		gotTS, got, err := queue.OpenMessage(&k, fuzzMessageID, sealed)
		if err != nil || gotTS != ts || !bytes.Equal(got, body) {
			t.Fatalf("round trip: %d, %d bytes, %v", gotTS, len(got), err)
		}
		gotTS, got, err = queue.OpenMessageInPlace(&k, fuzzMessageID, bytes.Clone(sealed))
		if err != nil || gotTS != ts || !bytes.Equal(got, body) {
			t.Fatalf("round trip in place: %d, %d bytes, %v", gotTS, len(got), err)
		}
		// data as a tamper mask XORed into the sealed message: any change
		// is ErrOpen.
		tampered := bytes.Clone(sealed)
		changed := false
		for i := 0; i < len(data) && i < len(tampered); i++ {
			tampered[i] ^= data[i]
			changed = changed || data[i] != 0
		}
		if _, _, err := queue.OpenMessage(&k, fuzzMessageID, tampered); changed != errors.Is(err, queue.ErrOpen) || (!changed && err != nil) {
			t.Fatalf("changed %v: OpenMessage = %v", changed, err)
		}
		// And so is any one flipped bit.
		bit := int(flip % uint32(len(sealed)*8))
		sealed[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenMessage(&k, fuzzMessageID, sealed); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d flipped: %v, want ErrOpen", bit, err)
		}
	})
}

// Seeds. Each has a name, used for its file under testdata/fuzz.

type bytesSeed struct {
	name string
	data []byte
}

func blockOf(txs ...[]byte) []byte {
	var bb queue.BlockBuilder
	for _, tx := range txs {
		if !bb.Add(tx) {
			panic("seed does not fit a block")
		}
	}
	return bb.AppendBlock(nil)
}

func seedTransmissions() [][]byte {
	corr, entity := seq(0xc0, 24), seq(0xe0, 24)
	auth := seq(0xa0, 32)
	return [][]byte{
		(&queue.Transmission{Auth: auth, CorrID: corr, Entity: entity, Command: queue.Command{Tag: queue.TagSEND, Body: []byte("hello")}}).Append(nil),
		(&queue.Transmission{Auth: auth, CorrID: corr, Command: queue.Command{Tag: queue.TagNEW, RecipientKey: key(1), RecipientDHKey: key(2), Password: []byte("pw")}}).Append(nil),
		(&queue.Transmission{Auth: auth, CorrID: corr, Entity: entity, Command: queue.Command{Tag: queue.TagSUB}}).Append(nil),
		(&queue.Transmission{Command: queue.Command{Tag: queue.TagPING}}).Append(nil),
		(&queue.Transmission{CorrID: corr, Entity: entity, Command: queue.Command{Tag: queue.TagERR, Error: queue.AUTH}}).Append(nil),
		(&queue.Transmission{CorrID: corr, Command: queue.Command{Tag: queue.TagIDS, RecipientID: id(1), SenderID: id(2), RelayDHKey: key(3)}}).Append(nil),
	}
}

func blockSeeds() []bytesSeed {
	txs := seedTransmissions()
	nonZeroPadding := blockOf([]byte("hello"))
	nonZeroPadding[20] = 1
	return []bytesSeed{
		{"one-transmission", trimZeros(blockOf(txs[0]))},
		{"several-transmissions", trimZeros(blockOf(txs...))},
		{"tiny-transmissions", trimZeros(blockOf([]byte{1}, []byte{2}, []byte{3}, []byte{4}))},
		{"non-zero-padding", trimZeros(nonZeroPadding)},
		{"zero-length-transmission", []byte{0, 1, 0, 0}},
		{"count-over-entries", trimZeros(append([]byte{0, 3}, blockOf([]byte{1}, []byte{2})[2:]...))},
		{"empty", []byte{}},
	}
}

func transmissionSeeds() []bytesSeed {
	var s []bytesSeed
	for i, tx := range seedTransmissions() {
		s = append(s, bytesSeed{fmt.Sprintf("transmission-%d", i), tx})
	}
	return append(s,
		bytesSeed{"auth-length-31", cat(31, seq(0, 31), 0, 0, 0x0a)},
		bytesSeed{"entity-length-23", cat(0, 0, 23, seq(0, 23), 0x04)},
		bytesSeed{"send-length-lies", cat(0, 0, 0, 0x09, u16(9), "hello")},
	)
}

func commandSeeds() []bytesSeed {
	var s []bytesSeed
	for _, c := range commandCases() {
		if len(c.want) > 200 {
			continue // MSG and long SENDs: in the unit tests (large seeds slow the mutator down)
		}
		s = append(s, bytesSeed{strings.ReplaceAll(strings.ToLower(c.name), " ", "-"), c.want})
	}
	return append(s,
		bytesSeed{"unknown-tag", []byte{0x0b}},
		bytesSeed{"err-code-8", []byte{0x83, 8}},
		bytesSeed{"msg-short", cat(0x84, id(1), u16(queue.SealedSize), "x")},
		bytesSeed{"lset-mode-3", cat(0x10, id(1), 3, "x")},
		bytesSeed{"lnk-short", cat(0x90, "x")},
		bytesSeed{"pfwd-short", cat(0x21, key(1), "sealed")},
		bytesSeed{"fres-short", cat(0xa1, "response")},
		bytesSeed{"prxy-password", cat(0x20, u16(len("hush://"+prxyAddress().Fingerprint.String()+":pw@relay.example:5223")), "hush://"+prxyAddress().Fingerprint.String()+":pw@relay.example:5223")},
	)
}

func serverHelloSeeds() []bytesSeed {
	v1 := queue.ServerHello{MinVersion: 1, MaxVersion: 1, SessionKey: key(0x30)}
	ext := queue.ServerHello{MinVersion: 1, MaxVersion: 3, SessionKey: key(0x30), Ext: []byte("later fields")}
	return []bytesSeed{
		{"v1", trimZeros(v1.AppendBlock(nil))},
		{"ext", trimZeros(ext.AppendBlock(nil))},
		{"min-above-max", cat(u16(36), u16(2), u16(1), key(0x30))},
		{"short", cat(u16(35), u16(1), u16(1), seq(0x30, 31))},
	}
}

func clientHelloSeeds() []bytesSeed {
	v1 := queue.ClientHello{Version: 1}
	ext := queue.ClientHello{Version: 2, Ext: []byte("later fields")}
	return []bytesSeed{
		{"v1", trimZeros(v1.AppendBlock(nil))},
		{"ext", trimZeros(ext.AppendBlock(nil))},
		{"version-0", cat(u16(2), u16(0))},
		{"length-0", cat(u16(0), u16(1))},
	}
}

type stringSeed struct{ name, s string }

func addressSeeds() []stringSeed {
	f := fingerprintString()
	return []stringSeed{
		{"dns", "hush://" + f + "@relay.example.com"},
		{"ipv6-onion-password", "hush://" + f + ":s3cret@[2001:db8::7]," + testOnion + ":443"},
		{"onion-only", "hush://" + f + "@" + testOnion + ":5223"},
		{"ipv4", "hush://" + f + "@127.0.0.1:5223"},
		{"bad-port", "hush://" + f + "@relay.example.com:0"},
		{"bad-fingerprint", "hush://AAAA@relay.example.com"},
	}
}

type openSeed struct {
	name string
	data []byte // sealed bytes, and a tamper mask
	body []byte
	ts   int64
	flip uint32
}

// openMessageSeeds are small: a 16 KiB seed slows the Go mutator down by
// orders of magnitude, and padding and the tamper mask reach every size.
func openMessageSeeds() []openSeed {
	return []openSeed{
		{"untampered", nil, []byte("hello"), 1700000000, 0},
		{"not-sealed", []byte("not a sealed message"), []byte{}, 0, 12345},
		{"mask-tag", append(make([]byte, 16), 0x80), seq(0, 300), -1, 1 << 31},
	}
}

// corpusValue formats one value in the Go fuzz corpus format.
func corpusValue(v any) string {
	switch v := v.(type) {
	case []byte:
		return fmt.Sprintf("[]byte(%q)", v)
	case string:
		return fmt.Sprintf("string(%q)", v)
	case int64:
		return fmt.Sprintf("int64(%d)", v)
	case uint32:
		return fmt.Sprintf("uint32(%d)", v)
	}
	panic(fmt.Sprintf("corpusValue: %T", v))
}

func corpusFile(values ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		b.WriteString(corpusValue(v))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// lowOrderSeeds are FuzzLowOrder's seeds: low-order points, one with the
// top bit set, a generated key and a near miss.
func lowOrderSeeds() []struct {
	name string
	data []byte
} {
	k, err := queue.GenerateKey()
	if err != nil {
		panic(err)
	}
	order8, _ := hex.DecodeString(lowOrderPoints[2])
	top, _ := hex.DecodeString(lowOrderPoints[len(lowOrderPoints)-1])
	near := bytes.Clone(order8)
	near[0] ^= 1
	pub := queue.PublicKey(k)
	return []struct {
		name string
		data []byte
	}{
		{"order-8", order8},
		{"p-plus-1-top-bit", top},
		{"generated", pub[:]},
		{"near-order-8", near},
	}
}

// FuzzLowOrder checks LowOrder, a comparison with a list, against its
// definition: the X25519 of the key with a clamped scalar is all zero.
func FuzzLowOrder(f *testing.F) {
	for _, s := range lowOrderSeeds() {
		f.Add(s.data)
	}
	scalar := bytes.Repeat([]byte{0x5a}, 32)
	f.Fuzz(func(t *testing.T, data []byte) {
		var k queue.Key
		copy(k[:], data)
		_, err := curve25519.X25519(scalar, k[:])
		if want := err != nil; queue.LowOrder(k) != want {
			t.Fatalf("LowOrder(%x) = %v, X25519 says low order: %v", k, !want, want)
		}
	})
}

// x25519Seeds are FuzzX25519's seeds: a scalar (32 bytes) and a peer key
// (32 bytes): a key on the curve, the same with its top bit set, a
// non-canonical encoding (p+2), a low-order point and a key on the twist.
func x25519Seeds() []struct {
	name string
	data []byte
} {
	scalar := bytes.Repeat([]byte{0x5a}, 32)
	pub, err := curve25519.X25519(bytes.Repeat([]byte{0x11}, 32), curve25519.Basepoint)
	if err != nil {
		panic(err)
	}
	top := bytes.Clone(pub)
	top[31] |= 0x80
	noncanonical, _ := hex.DecodeString("efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	order8, _ := hex.DecodeString(lowOrderPoints[2])
	twist := make([]byte, 32)
	twist[0] = 2 // u = 2 is not on Curve25519: its point is on the twist
	seed := func(peer []byte) []byte { return append(bytes.Clone(scalar), peer...) }
	return []struct {
		name string
		data []byte
	}{
		{"curve", seed(pub)},
		{"top-bit", seed(top)},
		{"p-plus-2", seed(noncanonical)},
		{"order-8", seed(order8)},
		{"twist", seed(twist)},
	}
}

// FuzzX25519 checks the X25519 under AuthKey and MessageKey (circl's
// ladder) against crypto/ecdh's: the same MessageKey for every scalar and
// peer key, and ErrSyntax exactly where crypto/ecdh finds the secret all
// zero. The input is the scalar followed by the peer key, zero-padded.
func FuzzX25519(f *testing.F) {
	for _, s := range x25519Seeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = padTo(data, 64)
		priv, err := queue.ParsePrivateKey(data[:32])
		if err != nil {
			t.Fatal(err)
		}
		var peer queue.Key
		copy(peer[:], data[32:64])
		got, err := queue.MessageKey(priv, peer)
		pub, perr := ecdh.X25519().NewPublicKey(peer[:])
		if perr != nil {
			t.Fatal(perr)
		}
		secret, eerr := priv.ECDH(pub)
		if eerr != nil {
			if !errors.Is(err, queue.ErrSyntax) {
				t.Fatalf("MessageKey(%x, %x) = %v, crypto/ecdh says low order", data[:32], peer, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("MessageKey(%x, %x) = %v, crypto/ecdh agrees", data[:32], peer, err)
		}
		want, err := hkdf.Key(sha256.New, secret, nil, "hush/1 message", 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("MessageKey(%x, %x) = %x, crypto/ecdh gives %x", data[:32], peer, got, want)
		}
	})
}

// TestFuzzSeedFiles checks that each fuzz target has seed files in the Go
// corpus format under testdata/fuzz; with -update it (re)writes the seeds
// defined above (leaving any other file, such as a crasher kept as a
// regression case, alone).
func TestFuzzSeedFiles(t *testing.T) {
	files := map[string]map[string][]byte{}
	add := func(target, name string, content []byte) {
		if files[target] == nil {
			files[target] = map[string][]byte{}
		}
		files[target]["seed-"+name] = content
	}
	for _, s := range blockSeeds() {
		add("FuzzParseBlock", s.name, corpusFile(s.data))
	}
	for _, s := range transmissionSeeds() {
		add("FuzzParseTransmission", s.name, corpusFile(s.data))
	}
	for _, s := range commandSeeds() {
		add("FuzzParseCommand", s.name, corpusFile(s.data))
	}
	for _, s := range serverHelloSeeds() {
		add("FuzzParseServerHello", s.name, corpusFile(s.data))
	}
	for _, s := range clientHelloSeeds() {
		add("FuzzParseClientHello", s.name, corpusFile(s.data))
	}
	for _, s := range addressSeeds() {
		add("FuzzParseAddress", s.name, corpusFile(s.s))
	}
	for _, s := range openMessageSeeds() {
		add("FuzzOpenMessage", s.name, corpusFile(s.data, s.body, s.ts, s.flip))
	}
	for _, s := range shortLinkSeeds() {
		add("FuzzParseShortLink", s.name, corpusFile(s.s))
	}
	for _, s := range linkDataSeeds() {
		add("FuzzOpenLinkData", s.name, corpusFile(s.data, s.flip))
	}
	for _, s := range openForwardSeeds() {
		add("FuzzOpenForward", s.name, corpusFile(s.data, s.inner, s.ts, s.flip))
	}
	for _, s := range openForwardResponseSeeds() {
		add("FuzzOpenForwardResponse", s.name, corpusFile(s.data))
	}
	for _, s := range lowOrderSeeds() {
		add("FuzzLowOrder", s.name, corpusFile(s.data))
	}
	for _, s := range x25519Seeds() {
		add("FuzzX25519", s.name, corpusFile(s.data))
	}
	for target, seeds := range files {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range seeds {
				if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		n := 0
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
				t.Errorf("%s/%s is not in the Go corpus format", target, e.Name())
			}
			n++
		}
		if n < 3 {
			t.Errorf("%s has %d seed files", target, n)
		}
	}
}
