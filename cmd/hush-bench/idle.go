//go:build linux

package main

// The idle scenario. Up to this machine's descriptor limit (20,000 per
// process, which hush-bench cannot raise) one process cannot hold both ends
// of the sessions, and the relay's per-address and per-prefix caps (256
// and 1024 by default) would refuse them from one address or one /24: the
// sessions are held by --procs client processes (hush-bench itself, with
// the hidden idle-client command), each dialing from source addresses in
// 127.1.0.0/24, 127.1.1.0/24, ... (see idleSource), --per-address sessions
// from each. The started relay keeps its default per-address and
// per-prefix caps and gets a relay-wide cap (MaxSessions) of the sessions
// plus room for the warm-up and the probe client.
//
// The idle-client command prints "ready <dials retried>" once its sessions are open and
// have each answered a PING (or "error <text>"), then reads commands on
// stdin, one per line:
//
//	ping    PINGs every session; answers "lost <n>", the sessions that
//	        did not answer within pingWait
//
// End of stdin closes the sessions and exits.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// The idle sessions come from 127.1.0.2 to 127.1.0.5, 127.1.1.2 to
// 127.1.1.5, and so on: idleAddrsPerPrefix addresses in each /24, so that
// with --per-address 200 a network holds 800 sessions, under the relay's
// default per-prefix cap (1024). 127.0.0.1, which the relay child does not
// cap, is the probe's.
const (
	idleAddrsPerPrefix = 4
	idleMaxAddresses   = idleAddrsPerPrefix * 256 * 64 // 127.1.0.0 to 127.64.255.255
)

// idleSessionsPerProc is the default share of one client process.
const idleSessionsPerProc = 5000

// idleKeepAlive is the idle sessions' default transport keep-alive: that
// of a client configured to idle, not the client library's default
// (link.DefaultTransportKeepAlive, 350 ms, which notices a dead relay in
// about a second). At 350 ms each idle QUIC session costs the relay's Go
// code a packet each way about three times a second (19,000 sessions:
// some 54,000 packets a second each way), and the clients as much again;
// --keepalive 350ms measures that.
const idleKeepAlive = 15 * time.Second

// idlePing is the idle sessions' default mean wait between hush PINGs
// (link.Config.KeepAlive; each wait is drawn from [75 s, 225 s], below
// the relay's 5-minute idle timeout), not the client library's 60 s: a
// PING and its PONG are a 16 KiB block each way (a dozen QUIC packets
// and their acknowledgements), the larger part of what an idle QUIC
// session costs the relay. At 60 s, 13,000 QUIC sessions opened on a
// machine whose other processes left the relay a fifth of a core made
// it drop datagrams until sessions ended.
const idlePing = 150 * time.Second

// idleOptions are the flags of the idle scenario.
type idleOptions struct {
	commonOptions
	sessions   int
	procs      int
	perAddress int
	dials      int
	settle     time.Duration
	probe      time.Duration
	probeEvery time.Duration
	keepAlive  time.Duration
	ping       time.Duration
	pause      bool
	memProfile string
	clientProf string
	clientNice int
}

