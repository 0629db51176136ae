//go:build linux

package main

// The chaos scenario (issue 12): three relays as child processes, two
// messengers (client.Client) with many contacts between them, traffic in
// both directions, relays killed with SIGKILL and restarted at random, and
// one relay down for a long outage during which new contacts are made. It
// checks by counting that every message sent is shown exactly once and in
// order per contact, and prints the time from each restart to the first
// message delivered through the restarted relay.
//
// It uses only the messenger's public API. Each message's text is
// "<contact> <seq>", seq counting from 1 per contact and direction. The
// restart-to-delivery time is taken on the queues whose relay the public
// API tells: an inviter receives on the queue its invitation link names
// (PROTOCOL.md 19.2). Each client invites half of the contacts, so both
// receive on such queues. The accepter's queue, on a relay Accept picks
// (another one than the inviter's), is checked for exactly-once delivery
// like every other but not timed.

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// chaosRelays is the number of relays the scenario runs.
const chaosRelays = 3

// Recovery goals of issue 12, from a relay's restart to the first message
// delivered through it. They are printed beside the figures, never
// asserted.
const (
	chaosGoalMedian = time.Second
	chaosGoalWorst  = 3 * time.Second
)

// chaosOptions are the flags of the chaos scenario.
type chaosOptions struct {
	commonOptions
	contacts          int
	duration          time.Duration
	minSent           int     // the traffic goes on after duration until this many were sent
	minKills          int     // and until this many relays were killed
	rate              float64 // messages per second sent by each client
	killMin, killMax  time.Duration
	downMin, downMax  time.Duration
	outage            time.Duration
	outageAt          time.Duration
	outageInvites     int
	outageMinAccepted int // the outage goes on until this many invitations were accepted
	inviteTimeout     time.Duration
	setupTimeout      time.Duration
	drain             time.Duration
	seed              uint64
	verbose           bool
}

// chaosRestart is one relay restart.
type chaosRestart struct {
	Relay  int     `json:"relay"`
	Outage bool    `json:"outage"` // the long outage
	AtS    float64 `json:"at_s"`   // when it served again, seconds after the traffic started
	DownS  float64 `json:"down_s"` // from the kill to serving again
	// FirstDeliveryMS is the time from serving again to the first message
	// shown to the application that came through this relay; null when
	// none came before the end (or before its next kill).
	FirstDeliveryMS *float64 `json:"first_delivery_ms"`
	// RelayUpMS is, for clients a and b, the time from serving again to
	// the client's EventRelayUp for this relay; null when it showed none
	// (a client that noticed the loss only once the relay was back
	// reconnects without a relay-down and relay-up pair).
	RelayUpMS [2]*float64 `json:"relay_up_ms"`

	restarted time.Time
}

// chaosResult is the chaos scenario's report.
type chaosResult struct {
	Scenario      string           `json:"scenario"`
	Transport     string           `json:"transport"`
	Relays        int              `json:"relays"`
	Contacts      int              `json:"contacts"`
	Rate          float64          `json:"rate_per_client"` // messages per second each client sends
	Seconds       float64          `json:"duration_s"`      // of the traffic: --duration, or longer for --min-sent and --min-kills
	Seed          uint64           `json:"seed"`
	SetupSeconds  float64          `json:"setup_s"`                  // making the contacts, until all were connected
	InviterQueues [chaosRelays]int `json:"inviter_queues_per_relay"` // where the timed queues are

	Sent       int64 `json:"sent"`      // Send calls that returned a sequence number
	Delivered  int64 `json:"delivered"` // distinct messages shown to the applications
	Lost       int64 `json:"lost"`      // sent and never shown
	Duplicated int64 `json:"duplicated"`
	OutOfOrder int64 `json:"out_of_order"` // shown after a later message of the same contact and direction
	// Unexpected counts events for unknown contacts, texts the scenario
	// did not send, and messages shown that were never sent.
	Unexpected int64 `json:"unexpected"`
	SendErrors int64 `json:"send_errors"`
	// DrainSeconds is the time from the end of sending until every message
	// was shown and every invitation accepted during the outage was
	// connected on both sides, or the --drain bound when Drained is false.
	DrainSeconds float64 `json:"drain_s"`
	Drained      bool    `json:"drained"`

	// Problems the clients reported (EventProblem), by kind. Duplicates
	// the client suppressed are expected after crashes (a relay killed
	// after storing a message and before answering OK gets it again);
	// gaps and the others are not.
	ProblemsDuplicate int64 `json:"problems_duplicate"`
	ProblemsGap       int64 `json:"problems_gap"`
	ProblemsOther     int64 `json:"problems_other"`

	Kills         int     `json:"kills"`        // SIGKILLs, the outage's included
	OutageRelay   int     `json:"outage_relay"` // -1: no outage
	OutageSeconds float64 `json:"outage_s"`     // --outage, or longer for --outage-min-accepted
	// OutageShownPerSec is the rate of messages shown during the outage,
	// to compare with the 2 × --rate offered: about two thirds of the
	// messages go to queues on the relays that are up.
	OutageShownPerSec float64 `json:"outage_shown_per_sec"`
	// Invitations made during the outage: attempts (Invite then Accept,
	// each attempt bounded by --invite-timeout), those that failed, those
	// accepted, and of those how many were connected on both sides by the
	// end and before the relay came back.
	OutageInviteAttempts           int `json:"outage_invite_attempts"`
	OutageInviteFailures           int `json:"outage_invite_failures"`
	OutageInvites                  int `json:"outage_invites"`
	OutageInvitesConnected         int `json:"outage_invites_connected"`
	OutageInvitesConnectedInOutage int `json:"outage_invites_connected_in_outage"`

	Restarts         []chaosRestart `json:"restarts"`
	RecoveryMedianMS *float64       `json:"recovery_median_ms"` // over the restarts with a delivery
	RecoveryWorstMS  *float64       `json:"recovery_worst_ms"`
	Unrecovered      int            `json:"unrecovered"` // restarts with no delivery through the relay
	GoalMedianMS     float64        `json:"goal_median_ms"`
	GoalWorstMS      float64        `json:"goal_worst_ms"`
}

func runChaosCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o chaosOptions
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&o.transport, "transport", string(link.TransportQUIC), "transport: quic or tcp")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object instead of text")
	fs.StringVar(&o.dataDir, "data", "", "directory for the relays' and clients' data, kept afterwards (default: a temporary directory, removed)")
	fs.Float64Var(&o.newRate, "relay-new-rate", 0, "NEW commands per second per session allowed by the relays (0: the relay default, 10)")
	fs.IntVar(&o.contacts, "contacts", 300, "contacts between the two clients, made before the traffic starts")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long both clients send")
	fs.IntVar(&o.minSent, "min-sent", 0, "send, and kill relays, after --duration until at least this many messages were sent (0: stop at --duration)")
	fs.IntVar(&o.minKills, "min-kills", 0, "send, and kill relays, after --duration until at least this many relays were killed, the outage's included (0: stop at --duration)")
	fs.Float64Var(&o.rate, "rate", 10, "messages per second each client sends, to contacts picked at random")
	fs.DurationVar(&o.killMin, "kill-min", 10*time.Second, "shortest time between a relay's restart and the next kill")
	fs.DurationVar(&o.killMax, "kill-max", 30*time.Second, "longest time between a relay's restart and the next kill")
	fs.DurationVar(&o.downMin, "down-min", time.Second, "shortest time a killed relay stays down")
	fs.DurationVar(&o.downMax, "down-max", 5*time.Second, "longest time a killed relay stays down")
	fs.DurationVar(&o.outage, "outage", time.Minute, "how long one relay stays down once during the run (0: no outage)")
	fs.DurationVar(&o.outageAt, "outage-at", 0, "when the outage starts, after the traffic started (0: a third of --duration)")
	fs.IntVar(&o.outageInvites, "outage-invites", 10, "contacts to make during the outage")
	fs.IntVar(&o.outageMinAccepted, "outage-min-accepted", 0, "the outage goes on after --outage until at least this many of its invitations were accepted (at most --outage-invites)")
	fs.DurationVar(&o.inviteTimeout, "invite-timeout", 5*time.Second, "bound of one invitation attempt (Invite and Accept) during the outage; a failed one is tried again with a new invitation")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 10*time.Minute, "how long making the contacts may take")
	fs.DurationVar(&o.drain, "drain", 3*time.Minute, "how long to wait, after sending, for every message to be shown")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the random choices (0: a random seed, printed)")
	fs.BoolVar(&o.verbose, "v", false, "print the clients' debug logs on stderr")
	if err := parseFlags(fs, &o.commonOptions, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.outageAt == 0 {
		o.outageAt = o.duration / 3
	}
	switch {
	case o.contacts < 2:
		return usageError{"--contacts must be at least 2"}
	case o.duration <= 0 || o.rate <= 0:
		return usageError{"--duration and --rate must be positive"}
	case o.minSent < 0 || o.minKills < 0:
		return usageError{"--min-sent and --min-kills must not be negative"}
	case o.killMin <= 0 || o.killMax < o.killMin:
		return usageError{"want 0 < --kill-min <= --kill-max"}
	case o.downMin < 0 || o.downMax < o.downMin:
		return usageError{"want 0 <= --down-min <= --down-max"}
	case o.outage < 0 || o.outageInvites < 0 || o.inviteTimeout <= 0:
		return usageError{"--outage and --outage-invites must not be negative, --invite-timeout positive"}
	case o.outageMinAccepted < 0 || o.outageMinAccepted > o.outageInvites:
		return usageError{"want 0 <= --outage-min-accepted <= --outage-invites"}
	case o.outage > 0 && (o.outageAt < 0 || o.outageAt >= o.duration):
		return usageError{"--outage-at must be within --duration"}
	case o.setupTimeout <= 0 || o.drain <= 0:
		return usageError{"--setup-timeout and --drain must be positive"}
	}
	if o.seed == 0 {
		o.seed = rand.Uint64()
	}
	res, err := runChaos(ctx, &o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	printChaos(stdout, res)
	return nil
}

// chaosRelay is one relay child that can be killed and restarted on the
// same data directory (so the same identity) and port.
type chaosRelay struct {
	index     int
	opts      childOptions
	progressf func(format string, args ...any)
	addr      queue.Address
	child     *relayChild // nil while down
}

// start starts the relay and waits until it serves. A restart on a fixed
// port is tried a few times: the port may be briefly unavailable.
func (r *chaosRelay) start(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		c, err := startChild(ctx, r.opts)
		if err == nil {
			if r.opts.listen == "" {
				r.addr, r.opts.listen = c.addr, c.addr.HostPort()
			} else if c.addr.Fingerprint != r.addr.Fingerprint {
				c.kill()
				return fmt.Errorf("relay %d came back with another identity", r.index)
			}
			r.child = c
			return nil
		}
		if attempt == 10 || ctx.Err() != nil {
			return fmt.Errorf("relay %d: %w", r.index, err)
		}
		r.progressf("relay %d did not start (attempt %d): %v", r.index, attempt, err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// kill ends the relay with SIGKILL.
func (r *chaosRelay) kill() {
	if r.child != nil {
		r.child.kill()
		r.child = nil
	}
}

// stop shuts a running relay down cleanly.
func (r *chaosRelay) stop() {
	if r.child != nil {
		r.child.Stop()
		r.child = nil
	}
}

// chaosContact is one contact between the two clients, named alike on
// both sides. Sides are 0 (client a) and 1 (client b).
type chaosContact struct {
	name    string
	inviter int // the side that invited
	relay   int // the relay of the inviter's receiving queue
	outage  bool

	connected   [2]bool
	active      bool // connected on both sides: the traffic uses it
	connectedAt time.Time

	sent [2]uint64    // by sending side: the last seq whose Send returned
	recv [2]chaosRecv // by receiving side
}

// chaosRecv is what one side was shown of one contact's messages.
type chaosRecv struct {
	seen     []bool // seen[seq-1]
	distinct uint64
	max      uint64
}

// chaosTracker counts what the applications are shown. Its methods are
// safe for concurrent use.
type chaosTracker struct {
	o *chaosOptions

	mu       sync.Mutex
	contacts map[string]*chaosContact
	active   []*chaosContact

	sent, delivered, dups, outOfOrder, unexpected, sendErrs int64
	probDup, probGap, probOther                             int64
	shown                                                   int // problem lines printed

	// outageFrom and outageTo bound the outage once it started (zero
	// before); outageShown counts the messages shown within it.
	outageFrom, outageTo time.Time
	outageShown          int64

	restarts []*chaosRestart
	// hostPorts are the relays' host:port, as EventRelayUp names them.
	hostPorts [chaosRelays]string
	// last is, per relay, its last restart.
	last [chaosRelays]*chaosRestart
	// pending is, per relay, its last restart while no delivery through
	// it has been seen since.
	pending [chaosRelays]*chaosRestart
}

// add records a contact whose invitation was made.
func (t *chaosTracker) add(ct *chaosContact) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.contacts[ct.name] = ct
}

// remove forgets a contact whose invitation could not be accepted.
func (t *chaosTracker) remove(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.contacts, name)
}

// event records one event shown to the application of side at time at.
func (t *chaosTracker) event(side int, ev client.Event, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ct := t.contacts[ev.Contact]
	switch ev.Kind {
	case client.EventConnected:
		if ct == nil {
			t.unexpected++
			return
		}
		ct.connected[side] = true
		if ct.connected[0] && ct.connected[1] && !ct.active {
			ct.active, ct.connectedAt = true, at
			t.active = append(t.active, ct)
		}
	case client.EventMessage:
		name, num, ok := strings.Cut(ev.Text, " ")
		seq, err := strconv.ParseUint(num, 10, 32)
		if ct == nil || !ok || err != nil || seq == 0 || name != ev.Contact {
			t.unexpected++
			return
		}
		r := &ct.recv[side]
		if seq <= uint64(len(r.seen)) && r.seen[seq-1] {
			t.dups++
			return
		}
		for uint64(len(r.seen)) < seq {
			r.seen = append(r.seen, false)
		}
		r.seen[seq-1] = true
		r.distinct++
		t.delivered++
		if seq != r.max+1 {
			t.outOfOrder++
		}
		r.max = max(r.max, seq)
		if !t.outageFrom.IsZero() && !at.Before(t.outageFrom) && at.Before(t.outageTo) {
			t.outageShown++
		}
		if side == ct.inviter {
			if p := t.pending[ct.relay]; p != nil && at.After(p.restarted) {
				d := ms(at.Sub(p.restarted))
				p.FirstDeliveryMS = &d
				t.pending[ct.relay] = nil
			}
		}
	case client.EventRelayUp:
		for i, hp := range t.hostPorts {
			if p := t.last[i]; hp == ev.Relay && p != nil && p.RelayUpMS[side] == nil && at.After(p.restarted) {
				d := ms(at.Sub(p.restarted))
				p.RelayUpMS[side] = &d
			}
		}
	case client.EventProblem:
		switch {
		case errors.Is(ev.Problem, client.ErrDuplicate):
			t.probDup++
			return
		case errors.Is(ev.Problem, client.ErrGap):
			t.probGap++
		default:
			t.probOther++
		}
		if t.shown < 10 {
			t.shown++
			t.o.progressf("problem shown to client %c, contact %s: %v", 'a'+side, ev.Contact, ev.Problem)
		}
	}
}

// pick returns a random active contact and the seq of side's next message
// to it, or nil if none is active.
func (t *chaosTracker) pick(rng *rand.Rand, side int) (*chaosContact, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.active) == 0 {
		return nil, 0
	}
	ct := t.active[rng.IntN(len(t.active))]
	return ct, ct.sent[side] + 1
}

