package queue_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"

	"github.com/hushrelay/hush/queue"
)

// forwardInner is an inner transmission of the tests: a SEND.
func forwardInner(body []byte) []byte {
	tx := queue.Transmission{
		Auth: seq(0xa0, queue.AuthSize), CorrID: seq(0xc0, queue.CorrIDSize), Entity: seq(0xe0, queue.IDSize),
		Command: queue.Command{Tag: queue.TagSEND, Body: body},
	}
	return tx.Append(nil)
}

func forwardParties(t *testing.T) (eph, session *ecdh.PrivateKey, binding []byte) {
	t.Helper()
	return mustPriv(t, testScalar("forward ephemeral")), mustPriv(t, testScalar("forward session")), seq(0xb0, 32)
}

func TestForwardSealOpen(t *testing.T) {
	eph, ses, binding := forwardParties(t)
	for _, body := range [][]byte{{}, []byte("hello"), seq(1, queue.MaxMessageSize)} {
		inner := forwardInner(body)
		sealed, csec, err := queue.SealForward([]byte("x"), eph, queue.PublicKey(ses), binding, 1700000000, inner)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != 1+queue.ForwardSealedSize || sealed[0] != 'x' {
			t.Fatalf("sealed %d bytes", len(sealed))
		}
		ts, got, rsec, err := queue.OpenForward(ses, binding, queue.PublicKey(eph), sealed[1:])
		if err != nil || ts != 1700000000 || !bytes.Equal(got, inner) {
			t.Fatalf("OpenForward = %d, %d bytes, %v", ts, len(got), err)
		}
		if rsec.Ephemeral != csec.Ephemeral || rsec.Ephemeral != queue.PublicKey(eph) {
			t.Fatal("the two ends' secrets name different commands")
		}
		resp := (&queue.Transmission{CorrID: seq(0xc0, queue.CorrIDSize), Entity: seq(0xe0, queue.IDSize), Command: queue.Command{Tag: queue.TagOK}}).Append(nil)
		var nonce [24]byte
		rand.Read(nonce[:])
		res := queue.SealForwardResponse(nil, &rsec, nonce, 1700000001, resp)
		if len(res) != queue.ForwardResponseSize {
			t.Fatalf("response of %d bytes", len(res))
		}
		rt, gotResp, err := queue.OpenForwardResponse(&csec, res)
		if err != nil || rt != 1700000001 || !bytes.Equal(gotResp, resp) {
			t.Fatalf("OpenForwardResponse = %d, %x, %v", rt, gotResp, err)
		}
	}
	// The largest inner transmission fits a PFWD transmission in a block.
	sealed, _, err := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 0, forwardInner(seq(1, queue.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	pfwd := queue.Transmission{CorrID: seq(1, queue.CorrIDSize), Entity: seq(2, queue.IDSize),
		Command: queue.Command{Tag: queue.TagPFWD, EphemeralKey: queue.PublicKey(eph), Sealed: sealed}}
	if n := len(pfwd.Append(nil)); n > queue.MaxTransmissionSize || len(forwardInner(seq(1, queue.MaxMessageSize))) != queue.MaxForwardedSize {
		t.Fatalf("PFWD transmission of %d bytes, inner %d", n, len(forwardInner(seq(1, queue.MaxMessageSize))))
	}
	mustPanic(t, "SealForward of an empty transmission", func() { queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 0, nil) })
	mustPanic(t, "SealForward of a long transmission", func() {
		queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 0, make([]byte, queue.MaxForwardedSize+1))
	})
	if _, _, err := queue.SealForward(nil, eph, queue.Key{}, binding, 0, []byte{1}); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("SealForward to a low-order key: %v", err)
	}
	if _, _, _, err := queue.OpenForward(ses, binding, queue.Key{}, sealed); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("OpenForward of a low-order ephemeral key: %v", err)
	}
}

