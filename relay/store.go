package relay

// The relay's durable store: one bbolt file holding queues and their
// undelivered messages.
//
// # Layout (format version 4)
//
// All integers are big-endian, so that keys sort in numeric order. IDs are
// queue.IDSize (24) bytes, keys queue.KeySize (32) bytes.
//
//	bucket "meta"
//	  "version"                 -> 1 byte: the format version, 4. A file of
//	                               version 3 is converted in place when it
//	                               is opened, one of version 1 or 2 into a
//	                               new file (migrateStore); a file with
//	                               another version, or with buckets but no
//	                               version, is refused.
//	  "counts"                  -> 24 bytes: queues(8) | messages(8) | bytes(8),
//	                               the queues, the messages and the bytes of
//	                               message values held, updated in every
//	                               transaction that changes them. A file
//	                               without it (written before it existed) is
//	                               counted once at open.
//	  "scan"                    -> 2 bytes: the first bytes of the last
//	                               recipient ID the sweep of queues never
//	                               secured read, where the next process
//	                               goes on (absent: at a random ID).
//	bucket "queues"
//	  rid(24)                   -> queue record, 130 bytes:
//	                                 version   1 byte, 2
//	                                 flags     1 byte: 0x01 secured, 0x02 suspended
//	                                 sid       24 bytes, the sender ID
//	                                 rkey      32 bytes, recipient authorization key
//	                                 skey      32 bytes, sender authorization key
//	                                           (zero unless secured)
//	                                 msgkey    32 bytes, the MSG re-encryption key
//	                                 created   8 bytes, unix seconds (int64), a
//	                                           multiple of storeOptions.QueueUnit
//	                                           (the UTC day by default)
//
//	  The record changes only when the queue is secured or suspended: it
//	  holds no counter of messages. A new message takes the sequence number
//	  after the last one the queue holds, or 0 when it holds none. The
//	  sweep finds the queues never secured that expired by reading this
//	  bucket (sweepQueues): no index orders queues by creation.
//	bucket "senders"
//	  sid(24)                   -> rid(24)
//	bucket "messages"
//	  rid(24)|seq(8)            -> ts(8)|sealed msgID(40)|sealed body(n+16);
//	                               ts in unix seconds, a multiple of the
//	                               relay's message time unit (the hour by
//	                               default); the ID and body sealed under
//	                               the message's own key (atrest.go)
//	bucket "expiry"
//	  ts(8)|rid(24)|seq(8)      -> the message key wrapped under a ring key
//	                               (80 bytes, atrest.go); one entry per
//	                               message, so that expired messages are
//	                               found without visiting every queue
//	bucket "keys"               only in a backup (copyLive): ring key
//	  id(8)                     -> epoch(8)|key(32), the one key that
//	                               unwraps the backup's message keys; moved
//	                               to the key file by migrateStore
//
// Version 3 had one more bucket, "unsecured": created(8)|rid(24) -> empty,
// one entry per queue never secured, which every NEW, and the first KEY or
// SKEY and the DEL of such a queue, wrote; version 4 is version 3 without
// it (see "Conversion" in docs/store.md).
//
// # Invariants
//
//   - Nothing is held only in memory that a crash would lose: a write is
//     reported only after its transaction is committed and fsynced.
//   - One goroutine (loop) applies all writes, in submission order, in
//     group transactions (see "Writes" in docs/store.md).
//   - Values read through the mapping are never modified, and dropping the
//     mapping's pages (trimLoop, Linux) loses nothing (see "Memory" in
//     docs/store.md).
//   - The file holds no IP addresses, sessions, subscriptions or links
//     between queues (see "What the file reveals" in docs/store.md).

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hushrelay/hush/queue"
)

// storeVersion is the layout version written in the meta bucket.
const storeVersion = 4

// storeVersion3 is the format before version 4: it also held the index
// of queues never secured (bucket "unsecured"). openStore converts it in
// place (migrateStore).
const storeVersion3 = 3

// storeVersion2 is the format before version 3: its message IDs and
// bodies were not sealed. openStore converts it.
const storeVersion2 = 2

// storeVersion1 is the format before version 2: its queue records held a
// lifetime message counter and times to the second. openStore converts it.
const storeVersion1 = 1

// Bucket and key names.
var (
	bucketMeta      = []byte("meta")
	bucketQueues    = []byte("queues")
	bucketSenders   = []byte("senders")
	bucketMessages  = []byte("messages")
	bucketExpiry    = []byte("expiry")
	bucketUnsecured = []byte("unsecured") // version 3 only
	bucketRingKeys  = []byte("keys")
	metaVersionKey  = []byte("version")
	metaCountsKey   = []byte("counts")
	metaScrubKey    = []byte("scrub")
	metaScanKey     = []byte("scan")
)

// scanPrefix is how much of the position of the sweep of queues never
// secured is kept in the meta bucket ("scan"): the first bytes of the last
// recipient ID read, which say nothing about any queue.
const scanPrefix = 2

// Default storeOptions.
const (
	defaultStoreLockTimeout = 2 * time.Second
	defaultStoreMaxBatch    = 512
	defaultStoreQueueLen    = 4096
	defaultSweepBatch       = 1000
	defaultSweepScan        = 250_000
	defaultSweepChunk       = 1000
	defaultMappedLimit      = 64 << 20
	defaultGatherWait       = 2 * time.Millisecond
	defaultGatherOps        = 16
	defaultGatherRate       = 2000
	// gatherWindow is the period over which the loop measures the rate of
	// operations that turns gathering on or off.
	gatherWindow = 100 * time.Millisecond
	// storeTrimInterval is how often trimLoop compares the process's
	// file-backed resident memory with the limit. While the store is
	// busy (a commit, or more of the file mapped, within storeTrimRest)
	// it drops at most once per storeTrimBusyGap (see "Memory" in
	// docs/store.md).
	storeTrimInterval = 100 * time.Millisecond
	storeTrimBusyGap  = 10 * time.Second
	storeTrimRest     = time.Second
	// storeTrimChunk is how much of the mapping one read transaction of a
	// trim drops: at most about 0.4ms of madvise (see "Memory" above).
	storeTrimChunk = 8 << 20
	// storeMapSize is the size of the store file's memory mapping when
	// the file is smaller (bbolt Options.InitialMmapSize), on 64-bit
	// systems: address space, not memory. Without it bbolt maps the file
	// in a power of two that it remaps at each doubling of the file, and
	// a remap waits for every read transaction (delivery, SUB) while it
	// holds the writer, then makes the process fault the whole file back
	// in; with it a store remaps only past 1 GiB (see "Memory" in
	// docs/store.md).
	storeMapSize = 1 << 30
)

// queueRecord is one queue as stored.
type queueRecord struct {
	RecipientID, SenderID queue.ID
	RecipientKey          queue.Key // recipient authorization key (X25519 public)
	SenderKey             queue.Key // valid only when Secured
	Secured               bool
	Suspended             bool
	MessageKey            [32]byte // re-encryption key for MSG (queue.MessageKey)
	Created               int64    // unix seconds, rounded down by the relay (relay.queueUnit)
}

// storedMessage is one undelivered message.
type storedMessage struct {
	ID        queue.ID
	Timestamp int64 // unix seconds when stored, rounded down by the relay (relay.messageUnit)
	Body      []byte
}

// storeOptions tunes a store. Zero values are the defaults.
type storeOptions struct {
	LockTimeout time.Duration // bbolt open lock timeout; default 2s
	MaxBatch    int           // most operations per group commit; default 512
	QueueLen    int           // bound of the pending-operation queue; default 4096; submitters block (ctx) when full
	// GatherWait, GatherOps and GatherRate shape group commits under load
	// (see "Writes" in docs/store.md): above GatherRate operations per
	// second (default 2000), the loop waits for a batch of GatherOps
	// (default 16) until the batch's oldest operation has been queued for
	// GatherWait (default 2ms). A negative GatherWait never waits.
	GatherWait time.Duration
	GatherOps  int
	GatherRate float64
	// OnCommit, if not nil, is called on the commit loop's goroutine after
	// each group transaction with how long its oldest operation had been
	// queued when the transaction began, the transaction's duration (fsync
	// included), the number of operations in it and its commit error (nil
	// once committed). It must not block.
	OnCommit func(wait, d time.Duration, ops int, err error)
	// OnFinished, if not nil, is called on the commit loop's goroutine
	// once every operation of a group transaction has been finished
	// (after OnCommit), and in Close once it has failed the operations
	// left: a caller whose finish functions only queue work (the relay's
	// replies and deliveries) starts it there, once per commit. Calls
	// never overlap. It must not block.
	OnFinished func()
	// MappedLimit bounds, in bytes, the process's file-backed resident
	// memory above which the store drops its file's pages from the process
	// (see "Memory" in docs/store.md); default 64 MiB; negative: never.
	// It does nothing except on Linux.
	MappedLimit int64
	// OnTrim, if not nil, is called on the store's trimming goroutine
	// after each drop of the mapping, or failed attempt, with the
	// file-backed resident memory that exceeded the limit (0 if it could
	// not be read) and the time spent. A failure is reported at every
	// check, ten times a second; nothing else changes. It must not block.
	OnTrim func(resident int64, d time.Duration, err error)
	// MessageUnit and QueueUnit are the units to which the conversion of
	// a version 1 file (migrateStore) rounds message times and queue
	// creation times down; defaults 1 hour and 24 hours (the UTC day).
	// The relay rounds the times it stores itself (relay.messageUnit,
	// relay.queueUnit). MessageUnit is also the key period: how long a
	// ring key wraps the keys of new messages (see atrest.go).
	MessageUnit, QueueUnit time.Duration
	// SweepScan and SweepChunk bound the sweep of queues never secured
	// (sweepQueues): one sweep reads at most SweepScan queue records
	// (default 250,000), in read transactions of SweepChunk (default
	// 1,000).
	SweepScan, SweepChunk int
}

