package torutil_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/privnet"
	"github.com/hushrelay/hush/torutil"
	"github.com/hushrelay/hush/torutil/socks"
)

// tornet is the private Tor network of this package's tests.
var tornet privnet.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	tornet.Close()
	os.Exit(code)
}

// startTor starts an embedded tor on tn's network and closes it at the
// end of the test.
// It may run on another goroutine than the test's: it reports failures
// with t.Errorf and returns nil.
func startTor(ctx context.Context, t *testing.T, tn *privnet.Network, dataDir string) *torutil.Tor {
	t.Helper()
	last := -1
	tor, err := torutil.Start(ctx, torutil.StartConfig{
		DataDir:   dataDir,
		TorrcFile: tn.ClientTorrc(),
		Progress: func(p int, summary string) {
			if p < last {
				t.Errorf("bootstrap progress went back from %d%% to %d%%", last, p)
			}
			last = p
		},
	})
	if err != nil {
		t.Errorf("Start: %v", err)
		return nil
	}
	if last != 100 {
		t.Errorf("Start returned with the last reported progress at %d%%", last)
	}
	t.Cleanup(func() {
		if err := tor.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tor
}

// echoThrough dials host:port through d, retrying until ctx ends (the
// first attempts may meet a descriptor not yet on every directory), and
// checks an echo.
func echoThrough(ctx context.Context, t *testing.T, d socks.Dialer, addr string) {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		c, err := d.DialContext(actx, "tcp", addr)
		cancel()
		if err == nil {
			defer c.Close()
			privnet.RoundTrip(t, c, "ping through tor\n")
			return
		}
		t.Logf("dial %s: %v", addr, err)
		select {
		case <-ctx.Done():
			t.Fatalf("no connection to %s: %v", addr, err)
		case <-time.After(2 * time.Second):
		}
	}
}

// TestPublishAndDial starts two embedded tors on the private network,
// publishes an onion service on one, reaches it through the other's SOCKS
// port, and then restarts the service's tor and publishes again with the
// same key file: the onion host must not change, and a client reaches it.
func TestPublishAndDial(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	tn := tornet.Get(t)
	tNet := time.Since(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("network logs:\n%s", tn.Logs())
		}
	}()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "onion.key")
	target := privnet.EchoServer(t)

	// Start both tors at once: each bootstraps on its own.
	t1 := time.Now()
	var hs, client *torutil.Tor
	var tClientBoot, tHSBoot time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		hs = startTor(ctx, t, tn, filepath.Join(dir, "hs"))
		tHSBoot = time.Since(t1)
	})
	wg.Go(func() {
		client = startTor(ctx, t, tn, filepath.Join(dir, "client"))
		tClientBoot = time.Since(t1)
	})
	wg.Wait()
	if hs == nil || client == nil {
		t.FailNow()
	}
	hsDataDir := filepath.Join(dir, "hs")

	t2 := time.Now()
	onion, remove, err := hs.Publish(ctx, keyFile, 5223, target)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	tPublish := time.Since(t2)
	key := readKey(t, keyFile)
	if want := torutil.OnionHost(key.Public().(ed25519.PublicKey)); onion != want {
		t.Fatalf("Publish = %s, OnionHost of the key file = %s", onion, want)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}

	t3 := time.Now()
	echoThrough(ctx, t, socks.Dialer{Proxy: client.SOCKSAddr(), Isolation: "test"}, onion+":5223")
	tEcho := time.Since(t3)

	// An onion nobody publishes: tor's extended SOCKS reply says why.
	tu := time.Now()
	pub, _, _ := ed25519.GenerateKey(nil)
	uctx, ucancel := context.WithTimeout(ctx, time.Minute)
	c, err := socks.Dialer{Proxy: client.SOCKSAddr()}.DialContext(uctx, "tcp", torutil.OnionHost(pub)+":5223")
	ucancel()
	if err == nil {
		c.Close()
		t.Fatal("dialled an onion nobody publishes")
	}
	t.Logf("unknown onion: %v", err)
	if !strings.Contains(err.Error(), "descriptor not found") {
		t.Errorf("unknown onion: %v, want descriptor not found", err)
	}
	tUnknown := time.Since(tu)

	// Publishing the same key twice on one tor collides.
	if _, _, err := hs.Publish(ctx, keyFile, 5223, target); err == nil {
		t.Error("a second Publish of the same key succeeded")
	}
	if err := remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := remove(); err != nil {
		t.Fatalf("second remove: %v", err)
	}

	// Restart the service's tor on the same data directory and publish
	// the same key file again.
	if err := hs.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if pids := torsUsing(t, hsDataDir); len(pids) > 0 {
		t.Fatalf("tor processes %v still use %s after Close", pids, hsDataDir)
	}
	if _, _, err := hs.Publish(ctx, keyFile, 5223, target); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Publish after Close: %v, want net.ErrClosed", err)
	}
	// Reach it through a new client: a client that dialled the old
	// instance a moment ago may still hold its descriptor, and tor can
	// then take minutes to give up on the old introduction points (seen
	// once in eight immediate restarts).
	t4 := time.Now()
	var hs2, client2 *torutil.Tor
	var tRestart time.Duration
	wg.Go(func() {
		hs2 = startTor(ctx, t, tn, hsDataDir)
		tRestart = time.Since(t4)
	})
	wg.Go(func() { client2 = startTor(ctx, t, tn, filepath.Join(dir, "client2")) })
	wg.Wait()
	if hs2 == nil || client2 == nil {
		t.FailNow()
	}
	t5 := time.Now()
	onion2, _, err := hs2.Publish(ctx, keyFile, 5223, target)
	if err != nil {
		t.Fatalf("Publish after restart: %v", err)
	}
	tPublish2 := time.Since(t5)
	if onion2 != onion {
		t.Fatalf("onion after restart = %s, want %s", onion2, onion)
	}
	t6 := time.Now()
	echoThrough(ctx, t, socks.Dialer{Proxy: client2.SOCKSAddr()}, onion2+":5223")
	tEcho2 := time.Since(t6)
	// The first client reaches it too once it forgets the old descriptor.
	t7 := time.Now()
	if err := client.NewCircuits(); err != nil {
		t.Fatalf("NewCircuits: %v", err)
	}
	echoThrough(ctx, t, socks.Dialer{Proxy: client.SOCKSAddr(), Isolation: "test-3"}, onion2+":5223")
	tEcho3 := time.Since(t7)

	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("timings: network %v; bootstrap client %v, service %v; publish %v; first echo %v; "+
		"unknown onion %v; service restart %v, publish %v, echo via a new client %v, via the first %v; total %v",
		ms(tNet), ms(tClientBoot), ms(tHSBoot), ms(tPublish), ms(tEcho), ms(tUnknown),
		ms(tRestart), ms(tPublish2), ms(tEcho2), ms(tEcho3), ms(time.Since(t0)))
}

