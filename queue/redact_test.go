package queue

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestRedactAddresses checks that every form in which Go's net, net/http
// and quic-go errors print an address loses it, and that text without
// addresses is unchanged.
func TestRedactAddresses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"read tcp 127.0.0.1:5223->127.0.0.1:41234: i/o timeout", "read tcp <address>-><address>: i/o timeout"},
		{"dial tcp [::1]:5223: connect: connection refused", "dial tcp <address>: connect: connection refused"},
		{"listen udp [::]:5223: bind: address already in use", "listen udp <address>: bind: address already in use"},
		{"listen tcp :5223: bind", "listen tcp <address>: bind"},
		{"dial tcp relay.example:5223: no such host", "dial tcp <address>: no such host"},
		{"http: TLS handshake error from 10.1.2.3:50000: EOF", "http: TLS handshake error from <address>: EOF"},
		{"peer fe80::1%eth0 and ::ffff:192.168.1.1 gone", "peer <address>%eth0 and <address> gone"},
		{"addr 192.168.1.1", "addr <address>"},
		{"tls: first record does not look like a TLS handshake", "tls: first record does not look like a TLS handshake"},
		{"timeout: no recent network activity", "timeout: no recent network activity"},
	} {
		if got := RedactAddresses(c.in); got != c.want {
			t.Errorf("RedactAddresses(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRedactHandler logs a real net.OpError (as an error, in a group and
// through WithAttrs) and an address in the message, and finds no address
// or port in the output.
func TestRedactHandler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, dialErr := net.Dial("tcp", ln.Addr().String())
	if dialErr == nil {
		t.Skip("the closed port accepted a connection")
	}
	var buf bytes.Buffer
	lg := slog.New(RedactHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	lg = lg.With("peer", ln.Addr())
	lg.Debug("dial "+ln.Addr().String()+" failed", "err", dialErr, slog.Group("g", "err", errors.Join(dialErr)), "n", 3)
	out := buf.String()
	if !strings.Contains(out, "n=3") || !strings.Contains(out, Redacted) {
		t.Fatalf("log line lost its other content: %s", out)
	}
	for _, bad := range []string{"127.0.0.1", strings.TrimPrefix(ln.Addr().String(), "127.0.0.1"), strconv.Itoa(port)} {
		if strings.Contains(out, bad) {
			t.Errorf("log holds %q: %s", bad, out)
		}
	}
}
