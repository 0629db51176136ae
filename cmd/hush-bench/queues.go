//go:build linux

package main

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// queuesOptions are the flags of the queues scenario.
type queuesOptions struct {
	commonOptions
	queues   int
	conns    int
	workers  int
	restarts int
	sample   int
	// clientProf, if set, is where the load generator's CPU profile of
	// the creation goes.
	clientProf string
	// pregenerate makes the queues' keys before the clock starts.
	pregenerate bool
	// mappedLimitMiB, if not 0, is the relay child's MappedStoreLimit in
	// MiB (negative: never trim).
	mappedLimitMiB int64
}

// queuesResult is the queues scenario's report.
type queuesResult struct {
	Scenario      string  `json:"scenario"`
	Transport     string  `json:"transport"`
	Queues        int     `json:"queues"`
	CreateSeconds float64 `json:"create_s"`
	QueuesPerSec  float64 `json:"queues_per_sec"`
	// QueuesPerSecLast is the rate of the last tenth of the queues: the
	// rate with (nearly) all of them stored.
	QueuesPerSecLast float64 `json:"queues_per_sec_last_tenth"`
	// Pregenerated is set when the queues' keys were made before the
	// clock started (--pregenerate).
	Pregenerated bool `json:"pregenerated"`
	// StoredBefore is the number of queues the relay's store held before
	// (with --data on an existing store; 0 otherwise).
	StoredBefore int `json:"stored_before"`

	// CPU per queue created, in microseconds: the relay's (null with an
	// external relay) and the load generator's, over all the queues and
	// over the last tenth; and the CPU used by every other process of
	// the machine while the queues were created, in percent of one core.
	CPUPerNew           *float64 `json:"cpu_us_per_new"`
	CPUPerNewLast       *float64 `json:"cpu_us_per_new_last_tenth"`
	ClientCPUPerNew     float64  `json:"client_cpu_us_per_new"`
	ClientCPUPerNewLast float64  `json:"client_cpu_us_per_new_last_tenth"`
	OthersCPUPercent    *float64 `json:"others_cpu_percent"`

	// The relay's store while the queues were created (null with an
	// external relay): group commits per second, operations per commit,
	// the mean commit's duration (fsync included) and the share of the
	// time its one commit loop spent committing (the loop's ceiling is
	// 100%), and the drops of its store mapping.
	CommitsPerSec *float64 `json:"relay_commits_per_sec"`
	OpsPerCommit  *float64 `json:"relay_ops_per_commit"`
	CommitMs      *float64 `json:"relay_commit_ms"`
	CommitBusy    *float64 `json:"relay_commit_busy_percent"`
	TrimsPerSec   *float64 `json:"relay_trims_per_sec"`

	// Relay memory once the queues exist (connections closed, garbage
	// collected): RSS, its anonymous part and its part mapped from files
	// (the bbolt file), and the peak during creation.
	RSS     int64 `json:"rss_bytes"`
	RSSAnon int64 `json:"rss_anon_bytes"`
	RSSFile int64 `json:"rss_file_bytes"`
	RSSPeak int64 `json:"rss_peak_bytes"`
	DBBytes int64 `json:"db_bytes"` // the store file's size

	// Restarts: from starting the relay process to the answer of the first
	// command on a stored queue (a GET, answered NO_MSG), dial included.
	RestartMS       float64   `json:"restart_ms"` // the median
	RestartsMS      []float64 `json:"restarts_ms"`
	OpenMS          float64   `json:"open_ms"` // relay.New inside the process, the median
	RSSAfterRestart int64     `json:"rss_after_restart_bytes"`
	RSSAfterCheck   int64     `json:"rss_after_check_bytes"` // after the sampled queues were read

	Checked    int   `json:"checked"`    // queues checked after the restart (a sample)
	Lost       int64 `json:"lost"`       // checked queues the restarted relay did not know
	Duplicated int64 `json:"duplicated"` // queue IDs issued twice
}

func runQueuesCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o queuesOptions
	help, err := scenarioFlags("queues", &o.commonOptions, args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&o.queues, "queues", 100000, "queues to create (N)")
		fs.IntVar(&o.conns, "conns", 16, "connections creating queues")
		fs.IntVar(&o.workers, "workers", 128, "NEW commands in flight, over all connections")
		fs.IntVar(&o.restarts, "restarts", 3, "relay restarts to time")
		fs.IntVar(&o.sample, "sample", 1000, "queues checked after the first restart")
		fs.Int64Var(&o.mappedLimitMiB, "relay-mapped-limit-mib", 0, "the started relay's bound on its store pages mapped into it, in MiB (relay.Config.MappedStoreLimit; 0: the relay default, 64; negative: never trimmed)")
		fs.BoolVar(&o.pregenerate, "pregenerate", false, "make every queue's two keys before the timed creation (link.Conn.CreateWithKeys), so that the load generator's key generation is not in the figures")
		fs.StringVar(&o.clientProf, "client-cpuprofile", "", "write a CPU profile of the load generator (this process) while it creates the queues to this file")
	})
	if help || err != nil {
		return err
	}
	switch {
	case o.queues < 1 || o.conns < 1 || o.workers < 1 || o.restarts < 1 || o.sample < 1:
		return usageError{"--queues, --conns, --workers, --restarts and --sample must be at least 1"}
	case o.relayAddr != "":
		return usageError{"the queues scenario restarts the started relay: --relay is not supported"}
	}
	res, err := runQueues(ctx, &o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	keys := ""
	if res.Pregenerated {
		keys = ", keys made beforehand"
	}
	fmt.Fprintf(stdout, "queues over %s: %d created in %.1f s (%.0f/s; the last tenth %.0f/s), %d stored before%s\n",
		res.Transport, res.Queues, res.CreateSeconds, res.QueuesPerSec, res.QueuesPerSecLast, res.StoredBefore, keys)
	if res.CPUPerNew != nil {
		fmt.Fprintf(stdout, "relay CPU      %.0f us per NEW (the last tenth %.0f us)\n", *res.CPUPerNew, *res.CPUPerNewLast)
	}
	fmt.Fprintf(stdout, "client CPU     %.0f us per NEW (the last tenth %.0f us)\n", res.ClientCPUPerNew, res.ClientCPUPerNewLast)
	if res.OthersCPUPercent != nil {
		fmt.Fprintf(stdout, "others' CPU    %.0f%% of a core\n", *res.OthersCPUPercent)
	}
	if res.CommitsPerSec != nil && res.OpsPerCommit != nil {
		fmt.Fprintf(stdout, "relay store    %.0f commits/s, %.1f NEWs each, %.1f ms each (the commit loop busy %.0f%% of the time); %.1f mapping drops/s\n",
			*res.CommitsPerSec, *res.OpsPerCommit, *res.CommitMs, *res.CommitBusy, *res.TrimsPerSec)
	}
	fmt.Fprintf(stdout, "relay RSS      %s (anonymous %s, files %s; peak %s)\n", mib(res.RSS), mib(res.RSSAnon), mib(res.RSSFile), mib(res.RSSPeak))
	fmt.Fprintf(stdout, "database       %s\n", mib(res.DBBytes))
	fmt.Fprintf(stdout, "restart        %.1f ms to the first served command (median of %d; relay.New %.1f ms); RSS then %s, %s after reading %d queues\n",
		res.RestartMS, len(res.RestartsMS), res.OpenMS, mib(res.RSSAfterRestart), mib(res.RSSAfterCheck), res.Checked)
	fmt.Fprintf(stdout, "lost           %d of %d checked\n", res.Lost, res.Checked)
	fmt.Fprintf(stdout, "duplicated     %d IDs\n", res.Duplicated)
	return nil
}

