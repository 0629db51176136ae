package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// relaysAdd is "hush relays add".
func (c *cmd) relaysAdd(ctx context.Context, str string, offline bool, timeout time.Duration) error {
	addr, err := queue.ParseAddress(str)
	if err != nil {
		return fmt.Errorf("%q is not a relay address (hush://<fingerprint>[:<password>]@<host>[:<port>]): %w", str, err)
	}
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	relays, err := s.Relays(ctx)
	if err != nil {
		return err
	}
	for _, j := range relays {
		r, err := queue.ParseAddress(j.Address)
		if err == nil && r.Fingerprint != addr.Fingerprint && r.Port == addr.Port && (r.Host == addr.Host || r.Onion != "" && r.Onion == addr.Onion) {
			return conflictError(r)
		}
	}
	var n int
	if offline {
		n, err = s.AddRelay(ctx, addr)
	} else {
		cctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
		n, err = s.AddRelayChecked(cctx, addr, timeout)
		cancel()
	}
	switch {
	case errors.Is(err, client.ErrRelayConflict):
		return fmt.Errorf("%w; not added", err)
	case err != nil && !offline:
		return checkError(addr, timeout, err)
	case err != nil:
		return fmt.Errorf("adding the relay: %w", err)
	}
	if c.json {
		return c.emit(map[string]any{"added": addr.WithoutPassword().String(), "relays": n, "checked": !offline})
	}
	checked := " (it answers, and takes the address's password)"
	if offline {
		checked = " without checking it (--offline)"
	}
	fmt.Fprintf(c.env.stdout, "added relay %s%s; %d configured\n", addr.HostPort(), checked, n)
	if n == 1 {
		fmt.Fprintln(c.env.stdout, "Add a second relay, from another operator: each contact then uses one relay\nper direction, so that no single relay sees both.")
	}
	return nil
}

// conflictError refuses an address with the host and port of the
// configured relay r.
func conflictError(r queue.Address) error {
	return fmt.Errorf("a relay with another fingerprint is configured at %s, so this one was not added:\n  %s\n"+
		"If the relay's operator gave it a new identity, remove the old one first\n"+
		"(hush relays remove %s)", r.HostPort(), r.WithoutPassword(), r.HostPort())
}

// checkError explains why CheckRelay refused addr.
func checkError(addr queue.Address, timeout time.Duration, err error) error {
	at := addr.HostPort()
	const offline = "\n(add it without checking with --offline)"
	switch {
	case errors.Is(err, link.ErrWrongFingerprint):
		return fmt.Errorf("the relay at %s is not the relay this address names, so it was not added: %w\n"+
			"Check the address with the relay's operator", at, err)
	case errors.Is(err, link.ErrWrongPassword) && addr.Password == "":
		return fmt.Errorf("the relay at %s needs a password, and the address has none, so it was not added:\n"+
			"ask its operator for the address with the password", at)
	case errors.Is(err, link.ErrWrongPassword):
		return fmt.Errorf("the relay at %s refused the address's password, so it was not added:\n"+
			"ask its operator for the current address", at)
	case errors.Is(err, link.ErrTLS), errors.Is(err, link.ErrProtocol):
		return fmt.Errorf("the relay at %s cannot be used, so it was not added: %w%s", at, err, offline)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("could not reach the relay at %s within %v (--timeout), so it was not added: %w%s", at, timeout, err, offline)
	}
	return fmt.Errorf("could not reach the relay at %s, so it was not added: %w%s", at, err, offline)
}

