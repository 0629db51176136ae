package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// openOffline initializes a store in a new home and opens it offline,
// with its events kept in the store, as the agent does.
func openOffline(t *testing.T) (string, *client.Client) {
	t.Helper()
	// A short path: Unix socket paths are limited to 107 bytes.
	home, err := os.MkdirTemp("", "hush-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := client.Init(home, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := client.Open(t.Context(), client.Config{Home: home, Offline: true, Events: client.EventsStored})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return home, cl
}

// serve runs an agent server for cl on home's socket until the test ends.
func serve(t *testing.T, home string, cl *client.Client) *agent.Server {
	t.Helper()
	ln, err := agent.Listen(home)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(cl, agent.Config{Version: "test"})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func TestListen(t *testing.T) {
	home, cl := openOffline(t)
	if _, err := agent.Dial(t.Context(), home); !errors.Is(err, agent.ErrNoAgent) {
		t.Fatalf("Dial without an agent: %v, want ErrNoAgent", err)
	}

	// A stale socket, as an agent killed with SIGKILL leaves it.
	path := agent.SocketPath(home)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no stale socket: %v", err)
	}
	if _, err := agent.Dial(t.Context(), home); !errors.Is(err, agent.ErrNoAgent) {
		t.Fatalf("Dial with a stale socket: %v, want ErrNoAgent", err)
	}

	srv := serve(t, home, cl)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if _, err := agent.Listen(home); !errors.Is(err, agent.ErrRunning) {
		t.Errorf("Listen beside a running agent: %v, want ErrRunning", err)
	}
	conn, err := agent.Dial(t.Context(), home)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if v, err := conn.Version(t.Context()); err != nil || v != "test" {
		t.Errorf("Version: %q, %v", v, err)
	}

	// Close ends the connections and removes the socket.
	srv.Close()
	select {
	case <-conn.Done():
	case <-time.After(time.Minute):
		t.Fatal("the connection outlived the server's Close")
	}
	if _, err := conn.Version(t.Context()); !errors.Is(err, agent.ErrClosed) {
		t.Errorf("Version after Close: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left after Close: %v", err)
	}

	// A file that is not a socket is not removed.
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Listen(home); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
}

func TestMethods(t *testing.T) {
	home, cl := openOffline(t)
	serve(t, home, cl)
	ctx := t.Context()
	conn, err := agent.Dial(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	addr := queue.Address{Host: "127.0.0.1", Port: 5223, Password: "secret"}
	addr.Fingerprint[0] = 1
	if n, err := conn.AddRelay(ctx, addr); err != nil || n != 1 {
		t.Fatalf("AddRelay: %d, %v", n, err)
	}
	relays, err := conn.Relays(ctx)
	if err != nil || len(relays) != 1 || !relays[0].Password || strings.Contains(relays[0].Address, "secret") {
		t.Fatalf("Relays: %+v, %v", relays, err)
	}
	if list, err := conn.Contacts(ctx); err != nil || len(list) != 0 {
		t.Fatalf("Contacts: %+v, %v", list, err)
	}
	// Relay management: a second relay at one host and port is refused;
	// one that does not answer is not added when checked; removal.
	clash := addr
	clash.Fingerprint[0] = 2
	if _, err := conn.AddRelay(ctx, clash); !errors.Is(err, client.ErrRelayConflict) {
		t.Errorf("AddRelay at a configured relay's host and port: %v, want ErrRelayConflict", err)
	}
	nowhere := queue.Address{Host: "127.0.0.1", Port: 1}
	nowhere.Fingerprint[0] = 3
	if _, err := conn.AddRelayChecked(ctx, nowhere, time.Second); !errors.Is(err, link.ErrUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AddRelayChecked of a relay that does not answer: %v", err)
	}
	if st, err := conn.RelayStatus(ctx); err != nil || len(st) != 0 {
		t.Errorf("RelayStatus of an offline client: %+v, %v", st, err)
	}
	if res, err := conn.RemoveRelay(ctx, addr.Fingerprint); err != nil || res.Relays != 0 || len(res.Contacts) != 0 || res.Removed != addr.WithoutPassword().String() {
		t.Errorf("RemoveRelay: %+v, %v", res, err)
	}
	if _, err := conn.RemoveRelay(ctx, addr.Fingerprint); !errors.Is(err, client.ErrNoSuchRelay) {
		t.Errorf("RemoveRelay again: %v, want ErrNoSuchRelay", err)
	}
	if _, err := conn.AddRelay(ctx, addr); err != nil {
		t.Fatal(err)
	}
	// Errors keep their meaning across the socket.
	if _, err := conn.Send(ctx, "nobody", "hi"); !errors.Is(err, client.ErrNoContact) {
		t.Errorf("Send to nobody: %v, want ErrNoContact", err)
	}
	if _, err := conn.Accept(ctx, "hush:/invite#garbage", "", 0); !errors.Is(err, client.ErrBadLink) {
		t.Errorf("Accept of garbage: %v, want ErrBadLink", err)
	}
	var e *agent.Error
	if err := conn.Call(ctx, "frobnicate", nil, nil); !errors.As(err, &e) || e.Code != agent.CodeMethodNotFound {
		t.Errorf("an unknown method: %v", err)
	}
	if err := conn.Call(ctx, agent.MethodSend, map[string]any{"contact": 7}, nil); !errors.As(err, &e) || e.Code != agent.CodeInvalidParams {
		t.Errorf("bad params: %v", err)
	}
	if err := conn.Call(ctx, agent.MethodSend, map[string]any{"contact": "x"}, nil); !errors.As(err, &e) || e.Code != agent.CodeInvalidParams {
		t.Errorf("missing text: %v", err)
	}
	// Ack tokens: at most client.MaxTakeToken bytes; ackTaken needs one.
	long := strings.Repeat("x", client.MaxTakeToken+1)
	if _, err := conn.AckAs(ctx, 1, long); !errors.As(err, &e) || e.Code != agent.CodeInvalidParams {
		t.Errorf("ack with a long token: %v", err)
	}
	if _, err := conn.Taken(ctx, 1, ""); !errors.As(err, &e) || e.Code != agent.CodeInvalidParams {
		t.Errorf("ackTaken without a token: %v", err)
	}
	if taken, err := conn.AckAs(ctx, 1, "t"); err != nil || taken {
		t.Errorf("ack of no event: %v, %v; want not removed", taken, err)
	}
	if took, err := conn.Taken(ctx, 1, "t"); err != nil || took {
		t.Errorf("ackTaken of no event: %v, %v; want false", took, err)
	}
	// A subscription with nothing stored, ended again.
	sub, err := conn.Subscribe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Unsubscribe(ctx, sub); err != nil {
		t.Errorf("Unsubscribe: %v", err)
	}
	if removed, err := conn.Ack(ctx, 12345); err != nil || removed {
		t.Errorf("Ack of an unknown event: %v, %v", removed, err)
	}
}

// TestWire speaks the protocol as raw lines, as a program in another
// language would.
func TestWire(t *testing.T) {
	home, cl := openOffline(t)
	serve(t, home, cl)
	c, err := net.Dial("unix", agent.SocketPath(home))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		in   string
		want string // the whole answer, or "" for none
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"version"}`, `{"jsonrpc":"2.0","id":1,"result":{"version":"test"}}`},
		{`{"jsonrpc":"2.0","id":"a","method":"listContacts","params":{}}`, `{"jsonrpc":"2.0","id":"a","result":{"contacts":[]}}`},
		{`{"jsonrpc":"2.0","method":"version"}`, ""}, // a notification: no answer
		{`not json`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: not JSON"}}`},
		{`[{"jsonrpc":"2.0","id":1,"method":"version"}]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: batches are not supported"}}`},
		{`{"jsonrpc":"1.0","id":2,"method":"version"}`, `{"jsonrpc":"2.0","id":2,"error":{"code":-32600,"message":"invalid request: jsonrpc must be \"2.0\""}}`},
		{`{"jsonrpc":"2.0","id":3,"method":"send","params":["bob","hi"]}`, `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"invalid params: params must be an object"}}`},
		{`{"jsonrpc":"2.0","id":4,"method":"send","params":{"contact":"bob","text":"hi"}}`, `{"jsonrpc":"2.0","id":4,"error":{"code":5,"message":"no such contact"}}`},
		{`{"jsonrpc":"2.0","id":5,"method":"subscribeReceive"}`, `{"jsonrpc":"2.0","id":5,"result":{"subscription":1}}`},
	} {
		if _, err := c.Write([]byte(tc.in + "\n")); err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Minute))
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if strings.TrimSuffix(got, "\n") != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(got), &v); err != nil {
			t.Errorf("answer %s: %v", got, err)
		}
	}
	// A line over MaxLine ends the connection after a parse error.
	long := `{"jsonrpc":"2.0","id":9,"method":"send","params":{"text":"` + strings.Repeat("x", agent.MaxLine) + `"}}` + "\n"
	go c.Write([]byte(long))
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got, _ := br.ReadString('\n')
	if !strings.Contains(got, `"code":-32700`) {
		t.Errorf("an overlong line was answered %q", got)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection stays open after an overlong line")
	}
}

// TestPipe uses the server in this process, as hush does without an agent.
func TestPipe(t *testing.T) {
	_, cl := openOffline(t)
	srv := agent.NewServer(cl, agent.Config{})
	defer srv.Close()
	conn := srv.Pipe()
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if v, err := conn.Version(ctx); err != nil || v != "devel" {
		t.Errorf("Version: %q, %v", v, err)
	}
	if _, err := conn.Flush(ctx, time.Second); err == nil {
		t.Error("Flush on an offline client succeeded")
	}
	srv.Close()
	if _, err := conn.Version(ctx); !errors.Is(err, agent.ErrClosed) {
		t.Errorf("Version after the server's Close: %v", err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	home := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := agent.Listen(home); !errors.Is(err, agent.ErrPathTooLong) {
		t.Errorf("Listen: %v, want ErrPathTooLong", err)
	}
	if _, err := agent.Dial(t.Context(), home); !errors.Is(err, agent.ErrPathTooLong) {
		t.Errorf("Dial: %v, want ErrPathTooLong", err)
	}
}
