// Package torutil runs or attaches to a tor process and publishes onion
// services through its control port.
//
// A Tor comes from Start, which runs a tor process of its own (through
// github.com/cretz/bine) and owns it, or from Attach, which uses a tor
// that is already running (a system tor) through its control port.
// Either can publish onion services with Publish, whose ed25519 keys live
// in files so that onion addresses survive restarts, and gives the SOCKS
// address for a socks.Dialer (package torutil/socks, which dials through
// any SOCKS5 proxy without linking the process and control code here).
package torutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cretz/bine/control"
	"github.com/cretz/bine/tor"
)

var (
	// ErrTorFailed is returned (wrapped, with the cause and tor's last log
	// lines where there are any) by Start when tor cannot be started,
	// controlled or bootstrapped within the time allowed, and by Attach
	// when tor's control port cannot be reached or authenticated to. It is
	// also returned by Publish when the control connection to tor is lost.
	ErrTorFailed = errors.New("torutil: tor failed")
)

// DefaultStartTimeout is the default of StartConfig.Timeout.
const DefaultStartTimeout = 3 * time.Minute

// closeTimeout bounds how long Close waits for tor to exit after HALT
// before it kills the process, and how long it waits for a system tor to
// answer QUIT.
const closeTimeout = 10 * time.Second

// logLines is how many of tor's last log lines a started Tor keeps for
// error messages.
const logLines = 40

// eventBuffer is the capacity of the channel that carries control-port events
// from the reading goroutine to the dispatching goroutine. The dispatcher
// never blocks, so this only absorbs bursts.
const eventBuffer = 64

// StartConfig configures Start.
type StartConfig struct {
	// DataDir is tor's data directory, required. It is persistent: tor's
	// state and caches live in it, which makes later starts faster. It is
	// created with mode 0700 if missing. Onion keys are not stored here
	// unless the caller puts their key files here.
	DataDir string
	// ExePath is the tor executable. Default: "tor", looked up in PATH.
	ExePath string
	// TorrcFile is an optional torrc passed to tor with -f, for example a
	// private network's lines. Without it, tor reads an empty file in
	// DataDir, never /etc/tor/torrc. Command-line options set by Start
	// (data directory, control and SOCKS ports, logging) override it.
	TorrcFile string
	// Progress, if set, is called on the goroutine calling Start whenever
	// tor's bootstrap progress changes, with the percentage and tor's
	// summary of the current step. It must not block for long.
	Progress func(percent int, summary string)
	// Timeout bounds starting and bootstrapping tor, together with the
	// context passed to Start. Default: DefaultStartTimeout.
	Timeout time.Duration
}

// Tor is a tor process controlled through its control port: either one
// this package started (Start) and owns, or a running one it attached to
// (Attach). Its methods are safe for concurrent use. Close releases it.
//
// A Tor runs two goroutines until Close: one reads the control
// connection's asynchronous events and one dispatches them.
type Tor struct {
	socks   string      // set before Start or Attach returns
	proc    *torProcess // set by Start only
	logs    *logTail    // set by Start only: the tail of tor's log
	netConn net.Conn    // set by Attach only

	// reqMu serializes control requests on ctl: bine's Conn takes its
	// read lock before waiting for a reply's turn, so two requests at once
	// can deadlock. The event reader uses ctl without it.
	reqMu sync.Mutex
	ctl   *control.Conn

	events       chan control.Event
	readerDone   chan struct{}
	dispatchDone chan struct{}

	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// connErr is why the control connection ended (net.ErrClosed after
	// Close); nil while it works.
	connErr error
	// changed is closed and replaced whenever boot, uploads or connErr
	// change.
	changed chan struct{}
	boot    bootStatus
	uploads map[*uploadWatch]struct{}
}

// bootStatus is tor's last reported bootstrap state.
type bootStatus struct {
	progress int
	summary  string
	warning  string // the last bootstrap problem, "" if none
}

// uploadWatch follows the descriptor uploads of one Publish call.
type uploadWatch struct {
	id       string // service ID, without ".onion"
	attempts int    // UPLOAD events: uploads started
	uploaded int    // UPLOADED events
	failures int    // FAILED events
	reason   string // reason of the last failure
}

// pending reports whether uploads that have started have not finished.
func (w *uploadWatch) pending() bool { return w.uploaded+w.failures < w.attempts }

