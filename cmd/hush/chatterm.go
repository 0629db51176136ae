package main

import (
	"bytes"
	"errors"
	"io"
	"os"

	"golang.org/x/term"
)

// chatPrompt is the prompt of chat's input line on a terminal.
const chatPrompt = "> "

// ctrlC is the byte a terminal in raw mode sends for Ctrl-C.
const ctrlC = 0x03

// chatTerminal is chat's input line when standard input and output are a
// terminal: the terminal is in raw mode and golang.org/x/term's Terminal
// edits the line, so that what chat prints (through Write) goes above the
// line being typed, which is then drawn again, intact, below it.
type chatTerminal struct {
	t     *term.Terminal
	fd    int // standard input's
	state *term.State
	out   io.Writer
}

// openChatTerminal puts the terminal in raw mode and returns its line
// editor, or nil when stdin or stdout is not a terminal (a pipe, a file):
// chat then reads lines as they come. In raw mode the terminal sends
// Ctrl-C as a byte, not a signal: interrupt is called for it instead.
func openChatTerminal(stdin io.Reader, stdout io.Writer, interrupt func()) *chatTerminal {
	if !isTerminal(stdin) || !isTerminal(stdout) {
		return nil
	}
	in, out := stdin.(*os.File), stdout.(*os.File)
	fd := int(in.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil
	}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{interruptReader{in, interrupt}, out}, chatPrompt)
	if w, h, err := term.GetSize(int(out.Fd())); err == nil {
		t.SetSize(w, h)
	}
	return &chatTerminal{t: t, fd: fd, state: state, out: out}
}

// isTerminal reports whether f is a file that is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// Write prints p above the input line, and draws the line again below.
func (ct *chatTerminal) Write(p []byte) (int, error) { return ct.t.Write(p) }

// readLines sends the lines typed to lines, and closes it at Ctrl-D (on
// an empty line) or when the terminal fails; it returns early when stop is
// closed.
func (ct *chatTerminal) readLines(lines chan<- string, stop <-chan struct{}) {
	defer close(lines)
	for {
		s, err := ct.t.ReadLine()
		if err != nil && !errors.Is(err, term.ErrPasteIndicator) {
			return
		}
		select {
		case lines <- s:
		case <-stop:
			return
		}
	}
}

// Close restores the terminal's mode and leaves the input line as it is,
// moving to the next one.
func (ct *chatTerminal) Close() error {
	err := term.Restore(ct.fd, ct.state)
	io.WriteString(ct.out, "\n")
	return err
}

// interruptReader reads a terminal in raw mode, calling interrupt for a
// Ctrl-C, which it drops.
type interruptReader struct {
	r         io.Reader
	interrupt func()
}

func (ir interruptReader) Read(p []byte) (int, error) {
	for {
		n, err := ir.r.Read(p)
		if bytes.IndexByte(p[:n], ctrlC) >= 0 {
			ir.interrupt()
			n = copy(p, bytes.ReplaceAll(p[:n], []byte{ctrlC}, nil))
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}
