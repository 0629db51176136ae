package relay

// Messages at rest: sealed under keys the relay erases (see "Erasure" in
// docs/store.md and PROTOCOL.md section 17).
//
// Every message is sealed under a message key of its own, chosen at
// random when it is stored; the message key is kept in the message's
// expiry index entry, wrapped under a ring key. Ring keys live outside
// the bbolt file, in the key file (the store's path plus ".keys"), whose
// slots are overwritten in place and synced: bbolt never overwrites a
// freed page, and a file renamed over another leaves the old blocks on
// the disk, so neither can erase a key. A ring key serves the messages
// stored in one key period (relay.messageUnit, an hour by default); once
// its period is over, rotate wraps the message keys of the messages still
// held under the current ring key and erases the old one. So an
// acknowledged, expired or deleted message, whose sealed body and
// wrapped key can stay in bbolt's free pages, cannot be opened once the
// ring key of its period is erased: at most one key period plus one sweep
// interval (and the time of the rotation) after it left the store.
//
// # Key file layout (version 1)
//
//	header   16 bytes: "hushkeys" | version 1 | 7 zero bytes
//	slots    keySlots (64) slots of 48 bytes each:
//	           id     8 bytes, big-endian, random, not 0; 0: the slot is empty
//	           epoch  8 bytes, big-endian: the key period it serves, unix
//	                  time divided by the period
//	           key   32 bytes, the XChaCha20-Poly1305 key
//
// The file is 3,088 bytes, within one 4 KiB block. An erased slot is all
// zeros.
//
// # Sealed values
//
//	message value   ts(8) | sealed ID (24 + 16) | sealed body (n + 16):
//	                AES-256-GCM under the message key, nonce 0 for the ID
//	                and 1 for the body (each message key seals only these
//	                two), no additional data
//	expiry value    ring key id(8) | nonce(24) | sealed message key (32 + 16):
//	                XChaCha20-Poly1305 under the ring key, the expiry
//	                entry's key as additional data

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/hushrelay/hush/queue"
)

// Key file layout; see the file comment.
const (
	keyFileSuffix  = ".keys"
	keyFileMagic   = "hushkeys"
	keyFileVersion = 1
	keyHeaderSize  = 16
	keySlots       = 64
	keySlotSize    = 8 + 8 + 32
	keyFileSize    = keyHeaderSize + keySlots*keySlotSize
)

// Sealed value layout; see the file comment.
const (
	sealTagSize     = 16
	sealedIDSize    = queue.IDSize + sealTagSize
	wrappedKeySize  = 8 + chacha20poly1305.NonceSizeX + 32 + sealTagSize // an expiry value
	messageOverhead = 8 + sealedIDSize + sealTagSize                     // a message value beyond its body
)

var (
	// errKeyGone is returned (wrapped) when a message's ring key is not in
	// the key file: erased (a reader that raced a rotation tries again), or
	// lost.
	errKeyGone = errors.New("relay store: the message's key is not in the key file")
	// errKeyFile is returned (wrapped) for a key file that does not have
	// the documented layout, or whose slots are all in use.
	errKeyFile = errors.New("relay store: bad key file")
)

// ringKey is one key of the ring.
type ringKey struct {
	id    uint64
	epoch int64
	slot  int
	raw   [32]byte
	aead  cipher.AEAD
}

// keyRing holds the ring keys of a store and its key file. Its methods
// are safe for concurrent use.
type keyRing struct {
	period int64 // seconds, at least 1

	// mu guards the fields below and the writes to f.
	mu       sync.Mutex
	f        *os.File // nil for a ring in memory only (a backup's)
	keys     map[uint64]*ringKey
	used     [keySlots]bool
	current  *ringKey
	maxEpoch int64 // the highest epoch asked for: the current one never goes back
	closed   bool  // Close was called on a ring with a file
}

// keyPath returns the path of the key file of the store at path.
func keyPath(storePath string) string { return storePath + keyFileSuffix }

