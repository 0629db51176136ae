package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
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
)

// binary is the hush-relay executable built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hush-relay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "hush-relay")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hush-relay:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is a finished hush-relay run.
type result struct {
	stdout, stderr string
	code           int
}

// hushRelay runs the binary to completion, bounded in time, with env
// added to a minimal environment.
func hushRelay(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(baseEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("hush-relay %s: %v\n%s", strings.Join(args, " "), err, r.stderr)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// baseEnv is the environment of every run: no $HUSH_RELAY_DATA from the
// developer's shell, and, unless $GORACE says otherwise, no second of
// sleep at the exit of a binary built with the race detector.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUSH_RELAY_DATA=") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// mustSucceed fails the test unless r exited with status 0.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
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

// addressLine returns the address printed on an "address: " line of out.
func addressLine(t *testing.T, out string) queue.Address {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(line, "address: "); ok {
			a, err := queue.ParseAddress(s)
			if err != nil {
				t.Fatalf("printed address %q: %v", s, err)
			}
			if a.String() != s {
				t.Fatalf("printed address %q is not canonical (%q)", s, a)
			}
			return a
		}
	}
	t.Fatalf("no address line in:\n%s", out)
	return queue.Address{}
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

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != want {
		t.Errorf("%s: mode %#o, want %#o", filepath.Base(path), fi.Mode().Perm(), want)
	}
}

func identityFingerprint(t *testing.T, dir string) queue.Fingerprint {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := parsePrivateKey(identityFile, data)
	if err != nil {
		t.Fatal(err)
	}
	return queue.FingerprintOf(key.Public().(ed25519.PublicKey))
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:5300")
	mustSucceed(t, r)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: mode %#o, want 0700", fi.Mode().Perm())
	}
	checkMode(t, filepath.Join(dir, identityFile), 0o600)
	checkMode(t, filepath.Join(dir, certKeyFile), 0o600)
	checkMode(t, filepath.Join(dir, configFile), 0o600)
	checkMode(t, filepath.Join(dir, certFile), 0o644)
	if exists(filepath.Join(dir, storeFile)) {
		t.Errorf("init created %s", storeFile)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	// The certificate chain: two certificates, the identity's last.
	chain, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	var blocks int
	for rest := chain; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Errorf("%s holds a %q block", certFile, b.Type)
		}
		blocks++
	}
	if blocks != 2 {
		t.Errorf("%s holds %d certificates, want 2", certFile, blocks)
	}
	cert, err := readCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFP, err := relay.CertificateFingerprint(cert)
	if err != nil {
		t.Fatal(err)
	}

	a := addressLine(t, r.stdout)
	if fp := identityFingerprint(t, dir); a.Fingerprint != fp || certFP != fp {
		t.Errorf("address fingerprint %s, certificate %s, identity %s: want all equal", a.Fingerprint, certFP, fp)
	}
	if a.Host != "127.0.0.1" || a.Port != 5300 {
		t.Errorf("address %s: want host 127.0.0.1 and port 5300", a)
	}
	if len(a.Password) != 24 || !queue.ValidPassword(a.Password) {
		t.Errorf("generated password %q: want 24 characters of base64url", a.Password)
	}
	config, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(config), fmt.Sprintf("\npassword = %q\n", a.Password)) {
		t.Errorf("config.toml does not hold the generated password:\n%s", config)
	}
	if !strings.Contains(r.stdout, a.WithoutPassword().String()) {
		t.Errorf("init does not show the address without the password:\n%s", r.stdout)
	}
	if !hasQR(r.stdout) {
		t.Errorf("init printed no QR code:\n%s", r.stdout)
	}

	// address prints the same address, alone.
	r = hushRelay(t, nil, "address", "--data", dir)
	mustSucceed(t, r)
	if r.stdout != a.String()+"\n" {
		t.Errorf("address printed %q, want %q", r.stdout, a.String()+"\n")
	}
	r = hushRelay(t, nil, "address", "--qr", "--data", dir)
	mustSucceed(t, r)
	if !strings.HasPrefix(r.stdout, a.String()+"\n") || !hasQR(r.stdout) {
		t.Errorf("address --qr printed:\n%s", r.stdout)
	}
	// Flags override the config file.
	r = hushRelay(t, nil, "address", "--data", dir, "--host", "relay.example.org", "--listen", ":443", "--no-password")
	mustSucceed(t, r)
	want := queue.Address{Fingerprint: a.Fingerprint, Host: "relay.example.org", Port: 443}
	if r.stdout != want.String()+"\n" {
		t.Errorf("address with flags printed %q, want %q", r.stdout, want.String()+"\n")
	}
}