// idleResult is the idle scenario's report. Memory is read after the
// relay's garbage collector has run and returned free memory to the OS, so
// it is what the sessions keep alive. Kernel socket buffers are not in RSS.
type idleResult struct {
	Scenario  string `json:"scenario"`
	Transport string `json:"transport"`
	Sessions  int    `json:"sessions"`
	// Procs and Addresses are the client processes and the source
	// addresses the sessions came from; RelayMaxSessions the relay-wide
	// cap the started relay was given (its per-address cap is its
	// default).
	Procs            int     `json:"procs"`
	Addresses        int     `json:"addresses"`
	Prefixes         int     `json:"prefixes"` // /24 networks of the addresses
	RelayMaxSessions int     `json:"relay_max_sessions"`
	OpenSeconds      float64 `json:"open_s"` // to open (and PING) every session
	Dials            int     `json:"dials"`  // dials in progress at a time (--dials)
	// DialRetries counts dials that failed and were tried again (at most
	// 4 times each): handshakes that timed out on a busy machine.
	DialRetries int64 `json:"dial_retries"`

	RSSBefore         int64   `json:"rss_before_bytes"` // relay VmRSS before opening the sessions
	RSS               int64   `json:"rss_bytes"`        // relay VmRSS with the sessions open
	RSSPerSession     float64 `json:"rss_per_session_bytes"`
	AnonPerSession    float64 `json:"rss_anon_per_session_bytes"`
	HeapPerSession    float64 `json:"heap_per_session_bytes"`  // Go heap in use
	StackPerSession   float64 `json:"stack_per_session_bytes"` // goroutine stacks
	GoroutinesPerSess float64 `json:"goroutines_per_session"`
	RelayFDs          int     `json:"relay_fds"` // the relay's open descriptors with the sessions open
	// RelayCPUPercent is the relay's CPU while the sessions are idle,
	// over the settle period (100 = one core): their keep-alives (and
	// their hush PINGs, every 30 to 90 s); ClientsCPUPercent that of the
	// client processes holding them, over the same period.
	RelayCPUPercent   float64 `json:"relay_cpu_percent"`
	ClientsCPUPercent float64 `json:"clients_cpu_percent"`
	// RelayNice is the relay's nice value, ClientsNice the least of the
	// client processes' threads (--client-nice more, at most 19).
	RelayNice   int     `json:"relay_nice"`
	ClientsNice int     `json:"clients_nice"`
	KeepAliveMS float64 `json:"keepalive_ms"` // the idle sessions' transport keep-alive
	PingS       float64 `json:"ping_s"`       // their mean wait between hush PINGs
	// LoadStart and LoadEnd are the machine's 1-minute load average
	// before the sessions are opened and at the end.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`

	// The probe: a normal client (a sender and a subscribed receiver on
	// one queue, from 127.0.0.1, with the client's default settings)
	// sending a 256-byte message and a PING every --probe-every, for
	// --probe each time: before the sessions are opened (Before), with
	// them open (no suffix), with them open and the client processes
	// holding them stopped with SIGSTOP (Paused: the relay holds the
	// sessions, but their clients, which would be on other machines, take
	// no CPU from this one), and after they were closed (After). Zero
	// when --probe is 0; the Paused figures are zero without --pause, or
	// when the sessions' idle timeout (5 times --keepalive, at least 5 s) is shorter
	// than 3 times --probe.
	ProbeDeliverP99Before float64 `json:"probe_deliver_p99_before_ms"`
	ProbeDeliverP99       float64 `json:"probe_deliver_p99_ms"`
	ProbeDeliverP99Paused float64 `json:"probe_deliver_p99_paused_ms"`
	ProbeDeliverP99After  float64 `json:"probe_deliver_p99_after_ms"`
	ProbePingP99Before    float64 `json:"probe_ping_p99_before_ms"`
	ProbePingP99          float64 `json:"probe_ping_p99_ms"`
	ProbePingP99Paused    float64 `json:"probe_ping_p99_paused_ms"`
	ProbePingP99After     float64 `json:"probe_ping_p99_after_ms"`
	ProbeDelivered        int     `json:"probe_delivered"` // with the sessions open
	ProbeFailures         int64   `json:"probe_failures"`  // in all phases
	// ProbeReconnects counts the probe's connections that ended (and
	// were opened again before the next phase).
	ProbeReconnects int `json:"probe_reconnects"`

	Lost       int64 `json:"lost"`       // sessions that did not answer a PING at the end
	Duplicated int64 `json:"duplicated"` // always 0: no messages are sent
}

func runIdleCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o idleOptions
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	addCommonFlags(fs, &o.commonOptions)
	fs.IntVar(&o.sessions, "sessions", 1000, "idle sessions to open (K)")
	fs.IntVar(&o.procs, "procs", 0, "client processes holding the sessions (0: one per 5,000 sessions)")
	fs.IntVar(&o.perAddress, "per-address", 200, "sessions per source address (127.1.0.2 to 127.1.0.5, 127.1.1.2 to 127.1.1.5, ...: 4 per /24); the started relay's per-address and per-prefix caps are its defaults, 256 and 1024, which leaves room for attempts that failed on the client and are not yet released by the relay")
	fs.IntVar(&o.dials, "dials", 16, "dials in progress at a time, over all the client processes: more open the sessions sooner on a machine whose other processes keep its cores busy")
	fs.DurationVar(&o.settle, "settle", 15*time.Second, "wait this long after opening the sessions before measuring; the relay's and the clients' CPU are measured over it")
	fs.DurationVar(&o.probe, "probe", 10*time.Second, "measure a normal client's latency for this long before the sessions, with them, with their clients stopped (see --pause) and after them (0: no probe)")
	fs.DurationVar(&o.probeEvery, "probe-every", 20*time.Millisecond, "the probe's interval between a PING and a message")
	fs.DurationVar(&o.keepAlive, "keepalive", idleKeepAlive, "the idle sessions' transport keep-alive (link.Config.TransportKeepAlive; their idle timeout is 5 times it, at least the client default, 5 s); 350ms is the client library's default")
	fs.DurationVar(&o.ping, "ping", idlePing, "the idle sessions' mean wait between hush PINGs (link.Config.KeepAlive); 60s is the client library's default")
	fs.BoolVar(&o.pause, "pause", true, "also measure the probe with the sessions' client processes stopped (SIGSTOP), when the sessions' idle timeout is at least 3 times --probe")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the relay, with the sessions open, to this file")
	fs.StringVar(&o.clientProf, "client-cpuprofile", "", "write a CPU profile of the first client process, from its start to its end, to this file")
	fs.IntVar(&o.clientNice, "client-nice", idleClientNice, "the client processes run this much nicer than the relay (0 to 19): on a machine of its own the relay would not share its cores with its clients")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case o.sessions < 1:
		return usageError{"--sessions must be at least 1"}
	case o.procs < 0 || o.probe < 0 || o.probeEvery <= 0 || o.keepAlive <= 0 || o.ping <= 0 || o.dials < 1:
		return usageError{"--procs and --probe must not be negative, --probe-every, --keepalive, --ping and --dials must be positive"}
	case o.clientNice < 0 || o.clientNice > 19:
		return usageError{"--client-nice must be from 0 to 19"}
	case o.perAddress < 1 || o.perAddress > relay.DefaultMaxSessionsPerAddress:
		return usageError{fmt.Sprintf("--per-address must be from 1 to the relay's per-address cap, %d", relay.DefaultMaxSessionsPerAddress)}
	case o.relayAddr != "":
		return usageError{"the idle scenario measures the started relay's memory: --relay is not supported"}
	}
	if o.procs == 0 {
		o.procs = (o.sessions + idleSessionsPerProc - 1) / idleSessionsPerProc
	}
	o.procs = min(o.procs, o.sessions)
	if n := (o.sessions + o.perAddress - 1) / o.perAddress; n > idleMaxAddresses {
		return usageError{fmt.Sprintf("%d source addresses needed (%d at most): raise --per-address", n, idleMaxAddresses)}
	}
	res, err := runIdle(ctx, &o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "idle sessions over %s: %d from %d processes, %d source addresses in %d /24 networks, opened in %.1f s with %d dials retried (relay MaxSessions %d, per-address and per-prefix caps the defaults)\n",
		res.Transport, res.Sessions, res.Procs, res.Addresses, res.Prefixes, res.OpenSeconds, res.DialRetries, res.RelayMaxSessions)
	fmt.Fprintf(stdout, "relay RSS      %s before, %s with the sessions; %d descriptors open; %.1f%% of a core while idle (keep-alive %v, PINGs every %v; the clients %.1f%%)\n",
		mib(res.RSSBefore), mib(res.RSS), res.RelayFDs, res.RelayCPUPercent, time.Duration(res.KeepAliveMS*float64(time.Millisecond)), time.Duration(res.PingS*float64(time.Second)), res.ClientsCPUPercent)
	fmt.Fprintf(stdout, "priority       the relay at nice %d, its clients at %d\n", res.RelayNice, res.ClientsNice)
	fmt.Fprintf(stdout, "per session    %.1f KiB RSS (%.1f KiB anonymous; Go heap %.1f KiB, stacks %.1f KiB, %.1f goroutines)\n",
		res.RSSPerSession/1024, res.AnonPerSession/1024, res.HeapPerSession/1024, res.StackPerSession/1024, res.GoroutinesPerSess)
	if o.probe > 0 {
		fmt.Fprintf(stdout, "probe p99      deliver %.1f ms before the sessions, %.1f ms with them, %.1f ms with their clients stopped, %.1f ms after them\n",
			res.ProbeDeliverP99Before, res.ProbeDeliverP99, res.ProbeDeliverP99Paused, res.ProbeDeliverP99After)
		fmt.Fprintf(stdout, "               PING %.1f / %.1f / %.1f / %.1f ms (%d delivered with the sessions, %d failures in all)\n",
			res.ProbePingP99Before, res.ProbePingP99, res.ProbePingP99Paused, res.ProbePingP99After, res.ProbeDelivered, res.ProbeFailures)
		if res.ProbeReconnects > 0 {
			fmt.Fprintf(stdout, "               the probe's connection ended %d times (opened again)\n", res.ProbeReconnects)
		}
	}
	fmt.Fprintf(stdout, "lost           %d sessions; load average %.1f at the start, %.1f at the end\n", res.Lost, res.LoadStart, res.LoadEnd)
	return nil
}