// TestForwardTamper: a forwarding relay that changes any bit of a sealed
// command, its ephemeral key, or sends it on another session (another
// session key or binding), gets nothing the destination accepts; any bit
// changed in a response is refused by the client.
func TestForwardTamper(t *testing.T) {
	eph, ses, binding := forwardParties(t)
	inner := forwardInner([]byte("tamper"))
	sealed, csec, err := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 42, inner)
	if err != nil {
		t.Fatal(err)
	}
	ek := queue.PublicKey(eph)
	open := func(s []byte, k queue.Key, priv *ecdh.PrivateKey, b []byte) error {
		_, _, _, err := queue.OpenForward(priv, b, k, s)
		return err
	}
	// Every bit of the first and last 64 bytes (the timestamp, length,
	// start of the transmission; the tag), and every 61st bit elsewhere.
	for bit := 0; bit < len(sealed)*8; bit++ {
		if byteAt := bit / 8; byteAt >= 64 && byteAt < len(sealed)-64 && bit%61 != 0 {
			continue
		}
		s := bytes.Clone(sealed)
		s[bit/8] ^= 1 << (bit % 8)
		if err := open(s, ek, ses, binding); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d of the sealed command flipped: %v, want ErrOpen", bit, err)
		}
	}
	for bit := 0; bit < queue.KeySize*8; bit++ {
		k := ek
		k[bit/8] ^= 1 << (bit % 8)
		if err := open(sealed, k, ses, binding); err == nil {
			t.Fatalf("bit %d of the ephemeral key flipped: accepted", bit)
		}
	}
	other := mustPriv(t, testScalar("another session"))
	if err := open(sealed, ek, other, binding); !errors.Is(err, queue.ErrOpen) {
		t.Errorf("another session key: %v", err)
	}
	for i := range binding {
		b := bytes.Clone(binding)
		b[i] ^= 0x01
		if err := open(sealed, ek, ses, b); !errors.Is(err, queue.ErrOpen) {
			t.Errorf("binding byte %d changed: %v", i, err)
		}
	}
	if err := open(sealed[:len(sealed)-1], ek, ses, binding); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("short sealed command: %v", err)
	}

	_, _, rsec, err := queue.OpenForward(ses, binding, ek, sealed)
	if err != nil {
		t.Fatal(err)
	}
	res := queue.SealForwardResponse(nil, &rsec, [24]byte{1}, 43, []byte("response"))
	for bit := 0; bit < len(res)*8; bit++ {
		r := bytes.Clone(res)
		r[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenForwardResponse(&csec, r); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d of the response flipped: %v, want ErrOpen", bit, err)
		}
	}
	// A response to another command does not open.
	eph2 := mustPriv(t, testScalar("another ephemeral"))
	_, csec2, err := queue.SealForward(nil, eph2, queue.PublicKey(ses), binding, 42, inner)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := queue.OpenForwardResponse(&csec2, res); !errors.Is(err, queue.ErrOpen) {
		t.Errorf("a response to another command: %v", err)
	}
	if _, _, err := queue.OpenForwardResponse(&csec, res[1:]); !errors.Is(err, queue.ErrSyntax) {
		t.Errorf("short response: %v", err)
	}
}

// specForwardKeys derives the keys of section 20 with x/crypto, not with
// the package's code.
func specForwardKeys(t *testing.T, priv, peer, binding []byte) (req, res []byte) {
	t.Helper()
	secret, err := curve25519.X25519(priv, peer)
	if err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 64)
	if _, err := hkdf.New(sha256.New, secret, binding, []byte("hush/1 forward")).Read(k); err != nil {
		t.Fatal(err)
	}
	return k[:32], k[32:]
}