func TestInitTwice(t *testing.T) {
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir))
	before, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	r := hushRelay(t, nil, "init", "--data", dir)
	mustFail(t, r, 1, "already initialized", identityFile)
	after, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a second init changed identity.key")
	}
}

func TestInitRefusesStoreWithoutIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, storeFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "init", "--data", dir), 1, "restore identity.key")
	mustFail(t, hushRelay(t, nil, "start", "--data", dir, "--listen", "127.0.0.1:0"), 1, "restore identity.key")
	if exists(filepath.Join(dir, identityFile)) {
		t.Error("a new identity was created beside an existing store")
	}
}

func TestDataFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "from-env")
	r := hushRelay(t, []string{"HUSH_RELAY_DATA=" + dir}, "init", "--listen", "127.0.0.1:5301")
	mustSucceed(t, r)
	if !exists(filepath.Join(dir, identityFile)) {
		t.Fatalf("init with HUSH_RELAY_DATA=%s wrote no identity there", dir)
	}
	a := addressLine(t, r.stdout)
	r = hushRelay(t, []string{"HUSH_RELAY_DATA=" + dir}, "address")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != a.String() {
		t.Errorf("address printed %q, want %q", r.stdout, a)
	}
}

func TestHost(t *testing.T) {
	// An unspecified listen address: localhost, with a warning.
	dir := t.TempDir()
	r := hushRelay(t, nil, "init", "--data", dir, "--listen", ":5302")
	mustSucceed(t, r)
	if a := addressLine(t, r.stdout); a.Host != "localhost" || a.Port != 5302 {
		t.Errorf("address %s: want localhost:5302", a)
	}
	if !strings.Contains(r.stderr, "--host") {
		t.Errorf("no warning to pass --host:\n%s", r.stderr)
	}

	// --host is written into the address and saved.
	dir = t.TempDir()
	r = hushRelay(t, nil, "init", "--data", dir, "--host", "Relay.Example.org")
	mustSucceed(t, r)
	a := addressLine(t, r.stdout)
	if a.Host != "relay.example.org" || a.Port != queue.DefaultPort {
		t.Errorf("address %s: want relay.example.org:%d", a, queue.DefaultPort)
	}
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("unexpected warning:\n%s", r.stderr)
	}
	r = hushRelay(t, nil, "address", "--data", dir)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != a.String() {
		t.Errorf("address printed %q, want %q", r.stdout, a)
	}

	// A host that cannot be in an address is refused before anything is
	// written.
	dir = filepath.Join(t.TempDir(), "bad")
	mustFail(t, hushRelay(t, nil, "init", "--data", dir, "--host", "bad_host!"), 1, "bad_host!")
	if exists(filepath.Join(dir, identityFile)) || exists(filepath.Join(dir, configFile)) {
		t.Error("init with a bad --host wrote files")
	}
}

