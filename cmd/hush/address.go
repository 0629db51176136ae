package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/internal/cli"
	"github.com/hushrelay/hush/queue"
)

const addressUsage = `usage: hush address create [--auto-accept]
       hush address [show]
       hush address delete
       hush address auto-accept on|off

A contact address is a short link that many people can use to ask you for
a contact ("hush accept LINK", showing a name of their choice or none).
Their requests wait until you accept or reject them ("hush requests"),
unless auto-accept is on. Deleting the address stops new requests; those
received already stay.
`

const requestsUsage = `usage: hush requests [list]
       hush requests accept ID [--name N]
       hush requests reject ID

The contact requests that came through your contact address ("hush
address"), with the name each shows, if any. Accepting one makes the
requester a contact (connected once both run "hush receive"); rejecting
it deletes it, and the requester is told nothing.
`

// addressVerb parses the subcommand of "hush address" and "hush
// requests": it returns the flag set, the function that runs it, its
// number of arguments (as run's nargs) and their usage, and the
// arguments after the subcommand. When done, exec is all there is to run
// (help, or a usage error).
func (c *cmd) addressVerb(ctx context.Context, verb string, args []string) (fs *cli.FlagSet, exec func([]string) error, nargs int, argsUsage string, rest []string, done bool) {
	usage := addressUsage
	sub := "show"
	if verb == "requests" {
		usage, sub = requestsUsage, "list"
	}
	if len(args) > 0 && (len(args[0]) == 0 || args[0][0] != '-') {
		sub, args = args[0], args[1:]
	}
	fail := func(msg string) (*cli.FlagSet, func([]string) error, int, string, []string, bool) {
		return nil, func([]string) error { return usageError{msg, usage} }, 0, "", nil, true
	}
	switch verb + " " + sub {
	case "address create":
		fs = newFlagSet("address create", "", "make our contact address: a queue on one of the relays, and a short link to it that\n"+
			"many people can use to ask for a contact; print the link, alone on one line, and its\n"+
			"QR code. Requests wait for \"hush requests accept ID\" unless --auto-accept.")
		auto := fs.Bool("auto-accept", false, "accept every request as it arrives")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relays")
		exec = func([]string) error { return c.addressCreate(ctx, *auto, *timeout) }
	case "address show":
		fs = newFlagSet("address show", "", "print our contact address, alone on one line, and its QR code")
		exec = func([]string) error { return c.addressShow(ctx) }
	case "address delete":
		fs = newFlagSet("address delete", "", "delete our contact address: its queue and link data on the relay, so that the link\n"+
			"gives nothing and no new request can be made; requests received already stay")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relay")
		exec = func([]string) error { return c.addressDelete(ctx, *timeout) }
	case "address auto-accept":
		fs = newFlagSet("address auto-accept", "on|off", "turn the acceptance of every request as it arrives on or off")
		nargs, argsUsage = 1, "on or off"
		exec = func(a []string) error {
			switch a[0] {
			case "on", "off":
				return c.addressAutoAccept(ctx, a[0] == "on")
			}
			return usageError{fmt.Sprintf("address auto-accept: %q is neither on nor off", a[0]), fs.Help()}
		}
	case "requests list":
		fs = newFlagSet("requests", "", "list the contact requests waiting: ID, the name each shows (if any), when it came")
		exec = func([]string) error { return c.requestsList(ctx) }
	case "requests accept":
		fs = newFlagSet("requests accept", "ID", "accept the contact request ID: the requester becomes a contact, connected once they\n"+
			"run \"hush receive\" and then you do")
		name := fs.String("name", "", "the `name` to give the contact (default: the name the request shows, if free)")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relays")
		nargs, argsUsage = 1, "ID"
		exec = func(a []string) error { return c.requestAccept(ctx, a[0], *name, *timeout) }
	case "requests reject":
		fs = newFlagSet("requests reject", "ID", "reject the contact request ID: it is deleted, and the requester is told nothing")
		nargs, argsUsage = 1, "ID"
		exec = func(a []string) error { return c.requestReject(ctx, a[0]) }
	case "address help", "address -h", "address --help", "requests help", "requests -h", "requests --help":
		return nil, func([]string) error { _, err := io.WriteString(c.env.stdout, usage); return err }, 0, "", nil, true
	default:
		return fail(fmt.Sprintf("%s: unknown subcommand %q", verb, sub))
	}
	return fs, exec, nargs, argsUsage, args, false
}

// isAddressLink reports whether s is a contact address's short link.
func isAddressLink(s string) bool {
	l, err := queue.ParseShortLink(s)
	return err == nil && l.Kind == queue.LinkAddress
}

// addressError explains the errors of addresses and requests.
func (c *cmd) addressError(err error) error {
	switch {
	case errors.Is(err, client.ErrNoAddress):
		return errors.New("no contact address: make one with \"hush address create\"")
	case errors.Is(err, client.ErrAddressExists):
		return errors.New("a contact address exists already (\"hush address show\"); delete it first with \"hush address delete\"")
	case errors.Is(err, client.ErrNoRequest):
		return errors.New("no such request (see \"hush requests\")")
	}
	return err
}

