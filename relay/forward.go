package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/queue"
)

// Private message routing, the forwarding relay's side (PROTOCOL.md
// section 20): PRXY opens, or reuses, a relay-to-relay session to the
// destination relay (a peer), and PFWD passes a sealed command on it as
// RFWD.

// Bounds of the forwarding side.
const (
	// forwardAnswerTimeout bounds the wait for the destination's answer to
	// one RFWD; then the client is answered ERR PROXY.
	forwardAnswerTimeout = 30 * time.Second
	// maxPeerPending bounds the RFWDs waiting for their answers on one
	// peer; PFWD commands beyond it wait for a slot.
	maxPeerPending = 1024
	// peerRecordSize is the TLS record size a peer writes: it is a
	// client of the destination (PROTOCOL.md section 2).
	peerRecordSize = 4096
)

// Errors of the forwarding side.
var (
	// errPeerClosed is returned by peer.do once the relay-to-relay
	// session has ended.
	errPeerClosed = errors.New("relay-to-relay session closed")
	// errPeersBusy is returned by forwarder.open when the relay holds its
	// maximum of relay-to-relay sessions and none is idle.
	errPeersBusy = errors.New("every relay-to-relay session is in use")
	// errOnionOnly is returned by forwarder.open for a destination with an
	// onion host only: the forwarding relay dials over TCP without Tor.
	errOnionOnly = errors.New("the destination has only an onion host")
)

// forwarder holds a relay's relay-to-relay sessions: at most one per
// destination (fingerprint, host and port), at most
// Config.MaxForwardSessions in all, each closed after
// Config.ForwardIdleTimeout without use.
type forwarder struct {
	r *Relay

	wg sync.WaitGroup // peers' goroutines and the janitor

	mu sync.Mutex
	// byDest and byID index the same peers: by destination, and by the
	// proxy session ID given to clients.
	byDest map[string]*peer
	byID   map[queue.ID]*peer
	closed bool
}

func newForwarder(r *Relay) *forwarder {
	f := &forwarder{r: r, byDest: make(map[string]*peer), byID: make(map[queue.ID]*peer)}
	f.wg.Add(1)
	go f.janitor()
	return f
}

// close closes every peer and waits for their goroutines and the
// janitor's. It is idempotent; the relay's context must be canceled first
// (it ends the janitor).
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	peers := make([]*peer, 0, len(f.byDest))
	for _, p := range f.byDest {
		peers = append(peers, p)
	}
	f.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	f.wg.Wait()
}

// count returns the number of relay-to-relay sessions.
func (f *forwarder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byDest)
}

// janitor closes idle peers.
func (f *forwarder) janitor() {
	defer f.wg.Done()
	idle := f.r.cfg.ForwardIdleTimeout
	t := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-f.r.ctx.Done():
			return
		}
		var stale []*peer
		f.mu.Lock()
		for _, p := range f.byDest {
			if p.idleFor() >= idle {
				stale = append(stale, p)
			}
		}
		f.mu.Unlock()
		for _, p := range stale {
			p.close()
		}
	}
}

// lookup returns the ready peer with proxy session ID id, or nil.
func (f *forwarder) lookup(id queue.ID) *peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.byID[id]
	if p == nil || !p.isReady() {
		return nil
	}
	return p
}

// open returns a ready peer for the destination addr: the one open, or a
// new one, dialed within ctx and the handshake deadline. Concurrent calls
// for one destination share one dial.
func (f *forwarder) open(ctx context.Context, addr queue.Address) (*peer, error) {
	if queue.IsOnion(addr.Host) {
		return nil, errOnionOnly
	}
	dest := addr.Fingerprint.String() + "@" + addr.HostPort()
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, errPeerClosed
		}
		p := f.byDest[dest]
		if p == nil {
			if len(f.byDest) >= f.r.cfg.MaxForwardSessions && !f.evictLocked() {
				f.mu.Unlock()
				return nil, errPeersBusy
			}
			p = newPeer(f, dest)
			f.byDest[dest] = p
			f.byID[p.id] = p
			f.mu.Unlock()
			f.wg.Add(1)
			go p.dial(addr)
		} else {
			f.mu.Unlock()
		}
		select {
		case <-p.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			return nil, p.err
		}
		select {
		case <-p.done:
			continue // closed meanwhile: dial again
		default:
		}
		p.touch()
		return p, nil
	}
}

// evictLocked closes the least recently used idle peer, and reports
// whether there was one. f.mu must be held.
func (f *forwarder) evictLocked() bool {
	var lru *peer
	for _, p := range f.byDest {
		if p.isReady() && p.inUse() == 0 && (lru == nil || p.lastUse() < lru.lastUse()) {
			lru = p
		}
	}
	if lru == nil {
		return false
	}
	f.removeLocked(lru)
	go lru.close() // it waits for nothing f.mu guards, but need not hold the caller
	return true
}

