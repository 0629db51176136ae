package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// transports are the transports that failover tests run over.
var transports = []link.Transport{link.TransportQUIC, link.TransportTCP}

// slowBound is far more than any failover may take: a command that takes
// longer waited for a relay that is down instead of trying another.
const slowBound = 15 * time.Second

// reopen closes p's client and opens it again with the relay budget
// relayTimeout.
func (p *person) reopen(relayTimeout time.Duration) {
	p.t.Helper()
	p.c.Close()
	c, err := client.Open(context.Background(), client.Config{Home: p.home, Dial: p.dial, RelayTimeout: relayTimeout})
	if err != nil {
		p.t.Fatal(err)
	}
	p.c = c
}

// stop stops the relay; start brings it back on the same port and store.
func (tr *testRelay) stop() { tr.r.Close() }

// TestFailoverRelayDown stops one of three relays and checks that
// invitations and acceptances succeed on the two others, each direction
// of a contact on a different one, and that contacts made so converse.
func TestFailoverRelayDown(t *testing.T) {
	for _, tp := range transports {
		t.Run(string(tp), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
			dial := link.Config{Transport: tp}
			alice := newPersonWith(t, dial, r1.addr, r2.addr, r3.addr)
			bob := newPersonWith(t, dial, r1.addr, r2.addr, r3.addr)
			r3.stop()
			const n = 5
			var worst time.Duration
			for i := range n {
				name := fmt.Sprintf("b%d", i)
				start := time.Now()
				l, err := alice.c.Invite(ctx, name)
				if err != nil {
					t.Fatalf("invite %d with one relay of three down: %v", i, err)
				}
				inv := time.Since(start)
				start = time.Now()
				if _, err := bob.c.Accept(ctx, l, fmt.Sprintf("a%d", i)); err != nil {
					t.Fatalf("accept %d with one relay of three down: %v", i, err)
				}
				acc := time.Since(start)
				t.Logf("%s: invite %d took %v, accept %v", tp, i, inv.Round(time.Millisecond), acc.Round(time.Millisecond))
				worst = max(worst, inv, acc)
				if inv > slowBound || acc > slowBound {
					t.Errorf("invite %d took %v and accept %v with one relay down", i, inv, acc)
				}
				aRecv, _, err := client.ContactRelays(alice.c, name)
				if err != nil {
					t.Fatal(err)
				}
				bRecv, bSend, err := client.ContactRelays(bob.c, fmt.Sprintf("a%d", i))
				if err != nil {
					t.Fatal(err)
				}
				if aRecv == r3.addr.Fingerprint || bRecv == r3.addr.Fingerprint {
					t.Errorf("contact %d has a queue on the relay that is down", i)
				}
				if bSend != aRecv || bRecv == aRecv {
					t.Errorf("contact %d: both directions on one relay, with two up", i)
				}
			}
			t.Logf("%s: slowest invite or accept with one relay of three down: %v", tp, worst.Round(time.Millisecond))
			for range n {
				alice.next(ctx, client.EventConnected)
				bob.next(ctx, client.EventConnected)
			}
			if _, err := alice.c.Send(ctx, "b0", "through the relays that are up"); err != nil {
				t.Fatal(err)
			}
			expectMessage(ctx, t, bob, "a0", "through the relays that are up")
			if _, err := bob.c.Send(ctx, fmt.Sprintf("a%d", n-1), "and back"); err != nil {
				t.Fatal(err)
			}
			expectMessage(ctx, t, alice, fmt.Sprintf("b%d", n-1), "and back")
			cs, err := bob.c.Contacts()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.SharedRelay {
					t.Errorf("bob's contact %s shares a relay", c.Name)
				}
			}
		})
	}
}

// TestAcceptInviterRelayDown accepts an invitation while the inviter's
// relay is down: Accept fails soon, names the relay, and leaves the
// invitation usable once the relay is back.
func TestAcceptInviterRelayDown(t *testing.T) {
	for _, tp := range transports {
		t.Run(string(tp), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r1, r2 := startRelay(t), startRelay(t)
			dial := link.Config{Transport: tp}
			alice := newPersonWith(t, dial, r1.addr)
			bob := newPersonWith(t, dial, r1.addr, r2.addr)
			l, err := alice.c.Invite(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			r1.stop()
			start := time.Now()
			_, err = bob.c.Accept(ctx, l, "a")
			took := time.Since(start)
			t.Logf("%s: accept with the inviter's relay down failed after %v: %v", tp, took.Round(time.Millisecond), err)
			var rerr *client.RelayError
			switch {
			case !errors.Is(err, client.ErrInviterRelay) || !errors.Is(err, link.ErrUnreachable):
				t.Fatalf("accept with the inviter's relay down: %v, want ErrInviterRelay and ErrUnreachable", err)
			case !errors.As(err, &rerr) || rerr.Relay.Fingerprint != r1.addr.Fingerprint || !strings.Contains(err.Error(), r1.addr.HostPort()):
				t.Errorf("the error does not name the inviter's relay %s: %v", r1.addr.HostPort(), err)
			case took > slowBound:
				t.Errorf("accept took %v to fail", took)
			}
			if cs, err := bob.c.Contacts(); err != nil || len(cs) != 0 {
				t.Fatalf("a failed accept made contacts: %+v, %v", cs, err)
			}

			r1.start(r1.addr.HostPort())
			for {
				_, err := bob.c.Accept(ctx, l, "a")
				if err == nil {
					break
				}
				if !errors.Is(err, client.ErrInviterRelay) {
					t.Fatalf("accept once the inviter's relay is back: %v", err)
				}
				time.Sleep(100 * time.Millisecond) // its link is connecting again
			}
			alice.next(ctx, client.EventConnected)
			bob.next(ctx, client.EventConnected)
			if _, err := bob.c.Send(ctx, "a", "the invitation survived"); err != nil {
				t.Fatal(err)
			}
			expectMessage(ctx, t, alice, "b", "the invitation survived")
		})
	}
}

