package client_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

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

// TestStoreScanFindsNoPlaintextAndOnlyPaddedSizes runs a conversation
// whose last three messages ("hi", 9,000 characters, and the longest text,
// of characters JSON could escape) wait as events in the recipient's
// store, then reads both stores' files: every value has a size class of
// the vault (16 KiB, or a power of two above; index entries 77 bytes), the
// three events have the same size, and no text, contact name or relay address is anywhere in the
// files.
func TestStoreScanFindsNoPlaintextAndOnlyPaddedSizes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := startRelay(t), startRelay(t)
	alice, bob := newPerson(t, r1, r2), newPerson(t, r1, r2)
	const bobName, aliceName = "bob-the-distinct-name", "alice-the-distinct-name"
	connectAs(ctx, t, alice, bob, bobName, aliceName)
	if _, err := alice.c.Send(ctx, bobName, "hi"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("the falcon flies at midnight ", 400)[:9000]
	if _, err := alice.c.Send(ctx, bobName, long); err != nil {
		t.Fatal(err)
	}
	last, err := alice.c.Send(ctx, bobName, strings.Repeat("<&>", client.MaxTextSize/3))
	if err != nil {
		t.Fatal(err)
	}
	for {
		seq, err := client.ReceivedSeq(bob.c, aliceName)
		if err != nil {
			t.Fatal(err)
		}
		if seq == last {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bob received up to seq %d, want %d", seq, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
	alice.c.Close()
	bob.c.Close()

	secrets := []string{"falcon flies", bobName, aliceName, r1.addr.String(), r2.addr.String(),
		r1.addr.HostPort(), r2.addr.HostPort()}
	for who, home := range map[string]string{"alice": alice.home, "bob": bob.home} {
		path := filepath.Join(home, "hush.db")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("%s's store holds %q in clear", who, s)
			}
		}
		sizes := storeSizes(t, path)
		for bucket, ns := range sizes {
			for _, n := range ns {
				// An ID of 16 bytes, or the hash kept for a receipt, padded to 32.
				index := (strings.HasPrefix(bucket, "index-") || bucket == "receipts") && n == 77
				if !index && (n < 16<<10 || n&(n-1) != 0) {
					t.Errorf("%s's store: a value of %d bytes in %q, not a size class", who, n, bucket)
				}
			}
		}
		t.Logf("%s's store: value sizes by bucket %v", who, sizes)
		if who == "bob" {
			if ev := sizes["events"]; len(ev) != 3 || ev[0] != ev[1] || ev[1] != ev[2] {
				t.Errorf("bob's events (\"hi\", 9,000 characters, the longest text): sizes %v, want three equal", ev)
			}
		}
	}
}

// storeSizes returns the sizes of the values in every bucket of the
// client store at path but the vault's header, read with bbolt.
func storeSizes(t *testing.T, path string) map[string][]int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sizes := map[string][]int{}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if string(name) == "header" {
				return nil
			}
			return b.ForEach(func(_, v []byte) error {
				sizes[string(name)] = append(sizes[string(name)], len(v))
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestInitMakesHomePrivate runs Init in an existing directory of mode
// 0755: afterwards only its owner can list or enter it.
func TestInitMakesHomePrivate(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := client.Init(home, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("home of mode %#o after Init, want 0700", fi.Mode().Perm())
	}
}
