package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// The source addresses of the clients of the private routing tests: each
// relay tells them apart by the address of the connections it accepts.
var (
	aliceAddr = netip.MustParseAddr("127.0.0.10")
	bobAddr   = netip.MustParseAddr("127.0.0.11")
)

// relayOn starts a relay listening on host, whose sightings and
// connections' source addresses w records.
func relayOn(t *testing.T, host string, edit func(*relay.Config)) (*relaytest.Relay, *relaytest.Watcher) {
	t.Helper()
	w := new(relaytest.Watcher)
	return relaytest.New(t, func(c *relay.Config) {
		c.Listen = host + ":0"
		c.Observe, c.ObserveSource = w.Observe, w.ObserveSource
		if edit != nil {
			edit(c)
		}
	}), w
}

// routedPerson makes a person whose connections come from src, over
// transport, with the routing setting r, using the relays at addrs.
func routedPerson(t *testing.T, src netip.Addr, transport link.Transport, r client.Routing, addrs ...queue.Address) *person {
	t.Helper()
	p := newPersonWith(t, link.Config{Transport: transport, LocalAddr: src}, addrs...)
	p.openWith(client.Config{Dial: p.dial, Routing: r})
	return p
}

// exchange has a send n messages to b, and b receive them, each once
// and in order, then b answer n; a calls b bName, b calls a aName.
func exchange(ctx context.Context, t *testing.T, a, b *person, aName, bName string, n int) {
	t.Helper()
	for i := range n {
		if _, err := a.c.Send(ctx, bName, fmt.Sprintf("%s to %s %d", aName, bName, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		expectMessage(ctx, t, b, aName, fmt.Sprintf("%s to %s %d", aName, bName, i))
	}
	for i := range n {
		if _, err := b.c.Send(ctx, aName, fmt.Sprintf("%s to %s %d", bName, aName, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		expectMessage(ctx, t, a, bName, fmt.Sprintf("%s to %s %d", bName, aName, i))
	}
}

// TestPrivateRoutingHidesSenderAddress: three relays on 127.0.0.2, .3 and
// .4; alice (connecting from 127.0.0.10) uses the first and the third,
// bob (127.0.0.11) the second. With private routing on (the default
// setting, RoutingUnknown, and RoutingAlways), over QUIC and over TCP,
// alice invites bob and bob invites alice (each accepting through a
// forwarding relay of their own), and messages go both ways, each
// received once and in order; relay-side, no relay of one ever accepted
// a connection from the other's address, though each relay saw its own
// user's. Then alice, reopened with RoutingNever, sends once more, and
// bob's relay does see her address: what the test would catch.
func TestPrivateRoutingHidesSenderAddress(t *testing.T) {
	for _, transport := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		for _, routing := range []client.Routing{client.RoutingAuto, client.RoutingAlways} {
			t.Run(fmt.Sprintf("%s/%v", transport, routing), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				r1, w1 := relayOn(t, "127.0.0.2", nil)
				r2, w2 := relayOn(t, "127.0.0.3", nil)
				r3, w3 := relayOn(t, "127.0.0.4", nil)
				alice := routedPerson(t, aliceAddr, transport, routing, r1.Address, r3.Address)
				bob := routedPerson(t, bobAddr, transport, routing, r2.Address)

				connect(ctx, t, alice, bob) // alice invites: "b" is bob, "a" alice
				connectAs(ctx, t, bob, alice, "alice", "bob")
				exchange(ctx, t, alice, bob, "a", "b", 5)
				exchange(ctx, t, bob, alice, "bob", "alice", 5)

				for _, name := range []string{"b", "bob"} {
					recv, send, err := client.ContactRelays(alice.c, name)
					if err != nil {
						t.Fatal(err)
					}
					if send != r2.Address.Fingerprint || recv == r2.Address.Fingerprint {
						t.Fatalf("alice's contact %s: receives on %x, sends to %x; bob's relay is %x", name, recv[:4], send[:4], r2.Address.Fingerprint[:4])
					}
				}
				if n := w2.Connections(aliceAddr); n != 0 {
					t.Errorf("bob's relay accepted %d connections from alice's address", n)
				}
				for i, w := range []*relaytest.Watcher{w1, w3} {
					if n := w.Connections(bobAddr); n != 0 {
						t.Errorf("alice's relay %d accepted %d connections from bob's address", i, n)
					}
				}
				if w2.Connections(bobAddr) == 0 || w1.Connections(aliceAddr)+w3.Connections(aliceAddr) == 0 {
					t.Fatal("the relays saw none of their own users' connections")
				}
				// Bob's relay got alice's commands on the sessions of
				// forwarding relays: each of alice's sender IDs there came
				// on sessions that carried no queue of bob's.
				bobsOwn := contactQueues(t, bob, "a", "alice")
				for _, name := range []string{"b", "bob"} {
					_, sid, err := client.QueueIDs(alice.c, name)
					if err != nil {
						t.Fatal(err)
					}
					found := false
					for _, qs := range w2.Queues(0) {
						if !qs[sid] {
							continue
						}
						found = true
						for q := range qs {
							if q != sid && bobsOwn[q] != "" {
								t.Errorf("alice's queue to bob shares a session with bob's queue %x", q[:4])
							}
						}
					}
					if !found {
						t.Errorf("bob's relay never saw alice's queue to %s", name)
					}
				}

				// The control: directly, bob's relay sees alice's address.
				// Alice's receipts are taken by the relays before she
				// closes (else one sent but not known sent is sent again,
				// and bob reports a duplicate).
				flush(ctx, t, alice)
				alice.openWith(client.Config{Dial: alice.dial, Routing: client.RoutingNever})
				if _, err := alice.c.Send(ctx, "b", "directly"); err != nil {
					t.Fatal(err)
				}
				flush(ctx, t, alice)
				expectMessage(ctx, t, bob, "a", "directly")
				if w2.Connections(aliceAddr) == 0 {
					t.Fatal("with RoutingNever, bob's relay saw no connection from alice's address")
				}
			})
		}
	}
}

// TestPrivateRoutingNeverFallsBack: with RoutingAlways, alice's only
// relays are her receiving relay r1, then down, and r3, whose operator
// turned forwarding off; her message to bob is not sent directly to
// bob's relay: the outbox keeps it and reports ErrNoForwarder once, in
// an EventProblem; Flush does not finish; accepting bob's invitation
// fails (ErrInviterRelay, ErrNoForwarder). Once r1 is up again, the
// message goes, through it, exactly once, the invitation is accepted,
// and bob's relay never saw alice's address.
func TestPrivateRoutingNeverFallsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1 := startRelay(t) // on 127.0.0.1, restartable on its port
	r2, w2 := relayOn(t, "127.0.0.3", nil)
	r3, w3 := relayOn(t, "127.0.0.4", func(c *relay.Config) { c.DisableForwarding = true })
	alice := routedPerson(t, aliceAddr, link.TransportTCP, client.RoutingAlways, r1.addr)
	bob := routedPerson(t, bobAddr, link.TransportTCP, client.RoutingAlways, r2.Address)
	connect(ctx, t, alice, bob)
	exchange(ctx, t, alice, bob, "a", "b", 1)
	if err := alice.c.AddRelay(r3.Address); err != nil {
		t.Fatal(err)
	}
	// Alice's receipt of bob's message leaves first, so that her outbox
	// holds only the message below.
	flush(ctx, t, alice)

	r1.stop()
	if _, err := alice.c.Send(ctx, "b", "waits"); err != nil {
		t.Fatal(err)
	}
	ev := alice.next(ctx, client.EventProblem)
	if !errors.Is(ev.Problem, client.ErrNoForwarder) || ev.Contact != "b" {
		t.Fatalf("problem %v for %q, want ErrNoForwarder for b", ev.Problem, ev.Contact)
	}
	t.Logf("alice is told: %v", ev.Problem)
	fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
	err := alice.c.Flush(fctx)
	fcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with no forwarding relay: %v, want it to wait", err)
	}
	cts, err := alice.c.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cts {
		if ct.Name == "b" && ct.Outbox != 1 {
			t.Fatalf("alice's outbox to b holds %d messages, want 1", ct.Outbox)
		}
	}
	if w3.Connections(aliceAddr) == 0 {
		t.Fatal("alice never asked r3 to forward")
	}
	// Accepting an invitation to bob's relay fails alike, and leaves the
	// invitation usable.
	inv, err := bob.c.Invite(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.c.Accept(ctx, inv, "bob")
	if !errors.Is(err, client.ErrNoForwarder) || !errors.Is(err, client.ErrInviterRelay) {
		t.Fatalf("Accept with no forwarding relay: %v, want ErrInviterRelay and ErrNoForwarder", err)
	}

	r1.restart()
	flush(ctx, t, alice)
	expectMessage(ctx, t, bob, "a", "waits")
	if _, err := alice.c.Accept(ctx, inv, "bob"); err != nil {
		t.Fatalf("Accept once r1 is up: %v", err)
	}
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
	exchange(ctx, t, alice, bob, "alice", "bob", 1)
	if _, err := bob.c.Send(ctx, "a", "after"); err != nil {
		t.Fatal(err)
	}
	// Nothing more from alice: "after" is the next message bob sends,
	// and the only one alice gets.
	expectMessage(ctx, t, alice, "b", "after")
	if n := w2.Connections(aliceAddr); n != 0 {
		t.Fatalf("bob's relay accepted %d connections from alice's address", n)
	}
}
