package main

// Tests of the operator's commands, through the real binary.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
	"github.com/hushrelay/hush/torutil"
)

// adminOf returns the admin address that a started relay printed.
func adminOf(t *testing.T, p *running) string {
	t.Helper()
	for _, line := range strings.Split(p.output(), "\n") {
		if s, ok := strings.CutPrefix(line, "admin: http://"); ok {
			a, _, _ := strings.Cut(s, "/")
			return a
		}
	}
	t.Fatalf("no admin line in:\n%s", p.output())
	return ""
}

// startOps initializes a data directory and starts a relay on it with an
// admin listener on a free port.
func startOps(t *testing.T, extra ...string) (dir string, p *running, a queue.Address, admin string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("signals")
	}
	dir = t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:0", "--host", "127.0.0.1"))
	p, a = startRelay(t, append([]string{"--data", dir, "--admin", "127.0.0.1:0"}, extra...)...)
	return dir, p, a, adminOf(t, p)
}

// opsContext bounds a test.
func opsContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func dialRelay(t *testing.T, ctx context.Context, a queue.Address, transport link.Transport) *link.Conn {
	t.Helper()
	c, err := link.Dial(ctx, a, link.Config{Transport: transport})
	if err != nil {
		t.Fatalf("dial %s: %v", a, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// securedQueue creates and secures a queue and sends bodies to it.
func securedQueue(t *testing.T, ctx context.Context, c *link.Conn, bodies ...string) (link.Queue, func(string) error) {
	t.Helper()
	q, err := c.Create(ctx)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	sk, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Secure(ctx, q, queue.PublicKey(sk)); err != nil {
		t.Fatal(err)
	}
	send := func(body string) error { return c.Send(ctx, q.SenderID, sk, []byte(body)) }
	for _, b := range bodies {
		if err := send(b); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	return q, send
}

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStatus(t *testing.T) {
	dir, p, a, admin := startOps(t)
	r := hushRelay(t, nil, "status", "--data", dir, "--admin", admin)
	mustSucceed(t, r)
	for _, want := range []string{"healthy", a.Fingerprint.String(), "drain mode     off", "queues         0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = hushRelay(t, nil, "status", "--data", dir, "--admin", admin, "--json")
	mustSucceed(t, r)
	var st relay.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || !st.Healthy || st.Fingerprint != a.Fingerprint.String() {
		t.Errorf("status --json: %s (%v)", r.stdout, err)
	}
	// The admin address also comes from the environment, and from
	// config.toml.
	mustSucceed(t, hushRelay(t, []string{"HUSH_RELAY_ADMIN=" + admin}, "status", "--data", dir))
	// Without --admin, status finds the listener of the relay running on
	// the data directory, although it was started with a non-default
	// --admin (issue 14 point 11).
	r = hushRelay(t, nil, "status", "--data", dir)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, a.Fingerprint.String()) {
		t.Errorf("status without --admin:\n%s", r.stdout)
	}
	// Metrics and health from the binary.
	if code, body := httpGet(t, "http://"+admin+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, "http://"+admin+"/metrics"); code != http.StatusOK || !strings.Contains(body, "\nhush_relay_sessions 0\n") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	// Another relay's admin listener is recognized as such.
	other := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", other, "--listen", "127.0.0.1:0"))
	mustFail(t, hushRelay(t, nil, "status", "--data", other, "--admin", admin), 1, "another relay")

	p.stop(t, syscall.SIGTERM)
	mustFail(t, hushRelay(t, nil, "status", "--data", dir, "--admin", admin), 1, "no relay answers", "is the relay running?")
	if _, err := os.Stat(filepath.Join(dir, "admin.addr")); !os.IsNotExist(err) {
		t.Errorf("admin.addr after shutdown: %v", err)
	}
}

// TestAddressOnion: "hush-relay address" of a relay that publishes an
// onion service names its onion host, the one its onion key gives
// (issue 14 point 11).
func TestAddressOnion(t *testing.T) {
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:5999", "--host", "127.0.0.1"))
	env := []string{"HUSH_RELAY_TOR=embedded"}
	r := hushRelay(t, env, "address", "--data", dir)
	mustSucceed(t, r)
	if a := parsed(t, r.stdout); a.Onion != "" || !strings.Contains(r.stderr, "onion host is added") {
		t.Errorf("address before the onion key exists: %s\n%s", a, r.stderr)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "onion.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	r = hushRelay(t, env, "address", "--data", dir)
	mustSucceed(t, r)
	want := torutil.OnionHost(key.Public().(ed25519.PublicKey))
	if a := parsed(t, r.stdout); a.Onion != want || a.Host != "127.0.0.1" || a.Port != 5999 {
		t.Errorf("address %s, want the onion host %s", a, want)
	}
	// With tor off, the address has no onion host.
	r = hushRelay(t, nil, "address", "--data", dir)
	mustSucceed(t, r)
	if a := parsed(t, r.stdout); a.Onion != "" {
		t.Errorf("address with tor off: %s", a)
	}
}

func TestLogsPolicyAndJSON(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, _ := startOps(t, "--log-format", "json")
	c := dialRelay(t, ctx, a, link.TransportQUIC)
	securedQueue(t, ctx, c, "hello")
	c.Close()
	p.stop(t, syscall.SIGTERM)
	_ = dir
	logs := p.stderr.String()
	if !strings.Contains(logs, `"policy":"logs never record IP addresses, ports, queue IDs or message sizes"`) {
		t.Errorf("the logs state no policy:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %s", line)
		}
	}
	if strings.Contains(logs, "127.0.0.1") {
		t.Errorf("the logs at the default level hold an IP address:\n%s", logs)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:5400", "--host", "file.example.org"))
	host := func(env []string, args ...string) string {
		t.Helper()
		r := hushRelay(t, env, append([]string{"address", "--data", dir}, args...)...)
		mustSucceed(t, r)
		a, err := queue.ParseAddress(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s:%d", a.Host, a.Port)
	}
	if h := host(nil); h != "file.example.org:5400" {
		t.Errorf("from config.toml: %s", h)
	}
	env := []string{"HUSH_RELAY_HOST=env.example.org", "HUSH_RELAY_LISTEN=127.0.0.1:5401"}
	if h := host(env); h != "env.example.org:5401" {
		t.Errorf("the environment over config.toml: %s", h)
	}
	if h := host(env, "--host", "flag.example.org"); h != "flag.example.org:5401" {
		t.Errorf("a flag over the environment: %s", h)
	}
	// The password from a file named in the environment.
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := hushRelay(t, []string{"HUSH_RELAY_PASSWORD_FILE=" + pw}, "address", "--data", dir)
	mustSucceed(t, r)
	if a, err := queue.ParseAddress(strings.TrimSpace(r.stdout)); err != nil || a.Password != "from-a-file" {
		t.Errorf("HUSH_RELAY_PASSWORD_FILE: %s (%v)", r.stdout, err)
	}

	// Errors name the variable, or the file's line.
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_QUEUE_QUOTA=many"}, "address", "--data", dir), 1,
		"environment variable HUSH_RELAY_QUEUE_QUOTA", `"many" is not a whole number`)
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_QUEUE_QUOTA=-1"}, "address", "--data", dir), 1,
		"environment variable HUSH_RELAY_QUEUE_QUOTA must not be negative")
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_MESSAGE_TTL=3d"}, "address", "--data", dir), 1,
		"HUSH_RELAY_MESSAGE_TTL", `"3d" is not a duration`)
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_QUEUE_QOUTA=5"}, "address", "--data", dir), 1,
		"unknown environment variable HUSH_RELAY_QUEUE_QOUTA")
	path := filepath.Join(dir, configFile)
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	config = bytes.Replace(config, []byte("# queue_quota = 128"), []byte("queue_quota = -5"), 1)
	line := 1 + bytes.Count(config[:bytes.Index(config, []byte("queue_quota = -5"))], []byte("\n"))
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "address", "--data", dir), 1, fmt.Sprintf("config.toml line %d: queue_quota must not be negative", line))
	mustSucceed(t, hushRelay(t, []string{"HUSH_RELAY_QUEUE_QUOTA=5"}, "address", "--data", dir)) // the environment wins
	config = bytes.Replace(config, []byte("queue_quota = -5"), []byte(`admin = "nowhere"`), 1)
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1, fmt.Sprintf("config.toml line %d: admin", line))
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_ADMIN=off"}, "start", "--data", dir, "--tor", "sometimes"), 1, "--tor must be off, embedded or system")
}

