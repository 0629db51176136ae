package client_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/privnet"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/torutil"
)

// tornet is the private Tor network shared by this package's Tor tests.
var tornet privnet.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	tornet.Close()
	os.Exit(code)
}

// onionRelay is a testRelay published as an onion service by its own tor.
type onionRelay struct {
	*testRelay
	t       testing.TB
	net     *privnet.Network
	torDir  string
	keyFile string
	tor     *torutil.Tor
}

func startOnionRelay(ctx context.Context, t testing.TB, n *privnet.Network) *onionRelay {
	t.Helper()
	dir := t.TempDir()
	o := &onionRelay{testRelay: startRelay(t), t: t, net: n, torDir: filepath.Join(dir, "tor"), keyFile: filepath.Join(dir, "onion.key")}
	o.publish(ctx)
	t.Cleanup(func() { o.tor.Close() })
	return o
}

// publish starts the relay's tor and publishes its TCP listener.
func (o *onionRelay) publish(ctx context.Context) {
	o.t.Helper()
	tor, err := torutil.Start(ctx, torutil.StartConfig{DataDir: o.torDir, TorrcFile: o.net.ClientTorrc()})
	if err != nil {
		o.t.Fatalf("relay tor: %v\n%s", err, o.net.Logs())
	}
	o.tor = tor
	onion, _, err := tor.Publish(ctx, o.keyFile, int(o.addr.Port), o.addr.HostPort())
	if err != nil {
		o.t.Fatalf("publish: %v\n%s", err, o.net.Logs())
	}
	o.addr.Onion = onion
}

// restart stops the relay and its tor, and starts both again on the same
// store, port, tor data directory and onion key.
func (o *onionRelay) restart(ctx context.Context) {
	o.t.Helper()
	o.tor.Close()
	o.testRelay.restart()
	o.publish(ctx)
}

func startClientTor(ctx context.Context, t testing.TB, n *privnet.Network) *torutil.Tor {
	t.Helper()
	tor, err := torutil.Start(ctx, torutil.StartConfig{DataDir: filepath.Join(t.TempDir(), "tor"), TorrcFile: n.ClientTorrc()})
	if err != nil {
		t.Fatalf("client tor: %v\n%s", err, n.Logs())
	}
	t.Cleanup(func() { tor.Close() })
	return tor
}

func newTorPerson(t testing.TB, socks string, relays ...queue.Address) *person {
	t.Helper()
	return newPersonWith(t, link.Config{Tor: link.TorRequired, SOCKS: socks, HandshakeTimeout: time.Minute}, relays...)
}

