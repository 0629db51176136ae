package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mdp/qrterminal/v3"

	"github.com/hushrelay/hush/internal/gctune"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
	"github.com/hushrelay/hush/torutil"
)

const policy = "hush-relay: logs never record IP addresses, ports, queue IDs or message sizes, at any level"

// cmdInit is "hush-relay init".
func cmdInit(o *options, env environment) error {
	res, err := initialize(o, true)
	if err != nil {
		return err
	}
	s, err := loadSettings(o)
	if err != nil {
		return err
	}
	dir := o.dataDir
	w := env.stdout
	fmt.Fprintf(w, "hush-relay: initialized a new relay in %s\n", dir)
	if !res.wroteConfig {
		fmt.Fprintf(w, "  %-20s kept as it was\n", configFile)
	} else {
		fmt.Fprintf(w, "  %-20s the settings, every option listed with its default\n", configFile)
	}
	fmt.Fprintf(w, "  %-20s the relay's long-term identity: keep it secret and back it up;\n  %-20s the address depends on it\n", identityFile, "")
	fmt.Fprintf(w, "  %-20s the online TLS certificate, issued by the identity\n", certFile+", "+certKeyFile)
	fmt.Fprintf(w, "  %-20s queues and messages (created by start)\n", storeFile)
	if s.hostWarning {
		warnHost(env.stderr)
	}
	_, port, err := splitListen(s.listen)
	if err != nil {
		return err
	}
	if port == 0 {
		fmt.Fprintf(w, "The listen port is 0: the port is chosen when the relay starts, and start prints the address.\n")
		return nil
	}
	fp, err := fingerprint(dir)
	if err != nil {
		return err
	}
	addr, err := s.address(fp, port)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\naddress: %s\n", addr)
	if res.generatedPassword {
		fmt.Fprintf(w, "\nThe address holds a generated password (saved in %s), so that only\nthe people you give it to can create queues on this relay.\n", configFile)
	}
	explainAddress(w, addr)
	fmt.Fprintln(w)
	printQR(w, addr.String())
	fmt.Fprintf(w, "\nOpen UDP and TCP port %d in the firewall, then run the relay:\n  hush-relay start --data %s\n", port, dir)
	return nil
}

// cmdStart is "hush-relay start".
func cmdStart(ctx context.Context, o *options, env environment) error {
	dir := o.dataDir
	if isEmpty(dir) {
		// Check the settings first: a typo must not leave a new identity.
		if _, err := loadConfig(filepath.Join(dir, configFile), o.environ); err != nil {
			return err
		}
		if _, err := initialize(o, false); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "hush-relay: initialized a new relay in %s; back up %s: it is the relay's identity\n",
			dir, filepath.Join(dir, identityFile))
	}
	s, err := loadSettings(o)
	if err != nil {
		return err
	}
	if s.hostWarning {
		warnHost(env.stderr)
	}
	identity, err := loadIdentity(dir)
	if err != nil {
		return err
	}
	cert, note, err := loadCertificate(dir, identity)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintf(env.stderr, "hush-relay: %s\n", note)
	}
	fp, err := relay.CertificateFingerprint(cert)
	if err != nil {
		return err
	}
	var token string
	if s.admin != "" {
		if token, err = ensureAdminToken(dir); err != nil {
			return err
		}
	}

	logger := s.newLogger(env.stderr)
	cfg := s.relayConfig()
	cfg.Certificate = cert
	cfg.StatelessResetKey = resetKey(identity, cert)
	cfg.StorePath = filepath.Join(dir, storeFile)
	cfg.Logger = logger

	fmt.Fprintln(env.stdout, policy)
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	// The garbage collector's target: see internal/gctune (GOGC in the
	// environment overrides it).
	gcCtx, stopGC := context.WithCancel(ctx)
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		gctune.Run(gcCtx, gctune.DefaultHeadroom, env.getenv)
	}()
	defer func() { stopGC(); <-gcDone }()
	tcp, ok := r.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("relay listens on %v, not a TCP address", r.Addr())
	}
	addr, err := s.address(fp, uint16(tcp.Port))
	if err != nil {
		return err
	}
	reload := func() error {
		c, err := readCertificate(dir)
		if err != nil {
			return err
		}
		return r.SetCertificate(c)
	}
	var adminSrv *http.Server
	if s.admin != "" {
		srv, ln, err := startAdmin(r, &s, token, reload, logger)
		switch {
		case err != nil && s.adminSet:
			return fmt.Errorf("admin listener: %w", err)
		case err != nil:
			fmt.Fprintf(env.stderr, "hush-relay: warning: no admin listener (no metrics, health or hot backups): %v; set admin in %s or pass --admin\n", err, configFile)
		default:
			adminSrv = srv
			defer srv.Close()
			if ap := ln.Addr().(*net.TCPAddr).AddrPort(); !ap.Addr().IsLoopback() {
				fmt.Fprintf(env.stderr, "hush-relay: warning: the admin listener %s is not on a loopback address: anyone who reaches it sees the metrics and status\n", ln.Addr())
			}
			fmt.Fprintf(env.stdout, "admin: http://%s/ (/metrics, /healthz, /status)\n", ln.Addr())
			// backup, status and drain find the listener from the data
			// directory, whatever --admin said.
			addrFile := filepath.Join(dir, adminAddrFile)
			if err := writeFileAtomic(addrFile, []byte(ln.Addr().String()+"\n"), 0o600, false); err != nil {
				fmt.Fprintf(env.stderr, "hush-relay: warning: %v: backup, status and drain need --admin %s\n", err, ln.Addr())
			} else {
				defer os.Remove(addrFile)
			}
		}
	}
	if s.drain {
		fmt.Fprintln(env.stdout, "hush-relay: drain mode: new queues are refused, existing queues are served")
	}
	if s.tor.mode != "off" {
		tor, onion, err := publishOnion(ctx, dir, &s.tor, tcp, env)
		if err != nil {
			return err
		}
		defer tor.Close()
		addr.Onion = onion
	}
	fmt.Fprintf(env.stdout, "address: %s\n", addr)
	if addr.Password != "" {
		fmt.Fprintln(env.stdout, "hush-relay: the address holds the password needed to create queues: give it only to people who may use this relay")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			if err := reload(); err != nil {
				logger.Error("SIGHUP: the online certificate was not reloaded", "err", err)
			}
		}
	}
	if env.stopSignals != nil {
		env.stopSignals() // a second signal ends the process at once
	}
	fmt.Fprintln(env.stdout, "hush-relay: shutting down")
	if adminSrv != nil {
		adminSrv.Close()
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	fmt.Fprintln(env.stdout, "hush-relay: stopped")
	return nil
}