func runIdle(ctx context.Context, o *idleOptions) (*idleResult, error) {
	rate := 0
	if o.memProfile != "" {
		rate = 1 // exact: the sessions' allocations are few
	}
	// Room for the warm-up sessions (closed, but perhaps not yet
	// released), the probe's two and its connect.
	maxSessions := o.sessions + 64
	target, err := startTarget(ctx, &o.commonOptions, rate, max(maxSessions, 8192))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	child := target.child
	// The warm-up and the probe dial with the idle sessions' patience (a
	// loaded machine); the probe's traffic then is a normal client's.
	cfg := link.Config{Transport: link.Transport(o.transport), QUICTimeout: idleDialTimeout, HandshakeTimeout: idleDialTimeout}
	res := &idleResult{
		Scenario: "idle", Transport: o.transport, Sessions: o.sessions,
		Procs: o.procs, Addresses: (o.sessions + o.perAddress - 1) / o.perAddress,
		Prefixes:         ((o.sessions+o.perAddress-1)/o.perAddress + idleAddrsPerPrefix - 1) / idleAddrsPerPrefix,
		RelayMaxSessions: max(maxSessions, 8192),
		Dials:            o.procs * max(1, o.dials/o.procs),
		KeepAliveMS:      ms(o.keepAlive),
		PingS:            o.ping.Seconds(),
		LoadStart:        loadAverage(),
	}

	// Warm up: the first sessions allocate what every later one shares.
	warm, err := dialMany(ctx, target.addr, cfg, 8)
	if err != nil {
		return nil, err
	}
	closeAll(warm)
	var probe *honest
	// reopen opens the probe's connections again if one of them ended:
	// a normal client on a loaded machine may take a relay that answered
	// late for a dead one (ErrSilent), and would reconnect.
	reopen := func() error {
		err := cmp.Or(probe.send.Err(), probe.recv.Err())
		if err == nil {
			return nil
		}
		res.ProbeReconnects++
		o.progressf("probe: its connection ended (%v); opening it again", err)
		probe.Close()
		if probe, err = newHonest(ctx, target.addr, cfg); err != nil {
			return fmt.Errorf("probe client: %w", err)
		}
		return nil
	}
	// measure runs the probe for o.probe, if there is one, and returns
	// its p99s.
	measure := func(phase string) (deliver, ping float64, delivered int) {
		if probe == nil {
			return 0, 0, 0
		}
		if err := reopen(); err != nil {
			o.progressf("%v", err)
			res.ProbeFailures++
			return 0, 0, 0
		}
		o.progressf("probe: %v %s", o.probe, phase)
		var row attackRow
		probe.measure(ctx, o.probe, o.probeEvery, &row)
		res.ProbeFailures += row.Failures
		return row.DeliverP99MS, row.PingP99MS, row.Delivered
	}
	if o.probe > 0 {
		if probe, err = newHonest(ctx, target.addr, cfg); err != nil {
			return nil, fmt.Errorf("probe client: %w", err)
		}
		defer func() { probe.Close() }()
	}
	res.ProbeDeliverP99Before, res.ProbePingP99Before, _ = measure("before the sessions")
	time.Sleep(500 * time.Millisecond)
	p0, s0, err := settledSample(ctx, child)
	if err != nil {
		return nil, err
	}

	o.progressf("opening %d idle sessions over %s from %d processes", o.sessions, o.transport, o.procs)
	start := time.Now()
	clients, retries, err := startIdleClients(ctx, target.addr, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.stop()
		}
	}()
	res.OpenSeconds, res.DialRetries = time.Since(start).Seconds(), retries
	res.RelayNice = threadsNice(child.cmd.Process.Pid)
	res.ClientsNice = 19
	for _, c := range clients {
		res.ClientsNice = min(res.ClientsNice, threadsNice(c.cmd.Process.Pid))
	}
	cpu0, ccpu0, wall0 := sampleChildCPU(child), clientsCPU(clients), time.Now()
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if cpu1 := sampleChildCPU(child); cpu0 >= 0 && cpu1 >= 0 {
		res.RelayCPUPercent = 100 * (cpu1 - cpu0).Seconds() / time.Since(wall0).Seconds()
	}
	if ccpu1 := clientsCPU(clients); ccpu0 >= 0 && ccpu1 >= 0 {
		res.ClientsCPUPercent = 100 * (ccpu1 - ccpu0).Seconds() / time.Since(wall0).Seconds()
	}
	p1, s1, err := settledSample(ctx, child)
	if err != nil {
		return nil, err
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", child.cmd.Process.Pid)); err == nil {
		res.RelayFDs = len(fds)
	}

	if o.memProfile != "" {
		path, err := filepath.Abs(o.memProfile)
		if err != nil {
			return nil, err
		}
		if err := child.WriteHeapProfile(ctx, path); err != nil {
			return nil, err
		}
	}
	res.ProbeDeliverP99, res.ProbePingP99, res.ProbeDelivered = measure(fmt.Sprintf("with %d sessions open", o.sessions))
	// Stopped for 3 times the probe at most, the clients send nothing:
	// sessions whose idle timeout is shorter could end.
	if probe != nil && o.pause && max(5*o.keepAlive, link.DefaultTransportIdleTimeout) >= 3*o.probe {
		for _, c := range clients {
			c.cmd.Process.Signal(syscall.SIGSTOP)
		}
		res.ProbeDeliverP99Paused, res.ProbePingP99Paused, _ = measure("with the sessions' clients stopped")
		for _, c := range clients {
			c.cmd.Process.Signal(syscall.SIGCONT)
		}
	}

	for _, c := range clients {
		n, err := c.ping(ctx)
		if err != nil {
			return nil, err
		}
		res.Lost += n
	}
	if probe != nil {
		for _, c := range clients {
			c.stop()
		}
		// Wait, a minute at most, until the relay has released the
		// sessions: it then holds the probe's two.
		for end := time.Now().Add(time.Minute); time.Now().Before(end); sleepCtx(ctx, 200*time.Millisecond) {
			if n, err := child.Connections(ctx); err != nil || n <= 2 {
				break
			}
		}
		res.ProbeDeliverP99After, res.ProbePingP99After, _ = measure("after the sessions were closed")
		if err := reopen(); err != nil {
			return nil, err
		}
	}
	res.LoadEnd = loadAverage()
	k := float64(o.sessions)
	res.RSSBefore, res.RSS = p0.RSS, p1.RSS
	res.RSSPerSession = float64(p1.RSS-p0.RSS) / k
	res.AnonPerSession = float64(p1.RSSAnon-p0.RSSAnon) / k
	res.HeapPerSession = (float64(s1.HeapInuse) - float64(s0.HeapInuse)) / k
	res.StackPerSession = (float64(s1.StackInuse) - float64(s0.StackInuse)) / k
	res.GoroutinesPerSess = float64(s1.Goroutines-s0.Goroutines) / k
	return res, ctx.Err()
}

