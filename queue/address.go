package queue

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultPort is the relay port used when an address names none.
const DefaultPort = 5223

// Fingerprint identifies a relay: the SHA-256 of its Ed25519 identity
// public key. The relay's TLS certificate chain must end in that key.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of an identity public key.
func FingerprintOf(pub ed25519.PublicKey) Fingerprint {
	return sha256.Sum256(pub)
}

// String returns the unpadded base64url encoding used in addresses.
func (f Fingerprint) String() string { return base64.RawURLEncoding.EncodeToString(f[:]) }

// Address is where a relay is and who it is:
//
//	hush://<fingerprint>[:<password>]@<host>[,<onion host>][:<port>]
//
// fingerprint is 43 characters of unpadded base64url; password is 1 to
// MaxPasswordSize characters of [A-Za-z0-9._~-]; host is a DNS name, an IPv4
// address (dotted quad, no leading zeros; a name whose last label is
// numeric must be one), a bracketed IPv6 address or an onion host; the optional second
// host is a v3 onion host (56 base32 characters and ".onion"); port is
// decimal, DefaultPort when absent.
type Address struct {
	Fingerprint Fingerprint
	Password    string // needed for NEW when the relay has one; "" when none
	Host        string // IPv6 without brackets
	Onion       string // "" when the relay publishes no second, onion host
	Port        uint16
}

// ErrAddress is returned (wrapped, with the reason) by ParseAddress.
var ErrAddress = errors.New("invalid relay address")

const addressScheme = "hush://"

// String returns the canonical form of a, which always names the port.
func (a Address) String() string {
	var b strings.Builder
	b.WriteString(addressScheme)
	b.WriteString(a.Fingerprint.String())
	if a.Password != "" {
		b.WriteByte(':')
		b.WriteString(a.Password)
	}
	b.WriteByte('@')
	if strings.Contains(a.Host, ":") {
		b.WriteString("[" + a.Host + "]")
	} else {
		b.WriteString(a.Host)
	}
	if a.Onion != "" {
		b.WriteByte(',')
		b.WriteString(a.Onion)
	}
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(int(a.Port)))
	return b.String()
}

// WithoutPassword returns a copy of a with no password, for display to
// people who may send but not create queues.
func (a Address) WithoutPassword() Address {
	a.Password = ""
	return a
}

// HostPort returns host:port for dialing the first host.
func (a Address) HostPort() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
}

// OnionHostPort returns the onion host and port for dialing through Tor:
// the second host, or the first one if it is an onion host; "" if none.
func (a Address) OnionHostPort() string {
	switch {
	case a.Onion != "":
		return net.JoinHostPort(a.Onion, strconv.Itoa(int(a.Port)))
	case IsOnion(a.Host):
		return a.HostPort()
	}
	return ""
}

// ParseAddress parses a relay address. Errors wrap ErrAddress.
func ParseAddress(s string) (Address, error) {
	var a Address
	bad := func(why string) (Address, error) {
		return Address{}, fmt.Errorf("%w: %s", ErrAddress, why)
	}
	rest, ok := strings.CutPrefix(s, addressScheme)
	if !ok {
		return bad("must start with " + addressScheme)
	}
	user, hosts, ok := strings.Cut(rest, "@")
	if !ok {
		return bad("missing '@' after the fingerprint")
	}
	fp, pw, hasPW := strings.Cut(user, ":")
	if len(fp) != base64.RawURLEncoding.EncodedLen(len(a.Fingerprint)) {
		return bad("the fingerprint must be 43 base64url characters")
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(a.Fingerprint[:], []byte(fp)); err != nil || n != len(a.Fingerprint) {
		return bad("the fingerprint is not valid base64url")
	}
	if hasPW {
		if !ValidPassword(pw) {
			return bad(fmt.Sprintf("the password must be 1 to %d characters of A-Z a-z 0-9 . _ ~ -", MaxPasswordSize))
		}
		a.Password = pw
	}
	// Split off the port: after the last ':' not inside brackets.
	a.Port = DefaultPort
	if i := strings.LastIndexByte(hosts, ':'); i >= 0 && i > strings.LastIndexByte(hosts, ']') {
		p, err := strconv.ParseUint(hosts[i+1:], 10, 16)
		if err != nil || p == 0 || strconv.FormatUint(p, 10) != hosts[i+1:] {
			return bad("the port must be a number from 1 to 65535")
		}
		a.Port = uint16(p)
		hosts = hosts[:i]
	}
	first, second, hasSecond := strings.Cut(hosts, ",")
	host, err := parseHost(first)
	if err != nil {
		return bad(err.Error())
	}
	a.Host = host
	if hasSecond {
		if !IsOnion(second) || IsOnion(host) {
			return bad("the second host must be a v3 onion host, after a non-onion host")
		}
		a.Onion = second
	}
	return a, nil
}

func parseHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") {
		ip6, ok := strings.CutSuffix(h[1:], "]")
		ip := net.ParseIP(ip6)
		if !ok || ip == nil || ip.To4() != nil || ip.String() != ip6 {
			return "", errors.New("the IPv6 host must be a canonical address in brackets")
		}
		return ip6, nil
	}
	if h == "" || len(h) > 253 {
		return "", errors.New("missing or over-long host")
	}
	if strings.HasSuffix(h, ".onion") && !IsOnion(h) {
		return "", errors.New("the onion host must be 56 base32 characters and .onion")
	}
	labels := strings.Split(h, ".")
	if allDigits(labels[len(labels)-1]) {
		// Numeric: an IPv4 address, in its one spelling.
		if !canonicalIPv4(labels) {
			return "", errors.New("a numeric host must be an IPv4 address in dotted-quad form (four numbers 0 to 255, no leading zeros)")
		}
		return h, nil
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("the host is not a valid name")
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", errors.New("the host must be lower-case letters, digits, '-' and '.'")
			}
		}
	}
	return h, nil
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// canonicalIPv4 reports whether labels are the four numbers of an IPv4
// address in dotted-quad form: each 0 to 255, without leading zeros.
func canonicalIPv4(labels []string) bool {
	if len(labels) != 4 {
		return false
	}
	for _, l := range labels {
		if !allDigits(l) || len(l) > 3 || len(l) > 1 && l[0] == '0' {
			return false
		}
		if n, _ := strconv.Atoi(l); n > 255 {
			return false
		}
	}
	return true
}

// IsOnion reports whether host is a v3 onion host name: 56 lower-case
// base32 characters followed by ".onion".
func IsOnion(host string) bool {
	id, ok := strings.CutSuffix(host, ".onion")
	if !ok || len(id) != 56 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidPassword reports whether pw can be a relay password: 1 to
// MaxPasswordSize characters of [A-Za-z0-9._~-].
func ValidPassword(pw string) bool {
	if len(pw) == 0 || len(pw) > MaxPasswordSize {
		return false
	}
	for _, c := range []byte(pw) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}
