package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

const errPasswordChars = "the password must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -"

// fileConfig is config.toml. Zero values mean the defaults.
type fileConfig struct {
	Listen                string   `toml:"listen"`
	Host                  string   `toml:"host"`
	Password              string   `toml:"password"`
	PasswordFile          string   `toml:"password_file"`
	QueueQuota            int      `toml:"queue_quota"`
	MaxMessageSize        int      `toml:"max_message_size"`
	MessageTTL            duration `toml:"message_ttl"`
	UnsecuredTTL          duration `toml:"unsecured_ttl"`
	SweepInterval         duration `toml:"sweep_interval"`
	HandshakeTimeout      duration `toml:"handshake_timeout"`
	IdleTimeout           duration `toml:"idle_timeout"`
	NewRate               float64  `toml:"new_rate"`
	SendRate              float64  `toml:"send_rate"`
	MaxSubscriptions      int      `toml:"max_subscriptions"`
	CommandRate           float64  `toml:"command_rate"`
	FailureRate           float64  `toml:"failure_rate"`
	RelayNewRate          float64  `toml:"relay_new_rate"`
	RelayFailureRate      float64  `toml:"relay_failure_rate"`
	MaxSessions           int      `toml:"max_sessions"`
	MaxSessionsPerAddress int      `toml:"max_sessions_per_address"`
	MaxSessionsPerPrefix  int      `toml:"max_sessions_per_prefix"`
	MaxHandshakes         int      `toml:"max_handshakes"`
	FirstByteTimeout      duration `toml:"first_byte_timeout"`
	// MaxStoredMiB and MinFreeDiskMiB are in MiB; negative means none.
	MaxStoredMiB   int `toml:"max_stored_mib"`
	MinFreeDiskMiB int `toml:"min_free_disk_mib"`
	// MappedStoreLimitMiB is in MiB; negative means never.
	MappedStoreLimitMiB int    `toml:"mapped_store_limit_mib"`
	LogLevel            string `toml:"log_level"`
	LogFormat           string `toml:"log_format"`
	Admin               string `toml:"admin"`
	Drain               bool   `toml:"drain"`
	Forwarding          string `toml:"forwarding"`
	Tor                 string `toml:"tor"`
	TorControl          string `toml:"tor_control"`
	Torrc               string `toml:"torrc"`
}

// maxMappedStoreLimitMiB is the largest mapped_store_limit_mib whose byte
// count fits an int64.
const maxMappedStoreLimitMiB = math.MaxInt64 >> 20

// Defaults of the options that the relay package does not know.
const (
	defaultAdmin      = "127.0.0.1:5224"
	defaultTorControl = "127.0.0.1:9051"
)

// duration is a time.Duration written as a Go duration string ("504h").
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"90s\", \"10m\" or \"504h\"", b)
	}
	if v < 0 {
		return fmt.Errorf("the duration %q is negative", b)
	}
	*d = duration(v)
	return nil
}

// formatDuration writes d in the largest whole unit of h, m or s.
func formatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// configOption documents one key of config.toml.
type configOption struct {
	key string
	doc string // comment lines, without "# "
	def string // the default, as a TOML value
}