// cmdAddress is "hush-relay address".
func cmdAddress(o *options, qr bool, env environment) error {
	if isEmpty(o.dataDir) {
		return fmt.Errorf("%s is not a relay data directory (no %s): run \"hush-relay init --data %s\" first", o.dataDir, identityFile, o.dataDir)
	}
	s, err := loadSettings(o)
	if err != nil {
		return err
	}
	if s.hostWarning {
		warnHost(env.stderr)
	}
	fp, err := fingerprint(o.dataDir)
	if err != nil {
		return err
	}
	_, port, err := splitListen(s.listen)
	if err != nil {
		return err
	}
	if port == 0 {
		return fmt.Errorf("the listen port is 0: the port is chosen at start, and \"hush-relay start\" prints the address")
	}
	addr, err := s.address(fp, port)
	if err != nil {
		return err
	}
	if s.tor.mode != "off" {
		onion, err := onionHost(o.dataDir)
		switch {
		case err != nil:
			return err
		case onion == "":
			fmt.Fprintln(env.stderr, `hush-relay: the onion host is added to the address once "hush-relay start" has published the onion service`)
		default:
			addr.Onion = onion
		}
	}
	fmt.Fprintln(env.stdout, addr)
	if qr {
		fmt.Fprintln(env.stdout)
		printQR(env.stdout, addr.String())
	}
	return nil
}

func warnHost(w io.Writer) {
	fmt.Fprintln(w, `hush-relay: warning: the address says "localhost", which works only on this machine; pass --host with the relay's public DNS name or IP (or set host in config.toml)`)
}

// explainAddress tells what the address is for.
func explainAddress(w io.Writer, addr queue.Address) {
	if addr.Password != "" {
		fmt.Fprintf(w, "Give the address to the people who will use this relay for their queues.\nSending to a queue needs no password: without it, the address is\n  %s\n", addr.WithoutPassword())
		return
	}
	fmt.Fprintln(w, "The relay has no password: anyone who knows the address can create queues on it.")
}

// printQR writes text as a QR code of half-block characters.
func printQR(w io.Writer, text string) {
	qrterminal.GenerateWithConfig(text, qrterminal.Config{
		Level:          qrterminal.L,
		Writer:         w,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      2,
	})
}

// onionHost returns the onion host of the onion service key in dir, or ""
// if there is none yet (the first start creates it).
func onionHost(dir string) (string, error) {
	path := filepath.Join(dir, onionKeyFile)
	data, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	key, err := parsePrivateKey(path, data)
	if err != nil {
		return "", err
	}
	return torutil.OnionHost(key.Public().(ed25519.PublicKey)), nil
}

// onionKeyFile holds the onion service's key, so that the onion host stays
// the same across restarts.
const onionKeyFile = "onion.key"

// publishOnion starts or attaches to tor and publishes the relay's TCP
// listener as an onion service on the same port. The onion forwards to
// the loopback address when the relay listens on every address.
func publishOnion(ctx context.Context, dir string, t *torOptions, tcp *net.TCPAddr, env environment) (*torutil.Tor, string, error) {
	var (
		tor *torutil.Tor
		err error
	)
	switch t.mode {
	case "embedded":
		fmt.Fprintln(env.stdout, "hush-relay: starting tor")
		tor, err = torutil.Start(ctx, torutil.StartConfig{
			DataDir:   filepath.Join(dir, "tor"),
			TorrcFile: t.torrc,
			Progress: func(percent int, summary string) {
				fmt.Fprintf(env.stdout, "hush-relay: tor bootstrap %d%%: %s\n", percent, summary)
			},
		})
	case "system":
		tor, err = torutil.Attach(ctx, t.control)
	}
	if err != nil {
		return nil, "", err
	}
	target := tcp.AddrPort()
	if target.Addr().IsUnspecified() {
		target = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), target.Port())
	}
	fmt.Fprintln(env.stdout, "hush-relay: publishing the onion service")
	onion, _, err := tor.Publish(ctx, filepath.Join(dir, onionKeyFile), tcp.Port, target.String())
	if err != nil {
		tor.Close()
		return nil, "", fmt.Errorf("publishing the onion service: %w", err)
	}
	return tor, onion, nil
}
