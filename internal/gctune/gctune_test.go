package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// gogc returns the collector's target now.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, headroom int64
		want           int
	}{
		{0, 32 * mib, 1000}, // nothing live yet: the cap
		{32 * mib / 15, 32 * mib, 1000},
		{4 * mib, 32 * mib, 800}, // grows by 32 MiB, not 4
		{8 * mib, 32 * mib, 400},
		{32 * mib, 32 * mib, 100},   // as Go's default
		{1024 * mib, 32 * mib, 100}, // a large heap keeps the default
		{1 << 62, 32 * mib, 100},    // no overflow
		{1, 1 << 62, 1000},          // no overflow
	} {
		if got := Percent(tc.live, tc.headroom); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
		}
	}
}

// TestRun checks that Run raises GOGC for this test's small heap and sets
// it back when its context ends, and that it leaves it alone when GOGC is
// set in the environment.
func TestRun(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, env := range []string{"", "50"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(ctx, 1<<40, func(k string) string {
				if k == "GOGC" {
					return env
				}
				return ""
			})
		}()
		// Wait until Run has set the target (or, with GOGC set, for a
		// while in which it must not).
		got := 100
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			got = gogc()
			if got != 100 {
				break
			}
		}
		cancel()
		<-done
		after := gogc()
		switch {
		case env == "" && got != maxPercent:
			t.Errorf("GOGC unset: Run set %d, want %d for a heap far below the headroom", got, maxPercent)
		case env != "" && got != 100:
			t.Errorf("GOGC=%s: Run changed the target to %d", env, got)
		case after != 100:
			t.Errorf("GOGC=%q: after Run the target is %d, want 100 back", env, after)
		}
	}
}
