package queue_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hushrelay/hush/queue"
)

func TestTransmissionLayout(t *testing.T) {
	auth := seq(0xa0, queue.AuthSize)
	corr := seq(0xc0, queue.CorrIDSize)
	entity := seq(0xe0, queue.IDSize)
	cmd := queue.Command{Tag: queue.TagSEND, Body: []byte("hi")}
	tx := queue.Transmission{Auth: auth, CorrID: corr, Entity: entity, Command: cmd}

	wantSigned := cat(24, corr, 24, entity, 0x09, u16(2), "hi")
	want := cat(32, auth, wantSigned)
	if got := tx.Append([]byte("x")); !bytes.Equal(got, cat("x", want)) {
		t.Errorf("Append = %x\nwant %x", got, cat("x", want))
	}
	if got := tx.AppendSigned(nil); !bytes.Equal(got, wantSigned) {
		t.Errorf("AppendSigned = %x\nwant %x", got, wantSigned)
	}

	p, signed, err := queue.ParseTransmission(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Auth, auth) || !bytes.Equal(p.CorrID, corr) || !bytes.Equal(p.Entity, entity) || !equalCommand(p.Command, cmd) {
		t.Errorf("ParseTransmission = %+v", p)
	}
	if !bytes.Equal(signed, wantSigned) {
		t.Errorf("signed = %x\nwant %x", signed, wantSigned)
	}
	// signed aliases the input: it is the input after the authenticator.
	if &signed[0] != &want[1+queue.AuthSize] {
		t.Error("signed part does not alias the transmission")
	}
}

func TestTransmissionRoundTrip(t *testing.T) {
	auths := [][]byte{nil, seq(1, queue.AuthSize)}
	corrs := [][]byte{nil, seq(2, queue.CorrIDSize)}
	entities := [][]byte{nil, seq(3, queue.IDSize)}
	for _, c := range commandCases() {
		for _, auth := range auths {
			for _, corr := range corrs {
				for _, entity := range entities {
					tx := queue.Transmission{Auth: auth, CorrID: corr, Entity: entity, Command: c.cmd}
					raw := tx.Append(nil)
					wantLen := 3 + len(auth) + len(corr) + len(entity) + len(c.want)
					if len(raw) != wantLen {
						t.Fatalf("%s: %d bytes, want %d", c.name, len(raw), wantLen)
					}
					p, signed, err := queue.ParseTransmission(raw)
					if err != nil {
						t.Fatalf("%s (auth %d, corr %d, entity %d): %v", c.name, len(auth), len(corr), len(entity), err)
					}
					if !bytes.Equal(p.Auth, auth) || !bytes.Equal(p.CorrID, corr) || !bytes.Equal(p.Entity, entity) || !equalCommand(p.Command, c.cmd) {
						t.Fatalf("%s: ParseTransmission = %+v", c.name, p)
					}
					if (auth == nil) != (p.Auth == nil) || (corr == nil) != (p.CorrID == nil) || (entity == nil) != (p.Entity == nil) {
						t.Fatalf("%s: absent fields must parse as nil", c.name)
					}
					if !bytes.Equal(p.Append(nil), raw) {
						t.Fatalf("%s: re-encoding differs", c.name)
					}
					if !bytes.Equal(signed, tx.AppendSigned(nil)) || !bytes.Equal(signed, raw[1+len(auth):]) {
						t.Fatalf("%s: signed part differs", c.name)
					}
				}
			}
		}
	}
}

// TestAppendAuthorized checks that encoding with the authenticator in
// place gives the bytes of Append with the authenticator of AppendSigned,
// after whatever b held, and that VerifyAuth accepts it; and that
// AppendAuthorizedMAC gives the same bytes with one MAC reused for every
// transmission under the key, whatever it was last used for.
func TestAppendAuthorized(t *testing.T) {
	key := [32]byte(seq(7, 32))
	mac := queue.NewAuthMAC(&key)
	for _, c := range commandCases() {
		for _, entity := range [][]byte{nil, seq(3, queue.IDSize)} {
			tx := queue.Transmission{CorrID: seq(2, queue.CorrIDSize), Entity: entity, Command: c.cmd}
			got := tx.AppendAuthorized([]byte("prefix"), &key)
			want := tx
			want.Auth = queue.AppendAuth(nil, &key, tx.AppendSigned(nil))
			w := want.Append([]byte("prefix"))
			if !bytes.Equal(got, w) {
				t.Fatalf("%s: AppendAuthorized = %x\nwant %x", c.name, got, w)
			}
			withMAC := tx.AppendAuthorizedMAC([]byte("prefix"), mac)
			if !bytes.Equal(withMAC, w) {
				t.Fatalf("%s: AppendAuthorizedMAC = %x\nwant %x", c.name, withMAC, w)
			}
			mac.Write([]byte("left over")) // Reset drops it
			// A bit flipped in the authenticator or the signed part
			// (every byte of the first 128, then every 251st) fails the
			// check.
			m := withMAC[len("prefix"):]
			for i := 0; i < len(m); i += max(1, (i/128)*251) {
				bad := bytes.Clone(m)
				bad[i] ^= 1 << (i % 8)
				p, signed, err := queue.ParseTransmission(bad)
				if err == nil && len(p.Auth) == queue.AuthSize && queue.VerifyAuth(&key, signed, p.Auth) {
					t.Fatalf("%s: byte %d flipped still verifies", c.name, i)
				}
			}
			p, signed, err := queue.ParseTransmission(got[len("prefix"):])
			if err != nil || !queue.VerifyAuth(&key, signed, p.Auth) {
				t.Fatalf("%s: the authenticator does not verify (%v)", c.name, err)
			}
		}
	}
}