// idleClient is a running idle-client process.
type idleClient struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *bufio.Scanner
	stopped bool
}

// clientsCPU returns the CPU time the client processes have used so far,
// or -1 if it cannot be read.
func clientsCPU(clients []*idleClient) time.Duration {
	var sum time.Duration
	for _, c := range clients {
		s, err := readProc(c.cmd.Process.Pid)
		if err != nil {
			return -1
		}
		sum += s.CPU
	}
	return sum
}

// loadAverage returns the machine's 1-minute load average, or 0 if it
// cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// idleDialTries is the most attempts of one idle session's dial.
const idleDialTries = 5

// idleDialTimeout bounds each idle session's QUIC attempt and handshake.
const idleDialTimeout = 30 * time.Second

// startIdleClients starts o.procs idle-client processes, which share the
// sessions, and waits until every one has opened its sessions. It returns
// the dials that had to be tried again.
func startIdleClients(ctx context.Context, addr queue.Address, o *idleOptions) ([]*idleClient, int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	clients := make([]*idleClient, o.procs)
	stopAll := func() {
		for _, c := range clients {
			if c != nil {
				c.stop()
			}
		}
	}
	for p := range o.procs {
		first, end := p*o.sessions/o.procs, (p+1)*o.sessions/o.procs
		cmd := exec.Command(exe, "idle-client", "--relay", addr.String(), "--transport", o.transport,
			"--first", strconv.Itoa(first), "--count", strconv.Itoa(end-first), "--per-address", strconv.Itoa(o.perAddress),
			"--dials", strconv.Itoa(max(1, o.dials/o.procs)), "--keepalive", o.keepAlive.String(), "--ping", o.ping.String(),
			"--nice", strconv.Itoa(o.clientNice))
		if p == 0 && o.clientProf != "" {
			path, err := filepath.Abs(o.clientProf)
			if err != nil {
				stopAll()
				return nil, 0, err
			}
			cmd.Args = append(cmd.Args, "--cpuprofile", path)
		}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			stopAll()
			return nil, 0, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			stopAll()
			return nil, 0, err
		}
		if err := cmd.Start(); err != nil {
			stopAll()
			return nil, 0, fmt.Errorf("start idle client: %w", err)
		}
		clients[p] = &idleClient{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	}
	var retries int64
	for _, c := range clients {
		line, err := c.answer(ctx, "ready ")
		if err != nil {
			stopAll()
			return nil, 0, err
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(line, "ready "), 10, 64)
		if err != nil {
			stopAll()
			return nil, 0, fmt.Errorf("idle client said %q", line)
		}
		retries += n
	}
	return clients, retries, nil
}

