package relay

// Offline and online operations on the store file: backup, check,
// compaction and restore.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hushrelay/hush/queue"
)

var (
	// ErrStoreInUse is returned by BackupStore, CheckStore, CompactStore
	// and RestoreStore when another process (a running relay) holds the
	// store file.
	ErrStoreInUse = errors.New("the store is in use by a running relay")
	// ErrStoreDamaged is returned (wrapped, with what was found) by
	// CheckStore, CompactStore and RestoreStore for a store file that is
	// not consistent.
	ErrStoreDamaged = errors.New("the store is damaged")
	// ErrStoreOld is returned (wrapped, with what to do) by CheckStore for
	// a store file of an older format version (1, 2 or 3), which the
	// relay, CompactStore and RestoreStore convert; CheckStore does not.
	ErrStoreOld = errors.New("store format older than this relay's")
)

// compactTxSize bounds the writes of one compaction transaction.
const compactTxSize = 64 << 20

// StoreReport describes a consistent store file.
type StoreReport struct {
	Queues    int // every queue
	Unsecured int // queues never secured
	Suspended int // suspended queues
	Messages  int // undelivered messages
	Size      int64
	// Free is the part of Size held by free pages and unused space at the
	// end of the file: what CompactStore reclaims.
	Free int64
}

// Backup writes a consistent copy of the store to w while the relay runs:
// the state of one moment, while writes go on. The copy is a store file:
// a relay can open it, and CheckStore checks it. It holds live data only:
// it is written key by key from one read transaction into a new file
// (copyLive), so that nothing acknowledged, expired or deleted before that
// moment is in it, as it would be in a copy of the store's pages (free
// pages included). The new file is spooled next to the store (it needs
// as much free space as the store's live data, and is removed before
// Backup returns), and then copied to w: however slowly w is read, the
// store's read transaction lasts only as long as the local copy, so a
// commit that must grow the file never waits for the reader. It returns
// the number of bytes written to w. It blocks until the copy is written,
// or until a write to w fails or ctx is done (it then returns their
// error).
func (r *Relay) Backup(ctx context.Context, w io.Writer) (int64, error) {
	r.store.backups.Add(1)
	defer r.store.backups.Add(-1)
	return backupVia(ctx, r.store.db, r.store.ring, &r.store.rotMu, filepath.Dir(r.cfg.StorePath), w)
}

// BackupStore writes a consistent copy of the store file at path, which no
// relay may have open (else ErrStoreInUse), to w. Like Backup, it holds
// live data only, and it is spooled in path's directory; it blocks like
// Backup.
func BackupStore(ctx context.Context, path string, w io.Writer) (int64, error) {
	db, err := openOffline(path, true)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ring, err := offlineRing(db, path)
	if err != nil {
		return 0, err
	}
	return backupVia(ctx, db, ring, nil, filepath.Dir(path), w)
}

// offlineRing returns the keys of the store file db at path: those of its
// "keys" bucket if it is a backup, else those of its key file, read only
// (none if there is no key file).
func offlineRing(db *bbolt.DB, path string) (*keyRing, error) {
	return offlineRingAt(db, path, keyPath(path))
}

// offlineRingAt is offlineRing with the key file at keys.
func offlineRingAt(db *bbolt.DB, path, keyFile string) (*keyRing, error) {
	var (
		keys   []ringKey
		backup bool
	)
	if err := db.View(func(tx *bbolt.Tx) error {
		var err error
		keys, backup, err = keysOf(tx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrStoreDamaged, err)
	}
	if !backup {
		ring, err := openKeyRing(keyFile, defaultMessageUnit, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", path, ErrStoreDamaged, err)
		}
		return ring, nil
	}
	ring := newMemRing(defaultMessageUnit)
	if err := ring.adopt(keys); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrStoreDamaged, err)
	}
	return ring, nil
}

// backupVia copies the live data of db into a new store file in dir
// (copyLive), copies that file to w and removes it.
//
// rotMu, if not nil, is held for reading while the copy is made (not
// while it is sent): no key is erased while the copy unwraps the message
// keys of its transaction.
func backupVia(ctx context.Context, db *bbolt.DB, ring *keyRing, rotMu *sync.RWMutex, dir string, w io.Writer) (int64, error) {
	f, err := os.CreateTemp(dir, ".backup-*.tmp")
	if err != nil {
		return 0, fmt.Errorf("backup spool: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if rotMu != nil {
		rotMu.RLock()
	}
	err = db.View(func(tx *bbolt.Tx) error { return copyLive(ctx, tx, f.Name(), ring) })
	if rotMu != nil {
		rotMu.RUnlock()
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = errClosed
	}
	if err != nil {
		return 0, err
	}
	return io.Copy(ctxWriter{ctx, w}, f)
}

// openBolt opens a bbolt file (mode 0600 if new). bbolt panics on some
// damaged files: that is an error wrapping ErrStoreDamaged here.
func openBolt(path string, opts *bbolt.Options) (db *bbolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%w: %v (hush-relay check tells more)", ErrStoreDamaged, p)
		}
	}()
	return bbolt.Open(path, 0o600, opts)
}