// TestTorEndToEnd publishes a relay as an onion service on a private Tor
// network; two clients that use Tor only connect through an invitation
// and exchange messages; the relay restarts with the same onion host and
// the conversation goes on.
func TestTorEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Tor network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	n := tornet.Get(t)
	keygen, consensus := n.Timing()
	t.Logf("tor network: keys %v, consensus %v (got in %v)", keygen.Round(time.Millisecond), consensus.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	step := time.Now()
	r := startOnionRelay(ctx, t, n)
	onion := r.addr.Onion
	t.Logf("relay onion published in %v: %s", time.Since(step).Round(time.Millisecond), r.addr)
	step = time.Now()
	ctor := startClientTor(ctx, t, n)
	t.Logf("client tor bootstrapped in %v", time.Since(step).Round(time.Millisecond))

	// The clients know the relay only by its onion host.
	onionOnly := queue.Address{Fingerprint: r.addr.Fingerprint, Host: onion, Port: r.addr.Port}
	alice := newTorPerson(t, ctor.SOCKSAddr(), onionOnly)
	bob := newTorPerson(t, ctor.SOCKSAddr(), onionOnly)
	step = time.Now()
	connect(ctx, t, alice, bob)
	t.Logf("invitation to connected over Tor in %v", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	if _, err := alice.c.Send(ctx, "b", "hello over tor"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, bob, "a", "hello over tor")
	t.Logf("first message delivered in %v", time.Since(step).Round(time.Millisecond))
	if _, err := bob.c.Send(ctx, "a", "hello back"); err != nil {
		t.Fatal(err)
	}
	expectMessage(ctx, t, alice, "b", "hello back")

	// The clients use only the SOCKS port: they cannot make tor forget
	// the old descriptor (NEWNYM), whose introduction points may still
	// acknowledge introductions for the stopped service.
	step = time.Now()
	r.restart(ctx)
	if r.addr.Onion != onion {
		t.Fatalf("the onion host changed across the restart: %s, then %s", onion, r.addr.Onion)
	}
	t.Logf("relay restarted and republished in %v, same onion host", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	converse(ctx, t, alice, bob, "after the restart")
	t.Logf("SOCKS port only: conversation resumed %v after the relay was republished", time.Since(step).Round(time.Millisecond))

	// Again with clients that may use the client tor's control port.
	var newnyms atomic.Int32
	for _, p := range []*person{alice, bob} {
		p.c.Close()
		p.newCircuits = func() error {
			newnyms.Add(1)
			return ctor.NewCircuits()
		}
		p.open()
	}
	converse(ctx, t, alice, bob, "reopened")
	step = time.Now()
	r.restart(ctx)
	t.Logf("relay restarted and republished in %v", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	converse(ctx, t, alice, bob, "after the second restart")
	t.Logf("with the control port: conversation resumed %v after the relay was republished (%d NEWNYM); whole test %v", time.Since(step).Round(time.Millisecond), newnyms.Load(), time.Since(start).Round(time.Millisecond))
}

// converse sends text from alice to bob and back, and waits for both. It
// lets pass the duplicate reports a relay restart or a reopened client
// can cause: a message or receipt whose OK was lost is sent again, and
// the copy is reported, never shown (PROTOCOL.md section 19.7).
func converse(ctx context.Context, t *testing.T, alice, bob *person, text string) {
	t.Helper()
	if _, err := alice.c.Send(ctx, "b", text); err != nil {
		t.Fatal(err)
	}
	expectMessagePastDuplicates(ctx, t, bob, "a", text)
	if _, err := bob.c.Send(ctx, "a", text+", back"); err != nil {
		t.Fatal(err)
	}
	expectMessagePastDuplicates(ctx, t, alice, "b", text+", back")
}

// TestHelperTorClient is not a test: TestTorRequiredLeaksNothing runs the
// test binary again under strace with HUSH_TEST_TOR_SOCKS set. It makes two
// Tor-only clients connect through an invitation and exchange a message
// each way, then prints "ok".
func TestHelperTorClient(t *testing.T) {
	socks := os.Getenv("HUSH_TEST_TOR_SOCKS")
	if socks == "" {
		t.Skip("helper process for TestTorRequiredLeaksNothing")
	}
	addr, err := queue.ParseAddress(os.Getenv("HUSH_TEST_TOR_RELAY"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	alice, bob := newTorPerson(t, socks, addr), newTorPerson(t, socks, addr)
	connect(ctx, t, alice, bob)
	alice.c.Send(ctx, "b", "one")
	expectMessage(ctx, t, bob, "a", "one")
	bob.c.Send(ctx, "a", "two")
	expectMessage(ctx, t, alice, "b", "two")
	fmt.Println("helper: ok")
}

// TestTorRequiredLeaksNothing runs two Tor-only clients (in a child
// process, under strace) against a relay that has both a clearnet host and
// an onion host, and checks every socket the child opened: no UDP socket,
// no connection but to the Tor SOCKS proxy (so none to the relay's
// clearnet listener), and no use of the system resolver (no DNS packet, no
// read of /etc/resolv.conf, /etc/hosts or /etc/nsswitch.conf).
func TestTorRequiredLeaksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Tor network")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv(privnet.RequiredEnv) == "1" {
			t.Fatalf("%s=1 but strace is not installed", privnet.RequiredEnv)
		}
		t.Skip("strace is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	n := tornet.Get(t)
	r := startOnionRelay(ctx, t, n)
	ctor := startClientTor(ctx, t, n)
	_, socksPort, _ := net.SplitHostPort(ctor.SOCKSAddr())

	trace := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.CommandContext(ctx, strace, "-f", "-qq", "-e", "trace=socket,connect,sendto,sendmsg,openat", "-o", trace,
		os.Args[0], "-test.run=^TestHelperTorClient$", "-test.v")
	// The relay's address carries its clearnet host too: the client must
	// not use it.
	cmd.Env = append(os.Environ(), "HUSH_TEST_TOR_SOCKS="+ctor.SOCKSAddr(), "HUSH_TEST_TOR_RELAY="+r.addr.String())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "helper: ok") {
		t.Fatalf("tor client process: %v\n%s", err, out)
	}

	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inet := regexp.MustCompile(`sin6?_port=htons\((\d+)\)`)
	var sockets, connects int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "socket(AF_INET") && strings.Contains(line, "SOCK_DGRAM"):
			t.Errorf("a UDP socket: %s", line)
		case strings.Contains(line, "socket(AF_INET"):
			sockets++
		case strings.Contains(line, "connect(") && (strings.Contains(line, "AF_INET")):
			m := inet.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			connects++
			if m[1] != socksPort || !strings.Contains(line, "127.0.0.1") {
				t.Errorf("a connection that is not to the SOCKS proxy (port %s): %s", socksPort, line)
			}
			if m[1] == strconv.Itoa(int(r.addr.Port)) {
				t.Errorf("a connection to the relay's clearnet listener: %s", line)
			}
		case (strings.Contains(line, "sendto(") || strings.Contains(line, "sendmsg(")) && strings.Contains(line, "htons(53)"):
			t.Errorf("a DNS packet: %s", line)
		case strings.Contains(line, "openat(") && (strings.Contains(line, "/etc/resolv.conf") || strings.Contains(line, "/etc/hosts") || strings.Contains(line, "/etc/nsswitch.conf")):
			t.Errorf("the system resolver's files were read: %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if connects == 0 {
		t.Fatalf("strace saw no connection at all: the trace is not working")
	}
	t.Logf("the Tor-only clients opened %d TCP sockets and made %d connections, all to the SOCKS proxy; no UDP, no DNS", sockets, connects)
}