func TestPasswordFile(t *testing.T) {
	tmp := t.TempDir()
	pwFile := filepath.Join(tmp, "password")
	if err := os.WriteFile(pwFile, []byte("  correct-horse_battery.staple~1  \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "data")
	r := hushRelay(t, nil, "init", "--data", dir, "--password-file", pwFile)
	mustSucceed(t, r)
	a := addressLine(t, r.stdout)
	if a.Password != "correct-horse_battery.staple~1" {
		t.Errorf("address password %q, want the file's first line", a.Password)
	}
	config, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(config), a.Password) {
		t.Error("config.toml holds the password from --password-file; want only the file's path")
	}

	// The file is read again each time: a changed password shows.
	if err := os.WriteFile(pwFile, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = hushRelay(t, nil, "address", "--data", dir)
	mustSucceed(t, r)
	if want := a; true {
		want.Password = "rotated"
		if strings.TrimSpace(r.stdout) != want.String() {
			t.Errorf("address printed %q, want %q", r.stdout, want)
		}
	}

	// --password-file on the command line overrides config.toml.
	other := filepath.Join(tmp, "other")
	if err := os.WriteFile(other, []byte("other-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = hushRelay(t, nil, "address", "--data", dir, "--password-file", other)
	mustSucceed(t, r)
	if got, err := queue.ParseAddress(strings.TrimSpace(r.stdout)); err != nil || got.Password != "other-password" {
		t.Errorf("address --password-file printed %q (%v)", r.stdout, err)
	}

	// A password that cannot be in an address is refused.
	bad := filepath.Join(tmp, "bad")
	if err := os.WriteFile(bad, []byte("has spaces inside\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "init", "--data", filepath.Join(tmp, "data2"), "--password-file", bad), 1, "password file", "A-Z a-z 0-9")
	mustFail(t, hushRelay(t, nil, "init", "--data", filepath.Join(tmp, "data3"), "--password-file", filepath.Join(tmp, "missing")), 1, "password file")
}

func TestPasswordFlags(t *testing.T) {
	dir := t.TempDir()
	r := hushRelay(t, nil, "init", "--data", dir, "--no-password")
	mustSucceed(t, r)
	if a := addressLine(t, r.stdout); a.Password != "" {
		t.Errorf("--no-password gave an address with password %q", a.Password)
	}
	if !strings.Contains(r.stdout, "no password") {
		t.Errorf("init --no-password does not say that anyone can create queues:\n%s", r.stdout)
	}
	r = hushRelay(t, nil, "address", "--data", dir)
	mustSucceed(t, r)
	if a, err := queue.ParseAddress(strings.TrimSpace(r.stdout)); err != nil || a.Password != "" {
		t.Errorf("address after init --no-password printed %q (%v)", r.stdout, err)
	}

	dir = t.TempDir()
	r = hushRelay(t, nil, "init", "--data", dir, "--password", "given-password")
	mustSucceed(t, r)
	if a := addressLine(t, r.stdout); a.Password != "given-password" {
		t.Errorf("--password given-password gave an address with password %q", a.Password)
	}

	mustFail(t, hushRelay(t, nil, "init", "--data", t.TempDir(), "--password", "x y"), 1, "--password")
	mustFail(t, hushRelay(t, nil, "init", "--data", t.TempDir(), "--password", "a", "--no-password"), 2, "only one of")
}

func TestUnknownConfigKey(t *testing.T) {
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:0"))
	path := filepath.Join(dir, configFile)
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	config = append(config, "\nqueue_qouta = 5\n"...)
	line := bytes.Count(config, []byte("\n"))
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("config.toml line %d: unknown option \"queue_qouta\"", line)
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1, want)
	mustFail(t, hushRelay(t, nil, "address", "--data", dir), 1, want)
}

func TestBadConfigValue(t *testing.T) {
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:0"))
	path := filepath.Join(dir, configFile)
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	config = bytes.Replace(config, []byte(`# message_ttl = "504h"`), []byte(`message_ttl = "21d"`), 1)
	line := 1 + bytes.Count(config[:bytes.Index(config, []byte(`message_ttl = "21d"`))], []byte("\n"))
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1,
		fmt.Sprintf("config.toml line %d: message_ttl", line), `"21d" is not a duration`)

	config = bytes.Replace(config, []byte(`message_ttl = "21d"`), []byte(`# message_ttl = "504h"`), 1)
	config = bytes.Replace(config, []byte("# mapped_store_limit_mib = 64"), []byte(`mapped_store_limit_mib = "64MiB"`), 1)
	line = 1 + bytes.Count(config[:bytes.Index(config, []byte("mapped_store_limit_mib = "))], []byte("\n"))
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1, fmt.Sprintf("config.toml line %d: mapped_store_limit_mib", line))
	config = bytes.Replace(config, []byte(`mapped_store_limit_mib = "64MiB"`), []byte("mapped_store_limit_mib = 8796093022208"), 1)
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "address", "--data", dir), 1,
		fmt.Sprintf("config.toml line %d: mapped_store_limit_mib must be at most 8796093022207", line))
	// The environment overrides the bad value; its own bad values name it.
	mustSucceed(t, hushRelay(t, []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=-1", "HUSH_RELAY_LISTEN=127.0.0.1:5223"}, "address", "--data", dir))
	mustFail(t, hushRelay(t, []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=64MiB"}, "address", "--data", dir), 1,
		"environment variable HUSH_RELAY_MAPPED_STORE_LIMIT_MIB", `"64MiB" is not a whole number`)
}

// TestMappedStoreLimit checks mapped_store_limit_mib from config.toml and
// from the environment, and its conversion to bytes for the relay.
func TestMappedStoreLimit(t *testing.T) {
	const max = math.MaxInt64 >> 20 // the largest count of MiB that fits an int64 in bytes
	for _, tc := range []struct {
		file    string // config.toml
		env     []string
		want    int64  // relay.Config.MappedStoreLimit
		wantErr string // or the error
	}{
		{file: "", want: 0}, // the relay's default
		{file: "mapped_store_limit_mib = 0\n", want: 0},
		{file: "mapped_store_limit_mib = 256\n", want: 256 << 20},
		{file: "mapped_store_limit_mib = -1\n", want: -1},
		{file: "mapped_store_limit_mib = -9223372036854775808\n", want: -1},
		{file: fmt.Sprintf("mapped_store_limit_mib = %d\n", max), want: max << 20},
		{file: "mapped_store_limit_mib = 256\n", env: []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=16"}, want: 16 << 20},
		{file: "mapped_store_limit_mib = 256\n", env: []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=-3"}, want: -1},
		{file: "mapped_store_limit_mib = 256\n", env: []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB="}, want: 256 << 20},
		{env: []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=0"}, want: 0},
		{
			file:    fmt.Sprintf("queue_quota = 5\nmapped_store_limit_mib = %d\n", max+1),
			wantErr: fmt.Sprintf("config.toml line 2: mapped_store_limit_mib must be at most %d", max),
		},
		{
			env:     []string{fmt.Sprintf("HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=%d", max+1)},
			wantErr: fmt.Sprintf("environment variable HUSH_RELAY_MAPPED_STORE_LIMIT_MIB must be at most %d", max),
		},
		{
			file:    "mapped_store_limit_mib = 1.5\n",
			wantErr: "config.toml line 1: mapped_store_limit_mib",
		},
		{
			env:     []string{"HUSH_RELAY_MAPPED_STORE_LIMIT_MIB=lots"},
			wantErr: `environment variable HUSH_RELAY_MAPPED_STORE_LIMIT_MIB: "lots" is not a whole number`,
		},
		{
			env:     []string{"HUSH_RELAY_MAPPED_STORE_LIMIT=64"},
			wantErr: "unknown environment variable HUSH_RELAY_MAPPED_STORE_LIMIT",
		},
		{
			file:    "mapped_store_limit = 64\n",
			wantErr: `config.toml line 1: unknown option "mapped_store_limit"`,
		},
	} {
		path := filepath.Join(t.TempDir(), configFile)
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		fc, err := loadConfig(path, tc.env)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q with %q: error %v, want %q", tc.file, tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q with %q: %v", tc.file, tc.env, err)
			continue
		}
		s := settings{file: fc}
		if got := s.relayConfig().MappedStoreLimit; got != tc.want {
			t.Errorf("%q with %q: MappedStoreLimit %d, want %d", tc.file, tc.env, got, tc.want)
		}
	}
}

func TestIdentityPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:0"))
	key := filepath.Join(dir, identityFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	mustFail(t, hushRelay(t, nil, "start", "--data", dir), 1, identityFile, "readable by others", "chmod 600")
	mustFail(t, hushRelay(t, nil, "address", "--data", dir), 1, identityFile, "readable by others")
	if exists(filepath.Join(dir, storeFile)) {
		t.Error("start opened the store despite the exposed identity")
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: hush-relay <command>"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"init", "--bogus"}, 2, "usage: hush-relay init"},
		{[]string{"start", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"address", "--data", ""}, 2, "--data"},
	} {
		mustFail(t, hushRelay(t, nil, tc.args...), tc.code, tc.want)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"start", "-h"}, {"init", "--help"}} {
		r := hushRelay(t, nil, args...)
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, "usage: hush-relay") {
			t.Errorf("%v printed no usage:\n%s", args, r.stdout)
		}
	}
	r := hushRelay(t, nil, "start", "-h")
	for _, flag := range []string{"-data", "-listen", "-host", "-password", "-password-file", "-no-password"} {
		if !strings.Contains(r.stdout, flag+" ") && !strings.Contains(r.stdout, flag+"\n") {
			t.Errorf("start -h does not document %s:\n%s", flag, r.stdout)
		}
	}
}

func TestVersion(t *testing.T) {
	r := hushRelay(t, nil, "version")
	mustSucceed(t, r)
	want := fmt.Sprintf("(queue protocol versions %d..%d)\n", queue.MinVersion, queue.MaxVersion)
	if !strings.HasPrefix(r.stdout, "hush-relay ") || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("version printed %q", r.stdout)
	}
}

// running is a started "hush-relay start".
type running struct {
	cmd     *exec.Cmd
	address chan string   // the first address line's address; closed at the end of output
	done    chan struct{} // closed when the process has exited
	stderr  bytes.Buffer  // read only after done

	mu     sync.Mutex
	stdout strings.Builder // standard output so far
	err    error           // Wait's result, after done
}

// startRelay runs "hush-relay start args..." and returns once it printed
// its address.
func startRelay(t *testing.T, args ...string) (*running, queue.Address) {
	t.Helper()
	p := &running{address: make(chan string, 1), done: make(chan struct{})}
	p.cmd = exec.Command(binary, append([]string{"start"}, args...)...)
	p.cmd.Env = baseEnv()
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sent := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if a, ok := strings.CutPrefix(sc.Text(), "address: "); ok && !sent {
				p.address <- a
				sent = true
			}
		}
		close(p.address)
		err := p.cmd.Wait() // after reading all output, as Wait requires
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})

	select {
	case s, ok := <-p.address:
		if !ok {
			<-p.done
			t.Fatalf("hush-relay start exited without an address: %v\nstdout:\n%s\nstderr:\n%s", p.err, p.output(), p.stderr.String())
		}
		a, err := queue.ParseAddress(s)
		if err != nil {
			t.Fatalf("printed address %q: %v", s, err)
		}
		return p, a
	case <-time.After(time.Minute):
		t.Fatalf("hush-relay start printed no address within a minute; stdout so far:\n%s", p.output())
	}
	panic("unreachable")
}

