package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// contactRelays returns what "hush --json contacts" says of u's contact
// name: the relay it receives on, and its rotation state.
func (u *user) contactRelays(t *testing.T, name string) (recv, rotation string) {
	t.Helper()
	var out struct {
		Contacts []struct {
			Name         string `json:"name"`
			ReceiveRelay string `json:"receive_relay"`
			Rotation     string `json:"rotation"`
		} `json:"contacts"`
	}
	jsonLine(t, u.ok(t, "--json", "contacts").stdout, &out)
	for _, c := range out.Contacts {
		if c.Name == name {
			return c.ReceiveRelay, c.Rotation
		}
	}
	t.Fatalf("no contact %q in %+v", name, out)
	return "", ""
}

// TestRotateCommand rotates a's queue for b with "hush rotate" while b's
// agent runs: the command waits for the rotation to complete and names
// the new relay (the one added for it), "contacts" shows it, and messages
// go both ways afterwards. A second rotate while none is under way works
// again; an unknown contact is refused.
func TestRotateCommand(t *testing.T) {
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, b := pair(t, r1, r2)
	b.startAgent(t)
	a.ok(t, "relays", "add", r3.String())
	before, _ := a.contactRelays(t, "b")
	r := a.ok(t, "rotate", "b")
	if !strings.Contains(r.stdout, "rotated: b's messages now come on a new queue, on "+r3.HostPort()) {
		t.Fatalf("rotate printed %q, want it to name %s", r.stdout, r3.HostPort())
	}
	after, _ := a.contactRelays(t, "b")
	if after == before || !strings.Contains(after, r3.HostPort()) {
		t.Fatalf("a receives from b on %s after the rotation (before: %s), want %s", after, before, r3.HostPort())
	}
	b.ok(t, "send", "a", "after the rotation")
	a.receiveUntil(t, "b: after the rotation")
	a.ok(t, "send", "b", "and back")
	var got struct {
		Complete bool   `json:"complete"`
		Relay    string `json:"receive_relay"`
	}
	jsonLine(t, a.ok(t, "--json", "rotate", "b").stdout, &got)
	if !got.Complete || got.Relay == "" {
		t.Fatalf("rotate --json: %+v, want complete", got)
	}
	mustFail(t, a.run(t, "", "rotate", "nobody"), 1, `no contact named "nobody"`)
}

// TestAgentRotates runs both agents, b's with --rotate-every 3s: b's
// queue for a moves on its own (b's receiving relay changes) while the
// two exchange messages through their agents, which all arrive. The
// default period is 7 days (agent -h).
func TestAgentRotates(t *testing.T) {
	if r := hush(t, nil, "", "agent", "-h"); !strings.Contains(r.stdout, "-rotate-every") || !strings.Contains(r.stdout, "(default 168h0m0s)") {
		t.Fatalf("agent -h does not show --rotate-every with its default of 7 days:\n%s", r.stdout)
	}
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, b := pair(t, r1, r2)
	b.ok(t, "relays", "add", r3.String())
	before, _ := b.contactRelays(t, "a")
	a.startAgent(t)
	b.startAgent(t, "--rotate-every", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		now, rot := b.contactRelays(t, "a")
		if now != before && rot == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("b's agent did not rotate its queue for a (still on %s)", now)
		case <-time.After(500 * time.Millisecond):
		}
	}
	a.ok(t, "send", "b", "to b")
	b.ok(t, "send", "a", "to a")
	b.receiveUntil(t, "a: to b")
	a.receiveUntil(t, "b: to a")
}

