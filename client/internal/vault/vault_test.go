package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fast is a test-only Argon2id cost; the default cost is exercised once, in
// TestDefaultCost.
var fast = Options{ArgonTime: 1, ArgonMemoryKiB: 64, ArgonThreads: 1}

func pass(s string) Secret { return Secret{Passphrase: []byte(s)} }

func newVault(t *testing.T, s Secret) (*Vault, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hush.db")
	v, err := CreateWith(path, s, fast)
	if err != nil {
		t.Fatalf("CreateWith: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v, path
}

func mustPut(t *testing.T, v *Vault, bucket, key, value string) {
	t.Helper()
	err := v.Update(func(tx *Tx) error { return tx.Put([]byte(bucket), []byte(key), []byte(value)) })
	if err != nil {
		t.Fatalf("Put %s/%s: %v", bucket, key, err)
	}
}

func get(v *Vault, bucket, key string) ([]byte, error) {
	var out []byte
	err := v.View(func(tx *Tx) error {
		var err error
		out, err = tx.Get([]byte(bucket), []byte(key))
		return err
	})
	return out, err
}

func mustGet(t *testing.T, v *Vault, bucket, key, want string) {
	t.Helper()
	got, err := get(v, bucket, key)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", bucket, key, err)
	}
	if string(got) != want {
		t.Fatalf("Get %s/%s = %q, want %q", bucket, key, got, want)
	}
}

func mustClose(t *testing.T, v *Vault) {
	t.Helper()
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustOpen(t *testing.T, path string, s Secret) *Vault {
	t.Helper()
	v, err := Open(path, s)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// rawUpdate changes the vault file with bbolt directly, bypassing vault.
func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatalf("bolt Update: %v", err)
	}
}

func rawGet(t *testing.T, path, bucket, key string) []byte {
	t.Helper()
	var out []byte
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no bucket %q", bucket)
		}
		out = bytes.Clone(b.Get([]byte(key)))
		if out == nil {
			return fmt.Errorf("no key %q", key)
		}
		return nil
	})
	return out
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestRoundTripPassphrase(t *testing.T) {
	s := pass("correct horse battery staple")
	v, path := newVault(t, s)
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("vault file mode %#o, want 0600", m)
	}
	mustPut(t, v, "msgs", "k1", "hello")
	mustPut(t, v, "msgs", "k2", "")
	mustPut(t, v, "keys", "k1", "secret key bytes")
	mustPut(t, v, "msgs", "k1", "hello again") // replaces
	mustClose(t, v)

	v = mustOpen(t, path, s)
	mustGet(t, v, "msgs", "k1", "hello again")
	mustGet(t, v, "msgs", "k2", "")
	mustGet(t, v, "keys", "k1", "secret key bytes")
}

func TestRoundTripKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hush.db")
	s := Secret{KeyFile: filepath.Join(dir, "hush.key")}
	v, err := Create(path, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("vault file mode %#o, want 0600", m)
	}
	if m := mode(t, s.KeyFile); m != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", m)
	}
	key, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 || bytes.Equal(key, make([]byte, 32)) {
		t.Fatalf("key file holds %x, want 32 random bytes", key)
	}
	mustPut(t, v, "msgs", "k1", "hello")
	mustClose(t, v)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, key) {
		t.Fatal("the key file's key is in the vault file")
	}

	v = mustOpen(t, path, s)
	mustGet(t, v, "msgs", "k1", "hello")
}

func TestDefaultCost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hush.db")
	s := pass("pw")
	v, err := Create(path, s)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, v, "b", "k", "v")
	mustClose(t, v)
	params := rawGet(t, path, headerBucket, hArgon)
	want := argonParams{time: 3, memoryKiB: 64 * 1024, threads: 2}.marshal()
	if !bytes.Equal(params, want) {
		t.Fatalf("stored argon2id params %x, want %x", params, want)
	}
	if salt := rawGet(t, path, headerBucket, hSalt); len(salt) != 16 {
		t.Fatalf("salt is %d bytes, want 16", len(salt))
	}
	v = mustOpen(t, path, s)
	mustGet(t, v, "b", "k", "v")
}

