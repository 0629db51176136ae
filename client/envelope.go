package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/hushrelay/hush/client/ratchet"
	"github.com/hushrelay/hush/queue"
)

// The client's formats, inside the SEND bodies that relays carry. All are
// described byte for byte in queue/PROTOCOL.md ("Client layer").

// Envelope layout: every SEND body a client sends is exactly EnvelopeSize
// bytes, and its clear part is the same for every kind, so relays and
// observers see one size and one header.
//
//	version   uint8 = envelopeVersion
//	senderKey [32]  the sender's X25519 key for this queue
//	nonce     [24]  random
//	sealed    XChaCha20-Poly1305(key = HKDF-SHA256(X25519(senderKey,
//	          queue end-to-end key), salt none, info envelopeInfo),
//	          nonce, ad = version|senderKey) of the inner part,
//	          envelopeInnerSize bytes:
//	  kind uint8: envelopeConfirmation or envelopeMessage, then
//	  confirmation: hello [ratchet.HelloSize] | ratchet message [ratchet.MessageSize] | zeros
//	  message:      ratchet message [ratchet.MessageSize] | zeros
const (
	EnvelopeSize         = queue.MaxMessageSize
	envelopeVersion      = 2
	envelopeClearSize    = 1 + queue.KeySize // version | senderKey: the associated data
	envelopeHeaderSize   = envelopeClearSize + chacha20poly1305.NonceSizeX
	envelopeInnerSize    = EnvelopeSize - envelopeHeaderSize - chacha20poly1305.Overhead
	envelopeConfirmation = 1
	envelopeMessage      = 2
	envelopeInfo         = "hush/1 envelope"
)

// The inner part must hold a kind, a hello and a ratchet message.
var _ = [envelopeInnerSize - 1 - ratchet.HelloSize - ratchet.MessageSize]struct{}{}

// errEnvelope is returned for an envelope that is malformed or does not
// open: opaque on purpose.
var errEnvelope = errors.New("message does not open")

// envelope is a parsed, opened envelope.
type envelope struct {
	kind      byte
	senderKey queue.Key
	hello     []byte // confirmation only
	message   []byte // the ratchet message
}

// envelopeKey derives the key of envelopes between priv and peer.
func envelopeKey(priv *ecdh.PrivateKey, peer queue.Key) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, errEnvelope
	}
	s, err := priv.ECDH(pub)
	if err != nil {
		return nil, errEnvelope
	}
	return hkdf.Key(sha256.New, s, nil, envelopeInfo, chacha20poly1305.KeySize)
}

// sealEnvelope builds an envelope of kind from sender (the sender's queue
// key) to the queue's end-to-end key. hello is nil for a message.
func sealEnvelope(kind byte, sender *ecdh.PrivateKey, queueKey queue.Key, hello, message []byte) ([]byte, error) {
	inner := make([]byte, envelopeInnerSize)
	inner[0] = kind
	n := 1 + copy(inner[1:], hello)
	copy(inner[n:], message)
	return sealInner(sender, queueKey, inner)
}

// sealInner seals inner, envelopeInnerSize bytes starting with its kind,
// in an envelope from sender to queueKey.
func sealInner(sender *ecdh.PrivateKey, queueKey queue.Key, inner []byte) ([]byte, error) {
	key, err := envelopeKey(sender, queueKey)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, EnvelopeSize)
	out = append(out, envelopeVersion)
	senderPub := queue.PublicKey(sender)
	out = append(out, senderPub[:]...)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, inner, out[:envelopeClearSize]), nil
}

