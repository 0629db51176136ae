package main

import (
	"fmt"
	"testing"
)

// TestAttack runs a small version of every attack (a per-address cap of
// 8, 32 handshakes in progress: 2 per address, 8 per /24; floods of 20
// sessions, 2 garbage and 4 NEW sessions, 1 s each) and checks what the
// attacker got and that the honest client kept working: a new connection
// at the first try, messages delivered, no failed command. The attacker
// (127.0.0.2) and the honest client (127.0.0.1) are in the same /24: the
// slowloris attack holds as many handshakes as its address may, which
// must leave the rest of its network's share to the honest client. Each
// measurement waits until the attack has built up (every flood session
// in), not only --settle, so that a slow machine's handshakes do not count
// as refusals. It asserts no timing.
func TestAttack(t *testing.T) {
	const perAddr = 8
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			res := bench(t, "attack", "--transport", tr, "--duration", "1s", "--settle", "1s",
				"--idle-tls", "20", "--idle-quic", "20", "--open-rate", "200", "--slowloris", "50",
				"--garbage", "2", "--new-flood", "4", "--relay-max-sessions-per-address", fmt.Sprint(perAddr),
				"--relay-max-handshakes", "32")
			rows, ok := res["rows"].([]any)
			if !ok || len(rows) != len(allAttacks) {
				t.Fatalf("rows: %v, want %d", res["rows"], len(allAttacks))
			}
			for _, r := range rows {
				row, _ := r.(map[string]any)
				name, _ := row["attack"].(string)
				attempts, held, refused := number(t, row, "attempts"), number(t, row, "held"), number(t, row, "refused")
				if ok, _ := row["connect_ok"].(bool); !ok || number(t, row, "delivered") == 0 || number(t, row, "failures") != 0 {
					t.Errorf("%s: honest client: connected %v, %v delivered, %v failures", name, row["connect_ok"], row["delivered"], row["failures"])
				}
				switch name {
				case "idle-tls", "idle-quic":
					if held > perAddr || held+refused != attempts || attempts != 20 {
						t.Errorf("%s: %v attempts, %v held, %v refused; want 20, at most %d, the rest", name, attempts, held, refused, perAddr)
					}
				case "garbage", "new-flood":
					// Fewer sessions than the per-address cap, and the
					// attacks before have let go of theirs: each gets in,
					// at the latest when it dials again.
					if refused != 0 {
						t.Errorf("%s: %v of its sessions refused, want none", name, refused)
					}
					if held == 0 {
						t.Errorf("%s: no command answered", name)
					}
				}
			}
		})
	}
}