// removeLocked drops p from the indexes. f.mu must be held.
func (f *forwarder) removeLocked(p *peer) {
	if f.byDest[p.dest] == p {
		delete(f.byDest, p.dest)
		delete(f.byID, p.id)
	}
}

// peer is one relay-to-relay session: this relay as a client of a
// destination relay. Its reader goroutine matches answers to the RFWDs
// waiting for them; commands are written by their callers, one block at
// a time (writeMu), so that nothing is queued without bound.
type peer struct {
	f    *forwarder
	id   queue.ID // the proxy session ID
	dest string
	// limit is the rate of PFWD to this destination, of all clients
	// (Config.ForwardDestinationRate).
	limit *rate.Limiter
	// slots holds one token per RFWD waiting for its answer: at most
	// maxPeerPending.
	slots chan struct{}

	ready chan struct{} // closed when dial ends; then err, attest and conn are set
	err   error         // why dial failed
	// attest is the destination's attestation of this session (PKEY).
	attest queue.Attestation
	conn   net.Conn

	done      chan struct{} // closed by close
	closeOnce sync.Once

	writeMu sync.Mutex // one block written at a time

	mu sync.Mutex
	// pending are the commands waiting for their answers, by corrID.
	pending map[[queue.CorrIDSize]byte]chan queue.Command
	used    time.Time // the last PRXY or PFWD
	inFly   int       // commands waiting for their answers
}

func newPeer(f *forwarder, dest string) *peer {
	return &peer{
		f:       f,
		id:      queue.NewID(),
		dest:    dest,
		limit:   rate.NewLimiter(rate.Limit(f.r.cfg.ForwardDestinationRate), max(1, int(f.r.cfg.ForwardDestinationRate))),
		slots:   make(chan struct{}, maxPeerPending),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[[queue.CorrIDSize]byte]chan queue.Command),
		used:    time.Now(),
	}
}

func (p *peer) isReady() bool {
	select {
	case <-p.ready:
		return p.err == nil
	default:
		return false
	}
}

func (p *peer) touch() {
	p.mu.Lock()
	p.used = time.Now()
	p.mu.Unlock()
}

func (p *peer) lastUse() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used.UnixNano()
}

func (p *peer) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFly
}

