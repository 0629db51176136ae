package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hushrelay/hush/client/link"
)

// TestHealthzUnwritableStore makes the running relay's store unwritable
// (a file size limit below the store's size, set on the process: its
// writes fail with EFBIG, as on a full disk) and checks that /healthz and
// status report it, and recover once the limit is lifted.
func TestHealthzUnwritableStore(t *testing.T) {
	ctx := opsContext(t)
	dir, p, a, admin := startOps(t)
	c := dialRelay(t, ctx, a, link.TransportTCP)
	securedQueue(t, ctx, c, "before")
	if code, body := httpGet(t, "http://"+admin+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}

	pid := p.cmd.Process.Pid
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	limited := unix.Rlimit{Cur: 4096, Max: old.Max} // below every page the store writes
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &limited, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	waitHealth := func(want int) string {
		t.Helper()
		for {
			code, body := httpGet(t, "http://"+admin+"/healthz")
			if code == want {
				return body
			}
			select {
			case <-ctx.Done():
				t.Fatalf("/healthz stayed %d %q, want %d", code, body, want)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	body := waitHealth(http.StatusServiceUnavailable)
	if !strings.Contains(body, "store not writable") {
		t.Errorf("/healthz of an unwritable store: %q", body)
	}
	r := hushRelay(t, nil, "status", "--data", dir, "--admin", admin)
	mustFail(t, r, 1, "the relay is unhealthy", "store not writable")
	if !strings.Contains(r.stdout, "UNHEALTHY") {
		t.Errorf("status of an unhealthy relay:\n%s", r.stdout)
	}
	// A command that must write fails cleanly, and the relay stays up.
	if _, err := c.Create(ctx); err == nil {
		t.Error("create succeeded on an unwritable store")
	}

	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &old, nil); err != nil {
		t.Fatal(err)
	}
	waitHealth(http.StatusOK)
	if _, err := c.Create(ctx); err != nil {
		t.Errorf("create once the store is writable again: %v", err)
	}
	p.stop(t, syscall.SIGTERM)
}