func TestWrongPassphrase(t *testing.T) {
	v, path := newVault(t, pass("right"))
	mustClose(t, v)
	for _, s := range []Secret{pass("wrong"), pass("righ"), pass("right ")} {
		if _, err := Open(path, s); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("Open with %q: %v, want ErrWrongKey", s.Passphrase, err)
		}
	}
	// A key file does not open a passphrase vault.
	other := Secret{KeyFile: filepath.Join(t.TempDir(), "k")}
	w, err := CreateWith(filepath.Join(t.TempDir(), "other.db"), other, fast)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	if _, err := Open(path, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with a key file: %v, want ErrWrongKey", err)
	}
	// The right one still works after failed attempts.
	mustClose(t, mustOpen(t, path, pass("right")))
}

func TestWrongKeyFile(t *testing.T) {
	dir := t.TempDir()
	s := Secret{KeyFile: filepath.Join(dir, "a.key")}
	v, err := Create(filepath.Join(dir, "a.db"), s)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, v)
	other := Secret{KeyFile: filepath.Join(dir, "b.key")}
	w, err := Create(filepath.Join(dir, "b.db"), other)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	path := filepath.Join(dir, "a.db")
	if _, err := Open(path, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key file: %v, want ErrWrongKey", err)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, make([]byte, 31), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Secret{KeyFile: short}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with a 31-byte key file: %v, want ErrWrongKey", err)
	}
	long := filepath.Join(dir, "long.key")
	key, _ := os.ReadFile(s.KeyFile)
	if err := os.WriteFile(long, append(key, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Secret{KeyFile: long}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with a 33-byte key file: %v, want ErrWrongKey", err)
	}
	if _, err := Open(path, pass("anything")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open of a key-file vault with a passphrase: %v, want ErrWrongKey", err)
	}
	if _, err := Open(path, Secret{KeyFile: filepath.Join(dir, "missing.key")}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open with a missing key file: %v, want fs.ErrNotExist", err)
	}
	mustClose(t, mustOpen(t, path, s))
}

func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hush.db")
	s := Secret{KeyFile: filepath.Join(dir, "hush.key")}
	v, err := Create(path, s)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, v)

	for _, name := range []string{path, s.KeyFile} {
		for _, m := range []fs.FileMode{0o644, 0o640, 0o604, 0o660} {
			if err := os.Chmod(name, m); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, s)
			if !errors.Is(err, ErrInsecureMode) {
				t.Fatalf("Open with %s at %#o: %v, want ErrInsecureMode", name, m, err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name %s", err, name)
			}
		}
		if err := os.Chmod(name, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, mustOpen(t, path, s))
}

func TestNoPlaintextInFile(t *testing.T) {
	const canary = "hush-canary: meet me at the old mill at 9"
	s := pass("a distinctive passphrase 7f3a")
	v, path := newVault(t, s)
	mustPut(t, v, "msgs", "m1", canary)
	mustPut(t, v, "msgs", "m2", strings.Repeat(canary, 200)) // spans pages
	mustClose(t, v)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{"hush-canary", "old mill", string(s.Passphrase)} {
		if bytes.Contains(raw, []byte(needle)) {
			t.Fatalf("%q is in the vault file in clear", needle)
		}
	}
	// The file does hold the keys and bucket names, which are not secret.
	if !bytes.Contains(raw, []byte("msgs")) {
		t.Fatal("bucket name not found in file: the scan is not looking at the right bytes")
	}
	v = mustOpen(t, path, s)
	mustGet(t, v, "msgs", "m1", canary)
}