// answer reads the client's next line, which must start with prefix (an
// "error" line is returned as an error), or fails when ctx ends.
func (c *idleClient) answer(ctx context.Context, prefix string) (string, error) {
	type line struct {
		s  string
		ok bool
	}
	got := make(chan line, 1)
	go func() {
		ok := c.out.Scan()
		got <- line{c.out.Text(), ok}
	}()
	select {
	case l := <-got:
		switch {
		case !l.ok:
			return "", errors.New("idle client exited")
		case strings.HasPrefix(l.s, "error "):
			return "", fmt.Errorf("idle client: %s", strings.TrimPrefix(l.s, "error "))
		case !strings.HasPrefix(l.s, prefix):
			return "", fmt.Errorf("idle client said %q, want %q", l.s, prefix+"...")
		}
		return l.s, nil
	case <-ctx.Done():
		c.cmd.Process.Kill() // ends the reading goroutine
		return "", ctx.Err()
	}
}

// ping makes the client PING its sessions and returns how many did not
// answer.
func (c *idleClient) ping(ctx context.Context) (int64, error) {
	if _, err := io.WriteString(c.stdin, "ping\n"); err != nil {
		return 0, fmt.Errorf("idle client: %w", err)
	}
	line, err := c.answer(ctx, "lost ")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimPrefix(line, "lost "), 10, 64)
}

// stop closes the client's stdin, which makes it close its sessions and
// exit, and waits for it; after childTimeout it kills it. It is
// idempotent.
func (c *idleClient) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.cmd.Process.Signal(syscall.SIGCONT) // in case it was stopped
	c.stdin.Close()
	t := time.AfterFunc(childTimeout, func() { c.cmd.Process.Kill() })
	defer t.Stop()
	c.cmd.Wait()
}

// idleClientNice is --client-nice's default. At 5 nicer, each client
// process weighs a third of the relay with Linux's scheduler.
const idleClientNice = 5

// lowerPriority makes every thread of this process n nicer than it is (at
// most 19). Linux sets the nice value of threads, not processes; a thread
// started later inherits the value of the thread that starts it.
func lowerPriority(n int) error {
	if n == 0 {
		return nil
	}
	st, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	cur, err := statNice(st)
	if err != nil {
		return err
	}
	target := min(cur+n, 19)
	// Twice: a thread the runtime starts during the first pass, from a
	// thread not yet set, is set in the second.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, target); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
	}
	return nil
}

