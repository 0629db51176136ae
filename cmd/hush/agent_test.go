package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/queue"
)

// agentProcess is a running "hush agent".
type agentProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{} // closed when the process has exited
}

// startAgent runs "hush agent" for u, with the agent's flags extra, and
// returns once its socket answers. The agent is stopped with SIGTERM at
// the end of the test.
func (u *user) startAgent(t *testing.T, extra ...string) *agentProcess {
	t.Helper()
	args := append(append(append([]string{"--home", u.home}, u.flags...), "agent"), extra...)
	cmd := exec.Command(hushBinary, args...)
	cmd.Env = append(baseEnv(), u.env...)
	p := &agentProcess{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(time.Minute)
	for {
		conn, err := agent.Dial(t.Context(), u.home)
		if err == nil {
			_, err = conn.Version(t.Context())
			conn.Close()
			if err == nil {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("hush agent exited: %v\n%s", cmd.ProcessState, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hush agent does not answer within a minute: %v\n%s", err, p.stderr.String())
		}
	}
}

// stop stops the agent with SIGTERM and checks that it exits cleanly.
func (p *agentProcess) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("hush agent exited with %d after SIGTERM:\n%s", code, p.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Errorf("hush agent did not stop within a minute of SIGTERM")
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill kills the agent with SIGKILL, as a crash would.
func (p *agentProcess) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// connectUsers makes a and b contacts: a calls b bName, b calls a aName.
func connectUsers(t *testing.T, a, b *user, bName, aName string) {
	t.Helper()
	var inv struct {
		Link string `json:"link"`
	}
	jsonLine(t, a.ok(t, "--json", "invite", "--name", bName).stdout, &inv)
	b.ok(t, "accept", "--name", aName, inv.Link)
	a.receiveUntil(t, bName+" connected")
	b.receiveUntil(t, aName+" connected")
}

func newUsers(t *testing.T, relays []queue.Address, names ...string) []*user {
	var out []*user
	for _, n := range names {
		u := newUser(t, n)
		u.ok(t, "init", "--no-passphrase")
		for _, r := range relays {
			u.ok(t, "relays", "add", r.String())
		}
		out = append(out, u)
	}
	return out
}

// TestAgentChatAndSend: with the agent running, "chat" with one contact
// and "send" to another from a second process, at the same time; both are
// delivered.
func TestAgentChatAndSend(t *testing.T) {
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "a", "b", "c")
	a, b, c := us[0], us[1], us[2]
	connectUsers(t, a, b, "b", "a")
	connectUsers(t, a, c, "c", "a")

	a.startAgent(t)
	fi, err := os.Stat(filepath.Join(a.home, "hush.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the socket's mode is %#o, want 0600", fi.Mode().Perm())
	}
	mustFail(t, a.run(t, "", "agent"), 1, "already running")

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	chat := exec.CommandContext(ctx, hushBinary, "--home", a.home, "chat", "b")
	chat.Env = baseEnv()
	stdin, err := chat.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := chat.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	chat.Stderr = &stderr
	if err := chat.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		chat.Wait()
	}()

	// While the chat runs: a line typed into it, and a send to c from a
	// second process, at the same time.
	sent := make(chan result, 1)
	go func() { sent <- hush(t, nil, "", "--home", a.home, "send", "c", "to c while chatting") }()
	io.WriteString(stdin, "to b in the chat\n")
	r := <-sent
	mustSucceed(t, r, []string{"send"})
	if strings.TrimSpace(r.stdout) != "sent" {
		t.Errorf("send beside the chat printed %q", r.stdout)
	}
	if strings.Contains(r.stderr, "locked") {
		t.Errorf("send beside the chat: %s", r.stderr)
	}
	c.receiveUntil(t, "a: to c while chatting\n")
	b.receiveUntil(t, "a: to b in the chat\n")

	// The chat shows b's reply; c's message waits for a receive.
	c.ok(t, "send", "a", "from c")
	b.ok(t, "send", "a", "from b")
	var seen []string
	for found := false; !found; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("chat ended before showing the reply; it printed %q\nstderr:\n%s", seen, stderr.String())
			}
			seen = append(seen, line)
			found = line == "b: from b"
		case <-ctx.Done():
			t.Fatalf("chat did not show the reply; it printed %q", seen)
		}
	}
	out := a.receiveUntil(t, "c: from c\n")
	if strings.Contains(out, "from b") {
		t.Errorf("receive shows what the chat showed:\n%s", out)
	}
	stdin.Close()
	for range lines {
	}
	if err := chat.Wait(); err != nil {
		t.Fatalf("chat: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, l := range seen {
		if strings.Contains(l, "from c") {
			t.Errorf("the chat with b showed c's message: %q", seen)
		}
	}
	// Commands that only read go through the agent too.
	if got := a.states(t); got["b"] != "connected" || got["c"] != "connected" {
		t.Errorf("a's contacts through the agent: %v", got)
	}
}

