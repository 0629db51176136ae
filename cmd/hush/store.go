package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
)

// passphraseEnv is the environment variable that may hold the store's
// passphrase, for scripts.
const passphraseEnv = "HUSH_PASSPHRASE"

// given returns the passphrase given without asking: from
// --passphrase-file, else from $HUSH_PASSPHRASE; nil when neither is set.
// from says where it came from, for error messages.
func (c *cmd) given() (pass []byte, from string, err error) {
	if c.passphraseFile != "" {
		pass, err := readPassphraseFile(c.passphraseFile)
		return pass, "--passphrase-file " + c.passphraseFile, err
	}
	// $HUSH_PASSPHRASE is for every store of its user: one with a key
	// file needs none.
	if s := c.env.getenv(passphraseEnv); s != "" && !exists(keyFile(c.home)) {
		return []byte(s), "$" + passphraseEnv, nil
	}
	return nil, "", nil
}

// readPassphraseFile returns the first line of the file at path, without
// its line ending.
func readPassphraseFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("passphrase file %s: the first line is empty", path)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("passphrase file %s: the first line is empty", path)
	}
	return line, nil
}

// init is "hush init".
func (c *cmd) init(noPassphrase bool) error {
	var pass []byte
	if !noPassphrase {
		var err error
		pass, _, err = c.given()
		if err != nil {
			return err
		}
		if pass == nil {
			pass, err = c.newPassphrase()
			if err != nil {
				return err
			}
		}
	}
	err := client.Init(c.home, pass)
	if errors.Is(err, client.ErrExists) {
		return fmt.Errorf("hush is already initialized in %s (pass --home DIR for another store)", c.home)
	}
	if err != nil {
		return err
	}
	if c.json {
		return c.emit(map[string]any{"home": c.home, "passphrase": pass != nil})
	}
	w := c.env.stdout
	fmt.Fprintf(w, "hush: initialized a new store in %s\n", c.home)
	if pass != nil {
		fmt.Fprintln(w, "Contacts, keys and messages are encrypted under your passphrase; without it they cannot be read, by anyone.")
	} else {
		fmt.Fprintf(w, "Contacts, keys and messages are encrypted under the key in %s:\nanyone who can read that file can read them.\n", keyFile(c.home))
	}
	fmt.Fprintln(w, "\nNext, add two relays (addresses from their operators):\n  hush relays add hush://...")
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// keyFile is where the client keeps the store's key without a passphrase.
func keyFile(home string) string { return filepath.Join(home, "hush.key") }

// newPassphrase asks for a new passphrase twice on the terminal.
func (c *cmd) newPassphrase() ([]byte, error) {
	pass, err := c.env.readPassword("New passphrase for " + c.home + ": ")
	if errors.Is(err, errNoTerminal) {
		return nil, errors.New("no passphrase: pass --passphrase-file FILE, or --no-passphrase to keep the key in a file, or set $" + passphraseEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	if len(pass) == 0 {
		return nil, errors.New("the passphrase is empty (use --no-passphrase for none)")
	}
	again, err := c.env.readPassword("Again: ")
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	if !bytes.Equal(pass, again) {
		return nil, errors.New("the passphrases differ")
	}
	return pass, nil
}

// openClient opens the store in --home, online (connected to the relays)
// as n says, with its events kept in the store until taken (for
// package agent's server). When the store needs a passphrase and none was
// given, it asks on the terminal, if there is one.
func (c *cmd) openClient(ctx context.Context, n need) (*client.Client, error) {
	pass, from, err := c.given()
	if err != nil {
		return nil, err
	}
	cfg := client.Config{
		Home:        c.home,
		Passphrase:  pass,
		Dial:        link.Config{Transport: link.Transport(c.transport), Tor: link.TorMode(c.tor), SOCKS: c.socks, Cover: c.cover},
		Offline:     n.offline,
		Contacts:    n.contacts,
		SendOnly:    n.sendOnly,
		Stagger:     n.stagger,
		RotateEvery: n.rotateEvery,
		Isolation:   client.Isolation(c.isolation),
		Routing:     client.Routing(c.routing),
		Logger:      c.logger(),
		Events:      client.EventsStored,
	}
	cl, err := client.Open(ctx, cfg)
	if errors.Is(err, client.ErrPassphraseRequired) && pass == nil {
		pass, err = c.env.readPassword("Passphrase for " + c.home + ": ")
		if errors.Is(err, errNoTerminal) {
			return nil, fmt.Errorf("the store in %s is encrypted under a passphrase: pass --passphrase-file FILE or set $%s", c.home, passphraseEnv)
		}
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase: %w", err)
		}
		from = "the one typed"
		cfg.Passphrase = pass
		cl, err = client.Open(ctx, cfg)
	}
	switch {
	case err == nil:
		return cl, nil
	case errors.Is(err, client.ErrNotInitialized):
		return nil, fmt.Errorf("no hush store in %s: run \"hush init\" first, or pass --home DIR", c.home)
	case errors.Is(err, client.ErrWrongPassphrase):
		if from == "" {
			return nil, fmt.Errorf("wrong passphrase for the store in %s", c.home)
		}
		return nil, fmt.Errorf("wrong passphrase for the store in %s (from %s)", c.home, from)
	case errors.Is(err, client.ErrPassphraseRequired):
		return nil, fmt.Errorf("the store in %s is encrypted under a passphrase: pass --passphrase-file FILE or set $%s", c.home, passphraseEnv)
	default:
		return nil, fmt.Errorf("opening the store in %s: %w", c.home, err)
	}
}
