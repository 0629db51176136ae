//go:build linux

package main

// The relay child: hush-bench runs the relay in a separate process (itself,
// with the hidden relay-child command) so that the relay's CPU time and
// memory can be read from /proc apart from the load generator's.
//
// The child prints "addr <hush address>" and "open_us <µs>" (how long
// relay.New took) on stdout once it serves, then reads commands on stdin,
// one per line:
//
//	gc      run the garbage collector and return freed memory to the OS;
//	        answers "ok"
//	stats   answers "stats <JSON of childStats>"
//	heap F  writes a heap profile to the file F; answers "ok"
//	conns   answers "conns N": the connections the relay holds now,
//	        handshaking or in a session (its connections metric)
//
// End of stdin (the parent closed it, or died) shuts the relay down
// cleanly, stops the CPU profile and exits.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hushrelay/hush/internal/gctune"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Files in the child's data directory.
const (
	childSeedFile  = "identity.seed" // the Ed25519 identity seed, so that restarts keep the address
	childStoreFile = "relay.db"      // the relay's bbolt store
)

// childStats is the child's answer to "stats": its Go runtime's view of
// its memory and garbage collections, and its relay's store commits so
// far (from the relay's metrics).
type childStats struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
	NumGC      uint32 `json:"num_gc"`
	GCPauseNs  uint64 `json:"gc_pause_total_ns"` // stop-the-world pauses in all
	// GCPauseMaxNs is the longest stop-the-world pause of the collections
	// since the previous stats answer (of the last 256 of them).
	GCPauseMaxNs uint64 `json:"gc_pause_max_ns"`
	// Commits are the store's group commits; CommitOps the operations in
	// them; CommitSeconds their durations summed (fsync included);
	// CommitWaitSeconds, summed, how long each one's oldest operation had
	// been queued when it began.
	Commits           float64 `json:"commits"`
	CommitOps         float64 `json:"commit_ops"`
	CommitSeconds     float64 `json:"commit_seconds"`
	CommitWaitSeconds float64 `json:"commit_wait_seconds"`
	// CommitBuckets is the commit-duration histogram: CommitBuckets[i]
	// commits took at most CommitBounds[i] seconds (cumulative counts, as
	// the relay's metric hush_relay_store_commit_seconds has them).
	CommitBounds  []float64 `json:"commit_bounds"`
	CommitBuckets []float64 `json:"commit_buckets"`
	// Trims are the drops of the store's mapping (trimLoop).
	Trims float64 `json:"trims"`
}