func (p *running) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// stop sends sig and checks that the relay shuts down cleanly.
func (p *running) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("hush-relay did not exit within a minute of %v", sig)
	}
	if p.err != nil {
		t.Errorf("after %v: %v\nstdout:\n%s\nstderr:\n%s", sig, p.err, p.output(), p.stderr.String())
	}
	if !strings.Contains(p.output(), "hush-relay: stopped\n") {
		t.Errorf("after %v, no \"stopped\" line:\n%s", sig, p.output())
	}
}

func TestStartAndSignals(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fresh") // does not exist yet
			p, a := startRelay(t, "--data", dir, "--listen", "127.0.0.1:0")
			out := p.output()
			if !strings.Contains(out, "initialized a new relay in "+dir) {
				t.Errorf("start on a fresh directory did not say that it initialized it:\n%s", out)
			}
			if !strings.Contains(out, "logs never record IP addresses") {
				t.Errorf("start printed no logging policy:\n%s", out)
			}
			if a.Host != "127.0.0.1" || a.Port == 0 {
				t.Errorf("address %s: want 127.0.0.1 and the bound port", a)
			}
			if a.Fingerprint != identityFingerprint(t, dir) {
				t.Errorf("address fingerprint %s is not that of identity.key", a.Fingerprint)
			}
			if !queue.ValidPassword(a.Password) {
				t.Errorf("address %s: want a generated password", a)
			}
			// The printed port is the bound one: TLS over TCP answers there.
			conn, err := net.DialTimeout("tcp", a.HostPort(), 10*time.Second)
			if err != nil {
				t.Fatalf("dial the printed address: %v", err)
			}
			conn.Close()
			checkClient(t, a)
			p.stop(t, sig)
		})
	}
}

