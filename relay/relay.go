package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/queue"
)

// sweepBatch bounds the deletions of one expiry transaction.
const sweepBatch = 1000

// Relay is a running relay: its store, its QUIC and TLS listeners and its
// sessions. Its methods are safe for concurrent use.
type Relay struct {
	cfg     Config
	store   *store
	tlsConf *tls.Config
	tcpLn   net.Listener
	udpConn *net.UDPConn
	quicTr  *quic.Transport
	quicLn  *quic.Listener
	// dummyKey authorizes nothing: commands for unknown queues are checked
	// against it so that they cost the same work as real ones.
	dummyKey queue.Key
	// passwordHash is the SHA-256 of cfg.Password, compared with that of
	// NEW's password in constant time.
	passwordHash [32]byte

	metrics *metrics
	admit   *admission
	// forwarder holds the relay-to-relay sessions of private routing;
	// replay remembers the forwarded commands accepted (section 20).
	forwarder *forwarder
	replay    *replayFilter
	// forwardHook, set only by tests, sees (and may change) every RFWD
	// and the proxy session it goes to before it is sent, and returns how
	// many times to send it: a forwarding relay that misbehaves. admitHook, set only by tests, is
	// told the source address of every connection accepted. waitHook,
	// set only by tests, is called when a command starts waiting for its
	// session's earlier writes on its queue (waitWrites).
	forwardHook atomic.Pointer[func(*queue.Command, *queue.ID) int]
	admitHook   atomic.Pointer[func(netip.Addr)]
	waitHook    atomic.Pointer[func()]
	// newLimit is the relay-wide NEW rate (Config.RelayNewRate).
	newLimit *rate.Limiter
	// failPool is the relay-wide budget of failures beyond the sessions'
	// own (Config.RelayFailureRate); nil: none.
	failPool *rate.Limiter
	// acceptLog and refuseLog rate-limit the logs of accept errors and of
	// refused connections.
	acceptLog, refuseLog rateLog
	// storageLog and commitLog rate-limit the logs of refusals for lack
	// of storage and of failed commits.
	storageLog, commitLog rateLog
	// diskLow is set while the store's filesystem has less free space
	// than Config.MinFreeDisk, or ran out of space; see checkDisk.
	diskLow atomic.Bool
	// noSpace is set when a commit fails for lack of disk space (ENOSPC),
	// until checkDisk finds space again.
	noSpace atomic.Bool
	// diskKick asks diskLoop for a check now (after a commit); buffered 1.
	diskKick chan struct{}
	blocks   sync.Pool                 // *[]byte of queue.BlockSize; see getBlock
	prepared atomic.Int32              // preparedEvents not released, at most maxPrepared
	readBufs sync.Pool                 // *[]byte of readBufSize; see tcpConn
	cert     atomic.Pointer[certState] // the certificate served; see SetCertificate
	draining atomic.Bool               // NEW is refused; see SetDraining
	started  time.Time
	// accepting counts the accept loops (TCP and QUIC) not yet ended, for
	// Health.
	accepting atomic.Int32
	health    healthProbe

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops, sessions, sweeper

	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// subs maps a recipient ID to the one subscription holding it.
	subs map[queue.ID]*subscription
	// sessions holds every live session, to close them on Close.
	sessions map[*session]struct{}
	// sessionSeq numbers the sessions for Config.Observe.
	sessionSeq uint64

	// writeTimes holds the latencies of the last writeSamples durable
	// writes answered OK (from the command to its answer), in
	// nanoseconds, written in turn at writeNext: a PONG waits as long as
	// one of them (pongDelay).
	writeTimes [writeSamples]atomic.Int64
	writeNext  atomic.Uint64

	// commitWork is what the current group commit leaves for the
	// sessions; see commitreply.go. Only the store's commit loop uses it.
	commitWork *commitWork
}

// writeSamples is how many write latencies pongDelay draws from.
const writeSamples = 64

// maxPongDelay bounds the wait before a PONG, whatever the disk's
// latency.
const maxPongDelay = time.Second