// TestForwardMalformedPlaintext seals, with keys derived from the text of
// section 20, plaintexts that authenticate but are malformed: a length of
// 0 or over the maximum, non-zero padding. OpenForward and
// OpenForwardResponse refuse them with ErrSyntax; well-formed ones open.
func TestForwardMalformedPlaintext(t *testing.T) {
	eph, ses, binding := forwardParties(t)
	ek := queue.PublicKey(eph)
	sk := queue.PublicKey(ses)
	reqKey, resKey := specForwardKeys(t, testScalar("forward ephemeral"), sk[:], binding)
	reqAEAD, _ := chacha20poly1305.NewX(reqKey)
	resAEAD, _ := chacha20poly1305.NewX(resKey)
	plain := func(size, n int, content []byte) []byte {
		p := make([]byte, size)
		binary.BigEndian.PutUint64(p, 7)
		binary.BigEndian.PutUint16(p[8:], uint16(n))
		copy(p[10:], content)
		return p
	}
	good := plain(queue.ForwardPlainSize, 3, []byte("abc"))
	bad := map[string][]byte{
		"length 0":         plain(queue.ForwardPlainSize, 0, nil),
		"length over max":  plain(queue.ForwardPlainSize, queue.MaxForwardedSize+1, nil),
		"non-zero padding": plain(queue.ForwardPlainSize, 3, []byte("abcd")),
	}
	nonce := make([]byte, 24)
	if ts, inner, _, err := queue.OpenForward(ses, binding, ek, reqAEAD.Seal(nil, nonce, good, ek[:])); err != nil || ts != 7 || string(inner) != "abc" {
		t.Fatalf("a command sealed as section 20 says: %d %q %v", ts, inner, err)
	}
	for name, p := range bad {
		if _, _, _, err := queue.OpenForward(ses, binding, ek, reqAEAD.Seal(nil, nonce, p, ek[:])); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("command with %s: %v, want ErrSyntax", name, err)
		}
	}
	_, csec, err := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 7, []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	respPlainSize := queue.ForwardResponseSize - 24 - 16
	rnonce := seq(0x10, 24)
	goodResp := plain(respPlainSize, 2, []byte("ok"))
	if rt, resp, err := queue.OpenForwardResponse(&csec, append(bytes.Clone(rnonce), resAEAD.Seal(nil, rnonce, goodResp, ek[:])...)); err != nil || rt != 7 || string(resp) != "ok" {
		t.Fatalf("a response sealed as section 20 says: %d %q %v", rt, resp, err)
	}
	for name, p := range map[string][]byte{
		"length 0":         plain(respPlainSize, 0, nil),
		"length over max":  plain(respPlainSize, queue.MaxForwardedResponseSize+1, nil),
		"non-zero padding": plain(respPlainSize, 2, []byte("okk")),
	} {
		r := append(bytes.Clone(rnonce), resAEAD.Seal(nil, rnonce, p, ek[:])...)
		if _, _, err := queue.OpenForwardResponse(&csec, r); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("response with %s: %v, want ErrSyntax", name, err)
		}
	}
}

// testChain issues a relay chain (online, identity) like the relay's, from
// the identity key id, valid from notBefore to notAfter, and returns it
// with the online private key.
func testChain(t *testing.T, id ed25519.PrivateKey, notBefore, notAfter time.Time) ([][]byte, ed25519.PrivateKey) {
	t.Helper()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test identity"},
		NotBefore: notBefore, NotAfter: notAfter.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, id.Public(), id)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	onlinePub, online, _ := ed25519.GenerateKey(rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, onlinePub, id)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{leafDER, caDER}, online
}

