package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
)

// queuesOn returns the number of queues on the relays.
func queuesOn(ctx context.Context, relays ...*testRelay) int {
	n := 0
	for _, r := range relays {
		n += r.r.Status(ctx).Queues
	}
	return n
}

// waitQueues waits until the relays hold want queues.
func waitQueues(ctx context.Context, t *testing.T, want int, relays ...*testRelay) {
	t.Helper()
	for queuesOn(ctx, relays...) != want {
		select {
		case <-ctx.Done():
			t.Fatalf("the relays hold %d queues, want %d", queuesOn(context.Background(), relays...), want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func storedEntries(t *testing.T, p *person) int {
	t.Helper()
	n, err := client.StoredContactEntries(p.c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestForget: forget deletes both queues on their relays (ours at once,
// the contact's when their client gets the notice) and leaves no record
// or key of the contact in either store.
func TestForget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob, r1, r2 := connectedPair(ctx, t)
	waitQueues(ctx, t, 2, r1, r2)
	if storedEntries(t, alice) == 0 {
		t.Fatal("no contact entries counted before forget")
	}
	// A message just sent may reach bob before the notice, or be dropped
	// from the outbox by forget.
	if _, err := alice.c.Send(ctx, "b", "just before forget"); err != nil {
		t.Fatal(err)
	}

	if err := alice.c.Forget(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, alice)
	ev := bob.next(ctx, client.EventProblem)
	if ev.Kind != client.EventProblem || !errors.Is(ev.Problem, client.ErrContactGone) || ev.Contact != "a" {
		t.Fatalf("bob got %v %q: %v, want the notice that a is gone", ev.Kind, ev.Text, ev.Problem)
	}
	waitQueues(ctx, t, 0, r1, r2) // bob's client deleted its queue too

	if list, _ := alice.c.Contacts(); len(list) != 0 {
		t.Errorf("alice's contacts after forget: %+v", list)
	}
	if n := storedEntries(t, alice); n != 0 {
		t.Errorf("alice's store keeps %d entries of the contact", n)
	}
	if _, err := alice.c.Send(ctx, "b", "hi"); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("send to a forgotten contact: %v", err)
	}
	list, _ := bob.c.Contacts()
	if len(list) != 1 || list[0].State != client.StateGone {
		t.Fatalf("bob's contacts: %+v, want a gone", list)
	}
	if _, err := bob.c.Send(ctx, "a", "hi"); !errors.Is(err, client.ErrContactGone) {
		t.Errorf("send to a contact who left: %v", err)
	}
	if err := bob.c.Forget(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := storedEntries(t, bob); n != 0 {
		t.Errorf("bob's store keeps %d entries of the contact", n)
	}
	if err := bob.c.Forget(ctx, "a"); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("a second forget: %v", err)
	}
}

// TestForgetHalfMade: a contact whose handshake never completed can be
// forgotten on either side, and their queues go.
func TestForgetHalfMade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice := newPerson(t, r1, r2)
	link, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := alice.c.Contacts()
	if len(list) != 1 || list[0].State != client.StateInvited || !list[0].Expires.Equal(list[0].Created.Add(client.HandshakeExpiry)) {
		t.Fatalf("alice's contacts: %+v, want b invited, expiring after HandshakeExpiry", list)
	}
	// Bob accepts while alice is away, then forgets: alice never confirms.
	bob := newPerson(t, r1, r2)
	alice.c.Close()
	if _, err := bob.c.Accept(ctx, link, "a"); err != nil {
		t.Fatal(err)
	}
	waitQueues(ctx, t, 2, r1, r2)
	if err := bob.c.Forget(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitQueues(ctx, t, 1, r1, r2) // alice's queue is hers to delete
	alice.open()
	if err := alice.c.Forget(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitQueues(ctx, t, 0, r1, r2)
	for _, p := range []*person{alice, bob} {
		if n := storedEntries(t, p); n != 0 {
			t.Errorf("%d entries of the contact left", n)
		}
	}
}

// TestExpire: an invitation not accepted within the expiry is forgotten
// by the client, and its queue deleted.
func TestExpire(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1 := startRelay(t)
	p := newPerson(t, r1)
	p.c.Close()
	c, err := client.Open(ctx, client.Config{Home: p.home, HandshakeExpiry: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	if _, err := c.Invite(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	ev := p.next(ctx, client.EventProblem)
	if ev.Contact != "late" {
		t.Errorf("problem for %q: %v", ev.Contact, ev.Problem)
	}
	waitQueues(ctx, t, 0, r1)
	if list, _ := c.Contacts(); len(list) != 0 {
		t.Errorf("contacts after the expiry: %+v", list)
	}
}

func TestRename(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob, carol := newPerson(t, r1, r2), newPerson(t, r1, r2), newPerson(t, r1, r2)
	connect(ctx, t, alice, bob)
	link, err := alice.c.Invite(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.c.Accept(ctx, link, "a"); err != nil {
		t.Fatal(err)
	}
	if err := alice.c.Rename("b", "c"); !errors.Is(err, client.ErrNameTaken) {
		t.Errorf("rename to a taken name: %v", err)
	}
	if err := alice.c.Rename("b", ""); !errors.Is(err, client.ErrBadName) {
		t.Errorf("rename to nothing: %v", err)
	}
	if err := alice.c.Rename("nobody", "x"); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("rename of nobody: %v", err)
	}
	if err := alice.c.Rename("b", "bobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Send(ctx, "b", "old name"); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("send to the old name: %v", err)
	}
	if _, err := alice.c.Send(ctx, "bobby", "new name"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "new name")
	if _, err := bob.c.Send(ctx, "a", "to alice"); err != nil {
		t.Fatal(err)
	}
	ev := alice.next(ctx, client.EventMessage)
	if ev.Contact != "bobby" || ev.Text != "to alice" {
		t.Errorf("alice got %q from %q", ev.Text, ev.Contact)
	}
}
