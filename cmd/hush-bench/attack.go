package main

// The attack scenario: each attack of issue 15 against a started relay,
// in turn, while an honest client sends and receives; for each, the
// relay's CPU and RSS, what the attacker got and what was refused, and
// the honest client's connect, PING and send-to-deliver figures against a
// quiet run.

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// attackSource is the attackers' source address: the honest client dials
// from 127.0.0.1, so that the relay's per-address caps tell them apart.
const attackSource = "127.0.0.2"

// attackFDs bounds the sockets the attackers hold at once, below this
// process's descriptor limit (20,000) with room for the honest client.
const attackFDs = 18000

type attackOptions struct {
	commonOptions
	duration  time.Duration // honest traffic measured per attack
	idleTLS   int           // idle TLS sessions to attempt
	idleQUIC  int           // idle QUIC sessions to attempt
	loris     int           // slowloris connections per second
	garbage   int           // sessions flooding garbage commands
	newFlood  int           // sessions flooding NEW
	openRate  float64       // connection attempts per second of the idle floods
	attacks   []string
	sendEvery time.Duration
	// settle is how long an attack runs before the measurement, and the
	// pause after it.
	settle time.Duration
	// maxPerAddress, if not 0, sets the relay's per-address cap;
	// maxHandshakes, if not 0, its cap on handshakes in progress.
	maxPerAddress, maxHandshakes int
}

// attackRow is the outcome of one attack (or of the quiet run).
type attackRow struct {
	Attack string `json:"attack"`
	// Attempts, Held and Refused are the attacker's: connection attempts
	// (or commands), those it held (or that were answered), and those
	// refused or closed (for the command floods: sessions that never got
	// in, each dialling again every floodRedial while refused).
	Attempts int64 `json:"attempts"`
	Held     int64 `json:"held"`
	Refused  int64 `json:"refused"`
	// RelayCPUPercent is the relay's CPU over the attack (100 = a core);
	// RelayRSS its RSS at the end.
	RelayCPUPercent float64 `json:"relay_cpu_percent"`
	RelayRSS        int64   `json:"relay_rss_bytes"`
	// ConnectMS is a new honest connection's dial time, ConnectOK whether
	// it succeeded at the first try.
	ConnectMS float64 `json:"connect_ms"`
	ConnectOK bool    `json:"connect_ok"`
	// PingP99MS and DeliverP99MS are the honest client's PING round trip
	// and send-to-deliver latency, 99th percentile; Delivered the
	// messages delivered, Failures its failed commands.
	PingP99MS    float64 `json:"ping_p99_ms"`
	DeliverP99MS float64 `json:"deliver_p99_ms"`
	Delivered    int     `json:"delivered"`
	Failures     int64   `json:"failures"`
	// ReleaseMS is how long the relay took, once the attacker closed
	// what it held, to come back to the honest client's connections.
	ReleaseMS float64 `json:"release_ms"`
}

type attackResult struct {
	Transport string      `json:"transport"`
	Seconds   float64     `json:"seconds_per_attack"`
	Rows      []attackRow `json:"rows"`
}

var allAttacks = []string{"quiet", "idle-tls", "idle-quic", "slowloris", "garbage", "new-flood"}

func runAttackCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &attackOptions{}
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	addCommonFlags(fs, &o.commonOptions)
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "honest traffic measured under each attack")
	addAttackFlags(fs, o)
	fs.DurationVar(&o.sendEvery, "every", 20*time.Millisecond, "the honest client's interval between a PING and a message")
	fs.IntVar(&o.maxPerAddress, "relay-max-sessions-per-address", 0, "the started relay's connections per source address (0: the relay default, 256)")
	fs.IntVar(&o.maxHandshakes, "relay-max-handshakes", 0, "the started relay's handshakes in progress (0: the relay default, 512; one address holds a sixteenth of them, one /24 a quarter)")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "how long each attack runs before the measurement starts (a command flood also until all its sessions got in, at most 30 s more), and the pause after it")
	only := fs.String("attacks", "", "comma-separated attacks to run (default all): idle-tls, idle-quic, slowloris, garbage, new-flood")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		return err
	}
	if o.relayAddr != "" {
		return usageError{"attack starts its own relay: --relay is not supported"}
	}
	o.attacks = allAttacks
	if *only != "" {
		o.attacks = []string{"quiet"}
		for _, a := range splitComma(*only) {
			if !slices.Contains(allAttacks, a) {
				return usageError{fmt.Sprintf("--attacks: unknown attack %q", a)}
			}
			if a != "quiet" {
				o.attacks = append(o.attacks, a)
			}
		}
	}
	res, err := runAttack(ctx, o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	printAttack(stdout, res)
	return nil
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		if i > 0 {
			out = append(out, s[:i])
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// honest is the honest client: a sender and a subscribed receiver on one
// queue, over the chosen transport, from 127.0.0.1.
type honest struct {
	send, recv *link.Conn
	q          link.Queue
	senderKey  *ecdh.PrivateKey
	base       time.Time

	mu        sync.Mutex
	delivered []time.Duration
}

func newHonest(ctx context.Context, addr queue.Address, cfg link.Config) (*honest, error) {
	conns, err := dialMany(ctx, addr, cfg, 2)
	if err != nil {
		return nil, err
	}
	h := &honest{recv: conns[0], send: conns[1], base: time.Now()}
	if h.q, err = h.recv.Create(ctx); err != nil {
		closeAll(conns)
		return nil, err
	}
	if h.senderKey, err = queue.GenerateKey(); err != nil {
		closeAll(conns)
		return nil, err
	}
	if err := h.recv.Secure(ctx, h.q, queue.PublicKey(h.senderKey)); err != nil {
		closeAll(conns)
		return nil, err
	}
	if err := h.recv.Subscribe(ctx, h.q); err != nil {
		closeAll(conns)
		return nil, err
	}
	go func() {
		for ev := range h.recv.Events() {
			if ev.Kind != link.EventMessage || ev.Err != nil || len(ev.Message.Body) < 8 {
				continue
			}
			sent := time.Duration(binary.BigEndian.Uint64(ev.Message.Body))
			lat := time.Since(h.base) - sent
			h.mu.Lock()
			h.delivered = append(h.delivered, lat)
			h.mu.Unlock()
			ackCtx, cancel := context.WithTimeout(context.Background(), wireTimeout)
			h.recv.Ack(ackCtx, h.q, ev.Message.ID)
			cancel()
		}
	}()
	return h, nil
}

func (h *honest) Close() { h.send.Close(); h.recv.Close() }

// measure runs the honest traffic for d: every interval, a PING and a
// message. It fills the honest fields of row.
func (h *honest) measure(ctx context.Context, d, every time.Duration, row *attackRow) {
	h.mu.Lock()
	h.delivered = h.delivered[:0]
	h.mu.Unlock()
	var pings []time.Duration
	var failures int64
	body := make([]byte, 256)
	t := time.NewTicker(every)
	defer t.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		<-t.C
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		if err := h.send.Ping(cctx); err != nil {
			failures++
		} else {
			pings = append(pings, time.Since(start))
		}
		binary.BigEndian.PutUint64(body, uint64(time.Since(h.base)))
		if err := h.send.Send(cctx, h.q.SenderID, h.senderKey, body); err != nil {
			failures++
		}
		cancel()
	}
	time.Sleep(500 * time.Millisecond) // the last deliveries
	h.mu.Lock()
	lat := slices.Clone(h.delivered)
	h.mu.Unlock()
	slices.Sort(lat)
	slices.Sort(pings)
	row.Delivered = len(lat)
	row.Failures = failures
	if len(pings) > 0 {
		row.PingP99MS = ms(percentile(pings, 99))
	}
	if len(lat) > 0 {
		row.DeliverP99MS = ms(percentile(lat, 99))
	}
}

func runAttack(ctx context.Context, o *attackOptions) (*attackResult, error) {
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "hush-bench-attack-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	child, err := startChild(ctx, childOptions{dataDir: dir, capLoopback: true,
		maxPerAddress: o.maxPerAddress, maxHandshakes: o.maxHandshakes, cpuProfile: o.cpuProfile})
	if err != nil {
		return nil, err
	}
	defer child.Stop()
	addr := child.addr
	cfg := link.Config{Transport: link.Transport(o.transport)}
	h, err := newHonest(ctx, addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("honest client: %w", err)
	}
	defer h.Close()
	// The honest client's connections: after each attack, the relay must
	// come back to these before the next starts, or the attacks' source
	// address would still hold its share of the per-address cap.
	baseline, err := child.Connections(ctx)
	if err != nil {
		return nil, err
	}
	res := &attackResult{Transport: o.transport, Seconds: o.duration.Seconds()}
	for _, name := range o.attacks {
		o.progressf("%s: %v of honest traffic", name, o.duration)
		row := attackRow{Attack: name}
		var st attackStats
		var attacker *attackerProc
		if name != "quiet" {
			if attacker, err = startAttacker(name, addr, o); err != nil {
				return nil, err
			}
			// Let the attack build up before measuring: --settle, and
			// until the attacker says it has.
			sleepCtx(ctx, o.settle)
			if !attacker.waitReady(ctx) && ctx.Err() == nil {
				o.progressf("%s: not built up after %v more; measuring anyway", name, attackerReadyTimeout)
			}
		}
		cpu0, wall0 := sampleChildCPU(child), time.Now()
		start := time.Now()
		c, err := link.Dial(ctx, addr, cfg)
		row.ConnectMS, row.ConnectOK = ms(time.Since(start)), err == nil
		if c != nil {
			c.Close()
		}
		h.measure(ctx, o.duration, o.sendEvery, &row)
		if cpu1 := sampleChildCPU(child); cpu0 >= 0 && cpu1 >= 0 {
			row.RelayCPUPercent = 100 * (cpu1 - cpu0).Seconds() / time.Since(wall0).Seconds()
		}
		if s, err := child.Sample(); err == nil {
			row.RelayRSS = s.RSS
		}
		if attacker != nil {
			if err := attacker.stop(&st); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		row.Attempts, row.Held, row.Refused = st.attempts.Load(), st.held.Load(), st.refused.Load()
		// The attacker closed everything it held: the relay lets go of the
		// attack, then rests.
		released := time.Now()
		if err := waitConnections(ctx, child, baseline); err != nil {
			return nil, fmt.Errorf("after %s: %w", name, err)
		}
		row.ReleaseMS = ms(time.Since(released))
		res.Rows = append(res.Rows, row)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sleepCtx(ctx, o.settle)
	}
	return res, nil
}

