// Command hush is the hush user client: it keeps contacts and messages in
// an encrypted local store and exchanges messages through hush relays.
//
// Usage:
//
//	hush [--home DIR] [--json] [--transport quic|tcp] [--tor off|prefer|required] [--socks ADDR] [--isolation relay|contact] [--routing always|unknown|never] [--cover D] [--passphrase-file F] <command> ...
//
//	hush init [--passphrase-file F | --no-passphrase]   create the encrypted store
//	hush relays add [--offline] ADDRESS                 add a relay to keep queues on
//	hush relays list                                    list the relays
//	hush relays remove RELAY                            stop using a relay for new contacts
//	hush invite [--name N] [--short]                    make a one-time invitation link
//	hush accept LINK [--name N] [--show S]              accept an invitation, or ask through a contact address
//	hush address create|show|delete|auto-accept on|off  our contact address (a short link for many)
//	hush requests [list|accept ID [--name N]|reject ID] the contact requests to our address
//	hush receipts [on|off|default [NAME]]               delivery receipts we send, globally or to one contact
//	hush contacts                                       list the contacts and their state
//	hush send NAME TEXT                                 send a message
//	hush receive [--wait DUR]                           print what arrived, then exit
//	hush chat NAME                                      chat interactively
//	hush forget NAME                                    delete a contact, its queues and keys
//	hush rename NAME NEW                                rename a contact
//	hush agent                                          keep running; serve the other commands (docs/agent.md)
//	hush demo                                           two relays and two clients in one process
//
// The store is in --home (default ~/.hush, or $HUSH_HOME). Run "hush help"
// for the rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/cli"
	"github.com/hushrelay/hush/queue"
)