// threadsNice returns the least nice value of process pid's threads, or
// -21 if it cannot be read.
func threadsNice(pid int) int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -21
	}
	least := 20
	for _, t := range tasks {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		n, err := statNice(st)
		if err != nil {
			return -21
		}
		least = min(least, n)
	}
	if least == 20 {
		return -21
	}
	return least
}

// statNice returns the nice value, field 19, of a /proc stat file.
func statNice(st []byte) (int, error) {
	// Fields are counted from the last ')': the command name may hold
	// spaces.
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 17 {
		return 0, errors.New("unreadable /proc stat")
	}
	return strconv.Atoi(f[16])
}

// idleSource returns the source address of idle session i: per sessions
// from each address, idleAddrsPerPrefix addresses in each /24 from
// 127.1.0.0/24 on.
func idleSource(i, per int) netip.Addr {
	a := i / per
	p := a / idleAddrsPerPrefix
	return netip.AddrFrom4([4]byte{127, byte(1 + p/256), byte(p % 256), byte(2 + a%idleAddrsPerPrefix)})
}

// runIdleClient is the idle-client command.
func runIdleClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idle-client", flag.ContinueOnError)
	relayAddr := fs.String("relay", "", "relay address (required)")
	transport := fs.String("transport", string(link.TransportQUIC), "quic or tcp")
	first := fs.Int("first", 0, "index of the first session (decides its source address)")
	count := fs.Int("count", 1, "sessions to open")
	per := fs.Int("per-address", 200, "sessions per source address")
	dials := fs.Int("dials", 8, "dials in progress at a time")
	keepAlive := fs.Duration("keepalive", 0, "transport keep-alive (0: the client default); the idle timeout is 5 times it, at least the client default")
	ping := fs.Duration("ping", 0, "mean wait between hush PINGs (0: the client default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process, until it exits, to this file")
	nice := fs.Int("nice", 0, "run this much nicer than the parent (0 to 19)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	addr, err := queue.ParseAddress(*relayAddr)
	if err != nil || *count < 1 || *per < 1 || *dials < 1 || *first < 0 || (*first+*count-1) / *per >= idleMaxAddresses || *nice < 0 || *nice > 19 {
		return usageError{"idle-client: bad --relay, --first, --count, --per-address or --nice"}
	}
	if err := lowerPriority(*nice); err != nil {
		return fmt.Errorf("idle client: nice: %w", err)
	}
	// The parent answers for the whole process group's Ctrl-C.
	signal.Ignore(os.Interrupt)
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	out := bufio.NewWriter(stdout)
	reply := func(format string, a ...any) error {
		fmt.Fprintf(out, format+"\n", a...)
		return out.Flush()
	}
	conns := make([]*link.Conn, *count)
	defer closeAll(conns)
	// A dial that fails (a handshake that timed out on a machine busy
	// with the other processes' handshakes) is tried again a second
	// later, idleDialTries times in all at most; the retries are
	// reported.
	var (
		retries, opened, ended atomic.Int64
		whyMu                  sync.Mutex
		why                    = make(map[string]int) // why sessions ended, redacted
	)
	// Every 30 s while they open, how many are open and how many of
	// those already ended, and why (to stderr).
	progress := time.NewTicker(30 * time.Second)
	stopProgress := make(chan struct{})
	go func() {
		for {
			select {
			case <-progress.C:
				whyMu.Lock()
				reasons := fmt.Sprint(why)
				whyMu.Unlock()
				fmt.Fprintf(stderr, "hush-bench: idle client: %d of %d sessions opened, %d of them ended %s, %d dials retried\n",
					opened.Load(), *count, ended.Load(), reasons, retries.Load())
			case <-stopProgress:
				return
			}
		}
	}()
	err = parallel(ctx, *count, *dials, func(ctx context.Context, i int) error {
		cfg := link.Config{Transport: link.Transport(*transport), LocalAddr: idleSource(*first+i, *per),
			TransportKeepAlive: *keepAlive, TransportIdleTimeout: max(5**keepAlive, link.DefaultTransportIdleTimeout), KeepAlive: *ping,
			// Handshakes wait for the relay's CPU behind thousands of
			// others: longer than a client's default 3 s.
			QUICTimeout: idleDialTimeout, HandshakeTimeout: idleDialTimeout}
		for try := 0; ; try++ {
			c, err := link.Dial(ctx, addr, cfg)
			if err == nil {
				conns[i] = c
				opened.Add(1)
				go func() {
					<-c.Done()
					ended.Add(1)
					if err := c.Err(); !errors.Is(err, link.ErrClosed) {
						whyMu.Lock()
						why[queue.RedactAddresses(err.Error())]++
						whyMu.Unlock()
					}
				}()
				return nil
			}
			if try == idleDialTries-1 || ctx.Err() != nil {
				return fmt.Errorf("dial %s from %s: %w", cfg.Transport, cfg.LocalAddr, err)
			}
			retries.Add(1)
			sleepCtx(ctx, time.Second)
		}
	})
	progress.Stop()
	close(stopProgress)
	if err != nil {
		return reply("error %v", err)
	}
	// Each session exchanges one command block with the relay before it
	// is measured, so that buffers that grow with traffic (TLS record
	// buffers, QUIC stream state) are counted as an idle session that has
	// been used holds them.
	if n := pingAll(ctx, conns, stderr); n > 0 {
		return reply("error %d of %d new sessions did not answer PING", n, len(conns))
	}
	if err := reply("ready %d", retries.Load()); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if sc.Text() != "ping" {
			if err := reply("error unknown command"); err != nil {
				return err
			}
			continue
		}
		if err := reply("lost %d", pingAll(ctx, conns, stderr)); err != nil {
			return err
		}
	}
	return nil
}

