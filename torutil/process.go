package torutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/cretz/bine/process"
)

// processCreator is the bine process.Creator of Start: it runs tor with
// its output going to a logTail instead of this process's stdout, and
// keeps the process so Start can always stop it.
type processCreator struct {
	exe  string
	out  *logTail
	proc *torProcess // the last process created
}

func (c *processCreator) New(ctx context.Context, args ...string) (process.Process, error) {
	cmd := exec.CommandContext(ctx, c.exe, args...)
	cmd.Stdout = c.out
	cmd.Stderr = c.out
	// tor has no children, but do not let a stray holder of its stdout
	// keep Wait from returning.
	cmd.WaitDelay = time.Second
	c.proc = &torProcess{cmd: cmd, done: make(chan struct{})}
	return c.proc, nil
}

// torProcess is a tor child process. One goroutine waits for it from
// Start until it exits.
type torProcess struct {
	cmd     *exec.Cmd
	started bool
	done    chan struct{} // closed when the process has exited
	err     error         // the exit status, set before done is closed
}

// Start starts the process and the goroutine that waits for it.
func (p *torProcess) Start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.started = true
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// Wait waits for the process to exit. It may be called more than once.
func (p *torProcess) Wait() error {
	if !p.started {
		return errors.New("tor not started")
	}
	<-p.done
	return p.err
}

func (p *torProcess) EmbeddedControlConn() (net.Conn, error) {
	return nil, process.ErrControlConnUnsupported
}

// stop waits up to timeout for the process to exit by itself, then kills
// it, and waits until it has exited. It returns an error if it had to kill.
func (p *torProcess) stop(timeout time.Duration) error {
	if !p.started {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("torutil: tor did not exit within %v of HALT; killed", timeout)
}

// logTail is an io.Writer that keeps the last lines written to it, each
// cut to maxLineLen bytes. It is safe for concurrent use.
type logTail struct {
	mu      sync.Mutex
	lines   []string // ring of up to max complete lines
	next    int      // index of the oldest line once the ring is full
	max     int
	partial []byte // the current unfinished line, at most maxLineLen
}

const maxLineLen = 512

func newLogTail(max int) *logTail { return &logTail{max: max} }

func (l *logTail) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := maxLineLen - len(l.partial); room > 0 {
			l.partial = append(l.partial, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		l.addLocked(string(l.partial))
		l.partial = l.partial[:0]
		b = b[i+1:]
	}
	return n, nil
}

func (l *logTail) addLocked(line string) {
	if len(l.lines) < l.max {
		l.lines = append(l.lines, line)
		return
	}
	l.lines[l.next] = line
	l.next = (l.next + 1) % l.max
}

// String returns the kept lines, oldest first, one per line.
func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i := range l.lines {
		b.WriteString(l.lines[(l.next+i)%len(l.lines)])
		b.WriteByte('\n')
	}
	if len(l.partial) > 0 {
		b.Write(l.partial)
		b.WriteByte('\n')
	}
	return b.String()
}
