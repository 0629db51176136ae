// Package relaytest runs relays for tests: hush-relay processes (Start),
// built once per test binary from cmd/hush-relay, started on a data
// directory, killed with SIGKILL as a crash would, and started again on
// the same data directory and port; and relays in the test's own process
// (New), each with a new identity and a store in the test's temporary
// directory. Tests use it instead of building relays by hand.
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

// build builds hush-relay once per test binary, into a directory that
// outlives the tests that share it (the system's temporary directory
// removes it in time).
var build = sync.OnceValues(func() (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "hush-relaytest")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hush-relay")
	out, err := exec.Command(gobin, "build", "-o", bin, "github.com/hushrelay/hush/cmd/hush-relay").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// Process is a hush-relay process, or one that was killed and may be
// restarted. Its methods are for the test's goroutine.
type Process struct {
	// Addr is the relay's address (on 127.0.0.1, without a password); it
	// stays the same across restarts.
	Addr queue.Address

	t    testing.TB
	dir  string
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
	bin, err := build()
	if err != nil {
		if _, lerr := exec.LookPath("go"); lerr != nil {
			t.Skipf("no go tool to build hush-relay: %v", lerr)
		}
		t.Fatal(err)
	}
	p := &Process{t: t, dir: dir}
	p.start(bin, "127.0.0.1:0")
	t.Cleanup(p.Kill)
	return p
}

// Restart starts the relay again on its data directory and port, after
// Kill, and returns once it prints its address.
func (p *Process) Restart() {
	p.t.Helper()
	bin, err := build()
	if err != nil {
		p.t.Fatal(err)
	}
	p.start(bin, p.Addr.HostPort())
}

func (p *Process) start(bin, listen string) {
	p.t.Helper()
	cmd := exec.Command(bin, "start", "--data", p.dir, "--listen", listen, "--host", "127.0.0.1",
		"--no-password", "--admin", "off", "--log-level", "warn")
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
