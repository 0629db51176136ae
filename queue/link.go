package queue

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Short links and link data (PROTOCOL.md section 21). A short link names a
// relay, a kind and a link key; the link key gives the link ID, under which
// the relay stores the link data, and the key that opens it. The relay
// never learns the link key, so it can neither read the data nor replace
// it, and the link key is a hash of the data's plaintext, so not even
// someone who holds the link can make other data that opens under it.
//
// Link data layout (exactly LinkDataSize bytes):
//
//	XChaCha20-Poly1305(key = linkDataKey, nonce = link ID, no additional data) of
//	  kind       uint8: LinkInvitation or LinkAddress
//	  contentLen uint16 big-endian, 0..MaxLinkContent
//	  content    contentLen bytes
//	  padding    zero bytes up to LinkDataSize-16
//
//	link key      = SHA-256(linkKeyLabel | plaintext)[:LinkKeySize]
//	ID | linkDataKey = HKDF-SHA256(ikm = link key, salt = none, info = linkInfo, L = 24 + 32)
const (
	// LinkKeySize is the size of a link key.
	LinkKeySize = 16
	// LinkDataSize is the size of the link data that LSET stores and LNK
	// returns, whatever its content.
	LinkDataSize  = 2048
	linkPlainSize = LinkDataSize - chacha20poly1305.Overhead
	linkHeadSize  = 1 + 2
	// MaxLinkContent is the largest content of link data.
	MaxLinkContent = linkPlainSize - linkHeadSize

	linkInfo     = "hush/1 link"
	linkKeyLabel = "hush/1 link key"
)

// LinkKey is the secret of a short link.
type LinkKey [LinkKeySize]byte

// LinkKind is what link data holds; its letter is the kind in a short
// link.
type LinkKind byte

// Link kinds.
const (
	// LinkInvitation: a one-time invitation (the bytes of an invitation
	// link, PROTOCOL.md section 19.2).
	LinkInvitation LinkKind = 'i'
	// LinkAddress: a contact address (PROTOCOL.md section 21.4).
	LinkAddress LinkKind = 'a'
)

func (k LinkKind) valid() bool { return k == LinkInvitation || k == LinkAddress }

// LinkMode tells the relay how long it keeps link data (LSET).
type LinkMode byte

// Link modes.
const (
	// LinkOnce: the relay deletes the data when it first answers LGET.
	LinkOnce LinkMode = 1
	// LinkReusable: the relay keeps the data until its queue is deleted
	// or the data replaced.
	LinkReusable LinkMode = 2
)

// ErrLinkData is returned by OpenLinkData for data that does not open
// under its link key, is malformed, or is not the data the link key names.
var ErrLinkData = errors.New("queue: link data does not match its link")

// ErrShortLink is returned (wrapped, with the reason) by ParseShortLink.
var ErrShortLink = errors.New("invalid short link")

// LinkKeys derives the link ID and the key of the link data from a link key.
func LinkKeys(k LinkKey) (id ID, dataKey [32]byte) {
	b, err := hkdf.Key(sha256.New, k[:], nil, linkInfo, IDSize+32)
	if err != nil {
		panic(err) // the length is fixed and small
	}
	copy(id[:], b)
	copy(dataKey[:], b[IDSize:])
	return id, dataKey
}

// SealLinkData returns the link key and the link data of content of the
// given kind. It is deterministic: the key is a hash of the plaintext and
// the nonce is the link ID. It returns ErrSyntax for an unknown kind or
// content longer than MaxLinkContent.
func SealLinkData(kind LinkKind, content []byte) (LinkKey, []byte, error) {
	var k LinkKey
	if !kind.valid() || len(content) > MaxLinkContent {
		return k, nil, ErrSyntax
	}
	plain := make([]byte, 0, LinkDataSize)
	plain = append(plain, byte(kind))
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(content)))
	plain = append(plain, content...)
	plain = appendZeros(plain, linkPlainSize-len(plain))
	k = linkKeyOf(plain)
	id, dk := LinkKeys(k)
	aead, err := chacha20poly1305.NewX(dk[:])
	if err != nil {
		panic(err)
	}
	return k, aead.Seal(plain[:0], id[:], plain, nil), nil
}

