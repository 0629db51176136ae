//go:build linux

// Command hush-bench measures a hush relay: message throughput and
// send-to-deliver latency, the memory of idle sessions, and the cost of
// storing many queues.
//
// Usage:
//
//	hush-bench [throughput] [flags]   S senders and R receivers over Q queues (the default)
//	hush-bench idle [flags]           K idle sessions: relay memory per session
//	hush-bench queues [flags]         N queues: relay RSS, database size, restart time
//	hush-bench chaos [flags]          3 relays killed and restarted under traffic
//	                                  between two clients: exactly once, in order,
//	                                  and the time to recover
//	hush-bench timing [flags]         answer times for unknown IDs and live queues
//	hush-bench down [flags]           the time idle connections take to notice
//	                                  a relay killed with SIGKILL that stays down
//	hush-bench forward [flags]        latency and relay CPU per message, sent
//	                                  directly and through a forwarding relay
//
// By default hush-bench starts its own relay as a child process (it runs
// itself with the hidden relay-child command), so that the relay's CPU time
// and memory are read from /proc for the relay alone, apart from the load
// generator. With --relay ADDR it drives an external relay instead and
// reports only what a client can see. The chaos scenario always starts its
// three relays. --json prints one JSON object for scripts.
// docs/performance.md has the measured figures and the commands that
// produced them, docs/reliability.md those of the chaos scenario.
//
// It builds on Linux only: every figure it reports about the relay and the
// machine comes from /proc.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

