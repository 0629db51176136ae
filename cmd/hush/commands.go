package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/mdp/qrterminal/v3"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// Defaults of the commands' flags.
const (
	defaultFlushTimeout = 10 * time.Second
	defaultWait         = 5 * time.Second
	defaultRelayTimeout = 30 * time.Second
	defaultCheckTimeout = 15 * time.Second
)

const queuedNote = "queued: will be retried by the next hush receive, or chat or send to this contact"

// emit prints v as one line of JSON.
func (c *cmd) emit(v any) error {
	enc := json.NewEncoder(c.env.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// emitList prints {key: list}, each element made JSON by j, as one line of
// JSON.
func emitList[T, J any](c *cmd, key string, list []T, j func(T) J) error {
	out := make([]J, 0, len(list))
	for _, v := range list {
		out = append(out, j(v))
	}
	return c.emit(map[string]any{key: out})
}

// warn prints a warning on standard error.
func (c *cmd) warn(format string, args ...any) {
	fmt.Fprintf(c.env.stderr, "hush: warning: "+format+"\n", args...)
}

// relaysList is "hush relays list".
func (c *cmd) relaysList(ctx context.Context) error {
	relays, err := query(ctx, c, (*session).Relays)
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(map[string]any{"relays": relays})
	}
	if len(relays) == 0 {
		fmt.Fprintln(c.env.stdout, "no relays: add one with \"hush relays add ADDRESS\"")
		return nil
	}
	for _, a := range relays {
		note := ""
		if a.Password {
			note = "  (with password)"
		}
		fmt.Fprintf(c.env.stdout, "%s%s\n", a.Address, note)
	}
	return nil
}

// checkRelays fails without relays and warns with a single one.
func (c *cmd) checkRelays(ctx context.Context, s *session) error {
	relays, err := s.Relays(ctx)
	if err != nil {
		return err
	}
	switch len(relays) {
	case 0:
		return errNoRelay
	case 1:
		c.warn("only one relay is configured (%s), so both directions of this contact may share it,\n"+
			"and that relay could see both sides of the conversation; add a second one with \"hush relays add ADDRESS\"", hostPort(relays[0].Address))
	}
	return nil
}

// openToCreate returns a session for a command that makes new queues (an
// invitation, a contact address): online for no contact, sending only,
// and with relays configured (checkRelays).
func (c *cmd) openToCreate(ctx context.Context) (*session, error) {
	s, err := c.openFor(ctx, need{contacts: []string{}, sendOnly: true})
	if err != nil {
		return nil, err
	}
	if err := c.checkRelays(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

var errNoRelay = errors.New("no relay configured: add one with \"hush relays add ADDRESS\" (an address from a relay operator)")

// invite is "hush invite".
func (c *cmd) invite(ctx context.Context, name string, short bool, timeout time.Duration) error {
	s, err := c.openToCreate(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	ictx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	invite := s.Invite
	if short {
		invite = s.InviteShort
	}
	link, err := invite(ictx, name, timeout)
	if err != nil {
		return c.relayError(timeout, c.contactError(err, name))
	}
	c.warnSkipped(ctx, s)
	if c.json {
		return c.emit(map[string]any{"link": link})
	}
	// The explanation comes first, on standard error, so that a script
	// that keeps only the first line of standard output still shows it.
	who := "your contact"
	if name != "" {
		who = clean(name)
	}
	fmt.Fprintf(c.env.stderr, "Give this one-time link to %s privately (anyone who uses it first becomes\n"+
		"the contact); they run \"hush accept LINK\", and then you run \"hush receive\" or \"hush chat\".\n\n", who)
	fmt.Fprintln(c.env.stdout, link)
	fmt.Fprintln(c.env.stdout)
	printQR(c.env.stdout, link)
	if !short && !c.json {
		fmt.Fprintln(c.env.stderr, "(hush invite --short makes a short link, whose QR code fits a terminal)")
	}
	return nil
}

// accept is "hush accept".
func (c *cmd) accept(ctx context.Context, link, name, show string, timeout time.Duration) error {
	link = strings.TrimSpace(link)
	address := isAddressLink(link)
	if show != "" && !address {
		return errors.New("--show is for a contact address's link (hush://.../a#...), not an invitation")
	}
	s, err := c.openFor(ctx, need{contacts: []string{}, sendOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	relays, err := s.Relays(ctx)
	if err != nil {
		return err
	}
	if len(relays) == 0 {
		return errNoRelay
	}
	actx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	var ct client.Contact
	if address {
		ct, err = s.RequestContact(actx, link, name, show, timeout)
	} else {
		ct, err = s.Accept(actx, link, name, timeout)
	}
	if err != nil {
		return c.relayError(timeout, c.contactError(err, name))
	}
	c.warnSkipped(ctx, s)
	if ct.SharedRelay || len(relays) == 1 {
		c.warn("both directions of the contact with %s share one relay, which can see both sides\n"+
			"of the conversation; add a second relay with \"hush relays add ADDRESS\" for new contacts", ct.Name)
	}
	flushed := c.flush(ctx, s, defaultFlushTimeout) == nil
	if c.json {
		return c.emit(map[string]any{"contact": contactOf(ct), "flushed": flushed})
	}
	if address {
		fmt.Fprintf(c.env.stdout, "asked for a contact through the address: contact %s is %s\n", clean(ct.Name), ct.State)
		fmt.Fprintf(c.env.stdout, "It becomes connected once the address's owner accepts the request and runs \"hush receive\", and then you do.\n")
		return nil
	}
	fmt.Fprintf(c.env.stdout, "accepted: contact %s is %s\n", clean(ct.Name), ct.State)
	if !flushed {
		fmt.Fprintf(c.env.stdout, "the reply to the invitation is %s\n", queuedNote)
	}
	fmt.Fprintf(c.env.stdout, "It becomes connected once %s runs \"hush receive\" and then you do.\n", clean(ct.Name))
	return nil
}

// relayError explains the relay failures of Invite and Accept: the
// command's timeout expired, the inviter's relay could not be used, or
// relays refused, with what to do about it.
func (c *cmd) relayError(timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		if err.Error() == context.DeadlineExceeded.Error() {
			return fmt.Errorf("could not reach the relay within %v (--timeout)", timeout)
		}
		return fmt.Errorf("could not reach the relay within %v (--timeout): %w", timeout, err)
	case errors.Is(err, client.ErrInviterRelay):
		return fmt.Errorf("%w\nThe invitation is still valid: try again later%s", err, relayHint(err))
	}
	return fmt.Errorf("%w%s", err, relayHint(err))
}

// relayHint is what the user can do about a relay that refused: "" for
// other errors.
func relayHint(err error) string {
	switch {
	case errors.Is(err, link.ErrWrongFingerprint):
		return "\nA relay at that address is not the relay its address names: check the address with\n" +
			"its operator, and replace it (hush relays remove, hush relays add)"
	case errors.Is(err, link.ErrWrongPassword):
		return "\nA relay refused the password in its address: ask its operator for the current\n" +
			"address and add it again with \"hush relays add ADDRESS\""
	case errors.Is(err, link.ErrTLS):
		return "\nA relay's TLS is unusable (an expired certificate?): tell its operator"
	}
	return ""
}

// warnSkipped warns about the configured relays that could not be used.
func (c *cmd) warnSkipped(ctx context.Context, s *session) {
	relays, err := s.Relays(ctx)
	if err != nil {
		return
	}
	status, err := s.RelayStatus(ctx)
	if err != nil {
		return
	}
	configured := make(map[string]bool)
	for _, r := range relays {
		configured[r.Address] = true
	}
	for _, st := range status {
		if !configured[st.Relay] {
			continue
		}
		switch st.State {
		case client.RelayDown.String():
			c.warn("relay %s could not be reached, and was skipped: %s", hostPort(st.Relay), st.Error)
		case client.RelayRefused.String():
			c.warn("relay %s refused the password in its address, and was skipped", hostPort(st.Relay))
		}
	}
}

// hostPort returns the host and port of the relay address s, or s.
func hostPort(s string) string {
	if a, err := queue.ParseAddress(s); err == nil {
		return a.HostPort()
	}
	return s
}

// contactError explains the errors of Invite, Accept, Send and chat.
func (c *cmd) contactError(err error, name string) error {
	switch {
	case errors.Is(err, client.ErrNoRelay):
		return errNoRelay
	case errors.Is(err, client.ErrNameTaken):
		return fmt.Errorf("a contact named %q already exists: choose another name with --name", name)
	case errors.Is(err, client.ErrOldLink):
		return errors.New("this invitation link was made by an older version of hush: ask for a new invitation")
	case errors.Is(err, client.ErrBadLink):
		return errors.New("not a valid hush invitation link: it was changed or cut (copy it whole, on one line)")
	case errors.Is(err, client.ErrInvitationUsed):
		return errors.New("this invitation was already used (a link works once): ask for a new invitation")
	case errors.Is(err, client.ErrNoContact):
		return fmt.Errorf("no contact named %q (see \"hush contacts\")", name)
	case errors.Is(err, client.ErrTooLong):
		return fmt.Errorf("the message is too long: at most %d bytes", client.MaxTextSize)
	case errors.Is(err, client.ErrContactGone):
		return fmt.Errorf("%s forgot you and deleted their queue: nothing can reach them (hush forget %s removes them here)", name, name)
	case errors.Is(err, client.ErrBadName):
		return errors.New("the new name is empty")
	case errors.Is(err, client.ErrLinkData):
		return errors.New("the link's data on its relay does not match the link: it was changed on the relay (or the link on its way): ask for a new link")
	case errors.Is(err, client.ErrAddressGone):
		return errors.New("this contact address was deleted by its owner: it takes no more requests")
	case errors.Is(err, client.ErrShowName):
		return fmt.Errorf("the name to show (--show) must be at most %d bytes of UTF-8", client.MaxShowName)
	case errors.Is(err, client.ErrRotating):
		return fmt.Errorf("the queue of %s is being rotated already (see \"hush contacts\")", name)
	case errors.Is(err, client.ErrReceiptMode):
		return errors.New("receipts must be on, off or default")
	case errors.Is(err, client.ErrNotConnected):
		return fmt.Errorf("%s is not connected yet: both sides must run \"hush receive\" after the invitation is accepted (see \"hush contacts\")", name)
	}
	return err
}

// jsonTime formats t for JSON output as the agent's API does: RFC 3339 in
// UTC with milliseconds (agent.TimeFormat), or "" for the zero time.
func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(agent.TimeFormat)
}

// contactJSON is a contact in JSON output.
type contactJSON struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Created     string `json:"created"` // jsonTime
	SharedRelay bool   `json:"shared_relay"`
	Outbox      int    `json:"outbox"`
	// Expires is when an unfinished handshake expires.
	Expires string `json:"expires,omitempty"` // jsonTime
	// ReceiveRelay and SendRelay are the relays of the contact's queues,
	// without passwords; SendRelay is absent until the contact confirmed.
	ReceiveRelay string `json:"receive_relay"`
	SendRelay    string `json:"send_relay,omitempty"`
	// Rotation is where the rotation of our queue is; absent for none.
	Rotation string `json:"rotation,omitempty"`
	// Receipts is the contact's own setting of delivery receipts, on or
	// off; absent: the global one.
	Receipts string `json:"receipts,omitempty"`
}

func contactOf(ct client.Contact) contactJSON {
	j := contactJSON{Name: ct.Name, State: string(ct.State), Created: jsonTime(ct.Created), SharedRelay: ct.SharedRelay, Outbox: ct.Outbox, Expires: jsonTime(ct.Expires),
		Rotation: string(ct.Rotation), Receipts: string(ct.Receipts)}
	if ct.ReceiveRelay.Host != "" {
		j.ReceiveRelay = ct.ReceiveRelay.String()
	}
	if ct.SendRelay.Host != "" {
		j.SendRelay = ct.SendRelay.String()
	}
	return j
}

// contacts is "hush contacts".
func (c *cmd) contacts(ctx context.Context) error {
	list, err := query(ctx, c, (*session).Contacts)
	if err != nil {
		return err
	}
	if c.json {
		return emitList(c, "contacts", list, contactOf)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.env.stdout, "no contacts yet: make an invitation with \"hush invite\", or accept one with \"hush accept LINK\"")
		return nil
	}
	tw := tabwriter.NewWriter(c.env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSINCE\tQUEUED\tNOTE")
	for _, ct := range list {
		var notes []string
		switch ct.State {
		case client.StateInvited:
			notes = append(notes, "waiting for them to accept the link; expires "+ct.Expires.Local().Format("2006-01-02 15:04"))
		case client.StateJoining:
			notes = append(notes, "waiting for the inviter to confirm (they run hush receive); expires "+ct.Expires.Local().Format("2006-01-02 15:04"))
		case client.StateExpired:
			notes = append(notes, "the handshake never completed: it will be forgotten (or: hush forget)")
		case client.StateGone:
			notes = append(notes, "they forgot you and deleted their queue: hush forget "+clean(ct.Name))
		}
		if ct.SharedRelay {
			notes = append(notes, "both directions share one relay")
		}
		if ct.Rotation != client.RotationNone {
			notes = append(notes, "rotating our queue: "+string(ct.Rotation))
		}
		if ct.Receipts != client.ReceiptsDefault {
			notes = append(notes, "receipts "+string(ct.Receipts))
		}
		note := strings.Join(notes, "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", clean(ct.Name), ct.State, ct.Created.Local().Format("2006-01-02 15:04"), ct.Outbox, note)
	}
	return tw.Flush()
}

// forget is "hush forget".
func (c *cmd) forget(ctx context.Context, name string, timeout time.Duration) error {
	s, err := c.openFor(ctx, need{contacts: []string{name}, sendOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	fctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	if err := s.Forget(fctx, name, timeout); err != nil {
		return c.relayError(timeout, c.contactError(err, name))
	}
	told := c.flush(ctx, s, timeout) == nil
	if c.json {
		return c.emit(map[string]any{"forgotten": name, "flushed": told})
	}
	fmt.Fprintf(c.env.stdout, "forgot %s: our queue is deleted, and their keys\n", clean(name))
	if !told {
		fmt.Fprintf(c.env.stdout, "the notice to them (so that they delete their queue) is %s\n", queuedNote)
	}
	return nil
}

// rename is "hush rename".
func (c *cmd) rename(ctx context.Context, name, newName string) error {
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Rename(ctx, name, newName); err != nil {
		if errors.Is(err, client.ErrNameTaken) {
			name = newName
		}
		return c.contactError(err, name)
	}
	if c.json {
		return c.emit(map[string]any{"renamed": name, "name": newName})
	}
	fmt.Fprintf(c.env.stdout, "renamed %s to %s\n", clean(name), clean(newName))
	return nil
}

// send is "hush send".
func (c *cmd) send(ctx context.Context, name, text string, timeout time.Duration) error {
	if text == "" {
		return errors.New("the message is empty")
	}
	s, err := c.openFor(ctx, need{contacts: []string{name}, sendOnly: true})
	if err != nil {
		return err
	}
	defer s.Close()
	seq, err := s.Send(ctx, name, text)
	if err != nil {
		return c.contactError(err, name)
	}
	status := "sent"
	if c.flush(ctx, s, timeout) != nil {
		status = "queued"
	}
	if c.json {
		return c.emit(map[string]any{"seq": seq, "status": status})
	}
	if status == "sent" {
		fmt.Fprintln(c.env.stdout, "sent")
	} else {
		fmt.Fprintln(c.env.stdout, queuedNote)
	}
	return nil
}

// flush waits, at most timeout, until the relays took every queued
// message.
func (c *cmd) flush(ctx context.Context, s *session, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	flushed, err := s.Flush(ctx, timeout)
	if err == nil && !flushed {
		err = errQueued
	}
	return err
}

// errQueued is returned by flush when messages are still queued.
var errQueued = errors.New("messages are still queued")

// receive is "hush receive".
func (c *cmd) receive(ctx context.Context, wait, timeout time.Duration) error {
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	sub, err := s.Subscribe(ctx, "")
	if err != nil {
		return err
	}
	p := c.newPrinter(s, "")
	quiet := time.NewTimer(wait)
	defer quiet.Stop()
	events := sub.Events()
	n := 0
listen:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return s.stopped()
			}
			shown, err := p.show(ctx, ev)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if shown && ev.Kind != client.EventRelayDown && ev.Kind != client.EventRelayUp {
				n++
			}
			quiet.Reset(wait)
		case <-quiet.C:
			break listen
		case <-ctx.Done():
			return nil
		}
	}
	// Quiet for wait: let the relays take what is queued (replies to
	// handshakes, retried messages), still printing what arrives.
	if err := c.flushPrinting(ctx, s, timeout, p, events); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errQueued) {
			return err
		}
		c.warnQueued(ctx, s)
	}
	if err := c.reportUnreachable(ctx, s, timeout); err != nil {
		return err
	}
	if n == 0 && !c.json {
		fmt.Fprintln(c.env.stderr, "hush: nothing new")
	}
	return nil
}