func TestDrainCommand(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, admin := startOps(t, "--drain")
	if !strings.Contains(p.output(), "drain mode") {
		t.Errorf("start --drain does not say so:\n%s", p.output())
	}
	c := dialRelay(t, ctx, a, link.TransportTCP)
	if _, err := c.Create(ctx); !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("create on a draining relay: %v, want PROHIBITED", err)
	}
	r := hushRelay(t, nil, "drain", "--off", "--data", dir, "--admin", admin)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "drain mode off") {
		t.Errorf("drain --off printed:\n%s", r.stdout)
	}
	q, send := securedQueue(t, ctx, c, "before")
	mustSucceed(t, hushRelay(t, nil, "drain", "--data", dir, "--admin", admin))
	if _, err := c.Create(ctx); !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("create after drain: %v, want PROHIBITED", err)
	}
	if err := send("while draining"); err != nil {
		t.Fatalf("send to an existing queue while draining: %v", err)
	}
	for _, want := range []string{"before", "while draining"} {
		m, err := c.Get(ctx, q)
		if err != nil || string(m.Body) != want {
			t.Fatalf("get while draining: %q, %v; want %q", m.Body, err, want)
		}
		if err := c.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	r = hushRelay(t, nil, "status", "--data", dir, "--admin", admin)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "drain mode     on") {
		t.Errorf("status while draining:\n%s", r.stdout)
	}
	// drain needs the token, which only the data directory holds.
	mustFail(t, hushRelay(t, nil, "drain", "--data", t.TempDir(), "--admin", admin), 1, "admin token")
	p.stop(t, syscall.SIGTERM)
}

