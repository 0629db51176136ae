package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// qrSize returns the width, in columns, and the height, in lines, of the
// QR code of half blocks in out (the lines that hold one).
func qrSize(out string) (cols, rows int) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.ContainsAny(line, "█▀▄") {
			continue
		}
		rows++
		cols = max(cols, utf8.RuneCountInString(line))
	}
	return cols, rows
}

// firstLine returns the first line of out.
func firstLine(out string) string {
	line, _, _ := strings.Cut(out, "\n")
	return line
}

// TestShortInviteCLI: "invite --short" prints a link of at most 100
// characters whose QR code fits an 80-column terminal (the long link's
// does not); accepting it connects, and reading it a second time is
// refused as used.
func TestShortInviteCLI(t *testing.T) {
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "a", "b", "c")
	a, b, c := us[0], us[1], us[2]

	long := a.ok(t, "invite", "--name", "long")
	lcols, lrows := qrSize(long.stdout)
	r := a.ok(t, "invite", "--short", "--name", "b")
	short := firstLine(r.stdout)
	cols, rows := qrSize(r.stdout)
	t.Logf("short link: %d characters, QR code %d columns by %d lines; long link: %d characters, QR code %d by %d",
		len(short), cols, rows, len(firstLine(long.stdout)), lcols, lrows)
	if !queue.IsShortLink(short) || len(short) > 100 {
		t.Fatalf("invite --short printed %q first, want a short link of at most 100 characters", short)
	}
	if !hasQR(r.stdout) || cols > 80 || rows == 0 {
		t.Errorf("the short link's QR code is %d columns wide (%d lines), want at most 80:\n%s", cols, rows, r.stdout)
	}
	if lcols <= 80 {
		t.Errorf("the long link's QR code is %d columns wide: measured wrong?", lcols)
	}
	var inv struct {
		Link string `json:"link"`
	}
	jsonLine(t, a.ok(t, "--json", "invite", "--short", "--name", "unused").stdout, &inv)
	if !queue.IsShortLink(inv.Link) {
		t.Errorf("invite --short --json: link %q", inv.Link)
	}

	b.ok(t, "accept", short, "--name", "a")
	mustFail(t, c.run(t, "", "accept", short, "--name", "a"), 1, "already used")
	if got := c.states(t); len(got) != 0 {
		t.Errorf("the second reader has contacts %v", got)
	}
	a.receiveUntil(t, "b connected")
	b.receiveUntil(t, "a connected")
	a.ok(t, "send", "b", "short and sweet")
	b.receiveUntil(t, "a: short and sweet\n")
	b.ok(t, "send", "a", "indeed")
	a.receiveUntil(t, "b: indeed\n")
}

// requestEvent is a request event of "hush --json receive".
type requestEvent struct {
	Event   string `json:"event"`
	Request string `json:"request"`
	Name    string `json:"name"`
}

// receiveRequests runs "hush --json receive" until n request events came,
// and returns them.
func (u *user) receiveRequests(t *testing.T, n int) []requestEvent {
	t.Helper()
	var got []requestEvent
	done := untilBound(func() bool {
		out := u.ok(t, "--json", "receive", "--wait", "1s").stdout
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev requestEvent
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "request" {
				got = append(got, ev)
			}
		}
		return len(got) >= n
	})
	if !done {
		t.Fatalf("%d request events in %v of runs of receive, want %d", len(got), receiveBound, n)
	}
	if len(got) > n {
		t.Fatalf("%d request events, want %d: %+v", len(got), n, got)
	}
	return got
}

