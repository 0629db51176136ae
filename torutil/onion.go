package torutil

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cretz/bine/control"
	bineed25519 "github.com/cretz/bine/torutil/ed25519"
)

// onionVersion is the version byte of v3 onion addresses.
const onionVersion = 3

// onionEncoding is the base32 alphabet of onion addresses, lower case.
var onionEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// OnionHost returns the v3 onion host ("<56 characters>.onion") of an
// onion service's ed25519 public key, as rend-spec-v3 §6 defines it:
// base32(PUBKEY | CHECKSUM | VERSION), where CHECKSUM is the first two
// bytes of SHA3-256(".onion checksum" | PUBKEY | VERSION) and VERSION is 3.
// It panics if pub is not ed25519.PublicKeySize bytes long.
func OnionHost(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		panic("torutil: OnionHost: bad public key length")
	}
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{onionVersion})
	sum := h.Sum(nil)
	b := make([]byte, 0, ed25519.PublicKeySize+3)
	b = append(b, pub...)
	b = append(b, sum[0], sum[1], onionVersion)
	return onionEncoding.EncodeToString(b) + ".onion"
}

// keyPEMType is the PEM block type of onion key files (PKCS #8).
const keyPEMType = "PRIVATE KEY"

// loadOrCreateKey reads the ed25519 key in keyFile (PEM, PKCS #8), or, if
// keyFile does not exist, generates a key and writes it there with mode
// 0600. It never overwrites an existing file.
func loadOrCreateKey(keyFile string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(keyFile)
	if err == nil {
		return parseKey(b, keyFile)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("torutil: onion key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("torutil: onion key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("torutil: onion key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: keyPEMType, Bytes: der})
	if err := writeNewFile(keyFile, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Someone else created it first: use theirs.
			return loadOrCreateKey(keyFile)
		}
		return nil, fmt.Errorf("torutil: onion key: %w", err)
	}
	return key, nil
}

func parseKey(b []byte, name string) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != keyPEMType {
		return nil, fmt.Errorf("torutil: onion key %s: not a PEM %q block", name, keyPEMType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("torutil: onion key %s: %w", name, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("torutil: onion key %s: a %T, not an ed25519 key", name, k)
	}
	return key, nil
}

// writeNewFile creates name with mode 0600 and the given contents,
// atomically: it writes a temporary file beside it, syncs it and links it
// into place, failing with fs.ErrExist if name already exists.
func writeNewFile(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name() // created with mode 0600
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, name); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// serviceID is an onion host without its ".onion" suffix, the form the
// control protocol uses.
func serviceID(host string) string { return strings.TrimSuffix(host, ".onion") }

// uploadGrace is how long Publish waits, after the first directory has
// the descriptor, for uploads to the other directories to finish.
const uploadGrace = 10 * time.Second

// Publish publishes an onion service that forwards connections to its
// port onionPort to target, a local TCP address given as IP:port (for
// example the relay's TLS listener "127.0.0.1:5223"; no name is resolved).
// The service's ed25519 key is read from keyFile (PEM, PKCS #8), or, if
// keyFile does not exist, generated and saved there with mode 0600, so
// the onion host stays the same across restarts.
//
// Publish returns the onion host ("<56 characters>.onion") once tor
// reports that the service descriptor is on the onion service directories
// it was sent to (waiting at most 10 s for the others once the first has
// it), which is when clients can start to reach it. ctx bounds the wait;
// on failure the service is removed again. Publishing a key that is
// already published through the same tor fails.
//
// remove removes the service (DEL_ONION); it is idempotent and returns
// nil once the Tor is closed, since closing it ends its services too.
func (t *Tor) Publish(ctx context.Context, keyFile string, onionPort int, target string) (onion string, remove func() error, err error) {
	if onionPort < 1 || onionPort > 65535 {
		return "", nil, fmt.Errorf("torutil: onion port %d out of range", onionPort)
	}
	if ap, err := netip.ParseAddrPort(target); err != nil || ap.Port() == 0 {
		return "", nil, fmt.Errorf("torutil: onion target %q is not an IP:port", target)
	}
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return "", nil, err
	}
	host := OnionHost(key.Public().(ed25519.PublicKey))
	id := serviceID(host)

	// Watch before ADD_ONION so that no upload event is missed.
	w := &uploadWatch{id: id}
	t.mu.Lock()
	if err := t.connErr; err != nil {
		t.mu.Unlock()
		return "", nil, err
	}
	t.uploads[w] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.uploads, w)
		t.mu.Unlock()
	}()

	t.reqMu.Lock()
	resp, err := t.ctl.AddOnion(&control.AddOnionRequest{
		Key:   &control.ED25519Key{KeyPair: bineed25519.FromCryptoPrivateKey(key)},
		Ports: []*control.KeyVal{{Key: strconv.Itoa(onionPort), Val: target}},
	})
	t.reqMu.Unlock()
	if err != nil {
		return "", nil, fmt.Errorf("torutil: publish onion %s: %w", host, t.ctlErr(err))
	}
	remove = sync.OnceValue(func() error {
		t.mu.Lock()
		closed := errors.Is(t.connErr, net.ErrClosed)
		t.mu.Unlock()
		if closed {
			return nil
		}
		t.reqMu.Lock()
		err := t.ctl.DelOnion(id)
		t.reqMu.Unlock()
		if err != nil {
			return fmt.Errorf("torutil: remove onion %s: %w", host, t.ctlErr(err))
		}
		return nil
	})
	if resp.ServiceID != id {
		remove()
		return "", nil, fmt.Errorf("torutil: tor published the key in %s as %s.onion, not %s", keyFile, resp.ServiceID, host)
	}
	err = t.wait(ctx, func() bool { return w.uploaded > 0 })
	if err == nil {
		// tor uploads the descriptor to several directories at once; a
		// client may ask any of them. Give the others a moment to finish.
		gctx, cancel := context.WithTimeout(ctx, uploadGrace)
		t.wait(gctx, func() bool { return !w.pending() })
		cancel()
	}
	if err != nil {
		t.mu.Lock()
		msg := fmt.Sprintf("%d descriptor uploads started, %d failed", w.attempts, w.failures)
		if w.reason != "" {
			msg += ", last failure: " + w.reason
		}
		t.mu.Unlock()
		remove()
		err = fmt.Errorf("torutil: onion %s not published (%s): %w", host, msg, err)
		if t.logs != nil {
			err = fmt.Errorf("%w; tor's last log lines:\n%s", err, t.logs)
		}
		return "", nil, err
	}
	return host, remove, nil
}

// ctlErr returns the reason the control connection ended, if it has, in
// place of the I/O error a command failed with.
func (t *Tor) ctlErr(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.connErr != nil {
		return t.connErr
	}
	return err
}