// openOffline opens the store at path for an offline operation: a
// relay holding it gives ErrStoreInUse.
func openOffline(path string, readOnly bool) (*bbolt.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path, &bbolt.Options{
		ReadOnly:     readOnly,
		Timeout:      defaultStoreLockTimeout,
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrStoreInUse)
	}
	if err != nil && !errors.Is(err, ErrStoreDamaged) {
		err = fmt.Errorf("%w: %w", ErrStoreDamaged, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}

// CheckStore checks the store file at path, which no relay may have open
// (else ErrStoreInUse): bbolt's page structure, and the relay's layout
// and indexes (every queue in the sender index, every message in the
// expiry index and counted by its queue, nothing left over, every
// message key wrapped under a key of the key file beside path, or of the
// file's own "keys" bucket for a backup). It returns
// ErrStoreDamaged, wrapped with the first problems found, for an
// inconsistent file, and the report for a consistent one. Problems name
// no queue ID. A fault while reading a damaged file is reported, not
// fatal.
func CheckStore(path string) (StoreReport, error) {
	return checkStoreKeys(path, keyPath(path))
}

// checkStoreKeys is CheckStore with the key file at keys.
func checkStoreKeys(path, keys string) (StoreReport, error) {
	var (
		rep StoreReport
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A damaged file can send reads outside the mapping: make such a
		// fault a panic that checkStore recovers, on this goroutine.
		debug.SetPanicOnFault(true)
		rep, err = checkStore(path, keys)
	}()
	<-done
	return rep, err
}

func checkStore(path, keys string) (rep StoreReport, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %w: %v", path, ErrStoreDamaged, p)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return rep, err
	}
	rep.Size = fi.Size()
	db, err := openOffline(path, true)
	if err != nil {
		return rep, err
	}
	defer db.Close()
	ring, err := offlineRingAt(db, path, keys)
	if err != nil {
		return rep, err
	}
	var p problems
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Size() > rep.Size {
			p.add("the file is truncated: %d bytes, its pages need %d", rep.Size, tx.Size())
			return nil
		}
		if err := checkLayout(tx); err != nil {
			return err
		}
		checkContents(bucketsOf(tx), ring, &rep, &p)
		if p.n > 0 {
			return nil // the page check could fault on what was found
		}
		for err := range tx.Check() {
			p.add("%v", err)
		}
		if p.n == 0 {
			st := db.Stats()
			rep.Free = int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize) + rep.Size - tx.Size()
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	if p.n > 0 {
		return rep, fmt.Errorf("%s: %w: %s", path, ErrStoreDamaged, &p)
	}
	return rep, nil
}

// checkLayout checks the format version, that every bucket exists and
// that version 3's index of queues never secured does not, without
// writing.
func checkLayout(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: no version (not a relay store?)", errStoreVersion)
	}
	switch v := meta.Get(metaVersionKey); {
	case len(v) != 1:
		return fmt.Errorf("%w: %w: malformed version", ErrStoreDamaged, errStoreVersion)
	case v[0] == storeVersion1 || v[0] == storeVersion2 || v[0] == storeVersion3:
		return fmt.Errorf("%w: version %d, not %d: start the relay once or run \"hush-relay compact\", which convert it, then check again; the conversion is one way (a relay that reads version %d refuses version %d)", ErrStoreOld, v[0], storeVersion, v[0], storeVersion)
	case v[0] != storeVersion:
		return fmt.Errorf("%w: version %d, this relay reads version %d", errStoreVersion, v[0], storeVersion)
	}
	for _, name := range [][]byte{bucketQueues, bucketSenders, bucketMessages, bucketExpiry} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q missing", ErrStoreDamaged, name)
		}
	}
	if tx.Bucket(bucketUnsecured) != nil {
		// A stale index ordered by creation, which nothing would remove.
		return fmt.Errorf("%w: bucket %q of format version 3 in version %d", ErrStoreDamaged, bucketUnsecured, storeVersion)
	}
	return nil
}

