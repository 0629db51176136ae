//go:build linux

// Command peers measures hush against two durable peers on the same
// machine, in the same run: NATS JetStream (file store, sync_interval
// always) and Redis (appendonly yes, appendfsync always). Each round runs,
// one after the other and never at once:
//
//   - hush-bench throughput over TLS/TCP and over QUIC (closed loop, 16,000
//     byte bodies, acknowledged once on disk; its defaults otherwise);
//   - JetStream: one producer publishing 16,000-byte messages with --window
//     asynchronous publishes in flight, each answered once stored (fsync),
//     and one consumer of a work-queue stream acknowledging each message;
//     delivered msgs/s, send-to-deliver latency and nats-server's CPU per
//     message;
//   - redis-benchmark -t lpush,rpop -d 16384 -c 50 (plain TCP, no TLS);
//     its push+pop rate is 1 / (1/LPUSH + 1/RPOP).
//
// It prints every run, the median of the rounds and the ratios of hush's
// medians to the peers'. It is a module of its own, so that hush does not
// depend on the NATS client; see docs/performance.md for how to run it.
package main

import (
	"bufio"
	"bytes"
	"context"
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
	redisN      int
	redisC      int
	only        string
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
	flag.IntVar(&o.window, "window", 64, "JetStream publishes in flight (hush-bench: 2 senders x 32)")
	flag.IntVar(&o.redisN, "redis-n", 50000, "redis-benchmark requests per test")
	flag.IntVar(&o.redisC, "redis-clients", 50, "redis-benchmark clients")
	flag.StringVar(&o.only, "only", "hush-tcp,hush-quic,jetstream,redis", "comma-separated systems to run")
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
	order := []string{"hush-tcp", "hush-quic", "jetstream", "redis"}
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
				r, err = runJetStream(ctx, o, filepath.Join(dir, fmt.Sprintf("nats-%d", round)))
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
	for _, p := range [][2]string{{"hush-tcp", "jetstream"}, {"hush-quic", "jetstream"}, {"hush-tcp", "redis"}, {"hush-quic", "redis"}} {
		if med[p[0]] > 0 && med[p[1]] > 0 {
			fmt.Printf("ratio     %s / %s = %.2f\n", p[0], p[1], med[p[0]]/med[p[1]])
		}
	}
	return nil
}

// runHush runs hush-bench throughput over transport.
func runHush(ctx context.Context, o *options, transport string) (result, error) {
	cmd := exec.CommandContext(ctx, o.hushBench, "throughput", "--transport", transport,
		"--duration", o.duration.String(), "--warmup", o.warmup.String(), "--body", strconv.Itoa(o.body), "--json")
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

// runJetStream starts nats-server with JetStream on a file store that
// syncs every write, drives it for o.duration and stops it.
func runJetStream(ctx context.Context, o *options, dir string) (result, error) {
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
	stream, err := pjs.CreateStream(ctx, jetstream.StreamConfig{
		Name: "HUSHBENCH", Subjects: []string{"hushbench"},
		Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		return result{}, err
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096,
	}); err != nil {
		return result{}, err
	}
	cons, err := cjs.Consumer(ctx, "HUSHBENCH", "bench")
	if err != nil {
		return result{}, err
	}

	base := time.Now()
	measureFrom, measureTo := base.Add(o.warmup), base.Add(o.duration)
	var (
		mu        sync.Mutex
		seen      = map[uint64]bool{}
		lat       []time.Duration
		inWindow  int64
		published atomic.Int64
	)
	consume, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		d := m.Data()
		if len(d) >= 16 {
			seq, sent := binary.BigEndian.Uint64(d), time.Duration(binary.BigEndian.Uint64(d[8:]))
			sentAt := base.Add(sent)
			mu.Lock()
			if !seen[seq] {
				seen[seq] = true
				if !now.Before(measureFrom) && now.Before(measureTo) {
					inWindow++
				}
				if !sentAt.Before(measureFrom) && sentAt.Before(measureTo) {
					lat = append(lat, now.Sub(sentAt))
				}
			}
			mu.Unlock()
		}
		m.Ack()
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return result{}, err
	}
	defer consume.Stop()

	pid := srv.Process.Pid
	var cpu0, cpu1 time.Duration
	sem := make(chan struct{}, o.window)
	var wg sync.WaitGroup
	var pubErr atomic.Value
	body := make([]byte, o.body)
	sampled := false
	for seq := uint64(0); time.Now().Before(measureTo) && ctx.Err() == nil; seq++ {
		if !sampled && !time.Now().Before(measureFrom) {
			cpu0, sampled = procCPU(pid), true
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
	mu.Lock()
	defer mu.Unlock()
	window := o.duration - o.warmup
	slices.Sort(lat)
	r := result{MsgsPerSec: float64(n) / window.Seconds(), Lost: published.Load() - int64(len(seen))}
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
	srv := exec.Command(o.redisServer, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no")
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
	cmd := exec.CommandContext(ctx, o.redisBench, "-p", strconv.Itoa(port), "-t", "lpush,rpop",
		"-d", "16384", "-c", strconv.Itoa(o.redisC), "-n", strconv.Itoa(o.redisN), "--csv")
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
