package queue

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ChainLength is the number of certificates in a relay's chain
// (PROTOCOL.md section 3): the online certificate, then the identity
// certificate.
const ChainLength = 2

// Certificate chain errors, returned (wrapped, with the reason) by
// VerifyChain.
var (
	// ErrChainIdentity is returned when the chain is not one of the pinned
	// identity: not ChainLength certificates, a last certificate whose key
	// is not Ed25519 or has another fingerprint (checks 1 and 2 of
	// section 3).
	ErrChainIdentity = errors.New("the certificate chain is not the pinned relay identity's")
	// ErrChainCertificate is returned when the chain ends in the pinned
	// identity but its first certificate is not certified by it, or is not
	// valid at the time of the check (checks 3 and 4).
	ErrChainCertificate = errors.New("the online certificate is not valid")
)

// VerifyChain checks a relay's certificate chain against the fingerprint
// fp at time now, as PROTOCOL.md section 3 says: exactly ChainLength
// certificates; the last one's key an Ed25519 key with fingerprint fp; the
// first one signed by that key, the last one being a CA certificate
// allowed to sign certificates; and now within the first one's validity.
// It is the one check that clients apply when they connect and relays
// apply to a certificate before they serve it.
func VerifyChain(certs []*x509.Certificate, fp Fingerprint, now time.Time) error {
	if len(certs) != ChainLength {
		return fmt.Errorf("%w: %d certificates, not the online and identity certificates", ErrChainIdentity, len(certs))
	}
	leaf, ca := certs[0], certs[1]
	pub, ok := ca.PublicKey.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("%w: the identity key is not Ed25519", ErrChainIdentity)
	}
	if got := FingerprintOf(pub); got != fp {
		return fmt.Errorf("%w: the relay is %v, the address pins %v", ErrChainIdentity, got, fp)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("%w: not certified by the relay's identity: %v", ErrChainCertificate, err)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: valid from %v to %v, not now", ErrChainCertificate,
			leaf.NotBefore.UTC().Format(time.DateTime), leaf.NotAfter.UTC().Format(time.DateTime))
	}
	return nil
}

// ParseChain parses DER certificates, as in tls.Certificate.Certificate.
func ParseChain(der [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(der))
	for i, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrChainIdentity, i+1, err)
		}
		certs[i] = c
	}
	return certs, nil
}
