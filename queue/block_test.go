package queue_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

func TestBlockBuilderEmpty(t *testing.T) {
	var bb queue.BlockBuilder
	if bb.Count() != 0 {
		t.Errorf("zero BlockBuilder Count = %d", bb.Count())
	}
	if bb.Fits(0) {
		t.Error("Fits(0) = true: an empty transmission is never valid")
	}
	if bb.Fits(-1) {
		t.Error("Fits(-1) = true")
	}
	if bb.Add(nil) || bb.Add([]byte{}) {
		t.Error("Add of an empty transmission succeeded")
	}
	if bb.Count() != 0 {
		t.Errorf("Count after refused Add = %d", bb.Count())
	}
	mustPanic(t, "AppendBlock on an empty builder", func() { bb.AppendBlock(nil) })
}

func TestBlockBuilderLayout(t *testing.T) {
	var bb queue.BlockBuilder
	tx1 := []byte("abc")
	tx2 := seq(0x10, 300)
	if !bb.Add(tx1) || !bb.Add(tx2) {
		t.Fatal("Add failed")
	}
	if bb.Count() != 2 {
		t.Fatalf("Count = %d, want 2", bb.Count())
	}
	prefix := []byte("prefix")
	out := bb.AppendBlock(bytes.Clone(prefix))
	if !bytes.HasPrefix(out, prefix) || len(out) != len(prefix)+queue.BlockSize {
		t.Fatalf("AppendBlock did not append one block to dst (len %d)", len(out))
	}
	block := out[len(prefix):]
	want := cat(u16(2), u16(3), tx1, u16(300), tx2)
	if !bytes.Equal(block[:len(want)], want) {
		t.Errorf("block starts %x, want %x", block[:len(want)], want)
	}
	for i, c := range block[len(want):] {
		if c != 0 {
			t.Fatalf("padding byte %d is %#x", len(want)+i, c)
		}
	}
	txs, err := queue.ParseBlock(nil, block)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 2 || !bytes.Equal(txs[0], tx1) || !bytes.Equal(txs[1], tx2) {
		t.Errorf("ParseBlock = %q", txs)
	}
}

func TestBlockBuilderFitsBoundary(t *testing.T) {
	var bb queue.BlockBuilder
	if !bb.Fits(queue.MaxTransmissionSize) {
		t.Error("empty builder: Fits(MaxTransmissionSize) = false")
	}
	if bb.Fits(queue.MaxTransmissionSize + 1) {
		t.Error("empty builder: Fits(MaxTransmissionSize+1) = true")
	}
	if bb.Add(make([]byte, queue.MaxTransmissionSize+1)) {
		t.Error("Add(MaxTransmissionSize+1 bytes) succeeded")
	}

	// One transmission of the maximum size fills the block exactly.
	full := seq(7, queue.MaxTransmissionSize)
	if !bb.Add(full) {
		t.Fatal("Add(MaxTransmissionSize bytes) failed")
	}
	if bb.Fits(1) || bb.Add([]byte{1}) {
		t.Error("a full block accepts more")
	}
	block := bb.AppendBlock(nil)
	if len(block) != queue.BlockSize || !bytes.Equal(block, cat(u16(1), u16(queue.MaxTransmissionSize), full)) {
		t.Error("a maximum-size transmission does not fill the block exactly")
	}

	// After a transmission of k bytes, exactly BlockSize-2-(2+k)-2 bytes fit.
	for _, k := range []int{1, 2, 100, 8000, queue.MaxTransmissionSize - 3, queue.MaxTransmissionSize - 2} {
		bb.Reset()
		if !bb.Add(make([]byte, k)) {
			t.Fatalf("Add(%d) failed", k)
		}
		room := queue.BlockSize - 2 - (2 + k) - 2
		if room >= 1 && !bb.Fits(room) {
			t.Errorf("after %d: Fits(%d) = false", k, room)
		}
		if bb.Fits(room + 1) {
			t.Errorf("after %d: Fits(%d) = true", k, room+1)
		}
		if room >= 1 {
			before := bb.AppendBlock(nil)
			if bb.Add(make([]byte, room+1)) {
				t.Errorf("after %d: Add(%d) succeeded", k, room+1)
			}
			if !bytes.Equal(before, bb.AppendBlock(nil)) || bb.Count() != 1 {
				t.Errorf("after %d: a refused Add changed the builder", k)
			}
			if !bb.Add(seq(1, room)) {
				t.Errorf("after %d: Add(%d) failed", k, room)
			}
			if b := bb.AppendBlock(nil); len(b) != queue.BlockSize {
				t.Errorf("after %d: block of %d bytes", k, len(b))
			} else if txs, err := queue.ParseBlock(nil, b); err != nil || len(txs) != 2 {
				t.Errorf("after %d: ParseBlock = %d, %v", k, len(txs), err)
			}
		}
	}
}

