// Package gctune sets the Go garbage collector's target of a relay
// process (hush-relay start, and hush-bench's relay child, which measures
// what hush-relay does), and of hush-bench's throughput load generator,
// whose client connections allocate the body of each message delivered.
//
// A relay's live heap is small (a few MiB) while it allocates fast:
// bbolt's page buffers of every commit (a 16 KiB message is written in
// leaves of two to four of them) and a block buffer per message. With
// Go's default GOGC=100 the heap may grow only by its live size between
// two collections, so a busy relay collects dozens of times a second and
// its scavenger gives memory back to the system that the next commit
// faults in again. Run raises GOGC while the live heap is small, so that
// the heap may grow by at least a headroom between collections: with
// 32 MiB, relay CPU per message at the maximum load fell by a fifth
// (docs/performance.md). A larger headroom was slower (64 MiB, or GOGC
// 1600: a heap that outgrows the caches); a relay with a large live heap
// (many sessions) keeps GOGC=100, so its memory is at most the headroom
// above what Go's default gives.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultHeadroom is the headroom hush-relay gives the heap: 32 MiB.
const DefaultHeadroom = 32 << 20

// Bounds of the target.
const (
	minPercent = 100 // Go's default: never collect more often than it would
	maxPercent = 1000
	// interval is how often Run reads the live heap.
	interval = time.Second
)

// Percent returns the GOGC that lets a heap of live bytes grow by at
// least headroom bytes before the next collection: headroom as a
// percentage of live, but at least 100 (Go's default) and at most 1000
// (before the first collection the live heap reads 0, and Go's first
// target is 4 MiB times GOGC/100).
func Percent(live, headroom int64) int {
	p := float64(headroom) * 100 / float64(max(live, 1))
	return int(min(max(p, minPercent), maxPercent))
}

// liveMetric is the runtime metric of the heap live at the last
// collection.
const liveMetric = "/gc/heap/live:bytes"

// Run sets GOGC to Percent(live heap, headroom) now and then every
// second, until ctx is done, and then sets it back to what it was. It
// does nothing but wait for ctx if getenv("GOGC") is not empty: the
// operator's setting stands. Call it on a goroutine of its own, once per
// process.
func Run(ctx context.Context, headroom int64, getenv func(string) string) {
	if getenv("GOGC") != "" {
		<-ctx.Done()
		return
	}
	sample := []metrics.Sample{{Name: liveMetric}}
	set := -1 // the percent last set
	old := -1
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		if p := Percent(live, headroom); p != set {
			prev := debug.SetGCPercent(p)
			if old < 0 {
				old = prev
			}
			set = p
		}
		select {
		case <-ctx.Done():
			if old >= 0 {
				debug.SetGCPercent(old)
			}
			return
		case <-t.C:
		}
	}
}
