package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// hushBinary is the executable built by TestMain (the relays the tests
// talk to are relaytest's).
var hushBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hush-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	hushBinary = filepath.Join(dir, "hush"+exe)
	args := []string{"build", "-o", hushBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/hushrelay/hush/cmd/hush")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building github.com/hushrelay/hush/cmd/hush: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// baseEnv is the environment of every run: nothing of hush's from the
// developer's shell, and, unless $GORACE says otherwise, no second of
// sleep at the exit of a binary built with the race detector.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUSH_") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// startRelay runs a relay (runRelay) on a fresh data directory with no
// password, and returns its address.
func startRelay(t *testing.T) queue.Address {
	t.Helper()
	return runRelay(t, filepath.Join(t.TempDir(), "relay")).Addr
}

// runRelay runs "hush-relay start" on 127.0.0.1 with the data directory
// dir (relaytest.StartWith), built with the race detector when these tests
// are, and returns once it printed its address. flags are added to the
// command line; without any, the relay has no password. At the end of the
// test it is stopped with SIGTERM and must exit within a minute.
func runRelay(t *testing.T, dir string, flags ...string) *relaytest.Process {
	t.Helper()
	p := relaytest.StartWith(t, dir, relaytest.Options{Flags: flags, Race: raceEnabled})
	t.Cleanup(p.Terminate)
	return p
}

// result is a finished hush run.
type result struct {
	stdout, stderr string
	code           int
}

// user is one person's hush home, and the flags and environment that
// every one of their commands gets.
type user struct {
	name  string
	home  string
	flags []string // global flags after --home
	env   []string
}

func newUser(t *testing.T, name string) *user {
	return &user{name: name, home: filepath.Join(t.TempDir(), name)}
}

// run runs "hush --home HOME FLAGS... args..." to completion, bounded in
// time, with standard input from stdin (or empty).
func (u *user) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return hush(t, u.env, stdin, append(append([]string{"--home", u.home}, u.flags...), args...)...)
}

// ok runs args and fails the test unless hush succeeds.
func (u *user) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := u.run(t, "", args...)
	mustSucceed(t, r, args)
	return r
}

// hush runs the binary to completion, bounded in time.
func hush(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hushBinary, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("hush %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, r.stdout, r.stderr)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func mustSucceed(t *testing.T, r result, args []string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("hush %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
}

// mustFail fails the test unless r exited with status code and its
// standard error holds every one of want.
func mustFail(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("standard error lacks %q:\n%s", w, r.stderr)
		}
	}
}

// receiveUntil runs "hush receive" until everything in want has been
// printed, and returns all it printed. Each run exits after a second
// without news, so a slow machine may need several; it gives up after
// 30 runs.
func (u *user) receiveUntil(t *testing.T, want ...string) string {
	t.Helper()
	var all strings.Builder
	done := untilBound(func() bool {
		r := u.ok(t, "receive", "--wait", "1s")
		all.WriteString(r.stdout)
		for _, w := range want {
			if !strings.Contains(all.String(), w) {
				return false
			}
		}
		return true
	})
	if !done {
		t.Fatalf("%s: hush receive did not print all of %q in %v of runs; it printed:\n%s", u.name, want, receiveBound, all.String())
	}
	return all.String()
}

// receiveBound bounds how long a test runs commands again and again (hush
// receive, mostly) while it waits for something to arrive. A receive
// ends after a second with nothing new, which on a loaded machine can be
// before its relays are even connected: so the runs are bounded in time,
// not in number.
const receiveBound = 3 * time.Minute

