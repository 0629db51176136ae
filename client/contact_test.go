package client_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// testRelay is an in-process relay that can be restarted on its store.
type testRelay struct {
	t     testing.TB
	cert  ed25519.PrivateKey
	store string
	// password is what the relay needs to create queues; "" for none.
	password string
	r        *relay.Relay
	addr     queue.Address
}

func startRelay(t testing.TB) *testRelay {
	t.Helper()
	return startRelayWith(t, "")
}

// startRelayWith starts a relay that needs password to create queues
// ("" for none).
func startRelayWith(t testing.TB, password string) *testRelay {
	t.Helper()
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	tr := &testRelay{t: t, cert: id, store: filepath.Join(t.TempDir(), "relay.db"), password: password}
	tr.start("127.0.0.1:0")
	t.Cleanup(func() { tr.r.Close() })
	return tr
}

func (tr *testRelay) start(listen string) {
	tr.t.Helper()
	cert, err := relay.IssueCertificate(tr.cert, 0)
	if err != nil {
		tr.t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Listen: listen, Certificate: cert, StorePath: tr.store, Password: tr.password})
	if err != nil {
		tr.t.Fatal(err)
	}
	fp, _ := relay.CertificateFingerprint(cert)
	tr.r = r
	tr.addr = queue.Address{Fingerprint: fp, Password: tr.password, Host: "127.0.0.1", Port: uint16(r.Addr().(*net.TCPAddr).Port)}
}

// restart closes the relay and starts it again on the same store and port.
func (tr *testRelay) restart() {
	tr.t.Helper()
	tr.r.Close()
	tr.start(tr.addr.HostPort())
}

type person struct {
	t    testing.TB
	home string
	dial link.Config
	// newCircuits is client.Config.NewCircuits.
	newCircuits func() error
	c           *client.Client
}

func newPerson(t testing.TB, relays ...*testRelay) *person {
	t.Helper()
	var addrs []queue.Address
	for _, r := range relays {
		addrs = append(addrs, r.addr)
	}
	return newPersonWith(t, link.Config{}, addrs...)
}

// newPersonWith makes a person who reaches relays with dial and uses the
// relays at addrs.
func newPersonWith(t testing.TB, dial link.Config, addrs ...queue.Address) *person {
	t.Helper()
	p := &person{t: t, home: t.TempDir(), dial: dial}
	if err := client.Init(p.home, nil); err != nil {
		t.Fatal(err)
	}
	p.open()
	for _, a := range addrs {
		if err := p.c.AddRelay(a); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { p.c.Close() })
	return p
}

func (p *person) open() {
	p.t.Helper()
	c, err := client.Open(context.Background(), client.Config{Home: p.home, Dial: p.dial, NewCircuits: p.newCircuits})
	if err != nil {
		p.t.Fatal(err)
	}
	p.c = c
}

// next returns the next event of one of the kinds, skipping others.
func (p *person) next(ctx context.Context, kinds ...client.EventKind) client.Event {
	p.t.Helper()
	for {
		select {
		case ev := <-p.c.Events():
			for _, k := range kinds {
				if ev.Kind == k {
					return ev
				}
			}
		case <-ctx.Done():
			p.t.Fatalf("no %v event: %v", kinds, ctx.Err())
		}
	}
}

// connect makes a and b contacts ("b" in a's list, "a" in b's).
func connect(ctx context.Context, t *testing.T, a, b *person) {
	t.Helper()
	connectAs(ctx, t, a, b, "b", "a")
}

// connectedPair starts two relays, r1 and r2, and returns alice and bob,
// each using both, made contacts by connect ("b" in alice's list, "a" in
// bob's). Both outboxes are empty on return (Flush), so that a test may
// close and reopen either client: an envelope sent but not yet known sent
// at Close is sent again, and its copy reported as ErrDuplicate.
func connectedPair(ctx context.Context, t *testing.T) (alice, bob *person, r1, r2 *testRelay) {
	t.Helper()
	r1, r2 = startRelay(t), startRelay(t)
	alice, bob = newPerson(t, r1, r2), newPerson(t, r1, r2)
	connect(ctx, t, alice, bob)
	flush(ctx, t, alice, bob)
	return alice, bob, r1, r2
}

