package main

import (
	"strings"
	"testing"
)

// TestForgetRename renames and forgets a contact through the agent, and
// shows the other side what became of it. (client's TestForget checks on
// the relays that no queue remains.)
func TestForgetRename(t *testing.T) {
	a, b := pair(t, startRelay(t), startRelay(t))
	a.startAgent(t)

	r := a.ok(t, "rename", "b", "bobby")
	if !strings.Contains(r.stdout, "renamed b to bobby") {
		t.Errorf("rename printed %q", r.stdout)
	}
	mustFail(t, a.run(t, "", "rename", "nobody", "x"), 1, `no contact named "nobody"`)
	mustFail(t, a.run(t, "", "send", "b", "old name"), 1, `no contact named "b"`)
	a.ok(t, "send", "bobby", "new name")
	b.receiveUntil(t, "a: new name\n")

	r = a.ok(t, "forget", "bobby")
	if !strings.Contains(r.stdout, "forgot bobby") || strings.Contains(r.stdout, "queued") {
		t.Errorf("forget printed %q", r.stdout)
	}
	if got := a.states(t); len(got) != 0 {
		t.Errorf("a's contacts after forget: %v", got)
	}
	b.receiveUntil(t, "problem with a: the contact deleted this conversation")
	if got := b.states(t); got["a"] != "gone" {
		t.Errorf("b's contacts: %v, want a gone", got)
	}
	if r := b.ok(t, "contacts"); !strings.Contains(r.stdout, "they forgot you") {
		t.Errorf("contacts does not say what became of a:\n%s", r.stdout)
	}
	mustFail(t, b.run(t, "", "send", "a", "hello?"), 1, "forgot you")
	b.ok(t, "forget", "a")
	if got := b.states(t); len(got) != 0 {
		t.Errorf("b's contacts after forget: %v", got)
	}

	// A half-made contact: invited, never accepted.
	a.ok(t, "invite", "--name", "never")
	if r := a.ok(t, "contacts"); !strings.Contains(r.stdout, "waiting for them to accept the link; expires") {
		t.Errorf("contacts does not say the invitation waits and expires:\n%s", r.stdout)
	}
	a.ok(t, "forget", "never")
	if got := a.states(t); len(got) != 0 {
		t.Errorf("a's contacts after forgetting the invitation: %v", got)
	}
}
