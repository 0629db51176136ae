package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// watchedRelay starts a relay whose sightings (what its operator could
// record) w keeps.
func watchedRelay(t *testing.T) (*relaytest.Relay, *relaytest.Watcher) {
	t.Helper()
	w := new(relaytest.Watcher)
	return relaytest.New(t, func(c *relay.Config) { c.Observe = w.Observe }), w
}

// openWith opens p's client with cfg (Home set to p's), replacing the one
// open.
func (p *person) openWith(cfg client.Config) {
	p.t.Helper()
	p.c.Close()
	cfg.Home = p.home
	c, err := client.Open(context.Background(), cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.c = c
}

// contactQueues maps the queue IDs that relays see for each of p's
// contacts (the queue p receives on and the one p sends to) to the
// contact's name.
func contactQueues(t *testing.T, p *person, names ...string) map[queue.ID]string {
	t.Helper()
	out := make(map[queue.ID]string)
	for _, n := range names {
		recv, send, err := client.QueueIDs(p.c, n)
		if err != nil || send == (queue.ID{}) {
			t.Fatalf("contact %s: queues %v %v, %v", n, recv, send, err)
		}
		out[recv], out[send] = n, n
	}
	return out
}

// TestPerContactIsolationNoSessionCarriesTwoContacts has alice make three
// contacts over two relays, exchange messages, restart (subscribing to
// every queue at once, as the agent does) and exchange more, with a
// session per contact and with a session per relay. Relay-side, the
// sessions that named alice's queues are checked: with IsolationContact
// none named the queues of two contacts (so no relay links them by a
// session); with IsolationRelay some did (three contacts on two relays),
// which shows what the setting prevents.
func TestPerContactIsolationNoSessionCarriesTwoContacts(t *testing.T) {
	for _, mode := range []client.Isolation{client.IsolationContact, client.IsolationRelay} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r1, w1 := watchedRelay(t)
			r2, w2 := watchedRelay(t)
			alice := newPersonWith(t, link.Config{}, r1.Address, r2.Address)
			alice.openWith(client.Config{Isolation: mode})
			names := []string{"bob", "carol", "dave"}
			peers := make(map[string]*person)
			for _, n := range names {
				p := newPersonWith(t, link.Config{}, r1.Address, r2.Address)
				peers[n] = p
				connectAs(ctx, t, alice, p, n, "alice")
			}
			exchange := func(round int) {
				for _, n := range names {
					text := fmt.Sprintf("round %d to %s", round, n)
					if _, err := alice.c.Send(ctx, n, text); err != nil {
						t.Fatal(err)
					}
					expectMessage(ctx, t, peers[n], "alice", text)
					text = fmt.Sprintf("round %d from %s", round, n)
					if _, err := peers[n].c.Send(ctx, "alice", text); err != nil {
						t.Fatal(err)
					}
					expectMessage(ctx, t, alice, n, text)
				}
			}
			exchange(1)
			// Alice's receipts are taken by the relays before she closes
			// (else one sent but not known sent is sent again, and its
			// contact reports a duplicate).
			flush(ctx, t, alice)
			alice.openWith(client.Config{Isolation: mode, Stagger: 500 * time.Millisecond})
			exchange(2)

			owner := contactQueues(t, alice, names...)
			shared, seen := 0, make(map[queue.ID]bool)
			for i, w := range []*relaytest.Watcher{w1, w2} {
				for sess, qs := range w.Queues(0) {
					contacts := make(map[string]bool)
					for q := range qs {
						if n, ok := owner[q]; ok {
							contacts[n] = true
							seen[q] = true
						}
					}
					if len(contacts) > 1 {
						shared++
						t.Logf("relay %d, session %d: the queues of %d contacts %v", i+1, sess, len(contacts), contacts)
					}
				}
				t.Logf("relay %d: %d sessions", i+1, w.Sessions())
			}
			if len(seen) != len(owner) {
				t.Fatalf("the relays saw %d of alice's %d queues: the watch is broken", len(seen), len(owner))
			}
			switch {
			case mode == client.IsolationContact && shared > 0:
				t.Errorf("per-contact isolation: %d sessions carried the queues of several contacts", shared)
			case mode == client.IsolationRelay && shared == 0:
				t.Errorf("per-relay isolation: no session carried two contacts' queues, though three contacts share two relays")
			}
		})
	}
}