// TestAttestation: a client accepts a session key only with the signature
// of an online key that the pinned identity certified; any change to the
// key, the binding or the signature, another relay's chain, or an expired
// certificate is refused.
func TestAttestation(t *testing.T) {
	now := time.Now()
	idPub, id, _ := ed25519.GenerateKey(rand.Reader)
	fp := queue.FingerprintOf(idPub)
	chain, online := testChain(t, id, now.Add(-time.Hour), now.Add(time.Hour))
	sk, binding := key(0x51), seq(0x52, 32)
	a := queue.SignAttestation(online, chain, sk, binding)
	if err := a.Verify(fp, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Through the wire and back.
	cmd := queue.Command{Tag: queue.TagPKEY, Attestation: a}
	p, err := queue.ParseCommand(cmd.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Attestation.Verify(fp, now); err != nil {
		t.Fatalf("parsed attestation: %v", err)
	}
	for bit := 0; bit < (queue.KeySize+queue.BindingSize+queue.SignatureSize)*8; bit++ {
		b := a
		switch i := bit / 8; {
		case i < 32:
			b.SessionKey[i] ^= 1 << (bit % 8)
		case i < 64:
			b.Binding[i-32] ^= 1 << (bit % 8)
		default:
			b.Signature[i-64] ^= 1 << (bit % 8)
		}
		if err := b.Verify(fp, now); !errors.Is(err, queue.ErrAttestation) {
			t.Fatalf("bit %d flipped: %v, want ErrAttestation", bit, err)
		}
	}
	// Changes to the online certificate break its parsing or its
	// signature; a sample of bits. (The identity certificate is not
	// pinned, only its key, section 3.)
	for c := range 1 {
		for bit := 0; bit < len(a.Chain[c])*8; bit += 37 {
			b := a
			b.Chain[c] = bytes.Clone(a.Chain[c])
			b.Chain[c][bit/8] ^= 1 << (bit % 8)
			if err := b.Verify(fp, now); err == nil {
				t.Fatalf("certificate %d, bit %d flipped: accepted", c, bit)
			}
		}
	}
	otherPub, other, _ := ed25519.GenerateKey(rand.Reader)
	if err := a.Verify(queue.FingerprintOf(otherPub), now); !errors.Is(err, queue.ErrChainIdentity) {
		t.Errorf("another relay's fingerprint: %v", err)
	}
	// Another relay's chain and its own valid signature: not the pinned one.
	otherChain, otherOnline := testChain(t, other, now.Add(-time.Hour), now.Add(time.Hour))
	if err := queue.SignAttestation(otherOnline, otherChain, sk, binding).Verify(fp, now); !errors.Is(err, queue.ErrChainIdentity) {
		t.Errorf("another relay's attestation: %v", err)
	}
	// The pinned chain with a signature by another key.
	if err := queue.SignAttestation(otherOnline, chain, sk, binding).Verify(fp, now); !errors.Is(err, queue.ErrAttestation) {
		t.Errorf("a signature by another online key: %v", err)
	}
	if err := a.Verify(fp, now.Add(2*time.Hour)); !errors.Is(err, queue.ErrChainCertificate) {
		t.Errorf("an expired online certificate: %v", err)
	}
}

// TestParseForwardCommandsRejects: the forwarding commands accept exactly
// one encoding.
func TestParseForwardCommandsRejects(t *testing.T) {
	addr := prxyAddress()
	withPassword := addr
	withPassword.Password = "pw"
	att := (&queue.Command{Tag: queue.TagPKEY, Attestation: testAttestation()}).Append(nil)
	cases := map[string][]byte{
		"PRXY empty":              cat(0x20, u16(0)),
		"PRXY with a password":    cat(0x20, u16(len(withPassword.String())), withPassword.String()),
		"PRXY without the port":   cat(0x20, u16(len("hush://"+addr.Fingerprint.String()+"@relay.example")), "hush://"+addr.Fingerprint.String()+"@relay.example"),
		"PRXY not an address":     cat(0x20, u16(5), "hello"),
		"PRXY short":              cat(0x20, u16(100), "hush://"),
		"PRXY too long":           cat(0x20, u16(queue.MaxAddressSize+1), make([]byte, queue.MaxAddressSize+1)),
		"PRXY trailing":           append(cat(0x20, u16(len(addr.String())), addr.String()), 0),
		"PFWD short":              cat(0x21, key(1), seq(0, queue.ForwardSealedSize-1)),
		"PFWD long":               cat(0x21, key(1), seq(0, queue.ForwardSealedSize+1)),
		"RFWD no key":             cat(0x23, seq(0, 10)),
		"RKEY trailing":           cat(0x22, 0),
		"FRES short":              cat(0xa1, seq(0, queue.ForwardResponseSize-1)),
		"FRES long":               cat(0xa1, seq(0, queue.ForwardResponseSize+1)),
		"PKEY short":              att[:len(att)-1],
		"PKEY trailing":           append(bytes.Clone(att), 0),
		"PKEY empty certificate":  cat(0xa0, key(1), seq(2, 32), u16(0), u16(1), "i", seq(3, 64)),
		"PKEY certificate at max": cat(0xa0, key(1), seq(2, 32), u16(queue.MaxCertificateSize+1), make([]byte, queue.MaxCertificateSize+1), u16(1), "i", seq(3, 64)),
	}
	for name, b := range cases {
		if c, err := queue.ParseCommand(b); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: ParseCommand = %+v, %v; want ErrSyntax", name, c.Tag, err)
		}
	}
	max := cat(0xa0, key(1), seq(2, 32), u16(queue.MaxCertificateSize), make([]byte, queue.MaxCertificateSize), u16(1), "i", seq(3, 64))
	if _, err := queue.ParseCommand(max); err != nil {
		t.Errorf("PKEY with a certificate of MaxCertificateSize: %v", err)
	}
}

// forwardVector is the "forward" entry of testdata/vectors.json: one
// forwarded command and its response (section 20), and a session
// attestation's signature.
type forwardVector struct {
	EphemeralPriv hexBytes `json:"ephemeralPriv"` // the client's per-command X25519 private key
	EphemeralKey  hexBytes `json:"ephemeralKey"`
	SessionPriv   hexBytes `json:"sessionPriv"` // the destination's session private key
	SessionKey    hexBytes `json:"sessionKey"`
	Binding       hexBytes `json:"binding"` // the forwarding relay's session with the destination
	ReqKey        hexBytes `json:"reqKey"`
	ResKey        hexBytes `json:"resKey"`
	Timestamp     int64    `json:"timestamp"`
	Inner         hexBytes `json:"inner"`        // the inner transmission
	SealedSHA256  hexBytes `json:"sealedSHA256"` // SHA-256 of the ForwardSealedSize sealed bytes
	SealedTag     hexBytes `json:"sealedTag"`    // their last 16 bytes
	Nonce         hexBytes `json:"responseNonce"`
	RelayTime     int64    `json:"relayTime"`
	Response      hexBytes `json:"response"`       // the inner response transmission
	SealedResp    hexBytes `json:"sealedResponse"` // FRES's field: nonce | ciphertext | tag
	OnlineSeed    hexBytes `json:"onlineSeed"`     // the destination's online Ed25519 key (seed)
	AttestSig     hexBytes `json:"attestationSignature"`
}

func generateForwardVector(t *testing.T) forwardVector {
	ep, sp := testScalar("forward ephemeral"), testScalar("forward session")
	eph, ses := mustPriv(t, ep), mustPriv(t, sp)
	ek, sk := queue.PublicKey(eph), queue.PublicKey(ses)
	binding := seq(0xb0, 32)
	inner := forwardInner([]byte("hello"))
	sealed, csec, err := queue.SealForward(nil, eph, sk, binding, 1700000000, inner)
	if err != nil {
		t.Fatal(err)
	}
	req, res := specForwardKeys(t, ep, sk[:], binding)
	resp := (&queue.Transmission{CorrID: seq(0xc0, queue.CorrIDSize), Entity: seq(0xe0, queue.IDSize), Command: queue.Command{Tag: queue.TagOK}}).Append(nil)
	nonce := [24]byte(seq(0x70, 24))
	sealedResp := queue.SealForwardResponse(nil, &csec, nonce, 1700000001, resp)
	seed := testScalar("forward online key")
	online := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(sealed)
	sig := ed25519.Sign(online, append(append([]byte("hush/1 session attestation"), sk[:]...), binding...))
	return forwardVector{
		EphemeralPriv: ep, EphemeralKey: ek[:], SessionPriv: sp, SessionKey: sk[:], Binding: binding,
		ReqKey: req, ResKey: res, Timestamp: 1700000000, Inner: inner, SealedSHA256: sum[:],
		SealedTag: sealed[len(sealed)-16:], Nonce: nonce[:], RelayTime: 1700000001, Response: resp,
		SealedResp: sealedResp, OnlineSeed: seed, AttestSig: sig,
	}
}

// checkForwardVector checks the package's code against the vector.
func checkForwardVector(t *testing.T, fv forwardVector) {
	t.Helper()
	if len(fv.SealedResp) == 0 {
		t.Fatal("vectors.json has no forward entry")
	}
	eph, ses := mustPriv(t, fv.EphemeralPriv), mustPriv(t, fv.SessionPriv)
	sealed, csec, err := queue.SealForward(nil, eph, asKey(t, fv.SessionKey), fv.Binding, fv.Timestamp, fv.Inner)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(sealed); !bytes.Equal(sum[:], fv.SealedSHA256) || !bytes.Equal(sealed[len(sealed)-16:], fv.SealedTag) {
		t.Error("forward: SealForward differs from the vector")
	}
	ts, inner, rsec, err := queue.OpenForward(ses, fv.Binding, asKey(t, fv.EphemeralKey), sealed)
	if err != nil || ts != fv.Timestamp || !bytes.Equal(inner, fv.Inner) {
		t.Errorf("forward: OpenForward = %d, %x, %v", ts, inner, err)
	}
	if got := queue.SealForwardResponse(nil, &rsec, [24]byte(fv.Nonce), fv.RelayTime, fv.Response); !bytes.Equal(got, fv.SealedResp) {
		t.Error("forward: SealForwardResponse differs from the vector")
	}
	rt, resp, err := queue.OpenForwardResponse(&csec, fv.SealedResp)
	if err != nil || rt != fv.RelayTime || !bytes.Equal(resp, fv.Response) {
		t.Errorf("forward: OpenForwardResponse = %d, %x, %v", rt, resp, err)
	}
	online := ed25519.NewKeyFromSeed(fv.OnlineSeed)
	a := queue.SignAttestation(online, [][]byte{{1}, {2}}, asKey(t, fv.SessionKey), fv.Binding)
	if !bytes.Equal(a.Signature[:], fv.AttestSig) {
		t.Error("forward: the attestation signature differs from the vector")
	}
}

// checkForwardVectorSpec recomputes the vector from the text of section 20
// with x/crypto and crypto/ed25519.
func checkForwardVectorSpec(t *testing.T, fv forwardVector) {
	t.Helper()
	req, res := specForwardKeys(t, fv.EphemeralPriv, fv.SessionKey, fv.Binding)
	if !bytes.Equal(req, fv.ReqKey) || !bytes.Equal(res, fv.ResKey) {
		t.Error("forward: keys differ from the specification")
	}
	plain := binary.BigEndian.AppendUint64(nil, uint64(fv.Timestamp))
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(fv.Inner)))
	plain = append(plain, fv.Inner...)
	plain = append(plain, make([]byte, queue.ForwardPlainSize-len(plain))...)
	aead, _ := chacha20poly1305.NewX(req)
	sealed := aead.Seal(nil, make([]byte, 24), plain, fv.EphemeralKey)
	if sum := sha256.Sum256(sealed); !bytes.Equal(sum[:], fv.SealedSHA256) {
		t.Error("forward: sealed command differs from the specification")
	}
	rplain := binary.BigEndian.AppendUint64(nil, uint64(fv.RelayTime))
	rplain = binary.BigEndian.AppendUint16(rplain, uint16(len(fv.Response)))
	rplain = append(rplain, fv.Response...)
	rplain = append(rplain, make([]byte, 8+2+queue.MaxForwardedResponseSize-len(rplain))...)
	raead, _ := chacha20poly1305.NewX(res)
	if got := append(bytes.Clone(fv.Nonce), raead.Seal(nil, fv.Nonce, rplain, fv.EphemeralKey)...); !bytes.Equal(got, fv.SealedResp) {
		t.Error("forward: sealed response differs from the specification")
	}
	msg := append(append([]byte("hush/1 session attestation"), fv.SessionKey...), fv.Binding...)
	if !ed25519.Verify(ed25519.NewKeyFromSeed(fv.OnlineSeed).Public().(ed25519.PublicKey), msg, fv.AttestSig) {
		t.Error("forward: the attestation signature does not verify as the specification says")
	}
}

