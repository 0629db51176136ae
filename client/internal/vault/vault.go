// Package vault is the client's encrypted-at-rest local store: a bbolt file
// in which every value is sealed with XChaCha20-Poly1305 under a random
// per-vault data key.
//
// The data key is stored in the file wrapped (sealed) under a master key,
// which is either derived from a passphrase with Argon2id or read from a key
// file holding 32 random bytes. Changing the passphrase therefore only
// re-wraps the data key.
//
// What is NOT encrypted: bucket names, keys, the number of values and their
// size classes, and the unencrypted "header" bucket (format version, key
// derivation parameters and salt, a key check value and the wrapped data
// key). Callers must use fixed bucket names and keys that reveal nothing:
// random IDs or sequence numbers (see Tx.Seq), never names, addresses or
// text.
//
// Values are padded before they are sealed, so that the file shows size
// classes, not sizes: every stored value is MinValueSize (16 KiB) bytes, or
// a power of two above it when it does not fit. Index entries (PutIndex:
// values of at most IndexValueSize bytes, under keys made by Tx.Blind) are
// 77 bytes each.
//
// Each value is bound to its place: the associated data of its seal is the
// bucket name, a zero byte and the key, so a value copied or moved to another
// key or bucket fails to open with ErrCorrupt. Whole-file rollback (replacing
// the file with an older copy of itself) is not detected.
//
// On disk a value is exactly its size class:
//
//	format uint8 = 2
//	nonce  [24] random
//	sealed XChaCha20-Poly1305(data key, nonce, ad = bucket | 0x00 | key) of
//	  length uint32, big-endian, the value's size
//	  value  [length]
//	  zeros  up to the size class
//
// Values written before padding (format 1: format | nonce | sealed value,
// no length or zeros) are rewritten padded when such a vault is first
// opened.
package vault

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

var (
	// ErrWrongKey is returned by Open when the passphrase or key file does
	// not unlock the vault, including when the vault was created with the
	// other kind of Secret or the key file is not 32 bytes long.
	ErrWrongKey = errors.New("vault: wrong passphrase or key file")

	// ErrNotFound is returned by Tx.Get for a missing key or bucket.
	ErrNotFound = errors.New("vault: not found")

	// ErrCorrupt is returned when a stored value does not authenticate (the
	// file was changed, or a value was moved to another key or bucket) or is
	// malformed, and by Open when the file is not a bbolt file, has no vault
	// header, or its header is malformed.
	ErrCorrupt = errors.New("vault: corrupt")

	// ErrExists is returned by Create when the vault file or the key file
	// already exists. Create never overwrites a file.
	ErrExists = errors.New("vault: file exists")

	// ErrLocked is returned by Open when another Vault (in this or another
	// process) holds the file and does not release it within one second.
	ErrLocked = errors.New("vault: file is in use")

	// ErrInsecureMode is returned by Open when the vault file or the key
	// file grants any permission to group or others. The error names the
	// file; chmod 600 fixes it.
	ErrInsecureMode = errors.New("vault: file permissions too open")

	// ErrClosed is returned by Update and View after Close.
	ErrClosed = errors.New("vault: closed")
)

// Default Argon2id cost, used for the zero fields of Options.
const (
	defaultArgonTime      = 3
	defaultArgonMemoryKiB = 64 * 1024
	defaultArgonThreads   = 2
)

// Bounds on Argon2id cost, checked by CreateWith and by Open (so that a
// tampered header cannot make Open allocate unbounded memory or spin).
const (
	maxArgonTime      = 64
	minArgonMemoryKiB = 8
	maxArgonMemoryKiB = 4 << 20 // 4 GiB
)