// sentOK records that side's Send of seq to ct returned.
func (t *chaosTracker) sentOK(ct *chaosContact, side int, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ct.sent[side] = seq
	t.sent++
}

func (t *chaosTracker) sendFailed(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sendErrs++
	if t.sendErrs <= 5 {
		t.o.progressf("send: %v", err)
	}
}

// killed forgets relay i's pending restart: it was killed again before a
// delivery through it.
func (t *chaosTracker) killed(i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending[i] = nil
}

// restarted records a restart, now waiting for a delivery.
func (t *chaosTracker) restarted(r *chaosRestart) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restarts = append(t.restarts, r)
	t.pending[r.Relay] = r
	t.last[r.Relay] = r
}

// outage records the outage's time.
func (t *chaosTracker) outage(from, to time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.outageFrom, t.outageTo = from, to
}

// counts returns the messages whose Send returned and the relays killed
// (restarts recorded) so far.
func (t *chaosTracker) counts() (sent int64, kills int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent, len(t.restarts)
}

// activeCount returns the number of contacts connected on both sides.
func (t *chaosTracker) activeCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.active)
}

// drained reports whether every message sent was shown, and every
// invitation accepted during the outage was connected on both sides.
func (t *chaosTracker) drained() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ct := range t.contacts {
		if ct.outage && !ct.active {
			return false
		}
		for side := range 2 {
			if ct.recv[side].distinct < ct.sent[1-side] {
				return false
			}
		}
	}
	return true
}

