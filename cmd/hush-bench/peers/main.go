//go:build linux

// Command peers measures hush against two durable peers on the same
// machine, in the same run: NATS JetStream (file store, sync_interval
// always) and Redis (appendonly yes, appendfsync always). Each round runs,
// one after the other and never at once:
//
//   - hush-bench throughput over TLS/TCP and over QUIC (closed loop, 16,000
//     byte bodies, acknowledged once on disk; --hush-senders connections
//     with --hush-window SENDs in flight each, 4 x 16 by default, as many
//     in flight as JetStream's producer, and spread over enough sessions
//     that the relay's per-session SEND rate, 2,000 a second by default,
//     does not cap the run; its defaults otherwise);
//   - JetStream, twice: one producer publishing 16,000-byte messages with
//     --window asynchronous publishes in flight, each answered once stored
//     (fsync), and at most --js-backlog messages published and not yet
//     delivered, so that the consumer keeps up; one pull consumer
//     (Consume). "jetstream" is a work-queue stream whose consumer
//     acknowledges each message (the ack deletes it); "js-limits" is a
//     limits stream whose consumer acknowledges in batches (ack all).
//     Delivered msgs/s, send-to-deliver latency and nats-server's CPU per
//     message;
//   - redis-benchmark -t lpush,rpop -d 16384 -c 50 (plain TCP, no TLS)
//     against redis-server with the automatic AOF rewrite off; its
//     push+pop rate is 1 / (1/LPUSH + 1/RPOP).
//
// It prints every run, the median of the rounds and the ratios of hush's
// medians to the peers', to JetStream's faster configuration. Why each
// peer is set up so is in docs/performance.md, "The peers, configured". It is a module of its own, so that hush does not
// depend on the NATS client; see docs/performance.md for how to run it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type options struct {
	hushBench   string
	natsServer  string
	redisServer string
	redisBench  string
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	body        int
	window      int
	hushSenders int
	hushWindow  int
	redisN      int
	redisC      int
	only        string
	js          jsConfig
	redisArgs   string
	benchArgs   string
}

