package cli

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	fs := NewFlagSet("hush", "send", "CONTACT MESSAGE", "send a message")
	fs.String("file", "", "read the message from `FILE`")
	want := "usage: hush send [flags] CONTACT MESSAGE\n\nsend a message\n\nFlags:\n  -file FILE\n    \tread the message from FILE\n"
	if got := fs.Help(); got != want {
		t.Errorf("Help =\n%q\nwant\n%q", got, want)
	}
	bare := NewFlagSet("hush-relay", "version", "", "print the version")
	if got, want := bare.Help(), "usage: hush-relay version [flags]\n\nprint the version\n"; got != want {
		t.Errorf("Help without flags = %q, want %q", got, want)
	}
}

// TestParsePrintsNothing checks that a bad flag is an error for the
// program to report, not text written by the flag package.
func TestParsePrintsNothing(t *testing.T) {
	fs := NewFlagSet("hush", "init", "", "create the store")
	err := fs.Parse([]string{"--nope"})
	if err == nil || errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--nope) = %v", err)
	}
	if fs.Output() != io.Discard {
		t.Error("the flag package writes somewhere")
	}
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestVersion(t *testing.T) {
	v := Version()
	if v == "" || strings.ContainsAny(v, " \n") {
		t.Errorf("Version() = %q", v)
	}
}

// TestAddGlobals checks that global flags added to a command parse into
// the global variables and are listed apart, by name only.
func TestAddGlobals(t *testing.T) {
	g := flag.NewFlagSet("hush", flag.ContinueOnError)
	home := g.String("home", "~/.hush", "the store's `directory`")
	g.Bool("json", false, "print JSON")
	fs := NewFlagSet("hush", "send", "", "send a message")
	fs.Duration("timeout", 0, "how long to wait")
	fs.AddGlobals(g, "home")
	if err := fs.Parse([]string{"--home", "/tmp/h", "--timeout", "1s"}); err != nil {
		t.Fatal(err)
	}
	if *home != "/tmp/h" {
		t.Errorf("--home after the command set %q", *home)
	}
	if err := fs.Parse([]string{"--json"}); err == nil {
		t.Error("a global flag not added was accepted")
	}
	want := "usage: hush send [flags]\n\nsend a message\n\nFlags:\n  -timeout duration\n    \thow long to wait\n\nGlobal flags (see \"hush help\"): --home\n"
	if got := fs.Help(); got != want {
		t.Errorf("Help =\n%q\nwant\n%q", got, want)
	}
}
