package relaytest

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// HandshakeTimeout is the handshake deadline of the relays New starts,
// shorter than the relay's default so that tests of it end sooner.
const HandshakeTimeout = 5 * time.Second

// Relay is a test relay running in this process (New).
type Relay struct {
	*relay.Relay
	// Config is the configuration it was started with; Restart uses it.
	Config relay.Config
	// Identity is its identity key; Config.Certificate is issued by it.
	Identity ed25519.PrivateKey
	// Address is its address: the listeners' host (127.0.0.1 by default)
	// and port, the password if the relay has one.
	Address queue.Address
	// HostPort is Address.HostPort(): host:port of both listeners.
	HostPort string
}

// New starts a relay in this process, listening on a free port of
// 127.0.0.1 (or of the host that edit sets in Config.Listen), with a new
// identity, a store in t.TempDir() and a HandshakeTimeout deadline; edit,
// if not nil, adjusts the configuration first. The relay is closed when the test ends.
func New(t testing.TB, edit func(*relay.Config)) *Relay {
	t.Helper()
	_, id, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := relay.Config{
		Listen:           "127.0.0.1:0",
		Certificate:      cert,
		StorePath:        filepath.Join(t.TempDir(), "relay.db"),
		HandshakeTimeout: HandshakeTimeout,
	}
	if edit != nil {
		edit(&cfg)
	}
	r := &Relay{Config: cfg, Identity: id}
	r.start(t)
	return r
}

// start runs a relay with r.Config and points r's addresses at it.
func (r *Relay) start(t testing.TB) {
	t.Helper()
	rl, err := relay.New(r.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	fp, err := relay.CertificateFingerprint(r.Config.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	r.Relay = rl
	r.Address = queue.Address{
		Fingerprint: fp,
		Password:    r.Config.Password,
		Host:        rl.Addr().(*net.TCPAddr).IP.String(),
		Port:        uint16(rl.Addr().(*net.TCPAddr).Port),
	}
	r.HostPort = r.Address.HostPort()
}

// Restart closes the relay and starts it again with the same
// configuration, store and identity, on a new free port (the old one may
// be taken by then).
func (r *Relay) Restart(t testing.TB) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Config.Listen = "127.0.0.1:0"
	r.start(t)
}
