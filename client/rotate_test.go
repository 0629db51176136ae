package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// inbox reads all of a person's events in the background and keeps what
// rotation tests count.
type inbox struct {
	mu       sync.Mutex
	msgs     map[string][]string // texts by contact, in order of arrival
	rotated  map[string]int      // EventRotated by contact
	problems []client.Event
	changed  chan struct{} // closed and replaced on every event
}

func newInbox(ctx context.Context, p *person) *inbox {
	in := &inbox{msgs: make(map[string][]string), rotated: make(map[string]int), changed: make(chan struct{})}
	events := p.c.Events()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-events:
				in.mu.Lock()
				switch ev.Kind {
				case client.EventMessage:
					in.msgs[ev.Contact] = append(in.msgs[ev.Contact], ev.Text)
				case client.EventRotated:
					in.rotated[ev.Contact]++
				case client.EventProblem:
					in.problems = append(in.problems, ev)
				}
				close(in.changed)
				in.changed = make(chan struct{})
				in.mu.Unlock()
			}
		}
	}()
	return in
}

// wait waits until cond, called under the lock, holds.
func (in *inbox) wait(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		in.mu.Lock()
		ok, ch := cond(), in.changed
		in.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			in.mu.Lock()
			defer in.mu.Unlock()
			t.Fatalf("waiting for %s: %v (received %d, rotated %v, problems %v)", what, ctx.Err(), len(in.msgs), in.rotated, in.problems)
		}
	}
}