func main() {
	var o options
	flag.StringVar(&o.hushBench, "hush-bench", "hush-bench", "the hush-bench executable")
	flag.StringVar(&o.natsServer, "nats-server", "nats-server", "the nats-server executable")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "the redis-server executable")
	flag.StringVar(&o.redisBench, "redis-benchmark", "redis-benchmark", "the redis-benchmark executable")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; medians are taken over them")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "each hush and JetStream run, warm-up included")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "left out of the figures at the start of each hush and JetStream run")
	flag.IntVar(&o.body, "body", 16000, "message body bytes (hush and JetStream)")
	flag.IntVar(&o.window, "window", 64, "JetStream publishes in flight (hush-bench: --hush-senders x --hush-window)")
	flag.IntVar(&o.hushSenders, "hush-senders", 4, "hush-bench sender connections: each relay session may SEND 2,000 a second (relay.DefaultSendRate, a per-session limit), so 2 sessions cap the run at about 4,250 msgs/s")
	flag.IntVar(&o.hushWindow, "hush-window", 16, "hush-bench SENDs in flight per sender connection")
	flag.IntVar(&o.redisN, "redis-n", 50000, "redis-benchmark requests per test")
	flag.IntVar(&o.redisC, "redis-clients", 50, "redis-benchmark clients")
	flag.Int64Var(&o.js.maxBytes, "js-max-bytes", 1<<30, "js-limits: the stream's size in bytes, the oldest messages dropped beyond")
	flag.IntVar(&o.js.ackEvery, "js-ack-every", 64, "js-limits (ack all): acknowledge every this many deliveries, and a partial run after 5 ms")
	flag.StringVar(&o.js.pull, "js-pull", "consume", "JetStream consumer: consume (continuous pulls) or fetch (one batch at a time)")
	flag.IntVar(&o.js.batch, "js-batch", 256, "JetStream messages per pull")
	flag.IntVar(&o.js.maxAckPending, "js-max-ack-pending", 4096, "JetStream consumer MaxAckPending")
	flag.IntVar(&o.js.backlog, "js-backlog", 1024, "JetStream messages published and not yet delivered at most; the producer waits beyond")
	flag.StringVar(&o.redisArgs, "redis-server-args", "", "more redis-server arguments, separated by spaces or commas")
	flag.StringVar(&o.benchArgs, "redis-benchmark-args", "", "more redis-benchmark arguments, separated by spaces or commas")
	flag.StringVar(&o.only, "only", "hush-tcp,hush-quic,jetstream,js-limits,redis", "comma-separated systems to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// result is one run of one system.
type result struct {
	MsgsPerSec float64 `json:"msgs_per_sec"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	CPUPerMsg  float64 `json:"cpu_us_per_msg"` // the server's CPU per message, 0 if unknown
	Lost       int64   `json:"lost"`
	Note       string  `json:"note,omitempty"`
}

func run(ctx context.Context, o *options) error {
	dir, err := os.MkdirTemp("", "hush-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	systems := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		systems[s] = true
	}
	runs := map[string][]result{}
	order := []string{"hush-tcp", "hush-quic", "jetstream", "js-limits", "redis"}
	for round := 1; round <= o.rounds; round++ {
		for _, name := range order {
			if !systems[name] {
				continue
			}
			fmt.Fprintf(os.Stderr, "peers: round %d: %s\n", round, name)
			var r result
			var err error
			switch name {
			case "hush-tcp":
				r, err = runHush(ctx, o, "tcp")
			case "hush-quic":
				r, err = runHush(ctx, o, "quic")
			case "jetstream":
				jc := o.js
				jc.retention, jc.ack = "workqueue", "explicit"
				r, err = runJetStream(ctx, o, &jc, filepath.Join(dir, fmt.Sprintf("nats-%d", round)))
			case "js-limits":
				jc := o.js
				jc.retention, jc.ack = "limits", "all"
				r, err = runJetStream(ctx, o, &jc, filepath.Join(dir, fmt.Sprintf("js-limits-%d", round)))
			case "redis":
				r, err = runRedis(ctx, o, filepath.Join(dir, fmt.Sprintf("redis-%d", round)))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			lat := "p50 and p99 not measured (redis-benchmark)"
			if name != "redis" {
				lat = fmt.Sprintf("p50 %6.1f ms  p99 %6.1f ms", r.P50, r.P99)
			}
			fmt.Printf("round %d %-9s %8.0f msgs/s  %s  server CPU %5.0f µs/msg  lost %d %s\n",
				round, name, r.MsgsPerSec, lat, r.CPUPerMsg, r.Lost, r.Note)
			runs[name] = append(runs[name], r)
		}
	}
	med := map[string]float64{}
	fmt.Println()
	for _, name := range order {
		if len(runs[name]) == 0 {
			continue
		}
		var v, p99, cpu []float64
		for _, r := range runs[name] {
			v, p99, cpu = append(v, r.MsgsPerSec), append(p99, r.P99), append(cpu, r.CPUPerMsg)
		}
		med[name] = median(v)
		lat := "p99 not measured"
		if name != "redis" {
			lat = fmt.Sprintf("p99 %6.1f ms", median(p99))
		}
		fmt.Printf("median    %-9s %8.0f msgs/s  %s  server CPU %5.0f µs/msg  (runs %s)\n",
			name, med[name], lat, median(cpu), join(v))
	}
	fmt.Println()
	// hush is compared with the faster of JetStream's two configurations.
	js, against := med["jetstream"], "jetstream"
	if med["js-limits"] > js {
		js, against = med["js-limits"], "js-limits"
	}
	for _, p := range [][2]string{{"hush-tcp", "jetstream"}, {"hush-quic", "jetstream"}, {"hush-tcp", "redis"}, {"hush-quic", "redis"}} {
		peer, note := med[p[1]], ""
		if p[1] == "jetstream" {
			peer, note = js, fmt.Sprintf(" (%s, the faster JetStream configuration)", against)
		}
		if med[p[0]] > 0 && peer > 0 {
			fmt.Printf("ratio     %s / %s = %.2f%s\n", p[0], p[1], med[p[0]]/peer, note)
		}
	}
	return nil
}

// runHush runs hush-bench throughput over transport.
func runHush(ctx context.Context, o *options, transport string) (result, error) {
	cmd := exec.CommandContext(ctx, o.hushBench, "throughput", "--transport", transport,
		"--duration", o.duration.String(), "--warmup", o.warmup.String(), "--body", strconv.Itoa(o.body),
		"--senders", strconv.Itoa(o.hushSenders), "--window", strconv.Itoa(o.hushWindow), "--json")
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		return result{}, err
	}
	var r struct {
		MsgsPerSec float64  `json:"msgs_per_sec"`
		P50        float64  `json:"p50_ms"`
		P99        float64  `json:"p99_ms"`
		CPU        *float64 `json:"cpu_us_per_msg"`
		Lost       int64    `json:"lost"`
		Client     float64  `json:"client_cpu_us_per_msg"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, err
	}
	res := result{MsgsPerSec: r.MsgsPerSec, P50: r.P50, P99: r.P99, Lost: r.Lost,
		Note: fmt.Sprintf("(load generator %.0f µs/msg)", r.Client)}
	if r.CPU != nil {
		res.CPUPerMsg = *r.CPU
	}
	return res, nil
}