// runChild is the relay-child command.
func runChild(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay-child", flag.ContinueOnError)
	dir := fs.String("data", "", "data directory (required)")
	listen := fs.String("listen", "127.0.0.1:0", "host:port of both listeners")
	newRate := fs.Float64("new-rate", 0, "NEW per second per session (0: relay default)")
	sendRate := fs.Float64("send-rate", 0, "SEND per second per session (0: relay default)")
	perAddr := fs.Int("max-sessions-per-address", 0, "connections per source address (0: relay default)")
	maxSessions := fs.Int("max-sessions", 0, "connections in all (0: relay default)")
	maxHandshakes := fs.Int("max-handshakes", 0, "handshakes in progress (0: relay default)")
	uncapped := fs.String("uncapped", "127.0.0.1", "comma-separated source addresses without a per-address session cap (\"\": none)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here until shutdown")
	mappedLimit := fs.Int64("mapped-limit", 0, "relay.Config.MappedStoreLimit in bytes (0: relay default, 64 MiB; negative: never trim)")
	memRate := fs.Int("memprofilerate", 0, "runtime.MemProfileRate (0: the Go default); 1 records every allocation for exact heap profiles")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *dir == "" {
		return usageError{"relay-child: --data is required"}
	}
	// Ctrl-C reaches the whole process group: the parent shuts the child
	// down through stdin, so that the CPU profile is complete.
	signal.Ignore(os.Interrupt)
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	identity, err := loadOrCreateIdentity(filepath.Join(*dir, childSeedFile))
	if err != nil {
		return err
	}
	cert, err := relay.IssueCertificate(identity, 0)
	if err != nil {
		return err
	}
	fp, err := relay.CertificateFingerprint(cert)
	if err != nil {
		return err
	}
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var uncap []netip.Addr
	for _, a := range strings.Split(*uncapped, ",") {
		if a == "" {
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return usageError{fmt.Sprintf("relay-child: --uncapped: %v", err)}
		}
		uncap = append(uncap, ip)
	}
	start := time.Now()
	r, err := relay.New(relay.Config{
		Listen:      *listen,
		Certificate: cert,
		StorePath:   filepath.Join(*dir, childStoreFile),
		NewRate:     *newRate,
		SendRate:    *sendRate,
		// A benchmark's NEW rate holds relay-wide too.
		RelayNewRate:          *newRate,
		UncappedAddresses:     uncap,
		MaxSessionsPerAddress: *perAddr,
		MaxSessions:           *maxSessions,
		MaxHandshakes:         *maxHandshakes,
		MappedStoreLimit:      *mappedLimit,
		// Derived from the identity, so that a restarted child answers the
		// packets of its earlier run's connections with a stateless reset
		// their clients recognise, as hush-relay does.
		StatelessResetKey: relay.StatelessResetKey(identity),
		// Warnings (refused connections, with the cap that refused them)
		// go to stderr, with hush-bench's progress lines.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	open := time.Since(start)
	defer r.Close()
	// The garbage collector's target as hush-relay start sets it.
	gcCtx, stopGC := context.WithCancel(context.Background())
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		gctune.Run(gcCtx, gctune.DefaultHeadroom, os.Getenv)
	}()
	defer func() { stopGC(); <-gcDone }()
	tcp := r.Addr().(*net.TCPAddr)
	addr := queue.Address{Fingerprint: fp, Host: tcp.IP.String(), Port: uint16(tcp.Port)}
	out := bufio.NewWriter(stdout)
	fmt.Fprintf(out, "addr %s\nopen_us %d\n", addr, open.Microseconds())
	if err := out.Flush(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdin)
	var statsGC uint32 // NumGC at the previous stats answer
	for sc.Scan() {
		switch sc.Text() {
		case "gc":
			// Two collections: sync.Pool keeps what it holds through one
			// (crypto/tls, quic-go and the relay pool buffers), and an
			// idle relay goes through several (Go forces one every two
			// minutes). FreeOSMemory collects and returns free pages.
			runtime.GC()
			debug.FreeOSMemory()
			fmt.Fprintln(out, "ok")
		case "queues":
			fmt.Fprintf(out, "queues %d\n", r.Status(context.Background()).Queues)
		case "conns":
			n, err := relayConnections(r)
			if err != nil {
				fmt.Fprintf(out, "error %v\n", err)
				break
			}
			fmt.Fprintf(out, "conns %d\n", n)
		case "stats":
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			st := childStats{
				HeapInuse: m.HeapInuse, StackInuse: m.StackInuse, Sys: m.Sys,
				Goroutines: runtime.NumGoroutine(),
				NumGC:      m.NumGC, GCPauseNs: m.PauseTotalNs,
			}
			// PauseNs holds the last 256 pauses, collection n's at
			// (n+255)%256.
			for n := max(statsGC, m.NumGC-min(m.NumGC, 256)) + 1; n <= m.NumGC; n++ {
				st.GCPauseMaxNs = max(st.GCPauseMaxNs, m.PauseNs[(n+255)%256])
			}
			statsGC = m.NumGC
			met, hists, err := relayMetrics(r)
			if err != nil {
				fmt.Fprintf(out, "error %v\n", err)
				break
			}
			st.Commits = met["hush_relay_store_commit_seconds_count"]
			st.CommitSeconds = met["hush_relay_store_commit_seconds_sum"]
			st.CommitOps = met["hush_relay_store_commit_operations_sum"]
			st.CommitWaitSeconds = met["hush_relay_store_commit_wait_seconds_sum"]
			commits := hists["hush_relay_store_commit_seconds"]
			st.CommitBounds, st.CommitBuckets = commits.bounds, commits.counts
			st.Trims = met["hush_relay_store_mapping_trims_total"]
			b, _ := json.Marshal(st)
			fmt.Fprintf(out, "stats %s\n", b)
		default:
			path, ok := strings.CutPrefix(sc.Text(), "heap ")
			if !ok {
				fmt.Fprintln(out, "error unknown command")
				break
			}
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintf(out, "error %v\n", err)
				break
			}
			fmt.Fprintln(out, "ok")
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return r.Close()
}

// relayConnections reads r's connections gauge from its metrics, served
// in-process.
func relayConnections(r *relay.Relay) (int, error) {
	values, _, err := relayMetrics(r)
	if err != nil {
		return 0, err
	}
	f, ok := values["hush_relay_connections"]
	if !ok {
		return 0, errors.New("no connections metric")
	}
	return int(f), nil
}

// histogram is a histogram metric's buckets: their upper bounds in
// increasing order (+Inf left out) and the cumulative count of each.
type histogram struct {
	bounds, counts []float64
}

// relayMetrics scrapes r's metrics, served in-process, once: the values
// of those without labels by name (a histogram's sum and count as
// name_sum and name_count), and the buckets of each histogram without
// labels by name.
func relayMetrics(r *relay.Relay) (map[string]float64, map[string]histogram, error) {
	rec := httptest.NewRecorder()
	r.AdminHandler("").ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("relay metrics: %w", err)
	}
	values, hists := make(map[string]float64), make(map[string]histogram)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch {
			case m.Counter != nil:
				values[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				values[name] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				values[name] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				values[name+"_sum"], values[name+"_count"] = h.GetSampleSum(), float64(h.GetSampleCount())
				var hist histogram
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						hist.bounds = append(hist.bounds, b.GetUpperBound())
						hist.counts = append(hist.counts, float64(b.GetCumulativeCount()))
					}
				}
				hists[name] = hist
			}
		}
	}
	return values, hists, nil
}

