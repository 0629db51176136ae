package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hushrelay/hush/client/internal/vault"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// ackTimeout bounds the wait for an ACK's OK. A message whose ACK is lost
// is delivered again, and recognised (contactRecord.Recent).
const ackTimeout = 30 * time.Second

// dialTimeout bounds one connection attempt of a relay link without Tor.
const dialTimeout = 30 * time.Second

// torDialTimeout bounds one connection attempt of a relay link under Tor,
// each over a fresh circuit (see relayLink.run). A rendezvous with a
// restarted onion service through an introduction point that still
// acknowledges the old service's introductions is never answered, and
// tor itself gives up on it only after minutes: a shorter attempt moves
// on to another introduction point. A healthy rendezvous takes a few
// seconds, 20 s covers a slow one.
const torDialTimeout = 20 * time.Second

// torKeepAlive is a relay link's default link.Config.KeepAlive under Tor.
// A connection whose onion service restarted may stay open and silent
// (its circuit not torn down); a PING after torKeepAlive without writing,
// unanswered for torDialTimeout, ends it, so such a connection is noticed
// within 40 s of its last write instead of 2 minutes. It costs one block
// (16 KB) each way every 20 s on an idle link.
const torKeepAlive = 20 * time.Second

// redialQUICTimeout bounds the QUIC part of two attempts of three to
// reach a relay that was just found unreachable, without Tor (the third
// has link.Config.QUICTimeout, 3 s by default, for a slow path). While a
// QUIC attempt waits, quic-go sends its first packet again ever later
// (about 0.3, 0.9 and 2.1 s into it): a relay that comes back late in a
// long attempt is reached only at the next resend or attempt, up to
// 1.2 s later. Short attempts send a first packet at least every second
// or so, so a relay that restarts is reached sooner.
const redialQUICTimeout = time.Second

// torNewCircuitsAfter is how many attempts in a row under Tor fail before
// the link calls Config.NewCircuits, when set.
const torNewCircuitsAfter = 2

// subscribeWidth is how many SUBs a link has in flight at once when it
// subscribes to its queues.
const subscribeWidth = 32

// relayLink keeps one connection to one relay: it dials with backoff
// (link.Backoff), subscribes to our queues there after every
// (re)connection, and hands delivered messages to the client. A lost
// connection is dialled again at once.
type relayLink struct {
	c    *Client
	addr queue.Address
	iso  string // SOCKS isolation credentials under Tor; "" otherwise

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// delay is how long the link waits before its first attempt (see
	// Config.Stagger); closing start ends the wait early.
	delay     time.Duration
	start     chan struct{}
	startOnce sync.Once

	mu sync.Mutex
	// conn is the live connection, nil while down.
	conn *link.Conn
	// lastErr is why the last attempt failed; nil while conn is live.
	lastErr error
	// since is when conn became live (subscribed to our queues).
	since time.Time
	// changed is closed, and replaced, whenever conn or lastErr changes.
	changed chan struct{}
}

// linkKey names a link: one per relay, or under Tor one per relay and
// contact, so that contacts do not share Tor circuits.
type linkKey struct {
	fp  queue.Fingerprint
	iso string
}

// linkTo returns the link to addr's relay for the isolation iso (see
// Client.isolation), starting it if needed, and ending the wait of one
// that waits for its first attempt (Config.Stagger). An address with a
// password replaces one without.
func (c *Client) linkTo(addr queue.Address, iso string) *relayLink {
	l := c.startLink(addr, iso, 0)
	l.startOnce.Do(func() { close(l.start) })
	return l
}

