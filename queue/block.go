package queue

import (
	"encoding/binary"
	"slices"
)

// Block layout (BlockSize bytes, both directions, after the handshake):
//
//	count    uint16 big-endian, 1..MaxTransmissions
//	count times:
//	  length uint16 big-endian, 1..MaxTransmissionSize
//	  transmission (length bytes)
//	padding  zero bytes up to BlockSize
//
// Non-zero padding is rejected so that every block has one encoding.
const (
	blockCountSize  = 2
	blockLengthSize = 2
	// MaxTransmissionSize is the largest transmission one block can carry.
	MaxTransmissionSize = BlockSize - blockCountSize - blockLengthSize
	// MaxTransmissions bounds the transmissions in one block; each takes at
	// least 1+blockLengthSize bytes.
	MaxTransmissions = (BlockSize - blockCountSize) / (blockLengthSize + 1)
)

// BlockBuilder packs transmissions into one block. The zero value is an
// empty builder. It is not safe for concurrent use.
type BlockBuilder struct {
	buf []byte // count placeholder followed by length-prefixed transmissions
}

// Reset empties the builder, keeping its buffer.
func (b *BlockBuilder) Reset() {
	b.buf = b.buf[:0]
}

// Use empties the builder and makes it build in buf's memory from then on,
// so that a caller can lend it a pooled buffer and take it back later with
// Use(nil). A buf with a capacity below BlockSize is replaced by a new
// buffer when the first transmission is added. The caller must not touch
// buf while the builder uses it.
func (b *BlockBuilder) Use(buf []byte) {
	b.buf = buf[:0]
}

// Count returns the number of transmissions added since the last Reset.
func (b *BlockBuilder) Count() int {
	if len(b.buf) < blockCountSize {
		return 0
	}
	return int(binary.BigEndian.Uint16(b.buf))
}

// Fits reports whether a transmission of n bytes can still be added.
func (b *BlockBuilder) Fits(n int) bool {
	used := len(b.buf)
	if used == 0 {
		used = blockCountSize
	}
	return n >= 1 && used+blockLengthSize+n <= BlockSize
}

// Add appends the transmission tx and reports whether it fitted; when it
// does not, the builder is unchanged.
func (b *BlockBuilder) Add(tx []byte) bool {
	if !b.Fits(len(tx)) {
		return false
	}
	if len(b.buf) == 0 {
		if cap(b.buf) < BlockSize {
			b.buf = make([]byte, 0, BlockSize)
		}
		b.buf = append(b.buf, 0, 0)
	}
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(len(tx)))
	b.buf = append(b.buf, tx...)
	binary.BigEndian.PutUint16(b.buf, uint16(b.Count()+1))
	return true
}

// AppendBlock appends the padded block to dst. It panics if no transmission
// was added: an empty block is never valid.
func (b *BlockBuilder) AppendBlock(dst []byte) []byte {
	if b.Count() == 0 {
		panic("queue: AppendBlock on an empty BlockBuilder")
	}
	dst = append(dst, b.buf...)
	return appendZeros(dst, BlockSize-len(b.buf))
}

// Block pads the block to BlockSize in the builder's own buffer and returns
// it, without copying. The result aliases the builder: it is valid until
// the builder is next used, and no transmission can be added before Reset
// or Use. Block panics if no transmission was added: an empty block is
// never valid.
func (b *BlockBuilder) Block() []byte {
	if b.Count() == 0 {
		panic("queue: Block on an empty BlockBuilder")
	}
	b.buf = appendZeros(b.buf, BlockSize-len(b.buf))
	return b.buf
}

// ParseBlock appends to dst the transmissions carried by block and returns
// it. The transmissions alias block. It returns dst unchanged and ErrSyntax
// unless block is exactly BlockSize bytes in the layout above.
func ParseBlock(dst [][]byte, block []byte) ([][]byte, error) {
	orig := dst
	if len(block) != BlockSize {
		return dst, ErrSyntax
	}
	count := int(binary.BigEndian.Uint16(block))
	if count == 0 || count > MaxTransmissions {
		return dst, ErrSyntax
	}
	rest := block[blockCountSize:]
	for range count {
		if len(rest) < blockLengthSize {
			return orig, ErrSyntax
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[blockLengthSize:]
		if n == 0 || n > len(rest) {
			return orig, ErrSyntax
		}
		dst = append(dst, rest[:n:n])
		rest = rest[n:]
	}
	if !allZero(rest) {
		return orig, ErrSyntax
	}
	return dst, nil
}

func appendZeros(b []byte, n int) []byte {
	if n <= 0 {
		return b
	}
	l := len(b)
	b = slices.Grow(b, n)[:l+n]
	clear(b[l:])
	return b
}

// allZero reports whether every byte of b is zero. It reads eight bytes at
// a time: it runs over most of every block received.
func allZero(b []byte) bool {
	var acc uint64
	for len(b) >= 32 {
		acc |= binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
		b = b[32:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc == 0
}