// writeHeapProfile writes a heap profile (in use after a collection) to
// path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadOrCreateIdentity reads the identity seed at path, creating it first
// if it does not exist.
func loadOrCreateIdentity(path string) (ed25519.PrivateKey, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed = make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		err = os.WriteFile(path, seed, 0o600)
	}
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not an identity seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// childOptions configures startChild.
type childOptions struct {
	dataDir string
	// listen is the host:port of both listeners; "" is 127.0.0.1 with a
	// free port.
	listen     string
	newRate    float64
	sendRate   float64
	cpuProfile string
	// memProfileRate, if not 0, is the child's runtime.MemProfileRate.
	memProfileRate int
	// capLoopback applies the relay's per-address session cap to
	// 127.0.0.1 too; by default the benchmarks' many sessions from it are
	// not capped.
	capLoopback bool
	// maxPerAddress, if not 0, is the relay's MaxSessionsPerAddress.
	maxPerAddress int
	// maxSessions, if not 0, is the relay's MaxSessions.
	maxSessions int
	// maxHandshakes, if not 0, is the relay's MaxHandshakes.
	maxHandshakes int
	// mappedLimit, if not 0, is the relay's MappedStoreLimit.
	mappedLimit int64
}

// childTimeout bounds the child's start, each command and its shutdown.
const childTimeout = 60 * time.Second

// relayChild is a running relay-child process. Its methods are not safe
// for concurrent use.
type relayChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout lines; closed at EOF
	done  chan struct{}
	err   error // the process's exit status; set before done is closed

	addr     queue.Address
	openTime time.Duration // relay.New in the child
	started  time.Time     // when the process was started
}

// startChild starts a relay child on o.listen (default 127.0.0.1 with a
// free port) and waits until it serves (or ctx ends, or childTimeout passes).
func startChild(ctx context.Context, o childOptions) (*relayChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	listen := o.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"relay-child", "--data", o.dataDir, "--listen", listen,
		"--new-rate", strconv.FormatFloat(o.newRate, 'g', -1, 64),
		"--send-rate", strconv.FormatFloat(o.sendRate, 'g', -1, 64)}
	if o.capLoopback {
		args = append(args, "--uncapped", "")
	}
	if o.maxPerAddress != 0 {
		args = append(args, "--max-sessions-per-address", strconv.Itoa(o.maxPerAddress))
	}
	if o.maxSessions != 0 {
		args = append(args, "--max-sessions", strconv.Itoa(o.maxSessions))
	}
	if o.maxHandshakes != 0 {
		args = append(args, "--max-handshakes", strconv.Itoa(o.maxHandshakes))
	}
	if o.mappedLimit != 0 {
		args = append(args, "--mapped-limit", strconv.FormatInt(o.mappedLimit, 10))
	}
	if o.cpuProfile != "" {
		args = append(args, "--cpuprofile", o.cpuProfile)
	}
	if o.memProfileRate != 0 {
		args = append(args, "--memprofilerate", strconv.Itoa(o.memProfileRate))
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &relayChild{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{}), started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay child: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.err = cmd.Wait()
		close(c.done)
	}()
	fail := func(err error) (*relayChild, error) {
		c.kill()
		return nil, fmt.Errorf("start relay child: %w", err)
	}
	line, err := c.readLine(ctx, "addr ")
	if err != nil {
		return fail(err)
	}
	if c.addr, err = queue.ParseAddress(strings.TrimPrefix(line, "addr ")); err != nil {
		return fail(err)
	}
	if line, err = c.readLine(ctx, "open_us "); err != nil {
		return fail(err)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(line, "open_us "), 10, 64)
	if err != nil {
		return fail(err)
	}
	c.openTime = time.Duration(us) * time.Microsecond
	return c, nil
}

