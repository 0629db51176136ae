package client

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/queue"
)

// TestDownRememberedTenMinutes writes, in a real store, that a relay was
// found down, and reads it back as later runs would: remembered 9 minutes
// later, forgotten 11 minutes later (rememberDown), and forgotten at once
// when a run reached the relay. Another relay's entry is kept meanwhile.
func TestDownRememberedTenMinutes(t *testing.T) {
	dir := t.TempDir()
	v, err := vault.Create(filepath.Join(dir, "store"), vault.Secret{KeyFile: filepath.Join(dir, "key")})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var a, b queue.Fingerprint
	a[0], b[0] = 1, 2
	t0 := time.Date(2026, 12, 6, 20, 0, 30, 0, time.UTC)
	down := func(at time.Time) map[queue.Fingerprint]bool {
		t.Helper()
		var m map[queue.Fingerprint]bool
		if err := v.View(func(tx *vault.Tx) error {
			var err error
			m, err = downBefore(tx, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := down(t0); len(m) != 0 {
		t.Fatalf("a new store remembers %v", m)
	}
	if err := v.Update(func(tx *vault.Tx) error {
		if err := rememberReachable(tx, a, true, t0); err != nil {
			return err
		}
		return rememberReachable(tx, b, true, t0)
	}); err != nil {
		t.Fatal(err)
	}
	if m := down(t0.Add(9 * time.Minute)); !m[a] || !m[b] || len(m) != 2 {
		t.Fatalf("9 minutes later: %v, want both relays", m)
	}
	if m := down(t0.Add(11 * time.Minute)); len(m) != 0 {
		t.Fatalf("11 minutes later: %v, want none", m)
	}
	if err := v.Update(func(tx *vault.Tx) error { return rememberReachable(tx, a, false, t0.Add(time.Minute)) }); err != nil {
		t.Fatal(err)
	}
	if m := down(t0.Add(2 * time.Minute)); m[a] || !m[b] {
		t.Fatalf("after reaching one relay: %v, want only the other", m)
	}
}
