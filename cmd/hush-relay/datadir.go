package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unicode/utf8"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// The data directory's files.
const (
	defaultDataDir = "./hush-relay-data"
	configFile     = "config.toml"   // settings, written by init (0600: may hold the password)
	identityFile   = "identity.key"  // the long-term Ed25519 identity, PKCS#8 PEM, 0600
	certFile       = "cert.pem"      // the online certificate chain [online, identity]
	certKeyFile    = "cert.key"      // the online private key, PKCS#8 PEM, 0600
	storeFile      = "relay.db"      // the bbolt store of queues and messages
	storeKeysFile  = "relay.db.keys" // the keys of the messages in relay.db, 0600 (created by start)
)

// renewBefore is how long before its end the online certificate is
// replaced at start, when the identity key is present.
const renewBefore = 30 * 24 * time.Hour

// errInitialized is returned by initialize when the data directory already
// holds an identity.
var errInitialized = errors.New("already initialized")

// initResult says what initialize did.
type initResult struct {
	wroteConfig bool
	// generatedPassword is set when initialize made up a password and
	// wrote it to config.toml.
	generatedPassword bool
}

// initialize creates the data directory o.dataDir: config.toml (unless it
// exists), identity.key, cert.pem and cert.key. It refuses a directory that
// holds an identity or a certificate, or a store without either. If
// strict, it also refuses flags that would be lost because config.toml
// exists.
func initialize(o *options, strict bool) (initResult, error) {
	var res initResult
	dir := o.dataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	for _, name := range []string{identityFile, certFile} {
		if exists(filepath.Join(dir, name)) {
			return res, fmt.Errorf("%s is %w: %s exists; refusing to overwrite the relay's identity", dir, errInitialized, name)
		}
	}
	if exists(filepath.Join(dir, storeFile)) {
		return res, fmt.Errorf("%s holds %s but no %s: restore identity.key from a backup (the relay's address depends on it), or move %s away to start a new relay",
			dir, storeFile, identityFile, storeFile)
	}

	configPath := filepath.Join(dir, configFile)
	if !exists(configPath) {
		set := map[string]string{}
		if o.listen != "" {
			set["listen"] = tomlString(o.listen)
		}
		if o.host != "" {
			set["host"] = tomlString(o.host)
		}
		switch {
		case o.noPassword:
			set["password"] = `""`
		case o.password != "":
			set["password"] = tomlString(o.password)
		case o.passwordFile != "":
			abs, err := filepath.Abs(o.passwordFile)
			if err != nil {
				return res, err
			}
			if !utf8.ValidString(abs) {
				return res, fmt.Errorf("--password-file: the path %q is not valid UTF-8", abs)
			}
			if _, err := readPasswordFile(abs); err != nil {
				return res, err
			}
			set["password_file"] = tomlString(abs)
		default:
			set["password"] = tomlString(generatePassword())
			res.generatedPassword = true
		}
		// Check the settings before writing them.
		if _, err := loadSettings(o); err != nil {
			return res, err
		}
		if err := writeFileAtomic(configPath, configText(set), 0o600, true); err != nil {
			return res, err
		}
		res.wroteConfig = true
	} else if strict && (o.listen != "" || o.host != "" || o.password != "" || o.passwordFile != "" || o.noPassword) {
		return res, fmt.Errorf("%s exists: edit it instead of passing --listen, --host or a password flag to init", configPath)
	}

	_, identity, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return res, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(identity)
	if err != nil {
		return res, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, identityFile), keyPEM, 0o600, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return res, fmt.Errorf("%s is %w: %s exists; refusing to overwrite the relay's identity", dir, errInitialized, identityFile)
		}
		return res, err
	}
	if _, err := issueCertificate(dir, identity); err != nil {
		return res, err
	}
	return res, nil
}

// generatePassword returns 24 random characters of base64url.
func generatePassword() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// isEmpty reports whether the data directory needs initializing: it holds
// neither an identity nor a certificate.
func isEmpty(dir string) bool {
	return !exists(filepath.Join(dir, identityFile)) && !exists(filepath.Join(dir, certFile))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// readSecret reads a private key file, refusing one that others may read.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %#o): it holds a private key; run \"chmod 600 %s\" if it was not exposed", path, perm, path)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parsePrivateKey parses an Ed25519 private key in PKCS#8 PEM.
func parsePrivateKey(path string, data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return key, nil
}

// loadIdentity returns the relay's identity key, or nil if identity.key
// does not exist (the identity may be kept offline once a certificate was
// issued).
func loadIdentity(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, identityFile)
	data, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parsePrivateKey(path, data)
}

