package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hushrelay/hush/queue"
)

// Config configures a Relay. Zero values are the documented defaults.
type Config struct {
	// Listen is the host:port of both listeners: QUIC on UDP and TLS 1.3
	// on TCP, on the same port number. Default ":5223". Port 0 picks a free
	// port (the same number for both).
	Listen string
	// Certificate is the relay's TLS certificate chain, from
	// IssueCertificate. Required.
	Certificate tls.Certificate
	// StorePath is the bbolt file holding queues and messages. Required.
	StorePath string
	// Password, if not empty, is required by NEW. It must satisfy
	// queue.ValidPassword.
	Password string

	// QueueQuota is the most messages one queue holds. Default 128.
	QueueQuota int
	// MaxMessageSize is the largest SEND body accepted, at most (and by
	// default) queue.MaxMessageSize.
	MaxMessageSize int
	// MessageTTL is how long an undelivered message is kept. Default 21 days.
	MessageTTL time.Duration
	// UnsecuredTTL is how long a queue that was never secured (KEY or SKEY)
	// is kept. Default 7 days.
	UnsecuredTTL time.Duration
	// SweepInterval is how often expired messages and queues are removed.
	// Default 10 minutes.
	SweepInterval time.Duration

	// HandshakeTimeout bounds the TLS and hush handshakes. Default 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a session that sent nothing for this long.
	// Default 5 minutes; clients PING more often. It is also the QUIC
	// max_idle_timeout the relay advertises (the QUIC connection's idle
	// timeout is the smaller of the two sides', RFC 9000 section 10.1).
	IdleTimeout time.Duration
	// StatelessResetKey is the QUIC stateless reset key, from
	// StatelessResetKey(identity), so that it survives restarts. Zero: a
	// random key for this run (connections of an earlier run then end only
	// at their idle timeout).
	StatelessResetKey [32]byte
	// NewRate and SendRate are the per-session sustained rates, per second,
	// of NEW and SEND. A session over its rate is slowed down (its commands
	// wait), never answered with an error. Defaults 10 and 2000.
	NewRate, SendRate float64
	// CommandRate is the per-session sustained rate, per second, of all
	// commands together, authorized or not; FailureRate that of commands
	// answered with an error. A session over either is slowed down: its
	// reader waits before it reads the next block. Defaults 4000 and 20.
	CommandRate, FailureRate float64
	// RelayNewRate is the relay-wide sustained rate, per second, of NEW,
	// over every session: NEW commands beyond it wait. Default 100.
	RelayNewRate float64
	// RelayFailureRate is a relay-wide budget, per second, of commands
	// answered ERR AUTH or SYNTAX beyond the sessions' own FailureRate,
	// shared by every session (up to a second of it at once): a session
	// over its own budget waits only when this one is spent too. It lets
	// a client that resubscribes many deleted queues after a reconnection
	// (each answered ERR AUTH) do so at once, while a garbage flood, which
	// spends it, is slowed down to FailureRate per session as before; it
	// bounds what floods cost the relay beyond FailureRate per session (at
	// about 60 µs each, 1000 a second are 6% of a core). Default 1000;
	// negative: none.
	RelayFailureRate float64

	// MaxSessions bounds the connections the relay holds, TCP and QUIC
	// together, from their acceptance (before the TLS or QUIC handshake)
	// to their end. Beyond it a new TCP connection is closed at once and
	// a QUIC connection attempt is refused (CONNECTION_REFUSED). Default
	// 8192 (DefaultMaxSessions): TCP sessions take a file descriptor each.
	MaxSessions int
	// MaxSessionsPerAddress is the same bound per source IP address.
	// Default 256.
	MaxSessionsPerAddress int
	// MaxSessionsPerPrefix is the same bound per source network: the /24
	// of an IPv4 address, the /64 of an IPv6 one (a host commonly has a
	// whole /64, so that the per-address cap alone would bound nothing
	// over IPv6). Default 1024 (DefaultMaxSessionsPerPrefix): one network
	// takes at most an eighth of the default MaxSessions.
	MaxSessionsPerPrefix int
	// MaxHandshakes bounds the connections whose handshakes (TLS or QUIC,
	// then hush) are in progress; one prefix (as for
	// MaxSessionsPerPrefix) may hold a quarter of them, one address a
	// sixteenth (at least one each), so that one address cannot keep the
	// other addresses of its network out.
	// Beyond it new connections are refused as above. Default 512. When
	// half are taken, QUIC connection attempts must first prove their
	// address (a Retry, RFC 9000 section 8.1.2).
	MaxHandshakes int
	// FirstByteTimeout closes a TCP connection that sent no byte of its
	// TLS handshake within it. Default 5 s.
	FirstByteTimeout time.Duration
	// UncappedAddresses are source addresses the per-address and
	// per-prefix caps do not apply to: the local Tor daemon's, whose
	// connections carry every onion client. Their connections do not
	// count in their prefix either. The relay-wide caps still apply.
	UncappedAddresses []netip.Addr

	// MaxSubscriptions is the most queues one session may subscribe to.
	// Default 16384; SUB beyond it gets ERR PROHIBITED.
	MaxSubscriptions int

	// MaxStoredBytes caps the bytes the store holds: its messages (their
	// bodies plus 64 bytes each) and 256 bytes per queue. At or above it, NEW and SEND are
	// answered ERR QUOTA while every other command, ACK and DEL included,
	// works as usual; they are accepted again once messages are
	// acknowledged, deleted or expire. Default 8 GiB
	// (DefaultMaxStoredBytes); negative: no cap.
	MaxStoredBytes int64
	// MinFreeDisk is the free-disk reserve: when the filesystem holding
	// the store has less free space than this, counting the store file's
	// free pages (checked every second, and after commits at most every
	// 10 ms), NEW and SEND are refused in the same way, so that ACK and
	// DEL, which need a few pages each, can still be committed and free
	// space. Default 256 MiB (DefaultMinFreeDisk); negative: no reserve.
	// Whatever it is, after a commit fails for lack of space (ENOSPC),
	// NEW and SEND are refused until the filesystem alone has the reserve
	// again, and at least 1 MiB.
	MinFreeDisk int64

	// MappedStoreLimit bounds, in bytes, the relay process's file-backed
	// resident memory: bbolt reads the store through a memory mapping, and
	// the pages it reads stay mapped into the relay (counted in its RSS and
	// in the OOM killer's score) although they are page cache. Ten times a
	// second, on Linux, when that memory is above the limit, the relay
	// drops the store file's pages from its mapping; they stay in the page
	// cache, and later reads map them again with minor faults. While the
	// store is busy (it committed, or mapped more of the file, within the
	// last second) the relay drops at most once every 10 s, since each
	// drop costs the faults that follow it, so a busy relay's RSS may
	// reach its store file's size; a relay at rest is back under the limit
	// a second after its last write or read. Default 64 MiB
	// (DefaultMappedStoreLimit); negative: never. The process's executable
	// counts too (about 11 MiB of hush-relay), so a limit near that drops
	// the store's pages at every check. Elsewhere than Linux it has no
	// effect.
	MappedStoreLimit int64

	// DisableForwarding turns private routing's forwarding off: PRXY and
	// PFWD are answered ERR PROHIBITED (PROTOCOL.md section 20). The relay
	// still accepts commands forwarded to it by other relays (RKEY,
	// RFWD).
	DisableForwarding bool
	// MaxForwardSessions bounds the relay-to-relay sessions the relay
	// holds to forward commands: one per destination. Default 64.
	MaxForwardSessions int
	// ForwardIdleTimeout closes a relay-to-relay session that forwarded
	// nothing for this long. Default 60 s.
	ForwardIdleTimeout time.Duration
	// ForwardRate is the per-session sustained rate, per second, of PFWD;
	// ForwardDestinationRate that of PFWD to one destination, over every
	// session. Commands over them wait. Defaults 200 and 1000.
	ForwardRate, ForwardDestinationRate float64
	// ReplayFilterSize bounds the ephemeral keys of forwarded commands
	// the relay remembers to refuse replays (about 64 bytes each); while
	// it is full, forwarded commands are answered ERR QUOTA. Default
	// 262144 (DefaultReplayFilterSize).
	ReplayFilterSize int

	// Drain starts the relay in drain mode: NEW is answered ERR PROHIBITED
	// while existing queues are served as usual, for decommissioning a
	// relay. SetDraining changes it at run time.
	Drain bool

	// Logger receives operational logs. At every level, debug included,
	// they never hold IP addresses, ports, queue IDs or message sizes: the
	// relay logs none, and wraps Logger in queue.RedactHandler so that
	// errors that embed addresses lose them. Default: discard.
	Logger *slog.Logger

	// Observe, if not nil, is called with every Sighting: each session
	// when its handshake completes, then each command it serves, with the
	// queue the command names. It is what an operator who changed the
	// relay's code could record (queue/PROTOCOL.md section 17), and is
	// there for tests that prove what a relay can link, such as which
	// queues share a session under each client isolation setting;
	// hush-relay never sets it. It is called from the session's
	// goroutines, concurrently, and must return quickly.
	Observe func(Sighting)

	// ObserveSource, if not nil, is called with the source address of
	// every connection the relay accepts, TCP or QUIC, before its
	// connection caps are checked. Like Observe it shows what an operator
	// who changed the relay's code could record; it is there for tests
	// that prove, relay-side, whose addresses a relay never sees (private
	// message routing, queue/PROTOCOL.md section 20). hush-relay never
	// sets it, and the relay logs no address. It is called from the
	// accepting goroutines and must return quickly.
	ObserveSource func(netip.Addr)
}

