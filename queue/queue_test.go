package queue_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// seq returns n bytes counting up from start (mod 256), so that fields in a
// test encoding are easy to tell apart in a hex dump.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func key(start byte) queue.Key {
	var k queue.Key
	copy(k[:], seq(start, queue.KeySize))
	return k
}

func id(start byte) queue.ID {
	var i queue.ID
	copy(i[:], seq(start, queue.IDSize))
	return i
}

// cat concatenates byte slices and single bytes into a new slice.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case byte:
			b = append(b, v)
		case int:
			b = append(b, byte(v))
		case []byte:
			b = append(b, v...)
		case string:
			b = append(b, v...)
		case hexBytes:
			b = append(b, v...)
		case queue.Key:
			b = append(b, v[:]...)
		case queue.ID:
			b = append(b, v[:]...)
		default:
			panic(fmt.Sprintf("cat: %T", p))
		}
	}
	return b
}

func u16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

// mustPanic fails the test unless f panics.
func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestSizeConstants(t *testing.T) {
	// These numbers are normative (PROTOCOL.md, "Sizes"): changing one
	// changes the protocol.
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"BlockSize", queue.BlockSize, 16384},
		{"IDSize", queue.IDSize, 24},
		{"CorrIDSize", queue.CorrIDSize, 24},
		{"KeySize", queue.KeySize, 32},
		{"AuthSize", queue.AuthSize, 32},
		{"MaxMessageSize", queue.MaxMessageSize, 16000},
		{"MaxPasswordSize", queue.MaxPasswordSize, 128},
		{"MaxTransmissionSize", queue.MaxTransmissionSize, 16380},
		{"MaxTransmissions", queue.MaxTransmissions, 5460},
		{"SealedSize", queue.SealedSize, 16026},
		{"DefaultPort", queue.DefaultPort, 5223},
		{"MinVersion", queue.MinVersion, 1},
		{"MaxVersion", queue.MaxVersion, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if queue.ALPN != "hush/1" {
		t.Errorf("ALPN = %q, want hush/1", queue.ALPN)
	}
}

// TestLargestTransmissionsFit checks that the largest transmissions the
// protocol produces (a GET's MSG response with every field present, and a
// SEND of MaxMessageSize bytes) fit in one block.
func TestLargestTransmissionsFit(t *testing.T) {
	sealed := make([]byte, queue.SealedSize)
	msg := queue.Transmission{
		Auth:    seq(1, queue.AuthSize),
		CorrID:  seq(2, queue.CorrIDSize),
		Entity:  seq(3, queue.IDSize),
		Command: queue.Command{Tag: queue.TagMSG, MsgID: id(4), Body: sealed},
	}
	send := queue.Transmission{
		Auth:    seq(1, queue.AuthSize),
		CorrID:  seq(2, queue.CorrIDSize),
		Entity:  seq(3, queue.IDSize),
		Command: queue.Command{Tag: queue.TagSEND, Body: make([]byte, queue.MaxMessageSize)},
	}
	for name, tx := range map[string]*queue.Transmission{"MSG": &msg, "SEND": &send} {
		raw := tx.Append(nil)
		var bb queue.BlockBuilder
		if !bb.Add(raw) {
			t.Errorf("largest %s transmission (%d bytes) does not fit a block", name, len(raw))
		}
	}
	if n := len(msg.Append(nil)); n != 1+32+1+24+1+24+1+24+2+queue.SealedSize {
		t.Errorf("largest MSG transmission is %d bytes", n)
	}
}

func TestNewID(t *testing.T) {
	seen := make(map[queue.ID]bool)
	for range 100 {
		i := queue.NewID()
		if i == (queue.ID{}) {
			t.Fatal("NewID returned the zero ID")
		}
		if seen[i] {
			t.Fatalf("NewID repeated %v", i)
		}
		seen[i] = true
	}
}

