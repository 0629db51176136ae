package relaytest

import (
	"net/netip"
	"sync"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// Watcher records what a relay sees: give its Observe to
// relay.Config.Observe, and its ObserveSource to
// relay.Config.ObserveSource. Its methods are safe for concurrent use.
type Watcher struct {
	mu      sync.Mutex
	seen    []relay.Sighting
	sources map[netip.Addr]int
}

// ObserveSource records the source address of a connection.
func (w *Watcher) ObserveSource(a netip.Addr) {
	w.mu.Lock()
	if w.sources == nil {
		w.sources = make(map[netip.Addr]int)
	}
	w.sources[a.Unmap()]++
	w.mu.Unlock()
}

// Connections returns how many connections the relay accepted from a so
// far.
func (w *Watcher) Connections(a netip.Addr) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sources[a.Unmap()]
}

// Observe records s.
func (w *Watcher) Observe(s relay.Sighting) {
	w.mu.Lock()
	w.seen = append(w.seen, s)
	w.mu.Unlock()
}

// Sightings returns what the relay saw so far, in order.
func (w *Watcher) Sightings() []relay.Sighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]relay.Sighting(nil), w.seen...)
}

// Sessions returns the number of sessions that started so far.
func (w *Watcher) Sessions() int {
	n := 0
	for _, s := range w.Sightings() {
		if s.Tag == 0 {
			n++
		}
	}
	return n
}

// Queues returns, by session, the queues its commands named (recipient
// IDs, and sender IDs for SEND and SKEY), each once, from the sessions
// numbered above after.
func (w *Watcher) Queues(after uint64) map[uint64]map[queue.ID]bool {
	out := make(map[uint64]map[queue.ID]bool)
	for _, s := range w.Sightings() {
		if s.Session <= after || s.Queue == (queue.ID{}) {
			continue
		}
		if out[s.Session] == nil {
			out[s.Session] = make(map[queue.ID]bool)
		}
		out[s.Session][s.Queue] = true
	}
	return out
}

// LastSession returns the number of the last session that started, 0 if
// none did.
func (w *Watcher) LastSession() uint64 {
	var last uint64
	for _, s := range w.Sightings() {
		if s.Tag == 0 {
			last = max(last, s.Session)
		}
	}
	return last
}
