package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// transports are the values of --transport that failover tests run with.
var transports = []string{"quic", "tcp"}

// slowBound is far more than a command may take when a relay is down: one
// that takes longer waited for that relay instead of trying another.
const slowBound = 15 * time.Second

// timed runs args as u and returns the result and how long it took.
func (u *user) timed(t *testing.T, args ...string) (result, time.Duration) {
	t.Helper()
	start := time.Now()
	r := u.run(t, "", args...)
	return r, time.Since(start)
}

// relaysOf returns the relays (host:port) that u receives from and sends
// to the contact called name on, from contacts --json.
func (u *user) relaysOf(t *testing.T, name string) (recv, send string) {
	t.Helper()
	var out struct {
		Contacts []struct {
			Name         string `json:"name"`
			ReceiveRelay string `json:"receive_relay"`
			SendRelay    string `json:"send_relay"`
		} `json:"contacts"`
	}
	jsonLine(t, u.ok(t, "--json", "contacts").stdout, &out)
	hostPort := func(s string) string {
		if s == "" {
			return ""
		}
		a, err := queue.ParseAddress(s)
		if err != nil {
			t.Fatalf("%s's contact %s: relay %q: %v", u.name, name, s, err)
		}
		return a.HostPort()
	}
	for _, c := range out.Contacts {
		if c.Name == name {
			return hostPort(c.ReceiveRelay), hostPort(c.SendRelay)
		}
	}
	t.Fatalf("%s has no contact %s", u.name, name)
	return "", ""
}

// TestFailoverCLI stops one of three relays: invitations and acceptances
// still succeed, soon, with the two directions of each contact on the two
// relays that are up, and the contacts connect.
func TestFailoverCLI(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			p1, p2 := runRelay(t, filepath.Join(t.TempDir(), "r1")), runRelay(t, filepath.Join(t.TempDir(), "r2"))
			p3 := runRelay(t, filepath.Join(t.TempDir(), "r3"))
			alice, bob := newUser(t, "alice"), newUser(t, "bob")
			for _, u := range []*user{alice, bob} {
				u.flags = []string{"--transport", tp}
				u.ok(t, "init", "--no-passphrase")
				for _, p := range []*relaytest.Process{p1, p2, p3} {
					u.ok(t, "relays", "add", p.Addr.String())
				}
			}
			p3.Terminate()
			const n = 3
			for i := range n {
				r, inv := alice.timed(t, "--json", "invite", "--name", fmt.Sprintf("b%d", i))
				mustSucceed(t, r, []string{"invite"})
				var out struct {
					Link string `json:"link"`
				}
				jsonLine(t, r.stdout, &out)
				r, acc := bob.timed(t, "accept", out.Link, "--name", fmt.Sprintf("a%d", i))
				mustSucceed(t, r, []string{"accept"})
				t.Logf("%s: with one relay of three down, hush invite took %v, hush accept %v", tp, inv.Round(time.Millisecond), acc.Round(time.Millisecond))
				if inv > slowBound || acc > slowBound {
					t.Errorf("invite took %v and accept %v", inv, acc)
				}
				if strings.Contains(r.stderr, "share") {
					t.Errorf("accept with two relays up warns of sharing:\n%s", r.stderr)
				}
				aRecv, _ := alice.relaysOf(t, fmt.Sprintf("b%d", i))
				bRecv, bSend := bob.relaysOf(t, fmt.Sprintf("a%d", i))
				if aRecv == p3.Addr.HostPort() || bRecv == p3.Addr.HostPort() || bRecv == aRecv || bSend != aRecv {
					t.Errorf("contact %d: alice receives on %s, bob on %s and sends to %s; the relay down is %s",
						i, aRecv, bRecv, bSend, p3.Addr.HostPort())
				}
			}
			alice.receiveUntil(t, "b0 connected", "b1 connected", "b2 connected")
			bob.receiveUntil(t, "a0 connected", "a1 connected", "a2 connected")
			alice.ok(t, "send", "b2", "hello")
			if out := bob.receiveUntil(t, "a2: hello\n"); strings.Contains(out, "could not reach") {
				t.Errorf("receive reports a relay that no contact uses:\n%s", out)
			}
		})
	}
}

