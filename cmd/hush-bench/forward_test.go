//go:build linux

package main

import "testing"

// TestForward runs the forward scenario briefly and checks its figures'
// fields: every message delivered once and in order, both ways of sending
// measured.
func TestForward(t *testing.T) {
	t.Parallel()
	res := bench(t, "forward", "--transport", "tcp", "--runs", "2", "--messages", "20", "--rate", "50")
	if d := number(t, res, "delivered"); d != 2*2*20 {
		t.Errorf("delivered %v messages, want 80", d)
	}
	if r := res["runs"].([]any); len(r) != 2 {
		t.Errorf("%d runs, want 2", len(r))
	}
	for _, way := range []string{"direct", "forwarded"} {
		m, ok := res[way].(map[string]any)
		if !ok {
			t.Fatalf("no %q object in %v", way, res)
		}
		for _, key := range []string{"p50_ms", "p99_ms", "dest_cpu_us_per_msg", "fwd_cpu_us_per_msg", "relays_cpu_us_per_msg"} {
			if v := number(t, m, key); v < 0 {
				t.Errorf("%s %s = %v", way, key, v)
			}
		}
		if p50, p99 := number(t, m, "p50_ms"), number(t, m, "p99_ms"); p50 <= 0 || p99 < p50 {
			t.Errorf("%s: p50 %v ms, p99 %v ms", way, p50, p99)
		}
	}
}