// TestAttach runs tor as a daemon with a cookie-protected control port,
// attaches to it, publishes an onion through it and dials that onion
// through the same tor's SOCKS port.
func TestAttach(t *testing.T) {
	t.Parallel()
	tn := tornet.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("network logs:\n%s", tn.Logs())
		}
	}()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	portFile := filepath.Join(dir, "control-port")
	cmd := exec.Command("tor", "-f", tn.ClientTorrc(), "--defaults-torrc", empty, "--quiet",
		"--DataDirectory", filepath.Join(dir, "data"),
		"--ControlPort", "127.0.0.1:auto", "--ControlPortWriteToFile", portFile,
		"--CookieAuthentication", "1",
		"--SocksPort", "127.0.0.1:auto",
		"--Log", "notice file "+filepath.Join(dir, "notice.log"),
		"--__OwningControllerProcess", strconv.Itoa(os.Getpid()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var addr string
	for addr == "" {
		if b, err := os.ReadFile(portFile); err == nil {
			// "PORT=127.0.0.1:NNNN"
			if _, a, ok := strings.Cut(strings.TrimSpace(string(b)), "PORT="); ok {
				addr = a
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("tor wrote no control port file")
		case <-time.After(100 * time.Millisecond):
		}
	}

	tor, err := torutil.Attach(ctx, addr)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer tor.Close()
	if _, _, err := net.SplitHostPort(tor.SOCKSAddr()); err != nil {
		t.Fatalf("SOCKSAddr = %q: %v", tor.SOCKSAddr(), err)
	}
	target := privnet.EchoServer(t)
	// A Publish that gives up removes the service again.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, _, err := tor.Publish(cctx, filepath.Join(dir, "onion.key"), 80, target); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled context: %v", err)
	}
	onion, _, err := tor.Publish(ctx, filepath.Join(dir, "onion.key"), 80, target)
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "notice.log"))
		t.Fatalf("Publish: %v\ntor's log:\n%s", err, b)
	}
	echoThrough(ctx, t, socks.Dialer{Proxy: tor.SOCKSAddr()}, onion+":80")

	if err := tor.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close leaves an attached tor running.
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the attached tor is gone after Close: %v", err)
	}
	if _, err := torutil.Attach(ctx, addr); err != nil {
		t.Errorf("Attach again: %v", err)
	}
}