// openKeyRing opens the key file at path, creating it (mode 0600, and
// synced with its directory) if it does not exist. readOnly opens an
// existing file without writing (a missing one gives an empty ring).
func openKeyRing(path string, period time.Duration, readOnly bool) (*keyRing, error) {
	k := newMemRing(period)
	flag := os.O_RDWR | os.O_CREATE
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if readOnly && errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	buf := make([]byte, keyFileSize)
	n, err := io.ReadFull(f, buf)
	switch {
	case n == 0 && !readOnly:
		copy(buf, keyFileMagic)
		buf[len(keyFileMagic)] = keyFileVersion
		if _, err := f.WriteAt(buf, 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("key file: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("key file: %w", err)
		}
		if err := syncDir(path); err != nil {
			f.Close()
			return nil, fmt.Errorf("key file: %w", err)
		}
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("%w: %d bytes", errKeyFile, n)
	}
	if string(buf[:len(keyFileMagic)]) != keyFileMagic || buf[len(keyFileMagic)] != keyFileVersion {
		f.Close()
		return nil, fmt.Errorf("%w: not a key file of version %d", errKeyFile, keyFileVersion)
	}
	for i := range keySlots {
		s := buf[keyHeaderSize+i*keySlotSize:][:keySlotSize]
		id := binary.BigEndian.Uint64(s)
		if id == 0 {
			continue
		}
		var raw [32]byte
		copy(raw[:], s[16:])
		if err := k.insert(id, int64(binary.BigEndian.Uint64(s[8:])), raw, i); err != nil {
			f.Close()
			return nil, err
		}
	}
	if !readOnly {
		k.f = f
	} else {
		f.Close()
	}
	return k, nil
}

// newMemRing returns an empty ring without a file.
func newMemRing(period time.Duration) *keyRing {
	return &keyRing{period: max(int64(period/time.Second), 1), keys: make(map[uint64]*ringKey)}
}

// insert adds a key to the ring, in slot (or the first free one if slot
// is negative), without writing. mu must be held or the ring unshared.
func (k *keyRing) insert(id uint64, epoch int64, raw [32]byte, slot int) error {
	if _, dup := k.keys[id]; dup || id == 0 {
		return fmt.Errorf("%w: key id %d twice", errKeyFile, id)
	}
	if slot < 0 {
		for i, u := range k.used {
			if !u {
				slot = i
				break
			}
		}
		if slot < 0 {
			return fmt.Errorf("%w: all %d slots in use", errKeyFile, keySlots)
		}
	}
	aead, err := chacha20poly1305.NewX(raw[:])
	if err != nil {
		return err
	}
	k.keys[id] = &ringKey{id: id, epoch: epoch, slot: slot, raw: raw, aead: aead}
	k.used[slot] = true
	k.maxEpoch = max(k.maxEpoch, epoch)
	return nil
}

// writeSlot writes slot i of the file (the key in it, or zeros) and
// syncs the file. mu must be held.
func (k *keyRing) writeSlot(i int, key *ringKey) error {
	if k.closed {
		return fmt.Errorf("key file: %w", errClosed)
	}
	if k.f == nil {
		return nil
	}
	var s [keySlotSize]byte
	if key != nil {
		binary.BigEndian.PutUint64(s[:], key.id)
		binary.BigEndian.PutUint64(s[8:], uint64(key.epoch))
		copy(s[16:], key.raw[:])
	}
	if _, err := k.f.WriteAt(s[:], int64(keyHeaderSize+i*keySlotSize)); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

func (k *keyRing) sync() error {
	if k.f == nil {
		return nil
	}
	if err := k.f.Sync(); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// epochOf returns the key period of now, never one before the highest
// asked for so far. mu must be held.
func (k *keyRing) epochOf(now time.Time) int64 {
	k.maxEpoch = max(k.maxEpoch, now.Unix()/k.period)
	return k.maxEpoch
}

// currentKey returns the key that wraps the message keys stored now: the
// key of now's key period, created (and written to the key file, synced,
// before it is used) when there is none.
func (k *keyRing) currentKey(now time.Time) (*ringKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	epoch := k.epochOf(now)
	if k.current != nil && k.current.epoch == epoch {
		return k.current, nil
	}
	key, err := k.create(epoch)
	if err != nil {
		return nil, err
	}
	k.current = key
	return key, nil
}

// create makes a new key of epoch and writes it to the key file, synced.
// mu must be held.
func (k *keyRing) create(epoch int64) (*ringKey, error) {
	var raw [32]byte
	rand.Read(raw[:])
	id := randomKeyID()
	for k.keys[id] != nil {
		id = randomKeyID()
	}
	if err := k.insert(id, epoch, raw, -1); err != nil {
		return nil, err
	}
	key := k.keys[id]
	if err := k.writeSlot(key.slot, key); err != nil {
		k.drop(key)
		return nil, err
	}
	if err := k.sync(); err != nil {
		k.drop(key)
		return nil, err
	}
	return key, nil
}

func randomKeyID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// drop removes key from memory. mu must be held.
func (k *keyRing) drop(key *ringKey) {
	delete(k.keys, key.id)
	k.used[key.slot] = false
	clear(key.raw[:])
	if k.current == key {
		k.current = nil
	}
}

// get returns the key with id.
func (k *keyRing) get(id uint64) (*ringKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.keys[id]
	return key, ok
}

// erase overwrites the slots of the keys with the given ids with zeros in
// the key file, syncs it, and forgets the keys. It returns the number
// erased.
func (k *keyRing) erase(ids map[uint64]bool) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for id := range ids {
		key, ok := k.keys[id]
		if !ok {
			continue
		}
		if err := k.writeSlot(key.slot, nil); err != nil {
			return n, err
		}
		k.drop(key)
		n++
	}
	if n == 0 {
		return 0, nil
	}
	return n, k.sync()
}

// adopt adds keys (from a backup or a converted file) to the ring and
// the key file, synced.
func (k *keyRing) adopt(keys []ringKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, nk := range keys {
		if old, ok := k.keys[nk.id]; ok {
			if old.raw == nk.raw {
				continue
			}
			return fmt.Errorf("%w: key id %d twice", errKeyFile, nk.id)
		}
		if err := k.insert(nk.id, nk.epoch, nk.raw, -1); err != nil {
			return err
		}
		if err := k.writeSlot(k.keys[nk.id].slot, k.keys[nk.id]); err != nil {
			return err
		}
	}
	return k.sync()
}

// len returns the number of keys.
func (k *keyRing) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// Close closes the key file. The keys stay in memory.
func (k *keyRing) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f, k.closed = nil, true
	return err
}

// syncDir syncs the directory of path, so that a new file in it is
// durable.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// wrapKey returns the expiry value holding msgKey wrapped under key, with
// the expiry entry's key ek as additional data.
func wrapKey(key *ringKey, msgKey *[32]byte, ek []byte) []byte {
	v := make([]byte, 8+chacha20poly1305.NonceSizeX, wrappedKeySize)
	binary.BigEndian.PutUint64(v, key.id)
	rand.Read(v[8:])
	return key.aead.Seal(v, v[8:], msgKey[:], ek)
}

// unwrapKey returns the message key in expiry value v of entry ek.
func unwrapKey(ring *keyRing, v, ek []byte) (msgKey [32]byte, err error) {
	if len(v) != wrappedKeySize {
		return msgKey, fmt.Errorf("%w: expiry value", errCorrupt)
	}
	key, ok := ring.get(binary.BigEndian.Uint64(v))
	if !ok {
		return msgKey, errKeyGone
	}
	var out [32]byte
	if _, err := key.aead.Open(out[:0], v[8:8+chacha20poly1305.NonceSizeX], v[8+chacha20poly1305.NonceSizeX:], ek); err != nil {
		return msgKey, fmt.Errorf("%w: wrapped message key", errCorrupt)
	}
	return out, nil
}

// wrapKeyID returns the id of the ring key of expiry value v.
func wrapKeyID(v []byte) (uint64, bool) {
	if len(v) != wrappedKeySize {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// newMessageKey returns a random message key.
func newMessageKey() (k [32]byte) {
	rand.Read(k[:])
	return k
}

// messageAEAD returns AES-256-GCM under a message key.
func messageAEAD(msgKey *[32]byte) cipher.AEAD {
	b, err := aes.NewCipher(msgKey[:])
	if err != nil {
		panic(err) // 32-byte key
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

// The nonces of a message key's two seals.
var (
	nonceID   = make([]byte, 12)
	nonceBody = append(make([]byte, 11), 1)
)

// sealMessage appends the stored value of m, sealed under msgKey, to dst.
func sealMessage(dst []byte, msgKey *[32]byte, m storedMessage) []byte {
	g := messageAEAD(msgKey)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Timestamp))
	dst = g.Seal(dst, nonceID, m.ID[:], nil)
	return g.Seal(dst, nonceBody, m.Body, nil)
}

// sealedMessage is a message value as stored: its time in the clear,
// its ID and body sealed.
type sealedMessage struct {
	Timestamp int64
	id, body  []byte // sealed; alias the value
}

// decodeMessage parses a message value; the result aliases v.
func decodeMessage(v []byte) (sealedMessage, error) {
	var m sealedMessage
	if len(v) < messageOverhead || len(v)-messageOverhead > queue.MaxMessageSize {
		return m, fmt.Errorf("%w: message", errCorrupt)
	}
	m.Timestamp = int64(binary.BigEndian.Uint64(v))
	m.id = v[8 : 8+sealedIDSize]
	m.body = v[8+sealedIDSize:]
	return m, nil
}

// openID returns the message's ID.
func (m sealedMessage) openID(g cipher.AEAD) (id queue.ID, err error) {
	if _, err := g.Open(id[:0], nonceID, m.id, nil); err != nil {
		return id, fmt.Errorf("%w: sealed message ID", errCorrupt)
	}
	return id, nil
}

// openBody appends the message's body to dst.
func (m sealedMessage) openBody(g cipher.AEAD, dst []byte) ([]byte, error) {
	out, err := g.Open(dst, nonceBody, m.body, nil)
	if err != nil {
		return dst, fmt.Errorf("%w: sealed message body", errCorrupt)
	}
	return out, nil
}

// bodySize returns the size of the message's body.
func (m sealedMessage) bodySize() int { return len(m.body) - sealTagSize }

// detachedKey returns a new key of the latest key period asked for, which
// is not in the ring (a backup's).
func (k *keyRing) detachedKey() *ringKey {
	k.mu.Lock()
	epoch := k.maxEpoch
	k.mu.Unlock()
	key := &ringKey{id: randomKeyID(), epoch: epoch}
	rand.Read(key.raw[:])
	key.aead, _ = chacha20poly1305.NewX(key.raw[:]) // 32-byte key
	return key
}