// untilBound calls f until it reports true, and then reports true, or
// until receiveBound has passed, and then reports false.
func untilBound(f func() bool) bool {
	for end := time.Now().Add(receiveBound); ; {
		if f() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// jsonLine decodes the single JSON line of out into v.
func jsonLine(t *testing.T, out string, v any) {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want one line of JSON, got:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
}

// contactsJSON is the output of "hush --json contacts".
type contactsJSON struct {
	Contacts []struct {
		Name        string    `json:"name"`
		State       string    `json:"state"`
		Created     time.Time `json:"created"`
		SharedRelay bool      `json:"shared_relay"`
		Outbox      int       `json:"outbox"`
	} `json:"contacts"`
}

// states returns the state of each contact of u.
func (u *user) states(t *testing.T) map[string]string {
	t.Helper()
	var out contactsJSON
	jsonLine(t, u.ok(t, "--json", "contacts").stdout, &out)
	m := make(map[string]string)
	for _, c := range out.Contacts {
		if c.Created.IsZero() {
			t.Errorf("%s's contact %s has no creation time", u.name, c.Name)
		}
		m[c.Name] = c.State
	}
	return m
}

// hasQR reports whether out holds a QR code of half blocks.
func hasQR(out string) bool {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Count(line, "█") >= 10 {
			n++
		}
	}
	return n >= 10
}

// TestJourney follows the README's quick start for users: two people, two
// relays, an invitation, a message each way.
func TestJourney(t *testing.T) {
	r1, r2 := startRelay(t), startRelay(t)

	alice := newUser(t, "alice")
	r := alice.ok(t, "init", "--no-passphrase")
	if !strings.Contains(r.stdout, "initialized") {
		t.Errorf("init printed:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(alice.home, "hush.key")); err != nil {
		t.Errorf("init --no-passphrase made no key file: %v", err)
	}
	if fi, err := os.Stat(alice.home); err != nil {
		t.Fatal(err)
	} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Errorf("home directory: mode %#o, want 0700", fi.Mode().Perm())
	}

	bob := newUser(t, "bob")
	pw := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(pw, []byte("correct horse battery staple\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bob.ok(t, "init", "--passphrase-file", pw)
	if _, err := os.Stat(filepath.Join(bob.home, "hush.key")); err == nil {
		t.Error("init --passphrase-file made a key file")
	}
	bob.flags = []string{"--passphrase-file", pw}

	for _, u := range []*user{alice, bob} {
		for _, a := range []queue.Address{r1, r2} {
			r := u.ok(t, "relays", "add", a.String())
			if !strings.Contains(r.stdout, a.HostPort()) {
				t.Errorf("relays add printed:\n%s", r.stdout)
			}
		}
		var list struct {
			Relays []struct {
				Address string `json:"address"`
			} `json:"relays"`
		}
		jsonLine(t, u.ok(t, "--json", "relays", "list").stdout, &list)
		if len(list.Relays) != 2 {
			t.Fatalf("%s: relays list: %+v, want both relays", u.name, list)
		}
		r := u.ok(t, "relays", "list")
		if !strings.Contains(r.stdout, r1.String()) || !strings.Contains(r.stdout, r2.String()) {
			t.Errorf("relays list printed:\n%s", r.stdout)
		}
	}

	// The invitation: the link alone on the first line, then its QR code.
	r = alice.ok(t, "invite", "--name", "bob")
	link, _, _ := strings.Cut(r.stdout, "\n")
	if link == "" || strings.ContainsAny(link, " \t") {
		t.Fatalf("invite's first line is %q, want the link alone", link)
	}
	if !hasQR(r.stdout) {
		t.Errorf("invite printed no QR code:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "share") {
		t.Errorf("invite with two relays warns:\n%s", r.stderr)
	}
	if got := alice.states(t); got["bob"] != "invited" {
		t.Errorf("alice's contacts after invite: %v, want bob invited", got)
	}

	// Sending before the invitation is accepted fails clearly.
	mustFail(t, alice.run(t, "", "send", "bob", "too early"), 1, "not connected")

	r = bob.ok(t, "accept", link, "--name", "alice")
	if !strings.Contains(r.stdout, "alice") {
		t.Errorf("accept printed:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "share") {
		t.Errorf("accept with two relays warns:\n%s", r.stderr)
	}
	if got := bob.states(t); got["alice"] != "joining" {
		t.Errorf("bob's contacts after accept: %v, want alice joining", got)
	}

	alice.receiveUntil(t, "bob connected")
	bob.receiveUntil(t, "alice connected")

	r = alice.ok(t, "send", "bob", "hi")
	if strings.TrimSpace(r.stdout) != "sent" {
		t.Errorf("send printed %q, want \"sent\"", r.stdout)
	}
	bob.receiveUntil(t, "alice: hi\n")

	// The JSON variants.
	var sent struct {
		Seq    uint64 `json:"seq"`
		Status string `json:"status"`
	}
	jsonLine(t, bob.ok(t, "--json", "send", "--timeout", "1m", "alice", "yo", "there").stdout, &sent)
	if sent.Status != "sent" || sent.Seq == 0 {
		t.Errorf("send --json: %+v, want a sequence number and status sent", sent)
	}
	var got []map[string]any
	untilBound(func() bool {
		r := alice.ok(t, "--json", "receive", "--wait", "1s")
		found := false
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if line == "" {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("receive --json printed %q: %v", line, err)
			}
			got = append(got, ev)
			if ev["event"] == "message" && ev["contact"] == "bob" && ev["text"] == "yo there" && ev["seq"] == float64(sent.Seq) {
				found = true
			}
		}
		if len(got) > 100 {
			t.Fatal("too many events")
		}
		return found
	})
	if len(got) == 0 || got[len(got)-1]["event"] != "message" {
		t.Fatalf("alice's receive --json printed %v, want bob's message last", got)
	}

	// Messages are shown once.
	r = alice.ok(t, "receive", "--wait", "1s")
	if strings.Contains(r.stdout, "yo there") {
		t.Errorf("a second receive shows the message again:\n%s", r.stdout)
	}

	for _, u := range []*user{alice, bob} {
		other := map[*user]string{alice: "bob", bob: "alice"}[u]
		if got := u.states(t); got[other] != "connected" || len(got) != 1 {
			t.Errorf("%s's contacts: %v, want %s connected", u.name, got, other)
		}
		r := u.ok(t, "contacts")
		if !strings.Contains(r.stdout, other) || !strings.Contains(r.stdout, "connected") {
			t.Errorf("%s's contacts printed:\n%s", u.name, r.stdout)
		}
	}

	// A link works once.
	carol := newUser(t, "carol")
	carol.ok(t, "init", "--no-passphrase")
	carol.ok(t, "relays", "add", r1.String())
	carol.ok(t, "relays", "add", r2.String())
	mustFail(t, carol.run(t, "", "accept", link), 1, "invitation was already used")

	// The passphrase: wrong, missing, from the environment.
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("incorrect horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hush(t, nil, "", "--home", bob.home, "--passphrase-file", wrong, "contacts"), 1, "wrong passphrase")
	mustFail(t, hush(t, []string{"HUSH_PASSPHRASE=nope"}, "", "--home", bob.home, "contacts"), 1, "wrong passphrase", "$HUSH_PASSPHRASE")
	mustFail(t, hush(t, nil, "", "--home", bob.home, "contacts"), 1, "passphrase", "--passphrase-file")
	r = hush(t, []string{"HUSH_PASSPHRASE=correct horse battery staple", "HUSH_HOME=" + bob.home}, "", "contacts")
	mustSucceed(t, r, []string{"contacts"})
	if !strings.Contains(r.stdout, "alice") {
		t.Errorf("contacts with $HUSH_HOME and $HUSH_PASSPHRASE printed:\n%s", r.stdout)
	}
	// $HUSH_PASSPHRASE does not get in the way of a store with a key file.
	r = hush(t, []string{"HUSH_PASSPHRASE=for another store"}, "", "--home", alice.home, "contacts")
	mustSucceed(t, r, []string{"contacts"})
}

// pair makes two users who know the relays and are connected to each
// other, a calling b "b" and b calling a "a".
func pair(t *testing.T, relays ...queue.Address) (a, b *user) {
	t.Helper()
	return pairWith(t, nil, relays...)
}

// pairWith is pair for users whose commands all get the global flags.
func pairWith(t *testing.T, flags []string, relays ...queue.Address) (a, b *user) {
	t.Helper()
	a, b = newUser(t, "a"), newUser(t, "b")
	for _, u := range []*user{a, b} {
		u.flags = flags
		u.ok(t, "init", "--no-passphrase")
		for _, r := range relays {
			u.ok(t, "relays", "add", r.String())
		}
	}
	var inv struct {
		Link string `json:"link"`
	}
	r := a.ok(t, "--json", "invite", "--name", "b")
	jsonLine(t, r.stdout, &inv)
	if inv.Link == "" {
		t.Fatalf("invite --json printed %s", r.stdout)
	}
	b.ok(t, "accept", "--name", "a", inv.Link)
	a.receiveUntil(t, "b connected")
	b.receiveUntil(t, "a connected")
	return a, b
}

func TestSingleRelay(t *testing.T) {
	relay := startRelay(t)
	a, b := newUser(t, "a"), newUser(t, "b")
	for _, u := range []*user{a, b} {
		u.ok(t, "init", "--no-passphrase")
		u.ok(t, "relays", "add", relay.String())
	}
	r := a.ok(t, "invite")
	link, _, _ := strings.Cut(r.stdout, "\n")
	if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "share") {
		t.Errorf("invite with one relay does not warn:\n%s", r.stderr)
	}
	r = b.ok(t, "accept", link)
	if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "share") {
		t.Errorf("accept with one relay does not warn:\n%s", r.stderr)
	}
	// Automatic names: one contact each, whatever it is called.
	names := func(u *user) string {
		var out contactsJSON
		jsonLine(t, u.ok(t, "--json", "contacts").stdout, &out)
		if len(out.Contacts) != 1 || out.Contacts[0].Name == "" {
			t.Fatalf("%s's contacts: %+v, want one", u.name, out)
		}
		return out.Contacts[0].Name
	}
	toB, toA := names(a), names(b)
	a.receiveUntil(t, toB+" connected")
	b.receiveUntil(t, toA+" connected")
	a.ok(t, "send", toB, "over", "one", "relay")
	b.receiveUntil(t, toA+": over one relay\n")

	var out contactsJSON
	jsonLine(t, b.ok(t, "--json", "contacts").stdout, &out)
	if !out.Contacts[0].SharedRelay || out.Contacts[0].State != "connected" {
		t.Errorf("b's contacts: %+v, want a connected contact sharing one relay", out)
	}
	if r := b.ok(t, "contacts"); !strings.Contains(r.stdout, "share") {
		t.Errorf("contacts does not show the shared relay:\n%s", r.stdout)
	}
}

// chatProcess is a running "hush chat".
type chatProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // lines of its standard output, closed at its end
	stderr *syncBuffer
	wg     sync.WaitGroup
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startChat runs "hush --home HOME FLAGS... chat args..." for u until the
// test ends (or wait).
func startChat(t *testing.T, ctx context.Context, u *user, args ...string) *chatProcess {
	t.Helper()
	c := &chatProcess{lines: make(chan string, 100), stderr: new(syncBuffer)}
	c.cmd = exec.CommandContext(ctx, hushBinary, append(append(append([]string{"--home", u.home}, u.flags...), "chat"), args...)...)
	c.cmd.Env = append(baseEnv(), u.env...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.wg.Go(func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	})
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.wg.Wait()
		c.cmd.Wait()
		if t.Failed() {
			t.Logf("chat's stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

// wait closes chat's input and waits for it to exit, returning what it
// printed meanwhile.
func (c *chatProcess) wait() ([]string, error) {
	c.stdin.Close()
	var rest []string
	for l := range c.lines {
		rest = append(rest, l)
	}
	c.wg.Wait()
	return rest, c.cmd.Wait()
}

// expect reads chat's output lines until one for which match is true.
func (c *chatProcess) expect(t *testing.T, ctx context.Context, what string, match func(line string) bool) {
	t.Helper()
	var seen []string
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("chat ended before %s; it printed %q\nstderr:\n%s", what, seen, c.stderr.String())
			}
			if match(line) {
				return
			}
			seen = append(seen, line)
		case <-ctx.Done():
			t.Fatalf("chat did not show %s; it printed %q\nstderr:\n%s", what, seen, c.stderr.String())
		}
	}
}

func TestChat(t *testing.T) {
	a, b := pair(t, startRelay(t), startRelay(t))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	chat := startChat(t, ctx, a, "b")
	io.WriteString(chat.stdin, "line one\n\n")
	b.receiveUntil(t, "a: line one\n")
	b.ok(t, "send", "a", "a reply")
	chat.expect(t, ctx, "the reply", func(line string) bool { return line == "b: a reply" })
	io.WriteString(chat.stdin, "line two\r\n")
	if _, err := chat.wait(); err != nil {
		t.Fatalf("chat after the end of its input: %v\nstderr:\n%s", err, chat.stderr.String())
	}
	if strings.Contains(chat.stderr.String(), "queued") {
		t.Errorf("chat left messages queued:\n%s", chat.stderr.String())
	}
	// Each acknowledgement names the line it confirms, once (and the
	// second tick, "✓✓ line", is another).
	for _, ack := range []string{"✓ line one\n", "✓ line two\n"} {
		if n := strings.Count("\n"+chat.stderr.String(), "\n"+ack); n != 1 {
			t.Errorf("chat printed %q %d times:\n%s", ack, n, chat.stderr.String())
		}
	}
	out := b.receiveUntil(t, "a: line two\n")
	if strings.Contains(out, "a: \n") {
		t.Errorf("the empty line was sent:\n%s", out)
	}
}

// TestChatRelayDown kills the relay of a chat with SIGKILL and starts it
// again: chat says that the relay is unreachable, then that it is back
// (on standard error as text, as events with --json), and a line typed
// meanwhile arrives.
func TestChatRelayDown(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL on Windows")
	}
	dir := filepath.Join(t.TempDir(), "relay")
	p := runRelay(t, dir)
	a, b := pair(t, p.Addr)
	host := p.Addr.HostPort()
	for _, asJSON := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		var chat *chatProcess
		if asJSON {
			chat = startChat(t, ctx, &user{home: a.home, flags: []string{"--json"}}, "b")
		} else {
			chat = startChat(t, ctx, a, "b")
		}
		// The chat is connected once a line typed gets through.
		io.WriteString(chat.stdin, "before\n")
		b.receiveUntil(t, "a: before\n")
		p.Kill()
		io.WriteString(chat.stdin, "while down\n")
		status := func(text, event string) func(string) bool {
			return func(line string) bool {
				if !asJSON {
					return strings.Contains(chat.stderr.String(), "relay "+host+" "+text)
				}
				var ev struct{ Event, Relay string }
				return json.Unmarshal([]byte(line), &ev) == nil && ev.Event == event && ev.Relay == host
			}
		}
		if asJSON {
			chat.expect(t, ctx, "the relay down", status("", "relay-down"))
		} else {
			waitFor(t, ctx, "the relay down", status("unreachable", ""))
		}
		p.Restart()
		if asJSON {
			chat.expect(t, ctx, "the relay back", status("", "relay-up"))
		} else {
			waitFor(t, ctx, "the relay back", status("is back", ""))
		}
		b.receiveUntil(t, "a: while down\n")
		if _, err := chat.wait(); err != nil {
			t.Fatalf("chat: %v\nstderr:\n%s", err, chat.stderr.String())
		}
		cancel()
	}
}

// waitFor polls cond (given no line) until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func(string) bool) {
	t.Helper()
	for !cond("") {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestRelayDown checks that a message sent while the relays are down is
// queued, and sent by the next receive once they are back.
func TestRelayDown(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	dirs := []string{filepath.Join(t.TempDir(), "r1"), filepath.Join(t.TempDir(), "r2")}
	p1, p2 := runRelay(t, dirs[0]), runRelay(t, dirs[1])
	a, b := pair(t, p1.Addr, p2.Addr)
	p1.Terminate()
	p2.Terminate()

	var sent struct {
		Status string `json:"status"`
	}
	jsonLine(t, a.ok(t, "--json", "send", "--timeout", "2s", "b", "while down").stdout, &sent)
	if sent.Status != "queued" {
		t.Fatalf("send while the relays are down: status %q, want queued", sent.Status)
	}
	if r := a.ok(t, "send", "--timeout", "1s", "b", "still down"); !strings.Contains(r.stdout, "queued: will be retried") {
		t.Errorf("send while the relays are down printed:\n%s", r.stdout)
	}
	var out contactsJSON
	jsonLine(t, a.ok(t, "--json", "contacts").stdout, &out)
	if len(out.Contacts) != 1 || out.Contacts[0].Outbox != 2 {
		t.Errorf("contacts while the relays are down: %+v, want 2 messages queued", out)
	}
	r := a.run(t, "", "receive", "--wait", "10ms", "--timeout", "10ms")
	mustFail(t, r, 1, "could not reach any of the 2 relays")
	if !strings.Contains(r.stderr, "2 messages are still queued") {
		t.Errorf("receive while the relays are down does not warn about the queue:\n%s", r.stderr)
	}
	mustFail(t, a.run(t, "", "invite", "--timeout", "2s"), 1, "could not reach the relay within 2s")

	// Back, on the same ports and with the same identities.
	p1.Restart()
	p2.Restart()
	untilBound(func() bool {
		a.ok(t, "receive", "--wait", "1s")
		jsonLine(t, a.ok(t, "--json", "contacts").stdout, &out)
		return out.Contacts[0].Outbox == 0
	})
	b.receiveUntil(t, "a: while down\na: still down\n")
}

func TestDemo(t *testing.T) {
	r := hush(t, nil, "", "demo")
	mustSucceed(t, r, []string{"demo"})
	for _, want := range []string{"hello bob", "hello alice", "alice: bob connected", "bob: alice connected"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo did not print %q:\n%s", want, r.stdout)
		}
	}
	r = hush(t, nil, "", "--json", "--transport", "tcp", "demo")
	mustSucceed(t, r, []string{"--json", "demo"})
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var step struct {
			MS   *int64 `json:"ms"`
			Step string `json:"step"`
		}
		if err := json.Unmarshal([]byte(line), &step); err != nil || step.MS == nil || step.Step == "" {
			t.Errorf("demo --json printed %q (%v)", line, err)
		}
	}
	if !strings.Contains(r.stdout, "hello alice") {
		t.Errorf("demo --json did not print the second message:\n%s", r.stdout)
	}
}