// TestAgentKill kills the agent with SIGKILL while messages arrive and
// while a receive is printing them, starts it again, and counts: every
// message is shown exactly once.
func TestAgentKill(t *testing.T) {
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "a", "b")
	a, b := us[0], us[1]
	connectUsers(t, a, b, "b", "a")

	const n = 12
	seen := make(map[string]int)
	var printed strings.Builder
	collect := func(out string) {
		printed.WriteString(out)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var ev struct {
				Event, Contact, Text string
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("receive --json printed %q: %v", line, err)
			}
			if ev.Event == "message" {
				seen[ev.Text]++
			}
		}
	}
	all := func() bool {
		for i := 1; i <= n; i++ {
			if seen[fmt.Sprintf("m%d", i)] == 0 {
				return false
			}
		}
		return true
	}

	p := a.startAgent(t)
	sender := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			r := hush(t, nil, "", "--home", b.home, "send", "a", fmt.Sprintf("m%d", i))
			if r.code != 0 {
				sender <- fmt.Errorf("send m%d: %s", i, r.stderr)
				return
			}
		}
		sender <- nil
	}()
	kills := 0
	senderDone := false
	for run := 0; run < 60 && !(senderDone && all() && kills == 2); run++ {
		select {
		case err := <-sender:
			if err != nil {
				t.Fatal(err)
			}
			senderDone = true
		default:
		}
		switch {
		case run == 1 || run == 3:
			// Killed while a receive runs (and messages arrive).
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			cmd := exec.CommandContext(ctx, hushBinary, "--home", a.home, "--json", "receive", "--wait", "3s")
			cmd.Env = baseEnv()
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			p.kill()
			kills++
			cmd.Wait() // it fails: the agent stopped
			cancel()
			collect(out.String())
			if _, err := os.Stat(filepath.Join(a.home, "hush.sock")); err != nil {
				t.Errorf("no stale socket after SIGKILL: %v", err)
			}
			p = a.startAgent(t) // replaces the stale socket
		default:
			collect(a.ok(t, "--json", "receive", "--wait", "1s").stdout)
		}
	}
	if !senderDone {
		if err := <-sender; err != nil {
			t.Fatal(err)
		}
	}
	collect(a.ok(t, "--json", "receive", "--wait", "1s").stdout)
	if kills != 2 {
		t.Fatalf("killed the agent %d times, want 2", kills)
	}
	for i := 1; i <= n; i++ {
		if k := seen[fmt.Sprintf("m%d", i)]; k != 1 {
			t.Errorf("m%d shown %d times, want once", i, k)
		}
	}
	if len(seen) != n {
		t.Errorf("messages shown: %v, want m1..m%d", seen, n)
	}
	if t.Failed() {
		t.Logf("printed:\n%s", printed.String())
	}
}

// TestEchoBot runs the example bot (examples/echobot) on an agent: it
// answers the messages of a real client through real relays.
func TestEchoBot(t *testing.T) {
	bot := filepath.Join(t.TempDir(), "echobot")
	args := []string{"build", "-o", bot}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/hushrelay/hush/examples/echobot")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the echo bot: %v\n%s", err, out)
	}
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "bot", "user")
	b, u := us[0], us[1]
	b.startAgent(t)
	// The bot's contacts are made through its agent.
	var inv struct {
		Link string `json:"link"`
	}
	jsonLine(t, u.ok(t, "--json", "invite", "--name", "bot").stdout, &inv)
	b.ok(t, "accept", "--name", "user", inv.Link)
	u.receiveUntil(t, "bot connected")

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bot, "--home", b.home)
	cmd.Env = baseEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u.ok(t, "send", "bot", "ping")
	u.ok(t, "send", "bot", "<b>&</b> pong")
	out := u.receiveUntil(t, "bot: echo: ping\n", "bot: echo: <b>&</b> pong\n")
	if n := strings.Count(out, "echo: ping"); n != 1 {
		t.Errorf("the echo of ping came %d times:\n%s", n, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("echobot after SIGTERM: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stdout.String(), "answered user\n"); n != 2 {
		t.Errorf("echobot answered %d times, want 2:\n%s", n, stdout.String())
	}
}

// TestAgentAckAnswerLost takes the agent through the window that
// TestAgentKill hits by chance: the agent committed an ack, and is killed
// before its answer reaches the consumer. The consumer's takenAfterAll
// then tells, from the store opened in-process (the agent is gone) and
// from the next agent, that its ack took the event, and that an event it
// did not ack is not taken and still delivered, once.
func TestAgentAckAnswerLost(t *testing.T) {
	relays := []queue.Address{startRelay(t), startRelay(t)}
	us := newUsers(t, relays, "a", "b")
	a, b := us[0], us[1]
	connectUsers(t, a, b, "b", "a")
	b.ok(t, "send", "a", "m1")
	b.ok(t, "send", "a", "m2")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p := a.startAgent(t)
	conn, err := agent.Dial(ctx, a.home)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := conn.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]uint64)
	for got["m1"] == 0 || got["m2"] == 0 {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatal("the subscription ended")
			}
			if ev.Kind == client.EventMessage {
				got[ev.Text] = ev.ID
			} else if _, err := conn.Ack(ctx, ev.ID); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("m1 and m2 not received: %v", got)
		}
	}
	mine, other := rand.Text(), rand.Text()
	if taken, err := conn.AckAs(ctx, got["m1"], mine); err != nil || !taken {
		t.Fatalf("AckAs m1: %v, %v; want taken", taken, err)
	}
	// The answer came, but the agent dies now: as if it had not.
	p.kill()
	conn.Close()

	c := &cmd{globals: globals{home: a.home}, env: environment{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		getenv:       func(string) string { return "" },
		readPassword: func(string) ([]byte, error) { return nil, errNoTerminal },
	}}
	check := func(via string) {
		t.Helper()
		for _, tc := range []struct {
			text, token string
			want        bool
		}{{"m1", mine, true}, {"m1", other, false}, {"m2", mine, false}} {
			took, err := c.takenAfterAll(ctx, got[tc.text], tc.token)
			if err != nil || took != tc.want {
				t.Errorf("%s: %s taken with the %v token: %v, %v; want %v", via, tc.text, tc.token == mine, took, err, tc.want)
			}
		}
	}
	check("store opened in-process")
	a.startAgent(t)
	check("the next agent")
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(a.ok(t, "--json", "receive", "--wait", "1s").stdout), "\n") {
		if strings.Contains(line, `"message"`) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"m2"`) {
		t.Errorf("receive after the kill printed messages %q, want m2 alone", lines)
	}
}