// Header bucket layout. All of it is stored in clear.
const (
	headerBucket = "header"

	hFormat  = "format"   // 1 byte: formatVersion
	hPadded  = "padded"   // 1 byte, 1: every value is padded (format 2); absent in vaults made before padding
	hKDF     = "kdf"      // kdfArgon2id or kdfKeyFile
	hSalt    = "salt"     // saltSize bytes (argon2id only)
	hArgon   = "argon2id" // time uint32 BE, memory KiB uint32 BE, threads uint8 (argon2id only)
	hCheck   = "check"    // sealBox(master, checkPlain, checkAD)
	hDataKey = "datakey"  // sealBox(master, data key, dataKeyAD)

	formatVersion = 1
	kdfArgon2id   = "argon2id"
	kdfKeyFile    = "keyfile"

	saltSize      = 16
	keySize       = chacha20poly1305.KeySize
	argonParamLen = 4 + 4 + 1

	blindInfo  = "hush/vault/1 blind"
	checkPlain = "hush vault key check"
	checkAD    = "hush/vault/1 check"
	dataKeyAD  = "hush/vault/1 data key"

	boxFormat     = 1 // the header's boxes, and values written before padding
	valueFormat   = 2 // padded values
	valueOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	lengthSize    = 4

	lockTimeout = time.Second
	fileMode    = 0o600
)

// MinValueSize is the smallest size class: every value of up to
// MinValueSize minus 45 bytes (format, nonce, tag and length) is stored in
// MinValueSize bytes; a longer one in the smallest power of two that holds
// it.
const MinValueSize = 16 << 10

// IndexValueSize is the largest value PutIndex takes; every such value is
// stored in indexBoxSize bytes.
const IndexValueSize = 32

const indexBoxSize = valueOverhead + lengthSize + IndexValueSize

// sizeClass returns the stored size of a value of n bytes.
func sizeClass(n int) int {
	c := MinValueSize
	for c < n+lengthSize+valueOverhead {
		c *= 2
	}
	return c
}

// Secret unlocks a vault. Exactly one of Passphrase and KeyFile must be set.
type Secret struct {
	// Passphrase is used as given (no Unicode normalization); vault does
	// not modify or retain it.
	Passphrase []byte

	// KeyFile is the path of a file holding the 32-byte master key, raw.
	// Create makes it with random bytes and mode 0600 and fails with
	// ErrExists if it exists; Open refuses it (ErrInsecureMode) when it
	// grants any permission to group or others.
	KeyFile string
}

func (s Secret) validate() error {
	if (len(s.Passphrase) > 0) == (s.KeyFile != "") {
		return errors.New("vault: set exactly one of Secret.Passphrase and Secret.KeyFile")
	}
	return nil
}

// Options sets the Argon2id cost of a new passphrase vault. A zero field
// means its default: time 3, memory 64 MiB, 2 threads. The cost is stored in the vault header, so Open
// needs no Options. Options do not apply to key-file vaults.
type Options struct {
	ArgonTime      uint32 // passes over memory, at most 64
	ArgonMemoryKiB uint32 // memory in KiB, 8 to 4 GiB
	ArgonThreads   uint8
}

type argonParams struct {
	time, memoryKiB uint32
	threads         uint8
}

func (o Options) params() (argonParams, error) {
	p := argonParams{o.ArgonTime, o.ArgonMemoryKiB, o.ArgonThreads}
	if p.time == 0 {
		p.time = defaultArgonTime
	}
	if p.memoryKiB == 0 {
		p.memoryKiB = defaultArgonMemoryKiB
	}
	if p.threads == 0 {
		p.threads = defaultArgonThreads
	}
	if !p.valid() {
		return p, fmt.Errorf("vault: argon2id cost out of range (time 1..%d, memory %d..%d KiB)",
			maxArgonTime, minArgonMemoryKiB, maxArgonMemoryKiB)
	}
	return p, nil
}

func (p argonParams) valid() bool {
	return p.time >= 1 && p.time <= maxArgonTime &&
		p.memoryKiB >= minArgonMemoryKiB && p.memoryKiB <= maxArgonMemoryKiB &&
		p.threads >= 1
}

func (p argonParams) marshal() []byte {
	b := make([]byte, argonParamLen)
	binary.BigEndian.PutUint32(b[0:], p.time)
	binary.BigEndian.PutUint32(b[4:], p.memoryKiB)
	b[8] = p.threads
	return b
}

func (p argonParams) deriveKey(passphrase, salt []byte) []byte {
	return argon2.IDKey(passphrase, salt, p.time, p.memoryKiB, p.threads, keySize)
}