func TestErrors(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: hush"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"--home", home, "send", "bob"}, 2, "missing NAME TEXT"},
		{[]string{"--home", home, "contacts", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--home", home, "relays"}, 2, "add, list or remove"},
		{[]string{"--home", home, "invite", "--bogus"}, 2, "usage: hush invite"},
		{[]string{"--transport", "udp", "demo"}, 2, "--transport"},
		{[]string{"--home", home, "--isolation", "circuit", "contacts"}, 2, "--isolation must be"},
		{[]string{"--home", home, "--routing", "sometimes", "contacts"}, 2, "--routing must be"},
		{[]string{"--home", home, "init", "--no-passphrase", "--passphrase-file", "x"}, 2, "only one of"},
		{[]string{"--home", home, "contacts"}, 1, `run "hush init"`},
		{[]string{"--home", home, "init"}, 1, "--no-passphrase"}, // no terminal to ask
	} {
		mustFail(t, hush(t, nil, "", tc.args...), tc.code, tc.want)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"send", "-h"}, {"relays", "help"}} {
		r := hush(t, nil, "", args...)
		mustSucceed(t, r, args)
		if !strings.Contains(r.stdout, "usage: hush") {
			t.Errorf("%v printed no usage:\n%s", args, r.stdout)
		}
	}

	// $HUSH_PASSPHRASE for init; a second init is refused.
	r := hush(t, []string{"HUSH_PASSPHRASE=from the environment"}, "", "--home", home, "--json", "init")
	mustSucceed(t, r, []string{"init"})
	var init struct {
		Home       string `json:"home"`
		Passphrase bool   `json:"passphrase"`
	}
	jsonLine(t, r.stdout, &init)
	if init.Home != home || !init.Passphrase {
		t.Errorf("init --json: %+v", init)
	}
	mustFail(t, hush(t, nil, "", "--home", home, "init", "--no-passphrase"), 1, "already initialized")
	env := []string{"HUSH_PASSPHRASE=from the environment"}
	mustFail(t, hush(t, env, "", "--home", home, "relays", "add", "hush://nonsense"), 1, "not a relay address")
	mustFail(t, hush(t, env, "", "--home", home, "invite"), 1, "no relay configured", "hush relays add")
	mustFail(t, hush(t, env, "", "--home", home, "accept", "hush:/invite#garbage"), 1, "no relay configured")
	mustFail(t, hush(t, env, "", "--home", home, "send", "nobody", "hi"), 1, `no contact named "nobody"`)
	mustFail(t, hush(t, env, "", "--home", home, "chat", "nobody"), 1, `no contact named "nobody"`)
	r = hush(t, env, "", "--home", home, "receive", "--wait", "10ms")
	mustSucceed(t, r, []string{"receive"})
	if r.stdout != "" {
		t.Errorf("receive with nothing to receive printed %q", r.stdout)
	}
}