func TestBlockBuilderManySmall(t *testing.T) {
	var bb queue.BlockBuilder
	n := 0
	for bb.Add([]byte{byte(n) | 1}) {
		n++
	}
	if n != queue.MaxTransmissions || bb.Count() != n {
		t.Fatalf("a block holds %d one-byte transmissions (Count %d), want MaxTransmissions = %d", n, bb.Count(), queue.MaxTransmissions)
	}
	block := bb.AppendBlock(nil)
	txs, err := queue.ParseBlock(nil, block)
	if err != nil || len(txs) != n {
		t.Fatalf("ParseBlock = %d transmissions, %v", len(txs), err)
	}
	for i, tx := range txs {
		if len(tx) != 1 || tx[0] != byte(i)|1 {
			t.Fatalf("transmission %d = %x", i, tx)
		}
	}
}

func TestBlockBuilderReset(t *testing.T) {
	var bb queue.BlockBuilder
	bb.Add([]byte("first block"))
	first := bb.AppendBlock(nil)
	bb.Reset()
	if bb.Count() != 0 {
		t.Fatalf("Count after Reset = %d", bb.Count())
	}
	mustPanic(t, "AppendBlock after Reset", func() { bb.AppendBlock(nil) })
	bb.Add([]byte("second"))
	second := bb.AppendBlock(nil)
	txs, err := queue.ParseBlock(nil, second)
	if err != nil || len(txs) != 1 || string(txs[0]) != "second" {
		t.Errorf("after Reset: ParseBlock = %q, %v", txs, err)
	}
	// The earlier block is a copy, not a view of the builder's buffer.
	txs, err = queue.ParseBlock(nil, first)
	if err != nil || len(txs) != 1 || string(txs[0]) != "first block" {
		t.Errorf("first block changed after Reset: %q, %v", txs, err)
	}
}

func TestParseBlockAppendsAndAliases(t *testing.T) {
	var bb queue.BlockBuilder
	bb.Add([]byte("one"))
	bb.Add([]byte("two"))
	block := bb.AppendBlock(nil)
	dst := [][]byte{[]byte("kept")}
	txs, err := queue.ParseBlock(dst, block)
	if err != nil {
		t.Fatal(err)
	}
	if len(txs) != 3 || string(txs[0]) != "kept" || string(txs[1]) != "one" || string(txs[2]) != "two" {
		t.Fatalf("ParseBlock(dst) = %q", txs)
	}
	// Transmissions alias the block, and their capacity ends with them so
	// that appending to one cannot overwrite the next.
	block[4] = 'O'
	if string(txs[1]) != "One" {
		t.Errorf("transmission does not alias the block: %q", txs[1])
	}
	if cap(txs[1]) != len(txs[1]) {
		t.Errorf("cap(tx) = %d, len %d", cap(txs[1]), len(txs[1]))
	}
}

func TestParseBlockRejects(t *testing.T) {
	valid := func() []byte {
		var bb queue.BlockBuilder
		bb.Add([]byte("hello"))
		return bb.AppendBlock(nil)
	}
	if _, err := queue.ParseBlock(nil, valid()); err != nil {
		t.Fatalf("valid block rejected: %v", err)
	}
	put16 := func(b []byte, at, v int) []byte { binary.BigEndian.PutUint16(b[at:], uint16(v)); return b }
	cases := map[string][]byte{
		"empty":                  nil,
		"short by one":           valid()[:queue.BlockSize-1],
		"long by one":            append(valid(), 0),
		"two blocks":             append(valid(), valid()...),
		"zero count":             put16(valid(), 0, 0),
		"all zero":               make([]byte, queue.BlockSize),
		"count over max":         put16(valid(), 0, queue.MaxTransmissions+1),
		"count 0xffff":           put16(valid(), 0, 0xffff),
		"zero-length tx":         put16(put16(make([]byte, queue.BlockSize), 0, 1), 2, 0),
		"second tx zero length":  put16(valid(), 0, 2), // the second length is read from the padding
		"length overruns":        put16(valid(), 2, queue.BlockSize-3),
		"length 0xffff":          put16(valid(), 2, 0xffff),
		"padding after tx":       func() []byte { b := valid(); b[2+2+5] = 1; return b }(),
		"last byte of padding":   func() []byte { b := valid(); b[queue.BlockSize-1] = 0x80; return b }(),
		"count beyond last tx":   put16(put16(put16(make([]byte, queue.BlockSize), 0, 3), 2, 1), 5, 1),
		"no room for a length":   put16(put16(make([]byte, queue.BlockSize), 0, 2), 2, queue.BlockSize-5),
		"exact fill, count high": put16(put16(make([]byte, queue.BlockSize), 0, 2), 2, queue.MaxTransmissionSize),
	}
	for name, b := range cases {
		txs, err := queue.ParseBlock(nil, b)
		if !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: ParseBlock = %d transmissions, %v; want ErrSyntax", name, len(txs), err)
		}
	}
}

