package ratchet

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"maps"
	"math"
	"slices"
)

// stateFixedSize is the size of the marshaled state without the optional
// keys and the stored message keys.
const stateFixedSize = 1 + 1 + adSize + 4*keySize + 3*4

// MarshalBinary returns the encoding of the ratchet's whole state,
// including its secrets, for the local store (see the package
// documentation). The encoding is canonical: equal states give equal
// bytes. It never fails.
func (r *Ratchet) MarshalBinary() ([]byte, error) {
	st := &r.st
	b := make([]byte, 0, stateFixedSize+6*keySize+2+len(r.skipped)*(keySize+2)+r.nskipped*(4+keySize))
	b = append(b, version, st.flags)
	b = append(b, st.ad[:]...)
	b = append(b, st.dhs.Bytes()...)
	b = append(b, st.rk[:]...)
	b = append(b, st.nhks[:]...)
	b = append(b, st.nhkr[:]...)
	b = binary.BigEndian.AppendUint32(b, st.ns)
	b = binary.BigEndian.AppendUint32(b, st.pn)
	b = binary.BigEndian.AppendUint32(b, st.nr)
	if st.flags&flagSend != 0 {
		b = append(b, st.dhr[:]...)
		b = append(b, st.cks[:]...)
		b = append(b, st.hks[:]...)
	}
	if st.flags&flagRecv != 0 {
		b = append(b, st.ckr[:]...)
		b = append(b, st.hkr[:]...)
	}
	if st.flags&flagPrevHKr != 0 {
		b = append(b, st.prevHKr[:]...)
	}
	hks := make([][keySize]byte, 0, len(r.skipped))
	for hk := range r.skipped {
		hks = append(hks, hk)
	}
	slices.SortFunc(hks, func(x, y [keySize]byte) int { return bytes.Compare(x[:], y[:]) })
	b = binary.BigEndian.AppendUint16(b, uint16(len(hks)))
	for _, hk := range hks {
		keys := r.skipped[hk]
		b = append(b, hk[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(keys)))
		for _, n := range slices.Sorted(maps.Keys(keys)) {
			mk := keys[n]
			b = binary.BigEndian.AppendUint32(b, n)
			b = append(b, mk[:]...)
		}
	}
	return b, nil
}

// UnmarshalRatchet restores a ratchet from the encoding made by
// Ratchet.MarshalBinary. It accepts only canonical encodings of a valid
// state, and returns ErrSyntax for anything else.
func UnmarshalRatchet(b []byte) (*Ratchet, error) {
	d := decoder{b: b}
	r := &Ratchet{rand: rand.Reader, skipped: map[[keySize]byte]map[uint32][keySize]byte{}}
	st := &r.st
	if d.byte() != version {
		return nil, ErrSyntax
	}
	st.flags = d.byte()
	d.key(st.ad[:keySize])
	d.key(st.ad[keySize:])
	var dhs [keySize]byte
	d.key(dhs[:])
	d.key(st.rk[:])
	d.key(st.nhks[:])
	d.key(st.nhkr[:])
	st.ns = d.uint32()
	st.pn = d.uint32()
	st.nr = d.uint32()
	if d.err {
		return nil, ErrSyntax
	}
	send, recv, prev := st.flags&flagSend != 0, st.flags&flagRecv != 0, st.flags&flagPrevHKr != 0
	if st.flags&^flagsAll != 0 || (recv && !send) || (prev && !recv) ||
		(!send && (st.ns != 0 || st.pn != 0)) || (!recv && st.nr != 0) {
		return nil, ErrSyntax
	}
	if send {
		d.key(st.dhr[:])
		d.key(st.cks[:])
		d.key(st.hks[:])
	}
	if recv {
		d.key(st.ckr[:])
		d.key(st.hkr[:])
	}
	if prev {
		d.key(st.prevHKr[:])
	}
	groups := int(d.uint16())
	var last [keySize]byte
	for i := range groups {
		var hk [keySize]byte
		d.key(hk[:])
		count := int(d.uint16())
		if d.err || count == 0 || (i > 0 && bytes.Compare(last[:], hk[:]) >= 0) || r.nskipped+count > MaxSkip {
			return nil, ErrSyntax
		}
		last = hk
		keys := make(map[uint32][keySize]byte, count)
		var lastN uint32
		for j := range count {
			n := d.uint32()
			var mk [keySize]byte
			d.key(mk[:])
			if d.err || n == math.MaxUint32 || (j > 0 && n <= lastN) || (recv && hk == st.hkr && n >= st.nr) {
				return nil, ErrSyntax
			}
			lastN = n
			keys[n] = mk
		}
		r.skipped[hk] = keys
		r.nskipped += count
	}
	if d.err || len(d.b) != 0 {
		return nil, ErrSyntax
	}
	priv, err := ecdh.X25519().NewPrivateKey(dhs[:])
	if err != nil {
		return nil, ErrSyntax
	}
	st.setDHs(priv)
	return r, nil
}

// decoder reads a state encoding; err is set once the input runs out.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) take(n int) []byte {
	if d.err || len(d.b) < n {
		d.err = true
		return make([]byte, n)
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) byte() byte     { return d.take(1)[0] }
func (d *decoder) key(dst []byte) { copy(dst, d.take(len(dst))) }
func (d *decoder) uint16() uint16 { return binary.BigEndian.Uint16(d.take(2)) }
func (d *decoder) uint32() uint32 { return binary.BigEndian.Uint32(d.take(4)) }
