//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hushrelay/hush/client/link"
)

// idleOptions are the flags of the idle scenario.
type idleOptions struct {
	commonOptions
	sessions   int
	settle     time.Duration
	memProfile string
}

// idleResult is the idle scenario's report. Memory is read after the
// relay's garbage collector has run and returned free memory to the OS, so
// it is what the sessions keep alive. Kernel socket buffers are not in RSS.
type idleResult struct {
	Scenario  string `json:"scenario"`
	Transport string `json:"transport"`
	Sessions  int    `json:"sessions"`

	RSSBefore         int64   `json:"rss_before_bytes"` // relay VmRSS before opening the sessions
	RSS               int64   `json:"rss_bytes"`        // relay VmRSS with the sessions open
	RSSPerSession     float64 `json:"rss_per_session_bytes"`
	AnonPerSession    float64 `json:"rss_anon_per_session_bytes"`
	HeapPerSession    float64 `json:"heap_per_session_bytes"`  // Go heap in use
	StackPerSession   float64 `json:"stack_per_session_bytes"` // goroutine stacks
	GoroutinesPerSess float64 `json:"goroutines_per_session"`
	Lost              int64   `json:"lost"`       // sessions that did not answer a PING at the end
	Duplicated        int64   `json:"duplicated"` // always 0: no messages are sent
}

func runIdleCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o idleOptions
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	addCommonFlags(fs, &o.commonOptions)
	fs.IntVar(&o.sessions, "sessions", 1000, "idle sessions to open (K)")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait this long after opening the sessions before measuring")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the relay, with the sessions open, to this file")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.sessions < 1 {
		return usageError{"--sessions must be at least 1"}
	}
	if o.relayAddr != "" {
		return usageError{"the idle scenario measures the started relay's memory: --relay is not supported"}
	}
	res, err := runIdle(ctx, &o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "idle sessions over %s: %d\n", res.Transport, res.Sessions)
	fmt.Fprintf(stdout, "relay RSS      %s before, %s with the sessions\n", mib(res.RSSBefore), mib(res.RSS))
	fmt.Fprintf(stdout, "per session    %.1f KiB RSS (%.1f KiB anonymous; Go heap %.1f KiB, stacks %.1f KiB, %.1f goroutines)\n",
		res.RSSPerSession/1024, res.AnonPerSession/1024, res.HeapPerSession/1024, res.StackPerSession/1024, res.GoroutinesPerSess)
	fmt.Fprintf(stdout, "lost           %d sessions\n", res.Lost)
	return nil
}

func runIdle(ctx context.Context, o *idleOptions) (*idleResult, error) {
	rate := 0
	if o.memProfile != "" {
		rate = 1 // exact: the sessions' allocations are few
	}
	target, err := startTarget(ctx, &o.commonOptions, rate)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	child := target.child
	cfg := link.Config{Transport: link.Transport(o.transport)}

	// Warm up: the first sessions allocate what every later one shares.
	warm, err := dialMany(ctx, target.addr, cfg, 8)
	if err != nil {
		return nil, err
	}
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)
	p0, s0, err := settledSample(ctx, child)
	if err != nil {
		return nil, err
	}

	o.progressf("opening %d idle sessions over %s", o.sessions, o.transport)
	conns, err := dialMany(ctx, target.addr, cfg, o.sessions)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	// Each session exchanges one command block with the relay before it is
	// measured, so that buffers that grow with traffic (TLS record
	// buffers, QUIC stream state) are counted as an idle session that has
	// been used holds them.
	if n := pingAll(ctx, conns); n > 0 {
		return nil, fmt.Errorf("%d of %d new sessions did not answer PING", n, len(conns))
	}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p1, s1, err := settledSample(ctx, child)
	if err != nil {
		return nil, err
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

	lost := pingAll(ctx, conns)
	k := float64(o.sessions)
	return &idleResult{
		Scenario: "idle", Transport: o.transport, Sessions: o.sessions,
		RSSBefore:         p0.RSS,
		RSS:               p1.RSS,
		RSSPerSession:     float64(p1.RSS-p0.RSS) / k,
		AnonPerSession:    float64(p1.RSSAnon-p0.RSSAnon) / k,
		HeapPerSession:    (float64(s1.HeapInuse) - float64(s0.HeapInuse)) / k,
		StackPerSession:   (float64(s1.StackInuse) - float64(s0.StackInuse)) / k,
		GoroutinesPerSess: float64(s1.Goroutines-s0.Goroutines) / k,
		Lost:              lost,
	}, ctx.Err()
}

// pingAll sends a PING on every connection, 64 at a time, and returns how
// many got no PONG within 10 seconds.
func pingAll(ctx context.Context, conns []*link.Conn) int64 {
	var failed atomic.Int64
	parallel(ctx, len(conns), 64, func(ctx context.Context, i int) error {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if conns[i].Ping(pctx) != nil {
			failed.Add(1)
		}
		return nil
	})
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
