package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/internal/cli"
)

// session is what a command talks to: the home's running agent, or,
// when none runs, the store opened in this process and served to the
// command through a pipe, so that both take the same path.
type session struct {
	*agent.Conn
	// viaAgent is true when the agent of another process answers.
	viaAgent bool
	// srv and cl are the in-process server and client; nil via the agent.
	srv *agent.Server
	cl  *client.Client
}

// Close ends the session: the connection, and the in-process client.
func (s *session) Close() error {
	s.Conn.Close()
	if s.srv == nil {
		return nil
	}
	s.srv.Close()
	return s.cl.Close()
}

// open returns a session for a command: with the running agent of
// --home if there is one, else with the store opened here, online
// (connected to the relays of every contact) unless offline.
func (c *cmd) open(ctx context.Context, offline bool) (*session, error) {
	return c.openFor(ctx, need{offline: offline})
}

// query returns what get gets from an offline session (open), which it
// closes.
func query[T any](ctx context.Context, c *cmd, get func(*session, context.Context) (T, error)) (T, error) {
	s, err := c.open(ctx, true)
	if err != nil {
		var zero T
		return zero, err
	}
	defer s.Close()
	return get(s, ctx)
}

// need is what a command needs of the relays when it opens the store
// itself (the agent, when one runs, is online for every contact): so
// that a command connects only to the relays it needs.
type need struct {
	// offline: none (client.Config.Offline).
	offline bool
	// contacts are the contacts it works for; nil: all of them
	// (client.Config.Contacts).
	contacts []string
	// sendOnly: it subscribes to no queue (client.Config.SendOnly).
	sendOnly bool
	// stagger spreads the first connections (client.Config.Stagger).
	stagger time.Duration
	// rotateEvery is client.Config.RotateEvery (the agent's).
	rotateEvery time.Duration
}

// openFor returns a session for a command that needs n: with the running
// agent of --home if there is one, else with the store opened here.
func (c *cmd) openFor(ctx context.Context, n need) (*session, error) {
	conn, err := agent.Dial(ctx, c.home)
	switch {
	case err == nil:
		return &session{Conn: conn, viaAgent: true}, nil
	case !errors.Is(err, agent.ErrNoAgent) && !errors.Is(err, agent.ErrPathTooLong):
		return nil, fmt.Errorf("connecting to the agent: %w", err)
	}
	cl, err := c.openClient(ctx, n)
	if err != nil {
		return nil, err
	}
	srv := agent.NewServer(cl, agent.Config{Version: cli.Version(), Logger: c.logger()})
	return &session{Conn: srv.Pipe(), srv: srv, cl: cl}, nil
}

// defaultStagger is how long, by default, the agent spreads its first
// connections over (agent --stagger, client.Config.Stagger): the relays
// then see its sessions start up to 10 s apart rather than within
// milliseconds of each other, which tells less that they are one
// client's. It costs once per start: messages that waited for the agent
// arrive up to 10 s later, and none while it runs.
const defaultStagger = 10 * time.Second

// defaultRotateEvery is how often, by default, the agent rotates each
// contact's queue (agent --rotate-every, client.Config.RotateEvery): a
// relay then links what it sees of one queue (the sessions and, without
// Tor, the network addresses that read it) over about a week rather than
// the contact's life, for four small messages and one new queue per
// contact a week. Only the agent rotates on its own: a command that runs
// for seconds would leave rotations half done more often than not (they
// complete later, but need the contact's client online too).
const defaultRotateEvery = 7 * 24 * time.Hour

