package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoutingCLI: a uses relay r1, b relay r2 (hush-relay processes,
// forwarding on by default). With the default --routing (unknown: r2 is
// not a's, r1 not b's), they connect and a message goes, each through
// their own relay. With r1 down, a's next message to b is not sent
// directly to r2: "send" leaves it queued, "receive --json" shows why
// in a problem event, and "contacts" still counts it queued. "--routing never" then sends it, and the one
// after it, directly, each once.
func TestRoutingCLI(t *testing.T) {
	r1 := runRelay(t, filepath.Join(t.TempDir(), "r1"))
	r2 := runRelay(t, filepath.Join(t.TempDir(), "r2"))
	a, b := newUser(t, "a"), newUser(t, "b")
	// Over TCP, a relay that is down refuses at once: the problem is
	// known within the commands' short waits.
	a.flags = []string{"--transport", "tcp"}
	a.ok(t, "init", "--no-passphrase")
	b.ok(t, "init", "--no-passphrase")
	a.ok(t, "relays", "add", r1.Addr.String())
	b.ok(t, "relays", "add", r2.Addr.String())
	connectUsers(t, a, b, "b", "a")
	a.ok(t, "send", "b", "forwarded")
	b.receiveUntil(t, "a: forwarded\n")

	r1.Terminate()
	var sent struct {
		Status string `json:"status"`
	}
	jsonLine(t, a.ok(t, "--json", "send", "--timeout", "2s", "b", "waits").stdout, &sent)
	if sent.Status != "queued" {
		t.Fatalf("send with a's relay down: status %q, want queued", sent.Status)
	}
	out := ""
	untilBound(func() bool {
		// receive exits with status 1: it could not reach r1.
		out += a.run(t, "", "--json", "receive", "--wait", "1s", "--timeout", "1s").stdout
		return strings.Contains(out, "private routing")
	})
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev eventJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		if ev.Event == "problem" && ev.Contact == "b" && strings.HasPrefix(ev.Error, "private routing: no forwarding relay") {
			found = true
		}
	}
	if !found {
		t.Fatalf("receive --json shows no problem of private routing for b:\n%s", out)
	}
	var cts contactsJSON
	jsonLine(t, a.ok(t, "--json", "contacts").stdout, &cts)
	if len(cts.Contacts) != 1 || cts.Contacts[0].State != "connected" || cts.Contacts[0].Outbox != 1 {
		t.Fatalf("a's contacts: %+v, want b connected with 1 message queued", cts)
	}

	a.ok(t, "--routing", "never", "send", "b", "directly")
	got := b.receiveUntil(t, "a: waits\n", "a: directly\n")
	if strings.Count(got, "a: waits\n") != 1 || strings.Count(got, "a: directly\n") != 1 || strings.Index(got, "a: waits") > strings.Index(got, "a: directly") {
		t.Fatalf("b received, want waits then directly, once each:\n%s", got)
	}
}