// checkContents checks every queue with its messages and index entries,
// and counts what it finds into rep.
func checkContents(b storeTx, ring *keyRing, rep *StoreReport, p *problems) {
	i := 0
	var stored int64 // bytes of message values
	b.queues.ForEach(func(k, v []byte) error {
		i++
		if len(k) != queue.IDSize {
			p.add("queue %d: key of %d bytes", i, len(k))
			return nil
		}
		var rid queue.ID
		copy(rid[:], k)
		q, err := decodeQueue(rid, v)
		if err != nil {
			p.add("queue %d: malformed record", i)
			return nil
		}
		rep.Queues++
		if !q.Secured {
			rep.Unsecured++
		}
		if q.Suspended {
			rep.Suspended++
		}
		if got, ok := b.ridBySender(q.SenderID); !ok || got != rid {
			p.add("queue %d: missing from the sender index", i)
		}
		n := 0
		c := b.messages.Cursor()
		for k, v := c.Seek(rid[:]); k != nil && bytes.HasPrefix(k, rid[:]); k, v = c.Next() {
			n++
			if len(k) != messageKeySize {
				p.add("queue %d: message key of %d bytes", i, len(k))
				continue
			}
			m, err := decodeMessage(v)
			if err != nil {
				p.add("queue %d: malformed message", i)
				continue
			}
			stored += int64(len(v))
			seq := binary.BigEndian.Uint64(k[queue.IDSize:])
			ek := expiryKey(m.Timestamp, rid, seq)
			wrapped := b.expiry.Get(ek)
			if wrapped == nil {
				p.add("queue %d: a message missing from the expiry index", i)
				continue
			}
			if _, err := unwrapKey(ring, wrapped, ek); errors.Is(err, errKeyGone) {
				p.add("queue %d: a message whose key is in no key file (it cannot be read)", i)
			} else if err != nil {
				p.add("queue %d: a malformed message key", i)
			}
		}
		rep.Messages += n
		return nil
	})
	for _, c := range []struct {
		what   string
		bucket *bbolt.Bucket
		want   int
	}{
		{"messages", b.messages, rep.Messages},
		{"sender index entries", b.senders, rep.Queues},
		{"expiry index entries", b.expiry, rep.Messages},
	} {
		if n := c.bucket.Stats().KeyN; n != c.want {
			p.add("%d %s, want %d: entries that belong to no queue", n, c.what, c.want)
		}
	}
	// The counts the relay keeps, if the file has them yet.
	if v := b.meta.Get(metaCountsKey); v != nil {
		want := countDelta{queues: int64(rep.Queues), messages: int64(rep.Messages), bytes: stored}
		if len(v) != 24 || !bytes.Equal(v, want.encode()) {
			p.add("the recorded counts of queues, messages and bytes disagree with the contents")
		}
	}
}

// problems collects what a check found; it keeps the first few.
type problems struct {
	list []string
	n    int
}

