package client

import (
	"bytes"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	inv := testInvitation(f).bytes()
	for _, seed := range []struct {
		inv  []byte
		name string
	}{{inv, "Rita"}, {inv, ""}, {[]byte("x"), "a name of some length"}} {
		inner, err := appendRequest(seed.inv, seed.name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.TrimRight(inner, "\x00"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > envelopeInnerSize {
			return
		}
		inner := append(bytes.Clone(b), make([]byte, envelopeInnerSize-len(b))...)
		inv, name, err := parseRequest(inner)
		if err != nil {
			return
		}
		again, err := appendRequest(inv, name)
		if err != nil || !bytes.Equal(again, inner) {
			t.Fatalf("re-encoding differs (%v)", err)
		}
	})
}

func FuzzParseAddressInfo(f *testing.F) {
	a := addressInfo{queue: testInvitation(f).queue, sendKey: newKey().Bytes()}
	f.Add(a.append(nil))
	f.Add(a.append(nil)[:40])
	f.Add(append(a.append(nil), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAddressInfo(b)
		if err != nil {
			if err != ErrLinkData {
				t.Fatalf("error %v is not ErrLinkData", err)
			}
			return
		}
		if got := a.append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