func readKey(t *testing.T, name string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

// TestStartFailures needs tor but no network.
func TestStartFailures(t *testing.T) {
	privnet.Require(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()

	_, err := torutil.Start(ctx, torutil.StartConfig{DataDir: filepath.Join(dir, "a"), ExePath: filepath.Join(dir, "no-such-tor")})
	t.Logf("missing executable: %v", err)
	if !errors.Is(err, torutil.ErrTorFailed) {
		t.Errorf("missing executable: %v, want ErrTorFailed", err)
	}

	bad := filepath.Join(dir, "bad.torrc")
	os.WriteFile(bad, []byte("NoSuchOption 1\n"), 0o600)
	_, err = torutil.Start(ctx, torutil.StartConfig{DataDir: filepath.Join(dir, "b"), TorrcFile: bad})
	t.Logf("bad torrc: %v", err)
	if !errors.Is(err, torutil.ErrTorFailed) || !strings.Contains(err.Error(), "NoSuchOption") {
		t.Errorf("bad torrc: %v, want ErrTorFailed naming the option", err)
	}
	if pids := torsUsing(t, filepath.Join(dir, "b")); len(pids) > 0 {
		t.Errorf("tor processes %v left after a failed Start", pids)
	}

	// An authority nobody runs: tor never gets past the first steps.
	dead := filepath.Join(dir, "dead.torrc")
	os.WriteFile(dead, []byte("TestingTorNetwork 1\nUseDefaultFallbackDirs 0\n"+
		"DirAuthority dead orport=1 no-v2 v3ident=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA 127.0.0.1:1 BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n"), 0o600)
	var progress []int
	_, err = torutil.Start(ctx, torutil.StartConfig{
		DataDir:   filepath.Join(dir, "c"),
		TorrcFile: dead,
		Timeout:   3 * time.Second,
		Progress:  func(p int, _ string) { progress = append(progress, p) },
	})
	t.Logf("unreachable network: %v", err)
	if !errors.Is(err, torutil.ErrTorFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unreachable network: %v, want ErrTorFailed and DeadlineExceeded", err)
	}
	if len(progress) == 0 {
		t.Error("Progress was never called")
	}
	if pids := torsUsing(t, filepath.Join(dir, "c")); len(pids) > 0 {
		t.Errorf("tor processes %v left after a timed-out Start", pids)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, err = torutil.Attach(ctx, closed)
	t.Logf("attach to a closed port: %v", err)
	if !errors.Is(err, torutil.ErrTorFailed) {
		t.Errorf("Attach to a closed port: %v, want ErrTorFailed", err)
	}
}

// torsUsing returns the IDs of running processes whose command line
// mentions dir, using /proc (Linux); it skips the check elsewhere.
func torsUsing(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Logf("cannot list processes: %v", err)
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if arg == dir || strings.HasPrefix(arg, dir+string(filepath.Separator)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
