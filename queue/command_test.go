package queue_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// commandCase is one command, response or event with its expected encoding,
// written out field by field from the layout in PROTOCOL.md.
type commandCase struct {
	name string
	cmd  queue.Command
	want []byte
}

func commandCases() []commandCase {
	sealed := seq(0x55, queue.SealedSize)
	linkData := seq(0x66, queue.LinkDataSize)
	return []commandCase{
		{"NEW", queue.Command{Tag: queue.TagNEW, RecipientKey: key(0x20), RecipientDHKey: key(0x40)},
			cat(0x01, key(0x20), key(0x40), 0)},
		{"NEW password", queue.Command{Tag: queue.TagNEW, RecipientKey: key(0x20), RecipientDHKey: key(0x40), Password: []byte("s3cret~pw")},
			cat(0x01, key(0x20), key(0x40), 9, "s3cret~pw")},
		{"NEW max password", queue.Command{Tag: queue.TagNEW, RecipientKey: key(0x20), RecipientDHKey: key(0x40), Password: bytes.Repeat([]byte("p"), queue.MaxPasswordSize)},
			cat(0x01, key(0x20), key(0x40), 128, bytes.Repeat([]byte("p"), 128))},
		{"KEY", queue.Command{Tag: queue.TagKEY, SenderKey: key(0x60)}, cat(0x02, key(0x60))},
		{"SKEY", queue.Command{Tag: queue.TagSKEY, SenderKey: key(0x61)}, cat(0x03, key(0x61))},
		{"SUB", queue.Command{Tag: queue.TagSUB}, cat(0x04)},
		{"ACK", queue.Command{Tag: queue.TagACK, MsgID: id(0x70)}, cat(0x05, id(0x70))},
		{"GET", queue.Command{Tag: queue.TagGET}, cat(0x06)},
		{"OFF", queue.Command{Tag: queue.TagOFF}, cat(0x07)},
		{"DEL", queue.Command{Tag: queue.TagDEL}, cat(0x08)},
		{"SEND", queue.Command{Tag: queue.TagSEND, Body: []byte("hello")}, cat(0x09, u16(5), "hello")},
		{"SEND empty", queue.Command{Tag: queue.TagSEND, Body: []byte{}}, cat(0x09, u16(0))},
		{"SEND max", queue.Command{Tag: queue.TagSEND, Body: seq(3, queue.MaxMessageSize)}, cat(0x09, u16(16000), seq(3, 16000))},
		{"SEND over max", queue.Command{Tag: queue.TagSEND, Body: seq(3, queue.MaxMessageSize+1)}, cat(0x09, u16(16001), seq(3, 16001))},
		{"PING", queue.Command{Tag: queue.TagPING}, cat(0x0a)},
		{"IDS", queue.Command{Tag: queue.TagIDS, RecipientID: id(0x80), SenderID: id(0xa0), RelayDHKey: key(0xc0)},
			cat(0x81, id(0x80), id(0xa0), key(0xc0))},
		{"OK", queue.Command{Tag: queue.TagOK}, cat(0x82)},
		{"ERR AUTH", queue.Command{Tag: queue.TagERR, Error: queue.AUTH}, cat(0x83, 1)},
		{"ERR QUOTA", queue.Command{Tag: queue.TagERR, Error: queue.QUOTA}, cat(0x83, 2)},
		{"ERR LARGE", queue.Command{Tag: queue.TagERR, Error: queue.LARGE}, cat(0x83, 3)},
		{"ERR SYNTAX", queue.Command{Tag: queue.TagERR, Error: queue.SYNTAX}, cat(0x83, 4)},
		{"ERR PROHIBITED", queue.Command{Tag: queue.TagERR, Error: queue.PROHIBITED}, cat(0x83, 5)},
		{"ERR NO_MSG", queue.Command{Tag: queue.TagERR, Error: queue.NO_MSG}, cat(0x83, 6)},
		{"ERR INTERNAL", queue.Command{Tag: queue.TagERR, Error: queue.INTERNAL}, cat(0x83, 7)},
		{"MSG", queue.Command{Tag: queue.TagMSG, MsgID: id(0x90), Body: sealed}, cat(0x84, id(0x90), u16(queue.SealedSize), sealed)},
		{"END", queue.Command{Tag: queue.TagEND}, cat(0x85)},
		{"DELD", queue.Command{Tag: queue.TagDELD}, cat(0x86)},
		{"PONG", queue.Command{Tag: queue.TagPONG}, cat(0x87)},
		{"LSET once", queue.Command{Tag: queue.TagLSET, LinkID: id(0xb0), LinkMode: queue.LinkOnce, Body: linkData},
			cat(0x10, id(0xb0), 1, linkData)},
		{"LSET reusable", queue.Command{Tag: queue.TagLSET, LinkID: id(0xb1), LinkMode: queue.LinkReusable, Body: linkData},
			cat(0x10, id(0xb1), 2, linkData)},
		{"LGET", queue.Command{Tag: queue.TagLGET}, cat(0x11)},
		{"LNK", queue.Command{Tag: queue.TagLNK, Body: linkData}, cat(0x90, linkData)},
		{"ERR PROXY", queue.Command{Tag: queue.TagERR, Error: queue.PROXY}, cat(0x83, 0x10)},
		{"ERR TIME", queue.Command{Tag: queue.TagERR, Error: queue.TIME}, cat(0x83, 0x11)},
		{"PRXY", queue.Command{Tag: queue.TagPRXY, Relay: prxyAddress()}, cat(0x20, u16(len(prxyAddress().String())), prxyAddress().String())},
		{"PFWD", queue.Command{Tag: queue.TagPFWD, EphemeralKey: key(0x21), Sealed: seq(0x33, queue.ForwardSealedSize)},
			cat(0x21, key(0x21), seq(0x33, queue.ForwardSealedSize))},
		{"RKEY", queue.Command{Tag: queue.TagRKEY}, cat(0x22)},
		{"RFWD", queue.Command{Tag: queue.TagRFWD, EphemeralKey: key(0x22), Sealed: seq(0x34, queue.ForwardSealedSize)},
			cat(0x23, key(0x22), seq(0x34, queue.ForwardSealedSize))},
		{"PKEY", queue.Command{Tag: queue.TagPKEY, Attestation: testAttestation()},
			cat(0xa0, key(0x41), seq(0x42, 32), u16(6), "online", u16(8), "identity", seq(0x43, 64))},
		{"FRES", queue.Command{Tag: queue.TagFRES, Sealed: seq(0x35, queue.ForwardResponseSize)},
			cat(0xa1, seq(0x35, queue.ForwardResponseSize))},
	}
}