// noteWrite records the latency d of a durable write answered OK.
func (r *Relay) noteWrite(d time.Duration) {
	i := r.writeNext.Add(1) - 1
	r.writeTimes[i%writeSamples].Store(int64(d))
}

// pongDelay returns how long a PONG waits: the latency of one of the
// last durable writes, drawn at random, so that a PONG follows its PING
// after the time an OK follows its SEND or ACK (queue/PROTOCOL.md
// section 9); 0 before the first write.
func (r *Relay) pongDelay() time.Duration {
	n := min(r.writeNext.Load(), writeSamples)
	if n == 0 {
		return 0
	}
	return min(time.Duration(r.writeTimes[mrand.N(n)].Load()), maxPongDelay)
}

// New opens the store, binds both listeners and starts serving in the
// background. Close stops it.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cs, err := newCertState(cfg.Certificate, queue.Fingerprint{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	r := &Relay{
		cfg:     cfg,
		started: time.Now(),
		tlsConf: &tls.Config{
			MinVersion:             tls.VersionTLS13,
			NextProtos:             []string{queue.ALPN},
			SessionTicketsDisabled: true,
			// One block, one TLS record of one size, from the first block on.
			DynamicRecordSizingDisabled: true,
		},
		subs:       make(map[queue.ID]*subscription),
		sessions:   make(map[*session]struct{}),
		commitWork: newCommitWork(),
	}
	r.cert.Store(cs)
	r.tlsConf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return &r.cert.Load().cert, nil
	}
	r.passwordHash = sha256.Sum256([]byte(cfg.Password))
	r.draining.Store(cfg.Drain)
	r.admit = newAdmission(&cfg)
	r.diskKick = make(chan struct{}, 1)
	if cfg.RelayFailureRate > 0 {
		r.failPool = rate.NewLimiter(rate.Limit(cfg.RelayFailureRate), max(1, int(cfg.RelayFailureRate)))
	}
	r.newLimit = rate.NewLimiter(rate.Limit(cfg.RelayNewRate), max(1, int(cfg.RelayNewRate)))
	r.metrics = newMetrics(r)
	st, err := openStore(cfg.StorePath, storeOptions{
		OnCommit: func(wait, d time.Duration, ops int, err error) {
			r.metrics.observeCommit(wait, d, ops, err)
			if err != nil {
				r.commitLog.log(cfg.Logger, slog.LevelError, "store commit failed: the commands in it were answered ERR INTERNAL", "err", err)
				if errors.Is(err, syscall.ENOSPC) {
					r.noSpace.Store(true)
					r.diskLow.Store(true)
				}
			}
			select {
			case r.diskKick <- struct{}{}:
			default:
			}
		},
		OnFinished:  r.commitWork.finish,
		MappedLimit: cfg.MappedStoreLimit,
		OnTrim:      r.metrics.observeTrim,
		MessageUnit: r.messageUnit(),
		QueueUnit:   r.queueUnit(),
	})
	if err != nil {
		return nil, err
	}
	r.store = st
	dk, err := queue.GenerateKey()
	if err != nil {
		st.Close()
		return nil, err
	}
	r.dummyKey = queue.PublicKey(dk)
	if err := r.listen(); err != nil {
		st.Close()
		return nil, err
	}
	r.checkDisk()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.replay = newReplayFilter(cfg.ReplayFilterSize)
	r.forwarder = newForwarder(r)
	r.wg.Add(4)
	go r.diskLoop()
	r.accepting.Store(2)
	go r.acceptTCP()
	go r.acceptQUIC()
	go r.sweepLoop()
	cfg.Logger.Info("relay started", "quic", true, "tcp", true,
		"policy", "logs never record IP addresses, ports, queue IDs or message sizes")
	if cfg.Drain {
		cfg.Logger.Info("drain mode: new queues are refused, existing queues are served")
	}
	return r, nil
}