// relaysRemove is "hush relays remove": unless noMove, it moves every
// contact off the relay first (client.RetireRelay), waiting up to wait
// for them unless now, and removes it once they have moved.
func (c *cmd) relaysRemove(ctx context.Context, spec string, noMove, now bool, wait time.Duration) error {
	s, err := c.open(ctx, noMove)
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := s.Relays(ctx)
	if err != nil {
		return err
	}
	var relays []queue.Address
	for _, j := range list {
		if a, err := queue.ParseAddress(j.Address); err == nil {
			relays = append(relays, a)
		}
	}
	r, err := findRelay(relays, spec)
	if err != nil {
		return err
	}
	var res agent.RemoveRelayResult
	if noMove {
		res, err = s.RemoveRelay(ctx, r.Fingerprint)
	} else {
		rctx, cancel := context.WithTimeout(ctx, wait+callTimeout)
		res, err = s.RetireRelay(rctx, r.Fingerprint, !now, wait)
		cancel()
	}
	if errors.Is(err, client.ErrNoOtherRelay) {
		return fmt.Errorf("contacts have queues on %s and no other relay is configured to move them to:\n"+
			"add another relay first (hush relays add), or remove it without moving them (--no-move)", r.HostPort())
	}
	if err != nil {
		return err
	}
	if len(res.Asked) > 0 && !noMove {
		c.flush(ctx, s, defaultFlushTimeout) // the requests to move
	}
	if c.json {
		return c.emit(res)
	}
	out := c.env.stdout
	names := func(l []string) string {
		cl := make([]string, len(l))
		for i, u := range l {
			cl[i] = clean(u)
		}
		return strings.Join(cl, ", ")
	}
	if !noMove {
		if len(res.Moving) > 0 {
			moved := len(res.Moving) - len(res.Pending) - len(res.Failed)
			fmt.Fprintf(out, "moved %d of %d contacts' queues off %s\n", moved, len(res.Moving), r.HostPort())
		}
		for name, why := range res.Failed {
			fmt.Fprintf(out, "could not start moving %s: %s\n", clean(name), why)
		}
		if len(res.Pending) > 0 {
			fmt.Fprintf(out, "not moved yet (their hush has not answered; it goes on while hush receive, chat\n"+
				"or the agent runs): %s\n", names(res.Pending))
		}
		if len(res.Asked) > 0 {
			fmt.Fprintf(out, "asked %d contacts, whose queue we send to is on it, to move theirs: %s\n", len(res.Asked), names(res.Asked))
		}
	}
	if res.Kept {
		fmt.Fprintf(out, "relay %s is still configured, until they have moved: run this again later,\n"+
			"or with --now to remove it at once (their messages go through it until they move)\n", r.HostPort())
		return errNotAllMoved
	}
	fmt.Fprintf(out, "removed relay %s; %d configured\n", r.HostPort(), res.Relays)
	if len(res.Contacts) > 0 {
		fmt.Fprintf(out, "New contacts will not use it, but %d contacts still have a queue on it, and their\n"+
			"messages still go through it: %s\n", len(res.Contacts), names(res.Contacts))
	}
	return nil
}

// errNotAllMoved is relaysRemove's error when the relay stays configured
// because contacts have not moved off it in time.
var errNotAllMoved = errors.New("not all contacts moved off the relay in time (--wait)")

// findRelay returns the relay among relays that spec names: a hush://
// address, a host:port, or a fingerprint or a start of one that no other
// relay's fingerprint shares.
func findRelay(relays []queue.Address, spec string) (queue.Address, error) {
	none := fmt.Errorf("no configured relay is %q (see \"hush relays list\")", spec)
	if strings.HasPrefix(spec, "hush:") {
		a, err := queue.ParseAddress(spec)
		if err != nil {
			return queue.Address{}, fmt.Errorf("%q is not a relay address: %w", spec, err)
		}
		for _, r := range relays {
			if r.Fingerprint == a.Fingerprint {
				return r, nil
			}
		}
		return queue.Address{}, none
	}
	var found []queue.Address
	for _, r := range relays {
		if r.HostPort() == spec || r.Onion != "" && r.OnionHostPort() == spec {
			found = append(found, r)
		}
	}
	if len(found) == 0 && spec != "" {
		for _, r := range relays {
			if strings.HasPrefix(r.Fingerprint.String(), spec) {
				found = append(found, r)
			}
		}
	}
	switch len(found) {
	case 0:
		return queue.Address{}, none
	case 1:
		return found[0], nil
	}
	list := make([]string, len(found))
	for i, r := range found {
		list[i] = "  " + r.WithoutPassword().String()
	}
	return queue.Address{}, fmt.Errorf("%q names %d relays; give more of the fingerprint:\n%s", spec, len(found), strings.Join(list, "\n"))
}