func TestRestartKeepsIdentity(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	dir := t.TempDir() // exists, empty
	p, first := startRelay(t, "--data", dir, "--listen", "127.0.0.1:0")
	p.stop(t, syscall.SIGTERM)
	if !exists(filepath.Join(dir, storeFile)) {
		t.Fatalf("start made no %s", storeFile)
	}
	p, second := startRelay(t, "--data", dir)
	if strings.Contains(p.output(), "initialized") {
		t.Errorf("the second start initialized again:\n%s", p.output())
	}
	if second.Fingerprint != first.Fingerprint || second.Password != first.Password {
		t.Errorf("after a restart the address is %s, was %s (the port may differ)", second, first)
	}
	p.stop(t, syscall.SIGTERM)
}

func TestStartRenewsMissingCertificate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	dir := t.TempDir()
	mustSucceed(t, hushRelay(t, nil, "init", "--data", dir, "--listen", "127.0.0.1:0"))
	for _, f := range []string{certFile, certKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p, a := startRelay(t, "--data", dir)
	if a.Fingerprint != identityFingerprint(t, dir) {
		t.Errorf("address fingerprint %s is not that of identity.key", a.Fingerprint)
	}
	p.stop(t, syscall.SIGTERM)
	if !strings.Contains(p.stderr.String(), "issued a new online certificate") {
		t.Errorf("start did not say that it issued a certificate:\n%s", p.stderr.String())
	}
	if _, err := readCertificate(dir); err != nil {
		t.Errorf("the new certificate: %v", err)
	}
}

