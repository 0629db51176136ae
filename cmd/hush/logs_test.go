package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestVerboseLogsNeverRecordAddresses runs hush --verbose invite over TCP
// (each attempt fails at once) with its only relay stopped: the client's
// debug log of the failed attempts, whose
// errors name the relay's 127.0.0.1 address and port, holds neither
// (the log lines, not the error the command reports to its user, which
// names the relay it could not reach).
func TestVerboseLogsNeverRecordAddresses(t *testing.T) {
	p := runRelay(t, filepath.Join(t.TempDir(), "r"))
	u := newUser(t, "a")
	u.ok(t, "init", "--no-passphrase")
	u.ok(t, "relays", "add", p.Addr.String())
	p.Terminate()
	r := u.run(t, "", "--verbose", "--transport", "tcp", "invite", "--timeout", "3s")
	port := ":" + strconv.Itoa(int(p.Addr.Port))
	logs := 0
	for line := range strings.Lines(r.stderr) {
		if !strings.Contains(line, "level=") {
			continue
		}
		logs++
		if strings.Contains(line, "127.0.0.1") || strings.Contains(line, port) {
			t.Errorf("a log line records the relay's address: %s", line)
		}
	}
	if logs == 0 || !strings.Contains(r.stderr, "level=DEBUG") {
		t.Fatalf("hush --verbose logged nothing at debug level:\n%s", r.stderr)
	}
}