// Start runs a new tor process, waits until it has bootstrapped (100%),
// and returns it. tor runs with DataDir and, if set, TorrcFile; its
// control port and SOCKS port listen on 127.0.0.1 on ports tor picks. The
// process belongs to this process: it exits when Close is called, when
// the control connection closes, or soon after this process dies.
//
// ctx and cfg.Timeout bound the start and the bootstrap; ctx does not
// bound the process's life. On failure Start stops the process and
// returns an error wrapping ErrTorFailed and the cause (for example
// context.DeadlineExceeded when the bootstrap did not finish in time).
func Start(ctx context.Context, cfg StartConfig) (*Tor, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: StartConfig.DataDir not set", ErrTorFailed)
	}
	if cfg.ExePath == "" {
		cfg.ExePath = "tor"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultStartTimeout
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTorFailed, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTorFailed, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTorFailed, err)
	}
	// bine leaves one control-port-* file per start in the data directory.
	if old, _ := filepath.Glob(filepath.Join(dataDir, "control-port-*")); old != nil {
		for _, f := range old {
			os.Remove(f)
		}
	}
	// tor must never read /etc/tor/torrc or a defaults file: give it an
	// empty regular file (it refuses /dev/null).
	empty := filepath.Join(dataDir, "torrc-empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTorFailed, err)
	}
	torrc := cfg.TorrcFile
	if torrc == "" {
		torrc = empty
	}

	logs := newLogTail(logLines)
	creator := &processCreator{exe: cfg.ExePath, out: logs}
	bt, err := tor.Start(context.Background(), &tor.StartConf{
		ProcessCreator:  creator,
		DataDir:         dataDir,
		TorrcFile:       torrc,
		NoAutoSocksPort: true,
		ExtraArgs: []string{
			// SOCKS replies tell why an onion could not be reached.
			"--SocksPort", "127.0.0.1:auto ExtendedErrors",
			"--defaults-torrc", empty,
			// tor exits soon after this process dies, even if it is killed.
			"--__OwningControllerProcess", strconv.Itoa(os.Getpid()),
			// --hush (set by bine) prints only warnings until the
			// configuration is read; from then on, notices go to stdout,
			// which logs keeps the tail of.
			"--Log", "notice stdout",
		},
	})
	if err != nil {
		if p := creator.proc; p != nil {
			p.stop(closeTimeout)
		}
		return nil, startError(fmt.Errorf("start %s: %w", cfg.ExePath, err), logs)
	}
	t := &Tor{ctl: bt.Control, proc: creator.proc, logs: logs}
	// Tor exits when this control connection closes.
	if err := t.ctl.TakeOwnership(); err != nil {
		t.Close()
		return nil, startError(fmt.Errorf("take ownership: %w", err), logs)
	}
	if err := t.init(); err != nil {
		t.Close()
		return nil, startError(err, logs)
	}
	if err := t.bootstrap(ctx, cfg.Progress); err != nil {
		t.Close()
		return nil, startError(err, logs)
	}
	if t.socks, err = t.socksListener(); err != nil {
		t.Close()
		return nil, startError(err, logs)
	}
	return t, nil
}

// startError wraps err in ErrTorFailed with the tail of tor's log.
func startError(err error, logs *logTail) error {
	if tail := logs.String(); tail != "" {
		return fmt.Errorf("%w: %w; tor's last log lines:\n%s", ErrTorFailed, err, tail)
	}
	return fmt.Errorf("%w: %w", ErrTorFailed, err)
}

// Attach connects to the control port of a running tor at controlAddr
// (host:port, e.g. "127.0.0.1:9051"), authenticates with the cookie file
// tor names or with no credentials if tor asks for none, and reads the
// address of tor's SOCKS listener, if it has one (see SOCKSAddr). ctx
// bounds connecting and setting up.
// Close closes the control connection and leaves tor running; onion
// services published through the Tor end with the connection.
//
// Errors wrap ErrTorFailed.
func Attach(ctx context.Context, controlAddr string) (*Tor, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", controlAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot reach tor's control port at %s: %w", ErrTorFailed, controlAddr, err)
	}
	// Setting up is bounded by ctx; the connection has no deadline after.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	t := &Tor{ctl: control.NewConn(textproto.NewConn(c)), netConn: c}
	err = t.ctl.Authenticate("")
	if err != nil {
		err = fmt.Errorf("authenticate to tor's control port at %s: %w", controlAddr, err)
	}
	if err == nil {
		err = t.init()
	}
	if err == nil {
		t.socks, err = t.socksListener()
		if errors.Is(err, errNoSOCKS) {
			// Fine for publishing onion services.
			err = nil
		}
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		if t.readerDone != nil {
			<-t.readerDone
			<-t.dispatchDone
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %w", ErrTorFailed, err)
	}
	return t, nil
}

