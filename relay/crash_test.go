package relay_test

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// buildRelay builds the hush-relay binary once per test binary.
var buildRelay = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hush-relay-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hush-relay")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hushrelay/hush/cmd/hush-relay").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

var addressLine = regexp.MustCompile(`hush://\S+`)

// startRelayProcess runs `hush-relay start` on dataDir, listening on
// listen ("127.0.0.1:0" for a free port), and returns the process and the
// address it printed.
func startRelayProcess(t *testing.T, dataDir, listen string) (*exec.Cmd, queue.Address) {
	t.Helper()
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "start", "--data", dataDir, "--listen", listen, "--host", "127.0.0.1", "--no-password")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := addressLine.FindString(sc.Text()); m != "" {
				select {
				case found <- m:
				default:
				}
			}
		}
	}()
	select {
	case s := <-found:
		addr, err := queue.ParseAddress(s)
		if err != nil {
			t.Fatalf("relay printed %q: %v", s, err)
		}
		return cmd, addr
	case <-time.After(30 * time.Second):
		t.Fatal("the relay printed no address within 30 s")
	}
	panic("unreachable")
}

// TestCrashKeepsAcknowledgedMessages kills the relay process with SIGKILL
// while eight senders (half over QUIC, half over TCP, one queue each) send
// and a recipient receives and acknowledges, restarts it on the same data
// directory, and checks that every SEND answered OK is delivered, and that
// nothing whose ACK was answered OK is delivered again.
func TestCrashKeepsAcknowledgedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a relay process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	proc, addr := startRelayProcess(t, data, "127.0.0.1:0")

	const senders = 8
	recv, err := link.Dial(ctx, addr, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	queues := make(map[queue.ID]link.Queue)
	var qs []link.Queue
	var senderKeys []*ecdh.PrivateKey
	for range senders {
		q, err := recv.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := queue.GenerateKey()
		if err := recv.Secure(ctx, q, queue.PublicKey(k)); err != nil {
			t.Fatal(err)
		}
		if err := recv.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		queues[q.RecipientID] = q
		qs = append(qs, q)
		senderKeys = append(senderKeys, k)
	}

	var (
		mu        sync.Mutex
		sent      int
		acked     = make(map[string]bool) // SEND answered OK
		delivered = make(map[string]int)  // times delivered
		ackedBack = make(map[string]bool) // ACK answered OK: must never come again
		dups      int
	)
	// receive records deliveries from rc until it ends or idle passes
	// without a message.
	receive := func(rc *link.Conn, idle time.Duration) {
		for {
			select {
			case ev, ok := <-rc.Events():
				if !ok {
					return
				}
				if ev.Kind != link.EventMessage || ev.Err != nil {
					t.Errorf("unexpected event %+v", ev)
					return
				}
				body := string(ev.Message.Body)
				mu.Lock()
				delivered[body]++
				if ackedBack[body] {
					dups++
				}
				mu.Unlock()
				if err := rc.Ack(ctx, queues[ev.RecipientID], ev.Message.ID); err != nil {
					continue // the relay died; the message will come again
				}
				mu.Lock()
				ackedBack[body] = true
				mu.Unlock()
			case <-time.After(idle):
				return
			}
		}
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		receive(recv, time.Minute)
	}()

	var wg sync.WaitGroup
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	for g := range senders {
		transport := link.TransportQUIC
		if g%2 == 1 {
			transport = link.TransportTCP
		}
		sc, err := link.Dial(ctx, addr, link.Config{Transport: transport})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, retry := 0, false; ; {
				body := fmt.Sprintf("sender %d message %d", g, i)
				if !retry {
					mu.Lock()
					sent++
					mu.Unlock()
				}
				err := sc.Send(sendCtx, qs[g].SenderID, senderKeys[g], []byte(body))
				if retry = errors.Is(err, queue.QUOTA); retry {
					time.Sleep(10 * time.Millisecond) // the recipient is behind
					continue
				}
				if err != nil {
					return // the relay was killed
				}
				mu.Lock()
				acked[body] = true
				mu.Unlock()
				i++
			}
		}()
	}
	// Let the load run, then kill the relay in the middle of it.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	// QUIC notices a dead peer only at its idle timeout: stop waiting. A
	// SEND still in flight now was not acknowledged.
	stopSending()
	wg.Wait()
	recv.Close()
	<-recvDone

	// Restart on the same data directory and drain every queue.
	_, addr2 := startRelayProcess(t, data, "127.0.0.1:0")
	if addr2.Fingerprint != addr.Fingerprint {
		t.Fatalf("the identity changed across the restart")
	}
	rc, err := link.Dial(ctx, addr2, link.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, q := range qs {
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	receive(rc, 3*time.Second)

	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for body := range acked {
		if delivered[body] == 0 {
			lost++
		}
	}
	t.Logf("sent %d, acknowledged %d, delivered %d (lost %d, delivered again after an acknowledged ACK %d)", sent, len(acked), len(delivered), lost, dups)
	fmt.Printf("crash test: sent %d, acknowledged %d, delivered %d, lost %d\n", sent, len(acked), len(delivered), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages were lost", lost)
	}
	if dups > 0 {
		t.Fatalf("%d messages were delivered again after their ACK was answered OK", dups)
	}
	if len(delivered) < len(acked) || len(delivered) > sent {
		t.Fatalf("delivered %d distinct messages, want between %d and %d", len(delivered), len(acked), sent)
	}
}