// readLine returns the next stdout line, which must start with prefix.
func (c *relayChild) readLine(ctx context.Context, prefix string) (string, error) {
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		switch {
		case !ok:
			<-c.done
			return "", fmt.Errorf("relay child exited: %v", c.err)
		case !strings.HasPrefix(line, prefix):
			return "", fmt.Errorf("relay child said %q, want %q", line, prefix+"...")
		}
		return line, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", errors.New("relay child did not answer in time")
	}
}

// command sends one command line and returns the answer line, which must
// start with prefix.
func (c *relayChild) command(ctx context.Context, cmd, prefix string) (string, error) {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return "", fmt.Errorf("relay child: %w", err)
	}
	return c.readLine(ctx, prefix)
}

// GC makes the child collect garbage and return free memory to the OS.
func (c *relayChild) GC(ctx context.Context) error {
	_, err := c.command(ctx, "gc", "ok")
	return err
}

// WriteHeapProfile makes the child write a heap profile to path.
func (c *relayChild) WriteHeapProfile(ctx context.Context, path string) error {
	_, err := c.command(ctx, "heap "+path, "ok")
	return err
}

// Stats returns the child's Go runtime memory figures.
func (c *relayChild) Stats(ctx context.Context) (childStats, error) {
	var s childStats
	line, err := c.command(ctx, "stats", "stats ")
	if err != nil {
		return s, err
	}
	err = json.Unmarshal([]byte(strings.TrimPrefix(line, "stats ")), &s)
	return s, err
}

// Queues returns the number of queues the child's relay stores.
func (c *relayChild) Queues(ctx context.Context) (int, error) {
	line, err := c.command(ctx, "queues", "queues ")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimPrefix(line, "queues "))
}

// Connections returns the connections the child's relay holds now.
func (c *relayChild) Connections(ctx context.Context) (int, error) {
	line, err := c.command(ctx, "conns", "conns ")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimPrefix(line, "conns "))
}

// Sample reads the child's CPU time and memory from /proc.
func (c *relayChild) Sample() (procSample, error) {
	return readProc(c.cmd.Process.Pid)
}

// Stop shuts the child down cleanly (closing its stdin) and waits for it;
// after childTimeout it kills it. It is idempotent.
func (c *relayChild) Stop() error {
	c.stdin.Close()
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	for {
		select {
		case _, ok := <-c.lines: // drain, so that the reader reaches EOF
			if ok {
				continue
			}
			<-c.done
			return c.err
		case <-t.C:
			c.kill()
			return errors.New("relay child did not stop in time: killed")
		}
	}
}

// kill ends the child with SIGKILL, as a crash would, and waits for it.
func (c *relayChild) kill() {
	c.cmd.Process.Kill()
	c.stdin.Close()
	for range c.lines {
	}
	<-c.done
}

// procSample is one reading of a process's /proc files.
type procSample struct {
	CPU     time.Duration // user + system time so far
	RSS     int64         // VmRSS, bytes
	RSSAnon int64         // RssAnon: heap, stacks (bytes)
	RSSFile int64         // RssFile: mapped files, such as the bbolt file (bytes)
	Peak    int64         // VmHWM, the peak RSS (bytes)
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat:
// 100 on Linux.
const clockTicks = 100

// readProc reads /proc/<pid>/stat and /proc/<pid>/status (Linux).
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, errors.New("unreadable /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return s, err
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &s.RSS
		case "RssAnon":
			dst = &s.RSSAnon
		case "RssFile":
			dst = &s.RSSFile
		case "VmHWM":
			dst = &s.Peak
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc status %s: %w", name, err)
		}
		*dst = kb << 10
	}
	return s, nil
}

// machineCPU returns the CPU time all processes of the machine have used,
// and the time the hypervisor gave to other guests while this one had
// work (steal), from the "cpu" line of /proc/stat.
func machineCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("unreadable /proc/stat")
	}
	var ticks [8]int64 // user nice system idle iowait irq softirq steal
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(f[1+i], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	used := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
	return time.Duration(used) * time.Second / clockTicks, time.Duration(ticks[7]) * time.Second / clockTicks, nil
}

// startCPUProfile starts a CPU profile of this process, written to path,
// unless path is empty. The returned stop ends the profile and closes the
// file; it may be called more than once (where the measurement ends, and
// deferred), and is a no-op when path is empty.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
