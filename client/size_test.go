package client

import (
	"testing"

	"github.com/hushrelay/hush/client/ratchet"
)

// TestSizesMatchProtocol pins the sizes that queue/PROTOCOL.md section 19
// states.
func TestSizesMatchProtocol(t *testing.T) {
	for name, got := range map[string][2]int{
		"envelope":            {EnvelopeSize, 16000},
		"link check":          {linkCheckSize, 16},
		"envelope sealed":     {EnvelopeSize - envelopeHeaderSize, 15943},
		"envelope inner":      {envelopeInnerSize, 15927},
		"confirmation zeros":  {envelopeInnerSize - 1 - ratchet.HelloSize - ratchet.MessageSize, 273},
		"message zeros":       {envelopeInnerSize - 1 - ratchet.MessageSize, 1426},
		"max text":            {MaxTextSize, 14353},
		"ratchet public keys": {ratchet.PublicKeysSize, 1249},
		"ratchet hello":       {ratchet.HelloSize, 1153},
	} {
		if got[0] != got[1] {
			t.Errorf("%s: %d, PROTOCOL.md says %d", name, got[0], got[1])
		}
	}
}
