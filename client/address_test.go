package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// linkGone checks on the relay that the short link s names no data (LGET
// answers AUTH).
func linkGone(ctx context.Context, t *testing.T, s string) {
	t.Helper()
	l, err := queue.ParseShortLink(s)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := link.Dial(ctx, l.Relay, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.GetLink(ctx, l.ID()); !errors.Is(err, queue.AUTH) {
		t.Fatalf("LGET of %s: %v, want AUTH", s, err)
	}
}

// TestShortInvite: a short invitation link of at most 100 characters
// connects like a long one; it can be read once: a second reader is told
// it was used, and the relay holds nothing under it any more.
func TestShortInvite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob, carol := newPerson(t, r1, r2), newPerson(t, r1, r2), newPerson(t, r1, r2)
	short, err := alice.c.InviteShort(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("short link of %d characters: %s", len(short), short)
	if len(short) > 100 {
		t.Errorf("short link of %d characters", len(short))
	}
	if _, err := bob.c.Accept(ctx, short, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.c.Accept(ctx, short, "a"); !errors.Is(err, client.ErrInvitationUsed) {
		t.Fatalf("the short link read a second time: %v, want ErrInvitationUsed", err)
	}
	linkGone(ctx, t, short)
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
	if _, err := bob.c.Send(ctx, "a", "through a short link"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, alice, "b", "through a short link")
	if _, err := alice.c.Send(ctx, "b", "both ways"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "both ways")
	if cs, err := carol.c.Contacts(); err != nil || len(cs) != 0 {
		t.Fatalf("the refused reader has contacts %+v, %v", cs, err)
	}
}

// tamperLinks stops tr, flips one bit of every link data stored in its
// store file, and starts it again.
func tamperLinks(t *testing.T, tr *testRelay) {
	t.Helper()
	tr.r.Close()
	if n := relaytest.TamperLinks(t, tr.store); n == 0 {
		t.Fatal("no link data to tamper with")
	}
	tr.start(tr.addr.HostPort())
}

// TestShortLinkTampered: link data changed on the relay (in its store
// file) is refused, for an invitation and for an address, and makes no
// contact.
func TestShortLinkTampered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r1 := startRelay(t)
	alice, bob := newPerson(t, r1), newPerson(t, r1)
	short, err := alice.c.InviteShort(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := alice.c.CreateAddress(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	tamperLinks(t, r1)
	if _, err := bob.c.Accept(ctx, short, "a"); !errors.Is(err, client.ErrLinkData) {
		t.Fatalf("Accept of a tampered short link: %v, want ErrLinkData", err)
	}
	if _, err := bob.c.RequestContact(ctx, addr.Link, "a", "bob"); !errors.Is(err, client.ErrLinkData) {
		t.Fatalf("RequestContact through a tampered address: %v, want ErrLinkData", err)
	}
	if cs, err := bob.c.Contacts(); err != nil || len(cs) != 0 {
		t.Fatalf("tampered links made contacts: %+v, %v", cs, err)
	}
}

// TestContactAddress: several people ask for a contact through one
// address; the owner sees each request with the name it shows (or none),
// accepts two and rejects one; the accepted ones converse; once the
// address is deleted, its link gives nothing and a new request is refused.
func TestContactAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	owner := newPerson(t, r1, r2)
	if _, err := owner.c.ContactAddress(); !errors.Is(err, client.ErrNoAddress) {
		t.Fatalf("ContactAddress before create: %v", err)
	}
	addr, err := owner.c.CreateAddress(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("address of %d characters: %s", len(addr.Link), addr.Link)
	if len(addr.Link) > 100 {
		t.Errorf("address of %d characters", len(addr.Link))
	}
	if got, err := owner.c.ContactAddress(); err != nil || got.Link != addr.Link {
		t.Fatalf("ContactAddress = %+v, %v", got, err)
	}
	if _, err := owner.c.CreateAddress(ctx, false); !errors.Is(err, client.ErrAddressExists) {
		t.Fatalf("a second address: %v", err)
	}

	shows := []string{"Rita", "", "Sam"}
	var people []*person
	for i, show := range shows {
		p := newPerson(t, r1, r2)
		people = append(people, p)
		ct, err := p.c.RequestContact(ctx, addr.Link, "owner", show)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if ct.State != client.StateInvited {
			t.Fatalf("request %d: contact %+v", i, ct)
		}
	}
	seen := map[string]string{} // shown name -> request ID
	for range shows {
		ev := owner.next(ctx, client.EventRequest)
		if _, dup := seen[ev.Contact]; dup {
			t.Fatalf("two requests show %q", ev.Contact)
		}
		seen[ev.Contact] = ev.Text
	}
	reqs, err := owner.c.Requests()
	if err != nil || len(reqs) != len(shows) {
		t.Fatalf("Requests = %+v, %v", reqs, err)
	}
	for _, r := range reqs {
		if seen[r.Name] != r.ID {
			t.Errorf("request %+v does not match its event", r)
		}
	}

	if _, err := owner.c.AcceptRequest(ctx, seen["Rita"], ""); err != nil {
		t.Fatal(err)
	}
	if err := owner.c.RejectRequest(seen[""]); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.c.AcceptRequest(ctx, seen["Sam"], "samuel"); err != nil {
		t.Fatal(err)
	}
	if err := owner.c.RejectRequest(seen[""]); !errors.Is(err, client.ErrNoRequest) {
		t.Fatalf("rejecting twice: %v", err)
	}
	if reqs, err := owner.c.Requests(); err != nil || len(reqs) != 0 {
		t.Fatalf("requests left: %+v, %v", reqs, err)
	}
	connected := map[string]bool{}
	for range 2 {
		connected[owner.next(ctx, client.EventConnected).Contact] = true
	}
	if !connected["Rita"] || !connected["samuel"] {
		t.Fatalf("the owner connected %v", connected)
	}
	for i, name := range []string{"Rita", "samuel"} {
		p := people[2*i]
		p.next(ctx, client.EventConnected)
		msg := fmt.Sprintf("hello %s", name)
		if _, err := owner.c.Send(ctx, name, msg); err != nil {
			t.Fatal(err)
		}
		expectMessage(ctx, t, p, "owner", msg)
		if _, err := p.c.Send(ctx, "owner", "hello owner"); err != nil {
			t.Fatal(err)
		}
		expectMessage(ctx, t, owner, name, "hello owner")
	}
	cs, err := owner.c.Contacts()
	if err != nil || len(cs) != 2 {
		t.Fatalf("owner's contacts %+v, %v", cs, err)
	}
	// The rejected requester is still waiting: nothing connected it.
	if cs, err := people[1].c.Contacts(); err != nil || len(cs) != 1 || cs[0].State != client.StateInvited {
		t.Fatalf("rejected requester's contacts %+v, %v", cs, err)
	}

	if err := owner.c.DeleteAddress(ctx); err != nil {
		t.Fatal(err)
	}
	linkGone(ctx, t, addr.Link)
	late := newPerson(t, r1, r2)
	if _, err := late.c.RequestContact(ctx, addr.Link, "owner", "late"); !errors.Is(err, client.ErrAddressGone) {
		t.Fatalf("a request after the address was deleted: %v, want ErrAddressGone", err)
	}
	if cs, err := late.c.Contacts(); err != nil || len(cs) != 0 {
		t.Fatalf("a refused request left contacts %+v, %v", cs, err)
	}
	if _, err := owner.c.ContactAddress(); !errors.Is(err, client.ErrNoAddress) {
		t.Fatalf("ContactAddress after delete: %v", err)
	}
	// Two queues for each contact of the owner, and the rejected
	// invitation (until it expires); the address queue is gone.
	waitQueues(ctx, t, 2*2+1, r1, r2)
}

// TestAutoAccept: with auto-accept, a request through the address (here
// given to Accept, as a user would paste it) connects without the owner
// doing anything, across a restart of the owner's client.
func TestAutoAccept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	owner, guest := newPerson(t, r1, r2), newPerson(t, r1, r2)
	addr, err := owner.c.CreateAddress(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	owner.c.Close()
	owner.open()
	if _, err := guest.c.Accept(ctx, addr.Link, "owner"); err != nil {
		t.Fatal(err)
	}
	guest.next(ctx, client.EventConnected)
	ev := owner.next(ctx, client.EventConnected)
	if _, err := owner.c.Send(ctx, ev.Contact, "welcome"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, guest, "owner", "welcome")
	if reqs, err := owner.c.Requests(); err != nil || len(reqs) != 0 {
		t.Fatalf("requests left after auto-accept: %+v, %v", reqs, err)
	}
}