// releaseTimeout bounds the wait for the relay to let go of an attack's
// connections once the attacker closed them.
const releaseTimeout = 30 * time.Second

// waitConnections waits until the child's relay holds at most n
// connections, at most releaseTimeout.
func waitConnections(ctx context.Context, child *relayChild, n int) error {
	end := time.Now().Add(releaseTimeout)
	for {
		held, err := child.Connections(ctx)
		if err != nil {
			return err
		}
		if held <= n {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("the relay still holds %d connections %v after the attack, want at most %d", held, releaseTimeout, n)
		}
		sleepCtx(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func sampleChildCPU(c *relayChild) time.Duration {
	s, err := c.Sample()
	if err != nil {
		return -1
	}
	return s.CPU
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// attackStats are an attack's counts.
//
// in counts the command floods' sessions that got in; it stays in the
// attacker process.
type attackStats struct{ attempts, held, refused, in atomic.Int64 }

// launch runs one attack until ctx is done, then releases what it holds
// (in the attacker process).
func (o *attackOptions) launch(ctx context.Context, name string, addr queue.Address, st *attackStats) {
	switch name {
	case "idle-tls":
		idleFlood(ctx, addr, o.idleTLS, o.openRate, st, dialIdleTLS)
	case "idle-quic":
		dial, closeTransports := newQUICDialer()
		idleFlood(ctx, addr, o.idleQUIC, o.openRate, st, dial)
		closeTransports()
	case "slowloris":
		slowloris(ctx, addr, o.loris, st)
	case "garbage":
		commandFlood(ctx, addr, o.garbage, st, garbageBlock)
	case "new-flood":
		commandFlood(ctx, addr, o.newFlood, st, newBlock)
	}
}

func attackTLSConf() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}, MinVersion: tls.VersionTLS13}
}

// dialIdleTLS opens a TLS session from attackSource and sends the hush
// ClientHello; the returned closer ends it.
func dialIdleTLS(ctx context.Context, addr queue.Address) (io.Closer, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackSource)}}
	c, err := d.DialContext(ctx, "tcp", addr.HostPort())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, attackTLSConf())
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := tc.Write(hello.AppendBlock(nil)); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// newQUICDialer returns a dialer of idle QUIC sessions from attackSource,
// many connections sharing each UDP socket, and the function that closes
// those sockets. It must be called only after every connection dialled
// was closed: a connection whose socket is gone cannot send its
// CONNECTION_CLOSE, and the relay would count it until its idle timeout,
// against the per-address cap of the attacks that follow.
func newQUICDialer() (dial func(context.Context, queue.Address) (io.Closer, error), closeTransports func()) {
	var (
		mu    sync.Mutex
		tr    *quic.Transport
		count int
		all   []*quic.Transport
	)
	closeTransports = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, t := range all {
			t.Close()
			t.Conn.Close()
		}
		all, tr = nil, nil
	}
	dial = func(ctx context.Context, addr queue.Address) (io.Closer, error) {
		mu.Lock()
		if tr == nil || count >= 1000 {
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(attackSource)})
			if err != nil {
				mu.Unlock()
				return nil, err
			}
			tr, count = &quic.Transport{Conn: udp}, 0
			all = append(all, tr)
		}
		t := tr
		count++
		mu.Unlock()
		ua, err := net.ResolveUDPAddr("udp", addr.HostPort())
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		qc, err := t.Dial(hctx, ua, attackTLSConf(), &quic.Config{KeepAlivePeriod: 10 * time.Second, MaxIdleTimeout: time.Minute})
		if err != nil {
			return nil, err
		}
		s, err := qc.OpenStreamSync(hctx)
		if err != nil {
			qc.CloseWithError(0, "")
			return nil, err
		}
		hello := queue.ClientHello{Version: queue.MaxVersion}
		if _, err := s.Write(hello.AppendBlock(nil)); err != nil {
			qc.CloseWithError(0, "")
			return nil, err
		}
		return closerFunc(func() error { return qc.CloseWithError(0, "") }), nil
	}
	return dial, closeTransports
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// idleFlood tries to hold n sessions opened by dial, at most perSecond
// attempts a second, until ctx is done; it returns once it closed them.
func idleFlood(ctx context.Context, addr queue.Address, n int, perSecond float64, st *attackStats, dial func(context.Context, queue.Address) (io.Closer, error)) {
	lim := rate.NewLimiter(rate.Limit(perSecond), 64)
	var (
		mu   sync.Mutex
		held []io.Closer
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 64)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if lim.Wait(ctx) != nil {
			break
		}
		if st.held.Load() >= attackFDs {
			break // this process's descriptors
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st.attempts.Add(1)
			c, err := dial(ctx, addr)
			if err != nil {
				st.refused.Add(1)
				return
			}
			st.held.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}()
	}
	<-ctx.Done()
	wg.Wait()
	for _, c := range held {
		c.Close()
	}
}

