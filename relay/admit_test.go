package relay

import (
	"net/netip"
	"testing"
)

// TestAdmissionPrefixes: the per-prefix caps count an IPv6 /64 and an
// IPv4 /24 (IPv4-mapped IPv6 addresses as their IPv4 address) together,
// whatever the addresses in them; released connections free their
// prefix's slots. The loopback tests cannot use several IPv6 source
// addresses (::1 is the only one), so this checks the counting itself.
func TestAdmissionPrefixes(t *testing.T) {
	a := newAdmission(&Config{MaxSessions: 100, MaxSessionsPerAddress: 2, MaxSessionsPerPrefix: 3, MaxHandshakes: 100})
	admit, refused := admitFuncs(t, a)
	// IPv6: three addresses of one /64 fill it.
	v6 := []*ticket{admit("2001:db8:1:2::1"), admit("2001:db8:1:2::1"), admit("2001:db8:1:2:ffff:ffff:ffff:ffff")}
	refused("2001:db8:1:2::1", refusedAddress)
	refused("2001:db8:1:2:abcd::7", refusedPrefix)
	admit("2001:db8:1:3::1") // the next /64
	admit("2001:db9:1:2::1") // the same low 64 bits, another /64
	v6[2].release()
	v6[2].release() // idempotent
	admit("2001:db8:1:2:abcd::7")
	// IPv4 and IPv4-mapped IPv6 share the /24.
	admit("192.0.2.1")
	admit("::ffff:192.0.2.200")
	admit("192.0.2.77")
	refused("::ffff:192.0.2.78", refusedPrefix)
	admit("192.0.3.1")
	// Nothing left over once every connection is released.
	b := newAdmission(&Config{MaxSessions: 100, MaxSessionsPerAddress: 2, MaxSessionsPerPrefix: 3, MaxHandshakes: 100})
	var tks []*ticket
	for _, s := range []string{"2001:db8::1", "2001:db8::2", "10.0.0.1", "10.0.0.2"} {
		tk, why := b.admit(netip.MustParseAddr(s))
		if why != admitted {
			t.Fatalf("%s refused", s)
		}
		tk.handshakeDone()
		tks = append(tks, tk)
	}
	for _, tk := range tks {
		tk.release()
	}
	if len(b.perAddr) != 0 || len(b.perPrefix) != 0 || b.conns != 0 || b.handshakes != 0 {
		t.Fatalf("after every release: %d addresses, %d prefixes, %d connections, %d handshakes held", len(b.perAddr), len(b.perPrefix), b.conns, b.handshakes)
	}
}

// TestAdmissionHandshakeShares: one address holds at most a sixteenth of
// the handshake slots and one network a quarter, so that it takes four
// addresses of a network to fill its share; an address that holds its
// share leaves the rest to its network's other addresses; a handshake
// that completes frees its slot in both.
func TestAdmissionHandshakeShares(t *testing.T) {
	a := newAdmission(&Config{MaxSessions: 1000, MaxSessionsPerAddress: 100, MaxSessionsPerPrefix: 400, MaxHandshakes: 64})
	admit, refused := admitFuncs(t, a)
	var first []*ticket
	for range 4 { // 64/16
		first = append(first, admit("10.0.0.1"))
	}
	refused("10.0.0.1", refusedAddress)
	for _, s := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		for range 4 {
			admit(s)
		}
	}
	// The /24 holds its 64/4.
	refused("10.0.0.5", refusedPrefix)
	admit("10.0.1.5")
	// A completed handshake frees its slot, for its address and network.
	first[0].handshakeDone()
	admit("10.0.0.5")
	refused("10.0.0.1", refusedPrefix)
}

// admitFuncs returns admit, which admits a connection from an address to
// a and fails the test if it is refused, and refused, which fails the
// test unless a connection from an address is refused for want.
func admitFuncs(t *testing.T, a *admission) (admit func(string) *ticket, refused func(string, refusal)) {
	admit = func(s string) *ticket {
		t.Helper()
		tk, why := a.admit(netip.MustParseAddr(s))
		if why != admitted {
			t.Fatalf("%s refused (%v), want admitted", s, why)
		}
		return tk
	}
	refused = func(s string, want refusal) {
		t.Helper()
		if tk, why := a.admit(netip.MustParseAddr(s)); why != want {
			if tk != nil {
				tk.release()
			}
			t.Fatalf("%s: %v, want refused (%v)", s, why, want)
		}
	}
	return admit, refused
}