const usageText = `usage: hush-bench [throughput|idle|queues|chaos|timing|attack|down|forward] [flags]

Scenarios:
  throughput  S senders and R receivers over Q queues for --duration; prints
              delivered msgs/s, send-to-deliver latency p50/p90/p99, relay
              CPU per message, relay RSS, and lost and duplicated messages
              (the default)
  idle        open K idle sessions; prints the relay's memory per session
  queues      create N queues; prints relay RSS, database size and the
              time from a restart to the first served command
  chaos       3 relays, 2 clients with many contacts, traffic both ways
              while relays are killed (SIGKILL) and restarted and one
              stays down for a long outage; prints lost, duplicated and
              out-of-order messages, invitations made during the outage,
              and the time from each restart to the first message
              delivered through the restarted relay
  timing      for every command naming a queue, the median answer time for
              an unknown ID and for a live queue with a wrong key, and their
              ratio (both are ERR AUTH after the same work)
  attack      idle TLS and QUIC floods, slowloris, a garbage-command flood
              and a NEW flood, each in turn, while an honest client sends
              and receives; prints the relay's CPU and RSS, refusals, and
              the honest client's connect time, p99 and failures against
              a quiet run
  down        idle connections over QUIC and TCP to a relay that is then
              killed (SIGKILL) and stays down; prints the time each
              transport takes to notice, per run and the median of runs
  forward     a forwarding relay and a destination relay; messages sent one
              at a time directly to the destination and through the
              forwarding relay (private routing), alternately in each run;
              prints send-to-deliver latency p50/p99 and each relay's CPU
              per message for both, per run and the median of runs

Run "hush-bench <scenario> -h" for a scenario's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		var uerr usageError
		if errors.As(err, &uerr) {
			fmt.Fprintf(os.Stderr, "hush-bench: %v\n\n%s", err, usageText)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "hush-bench: %v\n", err)
		os.Exit(1)
	}
}

// usageError is a malformed command line: main prints it with the usage
// and exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	scenario := "throughput"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	switch scenario {
	case "relay-child":
		return runChild(args, stdin, stdout)
	case "idle-client":
		return runIdleClient(ctx, args, stdin, stdout, stderr)
	case "attacker":
		return runAttacker(ctx, args, stdin, stdout)
	case "throughput":
		return runThroughputCommand(ctx, args, stdout, stderr)
	case "idle":
		return runIdleCommand(ctx, args, stdout, stderr)
	case "queues":
		return runQueuesCommand(ctx, args, stdout, stderr)
	case "chaos":
		return runChaosCommand(ctx, args, stdout, stderr)
	case "timing":
		return runTimingCommand(ctx, args, stdout, stderr)
	case "attack":
		return runAttackCommand(ctx, args, stdout, stderr)
	case "down":
		return runDownCommand(ctx, args, stdout, stderr)
	case "forward":
		return runForwardCommand(ctx, args, stdout, stderr)
	case "help":
		io.WriteString(stdout, usageText)
		return nil
	}
	return usageError{fmt.Sprintf("unknown scenario %q", scenario)}
}

// commonOptions are the flags of every scenario.
type commonOptions struct {
	transport  string
	relayAddr  string
	jsonOut    bool
	dataDir    string
	cpuProfile string
	newRate    float64
	sendRate   float64
	progress   io.Writer // where progress lines go (stderr); never stdout
}

func addCommonFlags(fs *flag.FlagSet, o *commonOptions) {
	fs.StringVar(&o.transport, "transport", string(link.TransportQUIC), "transport: quic or tcp")
	fs.StringVar(&o.relayAddr, "relay", "", "drive the external relay at this hush:// address (with its password, if any) instead of starting one; relay CPU and memory are then not reported")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object instead of text")
	fs.StringVar(&o.dataDir, "data", "", "data directory of the started relay (default: a temporary directory, removed afterwards)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the started relay to this file (go tool pprof)")
	fs.Float64Var(&o.newRate, "relay-new-rate", 100000, "NEW commands per second per session allowed by the started relay (relay default 10)")
	fs.Float64Var(&o.sendRate, "relay-send-rate", 0, "SEND commands per second per session allowed by the started relay (0: the relay default, 2000)")
}

// scenarioFlags parses a scenario's command line args with the common
// flags and those that more adds, into o and the variables more binds. It
// returns true, with a nil error, when args asked for help (which the flag
// set printed to stderr): there is nothing to run.
func scenarioFlags(name string, o *commonOptions, args []string, stderr io.Writer, more func(fs *flag.FlagSet)) (help bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addCommonFlags(fs, o)
	more(fs)
	if err := parseFlags(fs, o, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// parseFlags parses args into fs and checks the common options.
func parseFlags(fs *flag.FlagSet, o *commonOptions, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	switch link.Transport(o.transport) {
	case link.TransportQUIC, link.TransportTCP:
	default:
		return usageError{fmt.Sprintf("--transport %q: want quic or tcp", o.transport)}
	}
	if o.relayAddr != "" {
		if _, err := queue.ParseAddress(o.relayAddr); err != nil {
			return usageError{fmt.Sprintf("--relay: %v", err)}
		}
		if o.cpuProfile != "" {
			return usageError{"--cpuprofile needs the started relay, not --relay"}
		}
	}
	o.progress = stderr
	return nil
}

// progressf prints a progress line to stderr, with every network address
// and port in it (the errors it quotes may name them) removed
// (queue.RedactAddresses).
func (o *commonOptions) progressf(format string, args ...any) {
	fmt.Fprintln(o.progress, "hush-bench:", queue.RedactAddresses(fmt.Sprintf(format, args...)))
}

// relayTarget is the relay a scenario drives: a child process it started,
// or an external one (child is nil).
type relayTarget struct {
	addr    queue.Address
	child   *relayChild
	dataDir string
	cleanup func()
}

// startTarget starts the relay child, or parses --relay. memProfileRate,
// if not 0, is the child's runtime.MemProfileRate; maxSessions, if not 0,
// the child's relay-wide session cap.
func startTarget(ctx context.Context, o *commonOptions, memProfileRate, maxSessions int) (*relayTarget, error) {
	return startTargetMapped(ctx, o, memProfileRate, maxSessions, 0)
}

// startTargetMapped is startTarget with the child's MappedStoreLimit, in
// bytes, if not 0.
func startTargetMapped(ctx context.Context, o *commonOptions, memProfileRate, maxSessions int, mappedLimit int64) (*relayTarget, error) {
	if o.relayAddr != "" {
		a, err := queue.ParseAddress(o.relayAddr)
		if err != nil {
			return nil, err
		}
		return &relayTarget{addr: a, cleanup: func() {}}, nil
	}
	dir, cleanup := o.dataDir, func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "hush-bench-")
		if err != nil {
			return nil, err
		}
		dir, cleanup = d, func() { os.RemoveAll(d) }
	}
	c, err := startChild(ctx, childOptions{
		dataDir:    dir,
		newRate:    o.newRate,
		sendRate:   o.sendRate,
		cpuProfile: o.cpuProfile,

		memProfileRate: memProfileRate,
		maxSessions:    maxSessions,
		mappedLimit:    mappedLimit,
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	return &relayTarget{addr: c.addr, child: c, dataDir: dir, cleanup: cleanup}, nil
}

// Close stops the child, if any, and removes a temporary data directory.
func (t *relayTarget) Close() error {
	var err error
	if t.child != nil {
		err = t.child.Stop()
	}
	t.cleanup()
	return err
}

// dialMany opens n connections to addr, at most 32 dials at a time.
func dialMany(ctx context.Context, addr queue.Address, cfg link.Config, n int) ([]*link.Conn, error) {
	conns := make([]*link.Conn, n)
	err := parallel(ctx, n, 32, func(ctx context.Context, i int) error {
		c, err := link.Dial(ctx, addr, cfg)
		if err != nil {
			return fmt.Errorf("dial %s: %w", cfg.Transport, err)
		}
		conns[i] = c
		return nil
	})
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []*link.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// writeJSON prints v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mib formats a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// parallel calls f(ctx, i) for every i in [0, n), at most workers at a
// time, and returns the first error; after an error, ctx is canceled and
// no new call starts.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}