// flush waits until the outbox of each of ps is empty (client.Client.Flush:
// its relays accepted every queued envelope), failing t if one cannot be.
func flush(ctx context.Context, t testing.TB, ps ...*person) {
	t.Helper()
	for _, p := range ps {
		if err := p.c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// connectAs makes a and b contacts, b named bName in a's list and a named
// aName in b's: a invites, b accepts, and each sees the other connected
// (the next EventConnected of each names the new contact).
func connectAs(ctx context.Context, t *testing.T, a, b *person, bName, aName string) {
	t.Helper()
	link, err := a.c.Invite(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Accept(ctx, link, aName); err != nil {
		t.Fatal(err)
	}
	if ev := a.next(ctx, client.EventConnected); ev.Contact != bName {
		t.Fatalf("%s: connected %q, want %q", aName, ev.Contact, bName)
	}
	if ev := b.next(ctx, client.EventConnected); ev.Contact != aName {
		t.Fatalf("%s: connected %q, want %q", bName, ev.Contact, aName)
	}
}

// connectMany makes a and b contacts n times, 8 at a time: "b0".."b<n-1>"
// in a's list, "a0".."a<n-1>" in b's. It does not wait for them to be
// connected.
func connectMany(ctx context.Context, t *testing.T, a, b *person, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			link, err := a.c.Invite(ctx, fmt.Sprintf("b%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := b.c.Accept(ctx, link, fmt.Sprintf("a%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func expectMessage(ctx context.Context, t *testing.T, p *person, from, text string) client.Event {
	t.Helper()
	ev := p.next(ctx, client.EventMessage, client.EventProblem)
	if ev.Kind != client.EventMessage || ev.Contact != from || ev.Text != text {
		t.Fatalf("got %v from %q: %q (%v), want %q from %q", ev.Kind, ev.Contact, ev.Text, ev.Problem, text, from)
	}
	return ev
}

// expectMessagePastDuplicates is expectMessage after any number of
// ErrDuplicate reports from the same contact.
func expectMessagePastDuplicates(ctx context.Context, t *testing.T, p *person, from, text string) {
	t.Helper()
	for {
		ev := p.next(ctx, client.EventMessage, client.EventProblem)
		if ev.Kind == client.EventProblem && ev.Contact == from && errors.Is(ev.Problem, client.ErrDuplicate) {
			t.Logf("a copy from %q reported: %v", from, ev.Problem)
			continue
		}
		if ev.Kind != client.EventMessage || ev.Contact != from || ev.Text != text {
			t.Fatalf("got %v from %q: %q (%v), want %q from %q", ev.Kind, ev.Contact, ev.Text, ev.Problem, text, from)
		}
		return
	}
}

// expectProblem returns p's next message or problem event, failing unless
// it is a problem that is want (errors.Is).
func expectProblem(ctx context.Context, t *testing.T, p *person, want error) client.Event {
	t.Helper()
	ev := p.next(ctx, client.EventMessage, client.EventProblem)
	if ev.Kind != client.EventProblem || !errors.Is(ev.Problem, want) {
		t.Fatalf("got %v %q (%v), want the problem %v", ev.Kind, ev.Text, ev.Problem, want)
	}
	return ev
}

// tamper flips a bit inside the sealed part of the envelope env.
func tamper(env []byte) {
	env[len(env)-100] ^= 0x04
}

func TestContactsConverse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)

	for i := range 5 {
		if _, err := alice.c.Send(ctx, "b", fmt.Sprintf("hello bob %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		ev := expectMessage(ctx, t, bob, "a", fmt.Sprintf("hello bob %d", i))
		if ev.Seq != uint64(i+2) { // seq 1 was the confirmation
			t.Errorf("seq %d, want %d", ev.Seq, i+2)
		}
	}
	if _, err := bob.c.Send(ctx, "a", "hello alice"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, alice, "b", "hello alice")

	cs, err := alice.c.Contacts()
	if err != nil || len(cs) != 1 || cs[0].State != client.StateConnected || cs[0].Name != "b" {
		t.Fatalf("contacts %+v, %v", cs, err)
	}
	if cs[0].SharedRelay {
		t.Errorf("two relays configured, yet the contact shares one")
	}
}

func TestOfflineRecipientGetsMessagesLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)

	bob.c.Close()
	for i := range 3 {
		if _, err := alice.c.Send(ctx, "b", fmt.Sprintf("while you were away %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	flush(ctx, t, alice)
	bob.open()
	for i := range 3 {
		expectMessage(ctx, t, bob, "a", fmt.Sprintf("while you were away %d", i))
	}
}

func TestRelayRestartMidConversation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob, r1, r2 := connectedPair(ctx, t)
	if _, err := alice.c.Send(ctx, "b", "before"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "before")

	// The restart may cut off Bob's delivery receipt of "before" (or any
	// send) after the relay took it and before its OK: the client sends
	// it again, and the second copy is reported as ErrDuplicate, as
	// queue/PROTOCOL.md section 15 allows; nothing is lost or shown twice.
	r1.restart()
	r2.restart()
	if _, err := alice.c.Send(ctx, "b", "after"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Send(ctx, "a", "after too"); err != nil {
		t.Fatal(err)
	}
	expectMessagePastDuplicates(ctx, t, bob, "a", "after")
	expectMessagePastDuplicates(ctx, t, alice, "b", "after too")
}

func TestReusedLinkFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob, carol := newPerson(t, r1, r2), newPerson(t, r1, r2), newPerson(t, r1, r2)
	link, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.Accept(ctx, link, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.c.Accept(ctx, link, "a"); !errors.Is(err, client.ErrInvitationUsed) {
		t.Fatalf("second accept: %v, want ErrInvitationUsed", err)
	}
	if _, err := bob.c.Accept(ctx, "hush:/invite#AAAA", "x"); !errors.Is(err, client.ErrBadLink) {
		t.Fatalf("bad link: %v", err)
	}
	// The first acceptance still connects.
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
}

// TestTamperedLinkKeepsInvitation gives Accept changed and cut copies of a
// real link: each is refused with ErrBadLink alone, before any network
// use (a client with no relay says ErrBadLink, not ErrNoRelay), makes no
// contact, and leaves the invitation unused: the original link then
// connects and carries messages both ways.
func TestTamperedLinkKeepsInvitation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob, nobody := newPerson(t, r1, r2), newPerson(t, r1, r2), newPerson(t)
	link, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "hush:/invite#"
	var bad []string
	// One changed character in every part of the payload (address, queue
	// ID and key, ratchet keys, check), and cuts.
	for i := len(prefix); i < len(link); i += (len(link) - len(prefix)) / 16 {
		b := []byte(link)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		bad = append(bad, string(b))
	}
	bad = append(bad, link[:len(link)-1], link[:len(link)-30], link[:len(link)/2], link[1:])
	for _, l := range bad {
		for _, p := range []*person{bob, nobody} {
			_, err := p.c.Accept(ctx, l, "a")
			if !errors.Is(err, client.ErrBadLink) || err.Error() != client.ErrBadLink.Error() {
				t.Fatalf("Accept of a changed link: %v, want ErrBadLink alone", err)
			}
		}
	}
	if cs, err := bob.c.Contacts(); err != nil || len(cs) != 0 {
		t.Fatalf("refused links made contacts: %+v, %v", cs, err)
	}
	if _, err := nobody.c.Accept(ctx, link, "a"); !errors.Is(err, client.ErrNoRelay) {
		t.Fatalf("the whole link without a relay: %v, want ErrNoRelay", err)
	}

	if _, err := bob.c.Accept(ctx, link, "a"); err != nil {
		t.Fatalf("the original link after %d refused copies: %v", len(bad), err)
	}
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
	if _, err := bob.c.Send(ctx, "a", "after the typos"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, alice, "b", "after the typos")
	if _, err := alice.c.Send(ctx, "b", "got it"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "got it")
}

func TestSingleRelayShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1 := startRelay(t)
	alice, bob := newPerson(t, r1), newPerson(t, r1)
	link, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := bob.c.Accept(ctx, link, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !ct.SharedRelay {
		t.Fatalf("one relay, but SharedRelay is false")
	}
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
	if _, err := bob.c.Send(ctx, "a", "same relay"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, alice, "b", "same relay")
}

// TestTamperedMessageIsReported changes a message's sealed envelope after
// it was sealed, as a malicious relay or the network could, and checks
// that the recipient reports it instead of showing it or dropping it
// silently. (An honest relay refuses a change made to its store, which
// seals messages at rest: relay.TestStoreScanFindsNoAcknowledgedBody; so
// the change is made in the sender's outbox, before the message leaves.)
func TestTamperedMessageIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)
	alice.openWith(client.Config{Offline: true})
	seq, err := alice.c.Send(ctx, "b", "do not change me")
	if err != nil {
		t.Fatal(err)
	}
	n, err := client.ChangeOutbox(alice.c, func(s uint64, env []byte) []byte {
		if s == seq {
			tamper(env)
		}
		return env
	})
	if err != nil || n != 1 {
		t.Fatalf("changed %d outbox entries, want 1: %v", n, err)
	}
	alice.openWith(client.Config{})
	ev := expectProblem(ctx, t, bob, client.ErrTampered)
	t.Logf("reported: %v", ev.Problem)
	// The conversation goes on.
	if _, err := alice.c.Send(ctx, "b", "next"); err != nil {
		t.Fatal(err)
	}
	ev = bob.next(ctx, client.EventMessage, client.EventProblem)
	if ev.Kind == client.EventProblem && errors.Is(ev.Problem, client.ErrGap) {
		ev = bob.next(ctx, client.EventMessage, client.EventProblem)
	}
	if ev.Kind != client.EventMessage || ev.Text != "next" {
		t.Fatalf("after tampering: %v %q %v", ev.Kind, ev.Text, ev.Problem)
	}
}

// TestHelperSender is not a test: TestClientKilledDuringSend runs the test
// binary again with HUSH_TEST_SENDER_HOME set, to have a client process to
// kill. It sends numbered messages to "b" until it is killed, printing the
// number of each message once Send has returned (it is then stored).
func TestHelperSender(t *testing.T) {
	home := os.Getenv("HUSH_TEST_SENDER_HOME")
	if home == "" {
		t.Skip("helper process for TestClientKilledDuringSend")
	}
	c, err := client.Open(context.Background(), client.Config{Home: home})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		if _, err := c.Send(context.Background(), "b", fmt.Sprintf("message %d", i)); err != nil {
			fmt.Println("send:", err)
			os.Exit(1)
		}
		fmt.Printf("queued %d\n", i)
		time.Sleep(2 * time.Millisecond)
	}
}

// TestClientKilledDuringSend kills a client process with SIGKILL while it
// sends, reopens its store, and checks that every message Send had
// accepted reaches the recipient once, in order, with no gap.
func TestClientKilledDuringSend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob, _, _ := connectedPair(ctx, t)
	alice.c.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSender$")
	cmd.Env = append(os.Environ(), "HUSH_TEST_SENDER_HOME="+alice.home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	queued := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "queued %d", &n); err != nil {
			t.Fatalf("sender: %s", sc.Text())
		}
		queued = n
		if queued >= 60 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// Reopen the store: the outbox resumes.
	alice.open()
	flush(ctx, t, alice)
	next, dups := 0, 0
	for {
		var ev client.Event
		select {
		case ev = <-bob.c.Events():
		case <-time.After(3 * time.Second):
		}
		if ev.Kind == 0 {
			break
		}
		switch {
		case ev.Kind == client.EventMessage:
			if want := fmt.Sprintf("message %d", next); ev.Text != want {
				t.Fatalf("got %q, want %q", ev.Text, want)
			}
			next++
		case ev.Kind == client.EventProblem && errors.Is(ev.Problem, client.ErrDuplicate):
			dups++ // a message sent again after the crash: reported, not shown
		case ev.Kind == client.EventProblem:
			t.Fatalf("problem: %v", ev.Problem)
		}
	}
	t.Logf("Send returned for %d messages before the kill; %d delivered, each once, in order; %d duplicates reported", queued+1, next, dups)
	if next < queued+1 {
		t.Fatalf("delivered %d messages, but Send had accepted %d", next, queued+1)
	}
}
