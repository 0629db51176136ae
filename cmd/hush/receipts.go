package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/internal/cli"
)

const receiptsUsage = `usage: hush receipts
       hush receipts on|off
       hush receipts on|off|default NAME

Delivery receipts tell your contacts when your hush has stored their
messages (their chat shows a second tick, ✓✓). They are on unless turned
off: for every contact ("hush receipts off"), or for one ("hush receipts
off NAME"), whose own setting wins over the global one until set back to
"default". "hush receipts" shows the settings. Receipts let a contact
know when you were online; with them off, your hush sends nothing back.
`

// receiptsVerb parses "hush receipts", as addressVerb does.
func (c *cmd) receiptsVerb(ctx context.Context, args []string) (fs *cli.FlagSet, exec func([]string) error, nargs int, argsUsage string, rest []string, done bool) {
	sub := "show"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	// The contact's name, if any, is the one argument that is not a flag.
	named := false
	for _, a := range args {
		named = named || !strings.HasPrefix(a, "-")
	}
	switch sub {
	case "show":
		fs = newFlagSet("receipts", "", "show whether delivery receipts are sent: globally, and to the contacts that have\na setting of their own")
		exec = func([]string) error { return c.receiptsShow(ctx) }
	case "on", "off", "default":
		fs = newFlagSet("receipts "+sub, "[NAME]", "turn delivery receipts "+sub+" for every contact, or for the contact NAME only\n(default, for a contact only: follow the global setting)")
		if named {
			nargs, argsUsage = 1, "NAME"
		}
		mode := client.ReceiptMode(sub)
		if sub == "default" {
			mode = client.ReceiptsDefault
		}
		exec = func(a []string) error {
			if len(a) == 0 {
				if mode == client.ReceiptsDefault {
					return usageError{"receipts default: name the contact (the global setting is on or off)", receiptsUsage}
				}
				return c.receiptsSet(ctx, "", mode)
			}
			return c.receiptsSet(ctx, a[0], mode)
		}
	case "help", "-h", "--help":
		return nil, func([]string) error { fmt.Fprint(c.env.stdout, receiptsUsage); return nil }, 0, "", nil, true
	default:
		return nil, func([]string) error {
			return usageError{fmt.Sprintf("receipts: %q is not on, off or default", sub), receiptsUsage}
		}, 0, "", nil, true
	}
	return fs, exec, nargs, argsUsage, args, false
}

// receiptsShow is "hush receipts".
func (c *cmd) receiptsShow(ctx context.Context) error {
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	on, err := s.Receipts(ctx)
	if err != nil {
		return err
	}
	list, err := s.Contacts(ctx)
	if err != nil {
		return err
	}
	own := map[string]string{}
	for _, ct := range list {
		if ct.Receipts != client.ReceiptsDefault {
			own[ct.Name] = string(ct.Receipts)
		}
	}
	if c.json {
		return c.emit(map[string]any{"receipts": on, "contacts": own})
	}
	state := "on"
	if !on {
		state = "off"
	}
	fmt.Fprintf(c.env.stdout, "receipts are %s for every contact without a setting of its own\n", state)
	for _, ct := range list {
		if m, ok := own[ct.Name]; ok {
			fmt.Fprintf(c.env.stdout, "%s: %s\n", clean(ct.Name), m)
		}
	}
	return nil
}

// receiptsSet is "hush receipts on|off|default [NAME]".
func (c *cmd) receiptsSet(ctx context.Context, name string, mode client.ReceiptMode) error {
	s, err := c.open(ctx, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if name == "" {
		err = s.SetReceipts(ctx, mode == client.ReceiptsOn)
	} else {
		err = s.SetContactReceipts(ctx, name, mode)
	}
	if err != nil {
		return c.contactError(err, name)
	}
	shown := string(mode)
	if mode == client.ReceiptsDefault {
		shown = "default"
	}
	if c.json {
		return c.emit(map[string]any{"receipts": shown, "contact": name})
	}
	switch {
	case name == "":
		fmt.Fprintf(c.env.stdout, "receipts %s for every contact without a setting of its own\n", shown)
	case mode == client.ReceiptsDefault:
		fmt.Fprintf(c.env.stdout, "receipts to %s follow the global setting\n", clean(name))
	default:
		fmt.Fprintf(c.env.stdout, "receipts %s for %s\n", shown, clean(name))
	}
	return nil
}