// init subscribes to the events the Tor follows and starts the goroutines
// that read and dispatch them.
func (t *Tor) init() error {
	t.events = make(chan control.Event, eventBuffer)
	t.changed = make(chan struct{})
	t.uploads = make(map[*uploadWatch]struct{})
	// Subscribing before the reader starts avoids contention for the
	// connection; events are relayed into t.events from then on.
	err := t.ctl.AddEventListener(t.events, control.EventCodeStatusClient, control.EventCodeHSDesc)
	if err != nil {
		return fmt.Errorf("subscribe to events: %w", err)
	}
	t.readerDone = make(chan struct{})
	t.dispatchDone = make(chan struct{})
	go t.readEvents()
	go t.dispatchEvents()
	return nil
}

// readEvents reads asynchronous events until the control connection ends.
// bine's HandleNextEvent holds the connection's read lock while it waits
// and hands synchronous replies over to the request waiting for them.
func (t *Tor) readEvents() {
	defer close(t.readerDone)
	for {
		if err := t.ctl.HandleNextEvent(); err != nil {
			t.mu.Lock()
			if t.connErr == nil {
				t.connErr = fmt.Errorf("%w: control connection lost: %w", ErrTorFailed, err)
			}
			t.broadcastLocked()
			t.mu.Unlock()
			return
		}
		// Let a request waiting for the read lock take it.
		runtime.Gosched()
	}
}

// dispatchEvents applies events to the Tor's state. It never blocks on
// anything but t.mu, so relaying an event (done with the connection's
// read lock held) never waits long.
func (t *Tor) dispatchEvents() {
	defer close(t.dispatchDone)
	for {
		select {
		case ev := <-t.events:
			t.handleEvent(ev)
		case <-t.readerDone:
			for {
				select {
				case ev := <-t.events:
					t.handleEvent(ev)
				default:
					return
				}
			}
		}
	}
}

func (t *Tor) handleEvent(ev control.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev := ev.(type) {
	case *control.StatusEvent:
		t.applyBootstrapLocked(ev.Raw)
	case *control.HSDescEvent:
		for w := range t.uploads {
			if w.id != ev.Address {
				continue
			}
			switch ev.Action {
			case "UPLOAD":
				w.attempts++
			case "UPLOADED":
				w.uploaded++
			case "FAILED":
				w.failures++
				w.reason = ev.Reason
			}
		}
	}
	t.broadcastLocked()
}

// applyBootstrapLocked applies a status line such as
// `NOTICE BOOTSTRAP PROGRESS=50 TAG=loading_descriptors SUMMARY="..."`.
func (t *Tor) applyBootstrapLocked(raw string) {
	severity, rest, _ := strings.Cut(raw, " ")
	action, rest, _ := strings.Cut(rest, " ")
	if action != "BOOTSTRAP" {
		return
	}
	args := parseKeywords(rest)
	p, err := strconv.Atoi(args["PROGRESS"])
	if err != nil {
		return
	}
	if severity == "WARN" || severity == "ERR" {
		t.boot.warning = args["WARNING"]
		if r := args["REASON"]; r != "" {
			t.boot.warning += " (" + r + ")"
		}
	}
	if p >= t.boot.progress {
		t.boot.progress = p
		t.boot.summary = args["SUMMARY"]
	}
}