func TestBadLink(t *testing.T) {
	relay := startRelay(t)
	u := newUser(t, "u")
	u.ok(t, "init", "--no-passphrase")
	u.ok(t, "relays", "add", relay.String())
	for _, link := range []string{"hush:/invite#garbage", "https://example.org/"} {
		r := u.run(t, "", "accept", link)
		mustFail(t, r, 1, "not a valid hush invitation link: it was changed or cut")
		if n := strings.Count(r.stderr, "invitation link"); n != 1 {
			t.Errorf("the message says \"invitation link\" %d times:\n%s", n, r.stderr)
		}
	}
	if got := u.states(t); len(got) != 0 {
		t.Errorf("a bad link made contacts: %v", got)
	}
}

// TestVersion checks "hush version" and "hush --version", as text and as
// one JSON object.
func TestVersion(t *testing.T) {
	var text []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := hush(t, nil, "", args...)
		mustSucceed(t, r, args)
		if !strings.HasPrefix(r.stdout, "hush ") || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%v printed %q", args, r.stdout)
		}
		text = append(text, r.stdout)
	}
	if text[0] != text[1] {
		t.Errorf("hush version printed %q, hush --version %q", text[0], text[1])
	}
	for _, args := range [][]string{{"--json", "version"}, {"version", "--json"}, {"--json", "--version"}} {
		r := hush(t, nil, "", args...)
		mustSucceed(t, r, args)
		var v struct {
			Program, Version, Go, OS, Arch string
		}
		jsonLine(t, r.stdout, &v)
		if v.Program != "hush" || "hush "+v.Version+"\n" != text[0] || !strings.HasPrefix(v.Go, "go") || v.OS != runtime.GOOS || v.Arch != runtime.GOARCH {
			t.Errorf("%v printed %s", args, r.stdout)
		}
	}
}

