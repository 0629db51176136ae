package queue_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// The worked examples of PROTOCOL.md section 18 besides the SEND one: the
// session binding (18.2), both hellos (18.3) and a sealed MSG event (18.4).
// Their values are in testdata/vectors.json ("examples"); the tests below
// check them against the code, against independent implementations of the
// text, and against what PROTOCOL.md shows.

// examplesVector holds the worked examples.
type examplesVector struct {
	// ExporterSecret is a TLS 1.3 exporter_master_secret (SHA-256 suite);
	// Binding the session binding derived from it.
	ExporterSecret hexBytes `json:"exporterSecret"`
	Binding        hexBytes `json:"binding"`
	// ClientHello and ServerHello are the starts of the handshake blocks
	// (the rest is zero); the ServerHello's session key is the SEND
	// example's.
	ClientHello hexBytes `json:"clientHello"`
	ServerHello hexBytes `json:"serverHello"`
	// MsgRecipientID and MsgTransmission: the MSG event delivering the
	// "hello" message vector; MsgBlockPrefix starts the block carrying it.
	MsgRecipientID  hexBytes `json:"msgRecipientID"`
	MsgTransmission hexBytes `json:"msgTransmission"`
}

// hkdfExpandLabel is HKDF-Expand-Label of RFC 8446 section 7.1 with
// SHA-256, written from the RFC.
func hkdfExpandLabel(t *testing.T, secret []byte, label string, context []byte, length int) []byte {
	t.Helper()
	info := binary.BigEndian.AppendUint16(nil, uint16(length))
	info = append(info, byte(len("tls13 "+label)))
	info = append(info, "tls13 "+label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	out, err := hkdf.Expand(sha256.New, secret, string(info), length)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tls13Exporter is TLS-Exporter(label, context, length) of RFC 8446
// section 7.5 for a SHA-256 suite: HKDF-Expand-Label(Derive-Secret(secret,
// label, ""), "exporter", Hash(context), length), where Derive-Secret's
// transcript hash of no messages is SHA-256 of the empty string.
func tls13Exporter(t *testing.T, secret []byte, label string, context []byte, length int) []byte {
	empty := sha256.Sum256(nil)
	derived := hkdfExpandLabel(t, secret, label, empty[:], sha256.Size)
	h := sha256.Sum256(context)
	return hkdfExpandLabel(t, derived, "exporter", h[:], length)
}

func generateExamples(t *testing.T, send sendExample, msg messageVector) examplesVector {
	var e examplesVector
	e.ExporterSecret = seq(0xa0, 32)
	e.Binding = tls13Exporter(t, e.ExporterSecret, queue.BindingLabel, nil, queue.BindingSize)
	ch := queue.ClientHello{Version: 1}
	e.ClientHello = ch.AppendBlock(nil)[:2+2]
	sh := queue.ServerHello{MinVersion: 1, MaxVersion: 1, SessionKey: asKey(t, send.SessionKey)}
	e.ServerHello = sh.AppendBlock(nil)[:2+36]
	e.MsgRecipientID = seq(0x50, queue.IDSize)
	tx := queue.Transmission{Entity: e.MsgRecipientID, Command: queue.Command{Tag: queue.TagMSG, MsgID: asID(t, msg.MsgID), Body: msg.Sealed}}
	e.MsgTransmission = tx.Append(nil)
	return e
}

// helloMessage returns the "hello" message vector.
func helloMessage(t *testing.T, v vectors) messageVector {
	t.Helper()
	for _, m := range v.Message {
		if m.Name == "hello" {
			return m
		}
	}
	t.Fatal("no hello message vector")
	return messageVector{}
}

// TestExamples checks the worked examples against the code.
func TestExamples(t *testing.T) {
	v := loadVectors(t)
	e := v.Examples
	// 18.3: the hellos, as the code encodes and parses them.
	ch := queue.ClientHello{Version: 1}
	if b := ch.AppendBlock(nil); !bytes.HasPrefix(b, e.ClientHello) || !bytes.Equal(b[len(e.ClientHello):], make([]byte, queue.BlockSize-len(e.ClientHello))) {
		t.Error("ClientHello block differs")
	}
	sh := queue.ServerHello{MinVersion: 1, MaxVersion: 1, SessionKey: asKey(t, v.Send.SessionKey)}
	if b := sh.AppendBlock(nil); !bytes.HasPrefix(b, e.ServerHello) || !bytes.Equal(b[len(e.ServerHello):], make([]byte, queue.BlockSize-len(e.ServerHello))) {
		t.Error("ServerHello block differs")
	}
	block := make([]byte, queue.BlockSize)
	copy(block, e.ServerHello)
	if got, err := queue.ParseServerHello(block); err != nil || got.MinVersion != 1 || got.MaxVersion != 1 || got.SessionKey != sh.SessionKey {
		t.Errorf("ParseServerHello = %+v, %v", got, err)
	}
	// 18.4: the MSG event, as the code encodes it, opens to the body.
	m := helloMessage(t, v)
	tx, _, err := queue.ParseTransmission(e.MsgTransmission)
	if err != nil || tx.Command.Tag != queue.TagMSG || tx.CorrID != nil || !bytes.Equal(tx.Entity, e.MsgRecipientID) {
		t.Fatalf("MSG example: %+v, %v", tx, err)
	}
	mk := [32]byte(m.MessageKey)
	ts, body, err := queue.OpenMessage(&mk, tx.Command.MsgID, tx.Command.Body)
	if err != nil || ts != m.Timestamp || !bytes.Equal(body, m.Body) {
		t.Errorf("MSG example opens to %d %q, %v", ts, body, err)
	}
	re := queue.Transmission{Entity: e.MsgRecipientID, Command: tx.Command}
	if want := re.Append(nil); !bytes.Equal(want, e.MsgTransmission) {
		t.Error("MSG example: encoding differs")
	}
}

// TestExamplesMatchSpec recomputes the examples from the text: the
// exporter of RFC 8446 written out above, and the layouts of sections 5, 7
// and 9 byte by byte.
func TestExamplesMatchSpec(t *testing.T) {
	v := loadVectors(t)
	e := v.Examples
	if got := tls13Exporter(t, e.ExporterSecret, "EXPORTER-hush-session-binding", nil, 32); !bytes.Equal(got, e.Binding) {
		t.Errorf("binding %x, want %x", got, e.Binding)
	}
	if want := cat(u16(2), u16(1)); !bytes.Equal(want, e.ClientHello) {
		t.Errorf("ClientHello %x, want %x", e.ClientHello, want)
	}
	if want := cat(u16(36), u16(1), u16(1), v.Send.SessionKey); !bytes.Equal(want, e.ServerHello) {
		t.Errorf("ServerHello %x, want %x", e.ServerHello, want)
	}
	m := helloMessage(t, v)
	if want := cat(0, 0, 24, e.MsgRecipientID, 0x84, m.MsgID, u16(queue.SealedSize), m.Sealed); !bytes.Equal(want, e.MsgTransmission) {
		t.Error("MSG transmission differs from sections 7 and 9")
	}
}

// TestProtocolExamples checks that PROTOCOL.md shows the examples' values.
func TestProtocolExamples(t *testing.T) {
	v := loadVectors(t)
	doc, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), "")
	e := v.Examples
	m := helloMessage(t, v)
	for name, b := range map[string][]byte{
		"exporter secret": e.ExporterSecret, "binding": e.Binding,
		"ClientHello": e.ClientHello, "ServerHello": e.ServerHello,
		"relay queue private key": m.RelayQueuePriv, "recipient DH private key": m.RecipientPriv,
		"relay DH key": m.RelayDHKey, "recipient DH key": m.RecipientDHKey,
		"message key": m.MessageKey, "message ID": m.MsgID, "recipient ID": e.MsgRecipientID,
		"start of sealed": m.Sealed[:32], "Poly1305 tag": m.Sealed[len(m.Sealed)-16:],
		"MSG transmission start": e.MsgTransmission[:3+24+1+24+2],
	} {
		if !strings.Contains(text, hex.EncodeToString(b)) {
			t.Errorf("PROTOCOL.md does not show the example's %s %x", name, b)
		}
	}
}