// Vault is an open vault file. Its methods are safe for concurrent use.
// bbolt allows one read-write transaction at a time and any number of
// read-only ones. A Vault holds an exclusive lock on its file until Close.
type Vault struct {
	db *bolt.DB
	// aead seals values under the data key. It is immutable and safe for
	// concurrent use; Go gives no way to wipe the copy of the key it holds.
	aead cipher.AEAD
	// blindKey is the key of Tx.Blind, derived from the data key. Immutable.
	blindKey []byte

	mu     sync.Mutex
	closed bool
}

// Create makes a new vault file at path with mode 0600 and the default
// Argon2id cost. It is CreateWith(path, s, Options{}).
func Create(path string, s Secret) (*Vault, error) {
	return CreateWith(path, s, Options{})
}

// CreateWith makes a new vault file at path with mode 0600, unlocked by s.
// With a passphrase it derives the master key with Argon2id (cost from opts,
// random 16-byte salt), which blocks for the time that cost takes (about a
// second at the defaults). With a key file it writes 32 random bytes to
// s.KeyFile (mode 0600). It returns ErrExists if path or s.KeyFile exists,
// and removes the files it made if it fails after making them.
func CreateWith(path string, s Secret, opts Options) (v *Vault, err error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	p, err := opts.params()
	if err != nil {
		return nil, err
	}

	db, err := bolt.Open(path, fileMode, &bolt.Options{
		Timeout:  lockTimeout,
		OpenFile: createExclusive,
	})
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrExists, path)
		}
		return nil, openError(path, err)
	}
	madeKeyFile := false
	defer func() {
		if err != nil {
			_ = db.Close()
			_ = os.Remove(path)
			if madeKeyFile {
				_ = os.Remove(s.KeyFile)
			}
		}
	}()

	header := map[string][]byte{
		hFormat: {formatVersion},
		hPadded: {1},
	}
	var master []byte
	if s.KeyFile == "" {
		salt := make([]byte, saltSize)
		rand.Read(salt)
		header[hKDF] = []byte(kdfArgon2id)
		header[hSalt] = salt
		header[hArgon] = p.marshal()
		master = p.deriveKey(s.Passphrase, salt)
	} else {
		header[hKDF] = []byte(kdfKeyFile)
		if master, err = createKeyFile(s.KeyFile); err != nil {
			return nil, err
		}
		madeKeyFile = true
	}
	defer clear(master)

	dataKey := make([]byte, keySize)
	rand.Read(dataKey)
	defer clear(dataKey)

	wrap, err := chacha20poly1305.NewX(master)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	header[hCheck] = sealBox(wrap, []byte(checkPlain), []byte(checkAD))
	header[hDataKey] = sealBox(wrap, dataKey, []byte(dataKeyAD))

	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(headerBucket))
		if err != nil {
			return err
		}
		for k, val := range header {
			if err := b.Put([]byte(k), val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vault: write header of %s: %w", path, err)
	}

	v = &Vault{db: db}
	if err := v.setKeys(dataKey); err != nil {
		return nil, err
	}
	// Make the new directory entries durable (best effort: not every
	// platform can sync a directory).
	syncDir(filepath.Dir(path))
	if madeKeyFile {
		syncDir(filepath.Dir(s.KeyFile))
	}
	return v, nil
}

// setKeys sets the keys that v derives from its data key.
func (v *Vault) setKeys(dataKey []byte) error {
	aead, err := chacha20poly1305.NewX(dataKey)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	blind, err := hkdf.Key(sha256.New, dataKey, nil, blindInfo, keySize)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	v.aead, v.blindKey = aead, blind
	return nil
}