// slowloris opens perSecond TCP connections a second from attackSource
// that never send a byte, holding each until the relay closes it or ctx
// is done, at most attackFDs at once. A connection the relay resets is
// counted as refused (a refusal is a reset: the time it takes to arrive
// tells nothing on a loaded machine), one it closes (the first-byte
// deadline) or held to the end as held.
func slowloris(ctx context.Context, addr queue.Address, perSecond int, st *attackStats) {
	lim := rate.NewLimiter(rate.Limit(perSecond), 64)
	sem := make(chan struct{}, attackFDs)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		if lim.Wait(ctx) != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st.attempts.Add(1)
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackSource)}}
			c, err := d.DialContext(ctx, "tcp", addr.HostPort())
			if err != nil {
				st.refused.Add(1)
				return
			}
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			_, err = c.Read(make([]byte, 1)) // until the relay closes it
			if ctx.Err() == nil && errors.Is(err, syscall.ECONNRESET) {
				st.refused.Add(1) // refused: the relay resets at once
			} else {
				st.held.Add(1) // closed at the first-byte deadline, or held to the end
			}
		}()
	}
	wg.Wait()
}

// floodRedial is how long a command flood's session waits before it
// dials again when the relay refused it (for example for its address's
// share of the handshakes in progress, while the other sessions dial).
const floodRedial = 100 * time.Millisecond

// commandFlood runs sessions sessions from attackSource, each sending
// blocks that build makes as fast as the relay reads them, until ctx is
// done; attempts counts the commands sent, held those answered, refused
// the sessions that never got in.
func commandFlood(ctx context.Context, addr queue.Address, sessions int, st *attackStats, build func(w *wireSession, b *queue.BlockBuilder) int) {
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := dialAttackWire(ctx, addr)
			for err != nil && ctx.Err() == nil {
				sleepCtx(ctx, floodRedial)
				w, err = dialAttackWire(ctx, addr)
			}
			if err != nil {
				st.refused.Add(1)
				return
			}
			st.in.Add(1)
			stop := context.AfterFunc(ctx, w.close)
			defer stop()
			defer w.close()
			go func() {
				buf := make([]byte, queue.BlockSize)
				var txs [][]byte
				for {
					if _, err := io.ReadFull(w.rw, buf); err != nil {
						return
					}
					txs, err = queue.ParseBlock(txs[:0], buf)
					if err != nil {
						return
					}
					st.held.Add(int64(len(txs)))
				}
			}()
			// One block, built once and sent again and again: the
			// attacker's CPU goes to the relay, not to making commands.
			var b queue.BlockBuilder
			b.Use(make([]byte, queue.BlockSize))
			n := int64(build(w, &b))
			block := b.Block()
			for ctx.Err() == nil {
				if _, err := w.rw.Write(block); err != nil {
					return
				}
				st.attempts.Add(n)
			}
		}()
	}
	wg.Wait()
}

