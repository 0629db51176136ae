package relay

import (
	"context"
	"sync"
	"testing"
	"time"
)

// HoldCommits makes r's commit loop wait, inside a write transaction,
// until release is called: the operations submitted meanwhile queue up
// and are then taken together, in one group commit.
func HoldCommits(t *testing.T, r *Relay) (release func()) {
	t.Helper()
	held, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	err := r.store.submit(context.Background(), &storeOp{
		apply: func(storeTx) error {
			once.Do(func() { close(held) })
			<-rel
			return nil
		},
		finish: func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	<-held
	var relOnce sync.Once
	release = func() { relOnce.Do(func() { close(rel) }) }
	t.Cleanup(release)
	return release
}

// WaitQueued waits until at least n operations are queued for r's
// commit loop (it fails the test after a minute).
func WaitQueued(t *testing.T, r *Relay, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); len(r.store.ops) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", len(r.store.ops), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Commits returns the number of group commits of r's store.
func Commits(r *Relay) uint64 { return r.store.commits.Load() }