// TestConfigDefaults checks that the commented defaults in config.toml are
// the relay's: uncommented, they parse and mean the same as no setting.
func TestConfigDefaults(t *testing.T) {
	var lines []string
	for _, line := range strings.Split(string(configText(nil)), "\n") {
		if s, ok := strings.CutPrefix(line, "# "); ok && strings.Contains(s, " = ") {
			line = s
		}
		lines = append(lines, line)
	}
	path := filepath.Join(t.TempDir(), configFile)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := settings{file: fc, listen: fc.Listen}
	got := s.relayConfig()
	want := relay.Config{
		Listen:                relay.DefaultListen,
		QueueQuota:            relay.DefaultQueueQuota,
		MaxMessageSize:        queue.MaxMessageSize,
		MessageTTL:            relay.DefaultMessageTTL,
		UnsecuredTTL:          relay.DefaultUnsecuredTTL,
		SweepInterval:         relay.DefaultSweepInterval,
		HandshakeTimeout:      relay.DefaultHandshakeTimeout,
		IdleTimeout:           relay.DefaultIdleTimeout,
		NewRate:               relay.DefaultNewRate,
		SendRate:              relay.DefaultSendRate,
		MaxSubscriptions:      relay.DefaultMaxSubscriptions,
		CommandRate:           relay.DefaultCommandRate,
		FailureRate:           relay.DefaultFailureRate,
		RelayNewRate:          relay.DefaultRelayNewRate,
		RelayFailureRate:      relay.DefaultRelayFailureRate,
		MaxSessions:           relay.DefaultMaxSessions,
		MaxSessionsPerAddress: relay.DefaultMaxSessionsPerAddress,
		MaxSessionsPerPrefix:  relay.DefaultMaxSessionsPerPrefix,
		MaxHandshakes:         relay.DefaultMaxHandshakes,
		FirstByteTimeout:      relay.DefaultFirstByteTimeout,
		MaxStoredBytes:        relay.DefaultMaxStoredBytes,
		MinFreeDisk:           relay.DefaultMinFreeDisk,
		MappedStoreLimit:      relay.DefaultMappedStoreLimit,
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("the documented defaults give\n%+v\nwant\n%+v", got, want)
	}
	if fc.Host != "" || fc.Password != "" || fc.PasswordFile != "" || fc.LogLevel != "info" || fc.LogFormat != "text" ||
		fc.Admin != defaultAdmin || fc.Drain || fc.Tor != "off" || fc.TorControl != defaultTorControl || fc.Torrc != "" {
		t.Errorf("documented defaults: %+v", fc)
	}
	// Every field of fileConfig is documented.
	for _, f := range []string{"listen", "host", "password", "password_file", "queue_quota", "max_message_size",
		"message_ttl", "unsecured_ttl", "sweep_interval", "handshake_timeout", "idle_timeout",
		"new_rate", "send_rate", "max_subscriptions", "command_rate", "failure_rate", "relay_new_rate", "relay_failure_rate",
		"max_sessions", "max_sessions_per_address", "max_sessions_per_prefix", "max_handshakes", "first_byte_timeout", "max_stored_mib", "min_free_disk_mib", "mapped_store_limit_mib", "log_level", "log_format",
		"admin", "drain", "tor", "tor_control", "torrc"} {
		if !strings.Contains(string(configText(nil)), "\n# "+f+" = ") {
			t.Errorf("config.toml does not document %s", f)
		}
	}
}

