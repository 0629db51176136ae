package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTorProcessCode checks that the client packages link no code that
// starts or controls tor (bine, package torutil): a client dials through
// tor's SOCKS port only (package torutil/socks).
func TestNoTorProcessCode(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command(gobin, "list", "-deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	var socks bool
	for _, d := range deps {
		switch {
		case d == "github.com/cretz/bine" || strings.HasPrefix(d, "github.com/cretz/bine/"),
			d == "github.com/hushrelay/hush/torutil":
			t.Errorf("the client links %s", d)
		case d == "github.com/hushrelay/hush/torutil/socks":
			socks = true
		}
	}
	if !socks { // the list is the one expected
		t.Errorf("the client does not link torutil/socks; go list gave %d packages", len(deps))
	}
}
