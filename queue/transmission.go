package queue

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
	start := len(b) + 1 // where the authenticator goes
	b = append(b, AuthSize)
	b = append(b, make([]byte, AuthSize)...)
	b = t.AppendSigned(b)
	AppendAuth(b[start:start:start+AuthSize], key, b[start+AuthSize:])
	return b
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
