package main

// The operator's commands beyond init, start and address: status, drain,
// backup, restore, check, compact and rotate-cert, and the admin listener
// they talk to.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// adminTokenFile holds the token that the admin listener's /drain,
// /backup and /reload need; start creates it (mode 0600).
const adminTokenFile = "admin.token"

// errAdminUnreachable is returned (wrapped) by adminDo when nothing
// answers at the admin address.
var errAdminUnreachable = errors.New("no relay answers at the admin address")

// ensureAdminToken returns the data directory's admin token, creating it
// if it does not exist.
func ensureAdminToken(dir string) (string, error) {
	tok, err := readAdminToken(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	err = writeFileAtomic(filepath.Join(dir, adminTokenFile), []byte(base64.RawURLEncoding.EncodeToString(b)+"\n"), 0o600, true)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return readAdminToken(dir) // also when another process made it first
}

// readAdminToken reads the admin token, refusing a file others may read.
func readAdminToken(dir string) (string, error) {
	path := filepath.Join(dir, adminTokenFile)
	data, err := readSecret(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%s is empty: remove it, and start the relay again to make a new one", path)
	}
	return tok, nil
}

// startAdmin serves the admin listener on s.admin: the relay's admin
// handler, and POST /reload, which calls reload (it loads the online
// certificate again). Its errors are logged at debug level: they may name
// addresses.
func startAdmin(r *relay.Relay, s *settings, token string, reload func() error, logger *slog.Logger) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", s.admin)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", r.AdminHandler(token))
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, req *http.Request) {
		h := req.Header.Get("Authorization")
		if subtle.ConstantTimeCompare([]byte(h), []byte("Bearer "+token)) != 1 {
			http.Error(w, "forbidden: this endpoint needs the admin token", http.StatusForbidden)
			return
		}
		if err := reload(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "reloaded")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(queue.RedactHandler(logger.Handler()), slog.LevelDebug), // net/http names peers
	}
	go srv.Serve(ln)
	return srv, ln, nil
}

// adminAddrFile holds the address of the admin listener of the relay
// running on a data directory, written at start and removed at shutdown.
const adminAddrFile = "admin.addr"

// adminAddress returns the admin listener's address for the commands
// that talk to it: --admin, else that of the relay running on the data
// directory (adminAddrFile), else admin from the environment or
// config.toml (if readable), else the default; "" if it is off.
func adminAddress(o *options) (string, error) {
	a := o.admin
	if !o.set["admin"] {
		if b, err := os.ReadFile(filepath.Join(o.dataDir, adminAddrFile)); err == nil {
			if a := strings.TrimSpace(string(b)); a != "" {
				if _, _, err := splitListen(a); err == nil {
					return a, nil
				}
			}
		}
		fc, err := loadConfig(filepath.Join(o.dataDir, configFile), o.environ)
		if errors.Is(err, fs.ErrPermission) {
			fc = fileConfig{}
			_, err = applyEnv(&fc, o.environ)
		}
		if err != nil {
			return "", err
		}
		a = fc.Admin
	}
	switch a {
	case "":
		return defaultAdmin, nil
	case "off":
		return "", nil
	}
	if _, _, err := splitListen(a); err != nil {
		return "", fmt.Errorf("admin address %q: want host:port", a)
	}
	return a, nil
}

// adminDo sends a request to the admin listener, with the token if not
// empty. It never goes through a proxy.
func adminDo(ctx context.Context, admin, method, path, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+admin+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: time.Minute,
	}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %w", errAdminUnreachable, admin, err)
	}
	return resp, nil
}

// adminError returns the error of a response that is not 200 OK.
func adminError(admin string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("admin listener %s: %s: %s", admin, resp.Status, strings.TrimSpace(string(body)))
}