// openEnvelope opens an envelope with the queue's end-to-end private key.
func openEnvelope(b []byte, queuePriv *ecdh.PrivateKey) (envelope, error) {
	var e envelope
	inner, err := openInner(b, queuePriv, &e.senderKey)
	if err != nil {
		return e, err
	}
	e.kind, inner = inner[0], inner[1:]
	switch e.kind {
	case envelopeConfirmation:
		e.hello, inner = inner[:ratchet.HelloSize], inner[ratchet.HelloSize:]
	case envelopeMessage:
	default:
		return envelope{}, errEnvelope
	}
	e.message, inner = inner[:ratchet.MessageSize], inner[ratchet.MessageSize:]
	for _, c := range inner {
		if c != 0 {
			return envelope{}, errEnvelope
		}
	}
	return e, nil
}

// openInner opens an envelope with the queue's end-to-end private key and
// returns its inner part (envelopeInnerSize bytes, starting with the kind),
// setting senderKey.
func openInner(b []byte, queuePriv *ecdh.PrivateKey, senderKey *queue.Key) ([]byte, error) {
	if len(b) != EnvelopeSize || b[0] != envelopeVersion {
		return nil, errEnvelope
	}
	copy(senderKey[:], b[1:envelopeClearSize])
	key, err := envelopeKey(queuePriv, *senderKey)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	nonce := b[envelopeClearSize:envelopeHeaderSize]
	inner, err := aead.Open(nil, nonce, b[envelopeHeaderSize:], b[:envelopeClearSize])
	if err != nil {
		return nil, errEnvelope
	}
	return inner, nil
}

// Payload layout: the plaintext of every ratchet message.
//
//	seq      uint64: 1 for the first message each way, then +1
//	prevHash [32]:   SHA-256 of the previous payload sent this way (zeros for seq 1)
//	kind     uint8:  payloadConfirm .. payloadLast
//	time     int64:  Unix milliseconds when the sender wrote it
//	body     the rest: payloadConfirm: the joiner's queue (see appendQueueInfo);
//	         payloadReady, payloadGone: empty; payloadText: UTF-8 text;
//	         the rotation kinds: see rotation.go; payloadReceipt: see receipts.go
const (
	payloadHeaderSize = 8 + 32 + 1 + 8
	payloadConfirm    = 1
	payloadReady      = 2
	payloadText       = 3
	payloadGone       = 4
	// The kinds of queue rotation (PROTOCOL.md section 19.11).
	payloadQAdd  = 5
	payloadQKey  = 6
	payloadQUse  = 7
	payloadQTest = 8
	payloadQAsk  = 9
	// payloadLast is the highest kind a parser accepts.
	payloadLast = payloadReceipt
	// MaxTextSize is the longest message text, in bytes.
	MaxTextSize = ratchet.MaxPlaintext - payloadHeaderSize
)

type payload struct {
	seq      uint64
	prevHash [32]byte
	kind     byte
	time     int64
	body     []byte
}

func (p *payload) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, p.seq)
	b = append(b, p.prevHash[:]...)
	b = append(b, p.kind)
	b = binary.BigEndian.AppendUint64(b, uint64(p.time))
	return append(b, p.body...)
}

func parsePayload(b []byte) (payload, error) {
	var p payload
	if len(b) < payloadHeaderSize {
		return p, errEnvelope
	}
	p.seq = binary.BigEndian.Uint64(b)
	copy(p.prevHash[:], b[8:40])
	p.kind = b[40]
	p.time = int64(binary.BigEndian.Uint64(b[41:49]))
	p.body = b[payloadHeaderSize:]
	if p.seq == 0 || p.kind < payloadConfirm || p.kind > payloadLast {
		return payload{}, errEnvelope
	}
	return p, nil
}

// queueInfo is what one side tells the other about the queue it will
// receive on: where it is, its sender ID and its end-to-end key.
type queueInfo struct {
	relay    queue.Address // without password
	senderID queue.ID
	e2eKey   queue.Key
}

// Queue info layout:
//
//	addrLen uint16 | address (ASCII, canonical, no password) | senderID [24] | e2eKey [32]
func (q *queueInfo) append(b []byte) []byte {
	a := q.relay.WithoutPassword().String()
	b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
	b = append(b, a...)
	b = append(b, q.senderID[:]...)
	return append(b, q.e2eKey[:]...)
}

