package link

import (
	"bytes"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// TestCreateWithKeys: a queue created with keys made ahead of time is the
// caller's: it carries rkey, and a message sent to it opens with the
// message key agreed from dh, exactly once.
func TestCreateWithKeys(t *testing.T) {
	ctx := testContext(t)
	addr := startRelay(t, nil)
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
	rkey, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dh, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.CreateWithKeys(ctx, rkey, dh)
	if err != nil {
		t.Fatal(err)
	}
	if q.RecipientKey != rkey {
		t.Fatal("the queue does not carry the given authorization key")
	}
	sk, _ := queue.GenerateKey()
	if err := c.Secure(ctx, q, queue.PublicKey(sk)); err != nil {
		t.Fatal(err)
	}
	body := []byte("made ahead of time")
	if err := c.Send(ctx, q.SenderID, sk, body); err != nil {
		t.Fatal(err)
	}
	m, err := c.Get(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Body, body) {
		t.Fatalf("got %q, want %q", m.Body, body)
	}
	if err := c.Ack(ctx, q, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, q); err != ErrNoMessage {
		t.Fatalf("after the ack: %v, want ErrNoMessage", err)
	}
}
