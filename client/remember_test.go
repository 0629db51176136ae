package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
)

// TestDownRelayRemembered has one relay of two down while a client makes
// invitations until it has tried that relay and found it down, then
// closes the client and opens it again, as each command run without an
// agent does: the new run remembers, and its invitations never try the
// relay that is down (it is absent from RelayStatus, which lists every
// relay a run tried), where a run that did not remember would try it
// first for half of them. Over QUIC and over TCP.
func TestDownRelayRemembered(t *testing.T) {
	for _, tp := range transports {
		t.Run(string(tp), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			up, down := startRelay(t), startRelay(t)
			alice := newPersonWith(t, link.Config{Transport: tp}, up.addr, down.addr)
			down.stop()
			found := false
			for i := 0; i < 20 && !found; i++ {
				if _, err := alice.c.Invite(ctx, fmt.Sprintf("first%d", i)); err != nil {
					t.Fatalf("invite %d: %v", i, err)
				}
				for _, st := range alice.c.RelayStatus() {
					if st.Relay.Fingerprint == down.addr.Fingerprint && st.State == client.RelayDown {
						found = true
					}
				}
			}
			if !found {
				t.Fatal("20 invitations never tried the relay that is down")
			}

			alice.reopen(0)
			const n = 8
			for i := range n {
				if _, err := alice.c.Invite(ctx, fmt.Sprintf("next%d", i)); err != nil {
					t.Fatalf("invite %d in the next run: %v", i, err)
				}
			}
			for _, st := range alice.c.RelayStatus() {
				if st.Relay.Fingerprint == down.addr.Fingerprint {
					t.Fatalf("the next run tried the relay that the previous one found down: %+v", st)
				}
			}
		})
	}
}
