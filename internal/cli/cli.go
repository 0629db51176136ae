// Package cli holds the command-line conventions that hush and hush-relay
// share: flag sets that print their own usage text, and the version string.
package cli

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
)

// FlagSet is one command's flags and the head of its usage text. Parsing
// prints nothing: the program prints errors and Help itself.
type FlagSet struct {
	*flag.FlagSet
	header  string
	program string
	// globals are the names of the flags added by AddGlobals, in order.
	globals []string
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
	return &FlagSet{FlagSet: fs, program: program, header: fmt.Sprintf("usage: %s %s [flags]%s\n\n%s\n", program, name, args, doc)}
}

// AddGlobals adds the flags of g that are named in names, the program's
// global flags that this command takes, so that they may follow the
// command too. They set the same variables as in g. Help lists them apart,
// by name only.
func (fs *FlagSet) AddGlobals(g *flag.FlagSet, names ...string) {
	for _, name := range names {
		f := g.Lookup(name)
		if f == nil {
			panic("cli: no global flag " + name)
		}
		fs.Var(f.Value, f.Name, f.Usage)
		fs.Lookup(name).DefValue = f.DefValue
		fs.globals = append(fs.globals, name)
	}
}

// Help returns the command's usage text with its own flags, if it has
// any, and the names of the global flags it takes.
func (fs *FlagSet) Help() string {
	var b strings.Builder
	b.WriteString(fs.header)
	own := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(fs.globals, f.Name) {
			own.Var(f.Value, f.Name, f.Usage)
			own.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	n := 0
	own.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		own.SetOutput(&b)
		own.PrintDefaults()
	}
	if len(fs.globals) > 0 {
		fmt.Fprintf(&b, "\nGlobal flags (see \"%s help\"): --%s\n", fs.program, strings.Join(fs.globals, ", --"))
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
