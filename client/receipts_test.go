package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
)

// untilMessage returns the seqs of p's EventDelivered events that come
// before the message text from the contact from, failing at a problem or
// another message.
func untilMessage(ctx context.Context, t *testing.T, p *person, from, text string) []uint64 {
	t.Helper()
	var delivered []uint64
	for {
		ev := p.next(ctx, client.EventDelivered, client.EventMessage, client.EventProblem)
		switch {
		case ev.Kind == client.EventDelivered && ev.Contact == from:
			delivered = append(delivered, ev.Seq)
		case ev.Kind == client.EventMessage && ev.Contact == from && ev.Text == text:
			return delivered
		default:
			t.Fatalf("waiting for %q from %s: got %v %q %q (%v)", text, from, ev.Kind, ev.Contact, ev.Text, ev.Problem)
		}
	}
}

// sendMarker has from send text to its contact to (toName in from's
// list, fromName in to's), and returns the message's seq and the seqs of
// the receipts from to that came before it (untilMessage).
func sendMarker(ctx context.Context, t *testing.T, from *person, toName string, to *person, fromName, text string) (uint64, []uint64) {
	t.Helper()
	seq, err := from.c.Send(ctx, toName, text)
	if err != nil {
		t.Fatal(err)
	}
	return seq, untilMessage(ctx, t, to, fromName, text)
}

// TestReceipts: each message stored by the recipient gets exactly one
// receipt, in order, bound to it, both ways; receipts get none.
func TestReceipts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)

	const n = 5
	var sent []uint64
	for i := range n {
		seq, err := alice.c.Send(ctx, "b", fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, seq)
	}
	for i := range n {
		expectMessage(ctx, t, bob, "a", fmt.Sprintf("message %d", i))
	}
	var delivered []uint64
	for len(delivered) < n {
		ev := alice.next(ctx, client.EventDelivered, client.EventProblem)
		if ev.Kind != client.EventDelivered || ev.Contact != "b" {
			t.Fatalf("alice: %v %q (%v)", ev.Kind, ev.Contact, ev.Problem)
		}
		delivered = append(delivered, ev.Seq)
	}
	if !slices.Equal(delivered, sent) {
		t.Fatalf("receipts for %v, want exactly %v in order", delivered, sent)
	}
	// Bob's reply comes after his receipts on the same queue: no further
	// receipt comes before it. Its seq counts bob's payloads: his
	// confirmation, n receipts and the reply.
	reply, extra := sendMarker(ctx, t, bob, "a", alice, "b", "all five")
	if reply != 1+n+1 {
		t.Errorf("bob's reply has seq %d, want %d: one receipt per message", reply, 1+n+1)
	}
	if len(extra) != 0 {
		t.Fatalf("receipts %v after all were delivered", extra)
	}
	// The other way: alice's receipt for the reply, and none for a receipt.
	if ev := bob.next(ctx, client.EventDelivered, client.EventProblem); ev.Kind != client.EventDelivered || ev.Seq != reply {
		t.Fatalf("bob: %v seq %d (%v), want the receipt of %d", ev.Kind, ev.Seq, ev.Problem, reply)
	}
	seq, extra := sendMarker(ctx, t, alice, "b", bob, "a", "done")
	// Alice sent the ready message (seq 1), n texts and one receipt.
	if seq != 1+n+1+1 {
		t.Errorf("alice's last message has seq %d, want %d", seq, 1+n+2)
	}
	if len(extra) != 0 {
		t.Fatalf("bob got receipts %v for receipts", extra)
	}
}

