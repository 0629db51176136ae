package relay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// refusal is why a connection attempt was refused before its handshake.
type refusal int

const (
	admitted refusal = iota
	// refusedSessions: the relay holds Config.MaxSessions connections.
	refusedSessions
	// refusedAddress: the source address holds MaxSessionsPerAddress
	// connections, or its share of the handshakes in progress.
	refusedAddress
	// refusedHandshakes: Config.MaxHandshakes handshakes are in progress.
	refusedHandshakes
	// refusedPrefix: the source address's network prefix (IPv4 /24, IPv6
	// /64) holds MaxSessionsPerPrefix connections, or its share of the
	// handshakes in progress.
	refusedPrefix
	refusalCount
)

// String returns the refusal's metric label.
func (why refusal) String() string {
	switch why {
	case refusedSessions:
		return "sessions"
	case refusedAddress:
		return "address"
	case refusedHandshakes:
		return "handshakes"
	case refusedPrefix:
		return "prefix"
	}
	return "admitted"
}

// prefixHandshakeShare and addressHandshakeShare are the parts of
// Config.MaxHandshakes that one source prefix and one source address may
// hold: at most MaxHandshakes/prefixHandshakeShare and
// MaxHandshakes/addressHandshakeShare of them (and at least one), so that
// one network cannot take every slot, and one address cannot take its
// network's: with the defaults 128 per network and 32 per address, it
// takes four addresses of one network to keep its other addresses'
// connections out, as it does for MaxSessionsPerPrefix.
const (
	prefixHandshakeShare  = 4
	addressHandshakeShare = 16
)

// Prefix lengths of the per-prefix caps: the network a source address is
// in, as an operator or a provider hands them out. An IPv6 host commonly
// has a whole /64, so a cap per IPv6 address alone bounds nothing.
const (
	prefixBits4 = 24
	prefixBits6 = 64
)

// prefixOf returns the network of addr that the per-prefix caps count:
// its /24 for IPv4 (IPv4-mapped IPv6 included), its /64 for IPv6. The
// zero Addr has the zero Prefix.
func prefixOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := prefixBits6
	if addr.Is4() {
		bits = prefixBits4
	}
	p, _ := addr.Prefix(bits)
	return p
}

// admission counts the relay's connections, in total, per source address
// and per source prefix, from their acceptance (before any TLS or QUIC
// handshake work) to their end, and refuses those beyond the caps of
// Config. Addresses and prefixes are held only in memory, only while they
// have a connection, and never logged. Connections from an uncapped
// address count in its address's entry but not in its prefix's, so that
// the local Tor's many connections take nothing from its neighbours.
type admission struct {
	maxConns, maxPerAddr, maxPerPrefix                          int
	maxHandshakes, maxHandshakesPerAddr, maxHandshakesPerPrefix int
	uncapped                                                    map[netip.Addr]bool

	mu sync.Mutex
	// conns counts the connections admitted and not yet released,
	// handshakes those of them still handshaking.
	conns, handshakes int
	// perAddr holds the counts of each source address with a connection,
	// perPrefix those of each prefix with a connection from a capped
	// address.
	perAddr   map[netip.Addr]*addrCount
	perPrefix map[netip.Prefix]*addrCount
}

type addrCount struct{ conns, handshakes int }

func newAdmission(cfg *Config) *admission {
	a := &admission{
		maxConns:               cfg.MaxSessions,
		maxPerAddr:             cfg.MaxSessionsPerAddress,
		maxPerPrefix:           cfg.MaxSessionsPerPrefix,
		maxHandshakes:          cfg.MaxHandshakes,
		maxHandshakesPerAddr:   max(1, cfg.MaxHandshakes/addressHandshakeShare),
		maxHandshakesPerPrefix: max(1, cfg.MaxHandshakes/prefixHandshakeShare),
		uncapped:               make(map[netip.Addr]bool),
		perAddr:                make(map[netip.Addr]*addrCount),
		perPrefix:              make(map[netip.Prefix]*addrCount),
	}
	for _, addr := range cfg.UncappedAddresses {
		a.uncapped[addr.Unmap()] = true
	}
	return a
}

// ticket is one admitted connection. handshakeDone and release are
// idempotent and safe for concurrent use.
type ticket struct {
	a    *admission
	addr netip.Addr
	// prefix is addr's, valid only if the connection counts in it (its
	// address is capped).
	prefix netip.Prefix
	// Guarded by a.mu.
	handshaking, released bool
}

// admit counts a new connection from addr, still to handshake, or
// returns why it is refused.
func (a *admission) admit(addr netip.Addr) (*ticket, refusal) {
	addr = addr.Unmap()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns >= a.maxConns {
		return nil, refusedSessions
	}
	if a.handshakes >= a.maxHandshakes {
		return nil, refusedHandshakes
	}
	capped := !a.uncapped[addr]
	c := a.perAddr[addr]
	if c != nil && capped && (c.conns >= a.maxPerAddr || c.handshakes >= a.maxHandshakesPerAddr) {
		return nil, refusedAddress
	}
	tk := &ticket{a: a, addr: addr, handshaking: true}
	if capped {
		tk.prefix = prefixOf(addr)
		p := a.perPrefix[tk.prefix]
		if p != nil && (p.conns >= a.maxPerPrefix || p.handshakes >= a.maxHandshakesPerPrefix) {
			return nil, refusedPrefix
		}
		if p == nil {
			p = &addrCount{}
			a.perPrefix[tk.prefix] = p
		}
		p.conns++
		p.handshakes++
	}
	if c == nil {
		c = &addrCount{}
		a.perAddr[addr] = c
	}
	c.conns++
	c.handshakes++
	a.conns++
	a.handshakes++
	return tk, admitted
}

// busy reports whether at least half of the handshake slots are taken.
func (a *admission) busy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handshakes >= a.maxHandshakes/2
}

// counts returns the connections and handshakes in progress.
func (a *admission) counts() (conns, handshakes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns, a.handshakes
}

// handshakeDone marks the connection's handshakes (transport and hush)
// complete.
func (t *ticket) handshakeDone() {
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	t.endHandshakeLocked()
}

func (t *ticket) endHandshakeLocked() {
	if !t.handshaking {
		return
	}
	t.handshaking = false
	t.a.handshakes--
	t.a.perAddr[t.addr].handshakes--
	if t.prefix.IsValid() {
		t.a.perPrefix[t.prefix].handshakes--
	}
}

// release ends the connection's count.
func (t *ticket) release() {
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.released {
		return
	}
	t.endHandshakeLocked()
	t.released = true
	a.conns--
	c := a.perAddr[t.addr]
	if c.conns--; c.conns == 0 {
		delete(a.perAddr, t.addr)
	}
	if t.prefix.IsValid() {
		p := a.perPrefix[t.prefix]
		if p.conns--; p.conns == 0 {
			delete(a.perPrefix, t.prefix)
		}
	}
}

// addrOf returns the IP address of a TCP or UDP address, and the zero
// Addr for anything else (all of which then share one count).
func addrOf(na net.Addr) netip.Addr {
	switch v := na.(type) {
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// logLimit is how often at most a rateLog writes a line.
const logLimit = 10 * time.Second

// rateLog writes a log line at most once per logLimit, with the number of
// lines it held back since the last one written. The zero value is ready.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// log writes msg at level with args, unless a line was written less than
// logLimit ago.
func (l *rateLog) log(lg *slog.Logger, level slog.Level, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < logLimit {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	lg.Log(context.Background(), level, msg, append(args, "suppressed", n)...)
}