// TestParseBlockBoundaries checks the accepted extremes: a transmission that
// ends exactly at the block's end, and one that leaves exactly one byte of
// padding.
func TestParseBlockBoundaries(t *testing.T) {
	b := make([]byte, queue.BlockSize)
	binary.BigEndian.PutUint16(b, 1)
	binary.BigEndian.PutUint16(b[2:], queue.MaxTransmissionSize)
	b[4] = 1
	b[queue.BlockSize-1] = 1 // last byte belongs to the transmission
	txs, err := queue.ParseBlock(nil, b)
	if err != nil || len(txs) != 1 || len(txs[0]) != queue.MaxTransmissionSize {
		t.Errorf("full block: %d, %v", len(txs), err)
	}
	binary.BigEndian.PutUint16(b[2:], queue.MaxTransmissionSize-1)
	if _, err := queue.ParseBlock(nil, b); err == nil {
		t.Error("non-zero last byte accepted as padding")
	}
	b[queue.BlockSize-1] = 0
	txs, err = queue.ParseBlock(nil, b)
	if err != nil || len(txs) != 1 || len(txs[0]) != queue.MaxTransmissionSize-1 {
		t.Errorf("one byte of padding: %d, %v", len(txs), err)
	}
}

// TestBlockBuilderUse checks that a lent buffer is built in place and that
// Block pads it there, with the same bytes as AppendBlock.
func TestBlockBuilderUse(t *testing.T) {
	lent := make([]byte, 0, queue.BlockSize)
	var bb queue.BlockBuilder
	bb.Use(lent)
	mustPanic(t, "Block on an empty builder", func() { bb.Block() })
	tx := []byte("in place")
	if !bb.Add(tx) {
		t.Fatal("Add failed")
	}
	want := bb.AppendBlock(nil)
	block := bb.Block()
	if !bytes.Equal(block, want) {
		t.Fatal("Block differs from AppendBlock")
	}
	if len(block) != queue.BlockSize || &block[0] != &lent[:1][0] {
		t.Fatal("Block is not the lent buffer")
	}
	if bb.Add([]byte("x")) {
		t.Error("Add after Block succeeded")
	}
	if n := testing.AllocsPerRun(100, func() {
		bb.Reset()
		bb.Add(tx)
		bb.Block()
	}); n != 0 {
		t.Errorf("building in a lent buffer allocates %v times", n)
	}
	// Use(nil) gives the buffer back: the builder allocates its own.
	bb.Use(nil)
	bb.Add([]byte("own"))
	if b := bb.Block(); &b[0] == &lent[:1][0] {
		t.Error("builder still uses the lent buffer after Use(nil)")
	}
	// A buffer too small to hold a block is replaced, not overrun.
	small := make([]byte, 0, 10)
	bb.Use(small)
	bb.Add(seq(1, 100))
	if b := bb.Block(); len(b) != queue.BlockSize || cap(small) != 10 {
		t.Errorf("small buffer: block of %d bytes", len(b))
	}
}

// TestParseBlockPaddingEveryByte sets padding bytes in turn, at every
// alignment: each one alone makes the block invalid. It checks the first
// and last 100 bytes of padding, and every 61st between them.
func TestParseBlockPaddingEveryByte(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 7, 12, 29, 31, 32, 33} {
		var bb queue.BlockBuilder
		bb.Add(seq(1, n))
		block := bb.AppendBlock(nil)
		if _, err := queue.ParseBlock(nil, block); err != nil {
			t.Fatalf("tx of %d bytes: %v", n, err)
		}
		for i := 4 + n; i < queue.BlockSize; i++ {
			if i >= 4+n+100 && i < queue.BlockSize-100 && i%61 != 0 {
				continue
			}
			block[i] = 1 << (i % 8)
			if _, err := queue.ParseBlock(nil, block); err == nil {
				t.Fatalf("tx of %d bytes: non-zero padding at %d accepted", n, i)
			}
			block[i] = 0
		}
	}
}