func TestParseTransmissionRejects(t *testing.T) {
	ping := cat(0x0a)
	cases := map[string][]byte{
		"empty":              nil,
		"auth length only":   {0},
		"no command":         {0, 0, 0},
		"auth length 1":      cat(1, 0xff, 0, 0, ping),
		"auth length 31":     cat(31, seq(0, 31), 0, 0, ping),
		"auth length 33":     cat(33, seq(0, 33), 0, 0, ping),
		"auth length 255":    cat(255, seq(0, 255), 0, 0, ping),
		"auth truncated":     cat(32, seq(0, 31)),
		"corrID length 1":    cat(0, 1, 0xff, 0, ping),
		"corrID length 23":   cat(0, 23, seq(0, 23), 0, ping),
		"corrID length 25":   cat(0, 25, seq(0, 25), 0, ping),
		"corrID length 32":   cat(0, 32, seq(0, 32), 0, ping),
		"corrID truncated":   cat(0, 24, seq(0, 23)),
		"entity length 1":    cat(0, 0, 1, 0xff, ping),
		"entity length 23":   cat(0, 0, 23, seq(0, 23), ping),
		"entity length 25":   cat(0, 0, 25, seq(0, 25), ping),
		"entity length 32":   cat(0, 0, 32, seq(0, 32), ping),
		"entity truncated":   cat(0, 0, 24, seq(0, 23)),
		"no entity length":   cat(0, 0),
		"bad command":        cat(0, 0, 0, 0xff),
		"command trailing":   cat(0, 0, 0, ping, 0),
		"command short":      cat(0, 0, 0, 0x05, seq(0, 23)),
		"relay tag trailing": cat(0, 24, seq(0, 24), 24, seq(0, 24), 0x82, 0x82),
	}
	for name, raw := range cases {
		tx, signed, err := queue.ParseTransmission(raw)
		if !errors.Is(err, queue.ErrSyntax) {
			t.Errorf("%s: ParseTransmission = %+v, %v; want ErrSyntax", name, tx, err)
		}
		if signed != nil || tx.Auth != nil || tx.CorrID != nil || tx.Entity != nil {
			t.Errorf("%s: fields returned with an error", name)
		}
	}
}

func TestTransmissionAppendPanics(t *testing.T) {
	ping := queue.Command{Tag: queue.TagPING}
	for _, tx := range []queue.Transmission{
		{Auth: make([]byte, 31), Command: ping},
		{Auth: make([]byte, 33), Command: ping},
		{CorrID: make([]byte, 1), Command: ping},
		{CorrID: make([]byte, 32), Command: ping},
		{Entity: make([]byte, 23), Command: ping},
		{Entity: make([]byte, 32), Command: ping},
	} {
		mustPanic(t, "Append with a field of the wrong size", func() { tx.Append(nil) })
	}
	// An empty, non-nil field is the same as an absent one.
	tx := queue.Transmission{Auth: []byte{}, CorrID: []byte{}, Entity: []byte{}, Command: ping}
	if got := tx.Append(nil); !bytes.Equal(got, []byte{0, 0, 0, 0x0a}) {
		t.Errorf("empty fields: %x", got)
	}
}

// TestTransmissionInBlock runs a few transmissions through a block and back.
func TestTransmissionInBlock(t *testing.T) {
	var bb queue.BlockBuilder
	var raws [][]byte
	for _, c := range commandCases() {
		tx := queue.Transmission{CorrID: seq(1, 24), Entity: seq(2, 24), Command: c.cmd}
		raw := tx.Append(nil)
		if !bb.Fits(len(raw)) {
			continue
		}
		bb.Add(raw)
		raws = append(raws, raw)
	}
	block := bb.AppendBlock(nil)
	txs, err := queue.ParseBlock(nil, block)
	if err != nil || len(txs) != len(raws) {
		t.Fatalf("ParseBlock = %d, %v", len(txs), err)
	}
	for i, raw := range txs {
		if !bytes.Equal(raw, raws[i]) {
			t.Fatalf("transmission %d differs", i)
		}
		if _, _, err := queue.ParseTransmission(raw); err != nil {
			t.Fatalf("transmission %d: %v", i, err)
		}
	}
}