// listen binds TCP and then UDP on the same port number. With port 0 the
// TCP port is chosen first; if UDP cannot have the same number, it tries a
// few other ports.
func (r *Relay) listen() error {
	host, port, err := net.SplitHostPort(r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: %w", ErrConfig, r.cfg.Listen, err)
	}
	attempts := 1
	if port == "0" {
		attempts = 10
	}
	for i := range attempts {
		tcpLn, err := net.Listen("tcp", r.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen tcp: %w", err)
		}
		p := tcpLn.Addr().(*net.TCPAddr).Port
		udpAddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			tcpLn.Close()
			return fmt.Errorf("listen udp: %w", err)
		}
		udpConn, err := net.ListenUDP("udp", udpAddr)
		if err != nil {
			tcpLn.Close()
			if i+1 < attempts {
				continue
			}
			return fmt.Errorf("listen udp: %w", err)
		}
		r.tcpLn, r.udpConn = tcpLn, udpConn
		break
	}
	resetKey := quic.StatelessResetKey(r.cfg.StatelessResetKey)
	if resetKey == (quic.StatelessResetKey{}) {
		if _, err := rand.Read(resetKey[:]); err != nil {
			r.tcpLn.Close()
			r.udpConn.Close()
			return err
		}
	}
	r.quicTr = &quic.Transport{
		Conn:              r.udpConn,
		StatelessResetKey: &resetKey,
		// Connection attempts are counted, and refused beyond the caps,
		// before their handshake; when half the handshake slots are taken,
		// an attempt must first prove its source address with a Retry.
		ConnContext: r.admitQUIC,
		VerifySourceAddress: func(net.Addr) bool {
			return r.admit.busy()
		},
	}
	ln, err := r.quicTr.Listen(r.tlsConf, &quic.Config{
		HandshakeIdleTimeout: r.cfg.HandshakeTimeout,
		// The QUIC idle timeout is the session's (PROTOCOL.md section 2):
		// a client that advertises less sends keep-alives.
		MaxIdleTimeout:        r.cfg.IdleTimeout,
		MaxIncomingStreams:    1,
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		r.tcpLn.Close()
		r.udpConn.Close()
		return fmt.Errorf("listen quic: %w", err)
	}
	r.quicLn = ln
	return nil
}

// Addr returns the TCP listener's address; the QUIC listener has the same
// port on UDP.
func (r *Relay) Addr() net.Addr { return r.tcpLn.Addr() }

// admitFrom admits a connection from addr (see admission.admit).
func (r *Relay) admitFrom(addr netip.Addr) (*ticket, refusal) {
	if h := r.admitHook.Load(); h != nil {
		(*h)(addr)
	}
	if r.cfg.ObserveSource != nil {
		r.cfg.ObserveSource(addr)
	}
	return r.admit.admit(addr)
}

// Close stops the listeners, ends every session, waits for their
// goroutines and closes the store. It is idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.tcpLn.Close()
		r.quicLn.Close()
		r.mu.Lock()
		for s := range r.sessions {
			s.close()
		}
		r.mu.Unlock()
		r.wg.Wait()
		r.forwarder.close()
		r.quicTr.Close()
		r.udpConn.Close()
		r.closeErr = r.store.Close()
		r.cfg.Logger.Info("relay stopped")
	})
	return r.closeErr
}

func (r *Relay) acceptTCP() {
	defer r.wg.Done()
	defer r.accepting.Add(-1)
	for {
		c, err := r.tcpLn.Accept()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.metrics.acceptErrors.Inc()
			r.acceptLog.log(r.cfg.Logger, slog.LevelError, "accept tcp", "err", err)
			time.Sleep(100 * time.Millisecond) // for example out of file descriptors
			continue
		}
		tk, why := r.admitFrom(addrOf(c.RemoteAddr()))
		if why != admitted {
			// Closed at once, with a reset: nothing of TLS is sent, and the
			// relay keeps no TIME-WAIT state for it.
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			r.refused(transportTCP, why)
			continue
		}
		// Until the first byte of the TLS handshake, the short deadline.
		c.SetReadDeadline(time.Now().Add(r.cfg.FirstByteTimeout))
		fc := newTCPConn(c, &r.readBufs)
		r.startSession(tk, func(ctx context.Context) (io.ReadWriteCloser, []byte, error) {
			tc := tls.Server(fc, r.tlsConf)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, nil, err
			}
			st := tc.ConnectionState()
			if st.NegotiatedProtocol != queue.ALPN {
				c.Close()
				return nil, nil, errors.New("no application protocol")
			}
			b, err := st.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize)
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return tc, b, nil
		})
	}
}