// Bounds of an idle client's PING of each of its sessions.
const (
	// pingWait is how long a session has to answer a PING. It is longer
	// than a quiet relay ever needs: while thousands of QUIC sessions
	// open, the kernel drops datagrams at the relay's socket (docs/
	// performance.md, "Round six"), and QUIC's retransmission timer,
	// doubled at each loss, can hold a live session's PING for more than
	// 10 seconds.
	pingWait = 30 * time.Second
	// pingSlow is the answer time beyond which a session is counted as
	// slow (and reported), though not lost.
	pingSlow = 10 * time.Second
)

// pingAll sends a PING on every connection, 64 at a time, and returns how
// many got no PONG within pingWait. It writes why to stderr: how many
// connections had ended, with each distinct error (addresses redacted),
// how many were open but did not answer in time, and how many answered
// only after pingSlow.
func pingAll(ctx context.Context, conns []*link.Conn, stderr io.Writer) int64 {
	var (
		failed atomic.Int64
		slow   atomic.Int64
		mu     sync.Mutex
		why    = make(map[string]int)
	)
	parallel(ctx, len(conns), 64, func(ctx context.Context, i int) error {
		pctx, cancel := context.WithTimeout(ctx, pingWait)
		defer cancel()
		start := time.Now()
		if err := conns[i].Ping(pctx); err != nil {
			failed.Add(1)
			reason := fmt.Sprintf("open, no answer in %v", pingWait)
			if cerr := conns[i].Err(); cerr != nil {
				reason = "ended: " + queue.RedactAddresses(cerr.Error())
			}
			mu.Lock()
			why[reason]++
			mu.Unlock()
		} else if time.Since(start) > pingSlow {
			slow.Add(1)
		}
		return nil
	})
	for reason, n := range why {
		fmt.Fprintf(stderr, "hush-bench: idle client: %d sessions %s\n", n, reason)
	}
	if n := slow.Load(); n > 0 {
		fmt.Fprintf(stderr, "hush-bench: idle client: %d sessions answered PING only after %v\n", n, pingSlow)
	}
	return failed.Load()
}

// settledSample makes the child collect its garbage and returns its /proc
// figures and Go memory statistics.
func settledSample(ctx context.Context, c *relayChild) (procSample, childStats, error) {
	if err := c.GC(ctx); err != nil {
		return procSample{}, childStats{}, err
	}
	p, err := c.Sample()
	if err != nil {
		return p, childStats{}, err
	}
	s, err := c.Stats(ctx)
	return p, s, err
}