// TestSendConnectsOnlyToTheContactsRelay has alice, with contacts on
// three relays, run as "hush send bob" does (Config.Contacts bob,
// SendOnly) while a message from carol waits for her: only bob's relay
// sees a session, one, which names only the queue alice sends bob on;
// no queue is subscribed anywhere; and carol's message stays where it is.
func TestSendConnectsOnlyToTheContactsRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var relays []*relaytest.Relay
	var watchers []*relaytest.Watcher
	var addrs []queue.Address
	for range 3 {
		r, w := watchedRelay(t)
		relays, watchers, addrs = append(relays, r), append(watchers, w), append(addrs, r.Address)
	}
	alice := newPersonWith(t, link.Config{}, addrs...)
	bob := newPersonWith(t, link.Config{}, addrs...)
	carol := newPersonWith(t, link.Config{}, addrs...)
	for _, p := range []struct {
		name string
		peer *person
	}{{"bob", bob}, {"carol", carol}} {
		connectAs(ctx, t, alice, p.peer, p.name, "alice")
	}
	_, bobQueue, err := client.QueueIDs(alice.c, "bob")
	if err != nil {
		t.Fatal(err)
	}
	_, bobRelay, err := client.ContactRelays(alice.c, "bob")
	if err != nil {
		t.Fatal(err)
	}
	alice.c.Close()
	if _, err := carol.c.Send(ctx, "alice", "waiting"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, carol)
	// Everyone else offline: every session from now on is alice's.
	bob.c.Close()
	carol.c.Close()
	before := make([]uint64, len(watchers))
	for i, w := range watchers {
		before[i] = w.LastSession()
	}

	alice.openWith(client.Config{Contacts: []string{"bob"}, SendOnly: true})
	if _, err := alice.c.Send(ctx, "bob", "only to bob"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, alice)
	alice.c.Close()

	for i, w := range watchers {
		fp := relays[i].Address.Fingerprint
		var sessions []uint64
		for _, s := range w.Sightings() {
			if s.Session <= before[i] {
				continue
			}
			if s.Tag == 0 {
				sessions = append(sessions, s.Session)
			}
			if s.Tag == queue.TagSUB || s.Tag == queue.TagGET {
				t.Errorf("relay %d: alice's send subscribed or read a queue (%v)", i+1, s.Tag)
			}
		}
		qs := w.Queues(before[i])
		var mine []uint64
		for sess, ids := range qs {
			for id := range ids {
				if id == bobQueue {
					mine = append(mine, sess)
				} else {
					t.Errorf("relay %d, session %d: a queue other than alice's queue to bob", i+1, sess)
				}
			}
		}
		t.Logf("relay %d: %d new sessions, %d naming alice's queue to bob", i+1, len(sessions), len(mine))
		if fp == bobRelay {
			if len(sessions) != 1 || len(mine) != 1 {
				t.Errorf("bob's relay: %d new sessions, %d with the send; want 1 and 1", len(sessions), len(mine))
			}
		} else if len(sessions) != 0 {
			t.Errorf("relay %d, not bob's: %d new sessions, want none", i+1, len(sessions))
		}
	}

	// bob gets the message; carol's waited, untouched, for a client
	// that reads.
	bob.open()
	expectMessage(ctx, t, bob, "alice", "only to bob")
	alice.openWith(client.Config{})
	expectMessage(ctx, t, alice, "carol", "waiting")
}

// TestTorIsolationGivesEachContactItsCredentials has alice, under Tor
// (a SOCKS proxy of the test's, which records each connection's
// username: tor's isolation key), make two contacts and exchange a
// message with each. With the default isolation every connection of hers
// carries the credentials of one contact, and the two contacts' differ,
// so tor would give them different circuits; with IsolationRelay they all
// share one.
func TestTorIsolationGivesEachContactItsCredentials(t *testing.T) {
	for _, mode := range []client.Isolation{client.IsolationAuto, client.IsolationRelay} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r1, r2 := relaytest.New(t, nil), relaytest.New(t, nil)
			socks := relaytest.NewSOCKS(t)
			tor := link.Config{Tor: link.TorRequired, Transport: link.TransportTCP, SOCKS: socks.Addr()}
			alice := newPersonWith(t, tor, r1.Address, r2.Address)
			alice.openWith(client.Config{Dial: tor, Isolation: mode})
			for _, n := range []string{"bob", "carol"} {
				p := newPersonWith(t, link.Config{}, r1.Address, r2.Address)
				connectAs(ctx, t, alice, p, n, "alice")
				if _, err := alice.c.Send(ctx, n, "hello "+n); err != nil {
					t.Fatal(err)
				}
				expectMessage(ctx, t, p, "alice", "hello "+n)
				if _, err := p.c.Send(ctx, "alice", "hello alice"); err != nil {
					t.Fatal(err)
				}
				expectMessage(ctx, t, alice, n, "hello alice")
			}
			// A username is the link's isolation value, "-", and the
			// attempt's number (a fresh circuit per attempt).
			keys := make(map[string]int)
			for _, u := range socks.Users() {
				i := strings.LastIndex(u, "-")
				if i < 0 {
					t.Fatalf("SOCKS username %q: no attempt number", u)
				}
				keys[u[:i]]++
			}
			t.Logf("isolation %v: connections by isolation value %v", mode, keys)
			want := 2
			if mode == client.IsolationRelay {
				want = 1
			}
			if len(keys) != want {
				t.Errorf("%d isolation values among alice's connections, want %d", len(keys), want)
			}
			if mode != client.IsolationRelay && keys[""] != 0 {
				t.Errorf("%d connections without a contact's isolation value", keys[""])
			}
		})
	}
}
