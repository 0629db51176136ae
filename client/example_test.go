package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// exampleRelay starts a relay on loopback for the example and returns its
// address. A real application gets addresses from relay operators
// (hush-relay prints them).
func exampleRelay(dir string) (*relay.Relay, queue.Address) {
	os.MkdirAll(dir, 0o700)
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := relay.IssueCertificate(id, 0)
	if err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Certificate: cert, StorePath: filepath.Join(dir, "relay.db")})
	if err != nil {
		log.Fatal(err)
	}
	fp, _ := relay.CertificateFingerprint(cert)
	return r, queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: uint16(r.Addr().(*net.TCPAddr).Port)}
}

// A bot and a person become contacts through an invitation link and
// exchange a message each way.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "hush-example")
	defer os.RemoveAll(dir)
	r1, addr1 := exampleRelay(filepath.Join(dir, "r1"))
	defer r1.Close()
	r2, addr2 := exampleRelay(filepath.Join(dir, "r2"))
	defer r2.Close()

	open := func(name string) *client.Client {
		home := filepath.Join(dir, name)
		if err := client.Init(home, nil); err != nil { // nil: a key file, no passphrase
			log.Fatal(err)
		}
		c, err := client.Open(ctx, client.Config{Home: home})
		if err != nil {
			log.Fatal(err)
		}
		c.AddRelay(addr1)
		c.AddRelay(addr2)
		return c
	}
	bot, person := open("bot"), open("person")
	defer bot.Close()
	defer person.Close()

	link, err := bot.Invite(ctx, "person") // give the link to the person
	if err != nil {
		log.Fatal(err)
	}
	if _, err := person.Accept(ctx, link, "bot"); err != nil {
		log.Fatal(err)
	}
	// wait returns the next event of kind k.
	wait := func(c *client.Client, k client.EventKind) client.Event {
		for ev := range c.Events() {
			if ev.Kind == k {
				return ev
			}
		}
		panic("unreachable")
	}
	fmt.Println("bot:", wait(bot, client.EventConnected).Contact, "connected")
	fmt.Println("person:", wait(person, client.EventConnected).Contact, "connected")

	person.Send(ctx, "bot", "ping")
	ev := wait(bot, client.EventMessage)
	fmt.Printf("bot got %q from %s\n", ev.Text, ev.Contact)
	bot.Send(ctx, ev.Contact, "pong")
	ev = wait(person, client.EventMessage)
	fmt.Printf("person got %q from %s\n", ev.Text, ev.Contact)
	// Output:
	// bot: person connected
	// person: bot connected
	// bot got "ping" from person
	// person got "pong" from bot
}