func configOptions() []configOption {
	q := strconv.Quote
	return []configOption{
		{"listen", `The host:port to listen on. The relay uses the same port number for QUIC
(UDP) and for TLS over TCP: open both in the firewall. ":5223" listens on
every address.`, q(relay.DefaultListen)},
		{"host", `The host written into the relay's address: the public DNS name or IP
address that clients dial. Empty: the listen host if it is a specific
address, else "localhost" (with a warning: only this machine can use it).`, `""`},
		{"password", `The password needed to create queues on this relay (not to send to
them): 1 to 128 characters of A-Z a-z 0-9 . _ ~ -. It is part of the
address printed by "hush-relay address". Empty: anyone who knows the
address may create queues.`, `""`},
		{"password_file", `Read the password from the first line of this file instead; a relative
path is relative to the data directory.`, `""`},
		{"queue_quota", `The most messages one queue holds; a SEND beyond it gets ERR QUOTA.`,
			strconv.Itoa(relay.DefaultQueueQuota)},
		{"max_message_size", fmt.Sprintf(`The largest message body accepted, in bytes, at most %d; a larger SEND
gets ERR LARGE.`, queue.MaxMessageSize), strconv.Itoa(queue.MaxMessageSize)},
		{"message_ttl", `How long an undelivered message is kept. Durations are Go durations:
"90s", "10m", "504h" (21 days).`, q(formatDuration(relay.DefaultMessageTTL))},
		{"unsecured_ttl", `How long a queue that was never secured (KEY or SKEY) is kept.`,
			q(formatDuration(relay.DefaultUnsecuredTTL))},
		{"sweep_interval", `How often expired messages and queues are removed.`,
			q(formatDuration(relay.DefaultSweepInterval))},
		{"handshake_timeout", `How long a new connection has for the TLS and hush handshakes.`,
			q(formatDuration(relay.DefaultHandshakeTimeout))},
		{"idle_timeout", `A session that sends nothing for this long is closed (clients PING
more often).`, q(formatDuration(relay.DefaultIdleTimeout))},
		{"new_rate", `Queues one session may create per second, sustained; a faster session
is slowed down, not refused.`, strconv.Itoa(relay.DefaultNewRate)},
		{"send_rate", `Messages one session may send per second, sustained; a faster session
is slowed down, not refused.`, strconv.Itoa(relay.DefaultSendRate)},
		{"max_subscriptions", `The most queues one session may subscribe to; SUB beyond it gets
ERR PROHIBITED.`, strconv.Itoa(relay.DefaultMaxSubscriptions)},
		{"command_rate", `Commands of any kind one session may send per second, sustained; a
faster session is slowed down (the relay reads its next block later).`,
			strconv.Itoa(relay.DefaultCommandRate)},
		{"failure_rate", `Commands answered ERR AUTH or ERR SYNTAX one session may send per
second, sustained (a flood of made-up IDs and keys costs the relay as much
as real commands); a faster session is slowed down.`, strconv.Itoa(relay.DefaultFailureRate)},
		{"relay_new_rate", `Queues the whole relay creates per second, over all sessions,
sustained; NEW beyond it waits.`, strconv.Itoa(relay.DefaultRelayNewRate)},
		{"relay_failure_rate", `Commands answered ERR AUTH or ERR SYNTAX per second beyond the
sessions' own failure_rate, shared by all sessions: a client that
resubscribes many deleted queues after a reconnection is not slowed down
while it lasts, and a flood of made-up commands spends it, then waits at
failure_rate. A negative value: none.`, strconv.Itoa(relay.DefaultRelayFailureRate)},
		{"max_sessions", `The most connections the relay holds, TCP and QUIC together, counted
from their acceptance (before TLS) to their end. Beyond it a new TCP
connection is closed at once, before TLS, and a QUIC attempt is refused
(CONNECTION_REFUSED). Every TCP connection takes a file descriptor: keep
this well below the relay's descriptor limit (ulimit -n). An idle session
costs about 30 KiB over TCP and 85 KiB over QUIC, so the default bounds
them to about 700 MiB.`, strconv.Itoa(relay.DefaultMaxSessions)},
		{"max_sessions_per_address", `The most connections from one source IP address, refused in the same
way. Connections through an onion service (tor) all come from the
loopback address, to which this cap does not apply when tor is on.`,
			strconv.Itoa(relay.DefaultMaxSessionsPerAddress)},
		{"max_sessions_per_prefix", `The most connections from one source network, refused in the same
way: the /24 of an IPv4 address, the /64 of an IPv6 one (a host commonly
has a whole /64 to pick addresses from). The loopback address is not
counted in its network when tor is on.`, strconv.Itoa(relay.DefaultMaxSessionsPerPrefix)},
		{"max_handshakes", `The most connections whose TLS (or QUIC) and hush handshakes are in
progress; one network (as above) may hold a quarter of them, one address
a sixteenth. New connections beyond it are refused as above; when half
are taken, QUIC attempts must first prove their address (a Retry).`, strconv.Itoa(relay.DefaultMaxHandshakes)},
		{"first_byte_timeout", `A TCP connection that sends no byte of its TLS handshake within this
time is closed.`, q(formatDuration(relay.DefaultFirstByteTimeout))},
		{"max_stored_mib", `The most MiB the store holds: its messages (bodies plus 32 bytes each)
and 256 bytes per queue.
At or above it, NEW and SEND are answered ERR QUOTA while ACK, DEL, GET
and the rest work as usual, and they are accepted again as soon as
messages are acknowledged, deleted or expire. A negative value: no cap.`,
			strconv.Itoa(relay.DefaultMaxStoredBytes >> 20)},
		{"min_free_disk_mib", `The free-disk reserve, in MiB: while the filesystem of the data
directory has less free space, counting the store file's free pages
(checked every second and after writes), NEW and SEND are refused in the
same way, so that ACK and DEL can still be written and free space. A
negative value: no reserve (a write that finds the disk full then makes
NEW and SEND refused until 1 MiB is free).`, strconv.Itoa(relay.DefaultMinFreeDisk >> 20)},
		{"mapped_store_limit_mib", `The relay reads its store through a memory mapping: the pages it has
read stay counted in its RSS and in the OOM killer's score, although they
are page cache. Above this many MiB of them the relay drops them from its
mapping, checking ten times a second (Linux only); while its store is
busy (written, or read at new pages, within the last second) it drops
at most every 10 s, so a busy relay's RSS may reach its store's size,
and a relay at rest is back under the limit a second after. The count
includes the
relay's own executable (about 11 MiB), so a limit near that trims at every
check. A negative value turns this off.`,
			strconv.Itoa(relay.DefaultMappedStoreLimit >> 20)},
		{"log_level", `"info" or "debug" ("warn" and "error" log less). At info and above the
logs never hold IP addresses, queue IDs or message sizes; debug logs may.`, `"info"`},
		{"log_format", `"text" or "json". Logs go to the standard error.`, `"text"`},
		{"admin", `The admin listener, host:port: /metrics (Prometheus), /healthz and /status
for "hush-relay status", and, with the token in admin.token, /drain and
/backup for "hush-relay drain" and "hush-relay backup". Keep it on a
loopback address. "off" turns it off. If the default address is taken the
relay starts without it (with a warning); an address set here, in the
environment or by --admin must be free.`, q(defaultAdmin)},
		{"drain", `Drain mode, for decommissioning the relay: new queues are refused (ERR
PROHIBITED) while existing queues are served. "hush-relay drain" turns it
on and off while the relay runs.`, "false"},
		{"forwarding", `Private message routing (PROTOCOL.md section 20): "on" forwards clients'
commands to other relays (PRXY, PFWD), so that those relays do not see
the clients' addresses; "off" refuses (ERR PROHIBITED). Commands that
other relays forward to this one are accepted either way.`, `"on"`},
		{"tor", `Publish the relay as a Tor onion service: "off", "embedded" (start a tor
program of the relay's own, state in <data>/tor) or "system" (use a
running tor through its control port, see tor_control).`, `"off"`},
		{"tor_control", `The system tor's control port, host:port (when tor is "system").`, q(defaultTorControl)},
		{"torrc", `Extra torrc lines for the embedded tor, from this file (bridges, for
example); a relative path is relative to the data directory.`, `""`},
	}
}

