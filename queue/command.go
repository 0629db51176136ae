package queue

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Tag identifies a command (client to relay) or a response or event (relay
// to client). It is the first byte of a command's encoding.
type Tag byte

// Commands, sent by clients.
const (
	TagNEW  Tag = 0x01 // create a queue (recipient)
	TagKEY  Tag = 0x02 // secure a queue with the sender's key (recipient)
	TagSKEY Tag = 0x03 // secure a queue with the sender's own key (sender)
	TagSUB  Tag = 0x04 // subscribe to a queue (recipient)
	TagACK  Tag = 0x05 // acknowledge a delivered message (recipient)
	TagGET  Tag = 0x06 // fetch the first message without subscribing (recipient)
	TagOFF  Tag = 0x07 // suspend a queue: no more sends (recipient)
	TagDEL  Tag = 0x08 // delete a queue and its messages (recipient)
	TagSEND Tag = 0x09 // send a message (sender)
	TagPING Tag = 0x0A // keep-alive (anyone)
	TagLSET Tag = 0x10 // store link data for a queue (recipient; section 21)
	TagLGET Tag = 0x11 // read link data by link ID (anyone; section 21)

	// Private routing (PROTOCOL.md section 20).
	TagPRXY Tag = 0x20 // ask a forwarding relay for a session to a destination relay (client)
	TagPFWD Tag = 0x21 // ask a forwarding relay to forward a sealed command (client)
	TagRKEY Tag = 0x22 // ask a destination relay to attest this session's key (forwarding relay)
	TagRFWD Tag = 0x23 // a forwarded sealed command (forwarding relay to destination)
)

// Responses and events, sent by relays.
const (
	TagIDS  Tag = 0x81 // response to NEW
	TagOK   Tag = 0x82 // success
	TagERR  Tag = 0x83 // failure, with an ErrorCode
	TagMSG  Tag = 0x84 // a message (event after SUB or ACK, or response to GET)
	TagEND  Tag = 0x85 // event: another session took over the subscription
	TagDELD Tag = 0x86 // event: the subscribed queue was deleted
	TagPONG Tag = 0x87 // response to PING
	TagLNK  Tag = 0x90 // response to LGET: the link data

	TagPKEY Tag = 0xA0 // response to PRXY and RKEY: an attested session key
	TagFRES Tag = 0xA1 // response to PFWD and RFWD: a sealed forwarded response
)

var tagNames = map[Tag]string{
	TagNEW: "NEW", TagKEY: "KEY", TagSKEY: "SKEY", TagSUB: "SUB", TagACK: "ACK",
	TagGET: "GET", TagOFF: "OFF", TagDEL: "DEL", TagSEND: "SEND", TagPING: "PING",
	TagIDS: "IDS", TagOK: "OK", TagERR: "ERR", TagMSG: "MSG", TagEND: "END",
	TagDELD: "DELD", TagPONG: "PONG", TagLSET: "LSET", TagLGET: "LGET", TagLNK: "LNK",
	TagPRXY: "PRXY", TagPFWD: "PFWD", TagRKEY: "RKEY", TagRFWD: "RFWD",
	TagPKEY: "PKEY", TagFRES: "FRES",
}

func (t Tag) String() string {
	if s, ok := tagNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Tag(%#02x)", byte(t))
}

// ErrorCode is carried by ERR.
type ErrorCode byte

// Error codes.
const (
	// AUTH: no such queue, wrong key, bad authenticator, suspended queue
	// (for senders) or wrong relay password. Indistinguishable on purpose.
	AUTH ErrorCode = 1
	// QUOTA: the queue holds its maximum number of messages.
	QUOTA ErrorCode = 2
	// LARGE: the SEND body exceeds the relay's maximum message size.
	LARGE ErrorCode = 3
	// SYNTAX: the command is well-formed but not valid here (for example an
	// entity ID where none belongs, or a missing authenticator).
	SYNTAX ErrorCode = 4
	// PROHIBITED: the command is not allowed in this state (for example
	// GET on a queue this session is subscribed to, or SUB past the
	// session's subscription limit).
	PROHIBITED ErrorCode = 5
	// NO_MSG: GET or ACK found no such message.
	NO_MSG ErrorCode = 6
	// INTERNAL: the relay failed (for example its store); retry later.
	INTERNAL ErrorCode = 7
	// PROXY: a forwarding relay could not reach the destination relay, or
	// has no session with it by that ID (any more); ask PRXY again later.
	PROXY ErrorCode = 0x10
	// TIME: a forwarded command's timestamp is outside the destination's
	// window (ForwardWindow); only inside a sealed FRES, whose relayTime
	// is the destination's clock.
	TIME ErrorCode = 0x11
)

var errorNames = map[ErrorCode]string{
	AUTH: "AUTH", QUOTA: "QUOTA", LARGE: "LARGE", SYNTAX: "SYNTAX",
	PROHIBITED: "PROHIBITED", NO_MSG: "NO_MSG", INTERNAL: "INTERNAL",
	PROXY: "PROXY", TIME: "TIME",
}

func (c ErrorCode) String() string {
	if s, ok := errorNames[c]; ok {
		return s
	}
	return fmt.Sprintf("ErrorCode(%d)", byte(c))
}

// Error implements error, so a relay's ERR can be returned and matched with
// errors.Is(err, queue.AUTH).
func (c ErrorCode) Error() string { return "relay error " + c.String() }

// Command is one command, response or event. Only the fields that belong to
// Tag are encoded; Parse sets only those. The byte layout after the tag:
//
//	NEW   recipientKey[32] recipientDHKey[32] passwordLen:1 password
//	KEY   senderKey[32]
//	SKEY  senderKey[32]
//	ACK   msgID[24]
//	SEND  bodyLen:2 body
//	IDS   recipientID[24] senderID[24] relayDHKey[32]
//	ERR   code:1
//	MSG   msgID[24] sealedLen:2 sealed (exactly SealedSize bytes)
//	LSET  linkID[24] mode:1 (LinkOnce or LinkReusable) data[LinkDataSize]
//	LNK   data[LinkDataSize]
//	PRXY  addrLen:2 address (canonical, no password, 1..MaxAddressSize)
//	PFWD  ephemeralKey[32] sealed[ForwardSealedSize]
//	RFWD  ephemeralKey[32] sealed[ForwardSealedSize]
//	PKEY  attestation (see Attestation)
//	FRES  response[ForwardResponseSize]
//	SUB GET OFF DEL PING OK END DELD PONG LGET RKEY   (nothing)
type Command struct {
	Tag Tag

	RecipientKey   Key      // NEW: recipient authorization key (X25519)
	RecipientDHKey Key      // NEW: recipient key for the re-encryption (X25519)
	Password       []byte   // NEW: relay password, at most MaxPasswordSize bytes
	SenderKey      Key      // KEY, SKEY: sender authorization key (X25519)
	MsgID          ID       // ACK, MSG
	Body           []byte   // SEND: the message; MSG: the sealed message; LSET, LNK: the link data
	LinkID         ID       // LSET
	LinkMode       LinkMode // LSET
	RecipientID    ID       // IDS
	SenderID       ID       // IDS
	RelayDHKey     Key      // IDS: the relay's per-queue re-encryption key
	Error          ErrorCode

	Relay        Address     // PRXY: the destination relay
	EphemeralKey Key         // PFWD, RFWD: the client's key for this command only
	Sealed       []byte      // PFWD, RFWD: ForwardSealedSize bytes; FRES: ForwardResponseSize bytes
	Attestation  Attestation // PKEY
}

// Append appends the encoding of c to b. It panics if a variable-length
// field is longer than its length prefix allows (a programmer error).
func (c *Command) Append(b []byte) []byte {
	b = append(b, byte(c.Tag))
	switch c.Tag {
	case TagNEW:
		if len(c.Password) > MaxPasswordSize {
			panic("queue: password too long")
		}
		b = append(b, c.RecipientKey[:]...)
		b = append(b, c.RecipientDHKey[:]...)
		b = append(b, byte(len(c.Password)))
		b = append(b, c.Password...)
	case TagKEY, TagSKEY:
		b = append(b, c.SenderKey[:]...)
	case TagACK:
		b = append(b, c.MsgID[:]...)
	case TagSEND:
		if len(c.Body) > math.MaxUint16 {
			panic("queue: body too long")
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Body)))
		b = append(b, c.Body...)
	case TagIDS:
		b = append(b, c.RecipientID[:]...)
		b = append(b, c.SenderID[:]...)
		b = append(b, c.RelayDHKey[:]...)
	case TagERR:
		b = append(b, byte(c.Error))
	case TagMSG:
		if len(c.Body) != SealedSize {
			panic("queue: sealed message of the wrong size")
		}
		b = append(b, c.MsgID[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Body)))
		b = append(b, c.Body...)
	case TagLSET:
		if len(c.Body) != LinkDataSize || (c.LinkMode != LinkOnce && c.LinkMode != LinkReusable) {
			panic("queue: malformed link data")
		}
		b = append(b, c.LinkID[:]...)
		b = append(b, byte(c.LinkMode))
		b = append(b, c.Body...)
	case TagLNK:
		if len(c.Body) != LinkDataSize {
			panic("queue: link data of the wrong size")
		}
		b = append(b, c.Body...)
	case TagPRXY:
		a := c.Relay.String()
		if c.Relay.Password != "" || len(a) > MaxAddressSize {
			panic("queue: PRXY address with a password or too long")
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
		b = append(b, a...)
	case TagPFWD, TagRFWD:
		if len(c.Sealed) != ForwardSealedSize {
			panic("queue: forwarded command of the wrong size")
		}
		b = append(b, c.EphemeralKey[:]...)
		b = append(b, c.Sealed...)
	case TagPKEY:
		b = c.Attestation.append(b)
	case TagFRES:
		if len(c.Sealed) != ForwardResponseSize {
			panic("queue: forwarded response of the wrong size")
		}
		b = append(b, c.Sealed...)
	}
	return b
}