// TestAcceptInviterRelayDownCLI accepts an invitation while the inviter's
// relay is down: accept fails soon and names the relay; the invitation
// works once the relay is back.
func TestAcceptInviterRelayDownCLI(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "r1")
			p1, p2 := runRelay(t, dir), runRelay(t, filepath.Join(t.TempDir(), "r2"))
			alice, bob := newUser(t, "alice"), newUser(t, "bob")
			for _, u := range []*user{alice, bob} {
				u.flags = []string{"--transport", tp}
				u.ok(t, "init", "--no-passphrase")
				u.ok(t, "relays", "add", p1.Addr.String())
			}
			bob.ok(t, "relays", "add", p2.Addr.String())
			link, _, _ := strings.Cut(alice.ok(t, "invite", "--name", "bob").stdout, "\n")
			p1.Terminate()
			r, took := bob.timed(t, "accept", link, "--name", "alice")
			t.Logf("%s: hush accept with the inviter's relay down failed after %v:\n%s", tp, took.Round(time.Millisecond), r.stderr)
			mustFail(t, r, 1, "the inviter's relay cannot be used: relay "+p1.Addr.HostPort(), "still valid")
			if took > slowBound {
				t.Errorf("accept took %v to fail", took)
			}
			p1.Restart()
			bob.ok(t, "accept", link, "--name", "alice")
			alice.receiveUntil(t, "bob connected")
			bob.receiveUntil(t, "alice connected")
		})
	}
}

// TestReceiveUnreachable stops the relays of a contact one by one:
// receive names the relay it could not reach, in text and JSON, and fails
// once it reached none.
func TestReceiveUnreachable(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			p1, p2 := runRelay(t, filepath.Join(t.TempDir(), "r1")), runRelay(t, filepath.Join(t.TempDir(), "r2"))
			a, _ := pairWith(t, []string{"--transport", tp}, p1.Addr, p2.Addr)
			recv, send := a.relaysOf(t, "b")
			byAddr := map[string]*relaytest.Process{p1.Addr.HostPort(): p1, p2.Addr.HostPort(): p2}
			if byAddr[recv] == nil || byAddr[send] == nil || recv == send {
				t.Fatalf("a receives on %s and sends to %s", recv, send)
			}
			// The relay a sends to is down: a message waits for it, so
			// receive needs both relays, and reaches one.
			byAddr[send].Terminate()
			a.ok(t, "send", "--timeout", "1s", "b", "waits")
			r := a.ok(t, "receive", "--wait", "1s", "--timeout", "2s")
			if !strings.Contains(r.stderr, "could not reach relay "+send+":") || strings.Contains(r.stderr, recv+":") {
				t.Errorf("receive with %s down printed:\n%s", send, r.stderr)
			}
			r = a.ok(t, "--json", "receive", "--wait", "1s", "--timeout", "2s")
			if got := unreachable(t, r.stdout); len(got) != 1 || got[send] == "" {
				t.Errorf("receive --json with %s down reports %v:\n%s", send, got, r.stdout)
			}

			// Both down.
			byAddr[recv].Terminate()
			r = a.run(t, "", "receive", "--wait", "1s", "--timeout", "2s")
			mustFail(t, r, 1, "could not reach relay "+send+":", "could not reach relay "+recv+":", "could not reach any of the 2 relays")
			if strings.Contains(r.stderr, "nothing new") {
				t.Errorf("receive with every relay down says nothing new:\n%s", r.stderr)
			}
			r = a.run(t, "", "--json", "receive", "--wait", "1s", "--timeout", "2s")
			mustFail(t, r, 1, "could not reach any of the 2 relays")
			if got := unreachable(t, r.stdout); got[send] == "" || got[recv] == "" || len(got) != 2 {
				t.Errorf("receive --json with both relays down reports %v:\n%s", got, r.stdout)
			}
		})
	}
}