// relayStatusPoll is how often reportUnreachable looks at relays that are
// still connecting.
const relayStatusPoll = 50 * time.Millisecond

// reportUnreachable says which relays the run needed and could not reach:
// on standard error, or as {"event": "unreachable", "relay", "error"}
// lines with --json. It waits, at most timeout, for the first attempt to
// reach each. It returns an error when the run reached none of them.
func (c *cmd) reportUnreachable(ctx context.Context, s *session, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var status []agent.RelayStatusJSON
	for {
		var err error
		if status, err = s.RelayStatus(ctx); err != nil {
			return err
		}
		connecting := false
		for _, st := range status {
			connecting = connecting || st.State == client.RelayConnecting.String()
		}
		if !connecting || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(relayStatusPoll):
		}
	}
	reached, down := false, 0
	var last string
	for _, st := range status {
		why := st.Error
		switch st.State {
		case client.RelayUp.String(), client.RelayRefused.String():
			reached = true
			continue
		case client.RelayConnecting.String():
			why = fmt.Sprintf("no answer within %v (--timeout)", timeout)
		}
		down++
		at := hostPort(st.Relay)
		last = fmt.Sprintf("%s: %s", at, why)
		if c.json {
			c.emit(map[string]any{"event": "unreachable", "relay": at, "error": why})
		} else if len(status) > 1 {
			fmt.Fprintf(c.env.stderr, "hush: could not reach relay %s\n", last)
		}
	}
	switch {
	case reached || down == 0:
	case down == 1:
		return fmt.Errorf("could not reach relay %s", last)
	default:
		return fmt.Errorf("could not reach any of the %d relays", down)
	}
	return nil
}