// timestampRE matches the one format of times in JSON output: RFC 3339 in
// UTC with milliseconds.
var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// dateRE matches a string that starts like a date, in any format.
var dateRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d`)

// checkTimes checks every string value in the JSON lines of out that
// starts like a date against timestampRE, and returns how many there were.
func checkTimes(t *testing.T, what, out string) int {
	t.Helper()
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if dateRE.MatchString(v) {
				n++
				if !timestampRE.MatchString(v) {
					t.Errorf("%s: time %q is not RFC 3339 in UTC with milliseconds", what, v)
				}
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%s: %v in %s", what, err, line)
		}
		walk(v)
	}
	return n
}

// TestJSONTimes scans the JSON of contacts (with an invitation pending,
// which has an expiry), receive, chat and send for times, and checks
// that each is in the one format.
func TestJSONTimes(t *testing.T) {
	a, b := pair(t, startRelay(t), startRelay(t))
	a.ok(t, "invite", "--name", "pending")
	n := checkTimes(t, "contacts", a.ok(t, "--json", "contacts").stdout)
	if n < 3 { // two created, one expires
		t.Errorf("contacts --json showed %d times, want at least 3", n)
	}
	b.ok(t, "send", "a", "one")
	var received strings.Builder
	for i := 0; i < 30 && !strings.Contains(received.String(), `"message"`); i++ {
		received.WriteString(a.ok(t, "--json", "receive", "--wait", "1s").stdout)
	}
	if n := checkTimes(t, "receive", received.String()); n == 0 {
		t.Errorf("receive --json showed no time:\n%s", received.String())
	}
	b.ok(t, "send", "a", "two")
	chat := a.run(t, "", "--json", "chat", "b", "--timeout", "30s")
	mustSucceed(t, chat, []string{"chat"})
	checkTimes(t, "chat", chat.stdout)
	checkTimes(t, "send", a.ok(t, "--json", "send", "b", "three").stdout)
	checkTimes(t, "relays list", a.ok(t, "--json", "relays", "list").stdout)
}

// TestChatPipe pipes lines into "hush --json chat" and counts its sent
// events: exactly one per line, every seq once.
func TestChatPipe(t *testing.T) {
	a, b := pair(t, startRelay(t), startRelay(t))
	for _, n := range []int{3, 10} {
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, "line %d of %d\n", i+1, n)
		}
		r := a.run(t, in.String(), "--json", "chat", "b", "--timeout", "60s")
		mustSucceed(t, r, []string{"chat"})
		seqs := make(map[uint64]int)
		for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			var ev struct {
				Event string `json:"event"`
				Seq   uint64 `json:"seq"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%v in %q", err, line)
			}
			if ev.Event == "sent" {
				seqs[ev.Seq]++
			}
		}
		if len(seqs) != n {
			t.Errorf("%d lines piped into chat: %d distinct sent events:\n%s\nstderr:\n%s", n, len(seqs), r.stdout, r.stderr)
		}
		for seq, k := range seqs {
			if k != 1 {
				t.Errorf("seq %d: %d sent events", seq, k)
			}
		}
		out := b.receiveUntil(t, fmt.Sprintf("a: line %d of %d\n", n, n))
		for i := range n {
			if c := strings.Count(out, fmt.Sprintf("a: line %d of %d\n", i+1, n)); c != 1 {
				t.Errorf("line %d of %d arrived %d times", i+1, n, c)
			}
		}
	}
}