// parseQueueInfo parses queue info and returns the bytes after it.
func parseQueueInfo(b []byte) (queueInfo, []byte, error) {
	var q queueInfo
	if len(b) < 2 {
		return q, nil, ErrBadLink
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n+queue.IDSize+queue.KeySize {
		return q, nil, ErrBadLink
	}
	addr, err := queue.ParseAddress(string(b[:n]))
	if err != nil || addr.Password != "" || addr.String() != string(b[:n]) {
		return q, nil, ErrBadLink
	}
	q.relay = addr
	b = b[n:]
	copy(q.senderID[:], b)
	copy(q.e2eKey[:], b[queue.IDSize:])
	return q, b[queue.IDSize+queue.KeySize:], nil
}

// Invitation links: hush:/invite#<base64url, no padding> of
//
//	version uint8 = linkVersion
//	queue info of the inviter's queue (see queueInfo)
//	keys    [ratchet.PublicKeysSize] the inviter's ratchet public keys
//	check   [linkCheckSize] SHA-256(linkCheckLabel | all the bytes above), first 16 bytes
//
// The check catches a link changed or cut on its way (a typo, a lost end)
// before any network use: such a link would otherwise use up the
// invitation. It is not a MAC: whoever makes a link computes it.
// Version 1 links (the same without check) are refused with ErrOldLink.
const (
	linkPrefix     = "hush:/invite#"
	linkVersion    = 2
	linkVersionOld = 1
	linkCheckSize  = 16
	linkCheckLabel = "hush invitation link check"
)

type invitation struct {
	queue queueInfo
	keys  []byte // ratchet public keys
}

func (inv invitation) String() string {
	return linkPrefix + base64.RawURLEncoding.EncodeToString(inv.bytes())
}

// bytes returns the link's bytes, before base64: what short links (kind
// 'i') and contact requests carry (PROTOCOL.md section 21).
func (inv invitation) bytes() []byte {
	b := []byte{linkVersion}
	b = inv.queue.append(b)
	b = append(b, inv.keys...)
	return append(b, linkCheck(b)...)
}

// linkCheck returns the check of a link's bytes b (without the check).
func linkCheck(b []byte) []byte {
	h := sha256.New()
	h.Write([]byte(linkCheckLabel))
	h.Write(b)
	return h.Sum(nil)[:linkCheckSize]
}

// parseInvitation parses an invitation link. It returns ErrBadLink for
// anything but a whole, unchanged link of the current version, and
// ErrOldLink for a whole version 1 link.
func parseInvitation(link string) (invitation, error) {
	var inv invitation
	enc, ok := strings.CutPrefix(strings.TrimSpace(link), linkPrefix)
	if !ok {
		return inv, ErrBadLink
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return inv, ErrBadLink
	}
	return parseInvitationBytes(b)
}

// parseInvitationBytes parses the bytes of an invitation link (before
// base64), as parseInvitation does.
func parseInvitationBytes(b []byte) (invitation, error) {
	var inv invitation
	if len(b) < 1+linkCheckSize {
		return inv, ErrBadLink
	}
	body, check := b[:len(b)-linkCheckSize], b[len(b)-linkCheckSize:]
	if !bytes.Equal(check, linkCheck(body)) {
		if b[0] == linkVersionOld {
			if _, err := parseLinkBody(b[1:]); err == nil {
				return inv, ErrOldLink
			}
		}
		return inv, ErrBadLink
	}
	if body[0] != linkVersion {
		return inv, ErrBadLink
	}
	return parseLinkBody(body[1:])
}

// parseLinkBody parses the queue info and public keys of a link, which
// must be all of b.
func parseLinkBody(b []byte) (invitation, error) {
	q, rest, err := parseQueueInfo(b)
	if err != nil || len(rest) != ratchet.PublicKeysSize {
		return invitation{}, ErrBadLink
	}
	return invitation{queue: q, keys: rest}, nil
}