// Sighting is one thing a relay sees on a session (Config.Observe).
type Sighting struct {
	// Session numbers the relay's sessions from 1, in the order their
	// handshakes complete.
	Session uint64
	// Tag is the command's; zero when the session starts.
	Tag queue.Tag
	// Queue is the queue the command names: its recipient ID (for NEW,
	// that of the queue it created), or its sender ID for SEND and SKEY;
	// zero for PING and when the session starts.
	Queue queue.ID
}

// Defaults.
const (
	DefaultListen           = ":5223"
	DefaultQueueQuota       = 128
	DefaultMessageTTL       = 21 * 24 * time.Hour
	DefaultUnsecuredTTL     = 7 * 24 * time.Hour
	DefaultSweepInterval    = 10 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultNewRate          = 10
	DefaultSendRate         = 2000
	DefaultMaxSubscriptions = 16384
	DefaultCommandRate      = 4000
	DefaultFailureRate      = 20
	DefaultRelayNewRate     = 100
	DefaultRelayFailureRate = 1000

	DefaultMaxSessions           = 8192
	DefaultMaxSessionsPerAddress = 256
	DefaultMaxSessionsPerPrefix  = 1024
	DefaultMaxHandshakes         = 512
	DefaultFirstByteTimeout      = 5 * time.Second
	DefaultMappedStoreLimit      = 64 << 20
	DefaultMaxStoredBytes        = 8 << 30
	DefaultMinFreeDisk           = 256 << 20

	DefaultMaxForwardSessions     = 64
	DefaultForwardIdleTimeout     = 60 * time.Second
	DefaultForwardRate            = 200
	DefaultForwardDestinationRate = 1000
	DefaultReplayFilterSize       = 1 << 18
)