// TestRelaysRemoveMoves removes, with b's agent running, first the relay
// a receives b's messages on: a's queue moves to the third relay before
// the relay is removed; then the relay of the queue a sends to, which is
// b's: b is asked to move it, and does. Messages go both ways after each.
// A relay that is the only one left cannot be removed while contacts use
// it, except with --no-move.
func TestRelaysRemoveMoves(t *testing.T) {
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, b := pair(t, r1, r2)
	b.startAgent(t)
	a.ok(t, "relays", "add", r3.String())
	recv, _ := a.contactRelays(t, "b")
	mine, theirs := r1, r2
	if !strings.Contains(recv, r1.HostPort()) {
		mine, theirs = r2, r1
	}
	r := a.ok(t, "relays", "remove", mine.HostPort())
	if !strings.Contains(r.stdout, "moved 1 of 1 contacts' queues off "+mine.HostPort()) || !strings.Contains(r.stdout, "removed relay "+mine.HostPort()+"; 2 configured") {
		t.Fatalf("relays remove printed:\n%s", r.stdout)
	}
	if now, _ := a.contactRelays(t, "b"); !strings.Contains(now, r3.HostPort()) {
		t.Fatalf("a receives from b on %s after removing %s, want %s", now, mine.HostPort(), r3.HostPort())
	}
	b.ok(t, "send", "a", "one")
	a.receiveUntil(t, "b: one")

	// The queue a sends to is b's: b is asked to move it.
	var out struct {
		Removed string   `json:"removed"`
		Asked   []string `json:"asked"`
		Kept    bool     `json:"kept"`
	}
	jsonLine(t, a.ok(t, "--json", "relays", "remove", theirs.HostPort()).stdout, &out)
	if out.Kept || len(out.Asked) != 1 || out.Asked[0] != "b" {
		t.Fatalf("relays remove of the relay a sends to: %+v, want b asked and the relay removed", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		var cs struct {
			Contacts []struct {
				SendRelay string `json:"send_relay"`
			} `json:"contacts"`
		}
		jsonLine(t, a.ok(t, "--json", "contacts").stdout, &cs)
		if len(cs.Contacts) == 1 && !strings.Contains(cs.Contacts[0].SendRelay, theirs.HostPort()) {
			break
		}
		a.ok(t, "receive", "--wait", "1s") // reads b's QADD, answers QKEY
		select {
		case <-ctx.Done():
			t.Fatalf("b did not move its queue off %s", theirs.HostPort())
		default:
		}
	}
	a.ok(t, "send", "b", "two")
	b.receiveUntil(t, "a: two")

	// r3 is a's only relay now, and a receives on it.
	mustFail(t, a.run(t, "", "relays", "remove", r3.HostPort()), 1, "no other relay is configured")
	a.ok(t, "relays", "remove", "--no-move", r3.HostPort())
}

// TestRelaysRemoveKeepsUntilMoved removes the relay a receives on while
// b's hush is not running: the rotation cannot complete, so after --wait
// the relay is still configured (exit status 1) and the contact's
// rotation is under way; --now then removes it at once.
func TestRelaysRemoveKeepsUntilMoved(t *testing.T) {
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, _ := pair(t, r1, r2)
	a.ok(t, "relays", "add", r3.String())
	recv, _ := a.contactRelays(t, "b")
	mine := r1
	if !strings.Contains(recv, r1.HostPort()) {
		mine = r2
	}
	r := a.run(t, "", "relays", "remove", "--wait", "2s", mine.HostPort())
	mustFail(t, r, 1, "not all contacts moved off the relay in time")
	if !strings.Contains(r.stdout, "is still configured") || !strings.Contains(r.stdout, "not moved yet") || !strings.Contains(r.stdout, ": b\n") {
		t.Fatalf("relays remove with b not answering printed:\n%s", r.stdout)
	}
	if r := a.ok(t, "relays", "list"); !strings.Contains(r.stdout, mine.HostPort()) {
		t.Fatalf("the relay is not configured any more:\n%s", r.stdout)
	}
	if _, rot := a.contactRelays(t, "b"); rot != "adding" {
		t.Fatalf("a's rotation for b: %q, want adding (b has not answered)", rot)
	}
	r = a.ok(t, "relays", "remove", "--now", mine.HostPort())
	if !strings.Contains(r.stdout, "removed relay "+mine.HostPort()) {
		t.Fatalf("relays remove --now printed:\n%s", r.stdout)
	}
}