// runAgent is "hush agent": it opens the store, serves the API on the
// socket in --home until SIGINT or SIGTERM, and receives and sends
// meanwhile. Its first connections are spread over stagger.
func (c *cmd) runAgent(ctx context.Context, stagger, rotateEvery time.Duration) error {
	if conn, err := agent.Dial(ctx, c.home); err == nil {
		conn.Close()
		return fmt.Errorf("an agent is already running for %s", c.home)
	}
	if rotateEvery < 0 {
		return usageError{fmt.Sprintf("--rotate-every %v: want 0 (never) or more", rotateEvery), ""}
	}
	cl, err := c.openClient(ctx, need{stagger: stagger, rotateEvery: rotateEvery})
	if err != nil {
		return err
	}
	defer cl.Close()
	ln, err := agent.Listen(c.home)
	if errors.Is(err, agent.ErrRunning) {
		return fmt.Errorf("an agent is already running for %s", c.home)
	}
	if err != nil {
		return fmt.Errorf("making the agent's socket: %w", err)
	}
	srv := agent.NewServer(cl, agent.Config{Version: cli.Version(), Logger: c.logger()})
	defer srv.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if c.json {
		c.emit(map[string]any{"agent": "running", "socket": agent.SocketPath(c.home)})
	} else {
		fmt.Fprintf(c.env.stderr, "hush: agent running for %s on %s; stop it with Ctrl-C or SIGTERM\n", c.home, agent.SocketPath(c.home))
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("serving: %w", err)
		}
	}
	if !c.json {
		fmt.Fprintln(c.env.stderr, "hush: agent stopping")
	}
	srv.Close()
	return cl.Close()
}

// callTimeout is how long a command waits for the agent beyond a timeout
// it gave the agent, so that the agent's own answer (with its reason)
// comes first.
const callTimeout = 5 * time.Second

// ack acks the event id in s, and reports whether that removed it from
// the store (then the caller shows it). Through an agent, the ack carries
// a random token; if the agent's connection breaks before its answer,
// the ack may have been committed or not, and ack finds out which
// (takenAfterAll): it then reports the event taken, if it was by this
// ack, along with the error.
func (c *cmd) ack(ctx context.Context, s *session, id uint64) (bool, error) {
	if !s.viaAgent {
		return s.Ack(ctx, id)
	}
	token := rand.Text()
	taken, err := s.AckAs(ctx, id, token)
	if !errors.Is(err, agent.ErrClosed) {
		return taken, err
	}
	took, rerr := c.takenAfterAll(ctx, id, token)
	if rerr != nil {
		c.warn("the agent stopped while this command took an event, which could not be told afterwards (%v): it may not be shown", rerr)
	}
	return took, err
}

// resolveTimeout is how long takenAfterAll tries.
const resolveTimeout = 10 * time.Second

// resolveRetry is how long takenAfterAll waits between its tries.
const resolveRetry = 100 * time.Millisecond

// takenAfterAll reports whether event id was removed by the ack with
// token, whose answer the agent did not give. It asks a new agent of
// --home if one runs, else the store opened here (the agent that died
// released it; one starting meanwhile finds it in use only while this
// reads it, and takenAfterAll tries again, for at most resolveTimeout,
// while the store is in use or an agent stops). It does not wait for an
// agent to start.
func (c *cmd) takenAfterAll(ctx context.Context, id uint64, token string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	for {
		took, err := c.tryTaken(ctx, id, token)
		switch {
		case err == nil:
			return took, nil
		case !errors.Is(err, client.ErrInUse) && !errors.Is(err, agent.ErrClosed):
			// Not a store or an agent that is busy starting or stopping.
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(resolveRetry):
		}
	}
}

// tryTaken is one try of takenAfterAll.
func (c *cmd) tryTaken(ctx context.Context, id uint64, token string) (bool, error) {
	conn, err := agent.Dial(ctx, c.home)
	if err == nil {
		defer conn.Close()
		return conn.Taken(ctx, id, token)
	}
	if !errors.Is(err, agent.ErrNoAgent) && !errors.Is(err, agent.ErrPathTooLong) {
		return false, err
	}
	cl, err := c.openClient(ctx, need{offline: true})
	if err != nil {
		return false, err
	}
	defer cl.Close()
	return cl.TookEvent(id, []byte(token))
}
