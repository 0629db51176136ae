package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
)

// recorder reads a person's events and keeps what tests count.
type recorder struct {
	p    *person
	msgs []string // texts of EventMessage, in order
	down int      // EventRelayDown events
	up   int      // EventRelayUp events
	// firstMsg is when the first message after mark arrived.
	mark, firstMsg time.Time
}

// until reads events until cond holds or ctx ends.
func (r *recorder) until(ctx context.Context, what string, cond func() bool) {
	r.p.t.Helper()
	for !cond() {
		select {
		case ev := <-r.p.c.Events():
			switch ev.Kind {
			case client.EventMessage:
				r.msgs = append(r.msgs, ev.Text)
				if !r.mark.IsZero() && r.firstMsg.IsZero() {
					r.firstMsg = time.Now()
				}
			case client.EventRelayDown:
				r.down++
				if ev.Relay == "" || ev.Problem == nil {
					r.p.t.Errorf("relay down event without a relay or a reason: %+v", ev)
				}
			case client.EventRelayUp:
				r.up++
				if ev.Relay == "" {
					r.p.t.Errorf("relay up event without a relay: %+v", ev)
				}
			}
		case <-ctx.Done():
			r.p.t.Fatalf("waiting for %s: %v (messages %q, down %d, up %d)", what, ctx.Err(), r.msgs, r.down, r.up)
		}
	}
}

// TestRelayKilled kills the relay of a conversation with SIGKILL and
// restarts it on the same port, over QUIC, over TCP, and with QUIC first
// and TCP as the fallback (the default): twice after both clients noticed
// (EventRelayDown) and a second passed, and twice at once. Messages sent
// while it is down arrive exactly once and in order after the restart,
// and the clients report the relay down and back. It logs the time from
// each restart to the first message delivered.
func TestRelayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills hush-relay processes")
	}
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP, link.TransportAuto} {
		t.Run(tr.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r := relaytest.Start(t, t.TempDir())
			a := newPersonWith(t, link.Config{Transport: tr}, r.Addr)
			b := newPersonWith(t, link.Config{Transport: tr}, r.Addr)
			connect(ctx, t, a, b)
			ra, rb := &recorder{p: a}, &recorder{p: b}
			var sent []string
			for round, quick := range []bool{false, true, false, true} {
				r.Kill()
				for i := range 3 {
					text := fmt.Sprintf("round %d message %d", round, i)
					if _, err := a.c.Send(ctx, "b", text); err != nil {
						t.Fatal(err)
					}
					sent = append(sent, text)
				}
				if !quick {
					downA, downB := ra.down, rb.down
					ra.until(ctx, "a to notice", func() bool { return ra.down > downA })
					rb.until(ctx, "b to notice", func() bool { return rb.down > downB })
					time.Sleep(time.Second)
				}
				upA, upB := ra.up, rb.up
				r.Restart()
				rb.mark, rb.firstMsg = time.Now(), time.Time{}
				rb.until(ctx, "the messages", func() bool { return len(rb.msgs) >= len(sent) })
				t.Logf("%s, relay down %s: first message %v after the restart",
					tr, map[bool]string{false: "2 s and more", true: "briefly"}[quick], rb.firstMsg.Sub(rb.mark).Round(time.Millisecond))
				if !quick {
					ra.until(ctx, "a to see the relay back", func() bool { return ra.up > upA })
					rb.until(ctx, "b to see the relay back", func() bool { return rb.up > upB })
				}
			}
			// Exactly once, in order: a PING-like round trip (one more
			// message) follows anything delivered twice.
			if _, err := a.c.Send(ctx, "b", "last"); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, "last")
			rb.until(ctx, "the last message", func() bool { return slices.Contains(rb.msgs, "last") })
			if !slices.Equal(rb.msgs, sent) {
				t.Fatalf("b received %q, want %q", rb.msgs, sent)
			}
		})
	}
}