const usageText = `usage: hush [global flags] <command> [flags] [arguments]

Commands:
  init                 create the encrypted store (--passphrase-file F or
                       --no-passphrase; else $HUSH_PASSPHRASE or a prompt)
  relays add ADDRESS   add a relay (a hush://... address from its operator),
                       after checking that it answers (--offline: without)
  relays list          list the relays
  relays remove RELAY  move every contact off a relay, then remove it (RELAY: its
                       address, host:port, or fingerprint or a unique start of it)
  invite [--name N]    print a one-time invitation link and its QR code
                       (--short: a short link, whose QR code fits a terminal)
  accept LINK          accept an invitation link, long or short (--name N names
                       the contact), or ask for a contact through a contact
                       address's link (--show S: the name its owner sees)
  address create       make our contact address: a short link that many people
                       can use to ask for a contact (--auto-accept: accept all)
  address show|delete  print it and its QR code | delete it (no new requests)
  address auto-accept on|off  accept every request as it arrives, or not
  requests             list the contact requests waiting
  requests accept ID   accept one (--name N names the contact)
  requests reject ID   reject one (the requester is told nothing)
  receipts [on|off]    show, or turn on or off, the delivery receipts we send
                       (the second tick in the contacts' chat); with NAME (and
                       default): for that contact only
  contacts             list the contacts and their state
  send NAME TEXT       send a message to a contact
  receive              complete pending handshakes, resend what is queued,
                       print what arrived and exit (--wait DUR of quiet)
  chat NAME            send the lines typed, print the contact's as they arrive
  forget NAME          delete the contact: our queue on its relay, its keys and
                       messages here; tell them, so that they delete theirs
  rename NAME NEW      give the contact another name
  rotate NAME          move our queue for the contact's messages to a new queue
                       (on another relay when one is configured)
  agent                keep running: receive and send continuously, and serve
                       the other commands and programs on the socket hush.sock
                       in --home (the API: docs/agent.md)
  demo                 run two relays and two clients in this process, on
                       127.0.0.1, and show an invitation and a message each way
  version              print the version (also: hush --version)
  help                 print this help

Global flags (before or after the command):
  --home DIR           the store's directory (default $HUSH_HOME, else ~/.hush)
  --json               print one JSON object per line
  --transport T        "quic" or "tcp" only (default: QUIC, then TCP)
  --tor MODE           off, prefer (onion hosts through Tor when it runs) or
                       required (everything through Tor: no UDP, no direct
                       connection, no local DNS lookup); default off
  --socks ADDR         Tor's SOCKS5 proxy (default 127.0.0.1:9050)
  --isolation I        relay (one session per relay for all contacts) or contact
                       (one per contact and relay; under Tor, a circuit each);
                       default contact with --tor, relay without (README: Privacy)
  --routing R          private message routing: always (every message through one
                       of your relays, which forwards it to the contact's), unknown
                       (only to relays that are not yours) or never; default never
                       with --tor required, unknown otherwise (README: Privacy)
  --cover D            cover traffic: random blocks a mean D apart on every relay
                       connection, answered by the relay (about 120 MB an hour per
                       connection at 1s, 12 MB at 10s); default none
  --passphrase-file F  read the store's passphrase from F's first line
                       (default: $HUSH_PASSPHRASE, else a prompt)
  --verbose            log the client library's details to standard error

Run "hush <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// Once a signal has arrived, restore the default behaviour so
		// that a second Ctrl-C ends a slow shutdown.
		<-ctx.Done()
		stop()
	}()
	env := environment{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		readPassword: func(prompt string) ([]byte, error) {
			fd := int(os.Stdin.Fd())
			if !term.IsTerminal(fd) {
				return nil, errNoTerminal
			}
			fmt.Fprint(os.Stderr, prompt)
			pw, err := term.ReadPassword(fd)
			fmt.Fprintln(os.Stderr)
			return pw, err
		},
	}
	err := run(ctx, os.Args[1:], env)
	var uerr usageError
	switch {
	case err == nil:
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "hush: %v\n\n", err)
		io.WriteString(os.Stderr, uerr.usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "hush: %v\n", err)
		os.Exit(1)
	}
}

// environment is what run needs from the process.
type environment struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// readPassword shows prompt and reads a line from the terminal without
	// echo; it returns errNoTerminal when standard input is not one.
	readPassword func(prompt string) ([]byte, error)
}

// errNoTerminal is returned by environment.readPassword when there is no
// terminal to ask.
var errNoTerminal = errors.New("standard input is not a terminal")

// usageError is returned by run for a malformed command line; main prints
// the message and usage, and exits with status 2.
type usageError struct {
	msg   string
	usage string
}

func (e usageError) Error() string { return e.msg }

// globals are the flags every command takes.
type globals struct {
	home           string
	json           bool
	transport      string
	tor            string
	socks          string
	isolation      string
	routing        string
	cover          time.Duration
	passphraseFile string
	verbose        bool
}

// register adds the global flags to fs, with their current values as the
// defaults, so that they may also follow the command.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.home, "home", g.home, "the store's `directory`; the default comes from $HUSH_HOME if set, else ~/.hush")
	fs.BoolVar(&g.json, "json", g.json, "print one JSON object per line")
	fs.StringVar(&g.transport, "transport", g.transport, "`quic` or tcp only (default: QUIC first, then TCP)")
	fs.StringVar(&g.tor, "tor", g.tor, "`off`, prefer or required: route relay connections through Tor")
	fs.StringVar(&g.socks, "socks", g.socks, "Tor's SOCKS5 proxy `host:port` (default 127.0.0.1:9050)")
	fs.StringVar(&g.isolation, "isolation", g.isolation, "`relay` or contact: one relay session for all contacts, or one per contact\n(default: per contact with --tor, per relay without)")
	fs.StringVar(&g.routing, "routing", g.routing, "`always`, unknown or never: send through one of your relays, which forwards to the\ncontact's, so that it never sees your address: always, only to relays not yours, or\nnever (default: never with --tor required, unknown otherwise)")
	fs.DurationVar(&g.cover, "cover", g.cover, "send cover blocks at random, a mean `interval` apart, on every relay connection, so\nthat an observer of the network cannot tell when messages move (default 0: none)")
	fs.StringVar(&g.passphraseFile, "passphrase-file", g.passphraseFile, "read the passphrase from the first line of `file`")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "log the client library's details to standard error")
}

// cmd is one parsed command line, ready to run.
type cmd struct {
	globals
	env environment
}

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, env environment) error {
	var g globals
	if home := env.getenv("HUSH_HOME"); home != "" {
		g.home = home
	} else if dir, err := os.UserHomeDir(); err == nil {
		g.home = filepath.Join(dir, ".hush")
	}
	gfs := flag.NewFlagSet("hush", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	gfs.Usage = func() {}
	g.register(gfs)
	showVersion := gfs.Bool("version", false, "print the version")
	switch err := gfs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		io.WriteString(env.stdout, usageText)
		return nil
	case err != nil:
		return usageError{err.Error(), usageText}
	}
	args = gfs.Args()
	if *showVersion {
		// "hush --version" is "hush version", whatever follows.
		args = []string{"version"}
	}
	if len(args) == 0 {
		return usageError{"no command given", usageText}
	}
	verb, args := args[0], args[1:]
	c := &cmd{env: env}
	var (
		fs        *cli.FlagSet
		exec      func(args []string) error
		nargs     = 0 // the number of arguments; negative: at least -nargs
		argsUsage = ""
		needsHome = true
		// takes are the global flags that the command takes after its
		// name; all of them by default.
		takes = []string{"home", "json", "transport", "tor", "socks", "isolation", "routing", "cover", "passphrase-file", "verbose"}
	)
	switch verb {
	case "help", "-h", "-help", "--help":
		io.WriteString(env.stdout, usageText)
		return nil
	case "version", "-version", "--version":
		fs = newFlagSet("version", "", "print the version")
		needsHome = false
		takes = []string{"json"}
		exec = func([]string) error {
			if c.json {
				return c.emit(map[string]any{"program": "hush", "version": cli.Version(), "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH})
			}
			fmt.Fprintf(env.stdout, "hush %s\n", cli.Version())
			return nil
		}
	case "init":
		fs = newFlagSet("init", "", "create the store in --home: encrypted under a passphrase (from --passphrase-file,\n$HUSH_PASSPHRASE or a prompt), or under a key file with --no-passphrase")
		takes = []string{"home", "json", "passphrase-file", "verbose"}
		noPass := fs.Bool("no-passphrase", false, "no passphrase: keep the store's key in the file hush.key in --home")
		exec = func([]string) error {
			if *noPass && c.passphraseFile != "" {
				return usageError{"use only one of --passphrase-file and --no-passphrase", fs.Help()}
			}
			return c.init(*noPass)
		}
	case "relays":
		if len(args) == 0 {
			return usageError{"relays: no subcommand given (add, list or remove)", relaysUsage}
		}
		sub := args[0]
		args = args[1:]
		switch sub {
		case "add":
			fs = newFlagSet("relays add", "ADDRESS", "add a relay to keep queues on; ADDRESS is the hush://... address its operator gives.\n"+
				"It first connects to check that the relay answers, is the one the address names (its\n"+
				"fingerprint), and takes the address's password (it creates a queue and deletes it).\n"+
				"Adding an address with the fingerprint of a configured relay replaces that one; one with\n"+
				"the host and port of a configured relay with another fingerprint is refused.")
			offline := fs.Bool("offline", false, "add the relay without connecting to it")
			timeout := fs.Duration("timeout", defaultCheckTimeout, "how long to try to reach the relay")
			nargs, argsUsage = 1, "ADDRESS"
			exec = func(a []string) error { return c.relaysAdd(ctx, a[0], *offline, *timeout) }
		case "remove":
			fs = newFlagSet("relays remove", "RELAY", "move every contact off a relay, then remove it. RELAY is its hush://... address,\n"+
				"its host:port, or its fingerprint or a start of it that no other relay's has. Each of\n"+
				"our queues on it moves to another relay (hush rotate), which needs the contact's hush\n"+
				"to answer; contacts whose queue we send to is on it are asked to move theirs. The relay\n"+
				"is removed once all of ours have moved, and kept until then (exit status 1).")
			wait := fs.Duration("wait", defaultRetireWait, "how long to wait for the contacts to move")
			now := fs.Bool("now", false, "remove the relay at once; the contacts move in the background")
			noMove := fs.Bool("no-move", false, "only stop using it for new contacts: those with a queue on it keep using it")
			nargs, argsUsage = 1, "RELAY"
			exec = func(a []string) error {
				if *noMove && *now {
					return usageError{"use only one of --now and --no-move", fs.Help()}
				}
				return c.relaysRemove(ctx, a[0], *noMove, *now, *wait)
			}
		case "list":
			fs = newFlagSet("relays list", "", "list the relays")
			exec = func([]string) error { return c.relaysList(ctx) }
		case "-h", "-help", "--help", "help":
			io.WriteString(env.stdout, relaysUsage)
			return nil
		default:
			return usageError{fmt.Sprintf("relays: unknown subcommand %q", sub), relaysUsage}
		}
	case "invite":
		fs = newFlagSet("invite", "", "print a one-time invitation link, alone on one line, and its QR code;\ngive it to one person, who runs \"hush accept LINK\"")
		name := fs.String("name", "", "the `name` to give the contact (default: chosen automatically)")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relay")
		short := fs.Bool("short", false, "a short link (about 100 characters; its QR code fits an 80-column terminal): the\ninvitation is stored on the relay, encrypted, and given to the first who reads the link\n(who connects to that relay directly, not through private routing)")
		exec = func([]string) error { return c.invite(ctx, *name, *short, *timeout) }
	case "accept":
		fs = newFlagSet("accept", "LINK", "accept an invitation link, long or short; the contact is connected once the inviter\nruns \"hush receive\" (or chat) and you do too. Given a contact address's link, ask\nits owner for a contact: connected once they accept the request")
		name := fs.String("name", "", "the `name` to give the contact (default: chosen automatically)")
		show := fs.String("show", "", "with a contact address: the `name` its owner sees in the request (default: none;\nthe request shows nothing else)")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relays")
		nargs, argsUsage = 1, "LINK"
		exec = func(a []string) error { return c.accept(ctx, a[0], *name, *show, *timeout) }
	case "receipts":
		var done bool
		fs, exec, nargs, argsUsage, args, done = c.receiptsVerb(ctx, args)
		if done {
			return exec(nil)
		}
	case "address", "requests":
		var done bool
		fs, exec, nargs, argsUsage, args, done = c.addressVerb(ctx, verb, args)
		if done {
			return exec(nil)
		}
	case "contacts":
		fs = newFlagSet("contacts", "", "list the contacts: name, state (invited, joining, connected) and messages waiting to be sent")
		exec = func([]string) error { return c.contacts(ctx) }
	case "send":
		fs = newFlagSet("send", "NAME TEXT...", "send TEXT to the contact NAME (several arguments are joined with spaces);\nthe message is stored first, so nothing is lost if the relay cannot be reached")
		timeout := fs.Duration("timeout", defaultFlushTimeout, "how long to wait for the relay to take the message; after it, the\nmessage stays queued for the next hush receive, or chat or send to NAME")
		nargs, argsUsage = -2, "NAME TEXT"
		exec = func(a []string) error { return c.send(ctx, a[0], strings.Join(a[1:], " "), *timeout) }
	case "receive":
		fs = newFlagSet("receive", "", "connect to the relays, complete pending handshakes, resend queued messages,\nprint what arrives, and exit when nothing arrived for --wait")
		wait := fs.Duration("wait", defaultWait, "exit after this long without anything arriving")
		timeout := fs.Duration("timeout", defaultFlushTimeout, "how long to wait, before exiting, for queued messages to be taken by the relays")
		exec = func([]string) error { return c.receive(ctx, *wait, *timeout) }
	case "chat":
		fs = newFlagSet("chat", "NAME", "chat with NAME: every line typed is sent; their messages are printed as\nthey arrive; end with Ctrl-D (or Ctrl-C)")
		timeout := fs.Duration("timeout", defaultFlushTimeout, "how long to wait at the end for the last messages to be taken by the relay")
		nargs, argsUsage = 1, "NAME"
		exec = func(a []string) error { return c.chat(ctx, a[0], *timeout) }
	case "forget":
		fs = newFlagSet("forget", "NAME", "forget the contact NAME, in any state: delete our queue for them on its relay,\ntheir keys and the messages queued for them here, and tell them, so that\ntheir hush deletes the queue we sent to")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to reach the relay of our queue, and then to send the notice")
		nargs, argsUsage = 1, "NAME"
		exec = func(a []string) error { return c.forget(ctx, a[0], *timeout) }
	case "rotate":
		fs = newFlagSet("rotate", "NAME", "move our queue for NAME's messages to a new queue, on another relay when one is\n"+
			"configured, so that no relay sees one queue for the whole life of the contact\n"+
			"(PROTOCOL.md section 19.11). It needs NAME's hush to answer: it completes in\n"+
			"the background while hush receive, chat or the agent runs, on both sides")
		timeout := fs.Duration("timeout", defaultRelayTimeout, "how long to try to create the new queue")
		wait := fs.Duration("wait", defaultRotateWait, "how long to wait for the rotation to complete before exiting (it goes on later)")
		nargs, argsUsage = 1, "NAME"
		exec = func(a []string) error { return c.rotate(ctx, a[0], *timeout, *wait) }
	case "rename":
		fs = newFlagSet("rename", "NAME NEW", "call the contact NAME NEW from now on")
		nargs, argsUsage = 2, "NAME NEW"
		exec = func(a []string) error { return c.rename(ctx, a[0], a[1]) }
	case "agent":
		fs = newFlagSet("agent", "", "run the agent: open the store once, stay connected to the relays, receive and\nsend continuously, and serve the API (docs/agent.md) on the socket hush.sock\nin --home until SIGINT or SIGTERM. While it runs, every hush command for\nthis home goes through it, and needs no passphrase.")
		stagger := fs.Duration("stagger", defaultStagger, "spread the first connections to the relays over a random delay each, up to this long,\nso that relays do not all see this client come online at the same instant")
		every := fs.Duration("rotate-every", defaultRotateEvery, "rotate each contact's queue about this often (each one at a random time between\n3/4 and 5/4 of it after the last); 0: never on its own (README: Privacy)")
		exec = func([]string) error { return c.runAgent(ctx, *stagger, *every) }
	case "demo":
		fs = newFlagSet("demo", "", "start two relays and two clients, alice and bob, in this process on 127.0.0.1,\nwith temporary stores; show an invitation, its acceptance and a message each way")
		needsHome = false
		takes = []string{"json", "transport", "verbose"}
		exec = func([]string) error { return c.demo(ctx) }
	default:
		return usageError{fmt.Sprintf("unknown command %q", verb), usageText}
	}
	fs.AddGlobals(gfs, takes...)
	rest, err := parseInterspersed(fs.FlagSet, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		io.WriteString(env.stdout, fs.Help())
		return nil
	case err != nil:
		return usageError{err.Error(), fs.Help()}
	}
	switch {
	case nargs >= 0 && len(rest) > nargs:
		return usageError{fmt.Sprintf("unexpected argument %q", rest[nargs]), fs.Help()}
	case nargs >= 0 && len(rest) < nargs, nargs < 0 && len(rest) < -nargs:
		return usageError{fmt.Sprintf("missing %s", argsUsage), fs.Help()}
	}
	c.globals = g
	switch link.Transport(c.transport) {
	case link.TransportAuto, link.TransportQUIC, link.TransportTCP:
	default:
		return usageError{fmt.Sprintf("--transport must be %q or %q, not %q", link.TransportQUIC, link.TransportTCP, c.transport), fs.Help()}
	}
	switch link.TorMode(c.tor) {
	case "", link.TorOff, link.TorPrefer:
	case link.TorRequired:
		if link.Transport(c.transport) == link.TransportQUIC {
			return usageError{"--tor=required cannot use QUIC: Tor carries TCP only", fs.Help()}
		}
	default:
		return usageError{fmt.Sprintf("--tor must be off, prefer or required, not %q", c.tor), fs.Help()}
	}
	if c.cover < 0 {
		return usageError{fmt.Sprintf("--cover must not be negative, not %v", c.cover), fs.Help()}
	}
	switch client.Isolation(c.isolation) {
	case client.IsolationAuto, client.IsolationRelay, client.IsolationContact:
	default:
		return usageError{fmt.Sprintf("--isolation must be %q or %q, not %q", client.IsolationRelay, client.IsolationContact, c.isolation), fs.Help()}
	}
	switch client.Routing(c.routing) {
	case client.RoutingAuto, client.RoutingAlways, client.RoutingUnknown, client.RoutingNever:
	default:
		return usageError{fmt.Sprintf("--routing must be %q, %q or %q, not %q", client.RoutingAlways, client.RoutingUnknown, client.RoutingNever, c.routing), fs.Help()}
	}
	if needsHome && c.home == "" {
		return usageError{"no home directory: pass --home DIR or set $HUSH_HOME", fs.Help()}
	}
	return exec(rest)
}

// parseInterspersed parses args with fs, allowing flags after arguments
// ("accept LINK --name N"), and returns the arguments. After "--" every
// argument is taken as it is.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

const relaysUsage = `usage: hush relays add [--offline] ADDRESS
       hush relays list
       hush relays remove [--wait D | --now | --no-move] RELAY

Relays keep the queues that carry your messages. Add at least two, from
operators you trust not to collude: each contact then uses one relay per
direction, and no single relay sees both. "relays add" connects to the
relay first and refuses an address that does not work (--offline skips
that). "relays remove" first moves every queue of yours on the relay to
another relay (as "hush rotate" does; each needs the contact's hush to
answer), asks the contacts whose queues you send to are on it to move
theirs, and removes the relay once yours have moved (--wait, 2 minutes;
--now removes it at once and lets them move in the background;
--no-move only stops new contacts from using it).
`

func newFlagSet(name, args, doc string) *cli.FlagSet {
	return cli.NewFlagSet("hush", name, args, doc)
}

// logger returns the client library's logger: warnings and errors on
// standard error, everything with --verbose, never a network address or
// port (queue.RedactHandler), whichever package logs.
func (c *cmd) logger() *slog.Logger {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(queue.RedactHandler(slog.NewTextHandler(c.env.stderr, &slog.HandlerOptions{Level: level})))
}
