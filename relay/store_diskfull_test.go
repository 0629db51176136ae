//go:build linux

package relay

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// TestStoreNoSpaceGroup: a group commit that fails for lack of disk space
// (ENOSPC, a real full tmpfs) is applied again one operation per
// transaction: an ACK grouped with SENDs that need more space than there
// is succeeds, the SENDs that find no space alone fail, and the queue then
// holds exactly what the results say.
func TestStoreNoSpaceGroup(t *testing.T) {
	sent := waiter[sendResult](t)
	done := waiter[error](t)
	fs := MountSmallFS(t, "4m")
	var failed int
	s := openTestStore(t, filepath.Join(fs, "relay.db"), storeOptions{OnCommit: func(_, _ time.Duration, _ int, err error) {
		if err != nil {
			failed++ // on the commit loop's goroutine, read after the results below
		}
	}})
	ctx := context.Background()
	k := testKey(3)
	q := createTestQueue(t, s, 1000, &k)
	body := bytes.Repeat([]byte{9}, queue.MaxMessageSize)
	var held []queue.ID
	for {
		if len(held) > 1000 {
			t.Fatal("no SEND failed after 1000 messages of 16000 bytes on a 4 MiB disk")
		}
		m := storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: body}
		if r := sent(s.addMessage(ctx, q.SenderID, m, 1<<20)); r.Err != nil {
			if !errors.Is(r.Err, syscall.ENOSPC) {
				t.Fatalf("SEND on a full disk: %v, want ENOSPC", r.Err)
			}
			break
		}
		held = append(held, m.ID)
	}
	failedFill := failed

	// A slow operation holds the commit loop while an ACK and 100 SENDs,
	// more than the file's free pages can take, are submitted, so that
	// they wait together for the next group.
	started, release := make(chan struct{}), make(chan struct{})
	slow, err := s.submitErr(ctx, func(storeTx) error {
		close(started)
		<-release
		return nil
	})
	<-started
	ack, errAck := s.ackMessage(ctx, q.RecipientID, held[0])
	type submitted struct {
		ch  <-chan sendResult
		err error
	}
	var adds []submitted
	for range 100 {
		ch, err := s.addMessage(ctx, q.SenderID, storedMessage{ID: queue.NewID(), Timestamp: 2000, Body: body}, 1<<20)
		adds = append(adds, submitted{ch, err})
	}
	close(release)
	if err := done(slow, err); err != nil {
		t.Fatalf("the slow operation: %v", err)
	}
	if err := done(ack, errAck); err != nil {
		t.Fatalf("ACK grouped with SENDs on a full disk: %v, want it committed", err)
	}
	stored, refused := 0, 0
	for _, a := range adds {
		switch r := sent(a.ch, a.err); {
		case r.Err == nil:
			stored++
		case errors.Is(r.Err, syscall.ENOSPC):
			refused++
		default:
			t.Fatalf("SEND grouped with an ACK on a full disk: %v, want nil or ENOSPC", r.Err)
		}
	}
	if refused == 0 {
		t.Fatal("100 SENDs of 16000 bytes fitted on a disk found full: the test did not fill it")
	}
	// The group failed, then each SEND that found no space on its own.
	if failed != failedFill+1+refused {
		t.Fatalf("%d commits failed after the fill, want %d: the group, then %d SENDs alone", failed-failedFill, 1+refused, refused)
	}
	// The queue holds the messages not acknowledged, the first one first.
	if _, n, err := s.counts(); err != nil || n != len(held)-1+stored {
		t.Fatalf("%d messages held (%v), want %d", n, err, len(held)-1+stored)
	}
	if m, ok, err := s.firstMessage(q.RecipientID); err != nil || !ok || m.ID != held[1] {
		t.Fatalf("first message %x (%v, %v), want the second sent, %x", m.ID, ok, err, held[1])
	}
}