// Open opens the vault file at path and unlocks it with s. It returns
// ErrInsecureMode if the vault file or key file grants any permission to
// group or others, ErrLocked if another Vault holds the file for more than
// a second, ErrWrongKey if s does not unlock it, ErrCorrupt if the file is
// not a vault, and an error matching fs.ErrNotExist if path does not exist.
// With a passphrase it blocks while Argon2id runs at the cost stored in the
// vault (about a second at the defaults). The first Open of a vault made
// before values were padded pads them all, in one transaction.
func Open(path string, s Secret) (*Vault, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{
		Timeout:  lockTimeout,
		OpenFile: openExisting,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	v := &Vault{db: db}
	if err := v.unlock(path, s); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := v.padAll(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return v, nil
}

// padAll pads, once, the values of a vault made before padding: it
// rewrites every format 1 value as a padded one and then marks the header.
func (v *Vault) padAll() error {
	return v.db.Update(func(btx *bolt.Tx) error {
		header := btx.Bucket([]byte(headerBucket))
		if header.Get([]byte(hPadded)) != nil {
			return nil
		}
		tx := &Tx{tx: btx, aead: v.aead, blindKey: v.blindKey}
		err := btx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == headerBucket {
				return nil
			}
			var old [][]byte
			err := b.ForEach(func(k, box []byte) error {
				if len(box) > 0 && box[0] == boxFormat {
					old = append(old, bytes.Clone(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range old {
				plain, err := tx.open(name, k, b.Get(k))
				if err != nil {
					return err
				}
				if err := b.Put(k, sealValue(v.aead, plain, ad(name, k), sizeClass(len(plain)))); err != nil {
					return fmt.Errorf("vault: padding %q/%x: %w", name, k, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return header.Put([]byte(hPadded), []byte{1})
	})
}

// unlock reads the header of v's file and sets v's keys.
func (v *Vault) unlock(path string, s Secret) error {
	db := v.db
	h := make(map[string][]byte)
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(headerBucket))
		if b == nil {
			return fmt.Errorf("%w: %s is not a vault (no header)", ErrCorrupt, path)
		}
		for _, k := range []string{hFormat, hKDF, hSalt, hArgon, hCheck, hDataKey} {
			if val := b.Get([]byte(k)); val != nil {
				h[k] = bytes.Clone(val)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !bytes.Equal(h[hFormat], []byte{formatVersion}) {
		return fmt.Errorf("%w: %s: unsupported vault format %x", ErrCorrupt, path, h[hFormat])
	}

	var master []byte
	switch string(h[hKDF]) {
	case kdfArgon2id:
		if len(s.Passphrase) == 0 {
			return fmt.Errorf("%w: %s is unlocked by a passphrase, not a key file", ErrWrongKey, path)
		}
		raw := h[hArgon]
		if len(raw) != argonParamLen || len(h[hSalt]) != saltSize {
			return fmt.Errorf("%w: %s: malformed key derivation header", ErrCorrupt, path)
		}
		p := argonParams{
			time:      binary.BigEndian.Uint32(raw[0:]),
			memoryKiB: binary.BigEndian.Uint32(raw[4:]),
			threads:   raw[8],
		}
		if !p.valid() {
			return fmt.Errorf("%w: %s: argon2id cost out of range", ErrCorrupt, path)
		}
		master = p.deriveKey(s.Passphrase, h[hSalt])
	case kdfKeyFile:
		if s.KeyFile == "" {
			return fmt.Errorf("%w: %s is unlocked by a key file, not a passphrase", ErrWrongKey, path)
		}
		var err error
		if master, err = readKeyFile(s.KeyFile); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: %s: unknown key derivation %q", ErrCorrupt, path, h[hKDF])
	}
	defer clear(master)

	wrap, err := chacha20poly1305.NewX(master)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	if _, err := openBox(wrap, h[hCheck], []byte(checkAD)); err != nil {
		return fmt.Errorf("%w: %s", ErrWrongKey, path)
	}
	// The key is right, so a data key that does not open was changed.
	dataKey, err := openBox(wrap, h[hDataKey], []byte(dataKeyAD))
	if err != nil || len(dataKey) != keySize {
		clear(dataKey)
		return fmt.Errorf("%w: %s: wrapped data key does not authenticate", ErrCorrupt, path)
	}
	defer clear(dataKey)
	return v.setKeys(dataKey)
}

// createExclusive is bbolt's file opener for Create: never an existing file.
func createExclusive(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag|os.O_CREATE|os.O_EXCL, perm)
}

// openExisting is bbolt's file opener for Open: never create, and refuse a
// file that is not private or is empty (bbolt would initialize it).
func openExisting(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(f); err != nil {
		f.Close()
		return nil, err
	}
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if fi.Size() == 0 {
		f.Close()
		return nil, fmt.Errorf("%w: %s is empty", ErrCorrupt, name)
	}
	return f, nil
}

// checkPrivate returns ErrInsecureMode unless f is a regular file with no
// permission bits for group or others.
func checkPrivate(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("vault: %s is not a regular file", f.Name())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o, want 0600 (chmod 600 %s)", ErrInsecureMode, f.Name(), perm, f.Name())
	}
	return nil
}

// openError maps an error of bolt.Open to the package's errors.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, ErrInsecureMode), errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s is locked by another process or Vault", ErrLocked, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("%w: %s is not a vault: %v", ErrCorrupt, path, err)
	}
	return fmt.Errorf("vault: open %s: %w", path, err)
}

// createKeyFile writes a new random key to a new file at name, mode 0600,
// and returns the key.
func createKeyFile(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: key file %s", ErrExists, name)
		}
		return nil, fmt.Errorf("vault: create key file: %w", err)
	}
	key := make([]byte, keySize)
	rand.Read(key)
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		clear(key)
		_ = os.Remove(name)
		return nil, fmt.Errorf("vault: write key file %s: %w", name, err)
	}
	return key, nil
}

// readKeyFile returns the key in the file at name after checking its mode.
func readKeyFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("vault: key file: %w", err)
	}
	defer f.Close()
	if err := checkPrivate(f); err != nil {
		return nil, err
	}
	// Read one byte more than a key to detect a file that is too long.
	buf := make([]byte, keySize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, fmt.Errorf("vault: read key file %s: %w", name, err)
	}
	if n != keySize {
		clear(buf)
		return nil, fmt.Errorf("%w: key file %s is not %d bytes", ErrWrongKey, name, keySize)
	}
	return buf[:keySize], nil
}

func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// sealBox returns boxFormat || random nonce || Seal(plain, ad), unpadded:
// the header's boxes.
func sealBox(aead cipher.AEAD, plain, ad []byte) []byte {
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, len(plain)+valueOverhead)
	out[0] = boxFormat
	nonce := out[1:]
	rand.Read(nonce)
	return aead.Seal(out, nonce, plain, ad)
}

// openBox reverses sealBox, returning a new slice, or ErrCorrupt.
func openBox(aead cipher.AEAD, box, ad []byte) ([]byte, error) {
	if len(box) < valueOverhead || box[0] != boxFormat {
		return nil, ErrCorrupt
	}
	nonce := box[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := aead.Open(nil, nonce, box[1+chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}

// sealValue returns a value as stored: padded to size bytes with its
// overhead and sealed in place (see the package documentation).
func sealValue(aead cipher.AEAD, value, ad []byte, size int) []byte {
	const head = 1 + chacha20poly1305.NonceSizeX
	out := make([]byte, size)
	out[0] = valueFormat
	nonce := out[1:head]
	rand.Read(nonce)
	inner := out[head : len(out)-chacha20poly1305.Overhead]
	binary.BigEndian.PutUint32(inner, uint32(len(value)))
	copy(inner[lengthSize:], value)
	return aead.Seal(out[:head], nonce, inner, ad)
}

// openValue reverses sealValue (or opens a value written before padding),
// returning a new slice, or ErrCorrupt.
func openValue(aead cipher.AEAD, box, ad []byte) ([]byte, error) {
	if len(box) > 0 && box[0] == boxFormat {
		return openBox(aead, box, ad)
	}
	if (len(box) != indexBoxSize && len(box) < MinValueSize) || box[0] != valueFormat {
		return nil, ErrCorrupt
	}
	nonce := box[1 : 1+chacha20poly1305.NonceSizeX]
	inner, err := aead.Open(nil, nonce, box[1+chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	n := binary.BigEndian.Uint32(inner)
	if uint64(n) > uint64(len(inner)-lengthSize) || (len(box) != indexBoxSize && sizeClass(int(n)) != len(box)) {
		return nil, ErrCorrupt
	}
	for _, c := range inner[lengthSize+int(n):] {
		if c != 0 {
			return nil, ErrCorrupt
		}
	}
	return inner[lengthSize : lengthSize+int(n) : lengthSize+int(n)], nil
}

// Update runs fn in a read-write transaction and commits it, with fsync,
// if fn returns nil; otherwise it rolls back and returns fn's error. Only one
// read-write transaction runs at a time: Update blocks while another is in
// progress. A commit that grows the file beyond its mapping waits for every
// open transaction to end, and new ones wait for it meanwhile (see View).
// fn must not call Update, View or Close on v (it would deadlock), nor wait
// for a goroutine that may be waiting to begin a transaction of v, and must
// not keep tx after returning.
func (v *Vault) Update(fn func(*Tx) error) error {
	return v.run(true, fn)
}

// View runs fn in a read-only transaction, which sees a consistent snapshot
// of the vault. Put, Delete and Seq fail in it. Any number run at once, but
// a View that begins while a commit waits to remap the file (see Update)
// waits for that commit, which waits for the open transactions. So fn must
// not call Update, View or Close on v, nor wait for a goroutine that may be
// waiting to begin a transaction of v (one that holds a lock fn takes, say):
// that deadlocks when a remap comes between them. fn must not keep tx after
// returning.
func (v *Vault) View(fn func(*Tx) error) error {
	return v.run(false, fn)
}

func (v *Vault) run(writable bool, fn func(*Tx) error) error {
	btx, err := v.db.Begin(writable)
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return fmt.Errorf("vault: begin transaction: %w", err)
	}
	// After a successful Commit, Rollback only reports that tx is closed.
	defer func() { _ = btx.Rollback() }()
	if err := fn(&Tx{tx: btx, aead: v.aead, blindKey: v.blindKey}); err != nil {
		return err
	}
	if !writable {
		return nil
	}
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("vault: commit: %w", err)
	}
	return nil
}

// Close waits for running transactions to finish, then releases the file
// and its lock. It is idempotent: later calls return nil. After Close,
// Update and View return ErrClosed.
func (v *Vault) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	if err := v.db.Close(); err != nil {
		return fmt.Errorf("vault: close: %w", err)
	}
	return nil
}

// Tx is a transaction of a Vault, valid only during the Update or View
// function it is passed to. It is not safe for concurrent use.
//
// Bucket names must be non-empty, must not contain a zero byte, and must
// not be "header" (reserved). Keys must be 1 to 32768 bytes. Buckets and
// keys are stored in clear (see the package documentation).
type Tx struct {
	tx       *bolt.Tx
	aead     cipher.AEAD
	blindKey []byte
}

var errReadOnly = errors.New("vault: write in a read-only transaction (use Update)")

func checkBucket(bucket []byte) error {
	switch {
	case len(bucket) == 0:
		return errors.New("vault: empty bucket name")
	case bytes.IndexByte(bucket, 0) >= 0:
		return fmt.Errorf("vault: bucket name %q contains a zero byte", bucket)
	case string(bucket) == headerBucket:
		return fmt.Errorf("vault: bucket name %q is reserved", bucket)
	}
	return nil
}

func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > bolt.MaxKeySize {
		return fmt.Errorf("vault: key length %d not in 1..%d", len(key), bolt.MaxKeySize)
	}
	return nil
}

// ad returns the associated data that binds a value to its place.
func ad(bucket, key []byte) []byte {
	b := make([]byte, 0, len(bucket)+1+len(key))
	b = append(b, bucket...)
	b = append(b, 0)
	return append(b, key...)
}

func (tx *Tx) open(bucket, key, box []byte) ([]byte, error) {
	plain, err := openValue(tx.aead, box, ad(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("%w: value %q/%x does not authenticate", ErrCorrupt, bucket, key)
	}
	return plain, nil
}

// Put seals value and stores it under key in bucket, replacing any value
// there, and creates the bucket if needed. It needs an Update transaction.
// Put does not retain key or value.
func (tx *Tx) Put(bucket, key, value []byte) error {
	return tx.put(bucket, key, value, sizeClass(len(value)))
}

// PutIndex is Put for the entries of an index: value, at most
// IndexValueSize bytes, is padded to IndexValueSize instead of a size
// class, so that it takes 77 bytes, not MinValueSize. Use it for values
// whose size reveals nothing (IDs of one size), under keys made by Blind.
func (tx *Tx) PutIndex(bucket, key, value []byte) error {
	if len(value) > IndexValueSize {
		return fmt.Errorf("vault: index value of %d bytes, more than %d", len(value), IndexValueSize)
	}
	return tx.put(bucket, key, value, indexBoxSize)
}

// put seals value, padded to size bytes stored, and stores it under key in
// bucket, creating the bucket if needed.
func (tx *Tx) put(bucket, key, value []byte, size int) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if !tx.tx.Writable() {
		return errReadOnly
	}
	if size > bolt.MaxValueSize {
		return fmt.Errorf("vault: put %q/%x: value of %d bytes too large", bucket, key, len(value))
	}
	b, err := tx.tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return fmt.Errorf("vault: bucket %q: %w", bucket, err)
	}
	if err := b.Put(key, sealValue(tx.aead, value, ad(bucket, key), size)); err != nil {
		return fmt.Errorf("vault: put %q/%x: %w", bucket, key, err)
	}
	return nil
}

// Blind returns a 32-byte key that stands for data in an index bucket:
// HMAC-SHA256 of label, a zero byte and data, under a key derived from the
// vault's data key. Equal label and data give equal keys in one vault;
// without the vault's key they reveal nothing about data. label separates
// indexes (say "name" and "recipient").
func (tx *Tx) Blind(label string, data []byte) []byte {
	m := hmac.New(sha256.New, tx.blindKey)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// Get returns a decrypted copy of the value under key in bucket (the
// caller may keep and modify it), ErrNotFound if there is none, or
// ErrCorrupt if it does not authenticate.
func (tx *Tx) Get(bucket, key []byte) ([]byte, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	b := tx.tx.Bucket(bucket)
	if b == nil {
		return nil, ErrNotFound
	}
	box := b.Get(key)
	if box == nil {
		return nil, ErrNotFound
	}
	return tx.open(bucket, key, box)
}

// Delete removes key from bucket. Deleting a missing key, or from a missing
// bucket, is not an error. It needs an Update transaction.
func (tx *Tx) Delete(bucket, key []byte) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	if !tx.tx.Writable() {
		return errReadOnly
	}
	b := tx.tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return fmt.Errorf("vault: delete %q/%x: %w", bucket, key, err)
	}
	return nil
}

