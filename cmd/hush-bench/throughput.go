//go:build linux

package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/gctune"
	"github.com/hushrelay/hush/queue"
)

// throughputOptions are the flags of the throughput scenario.
type throughputOptions struct {
	commonOptions
	senders    int
	receivers  int
	queues     int
	window     int
	backlog    int
	rate       float64
	body       int
	duration   time.Duration
	warmup     time.Duration
	drain      time.Duration
	clientProf string
	relays     int
	// minDelivered makes the window last past duration until at least
	// this many messages were first delivered in it through each relay.
	minDelivered int
}

// throughputResult is the throughput scenario's report. Relay-side figures
// are null with --relay.
type throughputResult struct {
	Scenario  string  `json:"scenario"`
	Transport string  `json:"transport"`
	Relays    int     `json:"relays"`
	Senders   int     `json:"senders"`
	Receivers int     `json:"receivers"`
	Queues    int     `json:"queues"`
	Window    int     `json:"window"`
	Body      int     `json:"body_bytes"`
	Rate      float64 `json:"offered_rate"` // msgs/s offered; 0: as fast as possible
	Seconds   float64 `json:"duration_s"`   // the measured window, after the warm-up

	MsgsPerSec  float64 `json:"msgs_per_sec"` // first deliveries in the window per second
	SentPerSec  float64 `json:"sent_per_sec"` // SENDs answered OK in the window per second
	P50         float64 `json:"p50_ms"`
	P90         float64 `json:"p90_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	LatencyN    int     `json:"latency_samples"`
	SentOK      int64   `json:"sent_ok"`   // SENDs answered OK, over the whole run
	Delivered   int64   `json:"delivered"` // distinct messages delivered, over the whole run
	Lost        int64   `json:"lost"`
	Duplicated  int64   `json:"duplicated"`
	Unexpected  int64   `json:"unexpected"`   // deliveries of messages never answered OK, unreadable MSGs, END or DELD events
	QuotaErrors int64   `json:"quota_errors"` // SENDs answered QUOTA (retried later, not counted as sent)
	SendErrors  int64   `json:"send_errors"`  // SENDs that failed otherwise
	AckErrors   int64   `json:"ack_errors"`

	CPUPerMsg       *float64 `json:"cpu_us_per_msg"`    // relay CPU µs per delivered message, in the window
	RelayCPUPercent *float64 `json:"relay_cpu_percent"` // relay CPU time / wall time, in the window (200 = 2 cores)
	RSS             *int64   `json:"rss_bytes"`         // relay VmRSS at the end of the window
	RSSAnon         *int64   `json:"rss_anon_bytes"`
	RSSFile         *int64   `json:"rss_file_bytes"`
	RSSPeak         *int64   `json:"rss_peak_bytes"`
	ClientCPUPerMsg float64  `json:"client_cpu_us_per_msg"` // this process (senders and receivers), in the window
	// OthersCPUPercent is the CPU time that processes other than the relay
	// and this one used during the window, over wall time (200 = 2
	// cores): other work on a shared machine.
	OthersCPUPercent *float64 `json:"others_cpu_percent"`
	// StealCPUPercent is the CPU time, over wall time, that the hypervisor
	// of a virtual machine gave to other guests while this one had work
	// (steal in /proc/stat): it slows the relay and the load generator
	// alike, and no process here is charged for it.
	StealCPUPercent *float64 `json:"steal_cpu_percent"`
	// PerRelay has each relay's part with --relays: its first deliveries
	// in the window per second, their share of all, and its CPU.
	PerRelay []relayShare `json:"per_relay"`
	// The relays' store and garbage collector in the window (summed over
	// the relays): group commits per second, operations per commit, the
	// mean time the oldest operation of a commit had been queued when it
	// began (behind the commit before and gathering), the mean duration
	// of a commit (fsync included), collections per second and their
	// stop-the-world pauses in ms per second.
	CommitsPerSec   *float64 `json:"relay_commits_per_sec"`
	OpsPerCommit    *float64 `json:"relay_ops_per_commit"`
	CommitWaitMs    *float64 `json:"relay_commit_wait_ms"`
	CommitMs        *float64 `json:"relay_commit_ms"`
	GCPerSec        *float64 `json:"relay_gc_per_sec"`
	GCPauseMsPerSec *float64 `json:"relay_gc_pause_ms_per_sec"`
	// The tail of the window's commits, from the relay's commit-duration
	// histogram (buckets doubling from 0.5 ms): the upper bound of the
	// bucket that holds the 99th percentile and of the highest bucket
	// used; and the longest stop-the-world pause of a collection in the
	// window. A message waits for the commit that stores it and for the
	// one before, so a long commit shows in the latency's tail.
	CommitP99Ms  *float64 `json:"relay_commit_p99_ms"`
	CommitMaxMs  *float64 `json:"relay_commit_max_ms"`
	GCPauseMaxMs *float64 `json:"relay_gc_pause_max_ms"`
}

// relayShare is one relay's part of a scale-out run.
type relayShare struct {
	MsgsPerSec      float64  `json:"msgs_per_sec"`
	Share           float64  `json:"share"` // of all first deliveries in the window, 0 to 1
	CPUPerMsg       *float64 `json:"cpu_us_per_msg"`
	RelayCPUPercent *float64 `json:"relay_cpu_percent"`
}

func runThroughputCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o throughputOptions
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	addCommonFlags(fs, &o.commonOptions)
	fs.IntVar(&o.senders, "senders", 2, "sender connections (S)")
	fs.IntVar(&o.receivers, "receivers", 2, "receiver connections (R), each subscribed to Q/R queues")
	fs.IntVar(&o.queues, "queues", 1024, "queues (Q); senders send to all of them in turn")
	fs.IntVar(&o.window, "window", 32, "SENDs in flight per sender connection")
	fs.IntVar(&o.backlog, "backlog", 0, "most messages sent and not yet delivered, over all queues; senders wait beyond (0: 4 per queue)")
	fs.Float64Var(&o.rate, "rate", 0, "offer this many messages per second in total (0: as fast as possible)")
	fs.IntVar(&o.body, "body", queue.MaxMessageSize, "SEND body size in bytes (at least 20)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long senders send, warm-up included")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "time excluded from the figures at the start (at most half of --duration)")
	fs.IntVar(&o.minDelivered, "min-delivered", 0, "the window lasts --duration and on until at least this many messages were first delivered in it through each relay (0: --duration only)")
	fs.DurationVar(&o.drain, "drain", 15*time.Second, "how long to wait, after sending, for every message to be delivered")
	fs.StringVar(&o.clientProf, "client-cpuprofile", "", "write a CPU profile of the load generator (this process) to this file")
	fs.IntVar(&o.relays, "relays", 1, "relays started (scale-out): queue i is on relay i mod N; every sender has a connection to each relay, and --receivers connections go to each")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case o.senders < 1 || o.receivers < 1 || o.window < 1:
		return usageError{"--senders, --receivers and --window must be at least 1"}
	case o.queues < o.receivers:
		return usageError{"--queues must be at least --receivers"}
	case o.body < bodyHeaderSize || o.body > queue.MaxMessageSize:
		return usageError{fmt.Sprintf("--body must be %d to %d", bodyHeaderSize, queue.MaxMessageSize)}
	case o.duration <= 0 || o.rate < 0 || o.backlog < 0 || o.minDelivered < 0:
		return usageError{"--duration must be positive, --rate, --backlog and --min-delivered not negative"}
	case o.relays < 1 || o.queues < o.relays*o.receivers:
		return usageError{"--relays must be at least 1, and --queues at least --relays times --receivers"}
	case o.relays > 1 && (o.relayAddr != "" || o.cpuProfile != "" || o.dataDir != ""):
		return usageError{"--relays starts its relays: --relay, --cpuprofile and --data are for one"}
	}
	o.warmup = min(max(o.warmup, 0), o.duration/2)
	if o.backlog == 0 {
		o.backlog = 4 * o.queues
	}
	// The load generator's garbage collector gets the headroom that
	// hush-relay gives the relay's (internal/gctune): each message
	// delivered allocates its body, and with Go's default target the
	// small live heap would be collected several times a second. GOGC in
	// the environment turns it off, for both processes.
	gcCtx, stopGC := context.WithCancel(ctx)
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		gctune.Run(gcCtx, gctune.DefaultHeadroom, os.Getenv)
	}()
	res, err := runThroughput(ctx, &o)
	stopGC()
	<-gcDone
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	printThroughput(stdout, res)
	return nil
}

// ackWorkers is how many goroutines acknowledge the messages of one
// receiver connection: long-lived, so that an ACK costs no goroutine start
// (and the growth of its stack) in the load generator.
const ackWorkers = 256

// ackJob is a message to acknowledge.
type ackJob struct {
	q  *benchQueue
	id queue.ID
}

// Message bodies start with a header that makes every message unique and
// carries its send time:
//
//	sender uint32 | seq uint64 | sent int64 (ns since the run's base time)
//
// and are padded with random bytes to the body size.
const bodyHeaderSize = 4 + 8 + 8

// msgKey identifies a message: sender << 40 | seq.
type msgKey uint64

// benchQueue is one queue with what its sender and recipient need.
type benchQueue struct {
	rq        link.Queue
	senderKey *ecdh.PrivateKey
	recv      int // index of the receiver connection subscribed to it
	relay     int // index of the relay holding it
}

// tracker records sends and deliveries. Its methods are safe for
// concurrent use.
type tracker struct {
	base    time.Time
	credits chan struct{} // the backlog: a token per message sent and not yet delivered

	// The measured window, in ns since base; set before the senders start.
	winStart, winEnd atomic.Int64

	sentInWin atomic.Int64
	quota     atomic.Int64
	sendErrs  atomic.Int64
	ackErrs   atomic.Int64

	mu sync.Mutex
	// state holds, per message, bit 0: answered OK; the rest: the
	// number of deliveries.
	state      map[msgKey]uint32
	sentOK     int64
	delivered  int64 // distinct messages delivered
	dups       int64
	unexpected int64
	delivInWin int64
	latencies  []time.Duration // of messages sent in the window
}

func (t *tracker) now() int64 { return int64(time.Since(t.base)) }

func (t *tracker) inWindow(ns int64) bool {
	return ns >= t.winStart.Load() && ns < t.winEnd.Load()
}

// sent records a SEND answered OK.
func (t *tracker) sent(k msgKey, sentAt int64) {
	if t.inWindow(sentAt) {
		t.sentInWin.Add(1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state[k] |= 1
	t.sentOK++
}

// deliveredMsg records a delivered body. It reports whether it was a
// first delivery in the window.
func (t *tracker) deliveredMsg(body []byte, at int64) bool {
	if len(body) < bodyHeaderSize {
		t.mu.Lock()
		t.unexpected++
		t.mu.Unlock()
		return false
	}
	k := msgKey(uint64(binary.BigEndian.Uint32(body))<<40 | binary.BigEndian.Uint64(body[4:]))
	sentAt := int64(binary.BigEndian.Uint64(body[12:]))
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state[k]
	t.state[k] = s + 2
	if s>>1 > 0 {
		t.dups++
		return false
	}
	t.delivered++
	inWin := t.inWindow(at)
	if inWin {
		t.delivInWin++
	}
	if t.inWindow(sentAt) {
		t.latencies = append(t.latencies, time.Duration(at-sentAt))
	}
	select {
	case <-t.credits:
	default:
	}
	return inWin
}

// missing returns the messages answered OK and never delivered, and the
// deliveries of messages never answered OK.
func (t *tracker) missing() (lost, unknown int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.state {
		switch {
		case s&1 != 0 && s>>1 == 0:
			lost++
		case s&1 == 0 && s>>1 > 0:
			unknown++
		}
	}
	return lost, unknown
}

func runThroughput(ctx context.Context, o *throughputOptions) (*throughputResult, error) {
	targets := make([]*relayTarget, o.relays)
	defer func() {
		for _, t := range targets {
			if t != nil {
				t.Close()
			}
		}
	}()
	for r := range targets {
		t, err := startTarget(ctx, &o.commonOptions, 0, 0)
		if err != nil {
			return nil, err
		}
		targets[r] = t
	}
	target := targets[0]

	// receivers[r*o.receivers+j] is receiver j of relay r; senders[si][r]
	// sender si's connection to relay r.
	cfg := link.Config{Transport: link.Transport(o.transport)}
	var receivers []*link.Conn
	defer func() { closeAll(receivers) }()
	senders := make([][]*link.Conn, o.senders)
	defer func() {
		for _, s := range senders {
			closeAll(s)
		}
	}()
	for _, t := range targets {
		rc, err := dialMany(ctx, t.addr, cfg, o.receivers)
		if err != nil {
			return nil, err
		}
		receivers = append(receivers, rc...)
		sc, err := dialMany(ctx, t.addr, cfg, o.senders)
		if err != nil {
			return nil, err
		}
		for si := range senders {
			senders[si] = append(senders[si], sc[si])
		}
	}

	o.progressf("creating %d queues over %s", o.queues, o.transport)
	queues := make([]*benchQueue, o.queues)
	err := parallel(ctx, o.queues, 64, func(ctx context.Context, i int) error {
		relay := i % o.relays
		recv := relay*o.receivers + (i/o.relays)%o.receivers
		rc := receivers[recv]
		rq, err := rc.Create(ctx)
		if err != nil {
			return fmt.Errorf("create queue: %w", err)
		}
		sk, err := queue.GenerateKey()
		if err != nil {
			return err
		}
		if err := rc.Secure(ctx, rq, queue.PublicKey(sk)); err != nil {
			return fmt.Errorf("secure queue: %w", err)
		}
		queues[i] = &benchQueue{rq: rq, senderKey: sk, recv: recv, relay: relay}
		return nil
	})
	if err != nil {
		return nil, err
	}
	byRID := make(map[queue.ID]*benchQueue, len(queues))
	for _, q := range queues {
		byRID[q.rq.RecipientID] = q
	}

	t := &tracker{
		base:    time.Now(),
		credits: make(chan struct{}, o.backlog),
		state:   make(map[msgKey]uint32),
	}
	t.winStart.Store(math.MaxInt64)
	t.winEnd.Store(math.MaxInt64)

	// Receivers: record each message and acknowledge it at once, on one
	// of ackWorkers goroutines per receiver, which wait for the OKs (the
	// relay allows one unacknowledged message per queue, so at most Q
	// acknowledgements are in flight, and a receiver's channel of them
	// never fills).
	ackCtx, stopAcks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAcks()
	var recvWG, ackWG sync.WaitGroup
	perRelay := make([]atomic.Int64, o.relays) // first deliveries in the window
	for ri, rc := range receivers {
		relay := ri / o.receivers
		acks := make(chan ackJob, o.queues)
		for range ackWorkers {
			ackWG.Go(func() {
				for a := range acks {
					if err := rc.Ack(ackCtx, a.q.rq, a.id); err != nil && ackCtx.Err() == nil {
						t.ackErrs.Add(1)
					}
				}
			})
		}
		recvWG.Go(func() {
			defer close(acks)
			for ev := range rc.Events() {
				at := t.now()
				if ev.Kind != link.EventMessage || ev.Err != nil {
					t.mu.Lock()
					t.unexpected++
					t.mu.Unlock()
					if ev.Kind != link.EventMessage {
						continue
					}
				} else if t.deliveredMsg(ev.Message.Body, at) {
					perRelay[relay].Add(1)
				}
				if q := byRID[ev.RecipientID]; q != nil {
					acks <- ackJob{q, ev.Message.ID}
				}
			}
		})
	}
	defer func() {
		stopAcks()
		closeAll(receivers) // ends the event loops, and so new acknowledgements
		receivers = nil
		recvWG.Wait()
		ackWG.Wait()
	}()
	err = parallel(ctx, o.queues, 64, func(ctx context.Context, i int) error {
		q := queues[i]
		if err := receivers[q.recv].Subscribe(ctx, q.rq); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	if o.rate > 0 {
		o.progressf("sending %d-byte messages at %.0f msgs/s for %v", o.body, o.rate, o.duration)
	} else {
		o.progressf("sending %d-byte messages as fast as possible for %v", o.body, o.duration)
	}
	// The window starts after the warm-up and ends when the senders stop.
	start := t.now()
	t.winStart.Store(start + int64(o.warmup))
	// In-flight SENDs finish after the window, within childTimeout: their
	// outcome must be known to count losses.
	sendCtx, cancelSends := context.WithCancel(ctx)
	defer cancelSends()
	stopCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	// The window ends at --duration, or once --min-delivered messages
	// were delivered in it through each relay if that is later: so that
	// a slow machine makes the window longer, not empty.
	go func() {
		if sleepUntil(stopCtx, t.base.Add(time.Duration(start)+o.duration)) != nil {
			return
		}
		for stopCtx.Err() == nil {
			enough := true
			for r := range perRelay {
				enough = enough && perRelay[r].Load() >= int64(o.minDelivered)
			}
			if enough {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		stopSending()
	}()
	var (
		fatalOnce sync.Once
		fatal     error
		next      atomic.Uint64
		sendWG    sync.WaitGroup
	)
	fail := func(err error) {
		fatalOnce.Do(func() { fatal = err; stopSending() })
	}
	for si, scs := range senders {
		var lim *rate.Limiter
		if o.rate > 0 {
			lim = rate.NewLimiter(rate.Limit(o.rate/float64(o.senders)), 1)
		}
		var seq atomic.Uint64
		for range o.window {
			sendWG.Add(1)
			go func() {
				defer sendWG.Done()
				body := make([]byte, o.body)
				rand.Read(body)
				binary.BigEndian.PutUint32(body, uint32(si))
				for {
					select {
					case t.credits <- struct{}{}:
					case <-stopCtx.Done():
						return
					}
					if lim != nil && lim.Wait(stopCtx) != nil {
						<-t.credits
						return
					}
					if stopCtx.Err() != nil {
						<-t.credits
						return
					}
					q := queues[next.Add(1)%uint64(len(queues))]
					s := seq.Add(1)
					sentAt := t.now()
					binary.BigEndian.PutUint64(body[4:], s)
					binary.BigEndian.PutUint64(body[12:], uint64(sentAt))
					err := scs[q.relay].Send(sendCtx, q.rq.SenderID, q.senderKey, body)
					switch {
					case err == nil:
						t.sent(msgKey(uint64(si)<<40|s), sentAt)
						continue
					case errors.Is(err, queue.QUOTA):
						t.quota.Add(1)
						time.Sleep(5 * time.Millisecond)
					case errors.Is(err, link.ErrClosed), sendCtx.Err() != nil:
						fail(fmt.Errorf("send: %w", err))
					default:
						t.sendErrs.Add(1)
					}
					<-t.credits
				}
			}()
		}
	}
	select {
	case <-time.After(o.warmup):
	case <-stopCtx.Done():
	}
	cpu0s, rus0 := sampleCPUs(targets), clientCPU()
	busy0, steal0, busyErr0 := machineCPU()
	st0, stErr0 := sampleStats(ctx, targets)
	stopProfile, err := startCPUProfile(o.clientProf)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	<-stopCtx.Done()
	stopProfile()
	winEnd := t.now()
	t.winEnd.Store(winEnd)
	sendBound := time.AfterFunc(childTimeout, cancelSends)
	defer sendBound.Stop()
	cpu1s, rus1 := sampleCPUs(targets), clientCPU()
	busy1, steal1, busyErr1 := machineCPU()
	st1, stErr1 := sampleStats(ctx, targets)
	var mem procSample // summed over the relays
	for _, t := range targets {
		if t.child == nil {
			continue
		}
		s, _ := t.child.Sample()
		mem.RSS, mem.RSSAnon, mem.RSSFile, mem.Peak = mem.RSS+s.RSS, mem.RSSAnon+s.RSSAnon, mem.RSSFile+s.RSSFile, mem.Peak+s.Peak
	}
	sendWG.Wait()
	if fatal != nil {
		return nil, fatal
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Drain: wait until every message answered OK has been delivered.
	o.progressf("draining")
	deadline := time.Now().Add(o.drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		t.mu.Lock()
		done := t.delivered >= t.sentOK
		t.mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A little more, so that duplicates would show.
	time.Sleep(200 * time.Millisecond)
	lost, unknown := t.missing()

	win := time.Duration(winEnd - t.winStart.Load())
	t.mu.Lock()
	lat := slices.Clone(t.latencies)
	delivInWin := t.delivInWin
	res := &throughputResult{
		Scenario: "throughput", Transport: o.transport, Relays: o.relays,
		Senders: o.senders, Receivers: o.receivers, Queues: o.queues, Window: o.window,
		Body: o.body, Rate: o.rate, Seconds: win.Seconds(),
		MsgsPerSec:  float64(delivInWin) / win.Seconds(),
		SentPerSec:  float64(t.sentInWin.Load()) / win.Seconds(),
		SentOK:      t.sentOK,
		Delivered:   t.delivered,
		Lost:        lost,
		Duplicated:  t.dups,
		Unexpected:  t.unexpected + unknown,
		QuotaErrors: t.quota.Load(),
		SendErrors:  t.sendErrs.Load(),
		AckErrors:   t.ackErrs.Load(),
		LatencyN:    len(lat),
	}
	t.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = ms(percentile(lat, 50))
		res.P90 = ms(percentile(lat, 90))
		res.P99 = ms(percentile(lat, 99))
		res.Max = ms(lat[len(lat)-1])
	}
	if delivInWin > 0 {
		res.ClientCPUPerMsg = float64((rus1 - rus0).Microseconds()) / float64(delivInWin)
	}
	var cpu0, cpu1 time.Duration = -1, -1
	if !slices.Contains(cpu0s, -1) && !slices.Contains(cpu1s, -1) {
		cpu0, cpu1 = 0, 0
		for r := range targets {
			cpu0, cpu1 = cpu0+cpu0s[r], cpu1+cpu1s[r]
		}
	}
	if o.relays > 1 {
		for r := range targets {
			n := perRelay[r].Load()
			sh := relayShare{MsgsPerSec: float64(n) / win.Seconds()}
			if delivInWin > 0 {
				sh.Share = float64(n) / float64(delivInWin)
			}
			if cpu0 >= 0 && cpu1 >= 0 {
				cpu := cpu1s[r] - cpu0s[r]
				pct := 100 * cpu.Seconds() / win.Seconds()
				sh.RelayCPUPercent = &pct
				if n > 0 {
					per := float64(cpu.Microseconds()) / float64(n)
					sh.CPUPerMsg = &per
				}
			}
			res.PerRelay = append(res.PerRelay, sh)
		}
	}
	if target.child != nil && cpu0 >= 0 && cpu1 >= 0 {
		cpu := cpu1 - cpu0
		pct := 100 * cpu.Seconds() / win.Seconds()
		res.RelayCPUPercent = &pct
		if delivInWin > 0 {
			per := float64(cpu.Microseconds()) / float64(delivInWin)
			res.CPUPerMsg = &per
		}
		res.RSS, res.RSSAnon, res.RSSFile, res.RSSPeak = &mem.RSS, &mem.RSSAnon, &mem.RSSFile, &mem.Peak
		if busyErr0 == nil && busyErr1 == nil {
			others := 100 * max(0, (busy1-busy0)-cpu-(rus1-rus0)).Seconds() / win.Seconds()
			steal := 100 * (steal1 - steal0).Seconds() / win.Seconds()
			res.OthersCPUPercent, res.StealCPUPercent = &others, &steal
		}
	}
	if target.child != nil && stErr0 == nil && stErr1 == nil {
		commits := st1.Commits - st0.Commits
		perSec := commits / win.Seconds()
		gc := float64(st1.NumGC-st0.NumGC) / win.Seconds()
		pause := float64(st1.GCPauseNs-st0.GCPauseNs) / 1e6 / win.Seconds()
		res.CommitsPerSec, res.GCPerSec, res.GCPauseMsPerSec = &perSec, &gc, &pause
		if commits > 0 {
			ops := (st1.CommitOps - st0.CommitOps) / commits
			wait := 1000 * (st1.CommitWaitSeconds - st0.CommitWaitSeconds) / commits
			dur := 1000 * (st1.CommitSeconds - st0.CommitSeconds) / commits
			res.OpsPerCommit, res.CommitWaitMs, res.CommitMs = &ops, &wait, &dur
		}
		if p99, top, ok := bucketTail(st0.CommitBounds, st0.CommitBuckets, st1.CommitBuckets, 0.99); ok {
			p99, top = 1000*p99, 1000*top
			res.CommitP99Ms, res.CommitMaxMs = &p99, &top
		}
		gcMax := float64(st1.GCPauseMaxNs) / 1e6
		res.GCPauseMaxMs = &gcMax
	}
	return res, nil
}

// sampleStats returns the sum of the relay children's stats (store and
// garbage collector counters); an error if a target has no child.
func sampleStats(ctx context.Context, targets []*relayTarget) (childStats, error) {
	var sum childStats
	for _, t := range targets {
		if t.child == nil {
			return sum, errors.New("no relay child")
		}
		s, err := t.child.Stats(ctx)
		if err != nil {
			return sum, err
		}
		sum.NumGC += s.NumGC
		sum.GCPauseNs += s.GCPauseNs
		sum.Commits += s.Commits
		sum.CommitOps += s.CommitOps
		sum.CommitSeconds += s.CommitSeconds
		sum.CommitWaitSeconds += s.CommitWaitSeconds
		sum.GCPauseMaxNs = max(sum.GCPauseMaxNs, s.GCPauseMaxNs)
		switch {
		case sum.CommitBuckets == nil:
			sum.CommitBounds, sum.CommitBuckets = s.CommitBounds, slices.Clone(s.CommitBuckets)
		case slices.Equal(sum.CommitBounds, s.CommitBounds):
			for i, c := range s.CommitBuckets {
				sum.CommitBuckets[i] += c
			}
		}
	}
	return sum, nil
}

// bucketTail returns, for the observations that cumulative histogram
// counts c1 has and c0 (the same histogram earlier) has not, the upper
// bound of the bucket that holds quantile q and that of the highest bucket
// with any; ok is false if there are none, or if some fall beyond the last
// bound. bounds are the buckets' upper bounds, increasing.
func bucketTail(bounds, c0, c1 []float64, q float64) (quantile, top float64, ok bool) {
	if len(bounds) == 0 || len(c0) != len(bounds) || len(c1) != len(bounds) {
		return 0, 0, false
	}
	last := len(bounds) - 1
	n := c1[last] - c0[last]
	if n <= 0 {
		return 0, 0, false
	}
	quantile, top = -1, -1
	for i := range bounds {
		d := c1[i] - c0[i]
		if quantile < 0 && d >= q*n {
			quantile = bounds[i]
		}
		if top < 0 && d >= n {
			top = bounds[i]
		}
	}
	return quantile, top, quantile >= 0 && top >= 0
}

// sampleCPUs returns each relay child's CPU time, -1 without a child.
func sampleCPUs(targets []*relayTarget) []time.Duration {
	cpu := make([]time.Duration, len(targets))
	for i, t := range targets {
		cpu[i] = sampleCPU(t)
	}
	return cpu
}

// sampleCPU returns the relay child's CPU time, or -1 without a child.
func sampleCPU(target *relayTarget) time.Duration {
	if target.child == nil {
		return -1
	}
	s, err := target.child.Sample()
	if err != nil {
		return -1
	}
	return s.CPU
}

// clientCPU returns this process's user and system CPU time.
func clientCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func printThroughput(w io.Writer, r *throughputResult) {
	if r.Relays > 1 {
		fmt.Fprintf(w, "%d relays; ", r.Relays)
	}
	fmt.Fprintf(w, "throughput over %s: %d senders (window %d), %d receivers, %d queues, %d-byte bodies", r.Transport, r.Senders, r.Window, r.Receivers, r.Queues, r.Body)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", offered %.0f msgs/s", r.Rate)
	}
	fmt.Fprintf(w, ", %.1f s measured\n", r.Seconds)
	fmt.Fprintf(w, "delivered      %.0f msgs/s (sent %.0f msgs/s)\n", r.MsgsPerSec, r.SentPerSec)
	fmt.Fprintf(w, "latency        p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d samples)\n", r.P50, r.P90, r.P99, r.Max, r.LatencyN)
	if r.CPUPerMsg != nil {
		fmt.Fprintf(w, "relay CPU      %.0f µs/msg (%.0f%% of one core)\n", *r.CPUPerMsg, *r.RelayCPUPercent)
	}
	for i, sh := range r.PerRelay {
		fmt.Fprintf(w, "relay %d        %.0f msgs/s, %.1f%% of the messages", i, sh.MsgsPerSec, 100*sh.Share)
		if sh.CPUPerMsg != nil {
			fmt.Fprintf(w, ", %.0f µs/msg (%.0f%% of one core)", *sh.CPUPerMsg, *sh.RelayCPUPercent)
		}
		fmt.Fprintln(w)
	}
	if r.RSS != nil {
		fmt.Fprintf(w, "relay RSS      %s (anonymous %s, files %s; peak %s)\n", mib(*r.RSS), mib(*r.RSSAnon), mib(*r.RSSFile), mib(*r.RSSPeak))
	}
	if r.CommitsPerSec != nil && r.OpsPerCommit != nil {
		fmt.Fprintf(w, "relay store    %.0f commits/s, %.1f operations each; oldest queued %.2f ms, commit %.2f ms (means)",
			*r.CommitsPerSec, *r.OpsPerCommit, *r.CommitWaitMs, *r.CommitMs)
		if r.CommitP99Ms != nil {
			fmt.Fprintf(w, "; commit p99 <= %g ms, longest <= %g ms", *r.CommitP99Ms, *r.CommitMaxMs)
		}
		fmt.Fprintln(w)
	}
	if r.GCPerSec != nil {
		fmt.Fprintf(w, "relay GC       %.1f collections/s, pauses %.2f ms/s", *r.GCPerSec, *r.GCPauseMsPerSec)
		if r.GCPauseMaxMs != nil {
			fmt.Fprintf(w, ", longest %.2f ms", *r.GCPauseMaxMs)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "client CPU     %.0f µs/msg\n", r.ClientCPUPerMsg)
	if r.OthersCPUPercent != nil {
		fmt.Fprintf(w, "other work     %.0f%% of one core (other processes on this machine), %.0f%% stolen by the hypervisor\n", *r.OthersCPUPercent, *r.StealCPUPercent)
	}
	fmt.Fprintf(w, "lost           %d of %d sent\n", r.Lost, r.SentOK)
	fmt.Fprintf(w, "duplicated     %d\n", r.Duplicated)
	if r.Unexpected+r.QuotaErrors+r.SendErrors+r.AckErrors > 0 {
		fmt.Fprintf(w, "other          %d unexpected events, %d QUOTA, %d send errors, %d ack errors\n", r.Unexpected, r.QuotaErrors, r.SendErrors, r.AckErrors)
	}
}
