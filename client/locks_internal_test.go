package client

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/internal/relaytest"
)

// TestLinkStartDuringRemap takes a client through the interleaving that
// left an agent's outbox stuck for good (and its Close with it), with a
// real store and relay: a read transaction that takes c.mu, as
// sendOutbox's and Flush's do (inScope), is open; a commit that grows the
// store's file waits for it to end, to remap the file, and holds back
// every new transaction meanwhile; then a link to a relay not linked yet
// starts (linkTo, as sendEntry's first send to a relay does), and reads
// the configured relays for its password. That read waits for the remap;
// it must not wait holding c.mu, which the open transaction needs to
// end. Every part then finishes, and the client closes.
func TestLinkStartDuringRemap(t *testing.T) {
	r := relaytest.New(t, nil)
	c := openOffline(t)
	fi, err := os.Stat(filepath.Join(c.cfg.Home, storeFile))
	if err != nil {
		t.Fatal(err)
	}

	inView, release := make(chan struct{}), make(chan struct{})
	viewDone := make(chan error, 1)
	go func() {
		viewDone <- c.store.View(func(*vault.Tx) error {
			close(inView)
			<-release
			// What sendOutbox and Flush do in their transactions.
			if !c.mu.TryLock() {
				t.Error("c.mu is held by a goroutine waiting for the store: a transaction that needs it would wait forever")
				return nil
			}
			c.mu.Unlock()
			c.inScope(nil)
			return nil
		})
	}()
	<-inView

	// A write of twice the file's size and more, beyond the file's
	// mapping (a power of two at least the file's size): its commit
	// remaps the file.
	grow := make([]byte, 64<<10)
	want := 2*int(fi.Size()) + 1<<20
	updateDone := make(chan error, 1)
	go func() {
		updateDone <- c.store.Update(func(tx *vault.Tx) error {
			for i := 0; i*len(grow) < want; i++ {
				if err := tx.Put([]byte("grow"), []byte{byte(i >> 8), byte(i)}, grow); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	waitBlocked(t, "sync.RWMutex.Lock", "vault.(*Vault).Update")

	linked := make(chan *relayLink, 1)
	go func() { linked <- c.linkTo(r.Address, "") }()
	waitBlocked(t, "sync.RWMutex.RLock", "client.(*Client).linkTo")

	close(release)
	if err := <-viewDone; err != nil {
		t.Fatal(err)
	}
	if err := <-updateDone; err != nil {
		t.Fatal(err)
	}
	if l := <-linked; l.addr.Fingerprint != r.Address.Fingerprint {
		t.Errorf("linkTo returned a link to %v, want %v", l.addr, r.Address)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitBlocked returns once a goroutine is blocked with the wait reason
// state (as goroutine dumps show it) in a call of fn.
func waitBlocked(t *testing.T, state, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(header, "["+state) && strings.Contains(g, fn+"(") {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
}
