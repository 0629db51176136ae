package privnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// RequiredEnv is the environment variable that, set to "1" (as CI does),
// turns a missing tor from a skip into a failure in Require.
const RequiredEnv = "HUSH_TOR_TESTS"

// StartTimeout is how long Shared.Get allows Start. A network usually
// reaches its full consensus in 10–35 s.
const StartTimeout = 2 * time.Minute

// Require skips the test if tor or tor-gencert is missing, unless the
// environment variable HUSH_TOR_TESTS is "1", in which case the test
// fails.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequiredEnv) == "1" {
			t.Fatalf("%s=1 but %v", RequiredEnv, err)
		}
		t.Skipf("skipping: %v (%s=1 makes this a failure)", err, RequiredEnv)
	}
}

// Shared is one Network shared by the tests of a package: the first Get
// starts it, later ones return it (or fail with the same error at once).
// Declare one at package level, and Close it in TestMain after m.Run:
//
//	var tornet privnet.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		tornet.Close()
//		os.Exit(code)
//	}
//
// Its methods are safe for concurrent use; a Get that starts the network
// holds up the others until it is up.
type Shared struct {
	mu  sync.Mutex
	net *Network
	dir string
	err error
}

// Get calls Require, then returns the shared Network, starting it in a
// fresh temporary directory if this is the first call. It fails the test
// if the network cannot start, with the tors' logs.
func (s *Shared) Get(t testing.TB) *Network {
	t.Helper()
	Require(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.net == nil && s.err == nil {
		s.dir, s.err = os.MkdirTemp("", "privnet-")
		if s.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
			start := time.Now()
			s.net, s.err = Start(ctx, s.dir)
			cancel()
			if s.err == nil {
				keygen, consensus := s.net.Timing()
				t.Logf("privnet: started in %v (keys %v, full consensus %v after launch, directory caches %v later); files in %s",
					time.Since(start).Round(time.Millisecond), keygen.Round(time.Millisecond),
					consensus.Round(time.Millisecond), s.net.microdescs.Round(time.Millisecond), s.dir)
			}
		}
	}
	if s.err != nil {
		t.Fatalf("private Tor network: %v", s.err)
	}
	return s.net
}

// Close stops the network if it was started and removes its directory.
// It is idempotent.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.net != nil {
		err = s.net.Close()
	}
	if s.dir != "" {
		if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
			err = fmt.Errorf("privnet: %w", rerr)
		}
		s.dir = ""
	}
	return err
}

// EchoServer listens on 127.0.0.1 and echoes every connection until the
// test ends, and returns its host:port.
func EchoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// RoundTrip writes msg on c and expects it back.
func RoundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}