// unreachable returns the relays of the "unreachable" events that
// receive --json printed in out, and their errors.
func unreachable(t *testing.T, out string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Event, Relay, Error string
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("receive --json printed %q: %v", line, err)
		}
		if ev.Event == "unreachable" {
			if ev.Error == "" {
				t.Errorf("unreachable event without an error: %s", line)
			}
			got[ev.Relay] = ev.Error
		}
	}
	return got
}

// TestRefusingRelayCLI checks that relays add and invite report a wrong
// fingerprint, a wrong or missing password and an unreachable relay
// clearly, and at once rather than after --timeout.
func TestRefusingRelayCLI(t *testing.T) {
	const timeout = "90s" // far longer than anything here may take
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			open := runRelay(t, filepath.Join(t.TempDir(), "open"))
			locked := runRelay(t, filepath.Join(t.TempDir(), "locked"), "--password", "right-pw")
			gone := runRelay(t, filepath.Join(t.TempDir(), "gone"))
			gone.Terminate()
			wrongFP := open.Addr
			wrongFP.Fingerprint = gone.Addr.Fingerprint
			wrongPass, noPass := locked.Addr, locked.Addr
			wrongPass.Password, noPass.Password = "wrong-pw", ""
			if locked.Addr.Password != "right-pw" {
				t.Fatalf("the locked relay's address is %s", locked.Addr)
			}

			u := newUser(t, "u")
			u.flags = []string{"--transport", tp}
			u.ok(t, "init", "--no-passphrase")
			for _, tc := range []struct {
				addr queue.Address
				want []string
			}{
				{wrongFP, []string{"is not the relay this address names", "not added", "Check the address"}},
				{wrongPass, []string{"refused the address's password", "not added"}},
				{noPass, []string{"needs a password", "not added"}},
				{gone.Addr, []string{"could not reach the relay at " + gone.Addr.HostPort(), "--offline"}},
			} {
				r, took := u.timed(t, "relays", "add", "--timeout", timeout, tc.addr.String())
				t.Logf("%s: relays add %s failed after %v:\n%s", tp, tc.addr, took.Round(time.Millisecond), r.stderr)
				mustFail(t, r, 1, tc.want...)
				if took > slowBound {
					t.Errorf("relays add took %v to fail", took)
				}
			}
			var list struct {
				Relays []any `json:"relays"`
			}
			jsonLine(t, u.ok(t, "--json", "relays", "list").stdout, &list)
			if len(list.Relays) != 0 {
				t.Fatalf("refused relays were added: %v", list)
			}

			// Added without checking, a wrong fingerprint or password
			// fails invite at once, with advice.
			for _, tc := range []struct {
				addr queue.Address
				want []string
			}{
				{wrongFP, []string{"does not match", "check the address"}},
				{wrongPass, []string{"wrong relay password", "ask its operator"}},
			} {
				v := newUser(t, "v")
				v.flags = u.flags
				v.ok(t, "init", "--no-passphrase")
				if r := v.ok(t, "relays", "add", "--offline", tc.addr.String()); !strings.Contains(r.stdout, "without checking") {
					t.Errorf("relays add --offline printed:\n%s", r.stdout)
				}
				r, took := v.timed(t, "invite", "--timeout", timeout)
				t.Logf("%s: invite with %s failed after %v:\n%s", tp, tc.addr, took.Round(time.Millisecond), r.stderr)
				mustFail(t, r, 1, tc.want...)
				if took > slowBound {
					t.Errorf("invite took %v to fail", took)
				}
			}
		})
	}
}

