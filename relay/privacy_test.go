package relay_test

// Privacy at rest: what the store file and its backups hold once data is
// acknowledged, expired or deleted (PROTOCOL.md section 17, docs/store.md).
// The tests scan the bytes of real files for the exact bytes the relay
// was given.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// secrets are byte strings that a file must, or must not, hold.
type secrets map[string][]byte

// found returns the names of the secrets that data holds, sorted.
func (s secrets) found(data []byte) []string {
	var names []string
	for name, b := range s {
		if bytes.Contains(data, b) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// privacyBody returns a random SEND body of n bytes.
func privacyBody(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// privacyData is what a privacy test leaves on a relay: messages still
// held, and messages and queues that are gone (acknowledged, or deleted
// with their queue).
type privacyData struct {
	kept       link.Queue // holds the live messages
	live, dead secrets    // bodies and IDs
}

// leavePrivacyData creates three queues on e: one keeps its messages, one
// has all of them received and acknowledged, one is deleted with its
// messages. Bodies are random, of a small and of the largest size.
func leavePrivacyData(t *testing.T, e *e2eRelay) privacyData {
	t.Helper()
	ctx := e2eContext(t)
	rc := e.dial(ctx, link.TransportTCP)
	d := privacyData{live: secrets{}, dead: secrets{}}
	sizes := []int{900, queue.MaxMessageSize, 2000}
	var acked, deleted link.Queue
	for qi, what := range []string{"kept", "acked", "deleted"} {
		q, sk := e2eSecuredQueue(t, ctx, rc)
		for i, n := range sizes {
			body := privacyBody(n)
			if err := rc.Send(ctx, q.SenderID, sk, body); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s body %d", what, i)
			if qi == 0 {
				d.live[name] = body
			} else {
				d.dead[name] = body
			}
		}
		switch qi {
		case 0:
			d.kept = q
		case 1:
			acked = q
		case 2:
			deleted = q
		}
	}
	for range sizes {
		m, err := rc.Get(ctx, acked)
		if err != nil {
			t.Fatal(err)
		}
		d.dead[fmt.Sprintf("acked message ID %v", m.ID)] = m.ID[:]
		if err := rc.Ack(ctx, acked, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	d.dead["deleted queue's recipient ID"] = deleted.RecipientID[:]
	d.dead["deleted queue's sender ID"] = deleted.SenderID[:]
	d.live["kept queue's recipient ID"] = d.kept.RecipientID[:]
	return d
}

// checkLiveOnly fails the test unless data holds every live secret and no
// dead one.
func checkLiveOnly(t *testing.T, what string, data []byte, d privacyData) {
	t.Helper()
	if got := d.live.found(data); len(got) != len(d.live) {
		t.Errorf("%s holds only %q of the live data: the scan proves nothing", what, got)
	}
	if got := d.dead.found(data); len(got) > 0 {
		t.Errorf("%s holds data acknowledged or deleted before it was written: %q", what, got)
	}
}

// TestBackupHoldsLiveDataOnly takes a hot backup (the admin /backup's) and
// an offline one (hush-relay backup of a stopped relay) of a store in
// which messages were acknowledged and a queue deleted, and scans both
// for their bytes: they hold the live messages, and none of the others
// (PROTOCOL.md section 17).
func TestBackupHoldsLiveDataOnly(t *testing.T) {
	e := startE2ERelay(t, nil)
	d := leavePrivacyData(t, e)
	ctx := e2eContext(t)

	var hot bytes.Buffer
	if _, err := e.r.Backup(ctx, &hot); err != nil {
		t.Fatal(err)
	}
	checkLiveOnly(t, "the hot backup", hot.Bytes(), d)

	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	var cold bytes.Buffer
	if _, err := relay.BackupStore(ctx, e.cfg.StorePath, &cold); err != nil {
		t.Fatal(err)
	}
	checkLiveOnly(t, "the offline backup", cold.Bytes(), d)

	// Both are store files that hold what was live.
	for name, b := range map[string][]byte{"hot": hot.Bytes(), "offline": cold.Bytes()} {
		path := filepath.Join(t.TempDir(), name+".db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := relay.CheckStore(path)
		if err != nil {
			t.Fatalf("%s backup: %v", name, err)
		}
		if rep.Queues != 2 || rep.Messages != len(d.live)-1 {
			t.Errorf("%s backup: %+v, want 2 queues and %d messages", name, rep, len(d.live)-1)
		}
	}
}