// stopped is the error of a command whose events ended.
func (s *session) stopped() error {
	if s.viaAgent {
		return errors.New("the agent stopped")
	}
	return errors.New("the client stopped")
}

// warnQueued warns that messages are left in the outbox.
func (c *cmd) warnQueued(ctx context.Context, s *session) {
	n := 0
	if list, err := s.Contacts(ctx); err == nil {
		for _, ct := range list {
			n += ct.Outbox
		}
	}
	switch n {
	case 0:
		return
	case 1:
		c.warn("a message is still queued: it will be retried by the next hush receive, or chat or send to its contact")
	default:
		c.warn("%d messages are still queued: they will be retried by the next hush receive, or chat or send to their contacts", n)
	}
}

// flushPrinting is flush while printing the events that arrive meanwhile.
func (c *cmd) flushPrinting(ctx context.Context, s *session, timeout time.Duration, p *printer, events <-chan agent.Event) error {
	done := make(chan error, 1)
	go func() { done <- c.flush(ctx, s, timeout) }()
	for {
		select {
		case err := <-done:
			return err
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if _, err := p.show(ctx, ev); err != nil {
				events = nil
			}
		}
	}
}

// printer prints events, as text or JSON.
type printer struct {
	c *cmd
	s *session
	// chat is the contact of "hush chat", whose sent messages get a short
	// acknowledgement; "" for receive.
	chat string
	// unconfirmed holds the lines chat sent whose sent event it has not
	// printed yet, by seq.
	unconfirmed map[uint64]string
	// undelivered holds the lines chat sent whose delivered event (the
	// second tick) it has not printed yet, by seq: at most maxUndelivered.
	undelivered map[uint64]string
}