func (r *Relay) acceptQUIC() {
	defer r.wg.Done()
	defer r.accepting.Add(-1)
	for {
		qc, err := r.quicLn.Accept(r.ctx)
		if err != nil {
			if r.ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return
			}
			r.metrics.acceptErrors.Inc()
			r.acceptLog.log(r.cfg.Logger, slog.LevelError, "accept quic", "err", err)
			continue
		}
		tk, _ := qc.Context().Value(ticketKey{}).(*ticket)
		if tk == nil { // not admitted by admitQUIC: cannot happen
			qc.CloseWithError(0, "")
			continue
		}
		r.startSession(tk, func(ctx context.Context) (io.ReadWriteCloser, []byte, error) {
			st, err := qc.AcceptStream(ctx)
			if err != nil {
				qc.CloseWithError(0, "")
				return nil, nil, err
			}
			ts := qc.ConnectionState().TLS
			b, err := ts.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize)
			if err != nil {
				qc.CloseWithError(0, "")
				return nil, nil, err
			}
			return quicStream{st, qc}, b, nil
		})
	}
}

// ticketKey is the context key of a QUIC connection's ticket.
type ticketKey struct{}

// admitQUIC is the QUIC transport's ConnContext: it admits a connection
// attempt before its handshake, or refuses it (quic-go answers
// CONNECTION_REFUSED). The ticket is released when the connection ends,
// handshake failures included.
func (r *Relay) admitQUIC(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	tk, why := r.admitFrom(addrOf(info.RemoteAddr))
	if why != admitted {
		r.refused(transportQUIC, why)
		return nil, errRefused
	}
	context.AfterFunc(ctx, tk.release)
	return context.WithValue(ctx, ticketKey{}, tk), nil
}

// errRefused refuses a QUIC connection attempt beyond the caps.
var errRefused = errors.New("connection refused: too many connections")

// transport names a transport in metrics.
type transport int

const (
	transportTCP transport = iota
	transportQUIC
	transportCount
)

func (t transport) String() string {
	if t == transportQUIC {
		return "quic"
	}
	return "tcp"
}

// refused counts and logs (rate-limited) a refused connection attempt.
func (r *Relay) refused(t transport, why refusal) {
	r.metrics.refused[t][why].Inc()
	r.refuseLog.log(r.cfg.Logger, slog.LevelWarn, "connections refused: limit reached",
		"transport", t.String(), "limit", why.String())
}

// quicStream is a session's one QUIC stream; closing it closes the
// connection.
type quicStream struct {
	*quic.Stream
	conn *quic.Conn
}

func (q quicStream) Close() error { return q.conn.CloseWithError(0, "") }

// startSession runs a session in its own goroutine. open completes the
// transport handshake within the handshake deadline and returns the
// session's stream and binding. tk, the connection's admission, is
// released when the session ends or fails.
func (r *Relay) startSession(tk *ticket, open func(context.Context) (io.ReadWriteCloser, []byte, error)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.HandshakeTimeout)
		conn, binding, err := open(ctx)
		cancel()
		if err != nil {
			tk.release()
			r.metrics.handshakeFailures.Inc()
			r.cfg.Logger.Debug("transport handshake failed", "err", err)
			return
		}
		s, err := newSession(r, conn, binding, tk)
		if err != nil {
			conn.Close()
			tk.release()
			return
		}
		if !r.addSession(s) {
			conn.Close()
			tk.release()
			return
		}
		// The session runs on a goroutine of its own: this one's stack
		// grew for the TLS handshake and goes away with it, so that an
		// idle session's reader keeps a small stack.
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer tk.release()
			defer r.removeSession(s)
			err := s.run()
			r.cfg.Logger.Debug("session ended", "err", err)
		}()
	}()
}