// chaosRun is one run of the scenario.
type chaosRun struct {
	o       *chaosOptions
	relays  [chaosRelays]*chaosRelay
	clients [2]*client.Client
	t       *chaosTracker
	start   time.Time     // when the traffic started
	traffic time.Duration // how long it lasted

	// The outage, set by the chaos goroutine before it returns.
	outageRelay                int
	outageFrom, outageEnd      time.Time
	outageAttempts, outageFail int
	outageAccepted             int
}

// makeContact makes one contact: inviter invites, the other side accepts.
func (s *chaosRun) makeContact(ctx context.Context, name string, inviter int, outage bool) error {
	link, err := s.clients[inviter].Invite(ctx, name)
	if err != nil {
		return fmt.Errorf("invite: %w", err)
	}
	addr, err := linkRelay(link)
	if err != nil {
		return fmt.Errorf("invitation link: %w", err)
	}
	ct := &chaosContact{name: name, inviter: inviter, relay: -1, outage: outage}
	for _, r := range s.relays {
		if r.addr.Fingerprint == addr.Fingerprint {
			ct.relay = r.index
		}
	}
	if ct.relay < 0 {
		return errors.New("invitation link: not one of our relays")
	}
	s.t.add(ct)
	if _, err := s.clients[1-inviter].Accept(ctx, link, name); err != nil {
		s.t.remove(name)
		return fmt.Errorf("accept: %w", err)
	}
	return nil
}