// startLink returns the link to addr's relay for the isolation iso,
// starting it, to make its first attempt after delay, if there is none.
func (c *Client) startLink(addr queue.Address, iso string, delay time.Duration) *relayLink {
	key := linkKey{addr.Fingerprint, iso}
	c.mu.Lock()
	_, ok := c.links[key]
	c.mu.Unlock()
	if !ok && addr.Password == "" {
		// A configured relay may know the password. The store is read
		// without c.mu (see Client.mu).
		if rs, err := c.Relays(); err == nil {
			for _, r := range rs {
				if r.Fingerprint == addr.Fingerprint {
					addr.Password = r.Password
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.links[key]; ok {
		// It exists, or was started meanwhile.
		if addr.Password != "" {
			l.mu.Lock()
			l.addr.Password = addr.Password
			l.mu.Unlock()
		}
		return l
	}
	l := &relayLink{c: c, addr: addr, iso: iso, changed: make(chan struct{}), done: make(chan struct{}),
		delay: delay, start: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(c.ctx)
	c.links[key] = l
	c.wg.Add(1)
	go l.run()
	return l
}

func (l *relayLink) close() { l.cancel() }

// get returns the live connection, waiting for it within ctx. While the
// relay is down it returns the last attempt's error once ctx ends, or at
// once when that error is permanent (link.Permanent): a wrong fingerprint
// or a TLS failure is not worth waiting for.
func (l *relayLink) get(ctx context.Context) (*link.Conn, error) {
	for {
		l.mu.Lock()
		conn, changed, lastErr := l.conn, l.changed, l.lastErr
		l.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		if link.Permanent(lastErr) {
			return nil, lastErr
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("%w (%w)", lastErr, ctx.Err())
			}
			return nil, ctx.Err()
		case <-l.ctx.Done():
			return nil, link.ErrClosed
		}
	}
}

// set records the live connection (nil while down) and why the last
// attempt failed, and wakes the callers of get.
func (l *relayLink) set(conn *link.Conn, err error) {
	l.mu.Lock()
	if conn != nil && l.conn != conn {
		l.since = time.Now()
	}
	l.conn, l.lastErr = conn, err
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *relayLink) run() {
	defer l.c.wg.Done()
	defer close(l.done)
	b := link.NewBackoff(l.c.cfg.Dial)
	tor := l.c.cfg.Dial.Tor.On()
	var (
		attempt uint64 // attempts so far, for per-attempt isolation
		failed  int    // attempts failed in a row under Tor
		// redial counts the attempts since the relay was found
		// unreachable (a connection or attempt ended with
		// link.ErrUnreachable); 0 when it was not.
		redial int
	)
	if l.delay > 0 {
		t := time.NewTimer(l.delay)
		select {
		case <-t.C:
		case <-l.start:
		case <-l.ctx.Done():
		}
		t.Stop()
	}
	for l.ctx.Err() == nil {
		l.mu.Lock()
		addr := l.addr
		l.mu.Unlock()
		timeout := dialTimeout
		dc := l.c.cfg.Dial
		dc.Isolation = l.iso
		if tor {
			// A fresh circuit and rendezvous for every attempt: tor then
			// tries the onion service's other introduction points, and
			// fetches its descriptor again once all of them failed,
			// instead of reusing a circuit that leads nowhere since the
			// service restarted. The suffix keeps the contact's own
			// value as a prefix, so contacts still never share a circuit.
			attempt++
			dc.Isolation = l.iso + "-" + strconv.FormatUint(attempt, 10)
			timeout = torDialTimeout
			// Over Tor the transport notices nothing (TCP keep-alives
			// reach only the local proxy): a PING does.
			dc.HandshakeTimeout = torDialTimeout
			if dc.KeepAlive == 0 {
				dc.KeepAlive = torKeepAlive
			}
		} else if redial > 0 && redial%3 != 0 {
			quic := dc.QUICTimeout
			if quic <= 0 {
				quic = link.DefaultQUICTimeout
			}
			dc.QUICTimeout = min(quic, redialQUICTimeout)
		}
		dctx, cancel := context.WithTimeout(l.ctx, timeout)
		conn, err := link.Dial(dctx, addr, dc)
		cancel()
		if err == nil {
			var wasUp bool
			if wasUp, err = l.serve(conn); wasUp {
				b.Reset()
				failed, redial = 0, 0
				if errors.Is(err, link.ErrUnreachable) {
					redial = 1
				}
				continue // dial again at once
			}
		}
		if redial > 0 || errors.Is(err, link.ErrUnreachable) {
			redial++
		}
		if l.ctx.Err() != nil {
			return
		}
		if tor {
			failed++
			if failed%torNewCircuitsAfter == 0 && l.c.cfg.NewCircuits != nil {
				// Forget the cached descriptor and introduction-point
				// failures: the service may have new introduction points.
				if err := l.c.cfg.NewCircuits(); err != nil {
					l.c.cfg.Logger.Debug("new tor circuits", "err", err)
				}
			}
		}
		l.set(nil, err)
		l.c.reachable(addr, err)
		delay := b.Next(err)
		l.c.cfg.Logger.Debug("relay unreachable", "err", err, "retry", delay)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// serve subscribes to our queues on conn, publishes it, and handles its
// events until it ends. It reports whether conn was up (subscribed and
// published), and why it ended (nil if the link is closing).
func (l *relayLink) serve(conn *link.Conn) (wasUp bool, err error) {
	defer conn.Close()
	// Events must be read while subscribing: SUB may deliver at once. The
	// ACKs that handle starts are in wg too.
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range conn.Events() {
			l.handle(conn, ev, &wg)
		}
	})
	if err := l.subscribeAll(conn); err != nil {
		l.c.cfg.Logger.Debug("subscribing", "err", err)
		conn.Close()
		wg.Wait()
		return false, err
	}
	l.set(conn, nil)
	l.c.reachable(l.addr, nil)
	notify(l.c.wakeOutbox) // what waits for this relay can go now
	select {
	case <-conn.Done():
	case <-l.ctx.Done():
	}
	l.set(nil, conn.Err())
	if err := conn.Err(); errors.Is(err, link.ErrSilent) && l.ctx.Err() == nil {
		// The relay answers nothing: it is down now, whatever the next
		// attempt finds. Tell the application before that attempt, which
		// may take seconds to fail.
		l.c.reachable(l.addr, err)
	}
	err = conn.Err()
	if l.ctx.Err() != nil {
		err = nil
	}
	conn.Close()
	wg.Wait()
	return true, err
}

// subscribeAll subscribes to every queue we receive on at this relay,
// subscribeWidth at a time.
func (l *relayLink) subscribeAll(conn *link.Conn) error {
	recs, err := l.c.recvRecords()
	if err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, subscribeWidth)
		errMu sync.Mutex
		first error
	)
	if l.c.cfg.SendOnly {
		return nil
	}
	for _, r := range recs {
		if r.State == StateGone || !l.c.inScope(r.ID) {
			continue // its queue is deleted, or not ours to read now
		}
		if l.c.isolation(r.ID) != l.iso {
			continue
		}
		for _, rq := range r.recvQueues() {
			a, err := queue.ParseAddress(rq.Relay)
			if err != nil || a.Fingerprint != l.addr.Fingerprint {
				continue
			}
			q, err := rq.queue()
			if err != nil {
				return err
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
				err := conn.Subscribe(ctx, q)
				cancel()
				switch {
				case errors.Is(err, queue.AUTH):
					l.c.queueGone(r.ID, q.RecipientID)
				case err != nil:
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return first
}

// handle processes one event from conn. A message is stored, then
// acknowledged in a goroutine of its own (added to acks), so that one
// queue's ACK never holds up the messages of others. There is at most one
// such goroutine per subscription: the relay sends a queue's next message
// only after the ACK of the previous one, which also keeps each queue's
// messages in order.
func (l *relayLink) handle(conn *link.Conn, ev link.Event, acks *sync.WaitGroup) {
	switch ev.Kind {
	case link.EventMessage:
		q, ack := l.c.receive(ev)
		if !ack {
			return
		}
		acks.Go(func() {
			ctx, cancel := context.WithTimeout(l.ctx, ackTimeout)
			defer cancel()
			if err := conn.Ack(ctx, q, ev.Message.ID); err != nil && !errors.Is(err, queue.NO_MSG) {
				l.c.cfg.Logger.Debug("ack", "err", err)
			}
		})
	case link.EventEnd:
		l.c.cfg.Logger.Warn("another client subscribed to one of our queues (is this home open twice?)")
	case link.EventDeleted:
		if r, err := l.c.recvQueueRecord(ev.RecipientID); err == nil {
			l.c.queueGone(r.ID, ev.RecipientID)
		}
	}
}

// reachable records whether the last attempt to reach addr's relay failed
// (err) or not, and tells the application when that changes: an
// EventRelayDown when an attempt fails after a success (or the first
// attempt fails), an EventRelayUp when it succeeds after a failure.
//
// It also keeps what later runs remember (see metaRelaysDown): a relay
// that goes down is remembered as down, one reached is forgotten.
func (c *Client) reachable(addr queue.Address, err error) {
	down := err != nil
	fp := addr.Fingerprint
	c.mu.Lock()
	was, known := c.relayDown[fp]
	c.relayDown[fp] = down
	before := c.downBefore[fp]
	if !down {
		delete(c.downBefore, fp)
	}
	c.mu.Unlock()
	if was == down && (known || !down) {
		if !down && before {
			if err := c.store.Update(func(tx *vault.Tx) error { return rememberReachable(tx, fp, false, time.Now()) }); err != nil {
				c.cfg.Logger.Error("storing a relay's state", "err", err)
			}
		}
		return
	}
	now := time.Now()
	ev := Event{Kind: EventRelayUp, Relay: addr.HostPort(), Time: now}
	if down {
		ev.Kind, ev.Problem = EventRelayDown, err
	}
	if err := c.store.Update(func(tx *vault.Tx) error {
		if err := c.pushEvent(tx, ev); err != nil {
			return err
		}
		return rememberReachable(tx, fp, down, now)
	}); err != nil {
		c.cfg.Logger.Error("storing an event", "err", err)
	}
	notify(c.wakeEvents)
}

// recvQueueRecord returns the contact whose receiving queue is rid.
func (c *Client) recvQueueRecord(rid queue.ID) (*contactRecord, error) {
	var rec *contactRecord
	err := c.store.View(func(tx *vault.Tx) error {
		var err error
		rec, err = c.contactByRecipient(tx, rid)
		return err
	})
	return rec, err
}
