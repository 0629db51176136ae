package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

func FuzzParseReceipt(f *testing.F) {
	h := sha256.Sum256([]byte("a payload"))
	f.Add(appendReceipt(nil, 7, h[:]))
	f.Add(appendReceipt(nil, 0, h[:]))
	f.Add(appendReceipt(nil, 1, h[:31]))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, hash, err := parseReceipt(b)
		if err != nil {
			return
		}
		if seq == 0 || len(hash) != sha256.Size {
			t.Fatalf("parsed seq %d, hash of %d bytes", seq, len(hash))
		}
		if got := appendReceipt(nil, seq, hash); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// receiptVector is the "receipts" entry of queue/testdata/vectors.json:
// a text payload, its hash, and the receipt payload that acknowledges it
// (PROTOCOL.md section 19.12).
type receiptVector struct {
	Comment     string `json:"comment"`
	Message     string `json:"message"`
	MessageHash string `json:"messageHash"`
	Receipt     string `json:"receipt"`
}

// TestReceiptVector builds the vector's payloads and compares them, byte
// for byte, with the checked-in ones, and parses the receipt back.
func TestReceiptVector(t *testing.T) {
	b, err := os.ReadFile("../queue/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Receipts receiptVector `json:"receipts"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	v := file.Receipts
	msg := payload{seq: 7, kind: payloadText, time: 1700000000000, body: []byte("hello")}
	copy(msg.prevHash[:], bytes.Repeat([]byte{0x11}, 32))
	plain := msg.append(nil)
	h := sha256.Sum256(plain)
	rc := payload{seq: 4, kind: payloadReceipt, time: 1700000000500, body: appendReceipt(nil, msg.seq, h[:])}
	copy(rc.prevHash[:], bytes.Repeat([]byte{0x22}, 32))
	receipt := rc.append(nil)
	got := receiptVector{Message: hex.EncodeToString(plain), MessageHash: hex.EncodeToString(h[:]), Receipt: hex.EncodeToString(receipt)}
	if got.Message != v.Message || got.MessageHash != v.MessageHash || got.Receipt != v.Receipt {
		out, _ := json.MarshalIndent(got, "", "  ")
		t.Fatalf("the vector differs from vectors.json; this code makes:\n%s", out)
	}
	p, err := parsePayload(receipt)
	if err != nil || p.kind != payloadReceipt {
		t.Fatalf("parsePayload: %+v, %v", p, err)
	}
	seq, hash, err := parseReceipt(p.body)
	if err != nil || seq != 7 || !bytes.Equal(hash, h[:]) {
		t.Fatalf("parseReceipt: %d %x %v", seq, hash, err)
	}
}
