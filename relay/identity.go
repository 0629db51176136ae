package relay

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/hushrelay/hush/queue"
)

// Certificate lifetimes used by IssueCertificate.
const (
	// identityValidity is how long the self-signed identity certificate is
	// valid. The address pins the key, not this certificate, so it is
	// re-issued with every online certificate.
	identityValidity = 20 * 365 * 24 * time.Hour
	// DefaultCertificateValidity is the online certificate's default
	// lifetime; rotate it before it ends (hush-relay rotate-cert).
	DefaultCertificateValidity = 365 * 24 * time.Hour
)

// IssueCertificate creates a new online TLS certificate for the relay whose
// long-term identity is identity: a fresh Ed25519 key, certified by a
// self-signed certificate of the identity key. The returned chain is
// [online, identity]; clients accept it when the last certificate's key has
// the fingerprint in the relay's address and certifies the first. The
// identity key can stay offline between rotations. validity 0 means
// DefaultCertificateValidity.
func IssueCertificate(identity ed25519.PrivateKey, validity time.Duration) (tls.Certificate, error) {
	if validity == 0 {
		validity = DefaultCertificateValidity
	}
	now := time.Now().Add(-time.Hour) // tolerate small clock skew
	idPub := identity.Public().(ed25519.PublicKey)
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "hush relay " + queue.FingerprintOf(idPub).String()},
		NotBefore:             now,
		NotAfter:              now.Add(identityValidity),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, idPub, identity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue identity certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, err
	}
	onlinePub, onlineKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "hush relay online key"},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, onlinePub, identity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue online certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: onlineKey}, nil
}

// CertificateFingerprint returns the fingerprint that a relay using cert
// has: that of the key of the last certificate in its chain.
func CertificateFingerprint(cert tls.Certificate) (queue.Fingerprint, error) {
	if len(cert.Certificate) != queue.ChainLength {
		return queue.Fingerprint{}, fmt.Errorf("relay certificate: want a chain of online and identity certificates, have %d", len(cert.Certificate))
	}
	ca, err := x509.ParseCertificate(cert.Certificate[len(cert.Certificate)-1])
	if err != nil {
		return queue.Fingerprint{}, fmt.Errorf("relay certificate: %w", err)
	}
	pub, ok := ca.PublicKey.(ed25519.PublicKey)
	if !ok {
		return queue.Fingerprint{}, fmt.Errorf("relay certificate: the identity key is not Ed25519")
	}
	return queue.FingerprintOf(pub), nil
}

// statelessResetInfo is the HKDF info of StatelessResetKey.
const statelessResetInfo = "hush/1 stateless reset"

// StatelessResetKey returns the QUIC stateless reset key (RFC 9000
// section 10.3) of the relay whose identity is identity:
//
//	HKDF-SHA256(IKM = the identity's 32-byte Ed25519 seed, salt = none,
//	            info = "hush/1 stateless reset", L = 32)
//
// It is the same at every start, so a relay that restarts answers a
// client still sending on a connection of its previous run with a
// stateless reset, which ends that connection at once instead of after the
// client's idle timeout. The key reveals nothing about the identity key
// (HKDF is one-way).
func StatelessResetKey(identity ed25519.PrivateKey) [32]byte {
	var k [32]byte
	out, err := hkdf.Key(sha256.New, identity.Seed(), nil, statelessResetInfo, len(k))
	if err != nil {
		panic(err) // unreachable: 32 bytes of SHA-256 HKDF
	}
	copy(k[:], out)
	return k
}

func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	return new(big.Int).SetBytes(b)
}
