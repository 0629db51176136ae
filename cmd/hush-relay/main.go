// Command hush-relay runs a hush relay: a server that keeps anonymous,
// one-way message queues for hush clients.
//
// Usage:
//
//	hush-relay init        [flags]   create the data directory and print the address
//	hush-relay start       [flags]   run the relay (initializes an empty data directory first)
//	hush-relay address     [flags]   print the relay's address
//	hush-relay status      [flags]   ask the running relay how it is (its admin listener)
//	hush-relay drain       [flags]   refuse new queues while serving existing ones (--off: accept again)
//	hush-relay backup      --out F   write a consistent copy of the store, also while the relay runs
//	hush-relay restore     --from F  put a backup in place of the store (relay stopped)
//	hush-relay check       [flags]   check the store, the configuration and the key files
//	hush-relay compact     [flags]   give back the free space of the store (relay stopped)
//	hush-relay rotate-cert [flags]   issue a new online certificate; the address stays the same
//	hush-relay version               print the version
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
	"syscall"

	"github.com/hushrelay/hush/internal/cli"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

const usageText = `usage: hush-relay <command> [flags]

Commands:
  init         create the data directory (config.toml, identity and certificate)
               and print the relay's address and its QR code
  start        run the relay; initializes an empty data directory first
  address      print the relay's address (--qr: also as a QR code)
  status       ask the running relay, through its admin listener, how it is;
               exits non-zero when it is unreachable or unhealthy
  drain        drain mode: refuse new queues, serve existing ones (--off: end it)
  backup       write a consistent copy of the store to --out FILE, while the
               relay runs (through its admin listener) or while it is stopped
  restore      put a backup (--from FILE) in place of the store; relay stopped
  check        check the store's consistency, config.toml and the key files
  compact      rewrite the store without its free space; relay stopped
  rotate-cert  issue a new online certificate under the same identity: the
               address does not change; the running relay loads it
  version      print the version
  help         print this help

Run "hush-relay <command> -h" for a command's flags. Flags override the
environment (HUSH_RELAY_<OPTION>), which overrides the data directory's
config.toml.
`

// dataEnv names the default data directory.
const dataEnv = "HUSH_RELAY_DATA"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := environment{
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		getenv:  os.Getenv,
		environ: os.Environ(),
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
	environ        []string // "NAME=value" entries
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
		fs   *cli.FlagSet
		o    *options
		exec func() error
	)
	switch verb {
	case "help", "-h", "-help", "--help":
		io.WriteString(env.stdout, usageText)
		return nil
	case "version", "-version", "--version":
		fs = newFlagSet("version", "print the version of hush-relay and of the queue protocol")
		exec = func() error {
			fmt.Fprintf(env.stdout, "hush-relay %s (queue protocol versions %d..%d)\n", cli.Version(), queue.MinVersion, queue.MaxVersion)
			return nil
		}
	case "init":
		fs = newFlagSet("init", "create the data directory: config.toml, identity.key and the certificate;\nprint the relay's address and its QR code")
		o = addCommonFlags(fs, env)
		exec = func() error { return cmdInit(o, env) }
	case "start":
		fs = newFlagSet("start", "run the relay until SIGINT or SIGTERM; an empty or missing data directory\nis initialized first; SIGHUP reloads the online certificate")
		o = addCommonFlags(fs, env)
		addStartFlags(fs, o)
		exec = func() error { return cmdStart(ctx, o, env) }
	case "address":
		fs = newFlagSet("address", "print the relay's address")
		o = addCommonFlags(fs, env)
		qr := fs.Bool("qr", false, "also print the address as a QR code")
		exec = func() error { return cmdAddress(o, *qr, env) }
	case "status":
		fs = newFlagSet("status", "ask the running relay how it is, through its admin listener; exit status 1\nwhen it does not answer or is unhealthy")
		o = addDataFlag(fs, env)
		addAdminFlag(fs, o)
		asJSON := fs.Bool("json", false, "print the status as JSON")
		exec = func() error { return cmdStatus(ctx, o, *asJSON, env) }
	case "drain":
		fs = newFlagSet("drain", "put the running relay in drain mode: NEW is refused (ERR PROHIBITED) and\nexisting queues are served, for decommissioning it; needs admin.token")
		o = addDataFlag(fs, env)
		addAdminFlag(fs, o)
		off := fs.Bool("off", false, "end drain mode: accept new queues again")
		exec = func() error { return cmdDrain(ctx, o, !*off, env) }
	case "backup":
		fs = newFlagSet("backup", "write a consistent copy of the store (relay.db) to a new file: from the\nrunning relay through its admin listener (needs admin.token), else from the\nstopped relay's file")
		o = addDataFlag(fs, env)
		addAdminFlag(fs, o)
		out := fs.String("out", "", "the backup `file` to write (required; must not exist)")
		exec = func() error { return cmdBackup(ctx, o, *out, env) }
	case "restore":
		fs = newFlagSet("restore", "put a backup in place of the store, after checking it; the relay must be\nstopped and the data directory must hold the relay's identity")
		o = addDataFlag(fs, env)
		from := fs.String("from", "", "the backup `file` (required)")
		force := fs.Bool("force", false, "replace an existing relay.db (its queues and messages are lost)")
		exec = func() error { return cmdRestore(o, *from, *force, env) }
	case "check":
		fs = newFlagSet("check", "check the data directory: config.toml and the environment, the permissions\nof the key files, the certificate, and the store's consistency (a running\nrelay's store through a hot backup); exit status 1 when something is wrong")
		o = addDataFlag(fs, env)
		addAdminFlag(fs, o)
		store := fs.String("store", "", "check only this store `file` (a backup, for example)")
		exec = func() error { return cmdCheck(ctx, o, *store, env) }
	case "compact":
		fs = newFlagSet("compact", "rewrite the store without its free space, which a drained backlog leaves\nbehind; the relay must be stopped")
		o = addDataFlag(fs, env)
		exec = func() error { return cmdCompact(o, env) }
	case "rotate-cert":
		fs = newFlagSet("rotate-cert", "issue a new online certificate with identity.key: the address does not\nchange; the running relay is told to load it (else SIGHUP or restart it)")
		o = addCommonFlags(fs, env)
		addAdminFlag(fs, o)
		exec = func() error { return cmdRotateCert(ctx, o, env) }
	default:
		return usageError{fmt.Sprintf("unknown command %q", verb), usageText}
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		io.WriteString(env.stdout, fs.Help())
		return nil
	case err != nil:
		return usageError{err.Error(), fs.Help()}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0)), fs.Help()}
	}
	if o != nil {
		o.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
		if err := o.check(fs); err != nil {
			return err
		}
	}
	return exec()
}