// TestQUICRelayDownNoticed kills the relay of an idle conversation over
// QUIC with SIGKILL and leaves it down: both clients report it
// (EventRelayDown) from the connection that went silent, before any new
// attempt to reach the relay failed, so the problem names link.ErrSilent
// (events are stored, and their problems come back as text).
// It logs how long each took; nothing times it.
func TestQUICRelayDownNoticed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills hush-relay processes")
	}
	r := relaytest.Start(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newPersonWith(t, link.Config{Transport: link.TransportQUIC}, r.Addr)
	b := newPersonWith(t, link.Config{Transport: link.TransportQUIC}, r.Addr)
	connect(ctx, t, a, b)
	if _, err := a.c.Send(ctx, "b", "hello"); err != nil {
		t.Fatal(err)
	}
	if ev := b.next(ctx, client.EventMessage); ev.Text != "hello" {
		t.Fatalf("b received %q", ev.Text)
	}
	time.Sleep(2 * time.Second) // idle: only keep-alives go
	r.Kill()
	start := time.Now()
	for _, p := range []*person{a, b} {
		ev := p.next(ctx, client.EventRelayDown)
		t.Logf("relay down after %v: %v", time.Since(start).Round(time.Millisecond), ev.Problem)
		if ev.Relay != r.Addr.HostPort() || ev.Problem == nil || !strings.Contains(ev.Problem.Error(), link.ErrSilent.Error()) {
			t.Fatalf("relay down event %+v, want relay %s and the problem %q", ev, r.Addr.HostPort(), link.ErrSilent)
		}
	}
}

// TestWrongFingerprintAtOnce has a relay address pin another identity: a
// command that needs the relay fails with link.ErrWrongFingerprint at
// once, not when its context ends (its error would then wrap the
// context's), over QUIC and over TCP.
func TestWrongFingerprintAtOnce(t *testing.T) {
	r := startRelay(t)
	wrong := r.addr
	wrong.Fingerprint[0] ^= 1
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		t.Run(string(tr), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			p := newPersonWith(t, link.Config{Transport: tr}, wrong)
			_, err := p.c.Invite(ctx, "")
			if !errors.Is(err, link.ErrWrongFingerprint) || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("invite: %v, want ErrWrongFingerprint at once", err)
			}
			t.Log(err)
		})
	}
}

// TestManyContactsDrain has a client open with 70 contacts on one relay,
// each of whose queues holds two messages (more than the 64 queues that
// stalled the client when its connection's reader waited for the
// application): all 140 arrive, each exactly once and in order per
// contact, and the relay is never reported down. It logs the drain time.
func TestManyContactsDrain(t *testing.T) {
	const n, per = 70, 2
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := startRelay(t)
	a, b := newPerson(t, r), newPerson(t, r)
	connectMany(ctx, t, a, b, n)
	for _, p := range []*person{a, b} {
		for range n {
			p.next(ctx, client.EventConnected)
		}
	}
	a.c.Close()
	for i := range n {
		for j := range per {
			if _, err := b.c.Send(ctx, fmt.Sprintf("a%d", i), fmt.Sprint(j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	flush(ctx, t, b)

	start := time.Now()
	a.open()
	got := make(map[string][]string)
	for total := 0; total < n*per; total++ {
		ev := a.next(ctx, client.EventMessage, client.EventProblem, client.EventRelayDown)
		if ev.Kind != client.EventMessage {
			t.Fatalf("%v: %v", ev.Kind, ev.Problem)
		}
		got[ev.Contact] = append(got[ev.Contact], ev.Text)
	}
	t.Logf("%d contacts, %d messages drained in %v", n, n*per, time.Since(start).Round(time.Millisecond))
	for i := range n {
		if c := fmt.Sprintf("b%d", i); !slices.Equal(got[c], []string{"0", "1"}) {
			t.Fatalf("from %s: %q, want [0 1]", c, got[c])
		}
	}
}