// ErrConfig is returned (wrapped, with the reason) by New for an invalid
// Config.
var ErrConfig = errors.New("invalid relay configuration")

func (c Config) withDefaults() (Config, error) {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.Certificate.Certificate) == 0 {
		return c, fmt.Errorf("%w: no certificate", ErrConfig)
	}
	if c.StorePath == "" {
		return c, fmt.Errorf("%w: no store path", ErrConfig)
	}
	if c.Password != "" && !queue.ValidPassword(c.Password) {
		return c, fmt.Errorf("%w: the password must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -", ErrConfig)
	}
	if c.QueueQuota == 0 {
		c.QueueQuota = DefaultQueueQuota
	}
	if c.MaxMessageSize == 0 || c.MaxMessageSize > queue.MaxMessageSize {
		c.MaxMessageSize = queue.MaxMessageSize
	}
	set(&c.MessageTTL, DefaultMessageTTL)
	set(&c.UnsecuredTTL, DefaultUnsecuredTTL)
	set(&c.SweepInterval, DefaultSweepInterval)
	set(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	if c.NewRate == 0 {
		c.NewRate = DefaultNewRate
	}
	if c.SendRate == 0 {
		c.SendRate = DefaultSendRate
	}
	if c.CommandRate == 0 {
		c.CommandRate = DefaultCommandRate
	}
	if c.FailureRate == 0 {
		c.FailureRate = DefaultFailureRate
	}
	if c.RelayNewRate == 0 {
		c.RelayNewRate = DefaultRelayNewRate
	}
	if c.RelayFailureRate == 0 {
		c.RelayFailureRate = DefaultRelayFailureRate
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessionsPerAddress == 0 {
		c.MaxSessionsPerAddress = DefaultMaxSessionsPerAddress
	}
	if c.MaxSessionsPerPrefix == 0 {
		c.MaxSessionsPerPrefix = DefaultMaxSessionsPerPrefix
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	set(&c.FirstByteTimeout, DefaultFirstByteTimeout)
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxStoredBytes == 0 {
		c.MaxStoredBytes = DefaultMaxStoredBytes
	}
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = DefaultMinFreeDisk
	}
	if c.MappedStoreLimit == 0 {
		c.MappedStoreLimit = DefaultMappedStoreLimit
	}
	if c.MaxForwardSessions == 0 {
		c.MaxForwardSessions = DefaultMaxForwardSessions
	}
	set(&c.ForwardIdleTimeout, DefaultForwardIdleTimeout)
	if c.ForwardRate == 0 {
		c.ForwardRate = DefaultForwardRate
	}
	if c.ForwardDestinationRate == 0 {
		c.ForwardDestinationRate = DefaultForwardDestinationRate
	}
	if c.ReplayFilterSize == 0 {
		c.ReplayFilterSize = DefaultReplayFilterSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = slog.New(queue.RedactHandler(c.Logger.Handler()))
	if c.QueueQuota < 0 || c.MaxMessageSize < 0 || c.NewRate < 0 || c.SendRate < 0 || c.MaxSubscriptions < 0 ||
		c.CommandRate < 0 || c.FailureRate < 0 || c.RelayNewRate < 0 ||
		c.MaxSessions < 0 || c.MaxSessionsPerAddress < 0 || c.MaxSessionsPerPrefix < 0 || c.MaxHandshakes < 0 ||
		c.MaxForwardSessions < 0 || c.ForwardRate < 0 || c.ForwardDestinationRate < 0 || c.ReplayFilterSize < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	return c, nil
}