func (r *Relay) addSession(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return false
	}
	r.sessions[s] = struct{}{}
	r.sessionSeq++
	s.seq = r.sessionSeq
	r.metrics.sessionsTotal.Inc()
	return true
}

// removeSession forgets s and releases its subscriptions.
func (r *Relay) removeSession(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, s)
	for rid, sub := range s.subscriptions() {
		if r.subs[rid] == sub {
			delete(r.subs, rid)
		}
	}
}

// subscribe makes sub the subscription of its queue and returns the one it
// replaced, if any.
func (r *Relay) subscribe(sub *subscription) (old *subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old = r.subs[sub.rid]
	r.subs[sub.rid] = sub
	return old
}

// unsubscribe removes and returns the subscription of rid, if any.
func (r *Relay) unsubscribe(rid queue.ID) *subscription {
	r.mu.Lock()
	defer r.mu.Unlock()
	sub := r.subs[rid]
	delete(r.subs, rid)
	return sub
}

// unsubscribeSub removes sub from the relay's subscriptions if it is
// still its queue's.
func (r *Relay) unsubscribeSub(sub *subscription) {
	r.mu.Lock()
	if r.subs[sub.rid] == sub {
		delete(r.subs, sub.rid)
	}
	r.mu.Unlock()
}

// notifyHead tells the subscriber of rid, if any, that its queue's first
// message may have changed (an ACK from any session, an expiry): if the
// message delivered to it is gone, the next one is delivered.
func (r *Relay) notifyHead(rid queue.ID) {
	r.mu.Lock()
	sub := r.subs[rid]
	r.mu.Unlock()
	if sub != nil {
		sub.sess.markPending(sub, true)
	}
}

// swept tells the subscriber of rid, if any, what the expiry sweep did to
// its queue: deleted it (a queue never secured: DELD, and the
// subscription ends), or removed a message (notifyHead).
func (r *Relay) swept(rid queue.ID, deleted bool) {
	if !deleted {
		r.notifyHead(rid)
		return
	}
	if sub := r.unsubscribe(rid); sub != nil {
		sub.sess.ended(sub, queue.TagDELD)
	}
}

// diskCheckInterval is how often diskLoop checks the free disk space.
const diskCheckInterval = time.Second

// diskKickInterval is the shortest interval between two checks of
// diskLoop asked for by commits: a store filling fast is checked every
// few commits, not only every diskCheckInterval.
const diskKickInterval = 10 * time.Millisecond

// noSpaceClear is the free space, at least, at which the relay tries NEW
// and SEND again after a commit failed for lack of space, when it has no
// reserve (Config.MinFreeDisk negative).
const noSpaceClear = 1 << 20

// diskLoop keeps diskLow up to date until the relay closes: every
// diskCheckInterval, and after commits, at most every diskKickInterval.
func (r *Relay) diskLoop() {
	defer r.wg.Done()
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.diskKick:
		}
		r.checkDisk()
		sleepCtx(r.ctx, diskKickInterval)
	}
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// checkDisk sets diskLow from the space the store can still grow into:
// the free space of its filesystem plus the store file's free pages,
// which new messages reuse (so that a store drained by its recipients on
// a disk that is still full takes messages again). After a commit failed
// for lack of space (noSpace), the filesystem alone must have the
// reserve again, at least noSpaceClear: the file's free pages were not
// enough. When the free space cannot be read the reserve is not applied.
func (r *Relay) checkDisk() {
	reserve := r.cfg.MinFreeDisk
	noSpace := r.noSpace.Load()
	if reserve <= 0 && !noSpace {
		return
	}
	free, err := diskFree(filepath.Dir(r.cfg.StorePath))
	var low bool
	switch {
	case err != nil:
	case noSpace:
		if low = free < max(reserve, noSpaceClear); !low {
			r.noSpace.Store(false)
		}
	default:
		if _, storeFree, err := r.store.sizes(); err == nil {
			free += storeFree
		}
		low = free < reserve
	}
	if was := r.diskLow.Swap(low); was != low {
		if low {
			r.cfg.Logger.Warn("free disk space below the reserve: NEW and SEND are refused (ERR QUOTA) until it returns")
		} else {
			r.cfg.Logger.Info("free disk space above the reserve again: NEW and SEND are accepted")
		}
	}
}

