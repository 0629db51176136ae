package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// FuzzOpenValue feeds openValue two kinds of stored value: inner, sealed
// under a fixed key (so the fuzzer reaches the length and padding checks
// behind the AEAD), and raw bytes as they are. It checks that openValue
// never panics, fails only with ErrCorrupt, and accepts a sealed inner
// part only in the one layout sealValue writes: the length, the value,
// zeros, in an index entry or in the value's size class. Seeds:
// testdata/fuzz/FuzzOpenValue and the ones added here.
//
//	go test -run '^$' -fuzz '^FuzzOpenValue$' -fuzztime 30s ./client/internal/vault
func FuzzOpenValue(f *testing.F) {
	aead, err := chacha20poly1305.NewX(make([]byte, keySize))
	if err != nil {
		f.Fatal(err)
	}
	ad := ad([]byte("bucket"), []byte("key"))
	inner := func(size int, value string) []byte {
		b := make([]byte, size-valueOverhead)
		binary.BigEndian.PutUint32(b, uint32(len(value)))
		copy(b[lengthSize:], value)
		return b
	}
	f.Add(inner(MinValueSize, "hi"), []byte{valueFormat})
	f.Add(inner(2*MinValueSize, "hi"), []byte{boxFormat, 1, 2})
	tampered := sealValue(aead, []byte("x"), ad, indexBoxSize)
	tampered[30] ^= 1
	f.Add(inner(indexBoxSize, "0123456789abcdef"), tampered)
	f.Fuzz(func(t *testing.T, in, raw []byte) {
		if _, err := openValue(aead, raw, ad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("raw bytes opened: %v", err)
		}
		box := []byte{valueFormat}
		box = append(box, make([]byte, chacha20poly1305.NonceSizeX)...)
		box = aead.Seal(box, box[1:], in, ad)
		v, err := openValue(aead, box, ad)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(box) != indexBoxSize && len(box) != sizeClass(len(v)) {
			t.Fatalf("a value of %d bytes opened from %d bytes", len(v), len(box))
		}
		want := make([]byte, len(in))
		binary.BigEndian.PutUint32(want, uint32(len(v)))
		copy(want[lengthSize:], v)
		if !bytes.Equal(in, want) {
			t.Fatal("an inner part that sealValue does not write opened")
		}
	})
}