// addressCreate is "hush address create".
func (c *cmd) addressCreate(ctx context.Context, auto bool, timeout time.Duration) error {
	s, err := c.openToCreate(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	actx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	a, err := s.CreateAddress(actx, auto, timeout)
	if err != nil {
		return c.relayError(timeout, c.addressError(c.contactError(err, "")))
	}
	c.warnSkipped(ctx, s)
	return c.printAddress(a)
}

// printAddress prints our address: the link alone on the first line,
// then its QR code; the explanation on standard error.
func (c *cmd) printAddress(a client.Address) error {
	if c.json {
		return c.emit(map[string]any{"address": addressOf(a)})
	}
	how := "requests wait for you: see them with \"hush requests\""
	if a.AutoAccept {
		how = "auto-accept is on: every request is accepted as it arrives"
	}
	fmt.Fprintf(c.env.stderr, "Your contact address: anyone who has it can ask you for a contact with\n"+
		"\"hush accept LINK\"; %s.\n\n", how)
	fmt.Fprintln(c.env.stdout, a.Link)
	fmt.Fprintln(c.env.stdout)
	printQR(c.env.stdout, a.Link)
	return nil
}

// addressJSON is our contact address in JSON output, as the agent's API
// shows it.
type addressJSON struct {
	Link       string `json:"link"`
	AutoAccept bool   `json:"auto_accept"`
	Created    string `json:"created"` // jsonTime
	Relay      string `json:"relay"`
}

func addressOf(a client.Address) addressJSON {
	return addressJSON{a.Link, a.AutoAccept, jsonTime(a.Created), a.Relay.String()}
}

// addressShow is "hush address show".
func (c *cmd) addressShow(ctx context.Context) error {
	a, err := query(ctx, c, (*session).ContactAddress)
	if err != nil {
		return c.addressError(err)
	}
	return c.printAddress(a)
}

// addressDelete is "hush address delete".
func (c *cmd) addressDelete(ctx context.Context, timeout time.Duration) error {
	s, err := c.openFor(ctx, need{contacts: []string{}, sendOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	dctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	if err := s.DeleteAddress(dctx, timeout); err != nil {
		return c.relayError(timeout, c.addressError(err))
	}
	reqs, err := s.Requests(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(map[string]any{"deleted": true, "requests": len(reqs)})
	}
	fmt.Fprintln(c.env.stdout, "deleted the contact address: its link gives nothing now, and takes no new request")
	if len(reqs) > 0 {
		fmt.Fprintf(c.env.stdout, "%d requests received before still wait: see \"hush requests\"\n", len(reqs))
	}
	return nil
}

// addressAutoAccept is "hush address auto-accept on|off".
func (c *cmd) addressAutoAccept(ctx context.Context, on bool) error {
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.SetAutoAccept(ctx, on); err != nil {
		return c.addressError(err)
	}
	if c.json {
		return c.emit(map[string]any{"auto_accept": on})
	}
	if on {
		fmt.Fprintln(c.env.stdout, "auto-accept is on: each request is accepted as it arrives (by hush receive, chat or the agent)")
	} else {
		fmt.Fprintln(c.env.stdout, "auto-accept is off: requests wait for \"hush requests accept ID\"")
	}
	return nil
}

// requestJSON is a contact request in JSON output.
type requestJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Received string `json:"received"` // jsonTime
}

// requestsList is "hush requests".
func (c *cmd) requestsList(ctx context.Context) error {
	reqs, err := query(ctx, c, (*session).Requests)
	if err != nil {
		return err
	}
	if c.json {
		return emitList(c, "requests", reqs, func(r client.Request) requestJSON {
			return requestJSON{r.ID, r.Name, jsonTime(r.Received)}
		})
	}
	if len(reqs) == 0 {
		fmt.Fprintln(c.env.stdout, "no contact requests (they come through your contact address: hush address)")
		return nil
	}
	tw := tabwriter.NewWriter(c.env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSHOWS\tRECEIVED")
	for _, r := range reqs {
		name := clean(r.Name)
		if name == "" {
			name = "(no name)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, name, r.Received.Local().Format("2006-01-02 15:04"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.env.stderr, "accept one with \"hush requests accept ID [--name N]\", or reject it with \"hush requests reject ID\"")
	return nil
}

// requestAccept is "hush requests accept".
func (c *cmd) requestAccept(ctx context.Context, id, name string, timeout time.Duration) error {
	s, err := c.openFor(ctx, need{contacts: []string{}, sendOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	actx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	ct, err := s.AcceptRequest(actx, id, name, timeout)
	if err != nil {
		return c.relayError(timeout, c.addressError(c.contactError(err, name)))
	}
	c.warnSkipped(ctx, s)
	flushed := c.flush(ctx, s, defaultFlushTimeout) == nil
	if c.json {
		return c.emit(map[string]any{"contact": contactOf(ct), "flushed": flushed})
	}
	fmt.Fprintf(c.env.stdout, "accepted the request: contact %s is %s\n", clean(ct.Name), ct.State)
	if !flushed {
		fmt.Fprintf(c.env.stdout, "the reply to the request is %s\n", queuedNote)
	}
	fmt.Fprintf(c.env.stdout, "It becomes connected once %s runs \"hush receive\" and then you do.\n", clean(ct.Name))
	return nil
}

// requestReject is "hush requests reject".
func (c *cmd) requestReject(ctx context.Context, id string) error {
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.RejectRequest(ctx, id); err != nil {
		return c.addressError(err)
	}
	if c.json {
		return c.emit(map[string]any{"rejected": id})
	}
	fmt.Fprintf(c.env.stdout, "rejected request %s\n", id)
	return nil
}
