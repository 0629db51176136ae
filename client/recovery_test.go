package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// restarts it on the same port, over QUIC and over TCP: once after both
// clients noticed (EventRelayDown) and a second passed, and once at
// once. Messages sent while it is down arrive exactly once and in order
// after the restart, and the clients report the relay down and back. It
// logs the time from each restart to the first message delivered.
func TestRelayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills hush-relay processes")
	}
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		t.Run(string(tr), func(t *testing.T) {
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