// Errors. The first six are outcomes of one operation ("domain errors"): the
// operation changed nothing and the other operations of its group commit are
// unaffected.
var (
	// errNotFound is returned when the queue or the message does not exist
	// (the relay answers AUTH or NO_MSG).
	errNotFound = errors.New("relay store: no such queue or message")
	// errKeyMismatch is returned by secureQueue and secureBySender when the
	// queue is already secured with another sender key.
	errKeyMismatch = errors.New("relay store: queue secured with another key")
	// errQuota is returned by addMessage when the queue holds its quota.
	errQuota = errors.New("relay store: queue full")
	// errSuspended is returned by addMessage, secureQueue and
	// secureBySender for a suspended queue.
	errSuspended = errors.New("relay store: queue suspended")
	// errNotSecured is returned by addMessage for a queue never secured.
	errNotSecured = errors.New("relay store: queue not secured")
	// errExists is returned by createQueue when the recipient or sender ID
	// is already used by a queue (as either kind of ID), or when both IDs
	// are equal.
	errExists = errors.New("relay store: queue ID in use")
	// errClosed is returned by every method once Close has been called, and
	// delivered to operations still pending when it was.
	errClosed = errors.New("relay store: closed")
	// errStoreVersion is returned (wrapped) by openStore for a file of
	// another format version, or one that is not a relay store.
	errStoreVersion = errors.New("relay store: unsupported format version")
	// errCorrupt is returned (wrapped) when stored bytes do not have the
	// documented layout.
	errCorrupt = errors.New("relay store: corrupt data")
)

// isDomainError reports whether err is the outcome of an operation that
// checked before writing, and so left nothing behind.
func isDomainError(err error) bool {
	switch err {
	case errNotFound, errKeyMismatch, errQuota, errSuspended, errNotSecured, errExists:
		return true
	}
	return false
}

// errRetry rolls back a group transaction in which one operation failed
// after it may have written.
var errRetry = errors.New("relay store: retry without the failed operation")

// store is the relay's durable store. Its methods are safe for concurrent
// use.
//
// Reads (queueByRecipient, queueBySender, firstMessage, countQueues) run in
// their own bbolt read transactions; they neither wait for writes nor see
// uncommitted ones.
//
// Writes (createQueue, secureQueue, secureBySender, suspendQueue,
// deleteQueue, addMessage, ackMessage) submit an operation to the commit
// loop and return a channel, buffered, that receives exactly one result once
// the operation's transaction has been committed and fsynced, or has
// failed; nobody has to read it. Submission blocks only while
// storeOptions.QueueLen operations are pending, until ctx is done (then it
// returns ctx.Err() and the operation never runs). Once submitted, an
// operation runs even if ctx is canceled. Operations run in submission
// order, so operations submitted one after the other by one goroutine are
// applied in that order.
//
// On Linux a second goroutine (trimLoop) bounds how much of the file stays
// mapped into the process; see "Memory" in docs/store.md.
type store struct {
	db       *bbolt.DB
	maxBatch int
	// gather, gatherN and gatherR are storeOptions.GatherWait, GatherOps
	// (at most maxBatch) and GatherRate.
	gather   time.Duration
	gatherN  int
	gatherR  float64
	ops      chan *storeOp // pending writes, FIFO, bounded: submitters block when full
	closing  chan struct{} // closed when Close starts
	loopDone chan struct{} // closed when the commit loop has returned
	trimDone chan struct{} // closed when trimLoop has returned, or was never started
	// commits counts the group transactions committed, for tests and
	// metrics, and numbers them: only the commit loop adds to it, once per
	// transaction committed and before it finishes the transaction's
	// operations, so an operation's apply sees its transaction's number
	// minus one, and a read transaction begun after a load of it sees
	// every transaction up to the number loaded (sendResult.Commit, and
	// subscription.floor in session.go).
	commits atomic.Uint64
	// removals records, per queue, the last commit that removed one of
	// its messages or the queue (removalTable); only the commit loop
	// writes it, before the commit.
	removals removalTable
	// total is what the file holds as of the last commit; only the commit
	// loop writes it.
	total    storeCounts
	onCommit func(time.Duration, time.Duration, int, error)
	// onFinished is storeOptions.OnFinished.
	onFinished func()
	// mappedLimit is storeOptions.MappedLimit, negative for never; trims
	// counts the drops of the mapping.
	mappedLimit int64
	trims       atomic.Uint64
	onTrim      func(int64, time.Duration, error)
	// values holds *[]byte buffers of messageValueCap for the values
	// addMessage stores: bbolt keeps a reference to a value until the
	// commit, after which the buffer is free again. bodies holds
	// *[]byte buffers of queue.MaxMessageSize into which readFirstMessage
	// opens bodies.
	values, bodies sync.Pool
	// ring holds the keys that wrap the message keys (atrest.go).
	// rotMu is held for reading by backups, which unwrap the message keys
	// of one read transaction, and for writing by rotate while it erases
	// keys.
	ring  *keyRing
	rotMu sync.RWMutex
	// freed is set when a transaction deletes a queue or link data, whose
	// bytes stay in free pages until scrub overwrites them; backups
	// counts the backups copying (their read transactions hold pages that
	// scrub cannot overwrite).
	freed   atomic.Bool
	backups atomic.Int32
	// scanKeys and scanChunk are storeOptions.SweepScan and SweepChunk;
	// scanNext is where the next sweepQueues starts reading the queues
	// bucket (nil: at its first key). scanMu, held by sweepQueues, guards
	// scanNext.
	scanKeys, scanChunk int
	scanMu              sync.Mutex
	scanNext            []byte

	closeOnce sync.Once
	closeErr  error

	// mu guards closed. Submitters hold it for reading while they enqueue,
	// so that no operation enters ops once Close has set closed.
	mu     sync.RWMutex
	closed bool
}

// storeOp is one write operation. apply runs on the commit loop's
// goroutine; it may run more than once (when a group is retried) and must
// check everything before it writes, returning a domain error with nothing
// written. finish runs exactly once, with the final result, on the commit
// loop's goroutine or, for an operation failed with errClosed, in Close.
type storeOp struct {
	apply  func(b storeTx) error
	finish func(err error)
	err    error     // apply's result in the current attempt
	queued time.Time // when submit queued it
}

// openStore opens or creates the store at path (mode 0600) and starts its
// commit loop. It waits at most opts.LockTimeout for another process to
// release the file. Its cost does not depend on the number of queues,
// except once, when it converts a file of an older format version
// (migrateStore).
func openStore(path string, opts storeOptions) (*store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultStoreLockTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = defaultStoreMaxBatch
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = defaultStoreQueueLen
	}
	if opts.MappedLimit == 0 {
		opts.MappedLimit = defaultMappedLimit
	}
	if opts.GatherWait == 0 {
		opts.GatherWait = defaultGatherWait
	}
	if opts.GatherOps <= 0 {
		opts.GatherOps = defaultGatherOps
	}
	if opts.GatherRate <= 0 {
		opts.GatherRate = defaultGatherRate
	}
	if opts.MessageUnit <= 0 {
		opts.MessageUnit = defaultMessageUnit
	}
	if opts.QueueUnit <= 0 {
		opts.QueueUnit = defaultQueueUnit
	}
	if opts.SweepScan <= 0 {
		opts.SweepScan = defaultSweepScan
	}
	if opts.SweepChunk <= 0 {
		opts.SweepChunk = defaultSweepChunk
	}
	boltOpts := &bbolt.Options{
		Timeout: opts.LockTimeout,
		// The map freelist stays fast when constant deletes fragment the
		// file; the freelist is synced, so opening does not scan the file.
		FreelistType: bbolt.FreelistMapType,
	}
	if math.MaxInt == math.MaxInt64 {
		boltOpts.InitialMmapSize = storeMapSize
	}
	db, err := openBolt(path, boltOpts)
	if err != nil {
		return nil, fmt.Errorf("open relay store %s: %w", path, err)
	}
	// The key file is opened after bbolt's lock is held: a relay that
	// holds the store holds its key file too.
	ring, err := openKeyRing(keyPath(path), opts.MessageUnit, false)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open relay store %s: %w", path, err)
	}
	fail := func(err error) (*store, error) {
		db.Close()
		ring.Close()
		return nil, fmt.Errorf("open relay store %s: %w", path, err)
	}
	replaced, err := migrateStore(db, path, opts, ring)
	if err != nil {
		return fail(err)
	}
	if replaced {
		if db, err = openBolt(path, boltOpts); err != nil {
			ring.Close()
			return nil, fmt.Errorf("open relay store %s: %w", path, err)
		}
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if err := initStore(tx); err != nil {
			return err
		}
		return initLinks(tx)
	}); err != nil {
		return fail(err)
	}
	var total storeCounts
	if err := db.Update(func(tx *bbolt.Tx) error { return loadCounts(tx, &total) }); err != nil {
		return fail(err)
	}
	s := &store{
		ring:     ring,
		db:       db,
		maxBatch: opts.MaxBatch,
		gather:   opts.GatherWait,
		gatherN:  min(opts.GatherOps, opts.MaxBatch),
		gatherR:  opts.GatherRate,
		ops:      make(chan *storeOp, opts.QueueLen),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
		trimDone: make(chan struct{}),
		onCommit: opts.OnCommit,

		onFinished: opts.OnFinished,

		mappedLimit: opts.MappedLimit,
		onTrim:      opts.OnTrim,

		scanKeys:  opts.SweepScan,
		scanChunk: opts.SweepChunk,
	}
	s.total.add(total.snapshot())
	if err := db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.freed.Store(meta.Get(metaScrubKey) != nil)
		// The sweep of queues never secured goes on from where the last
		// process stopped, so that a relay restarted more often than a
		// round of sweeps takes still visits every queue in turn; a new
		// file starts at a random ID.
		if v := meta.Get(metaScanKey); len(v) == scanPrefix {
			s.scanNext = bytes.Clone(v)
		} else {
			start := queue.NewID()
			s.scanNext = start[:]
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	go s.loop()
	if canDropMapping && s.mappedLimit > 0 {
		go s.trimLoop()
	} else {
		close(s.trimDone)
	}
	return s, nil
}