// ParseCommand parses exactly one command, response or event. Body and
// Password alias b. Unknown tags, short or trailing bytes, unknown error
// codes and MSG bodies of the wrong size are ErrSyntax.
func ParseCommand(b []byte) (Command, error) {
	var c Command
	if len(b) < 1 {
		return c, ErrSyntax
	}
	c.Tag = Tag(b[0])
	p := parser{b: b[1:]}
	switch c.Tag {
	case TagNEW:
		p.read(c.RecipientKey[:])
		p.read(c.RecipientDHKey[:])
		n := p.byte()
		if n > MaxPasswordSize {
			return Command{}, ErrSyntax
		}
		if n > 0 {
			c.Password = p.next(n)
		}
	case TagKEY, TagSKEY:
		p.read(c.SenderKey[:])
	case TagACK:
		p.read(c.MsgID[:])
	case TagSEND:
		c.Body = p.next(p.uint16())
	case TagIDS:
		p.read(c.RecipientID[:])
		p.read(c.SenderID[:])
		p.read(c.RelayDHKey[:])
	case TagERR:
		c.Error = ErrorCode(p.byte())
		if _, ok := errorNames[c.Error]; !ok {
			return Command{}, ErrSyntax
		}
	case TagMSG:
		p.read(c.MsgID[:])
		n := p.uint16()
		if n != SealedSize {
			return Command{}, ErrSyntax
		}
		c.Body = p.next(n)
	case TagLSET:
		p.read(c.LinkID[:])
		c.LinkMode = LinkMode(p.byte())
		if c.LinkMode != LinkOnce && c.LinkMode != LinkReusable {
			return Command{}, ErrSyntax
		}
		c.Body = p.next(LinkDataSize)
	case TagLNK:
		c.Body = p.next(LinkDataSize)
	case TagPRXY:
		n := p.uint16()
		if n == 0 || n > MaxAddressSize {
			return Command{}, ErrSyntax
		}
		s := string(p.next(n))
		a, err := ParseAddress(s)
		if p.bad || err != nil || a.Password != "" || a.String() != s {
			return Command{}, ErrSyntax
		}
		c.Relay = a
	case TagPFWD, TagRFWD:
		p.read(c.EphemeralKey[:])
		c.Sealed = p.next(ForwardSealedSize)
	case TagPKEY:
		p.attestation(&c.Attestation)
	case TagFRES:
		c.Sealed = p.next(ForwardResponseSize)
	case TagSUB, TagGET, TagOFF, TagDEL, TagPING, TagOK, TagEND, TagDELD, TagPONG, TagLGET, TagRKEY:
	default:
		return Command{}, ErrSyntax
	}
	if !p.done() {
		return Command{}, ErrSyntax
	}
	return c, nil
}

// IsCommand reports whether t is a known command, sent by clients (as
// opposed to relays): command tags are below 0x80, response and event
// tags above. A forwarding relay is a client of the destination relay.
func (t Tag) IsCommand() bool {
	_, known := tagNames[t]
	return known && t < 0x80
}

// parser reads fixed fields from b, remembering the first failure so that
// callers check once at the end.
type parser struct {
	b   []byte
	bad bool
}

func (p *parser) next(n int) []byte {
	if p.bad || n > len(p.b) {
		p.bad = true
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) read(dst []byte) { copy(dst, p.next(len(dst))) }

func (p *parser) byte() int {
	v := p.next(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (p *parser) uint16() int {
	v := p.next(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

// done reports whether every byte was consumed without a failure.
func (p *parser) done() bool { return !p.bad && len(p.b) == 0 }