func (t *Tor) broadcastLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// wait calls cond with t.mu held, now and after every change of state,
// until it returns true, ctx ends or the control connection ends.
func (t *Tor) wait(ctx context.Context, cond func() bool) error {
	for {
		t.mu.Lock()
		if cond() {
			t.mu.Unlock()
			return nil
		}
		if err := t.connErr; err != nil {
			t.mu.Unlock()
			return err
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// bootstrap enables tor's network and waits until tor reports 100%.
func (t *Tor) bootstrap(ctx context.Context, progress func(int, string)) error {
	t.reqMu.Lock()
	err := t.ctl.SetConf(control.KeyVals("DisableNetwork", "0")...)
	t.reqMu.Unlock()
	if err != nil {
		return fmt.Errorf("enable network: %w", err)
	}
	// Events since the subscription are already counted; the current
	// phase covers a tor that got ahead of them.
	t.reqMu.Lock()
	kv, err := t.ctl.GetInfo("status/bootstrap-phase")
	t.reqMu.Unlock()
	if err != nil {
		return fmt.Errorf("read bootstrap phase: %w", err)
	}
	if len(kv) == 1 {
		t.mu.Lock()
		t.applyBootstrapLocked(kv[0].Val)
		t.broadcastLocked()
		t.mu.Unlock()
	}
	var last bootStatus
	reported := false
	var cur bootStatus
	for {
		err := t.wait(ctx, func() bool {
			cur = t.boot
			return !reported || cur.progress != last.progress || cur.summary != last.summary
		})
		if err != nil {
			t.mu.Lock()
			b := t.boot
			t.mu.Unlock()
			msg := fmt.Sprintf("bootstrap stopped at %d%% (%s)", b.progress, b.summary)
			if b.warning != "" {
				msg += ", last problem: " + b.warning
			}
			return fmt.Errorf("%s: %w", msg, err)
		}
		if progress != nil {
			progress(cur.progress, cur.summary)
		}
		last, reported = cur, true
		if cur.progress >= 100 {
			return nil
		}
	}
}

// socksListener returns the first TCP SOCKS listener tor reports.
func (t *Tor) socksListener() (string, error) {
	t.reqMu.Lock()
	resp, err := t.ctl.SendRequest("GETINFO net/listeners/socks")
	t.reqMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("read SOCKS listeners: %w", err)
	}
	for _, line := range resp.Data {
		_, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(val) {
			if u, err := strconv.Unquote(f); err == nil {
				f = u
			}
			if strings.HasPrefix(f, "unix:") {
				continue
			}
			if _, _, err := net.SplitHostPort(f); err == nil {
				return f, nil
			}
		}
	}
	return "", errNoSOCKS
}

var errNoSOCKS = errors.New("tor has no TCP SOCKS listener (SocksPort 0 or DisableNetwork 1?)")

// NewCircuits makes tor use new circuits for new streams and forget the
// onion service descriptors and introduction-point failures it has cached
// (SIGNAL NEWNYM). Call it when dials to an onion service keep timing out
// after the service restarted: a client holding the old descriptor can
// otherwise wait minutes for a rendezvous that an introduction point
// still holding the old service's circuit acknowledged. tor applies at
// most one NEWNYM every 10 s and delays later ones. It returns when tor
// has answered.
func (t *Tor) NewCircuits() error {
	t.reqMu.Lock()
	err := t.ctl.Signal("NEWNYM")
	t.reqMu.Unlock()
	if err != nil {
		return fmt.Errorf("torutil: new circuits: %w", t.ctlErr(err))
	}
	return nil
}

// SOCKSAddr returns the host:port of tor's SOCKS listener, for a
// socks.Dialer.
// It is "" for an attached tor with no TCP SOCKS listener.
func (t *Tor) SOCKSAddr() string { return t.socks }

// Close releases the Tor and waits for its goroutines. For a Tor from
// Start it stops the tor process (HALT, then a kill if it has not exited
// within 10 s) and waits for it to exit; for a Tor from Attach it closes
// the control connection only, which removes the onion services published
// through it. Close is idempotent; calls after the first return the first
// result. Operations in progress fail.
func (t *Tor) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *Tor) close() error {
	t.mu.Lock()
	if t.connErr == nil {
		t.connErr = net.ErrClosed
	}
	if t.changed != nil {
		t.broadcastLocked()
	}
	t.mu.Unlock()

	var err error
	if t.proc != nil {
		halted := make(chan struct{})
		go func() {
			// Returns once tor answers or the connection drops, which
			// it does when stop kills tor.
			t.reqMu.Lock()
			t.ctl.Signal("HALT")
			t.ctl.Close()
			t.reqMu.Unlock()
			close(halted)
		}()
		err = t.proc.stop(closeTimeout)
		<-halted
	} else {
		// A request in progress fails at the deadline at the latest.
		t.netConn.SetDeadline(time.Now().Add(closeTimeout))
		t.reqMu.Lock()
		cerr := t.ctl.Close()
		t.reqMu.Unlock()
		if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("torutil: close control connection: %w", cerr)
		}
	}
	if t.readerDone != nil {
		<-t.readerDone
		<-t.dispatchDone
	}
	return err
}

// parseKeywords parses the KEY=VALUE arguments of a control-port line,
// where VALUE may be a quoted string with backslash escapes.
func parseKeywords(s string) map[string]string {
	m := make(map[string]string)
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return m
		}
		eq := strings.IndexAny(s, "= ")
		if eq < 0 || s[eq] == ' ' {
			// a flag without a value
			end := eq
			if end < 0 {
				end = len(s)
			}
			m[s[:end]] = ""
			s = s[end:]
			continue
		}
		key := s[:eq]
		s = s[eq+1:]
		if !strings.HasPrefix(s, `"`) {
			val, rest, _ := strings.Cut(s, " ")
			m[key] = val
			s = rest
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		m[key] = b.String()
		if i < len(s) {
			i++ // closing quote
		}
		s = s[i:]
	}
}
