// Command hush-relay runs a hush relay: a server that keeps anonymous,
// one-way message queues for hush clients.
//
// Usage:
//
//	hush-relay init    [flags]   create the data directory and print the address
//	hush-relay start   [flags]   run the relay (initializes an empty data directory first)
//	hush-relay address [flags]   print the relay's address
//	hush-relay version           print the version
//
// Every command takes --data DIR (default ./hush-relay-data, or
// $HUSH_RELAY_DATA). Run "hush-relay help" for the rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

const usageText = `usage: hush-relay <command> [flags]

Commands:
  init      create the data directory (config.toml, identity and certificate)
            and print the relay's address and its QR code
  start     run the relay; initializes an empty data directory first
  address   print the relay's address (--qr: also as a QR code)
  version   print the version
  help      print this help

Run "hush-relay <command> -h" for a command's flags. Flags override the
data directory's config.toml.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := environment{
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		// Once a signal has arrived, restore the default behaviour so
		// that a second Ctrl-C ends a slow shutdown.
		stopSignals: stop,
	}
	err := run(ctx, os.Args[1:], env)
	var uerr usageError
	switch {
	case err == nil:
	case errors.As(err, &uerr):
		fmt.Fprintf(os.Stderr, "hush-relay: %v\n\n", err)
		io.WriteString(os.Stderr, uerr.usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "hush-relay: %v\n", err)
		os.Exit(1)
	}
}

// environment is what run needs from the process.
type environment struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stopSignals, if not nil, stops catching SIGINT and SIGTERM.
	stopSignals func()
}

// usageError is returned by run for a malformed command line; main prints
// the message and usage, and exits with status 2.
type usageError struct {
	msg   string
	usage string
}

func (e usageError) Error() string { return e.msg }

// run executes the command line args (without the program name) until it
// is done or, for start, until ctx is cancelled.
func run(ctx context.Context, args []string, env environment) error {
	if len(args) == 0 {
		return usageError{"no command given", usageText}
	}
	verb, args := args[0], args[1:]
	var (
		fs   *flagSet
		o    *options
		qr   *bool
		exec func() error
	)
	switch verb {
	case "help", "-h", "-help", "--help":
		io.WriteString(env.stdout, usageText)
		return nil
	case "version", "-version", "--version":
		fs = newFlagSet("version", "print the version of hush-relay and of the queue protocol")
		exec = func() error {
			fmt.Fprintf(env.stdout, "hush-relay %s (queue protocol versions %d..%d)\n", version(), queue.MinVersion, queue.MaxVersion)
			return nil
		}
	case "init":
		fs = newFlagSet("init", "create the data directory: config.toml, identity.key and the certificate;\nprint the relay's address and its QR code")
		o = addCommonFlags(fs, env)
		exec = func() error { return cmdInit(o, env) }
	case "start":
		fs = newFlagSet("start", "run the relay until SIGINT or SIGTERM; an empty or missing data directory\nis initialized first")
		o = addCommonFlags(fs, env)
		t := addTorFlags(fs)
		exec = func() error { return cmdStart(ctx, o, t, env) }
	case "address":
		fs = newFlagSet("address", "print the relay's address")
		o = addCommonFlags(fs, env)
		qr = fs.Bool("qr", false, "also print the address as a QR code")
		exec = func() error { return cmdAddress(o, *qr, env) }
	default:
		return usageError{fmt.Sprintf("unknown command %q", verb), usageText}
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		io.WriteString(env.stdout, fs.usage())
		return nil
	case err != nil:
		return usageError{err.Error(), fs.usage()}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0)), fs.usage()}
	}
	if o != nil {
		if err := o.check(fs); err != nil {
			return err
		}
	}
	return exec()
}

// options are the flags shared by init, start and address.
type options struct {
	dataDir      string
	listen       string
	host         string
	password     string
	passwordFile string
	noPassword   bool
}

func addCommonFlags(fs *flagSet, env environment) *options {
	o := new(options)
	def := env.getenv("HUSH_RELAY_DATA")
	if def == "" {
		def = defaultDataDir
	}
	fs.StringVar(&o.dataDir, "data", def, "the data `directory`; the default comes from $HUSH_RELAY_DATA if set")
	fs.StringVar(&o.listen, "listen", "", "listen on `host:port`, UDP (QUIC) and TCP (default \""+relay.DefaultListen+"\")")
	fs.StringVar(&o.host, "host", "", "the public DNS `name` or IP written into the address\n(default: the listen host if it is specific, else localhost)")
	fs.StringVar(&o.password, "password", "", "the `password` needed to create queues (init generates one by default)")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the password from the first line of `file`")
	fs.BoolVar(&o.noPassword, "no-password", false, "no password: anyone who knows the address may create queues")
	return o
}

// torOptions are the Tor flags of start.
type torOptions struct {
	mode    string // off, embedded, system
	control string // the system tor's control port
	torrc   string // extra torrc lines for the embedded tor
}

func addTorFlags(fs *flagSet) *torOptions {
	t := new(torOptions)
	fs.StringVar(&t.mode, "tor", "off", "publish the relay as a Tor onion service: `off`, embedded (start a tor)\nor system (use a running tor's control port, see --tor-control)")
	fs.StringVar(&t.control, "tor-control", "127.0.0.1:9051", "the system tor's control port `host:port` (with --tor=system)")
	fs.StringVar(&t.torrc, "torrc", "", "extra torrc `file` for the embedded tor (with --tor=embedded)")
	return t
}

// check rejects contradictory or malformed flags.
func (o *options) check(fs *flagSet) error {
	n := 0
	for _, set := range []bool{o.password != "", o.passwordFile != "", o.noPassword} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageError{"use only one of --password, --password-file and --no-password", fs.usage()}
	}
	if o.password != "" && !queue.ValidPassword(o.password) {
		return fmt.Errorf("--password: %s", errPasswordChars)
	}
	if o.dataDir == "" {
		return usageError{"--data must not be empty", fs.usage()}
	}
	return nil
}

// flagSet is a command's flags and the head of its usage text.
type flagSet struct {
	*flag.FlagSet
	header string
}

func newFlagSet(name, doc string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	fs.Usage = func() {}
	return &flagSet{fs, fmt.Sprintf("usage: hush-relay %s [flags]\n\n%s\n", name, doc)}
}

// usage returns the command's usage text with its flags.
func (fs *flagSet) usage() string {
	var b strings.Builder
	b.WriteString(fs.header)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// version returns the module version, or the VCS revision for a build from
// a work tree, or "devel".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}