// prxyAddress is the destination of the PRXY case.
func prxyAddress() queue.Address {
	var fp queue.Fingerprint
	copy(fp[:], seq(0x50, 32))
	return queue.Address{Fingerprint: fp, Host: "relay.example", Port: 5223}
}

// testAttestation is the attestation of the PKEY case (not a valid one:
// parsers check layouts, not certificates).
func testAttestation() queue.Attestation {
	a := queue.Attestation{SessionKey: key(0x41), Chain: [2][]byte{[]byte("online"), []byte("identity")}}
	copy(a.Binding[:], seq(0x42, 32))
	copy(a.Signature[:], seq(0x43, 64))
	return a
}

// equalCommand compares commands field by field, treating nil and empty
// slices alike.
func equalCommand(a, b queue.Command) bool {
	return a.Tag == b.Tag && a.RecipientKey == b.RecipientKey && a.RecipientDHKey == b.RecipientDHKey &&
		bytes.Equal(a.Password, b.Password) && a.SenderKey == b.SenderKey && a.MsgID == b.MsgID &&
		bytes.Equal(a.Body, b.Body) && a.RecipientID == b.RecipientID && a.SenderID == b.SenderID &&
		a.RelayDHKey == b.RelayDHKey && a.Error == b.Error && a.LinkID == b.LinkID && a.LinkMode == b.LinkMode &&
		a.Relay == b.Relay &&
		a.EphemeralKey == b.EphemeralKey && bytes.Equal(a.Sealed, b.Sealed) &&
		a.Attestation.SessionKey == b.Attestation.SessionKey && a.Attestation.Binding == b.Attestation.Binding &&
		bytes.Equal(a.Attestation.Chain[0], b.Attestation.Chain[0]) && bytes.Equal(a.Attestation.Chain[1], b.Attestation.Chain[1]) &&
		a.Attestation.Signature == b.Attestation.Signature
}