// initStore creates the buckets of a new file, or checks the version of an
// existing one.
func initStore(tx *bbolt.Tx) error {
	names := [][]byte{bucketQueues, bucketSenders, bucketMessages, bucketExpiry}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("%w: no version (not a relay store?)", errStoreVersion)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(metaVersionKey, []byte{storeVersion}); err != nil {
			return err
		}
		for _, name := range names {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	}
	switch v := meta.Get(metaVersionKey); {
	case len(v) != 1:
		return fmt.Errorf("%w: malformed version %x", errStoreVersion, v)
	case v[0] != storeVersion:
		return fmt.Errorf("%w: version %d, this relay reads version %d", errStoreVersion, v[0], storeVersion)
	}
	for _, name := range names {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q missing", errCorrupt, name)
		}
	}
	if tx.Bucket(bucketScrub) != nil { // left by a crash during a scrub
		return tx.DeleteBucket(bucketScrub)
	}
	return nil
}

// Close stops the commit loop and trimLoop and closes the file. Operations
// already in a transaction finish normally; operations still queued, and
// all later calls, get errClosed. It waits for both goroutines and is
// idempotent: every call returns the first call's result.
func (s *store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing) // wakes blocked submitters, the loop and trimLoop
		s.mu.Lock()      // waits for submitters still enqueueing
		s.closed = true
		s.mu.Unlock()
		<-s.loopDone
		<-s.trimDone
		// Nothing can enter ops any more: fail what is left.
		for {
			select {
			case op := <-s.ops:
				op.finish(errClosed)
				continue
			default:
			}
			break
		}
		if s.onFinished != nil {
			s.onFinished()
		}
		s.closeErr = s.db.Close()
		if err := s.ring.Close(); s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// submit queues op for the commit loop. It blocks only while the queue is
// full, until ctx is done (returning ctx.Err()) or the store closes
// (errClosed). Once submit returns nil, op.finish will be called exactly
// once, even if ctx is canceled later.
func (s *store) submit(ctx context.Context, op *storeOp) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	op.queued = time.Now()
	select {
	case s.ops <- op:
		return nil
	case <-s.closing:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submitErr submits an operation whose result is an error.
func (s *store) submitErr(ctx context.Context, apply func(b storeTx) error) (<-chan error, error) {
	ch := make(chan error, 1)
	op := &storeOp{apply: apply, finish: func(err error) { ch <- err }}
	if err := s.submit(ctx, op); err != nil {
		return nil, err
	}
	return ch, nil
}

// do submits an operation and waits for its result, or for ctx.
func (s *store) do(ctx context.Context, apply func(b storeTx) error) error {
	ch, err := s.submitErr(ctx, apply)
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is the only writer. See "Writes" in docs/store.md.
func (s *store) loop() {
	defer close(s.loopDone)
	batch := make([]*storeOp, 0, s.maxBatch)
	var (
		timer       = time.NewTimer(time.Hour) // for gathering; stopped between uses
		windowStart = time.Now()
		windowOps   int  // operations taken since windowStart
		gathering   bool // the last full window's rate was at least gatherR
	)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.closing:
			return
		case op := <-s.ops:
			batch = append(batch[:0], op)
		}
		select {
		case <-s.closing: // both were ready: closing wins
			batch[0].finish(errClosed) // Close calls onFinished
			return
		default:
		}
		first := time.Now()
	drain:
		for len(batch) < s.maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		// The rate of the window before this batch decides, so that a lone
		// operation after a pause is not held back by the load before it.
		if d := first.Sub(windowStart); d >= gatherWindow {
			gathering = s.gather > 0 && float64(windowOps)/d.Seconds() >= s.gatherR
			windowStart, windowOps = first, 0
		}
		// GatherWait counts from when the oldest operation was queued, not
		// from when the loop took it: an operation that waited behind the
		// previous commit has already waited, so that no operation waits
		// more than the longer of GatherWait and that commit before its
		// own begins.
		if wait := s.gather - time.Since(batch[0].queued); gathering && len(batch) < s.gatherN && wait > 0 {
			timer.Reset(wait)
		gather:
			for len(batch) < s.gatherN {
				select {
				case op := <-s.ops:
					batch = append(batch, op)
				case <-timer.C:
					break gather
				case <-s.closing: // commit what was taken; the next round returns
					break gather
				}
			}
			timer.Stop()
		}
		windowOps += len(batch)
		s.commit(batch)
		if s.onFinished != nil {
			s.onFinished()
		}
		clear(batch) // drop references to finished operations
	}
}

// commit applies batch in one transaction and reports every result after
// the commit. An operation that fails with anything but a domain error may
// have written part of its changes: the transaction is rolled back, that
// operation gets its error and the others are applied again without it.
// A commit that fails for lack of disk space (ENOSPC) is rolled back and
// its operations are applied again one per transaction, so that only
// those that needed the space fail.
func (s *store) commit(batch []*storeOp) {
	start := time.Now()
	wait := start.Sub(batch[0].queued)
	for len(batch) > 0 {
		failed := -1
		var delta countDelta
		err := s.db.Update(func(tx *bbolt.Tx) error {
			delta = countDelta{}
			b := bucketsOf(tx)
			b.delta = &delta
			b.freed = &s.freed
			b.removals = &s.removals
			b.commit = s.commits.Load() + 1
			for i, op := range batch {
				op.err = op.apply(b)
				if op.err != nil && !isDomainError(op.err) {
					failed = i
					return errRetry
				}
			}
			if delta == (countDelta{}) {
				return nil
			}
			now := s.total.snapshot()
			now.apply(delta)
			return b.meta.Put(metaCountsKey, now.encode())
		})
		if failed >= 0 {
			batch[failed].finish(batch[failed].err)
			batch = slices.Delete(batch, failed, failed+1)
			continue
		}
		if err != nil {
			err = fmt.Errorf("relay store: commit: %w", err)
			if s.onCommit != nil {
				s.onCommit(wait, time.Since(start), len(batch), err)
			}
			if len(batch) > 1 && errors.Is(err, syscall.ENOSPC) {
				// The disk is full: the operations that need no new
				// pages (ACK and DEL reuse the file's free ones) must not
				// fail with those that do, so that recipients can still
				// drain their queues. Each is applied again on its own,
				// in order.
				for _, op := range batch {
					s.commit([]*storeOp{op})
				}
				return
			}
			for _, op := range batch {
				op.finish(err)
			}
			return
		}
		s.total.add(delta)
		s.commits.Add(1)
		if s.onCommit != nil {
			s.onCommit(wait, time.Since(start), len(batch), nil)
		}
		for _, op := range batch {
			op.finish(op.err)
		}
		return
	}
}