// TestRelaysManage checks relays add's refusal of a second relay at one
// host and port, and relays remove by each way of naming a relay.
func TestRelaysManage(t *testing.T) {
	p1, p2 := runRelay(t, filepath.Join(t.TempDir(), "r1")), runRelay(t, filepath.Join(t.TempDir(), "r2"))
	a, _ := pair(t, p1.Addr, p2.Addr)

	other := p1.Addr
	other.Fingerprint = p2.Addr.Fingerprint
	other.Fingerprint[0] ^= 1
	for _, args := range [][]string{{"relays", "add", other.String()}, {"relays", "add", "--offline", other.String()}} {
		mustFail(t, a.run(t, "", args...), 1, "another fingerprint is configured at "+p1.Addr.HostPort(), "relays remove")
	}
	// The same relay again, with a password: replaced, not added.
	again := p1.Addr
	again.Password = "pw"
	a.ok(t, "relays", "add", "--offline", again.String())
	if r := a.ok(t, "relays", "list"); strings.Count(r.stdout, p1.Addr.Fingerprint.String()) != 1 || !strings.Contains(r.stdout, "with password") {
		t.Errorf("relays list after adding a relay again:\n%s", r.stdout)
	}

	// Two made-up relays whose fingerprints start alike.
	var f1, f2 queue.Fingerprint
	f1[31], f2[31] = 1, 2
	x1 := queue.Address{Fingerprint: f1, Host: "127.0.0.1", Port: 1}
	x2 := queue.Address{Fingerprint: f2, Host: "127.0.0.1", Port: 2}
	var added struct {
		Added   string `json:"added"`
		Relays  int    `json:"relays"`
		Checked *bool  `json:"checked"`
	}
	jsonLine(t, a.ok(t, "--json", "relays", "add", "--offline", x1.String()).stdout, &added)
	if added.Added != x1.String() || added.Relays != 3 || added.Checked == nil || *added.Checked {
		t.Errorf("relays add --offline --json: %+v", added)
	}
	a.ok(t, "relays", "add", "--offline", x2.String())
	mustFail(t, a.run(t, "", "relays", "remove", "AAAA"), 1, `"AAAA" names 2 relays`)
	mustFail(t, a.run(t, "", "relays", "remove", "127.0.0.1:3"), 1, "no configured relay")
	if r := a.ok(t, "relays", "remove", x1.HostPort()); !strings.Contains(r.stdout, "removed relay "+x1.HostPort()) || strings.Contains(r.stdout, "still") {
		t.Errorf("relays remove printed:\n%s", r.stdout)
	}
	a.ok(t, "relays", "remove", x2.String())

	// A relay that a contact uses, removed without moving the contact
	// (--no-move): removed, and the contact named.
	var out struct {
		Removed  string   `json:"removed"`
		Relays   int      `json:"relays"`
		Contacts []string `json:"contacts"`
	}
	jsonLine(t, a.ok(t, "--json", "relays", "remove", "--no-move", p1.Addr.Fingerprint.String()[:8]).stdout, &out)
	if out.Removed != p1.Addr.String() || out.Relays != 1 || len(out.Contacts) != 1 || out.Contacts[0] != "b" {
		t.Errorf("relays remove --json: %+v", out)
	}
	r := a.ok(t, "relays", "remove", "--no-move", p2.Addr.HostPort())
	if !strings.Contains(r.stdout, "still have a queue on it") || !strings.Contains(r.stdout, ": b\n") {
		t.Errorf("relays remove of a relay in use printed:\n%s", r.stdout)
	}
	if r := a.ok(t, "relays", "list"); !strings.Contains(r.stdout, "no relays") {
		t.Errorf("relays list after removing them all:\n%s", r.stdout)
	}
	// The contact still works through the removed relays. They are not
	// a's any more, and with the default --routing (unknown) a message to
	// b's relay would wait for a forwarding relay of a's (there is none
	// left): directly, it goes.
	if r := a.ok(t, "--routing", "never", "send", "b", "still here"); strings.TrimSpace(r.stdout) != "sent" {
		t.Errorf("send through removed relays printed:\n%s", r.stdout)
	}
}