func TestCommandRoundTrip(t *testing.T) {
	tags := make(map[queue.Tag]bool)
	for _, c := range commandCases() {
		tags[c.cmd.Tag] = true
		got := c.cmd.Append([]byte("x"))
		if !bytes.Equal(got[1:], c.want) || got[0] != 'x' {
			t.Errorf("%s: Append = %x\nwant %x", c.name, trim(got[1:]), trim(c.want))
			continue
		}
		p, err := queue.ParseCommand(c.want)
		if err != nil {
			t.Errorf("%s: ParseCommand: %v", c.name, err)
			continue
		}
		if !equalCommand(p, c.cmd) {
			t.Errorf("%s: ParseCommand = %+v, want %+v", c.name, p, c.cmd)
		}
		if again := p.Append(nil); !bytes.Equal(again, c.want) {
			t.Errorf("%s: parsed command re-encodes differently", c.name)
		}
	}
	// Every tag is covered.
	for b := 0; b < 256; b++ {
		if tag := queue.Tag(b); tag.String()[0] != 'T' && !tags[tag] {
			t.Errorf("no round-trip case for %v", tag)
		}
	}
}

// TestCommandAppendOnlyItsFields checks that fields which do not belong to
// the tag are not encoded.
func TestCommandAppendOnlyItsFields(t *testing.T) {
	junk := queue.Command{
		RecipientKey: key(1), RecipientDHKey: key(2), Password: []byte("junk"), SenderKey: key(3),
		MsgID: id(4), Body: []byte("junk body"), RecipientID: id(5), SenderID: id(6),
		RelayDHKey: key(7), Error: queue.QUOTA, LinkID: id(8), LinkMode: queue.LinkReusable,
		Relay: prxyAddress(), EphemeralKey: key(8),
		Sealed: seq(9, queue.ForwardSealedSize), Attestation: testAttestation(),
	}
	for _, c := range commandCases() {
		cmd := junk
		cmd.Tag = c.cmd.Tag
		switch cmd.Tag {
		case queue.TagNEW:
			cmd.RecipientKey, cmd.RecipientDHKey, cmd.Password = c.cmd.RecipientKey, c.cmd.RecipientDHKey, c.cmd.Password
		case queue.TagKEY, queue.TagSKEY:
			cmd.SenderKey = c.cmd.SenderKey
		case queue.TagACK:
			cmd.MsgID = c.cmd.MsgID
		case queue.TagSEND:
			cmd.Body = c.cmd.Body
		case queue.TagIDS:
			cmd.RecipientID, cmd.SenderID, cmd.RelayDHKey = c.cmd.RecipientID, c.cmd.SenderID, c.cmd.RelayDHKey
		case queue.TagERR:
			cmd.Error = c.cmd.Error
		case queue.TagMSG:
			cmd.MsgID, cmd.Body = c.cmd.MsgID, c.cmd.Body
		case queue.TagLSET:
			cmd.LinkID, cmd.LinkMode, cmd.Body = c.cmd.LinkID, c.cmd.LinkMode, c.cmd.Body
		case queue.TagLNK:
			cmd.Body = c.cmd.Body
		case queue.TagPFWD, queue.TagRFWD:
			cmd.EphemeralKey, cmd.Sealed = c.cmd.EphemeralKey, c.cmd.Sealed
		case queue.TagFRES:
			cmd.Sealed = c.cmd.Sealed
		}
		if got := cmd.Append(nil); !bytes.Equal(got, c.want) {
			t.Errorf("%s: with foreign fields set, Append = %x\nwant %x", c.name, trim(got), trim(c.want))
		}
	}
}

func TestCommandAliases(t *testing.T) {
	enc := cat(0x09, u16(3), "abc")
	c, err := queue.ParseCommand(enc)
	if err != nil {
		t.Fatal(err)
	}
	enc[3] = 'A'
	if string(c.Body) != "Abc" {
		t.Errorf("SEND body does not alias the input: %q", c.Body)
	}
	enc = cat(0x01, key(0), key(1), 2, "pw")
	c, err = queue.ParseCommand(enc)
	if err != nil {
		t.Fatal(err)
	}
	if cap(c.Password) != 2 {
		t.Errorf("cap(Password) = %d, want 2", cap(c.Password))
	}
	if c, _ := queue.ParseCommand(cat(0x01, key(0), key(1), 0)); c.Password != nil {
		t.Errorf("NEW without password: Password = %q, want nil", c.Password)
	}
}

