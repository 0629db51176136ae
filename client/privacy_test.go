package client_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
)

// TestRelayCannotTellConfirmationFromMessage takes the SEND bodies of a
// joiner's confirmation and of a 9,000-character message from its outbox
// (they are sent unchanged) and checks that a relay sees the same size
// and the same clear bytes in both (version and sender key; then a random
// nonce and ciphertext). Sent afterwards, they connect the contact and
// deliver the message.
func TestRelayCannotTellConfirmationFromMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob := newPerson(t, r1, r2), newPerson(t, r1, r2)
	bob.c.Close()
	offline, err := client.Open(ctx, client.Config{Home: bob.home, Offline: true}) // nothing leaves the outbox
	if err != nil {
		t.Fatal(err)
	}
	defer offline.Close()
	link, err := alice.c.Invite(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offline.Accept(ctx, link, "a"); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 9000)
	if _, err := offline.Send(ctx, "a", text); err != nil {
		t.Fatal(err)
	}
	envs, err := client.OutboxEnvelopes(offline)
	if err != nil || len(envs) != 2 {
		t.Fatalf("%d envelopes in the outbox, want 2: %v", len(envs), err)
	}
	confirmation, message := envs[0], envs[1]
	if len(confirmation) != client.EnvelopeSize || len(message) != client.EnvelopeSize {
		t.Fatalf("sizes %d and %d, want %d", len(confirmation), len(message), client.EnvelopeSize)
	}
	n := client.EnvelopeClearSize
	if !bytes.Equal(confirmation[:n], message[:n]) {
		t.Fatalf("the clear parts differ:\n%x\n%x", confirmation[:n], message[:n])
	}
	if bytes.Equal(confirmation[n:n+24], message[n:n+24]) {
		t.Fatal("the two envelopes have the same nonce")
	}

	offline.Close()
	bob.open()
	alice.next(ctx, client.EventConnected)
	bob.next(ctx, client.EventConnected)
	expectMessage(ctx, t, alice, "b", text)
}
