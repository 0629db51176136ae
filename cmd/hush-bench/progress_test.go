//go:build linux

package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestProgressNeverRecordsAddresses prints, as the chaos run does when a
// send fails, the error of a dial to a loopback port where nothing
// listens: the progress line keeps the error's words but neither the
// address nor the port.
func TestProgressNeverRecordsAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Skip("something else took the port")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Fatalf("the dial error %q does not name %s: nothing to redact", err, addr)
	}
	var buf bytes.Buffer
	o := commonOptions{progress: &buf}
	o.progressf("send: %v", err)
	_, port, _ := net.SplitHostPort(addr)
	line := buf.String()
	if strings.Contains(line, "127.0.0.1") || strings.Contains(line, ":"+port) {
		t.Fatalf("the progress line records the address: %q", line)
	}
	if !strings.HasPrefix(line, "hush-bench: send: ") || !strings.Contains(line, "connection refused") {
		t.Fatalf("the progress line lost the error: %q", line)
	}
}