// TestReceiptsOff: with receipts off, globally or for the contact, the
// recipient sends none (its next payload's seq follows the last one: no
// receipt took a seq on the wire), and the sender sees no delivery; on for
// the contact while off globally, they come again.
func TestReceiptsOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)
	if on, err := bob.c.Receipts(); err != nil || !on {
		t.Fatalf("receipts by default: %v, %v; want on", on, err)
	}

	// without sends two messages to bob, which he stores, and checks that
	// he sent nothing back before his next message.
	without := func(what string) {
		t.Helper()
		before, got := sendMarker(ctx, t, bob, "a", alice, "b", "before "+what)
		if len(got) != 0 {
			t.Fatalf("%s: receipts %v before", what, got)
		}
		for i := range 2 {
			if _, err := alice.c.Send(ctx, "b", fmt.Sprintf("%s %d", what, i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 2 {
			expectMessage(ctx, t, bob, "a", fmt.Sprintf("%s %d", what, i))
		}
		after, got := sendMarker(ctx, t, bob, "a", alice, "b", "after "+what)
		if after != before+1 {
			t.Errorf("%s: bob's payloads went from seq %d to %d: he sent receipts", what, before, after)
		}
		if len(got) != 0 {
			t.Fatalf("%s: receipts %v", what, got)
		}
	}

	if err := bob.c.SetReceipts(false); err != nil {
		t.Fatal(err)
	}
	without("off globally")

	// On for the contact, off globally: a receipt again.
	if err := bob.c.SetContactReceipts("a", client.ReceiptsOn); err != nil {
		t.Fatal(err)
	}
	if cs, err := bob.c.Contacts(); err != nil || cs[0].Receipts != client.ReceiptsOn {
		t.Fatalf("bob's contacts %+v, %v", cs, err)
	}
	seq, err := alice.c.Send(ctx, "b", "on for a")
	if err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "on for a")
	if ev := alice.next(ctx, client.EventDelivered, client.EventProblem, client.EventMessage); ev.Kind != client.EventDelivered || ev.Seq != seq {
		t.Fatalf("alice: %v seq %d, want the receipt of %d", ev.Kind, ev.Seq, seq)
	}

	// Off for the contact, on globally.
	if err := bob.c.SetReceipts(true); err != nil {
		t.Fatal(err)
	}
	if err := bob.c.SetContactReceipts("a", client.ReceiptsOff); err != nil {
		t.Fatal(err)
	}
	without("off for a")
	if err := bob.c.SetContactReceipts("a", "sometimes"); !errors.Is(err, client.ErrReceiptMode) {
		t.Errorf("a bad mode: %v", err)
	}
	if err := bob.c.SetContactReceipts("nobody", client.ReceiptsOff); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("an unknown contact: %v", err)
	}
}

// TestNoReceiptForLostOrTampered: a message changed on its way (its
// envelope altered after it was sealed, as a relay or the network could)
// and one lost (never delivered) get no receipt; the next one stored does.
func TestNoReceiptForLostOrTampered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)
	first, err := alice.c.Send(ctx, "b", "first")
	if err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "first")
	if ev := alice.next(ctx, client.EventDelivered); ev.Seq != first {
		t.Fatalf("receipt of %d, want %d", ev.Seq, first)
	}

	// Alice's client queues three messages offline; the first is altered
	// and the second lost before they leave. "first" is known sent before
	// she closes (else it is sent again, and bob reports a duplicate
	// before the problems this test expects).
	flush(ctx, t, alice)
	alice.openWith(client.Config{Offline: true})
	var seqs []uint64
	for _, text := range []string{"tampered", "lost", "kept"} {
		seq, err := alice.c.Send(ctx, "b", text)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	n, err := client.ChangeOutbox(alice.c, func(seq uint64, env []byte) []byte {
		switch seq {
		case seqs[0]:
			tamper(env)
		case seqs[1]:
			return nil
		}
		return env
	})
	if err != nil || n != 2 {
		t.Fatalf("changed %d outbox entries, want 2: %v", n, err)
	}
	alice.openWith(client.Config{})

	expectProblem(ctx, t, bob, client.ErrTampered)
	expectProblem(ctx, t, bob, client.ErrGap)
	expectMessage(ctx, t, bob, "a", "kept")
	if _, got := sendMarker(ctx, t, bob, "a", alice, "b", "marker"); !slices.Equal(got, []uint64{seqs[2]}) {
		t.Fatalf("receipts %v, want only that of the kept message (%d)", got, seqs[2])
	}
}

// TestReceiptMismatch: a receipt whose hash is not that of the message we
// sent with its seq (here the kept hash is changed, as if the contact had
// stored another message) is reported as a problem, and the message is
// not reported delivered.
func TestReceiptMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)
	bob.c.Close()
	seq, err := alice.c.Send(ctx, "b", "which one?")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := client.CorruptReceipts(alice.c, "b"); err != nil || n != 1 {
		t.Fatalf("changed %d kept hashes, want 1: %v", n, err)
	}
	bob.open()
	expectMessage(ctx, t, bob, "a", "which one?")
	ev := alice.next(ctx, client.EventDelivered, client.EventProblem)
	if ev.Kind != client.EventProblem || !errors.Is(ev.Problem, client.ErrReceiptMismatch) || ev.Seq != seq {
		t.Fatalf("alice: %v seq %d (%v), want a mismatch for %d", ev.Kind, ev.Seq, ev.Problem, seq)
	}
	if _, err := bob.c.Send(ctx, "a", "marker"); err != nil {
		t.Fatal(err)
	}
	if got := untilMessage(ctx, t, alice, "b", "marker"); len(got) != 0 {
		t.Fatalf("delivered %v after a mismatch", got)
	}
}
