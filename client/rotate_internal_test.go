package client

import (
	"testing"
	"time"
)

// TestNextRotationJitter draws 1,000 automatic rotation times: each lies
// between 3/4 and 5/4 of Config.RotateEvery after now, and they spread
// over that range (some in each quarter of it), so that a client's
// contacts do not rotate together.
func TestNextRotationJitter(t *testing.T) {
	c := &Client{cfg: Config{RotateEvery: 7 * 24 * time.Hour}}
	now := time.Now()
	lo, hi := now.Add(c.cfg.RotateEvery*3/4), now.Add(c.cfg.RotateEvery*5/4)
	var quarters [4]int
	for range 1000 {
		at := c.nextRotation(now)
		if at.Before(lo) || at.After(hi) {
			t.Fatalf("next rotation %v after now, want within [%v, %v]", at.Sub(now), lo.Sub(now), hi.Sub(now))
		}
		q := int(4 * at.Sub(lo) / hi.Sub(lo))
		quarters[min(q, 3)]++
	}
	for i, n := range quarters {
		if n == 0 {
			t.Fatalf("no rotation in quarter %d of the range: %v", i, quarters)
		}
	}
}
