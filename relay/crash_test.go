package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
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

// startRelayProcess runs `hush-relay start` on dataDir and returns the
// process and the address it printed.
func startRelayProcess(t *testing.T, dataDir string) (*exec.Cmd, queue.Address) {
	t.Helper()
	bin, err := buildRelay()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "start", "--data", dataDir, "--listen", "127.0.0.1:0", "--host", "127.0.0.1", "--no-password")
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
// while several senders are sending, restarts it, and checks that every
// SEND that was answered OK is delivered.
func TestCrashKeepsAcknowledgedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a relay process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	proc, addr := startRelayProcess(t, data)

	rc, err := client.Dial(ctx, addr, client.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := rc.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	senderKey, _ := queue.GenerateKey()
	if err := rc.Secure(ctx, q, queue.PublicKey(senderKey)); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// Senders: each on its own connection, half over QUIC and half over
	// TCP, sending numbered bodies until the relay dies.
	const senders = 8
	var (
		mu    sync.Mutex
		acked = make(map[string]bool)
		sent  int
		wg    sync.WaitGroup
	)
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	for g := range senders {
		transport := "quic"
		if g%2 == 1 {
			transport = "tcp"
		}
		sc, err := client.Dial(ctx, addr, client.DialConfig{Transport: transport})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := fmt.Sprintf("sender %d message %d", g, i)
				mu.Lock()
				sent++
				mu.Unlock()
				if err := sc.Send(sendCtx, q.SenderID, senderKey, []byte(body)); err != nil {
					return // the relay was killed (or the test is over)
				}
				mu.Lock()
				acked[body] = true
				mu.Unlock()
			}
		}()
	}
	// Let the load run, then kill the relay in the middle of it.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	stopSending()
	wg.Wait()
	mu.Lock()
	sentN, ackedN := sent, len(acked)
	mu.Unlock()

	// Restart on the same data directory and drain the queue.
	_, addr2 := startRelayProcess(t, data)
	if addr2.Fingerprint != addr.Fingerprint {
		t.Fatalf("the identity changed across the restart")
	}
	rc, err = client.Dial(ctx, addr2, client.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	delivered := make(map[string]int)
	for {
		select {
		case ev, ok := <-rc.Events():
			if !ok {
				t.Fatalf("connection ended: %v", rc.Err())
			}
			if ev.Kind != client.EventMessage || ev.Err != nil {
				t.Fatalf("unexpected event %+v", ev)
			}
			delivered[string(ev.Message.Body)]++
			if err := rc.Ack(ctx, q, ev.Message.ID); err != nil {
				t.Fatal(err)
			}
			continue
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
		}
		break
	}
	lost, dups := 0, 0
	for body := range acked {
		if delivered[body] == 0 {
			lost++
		}
	}
	for _, n := range delivered {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("sent %d, acknowledged %d, delivered %d (lost %d, duplicated %d)", sentN, ackedN, len(delivered), lost, dups)
	fmt.Printf("crash test: sent %d, acknowledged %d, delivered %d, lost %d\n", sentN, ackedN, len(delivered), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages were lost", lost)
	}
	if dups > 0 {
		t.Fatalf("%d messages were delivered twice", dups)
	}
	if len(delivered) < ackedN || len(delivered) > sentN {
		t.Fatalf("delivered %d, want between %d and %d", len(delivered), ackedN, sentN)
	}
}