func TestBackupAndRestore(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, admin := startOps(t)
	c := dialRelay(t, ctx, a, link.TransportQUIC)
	q, _ := securedQueue(t, ctx, c, "one", "two", "three")
	out := filepath.Join(t.TempDir(), "hot.db")
	r := hushRelay(t, nil, "backup", "--data", dir, "--admin", admin, "--out", out)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "backup of the running relay") || !strings.Contains(r.stdout, "1 queues, 3 undelivered messages") {
		t.Errorf("backup printed:\n%s", r.stdout)
	}
	checkMode(t, out, 0o600)
	// Without --admin too: the relay's non-default admin listener is found
	// from the data directory (issue 14 point 11).
	r = hushRelay(t, nil, "backup", "--data", dir, "--out", out+".2")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "backup of the running relay") {
		t.Errorf("backup without --admin printed:\n%s", r.stdout)
	}
	mustFail(t, hushRelay(t, nil, "backup", "--data", dir, "--admin", admin, "--out", out), 1, "exists")
	mustFail(t, hushRelay(t, nil, "restore", "--data", dir, "--from", out, "--force"), 1, "stop the relay")
	r = hushRelay(t, nil, "check", "--data", dir, "--admin", admin)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "hot backup") {
		t.Errorf("check of a running relay:\n%s", r.stdout)
	}
	c.Close()
	p.stop(t, syscall.SIGTERM)

	// A stopped relay: the backup reads the file.
	cold := filepath.Join(t.TempDir(), "cold.db")
	r = hushRelay(t, nil, "backup", "--data", dir, "--admin", admin, "--out", cold)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "stopped relay's relay.db") {
		t.Errorf("backup of a stopped relay printed:\n%s", r.stdout)
	}

	// Restore the hot backup into a new data directory with the identity.
	to := t.TempDir()
	mustFail(t, hushRelay(t, nil, "restore", "--data", to, "--from", out), 1, "restore the relay's identity")
	for _, f := range []string{identityFile, certFile, certKeyFile, configFile} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = hushRelay(t, nil, "restore", "--data", to, "--from", out)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "1 queues, 3 undelivered messages") {
		t.Errorf("restore printed:\n%s", r.stdout)
	}
	mustFail(t, hushRelay(t, nil, "restore", "--data", to, "--from", out), 1, "--force")
	mustSucceed(t, hushRelay(t, nil, "restore", "--data", to, "--from", cold, "--force"))
	p2, a2 := startRelay(t, "--data", to, "--admin", "off")
	if a2.Fingerprint != a.Fingerprint {
		t.Fatalf("the restored relay has the address %s, was %s", a2, a)
	}
	c2 := dialRelay(t, ctx, a2, link.TransportTCP)
	for _, want := range []string{"one", "two", "three"} {
		m, err := c2.Get(ctx, q)
		if err != nil || string(m.Body) != want {
			t.Fatalf("get from the restored relay: %q, %v; want %q", m.Body, err, want)
		}
		if err := c2.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	p2.stop(t, syscall.SIGTERM)
}