func linkKeyOf(plain []byte) LinkKey {
	h := sha256.New()
	h.Write([]byte(linkKeyLabel))
	h.Write(plain)
	var k LinkKey
	copy(k[:], h.Sum(nil))
	return k
}

// OpenLinkData opens link data fetched for the link key k, which must be
// of the given kind, and returns its content (a new slice). It returns
// ErrLinkData for anything but the very data SealLinkData made for k.
func OpenLinkData(k LinkKey, kind LinkKind, data []byte) ([]byte, error) {
	if len(data) != LinkDataSize {
		return nil, ErrLinkData
	}
	id, dk := LinkKeys(k)
	aead, err := chacha20poly1305.NewX(dk[:])
	if err != nil {
		panic(err)
	}
	plain, err := aead.Open(nil, id[:], data, nil)
	if err != nil {
		return nil, ErrLinkData
	}
	want := linkKeyOf(plain)
	n := int(binary.BigEndian.Uint16(plain[1:]))
	if subtle.ConstantTimeCompare(want[:], k[:]) != 1 || LinkKind(plain[0]) != kind ||
		n > MaxLinkContent || !allZero(plain[linkHeadSize+n:]) {
		return nil, ErrLinkData
	}
	return plain[linkHeadSize : linkHeadSize+n], nil
}

// ShortLink is a short link:
//
//	<relay address, canonical, no password>/<kind>#<link key, 22 characters of unpadded base64url>
//
// for example hush://<43 characters>@relay.example.com:5223/i#<22 characters>.
type ShortLink struct {
	Relay Address // without a password
	Kind  LinkKind
	Key   LinkKey
}

// String returns the short link's text. The relay's password, if any, is
// left out.
func (l ShortLink) String() string {
	return l.Relay.WithoutPassword().String() + "/" + string(rune(l.Kind)) + "#" +
		base64.RawURLEncoding.EncodeToString(l.Key[:])
}

// ID returns the link ID under which the relay keeps the link's data.
func (l ShortLink) ID() ID {
	id, _ := LinkKeys(l.Key)
	return id
}

// IsShortLink reports whether s looks like a short link (a relay address
// followed by a kind), so that callers can tell it from other links
// before parsing it.
func IsShortLink(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, addressScheme) && strings.Contains(s, "/") &&
		strings.LastIndexByte(s, '/') > len(addressScheme)
}

// ParseShortLink parses a short link. The address must be in canonical
// form, without a password. Errors wrap ErrShortLink.
func ParseShortLink(s string) (ShortLink, error) {
	var l ShortLink
	bad := func(why string) (ShortLink, error) {
		return ShortLink{}, fmt.Errorf("%w: %s", ErrShortLink, why)
	}
	rest, key, ok := strings.Cut(strings.TrimSpace(s), "#")
	if !ok {
		return bad("missing '#' before the key")
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 || i < len(addressScheme) || len(rest)-i != 2 {
		return bad("missing '/<kind>' after the relay address")
	}
	l.Kind = LinkKind(rest[i+1])
	if !l.Kind.valid() {
		return bad("unknown kind " + rest[i+1:])
	}
	a, err := ParseAddress(rest[:i])
	if err != nil {
		return bad(err.Error())
	}
	if a.Password != "" || a.String() != rest[:i] {
		return bad("the relay address must be canonical, without a password")
	}
	l.Relay = a
	if len(key) != base64.RawURLEncoding.EncodedLen(LinkKeySize) {
		return bad("the key must be 22 base64url characters")
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(l.Key[:], []byte(key)); err != nil || n != LinkKeySize {
		return bad("the key is not valid base64url")
	}
	return l, nil
}
