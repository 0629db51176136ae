package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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
	Listen           string   `toml:"listen"`
	Host             string   `toml:"host"`
	Password         string   `toml:"password"`
	PasswordFile     string   `toml:"password_file"`
	QueueQuota       int      `toml:"queue_quota"`
	MaxMessageSize   int      `toml:"max_message_size"`
	MessageTTL       duration `toml:"message_ttl"`
	UnsecuredTTL     duration `toml:"unsecured_ttl"`
	SweepInterval    duration `toml:"sweep_interval"`
	HandshakeTimeout duration `toml:"handshake_timeout"`
	IdleTimeout      duration `toml:"idle_timeout"`
	NewRate          float64  `toml:"new_rate"`
	SendRate         float64  `toml:"send_rate"`
	MaxSubscriptions int      `toml:"max_subscriptions"`
	LogLevel         string   `toml:"log_level"`
	LogFormat        string   `toml:"log_format"`
}

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
		{"log_level", `"info" or "debug" ("warn" and "error" log less). At info and above the
logs never hold IP addresses, queue IDs or message sizes; debug logs may.`, `"info"`},
		{"log_format", `"text" or "json". Logs go to the standard error.`, `"text"`},
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
# Command-line flags (--listen, --host, --password, --password-file,
# --no-password) override this file.
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

// loadConfig reads path. A missing file is the default configuration.
// Errors name the file and, where known, the line.
func loadConfig(path string) (fileConfig, error) {
	var fc fileConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fc, nil
	}
	if err != nil {
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
	for _, v := range []struct {
		key string
		n   float64
	}{
		{"queue_quota", float64(fc.QueueQuota)},
		{"max_message_size", float64(fc.MaxMessageSize)},
		{"new_rate", fc.NewRate},
		{"send_rate", fc.SendRate},
		{"max_subscriptions", float64(fc.MaxSubscriptions)},
	} {
		if v.n < 0 {
			return fc, fmt.Errorf("%s: %s must not be negative", path, v.key)
		}
	}
	if fc.MaxMessageSize > queue.MaxMessageSize {
		return fc, fmt.Errorf("%s: max_message_size must be at most %d", path, queue.MaxMessageSize)
	}
	if fc.Password != "" && fc.PasswordFile != "" {
		return fc, fmt.Errorf("%s: set password or password_file, not both", path)
	}
	if fc.Password != "" && !queue.ValidPassword(fc.Password) {
		return fc, fmt.Errorf("%s: password: %s", path, errPasswordChars)
	}
	if _, err := logLevel(fc.LogLevel); err != nil {
		return fc, fmt.Errorf("%s: %w", path, err)
	}
	if fc.LogFormat != "" && fc.LogFormat != "text" && fc.LogFormat != "json" {
		return fc, fmt.Errorf("%s: log_format must be \"text\" or \"json\", not %q", path, fc.LogFormat)
	}
	return fc, nil
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

// settings are the options in force: flags over config.toml over defaults.
type settings struct {
	dir      string
	file     fileConfig
	listen   string
	host     string // for the address
	password string // "" for none
	// hostWarning is set when host is a stand-in because neither --host,
	// host in config.toml nor the listen address named one.
	hostWarning bool
}

// loadSettings reads the data directory's config.toml and applies o.
func loadSettings(o *options) (settings, error) {
	s := settings{dir: o.dataDir}
	fc, err := loadConfig(filepath.Join(o.dataDir, configFile))
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
// store and logger.
func (s *settings) relayConfig() relay.Config {
	fc := s.file
	return relay.Config{
		Listen:           s.listen,
		Password:         s.password,
		QueueQuota:       fc.QueueQuota,
		MaxMessageSize:   fc.MaxMessageSize,
		MessageTTL:       time.Duration(fc.MessageTTL),
		UnsecuredTTL:     time.Duration(fc.UnsecuredTTL),
		SweepInterval:    time.Duration(fc.SweepInterval),
		HandshakeTimeout: time.Duration(fc.HandshakeTimeout),
		IdleTimeout:      time.Duration(fc.IdleTimeout),
		NewRate:          fc.NewRate,
		SendRate:         fc.SendRate,
		MaxSubscriptions: fc.MaxSubscriptions,
	}
}

// newLogger returns the logger the settings ask for, writing to w.
func (s *settings) newLogger(w io.Writer) *slog.Logger {
	level, _ := logLevel(s.file.LogLevel) // checked by loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if s.file.LogFormat == "json" {
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
