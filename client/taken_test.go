package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hushrelay/hush/client/internal/vault"
)

// TestTookEvent: TookEvent says which token took an event, remembers the
// last TakenKept takes, and refuses bad tokens.
func TestTookEvent(t *testing.T) {
	c := openOffline(t)
	const n = TakenKept + 10
	err := c.store.Update(func(tx *vault.Tx) error {
		for i := range n + 1 {
			if err := c.pushEvent(tx, Event{Kind: EventMessage, Contact: "x", Text: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	token := func(id uint64) []byte { return []byte(fmt.Sprintf("token-%d", id)) }
	for id := uint64(1); id <= n; id++ {
		if taken, err := c.TakeEventAs(id, token(id)); err != nil || !taken {
			t.Fatalf("TakeEventAs(%d): %v, %v", id, taken, err)
		}
	}
	if taken, err := c.TakeEventAs(n, []byte("again")); err != nil || taken {
		t.Fatalf("TakeEventAs(%d) again: %v, %v; want not taken", n, taken, err)
	}
	// TookEvent reads every kept take: the boundaries only.
	for _, id := range []uint64{1, n - TakenKept, n - TakenKept + 1, n - 1, n, n + 1} {
		want := id > n-TakenKept && id <= n
		if took, err := c.TookEvent(id, token(id)); err != nil || took != want {
			t.Errorf("TookEvent(%d, its token): %v, %v; want %v", id, took, err, want)
		}
		if took, err := c.TookEvent(id, []byte("again")); err != nil || took {
			t.Errorf("TookEvent(%d, a losing token): %v, %v; want false", id, took, err)
		}
	}
	if took, err := c.TookEvent(n, token(n-1)); err != nil || took {
		t.Errorf("TookEvent with another event's token: %v, %v; want false", took, err)
	}
	kept := 0
	c.store.View(func(tx *vault.Tx) error {
		return tx.ForEach(bucketTaken, nil, func(k, v []byte) error { kept++; return nil })
	})
	if kept != TakenKept {
		t.Errorf("%d takes kept, want %d", kept, TakenKept)
	}
	long := []byte(strings.Repeat("x", MaxTakeToken+1))
	if _, err := c.TakeEventAs(n+1, long); !errors.Is(err, ErrBadToken) {
		t.Errorf("TakeEventAs with a long token: %v, want ErrBadToken", err)
	}
	for _, tok := range [][]byte{nil, long} {
		if _, err := c.TookEvent(n+1, tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("TookEvent with a token of %d bytes: %v, want ErrBadToken", len(tok), err)
		}
	}
	if taken, err := c.TakeEvent(n + 1); err != nil || !taken {
		t.Errorf("TakeEvent(%d) without a token: %v, %v", n+1, taken, err)
	}
}