// configText returns a commented config.toml. Options in set are written
// with the given TOML values; the others are commented out with their
// defaults.
func configText(set map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(`# hush-relay configuration, written by "hush-relay init".
#
# Every option is listed with its default. To change one, remove the "#" in
# front of it and edit the value; restart the relay to apply the change.
# An environment variable HUSH_RELAY_<OPTION> (HUSH_RELAY_LISTEN,
# HUSH_RELAY_QUEUE_QUOTA, ...) overrides the option in this file, and a
# command-line flag (--listen, --host, --password, --password-file,
# --no-password, --admin, --drain, --log-level, --log-format, --tor,
# --tor-control, --torrc) overrides both: flags, then the environment, then
# this file, then the defaults.
`)
	for _, opt := range configOptions() {
		b.WriteString("\n")
		for _, line := range strings.Split(opt.doc, "\n") {
			b.WriteString("# " + line + "\n")
		}
		if v, ok := set[opt.key]; ok {
			fmt.Fprintf(&b, "%s = %s\n", opt.key, v)
		} else {
			fmt.Fprintf(&b, "# %s = %s\n", opt.key, opt.def)
		}
	}
	return b.Bytes()
}

// tomlString returns s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// loadConfig reads config.toml at path (a missing file is the default
// configuration) and applies the HUSH_RELAY_<OPTION> variables of environ
// over it. Errors name the file and line, or the variable.
func loadConfig(path string, environ []string) (fileConfig, error) {
	var fc fileConfig
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fc, err
	}
	err = toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&fc)
	var strict *toml.StrictMissingError
	var decode *toml.DecodeError
	switch {
	case errors.As(err, &strict) && len(strict.Errors) > 0:
		var msgs []string
		for _, e := range strict.Errors {
			line, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("%s line %d: unknown option %q", path, line, strings.Join(e.Key(), ".")))
		}
		return fc, errors.New(strings.Join(msgs, "; "))
	case errors.As(err, &decode):
		line, _ := decode.Position()
		msg := strings.TrimPrefix(decode.Error(), "toml: ")
		if key := strings.Join(decode.Key(), "."); key != "" && !strings.Contains(msg, key) {
			msg = key + ": " + msg
		}
		return fc, fmt.Errorf("%s line %d: %s", path, line, msg)
	case err != nil:
		return fc, fmt.Errorf("%s: %w", path, err)
	}
	fromEnv, err := applyEnv(&fc, environ)
	if err != nil {
		return fc, err
	}
	// where names the origin of key's value in error messages.
	where := func(key string) string {
		if v, ok := fromEnv[key]; ok {
			return "environment variable " + v
		}
		if line := optionLine(data, key); line > 0 {
			return fmt.Sprintf("%s line %d: %s", path, line, key)
		}
		return path + ": " + key
	}
	for _, v := range []struct {
		key string
		n   float64
	}{
		{"queue_quota", float64(fc.QueueQuota)},
		{"max_message_size", float64(fc.MaxMessageSize)},
		{"new_rate", fc.NewRate},
		{"send_rate", fc.SendRate},
		{"max_subscriptions", float64(fc.MaxSubscriptions)},
		{"command_rate", fc.CommandRate},
		{"failure_rate", fc.FailureRate},
		{"relay_new_rate", fc.RelayNewRate},
		{"max_sessions", float64(fc.MaxSessions)},
		{"max_sessions_per_address", float64(fc.MaxSessionsPerAddress)},
		{"max_sessions_per_prefix", float64(fc.MaxSessionsPerPrefix)},
		{"max_handshakes", float64(fc.MaxHandshakes)},
	} {
		if v.n < 0 {
			return fc, fmt.Errorf("%s must not be negative", where(v.key))
		}
	}
	if fc.MaxMessageSize > queue.MaxMessageSize {
		return fc, fmt.Errorf("%s must be at most %d", where("max_message_size"), queue.MaxMessageSize)
	}
	for _, v := range []struct {
		key string
		n   int
	}{{"max_stored_mib", fc.MaxStoredMiB}, {"min_free_disk_mib", fc.MinFreeDiskMiB}} {
		if int64(v.n) > maxMappedStoreLimitMiB {
			return fc, fmt.Errorf("%s must be at most %d", where(v.key), maxMappedStoreLimitMiB)
		}
	}
	if int64(fc.MappedStoreLimitMiB) > maxMappedStoreLimitMiB {
		return fc, fmt.Errorf("%s must be at most %d", where("mapped_store_limit_mib"), maxMappedStoreLimitMiB)
	}
	if fc.Password != "" && fc.PasswordFile != "" {
		return fc, fmt.Errorf("%s: set password or password_file, not both", where("password_file"))
	}
	if fc.Password != "" && !queue.ValidPassword(fc.Password) {
		return fc, fmt.Errorf("%s: %s", where("password"), errPasswordChars)
	}
	if _, err := logLevel(fc.LogLevel); err != nil {
		return fc, fmt.Errorf("%s: %w", where("log_level"), err)
	}
	if fc.LogFormat != "" && fc.LogFormat != "text" && fc.LogFormat != "json" {
		return fc, fmt.Errorf("%s must be \"text\" or \"json\", not %q", where("log_format"), fc.LogFormat)
	}
	if fc.Admin != "" && fc.Admin != "off" {
		if _, _, err := splitListen(fc.Admin); err != nil {
			return fc, fmt.Errorf("%s: %q is not host:port or \"off\"", where("admin"), fc.Admin)
		}
	}
	if err := checkTorMode(fc.Tor); err != nil {
		return fc, fmt.Errorf("%s: %w", where("tor"), err)
	}
	if fc.TorControl != "" {
		if _, _, err := splitListen(fc.TorControl); err != nil {
			return fc, fmt.Errorf("%s: %q is not host:port", where("tor_control"), fc.TorControl)
		}
	}
	return fc, nil
}