// TestRefusingRelayAtOnce checks that a relay with a wrong fingerprint or
// a wrong password is reported at once, not waited for, even with a relay
// budget of a minute: alone, it fails Invite; beside a good relay, it is
// skipped, and RelayStatus says why.
func TestRefusingRelayAtOnce(t *testing.T) {
	const budget = time.Minute
	for _, tp := range transports {
		t.Run(string(tp), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			good, other, third := startRelay(t), startRelay(t), startRelay(t)
			locked := startRelayWith(t, "the-right-password")
			wrongFP := third.addr
			wrongFP.Fingerprint = other.addr.Fingerprint
			wrongPass := locked.addr
			wrongPass.Password = "a-wrong-password"
			dial := link.Config{Transport: tp}
			for _, bad := range []struct {
				name string
				addr queue.Address
				err  error
			}{
				{"fingerprint", wrongFP, link.ErrWrongFingerprint},
				{"password", wrongPass, link.ErrWrongPassword},
			} {
				alone := newPersonWith(t, dial, bad.addr)
				alone.reopen(budget)
				start := time.Now()
				_, err := alone.c.Invite(ctx, "x")
				took := time.Since(start)
				t.Logf("%s: invite with a wrong %s failed after %v: %v", tp, bad.name, took.Round(time.Millisecond), err)
				if !errors.Is(err, bad.err) || !errors.Is(err, client.ErrRelaysUnreachable) {
					t.Errorf("invite with a wrong %s: %v, want %v", bad.name, err, bad.err)
				}
				if took > budget/2 {
					t.Errorf("invite with a wrong %s took %v to fail", bad.name, took)
				}
				st := alone.c.RelayStatus()
				want := client.RelayDown
				if bad.err == link.ErrWrongPassword {
					want = client.RelayRefused
				}
				if len(st) != 1 || st[0].State != want || !errors.Is(st[0].Err, bad.err) {
					t.Errorf("relay status after a wrong %s: %+v, want %v", bad.name, st, want)
				}

				beside := newPersonWith(t, dial, bad.addr, good.addr)
				beside.reopen(budget)
				for i := range 4 {
					start := time.Now()
					if _, err := beside.c.Invite(ctx, fmt.Sprintf("x%d", i)); err != nil {
						t.Fatalf("invite beside a relay with a wrong %s: %v", bad.name, err)
					}
					if took := time.Since(start); took > budget/2 {
						t.Errorf("invite beside a relay with a wrong %s took %v", bad.name, took)
					}
				}
				for _, st := range beside.c.RelayStatus() {
					if st.Relay.Fingerprint == bad.addr.Fingerprint && st.Relay.Port == bad.addr.Port && !errors.Is(st.Err, bad.err) {
						t.Errorf("relay status of the relay with a wrong %s: %+v", bad.name, st)
					}
				}
			}
		})
	}
}

// TestAcceptSharesWhenAlone checks that Accept puts our queue on the
// inviter's relay, and says so, when our only other relay refuses.
func TestAcceptSharesWhenAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r1, other := startRelay(t), startRelay(t)
	wrongFP := other.addr
	wrongFP.Fingerprint = r1.addr.Fingerprint
	wrongFP.Fingerprint[0] ^= 1
	alice := newPerson(t, r1)
	bob := newPersonWith(t, link.Config{}, r1.addr, wrongFP)
	l, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := bob.c.Accept(ctx, l, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !ct.SharedRelay {
		t.Errorf("accept with the other relay refusing: SharedRelay false")
	}
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
}