// checkClient uses the relay at a with the client library, over both
// transports: the password in the printed address creates queues, and a
// message goes through; a wrong or missing password is refused.
func checkClient(t *testing.T, a queue.Address) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, transport := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		c, err := link.Dial(ctx, a, link.Config{Transport: transport})
		if err != nil {
			t.Fatalf("dial %s over %s: %v", a, transport, err)
		}
		defer c.Close()
		q, err := c.Create(ctx)
		if err != nil {
			t.Fatalf("create a queue over %s: %v", transport, err)
		}
		sender, err := queue.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Secure(ctx, q, queue.PublicKey(sender)); err != nil {
			t.Fatalf("secure over %s: %v", transport, err)
		}
		body := []byte("hello over " + transport)
		if err := c.Send(ctx, q.SenderID, sender, body); err != nil {
			t.Fatalf("send over %s: %v", transport, err)
		}
		m, err := c.Get(ctx, q)
		if err != nil {
			t.Fatalf("get over %s: %v", transport, err)
		}
		if !bytes.Equal(m.Body, body) {
			t.Errorf("got %q over %s, sent %q", m.Body, transport, body)
		}
		if err := c.Ack(ctx, q, m.ID); err != nil {
			t.Errorf("ack over %s: %v", transport, err)
		}
	}

	wrong := a
	wrong.Password = "not-the-password"
	for _, addr := range []queue.Address{wrong, a.WithoutPassword()} {
		c, err := link.Dial(ctx, addr, link.Config{})
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		if _, err := c.Create(ctx); !errors.Is(err, link.ErrWrongPassword) {
			t.Errorf("create with password %q: %v, want %v", addr.Password, err, link.ErrWrongPassword)
		}
		c.Close()
	}
}