// getStatus asks the admin listener for the relay's status. It also
// returns the raw JSON.
func getStatus(ctx context.Context, o *options) (relay.Status, []byte, error) {
	var st relay.Status
	admin, err := adminAddress(o)
	if err != nil {
		return st, nil, err
	}
	if admin == "" {
		return st, nil, errors.New(`the admin listener is off (admin is "off"): turn it on to ask the relay`)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := adminDo(ctx, admin, http.MethodGet, "/status", "")
	if err != nil {
		return st, nil, fmt.Errorf("%w; is the relay running?", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(body, &st); err != nil || st.Fingerprint == "" {
		return st, nil, fmt.Errorf("admin listener %s: %s, not a relay status", admin, resp.Status)
	}
	// Another relay may have this address (its default): compare
	// identities when the data directory tells ours.
	if fp, err := fingerprint(o.dataDir); err == nil && fp.String() != st.Fingerprint {
		return st, nil, fmt.Errorf("the relay at the admin address %s is another relay (fingerprint %s, this data directory's is %s): pass its --admin", admin, st.Fingerprint, fp)
	}
	return st, body, nil
}

// cmdStatus is "hush-relay status".
func cmdStatus(ctx context.Context, o *options, asJSON bool, env environment) error {
	st, body, err := getStatus(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		env.stdout.Write(body)
	} else {
		w := env.stdout
		health := "healthy"
		if !st.Healthy {
			health = "UNHEALTHY: " + st.Problem
		}
		drain := "off"
		if st.Draining {
			drain = "on: new queues are refused"
		}
		fmt.Fprintf(w, "%-14s %s\n", "relay", health)
		fmt.Fprintf(w, "%-14s %s\n", "fingerprint", st.Fingerprint)
		fmt.Fprintf(w, "%-14s %s (up %s)\n", "started", st.Started.Format(time.RFC3339), time.Since(st.Started).Round(time.Second))
		fmt.Fprintf(w, "%-14s %s\n", "drain mode", drain)
		fmt.Fprintf(w, "%-14s %d\n", "sessions", st.Sessions)
		fmt.Fprintf(w, "%-14s %d\n", "subscriptions", st.Subscriptions)
		fmt.Fprintf(w, "%-14s %d\n", "queues", st.Queues)
		fmt.Fprintf(w, "%-14s %d undelivered\n", "messages", st.Messages)
		fmt.Fprintf(w, "%-14s %s, %s of it free\n", "store", humanBytes(st.StoreBytes), humanBytes(st.StoreFreeBytes))
		fmt.Fprintf(w, "%-14s valid until %s (%s)\n", "certificate", st.CertificateExpires.Format(time.DateOnly), daysLeft(st.CertificateExpires))
	}
	if !st.Healthy {
		return fmt.Errorf("the relay is unhealthy: %s", st.Problem)
	}
	return nil
}

// cmdDrain is "hush-relay drain".
func cmdDrain(ctx context.Context, o *options, on bool, env environment) error {
	admin, err := adminAddress(o)
	if err != nil {
		return err
	}
	if admin == "" {
		return errors.New(`the admin listener is off (admin is "off"): set drain = true in config.toml, or pass --drain to start`)
	}
	token, err := readAdminToken(o.dataDir)
	if err != nil {
		return fmt.Errorf("the admin token: %w (run drain as the relay's user, with its --data)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := adminDo(ctx, admin, http.MethodPost, fmt.Sprintf("/drain?on=%t", on), token)
	if err != nil {
		return fmt.Errorf("%w; is the relay running?", err)
	}
	defer resp.Body.Close()
	var st relay.Status
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return adminError(admin, resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("admin listener %s: %w", admin, err)
	}
	if st.Draining {
		fmt.Fprintf(env.stdout, "hush-relay: drain mode on: new queues are refused; the %d queues on the relay are served (%d undelivered messages)\n", st.Queues, st.Messages)
	} else {
		fmt.Fprintln(env.stdout, "hush-relay: drain mode off: new queues are accepted")
	}
	fmt.Fprintf(env.stdout, "hush-relay: this lasts until the relay stops; set drain in %s to keep it\n", configFile)
	return nil
}

// backupTo writes a consistent copy of the relay's store to w: from the
// running relay through its admin listener, else from the store file of
// a stopped relay. It says which.
func backupTo(ctx context.Context, o *options, w io.Writer) (from string, n int64, err error) {
	admin, err := adminAddress(o)
	if err != nil {
		return "", 0, err
	}
	online := errors.New(`the admin listener is off (admin is "off")`)
	if admin != "" {
		token, err := readAdminToken(o.dataDir)
		if err == nil {
			n, err = backupOnline(ctx, admin, token, w)
			if err == nil {
				return "the running relay", n, nil
			}
			if n > 0 {
				return "", n, err // a broken transfer: w holds part of it
			}
		}
		online = err
	}
	path := filepath.Join(o.dataDir, storeFile)
	if !exists(path) {
		return "", 0, fmt.Errorf("%s does not exist (has the relay run?), and %v", path, online)
	}
	n, err = relay.BackupStore(ctx, path, w)
	if errors.Is(err, relay.ErrStoreInUse) {
		return "", 0, fmt.Errorf("the relay is running (%s is in use) and gives no hot backup: %v", storeFile, online)
	}
	return "the stopped relay's " + storeFile, n, err
}

// backupOnline copies the running relay's store to w.
func backupOnline(ctx context.Context, admin, token string, w io.Writer) (int64, error) {
	resp, err := adminDo(ctx, admin, http.MethodGet, "/backup", token)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, adminError(admin, resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("the backup from %s broke off: %w", admin, err)
	}
	return n, nil
}

// cmdBackup is "hush-relay backup".
func cmdBackup(ctx context.Context, o *options, out string, env environment) (err error) {
	if out == "" {
		return errors.New("--out FILE is required: the file to write the backup to")
	}
	if exists(out) {
		return fmt.Errorf("%s exists: choose a new file", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	from, n, err := backupTo(ctx, o, f)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	rep, err := relay.CheckStore(tmp)
	if err != nil {
		return fmt.Errorf("the backup is not consistent, not kept: %w", err)
	}
	if err := os.Link(tmp, out); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "hush-relay: backup of %s written to %s: %s, %d queues, %d undelivered messages\n",
		from, out, humanBytes(n), rep.Queues, rep.Messages)
	fmt.Fprintf(env.stdout, "hush-relay: it holds every queue's keys and messages: keep it as secret as %s, which a restore needs too\n", identityFile)
	return nil
}

// cmdRestore is "hush-relay restore".
func cmdRestore(o *options, from string, force bool, env environment) error {
	if from == "" {
		return errors.New("--from FILE is required: the backup to restore")
	}
	dir := o.dataDir
	if isEmpty(dir) {
		return fmt.Errorf("%s holds neither %s nor %s: restore the relay's identity there first (a backup's queues are reachable only at the relay's address), or run \"hush-relay init --data %s\" for a relay with a new address",
			dir, identityFile, certFile, dir)
	}
	path := filepath.Join(dir, storeFile)
	if exists(path) && !force {
		return fmt.Errorf("%s exists: pass --force to replace it (the queues and messages in it are lost)", path)
	}
	rep, err := relay.RestoreStore(from, path)
	if errors.Is(err, relay.ErrStoreInUse) {
		return fmt.Errorf("%w: stop the relay before restoring", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "hush-relay: restored %s into %s: %d queues, %d undelivered messages; start the relay\n",
		from, path, rep.Queues, rep.Messages)
	return nil
}

// cmdCompact is "hush-relay compact".
func cmdCompact(o *options, env environment) error {
	path := filepath.Join(o.dataDir, storeFile)
	if !exists(path) {
		return fmt.Errorf("%s does not exist: nothing to compact", path)
	}
	before, after, err := relay.CompactStore(path)
	if errors.Is(err, relay.ErrStoreInUse) {
		return fmt.Errorf("%w: compact works on a stopped relay: stop it, compact, start it again", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "hush-relay: compacted %s: %s, was %s\n", path, humanBytes(after), humanBytes(before))
	return nil
}

// cmdRotateCert is "hush-relay rotate-cert".
func cmdRotateCert(ctx context.Context, o *options, env environment) error {
	dir := o.dataDir
	identity, err := loadIdentity(dir)
	if err != nil {
		return err
	}
	if identity == nil {
		return fmt.Errorf("%s is not in %s: put it back to issue a certificate (it may be taken offline again afterwards)", identityFile, dir)
	}
	if c, err := readCertificate(dir); err == nil {
		if fp, err := relay.CertificateFingerprint(c); err == nil && fp != queue.FingerprintOf(identity.Public().(ed25519.PublicKey)) {
			return fmt.Errorf("%s was not issued by %s: they belong to different relays; restore the right %s", certFile, identityFile, identityFile)
		}
	}
	cert, err := issueCertificate(dir, identity)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "hush-relay: issued a new online certificate, valid until %s\n", leaf.NotAfter.UTC().Format(time.DateOnly))
	if s, err := loadSettings(o); err == nil {
		if _, port, err := splitListen(s.listen); err == nil && port != 0 {
			if a, err := s.address(queue.FingerprintOf(identity.Public().(ed25519.PublicKey)), port); err == nil {
				fmt.Fprintf(env.stdout, "address: %s\n", a)
			}
		}
	}
	fmt.Fprintln(env.stdout, "hush-relay: the address is unchanged: it names the identity, not the certificate")

	admin, err := adminAddress(o)
	if err != nil || admin == "" {
		fmt.Fprintln(env.stdout, "hush-relay: a running relay loads it on SIGHUP or at its next start")
		return nil
	}
	token, err := readAdminToken(dir)
	if err != nil {
		fmt.Fprintln(env.stdout, "hush-relay: a running relay loads it on SIGHUP or at its next start")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := adminDo(ctx, admin, http.MethodPost, "/reload", token)
	if errors.Is(err, errAdminUnreachable) {
		fmt.Fprintf(env.stdout, "hush-relay: no relay answers at %s: a running relay loads it on SIGHUP or at its next start\n", admin)
		return nil
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the running relay did not load the new certificate (send it SIGHUP, or restart it): %w", adminError(admin, resp))
	}
	fmt.Fprintln(env.stdout, "hush-relay: the running relay now serves the new certificate to new connections")
	return nil
}

// checker prints the findings of "hush-relay check".
type checker struct {
	w              io.Writer
	failed, warned int
	old            int // store files of an older format, to convert first
}

func (c *checker) ok(what, format string, args ...any) {
	fmt.Fprintf(c.w, "ok    %s: %s\n", what, fmt.Sprintf(format, args...))
}

func (c *checker) warn(what, format string, args ...any) {
	c.warned++
	fmt.Fprintf(c.w, "warn  %s: %s\n", what, fmt.Sprintf(format, args...))
}

func (c *checker) fail(what, format string, args ...any) {
	c.failed++
	fmt.Fprintf(c.w, "FAIL  %s: %s\n", what, fmt.Sprintf(format, args...))
}

// cmdCheck is "hush-relay check".
func cmdCheck(ctx context.Context, o *options, store string, env environment) error {
	c := &checker{w: env.stdout}
	if store != "" {
		checkStoreFile(c, store, store)
		return c.result()
	}
	dir := o.dataDir
	fi, err := os.Stat(dir)
	if err != nil {
		c.fail(dir, "%v", err)
		return c.result()
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		c.warn(dir, "mode %#o: others may list the data directory; run \"chmod 700 %s\"", perm, dir)
	} else {
		c.ok(dir, "the data directory, mode %#o", perm)
	}

	s, err := loadSettings(o)
	if err != nil {
		c.fail(configFile, "%v", err)
	} else {
		c.ok(configFile, "valid, with the environment; listen %s, host %s, admin %s", s.listen, s.host, firstNonEmpty(s.admin, "off"))
	}

	// Key files: readable by the relay's user only.
	secrets := []string{filepath.Join(dir, identityFile), filepath.Join(dir, certKeyFile), filepath.Join(dir, adminTokenFile),
		filepath.Join(dir, onionKeyFile), filepath.Join(dir, configFile), filepath.Join(dir, storeKeysFile)}
	if err == nil && s.file.PasswordFile != "" {
		p := s.file.PasswordFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		secrets = append(secrets, p)
	}
	exposed := map[string]bool{}
	for _, p := range secrets {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if filepath.Base(p) == identityFile {
				c.warn(identityFile, "not in the data directory (kept offline?): rotate-cert and certificate renewal need it")
			}
		case err != nil:
			c.fail(filepath.Base(p), "%v", err)
		case runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0:
			exposed[p] = true
			c.fail(filepath.Base(p), "mode %#o: readable by others, and it holds a secret; run \"chmod 600 %s\" (and replace the secret if it was exposed)", fi.Mode().Perm(), p)
		default:
			c.ok(filepath.Base(p), "mode %#o", fi.Mode().Perm())
		}
	}

	// The certificate, and that it belongs to the identity.
	if !exposed[filepath.Join(dir, identityFile)] && !exposed[filepath.Join(dir, certKeyFile)] {
		checkCertificate(c, dir)
	}

	path := filepath.Join(dir, storeFile)
	if !exists(path) {
		c.ok(storeFile, "not created yet (start creates it)")
		return c.result()
	}
	_, err = relay.CheckStore(path)
	if !errors.Is(err, relay.ErrStoreInUse) {
		checkStoreFile(c, path, storeFile)
		return c.result()
	}
	// A running relay holds the file: check a hot backup of it.
	f, err := os.CreateTemp(dir, ".check-backup-*")
	if err != nil {
		c.warn(storeFile, "in use by the running relay, and no copy to check: %v", err)
		return c.result()
	}
	defer os.Remove(f.Name())
	_, _, err = backupTo(ctx, o, f)
	f.Close()
	if err != nil {
		c.warn(storeFile, "in use by the running relay, and no hot backup to check: %v", err)
		return c.result()
	}
	checkStoreFile(c, f.Name(), storeFile+" (a hot backup of the running relay's)")
	return c.result()
}

func (c *checker) result() error {
	switch {
	case c.failed == 1:
		return errors.New("check found 1 problem")
	case c.failed > 1:
		return fmt.Errorf("check found %d problems", c.failed)
	case c.old > 0:
		return errors.New("check: convert the store first (start the relay once or run \"hush-relay compact\")")
	}
	fmt.Fprintf(c.w, "hush-relay: no problem found (%d warnings)\n", c.warned)
	return nil
}

// checkCertificate checks cert.pem and cert.key against identity.key.
func checkCertificate(c *checker, dir string) {
	id, err := loadIdentity(dir)
	if err != nil {
		c.fail(identityFile, "%v", err)
		return
	}
	cert, err := readCertificate(dir)
	if err != nil {
		if id != nil && errors.Is(err, fs.ErrNotExist) {
			c.warn(certFile, "missing: start issues a new one")
			return
		}
		c.fail(certFile, "%v", err)
		return
	}
	fp, err := relay.CertificateFingerprint(cert)
	if err != nil {
		c.fail(certFile, "%v", err)
		return
	}
	if id != nil && fp != queue.FingerprintOf(id.Public().(ed25519.PublicKey)) {
		c.fail(certFile, "not issued by %s: they belong to different relays", identityFile)
		return
	}
	end := cert.Leaf.NotAfter
	switch left := time.Until(end); {
	case left <= 0 && id == nil:
		c.fail(certFile, "expired on %s, and %s is not here to issue another", end.Format(time.DateOnly), identityFile)
	case left <= 0:
		c.warn(certFile, "expired on %s: start issues a new one (or run rotate-cert)", end.Format(time.DateOnly))
	case left < renewBefore:
		c.warn(certFile, "valid until %s (%s): run rotate-cert", end.Format(time.DateOnly), daysLeft(end))
	default:
		c.ok(certFile, "issued by the identity %s, valid until %s (%s)", fp, end.Format(time.DateOnly), daysLeft(end))
	}
}

// checkStoreFile checks a store file and reports it as what.
func checkStoreFile(c *checker, path, what string) {
	rep, err := relay.CheckStore(path)
	if errors.Is(err, relay.ErrStoreOld) {
		// Not damage: what to do, without the path again.
		c.old++
		fmt.Fprintf(c.w, "old   %s: %s\n", what, strings.TrimPrefix(err.Error(), path+": "))
		return
	}
	if err != nil {
		c.fail(what, "%v", err)
		return
	}
	c.ok(what, "consistent: %d queues (%d never secured, %d suspended), %d undelivered messages; %s, %s of it free",
		rep.Queues, rep.Unsecured, rep.Suspended, rep.Messages, humanBytes(rep.Size), humanBytes(rep.Free))
	if rep.Free > 64<<20 && rep.Free > rep.Size/2 {
		c.warn(what, "more than half of the file is free: \"hush-relay compact\" (relay stopped) gives it back")
	}
}

// humanBytes formats n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// daysLeft says how long until t, in days.
func daysLeft(t time.Time) string {
	d := int(time.Until(t).Hours() / 24)
	if d < 0 {
		return "expired"
	}
	return fmt.Sprintf("%d days left", d)
}