func TestTamperedValue(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	mustPut(t, v, "msgs", "k1", "a value that will be tampered with")
	mustPut(t, v, "msgs", "k2", "an untouched value")
	mustClose(t, v)
	box := rawGet(t, path, "msgs", "k1")

	// Flip one bit in each part: format byte, nonce, ciphertext, tag.
	for _, off := range []int{0, 1, 24, 30, 40, len(box) - 1} {
		bad := bytes.Clone(box)
		bad[off] ^= 0x01
		rawUpdate(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("msgs")).Put([]byte("k1"), bad)
		})
		v := mustOpen(t, path, s)
		if _, err := get(v, "msgs", "k1"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: Get: %v, want ErrCorrupt", off, err)
		}
		err := v.View(func(tx *Tx) error {
			return tx.ForEach([]byte("msgs"), nil, func(k, v []byte) error { return nil })
		})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: ForEach: %v, want ErrCorrupt", off, err)
		}
		mustGet(t, v, "msgs", "k2", "an untouched value")
		mustClose(t, v)
	}

	// A truncated value is malformed.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("msgs")).Put([]byte("k1"), box[:20])
	})
	v = mustOpen(t, path, s)
	if _, err := get(v, "msgs", "k1"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated value: Get: %v, want ErrCorrupt", err)
	}
}

func TestMovedValue(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	mustPut(t, v, "a", "k1", "value of a/k1")
	mustPut(t, v, "a", "k2", "value of a/k2")
	mustPut(t, v, "b", "k2", "value of b/k2")
	mustClose(t, v)

	box := rawGet(t, path, "a", "k1")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("a")).Put([]byte("k2"), box); err != nil { // another key
			return err
		}
		if err := tx.Bucket([]byte("b")).Put([]byte("k1"), box); err != nil { // another bucket, same key
			return err
		}
		return tx.Bucket([]byte("b")).Put([]byte("k2"), box) // over a valid value
	})
	v = mustOpen(t, path, s)
	mustGet(t, v, "a", "k1", "value of a/k1")
	for _, bk := range [][2]string{{"a", "k2"}, {"b", "k1"}, {"b", "k2"}} {
		if _, err := get(v, bk[0], bk[1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get %s/%s after move: %v, want ErrCorrupt", bk[0], bk[1], err)
		}
	}
}

func TestTamperedHeader(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	mustClose(t, v)
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := os.WriteFile(path, clean, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put := func(k string, val []byte) {
		rawUpdate(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(headerBucket)).Put([]byte(k), val)
		})
	}

	// A changed data key does not authenticate although the key is right.
	dk := rawGet(t, path, headerBucket, hDataKey)
	dk[len(dk)-1] ^= 1
	put(hDataKey, dk)
	if _, err := Open(path, s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered data key: %v, want ErrCorrupt", err)
	}
	restore()

	// Costs that would make argon2 panic or run away are refused.
	for _, p := range []argonParams{{0, 64, 1}, {1, 64, 0}, {1, 0, 1}, {1000, 64, 1}, {1, 1 << 30, 1}} {
		put(hArgon, p.marshal())
		if _, err := Open(path, s); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("argon2id params %+v: %v, want ErrCorrupt", p, err)
		}
		restore()
	}

	// A changed salt derives another key.
	put(hSalt, make([]byte, 16))
	if _, err := Open(path, s); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("changed salt: %v, want ErrWrongKey", err)
	}
	restore()

	put(hFormat, []byte{2})
	if _, err := Open(path, s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown format: %v, want ErrCorrupt", err)
	}
	restore()
	mustClose(t, mustOpen(t, path, s))
}

func TestNotAVault(t *testing.T) {
	dir := t.TempDir()
	s := pass("pw")

	if _, err := Open(filepath.Join(dir, "missing.db"), s); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Open created the missing file")
	}

	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty, s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty file: %v, want ErrCorrupt", err)
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("junk file: %v, want ErrCorrupt", err)
	}

	plain := filepath.Join(dir, "plain.db")
	db, err := bolt.Open(plain, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(plain, s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bbolt file without header: %v, want ErrCorrupt", err)
	}
}