// fuzzForwardParties are fixed: FuzzOpenForward explores the sealed bytes,
// the inner transmission and the timestamp.
func fuzzForwardParties() (eph, ses *ecdh.PrivateKey, binding []byte) {
	e, _ := queue.ParsePrivateKey(seq(0x11, 32))
	s, _ := queue.ParsePrivateKey(seq(0x22, 32))
	return e, s, seq(0x33, 32)
}

type forwardSeed struct {
	name  string
	data  []byte
	inner []byte
	ts    int64
	flip  uint32
}

func openForwardSeeds() []forwardSeed {
	return []forwardSeed{
		{"untampered", nil, forwardInner([]byte("hello")), 1700000000, 0},
		{"not-sealed", []byte("not a sealed command"), []byte{1}, 0, 12345},
		{"mask-tag", append(make([]byte, 16), 0x80), seq(0, 300), -1, 1 << 31},
	}
}

func FuzzOpenForward(f *testing.F) {
	for _, s := range openForwardSeeds() {
		f.Add(s.data, s.inner, s.ts, s.flip)
	}
	eph, ses, binding := fuzzForwardParties()
	ek := queue.PublicKey(eph)
	f.Fuzz(func(t *testing.T, data, inner []byte, ts int64, flip uint32) {
		// data as a sealed command, as given and padded: never a panic,
		// only ErrSyntax or ErrOpen, unless it is a real sealed command,
		// which must then seal back to the same bytes.
		for _, s := range [][]byte{data, padTo(data, queue.ForwardSealedSize)} {
			gotTS, got, _, err := queue.OpenForward(ses, binding, ek, s)
			switch {
			case err == nil:
				again, _, _ := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, gotTS, got)
				if !bytes.Equal(again, s) {
					t.Fatal("an opened command does not seal back to the same bytes")
				}
			case !errors.Is(err, queue.ErrOpen) && !errors.Is(err, queue.ErrSyntax):
				t.Fatalf("OpenForward error %v", err)
			}
		}
		if len(inner) == 0 {
			inner = []byte{0}
		}
		if len(inner) > queue.MaxForwardedSize {
			inner = inner[:queue.MaxForwardedSize]
		}
		sealed, csec, err := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, ts, inner)
		if err != nil || len(sealed) != queue.ForwardSealedSize {
			t.Fatalf("SealForward: %d bytes, %v", len(sealed), err)
		}
		gotTS, got, rsec, err := queue.OpenForward(ses, binding, ek, sealed)
		if err != nil || gotTS != ts || !bytes.Equal(got, inner) {
			t.Fatalf("round trip: %d, %d bytes, %v", gotTS, len(got), err)
		}
		// A response of the first bytes of inner opens with the client's
		// secret, and a flipped bit in it does not.
		resp := inner[:min(len(inner), queue.MaxForwardedResponseSize)]
		res := queue.SealForwardResponse(nil, &rsec, [24]byte{byte(flip)}, ts, resp)
		if rt, r, err := queue.OpenForwardResponse(&csec, res); err != nil || rt != ts || !bytes.Equal(r, resp) {
			t.Fatalf("response round trip: %v", err)
		}
		bit := int(flip % uint32(len(res)*8))
		res[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenForwardResponse(&csec, res); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("response bit %d flipped: %v", bit, err)
		}
		// Any flipped bit of the sealed command is ErrOpen.
		bit = int(flip % uint32(len(sealed)*8))
		sealed[bit/8] ^= 1 << (bit % 8)
		if _, _, _, err := queue.OpenForward(ses, binding, ek, sealed); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d flipped: %v, want ErrOpen", bit, err)
		}
	})
}