// envPrefix starts the environment variables that set options.
const envPrefix = "HUSH_RELAY_"

// envName returns the environment variable of option key.
func envName(key string) string { return envPrefix + strings.ToUpper(key) }

// applyEnv sets the options of fc named by HUSH_RELAY_<OPTION> variables in
// environ ("NAME=value" entries; an empty value counts as unset) and
// returns the options it set, with their variables. An unknown
// HUSH_RELAY_ variable or a malformed value is an error naming the
// variable.
func applyEnv(fc *fileConfig, environ []string) (map[string]string, error) {
	fields := map[string]reflect.Value{}
	v := reflect.ValueOf(fc).Elem()
	for i := range v.NumField() {
		fields[v.Type().Field(i).Tag.Get("toml")] = v.Field(i)
	}
	set := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || name == dataEnv {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, envPrefix))
		f, ok := fields[key]
		if !ok || envName(key) != name {
			return nil, fmt.Errorf("unknown environment variable %s (the options are those of config.toml, as %sLISTEN, %sQUEUE_QUOTA, ...)", name, envPrefix, envPrefix)
		}
		if value == "" {
			continue
		}
		bad := func(what string) error {
			return fmt.Errorf("environment variable %s: %q is not %s", name, value, what)
		}
		switch p := f.Addr().Interface().(type) {
		case *duration:
			if err := p.UnmarshalText([]byte(value)); err != nil {
				return nil, fmt.Errorf("environment variable %s: %w", name, err)
			}
		case *string:
			*p = value
		case *int:
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, bad("a whole number")
			}
			*p = n
		case *float64:
			n, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return nil, bad("a number")
			}
			*p = n
		case *bool:
			b, err := strconv.ParseBool(value)
			if err != nil {
				return nil, bad("true or false")
			}
			*p = b
		default:
			panic("config option of an unhandled type: " + key)
		}
		set[key] = name
	}
	// One source of the password overrides the other's file setting.
	_, pw := set["password"]
	_, pwFile := set["password_file"]
	switch {
	case pw && pwFile:
		return nil, fmt.Errorf("set %s or %s, not both", envName("password"), envName("password_file"))
	case pw:
		fc.PasswordFile = ""
	case pwFile:
		fc.Password = ""
	}
	return set, nil
}