// TestRelayManagement checks AddRelay's refusal of a second relay at one
// host and port, RemoveRelay, RelayContacts and CheckRelay.
func TestRelayManagement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob, r1, r2 := connectedPair(ctx, t)

	clash := r1.addr
	clash.Fingerprint = r2.addr.Fingerprint
	if err := alice.c.AddRelay(clash); !errors.Is(err, client.ErrRelayConflict) {
		t.Errorf("AddRelay at a configured relay's host and port: %v, want ErrRelayConflict", err)
	}
	if err := alice.c.CheckRelay(ctx, clash); !errors.Is(err, link.ErrWrongFingerprint) {
		t.Errorf("CheckRelay with a wrong fingerprint: %v", err)
	}
	if err := alice.c.CheckRelay(ctx, r1.addr); err != nil {
		t.Errorf("CheckRelay of a good relay: %v", err)
	}
	for _, r := range []*testRelay{r1, r2} {
		users, err := alice.c.RelayContacts(r.addr.Fingerprint)
		if err != nil || len(users) != 1 || users[0] != "b" {
			t.Errorf("RelayContacts: %q, %v, want [b]", users, err)
		}
		if err := alice.c.RemoveRelay(r.addr.Fingerprint); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.c.RemoveRelay(r1.addr.Fingerprint); !errors.Is(err, client.ErrNoSuchRelay) {
		t.Errorf("RemoveRelay twice: %v, want ErrNoSuchRelay", err)
	}
	if rs, err := alice.c.Relays(); err != nil || len(rs) != 0 {
		t.Errorf("relays after removing both: %v, %v", rs, err)
	}
	// The contact still works through the removed relays. They are not
	// alice's any more: with the default routing (unknown), a message to
	// bob's relay waits for a forwarding relay of hers, and she has none;
	// with RoutingNever it goes there directly.
	if _, err := alice.c.Send(ctx, "b", "still here"); err != nil {
		t.Fatal(err)
	}
	if ev := alice.next(ctx, client.EventProblem); !errors.Is(ev.Problem, client.ErrNoForwarder) {
		t.Fatalf("problem %v, want ErrNoForwarder", ev.Problem)
	}
	alice.openWith(client.Config{Routing: client.RoutingNever})
	expectMessage(ctx, t, bob, "a", "still here")
	if _, err := alice.c.Invite(ctx, "c"); !errors.Is(err, client.ErrNoRelay) {
		t.Errorf("Invite with no relay left: %v, want ErrNoRelay", err)
	}
}

// TestOutboxRelayDown checks that a relay that is down holds up only the
// messages to it: a message queued after one to a contact on that relay
// goes at once to a contact on another relay, and the first arrives once
// its relay is back.
func TestOutboxRelayDown(t *testing.T) {
	for _, tp := range transports {
		t.Run(string(tp), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
			dial := link.Config{Transport: tp}
			alice := newPersonWith(t, dial, r3.addr)
			bob := newPersonWith(t, dial, r1.addr)   // alice sends to bob on r1
			carol := newPersonWith(t, dial, r2.addr) // and to carol on r2
			connect(ctx, t, alice, bob)
			connectAs(ctx, t, alice, carol, "c", "a")

			r1.stop()
			start := time.Now()
			for _, m := range []struct{ to, text string }{{"b", "for bob"}, {"c", "for carol"}} {
				if _, err := alice.c.Send(ctx, m.to, m.text); err != nil {
					t.Fatal(err)
				}
			}
			expectMessage(ctx, t, carol, "a", "for carol")
			took := time.Since(start)
			t.Logf("%s: with bob's relay down, carol's message arrived after %v", tp, took.Round(time.Millisecond))
			if took > slowBound {
				t.Errorf("carol's message took %v behind one to a relay that is down", took)
			}
			r1.start(r1.addr.HostPort())
			expectMessage(ctx, t, bob, "a", "for bob")
		})
	}
}

// TestInvitesSpreadOverRelays makes invitations from a fresh client with
// three relays and counts the relays their queues went to: each gets
// some. Ranking relays already connected first kept a fresh client on the
// first relay it reached (the chaos run put 156, 0 and 144 queues on
// three relays). With a uniform choice, a relay gets none of 30 with
// probability 3 × (2/3)^30 ≈ 1.5e-5.
func TestInvitesSpreadOverRelays(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	alice := newPersonWith(t, link.Config{Transport: link.TransportTCP}, r1.addr, r2.addr, r3.addr)
	const n = 30
	count := make(map[queue.Fingerprint]int)
	for i := range n {
		name := fmt.Sprintf("b%d", i)
		if _, err := alice.c.Invite(ctx, name); err != nil {
			t.Fatalf("invite %d: %v", i, err)
		}
		recv, _, err := client.ContactRelays(alice.c, name)
		if err != nil {
			t.Fatal(err)
		}
		count[recv]++
	}
	t.Logf("queues per relay: %d, %d, %d", count[r1.addr.Fingerprint], count[r2.addr.Fingerprint], count[r3.addr.Fingerprint])
	for i, r := range []*testRelay{r1, r2, r3} {
		if count[r.addr.Fingerprint] == 0 {
			t.Errorf("relay %d got none of %d queues", i+1, n)
		}
	}
}