func TestCheck(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, _ := startOps(t)
	c := dialRelay(t, ctx, a, link.TransportTCP)
	securedQueue(t, ctx, c, "a", "b")
	c.Close()
	p.stop(t, syscall.SIGTERM)

	r := hushRelay(t, nil, "check", "--data", dir)
	mustSucceed(t, r)
	for _, want := range []string{"ok    relay.db: consistent: 1 queues", "ok    identity.key: mode 0600", "ok    cert.pem: issued by the identity", "no problem found"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check lacks %q:\n%s", want, r.stdout)
		}
	}
	// Key files readable by others.
	for _, f := range []string{identityFile, certKeyFile, adminTokenFile} {
		path := filepath.Join(dir, f)
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		r := hushRelay(t, nil, "check", "--data", dir)
		mustFail(t, r, 1, "check found 1 problem")
		if !strings.Contains(r.stdout, "FAIL  "+f+": mode 0640: readable by others") {
			t.Errorf("check with %s mode 0640:\n%s", f, r.stdout)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A configuration error names its line.
	cfg := filepath.Join(dir, configFile)
	orig, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(bytes.Clone(orig), "\nlisten_port = 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	r = hushRelay(t, nil, "check", "--data", dir)
	mustFail(t, r, 1)
	if !strings.Contains(r.stdout, `FAIL  config.toml: `) || !strings.Contains(r.stdout, `unknown option "listen_port"`) {
		t.Errorf("check with an unknown option:\n%s", r.stdout)
	}
	if err := os.WriteFile(cfg, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	// A damaged store: every page after the meta pages overwritten.
	store := filepath.Join(dir, storeFile)
	data, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	intact := filepath.Join(t.TempDir(), "intact.db")
	if err := os.WriteFile(intact, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// With its key file: a store's messages cannot be read without it.
	keys, err := os.ReadFile(filepath.Join(dir, storeKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(intact+".keys", keys, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < len(data); i++ {
		data[i] = byte(i*7 + 3)
	}
	if err := os.WriteFile(store, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = hushRelay(t, nil, "check", "--data", dir)
	mustFail(t, r, 1, "check found 1 problem")
	if !strings.Contains(r.stdout, "FAIL  relay.db: ") || !strings.Contains(r.stdout, "the store is damaged") {
		t.Errorf("check of a damaged store:\n%s", r.stdout)
	}
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1) // the relay does not serve it either
	// check --store checks one file.
	mustSucceed(t, hushRelay(t, nil, "check", "--store", intact))
	mustFail(t, hushRelay(t, nil, "check", "--store", store), 1, "check found 1 problem")
}

func TestCompact(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, _ := startOps(t)
	c := dialRelay(t, ctx, a, link.TransportQUIC)
	q, send := securedQueue(t, ctx, c)
	const n = 100 // the default quota is 128
	body := strings.Repeat("x", queue.MaxMessageSize)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < n; i += 10 {
				if err := send(body); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for range n {
		m, err := c.Get(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	mustFail(t, hushRelay(t, nil, "compact", "--data", dir), 1, "stop it, compact, start it again")
	c.Close()
	p.stop(t, syscall.SIGTERM)

	store := filepath.Join(dir, storeFile)
	before := fileSize(t, store)
	r := hushRelay(t, nil, "compact", "--data", dir)
	mustSucceed(t, r)
	after := fileSize(t, store)
	t.Logf("%s", r.stdout)
	if before < n*queue.MaxMessageSize || after > before/8 {
		t.Errorf("compact: %d -> %d bytes after a drained backlog of %d bytes", before, after, n*queue.MaxMessageSize)
	}
	checkMode(t, store, 0o600)
	mustSucceed(t, hushRelay(t, nil, "check", "--data", dir))
	p, a = startRelay(t, "--data", dir, "--admin", "off")
	c = dialRelay(t, ctx, a, link.TransportTCP)
	if _, err := c.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
		t.Errorf("the queue after compaction: %v, want ErrNoMessage", err)
	}
	p.stop(t, syscall.SIGTERM)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// servedLeaf returns the certificate that the relay at hostport serves
// to a new TLS connection.
func servedLeaf(t *testing.T, hostport string) []byte {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", hostport, &tls.Config{
		InsecureSkipVerify: true, // only to read the certificate served
		NextProtos:         []string{queue.ALPN},
		MinVersion:         tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// fileLeaf returns the online certificate in cert.pem.
func fileLeaf(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		t.Fatal(err)
	}
	return b.Bytes
}

func TestRotateCert(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, admin := startOps(t)
	before := fileLeaf(t, dir)
	if !bytes.Equal(servedLeaf(t, a.HostPort()), before) {
		t.Fatal("the relay does not serve cert.pem")
	}
	r := hushRelay(t, nil, "rotate-cert", "--data", dir, "--admin", admin)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "now serves the new certificate") || !strings.Contains(r.stdout, "the address is unchanged") {
		t.Errorf("rotate-cert printed:\n%s", r.stdout)
	}
	after := fileLeaf(t, dir)
	if bytes.Equal(before, after) {
		t.Fatal("rotate-cert left cert.pem as it was")
	}
	if !bytes.Equal(servedLeaf(t, a.HostPort()), after) {
		t.Error("the running relay does not serve the new certificate")
	}
	if identityFingerprint(t, dir) != a.Fingerprint {
		t.Error("the identity changed")
	}
	checkClient(t, a) // the same address, both transports

	// Without the admin listener: SIGHUP loads it.
	mustSucceed(t, hushRelay(t, nil, "rotate-cert", "--data", dir, "--admin", "off"))
	third := fileLeaf(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !bytes.Equal(servedLeaf(t, a.HostPort()), third) {
		select {
		case <-ctx.Done():
			t.Fatal("SIGHUP did not load the new certificate")
		case <-time.After(50 * time.Millisecond):
		}
	}
	checkClient(t, a)
	p.stop(t, syscall.SIGTERM)

	// After a restart, the same address.
	p, again := startRelay(t, "--data", dir, "--admin", "off")
	if again.Fingerprint != a.Fingerprint {
		t.Errorf("after rotations and a restart the address is %s, was %s", again, a)
	}
	p.stop(t, syscall.SIGTERM)

	// The identity kept offline: rotate-cert needs it back.
	if err := os.Rename(filepath.Join(dir, identityFile), filepath.Join(t.TempDir(), identityFile)); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "rotate-cert", "--data", dir), 1, "put it back")
}

func TestHelpListsCommands(t *testing.T) {
	r := hushRelay(t, nil, "help")
	mustSucceed(t, r)
	for _, verb := range []string{"init", "start", "address", "status", "drain", "backup", "restore", "check", "compact", "rotate-cert", "version"} {
		if !strings.Contains(r.stdout, "\n  "+verb+" ") {
			t.Errorf("help does not list %s:\n%s", verb, r.stdout)
		}
		if verb == "version" {
			continue
		}
		h := hushRelay(t, nil, verb, "-h")
		mustSucceed(t, h)
		if !strings.Contains(h.stdout, "usage: hush-relay "+verb) || !strings.Contains(h.stdout, "-data") {
			t.Errorf("%s -h:\n%s", verb, h.stdout)
		}
	}
	h := hushRelay(t, nil, "start", "-h")
	for _, flag := range []string{"-admin", "-drain", "-log-format", "-log-level", "-tor", "-tor-control", "-torrc"} {
		if !strings.Contains(h.stdout, flag+" ") && !strings.Contains(h.stdout, flag+"\n") {
			t.Errorf("start -h does not document %s", flag)
		}
	}
	mustFail(t, hushRelay(t, nil, "backup", "--data", t.TempDir()), 1, "--out FILE is required")
	mustFail(t, hushRelay(t, nil, "restore", "--data", t.TempDir()), 1, "--from FILE is required")
}

// parsed parses the address that "hush-relay address" printed.
func parsed(t *testing.T, out string) queue.Address {
	t.Helper()
	a, err := queue.ParseAddress(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("hush-relay address printed %q: %v", out, err)
	}
	return a
}

// TestCheckOldStore checks a store of format version 3 (written by the
// version 3 relay): check tells what to do, not that it is damaged, and
// names the file once; after compact converts it, check accepts it.
func TestCheckOldStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, storeFile)
	for _, suffix := range []string{"", ".keys"} {
		b, err := os.ReadFile("../../relay/testdata/store-v3/relay.db" + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(store+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := hushRelay(t, nil, "check", "--store", store)
	mustFail(t, r, 1, "convert the store first")
	want := "old   " + store + ": store format older than this relay's: version 3, not 4: start the relay once or run \"hush-relay compact\""
	if !strings.Contains(r.stdout, want) || strings.Count(r.stdout, store) != 1 ||
		!strings.Contains(r.stdout, "the conversion is one way") || strings.Contains(r.stdout, "FAIL") {
		t.Errorf("check of a version 3 store:\n%s", r.stdout)
	}
	mustSucceed(t, hushRelay(t, nil, "compact", "--data", dir))
	mustSucceed(t, hushRelay(t, nil, "check", "--store", store))
}