func openForwardResponseSeeds() []bytesSeed {
	eph, ses, binding := fuzzForwardParties()
	sealed, _, _ := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 1, []byte{1})
	_, _, rsec, _ := queue.OpenForward(ses, binding, queue.PublicKey(eph), sealed)
	return []bytesSeed{
		{"ok", queue.SealForwardResponse(nil, &rsec, [24]byte{9}, 1700000000, []byte("ok"))},
		{"short", []byte("short")},
		{"zeros", make([]byte, queue.ForwardResponseSize)},
	}
}

// FuzzOpenForwardResponse: whatever a forwarding relay returns, the client
// never panics, and accepts only a response sealed with its secret.
func FuzzOpenForwardResponse(f *testing.F) {
	for _, s := range openForwardResponseSeeds() {
		f.Add(s.data)
	}
	eph, ses, binding := fuzzForwardParties()
	sealed, csec, _ := queue.SealForward(nil, eph, queue.PublicKey(ses), binding, 1, []byte{1})
	_, _, rsec, _ := queue.OpenForward(ses, binding, queue.PublicKey(eph), sealed)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range [][]byte{data, padTo(data, queue.ForwardResponseSize)} {
			rt, resp, err := queue.OpenForwardResponse(&csec, r)
			switch {
			case err == nil:
				if again := queue.SealForwardResponse(nil, &rsec, [24]byte(r[:24]), rt, resp); !bytes.Equal(again, r) {
					t.Fatal("an opened response does not seal back to the same bytes")
				}
			case !errors.Is(err, queue.ErrOpen) && !errors.Is(err, queue.ErrSyntax):
				t.Fatalf("OpenForwardResponse error %v", err)
			}
		}
	})
}