// trimLoop calls trimMapping every storeTrimInterval until Close, except
// while the store is busy and dropped less than storeTrimBusyGap ago (see
// trimDue). The store is busy from a check that finds a commit made, or
// more of the file mapped, since the check before, for storeTrimRest. A
// drop costs the faults that map back what is read after it, and a busy
// store read at random keys maps most of its file again within a second;
// a store at rest is trimmed at the next check. trimLoop runs apart from
// the commit loop so that a drop delays no commit (except one that must
// remap the file). See "Memory" in docs/store.md.
func (s *store) trimLoop() {
	defer close(s.trimDone)
	t := time.NewTicker(storeTrimInterval)
	defer t.Stop()
	var (
		lastDrop, lastActive time.Time
		commits              = s.commits.Load()
		resident, _          = fileResident()
	)
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		start := time.Now()
		r, err := fileResident()
		if c := s.commits.Load(); c != commits || err == nil && r > resident {
			commits, lastActive = c, start
		}
		resident = r
		if !trimDue(start, lastDrop, lastActive) {
			continue
		}
		before, dropped, err := s.trimMapping(s.mappedLimit)
		if dropped {
			lastDrop = start
			resident, _ = fileResident()
		}
		if (dropped || err != nil) && s.onTrim != nil {
			s.onTrim(before, time.Since(start), err)
		}
	}
}

// trimDue reports whether trimLoop's check at now may drop, after its
// last drop at lastDrop (zero: none yet), the store last busy at
// lastActive: if the store has been at rest for storeTrimRest, or
// storeTrimBusyGap has passed since the drop (less half a check, so that a
// tick a little early is not skipped).
func trimDue(now, lastDrop, lastActive time.Time) bool {
	return lastDrop.IsZero() || now.Sub(lastActive) >= storeTrimRest ||
		now.Sub(lastDrop) >= storeTrimBusyGap-storeTrimInterval/2
}

// trimMapping drops the store file's pages from the process (see "Memory"
// in docs/store.md) if the process's file-backed resident memory,
// returned, is above limit. It is safe for concurrent use. On a system
// other than Linux it returns errors.ErrUnsupported.
func (s *store) trimMapping(limit int64) (resident int64, dropped bool, err error) {
	resident, err = fileResident()
	if err != nil {
		return 0, false, fmt.Errorf("relay store: file-backed resident memory: %w", err)
	}
	if resident <= limit {
		return resident, false, nil
	}
	// One read transaction per storeTrimChunk. A transaction holds bbolt's
	// mmap lock shared until it ends, so the mapping stays where Info says
	// for the chunk; a commit that must grow the mapping waits for the
	// chunk in progress, and while it waits the lock (a sync.RWMutex) holds
	// new read transactions back too, so a chunk is kept short. tx.Size is
	// the end of the last page in use at the last commit (never beyond the
	// mapping, which bbolt grows before it allocates past its end); pages a
	// commit adds later are dropped by a later call.
	// /proc/self/maps is read again only if a remap moved the mapping.
	var addr, end uintptr
	for off := int64(0); ; off += storeTrimChunk {
		more := false
		err = s.db.View(func(tx *bbolt.Tx) error {
			size := tx.Size()
			if off >= size {
				return nil
			}
			more = size-off > storeTrimChunk
			if data := tx.DB().Info().Data; data != addr {
				e, err := mappingEnd(data)
				if err != nil {
					return err
				}
				addr, end = data, e
			}
			return dropMapping(addr, end, off, min(size-off, storeTrimChunk))
		})
		if err != nil || !more {
			break
		}
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return resident, false, errClosed
	}
	if err != nil {
		return resident, false, fmt.Errorf("relay store: drop mapping: %w", err)
	}
	s.trims.Add(1)
	return resident, true, nil
}

// readBuckets names the buckets a read transaction opens (view): opening
// one costs a lookup and an allocation, and the reads on the path of every
// message need one or two of the six.
type readBuckets uint8

const (
	readQueues readBuckets = 1 << iota
	readSenders
	readMessages // with the expiry index, which holds the message keys
	readLinks
)

