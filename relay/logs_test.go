package relay_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// logBuffer is a log destination that tests read while the relay writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logSecrets is what a log must never hold: IP addresses, the ports of
// both ends, queue and message IDs in every encoding, message sizes.
type logSecrets []string

func (s *logSecrets) addID(id queue.ID) {
	*s = append(*s, hex.EncodeToString(id[:]), base64.StdEncoding.EncodeToString(id[:]),
		base64.RawStdEncoding.EncodeToString(id[:]), base64.URLEncoding.EncodeToString(id[:]),
		base64.RawURLEncoding.EncodeToString(id[:]), id.String())
}

// TestLogsNeverRecordAddresses runs a relay at debug level through a whole
// queue life (NEW, KEY, SEND, SUB, delivery, ACK, DEL) over QUIC and TCP,
// a TLS handshake with the wrong ALPN, a connection that is not TLS, one
// that sends nothing until the first-byte timeout, one that resets after
// the handshake and one that sends garbage blocks, and scans every log
// line for 127.0.0.1, the port numbers of both ends, the queue and
// message IDs in hex and base64, and the message size: none appears. The
// relay's start line claims exactly this.
func TestLogsNeverRecordAddresses(t *testing.T) {
	var logs logBuffer
	h := slog.NewTextHandler(&logs, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// No times: their digits could look like a port by chance.
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	rt := relaytest.New(t, func(c *relay.Config) {
		c.Logger = slog.New(h)
		c.FirstByteTimeout = 300 * time.Millisecond
	})
	ctx := e2eContext(t)
	secrets := logSecrets{"127.0.0.1", strconv.Itoa(int(rt.Address.Port))}
	const size = 3217 // the message size; no other figure in the logs has these digits
	secrets = append(secrets, strconv.Itoa(size))

	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		rc := e2eDial(t, ctx, rt.Address, tr)
		sc := e2eDial(t, ctx, rt.Address, tr)
		q, sk := e2eSecuredQueue(t, ctx, rc)
		secrets.addID(q.RecipientID)
		secrets.addID(q.SenderID)
		if err := sc.Send(ctx, q.SenderID, sk, bytes.Repeat([]byte{'x'}, size)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
		m := e2eMessage(t, ctx, rc, q)
		secrets.addID(m.ID)
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
		if err := rc.Delete(ctx, q); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		sc.Close()
	}

	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", rt.HostPort)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port))
		return c
	}
	// Not TLS at all.
	c := dial()
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.Close()
	// Silent until the first-byte timeout: the relay's read fails with a
	// net.OpError that names both ends.
	silent := dial()
	defer silent.Close()
	// A TLS handshake with the wrong ALPN.
	tc := tls.Client(dial(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	tc.Handshake()
	tc.Close()
	// The right ALPN, then garbage blocks, then the right ALPN and a reset.
	for _, garbage := range []bool{true, false} {
		raw := dial()
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{queue.ALPN}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if garbage {
			tc.Write(bytes.Repeat([]byte{0xff}, 3*queue.BlockSize))
			tc.Close()
			continue
		}
		raw.(*net.TCPConn).SetLinger(0)
		raw.Close()
	}

	// Wait until the relay logged the failures and ends, then close it.
	deadline := time.Now().Add(time.Minute)
	for strings.Count(logs.String(), "transport handshake failed") < 3 ||
		strings.Count(logs.String(), "session ended") < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not log the failed connections:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rt.Close()

	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "relay stopped") {
		t.Fatalf("expected debug lines and the stop line:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line holds %q: %s", s, line)
			}
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("logs:\n%s", out)
	}
}