// waitRotationDone waits until p's contact name has no rotation under
// way (the old queue is deleted), polling Contacts.
func waitRotationDone(ctx context.Context, t *testing.T, p *person, name string) client.Contact {
	t.Helper()
	for {
		cs, err := p.c.Contacts()
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range cs {
			if ct.Name == name && ct.Rotation == client.RotationNone {
				return ct
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rotation of %s: %v (%+v)", name, ctx.Err(), cs)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rotationOf returns the rotation state of p's contact name.
func rotationOf(t *testing.T, p *person, name string) client.RotationState {
	t.Helper()
	cs, err := p.c.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cs {
		if ct.Name == name {
			return ct.Rotation
		}
	}
	t.Fatalf("no contact %q", name)
	return ""
}

// queueGone checks, through a connection of its own, that the relay at
// addr no longer has the queue q: SUB with its key is answered AUTH.
func queueGone(ctx context.Context, t *testing.T, addr queue.Address, dial link.Config, q link.Queue) {
	t.Helper()
	conn, err := link.Dial(ctx, addr, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Subscribe(ctx, q); !errors.Is(err, queue.AUTH) {
		t.Fatalf("SUB of the old queue on its relay: %v, want AUTH (the queue deleted)", err)
	}
}

// TestRotate rotates both contacts' receiving queues on in-process
// relays, one after the other: each moves to a relay of its own, added
// for it, messages before, during and after arrive exactly once and in
// order, and the old queues are gone from their relays.
func TestRotate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, r2, r3, r4 := startRelay(t), startRelay(t), startRelay(t), startRelay(t)
	a, b := newPerson(t, r1), newPerson(t, r2)
	connect(ctx, t, a, b)
	if err := a.c.AddRelay(r3.addr); err != nil {
		t.Fatal(err)
	}
	if err := b.c.AddRelay(r4.addr); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ia, ib := newInbox(ctx, a), newInbox(ctx, b)
	oldA, qa, err := client.RecvQueue(a.c, "b")
	if err != nil {
		t.Fatal(err)
	}
	oldB, qb, err := client.RecvQueue(b.c, "a")
	if err != nil {
		t.Fatal(err)
	}
	var toA, toB []string
	send := func(n int) {
		for i := range n {
			s := fmt.Sprintf("to b %d", len(toB)+i)
			if _, err := a.c.Send(ctx, "b", s); err != nil {
				t.Fatal(err)
			}
			toB = append(toB, s)
			s = fmt.Sprintf("to a %d", len(toA)+i)
			if _, err := b.c.Send(ctx, "a", s); err != nil {
				t.Fatal(err)
			}
			toA = append(toA, s)
		}
	}
	send(3)
	if err := a.c.Rotate(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Rotate(ctx, "b"); !errors.Is(err, client.ErrRotating) {
		t.Fatalf("a second Rotate: %v, want ErrRotating", err)
	}
	send(3)
	ia.wait(ctx, t, "a's rotation", func() bool { return ia.rotated["b"] == 1 })
	t.Logf("a rotated after %v", time.Since(start))
	send(3)
	if err := b.c.Rotate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	send(3)
	ib.wait(ctx, t, "b's rotation", func() bool { return ib.rotated["a"] == 1 })
	t.Logf("b rotated after %v", time.Since(start))
	send(3)
	ia.wait(ctx, t, "a's messages", func() bool { return len(ia.msgs["b"]) >= len(toA) })
	ib.wait(ctx, t, "b's messages", func() bool { return len(ib.msgs["a"]) >= len(toB) })
	ca, cb := waitRotationDone(ctx, t, a, "b"), waitRotationDone(ctx, t, b, "a")
	t.Logf("old queues deleted after %v", time.Since(start))
	if ca.ReceiveRelay.Fingerprint != r3.addr.Fingerprint || cb.ReceiveRelay.Fingerprint != r4.addr.Fingerprint {
		t.Fatalf("after the rotations a receives on %v, b on %v, want %v and %v", ca.ReceiveRelay, cb.ReceiveRelay, r3.addr, r4.addr)
	}
	if ca.SendRelay.Fingerprint != r4.addr.Fingerprint || cb.SendRelay.Fingerprint != r3.addr.Fingerprint {
		t.Fatalf("after the rotations a sends to %v, b to %v, want %v and %v", ca.SendRelay, cb.SendRelay, r4.addr, r3.addr)
	}
	ia.mu.Lock()
	gotA, probA := slices.Clone(ia.msgs["b"]), ia.problems
	ia.mu.Unlock()
	ib.mu.Lock()
	gotB, probB := slices.Clone(ib.msgs["a"]), ib.problems
	ib.mu.Unlock()
	if !slices.Equal(gotA, toA) || !slices.Equal(gotB, toB) {
		t.Fatalf("a received %q, want %q; b received %q, want %q", gotA, toA, gotB, toB)
	}
	if len(probA)+len(probB) != 0 {
		t.Fatalf("problems: %v %v", probA, probB)
	}
	queueGone(ctx, t, oldA, link.Config{}, qa)
	queueGone(ctx, t, oldB, link.Config{}, qb)
}

// TestRotateUnderTrafficRelayKilled is the rotation test under traffic
// in both directions, over QUIC and over TCP: two clients exchange
// messages both ways without pause while both rotate their receiving
// queues to a relay of their own, added for it, and the relay of a's old
// queue and then a's new relay are killed with SIGKILL in the middle and
// restarted. Every
// message is received exactly once and in order (counted), no problem is
// reported but copies a sender resent after a kill (duplicates, not
// shown), both rotations complete, and the old queues are gone from
// the old relays (SUB with their keys is answered AUTH).
func TestRotateUnderTrafficRelayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills hush-relay processes")
	}
	const perSide = 60
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			r1, r2 := relaytest.Start(t, t.TempDir()), relaytest.Start(t, t.TempDir())
			r3, r4 := relaytest.Start(t, t.TempDir()), relaytest.Start(t, t.TempDir())
			dial := link.Config{Transport: tr}
			a := newPersonWith(t, dial, r1.Addr)
			b := newPersonWith(t, dial, r2.Addr)
			connect(ctx, t, a, b)
			if err := a.c.AddRelay(r3.Addr); err != nil {
				t.Fatal(err)
			}
			if err := b.c.AddRelay(r4.Addr); err != nil {
				t.Fatal(err)
			}
			ia, ib := newInbox(ctx, a), newInbox(ctx, b)
			oldA, qa, err := client.RecvQueue(a.c, "b")
			if err != nil {
				t.Fatal(err)
			}
			oldB, qb, err := client.RecvQueue(b.c, "a")
			if err != nil {
				t.Fatal(err)
			}

			// Traffic both ways, without pause, until perSide each.
			var wg sync.WaitGroup
			progress := make(chan int, 2*perSide)
			for _, s := range []struct {
				from *person
				to   string
			}{{a, "b"}, {b, "a"}} {
				wg.Go(func() {
					for i := range perSide {
						if _, err := s.from.c.Send(ctx, s.to, fmt.Sprintf("to %s %d", s.to, i)); err != nil {
							t.Error(err)
							return
						}
						progress <- i
						time.Sleep(20 * time.Millisecond)
					}
				})
			}
			for range perSide / 2 { // a quarter of the traffic first
				<-progress
			}
			// a's old relay dies with messages for a on it, and stays down
			// while both rotations start: b's QKEY to a waits for it.
			r1.Kill()
			if err := a.c.Rotate(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if err := b.c.Rotate(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if st := rotationOf(t, a, "b"); st != client.RotationAdding {
				t.Fatalf("a's rotation with its old relay down: %q, want %q", st, client.RotationAdding)
			}
			r1.Restart()
			// Then a's new relay dies once a has told b to switch to it.
			for st := rotationOf(t, a, "b"); st == client.RotationAdding || st == client.RotationSecuring; st = rotationOf(t, a, "b") {
				select {
				case <-ctx.Done():
					t.Fatalf("a's rotation stays %q", st)
				case <-time.After(10 * time.Millisecond):
				}
			}
			r3.Kill()
			t.Logf("a's new relay killed with a's rotation %q", rotationOf(t, a, "b"))
			time.Sleep(time.Second)
			r3.Restart()
			wg.Wait()

			want := func(to string) []string {
				var w []string
				for i := range perSide {
					w = append(w, fmt.Sprintf("to %s %d", to, i))
				}
				return w
			}
			ia.wait(ctx, t, "a's messages", func() bool { return len(ia.msgs["b"]) >= perSide })
			ib.wait(ctx, t, "b's messages", func() bool { return len(ib.msgs["a"]) >= perSide })
			ia.wait(ctx, t, "a's rotation", func() bool { return ia.rotated["b"] == 1 })
			ib.wait(ctx, t, "b's rotation", func() bool { return ib.rotated["a"] == 1 })
			ca, cb := waitRotationDone(ctx, t, a, "b"), waitRotationDone(ctx, t, b, "a")
			// One more message each way after the rotations: anything
			// delivered twice would be counted before it.
			if _, err := a.c.Send(ctx, "b", "last"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.c.Send(ctx, "a", "last"); err != nil {
				t.Fatal(err)
			}
			ia.wait(ctx, t, "a's last message", func() bool { return slices.Contains(ia.msgs["b"], "last") })
			ib.wait(ctx, t, "b's last message", func() bool { return slices.Contains(ib.msgs["a"], "last") })

			ia.mu.Lock()
			gotA, probA := slices.Clone(ia.msgs["b"]), slices.Clone(ia.problems)
			ia.mu.Unlock()
			ib.mu.Lock()
			gotB, probB := slices.Clone(ib.msgs["a"]), slices.Clone(ib.problems)
			ib.mu.Unlock()
			if w := append(want("a"), "last"); !slices.Equal(gotA, w) {
				t.Fatalf("a received %d messages %q, want %d in order", len(gotA), gotA, len(w))
			}
			if w := append(want("b"), "last"); !slices.Equal(gotB, w) {
				t.Fatalf("b received %d messages %q, want %d in order", len(gotB), gotB, len(w))
			}
			// A relay killed after it stored a message but before its OK
			// reached the sender makes the sender send it again: the copy
			// is reported as a duplicate and not shown (PROTOCOL.md 19.7).
			// Nothing else may be reported.
			dups := 0
			for _, ev := range append(probA, probB...) {
				if !errors.Is(ev.Problem, client.ErrDuplicate) {
					t.Fatalf("problem reported to %s: %v (a %v, b %v)", ev.Contact, ev.Problem, probA, probB)
				}
				dups++
			}
			if ca.ReceiveRelay.Fingerprint != r3.Addr.Fingerprint || cb.ReceiveRelay.Fingerprint != r4.Addr.Fingerprint {
				t.Fatalf("after the rotations a receives on %v, b on %v, want %v and %v", ca.ReceiveRelay, cb.ReceiveRelay, r3.Addr, r4.Addr)
			}
			queueGone(ctx, t, oldA, dial, qa)
			queueGone(ctx, t, oldB, dial, qb)
			t.Logf("%s: %d messages each way received once and in order; both queues rotated to new relays; old queues deleted; %d copies resent after a kill reported as duplicates", tr, perSide+1, dups)
		})
	}
}

// TestRotateHoldsNewQueueUntilOldDrained is the conformance test of step
// 5 of PROTOCOL.md section 19.11: the sender queued three texts for the
// old queue before it switched, and its QTEST and a fourth text went to
// the new queue; the recipient comes online with the old queue's relay
// down, so the new queue delivers first. It must hold them (nothing
// shown, the rotation not complete) until the old relay is back, and then
// show the four texts once each, in order, with no problem reported. Both
// clients are closed and opened again between the steps, which resume.
func TestRotateHoldsNewQueueUntilOldDrained(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, b := newPerson(t, r1), newPerson(t, r2)
	connect(ctx, t, a, b)
	if err := a.c.AddRelay(r3.addr); err != nil {
		t.Fatal(err)
	}
	// Each step waits for the one before with the other side offline,
	// so that b cannot read QUSE before it queues the three texts below:
	// had it read QUSE, it would send them to the new queue, which is
	// right but not what this test is about.
	b.c.Close()
	if err := a.c.Rotate(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, a) // QADD is on b's queue
	a.c.Close()
	held := r1.r.Status(ctx).Messages
	b.open() // b reads QADD and answers QKEY on a's old queue
	for r1.r.Status(ctx).Messages == held {
		select {
		case <-ctx.Done():
			t.Fatal("b did not answer QADD")
		case <-time.After(10 * time.Millisecond):
		}
	}
	flush(ctx, t, b)
	b.c.Close()
	a.open() // a reads QKEY, secures the new queue and sends QUSE
	for rotationOf(t, a, "b") != client.RotationSwitching {
		select {
		case <-ctx.Done():
			t.Fatalf("a's rotation stays %q", rotationOf(t, a, "b"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	flush(ctx, t, a) // QUSE is on b's queue
	a.c.Close()
	// b, offline, queues three texts: for the old queue (QUSE not read).
	off, err := client.Open(ctx, client.Config{Home: b.home, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := off.Send(ctx, "a", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	off.Close()
	// b online: sends them, reads QUSE, switches, sends QTEST and a
	// fourth text to the new queue.
	b.open()
	flush(ctx, t, b)
	var sent bool
	for !sent {
		_, send, err := client.ContactRelays(b.c, "a")
		if err != nil {
			t.Fatal(err)
		}
		sent = send == r3.addr.Fingerprint
		if !sent {
			select {
			case <-ctx.Done():
				t.Fatal("b did not switch to the new queue")
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if _, err := b.c.Send(ctx, "a", "3"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, b)
	// a comes online with the old queue's relay down.
	r1.stop()
	a.open()
	ia := newInbox(ctx, a)
	time.Sleep(2 * time.Second)
	ia.mu.Lock()
	early, probs := len(ia.msgs["b"]), len(ia.problems)
	ia.mu.Unlock()
	if early != 0 || probs != 0 {
		t.Fatalf("with the old queue's relay down a showed %d messages and %d problems, want none", early, probs)
	}
	if st := rotationOf(t, a, "b"); st != client.RotationSwitching {
		t.Fatalf("a's rotation with the old queue not drained: %q, want %q", st, client.RotationSwitching)
	}
	r1.start(r1.addr.HostPort())
	t.Cleanup(func() { r1.r.Close() })
	ia.wait(ctx, t, "the four texts", func() bool { return len(ia.msgs["b"]) >= 4 })
	waitRotationDone(ctx, t, a, "b")
	if _, err := b.c.Send(ctx, "a", "last"); err != nil {
		t.Fatal(err)
	}
	ia.wait(ctx, t, "the last text", func() bool { return slices.Contains(ia.msgs["b"], "last") })
	ia.mu.Lock()
	defer ia.mu.Unlock()
	if want := []string{"0", "1", "2", "3", "last"}; !slices.Equal(ia.msgs["b"], want) || len(ia.problems) != 0 {
		t.Fatalf("a received %q with problems %v, want %q and none", ia.msgs["b"], ia.problems, want)
	}
}

// TestRotateAbandoned starts a rotation that the contact never answers
// (b is closed): after half the handshake expiry (here 2 s of 4) the
// rotation is abandoned and reported (ErrRotationAbandoned), the old
// queue stays in use, and the new queue is deleted on its relay.
func TestRotateAbandoned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r1, r2, r3 := startRelay(t), startRelay(t), startRelay(t)
	a, b := newPerson(t, r1), newPerson(t, r2)
	connect(ctx, t, a, b)
	if err := a.c.AddRelay(r3.addr); err != nil {
		t.Fatal(err)
	}
	b.c.Close()
	a.c.Close()
	c, err := client.Open(ctx, client.Config{Home: a.home, HandshakeExpiry: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	before, _, err := client.RecvQueue(a.c, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.c.Rotate(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	ev := a.next(ctx, client.EventProblem)
	if !errors.Is(ev.Problem, client.ErrRotationAbandoned) {
		t.Fatalf("problem %v, want ErrRotationAbandoned", ev.Problem)
	}
	ct := waitRotationDone(ctx, t, a, "b")
	if ct.ReceiveRelay.Fingerprint != before.Fingerprint {
		t.Fatalf("a receives on %v after an abandoned rotation, want %v", ct.ReceiveRelay, before)
	}
	if st := r3.r.Status(ctx); st.Queues != 0 {
		t.Fatalf("the new queue's relay still holds %d queues", st.Queues)
	}
}
