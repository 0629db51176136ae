package queue

import (
	"encoding/binary"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// A MSG event (PROTOCOL.md section 10), as a relay sends it, is the
// transmission
//
//	authLen   0
//	corrLen   0
//	entityLen IDSize, then the recipient ID
//	TagMSG, msgID[24], sealedLen uint16 (= SealedSize), sealed
//
// BeginMessageEvent and SealMessageEvent build it in one buffer: the
// message's plaintext layout (see SealMessage) is written where the sealed
// message goes and sealed in place, so that a relay that decrypts a stored
// body can decrypt it straight into the event, and one that has the body
// in memory copies it once.
const (
	// messageEventHeaderSize is the size of a MSG event before its sealed
	// message.
	messageEventHeaderSize = 1 + 1 + 1 + IDSize + 1 + IDSize + 2
	// MessageEventSize is the size of a MSG event.
	MessageEventSize = messageEventHeaderSize + SealedSize
)

// BeginMessageEvent appends to dst the MSG event that delivers message id,
// stored at unix time ts, of the queue with recipient ID rid, with its
// message not yet sealed: the plaintext layout of SealMessage with n bytes
// of body space, returned as body, which aliases the event and holds
// whatever dst's memory held. The caller writes the message's body into
// body and then calls SealMessageEvent; the event is not valid before. dst's capacity is grown so that sealing
// needs no more memory. It panics if n is negative or exceeds
// MaxMessageSize.
func BeginMessageEvent(dst []byte, rid, id ID, ts int64, n int) (ev, body []byte) {
	if n < 0 || n > MaxMessageSize {
		panic("queue: message too large to seal")
	}
	dst = slices.Grow(dst, MessageEventSize)
	dst = append(dst, 0, 0, IDSize)
	dst = append(dst, rid[:]...)
	dst = append(dst, byte(TagMSG))
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint16(dst, SealedSize)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	start := len(dst)
	dst = dst[:start+n] // the body space, written by the caller: not cleared
	dst = appendZeros(dst, MaxMessageSize-n)
	return dst, dst[start : start+n : start+n]
}

// SealMessageEvent seals, in place under key, the message of the event
// that ev ends with, from BeginMessageEvent, once its body is written, and
// returns ev. The event is then the encoding of
//
//	Transmission{Entity: rid[:], Command: Command{Tag: TagMSG, MsgID: id,
//		Body: SealMessage(nil, key, id, ts, body)}}
//
// ev must not be sealed twice. It panics if ev is shorter than an event.
func SealMessageEvent(ev []byte, key *[32]byte) []byte {
	start := len(ev) - sealedPlainSize // where the sealed message goes
	if start < messageEventHeaderSize {
		panic("queue: not a MSG event")
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err) // the key size is fixed
	}
	id := ev[start-2-IDSize : start-2]
	return aead.Seal(ev[:start], id, ev[start:], nil)
}

// AppendMessageEvent appends to dst the MSG event that delivers body,
// stored at unix time ts, as message id of the queue with recipient ID rid,
// sealed under key: BeginMessageEvent, a copy of body and
// SealMessageEvent. It panics if body exceeds MaxMessageSize.
func AppendMessageEvent(dst []byte, rid ID, key *[32]byte, id ID, ts int64, body []byte) []byte {
	ev, slot := BeginMessageEvent(dst, rid, id, ts, len(body))
	copy(slot, body)
	return SealMessageEvent(ev, key)
}