func TestParseCommandRejects(t *testing.T) {
	sealed := make([]byte, queue.SealedSize)
	cases := map[string][]byte{
		"empty":                   nil,
		"tag 0x00":                {0x00},
		"tag 0x0b":                {0x0b},
		"tag 0x80":                {0x80},
		"tag 0x88":                {0x88},
		"tag 0xff":                {0xff},
		"tag 0x41 with body":      cat(0x41, key(0)),
		"ERR code 0":              {0x83, 0},
		"ERR code 8":              {0x83, 8},
		"ERR code 255":            {0x83, 255},
		"ERR no code":             {0x83},
		"NEW password 129":        cat(0x01, key(0), key(1), 129, bytes.Repeat([]byte("p"), 129)),
		"NEW password 255":        cat(0x01, key(0), key(1), 255, bytes.Repeat([]byte("p"), 255)),
		"NEW password short":      cat(0x01, key(0), key(1), 3, "pw"),
		"NEW no password length":  cat(0x01, key(0), key(1)),
		"SEND no length":          {0x09},
		"SEND half length":        {0x09, 0},
		"SEND length over":        cat(0x09, u16(6), "hello"),
		"SEND length under":       cat(0x09, u16(4), "hello"),
		"MSG sealed short by one": cat(0x84, id(0), u16(queue.SealedSize-1), sealed[1:]),
		"MSG sealed long by one":  cat(0x84, id(0), u16(queue.SealedSize+1), sealed, 0),
		"MSG sealed empty":        cat(0x84, id(0), u16(0)),
		"MSG length lies":         cat(0x84, id(0), u16(queue.SealedSize), sealed[1:]),
		"MSG no length":           cat(0x84, id(0)),
	}
	for _, c := range commandCases() {
		cases[c.name+" trailing byte"] = cat(c.want, 0)
		cases[c.name+" trailing tag"] = cat(c.want, c.want[0])
		if len(c.want) > 1 {
			cases[c.name+" short by one"] = c.want[:len(c.want)-1]
			cases[c.name+" only tag"] = c.want[:1]
		}
	}
	for name, b := range cases {
		if c, err := queue.ParseCommand(b); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: ParseCommand = %+v, %v; want ErrSyntax", name, c.Tag, err)
		}
	}
}

func TestCommandAppendPanics(t *testing.T) {
	mustPanic(t, "NEW with a 129-byte password", func() {
		c := queue.Command{Tag: queue.TagNEW, Password: make([]byte, queue.MaxPasswordSize+1)}
		c.Append(nil)
	})
	for _, n := range []int{0, queue.SealedSize - 1, queue.SealedSize + 1} {
		mustPanic(t, "MSG with a body of the wrong size", func() {
			c := queue.Command{Tag: queue.TagMSG, Body: make([]byte, n)}
			c.Append(nil)
		})
	}
	mustPanic(t, "SEND with a body over 0xffff bytes", func() {
		c := queue.Command{Tag: queue.TagSEND, Body: make([]byte, 0x10000)}
		c.Append(nil)
	})
}

// TestSendBodyLimitParseAppend: the package promises that a parsed value
// re-encodes to the same bytes, and Command.Append documents that it panics
// only when a field is longer than its length prefix allows (0xffff for a
// SEND body). ParseCommand accepts SEND bodies up to 0xffff bytes, but
// Append panics above MaxTransmissionSize (16380), so a parsed command can
// make Append panic.
//
// Bug in command.go, Command.Append, case TagSEND: the check is
// `len(c.Body) > MaxTransmissionSize`; it should be `len(c.Body) > 0xffff`
// (math.MaxUint16, the limit of the length prefix), or ParseCommand should
// reject SEND bodies longer than MaxTransmissionSize. (The fuzz targets did
// not reach it in their runs: their inputs stay short; they skip it when
// they do.)
func TestSendBodyLimitParseAppend(t *testing.T) {
	body := make([]byte, queue.MaxTransmissionSize+1)
	enc := cat(0x09, u16(len(body)), body)
	c, err := queue.ParseCommand(enc)
	if err != nil {
		t.Fatalf("ParseCommand rejects a %d-byte SEND body: %v (if that is the fix, drop this test)", len(body), err)
	}
	if appendPanics(&c) {
		t.Fatal("Command.Append panics on a SEND body ParseCommand accepted")
	}
	if got := c.Append(nil); !bytes.Equal(got, enc) {
		t.Errorf("re-encoding differs")
	}
}

func appendPanics(c *queue.Command) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	c.Append(nil)
	return false
}

// trim shortens long encodings in failure messages.
func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
