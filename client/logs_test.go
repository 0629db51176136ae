package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// syncBuffer is a log destination that the test reads while the client
// writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClientLogsNeverRecordAddresses opens a client at debug level with a
// relay on a loopback port where nothing listens: its dial errors name
// 127.0.0.1 and the port, and the client's log of them holds neither.
func TestClientLogsNeverRecordAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := relay.CertificateFingerprint(cert)
	dead := queue.Address{Fingerprint: fp, Host: "127.0.0.1", Port: uint16(port)}

	home := t.TempDir()
	if err := client.Init(home, nil); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	lg := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Open(ctx, client.Config{Home: home, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AddRelay(dead); err != nil {
		t.Fatal(err)
	}
	// Invite dials the relay (and fails): its error and the link's debug
	// log name the address.
	if _, err := c.Invite(ctx, "x"); err == nil {
		t.Fatal("invite through a relay where nothing listens succeeded")
	}
	for !strings.Contains(logs.String(), "level=DEBUG") {
		if ctx.Err() != nil {
			t.Fatalf("the client logged nothing at debug level:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	out := logs.String()
	for _, bad := range []string{"127.0.0.1", strconv.Itoa(port)} {
		if strings.Contains(out, bad) {
			t.Errorf("the client's log holds %q:\n%s", bad, out)
		}
	}
	t.Logf("logs:\n%s", out)
}
