// Package relaytest runs relays for tests: hush-relay processes (Start),
// built once per test binary from cmd/hush-relay, started on a data
// directory, killed with SIGKILL as a crash would or stopped with SIGTERM
// as an operator would, and started again on the same data directory and
// port; and relays in the test's own process (New), each with a new
// identity and a store in the test's temporary directory. Tests use it
// instead of building relays by hand.
package relaytest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// startTimeout bounds how long a relay may take to print its address.
const startTimeout = time.Minute

// build and buildRace build hush-relay once per test binary, without and
// with the race detector, into a directory that outlives the tests that
// share it (the system's temporary directory removes it in time).
var (
	build     = builder(false)
	buildRace = builder(true)
)

func builder(race bool) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		gobin, err := exec.LookPath("go")
		if err != nil {
			return "", err
		}
		dir, err := os.MkdirTemp("", "hush-relaytest")
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, "hush-relay")
		args := []string{"build", "-o", bin}
		if race {
			args = append(args, "-race")
		}
		out, err := exec.Command(gobin, append(args, "github.com/hushrelay/hush/cmd/hush-relay")...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
}

// Process is a hush-relay process, or one that was killed and may be
// restarted. Its methods are for the test's goroutine.
type Process struct {
	// Addr is the relay's address (on 127.0.0.1, without a password); it
	// stays the same across restarts.
	Addr queue.Address

	t    testing.TB
	dir  string
	bin  string  // the hush-relay executable
	opts Options // as given to StartWith
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs "hush-relay start" on the data directory dir (initialized
// if empty) on 127.0.0.1 and a free port, with no password and no admin
// listener, and returns once it prints its address. The process is
// killed when the test ends. It skips the test if the go tool, needed to
// build hush-relay, is missing.
func Start(t testing.TB, dir string) *Process {
	t.Helper()
	return StartWith(t, dir, Options{})
}

// Options adjust the relay process StartWith runs; the zero Options run
// the one Start runs.
type Options struct {
	// Flags are added to the command line of "hush-relay start" in place
	// of --no-password: without any, the relay has no password.
	Flags []string
	// Race builds hush-relay with the race detector (go build -race), and
	// runs it without the race detector's second of sleep at exit unless
	// $GORACE says otherwise.
	Race bool
}

// StartWith is Start with the options o.
func StartWith(t testing.TB, dir string, o Options) *Process {
	t.Helper()
	bld := build
	if o.Race {
		bld = buildRace
	}
	bin, err := bld()
	if err != nil {
		if _, lerr := exec.LookPath("go"); lerr != nil {
			t.Skipf("no go tool to build hush-relay: %v", lerr)
		}
		t.Fatal(err)
	}
	p := &Process{t: t, dir: dir, bin: bin, opts: o}
	p.start("127.0.0.1:0")
	t.Cleanup(p.Kill)
	return p
}

// Restart starts the relay again on its data directory and port, after
// Kill or Terminate, and returns once it prints its address.
func (p *Process) Restart() {
	p.t.Helper()
	p.start(p.Addr.HostPort())
}

func (p *Process) start(listen string) {
	p.t.Helper()
	flags := p.opts.Flags
	if len(flags) == 0 {
		flags = []string{"--no-password"}
	}
	args := append([]string{"start", "--data", p.dir, "--listen", listen, "--host", "127.0.0.1",
		"--admin", "off", "--log-level", "warn"}, flags...)
	cmd := exec.Command(p.bin, args...)
	cmd.Env = p.env()
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	addr := make(chan string, 1)
	done := p.done
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "address: "); ok && !sent {
				addr <- a
				sent = true
			}
		}
		close(addr)
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	select {
	case s, ok := <-addr:
		if !ok {
			<-done
			p.t.Fatalf("hush-relay start exited without printing its address")
		}
		a, err := queue.ParseAddress(s)
		if err != nil {
			p.t.Fatalf("hush-relay printed the address %q: %v", s, err)
		}
		p.Addr = a
	case <-time.After(startTimeout):
		cmd.Process.Kill()
		<-done
		p.t.Fatalf("hush-relay start printed no address within %v", startTimeout)
	}
}

// Kill kills the relay with SIGKILL, as a crash would, and waits for it
// to exit. Killing a relay that is not running does nothing.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// terminateTimeout bounds how long Terminate waits for a relay to exit.
const terminateTimeout = time.Minute

// Terminate stops the relay with SIGTERM, as its operator would, and
// waits for it to exit; if it has not within a minute, the test fails and
// the relay is killed. Terminating a relay that is not running does
// nothing.
func (p *Process) Terminate() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(terminateTimeout):
		p.t.Errorf("hush-relay did not stop within %v of SIGTERM", terminateTimeout)
		p.Kill()
	}
}

// env is the relay's environment: this process's without the HUSH_
// variables, which could override the options start gives, and, for a
// relay built with the race detector and unless $GORACE is set, without
// its second of sleep at exit.
func (p *Process) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUSH_") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); p.opts.Race && !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}