// maxUndelivered bounds the lines a chat remembers for their second tick;
// later ones are shown by their number.
const maxUndelivered = 4096

func (c *cmd) newPrinter(s *session, chat string) *printer {
	return &printer{c: c, s: s, chat: chat, unconfirmed: make(map[uint64]string), undelivered: make(map[uint64]string)}
}

// sent records a line that chat sent as message seq.
func (p *printer) sent(seq uint64, line string) {
	p.unconfirmed[seq] = line
	if len(p.undelivered) < maxUndelivered {
		p.undelivered[seq] = line
	}
}

// awaitSent prints the events that arrive until every line sent has its
// sent event printed, or the relays' acceptance of them cannot be told in
// time. It follows a successful flush: the sent events are stored by then,
// but the subscription may not have delivered them yet.
func (p *printer) awaitSent(ctx context.Context, events <-chan agent.Event) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	for len(p.unconfirmed) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if _, err := p.show(ctx, ev); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// show prints ev if it is the first to take it from the store (another
// command using the agent may have), and reports whether it did. An event
// is printed after it is taken, so that an agent killed at any moment
// makes no event shown twice; when the agent died with the ack
// unanswered, show asks the store whether the ack took the event
// (cmd.ack), so that none is lost either. It then still returns
// the ack's error.
func (p *printer) show(ctx context.Context, ev agent.Event) (bool, error) {
	taken, err := p.c.ack(ctx, p.s, ev.ID)
	if !taken {
		return false, err
	}
	p.print(ev.Event)
	if ev.Kind == client.EventSent && ev.Contact == p.chat {
		delete(p.unconfirmed, ev.Seq)
	}
	return true, err
}

