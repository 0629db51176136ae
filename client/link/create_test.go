package link

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
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

// TestAuthKeyCache: a connection caches a queue's authorization by the
// key object it was given and by the public key: commands authorized by
// the same key, whether the same object or the key parsed again, succeed
// every time, and another key's SEND still gets AUTH after them.
func TestAuthKeyCache(t *testing.T) {
	ctx := testContext(t)
	addr := startRelay(t, nil)
	c := dialPeer(t, ctx, addr, Config{Transport: TransportTCP})
	q, sk := securedQueue(t, ctx, c)
	again, err := queue.ParsePrivateKey(sk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := queue.GenerateKey()
	for i, k := range []*ecdh.PrivateKey{sk, again, sk, again} {
		if err := c.Send(ctx, q.SenderID, k, []byte{byte(i)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if err := c.Send(ctx, q.SenderID, other, []byte{byte(i)}); !errors.Is(err, queue.AUTH) {
			t.Fatalf("send %d with another key: %v, want AUTH", i, err)
		}
	}
	for i := range 4 {
		m, err := c.Get(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Body, []byte{byte(i)}) {
			t.Fatalf("message %d: %v", i, m.Body)
		}
		if err := c.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, q); err != ErrNoMessage {
		t.Fatalf("after the acks: %v, want ErrNoMessage", err)
	}
}

// securedQueue creates a queue on c and secures it with a new sender key,
// which it returns with it.
func securedQueue(tb testing.TB, ctx context.Context, c *Conn) (Queue, *ecdh.PrivateKey) {
	tb.Helper()
	q, err := c.Create(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	sk, err := queue.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Secure(ctx, q, queue.PublicKey(sk)); err != nil {
		tb.Fatal(err)
	}
	return q, sk
}