// dialAttackWire opens a TLS session from attackSource and does the hush
// handshake.
func dialAttackWire(ctx context.Context, addr queue.Address) (*wireSession, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackSource)}}
	c, err := d.DialContext(ctx, "tcp", addr.HostPort())
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, attackTLSConf())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	w := &wireSession{rw: tc, closeFn: func() { tc.Close() }, buf: make([]byte, queue.BlockSize)}
	st := tc.ConnectionState()
	if w.binding, err = st.ExportKeyingMaterial(queue.BindingLabel, nil, queue.BindingSize); err != nil {
		w.close()
		return nil, err
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := tc.Write(hello.AppendBlock(nil)); err != nil {
		w.close()
		return nil, err
	}
	if _, err := io.ReadFull(tc, w.buf); err != nil {
		w.close()
		return nil, err
	}
	sh, err := queue.ParseServerHello(w.buf)
	if err != nil {
		w.close()
		return nil, err
	}
	w.sessKey = sh.SessionKey
	return w, nil
}

// garbageBlock fills b with SUBs of made-up recipient IDs and
// authorizations, which the relay answers ERR AUTH after the same work as
// for a real queue.
func garbageBlock(_ *wireSession, b *queue.BlockBuilder) int {
	n := 0
	for {
		t := queue.Transmission{CorrID: randBytes(queue.CorrIDSize), Entity: randBytes(queue.IDSize),
			Command: queue.Command{Tag: queue.TagSUB}, Auth: randBytes(queue.AuthSize)}
		tx := t.Append(nil)
		if !b.Fits(len(tx)) {
			return n
		}
		b.Add(tx)
		n++
	}
}

// newBlock fills b with 16 authorized NEW commands (no password: the
// started relay has none).
func newBlock(w *wireSession, b *queue.BlockBuilder) int {
	n := 0
	for range 16 {
		k, err1 := queue.GenerateKey()
		dh, err2 := queue.GenerateKey()
		if errors.Join(err1, err2) != nil {
			return n
		}
		t := queue.Transmission{CorrID: randBytes(queue.CorrIDSize),
			Command: queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(k), RecipientDHKey: queue.PublicKey(dh)}}
		ak, err := queue.AuthKey(k, w.sessKey, w.binding)
		if err != nil {
			return n
		}
		t.Auth = queue.AppendAuth(nil, &ak, t.AppendSigned(nil))
		tx := t.Append(nil)
		if !b.Fits(len(tx)) {
			return n
		}
		b.Add(tx)
		n++
	}
	return n
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func printAttack(w io.Writer, r *attackResult) {
	fmt.Fprintf(w, "attacks from %s, honest client over %s from 127.0.0.1, %.0f s of honest traffic each\n", attackSource, r.Transport, r.Seconds)
	fmt.Fprintf(w, "%-10s %9s %9s %9s %8s %10s %10s %9s %9s %9s %9s %9s\n",
		"attack", "attempts", "held", "refused", "relayCPU", "relayRSS", "connect", "ping p99", "dlvr p99", "delivered", "failures", "released")
	var quiet *attackRow
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Attack == "quiet" {
			quiet = row
		}
		connect := fmt.Sprintf("%.0fms", row.ConnectMS)
		if !row.ConnectOK {
			connect = "FAILED"
		}
		fmt.Fprintf(w, "%-10s %9d %9d %9d %7.0f%% %10s %10s %7.1fms %7.1fms %9d %9d %7.0fms\n",
			row.Attack, row.Attempts, row.Held, row.Refused, row.RelayCPUPercent, mib(row.RelayRSS),
			connect, row.PingP99MS, row.DeliverP99MS, row.Delivered, row.Failures, row.ReleaseMS)
	}
	if quiet != nil && quiet.PingP99MS > 0 && quiet.DeliverP99MS > 0 {
		for _, row := range r.Rows {
			if row.Attack != "quiet" {
				fmt.Fprintf(w, "%s: ping p99 %.1fx quiet, deliver p99 %.1fx quiet\n", row.Attack,
					row.PingP99MS/quiet.PingP99MS, row.DeliverP99MS/quiet.DeliverP99MS)
			}
		}
	}
}
