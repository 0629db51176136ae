package queue_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"

	"github.com/hushrelay/hush/queue"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the seed files under testdata/fuzz from the current code")

const vectorsFile = "testdata/vectors.json"

// hexBytes is a byte string written as lower-case hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// authVector: AuthKey on both sides and the authenticator of a signed part.
type authVector struct {
	Name        string   `json:"name"`
	QueuePriv   hexBytes `json:"queuePriv"`   // the queue's authorization private key (client)
	SessionPriv hexBytes `json:"sessionPriv"` // the relay's per-session private key
	QueueKey    hexBytes `json:"queueKey"`    // X25519 public key of QueuePriv
	SessionKey  hexBytes `json:"sessionKey"`  // X25519 public key of SessionPriv (ServerHello)
	Binding     hexBytes `json:"binding"`     // the TLS exporter value
	Signed      hexBytes `json:"signed"`      // a transmission's signed part
	AuthKey     hexBytes `json:"authKey"`
	Auth        hexBytes `json:"auth"`
}

// messageVector: MessageKey on both sides and a sealed MSG body.
type messageVector struct {
	Name           string   `json:"name"`
	RelayQueuePriv hexBytes `json:"relayQueuePriv"` // the relay's per-queue private key
	RecipientPriv  hexBytes `json:"recipientPriv"`  // the recipient's DH private key
	RelayDHKey     hexBytes `json:"relayDHKey"`     // public key of RelayQueuePriv (IDS)
	RecipientDHKey hexBytes `json:"recipientDHKey"` // public key of RecipientPriv (NEW)
	MessageKey     hexBytes `json:"messageKey"`
	MsgID          hexBytes `json:"msgID"`
	Timestamp      int64    `json:"timestamp"`
	Body           hexBytes `json:"body"`
	Sealed         hexBytes `json:"sealed"`
}

// sendExample is the worked example of PROTOCOL.md: a SEND transmission
// authorized by a sender key on a session.
type sendExample struct {
	SenderPriv   hexBytes `json:"senderPriv"`
	SenderKey    hexBytes `json:"senderKey"`
	SessionPriv  hexBytes `json:"sessionPriv"`
	SessionKey   hexBytes `json:"sessionKey"`
	Binding      hexBytes `json:"binding"`
	CorrID       hexBytes `json:"corrID"`
	SenderID     hexBytes `json:"senderID"`
	Body         hexBytes `json:"body"`
	Signed       hexBytes `json:"signed"`
	AuthKey      hexBytes `json:"authKey"`
	Auth         hexBytes `json:"auth"`
	Transmission hexBytes `json:"transmission"`
	// BlockPrefix is the start of the block carrying only this
	// transmission; the rest of the block is zero.
	BlockPrefix hexBytes `json:"blockPrefix"`
}

type vectors struct {
	Comment  []string        `json:"comment"`
	Auth     []authVector    `json:"auth"`
	Message  []messageVector `json:"message"`
	Send     sendExample     `json:"send"`
	Examples examplesVector  `json:"examples"`
	Links    []linkVector    `json:"links"` // section 21.2 (link_test.go)
	Forward  forwardVector   `json:"forward"`
	// Rotation holds the client's rotation payloads (section 19.11),
	// checked by package client (TestRotationVectors); -update keeps them.
	Rotation json.RawMessage `json:"rotation,omitempty"`
	// Receipts is the client layer's vector of delivery receipts
	// (section 19.12), checked by package client (TestReceiptVector);
	// -update keeps it as it is.
	Receipts json.RawMessage `json:"receipts,omitempty"`
}

// testScalar returns a fixed private key: SHA-256 of a label.
func testScalar(label string) []byte {
	s := sha256.Sum256([]byte("hush test vector: " + label))
	return s[:]
}

