package queue

import "hash"

// Transmission layout (one entry of a block):
//
//	authLen   uint8, 0 or AuthSize
//	auth      authLen bytes: HMAC-SHA256 authenticator (see AppendAuth)
//	corrLen   uint8, 0 or CorrIDSize
//	corrID    corrLen bytes: chosen by the client, echoed in the response
//	entityLen uint8, 0 or IDSize
//	entity    entityLen bytes: the recipient or sender ID the command is for
//	command   the rest (see Command)
//
// The signed part, the input of the authenticator, is everything after auth.
type Transmission struct {
	Auth    []byte // nil, or AuthSize bytes
	CorrID  []byte // nil, or CorrIDSize bytes; nil on events
	Entity  []byte // nil, or IDSize bytes
	Command Command
}

// AppendSigned appends the signed part of t (everything but the
// authenticator) to b.
func (t *Transmission) AppendSigned(b []byte) []byte {
	b = appendField(b, t.CorrID, CorrIDSize)
	b = appendField(b, t.Entity, IDSize)
	return t.Command.Append(b)
}

// Append appends the whole encoding of t to b. It panics if a field has a
// length other than zero or its fixed size (a programmer error).
func (t *Transmission) Append(b []byte) []byte {
	b = appendField(b, t.Auth, AuthSize)
	return t.AppendSigned(b)
}

// AppendAuthorized appends the whole encoding of t to b, with the
// authenticator of its signed part under key (AppendAuth) in place of
// t.Auth. It encodes the signed part once, in place, where Append after
// AppendSigned would encode it twice. It panics as Append does.
func (t *Transmission) AppendAuthorized(b []byte, key *[32]byte) []byte {
	b, start := t.appendAuthSlot(b)
	AppendAuth(b[start:start:start+AuthSize], key, b[start+AuthSize:])
	return b
}

// AppendAuthorizedMAC is AppendAuthorized with the authenticator computed
// by mac, which NewAuthMAC made for the key; it resets mac first, so one
// MAC serves every transmission under its key, one at a time.
func (t *Transmission) AppendAuthorizedMAC(b []byte, mac hash.Hash) []byte {
	b, start := t.appendAuthSlot(b)
	mac.Reset()
	mac.Write(b[start+AuthSize:])
	mac.Sum(b[start : start : start+AuthSize])
	return b
}

// appendAuthSlot appends t with a zero authenticator and returns where the
// authenticator goes; the signed part follows it.
func (t *Transmission) appendAuthSlot(b []byte) ([]byte, int) {
	start := len(b) + 1
	b = append(b, AuthSize)
	b = append(b, make([]byte, AuthSize)...)
	return t.AppendSigned(b), start
}

func appendField(b, f []byte, size int) []byte {
	if len(f) != 0 && len(f) != size {
		panic("queue: transmission field of the wrong size")
	}
	b = append(b, byte(len(f)))
	return append(b, f...)
}

// ParseTransmission parses one transmission and also returns its signed
// part. All returned slices alias raw.
func ParseTransmission(raw []byte) (t Transmission, signed []byte, err error) {
	p := parser{b: raw}
	t.Auth = p.field(AuthSize)
	signed = p.b
	t.CorrID = p.field(CorrIDSize)
	t.Entity = p.field(IDSize)
	if p.bad {
		return Transmission{}, nil, ErrSyntax
	}
	t.Command, err = ParseCommand(p.b)
	if err != nil {
		return Transmission{}, nil, err
	}
	return t, signed, nil
}

// field reads a length-prefixed field whose length must be 0 or size.
func (p *parser) field(size int) []byte {
	n := p.byte()
	if p.bad || (n != 0 && n != size) {
		p.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	return p.next(n)
}