// idleFor returns how long the peer has been ready and unused (0 while it
// dials or has commands in flight).
func (p *peer) idleFor() time.Duration {
	if !p.isReady() {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFly > 0 {
		return 0
	}
	return time.Since(p.used)
}

// close ends the session and removes the peer from the forwarder. It is
// idempotent and does not wait for the reader.
func (p *peer) close() {
	p.closeOnce.Do(func() {
		p.f.mu.Lock()
		p.f.removeLocked(p)
		p.f.mu.Unlock()
		close(p.done)
		<-p.ready // conn is set, or dial failed
		if p.conn != nil {
			p.conn.Close()
		}
	})
}

// dial connects to the destination, does the hush handshake and asks for
// its attestation (RKEY), within the handshake deadline; then it reads
// answers until the session ends. It runs in its own goroutine.
func (p *peer) dial(addr queue.Address) {
	defer p.f.wg.Done()
	ctx, cancel := context.WithTimeout(p.f.r.ctx, p.f.r.cfg.HandshakeTimeout)
	conn, binding, sk, err := dialPeer(ctx, addr)
	if err == nil {
		p.conn = conn
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		err = p.attestation(conn, addr.Fingerprint, binding, sk)
		if !stop() && err == nil {
			err = ctx.Err()
		}
		conn.SetDeadline(time.Time{})
	}
	cancel()
	if err != nil {
		p.f.r.metrics.forwardFailures.Inc()
		p.f.r.cfg.Logger.Debug("relay-to-relay session failed", "err", err)
		p.err = fmt.Errorf("%w: %w", errPeerClosed, err)
		close(p.ready)
		p.close()
		return
	}
	close(p.ready)
	p.readLoop()
}

// dialPeer dials addr over TLS over TCP, checks the relay's identity
// against addr's fingerprint, and does the hush handshake. It returns the
// connection, the session binding and the destination's session key.
func dialPeer(ctx context.Context, addr queue.Address) (net.Conn, []byte, queue.Key, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.HostPort())
	if err != nil {
		return nil, nil, queue.Key{}, err
	}
	tc := tls.Client(raw, &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		NextProtos:                  []string{queue.ALPN},
		SessionTicketsDisabled:      true,
		DynamicRecordSizingDisabled: true,
		InsecureSkipVerify:          true, // VerifyConnection checks the pinned identity
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := queue.VerifyChain(cs.PeerCertificates, addr.Fingerprint, time.Now()); err != nil {
				return err
			}
			if cs.NegotiatedProtocol != queue.ALPN {
				return errors.New("no hush ALPN")
			}
			return nil
		},
	})
	fail := func(err error) (net.Conn, []byte, queue.Key, error) {
		tc.Close()
		return nil, nil, queue.Key{}, err
	}
	// The handshake ends when ctx does (the relay closing, or the
	// deadline).
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(err)
	}
	cs := tc.ConnectionState()
	binding, err := cs.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize)
	if err != nil {
		return fail(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if err := writeRecords(tc, hello.AppendBlock(make([]byte, 0, queue.BlockSize))); err != nil {
		return fail(err)
	}
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(tc, block); err != nil {
		return fail(err)
	}
	sh, err := queue.ParseServerHello(block)
	if err != nil {
		return fail(err)
	}
	if _, ok := queue.Negotiate(sh.MinVersion, sh.MaxVersion); !ok {
		return fail(errors.New("no common protocol version"))
	}
	tc.SetDeadline(time.Time{})
	return tc, binding, sh.SessionKey, nil
}

// writeRecords writes a block as records of peerRecordSize bytes.
func writeRecords(w io.Writer, b []byte) error {
	for len(b) > 0 {
		n, err := w.Write(b[:min(len(b), peerRecordSize)])
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// attestation sends RKEY and checks the destination's PKEY: the relay
// signs the session key and binding of this very session with an online
// key its identity certified. A relay that does not is not used.
func (p *peer) attestation(conn net.Conn, fp queue.Fingerprint, binding []byte, sk queue.Key) error {
	corr := queue.NewID()
	tx := queue.Transmission{CorrID: corr[:], Command: queue.Command{Tag: queue.TagRKEY}}
	var bb queue.BlockBuilder
	bb.Add(tx.Append(nil))
	if err := writeRecords(conn, bb.AppendBlock(nil)); err != nil {
		return err
	}
	block := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(conn, block); err != nil {
		return err
	}
	txs, err := queue.ParseBlock(nil, block)
	if err != nil || len(txs) != 1 {
		return errors.New("malformed answer to RKEY")
	}
	t, _, err := queue.ParseTransmission(txs[0])
	if err != nil || t.Command.Tag != queue.TagPKEY || string(t.CorrID) != string(corr[:]) {
		return errors.New("the destination did not answer RKEY with PKEY")
	}
	a := t.Command.Attestation
	if a.SessionKey != sk || string(a.Binding[:]) != string(binding) {
		return errors.New("the destination attested another session")
	}
	if err := a.Verify(fp, time.Now()); err != nil {
		return err
	}
	for i := range a.Chain {
		a.Chain[i] = clone(a.Chain[i]) // they alias block
	}
	p.attest = a
	return nil
}

// readLoop reads the destination's answers and hands each to the command
// waiting for it, until the session ends.
func (p *peer) readLoop() {
	defer p.close()
	block := make([]byte, queue.BlockSize)
	var txs [][]byte
	for {
		if _, err := io.ReadFull(p.conn, block); err != nil {
			return
		}
		var err error
		if txs, err = queue.ParseBlock(txs[:0], block); err != nil {
			return
		}
		for _, raw := range txs {
			t, _, err := queue.ParseTransmission(raw)
			// The peer never subscribes: everything it receives answers
			// a command.
			if err != nil || t.Command.Tag.IsCommand() || len(t.CorrID) != queue.CorrIDSize {
				return
			}
			corr := [queue.CorrIDSize]byte(t.CorrID)
			p.mu.Lock()
			ch := p.pending[corr]
			delete(p.pending, corr)
			p.mu.Unlock()
			if ch != nil {
				cmd := t.Command
				cmd.Sealed = clone(cmd.Sealed)
				ch <- cmd // buffered
			}
		}
	}
}

// do sends cmd on the session and waits, within ctx, for its answer.
func (p *peer) do(ctx context.Context, cmd queue.Command) (queue.Command, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return queue.Command{}, ctx.Err()
	case <-p.done:
		return queue.Command{}, errPeerClosed
	}
	defer func() { <-p.slots }()
	corr := [queue.CorrIDSize]byte(queue.NewID())
	ch := make(chan queue.Command, 1)
	p.mu.Lock()
	p.pending[corr] = ch
	p.inFly++
	p.used = time.Now()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, corr)
		p.inFly--
		p.used = time.Now()
		p.mu.Unlock()
	}()
	tx := queue.Transmission{CorrID: corr[:], Command: cmd}
	var bb queue.BlockBuilder
	bb.Add(tx.Append(nil))
	p.writeMu.Lock()
	// A destination that does not read cannot hold the writers for longer
	// than an answer may take.
	p.conn.SetWriteDeadline(time.Now().Add(forwardAnswerTimeout))
	err := writeRecords(p.conn, bb.AppendBlock(nil))
	p.writeMu.Unlock()
	if err != nil {
		p.close()
		return queue.Command{}, errPeerClosed
	}
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		return queue.Command{}, ctx.Err()
	case <-p.done:
		return queue.Command{}, errPeerClosed
	}
}