// TestCommandHelp checks that "hush CMD -h" lists the command's own flags
// and, apart, only the global flags it takes.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		flags   []string // the command's own flags
		globals string   // the global flags line
	}{
		{[]string{"version", "-h"}, nil, "--json\n"},
		{[]string{"send", "-h"}, []string{"-timeout"}, "--home, --json, --transport, --tor, --socks, --isolation, --routing, --cover, --passphrase-file, --verbose\n"},
		{[]string{"init", "--help"}, []string{"-no-passphrase"}, "--home, --json, --passphrase-file, --verbose\n"},
		{[]string{"demo", "-h"}, nil, "--json, --transport, --verbose\n"},
	} {
		r := hush(t, nil, "", tc.args...)
		mustSucceed(t, r, tc.args)
		own, globals, ok := strings.Cut(r.stdout, "\nGlobal flags")
		if !ok || globals != ` (see "hush help"): `+tc.globals {
			t.Errorf("%v: the global flags are not %q:\n%s", tc.args, tc.globals, r.stdout)
		}
		var listed []string
		for _, line := range strings.Split(own, "\n") {
			if f, ok := strings.CutPrefix(line, "  -"); ok {
				listed = append(listed, "-"+strings.Fields(f)[0])
			}
		}
		if !slices.Equal(listed, tc.flags) {
			t.Errorf("%v lists the flags %q, want %q:\n%s", tc.args, listed, tc.flags, r.stdout)
		}
	}
	// A global flag that the command does not take is refused after it,
	// and still taken before it.
	mustFail(t, hush(t, nil, "", "version", "--home", "x"), 2, "-home")
	mustSucceed(t, hush(t, nil, "", "--home", "x", "version"), []string{"version"})
}
