// Package privnet starts a private Tor network on 127.0.0.1 for tests:
// three directory authorities and three relays, with fast voting and
// flags that make a fresh network usable for onion services at once.
// Clients and onion services join it with the torrc from ClientTorrc.
//
// Nothing leaves 127.0.0.1: every port binds there, the network's own
// authorities replace the public ones and the fallback directories are
// off, and no tor reads /etc/tor/torrc or resolves names. A network
// reaches a consensus listing every relay 10–35 s after Start begins
// (keys included), on 2 cores.
package privnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sizes of the network. Onion services need at least 4 relays (client
// introduction and service rendezvous circuits have 4 hops); the
// authorities' measured bandwidths count only when 3 or more vote them.
const (
	numAuthorities = 3
	numRelays      = 3
)

// stopTimeout bounds how long Close waits for a tor to exit after
// SIGTERM before it kills it.
const stopTimeout = 10 * time.Second

// logTailLines is how many lines of each tor's notice log Logs returns.
const logTailLines = 25

// Network is a running private Tor network. Its methods are safe for
// concurrent use. Close stops it.
type Network struct {
	dir         string
	clientTorrc string
	nodes       []*node
	keygen      time.Duration
	consensus   time.Duration
	microdescs  time.Duration

	closeOnce sync.Once
}

// node is one authority or relay.
type node struct {
	name      string
	dir       string // its DataDirectory, absolute
	authority bool
	orPort    int
	dirPort   int    // authorities only
	v3ident   string // authorities only: the v3 identity fingerprint
	fp        string // relay identity fingerprint, 40 hex digits

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Available reports whether the programs the network needs, tor and
// tor-gencert, are in PATH: nil if they are, else an error naming what
// is missing.
func Available() error {
	var missing []string
	for _, p := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if missing != nil {
		return fmt.Errorf("privnet: %s not found in PATH (Debian: apt-get install tor)", strings.Join(missing, " and "))
	}
	return nil
}

// Start starts a private Tor network with its files under dir (for
// example t.TempDir()), and returns once the consensus lists every relay:
// a client that starts on a partial first consensus can pin a tiny set of
// guards and stall for a minute or more. It
// generates fresh keys every time and picks free ports on 127.0.0.1.
// ctx bounds the start only; the network runs until Close, or until
// shortly after this process dies. On failure Start stops whatever it
// started and returns an error with the tail of the tors' logs.
func Start(ctx context.Context, dir string) (*Network, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("privnet: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("privnet: %w", err)
	}
	for attempt := 1; ; attempt++ {
		n := &Network{dir: dir, clientTorrc: filepath.Join(dir, "client.torrc")}
		err := n.start(ctx)
		if err == nil {
			return n, nil
		}
		// A port picked as free can be taken before tor binds it (by
		// another test process starting a network at the same time):
		// start again with fresh ports and keys.
		if !errors.Is(err, errPortTaken) || attempt == startAttempts || ctx.Err() != nil {
			return nil, err
		}
		for _, nd := range n.nodes {
			os.RemoveAll(nd.dir)
		}
	}
}

// startAttempts is how often Start tries when a port was taken.
const startAttempts = 3

// errPortTaken is returned by start when a tor could not bind its ports.
var errPortTaken = errors.New("port taken")

func (n *Network) start(ctx context.Context) error {
	t0 := time.Now()
	if err := n.generate(ctx); err != nil {
		return fmt.Errorf("privnet: %w", err)
	}
	n.keygen = time.Since(t0)
	t1 := time.Now()
	if err := n.launch(); err != nil {
		n.Close()
		return fmt.Errorf("privnet: %w\n%s", err, n.Logs())
	}
	if err := n.waitConsensus(ctx); err != nil {
		n.Close()
		return fmt.Errorf("privnet: %w\n%s", err, n.Logs())
	}
	n.consensus = time.Since(t1)
	t2 := time.Now()
	n.waitMicrodescs(ctx)
	n.microdescs = time.Since(t2)
	return nil
}

// emptyTorrc is an empty regular file, used for -f and --defaults-torrc
// so that no tor reads /etc/tor/torrc (tor refuses -f /dev/null).
func (n *Network) emptyTorrc() string { return filepath.Join(n.dir, "empty.torrc") }

// generate picks ports, makes every key and writes the torrc files.
func (n *Network) generate(ctx context.Context) error {
	if err := os.WriteFile(n.emptyTorrc(), nil, 0o600); err != nil {
		return err
	}
	ports, err := freePorts(numAuthorities*2 + numRelays)
	if err != nil {
		return err
	}
	for i := range numAuthorities + numRelays {
		nd := &node{authority: i < numAuthorities, orPort: ports[0]}
		ports = ports[1:]
		if nd.authority {
			nd.name = "a" + strconv.Itoa(i)
			nd.dirPort = ports[0]
			ports = ports[1:]
		} else {
			nd.name = "r" + strconv.Itoa(i-numAuthorities)
		}
		nd.dir = filepath.Join(n.dir, nd.name)
		if err := os.MkdirAll(filepath.Join(nd.dir, "keys"), 0o700); err != nil {
			return err
		}
		n.nodes = append(n.nodes, nd)
	}

	// Key generation costs about 1.3 s of CPU per authority: run it all
	// at once.
	var wg sync.WaitGroup
	errs := make([]error, 2*len(n.nodes))
	for i, nd := range n.nodes {
		wg.Go(func() { errs[2*i] = n.relayKeys(ctx, nd) })
		if nd.authority {
			wg.Go(func() { errs[2*i+1] = authorityKeys(ctx, nd) })
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("generate keys: %w", err)
	}

	// A fresh, equal measured bandwidth for every relay, in the
	// bandwidth-file-spec format: a Unix time, then one line per relay.
	// Without it, path selection weighted by the advertised bandwidths of
	// a fresh network picks one relay nearly every time, and onion
	// service circuits fail when their guard is also their last hop.
	var bw bytes.Buffer
	fmt.Fprintf(&bw, "%d\n", time.Now().Unix())
	for _, nd := range n.nodes {
		fmt.Fprintf(&bw, "node_id=$%s bw=1000\n", nd.fp)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "bwfile"), bw.Bytes(), 0o600); err != nil {
		return err
	}
	for _, nd := range n.nodes {
		if err := os.WriteFile(filepath.Join(nd.dir, "torrc"), []byte(n.torrc(nd)), 0o600); err != nil {
			return err
		}
	}
	return os.WriteFile(n.clientTorrc, []byte(n.clientLines()), 0o600)
}

// freePorts returns count distinct ports that are free on 127.0.0.1 when
// it returns; tor binds them a moment later. They are drawn at random
// below the usual ephemeral ranges (Linux 32768–60999, others from
// 49152), so that outgoing connections and other programs asking the
// kernel for any free port do not take them in that moment.
func freePorts(count int) ([]int, error) {
	const lo, hi = 10000, 32768
	var ports []int
	for tries := 0; len(ports) < count; tries++ {
		if tries == 1000 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lo+rand.IntN(hi-lo)))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// relayKeys makes nd's relay identity and reads its fingerprint. tor
// prints "nickname FING ERPR INT ..." and exits; the fake DirAuthority
// keeps it from loading the public authority list.
func (n *Network) relayKeys(ctx context.Context, nd *node) error {
	cmd := exec.CommandContext(ctx, "tor", "--quiet",
		"-f", n.emptyTorrc(), "--defaults-torrc", n.emptyTorrc(),
		"--list-fingerprint",
		"--DataDirectory", nd.dir,
		"--Nickname", nd.name,
		"--ORPort", "127.0.0.1:"+strconv.Itoa(nd.orPort),
		"--DirAuthority", "fake 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: tor --list-fingerprint: %w %s", nd.name, err, stderrOf(err))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 || f[0] != nd.name {
		return fmt.Errorf("%s: unexpected tor --list-fingerprint output %q", nd.name, out)
	}
	nd.fp = strings.Join(f[1:], "")
	if len(nd.fp) != 40 {
		return fmt.Errorf("%s: unexpected fingerprint %q", nd.name, nd.fp)
	}
	return nil
}

// authorityKeys makes nd's v3 authority identity, signing key and
// certificate (valid 12 months, for 127.0.0.1:DirPort), with an empty
// passphrase, and reads the identity fingerprint.
func authorityKeys(ctx context.Context, nd *node) error {
	keys := filepath.Join(nd.dir, "keys")
	cert := filepath.Join(keys, "authority_certificate")
	cmd := exec.CommandContext(ctx, "tor-gencert",
		"--create-identity-key", "--passphrase-fd", "0", "-m", "12",
		"-a", "127.0.0.1:"+strconv.Itoa(nd.dirPort),
		"-i", filepath.Join(keys, "authority_identity_key"),
		"-s", filepath.Join(keys, "authority_signing_key"),
		"-c", cert)
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: tor-gencert: %w: %s", nd.name, err, out)
	}
	b, err := os.ReadFile(cert)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "fingerprint" {
			nd.v3ident = f[1]
			return nil
		}
	}
	return fmt.Errorf("%s: no fingerprint in %s", nd.name, cert)
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// dirAuthorityLines returns the DirAuthority lines every tor of the
// network uses.
func (n *Network) dirAuthorityLines() string {
	var b strings.Builder
	for _, nd := range n.nodes {
		if nd.authority {
			fmt.Fprintf(&b, "DirAuthority %s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s\n",
				nd.name, nd.orPort, nd.v3ident, nd.dirPort, nd.fp)
		}
	}
	return b.String()
}

// torrc returns the configuration of an authority or relay.
func (n *Network) torrc(nd *node) string {
	var b strings.Builder
	fmt.Fprintf(&b, `TestingTorNetwork 1
DataDirectory %[1]s
Nickname %[2]s
RunAsDaemon 0
Log notice file %[1]s/notice.log
SafeLogging 0
ShutdownWaitLength 0
UseDefaultFallbackDirs 0
ServerDNSResolvConfFile /dev/null
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
AddressDisableIPv6 1
ClientUseIPv6 0
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
__OwningControllerProcess %[3]d
SocksPort 0
Address 127.0.0.1
ORPort 127.0.0.1:%[4]d
AssumeReachable 1
ExitRelay 0
ExitPolicy reject *:*
ContactInfo %[2]s@test.invalid
`, nd.dir, nd.name, os.Getpid(), nd.orPort)
	b.WriteString(n.dirAuthorityLines())
	if nd.authority {
		// Votes every 10 s (the first consensus lands on a multiple of
		// the interval); every relay Stable at once, since onion
		// service circuits need Stable last hops; equal measured
		// bandwidths.
		fmt.Fprintf(&b, `DirPort 127.0.0.1:%d
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
V3BandwidthsFile %s
AuthDirVoteStableGuaranteeMinUptime 0
AuthDirVoteStableGuaranteeMTBF 0
`, nd.dirPort, filepath.Join(n.dir, "bwfile"))
	}
	return b.String()
}

// clientLines returns the torrc of a client or onion-service tor on this
// network.
func (n *Network) clientLines() string {
	return "TestingTorNetwork 1\n" +
		"UseDefaultFallbackDirs 0\n" +
		"ClientUseIPv6 0\n" +
		"PathsNeededToBuildCircuits 0.67\n" +
		n.dirAuthorityLines()
}

// launch starts every authority and relay at once.
func (n *Network) launch() error {
	for _, nd := range n.nodes {
		out, err := os.OpenFile(filepath.Join(nd.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		cmd := exec.Command("tor", "-f", filepath.Join(nd.dir, "torrc"),
			"--defaults-torrc", n.emptyTorrc(), "--hush")
		cmd.Stdout = out
		cmd.Stderr = out
		err = cmd.Start()
		out.Close()
		if err != nil {
			return fmt.Errorf("start %s: %w", nd.name, err)
		}
		nd.cmd = cmd
		nd.done = make(chan struct{})
		go func() {
			cmd.Wait()
			close(nd.done)
		}()
	}
	return nil
}

// waitConsensus waits until the first authority's microdescriptor
// consensus lists every relay, failing early if a tor exits.
func (n *Network) waitConsensus(ctx context.Context) error {
	file := filepath.Join(n.nodes[0].dir, "cached-microdesc-consensus")
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	listed := 0
	for {
		if b, err := os.ReadFile(file); err == nil {
			listed = bytes.Count(b, []byte("\nr "))
			if listed >= len(n.nodes) {
				return nil
			}
		}
		for _, nd := range n.nodes {
			select {
			case <-nd.done:
				err := fmt.Errorf("%s exited: %v", nd.name, nd.cmd.ProcessState)
				// tor binds its ports before it opens its log, and reports
				// a failure on stdout: "Could not bind to 127.0.0.1:N:
				// Address already in use".
				if out, _ := os.ReadFile(filepath.Join(nd.dir, "stdout.log")); bytes.Contains(out, []byte("Could not bind")) {
					err = fmt.Errorf("%w: %w", err, errPortTaken)
				}
				return err
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus lists %d of %d relays: %w", listed, len(n.nodes), ctx.Err())
		case <-tick.C:
		}
	}
}

// microdescWait bounds how long Start waits for the directory caches.
const microdescWait = 30 * time.Second

// waitMicrodescs waits, for at most microdescWait, until every tor's
// directory cache holds the microdescriptor of every relay. A client that
// asks a cache that does not have them yet gets 404 and retries only
// about 10 s later; waiting here once saves that in every client that
// bootstraps on the network. The network works without, so this does not
// fail.
func (n *Network) waitMicrodescs(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, microdescWait)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		complete := true
		for _, nd := range n.nodes {
			// Each microdescriptor has one ntor-onion-key line; new
			// ones are appended to the .new journal.
			count := 0
			for _, f := range []string{"cached-microdescs", "cached-microdescs.new"} {
				b, _ := os.ReadFile(filepath.Join(nd.dir, f))
				count += bytes.Count(b, []byte("\nntor-onion-key "))
			}
			if count < len(n.nodes) {
				complete = false
				break
			}
		}
		if complete {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ClientTorrc returns the path of a torrc with the lines a client or
// onion-service tor needs to use this network (TestingTorNetwork, the
// network's DirAuthority lines, no fallback directories), for
// torutil.StartConfig.TorrcFile.
func (n *Network) ClientTorrc() string { return n.clientTorrc }

// Timing returns how long Start spent generating keys and waiting, from
// launching the tors, for the consensus to list every relay. Start then
// waits, at most 30 s more, for the directory caches to fill.
func (n *Network) Timing() (keygen, consensus time.Duration) { return n.keygen, n.consensus }

// Close stops exactly the tor processes Start started and waits for them
// to exit: SIGTERM, then SIGKILL for any still running after 10 s (a busy
// authority can take a while to handle the signal). It leaves the files
// in place. It is idempotent and returns nil.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, nd := range n.nodes {
			if nd.cmd == nil {
				continue
			}
			wg.Go(func() {
				nd.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-nd.done:
				case <-time.After(stopTimeout):
					nd.cmd.Process.Kill()
					<-nd.done
				}
			})
		}
		wg.Wait()
	})
	return nil
}

// Logs returns the last lines of each tor's notice log, and of its
// standard output where that is not empty (tor reports configuration
// errors there), for failure messages.
func (n *Network) Logs() string {
	var b strings.Builder
	for _, nd := range n.nodes {
		for _, name := range []string{"stdout.log", "notice.log"} {
			file := filepath.Join(nd.dir, name)
			data, err := os.ReadFile(file)
			if name == "stdout.log" && len(data) == 0 {
				continue
			}
			fmt.Fprintf(&b, "--- %s %s\n", nd.name, file)
			if err != nil {
				fmt.Fprintf(&b, "(%v)\n", err)
				continue
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			for _, l := range lines[max(0, len(lines)-logTailLines):] {
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}