func TestForEachOrderAndPrefix(t *testing.T) {
	v, _ := newVault(t, pass("pw"))
	keys := []string{"b/2", "a/10", "a/2", "c", "a/1", "b/1", "a", "a/\xff"}
	err := v.Update(func(tx *Tx) error {
		for _, k := range keys {
			if err := tx.Put([]byte("idx"), []byte(k), []byte("v:"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	list := func(prefix string) []string {
		t.Helper()
		var got []string
		err := v.View(func(tx *Tx) error {
			var p []byte
			if prefix != "" {
				p = []byte(prefix)
			}
			return tx.ForEach([]byte("idx"), p, func(k, val []byte) error {
				if string(val) != "v:"+string(k) {
					t.Errorf("value of %q is %q", k, val)
				}
				got = append(got, string(k))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for prefix, want := range map[string][]string{
		"":    {"a", "a/1", "a/10", "a/2", "a/\xff", "b/1", "b/2", "c"},
		"a/":  {"a/1", "a/10", "a/2", "a/\xff"},
		"a/1": {"a/1", "a/10"},
		"b":   {"b/1", "b/2"},
		"c":   {"c"},
		"d":   nil,
		"0":   nil,
	} {
		if got := list(prefix); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ForEach prefix %q: %q, want %q", prefix, got, want)
		}
	}

	stop := errors.New("stop")
	n := 0
	err = v.View(func(tx *Tx) error {
		return tx.ForEach([]byte("idx"), nil, func(k, val []byte) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
	})
	if err != stop || n != 3 {
		t.Fatalf("ForEach stopped with %v after %d calls, want stop after 3", err, n)
	}

	err = v.View(func(tx *Tx) error {
		return tx.ForEach([]byte("nobucket"), nil, func(k, val []byte) error {
			return errors.New("called for a missing bucket")
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSeq(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	next := func(bucket string) uint64 {
		t.Helper()
		var n uint64
		err := v.Update(func(tx *Tx) error {
			var err error
			n, err = tx.Seq([]byte(bucket))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for want := uint64(1); want <= 3; want++ {
		if got := next("out"); got != want {
			t.Fatalf("Seq = %d, want %d", got, want)
		}
	}
	if got := next("in"); got != 1 {
		t.Fatalf("Seq of another bucket = %d, want 1", got)
	}

	// A rolled-back increment does not persist.
	errRollback := errors.New("rollback")
	err := v.Update(func(tx *Tx) error {
		if n, err := tx.Seq([]byte("out")); err != nil || n != 4 {
			t.Errorf("Seq = %d, %v; want 4", n, err)
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if got := next("out"); got != 4 {
		t.Fatalf("Seq after rollback = %d, want 4", got)
	}

	// Seq keys sort in order.
	err = v.Update(func(tx *Tx) error {
		for i := 0; i < 300; i++ {
			n, err := tx.Seq([]byte("log"))
			if err != nil {
				return err
			}
			if err := tx.Put([]byte("log"), binary.BigEndian.AppendUint64(nil, n), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, v)

	v = mustOpen(t, path, s)
	if got := next("out"); got != 5 {
		t.Fatalf("Seq after reopen = %d, want 5", got)
	}
	var prev uint64
	count := 0
	err = v.View(func(tx *Tx) error {
		if _, err := tx.Seq([]byte("out")); err == nil {
			t.Error("Seq in a View succeeded")
		}
		return tx.ForEach([]byte("log"), nil, func(k, val []byte) error {
			n := binary.BigEndian.Uint64(k)
			if n <= prev || val[0] != byte(count) {
				return fmt.Errorf("entry %d: key %d after %d, value %d", count, n, prev, val[0])
			}
			prev = n
			count++
			return nil
		})
	})
	if err != nil || count != 300 {
		t.Fatalf("log: %v, %d entries", err, count)
	}
}

func TestLocked(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	_, err := Open(path, s)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	mustPut(t, v, "b", "k", "still works")
	mustClose(t, v)
	w := mustOpen(t, path, s)
	mustGet(t, w, "b", "k", "still works")
}

func TestClose(t *testing.T) {
	v, _ := newVault(t, pass("pw"))
	mustPut(t, v, "b", "k", "v")
	mustClose(t, v)
	mustClose(t, v)
	if err := v.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v, want ErrClosed", err)
	}
	if err := v.View(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("View after Close: %v, want ErrClosed", err)
	}
}

func TestCreateExists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hush.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateWith(path, pass("pw"), fast); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("Create changed the existing file: %q", b)
	}

	// Over an existing vault, too, including an open one.
	v, vpath := newVault(t, pass("pw"))
	if _, err := CreateWith(vpath, pass("other"), fast); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over an open vault: %v, want ErrExists", err)
	}
	mustPut(t, v, "b", "k", "v")

	// An existing key file is not overwritten, and the half-made vault is removed.
	key := filepath.Join(dir, "hush.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	newPath := filepath.Join(dir, "new.db")
	if _, err := Create(newPath, Secret{KeyFile: key}); !errors.Is(err, ErrExists) {
		t.Fatalf("Create with an existing key file: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(key); string(b) != "0123456789abcdef0123456789abcdef" {
		t.Fatal("Create changed the existing key file")
	}
	if _, err := os.Stat(newPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed Create left %s behind: %v", newPath, err)
	}
}

func TestBadSecretAndOptions(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []Secret{{}, {Passphrase: []byte{}}, {Passphrase: []byte("pw"), KeyFile: filepath.Join(dir, "k")}} {
		path := filepath.Join(dir, "x.db")
		if _, err := CreateWith(path, s, fast); err == nil {
			t.Fatalf("Create with %+v succeeded", s)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("failed Create left a file: %v", err)
		}
	}
	if _, err := CreateWith(filepath.Join(dir, "y.db"), pass("pw"), Options{ArgonTime: 1000}); err == nil {
		t.Fatal("CreateWith accepted ArgonTime 1000")
	}
}

func TestTxRules(t *testing.T) {
	v, _ := newVault(t, pass("pw"))
	err := v.Update(func(tx *Tx) error {
		for _, b := range []string{"", "header", "a\x00b"} {
			if err := tx.Put([]byte(b), []byte("k"), []byte("v")); err == nil {
				t.Errorf("Put to bucket %q succeeded", b)
			}
			if _, err := tx.Get([]byte(b), []byte("k")); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("Get from bucket %q: %v", b, err)
			}
		}
		if err := tx.Put([]byte("b"), nil, []byte("v")); err == nil {
			t.Error("Put with an empty key succeeded")
		}
		if err := tx.Put([]byte("b"), make([]byte, 32769), []byte("v")); err == nil {
			t.Error("Put with a 32769-byte key succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Writes fail in a View.
	err = v.View(func(tx *Tx) error {
		if err := tx.Put([]byte("b"), []byte("k"), []byte("v")); err == nil {
			t.Error("Put in a View succeeded")
		}
		if err := tx.Delete([]byte("b"), []byte("k")); err == nil {
			t.Error("Delete in a View succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A failed Update stores nothing.
	errFail := errors.New("fail")
	err = v.Update(func(tx *Tx) error {
		if err := tx.Put([]byte("b"), []byte("k"), []byte("v")); err != nil {
			return err
		}
		return errFail
	})
	if err != errFail {
		t.Fatalf("Update: %v, want fn's error", err)
	}
	if _, err := get(v, "b", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after rolled-back Put: %v, want ErrNotFound", err)
	}

	// Put does not keep the caller's buffers; Get returns a copy.
	key, val := []byte("k"), []byte("original")
	err = v.Update(func(tx *Tx) error {
		if err := tx.Put([]byte("b"), key, val); err != nil {
			return err
		}
		key[0], val[0] = 'X', 'X'
		got, err := tx.Get([]byte("b"), []byte("k"))
		if err != nil {
			return err
		}
		got[0] = 'Y'
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, v, "b", "k", "original")

	// Delete, and deleting what is not there.
	err = v.Update(func(tx *Tx) error {
		if err := tx.Delete([]byte("b"), []byte("k")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("b"), []byte("k")); err != nil {
			return err
		}
		return tx.Delete([]byte("nobucket"), []byte("k"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(v, "b", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := get(v, "nobucket", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get from a missing bucket: %v, want ErrNotFound", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				err := v.Update(func(tx *Tx) error {
					n, err := tx.Seq([]byte("q"))
					if err != nil {
						return err
					}
					return tx.Put([]byte("q"), binary.BigEndian.AppendUint64(nil, n), []byte(fmt.Sprint(w, i)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				err := v.View(func(tx *Tx) error {
					return tx.ForEach([]byte("q"), nil, func(k, val []byte) error { return nil })
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustClose(t, v)

	v = mustOpen(t, path, s)
	n := 0
	err := v.View(func(tx *Tx) error {
		return tx.ForEach([]byte("q"), nil, func(k, val []byte) error { n++; return nil })
	})
	if err != nil || n != writers*perWriter {
		t.Fatalf("after concurrent writes: %v, %d entries, want %d", err, n, writers*perWriter)
	}

	// Close while readers run: each View either completes or gets ErrClosed.
	var rg sync.WaitGroup
	bad := make(chan error, 8)
	for i := 0; i < 8; i++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for {
				err := v.View(func(tx *Tx) error {
					_, err := tx.Get([]byte("q"), binary.BigEndian.AppendUint64(nil, 1))
					return err
				})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					bad <- err
					return
				}
			}
		}()
	}
	mustClose(t, v)
	rg.Wait()
	close(bad)
	for err := range bad {
		t.Fatal(err)
	}
}

// rawValues returns the stored (sealed) values of every bucket but the
// header, read with bbolt directly.
func rawValues(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == headerBucket {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+string(k)] = bytes.Clone(v)
				return nil
			})
		})
	})
	return out
}

// TestValuesPadded stores values from 0 bytes to 100 KB and checks, in the
// file, that each is stored in exactly its size class (16, 32, 64 or 128
// KiB: "hi" and a 9,000-byte text alike in 16 KiB), and that each reads
// back exactly.
func TestValuesPadded(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	fits := MinValueSize - lengthSize - valueOverhead
	want := map[int]int{
		0: MinValueSize, 2: MinValueSize, 100: MinValueSize, 9000: MinValueSize, fits: MinValueSize,
		fits + 1: 2 * MinValueSize, 40000: 4 * MinValueSize, 100000: 8 * MinValueSize,
	}
	values := map[string][]byte{}
	for n := range want {
		val := bytes.Repeat([]byte{'v'}, n)
		values[fmt.Sprint(n)] = val
		if err := v.Update(func(tx *Tx) error { return tx.Put([]byte("sizes"), []byte(fmt.Sprint(n)), val) }); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, v)
	raw := rawValues(t, path)
	if len(raw) != len(want) {
		t.Fatalf("%d values in the file, want %d", len(raw), len(want))
	}
	for n, class := range want {
		if got := len(raw["sizes/"+fmt.Sprint(n)]); got != class {
			t.Errorf("a value of %d bytes is stored in %d bytes, want %d", n, got, class)
		}
	}
	v = mustOpen(t, path, s)
	for k, val := range values {
		got, err := get(v, "sizes", k)
		if err != nil || !bytes.Equal(got, val) {
			t.Fatalf("Get of the %s-byte value: %d bytes, %v", k, len(got), err)
		}
	}
}

// TestBadPadding seals, under the vault's own key, values whose padding is
// wrong: a length past the end, non-zero padding, a class larger than the
// value needs, a size that is no class. Each is ErrCorrupt.
func TestBadPadding(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	aead := v.aead
	mustPut(t, v, "b", "k", "placeholder")
	mustClose(t, v)
	seal := func(class int, length uint32, pad byte) []byte {
		inner := make([]byte, class-valueOverhead)
		binary.BigEndian.PutUint32(inner, length)
		copy(inner[lengthSize:], "value")
		inner[len(inner)-1] = pad
		box := []byte{valueFormat}
		box = append(box, make([]byte, 24)...)
		return aead.Seal(box, box[1:], inner, ad([]byte("b"), []byte("k")))
	}
	for name, box := range map[string][]byte{
		"length past the end": seal(MinValueSize, MinValueSize, 0),
		"non-zero padding":    seal(MinValueSize, 5, 1),
		"class too large":     seal(2*MinValueSize, 5, 0),
		"no class":            seal(MinValueSize+1, 5, 0),
		"too short":           seal(1000, 5, 0),
	} {
		rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), box) })
		v := mustOpen(t, path, s)
		if _, err := get(v, "b", "k"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Get: %v, want ErrCorrupt", name, err)
		}
		mustClose(t, v)
	}
	// The same construction with a right length and zeros opens.
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), seal(MinValueSize, 5, 0)) })
	mustGet(t, mustOpen(t, path, s), "b", "k", "value")
}

// TestUnpaddedValueRead checks that a value written before padding
// (format 1) still reads, and is padded once written again.
func TestUnpaddedValueRead(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	old := sealBox(v.aead, []byte("written by an older hush"), ad([]byte("b"), []byte("k")))
	mustClose(t, v)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), old)
	})
	v = mustOpen(t, path, s)
	mustGet(t, v, "b", "k", "written by an older hush")
	mustPut(t, v, "b", "k", "written by an older hush")
	mustClose(t, v)
	if n := len(rawGet(t, path, "b", "k")); n != MinValueSize {
		t.Fatalf("rewritten value of %d bytes, want %d", n, MinValueSize)
	}
}

// TestIndex checks PutIndex and Blind: an index entry is 77 bytes in the
// file and reads back; values over IndexValueSize are refused; Blind is
// the same for the same label and data across Close and Open, differs for
// another label, other data or another vault, and does not hold data.
func TestIndex(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	id := []byte("0123456789abcdef")
	var key, other, otherLabel []byte
	err := v.Update(func(tx *Tx) error {
		key = tx.Blind("name", []byte("alice"))
		other = tx.Blind("name", []byte("alicf"))
		otherLabel = tx.Blind("recipient", []byte("alice"))
		if err := tx.PutIndex([]byte("by-name"), key, bytes.Repeat([]byte{1}, IndexValueSize+1)); err == nil {
			t.Error("PutIndex took a value over IndexValueSize")
		}
		return tx.PutIndex([]byte("by-name"), key, id)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 || bytes.Equal(key, other) || bytes.Equal(key, otherLabel) || bytes.Contains(key, []byte("alice")) {
		t.Fatalf("Blind: %x, %x, %x", key, other, otherLabel)
	}
	mustClose(t, v)
	if n := len(rawGet(t, path, "by-name", string(key))); n != 77 {
		t.Fatalf("an index entry of %d bytes, want 77", n)
	}
	v = mustOpen(t, path, s)
	err = v.View(func(tx *Tx) error {
		if again := tx.Blind("name", []byte("alice")); !bytes.Equal(again, key) {
			t.Error("Blind differs after Open")
		}
		got, err := tx.Get([]byte("by-name"), key)
		if err != nil || !bytes.Equal(got, id) {
			t.Errorf("Get of the index entry: %q, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := newVault(t, s)
	err = v2.View(func(tx *Tx) error {
		if bytes.Equal(tx.Blind("name", []byte("alice")), key) {
			t.Error("two vaults blind alike")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOldVaultPaddedOnOpen makes a vault as one made before padding looks
// (format 1 values, no "padded" mark in the header): the first Open
// rewrites every value in its size class, and the values read back.
func TestOldVaultPaddedOnOpen(t *testing.T) {
	s := pass("pw")
	v, path := newVault(t, s)
	values := map[string]string{"a/1": "hi", "a/2": strings.Repeat("x", 9000), "b/1": ""}
	boxes := map[string][]byte{}
	for bk, val := range values {
		bucket, key, _ := strings.Cut(bk, "/")
		boxes[bk] = sealBox(v.aead, []byte(val), ad([]byte(bucket), []byte(key)))
	}
	mustClose(t, v)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for bk, box := range boxes {
			bucket, key, _ := strings.Cut(bk, "/")
			b, err := tx.CreateBucketIfNotExists([]byte(bucket))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(key), box); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(headerBucket)).Delete([]byte(hPadded))
	})
	if n := len(rawGet(t, path, "a", "1")); n >= MinValueSize {
		t.Fatalf("the old value is %d bytes already", n)
	}
	v = mustOpen(t, path, s)
	mustClose(t, v)
	for bk, box := range rawValues(t, path) {
		if len(box) != MinValueSize {
			t.Errorf("%s: %d bytes after Open, want %d", bk, len(box), MinValueSize)
		}
	}
	if rawGet(t, path, headerBucket, hPadded)[0] != 1 {
		t.Fatal("the header is not marked padded")
	}
	v = mustOpen(t, path, s)
	for bk, val := range values {
		bucket, key, _ := strings.Cut(bk, "/")
		mustGet(t, v, bucket, key, val)
	}
}
