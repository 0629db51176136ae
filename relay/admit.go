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
	}
	return "admitted"
}

// addressHandshakeShare is the part of Config.MaxHandshakes that one
// source address may hold: at most MaxHandshakes/addressHandshakeShare of
// them (and at least one), so that one address cannot take every slot.
const addressHandshakeShare = 4

// admission counts the relay's connections, in total and per source
// address, from their acceptance (before any TLS or QUIC handshake work)
// to their end, and refuses those beyond the caps of Config. Addresses are
// held only in memory, only while they have a connection, and never logged.
type admission struct {
	maxConns, maxPerAddr, maxHandshakes, maxHandshakesPerAddr int
	uncapped                                                  map[netip.Addr]bool

	mu sync.Mutex
	// conns counts the connections admitted and not yet released,
	// handshakes those of them still handshaking.
	conns, handshakes int
	// perAddr holds the counts of each source address with a connection.
	perAddr map[netip.Addr]*addrCount
}

type addrCount struct{ conns, handshakes int }

func newAdmission(cfg *Config) *admission {
	a := &admission{
		maxConns:             cfg.MaxSessions,
		maxPerAddr:           cfg.MaxSessionsPerAddress,
		maxHandshakes:        cfg.MaxHandshakes,
		maxHandshakesPerAddr: max(1, cfg.MaxHandshakes/addressHandshakeShare),
		uncapped:             make(map[netip.Addr]bool),
		perAddr:              make(map[netip.Addr]*addrCount),
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
	c := a.perAddr[addr]
	if c != nil && !a.uncapped[addr] && (c.conns >= a.maxPerAddr || c.handshakes >= a.maxHandshakesPerAddr) {
		return nil, refusedAddress
	}
	if c == nil {
		c = &addrCount{}
		a.perAddr[addr] = c
	}
	c.conns++
	c.handshakes++
	a.conns++
	a.handshakes++
	return &ticket{a: a, addr: addr, handshaking: true}, admitted
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