// eventJSON is an event in JSON output.
type eventJSON struct {
	Event   string `json:"event"`
	Contact string `json:"contact"`
	Relay   string `json:"relay,omitempty"`
	Text    string `json:"text,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Time    string `json:"time,omitempty"` // jsonTime
	Error   string `json:"error,omitempty"`
	// Request is a contact request's ID, Name the name it shows.
	Request string `json:"request,omitempty"`
	Name    string `json:"name,omitempty"`
}

func (p *printer) print(ev client.Event) {
	if p.c.json {
		j := eventJSON{Contact: ev.Contact, Relay: ev.Relay, Seq: ev.Seq, Time: jsonTime(ev.Time)}
		switch ev.Kind {
		case client.EventMessage:
			j.Event, j.Text = "message", ev.Text
		case client.EventConnected:
			j.Event = "connected"
		case client.EventSent:
			j.Event = "sent"
		case client.EventDelivered:
			j.Event = "delivered"
		case client.EventProblem:
			j.Event = "problem"
			if ev.Problem != nil {
				j.Error = ev.Problem.Error()
			}
		case client.EventRelayDown:
			j.Event = "relay-down"
			if ev.Problem != nil {
				j.Error = ev.Problem.Error()
			}
		case client.EventRelayUp:
			j.Event = "relay-up"
		case client.EventRequest:
			j.Event, j.Contact, j.Request, j.Name = "request", "", ev.Text, ev.Contact
		case client.EventRotated:
			j.Event = "rotated"
		default:
			j.Event = fmt.Sprintf("event %d", ev.Kind)
		}
		p.c.emit(j)
		return
	}
	w := p.c.env.stdout
	name := clean(ev.Contact)
	switch ev.Kind {
	case client.EventMessage:
		indent := "\n" + strings.Repeat(" ", len(name)+2)
		fmt.Fprintf(w, "%s: %s\n", name, strings.ReplaceAll(clean(ev.Text), "\n", indent))
	case client.EventConnected:
		fmt.Fprintf(w, "%s connected\n", name)
	case client.EventSent:
		// receive shows what arrived, not the relays taking what was
		// queued (replies to handshakes among it); chat acknowledges the
		// lines typed.
		if p.chat != "" && ev.Contact == p.chat {
			if line, ok := p.unconfirmed[ev.Seq]; ok {
				fmt.Fprintf(p.c.env.stderr, "✓ %s\n", excerpt(line))
			} else {
				fmt.Fprintf(p.c.env.stderr, "✓ message %d\n", ev.Seq)
			}
		}
	case client.EventDelivered:
		// The second tick: the contact's hush stored the line (receive
		// shows what arrived, not this).
		if p.chat != "" && ev.Contact == p.chat {
			if line, ok := p.undelivered[ev.Seq]; ok {
				delete(p.undelivered, ev.Seq)
				fmt.Fprintf(p.c.env.stderr, "✓✓ %s\n", excerpt(line))
			} else {
				fmt.Fprintf(p.c.env.stderr, "✓✓ message %d\n", ev.Seq)
			}
		}
	case client.EventProblem:
		fmt.Fprintf(w, "problem with %s: %v\n", name, ev.Problem)
	case client.EventRelayDown:
		if p.chat == "" {
			return // receive names the relays it could not reach at its end
		}
		// A status line, like the acknowledgements: on stderr. The
		// reason is worth reading only when waiting will not help.
		why := ""
		if link.Permanent(ev.Problem) {
			why = fmt.Sprintf(": %v", ev.Problem)
		}
		fmt.Fprintf(p.c.env.stderr, "hush: relay %s unreachable%s; messages through it wait\n", clean(ev.Relay), why)
	case client.EventRelayUp:
		if p.chat == "" {
			return
		}
		fmt.Fprintf(p.c.env.stderr, "hush: relay %s is back\n", clean(ev.Relay))
	case client.EventRequest:
		who := "showing no name"
		if ev.Contact != "" {
			who = fmt.Sprintf("from %q", clean(ev.Contact))
		}
		// In chat, a status line about someone else: on stderr.
		out := w
		if p.chat != "" {
			out = p.c.env.stderr
		}
		fmt.Fprintf(out, "contact request %s %s: hush requests accept %s, or reject %s\n", clean(ev.Text), who, clean(ev.Text), clean(ev.Text))
	case client.EventRotated:
		fmt.Fprintf(w, "%s: our queue for their messages moved to a new queue, on %s\n", name, clean(ev.Relay))
	}
}

// shortQR is the longest text that printQR encodes with the medium
// error correction level: version 10-M holds 213 bytes, 57 modules and a
// quiet zone of 2 on each side: 61 columns.
const shortQR = 213

// excerptRunes is how much of a line an acknowledgement in chat shows.
const excerptRunes = 40

// excerpt returns the start of line, cleaned, to show which line an
// acknowledgement confirms.
func excerpt(line string) string {
	r := []rune(clean(line))
	if len(r) > excerptRunes {
		return string(r[:excerptRunes-1]) + "…"
	}
	return string(r)
}

// clean replaces the control characters of s, other than newlines and
// tabs, so that text from others cannot drive the terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return unicode.ReplacementChar
	}, s)
}

// chat is "hush chat".
func (c *cmd) chat(ctx context.Context, name string, timeout time.Duration) error {
	s, err := c.openFor(ctx, need{contacts: []string{name}})
	if err != nil {
		return err
	}
	defer s.Close()
	list, err := s.Contacts(ctx)
	if err != nil {
		return err
	}
	var ct *client.Contact
	for i := range list {
		if list[i].Name == name {
			ct = &list[i]
		}
	}
	if ct == nil {
		return c.contactError(client.ErrNoContact, name)
	}
	// The events of this contact only: others wait for receive.
	sub, err := s.Subscribe(ctx, name)
	if err != nil {
		return err
	}

	// Lines are read only once the contact is connected; until then they
	// wait in the pipe or terminal.
	lines := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	// On a terminal, the line being typed is kept below what chat prints
	// (text only: --json output is for programs).
	ctx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var tm *chatTerminal
	if !c.json {
		tm = openChatTerminal(c.env.stdin, c.env.stdout, interrupt)
	}
	if tm != nil {
		defer tm.Close()
		c.env.stdout = tm
		if isTerminal(c.env.stderr) {
			c.env.stderr = tm // status lines too
		}
		go tm.readLines(lines, stop)
	} else {
		go readLines(c.env.stdin, lines, stop)
	}
	var in chan string
	if ct.State == client.StateConnected {
		in = lines
	} else if !c.json {
		fmt.Fprintf(c.env.stderr, "hush: %s is %s: waiting for the handshake to complete (the other side runs \"hush receive\" or \"hush chat\")\n", clean(name), ct.State)
	}
	if !c.json && in != nil {
		fmt.Fprintf(c.env.stderr, "hush: chatting with %s; type a line to send it, Ctrl-D to end\n", clean(name))
	}
	p := c.newPrinter(s, name)
	events := sub.Events()
	for {
		select {
		case <-ctx.Done():
			return nil // what was typed is in the outbox, sent by the next run
		case ev, ok := <-events:
			if !ok {
				return s.stopped()
			}
			if _, err := p.show(ctx, ev); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if ev.Kind == client.EventConnected && ev.Contact == name && in == nil {
				in = lines
				if !c.json {
					fmt.Fprintf(c.env.stderr, "hush: chatting with %s; type a line to send it, Ctrl-D to end\n", clean(name))
				}
			}
		case line, ok := <-in:
			if !ok {
				err := c.flushPrinting(ctx, s, timeout, p, events)
				if err == nil {
					p.awaitSent(ctx, events)
				} else if ctx.Err() == nil {
					if !errors.Is(err, errQueued) {
						return err
					}
					c.warnQueued(ctx, s)
				}
				return nil
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			seq, err := s.Send(ctx, name, line)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return c.contactError(err, name)
			}
			p.sent(seq, line)
		}
	}
}

// readLines sends the lines of r to lines and closes it at the end of r;
// it returns early when stop is closed.
func readLines(r io.Reader, lines chan<- string, stop <-chan struct{}) {
	defer close(lines)
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
			select {
			case lines <- s:
			case <-stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// printQR writes text as a QR code of half-block characters, with the low
// error correction level that keeps a 2 KB link scannable, or for a link
// of at most shortQR bytes (a short link) the medium one: a short link's
// code is then 45 columns wide at 127.0.0.1:5223, 57 with an onion host,
// and fits an 80-column terminal.
func printQR(w io.Writer, text string) {
	level := qrterminal.L
	if len(text) <= shortQR {
		level = qrterminal.M
	}
	qrterminal.GenerateWithConfig(text, qrterminal.Config{
		Level:          level,
		Writer:         w,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      2,
	})
}
