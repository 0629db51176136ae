//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hushrelay/hush/client/link"
)

// The down scenario measures how long idle client connections take to
// notice a relay that was killed with SIGKILL and stays down (issue 12):
// each run starts a relay child, opens --conns idle connections over QUIC
// and as many over TCP with the client's default settings, lets them idle
// for --idle and a random part of a second more (so that the kill falls
// anywhere between two keep-alives), kills the child, and times each
// connection from the kill to its end. It prints each run's median and
// worst per transport, and the median of the runs' medians.

type downOptions struct {
	commonOptions
	runs  int
	conns int
	idle  time.Duration
	bound time.Duration
}

// downRun is one run's figures, per transport.
type downRun struct {
	QUICMedianMs float64 `json:"quic_median_ms"`
	QUICWorstMs  float64 `json:"quic_worst_ms"`
	TCPMedianMs  float64 `json:"tcp_median_ms"`
	TCPWorstMs   float64 `json:"tcp_worst_ms"`
	// Silent counts the QUIC connections that ended because the relay
	// sent nothing (link.ErrSilent).
	Silent int `json:"quic_silent"`
}

type downResult struct {
	Runs         []downRun `json:"runs"`
	Conns        int       `json:"conns"`
	QUICMedianMs float64   `json:"quic_median_ms"` // median of the runs' medians
	TCPMedianMs  float64   `json:"tcp_median_ms"`
}

func runDownCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &downOptions{}
	help, err := scenarioFlags("hush-bench down", &o.commonOptions, args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&o.runs, "runs", 3, "relays started and killed, one after another")
		fs.IntVar(&o.conns, "conns", 10, "idle connections per transport")
		fs.DurationVar(&o.idle, "idle", 3*time.Second, "how long the connections idle before the kill (a random part of a second more)")
		fs.DurationVar(&o.bound, "bound", 30*time.Second, "how long to wait for the connections to end after the kill")
	})
	if help || err != nil {
		return err
	}
	switch {
	case o.relayAddr != "":
		return usageError{"down kills the relay it starts: --relay does not apply"}
	case o.runs < 1 || o.conns < 1:
		return usageError{"--runs and --conns must be at least 1"}
	}
	res, err := runDown(ctx, o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "idle connections noticing a relay killed with SIGKILL (%d per transport and run):\n", res.Conns)
	for i, r := range res.Runs {
		fmt.Fprintf(stdout, "run %d  QUIC median %6.0f ms, worst %6.0f ms (%d silent)  TCP median %5.1f ms, worst %5.1f ms\n",
			i+1, r.QUICMedianMs, r.QUICWorstMs, r.Silent, r.TCPMedianMs, r.TCPWorstMs)
	}
	fmt.Fprintf(stdout, "median of the runs' medians: QUIC %.0f ms, TCP %.1f ms\n", res.QUICMedianMs, res.TCPMedianMs)
	return nil
}

func runDown(ctx context.Context, o *downOptions) (*downResult, error) {
	res := &downResult{Conns: o.conns}
	var quicMedians, tcpMedians []float64
	for i := range o.runs {
		r, err := downOnce(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		o.progressf("run %d: QUIC median %.0f ms, TCP median %.1f ms", i+1, r.QUICMedianMs, r.TCPMedianMs)
		res.Runs = append(res.Runs, r)
		quicMedians = append(quicMedians, r.QUICMedianMs)
		tcpMedians = append(tcpMedians, r.TCPMedianMs)
	}
	res.QUICMedianMs, res.TCPMedianMs = median(quicMedians), median(tcpMedians)
	return res, nil
}

// downOnce starts a relay, idles connections to it, kills it and times
// the connections' ends.
func downOnce(ctx context.Context, o *downOptions) (downRun, error) {
	var r downRun
	dir, err := os.MkdirTemp("", "hush-bench-down-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	child, err := startChild(ctx, childOptions{dataDir: dir, newRate: o.newRate, sendRate: o.sendRate})
	if err != nil {
		return r, err
	}
	defer child.kill()
	qs, err := dialMany(ctx, child.addr, link.Config{Transport: link.TransportQUIC}, o.conns)
	if err != nil {
		return r, err
	}
	defer closeAll(qs)
	ts, err := dialMany(ctx, child.addr, link.Config{Transport: link.TransportTCP}, o.conns)
	if err != nil {
		return r, err
	}
	defer closeAll(ts)
	sleepCtx(ctx, o.idle+mrand.N(time.Second))
	if err := ctx.Err(); err != nil {
		return r, err
	}
	all := append(slices.Clone(qs), ts...)
	for _, c := range all {
		if c.Err() != nil {
			return r, fmt.Errorf("a connection ended before the kill: %w", c.Err())
		}
	}
	child.kill()
	start := time.Now()
	ends := make([]float64, len(all)) // ms from the kill; -1 if it did not end
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Go(func() {
			bound := time.NewTimer(o.bound)
			defer bound.Stop()
			select {
			case <-c.Done():
				ends[i] = ms(time.Since(start))
			case <-bound.C:
				ends[i] = -1
			case <-ctx.Done():
				ends[i] = -1
			}
		})
	}
	wg.Wait()
	if slices.Contains(ends, -1) {
		return r, fmt.Errorf("a connection outlived its relay by %v", o.bound)
	}
	qms, tms := ends[:len(qs)], ends[len(qs):]
	for _, c := range qs {
		if errors.Is(c.Err(), link.ErrSilent) {
			r.Silent++
		}
	}
	r.QUICMedianMs, r.QUICWorstMs = median(qms), slices.Max(qms)
	r.TCPMedianMs, r.TCPWorstMs = median(tms), slices.Max(tms)
	return r, nil
}