// view runs fn in a read transaction in which the buckets named by which
// are open (the others are nil).
func (s *store) view(which readBuckets, fn func(b storeTx) error) error {
	err := s.db.View(func(tx *bbolt.Tx) error {
		var b storeTx
		if which&readQueues != 0 {
			b.queues = tx.Bucket(bucketQueues)
		}
		if which&readSenders != 0 {
			b.senders = tx.Bucket(bucketSenders)
		}
		if which&readMessages != 0 {
			b.messages = tx.Bucket(bucketMessages)
			b.expiry = tx.Bucket(bucketExpiry)
		}
		if which&readLinks != 0 {
			b.links = tx.Bucket(bucketLinks)
		}
		return fn(b)
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

// queueByRecipient returns the queue with recipient ID rid; ok is false
// when there is none.
func (s *store) queueByRecipient(rid queue.ID) (rec queueRecord, ok bool, err error) {
	err = s.view(readQueues, func(b storeTx) error {
		q, found, err := b.getQueue(rid)
		rec, ok = q.queueRecord, found
		return err
	})
	return rec, ok, err
}

// queueBySender returns the queue with sender ID sid; ok is false when there
// is none.
func (s *store) queueBySender(sid queue.ID) (rec queueRecord, ok bool, err error) {
	err = s.view(readSenders|readQueues, func(b storeTx) error {
		rid, found := b.ridBySender(sid)
		if !found {
			return nil
		}
		q, found, err := b.getQueue(rid)
		rec, ok = q.queueRecord, found
		return err
	})
	return rec, ok, err
}

// firstMessage returns the oldest message of queue rid; ok is false when the
// queue holds none (or does not exist). Body is a copy.
func (s *store) firstMessage(rid queue.ID) (msg storedMessage, ok bool, err error) {
	ok, err = s.readFirstMessage(rid, nil, func(m storedMessage) {
		m.Body = bytes.Clone(m.Body)
		if m.Body == nil {
			m.Body = []byte{}
		}
		msg = m
	})
	return msg, ok, err
}

// readFirstMessage calls fn with the oldest message of queue rid, opened
// (atrest.go), and returns false, without calling fn, when the queue has
// none or does not exist. If want is not nil and returns false for the
// message's ID, the body is not opened and fn is not called (ok is
// true). m.Body is scratch space of the store: fn must not modify it or
// keep it after it returns.
func (s *store) readFirstMessage(rid queue.ID, want func(id queue.ID) bool, fn func(m storedMessage)) (ok bool, err error) {
	bp, _ := s.bodies.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, queue.MaxMessageSize)
		bp = &b
	}
	defer s.bodies.Put(bp)
	var (
		m      storedMessage
		opened bool
	)
	ok, err = s.openFirstMessage(rid, want, func(id queue.ID, ts int64, n int) []byte {
		m, opened = storedMessage{ID: id, Timestamp: ts, Body: (*bp)[:n]}, true
		return m.Body
	})
	if err == nil && opened {
		fn(m)
	}
	return ok, err
}

// openFirstMessage opens the body of the oldest message of queue rid
// (atrest.go) into the memory that into returns for it, and returns false,
// without calling into, when the queue has none or does not exist. into is
// given the message's ID, time and body size n, and returns n bytes, which
// openFirstMessage overwrites with the body; once it returns a nil error
// they hold the body. If want is not nil and returns false for the
// message's ID, into is not called (ok is true). want and into run inside
// a read transaction and must not block (bbolt cannot grow its mapping
// while one is open).
func (s *store) openFirstMessage(rid queue.ID, want func(id queue.ID) bool, into func(id queue.ID, ts int64, n int) []byte) (ok bool, err error) {
	for try := 0; ; try++ {
		ok = false
		err = s.view(readMessages, func(b storeTx) error {
			seq, v, found := b.head(rid)
			if !found {
				return nil
			}
			m, g, err := b.openMessage(s.ring, rid, seq, v)
			if err != nil {
				return err
			}
			id, err := m.openID(g)
			if err != nil {
				return err
			}
			ok = true
			if want != nil && !want(id) {
				return nil
			}
			n := m.bodySize()
			dst := into(id, m.Timestamp, n)
			if len(dst) != n {
				panic("relay: openFirstMessage: into returned the wrong size")
			}
			body, err := m.openBody(g, dst[:0:n])
			if err != nil {
				return err
			}
			if n > 0 && &body[0] != &dst[0] {
				panic("relay: openFirstMessage: body not opened in place")
			}
			return nil
		})
		// A rotation may have erased the key that wrapped the message's
		// key after this transaction began: the next one sees the key
		// wrapped again.
		if !errors.Is(err, errKeyGone) || try > 0 {
			return ok, err
		}
	}
}

// openMessage decodes the message value v of queue rid's message seq and
// returns the AEAD of its message key, unwrapped from its expiry entry.
func (b storeTx) openMessage(ring *keyRing, rid queue.ID, seq uint64, v []byte) (sealedMessage, cipher.AEAD, error) {
	m, err := decodeMessage(v)
	if err != nil {
		return m, nil, err
	}
	ek := expiryKey(m.Timestamp, rid, seq)
	mk, err := unwrapKey(ring, b.expiry.Get(ek), ek)
	if err != nil {
		return m, nil, err
	}
	return m, messageAEAD(&mk), nil
}

// countQueues returns the number of queues. It walks the pages of the
// queues bucket (not the values), so call it for tests and occasional
// metrics, not per command.
func (s *store) countQueues() (n int, err error) {
	err = s.view(readQueues, func(b storeTx) error {
		n = b.queues.Stats().KeyN
		return nil
	})
	return n, err
}

// createQueue stores a new queue. The queue starts unsecured unless
// rec.Secured. errExists if either ID is in use.
func (s *store) createQueue(ctx context.Context, rec queueRecord) (<-chan error, error) {
	return s.submitErr(ctx, func(b storeTx) error {
		if rec.RecipientID == rec.SenderID {
			return errExists
		}
		for _, id := range [2]queue.ID{rec.RecipientID, rec.SenderID} {
			if b.queues.Get(id[:]) != nil || b.senders.Get(id[:]) != nil {
				return errExists
			}
		}
		q := queueState{queueRecord: rec}
		if !q.Secured {
			q.SenderKey = queue.Key{}
		}
		if err := b.putQueue(&q); err != nil {
			return err
		}
		if err := b.senders.Put(rec.SenderID[:], bytes.Clone(rec.RecipientID[:])); err != nil {
			return err
		}
		b.count(1, 0, 0)
		return nil
	})
}

// secureQueue secures queue rid with the sender's key (KEY). Securing again
// with the same key succeeds and changes nothing; with another key it fails
// with errKeyMismatch; a suspended queue fails with errSuspended.
func (s *store) secureQueue(ctx context.Context, rid queue.ID, senderKey queue.Key) (<-chan error, error) {
	return s.submitErr(ctx, func(b storeTx) error {
		q, ok, err := b.getQueue(rid)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		if q.Suspended {
			return errSuspended
		}
		return b.secure(&q, senderKey)
	})
}

// secureBySender is secureQueue for the queue with sender ID sid (SKEY); it
// fails with errSuspended on a suspended queue.
func (s *store) secureBySender(ctx context.Context, sid queue.ID, senderKey queue.Key) (<-chan error, error) {
	return s.submitErr(ctx, func(b storeTx) error {
		rid, ok := b.ridBySender(sid)
		if !ok {
			return errNotFound
		}
		q, ok, err := b.getQueue(rid)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		if q.Suspended {
			return errSuspended
		}
		return b.secure(&q, senderKey)
	})
}

// suspendQueue marks queue rid suspended (OFF): it accepts no more messages;
// its messages stay readable. Suspending again succeeds.
func (s *store) suspendQueue(ctx context.Context, rid queue.ID) (<-chan error, error) {
	return s.submitErr(ctx, func(b storeTx) error {
		q, ok, err := b.getQueue(rid)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		if q.Suspended {
			return nil
		}
		q.Suspended = true
		return b.putQueue(&q)
	})
}

// deleteQueue deletes queue rid, its sender index entry, all its messages
// and their index entries (DEL).
func (s *store) deleteQueue(ctx context.Context, rid queue.ID) (<-chan error, error) {
	ch := make(chan error, 1)
	if err := s.deleteQueueFunc(ctx, rid, func(err error) { ch <- err }); err != nil {
		return nil, err
	}
	return ch, nil
}

// deleteQueueFunc is deleteQueue with the result passed to done instead
// of a channel, as for addMessageFunc.
func (s *store) deleteQueueFunc(ctx context.Context, rid queue.ID, done func(error)) error {
	return s.submit(ctx, &storeOp{finish: done, apply: func(b storeTx) error {
		q, ok, err := b.getQueue(rid)
		if err != nil {
			return err
		}
		if !ok {
			return errNotFound
		}
		_, err = b.deleteQueue(&q)
		return err
	}})
}

// sendResult is the outcome of addMessage.
type sendResult struct {
	RecipientID queue.ID // the queue's recipient ID, set whenever the sender ID was found
	Err         error
	First       bool // the queue had no other message (so the relay should push it now)
	// Commit is the number of the group transaction that stored the
	// message (store.commits once it was committed), when Err is nil.
	Commit uint64
}

// addMessage appends msg to the queue with sender ID sid (SEND), unless the
// queue holds quota messages or more (errQuota; a quota below 1 refuses
// everything), is suspended (errSuspended) or was never secured
// (errNotSecured). A zero msg.Timestamp is set to the current hour.
// addMessage copies msg.Body before it returns.
func (s *store) addMessage(ctx context.Context, sid queue.ID, msg storedMessage, quota int) (<-chan sendResult, error) {
	ch := make(chan sendResult, 1)
	if err := s.addMessageFunc(ctx, sid, msg, quota, func(r sendResult) { ch <- r }); err != nil {
		return nil, err
	}
	return ch, nil
}

// addMessageFunc is addMessage with the result passed to done instead of a
// channel: done runs exactly once, on the commit loop's goroutine (or in
// Close), once submission returned nil, and must not block.
func (s *store) addMessageFunc(ctx context.Context, sid queue.ID, msg storedMessage, quota int, done func(sendResult)) error {
	if msg.Timestamp == 0 {
		msg.Timestamp = floorTime(time.Now().Unix(), defaultMessageUnit)
	}
	// bbolt keeps a reference to a value until the commit: build it now,
	// which also frees the caller's buffer. A value of more than half the
	// largest size (clients pad their messages to it) goes in a pooled
	// buffer that finish returns (it runs once, when bbolt no longer holds
	// the value); a smaller one in a buffer of its own size, so that the
	// operations waiting for a commit do not each hold 16 KiB.
	// The message is sealed under a key of its own here, outside the
	// commit loop, which only wraps the key (atrest.go).
	var (
		vp  *[]byte // the pooled buffer, if val is in one
		val []byte
		mk  = newMessageKey()
	)
	if n := messageOverhead + len(msg.Body); n > messageValueCap/2 {
		vp, _ = s.values.Get().(*[]byte)
		if vp == nil {
			b := make([]byte, 0, messageValueCap)
			vp = &b
		}
		val = sealMessage((*vp)[:0], &mk, msg)
	} else {
		val = sealMessage(make([]byte, 0, n), &mk, msg)
	}
	ts := msg.Timestamp
	var (
		rid          queue.ID
		found, first bool
		commit       uint64
	)
	op := &storeOp{
		apply: func(b storeTx) error {
			found, first = false, false
			r, ok := b.ridBySender(sid)
			if !ok {
				return errNotFound
			}
			q, ok, err := b.getQueue(r)
			if err != nil {
				return err
			}
			if !ok {
				return errNotFound
			}
			rid, found = r, true
			switch {
			case q.Suspended:
				return errSuspended
			case !q.Secured:
				return errNotSecured
			}
			seq, n := b.next(rid)
			if quota < 1 || n >= uint64(quota) {
				return errQuota
			}
			first = n == 0
			commit = b.commit
			key, err := s.ring.currentKey(time.Now())
			if err != nil {
				return err
			}
			if err := b.messages.Put(messageKey(rid, seq), val); err != nil {
				return err
			}
			b.count(0, 1, int64(len(val)))
			ek := expiryKey(ts, rid, seq)
			return b.expiry.Put(ek, wrapKey(key, &mk, ek))
		},
		finish: func(err error) {
			if vp != nil {
				s.values.Put(vp)
			}
			r := sendResult{Err: err}
			if found {
				r.RecipientID = rid
			}
			r.First = err == nil && first
			r.Commit = commit
			done(r)
		},
	}
	return s.submit(ctx, op)
}

// ackMessage deletes the head message of queue rid if its ID is msgID (ACK);
// otherwise, or if there is no such queue, it fails with errNotFound.
func (s *store) ackMessage(ctx context.Context, rid queue.ID, msgID queue.ID) (<-chan error, error) {
	ch := make(chan error, 1)
	if err := s.ackMessageFunc(ctx, rid, msgID, func(err error) { ch <- err }); err != nil {
		return nil, err
	}
	return ch, nil
}

// ackMessageFunc is ackMessage with the result passed to done instead of
// a channel, as for addMessageFunc.
func (s *store) ackMessageFunc(ctx context.Context, rid queue.ID, msgID queue.ID, done func(error)) error {
	return s.submit(ctx, &storeOp{finish: done, apply: func(b storeTx) error {
		if b.queues.Get(rid[:]) == nil {
			return errNotFound
		}
		seq, v, ok := b.head(rid)
		if !ok {
			return errNotFound
		}
		m, g, err := b.openMessage(s.ring, rid, seq, v)
		if err != nil {
			return err
		}
		id, err := m.openID(g)
		if err != nil {
			return err
		}
		if id != msgID {
			return errNotFound
		}
		n := int64(len(v))
		b.noteRemoval(rid)
		if err := b.messages.Delete(messageKey(rid, seq)); err != nil {
			return err
		}
		b.count(0, -1, -n)
		return b.expiry.Delete(expiryKey(m.Timestamp, rid, seq))
	}})
}

// sweep removes the messages stored before msgBefore and the queues never
// secured that were created before queueBefore (unix seconds). A bound of
// 0 or less removes nothing of its kind; batch < 1 means 1000. It returns
// the numbers removed so far, also on error; once ctx is done it starts
// no new transaction.
//
// The messages are found in the expiry index, in transactions of at most
// batch deletions each; the queues by reading part of the queues bucket
// (sweepQueues). Each write transaction is one operation of the commit
// loop, so the sweep shares commits with other writes and never holds the
// write lock for long.
//
// expired, if not nil, is called after each committed transaction with the
// recipient ID of every queue that lost an expired message in it, so that
// its subscriber can be given the next message, and with deleted set, of
// every queue never secured it deleted, so that its subscriber is told
// (at most batch calls).
func (s *store) sweep(ctx context.Context, msgBefore, queueBefore int64, batch int, expired func(rid queue.ID, deleted bool)) (msgs, queues int, err error) {
	if batch < 1 {
		batch = defaultSweepBatch
	}
	for msgBefore > 0 {
		if err := ctx.Err(); err != nil {
			return msgs, queues, err
		}
		var (
			m    int
			more bool
			rids []queue.ID
		)
		err := s.do(ctx, func(b storeTx) error {
			var err error
			rids = rids[:0] // apply may run again
			m, more, err = b.sweepStep(msgBefore, batch, &rids)
			return err
		})
		if err != nil {
			return msgs, queues, err
		}
		msgs += m
		if expired != nil {
			for _, rid := range rids {
				expired(rid, false)
			}
		}
		if !more {
			break
		}
	}
	if queueBefore <= 0 {
		return msgs, queues, nil
	}
	m, q, err := s.sweepQueues(ctx, queueBefore, batch, expired)
	return msgs + m, queues + q, err
}

// sweepQueues deletes the queues never secured that were created before
// queueBefore among the next storeOptions.SweepScan queues of the queues
// bucket, in key order (random IDs), from where the call before stopped
// (at first where the process before stopped, or a random ID in a new
// file), going round to the first queue after the last:
// so calls that each visit part of the bucket visit every queue in turn,
// and one that could visit more stops when it has been round once. It
// reads them in read transactions of SweepChunk queues, which the commit
// loop does not wait for (but for a commit that grows the mapping),
// resuming after the last key read; the
// candidates of a chunk are deleted in write transactions of at most
// batch, each queue checked again there (a queue secured since it was
// read is kept). So what a call costs is bounded: SweepScan records read
// and the deletions. It returns the numbers of messages (none, as a queue
// never secured holds none) and of queues deleted. A damaged record (a
// key or value of the wrong form) is skipped: the call goes on and
// returns, with what it deleted, an error counting the records skipped,
// which names no queue; on any error the next call still starts past the
// records read. The position is also written, in one transaction at the
// end, to the meta bucket, cut to its first scanPrefix bytes, where the
// next process starts. Calls do not overlap.
// See "The sweep" in docs/store.md.
func (s *store) sweepQueues(ctx context.Context, queueBefore int64, batch int, expired func(rid queue.ID, deleted bool)) (msgs, queues int, err error) {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	start := s.scanNext
	pos := start
	// Whatever happens, the next call starts where this one stopped: past
	// every record read, also a damaged one; so does the next process, to
	// within the queues whose IDs share the position's first scanPrefix
	// bytes (read again).
	defer func() {
		s.scanNext = pos
		if ctx.Err() != nil {
			return
		}
		var prefix [scanPrefix]byte
		copy(prefix[:], pos)
		serr := s.do(ctx, func(b storeTx) error {
			return b.meta.Put(metaScanKey, prefix[:])
		})
		if err == nil {
			err = serr
		}
	}()
	wrapped := false
	var (
		cands  []queue.ID
		bad    int   // damaged records read and skipped
		badErr error // the first one's error
	)
	skip := func(err error) {
		if bad++; badErr == nil {
			badErr = err
		}
	}
	for budget := s.scanKeys; budget > 0; {
		if err := ctx.Err(); err != nil {
			return msgs, queues, err
		}
		var (
			n    int
			last []byte
			end  bool // the end of the bucket, or the start of the round
		)
		cands = cands[:0]
		err := s.view(readQueues, func(b storeTx) error {
			c := b.queues.Cursor()
			k, v := c.Seek(pos)
			for ; n < min(s.scanChunk, budget); k, v = c.Next() {
				if k == nil || wrapped && bytes.Compare(k, start) >= 0 {
					end = true
					break
				}
				n++
				last = k
				var rid queue.ID
				if len(k) != queue.IDSize {
					skip(fmt.Errorf("%w: queue key", errCorrupt))
					continue
				}
				copy(rid[:], k)
				q, err := decodeQueue(rid, v)
				if err != nil {
					skip(err)
					continue
				}
				if !q.Secured && q.Created < queueBefore {
					cands = append(cands, rid)
				}
			}
			if last != nil {
				// The key right after the last one read.
				pos = append(bytes.Clone(last), 0)
			}
			return nil
		})
		if err != nil {
			return msgs, queues, err
		}
		budget -= n
		for len(cands) > 0 {
			part := cands[:min(batch, len(cands))]
			cands = cands[len(part):]
			m, gone, err := s.deleteExpiredQueues(ctx, part, queueBefore)
			if err != nil {
				return msgs, queues, err
			}
			msgs += m
			queues += len(gone)
			if expired != nil {
				for _, rid := range gone {
					expired(rid, true)
				}
			}
		}
		if end {
			if wrapped || len(start) == 0 {
				pos = start // round once
				break
			}
			wrapped, pos = true, nil
		}
	}
	if bad > 0 {
		return msgs, queues, fmt.Errorf("%d queue records skipped: %w", bad, badErr)
	}
	return msgs, queues, nil
}

// deleteExpiredQueues deletes, in one transaction of the commit loop,
// those of the queues rids that are still there, never secured, and
// created before queueBefore. It returns the messages deleted with them
// and the queues deleted.
func (s *store) deleteExpiredQueues(ctx context.Context, rids []queue.ID, queueBefore int64) (msgs int, gone []queue.ID, err error) {
	err = s.do(ctx, func(b storeTx) error {
		msgs, gone = 0, gone[:0] // apply may run again
		for _, rid := range rids {
			q, ok, err := b.getQueue(rid)
			if err != nil {
				return err
			}
			if !ok || q.Secured || q.Created >= queueBefore {
				continue
			}
			n, err := b.deleteQueue(&q)
			if err != nil {
				return err
			}
			msgs += n
			gone = append(gone, rid)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return msgs, gone, nil
}

// rotate erases the ring keys that can be erased (see atrest.go): it
// wraps again, under the current ring key, every message key wrapped
// under a key of a period before now's, in transactions of at most batch
// (batch < 1 means 1000) through the commit loop, and then erases from
// the key file, synced, those keys and every other key (but the current
// one) that wraps no message key. It returns the numbers of message keys
// wrapped again and of ring keys erased. Once ctx is done it starts no
// new transaction and erases nothing. A message key whose ring key is
// gone is left as it is (CheckStore reports it).
func (s *store) rotate(ctx context.Context, now time.Time, batch int) (rewrapped, erased int, err error) {
	if batch < 1 {
		batch = defaultSweepBatch
	}
	// The candidates: every key there is now but the current one, if it
	// is of now's period. A key of an earlier period is never current
	// again (epochOf never goes back), so once its message keys are
	// wrapped again nothing uses it; a key of now's period that is not
	// current (adopted from a backup, or made before a crash) wraps no new
	// message key, so if the walk finds none wrapped under it, none is.
	old := make(map[uint64]bool) // id -> of an earlier period
	s.ring.mu.Lock()
	epoch := s.ring.epochOf(now)
	for id, key := range s.ring.keys {
		if key != s.ring.current || key.epoch < epoch {
			old[id] = key.epoch < epoch
		}
	}
	s.ring.mu.Unlock()
	if len(old) == 0 {
		return 0, 0, nil
	}
	used := make(map[uint64]bool)
	var after []byte // the last expiry entry visited
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return rewrapped, 0, err
		}
		// The walk reads; only entries to wrap again cost a write.
		var found [][]byte
		err := s.view(readMessages, func(b storeTx) error {
			found = found[:0]
			c := b.expiry.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var last []byte
			for scanned := 0; k != nil && scanned < 8*batch && len(found) < batch; k, v = c.Next() {
				scanned++
				last = k
				id, ok := wrapKeyID(v)
				if !ok {
					return fmt.Errorf("%w: expiry value", errCorrupt)
				}
				if old[id] {
					found = append(found, bytes.Clone(k))
				} else {
					used[id] = true
				}
			}
			done = k == nil
			if last != nil {
				after = bytes.Clone(last)
			}
			return nil
		})
		if err != nil {
			return rewrapped, 0, err
		}
		if len(found) == 0 {
			continue
		}
		var n int
		err = s.do(ctx, func(b storeTx) error {
			n = 0 // apply may run again
			for _, k := range found {
				v := b.expiry.Get(k)
				if id, ok := wrapKeyID(v); !ok || !old[id] {
					continue // gone, or wrapped again meanwhile
				}
				mk, err := unwrapKey(s.ring, v, k)
				if errors.Is(err, errKeyGone) {
					continue
				}
				if err != nil {
					return err
				}
				key, err := s.ring.currentKey(now)
				if err != nil {
					return err
				}
				if err := b.expiry.Put(k, wrapKey(key, &mk, k)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return rewrapped, 0, err
		}
		rewrapped += n
	}
	erase := make(map[uint64]bool)
	for id, earlier := range old {
		if earlier || !used[id] {
			erase[id] = true
		}
	}
	// A backup unwraps message keys of its read transaction, which may
	// be older than the walk: it holds rotMu for reading meanwhile.
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	erased, err = s.ring.erase(erase)
	return rewrapped, erased, err
}

// scrubChunk is the most free pages one transaction of scrub
// overwrites: 4 MiB of 4 KiB pages.
const scrubChunk = 1024

// bucketScrub is the bucket of filler that scrub writes and deletes; a
// file that holds it (a crash during a scrub) loses it at open.
var bucketScrub = []byte("scrub")

// scrub overwrites the file's free pages with zeros, if a queue or link
// data was deleted since the last scrub (or the store opened): bbolt never
// overwrites a page it frees, so a deleted queue's record and index
// entries (its IDs and keys) stay in free pages until bbolt reuses them.
// In transactions of the commit loop, it fills a bucket with values of
// zeros, two to a page, so that bbolt allocates them one page at a time,
// which takes every free page before the file grows, until a transaction
// leaves no free page (two at least, so that pages freed before the first
// and then held back for read transactions are released and taken too),
// and then deletes the bucket: its pages, free again, hold zeros. So every
// page freed before the scrub began is overwritten when it ends, except
// pages that a backup that was copying meanwhile still held (the next
// scrub takes them). It returns the pages written. A busy relay frees
// pages while the scrub runs; it stops after as many rounds as the free
// pages at its start need, and eight more.
func (s *store) scrub(ctx context.Context) (pages int, err error) {
	if !s.freed.Swap(false) {
		return 0, nil
	}
	defer func() {
		if err != nil {
			s.freed.Store(true)
		}
	}()
	var pageSize int
	if err := s.db.View(func(tx *bbolt.Tx) error {
		pageSize = tx.DB().Info().PageSize
		return nil
	}); err != nil {
		return 0, err
	}
	// Two values and their headers (16 bytes each, and an 8-byte key) fit
	// a page with its 16-byte header; three do not.
	filler := make([]byte, (pageSize-16)/2-16-8-8)
	start := s.db.Stats()
	rounds := (start.FreePageN+start.PendingPageN)/scrubChunk + 8
	var key uint64
	for round := 0; ; round++ {
		st := s.db.Stats()
		if round >= 2 && st.FreePageN == 0 || round >= rounds {
			break
		}
		if s.backups.Load() > 0 {
			s.freed.Store(true)
		}
		n := min(scrubChunk, st.FreePageN+st.PendingPageN+1)
		first := key
		err := s.do(ctx, func(b storeTx) error {
			bk, err := b.tx.CreateBucketIfNotExists(bucketScrub)
			if err != nil {
				return err
			}
			bk.FillPercent = 1
			for i := range uint64(2 * n) {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, first+i), filler); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.freed.Store(true)
			s.dropScrub(ctx)
			return pages, err
		}
		key += uint64(2 * n)
		pages += n
	}
	if s.backups.Load() > 0 {
		s.freed.Store(true)
	}
	return pages, s.dropScrub(ctx)
}

// dropScrub deletes scrub's bucket, if there is one, and the "scrub" key
// of the meta bucket unless a deletion since the scrub began set it again.
func (s *store) dropScrub(ctx context.Context) error {
	return s.do(ctx, func(b storeTx) error {
		if !s.freed.Load() {
			if err := b.meta.Delete(metaScrubKey); err != nil {
				return err
			}
		}
		if b.tx.Bucket(bucketScrub) == nil {
			return nil
		}
		return b.tx.DeleteBucket(bucketScrub)
	})
}

// storeTx holds the buckets of one transaction.
type storeTx struct {
	meta, queues, senders, messages, expiry *bbolt.Bucket
	// links and queueLinks hold link data (links.go); nil in a read
	// transaction on a file written before link data existed.
	links, queueLinks *bbolt.Bucket
	// delta, in the commit loop's transactions, gathers the changes of
	// the counts; nil in read transactions.
	delta *countDelta
	// tx is the transaction; freed, in the commit loop's transactions,
	// is set when a queue or link data is deleted (scrub).
	tx    *bbolt.Tx
	freed *atomic.Bool
	// removals, in the commit loop's transactions, is the store's
	// removalTable and commit the transaction's number (store.commits
	// once committed); nil and 0 otherwise.
	removals *removalTable
	commit   uint64
}

// noteRemoval records in the store's removalTable that the transaction
// removes a message of queue rid, or the queue. It does so before the
// transaction commits, so before anyone can see the removal.
func (b storeTx) noteRemoval(rid queue.ID) {
	if b.removals != nil {
		b.removals.note(rid, b.commit)
	}
}

// removalSlots is the number of slots of a removalTable (a power of 2).
const removalSlots = 4096

// removalTable records, for each queue, a store commit number at or after
// the last commit that removed a message of the queue (ACK, expiry) or
// the queue itself (DEL, sweep): queues share its slots by their
// recipient ID, so a number may be that of another queue's removal. A
// message stored in commit c that was then its queue's only one is still
// there, and its first message, while removedSince(rid, c) is false. A
// prepared MSG event is delivered only then (session.go). The commit
// loop writes a slot before the transaction commits (noteRemoval); a
// number recorded for a transaction that then fails only makes events
// refused. Bounded: removalSlots numbers, whatever the number of queues.
type removalTable [removalSlots]atomic.Uint64

func removalSlot(rid queue.ID) int {
	return int(binary.LittleEndian.Uint64(rid[:8]) & (removalSlots - 1))
}

// note records a removal on queue rid in commit. Only the commit loop
// calls it, so a slot is never written by two goroutines at once.
func (t *removalTable) note(rid queue.ID, commit uint64) {
	if slot := &t[removalSlot(rid)]; slot.Load() < commit {
		slot.Store(commit)
	}
}

// removedSince reports whether a message of queue rid, or the queue, may
// have been removed in commit or after.
func (t *removalTable) removedSince(rid queue.ID, commit uint64) bool {
	return t[removalSlot(rid)].Load() >= commit
}

// noteFreed records that the transaction deletes what scrub overwrites,
// in memory and in the file (the "scrub" key of the meta bucket), so that
// a restart does not forget it.
func (b storeTx) noteFreed() error {
	if b.freed == nil {
		return nil
	}
	b.freed.Store(true)
	return b.meta.Put(metaScrubKey, []byte{1})
}

// countDelta is a change of the store's counts. links is kept in memory
// only (not in the "counts" value): it is counted at open.
type countDelta struct{ queues, messages, bytes, links int64 }

func (d *countDelta) apply(o countDelta) {
	d.queues += o.queues
	d.messages += o.messages
	d.bytes += o.bytes
	d.links += o.links
}

// encode returns the 24-byte "counts" value.
func (d countDelta) encode() []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, uint64(d.queues))
	b = binary.BigEndian.AppendUint64(b, uint64(d.messages))
	return binary.BigEndian.AppendUint64(b, uint64(d.bytes))
}

// storeCounts are the store's counts as of the last commit, readable at
// any time without a transaction.
type storeCounts struct{ queues, messages, bytes, links atomic.Int64 }

func (c *storeCounts) add(d countDelta) {
	c.queues.Add(d.queues)
	c.messages.Add(d.messages)
	c.bytes.Add(d.bytes)
	c.links.Add(d.links)
}

func (c *storeCounts) snapshot() countDelta {
	return countDelta{c.queues.Load(), c.messages.Load(), c.bytes.Load(), c.links.Load()}
}

// queueCost is what one queue counts in storedBytes: about what it takes
// in the file (its 130-byte record, its sender index entry, and B-tree
// overhead).
const queueCost = 256

// storedBytes returns what the relay's stored-bytes cap bounds: the bytes
// of the message values held (bodies plus 64 bytes each), queueCost per
// queue and linkCost per link.
func (s *store) storedBytes() int64 {
	c := s.total.snapshot()
	return c.bytes + c.queues*queueCost + c.links*linkCost
}

// count records a change of the counts (nothing in a read transaction).
func (b storeTx) count(queues, messages, bytes int64) {
	if b.delta != nil {
		b.delta.apply(countDelta{queues: queues, messages: messages, bytes: bytes})
	}
}

// countLinks records a change of the number of links.
func (b storeTx) countLinks(n int64) {
	if b.delta != nil {
		b.delta.links += n
	}
}

// loadCounts reads the "counts" value into c, or counts the file once and
// writes it if there is none.
func loadCounts(tx *bbolt.Tx, c *storeCounts) error {
	b := bucketsOf(tx)
	c.add(countDelta{links: int64(b.links.Stats().KeyN)})
	if v := b.meta.Get(metaCountsKey); v != nil {
		if len(v) != 24 {
			return fmt.Errorf("%w: counts", errCorrupt)
		}
		c.add(countDelta{
			queues:   int64(binary.BigEndian.Uint64(v)),
			messages: int64(binary.BigEndian.Uint64(v[8:])),
			bytes:    int64(binary.BigEndian.Uint64(v[16:])),
		})
		return nil
	}
	var d countDelta
	d.queues = int64(b.queues.Stats().KeyN)
	if err := b.messages.ForEach(func(_, v []byte) error {
		d.messages++
		d.bytes += int64(len(v))
		return nil
	}); err != nil {
		return err
	}
	c.add(d)
	return b.meta.Put(metaCountsKey, d.encode())
}

func bucketsOf(tx *bbolt.Tx) storeTx {
	return storeTx{
		meta:     tx.Bucket(bucketMeta),
		queues:   tx.Bucket(bucketQueues),
		senders:  tx.Bucket(bucketSenders),
		messages: tx.Bucket(bucketMessages),
		expiry:   tx.Bucket(bucketExpiry),

		links:      tx.Bucket(bucketLinks),
		queueLinks: tx.Bucket(bucketQueueLinks),
		tx:         tx,
	}
}

// queueState is a queue record as the store handles it.
type queueState struct {
	queueRecord
}

// Queue record layout; see "Layout" in the file comment.
const (
	queueRecordVersion = 2
	queueRecordSize    = 1 + 1 + queue.IDSize + 3*queue.KeySize + 8
	flagSecured        = 0x01
	flagSuspended      = 0x02
)

// encode returns the stored form of q, in a new slice.
func (q *queueState) encode() []byte {
	b := make([]byte, 0, queueRecordSize)
	var flags byte
	if q.Secured {
		flags |= flagSecured
	}
	if q.Suspended {
		flags |= flagSuspended
	}
	b = append(b, queueRecordVersion, flags)
	b = append(b, q.SenderID[:]...)
	b = append(b, q.RecipientKey[:]...)
	b = append(b, q.SenderKey[:]...)
	b = append(b, q.MessageKey[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(q.Created))
}

// decodeQueue parses a stored record; the result does not alias v.
func decodeQueue(rid queue.ID, v []byte) (queueState, error) {
	var q queueState
	if len(v) != queueRecordSize || v[0] != queueRecordVersion || v[1]&^(flagSecured|flagSuspended) != 0 {
		return q, fmt.Errorf("%w: queue record", errCorrupt)
	}
	q.RecipientID = rid
	q.Secured = v[1]&flagSecured != 0
	q.Suspended = v[1]&flagSuspended != 0
	p := v[2:]
	p = p[copy(q.SenderID[:], p):]
	p = p[copy(q.RecipientKey[:], p):]
	p = p[copy(q.SenderKey[:], p):]
	p = p[copy(q.MessageKey[:], p):]
	q.Created = int64(binary.BigEndian.Uint64(p))
	return q, nil
}

func (b storeTx) getQueue(rid queue.ID) (queueState, bool, error) {
	v := b.queues.Get(rid[:])
	if v == nil {
		return queueState{}, false, nil
	}
	q, err := decodeQueue(rid, v)
	return q, err == nil, err
}

func (b storeTx) putQueue(q *queueState) error {
	return b.queues.Put(q.RecipientID[:], q.encode())
}

func (b storeTx) ridBySender(sid queue.ID) (rid queue.ID, ok bool) {
	v := b.senders.Get(sid[:])
	if len(v) != queue.IDSize {
		return rid, false
	}
	copy(rid[:], v)
	return rid, true
}

// secure sets q's sender key unless it is already secured.
func (b storeTx) secure(q *queueState, senderKey queue.Key) error {
	if q.Secured {
		if subtle.ConstantTimeCompare(q.SenderKey[:], senderKey[:]) != 1 {
			return errKeyMismatch
		}
		return nil
	}
	q.Secured = true
	q.SenderKey = senderKey
	return b.putQueue(q)
}

// deleteQueue removes q with its messages and index entries and returns the
// number of messages removed.
func (b storeTx) deleteQueue(q *queueState) (msgs int, err error) {
	b.noteRemoval(q.RecipientID)
	c := b.messages.Cursor()
	for {
		// Seek again after each delete rather than move on from a deleted
		// entry, which a bbolt cursor may skip past.
		k, v := c.Seek(q.RecipientID[:])
		if !bytes.HasPrefix(k, q.RecipientID[:]) {
			break
		}
		m, err := decodeMessage(v)
		if err != nil || len(k) != messageKeySize {
			return msgs, fmt.Errorf("%w: message entry", errCorrupt)
		}
		seq := binary.BigEndian.Uint64(k[queue.IDSize:])
		if err := b.expiry.Delete(expiryKey(m.Timestamp, q.RecipientID, seq)); err != nil {
			return msgs, err
		}
		n := int64(len(v))
		if err := b.messages.Delete(messageKey(q.RecipientID, seq)); err != nil {
			return msgs, err
		}
		b.count(0, -1, -n)
		msgs++
	}
	if err := b.noteFreed(); err != nil {
		return msgs, err
	}
	if err := b.senders.Delete(q.SenderID[:]); err != nil {
		return msgs, err
	}
	if err := b.deleteLinkOf(q.RecipientID); err != nil {
		return msgs, err
	}
	b.count(-1, 0, 0)
	return msgs, b.queues.Delete(q.RecipientID[:])
}

// head returns the oldest message entry of queue rid; v aliases the
// transaction's pages.
func (b storeTx) head(rid queue.ID) (seq uint64, v []byte, ok bool) {
	k, v := b.messages.Cursor().Seek(rid[:])
	if len(k) != messageKeySize || !bytes.HasPrefix(k, rid[:]) {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(k[queue.IDSize:]), v, true
}

// next returns the sequence number of a new message of queue rid: the
// one after the last message it holds, or 0 when it holds none; and the
// number of messages it holds, counted as the span from its first
// message to its last (messages leave a queue from its head: ACK, and
// expiry in the order of storing; DEL removes them all).
//
// The last message is the key before the first key after the queue's.
// bbolt's Cursor.Prev, unlike Seek, Next, First and Last, does not skip a
// leaf that deletes earlier in the same write transaction emptied (bbolt
// removes empty leaves only when it commits): it returns nil there, as at
// the start of the bucket. In a group commit, ACKs of other queues'
// messages empty leaves, so a nil from Prev does not mean that the queue
// holds no message: when Prev finds none of the queue's keys, the queue's
// messages are walked forward from its head, which Seek and Next find
// whatever is empty (TestStoreSendAfterAcksEmptyPages). Taking that nil
// for an empty queue numbered the new message 0, ahead of the queue's
// messages.
func (b storeTx) next(rid queue.ID) (seq, held uint64) {
	first, _, ok := b.head(rid)
	if !ok {
		return 0, 0
	}
	last := first
	c := b.messages.Cursor()
	end := messageKey(rid, math.MaxUint64)
	k, _ := c.Seek(end)
	if k == nil || !bytes.Equal(k, end) {
		k, _ = c.Prev()
	}
	if len(k) == messageKeySize && bytes.HasPrefix(k, rid[:]) {
		last = binary.BigEndian.Uint64(k[queue.IDSize:])
	} else {
		// A leaf emptied in this transaction (above).
		for k, _ = c.Seek(rid[:]); len(k) == messageKeySize && bytes.HasPrefix(k, rid[:]); k, _ = c.Next() {
			last = binary.BigEndian.Uint64(k[queue.IDSize:])
		}
	}
	return last + 1, last - first + 1
}

// sweepStep removes up to budget expired messages. It adds to rids the
// recipient IDs of the queues that lost a message. more reports that the
// budget ran out, so there may be more to remove.
func (b storeTx) sweepStep(msgBefore int64, budget int, rids *[]queue.ID) (msgs int, more bool, err error) {
	c := b.expiry.Cursor()
	for budget > 0 {
		k, _ := c.First()
		if k == nil || !before(k, msgBefore) {
			break
		}
		k = bytes.Clone(k) // it outlives writes to the bucket
		if len(k) != expiryKeySize {
			return msgs, false, fmt.Errorf("%w: expiry entry", errCorrupt)
		}
		var rid queue.ID
		copy(rid[:], k[8:])
		seq := binary.BigEndian.Uint64(k[8+queue.IDSize:])
		mk := messageKey(rid, seq)
		if v := b.messages.Get(mk); v != nil {
			n := int64(len(v))
			b.noteRemoval(rid)
			if err := b.messages.Delete(mk); err != nil {
				return msgs, false, err
			}
			b.count(0, -1, -n)
			if n := len(*rids); n == 0 || (*rids)[n-1] != rid {
				*rids = append(*rids, rid)
			}
			msgs++
		}
		if err := b.expiry.Delete(k); err != nil {
			return msgs, false, err
		}
		budget--
	}
	return msgs, budget == 0, nil
}

// before reports whether the timestamp that starts key k is before t.
func before(k []byte, t int64) bool {
	return len(k) >= 8 && t > 0 && binary.BigEndian.Uint64(k) < uint64(t)
}

// Key and value encodings; see "Layout" in the file comment.
const (
	messageKeySize = queue.IDSize + 8
	expiryKeySize  = 8 + queue.IDSize + 8
	// messageValueCap is the capacity of addMessage's pooled value
	// buffers: a stored message of the largest body.
	messageValueCap = messageOverhead + queue.MaxMessageSize
)

func messageKey(rid queue.ID, seq uint64) []byte {
	k := make([]byte, 0, messageKeySize)
	k = append(k, rid[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func expiryKey(ts int64, rid queue.ID, seq uint64) []byte {
	k := make([]byte, 0, expiryKeySize)
	k = binary.BigEndian.AppendUint64(k, uint64(ts))
	k = append(k, rid[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}
