package queue

import (
	"context"
	"log/slog"
	"regexp"
)

// Redacted is what RedactHandler writes in place of a network address.
const Redacted = "<address>"

// addrPattern matches what a network address looks like in an error text:
// a bracketed IPv6 address with or without a port ("[::1]:5223"), a bare
// IPv6 address ("fe80::1", "::ffff:10.0.0.1"), an IPv4 address with or
// without a port, and a host name or nothing before a port
// ("relay.example:5223", ":5223"). net.OpError, net/http and quic-go
// errors name peers and listeners in these forms.
var addrPattern = regexp.MustCompile(`\[[0-9A-Za-z:.%_-]*\](?::\d+)?` +
	`|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b` +
	`|[0-9A-Za-z.-]*:\d{1,5}\b` +
	`|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?`)

// RedactAddresses returns s with every network address and port in it
// replaced by Redacted.
func RedactAddresses(s string) string {
	return addrPattern.ReplaceAllLiteralString(s, Redacted)
}

// RedactHandler returns a handler that passes records on to h with every
// network address and port removed (RedactAddresses) from the message and
// from string, error and other non-numeric attribute values, groups
// included. Relay and client wrap their loggers in it so that errors that
// embed addresses (a net.OpError names both ends of a connection) cannot
// put them in a log at any level. It does not know queue IDs or sizes:
// callers never log those.
func RedactHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(redactHandler); ok {
		return h
	}
	return redactHandler{h}
}

type redactHandler struct{ h slog.Handler }

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, RedactAddresses(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactHandler{r.h.WithAttrs(red)}
}

func (r redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{r.h.WithGroup(name)}
}

// redactAttr returns a with its value redacted.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return slog.Attr{Key: a.Key, Value: v}
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindString:
		return slog.String(a.Key, RedactAddresses(v.String()))
	}
	// Errors, Stringers and anything else: as the text handler would
	// print it, redacted.
	if err, ok := v.Any().(error); ok && err != nil {
		return slog.String(a.Key, RedactAddresses(err.Error()))
	}
	return slog.String(a.Key, RedactAddresses(v.String()))
}