func mustPriv(t *testing.T, b []byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := queue.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func asKey(t *testing.T, b []byte) queue.Key {
	t.Helper()
	var k queue.Key
	if len(b) != len(k) {
		t.Fatalf("key of %d bytes", len(b))
	}
	copy(k[:], b)
	return k
}

func asID(t *testing.T, b []byte) queue.ID {
	t.Helper()
	var i queue.ID
	if len(b) != len(i) {
		t.Fatalf("ID of %d bytes", len(b))
	}
	copy(i[:], b)
	return i
}

// generateVectors computes the vectors from fixed inputs with the code
// under test. It runs only with -update; normally the checked-in file is
// compared against the code.
func generateVectors(t *testing.T) vectors {
	v := vectors{Comment: []string{
		"Test vectors for the hush queue protocol v1 (queue/PROTOCOL.md). All byte strings are hex.",
		"Private keys are SHA-256 of \"hush test vector: <label>\". X25519 private keys are used as given (clamped by X25519).",
		"authKey = HKDF-SHA256(ikm = X25519(queuePriv, sessionKey), salt = binding, info = \"hush/1 auth\", L = 32); auth = HMAC-SHA256(authKey, signed).",
		"messageKey = HKDF-SHA256(ikm = X25519(relayQueuePriv, recipientDHKey), salt = none, info = \"hush/1 message\", L = 32).",
		"sealed = XChaCha20-Poly1305(messageKey, nonce = msgID, ad = none) of timestamp[8] bodyLen[2] body zero-padding to 16010 bytes.",
		"Regenerate with: go test ./queue -run TestVectors -update (only when the protocol changes on purpose).",
	}}
	newSigned := func(cmd queue.Command, entity []byte) []byte {
		tx := queue.Transmission{CorrID: seq(0xc0, queue.CorrIDSize), Entity: entity, Command: cmd}
		return tx.AppendSigned(nil)
	}
	authInputs := []struct {
		name    string
		binding []byte
		signed  []byte
	}{
		{"NEW", seq(0xb0, 32), newSigned(queue.Command{Tag: queue.TagNEW, RecipientKey: key(0x20), RecipientDHKey: key(0x40)}, nil)},
		{"SUB", seq(0x10, 32), newSigned(queue.Command{Tag: queue.TagSUB}, seq(0xe0, queue.IDSize))},
		{"KEY", bytes.Repeat([]byte{0xff}, 32), newSigned(queue.Command{Tag: queue.TagKEY, SenderKey: key(0x60)}, seq(0xe0, queue.IDSize))},
	}
	for _, in := range authInputs {
		qp, sp := testScalar("queue "+in.name), testScalar("session "+in.name)
		q, s := mustPriv(t, qp), mustPriv(t, sp)
		qk, sk := queue.PublicKey(q), queue.PublicKey(s)
		ak, err := queue.AuthKey(q, sk, in.binding)
		if err != nil {
			t.Fatal(err)
		}
		v.Auth = append(v.Auth, authVector{
			Name: in.name, QueuePriv: qp, SessionPriv: sp, QueueKey: qk[:], SessionKey: sk[:],
			Binding: in.binding, Signed: in.signed, AuthKey: ak[:], Auth: queue.AppendAuth(nil, &ak, in.signed),
		})
	}
	msgInputs := []struct {
		name string
		ts   int64
		body []byte
	}{
		{"empty", 0, []byte{}},
		{"hello", 1700000000, []byte("hello, hush")},
		{"max", 1234567890123, seq(0x01, queue.MaxMessageSize)},
	}
	for _, in := range msgInputs {
		rp, dp := testScalar("relay queue "+in.name), testScalar("recipient "+in.name)
		r, d := mustPriv(t, rp), mustPriv(t, dp)
		rk, dk := queue.PublicKey(r), queue.PublicKey(d)
		mk, err := queue.MessageKey(r, dk)
		if err != nil {
			t.Fatal(err)
		}
		msgID := id(0x30)
		v.Message = append(v.Message, messageVector{
			Name: in.name, RelayQueuePriv: rp, RecipientPriv: dp, RelayDHKey: rk[:], RecipientDHKey: dk[:],
			MessageKey: mk[:], MsgID: msgID[:], Timestamp: in.ts, Body: in.body,
			Sealed: queue.SealMessage(nil, &mk, msgID, in.ts, in.body),
		})
	}

	sp, ssp := testScalar("example sender"), testScalar("example session")
	snd, ses := mustPriv(t, sp), mustPriv(t, ssp)
	sk, sesk := queue.PublicKey(snd), queue.PublicKey(ses)
	binding := seq(0xb0, 32)
	ak, err := queue.AuthKey(snd, sesk, binding)
	if err != nil {
		t.Fatal(err)
	}
	tx := queue.Transmission{
		CorrID: seq(0xc0, queue.CorrIDSize), Entity: seq(0xe0, queue.IDSize),
		Command: queue.Command{Tag: queue.TagSEND, Body: []byte("hello")},
	}
	signed := tx.AppendSigned(nil)
	tx.Auth = queue.AppendAuth(nil, &ak, signed)
	raw := tx.Append(nil)
	var bb queue.BlockBuilder
	bb.Add(raw)
	block := bb.AppendBlock(nil)
	v.Send = sendExample{
		SenderPriv: sp, SenderKey: sk[:], SessionPriv: ssp, SessionKey: sesk[:], Binding: binding,
		CorrID: tx.CorrID, SenderID: tx.Entity, Body: tx.Command.Body, Signed: signed,
		AuthKey: ak[:], Auth: tx.Auth, Transmission: raw, BlockPrefix: block[:4+len(raw)],
	}
	v.Examples = generateExamples(t, v.Send, helloMessage(t, v))
	v.Links = generateLinkVectors(t)
	v.Forward = generateForwardVector(t)
	return v
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	if *update {
		v := generateVectors(t)
		if old, err := os.ReadFile(vectorsFile); err == nil {
			var kept vectors
			if err := json.Unmarshal(old, &kept); err == nil {
				v.Rotation = kept.Rotation
				v.Receipts = kept.Receipts
			}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(vectorsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Auth) == 0 || len(v.Message) == 0 || len(v.Send.Transmission) == 0 {
		t.Fatalf("%s holds no vectors", vectorsFile)
	}
	return v
}

// TestVectors checks the derivations of crypto.go against the checked-in
// vectors: any change to a label, a salt, a layout or a primitive fails it.
func TestVectors(t *testing.T) {
	v := loadVectors(t)
	for _, av := range v.Auth {
		q, s := mustPriv(t, av.QueuePriv), mustPriv(t, av.SessionPriv)
		qk, sk := queue.PublicKey(q), queue.PublicKey(s)
		if !bytes.Equal(qk[:], av.QueueKey) || !bytes.Equal(sk[:], av.SessionKey) {
			t.Errorf("auth %s: public keys differ", av.Name)
		}
		client, err := queue.AuthKey(q, asKey(t, av.SessionKey), av.Binding)
		if err != nil {
			t.Fatalf("auth %s: client AuthKey: %v", av.Name, err)
		}
		relay, err := queue.AuthKey(s, asKey(t, av.QueueKey), av.Binding)
		if err != nil {
			t.Fatalf("auth %s: relay AuthKey: %v", av.Name, err)
		}
		if !bytes.Equal(client[:], av.AuthKey) {
			t.Errorf("auth %s: client AuthKey = %x, want %x", av.Name, client, av.AuthKey)
		}
		if relay != client {
			t.Errorf("auth %s: relay and client AuthKeys differ", av.Name)
		}
		if got := queue.AppendAuth(nil, &client, av.Signed); !bytes.Equal(got, av.Auth) {
			t.Errorf("auth %s: AppendAuth = %x, want %x", av.Name, got, av.Auth)
		}
		if !queue.VerifyAuth(&relay, av.Signed, av.Auth) {
			t.Errorf("auth %s: VerifyAuth = false", av.Name)
		}
	}
	for _, mv := range v.Message {
		r, d := mustPriv(t, mv.RelayQueuePriv), mustPriv(t, mv.RecipientPriv)
		rk, dk := queue.PublicKey(r), queue.PublicKey(d)
		if !bytes.Equal(rk[:], mv.RelayDHKey) || !bytes.Equal(dk[:], mv.RecipientDHKey) {
			t.Errorf("message %s: public keys differ", mv.Name)
		}
		relay, err := queue.MessageKey(r, asKey(t, mv.RecipientDHKey))
		if err != nil {
			t.Fatalf("message %s: relay MessageKey: %v", mv.Name, err)
		}
		recipient, err := queue.MessageKey(d, asKey(t, mv.RelayDHKey))
		if err != nil {
			t.Fatalf("message %s: recipient MessageKey: %v", mv.Name, err)
		}
		if !bytes.Equal(relay[:], mv.MessageKey) || recipient != relay {
			t.Errorf("message %s: MessageKey = %x / %x, want %x", mv.Name, relay, recipient, mv.MessageKey)
		}
		msgID := asID(t, mv.MsgID)
		sealed := queue.SealMessage(nil, &relay, msgID, mv.Timestamp, mv.Body)
		if !bytes.Equal(sealed, mv.Sealed) {
			t.Errorf("message %s: SealMessage differs from the vector", mv.Name)
		}
		if len(mv.Sealed) != queue.SealedSize {
			t.Errorf("message %s: sealed vector is %d bytes", mv.Name, len(mv.Sealed))
		}
		ts, body, err := queue.OpenMessage(&recipient, msgID, mv.Sealed)
		if err != nil || ts != mv.Timestamp || !bytes.Equal(body, mv.Body) {
			t.Errorf("message %s: OpenMessage = %d, %d bytes, %v", mv.Name, ts, len(body), err)
		}
		ts, body, err = queue.OpenMessageInPlace(&recipient, msgID, bytes.Clone(mv.Sealed))
		if err != nil || ts != mv.Timestamp || !bytes.Equal(body, mv.Body) {
			t.Errorf("message %s: OpenMessageInPlace = %d, %d bytes, %v", mv.Name, ts, len(body), err)
		}
	}

	e := v.Send
	snd, ses := mustPriv(t, e.SenderPriv), mustPriv(t, e.SessionPriv)
	ak, err := queue.AuthKey(ses, asKey(t, e.SenderKey), e.Binding)
	if err != nil {
		t.Fatal(err)
	}
	if ck, _ := queue.AuthKey(snd, asKey(t, e.SessionKey), e.Binding); ck != ak || !bytes.Equal(ak[:], e.AuthKey) {
		t.Errorf("send example: AuthKey differs")
	}
	tx, signed, err := queue.ParseTransmission(e.Transmission)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed, e.Signed) || !bytes.Equal(tx.Auth, e.Auth) || !bytes.Equal(tx.CorrID, e.CorrID) ||
		!bytes.Equal(tx.Entity, e.SenderID) || tx.Command.Tag != queue.TagSEND || !bytes.Equal(tx.Command.Body, e.Body) {
		t.Errorf("send example: transmission fields differ: %+v", tx)
	}
	if !queue.VerifyAuth(&ak, signed, tx.Auth) {
		t.Error("send example: VerifyAuth = false")
	}
	var bb queue.BlockBuilder
	bb.Add(e.Transmission)
	block := bb.AppendBlock(nil)
	if !bytes.HasPrefix(block, e.BlockPrefix) || !bytes.Equal(block[len(e.BlockPrefix):], make([]byte, queue.BlockSize-len(e.BlockPrefix))) {
		t.Error("send example: block differs")
	}
	checkForwardVector(t, v.Forward)
}

// TestVectorsMatchSpec recomputes the vectors from the description in
// PROTOCOL.md with independent implementations (x/crypto's curve25519, hkdf
// and chacha20poly1305, and crypto/hmac), so that the vectors, and through
// TestVectors the code, follow the written specification.
func TestVectorsMatchSpec(t *testing.T) {
	v := loadVectors(t)
	hkdf32 := func(secret, salt []byte, info string) []byte {
		out := make([]byte, 32)
		if _, err := io.ReadFull(hkdf.New(sha256.New, secret, salt, []byte(info)), out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	x25519 := func(priv, pub []byte) []byte {
		s, err := curve25519.X25519(priv, pub)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := func(priv []byte) []byte { return x25519(priv, curve25519.Basepoint) }
	for _, av := range v.Auth {
		if !bytes.Equal(base(av.QueuePriv), av.QueueKey) || !bytes.Equal(base(av.SessionPriv), av.SessionKey) {
			t.Errorf("auth %s: public keys differ from X25519(priv, 9)", av.Name)
		}
		ak := hkdf32(x25519(av.QueuePriv, av.SessionKey), av.Binding, "hush/1 auth")
		if !bytes.Equal(ak, av.AuthKey) {
			t.Errorf("auth %s: authKey differs from the specification", av.Name)
		}
		m := hmac.New(sha256.New, ak)
		m.Write(av.Signed)
		if !bytes.Equal(m.Sum(nil), av.Auth) {
			t.Errorf("auth %s: auth differs from HMAC-SHA256", av.Name)
		}
	}
	for _, mv := range v.Message {
		mk := hkdf32(x25519(mv.RelayQueuePriv, mv.RecipientDHKey), nil, "hush/1 message")
		if !bytes.Equal(mk, mv.MessageKey) {
			t.Errorf("message %s: messageKey differs from the specification", mv.Name)
		}
		plain := binary.BigEndian.AppendUint64(nil, uint64(mv.Timestamp))
		plain = binary.BigEndian.AppendUint16(plain, uint16(len(mv.Body)))
		plain = append(plain, mv.Body...)
		plain = append(plain, make([]byte, 8+2+queue.MaxMessageSize-len(plain))...)
		aead, err := chacha20poly1305.NewX(mk)
		if err != nil {
			t.Fatal(err)
		}
		if sealed := aead.Seal(nil, mv.MsgID, plain, nil); !bytes.Equal(sealed, mv.Sealed) {
			t.Errorf("message %s: sealed differs from the specification", mv.Name)
		}
	}
	e := v.Send
	ak := hkdf32(x25519(e.SenderPriv, e.SessionKey), e.Binding, "hush/1 auth")
	want := cat(32, hmacSHA256(ak, e.Signed), 24, e.CorrID, 24, e.SenderID, 0x09, u16(len(e.Body)), e.Body)
	if !bytes.Equal(want, e.Transmission) {
		t.Errorf("send example: transmission differs from the specification:\n%x\n%x", want, e.Transmission)
	}
	if !bytes.Equal(e.BlockPrefix, cat(u16(1), u16(len(want)), want)) {
		t.Error("send example: block prefix differs from the specification")
	}
	checkForwardVectorSpec(t, v.Forward)
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// TestProtocolExample checks that the worked example in PROTOCOL.md shows
// the transmission of the vectors, so that the document cannot drift.
func TestProtocolExample(t *testing.T) {
	v := loadVectors(t)
	doc, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	e := v.Send
	for name, b := range map[string][]byte{
		"sender key": e.SenderKey, "session key": e.SessionKey, "binding": e.Binding,
		"authKey": e.AuthKey, "auth": e.Auth, "corrID": e.CorrID, "sender ID": e.SenderID,
	} {
		if !bytes.Contains(doc, []byte(hex.EncodeToString(b))) {
			t.Errorf("PROTOCOL.md does not show the example's %s %x", name, b)
		}
	}
}

func TestAuthKeyAgreement(t *testing.T) {
	binding := seq(1, 32)
	for range 5 {
		q, err := queue.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		s, err := queue.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		client, err := queue.AuthKey(q, queue.PublicKey(s), binding)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := queue.AuthKey(s, queue.PublicKey(q), binding)
		if err != nil {
			t.Fatal(err)
		}
		if client != relay {
			t.Fatal("relay and client AuthKeys differ")
		}
		other, _ := queue.AuthKey(q, queue.PublicKey(s), seq(2, 32))
		if other == client {
			t.Fatal("AuthKey does not depend on the binding")
		}
		r, _ := queue.GenerateKey()
		third, _ := queue.AuthKey(q, queue.PublicKey(r), binding)
		if third == client {
			t.Fatal("AuthKey does not depend on the session key")
		}
		m1, _ := queue.MessageKey(q, queue.PublicKey(s))
		m2, _ := queue.MessageKey(s, queue.PublicKey(q))
		if m1 != m2 {
			t.Fatal("MessageKey is not symmetric")
		}
		if m1 == client {
			t.Fatal("MessageKey equals AuthKey: the labels do not separate them")
		}
	}
}

// lowOrderPoints are X25519 public keys whose shared secret is zero with
// every private key: the points of order 1, 2, 4 and 8, their non-canonical
// encodings (p, p+1, p-1 aliases) and the same with the top bit set, which
// X25519 ignores.
var lowOrderPoints = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"0000000000000000000000000000000000000000000000000000000000000080",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}

func TestLowOrderPoints(t *testing.T) {
	priv, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range lowOrderPoints {
		b, _ := hex.DecodeString(h)
		k := asKey(t, b)
		// Confirm with an independent implementation that the point is
		// indeed of low order.
		if _, err := curve25519.X25519(priv.Bytes(), b); err == nil {
			t.Errorf("%s: not a low-order point", h)
		}
		if _, err := queue.AuthKey(priv, k, seq(0, 32)); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("AuthKey(low-order %s) = %v, want ErrSyntax", h, err)
		}
		if _, err := queue.MessageKey(priv, k); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("MessageKey(low-order %s) = %v, want ErrSyntax", h, err)
		}
		if !queue.LowOrder(k) {
			t.Errorf("LowOrder(%s) = false", h)
		}
	}
	for range 100 {
		k, _ := queue.GenerateKey()
		if queue.LowOrder(queue.PublicKey(k)) {
			t.Fatalf("LowOrder(%x) = true for a generated key", queue.PublicKey(k))
		}
	}
}

func TestKeys(t *testing.T) {
	a, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := queue.GenerateKey()
	if queue.PublicKey(a) == queue.PublicKey(b) {
		t.Fatal("GenerateKey repeated a key")
	}
	again, err := queue.ParsePrivateKey(a.Bytes())
	if err != nil || queue.PublicKey(again) != queue.PublicKey(a) {
		t.Errorf("ParsePrivateKey(priv.Bytes()) = %v", err)
	}
	if pk := queue.PublicKey(a); !bytes.Equal(pk[:], a.PublicKey().Bytes()) {
		t.Error("PublicKey differs from the ecdh public key")
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := queue.ParsePrivateKey(make([]byte, n)); err == nil {
			t.Errorf("ParsePrivateKey accepts %d bytes", n)
		}
	}
}

func TestVerifyAuthTamper(t *testing.T) {
	var k [32]byte
	copy(k[:], seq(9, 32))
	signed := (&queue.Transmission{
		CorrID: seq(1, 24), Entity: seq(2, 24),
		Command: queue.Command{Tag: queue.TagKEY, SenderKey: key(3)},
	}).AppendSigned(nil)
	auth := queue.AppendAuth(nil, &k, signed)
	if len(auth) != queue.AuthSize || !queue.VerifyAuth(&k, signed, auth) {
		t.Fatal("a fresh authenticator does not verify")
	}
	if prefixed := queue.AppendAuth([]byte("p"), &k, signed); !bytes.Equal(prefixed[1:], auth) || prefixed[0] != 'p' {
		t.Error("AppendAuth does not append")
	}
	for i := range len(signed) * 8 {
		s := bytes.Clone(signed)
		s[i/8] ^= 1 << (i % 8)
		if queue.VerifyAuth(&k, s, auth) {
			t.Fatalf("VerifyAuth accepts signed bytes with bit %d flipped", i)
		}
	}
	for i := range len(auth) * 8 {
		a := bytes.Clone(auth)
		a[i/8] ^= 1 << (i % 8)
		if queue.VerifyAuth(&k, signed, a) {
			t.Fatalf("VerifyAuth accepts an authenticator with bit %d flipped", i)
		}
	}
	for i := range len(k) * 8 {
		k2 := k
		k2[i/8] ^= 1 << (i % 8)
		if queue.VerifyAuth(&k2, signed, auth) {
			t.Fatalf("VerifyAuth accepts a key with bit %d flipped", i)
		}
	}
	for name, a := range map[string][]byte{
		"nil": nil, "short": auth[:31], "long": append(bytes.Clone(auth), 0), "zero": make([]byte, 32),
	} {
		if queue.VerifyAuth(&k, signed, a) {
			t.Errorf("VerifyAuth accepts a %s authenticator", name)
		}
	}
	if queue.VerifyAuth(&k, append(bytes.Clone(signed), 0), auth) || queue.VerifyAuth(&k, signed[:len(signed)-1], auth) {
		t.Error("VerifyAuth accepts extended or truncated signed bytes")
	}
}

// TestAuthBoundToSession: an authenticator made on one session (one binding
// and one relay session key) does not verify on another.
func TestAuthBoundToSession(t *testing.T) {
	q, _ := queue.GenerateKey()
	s1, _ := queue.GenerateKey()
	s2, _ := queue.GenerateKey()
	signed := []byte("signed part")
	k1, _ := queue.AuthKey(q, queue.PublicKey(s1), seq(1, 32))
	auth := queue.AppendAuth(nil, &k1, signed)

	sameKeyOtherBinding, _ := queue.AuthKey(s1, queue.PublicKey(q), seq(2, 32))
	otherKeySameBinding, _ := queue.AuthKey(s2, queue.PublicKey(q), seq(1, 32))
	right, _ := queue.AuthKey(s1, queue.PublicKey(q), seq(1, 32))
	if !queue.VerifyAuth(&right, signed, auth) {
		t.Fatal("VerifyAuth fails on the right session")
	}
	if queue.VerifyAuth(&sameKeyOtherBinding, signed, auth) || queue.VerifyAuth(&otherKeySameBinding, signed, auth) {
		t.Error("an authenticator verifies on another session")
	}
}

func TestSealOpen(t *testing.T) {
	var k [32]byte
	copy(k[:], seq(5, 32))
	msgID := id(7)
	for _, n := range []int{0, 1, 100, queue.MaxMessageSize - 1, queue.MaxMessageSize} {
		body := seq(byte(n), n)
		for _, ts := range []int64{0, 1, 1700000000, -1, 1<<63 - 1, -1 << 63} {
			sealed := queue.SealMessage([]byte("dst"), &k, msgID, ts, body)
			if string(sealed[:3]) != "dst" || len(sealed) != 3+queue.SealedSize {
				t.Fatalf("SealMessage did not append %d bytes", queue.SealedSize)
			}
			gotTS, got, err := queue.OpenMessage(&k, msgID, sealed[3:])
			if err != nil || gotTS != ts || !bytes.Equal(got, body) {
				t.Fatalf("body %d, ts %d: OpenMessage = %d, %d bytes, %v", n, ts, gotTS, len(got), err)
			}
			// In place: the same, with the body in the sealed bytes.
			in := sealed[3:]
			gotTS, got, err = queue.OpenMessageInPlace(&k, msgID, in)
			if err != nil || gotTS != ts || !bytes.Equal(got, body) {
				t.Fatalf("body %d, ts %d: OpenMessageInPlace = %d, %d bytes, %v", n, ts, gotTS, len(got), err)
			}
			if n > 0 && &got[0] != &in[10] {
				t.Fatalf("body %d: OpenMessageInPlace's body is not in the sealed bytes", n)
			}
		}
	}
	mustPanic(t, "SealMessage of MaxMessageSize+1 bytes", func() {
		queue.SealMessage(nil, &k, msgID, 0, make([]byte, queue.MaxMessageSize+1))
	})
	// Sealing is deterministic: the same message re-delivered has the same
	// bytes, and different IDs give unrelated bytes.
	a := queue.SealMessage(nil, &k, msgID, 1, []byte("x"))
	b := queue.SealMessage(nil, &k, msgID, 1, []byte("x"))
	c := queue.SealMessage(nil, &k, id(8), 1, []byte("x"))
	if !bytes.Equal(a, b) || bytes.Equal(a[:64], c[:64]) {
		t.Error("sealing is not a function of key, ID, timestamp and body")
	}
	// OpenMessage returns a new slice.
	sealed := queue.SealMessage(nil, &k, msgID, 1, []byte("body"))
	_, body, _ := queue.OpenMessage(&k, msgID, sealed)
	body[0] = 'B'
	if _, again, _ := queue.OpenMessage(&k, msgID, sealed); string(again) != "body" {
		t.Error("OpenMessage's body aliases the sealed message")
	}
}

func TestOpenMessageTamper(t *testing.T) {
	var k [32]byte
	copy(k[:], seq(5, 32))
	msgID := id(7)
	sealed := queue.SealMessage(nil, &k, msgID, 1700000000, []byte("a message that must not change"))

	// A sample of bits: all bits of the first 64 and last 64 bytes (the
	// header, start of the body and the tag) and a stride through the rest.
	var bits []int
	for i := range 64 * 8 {
		bits = append(bits, i, len(sealed)*8-1-i)
	}
	for i := 64 * 8; i < (len(sealed)-64)*8; i += 131 {
		bits = append(bits, i)
	}
	for _, bit := range bits {
		s := bytes.Clone(sealed)
		s[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenMessage(&k, msgID, s); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d flipped: OpenMessage = %v, want ErrOpen", bit, err)
		}
		s = bytes.Clone(sealed)
		s[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenMessageInPlace(&k, msgID, s); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("bit %d flipped: OpenMessageInPlace = %v, want ErrOpen", bit, err)
		}
	}
	for bit := range queue.IDSize * 8 {
		other := msgID
		other[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenMessage(&k, other, sealed); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("ID bit %d flipped: OpenMessage = %v, want ErrOpen", bit, err)
		}
	}
	for bit := range 32 * 8 {
		k2 := k
		k2[bit/8] ^= 1 << (bit % 8)
		if _, _, err := queue.OpenMessage(&k2, msgID, sealed); !errors.Is(err, queue.ErrOpen) {
			t.Fatalf("key bit %d flipped: OpenMessage = %v, want ErrOpen", bit, err)
		}
	}
	for name, s := range map[string][]byte{
		"nil": nil, "short by one": sealed[:len(sealed)-1], "long by one": append(bytes.Clone(sealed), 0),
		"tag only": sealed[len(sealed)-16:],
	} {
		if _, _, err := queue.OpenMessage(&k, msgID, s); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: OpenMessage = %v, want ErrSyntax", name, err)
		}
		if _, _, err := queue.OpenMessageInPlace(&k, msgID, bytes.Clone(s)); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: OpenMessageInPlace = %v, want ErrSyntax", name, err)
		}
	}
	if _, _, err := queue.OpenMessage(&k, msgID, make([]byte, queue.SealedSize)); !errors.Is(err, queue.ErrOpen) {
		t.Errorf("zero bytes: OpenMessage = %v, want ErrOpen", err)
	}
}

// TestOpenMessageMalformedPlaintext: authenticated contents that are not a
// valid plaintext (a body length over MaxMessageSize, non-zero padding) are
// ErrSyntax, not accepted.
func TestOpenMessageMalformedPlaintext(t *testing.T) {
	var k [32]byte
	copy(k[:], seq(5, 32))
	msgID := id(7)
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		t.Fatal(err)
	}
	plain := func(n int, pad byte) []byte {
		p := binary.BigEndian.AppendUint64(nil, 1)
		p = binary.BigEndian.AppendUint16(p, uint16(n))
		p = append(p, make([]byte, queue.MaxMessageSize)...)
		p[len(p)-1] = pad
		return p
	}
	for name, p := range map[string][]byte{
		"length MaxMessageSize+1": plain(queue.MaxMessageSize+1, 0),
		"length 0xffff":           plain(0xffff, 0),
		"non-zero padding":        plain(10, 1),
	} {
		sealed := aead.Seal(nil, msgID[:], p, nil)
		if _, _, err := queue.OpenMessage(&k, msgID, sealed); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: OpenMessage = %v, want ErrSyntax", name, err)
		}
		if _, _, err := queue.OpenMessageInPlace(&k, msgID, sealed); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: OpenMessageInPlace = %v, want ErrSyntax", name, err)
		}
	}
	// The last padding byte may be part of a maximum-size body.
	sealed := aead.Seal(nil, msgID[:], plain(queue.MaxMessageSize, 1), nil)
	if _, body, err := queue.OpenMessage(&k, msgID, sealed); err != nil || len(body) != queue.MaxMessageSize {
		t.Errorf("maximum body: %d bytes, %v", len(body), err)
	}
}

// TestNewQueueKey: the relay's per-queue key agrees with the recipient's
// DH key on the same MessageKey that MessageKey derives on both sides,
// each call makes a new key, and low-order keys are refused.
func TestNewQueueKey(t *testing.T) {
	seen := map[queue.Key]bool{}
	for range 50 {
		dh, err := queue.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		pub, msgKey, err := queue.NewQueueKey(queue.PublicKey(dh))
		if err != nil {
			t.Fatal(err)
		}
		if seen[pub] {
			t.Fatalf("NewQueueKey repeated the key %x", pub)
		}
		seen[pub] = true
		if queue.LowOrder(pub) {
			t.Fatalf("NewQueueKey made a low-order key %x", pub)
		}
		want, err := queue.MessageKey(dh, pub)
		if err != nil {
			t.Fatal(err)
		}
		if msgKey != want {
			t.Fatalf("NewQueueKey's message key %x, the recipient's %x", msgKey, want)
		}
		// And as crypto/ecdh computes it.
		p, err := ecdh.X25519().NewPublicKey(pub[:])
		if err != nil {
			t.Fatal(err)
		}
		s, err := dh.ECDH(p)
		if err != nil {
			t.Fatal(err)
		}
		r := hkdf.New(sha256.New, s, nil, []byte("hush/1 message"))
		var k [32]byte
		if _, err := io.ReadFull(r, k[:]); err != nil {
			t.Fatal(err)
		}
		if k != msgKey {
			t.Fatalf("NewQueueKey's message key %x, crypto/ecdh's %x", msgKey, k)
		}
	}
	for _, h := range lowOrderPoints {
		b, _ := hex.DecodeString(h)
		if _, _, err := queue.NewQueueKey(asKey(t, b)); !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("NewQueueKey(low-order %s) = %v, want ErrSyntax", h, err)
		}
	}
}
