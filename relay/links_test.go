package relay_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

func sealedLink(t *testing.T, kind queue.LinkKind, content string) (queue.LinkKey, queue.ID, []byte) {
	t.Helper()
	k, data, err := queue.SealLinkData(kind, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := queue.LinkKeys(k)
	return k, id, data
}

// TestE2ELinks: PROTOCOL.md section 21.1 on both transports. Reusable
// link data is read any number of times, one-time data exactly once
// (counted over concurrent readers on several sessions), the data comes
// back as stored, and a queue's link data goes with the queue.
func TestE2ELinks(t *testing.T) {
	e2eTransports(t, func(t *testing.T, transport link.Transport) {
		ctx := e2eContext(t)
		e := startE2ERelay(t, nil)
		rc := e.dial(ctx, transport)
		q, err := rc.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}

		// Reusable: every LGET, from any session, gets it.
		k, id, data := sealedLink(t, queue.LinkAddress, "an address")
		if err := rc.SetLink(ctx, q, id, queue.LinkReusable, data); err != nil {
			t.Fatalf("LSET: %v", err)
		}
		other := e.dial(ctx, transport)
		for i := range 3 {
			got, err := other.GetLink(ctx, id)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("LGET %d: %v", i, err)
			}
			if c, err := queue.OpenLinkData(k, queue.LinkAddress, got); err != nil || string(c) != "an address" {
				t.Fatalf("LGET %d: opens as %q, %v", i, c, err)
			}
		}

		// Replaced by one-time data on the same queue: the old ID is gone.
		_, id2, data2 := sealedLink(t, queue.LinkInvitation, "an invitation")
		if err := rc.SetLink(ctx, q, id2, queue.LinkOnce, data2); err != nil {
			t.Fatalf("LSET once: %v", err)
		}
		if _, err := other.GetLink(ctx, id); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LGET of replaced link data: %v, want AUTH", err)
		}
		// Eight readers on four sessions: exactly one gets it.
		conns := []*link.Conn{rc, other, e.dial(ctx, transport), e.dial(ctx, transport)}
		var (
			wg           sync.WaitGroup
			mu           sync.Mutex
			got, refused int
		)
		for i := range 8 {
			wg.Go(func() {
				d, err := conns[i%len(conns)].GetLink(ctx, id2)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && bytes.Equal(d, data2):
					got++
				case errors.Is(err, queue.AUTH):
					refused++
				default:
					t.Errorf("LGET: %v", err)
				}
			})
		}
		wg.Wait()
		if got != 1 || refused != 7 {
			t.Fatalf("one-time link data read %d times, refused %d times; want 1 and 7", got, refused)
		}

		// An ID of another queue's link data is refused; so are unknown
		// IDs and queues.
		q2, err := rc.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, id3, data3 := sealedLink(t, queue.LinkAddress, "third")
		if err := rc.SetLink(ctx, q, id3, queue.LinkReusable, data3); err != nil {
			t.Fatal(err)
		}
		if err := rc.SetLink(ctx, q2, id3, queue.LinkReusable, data3); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LSET of another queue's link ID: %v, want AUTH", err)
		}
		if _, err := rc.GetLink(ctx, queue.NewID()); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LGET of an unknown ID: %v, want AUTH", err)
		}
		stranger := q2
		stranger.RecipientID = queue.NewID()
		if err := rc.SetLink(ctx, stranger, queue.NewID(), queue.LinkReusable, data3); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LSET on an unknown queue: %v, want AUTH", err)
		}
		// A suspended queue takes no link data.
		if err := rc.Suspend(ctx, q2); err != nil {
			t.Fatal(err)
		}
		if err := rc.SetLink(ctx, q2, queue.NewID(), queue.LinkReusable, data3); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LSET on a suspended queue: %v, want AUTH", err)
		}

		// Durable across a restart, and deleted with its queue.
		e.restart()
		rc = e.dial(ctx, transport)
		if d, err := rc.GetLink(ctx, id3); err != nil || !bytes.Equal(d, data3) {
			t.Fatalf("LGET after a restart: %v", err)
		}
		if err := rc.Delete(ctx, q); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.GetLink(ctx, id3); !errors.Is(err, queue.AUTH) {
			t.Fatalf("LGET after DEL of its queue: %v, want AUTH", err)
		}
	})
}

// TestConformLGetNoAuth: an LGET with an auth, or without an entity, is
// answered ERR SYNTAX (section 21.1).
func TestConformLGetNoAuth(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		id := queue.NewID()
		for _, tc := range []struct {
			name   string
			entity []byte
			auth   []byte
		}{
			{"auth", id[:], randomAuth()},
			{"no entity", nil, nil},
		} {
			raw, corr := txWithAuth(tc.entity, queue.Command{Tag: queue.TagLGET}, tc.auth)
			w.send(raw)
			if c := w.response(corr).Command; c.Tag != queue.TagERR || c.Error != queue.SYNTAX {
				t.Errorf("%s: answered %v %v, want ERR SYNTAX", tc.name, c.Tag, c.Error)
			}
		}
	})
}