func runQueues(ctx context.Context, o *queuesOptions) (*queuesResult, error) {
	target, err := startTargetMapped(ctx, &o.commonOptions, 0, 0, o.mappedLimitMiB<<20)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	cfg := link.Config{Transport: link.Transport(o.transport)}
	res := &queuesResult{Scenario: "queues", Transport: o.transport, Queues: o.queues, Pregenerated: o.pregenerate}

	conns, err := dialMany(ctx, target.addr, cfg, o.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	if res.StoredBefore, err = target.child.Queues(ctx); err != nil {
		return nil, err
	}
	o.progressf("creating %d queues over %s (%d stored)", o.queues, o.transport, res.StoredBefore)
	// keys[2i] and keys[2i+1] are queue i's authorization and DH keys,
	// with --pregenerate.
	var keys []*ecdh.PrivateKey
	if o.pregenerate {
		o.progressf("making %d keys", 2*o.queues)
		keys = make([]*ecdh.PrivateKey, 2*o.queues)
		err := parallel(ctx, len(keys), runtime.GOMAXPROCS(0), func(ctx context.Context, i int) error {
			var err error
			keys[i], err = queue.GenerateKey()
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	every := max(1, o.queues/o.sample)
	var (
		mu      sync.Mutex
		ids     = make([]uint64, 0, 2*o.queues) // the first 8 bytes of every ID, to find duplicates
		sample  []link.Queue
		created atomic.Int64
		tenth   = max(int64(o.queues)/10, 1)
		// lastTenth is when the last tenth started (as UnixNano), with
		// the relay's and this process's CPU time then.
		lastTenth             atomic.Int64
		relayLast, clientLast time.Duration
		busy0, _, busyErr     = machineCPU()
	)
	stopProfile, err := startCPUProfile(o.clientProf)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	st0, stErr0 := target.child.Stats(ctx)
	relay0, client0 := sampleCPU(target), clientCPU()
	start := time.Now()
	err = parallel(ctx, o.queues, o.workers, func(ctx context.Context, i int) error {
		var rq link.Queue
		var err error
		if keys != nil {
			rq, err = conns[i%len(conns)].CreateWithKeys(ctx, keys[2*i], keys[2*i+1])
			keys[2*i], keys[2*i+1] = nil, nil
		} else {
			rq, err = conns[i%len(conns)].Create(ctx)
		}
		if err != nil {
			return fmt.Errorf("create queue: %w", err)
		}
		mu.Lock()
		ids = append(ids, binary.BigEndian.Uint64(rq.RecipientID[:]), binary.BigEndian.Uint64(rq.SenderID[:]))
		if i%every == 0 {
			sample = append(sample, rq)
		}
		mu.Unlock()
		n := created.Add(1)
		if n == int64(o.queues)-tenth {
			relayLast, clientLast = sampleCPU(target), clientCPU() // read after parallel returns
			lastTenth.Store(time.Now().UnixNano())
		}
		if n%tenth == 0 {
			o.progressf("%d queues (%.0f/s)", n, float64(n)/time.Since(start).Seconds())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	relay1, client1 := sampleCPU(target), clientCPU()
	busy1, _, busyErr1 := machineCPU()
	st1, stErr1 := target.child.Stats(ctx)
	stopProfile()
	res.CreateSeconds = elapsed.Seconds()
	res.QueuesPerSec = float64(o.queues) / elapsed.Seconds()
	res.QueuesPerSecLast = res.QueuesPerSec
	perNew := func(d time.Duration, n int64) float64 { return float64(d.Microseconds()) / float64(n) }
	res.ClientCPUPerNew, res.ClientCPUPerNewLast = perNew(client1-client0, int64(o.queues)), res.ClientCPUPerNew
	if relay0 >= 0 && relay1 >= 0 {
		v := perNew(relay1-relay0, int64(o.queues))
		res.CPUPerNew, res.CPUPerNewLast = &v, &v
		if busyErr == nil && busyErr1 == nil {
			others := 100 * float64(busy1-busy0-(relay1-relay0)-(client1-client0)) / float64(elapsed)
			res.OthersCPUPercent = &others
		}
	}
	if stErr0 == nil && stErr1 == nil {
		commits := st1.Commits - st0.Commits
		perSec := commits / elapsed.Seconds()
		busy := 100 * (st1.CommitSeconds - st0.CommitSeconds) / elapsed.Seconds()
		trims := (st1.Trims - st0.Trims) / elapsed.Seconds()
		res.CommitsPerSec, res.CommitBusy, res.TrimsPerSec = &perSec, &busy, &trims
		if commits > 0 {
			ops := (st1.CommitOps - st0.CommitOps) / commits
			dur := 1000 * (st1.CommitSeconds - st0.CommitSeconds) / commits
			res.OpsPerCommit, res.CommitMs = &ops, &dur
		}
	}
	if t := lastTenth.Load(); t != 0 {
		res.QueuesPerSecLast = float64(tenth) / start.Add(elapsed).Sub(time.Unix(0, t)).Seconds()
		res.ClientCPUPerNewLast = perNew(client1-clientLast, tenth)
		if relayLast >= 0 && relay1 >= 0 {
			v := perNew(relay1-relayLast, tenth)
			res.CPUPerNewLast = &v
		}
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			res.Duplicated++
		}
	}
	ids = nil
	closeAll(conns)

	// Several of the relay's checks of its mapped store (ten a second,
	// relay.Config.MappedStoreLimit), so that the figure is the settled
	// one; the peak while creating is reported apart.
	time.Sleep(settleMapped)
	p, _, err := settledSample(ctx, target.child)
	if err != nil {
		return nil, err
	}
	res.RSS, res.RSSAnon, res.RSSFile, res.RSSPeak = p.RSS, p.RSSAnon, p.RSSFile, p.Peak
	if err := target.child.Stop(); err != nil {
		return nil, fmt.Errorf("stop relay: %w", err)
	}
	target.child = nil
	st, err := os.Stat(filepath.Join(target.dataDir, childStoreFile))
	if err != nil {
		return nil, err
	}
	res.DBBytes = st.Size()

	var opens []float64
	for r := range o.restarts {
		o.progressf("restart %d of %d", r+1, o.restarts)
		rr, err := restartOnce(ctx, target, cfg, sample, r == 0, o.mappedLimitMiB<<20)
		if err != nil {
			return nil, err
		}
		res.RestartsMS = append(res.RestartsMS, ms(rr.restart))
		opens = append(opens, ms(rr.open))
		if r == 0 {
			res.Checked, res.Lost = len(sample), rr.lost
			res.RSSAfterRestart, res.RSSAfterCheck = rr.rss, rr.rssChecked
		}
	}
	res.RestartMS = median(res.RestartsMS)
	res.OpenMS = median(opens)
	return res, nil
}

// restartResult is what restartOnce measured.
type restartResult struct {
	restart    time.Duration // process start to the first answer
	open       time.Duration // relay.New in the process
	rss        int64         // relay RSS after the first answer
	rssChecked int64         // relay RSS after the check
	lost       int64         // sampled queues the relay did not know
}

// restartOnce starts the relay on target's data directory, times the first
// served command (GET on a stored queue: NO_MSG) and, if check, checks that
// the relay knows every sampled queue. It stops the relay again.
// mappedLimit, if not 0, is the relay's MappedStoreLimit in bytes.
func restartOnce(ctx context.Context, target *relayTarget, cfg link.Config, sample []link.Queue, check bool, mappedLimit int64) (restartResult, error) {
	var rr restartResult
	start := time.Now()
	c, err := startChild(ctx, childOptions{dataDir: target.dataDir, mappedLimit: mappedLimit})
	if err != nil {
		return rr, err
	}
	defer c.Stop()
	conn, err := link.Dial(ctx, c.addr, cfg)
	if err != nil {
		return rr, err
	}
	defer conn.Close()
	if _, err := conn.Get(ctx, sample[0]); !errors.Is(err, link.ErrNoMessage) {
		return rr, fmt.Errorf("first command after the restart: %v", err)
	}
	rr.restart, rr.open = time.Since(start), c.openTime
	p, err := c.Sample()
	if err != nil {
		return rr, err
	}
	rr.rss = p.RSS
	if check {
		var n atomic.Int64
		err := parallel(ctx, len(sample), 32, func(ctx context.Context, i int) error {
			_, err := conn.Get(ctx, sample[i])
			switch {
			case errors.Is(err, link.ErrNoMessage):
			case errors.Is(err, link.ErrClosed), ctx.Err() != nil:
				return err
			default:
				n.Add(1)
			}
			return nil
		})
		if err != nil {
			return rr, err
		}
		rr.lost = n.Load()
		time.Sleep(settleMapped)
		if p, err = c.Sample(); err != nil {
			return rr, err
		}
		rr.rssChecked = p.RSS
	}
	return rr, c.Stop()
}

// settleMapped is how long the queues scenario waits before it reads the
// relay's memory: several periods of the relay's trim (ten a second) of
// the pages of its store file mapped into it, and of its workers' linger.
const settleMapped = 1500 * time.Millisecond

// median returns the median of v (the mean of the middle two for an even
// count), or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
