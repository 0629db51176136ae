package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/internal/relaytest"
)

// TestAddressAndReceiptsAPI drives contact addresses and delivery
// receipts through the API: a request reaches a subscription for another
// contact (it concerns none yet), is accepted by its ID, and the new
// contact's messages come back delivered; with receipts off for the
// contact, the setting shows in listContacts; errors map to their codes.
func TestAddressAndReceiptsAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r1, r2 := relaytest.Start(t, t.TempDir()), relaytest.Start(t, t.TempDir())
	owner, guest := agent.NewServer(openClient(ctx, t, r1, r2), agent.Config{}), agent.NewServer(openClient(ctx, t, r1, r2), agent.Config{})
	defer owner.Close()
	defer guest.Close()
	o, g := owner.Pipe(), guest.Pipe()
	defer o.Close()
	defer g.Close()

	if _, err := o.ContactAddress(ctx); !errors.Is(err, client.ErrNoAddress) {
		t.Fatalf("contactAddress before create: %v", err)
	}
	addr, err := o.CreateAddress(ctx, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := o.ContactAddress(ctx); err != nil || got.Link != addr.Link || got.AutoAccept {
		t.Fatalf("contactAddress: %+v, %v", got, err)
	}
	sub, err := o.Subscribe(ctx, "somebody else")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.RequestContact(ctx, addr.Link, "owner", "Gus", 0); err != nil {
		t.Fatal(err)
	}
	var id string
	for id == "" {
		ev := next(ctx, t, sub)
		if _, err := o.Ack(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
		if ev.Kind == client.EventRequest {
			if ev.Contact != "Gus" {
				t.Fatalf("a request showing %q, want Gus", ev.Contact)
			}
			id = ev.Text
		}
	}
	reqs, err := o.Requests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].ID != id || reqs[0].Name != "Gus" {
		t.Fatalf("listRequests: %+v, %v", reqs, err)
	}
	if _, err := o.AcceptRequest(ctx, "00000000", "", 0); !errors.Is(err, client.ErrNoRequest) {
		t.Fatalf("acceptRequest of an unknown ID: %v", err)
	}
	if _, err := o.AcceptRequest(ctx, id, "", 0); err != nil {
		t.Fatal(err)
	}

	gsub, err := g.Subscribe(ctx, "owner")
	if err != nil {
		t.Fatal(err)
	}
	osub, err := o.Subscribe(ctx, "Gus")
	if err != nil {
		t.Fatal(err)
	}
	// until returns once sub has shown an event of kind, acking all.
	until := func(c *agent.Conn, sub *agent.Subscription, kind client.EventKind) agent.Event {
		t.Helper()
		for {
			ev := next(ctx, t, sub)
			if _, err := c.Ack(ctx, ev.ID); err != nil {
				t.Fatal(err)
			}
			if ev.Kind == kind {
				return ev
			}
			if ev.Kind == client.EventProblem {
				t.Fatalf("problem: %v", ev.Problem)
			}
		}
	}
	until(g, gsub, client.EventConnected)
	until(o, osub, client.EventConnected)
	seq, err := g.Send(ctx, "owner", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if ev := until(g, gsub, client.EventDelivered); ev.Seq != seq || ev.Contact != "owner" {
		t.Fatalf("delivered %+v, want seq %d", ev, seq)
	}

	if err := o.SetContactReceipts(ctx, "Gus", client.ReceiptsOff); err != nil {
		t.Fatal(err)
	}
	cs, err := o.Contacts(ctx)
	if err != nil || len(cs) != 1 || cs[0].Receipts != client.ReceiptsOff {
		t.Fatalf("listContacts: %+v, %v", cs, err)
	}
	if on, err := o.Receipts(ctx); err != nil || !on {
		t.Fatalf("receipts: %v, %v; want on", on, err)
	}
	if err := o.SetReceipts(ctx, false); err != nil {
		t.Fatal(err)
	}
	if on, err := o.Receipts(ctx); err != nil || on {
		t.Fatalf("receipts after off: %v, %v", on, err)
	}
	if err := o.SetContactReceipts(ctx, "Gus", "sometimes"); !errors.Is(err, client.ErrReceiptMode) {
		t.Fatalf("a bad mode: %v", err)
	}
	if err := o.DeleteAddress(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.RequestContact(ctx, addr.Link, "owner2", "Gus", 0); !errors.Is(err, client.ErrAddressGone) {
		t.Fatalf("a request after delete: %v", err)
	}
}