// linkRelay returns the relay named in an invitation link (PROTOCOL.md
// 19.2); it reads only the address and checks nothing else:
//
//	hush:/invite#<base64url without padding of:>
//	version uint8 = 2 | addrLen uint16 | address [addrLen] | ...
func linkRelay(link string) (queue.Address, error) {
	enc, ok := strings.CutPrefix(link, "hush:/invite#")
	if !ok {
		return queue.Address{}, errors.New("no hush:/invite# prefix")
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return queue.Address{}, err
	}
	if len(b) < 3 || b[0] != 2 {
		return queue.Address{}, errors.New("unknown version")
	}
	n := int(binary.BigEndian.Uint16(b[1:]))
	if len(b) < 3+n {
		return queue.Address{}, errors.New("short address")
	}
	return queue.ParseAddress(string(b[3 : 3+n]))
}

func runChaos(ctx context.Context, o *chaosOptions) (*chaosResult, error) {
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "hush-chaos-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	s := &chaosRun{o: o, outageRelay: -1, t: &chaosTracker{o: o, contacts: make(map[string]*chaosContact)}}
	o.progressf("chaos over %s, seed %d: starting %d relays", o.transport, o.seed, chaosRelays)
	defer func() {
		for _, r := range s.relays {
			if r != nil {
				r.stop()
			}
		}
	}()
	for i := range s.relays {
		r := &chaosRelay{index: i, progressf: o.progressf, opts: childOptions{dataDir: filepath.Join(dir, fmt.Sprintf("relay-%d", i)), newRate: o.newRate}}
		if err := r.start(ctx); err != nil {
			return nil, err
		}
		s.relays[i] = r
		s.t.hostPorts[i] = r.addr.HostPort()
	}

	// The clients, and a goroutine each that takes their events.
	evCtx, stopEvents := context.WithCancel(ctx)
	var evWG sync.WaitGroup
	defer func() {
		stopEvents()
		evWG.Wait()
		for _, c := range s.clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for side := range s.clients {
		home := filepath.Join(dir, fmt.Sprintf("client-%c", 'a'+side))
		if err := client.Init(home, nil); err != nil {
			return nil, err
		}
		log := slog.New(slog.DiscardHandler)
		if o.verbose {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("client", string(rune('a'+side)))
		}
		c, err := client.Open(ctx, client.Config{Home: home, Dial: link.Config{Transport: link.Transport(o.transport)}, Logger: log})
		if err != nil {
			return nil, err
		}
		s.clients[side] = c
		for _, r := range s.relays {
			if err := c.AddRelay(r.addr); err != nil {
				return nil, err
			}
		}
		evWG.Add(1)
		go func() {
			defer evWG.Done()
			for {
				select {
				case <-evCtx.Done():
					return
				case ev := <-c.Events():
					s.t.event(side, ev, time.Now())
				}
			}
		}()
	}

	// The contacts: each client invites half of them.
	o.progressf("making %d contacts", o.contacts)
	setupStart := time.Now()
	setupCtx, cancelSetup := context.WithTimeout(ctx, o.setupTimeout)
	defer cancelSetup()
	err := parallel(setupCtx, o.contacts, 8, func(ctx context.Context, i int) error {
		return s.makeContact(ctx, fmt.Sprintf("k%04d", i), i%2, false)
	})
	if err != nil {
		return nil, fmt.Errorf("making contacts: %w", err)
	}
	for last := time.Now(); s.t.activeCount() < o.contacts; {
		if setupCtx.Err() != nil {
			return nil, fmt.Errorf("only %d of %d contacts connected within --setup-timeout", s.t.activeCount(), o.contacts)
		}
		if time.Since(last) >= 10*time.Second {
			o.progressf("%d of %d contacts connected", s.t.activeCount(), o.contacts)
			last = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	setup := time.Since(setupStart)
	cancelSetup()

	// The traffic, and the chaos beside it.
	o.progressf("contacts made in %.1f s; sending %.0f msgs/s per client for %v while relays are killed", setup.Seconds(), o.rate, o.duration)
	s.start = time.Now()
	end := s.start.Add(o.duration)
	sending, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var sendWG sync.WaitGroup
	for side := range s.clients {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			s.send(ctx, sending, side, rand.New(rand.NewPCG(o.seed, uint64(side)+1)))
		}()
	}
	// The chaos returns at end, or later for --min-sent and --min-kills.
	chaosErr := s.chaos(ctx, rand.New(rand.NewPCG(o.seed, 0)), end)
	stopSending()
	sendWG.Wait()
	sendEnd := time.Now()
	s.traffic = sendEnd.Sub(s.start)
	if chaosErr != nil {
		return nil, chaosErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	o.progressf("draining")
	deadline := sendEnd.Add(o.drain)
	drained := false
	for ctx.Err() == nil {
		if drained = s.t.drained(); drained || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	drain := time.Since(sendEnd)
	// A little more, so that duplicates would show.
	time.Sleep(time.Second)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.result(setup, drain, drained), nil
}

// send sends o.rate messages per second from side to random active
// contacts until sending ends; each Send has ctx, so that one under way
// when sending ends is not cut short (and counted an error).
func (s *chaosRun) send(ctx, sending context.Context, side int, rng *rand.Rand) {
	lim := rate.NewLimiter(rate.Limit(s.o.rate), 1)
	for lim.Wait(sending) == nil {
		ct, seq := s.t.pick(rng, side)
		if ct == nil {
			continue
		}
		if _, err := s.clients[side].Send(ctx, ct.name, fmt.Sprintf("%s %d", ct.name, seq)); err != nil {
			s.t.sendFailed(err)
			continue
		}
		s.t.sentOK(ct, side, seq)
	}
}

// chaos kills and restarts relays, one at a time, until end, and runs the
// outage at --outage-at (before a kill that would overlap it). It returns
// at end; while fewer than --min-sent messages were sent or fewer than
// --min-kills relays killed, it goes on killing past end, and returns once
// a kill finds both reached, so that what a run counts does not depend on
// how fast the machine is. It returns an error if a relay does not
// restart.
func (s *chaosRun) chaos(ctx context.Context, rng *rand.Rand, end time.Time) error {
	o := s.o
	between := func() time.Duration { return uniform(rng, o.killMin, o.killMax) }
	outageStart := s.start.Add(o.outageAt)
	outageDone := o.outage <= 0
	next := time.Now().Add(between())
	for {
		if !outageDone && !next.Add(o.downMax).Before(outageStart) {
			if err := sleepUntil(ctx, outageStart); err != nil {
				return err
			}
			if err := s.runOutage(ctx, rng); err != nil {
				return err
			}
			outageDone = true
			next = time.Now().Add(between())
			continue
		}
		if sent, kills := s.t.counts(); !next.Before(end) && sent >= int64(o.minSent) && kills >= o.minKills {
			return sleepUntil(ctx, end)
		}
		if err := sleepUntil(ctx, next); err != nil {
			return err
		}
		i := rng.IntN(chaosRelays)
		down := uniform(rng, o.downMin, o.downMax)
		o.progressf("%5.1f s: killing relay %d for %.1f s", time.Since(s.start).Seconds(), i, down.Seconds())
		if err := s.bounce(ctx, i, time.Now().Add(down), false); err != nil {
			return err
		}
		next = time.Now().Add(between())
	}
}

// bounce kills relay i and restarts it at until.
func (s *chaosRun) bounce(ctx context.Context, i int, until time.Time, outage bool) error {
	killed := s.kill(i)
	if err := sleepUntil(ctx, until); err != nil {
		return err
	}
	return s.restart(ctx, i, killed, outage)
}

// kill kills relay i and returns when.
func (s *chaosRun) kill(i int) time.Time {
	killed := time.Now()
	s.relays[i].kill()
	s.t.killed(i)
	return killed
}

// restart restarts relay i, killed at killed, and records it.
func (s *chaosRun) restart(ctx context.Context, i int, killed time.Time, outage bool) error {
	if err := s.relays[i].start(ctx); err != nil {
		return err
	}
	now := time.Now()
	s.t.restarted(&chaosRestart{
		Relay: i, Outage: outage,
		AtS:       now.Sub(s.start).Seconds(),
		DownS:     now.Sub(killed).Seconds(),
		restarted: now,
	})
	return nil
}

// runOutage keeps one relay down for --outage, and on until
// --outage-min-accepted invitations were accepted, while both clients
// make new contacts, and then restarts it.
func (s *chaosRun) runOutage(ctx context.Context, rng *rand.Rand) error {
	o := s.o
	i := rng.IntN(chaosRelays)
	from := time.Now()
	s.outageRelay = i
	s.t.outage(from, from.Add(100*365*24*time.Hour)) // its end is not known yet
	killed := s.kill(i)
	o.progressf("%5.1f s: killing relay %d for the %v outage; making %d contacts meanwhile", time.Since(s.start).Seconds(), i, o.outage, o.outageInvites)
	var (
		wg                          sync.WaitGroup
		mu                          sync.Mutex
		attempts, failures, accepts int
		claimed                     atomic.Int64
	)
	inviteCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Two invitations at a time per client: a failed attempt costs up to
	// --invite-timeout, and the next one has a new invitation.
	for w := range 4 {
		inviter := w % 2
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; inviteCtx.Err() == nil; n++ {
				if claimed.Add(1) > int64(o.outageInvites) {
					claimed.Add(-1)
					return
				}
				actx, cancel := context.WithTimeout(inviteCtx, o.inviteTimeout)
				err := s.makeContact(actx, fmt.Sprintf("o%d-%03d", w, n), inviter, true)
				cancel()
				mu.Lock()
				attempts++
				if err != nil {
					failures++
					if failures <= 5 {
						o.progressf("an invitation during the outage failed: %v", err)
					}
				} else {
					accepts++
				}
				mu.Unlock()
				if err != nil {
					claimed.Add(-1)
					select {
					case <-inviteCtx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	workersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(workersDone)
	}()
	// The outage lasts --outage, and on until --outage-min-accepted
	// invitations were accepted (or every one was made), so that a slow
	// machine's invitations make it longer, not empty.
	err := sleepUntil(ctx, from.Add(o.outage))
wait:
	for err == nil {
		mu.Lock()
		n := accepts
		mu.Unlock()
		if n >= o.outageMinAccepted {
			break
		}
		select {
		case <-workersDone:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	end := time.Now()
	s.outageFrom, s.outageEnd = from, end
	s.t.outage(from, end)
	if err == nil {
		err = s.restart(ctx, i, killed, true)
	}
	<-workersDone
	s.outageAttempts, s.outageFail, s.outageAccepted = attempts, failures, accepts
	return err
}

// result computes the report.
func (s *chaosRun) result(setup, drain time.Duration, drained bool) *chaosResult {
	o, t := s.o, s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	res := &chaosResult{
		Scenario: "chaos", Transport: o.transport, Relays: chaosRelays, Contacts: o.contacts,
		Rate: o.rate, Seconds: s.traffic.Seconds(), Seed: o.seed,
		SetupSeconds: setup.Seconds(),
		Sent:         t.sent, Delivered: t.delivered, Duplicated: t.dups, OutOfOrder: t.outOfOrder,
		Unexpected: t.unexpected, SendErrors: t.sendErrs,
		DrainSeconds: drain.Seconds(), Drained: drained,
		ProblemsDuplicate: t.probDup, ProblemsGap: t.probGap, ProblemsOther: t.probOther,
		OutageRelay: s.outageRelay, OutageInviteAttempts: s.outageAttempts,
		OutageInviteFailures: s.outageFail, OutageInvites: s.outageAccepted,
		GoalMedianMS: ms(chaosGoalMedian), GoalWorstMS: ms(chaosGoalWorst),
	}
	if s.outageRelay >= 0 {
		res.OutageSeconds = s.outageEnd.Sub(s.outageFrom).Seconds()
		res.OutageShownPerSec = float64(t.outageShown) / res.OutageSeconds
	}
	for _, ct := range t.contacts {
		if !ct.outage {
			res.InviterQueues[ct.relay]++
		}
		if ct.outage && ct.active {
			res.OutageInvitesConnected++
			if ct.connectedAt.Before(s.outageEnd) {
				res.OutageInvitesConnectedInOutage++
			}
		}
		for side := range 2 {
			r, sent := &ct.recv[side], ct.sent[1-side]
			shown := r.distinct
			for seq := sent + 1; seq <= uint64(len(r.seen)); seq++ {
				if r.seen[seq-1] {
					res.Unexpected++ // shown and never sent
					shown--
				}
			}
			res.Lost += int64(sent - shown)
		}
	}
	var times []time.Duration
	for _, r := range t.restarts {
		res.Restarts = append(res.Restarts, *r)
		if r.FirstDeliveryMS == nil {
			res.Unrecovered++
			continue
		}
		times = append(times, time.Duration(*r.FirstDeliveryMS*float64(time.Millisecond)))
	}
	res.Kills = len(t.restarts)
	if len(times) > 0 {
		slices.Sort(times)
		med, worst := ms(percentile(times, 50)), ms(times[len(times)-1])
		res.RecoveryMedianMS, res.RecoveryWorstMS = &med, &worst
	}
	return res
}

// uniform returns a random duration in [lo, hi].
func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func printChaos(w io.Writer, r *chaosResult) {
	fmt.Fprintf(w, "chaos over %s: %d relays, %d contacts, %.0f msgs/s per client for %.0f s, seed %d\n", r.Transport, r.Relays, r.Contacts, r.Rate, r.Seconds, r.Seed)
	fmt.Fprintf(w, "setup          %d contacts connected in %.1f s; inviters' queues per relay %v\n", r.Contacts, r.SetupSeconds, r.InviterQueues)
	drained := fmt.Sprintf("all shown %.1f s after sending stopped", r.DrainSeconds)
	if !r.Drained {
		drained = fmt.Sprintf("NOT all shown %.0f s after sending stopped", r.DrainSeconds)
	}
	fmt.Fprintf(w, "messages       %d sent, %d shown; %s\n", r.Sent, r.Delivered, drained)
	fmt.Fprintf(w, "lost           %d\n", r.Lost)
	fmt.Fprintf(w, "duplicated     %d\n", r.Duplicated)
	fmt.Fprintf(w, "out of order   %d\n", r.OutOfOrder)
	fmt.Fprintf(w, "problems       %d duplicates suppressed by the client, %d gaps, %d others\n", r.ProblemsDuplicate, r.ProblemsGap, r.ProblemsOther)
	if r.Unexpected+r.SendErrors > 0 {
		fmt.Fprintf(w, "other          %d unexpected events, %d send errors\n", r.Unexpected, r.SendErrors)
	}
	fmt.Fprintf(w, "kills          %d", r.Kills)
	if r.OutageRelay >= 0 {
		fmt.Fprintf(w, " (one the outage of relay %d for %.0f s, during which %.1f msgs/s were shown of %.0f offered)", r.OutageRelay, r.OutageSeconds, r.OutageShownPerSec, 2*r.Rate)
	}
	fmt.Fprintln(w)
	if r.OutageRelay >= 0 {
		fmt.Fprintf(w, "outage invites %d accepted in %d attempts (%d failed); %d connected, %d of them before the relay came back\n",
			r.OutageInvites, r.OutageInviteAttempts, r.OutageInviteFailures, r.OutageInvitesConnected, r.OutageInvitesConnectedInOutage)
	}
	fmt.Fprintln(w, "restart → first message shown through the restarted relay:")
	for _, x := range r.Restarts {
		what := ""
		if x.Outage {
			what = " (outage)"
		}
		secs := func(v *float64) string {
			if v == nil {
				return "none"
			}
			return fmt.Sprintf("%.3f s", *v/1000)
		}
		fmt.Fprintf(w, "  at %6.1f s  relay %d, down %4.1f s%-9s  %-9s (relay-up events: a %s, b %s)\n",
			x.AtS, x.Relay, x.DownS, what, secs(x.FirstDeliveryMS), secs(x.RelayUpMS[0]), secs(x.RelayUpMS[1]))
	}
	if r.RecoveryMedianMS != nil {
		fmt.Fprintf(w, "recovery       median %.3f s (goal ≤ %.0f s), worst %.3f s (goal ≤ %.0f s)", *r.RecoveryMedianMS/1000, r.GoalMedianMS/1000, *r.RecoveryWorstMS/1000, r.GoalWorstMS/1000)
	} else {
		fmt.Fprintf(w, "recovery       no restart was followed by a delivery through it")
	}
	if r.Unrecovered > 0 {
		fmt.Fprintf(w, "; %d restarts without any delivery through them", r.Unrecovered)
	}
	fmt.Fprintln(w)
}