// TestAddressCLI: an owner makes a contact address (its QR code fits 80
// columns); three people ask through it, showing a name or none; the owner
// sees each request (as an event of receive --json and in "requests"),
// accepts two and rejects one; the accepted ones converse; once the
// address is deleted, a new request is refused. Auto-accept connects a
// request without the owner doing anything.
func TestAddressCLI(t *testing.T) {
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "owner", "rita", "sam", "anon", "late")
	owner, rita, sam, anon, late := us[0], us[1], us[2], us[3], us[4]

	mustFail(t, owner.run(t, "", "address", "show"), 1, "no contact address", "hush address create")
	r := owner.ok(t, "address", "create")
	addr := firstLine(r.stdout)
	cols, rows := qrSize(r.stdout)
	t.Logf("contact address: %d characters, QR code %d columns by %d lines", len(addr), cols, rows)
	if !isAddressLink(addr) || len(addr) > 100 {
		t.Fatalf("address create printed %q first, want an address's short link", addr)
	}
	if !hasQR(r.stdout) || cols > 80 {
		t.Errorf("the address's QR code is %d columns wide, want at most 80:\n%s", cols, r.stdout)
	}
	var shown struct {
		Address struct {
			Link       string `json:"link"`
			AutoAccept bool   `json:"auto_accept"`
			Created    string `json:"created"`
		} `json:"address"`
	}
	jsonLine(t, owner.ok(t, "--json", "address", "show").stdout, &shown)
	if shown.Address.Link != addr || shown.Address.AutoAccept || shown.Address.Created == "" {
		t.Errorf("address show --json: %+v", shown)
	}
	if r := owner.ok(t, "address"); firstLine(r.stdout) != addr {
		t.Errorf("address (show) printed %q first", firstLine(r.stdout))
	}
	mustFail(t, owner.run(t, "", "address", "create"), 1, "exists already")
	mustFail(t, owner.run(t, "", "address", "bogus"), 2, "unknown subcommand")

	r = rita.ok(t, "accept", addr, "--name", "owner", "--show", "Rita")
	if !strings.Contains(r.stdout, "asked for a contact") {
		t.Errorf("accept of an address printed:\n%s", r.stdout)
	}
	sam.ok(t, "accept", addr, "--name", "owner", "--show", "Sam")
	anon.ok(t, "accept", addr, "--name", "owner")
	for _, u := range []*user{rita, sam, anon} {
		if got := u.states(t); got["owner"] != "invited" {
			t.Errorf("%s after the request: %v, want owner invited", u.name, got)
		}
	}

	evs := owner.receiveRequests(t, 3)
	ids := map[string]string{} // shown name -> request ID
	for _, ev := range evs {
		if _, dup := ids[ev.Name]; dup || ev.Request == "" {
			t.Fatalf("request events %+v", evs)
		}
		ids[ev.Name] = ev.Request
	}
	for _, name := range []string{"Rita", "Sam", ""} {
		if ids[name] == "" {
			t.Fatalf("no request showing %q: %+v", name, evs)
		}
	}
	var list struct {
		Requests []struct {
			ID, Name, Received string
		} `json:"requests"`
	}
	jsonLine(t, owner.ok(t, "--json", "requests").stdout, &list)
	if len(list.Requests) != 3 {
		t.Fatalf("requests --json: %+v", list)
	}
	for _, rq := range list.Requests {
		if ids[rq.Name] != rq.ID || rq.Received == "" {
			t.Errorf("request %+v does not match its event", rq)
		}
	}
	if r := owner.ok(t, "requests"); !strings.Contains(r.stdout, ids["Rita"]) || !strings.Contains(r.stdout, "(no name)") {
		t.Errorf("requests printed:\n%s", r.stdout)
	}

	r = owner.ok(t, "requests", "accept", ids["Rita"])
	if !strings.Contains(r.stdout, "contact Rita is joining") {
		t.Errorf("requests accept printed:\n%s", r.stdout)
	}
	owner.ok(t, "requests", "reject", ids[""])
	owner.ok(t, "requests", "accept", ids["Sam"], "--name", "samuel")
	mustFail(t, owner.run(t, "", "requests", "reject", ids[""]), 1, "no such request")
	mustFail(t, owner.run(t, "", "requests", "accept", "00000000"), 1, "no such request")
	if r := owner.ok(t, "requests", "list"); !strings.Contains(r.stdout, "no contact requests") {
		t.Errorf("requests after answering all:\n%s", r.stdout)
	}

	rita.receiveUntil(t, "owner connected")
	sam.receiveUntil(t, "owner connected")
	owner.receiveUntil(t, "Rita connected", "samuel connected")
	owner.ok(t, "send", "Rita", "welcome Rita")
	rita.receiveUntil(t, "owner: welcome Rita\n")
	sam.ok(t, "send", "owner", "thanks")
	owner.receiveUntil(t, "samuel: thanks\n")
	if got := anon.states(t); got["owner"] != "invited" {
		t.Errorf("the rejected requester: %v, want owner still invited", got)
	}
	if got := owner.states(t); len(got) != 2 {
		t.Errorf("the owner's contacts: %v, want Rita and samuel", got)
	}

	r = owner.ok(t, "address", "delete")
	if !strings.Contains(r.stdout, "deleted") {
		t.Errorf("address delete printed:\n%s", r.stdout)
	}
	mustFail(t, owner.run(t, "", "address", "show"), 1, "no contact address")
	mustFail(t, late.run(t, "", "accept", addr, "--show", "Late"), 1, "deleted by its owner")
	if got := late.states(t); len(got) != 0 {
		t.Errorf("a refused request left contacts %v", got)
	}

	// Auto-accept: on for a new address, the request connects by itself.
	addr = firstLine(owner.ok(t, "address", "create").stdout)
	owner.ok(t, "address", "auto-accept", "on")
	jsonLine(t, owner.ok(t, "--json", "address", "show").stdout, &shown)
	if !shown.Address.AutoAccept {
		t.Errorf("auto-accept on: address shows %+v", shown)
	}
	mustFail(t, owner.run(t, "", "address", "auto-accept", "maybe"), 2, "neither on nor off")
	late.ok(t, "accept", addr, "--name", "owner", "--show", "Late")
	owner.receiveUntil(t, "contact request")
	// An acceptance that the end of a receive cut short is tried again by
	// the next one.
	if !untilBound(func() bool {
		if strings.Contains(owner.ok(t, "requests").stdout, "no contact requests") {
			return true
		}
		owner.ok(t, "receive", "--wait", "1s")
		return false
	}) {
		t.Fatalf("auto-accept left the request waiting after %v of runs of receive", receiveBound)
	}
	late.receiveUntil(t, "owner connected")
	owner.receiveUntil(t, "Late connected")
}

