//go:build unix

package relaytest

import "syscall"

// Stop stops the relay with SIGSTOP, as if its process were starved or
// paused: it reads, answers and acknowledges nothing, over either
// transport, until Continue; the kernel still holds its sockets. Stopping
// a relay that is not running does nothing.
func (p *Process) Stop() { p.signal(syscall.SIGSTOP) }

// Continue lets a relay stopped by Stop run again (SIGCONT).
func (p *Process) Continue() { p.signal(syscall.SIGCONT) }

func (p *Process) signal(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		if err := p.cmd.Process.Signal(sig); err != nil {
			p.t.Fatalf("%v: %v", sig, err)
		}
	}
}