// optionLine returns the line of config.toml data that sets key, or 0.
func optionLine(data []byte, key string) int {
	for i, line := range strings.Split(string(data), "\n") {
		k, _, ok := strings.Cut(line, "=")
		if ok && strings.Trim(strings.TrimSpace(k), `"'`) == key {
			return i + 1
		}
	}
	return 0
}

func checkTorMode(mode string) error {
	switch mode {
	case "", "off", "embedded", "system":
		return nil
	}
	return fmt.Errorf("must be off, embedded or system, not %q", mode)
}

func logLevel(s string) (slog.Level, error) {
	switch s {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level must be \"info\", \"debug\", \"warn\" or \"error\", not %q", s)
}

// settings are the options in force: flags over the environment over
// config.toml over defaults.
type settings struct {
	dir      string
	file     fileConfig // config.toml with the environment applied
	listen   string
	host     string // for the address
	password string // "" for none
	// hostWarning is set when host is a stand-in because neither --host,
	// host in config.toml nor the listen address named one.
	hostWarning bool
	// admin is the admin listener's address, "" for none; adminSet says
	// that it was chosen (flag, environment or file), not the default.
	admin               string
	adminSet            bool
	drain               bool
	noForwarding        bool // forwarding = "off"
	logLevel, logFormat string
	tor                 torOptions
}

