package privnet

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNetwork starts a network through Shared, checks its configuration
// and that every socket its tors hold is on 127.0.0.1, then closes it and
// checks that its processes and directory are gone.
func TestNetwork(t *testing.T) {
	var s Shared
	n := s.Get(t)
	defer s.Close()
	if again := s.Get(t); again != n {
		t.Fatal("a second Get started another network")
	}
	logged := false
	defer func() {
		if t.Failed() && !logged {
			t.Logf("logs:\n%s", n.Logs())
		}
	}()

	// The consensus lists every relay.
	b, err := os.ReadFile(filepath.Join(n.nodes[0].dir, "cached-microdesc-consensus"))
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(b, []byte("\nr ")); got != numAuthorities+numRelays {
		t.Errorf("consensus lists %d relays, want %d", got, numAuthorities+numRelays)
	}

	// The client torrc names the network's authorities, nothing else.
	ct, err := os.ReadFile(n.ClientTorrc())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(ct), "\nDirAuthority "); got != numAuthorities {
		t.Errorf("client torrc has %d DirAuthority lines, want %d:\n%s", got, numAuthorities, ct)
	}
	for _, want := range []string{"TestingTorNetwork 1\n", "UseDefaultFallbackDirs 0\n"} {
		if !strings.Contains(string(ct), want) {
			t.Errorf("client torrc lacks %q", want)
		}
	}

	// No configuration names an address other than 127.0.0.1.
	ip := regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)
	files := []string{n.ClientTorrc()}
	for _, nd := range n.nodes {
		files = append(files, filepath.Join(nd.dir, "torrc"))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ip.FindAllString(string(b), -1) {
			if m != "127.0.0.1" {
				t.Errorf("%s names %s", f, m)
			}
		}
	}

	t.Logf("checks start at %v", time.Now().Format("15:04:05.000"))
	// Every socket of every tor is on 127.0.0.1 (Linux only).
	if _, err := os.Stat("/proc/net/tcp"); err == nil {
		socks := loopbackSockets(t)
		for _, nd := range n.nodes {
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", nd.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			count := 0
			for _, fd := range fds {
				link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", nd.cmd.Process.Pid, fd.Name()))
				if err != nil || !strings.HasPrefix(link, "socket:[") {
					continue
				}
				inode := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
				if s, ok := socks[inode]; ok {
					if s != "" {
						t.Errorf("%s: %s", nd.name, s)
					}
					count++
				}
			}
			if count == 0 {
				t.Errorf("%s holds no IP sockets", nd.name)
			}
		}
	}

	tc := time.Now()
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("Close took %v", time.Since(tc).Round(time.Millisecond))
	for _, nd := range n.nodes {
		select {
		case <-nd.done:
		default:
			t.Errorf("%s still runs after Close", nd.name)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", n.Logs())
		logged = true
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Shared.Close: %v", err)
	}
	if _, err := os.Stat(n.dir); !os.IsNotExist(err) {
		t.Errorf("network directory after Close: %v", err)
	}
}

// loopbackSockets reads /proc/net/{tcp,tcp6,udp,udp6} and maps each
// socket's inode to "" if its local address is 127.0.0.1 and its peer is
// 127.0.0.1 or unset, or else to a description of the offence.
func loopbackSockets(t *testing.T) map[string]string {
	t.Helper()
	const loopback, unset = "0100007F", "00000000"
	m := make(map[string]string)
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			local, remote, inode := f[1], f[2], f[9]
			lip, _, _ := strings.Cut(local, ":")
			rip, _, _ := strings.Cut(remote, ":")
			if proto == "tcp" || proto == "udp" {
				if lip == loopback && (rip == loopback || rip == unset) {
					m[inode] = ""
					continue
				}
			}
			m[inode] = fmt.Sprintf("%s socket %s -> %s", proto, hexAddr(local), hexAddr(remote))
		}
	}
	return m
}

// hexAddr renders a /proc/net address ("0100007F:1F90") for messages.
func hexAddr(s string) string {
	ip, port, _ := strings.Cut(s, ":")
	b, _ := hex.DecodeString(ip)
	p, _ := strconv.ParseUint(port, 16, 16)
	for i, j := 0, len(b)-1; i < j && len(b) == 4; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return fmt.Sprintf("%x:%d", b, p)
}

func TestAvailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Available()
	if err == nil || !strings.Contains(err.Error(), "tor and tor-gencert") {
		t.Fatalf("Available with an empty PATH: %v", err)
	}
}