// issueCertificate issues a new online certificate for identity and writes
// it to cert.key and cert.pem.
func issueCertificate(dir string, identity ed25519.PrivateKey) (tls.Certificate, error) {
	cert, err := relay.IssueCertificate(identity, 0)
	if err != nil {
		return cert, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return cert, err
	}
	// The key first: a crash between the two writes leaves a pair that
	// does not match, which the next start replaces.
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, certKeyFile), keyPEM, 0o600, false); err != nil {
		return cert, err
	}
	var chain []byte
	for _, c := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := writeFileAtomic(filepath.Join(dir, certFile), chain, 0o644, false); err != nil {
		return cert, err
	}
	return cert, nil
}

// loadCertificate returns the relay's online certificate. When identity is
// not nil, a missing, unusable, foreign or nearly expired certificate is
// replaced by a new one, and note says why; without the identity these are
// errors.
func loadCertificate(dir string, identity ed25519.PrivateKey) (cert tls.Certificate, note string, err error) {
	cert, err = readCertificate(dir)
	if err == nil {
		var fp queue.Fingerprint
		fp, err = relay.CertificateFingerprint(cert)
		switch {
		case err != nil:
		case identity != nil && fp != queue.FingerprintOf(identity.Public().(ed25519.PublicKey)):
			err = fmt.Errorf("%s was not issued by %s", certFile, identityFile)
		case time.Until(cert.Leaf.NotAfter) < renewBefore:
			if identity == nil && time.Now().After(cert.Leaf.NotAfter) {
				return cert, "", fmt.Errorf("%s expired on %s, and %s is not in %s to issue a new one",
					certFile, cert.Leaf.NotAfter.Format(time.DateOnly), identityFile, dir)
			}
			if identity == nil {
				note = fmt.Sprintf("warning: %s expires on %s: put %s back into %s and restart to renew it",
					certFile, cert.Leaf.NotAfter.Format(time.DateOnly), identityFile, dir)
				return cert, note, nil
			}
			note = fmt.Sprintf("%s expires on %s: issued a new online certificate", certFile, cert.Leaf.NotAfter.Format(time.DateOnly))
		default:
			return cert, "", nil
		}
	}
	if identity == nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cert, "", fmt.Errorf("%s holds neither %s nor %s: not a relay data directory", dir, identityFile, certFile)
		}
		return cert, "", err
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			note = "issued a new online certificate (" + certFile + " was missing)"
		} else {
			note = fmt.Sprintf("issued a new online certificate (%v)", err)
		}
	}
	cert, err = issueCertificate(dir, identity)
	return cert, note, err
}

// readCertificate reads cert.pem and cert.key.
func readCertificate(dir string) (tls.Certificate, error) {
	chain, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readSecret(filepath.Join(dir, certKeyFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return cert, fmt.Errorf("%s and %s: %w", certFile, certKeyFile, err)
	}
	if len(cert.Certificate) != 2 {
		return cert, fmt.Errorf("%s: want 2 certificates (online and identity), have %d", certFile, len(cert.Certificate))
	}
	return cert, nil
}

// fingerprint returns the relay's fingerprint: that of identity.key, or of
// the identity certificate in cert.pem if the identity is kept offline.
func fingerprint(dir string) (queue.Fingerprint, error) {
	id, err := loadIdentity(dir)
	if err != nil {
		return queue.Fingerprint{}, err
	}
	if id != nil {
		return queue.FingerprintOf(id.Public().(ed25519.PublicKey)), nil
	}
	data, err := os.ReadFile(filepath.Join(dir, certFile))
	if errors.Is(err, fs.ErrNotExist) {
		return queue.Fingerprint{}, fmt.Errorf("%s holds neither %s nor %s: run \"hush-relay init --data %s\" first", dir, identityFile, certFile, dir)
	}
	if err != nil {
		return queue.Fingerprint{}, err
	}
	var cert tls.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, block.Bytes)
		}
	}
	fp, err := relay.CertificateFingerprint(cert)
	if err != nil {
		return fp, fmt.Errorf("%s: %w", certFile, err)
	}
	return fp, nil
}

// writeFileAtomic writes data to path with the given permissions, so that
// path holds either its old contents or all of data, even after a crash:
// through a synced temporary file renamed (or, if noClobber, hard-linked,
// failing with fs.ErrExist if path exists) into place.
func writeFileAtomic(path string, data []byte, perm os.FileMode, noClobber bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if noClobber {
		err = os.Link(tmp, path)
		os.Remove(tmp)
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be synced there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// resetKey returns the relay's QUIC stateless reset key: derived from the
// identity key, so that it survives restarts and rotations. When the
// identity is kept offline it is derived from the online key instead
// (relay.StatelessResetKey of that key): it then survives restarts, not
// rotations.
func resetKey(identity ed25519.PrivateKey, cert tls.Certificate) [32]byte {
	if identity != nil {
		return relay.StatelessResetKey(identity)
	}
	if k, ok := cert.PrivateKey.(ed25519.PrivateKey); ok {
		return relay.StatelessResetKey(k)
	}
	return [32]byte{} // a random key for this run
}