func (p *problems) add(format string, args ...any) {
	p.n++
	if len(p.list) < 8 {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

func (p *problems) String() string {
	s := strings.Join(p.list, "; ")
	if more := p.n - len(p.list); more > 0 {
		s += fmt.Sprintf("; and %d more", more)
	}
	return s
}

// CompactStore rewrites the store file at path without its free pages,
// which gives back the space of a backlog that has drained. No relay may
// have the file open (ErrStoreInUse); it must be consistent (see
// CheckStore). The new file is written beside the old one, checked, and
// renamed over it, so a crash leaves one or the other; it keeps the old
// file's owner when run as root. It returns the sizes before and after.
func CompactStore(path string) (before, after int64, err error) {
	if err := convertFile(path, keyPath(path)); err != nil {
		return 0, 0, err
	}
	rep, err := CheckStore(path)
	if err != nil {
		return 0, 0, err
	}
	before = rep.Size
	src, err := openOffline(path, false)
	if err != nil {
		return before, 0, err
	}
	defer src.Close()
	tmp := path + ".compact"
	os.Remove(tmp) // left by an interrupted run
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return before, 0, err
	}
	err = bbolt.Compact(dst, src, compactTxSize)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = checkStoreKeys(tmp, keyPath(path))
	}
	if err == nil {
		err = replaceFile(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return before, 0, err
	}
	return before, fi.Size(), nil
}

// RestoreStore puts a copy of the store file from (a backup) at path,
// replacing the file there, if any. from must be consistent (see
// CheckStore); no relay may have path open (ErrStoreInUse). The copy is
// written beside path, synced, and renamed over it, so a crash leaves the
// old file or the new one; it keeps the owner of the file it replaces (or
// of the directory) when run as root. It returns the report of from.
func RestoreStore(from, path string) (StoreReport, error) {
	rep, err := CheckStore(from)
	if err != nil && !errors.Is(err, ErrStoreOld) {
		return rep, fmt.Errorf("backup %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		// Hold the old file while it is replaced: a relay that holds it
		// makes this fail, and none can open it meanwhile.
		db, err := openOffline(path, false)
		if errors.Is(err, ErrStoreInUse) {
			return rep, err
		}
		if err == nil {
			defer db.Close()
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return rep, err
	}
	tmp := path + ".restore"
	if err := copyFile(from, tmp); err != nil {
		os.Remove(tmp)
		return rep, err
	}
	// A backup of an older format is converted here, not by the relay
	// that opens it, so that what is checked is what the relay will read;
	// the keys of the backup go to path's key file (synced before the
	// rename).
	keys := keyPath(path)
	if err := convertFile(tmp, keys); err != nil {
		os.Remove(tmp)
		return rep, fmt.Errorf("backup %s: %w", from, err)
	}
	rep, err = checkStoreKeys(tmp, keys)
	if err != nil {
		os.Remove(tmp)
		return rep, fmt.Errorf("backup %w", err)
	}
	if err := replaceFile(tmp, path); err != nil {
		os.Remove(tmp)
		return rep, err
	}
	// The keys of the store replaced open nothing now: erase them.
	if err := eraseUnusedKeys(path); err != nil {
		return rep, fmt.Errorf("restored, but the old keys are not erased: %w", err)
	}
	return rep, nil
}

// eraseUnusedKeys erases from the key file of the store at path, which no
// relay may have open, every key that wraps none of its message keys.
func eraseUnusedKeys(path string) error {
	db, err := openOffline(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	used := make(map[uint64]bool)
	if err := db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketExpiry).ForEach(func(_, v []byte) error {
			if id, ok := wrapKeyID(v); ok {
				used[id] = true
			}
			return nil
		})
	}); err != nil {
		return err
	}
	ring, err := openKeyRing(keyPath(path), defaultMessageUnit, false)
	if err != nil {
		return err
	}
	defer ring.Close()
	unused := make(map[uint64]bool)
	ring.mu.Lock()
	for id := range ring.keys {
		if !used[id] {
			unused[id] = true
		}
	}
	ring.mu.Unlock()
	_, err = ring.erase(unused)
	return err
}

// convertFile converts the store file at path, which no relay may have
// open (ErrStoreInUse), to the current format if it has an older one, or
// takes the keys of a backup (migrateStore), with the default units of
// time and the key file at keys.
// A fault while reading a damaged file is an error wrapping
// ErrStoreDamaged.
func convertFile(path, keys string) (err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%s: %w: %v", path, ErrStoreDamaged, p)
			}
		}()
		db, oerr := openOffline(path, false)
		if oerr != nil {
			err = oerr
			return
		}
		ring, merr := openKeyRing(keys, defaultMessageUnit, false)
		if merr != nil {
			db.Close()
			err = fmt.Errorf("%s: %w", path, merr)
			return
		}
		defer ring.Close()
		replaced, merr := migrateStore(db, path, storeOptions{}, ring)
		if !replaced {
			db.Close()
		}
		if merr != nil {
			err = fmt.Errorf("%s: %w", path, merr)
		}
	}()
	<-done
	return err
}

// copyFile copies from to a new file to (mode 0600), synced.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	os.Remove(to)
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// replaceFile renames tmp over path durably, giving it the owner of the
// file it replaces, or of the directory.
func replaceFile(tmp, path string) error {
	owner := path
	if _, err := os.Stat(path); err != nil {
		owner = filepath.Dir(path)
	}
	if err := keepOwner(tmp, owner); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// probeKey is written and deleted again by probe, in the meta bucket.
var probeKey = []byte("probe")

// probe commits a write that leaves nothing behind, through the commit
// loop, and waits until it is durable or ctx is done.
func (s *store) probe(ctx context.Context) error {
	err := s.do(ctx, func(b storeTx) error {
		if err := b.meta.Put(probeKey, []byte{1}); err != nil {
			return err
		}
		return b.meta.Delete(probeKey)
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("no commit: %w", err)
	}
	return err
}

// counts returns the numbers of queues and of undelivered messages, from
// one read transaction that walks the pages of two buckets.
func (s *store) counts() (queues, messages int, err error) {
	c := s.total.snapshot()
	return int(c.queues), int(c.messages), nil
}

// sizes returns the size of the store file and the bytes of its free
// pages.
func (s *store) sizes() (size, free int64, err error) {
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		return 0, 0, err
	}
	// The page size is read inside a read transaction: DB.Info reads the
	// mapping, which a concurrent remap may move.
	var pageSize int64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		pageSize = int64(tx.DB().Info().PageSize)
		return nil
	}); err != nil {
		return 0, 0, err
	}
	st := s.db.Stats()
	return fi.Size(), int64(st.FreePageN+st.PendingPageN) * pageSize, nil
}