// storageFull reports whether the store holds MaxStoredBytes or more, or
// the disk is below its reserve: NEW and SEND are then refused.
func (r *Relay) storageFull() bool {
	if r.diskLow.Load() {
		return true
	}
	return r.cfg.MaxStoredBytes > 0 && r.store.storedBytes() >= r.cfg.MaxStoredBytes
}

// refuseStorage counts and logs (rate-limited) a NEW or SEND refused for
// lack of storage.
func (r *Relay) refuseStorage() {
	r.metrics.storageRefusals.Inc()
	r.storageLog.log(r.cfg.Logger, slog.LevelWarn, "storage full: NEW and SEND answered ERR QUOTA")
}

// messageUnit is the precision of the message times the relay stores and
// sends in MSG (PROTOCOL.md sections 11 and 17): an hour, or 1/256 of
// MessageTTL if that is shorter, and at least a second.
func (r *Relay) messageUnit() time.Duration {
	return min(max(r.cfg.MessageTTL/256, time.Second), maxMessageUnit).Truncate(time.Second)
}

// queueUnit is the precision of the queue creation times the relay stores
// (for the expiry of queues never secured): the UTC day, or a quarter of
// UnsecuredTTL if that is shorter, and at least a second.
func (r *Relay) queueUnit() time.Duration {
	return min(max(r.cfg.UnsecuredTTL/4, time.Second), maxQueueUnit).Truncate(time.Second)
}

// The longest units of stored times (messageUnit, queueUnit).
const (
	maxMessageUnit = time.Hour
	maxQueueUnit   = 24 * time.Hour
)

func (r *Relay) sweepLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	var lastScrub time.Time
	for first := true; ; first = false {
		now := time.Now()
		// Stored times are rounded down to their unit: a message or queue
		// expires once its whole unit is older than its TTL, never sooner,
		// and at most one unit later, plus one sweep interval for a
		// message and, for a queue never secured, one round of the sweeps
		// that read queues (ceil(queues / SweepScan), going on across
		// restarts). The first sweep after a start reads no queue
		// records, so that a relay restarting does not read a quarter of
		// its queues while its clients come back: a relay restarted more
		// often than every sweep interval deletes no queue never secured
		// (see "The sweep" in docs/store.md).
		queueBefore := now.Add(-r.cfg.UnsecuredTTL - r.queueUnit()).Unix()
		if first {
			queueBefore = 0
		}
		msgs, queues, err := r.store.sweep(r.ctx,
			now.Add(-r.cfg.MessageTTL-r.messageUnit()).Unix(), queueBefore, sweepBatch, r.swept)
		if err != nil && r.ctx.Err() == nil {
			r.cfg.Logger.Error("expiry sweep", "err", err)
		}
		r.metrics.messagesExpired.Add(float64(msgs))
		r.metrics.queuesExpired.Add(float64(queues))
		if msgs+queues > 0 {
			r.cfg.Logger.Info("expired", "messages", msgs, "queues", queues)
		}
		// Keys of message keys erased once their period is over, so that
		// what was acknowledged, expired or deleted before cannot be
		// opened (atrest.go; PROTOCOL.md section 17).
		if _, erased, err := r.store.rotate(r.ctx, now, sweepBatch); err != nil && r.ctx.Err() == nil {
			r.cfg.Logger.Error("key rotation", "err", err)
		} else if erased > 0 {
			r.cfg.Logger.Debug("message keys erased", "keys", erased)
		}
		// Free pages overwritten once a key period at most, if a queue
		// was deleted (scrub).
		if now.Sub(lastScrub) >= r.messageUnit() {
			if _, err := r.store.scrub(r.ctx); err != nil && r.ctx.Err() == nil {
				r.cfg.Logger.Error("overwriting free pages", "err", err)
			}
			lastScrub = now
		}
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}