func TestIDString(t *testing.T) {
	i := id(0)
	s := i.String()
	if len(s) != 32 {
		t.Errorf("len(ID.String()) = %d, want 32", len(s))
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !bytes.Equal(b, i[:]) {
		t.Errorf("ID.String() = %q does not decode to the ID (%v)", s, err)
	}
	if got := (queue.ID{}).String(); got != "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" {
		t.Errorf("zero ID String = %q", got)
	}
}

func TestTagString(t *testing.T) {
	want := map[queue.Tag]string{
		queue.TagNEW: "NEW", queue.TagKEY: "KEY", queue.TagSKEY: "SKEY",
		queue.TagSUB: "SUB", queue.TagACK: "ACK", queue.TagGET: "GET",
		queue.TagOFF: "OFF", queue.TagDEL: "DEL", queue.TagSEND: "SEND",
		queue.TagPING: "PING", queue.TagIDS: "IDS", queue.TagOK: "OK",
		queue.TagERR: "ERR", queue.TagMSG: "MSG", queue.TagEND: "END",
		queue.TagDELD: "DELD", queue.TagPONG: "PONG",
	}
	for tag, name := range want {
		if tag.String() != name {
			t.Errorf("Tag(%#x).String() = %q, want %q", byte(tag), tag.String(), name)
		}
	}
	if got := queue.Tag(0x0b).String(); got != "Tag(0x0b)" {
		t.Errorf("unknown tag String = %q", got)
	}
}

func TestTagValues(t *testing.T) {
	// Tag bytes are normative (PROTOCOL.md, "Commands").
	want := []struct {
		tag     queue.Tag
		b       byte
		command bool
	}{
		{queue.TagNEW, 0x01, true}, {queue.TagKEY, 0x02, true}, {queue.TagSKEY, 0x03, true},
		{queue.TagSUB, 0x04, true}, {queue.TagACK, 0x05, true}, {queue.TagGET, 0x06, true},
		{queue.TagOFF, 0x07, true}, {queue.TagDEL, 0x08, true}, {queue.TagSEND, 0x09, true},
		{queue.TagPING, 0x0a, true},
		{queue.TagIDS, 0x81, false}, {queue.TagOK, 0x82, false}, {queue.TagERR, 0x83, false},
		{queue.TagMSG, 0x84, false}, {queue.TagEND, 0x85, false}, {queue.TagDELD, 0x86, false},
		{queue.TagPONG, 0x87, false},
		{queue.TagPRXY, 0x20, true}, {queue.TagPFWD, 0x21, true}, {queue.TagRKEY, 0x22, true},
		{queue.TagRFWD, 0x23, true}, {queue.TagPKEY, 0xa0, false}, {queue.TagFRES, 0xa1, false},
	}
	for _, w := range want {
		if byte(w.tag) != w.b {
			t.Errorf("%v = %#x, want %#x", w.tag, byte(w.tag), w.b)
		}
		if w.tag.IsCommand() != w.command {
			t.Errorf("%v.IsCommand() = %v", w.tag, w.tag.IsCommand())
		}
	}
	for _, b := range []byte{0x00, 0x0b, 0x80, 0x88, 0xff} {
		if queue.Tag(b).IsCommand() {
			t.Errorf("Tag(%#x).IsCommand() = true", b)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	want := []struct {
		code queue.ErrorCode
		b    byte
		name string
	}{
		{queue.AUTH, 1, "AUTH"}, {queue.QUOTA, 2, "QUOTA"}, {queue.LARGE, 3, "LARGE"},
		{queue.SYNTAX, 4, "SYNTAX"}, {queue.PROHIBITED, 5, "PROHIBITED"},
		{queue.NO_MSG, 6, "NO_MSG"}, {queue.INTERNAL, 7, "INTERNAL"},
		{queue.PROXY, 0x10, "PROXY"}, {queue.TIME, 0x11, "TIME"},
	}
	for _, w := range want {
		if byte(w.code) != w.b || w.code.String() != w.name {
			t.Errorf("%v = %d, want %s = %d", w.code, byte(w.code), w.name, w.b)
		}
		if w.code.Error() != "relay error "+w.name {
			t.Errorf("%v.Error() = %q", w.code, w.code.Error())
		}
		err := fmt.Errorf("send: %w", w.code)
		if !errors.Is(err, w.code) {
			t.Errorf("errors.Is(wrapped %v, %v) = false", w.code, w.code)
		}
		var got queue.ErrorCode
		if !errors.As(err, &got) || got != w.code {
			t.Errorf("errors.As(wrapped %v) = %v", w.code, got)
		}
	}
	if errors.Is(fmt.Errorf("x: %w", queue.AUTH), queue.QUOTA) {
		t.Error("errors.Is(AUTH, QUOTA) = true")
	}
	if got := queue.ErrorCode(9).String(); got != "ErrorCode(9)" {
		t.Errorf("unknown code String = %q", got)
	}
}
