package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestStatelessResetKey checks that the stateless reset key depends on the
// identity only: the same for the same identity, another for another.
func TestStatelessResetKey(t *testing.T) {
	_, a, _ := ed25519.GenerateKey(rand.Reader)
	_, b, _ := ed25519.GenerateKey(rand.Reader)
	ka, kb := relay.StatelessResetKey(a), relay.StatelessResetKey(b)
	if ka != relay.StatelessResetKey(ed25519.NewKeyFromSeed(a.Seed())) {
		t.Fatal("the key changed for the same identity")
	}
	if ka == kb || ka == [32]byte{} {
		t.Fatal("two identities share a stateless reset key")
	}
}

// TestRestartResetsQUIC connects a QUIC session that sends keep-alives
// every second (PROTOCOL.md section 2) and a hush PING every 500 ms to a
// relay process, kills the relay with SIGKILL and starts it again on the
// same port and data directory: the client's next PING is answered with a
// stateless reset, so the client learns that its connection is gone long
// before its idle timeout (a minute here). It prints the time from the
// restart to the end of the connection. (Keep-alive packets alone are too
// short to draw a reset: quic-go answers only packets of more than 42
// bytes, and a PING-only packet has 25.)
func TestRestartResetsQUIC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills relay processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	proc := relaytest.Start(t, data)
	addr := proc.Addr

	const clientIdle = time.Minute
	qc, err := quic.DialAddr(ctx, addr.HostPort(), &tls.Config{
		InsecureSkipVerify: true, // this test is about the transport
		NextProtos:         []string{queue.ALPN},
		MinVersion:         tls.VersionTLS13,
	}, &quic.Config{MaxIdleTimeout: clientIdle, KeepAlivePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := st.Write(hello.AppendBlock(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, queue.BlockSize)); err != nil {
		t.Fatalf("no ServerHello: %v", err)
	}

	// The client sends a hush PING every 500 ms until its connection ends.
	go func() {
		ping := queue.Transmission{CorrID: make([]byte, queue.CorrIDSize), Command: queue.Command{Tag: queue.TagPING}}
		var b queue.BlockBuilder
		b.Add(ping.Append(nil))
		block := b.AppendBlock(nil)
		for {
			if _, err := st.Write(block); err != nil {
				return
			}
			select {
			case <-qc.Context().Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	go io.Copy(io.Discard, st)

	proc.Kill()
	select {
	case <-qc.Context().Done():
		t.Fatalf("the connection ended before the relay restarted: %v", context.Cause(qc.Context()))
	default:
	}
	proc.Restart() // same data directory and port
	restarted := time.Now()
	addr2 := proc.Addr
	if addr2.Fingerprint != addr.Fingerprint || addr2.Port != addr.Port {
		t.Fatalf("restarted as %v, want %v", addr2, addr)
	}

	select {
	case <-qc.Context().Done():
	case <-time.After(clientIdle / 2):
		t.Fatalf("the connection did not end within %v of the restart", clientIdle/2)
	}
	took := time.Since(restarted)
	err = context.Cause(qc.Context())
	var reset *quic.StatelessResetError
	if !errors.As(err, &reset) {
		t.Fatalf("the connection ended with %v, want a stateless reset", err)
	}
	t.Logf("the client learned of the restart %v after it (a PING every 500 ms)", took.Round(time.Millisecond))

	// The restarted relay serves new connections.
	c, err := net.DialTimeout("tcp", addr.HostPort(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