// options are the flags of a command.
type options struct {
	dataDir      string
	listen       string
	host         string
	password     string
	passwordFile string
	noPassword   bool
	admin        string
	drain        bool
	logLevel     string
	logFormat    string
	tor          torOptions
	// set holds the names of the flags given on the command line.
	set     map[string]bool
	environ []string
}

func addDataFlag(fs *cli.FlagSet, env environment) *options {
	o := &options{environ: env.environ}
	def := env.getenv(dataEnv)
	if def == "" {
		def = defaultDataDir
	}
	fs.StringVar(&o.dataDir, "data", def, "the data `directory`; the default comes from $HUSH_RELAY_DATA if set")
	return o
}

func addCommonFlags(fs *cli.FlagSet, env environment) *options {
	o := addDataFlag(fs, env)
	fs.StringVar(&o.listen, "listen", "", "listen on `host:port`, UDP (QUIC) and TCP (default \""+relay.DefaultListen+"\")")
	fs.StringVar(&o.host, "host", "", "the public DNS `name` or IP written into the address\n(default: the listen host if it is specific, else localhost)")
	fs.StringVar(&o.password, "password", "", "the `password` needed to create queues (init generates one by default)")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the password from the first line of `file`")
	fs.BoolVar(&o.noPassword, "no-password", false, "no password: anyone who knows the address may create queues")
	return o
}

func addAdminFlag(fs *cli.FlagSet, o *options) {
	fs.StringVar(&o.admin, "admin", "", "the admin listener's `host:port`, or off (default: admin in config.toml,\nelse \""+defaultAdmin+"\")")
}

// torOptions are the Tor settings of start.
type torOptions struct {
	mode    string // off, embedded, system
	control string // the system tor's control port
	torrc   string // extra torrc lines for the embedded tor
}

func addStartFlags(fs *cli.FlagSet, o *options) {
	addAdminFlag(fs, o)
	fs.BoolVar(&o.drain, "drain", false, "start in drain mode: refuse new queues, serve existing ones")
	fs.StringVar(&o.logLevel, "log-level", "", "`level` of the logs: info, debug, warn or error (default info); no level\nrecords IP addresses, ports, queue IDs or message sizes")
	fs.StringVar(&o.logFormat, "log-format", "", "`format` of the logs on standard error: text or json (default text)")
	fs.StringVar(&o.tor.mode, "tor", "", "publish the relay as a Tor onion service: `off` (the default), embedded\n(start a tor) or system (use a running tor's control port, see --tor-control)")
	fs.StringVar(&o.tor.control, "tor-control", "", "the system tor's control port `host:port` (with --tor=system; default \""+defaultTorControl+"\")")
	fs.StringVar(&o.tor.torrc, "torrc", "", "extra torrc `file` for the embedded tor (with --tor=embedded)")
}

// check rejects contradictory or malformed flags.
func (o *options) check(fs *cli.FlagSet) error {
	n := 0
	for _, set := range []bool{o.password != "", o.passwordFile != "", o.noPassword} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageError{"use only one of --password, --password-file and --no-password", fs.Help()}
	}
	if o.password != "" && !queue.ValidPassword(o.password) {
		return fmt.Errorf("--password: %s", errPasswordChars)
	}
	if o.dataDir == "" {
		return usageError{"--data must not be empty", fs.Help()}
	}
	return nil
}

func newFlagSet(name, doc string) *cli.FlagSet {
	return cli.NewFlagSet("hush-relay", name, "", doc)
}
