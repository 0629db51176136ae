package client_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
)

// TestRetireRelayMovesFiftyContacts retires a relay that 50 contacts use:
// a receives from b0..b49 on r1 and has r2 too; RetireRelay rotates all 50
// of a's queues on r1 to r2, waits for the rotations and then removes r1
// from a's relays. A 51st contact, c, whose queue a sends to is on r1 too
// (c has only r1 and r4), is asked to rotate it (QASK) and moves it to r4.
// Then r1 holds no queue at all (its status counts 0), and messages go
// both ways with every contact.
func TestRetireRelayMovesFiftyContacts(t *testing.T) {
	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r1, r2, r3, r4 := startRelay(t), startRelay(t), startRelay(t), startRelay(t)
	a, b, c := newPerson(t, r1), newPerson(t, r3), newPerson(t, r1)
	connectMany(ctx, t, a, b, n)
	ia, ib := newInbox(ctx, a), newInbox(ctx, b)
	connect2 := func() {
		link, err := a.c.Invite(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.c.Accept(ctx, link, "a"); err != nil {
			t.Fatal(err)
		}
	}
	connect2()
	waitConnected := func(p *person, names ...string) {
		for {
			cs, err := p.c.Contacts()
			if err != nil {
				t.Fatal(err)
			}
			connected := 0
			for _, ct := range cs {
				if ct.State == client.StateConnected && slices.Contains(names, ct.Name) {
					connected++
				}
			}
			if connected == len(names) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d of %d contacts connected", connected, len(names))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("b%d", i))
	}
	waitConnected(a, append(names, "c")...)
	for _, p := range []struct {
		p *person
		r *testRelay
	}{{a, r2}, {c, r4}} {
		if err := p.p.c.AddRelay(p.r.addr); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	rep, err := a.c.RetireRelay(ctx, r1.addr.Fingerprint, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d contacts moved off the relay in %v", len(rep.Moving), time.Since(start).Round(time.Millisecond))
	want := func(names []string) []string { return append(slices.Clone(names), "c") }
	if w := want(names); len(rep.Moving) != len(w) || len(rep.Pending) != 0 || len(rep.Failed) != 0 ||
		!rep.Removed || !slices.Equal(rep.Asked, []string{"c"}) {
		t.Fatalf("report %+v, want %d moving, none pending or failed, c asked, removed", rep, len(w))
	}
	for _, m := range want(names) {
		if !slices.Contains(rep.Moving, m) {
			t.Fatalf("%s not moved: %v", m, rep.Moving)
		}
	}
	relays, err := a.c.Relays()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range relays {
		if r.Fingerprint == r1.addr.Fingerprint {
			t.Fatal("the retired relay is still configured")
		}
	}
	cs, err := a.c.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cs {
		if ct.ReceiveRelay.Fingerprint != r2.addr.Fingerprint || ct.Rotation != client.RotationNone {
			t.Fatalf("after the retirement a receives from %s on %v (rotation %q), want %v", ct.Name, ct.ReceiveRelay, ct.Rotation, r2.addr)
		}
	}
	// c moves the queue a sends to, on a's request.
	for {
		_, send, err := client.ContactRelays(a.c, "c")
		if err != nil {
			t.Fatal(err)
		}
		if send == r4.addr.Fingerprint && rotationOf(t, c, "a") == client.RotationNone {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("c did not move its queue off the retired relay")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if st := r1.r.Status(ctx); st.Queues != 0 {
		t.Fatalf("the retired relay still holds %d queues", st.Queues)
	}
	// Messages both ways with every contact.
	for i := range n {
		if _, err := a.c.Send(ctx, fmt.Sprintf("b%d", i), "to b"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.c.Send(ctx, fmt.Sprintf("a%d", i), "to a"); err != nil {
			t.Fatal(err)
		}
	}
	ia.wait(ctx, t, "a message from each b", func() bool {
		for _, m := range names {
			if !slices.Equal(ia.msgs[m], []string{"to a"}) {
				return false
			}
		}
		return true
	})
	ib.wait(ctx, t, "a message from a to each", func() bool {
		for i := range n {
			if !slices.Equal(ib.msgs[fmt.Sprintf("a%d", i)], []string{"to b"}) {
				return false
			}
		}
		return true
	})
	ia.mu.Lock()
	defer ia.mu.Unlock()
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if len(ia.problems)+len(ib.problems) != 0 {
		t.Fatalf("problems: %v %v", ia.problems, ib.problems)
	}
}
