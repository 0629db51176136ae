package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestChatTerminal runs chat on a pseudo-terminal, as a person types: a
// line half typed when a message arrives is drawn again, intact, after
// the message (the message does not break it), and once finished it is
// sent whole; Ctrl-D ends the chat, and so does Ctrl-C (a byte, not a
// signal, in raw mode).
func TestChatTerminal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no pseudo-terminals on Windows")
	}
	a, b := pair(t, startRelay(t), startRelay(t))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	pc := startPTYChat(t, ctx, a)
	ptmx, shows, contains := pc.ptmx, pc.shows, pc.contains

	shows("that it chats", contains("chatting with b"))
	shows("its prompt", func(s string) bool { return strings.HasSuffix(s, chatPrompt) })
	io.WriteString(ptmx, "half a li")
	shows("the typed text", contains(chatPrompt+"half a li"))

	b.ok(t, "send", "a", "a reply")
	// The message goes above the input line, which is drawn again after
	// it, prompt and text intact.
	shows("the message and the input line after it", func(s string) bool {
		_, after, ok := strings.Cut(s, "b: a reply\r\n")
		return ok && strings.Contains(after, chatPrompt+"half a li")
	})
	if s := pc.screen.String(); strings.Contains(s, "half a lib: a reply") {
		t.Errorf("the message was printed into the input line: %q", s)
	}

	io.WriteString(ptmx, "ne\r")
	shows("the acknowledgement of the line", contains("✓ half a line"))
	b.receiveUntil(t, "a: half a line\n")

	io.WriteString(ptmx, "\x04") // Ctrl-D on an empty line
	pc.ends(t, "Ctrl-D")

	// Ctrl-C, a byte in raw mode, ends the chat as the signal would.
	pc = startPTYChat(t, ctx, a)
	pc.shows("its prompt", func(s string) bool { return strings.HasSuffix(s, chatPrompt) })
	io.WriteString(pc.ptmx, "not sent\x03")
	pc.ends(t, "Ctrl-C")
}

// ptyChat is "hush chat b" run on a pseudo-terminal.
type ptyChat struct {
	t      *testing.T
	ctx    context.Context
	ptmx   *os.File // the terminal's end: what is typed, what is shown
	screen *syncBuffer
	exited chan error
	copied chan struct{}
}

// startPTYChat starts chat for u on a new pseudo-terminal of 120 columns
// (skipping the test if there is none); it is killed when the test ends.
func startPTYChat(t *testing.T, ctx context.Context, u *user) *ptyChat {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, hushBinary, "--home", u.home, "chat", "b")
	cmd.Env = baseEnv()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	pc := &ptyChat{t: t, ctx: ctx, ptmx: ptmx, screen: new(syncBuffer), exited: make(chan error, 1), copied: make(chan struct{})}
	go func() {
		io.Copy(pc.screen, ptmx) // ends with EIO once chat exits
		close(pc.copied)
	}()
	go func() { pc.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("the terminal showed:\n%q", pc.screen.String())
		}
	})
	return pc
}

// shows waits until the screen so far meets cond.
func (pc *ptyChat) shows(what string, cond func(s string) bool) {
	pc.t.Helper()
	for !cond(pc.screen.String()) {
		select {
		case err := <-pc.exited:
			pc.exited <- err
			pc.t.Fatalf("chat exited (%v) before showing %s", err, what)
		case <-pc.ctx.Done():
			pc.t.Fatalf("chat did not show %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (pc *ptyChat) contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

// ends waits for chat to exit successfully after key.
func (pc *ptyChat) ends(t *testing.T, key string) {
	t.Helper()
	select {
	case err := <-pc.exited:
		pc.exited <- err
		if err != nil {
			t.Fatalf("chat ended at %s with %v", key, err)
		}
	case <-pc.ctx.Done():
		t.Fatalf("chat did not end at %s", key)
	}
	<-pc.copied
}
