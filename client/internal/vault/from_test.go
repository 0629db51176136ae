package vault

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
)

func TestForEachFrom(t *testing.T) {
	v, err := Create(filepath.Join(t.TempDir(), "v.db"), Secret{KeyFile: filepath.Join(t.TempDir(), "key")})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	bucket := []byte("b")
	key := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	err = v.Update(func(tx *Tx) error {
		for n := uint64(1); n <= 5; n++ {
			if err := tx.Put(bucket, key(n), fmt.Appendf(nil, "v%d", n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		start []byte
		want  string
	}{
		{nil, "v1v2v3v4v5"},
		{key(3), "v3v4v5"},
		{key(6), ""},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 2, 0}, "v3v4v5"}, // between keys
	} {
		got := ""
		err := v.View(func(tx *Tx) error {
			return tx.ForEachFrom(bucket, tc.start, func(_, value []byte) error {
				got += string(value)
				return nil
			})
		})
		if err != nil || got != tc.want {
			t.Errorf("from %x: %q, %v, want %q", tc.start, got, err, tc.want)
		}
	}
	if err := v.View(func(tx *Tx) error {
		return tx.ForEachFrom([]byte("missing"), nil, func(_, _ []byte) error { t.Error("a key in a missing bucket"); return nil })
	}); err != nil {
		t.Error(err)
	}
}
