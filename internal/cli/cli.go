// Package cli holds the command-line conventions that hush and hush-relay
// share: flag sets that print their own usage text, and the version string.
package cli

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// FlagSet is one command's flags and the head of its usage text. Parsing
// prints nothing: the program prints errors and Help itself.
type FlagSet struct {
	*flag.FlagSet
	header string
}

// NewFlagSet returns the flag set of program's command name. args, if not
// empty, names the command's arguments in the usage line; doc describes
// the command.
func NewFlagSet(program, name, args, doc string) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if args != "" {
		args = " " + args
	}
	return &FlagSet{fs, fmt.Sprintf("usage: %s %s [flags]%s\n\n%s\n", program, name, args, doc)}
}

// Help returns the command's usage text with its flags, if it has any.
func (fs *FlagSet) Help() string {
	var b strings.Builder
	b.WriteString(fs.header)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// Version returns the main module's version, or "devel-" and the VCS
// revision (with "-dirty" for a modified work tree) for a build from a
// work tree, or "devel".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}
