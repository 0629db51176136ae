package main

// The attacker process: the attack scenario runs each attack in a process
// of its own (hush-bench runs itself with the hidden attacker command), so
// that the honest client's figures measure the relay and the machine, not
// the attacker's goroutines sharing the honest client's Go scheduler, as
// an attacker on the same machine but not in the same program would.
//
// The attacker command runs the attack --attack against --relay until its
// stdin ends (the parent closed it, or died), releases what it holds and
// prints "stats <attempts> <held> <refused>" (attackStats) on stdout.
// Before that, it prints "ready" once the attack has built up (builtUp).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/hushrelay/hush/queue"
)

// addAttackFlags adds the flags that size the attacks to fs.
func addAttackFlags(fs *flag.FlagSet, o *attackOptions) {
	fs.IntVar(&o.idleTLS, "idle-tls", 20000, "idle TLS sessions the attacker tries to hold, from one address")
	fs.IntVar(&o.idleQUIC, "idle-quic", 20000, "idle QUIC sessions the attacker tries to hold, from one address")
	fs.Float64Var(&o.openRate, "open-rate", 2000, "connection attempts per second of the idle floods")
	fs.IntVar(&o.loris, "slowloris", 2000, "TCP connections per second that never send a byte")
	fs.IntVar(&o.garbage, "garbage", 16, "sessions flooding commands with made-up IDs and authorizations")
	fs.IntVar(&o.newFlood, "new-flood", 256, "sessions flooding NEW")
}

// attackFlagArgs returns the command line of the flags of addAttackFlags
// with o's values.
func attackFlagArgs(o *attackOptions) []string {
	return []string{
		"--idle-tls", strconv.Itoa(o.idleTLS), "--idle-quic", strconv.Itoa(o.idleQUIC),
		"--open-rate", strconv.FormatFloat(o.openRate, 'g', -1, 64), "--slowloris", strconv.Itoa(o.loris),
		"--garbage", strconv.Itoa(o.garbage), "--new-flood", strconv.Itoa(o.newFlood),
	}
}

// runAttacker is the attacker command.
func runAttacker(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	o := &attackOptions{}
	fs := flag.NewFlagSet("attacker", flag.ContinueOnError)
	relayAddr := fs.String("relay", "", "relay address (required)")
	name := fs.String("attack", "", "the attack to run (required)")
	addAttackFlags(fs, o)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	addr, err := queue.ParseAddress(*relayAddr)
	if err != nil {
		return usageError{fmt.Sprintf("attacker: --relay: %v", err)}
	}
	switch *name {
	case "idle-tls", "idle-quic", "slowloris", "garbage", "new-flood":
	default:
		return usageError{fmt.Sprintf("attacker: unknown attack %q", *name)}
	}
	// Ctrl-C reaches the whole process group: the parent stops the
	// attacker through stdin, after its measurement.
	signal.Ignore(os.Interrupt)
	actx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		io.Copy(io.Discard, stdin)
		stop()
	}()
	var st attackStats
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		for !o.builtUp(*name, &st) {
			sleepCtx(actx, 20*time.Millisecond)
			if actx.Err() != nil {
				return
			}
		}
		fmt.Fprintln(stdout, "ready")
	}()
	o.launch(actx, *name, addr, &st)
	<-ready
	_, err = fmt.Fprintf(stdout, "stats %d %d %d\n", st.attempts.Load(), st.held.Load(), st.refused.Load())
	return err
}

// builtUp reports whether the attack name has built up: for a command
// flood, every one of its sessions got in (the relay may refuse a session
// while the others' handshakes take its address's share, and it dials
// again); the other attacks at once.
func (o *attackOptions) builtUp(name string, st *attackStats) bool {
	switch name {
	case "garbage":
		return st.in.Load() >= int64(o.garbage)
	case "new-flood":
		return st.in.Load() >= int64(o.newFlood)
	}
	return true
}

// attackerProc is a running attacker process.
type attackerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout's lines; closed at its end
}

// startAttacker starts the attacker process of attack name against addr.
func startAttacker(name string, addr queue.Address, o *attackOptions) (*attackerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{"attacker", "--relay", addr.String(), "--attack", name}, attackFlagArgs(o)...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start attacker: %w", err)
	}
	a := &attackerProc{cmd: cmd, stdin: stdin, lines: make(chan string, 2)}
	go func() {
		defer close(a.lines)
		out := bufio.NewScanner(stdout)
		for out.Scan() {
			a.lines <- out.Text()
		}
	}()
	return a, nil
}

// attackerReadyTimeout bounds the wait for an attack to build up.
const attackerReadyTimeout = 30 * time.Second

// waitReady waits until the attacker said the attack built up, at most
// attackerReadyTimeout; it reports whether it did.
func (a *attackerProc) waitReady(ctx context.Context) bool {
	t := time.NewTimer(attackerReadyTimeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-a.lines:
			if !ok {
				return false
			}
			if line == "ready" {
				return true
			}
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// attackerTimeout bounds how long an attacker takes, once told to stop,
// to release what it holds and exit.
const attackerTimeout = 60 * time.Second

// stop ends the attack: the attacker releases what it holds and exits;
// stop returns its counts.
func (a *attackerProc) stop(st *attackStats) error {
	a.stdin.Close()
	t := time.AfterFunc(attackerTimeout, func() { a.cmd.Process.Kill() })
	defer t.Stop()
	var line string
	for l := range a.lines {
		if l != "ready" {
			line = l
			break
		}
	}
	werr := a.cmd.Wait()
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "stats" {
		return errors.Join(fmt.Errorf("attacker said %q, want its stats", line), werr)
	}
	var n [3]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return fmt.Errorf("attacker said %q: %w", line, err)
		}
		n[i] = v
	}
	st.attempts.Store(n[0])
	st.held.Store(n[1])
	st.refused.Store(n[2])
	return werr
}