// loadSettings reads the data directory's config.toml, applies the
// environment and then the flags of o.
func loadSettings(o *options) (settings, error) {
	s := settings{dir: o.dataDir}
	fc, err := loadConfig(filepath.Join(o.dataDir, configFile), o.environ)
	if err != nil {
		return s, err
	}
	s.file = fc
	s.listen = firstNonEmpty(o.listen, fc.Listen, relay.DefaultListen)
	listenHost, _, err := splitListen(s.listen)
	if err != nil {
		return s, err
	}

	s.host = strings.ToLower(firstNonEmpty(o.host, fc.Host))
	if s.host == "" {
		ip, err := netip.ParseAddr(listenHost)
		switch {
		case err == nil && !ip.IsUnspecified():
			s.host = ip.String()
		case err != nil && listenHost != "":
			s.host = strings.ToLower(listenHost) // a name
		default:
			s.host = "localhost"
			s.hostWarning = true
		}
	}
	check := queue.Address{Host: s.host, Port: queue.DefaultPort}
	if _, err := queue.ParseAddress(check.String()); err != nil {
		return s, fmt.Errorf("host %q: %w", s.host, err)
	}

	s.admin, s.adminSet = fc.Admin, fc.Admin != ""
	if o.set["admin"] {
		s.admin, s.adminSet = o.admin, true
	}
	switch s.admin {
	case "":
		s.admin = defaultAdmin
	case "off":
		s.admin = ""
	default:
		if _, _, err := splitListen(s.admin); err != nil {
			return s, fmt.Errorf("--admin: %q is not host:port or \"off\"", s.admin)
		}
	}
	switch fc.Forwarding {
	case "", "on":
	case "off":
		s.noForwarding = true
	default:
		return s, fmt.Errorf("forwarding must be on or off, not %q", fc.Forwarding)
	}
	s.drain = fc.Drain
	if o.set["drain"] {
		s.drain = o.drain
	}
	s.logLevel = firstNonEmpty(o.logLevel, fc.LogLevel, "info")
	if _, err := logLevel(s.logLevel); err != nil {
		return s, fmt.Errorf("--log-level: %w", err)
	}
	s.logFormat = firstNonEmpty(o.logFormat, fc.LogFormat, "text")
	if s.logFormat != "text" && s.logFormat != "json" {
		return s, fmt.Errorf("--log-format must be text or json, not %q", s.logFormat)
	}
	s.tor = torOptions{
		mode:    firstNonEmpty(o.tor.mode, fc.Tor, "off"),
		control: firstNonEmpty(o.tor.control, fc.TorControl, defaultTorControl),
		torrc:   o.tor.torrc,
	}
	if s.tor.torrc == "" && fc.Torrc != "" {
		s.tor.torrc = fc.Torrc
		if !filepath.IsAbs(s.tor.torrc) {
			s.tor.torrc = filepath.Join(o.dataDir, s.tor.torrc)
		}
	}
	if err := checkTorMode(s.tor.mode); err != nil {
		return s, fmt.Errorf("--tor %w", err)
	}

	switch {
	case o.noPassword:
	case o.password != "":
		s.password = o.password
	case o.passwordFile != "":
		s.password, err = readPasswordFile(o.passwordFile)
	case fc.PasswordFile != "":
		p := fc.PasswordFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(o.dataDir, p)
		}
		s.password, err = readPasswordFile(p)
	default:
		s.password = fc.Password
	}
	return s, err
}