// TestShortLinkTamperedCLI: link data changed in the relay's store is
// refused by accept, for an invitation and for an address, and makes no
// contact.
func TestShortLinkTamperedCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	p := runRelay(t, dir)
	us := newUsers(t, []queue.Address{p.Addr}, "a", "b")
	a, b := us[0], us[1]
	short := firstLine(a.ok(t, "invite", "--short", "--name", "b").stdout)
	addr := firstLine(a.ok(t, "address", "create").stdout)
	p.Terminate()
	if n := relaytest.TamperLinks(t, filepath.Join(dir, "relay.db")); n != 2 {
		t.Fatalf("tampered with %d link data, want 2", n)
	}
	p.Restart()
	mustFail(t, b.run(t, "", "accept", short), 1, "does not match the link")
	mustFail(t, b.run(t, "", "accept", addr, "--show", "b"), 1, "does not match the link")
	if got := b.states(t); len(got) != 0 {
		t.Errorf("tampered links made contacts: %v", got)
	}
}

// TestShortLinkQRFits: the QR code of the longest short links, a relay
// with an onion host and a five-digit port or a long DNS name, fits an
// 80-column terminal.
func TestShortLinkQRFits(t *testing.T) {
	for _, s := range []string{
		"hush://Vkdap1RjR0wChd9dvyvKtz2mUTWIOem3dIGy6rEHcIw@abcdefg2abcdefg3abcdefg4abcdefg5abcdefg6abcdefg7abcdefgh.onion:65535/a#QEFCQ0RFRkdISUpLTE1OTw",
		"hush://Vkdap1RjR0wChd9dvyvKtz2mUTWIOem3dIGy6rEHcIw@a-rather-long-relay-host-name.relays.example.com:65535/i#QEFCQ0RFRkdISUpLTE1OTw",
	} {
		if _, err := queue.ParseShortLink(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		var b strings.Builder
		printQR(&b, s)
		cols, rows := qrSize(b.String())
		t.Logf("%d characters: QR code %d columns by %d lines", len(s), cols, rows)
		if cols > 80 || rows == 0 {
			t.Errorf("a short link of %d characters: QR code %d columns wide, want at most 80", len(s), cols)
		}
	}
}
