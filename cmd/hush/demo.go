package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// demoTimeout bounds the whole of "hush demo".
const demoTimeout = 60 * time.Second

// demoEvent is an event of one of the demo's clients.
type demoEvent struct {
	who string
	ev  client.Event
}

// demo is "hush demo": two relays and two clients, alice and bob, in this
// process on 127.0.0.1, with temporary stores removed at the end.
func (c *cmd) demo(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	start := time.Now()
	step := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		elapsed := time.Since(start)
		if c.json {
			c.emit(map[string]any{"ms": elapsed.Milliseconds(), "step": msg})
			return
		}
		fmt.Fprintf(c.env.stdout, "[%8s] %s\n", elapsed.Round(time.Millisecond), msg)
	}

	tmp, err := os.MkdirTemp("", "hush-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Two relays, each with a fresh identity.
	var addrs []queue.Address
	for i := 1; i <= 2; i++ {
		addr, r, err := startDemoRelay(filepath.Join(tmp, fmt.Sprintf("relay%d.db", i)))
		if err != nil {
			return fmt.Errorf("starting relay %d: %w", i, err)
		}
		defer r.Close()
		addrs = append(addrs, addr)
		step("relay %d listening: %s", i, addr)
	}

	// Two clients, each knowing both relays. Their events are merged into
	// one channel until the end.
	merged := make(chan demoEvent)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait() // runs after close(done), after the clients closed
	defer close(done)
	open := func(who string, relays []queue.Address) (*client.Client, error) {
		home := filepath.Join(tmp, who)
		if err := client.Init(home, nil); err != nil {
			return nil, err
		}
		cl, err := client.Open(ctx, client.Config{
			Home:   home,
			Dial:   link.Config{Transport: link.Transport(c.transport)},
			Logger: c.logger(),
		})
		if err != nil {
			return nil, err
		}
		for _, a := range relays {
			if err := cl.AddRelay(a); err != nil {
				cl.Close()
				return nil, err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			events := cl.Events()
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						return
					}
					select {
					case merged <- demoEvent{who, ev}:
					case <-done:
						return
					}
				case <-done:
					return
				}
			}
		}()
		return cl, nil
	}
	alice, err := open("alice", addrs)
	if err != nil {
		return fmt.Errorf("alice: %w", err)
	}
	defer alice.Close()
	bob, err := open("bob", addrs)
	if err != nil {
		return fmt.Errorf("bob: %w", err)
	}
	defer bob.Close()
	step("alice and bob: new stores under %s, both relays added", tmp)

	// wait prints the events until one satisfies want.
	wait := func(what string, want func(demoEvent) bool) error {
		for {
			select {
			case e := <-merged:
				switch e.ev.Kind {
				case client.EventConnected:
					step("%s: %s connected", e.who, e.ev.Contact)
				case client.EventSent:
					step("%s: message %d to %s taken by the relay", e.who, e.ev.Seq, e.ev.Contact)
				case client.EventMessage:
					step("%s: message %d from %s: %q", e.who, e.ev.Seq, e.ev.Contact, e.ev.Text)
				case client.EventProblem:
					step("%s: problem with %s: %v", e.who, e.ev.Contact, e.ev.Problem)
				}
				if want(e) {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
			}
		}
	}

	link, err := alice.Invite(ctx, "bob")
	if err != nil {
		return fmt.Errorf("alice invites: %w", err)
	}
	short := link
	if len(short) > 60 {
		short = short[:60] + "…"
	}
	step("alice invites bob: a one-time link of %d characters, %s", len(link), short)
	ct, err := bob.Accept(ctx, link, "alice")
	if err != nil {
		return fmt.Errorf("bob accepts: %w", err)
	}
	step("bob accepts the invitation: alice is %s", ct.State)

	connected := map[string]bool{}
	err = wait("both sides to connect", func(e demoEvent) bool {
		if e.ev.Kind == client.EventConnected {
			connected[e.who] = true
		}
		return connected["alice"] && connected["bob"]
	})
	if err != nil {
		return err
	}

	for _, m := range []struct {
		from, to string
		cl       *client.Client
		text     string
	}{
		{"alice", "bob", alice, "hello bob"},
		{"bob", "alice", bob, "hello alice"},
	} {
		seq, err := m.cl.Send(ctx, m.to, m.text)
		if err != nil {
			return fmt.Errorf("%s sends: %w", m.from, err)
		}
		step("%s sends message %d to %s: %q", m.from, seq, m.to, m.text)
		err = wait(m.to+" to receive the message", func(e demoEvent) bool {
			return e.who == m.to && e.ev.Kind == client.EventMessage && e.ev.Contact == m.from && e.ev.Text == m.text
		})
		if err != nil {
			return err
		}
	}

	for _, x := range []struct {
		who string
		cl  *client.Client
	}{{"alice", alice}, {"bob", bob}} {
		list, err := x.cl.Contacts()
		if err != nil {
			return err
		}
		for _, ct := range list {
			how := "one relay per direction"
			if ct.SharedRelay {
				how = "both directions on one relay"
			}
			step("%s's contact %s: %s, %s", x.who, ct.Name, ct.State, how)
		}
	}
	step("done: everything was encrypted end to end; the temporary stores are removed")
	return nil
}

// startDemoRelay starts a relay on 127.0.0.1 with a fresh identity and
// its store at path, and returns its address.
func startDemoRelay(path string) (queue.Address, *relay.Relay, error) {
	_, identity, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return queue.Address{}, nil, err
	}
	cert, err := relay.IssueCertificate(identity, 0)
	if err != nil {
		return queue.Address{}, nil, err
	}
	fp, err := relay.CertificateFingerprint(cert)
	if err != nil {
		return queue.Address{}, nil, err
	}
	r, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Certificate: cert, StorePath: path})
	if err != nil {
		return queue.Address{}, nil, err
	}
	tcp, ok := r.Addr().(*net.TCPAddr)
	if !ok {
		r.Close()
		return queue.Address{}, nil, errors.New("the relay listens on no TCP address")
	}
	return queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: uint16(tcp.Port)}, r, nil
}
