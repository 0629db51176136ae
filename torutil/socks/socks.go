// Package socks dials TCP connections through a SOCKS5 proxy, normally
// tor's SocksPort, with stream isolation, never resolving names locally.
//
// It is apart from package torutil, which runs and controls tor processes
// (through github.com/cretz/bine), so that a client that only dials
// through a tor it did not start links none of that code.
package socks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/net/proxy"
)

// ErrProxyUnreachable is returned (wrapped) by Dialer.DialContext when the
// SOCKS proxy does not accept a TCP connection, typically because tor is
// not running. The message names the proxy address.
var ErrProxyUnreachable = errors.New("socks: tor SOCKS proxy unreachable")

// DefaultIsolation is the SOCKS username a Dialer sends when its Isolation
// is empty.
const DefaultIsolation = "hush"

// socksPassword is the SOCKS password of every Dialer. Tor isolates streams
// by username and password together; the username alone carries the
// isolation value.
const socksPassword = "hush"

// Dialer dials TCP connections through a SOCKS5 proxy, normally tor's
// SocksPort. The target host is always sent to the proxy as given: a name
// (including a .onion name) travels as a name (SOCKS5 address type 3) and
// is never resolved locally; an IP literal travels as an address.
//
// Dialer offers the proxy username/password authentication and sends
// Isolation as the username. With tor's default IsolateSOCKSAuth, streams
// whose Isolation differs never share a circuit.
//
// The zero value is not usable: Proxy is required. A Dialer is a value and
// safe for concurrent use.
type Dialer struct {
	// Proxy is the host:port of the SOCKS5 proxy, e.g. "127.0.0.1:9050"
	// or Tor.SOCKSAddr().
	Proxy string
	// Isolation is the SOCKS username, 1 to 255 bytes: different values
	// never share a tor circuit. "" means DefaultIsolation.
	Isolation string
}

// DialContext connects to addr ("host:port") through the proxy. network
// must be "tcp". It honours ctx: cancelling ctx aborts the connection to
// the proxy and the SOCKS handshake, and the returned error then wraps
// ctx.Err(). When the proxy itself cannot be reached (tor not running),
// the error wraps ErrProxyUnreachable. The returned connection has no
// deadline set.
func (d Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("socks: network %q not supported through tor, only tcp", network)
	}
	if d.Proxy == "" {
		return nil, errors.New("socks: Dialer.Proxy not set")
	}
	user := d.Isolation
	if user == "" {
		user = DefaultIsolation
	}
	if len(user) > 255 {
		return nil, errors.New("socks: Dialer.Isolation longer than 255 bytes")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("socks: dial %q: %w", addr, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	auth := &proxy.Auth{User: user, Password: socksPassword}
	pd, err := proxy.SOCKS5("tcp", d.Proxy, auth, forwardDialer{})
	if err != nil {
		return nil, fmt.Errorf("socks: %w", err)
	}
	c, err := pd.(proxy.ContextDialer).DialContext(ctx, "tcp", addr)
	if err == nil {
		return c, nil
	}
	var ue *unreachableError
	switch {
	case errors.As(err, &ue):
		return nil, fmt.Errorf("%w at %s (is tor running?): %w", ErrProxyUnreachable, d.Proxy, ue.err)
	case ctx.Err() != nil:
		// x/net/proxy reports an aborted handshake as the I/O error it
		// caused; name the real cause.
		return nil, fmt.Errorf("socks: dial %s via %s: %w", addr, d.Proxy, ctx.Err())
	case pastDeadline(ctx) && isTimeout(err):
		// The connection's deadline, set from ctx's, can expire a moment
		// before ctx reports it.
		return nil, fmt.Errorf("socks: dial %s via %s: %w", addr, d.Proxy, context.DeadlineExceeded)
	}
	if reason := torReply(err); reason != "" {
		return nil, fmt.Errorf("socks: dial %s via %s: %s: %w", addr, d.Proxy, reason, err)
	}
	return nil, fmt.Errorf("socks: dial %s via %s: %w", addr, d.Proxy, err)
}

// torReplies are the meanings of the SOCKS5 reply codes that tor adds
// for onion services on a SocksPort with ExtendedErrors (tor's
// socks-extensions.txt).
var torReplies = map[string]string{
	"240": "onion service descriptor not found",
	"241": "onion service descriptor invalid",
	"242": "onion service introduction failed",
	"243": "onion service rendezvous failed",
	"244": "onion service client authorization missing",
	"245": "onion service client authorization wrong",
	"246": "invalid onion address",
	"247": "onion service introduction timed out",
}

// torReply returns the meaning of tor's extended SOCKS reply in err,
// which x/net/proxy reports as "unknown code: N", or "".
func torReply(err error) string {
	_, code, ok := strings.Cut(err.Error(), "unknown code: ")
	if !ok {
		return ""
	}
	return torReplies[code]
}

func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// forwardDialer makes the TCP connection to the proxy and marks a failure
// to make it, so DialContext can tell it from a refusal by the proxy.
type forwardDialer struct{}

func (forwardDialer) Dial(network, addr string) (net.Conn, error) {
	return forwardDialer{}.DialContext(context.Background(), network, addr)
}

func (forwardDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil && ctx.Err() == nil {
		return nil, &unreachableError{err}
	}
	return c, err
}

type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }
