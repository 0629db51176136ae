package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hushrelay/hush/queue"
)

// rotationVectorsFile holds the vectors of the rotation payloads
// (PROTOCOL.md section 19.11), under "rotation".
const rotationVectorsFile = "../queue/testdata/vectors.json"

var printRotation = flag.Bool("print-rotation-vectors", false, "print the rotation vectors computed by the current code, and write the seeds of FuzzParseRotation")

// rotationVector is one payload of a rotation kind: the plaintext of a
// ratchet message (19.4) and its fields.
type rotationVector struct {
	Name    string `json:"name"`
	Seq     uint64 `json:"seq"`
	Prev    string `json:"prevHash"`
	Kind    byte   `json:"kind"`
	Time    int64  `json:"time"`
	Body    string `json:"body"`
	Payload string `json:"payload"`
}

// testValue is SHA-256("hush test vector: " + label), the vectors' convention.
func testValue(label string) []byte {
	h := sha256.Sum256([]byte("hush test vector: " + label))
	return h[:]
}

func computeRotationVectors(t testing.TB) []rotationVector {
	var fp queue.Fingerprint
	copy(fp[:], testValue("q2 relay fingerprint"))
	addr := queue.Address{Fingerprint: fp, Host: "relay.example", Port: 5223}
	var sid queue.ID
	copy(sid[:], testValue("q2 sender id"))
	e2e, err := ecdh.X25519().NewPrivateKey(testValue("q2 end-to-end key"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ecdh.X25519().NewPrivateKey(testValue("q2 sender authorization key"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []struct {
		name string
		m    rotationMsg
	}{
		{"QADD", rotationMsg{kind: payloadQAdd, info: queueInfo{relay: addr, senderID: sid, e2eKey: queue.PublicKey(e2e)}}},
		{"QKEY", rotationMsg{kind: payloadQKey, senderID: sid, senderKey: queue.PublicKey(auth)}},
		{"QUSE", rotationMsg{kind: payloadQUse, senderID: sid}},
		{"QTEST", rotationMsg{kind: payloadQTest}},
		{"QASK", rotationMsg{kind: payloadQAsk}},
	}
	var out []rotationVector
	for i, x := range msgs {
		p := payload{seq: uint64(7 + i), kind: x.m.kind, time: 1765000000000 + int64(i), body: x.m.append(nil)}
		copy(p.prevHash[:], testValue("previous payload "+strconv.Itoa(i)))
		out = append(out, rotationVector{
			Name: x.name, Seq: p.seq, Prev: hex.EncodeToString(p.prevHash[:]), Kind: p.kind, Time: p.time,
			Body: hex.EncodeToString(p.body), Payload: hex.EncodeToString(p.append(nil)),
		})
	}
	return out
}

// TestRotationVectors checks the rotation payloads of the current code
// against queue/testdata/vectors.json ("rotation"), and that each parses
// back to its fields.
func TestRotationVectors(t *testing.T) {
	want := computeRotationVectors(t)
	if *printRotation {
		b, _ := json.MarshalIndent(want, "  ", "  ")
		fmt.Printf("  \"rotation\": %s\n", b)
		writeRotationSeeds(t, want)
	}
	b, err := os.ReadFile(rotationVectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Rotation []rotationVector `json:"rotation"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Rotation) != len(want) {
		t.Fatalf("%s holds %d rotation vectors, want %d", rotationVectorsFile, len(file.Rotation), len(want))
	}
	for i, v := range file.Rotation {
		if v != want[i] {
			t.Errorf("vector %s: file %+v, code %+v", v.Name, v, want[i])
		}
		raw, _ := hex.DecodeString(v.Payload)
		p, err := parsePayload(raw)
		if err != nil || p.seq != v.Seq || p.kind != v.Kind || p.time != v.Time || hex.EncodeToString(p.body) != v.Body {
			t.Errorf("vector %s: parsePayload = %+v, %v", v.Name, p, err)
			continue
		}
		m, err := parseRotation(p.kind, p.body)
		if err != nil || !bytes.Equal(m.append(nil), p.body) {
			t.Errorf("vector %s: parseRotation: %v", v.Name, err)
		}
	}
}

// writeRotationSeeds writes the seeds of FuzzParseRotation: each
// vector's kind and body.
func writeRotationSeeds(t *testing.T, vs []rotationVector) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseRotation")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		body, _ := hex.DecodeString(v.Body)
		seed := fmt.Sprintf("go test fuzz v1\nbyte(%s)\n[]byte(%q)\n", strconv.QuoteRune(rune(v.Kind)), body)
		if err := os.WriteFile(filepath.Join(dir, v.Name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParseRotation: parseRotation never panics, accepts nothing for a
// kind that is not a rotation kind, and what it accepts re-encodes to
// exactly its input (one encoding per message).
func FuzzParseRotation(f *testing.F) {
	for _, v := range computeRotationVectors(f) {
		body, _ := hex.DecodeString(v.Body)
		f.Add(v.Kind, body)
		f.Add(v.Kind, append(body, 0))
		if len(body) > 0 {
			f.Add(v.Kind, body[:len(body)-1])
		}
	}
	f.Add(byte(payloadText), []byte("hello"))
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		m, err := parseRotation(kind, body)
		if err != nil {
			if err != errRotationMsg {
				t.Fatalf("error %v is not errRotationMsg", err)
			}
			return
		}
		if kind < payloadQAdd || kind > payloadQAsk {
			t.Fatalf("kind %d accepted", kind)
		}
		if got := m.append(nil); !bytes.Equal(got, body) {
			t.Fatalf("re-encoding differs: %x, want %x", got, body)
		}
	})
}
