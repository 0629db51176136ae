package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// TestReceiptsCLI: chat shows a second tick once the contact has stored a
// line; with receipts off at the contact's end it shows none (and the
// contact's reply comes after where a receipt would have); receive --json
// prints the delivered event; "receipts" sets and shows the settings,
// globally and for one contact.
func TestReceiptsCLI(t *testing.T) {
	a, b := pair(t, startRelay(t), startRelay(t))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	chat := startChat(t, ctx, a, "b")
	io.WriteString(chat.stdin, "line one\n")
	b.receiveUntil(t, "a: line one\n")
	waitFor(t, ctx, "the second tick", func(string) bool { return strings.Contains(chat.stderr.String(), "✓✓ line one\n") })

	if r := b.ok(t, "receipts", "off"); !strings.Contains(r.stdout, "receipts off") {
		t.Errorf("receipts off printed:\n%s", r.stdout)
	}
	var shown struct {
		Receipts bool              `json:"receipts"`
		Contacts map[string]string `json:"contacts"`
	}
	shown.Contacts = nil
	jsonLine(t, b.ok(t, "--json", "receipts").stdout, &shown)
	if shown.Receipts || len(shown.Contacts) != 0 {
		t.Errorf("receipts --json after off: %+v", shown)
	}
	io.WriteString(chat.stdin, "line two\n")
	b.receiveUntil(t, "a: line two\n")
	b.ok(t, "send", "a", "marker")
	// A receipt for line two would come before the marker, on the same queue.
	chat.expect(t, ctx, "the marker", func(line string) bool { return line == "b: marker" })
	if _, err := chat.wait(); err != nil {
		t.Fatalf("chat: %v\nstderr:\n%s", err, chat.stderr.String())
	}
	stderr := chat.stderr.String()
	if !strings.Contains(stderr, "✓ line two\n") || strings.Contains(stderr, "✓✓ line two") {
		t.Errorf("with receipts off, chat shows:\n%s", stderr)
	}
	if n := strings.Count(stderr, "✓✓ "); n != 1 {
		t.Errorf("chat shows %d second ticks, want 1:\n%s", n, stderr)
	}

	// On for a, off for the others: a's messages get receipts again.
	b.ok(t, "receipts", "on", "a")
	shown.Contacts = nil
	jsonLine(t, b.ok(t, "--json", "receipts").stdout, &shown)
	if shown.Receipts || shown.Contacts["a"] != "on" {
		t.Errorf("receipts --json: %+v, want off globally and on for a", shown)
	}
	if r := b.ok(t, "contacts"); !strings.Contains(r.stdout, "receipts on") {
		t.Errorf("contacts does not show the contact's setting:\n%s", r.stdout)
	}
	var sent struct {
		Seq uint64 `json:"seq"`
	}
	jsonLine(t, a.ok(t, "--json", "send", "b", "three").stdout, &sent)
	b.receiveUntil(t, "a: three\n")
	if !untilBound(func() bool {
		found := false
		for _, line := range strings.Split(a.ok(t, "--json", "receive", "--wait", "1s").stdout, "\n") {
			var ev struct {
				Event   string `json:"event"`
				Contact string `json:"contact"`
				Seq     uint64 `json:"seq"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "delivered" {
				if ev.Contact != "b" || ev.Seq != sent.Seq {
					t.Fatalf("delivered %+v, want b's receipt of %d", ev, sent.Seq)
				}
				found = true
			}
		}
		return found
	}) {
		t.Fatalf("receive --json printed no delivered event for message %d in %v of runs", sent.Seq, receiveBound)
	}
	b.ok(t, "receipts", "default", "a")
	mustFail(t, b.run(t, "", "receipts", "default"), 2, "name the contact")
	mustFail(t, b.run(t, "", "receipts", "maybe"), 2, "not on, off or default")
	mustFail(t, b.run(t, "", "receipts", "off", "nobody"), 1, "no contact named")
	shown.Contacts = nil
	jsonLine(t, b.ok(t, "--json", "receipts").stdout, &shown)
	if shown.Receipts || len(shown.Contacts) != 0 {
		t.Errorf("receipts --json after default: %+v", shown)
	}
}