// ForEach calls fn for each key in bucket that starts with prefix (all keys
// if prefix is empty), in byte-wise key order, with a copy of the key and
// the decrypted value, both of which fn may keep. It stops at and returns
// the first error of fn, or ErrCorrupt at the first value that does not
// authenticate. A missing bucket has no keys. fn must not Put to or Delete
// from bucket (bbolt cursors are not stable under changes): collect the keys
// and change them after ForEach returns.
func (tx *Tx) ForEach(bucket, prefix []byte, fn func(key, value []byte) error) error {
	return tx.forEach(bucket, prefix, prefix, fn)
}

// forEach calls fn, as ForEach does, for the keys of bucket from start on
// that begin with prefix.
func (tx *Tx) forEach(bucket, start, prefix []byte, fn func(key, value []byte) error) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	b := tx.tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var k, box []byte
	if len(start) == 0 {
		k, box = c.First()
	} else {
		k, box = c.Seek(start)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, box = c.Next() {
		if box == nil { // a nested bucket; vault makes none
			continue
		}
		plain, err := tx.open(bucket, k, box)
		if err != nil {
			return err
		}
		if err := fn(bytes.Clone(k), plain); err != nil {
			return err
		}
	}
	return nil
}

// Seq returns the next value of bucket's sequence (1 for the first call),
// creating the bucket if needed. It needs an Update transaction, and the
// increment persists only if that transaction commits. Encode the result
// big-endian (binary.BigEndian.AppendUint64) to get keys that sort in order.
func (tx *Tx) Seq(bucket []byte) (uint64, error) {
	if err := checkBucket(bucket); err != nil {
		return 0, err
	}
	if !tx.tx.Writable() {
		return 0, errReadOnly
	}
	b, err := tx.tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return 0, fmt.Errorf("vault: bucket %q: %w", bucket, err)
	}
	n, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("vault: sequence of %q: %w", bucket, err)
	}
	return n, nil
}