// address returns the relay's address for identity fp and the given port.
func (s *settings) address(fp queue.Fingerprint, port uint16) (queue.Address, error) {
	a := queue.Address{Fingerprint: fp, Password: s.password, Host: s.host, Port: port}
	if _, err := queue.ParseAddress(a.String()); err != nil {
		return a, err
	}
	return a, nil
}

// relayConfig returns the relay.Config for s, without the certificate,
// store and logger. s.file must have been checked by loadConfig.
func (s *settings) relayConfig() relay.Config {
	fc := s.file
	var uncapped []netip.Addr
	if s.tor.mode == "embedded" || s.tor.mode == "system" {
		// The onion service's connections come from the local tor: from
		// the loopback address, or from the listen address it forwards to.
		uncapped = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
		if host, _, err := net.SplitHostPort(s.listen); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
				uncapped = append(uncapped, ip)
			}
		}
	}
	mapped := int64(fc.MappedStoreLimitMiB) << 20 // at most maxMappedStoreLimitMiB
	if fc.MappedStoreLimitMiB < 0 {
		mapped = -1 // never, however negative
	}
	return relay.Config{
		Listen:                s.listen,
		Password:              s.password,
		QueueQuota:            fc.QueueQuota,
		MaxMessageSize:        fc.MaxMessageSize,
		MessageTTL:            time.Duration(fc.MessageTTL),
		UnsecuredTTL:          time.Duration(fc.UnsecuredTTL),
		SweepInterval:         time.Duration(fc.SweepInterval),
		HandshakeTimeout:      time.Duration(fc.HandshakeTimeout),
		IdleTimeout:           time.Duration(fc.IdleTimeout),
		NewRate:               fc.NewRate,
		SendRate:              fc.SendRate,
		MaxSubscriptions:      fc.MaxSubscriptions,
		CommandRate:           fc.CommandRate,
		FailureRate:           fc.FailureRate,
		RelayNewRate:          fc.RelayNewRate,
		RelayFailureRate:      fc.RelayFailureRate,
		MaxSessions:           fc.MaxSessions,
		MaxSessionsPerAddress: fc.MaxSessionsPerAddress,
		MaxSessionsPerPrefix:  fc.MaxSessionsPerPrefix,
		MaxHandshakes:         fc.MaxHandshakes,
		FirstByteTimeout:      time.Duration(fc.FirstByteTimeout),
		UncappedAddresses:     uncapped,
		MaxStoredBytes:        mib(fc.MaxStoredMiB),
		MinFreeDisk:           mib(fc.MinFreeDiskMiB),
		MappedStoreLimit:      mapped,
		Drain:                 s.drain,
		DisableForwarding:     s.noForwarding,
	}
}

// mib returns n MiB in bytes, with negative values as -1 (none) and 0
// as 0 (the default). n is at most maxMappedStoreLimitMiB (loadConfig).
func mib(n int) int64 {
	if n < 0 {
		return -1
	}
	return int64(n) << 20
}

// newLogger returns the logger the settings ask for, writing to w.
func (s *settings) newLogger(w io.Writer) *slog.Logger {
	level, _ := logLevel(s.logLevel) // checked by loadSettings
	opts := &slog.HandlerOptions{Level: level}
	if s.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// splitListen splits a listen address into host and port.
func splitListen(listen string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: want host:port, as in \":5223\" or \"192.0.2.1:5223\"", listen)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: the port must be a number from 0 to 65535", listen)
	}
	return host, uint16(p), nil
}

// readPasswordFile returns the first line of the file at path, trimmed.
func readPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pw := strings.TrimSpace(line)
	if !queue.ValidPassword(pw) {
		return "", fmt.Errorf("password file %s: %s", path, errPasswordChars)
	}
	return pw, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