// jsConfig is how a JetStream run is set up; see the flags in main.
type jsConfig struct {
	retention     string // limits or workqueue
	maxBytes      int64  // limits retention: the stream's size, oldest dropped beyond
	ack           string // explicit or all
	ackEvery      int    // ack all: acknowledge every this many deliveries
	pull          string // consume or fetch
	batch         int    // messages per pull request
	maxAckPending int
	backlog       int // most messages published and not yet delivered
}

func (c *jsConfig) String() string {
	s := c.retention
	if c.retention == "limits" {
		s += fmt.Sprintf(" %d MB", c.maxBytes>>20)
	}
	s += ", ack " + c.ack
	if c.ack == "all" {
		s += fmt.Sprintf(" every %d", c.ackEvery)
	}
	return s + fmt.Sprintf(", %s %d, max ack pending %d, backlog %d", c.pull, c.batch, c.maxAckPending, c.backlog)
}

// runJetStream starts nats-server with JetStream on a file store that
// syncs every write, drives it for o.duration and stops it.
func runJetStream(ctx context.Context, o *options, jc *jsConfig, dir string) (result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nmax_payload: 1MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", port, filepath.Join(dir, "js")), 0o600); err != nil {
		return result{}, err
	}
	srv := exec.Command(o.natsServer, "-c", conf)
	srv.Stdout, srv.Stderr = io.Discard, io.Discard
	if err := srv.Start(); err != nil {
		return result{}, err
	}
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var pc, cc *nats.Conn
	for i := 0; ; i++ {
		if pc, err = nats.Connect(url); err == nil {
			break
		}
		if i == 50 {
			return result{}, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer pc.Close()
	if cc, err = nats.Connect(url); err != nil {
		return result{}, err
	}
	defer cc.Close()
	pjs, err := jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(o.window))
	if err != nil {
		return result{}, err
	}
	cjs, err := jetstream.New(cc)
	if err != nil {
		return result{}, err
	}
	sc := jetstream.StreamConfig{
		Name: "HUSHBENCH", Subjects: []string{"hushbench"}, Storage: jetstream.FileStorage,
	}
	switch jc.retention {
	case "limits":
		sc.Retention, sc.MaxBytes, sc.Discard = jetstream.LimitsPolicy, jc.maxBytes, jetstream.DiscardOld
	case "workqueue":
		sc.Retention = jetstream.WorkQueuePolicy
	default:
		return result{}, fmt.Errorf("unknown retention %q", jc.retention)
	}
	stream, err := pjs.CreateStream(ctx, sc)
	if err != nil {
		return result{}, err
	}
	cfg := jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: jc.maxAckPending}
	switch jc.ack {
	case "explicit":
	case "all":
		cfg.AckPolicy = jetstream.AckAllPolicy
	default:
		return result{}, fmt.Errorf("unknown ack policy %q", jc.ack)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, cfg); err != nil {
		return result{}, err
	}
	cons, err := cjs.Consumer(ctx, "HUSHBENCH", "bench")
	if err != nil {
		return result{}, err
	}

	base := time.Now()
	measureFrom, measureTo := base.Add(o.warmup), base.Add(o.duration)
	// credits is the backlog: a token per message published and not yet
	// delivered, as in hush-bench throughput, so that the figure is a
	// steady state in which the consumer keeps up.
	credits := make(chan struct{}, jc.backlog)
	var (
		mu        sync.Mutex
		seen      = map[uint64]bool{}
		lat       []time.Duration
		inWindow  int64
		published atomic.Int64
		unacked   jetstream.Msg // ack all: the newest delivery not yet acknowledged
		sinceAck  int
		ackErr    atomic.Value
	)
	ack := func(m jetstream.Msg) {
		if err := m.Ack(); err != nil {
			ackErr.Store(err)
		}
	}
	handle := func(m jetstream.Msg) {
		now := time.Now()
		d := m.Data()
		mu.Lock()
		if len(d) >= 16 {
			seq, sent := binary.BigEndian.Uint64(d), time.Duration(binary.BigEndian.Uint64(d[8:]))
			sentAt := base.Add(sent)
			if !seen[seq] {
				seen[seq] = true
				if !now.Before(measureFrom) && now.Before(measureTo) {
					inWindow++
				}
				if !sentAt.Before(measureFrom) && sentAt.Before(measureTo) {
					lat = append(lat, now.Sub(sentAt))
				}
				select {
				case <-credits:
				default:
				}
			}
		}
		if jc.ack == "explicit" {
			mu.Unlock()
			ack(m)
			return
		}
		unacked, sinceAck = m, sinceAck+1
		if sinceAck < jc.ackEvery {
			mu.Unlock()
			return
		}
		unacked, sinceAck = nil, 0
		mu.Unlock()
		ack(m)
	}
	// flushAck acknowledges (ack all) the newest delivery if it was not.
	flushAck := func() {
		mu.Lock()
		m := unacked
		unacked, sinceAck = nil, 0
		mu.Unlock()
		if m != nil {
			ack(m)
		}
	}
	consCtx, stopCons := context.WithCancel(ctx)
	var consWG sync.WaitGroup
	defer func() { stopCons(); consWG.Wait() }()
	if jc.ack == "all" {
		// Acknowledge a partial run of deliveries after 5 ms at most.
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					flushAck()
				case <-consCtx.Done():
					return
				}
			}
		}()
	}
	switch jc.pull {
	case "consume":
		cc, err := cons.Consume(handle, jetstream.PullMaxMessages(jc.batch))
		if err != nil {
			return result{}, err
		}
		defer cc.Stop()
	case "fetch":
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			for consCtx.Err() == nil {
				b, err := cons.Fetch(jc.batch, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for m := range b.Messages() {
					handle(m)
				}
				if jc.ack == "all" {
					flushAck()
				}
			}
		}()
	default:
		return result{}, fmt.Errorf("unknown --js-pull %q", jc.pull)
	}

	pid := srv.Process.Pid
	var cpu0, cpu1 time.Duration
	sem := make(chan struct{}, o.window)
	var wg sync.WaitGroup
	var pubErr atomic.Value
	body := make([]byte, o.body)
	rand.Read(body) // as hush-bench's: nothing to gain from compression
	sampled := false
	pubCtx, stopPub := context.WithDeadline(ctx, measureTo)
	defer stopPub()
	for seq := uint64(0); pubCtx.Err() == nil; seq++ {
		if !sampled && !time.Now().Before(measureFrom) {
			cpu0, sampled = procCPU(pid), true
		}
		select {
		case credits <- struct{}{}:
		case <-pubCtx.Done():
			continue // the loop ends
		}
		sem <- struct{}{}
		b := slices.Clone(body)
		binary.BigEndian.PutUint64(b, seq)
		binary.BigEndian.PutUint64(b[8:], uint64(time.Since(base)))
		f, err := pjs.PublishAsync("hushbench", b)
		if err != nil {
			<-sem
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-f.Ok():
				published.Add(1)
			case err := <-f.Err():
				pubErr.Store(err)
				<-credits
			}
			<-sem
		}()
	}
	cpu1 = procCPU(pid)
	mu.Lock()
	n := inWindow
	mu.Unlock()
	wg.Wait()
	if err, ok := pubErr.Load().(error); ok {
		return result{}, fmt.Errorf("publish: %w", err)
	}
	// Drain: every acknowledged publish must be delivered.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := int64(len(seen))
		mu.Unlock()
		if got >= published.Load() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err, ok := ackErr.Load().(error); ok {
		return result{}, fmt.Errorf("ack: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	window := o.duration - o.warmup
	slices.Sort(lat)
	r := result{MsgsPerSec: float64(n) / window.Seconds(), Lost: published.Load() - int64(len(seen)),
		Note: "(" + jc.String() + ")"}
	if len(lat) > 0 {
		r.P50, r.P99 = ms(lat[len(lat)/2]), ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	if n > 0 && cpu1 > cpu0 {
		r.CPUPerMsg = float64((cpu1 - cpu0).Microseconds()) / float64(n)
	}
	return r, nil
}

// runRedis starts redis-server with an append-only file synced on every
// write, runs redis-benchmark -t lpush,rpop and stops it.
func runRedis(ctx context.Context, o *options, dir string) (result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	srv := exec.Command(o.redisServer, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
		// The benchmark pushes every message before it pops one, a list
		// (800 MB) that a queue in a steady state never holds: the
		// automatic rewrite would fork and rewrite it at 64 MB and at
		// each doubling.
		"--auto-aof-rewrite-percentage", "0"}, argList(o.redisArgs)...)...)
	srv.Stdout, srv.Stderr = io.Discard, io.Discard
	if err := srv.Start(); err != nil {
		return result{}, err
	}
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if i == 50 {
			return result{}, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu0 := procCPU(srv.Process.Pid)
	cmd := exec.CommandContext(ctx, o.redisBench, append([]string{"-p", strconv.Itoa(port), "-t", "lpush,rpop",
		"-d", "16384", "-c", strconv.Itoa(o.redisC), "-n", strconv.Itoa(o.redisN), "--csv"}, argList(o.benchArgs)...)...)
	out, err := cmd.Output()
	if err != nil {
		return result{}, err
	}
	cpu1 := procCPU(srv.Process.Pid)
	rps := map[string]float64{}
	rows, err := csv.NewReader(bufio.NewReader(bytes.NewReader(out))).ReadAll()
	if err != nil {
		return result{}, err
	}
	for _, row := range rows {
		if len(row) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(row[1], 64); err == nil {
			rps[strings.SplitN(row[0], " ", 2)[0]] = v
		}
	}
	push, pop := rps["LPUSH"], rps["RPOP"]
	if push == 0 || pop == 0 {
		return result{}, errors.New("redis-benchmark printed no LPUSH and RPOP rates")
	}
	r := result{MsgsPerSec: 1 / (1/push + 1/pop), Note: fmt.Sprintf("(LPUSH %.0f/s, RPOP %.0f/s)", push, pop)}
	if cpu1 > cpu0 {
		r.CPUPerMsg = float64((cpu1 - cpu0).Microseconds()) / float64(o.redisN)
	}
	return r, nil
}

// procCPU returns a process's user + system CPU time from /proc, 0 if it
// cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ is 100
}

// argList splits a flag's value at spaces and commas.
func argList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func join(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
