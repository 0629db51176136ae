package relay

import (
	"context"
	"crypto"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hushrelay/hush/queue"
)

// Health and admin settings.
const (
	// healthMaxAge is how long a store probe's result is reused, so that
	// frequent health checks cost at most one commit per second.
	healthMaxAge = time.Second
	// healthTimeout bounds the health check of an admin request.
	healthTimeout = 5 * time.Second
)

var (
	// ErrUnhealthy is returned (wrapped, with the reason) by Health when
	// the relay is closed, a listener has stopped, or the store did not
	// commit a write.
	ErrUnhealthy = errors.New("relay unhealthy")
	// ErrWrongIdentity is returned by SetCertificate for a certificate of
	// another identity: serving it would change the relay's address.
	ErrWrongIdentity = errors.New("the certificate belongs to another relay identity")
)

// certState is the certificate a relay serves.
type certState struct {
	cert     tls.Certificate
	fp       queue.Fingerprint
	notAfter time.Time
}

// newCertState checks cert as clients will (queue.VerifyChain: the chain
// ends in the identity with fingerprint fp, which certifies the online
// certificate, valid now) and that its private key is the online
// certificate's. A zero fp means the fingerprint of cert's own last
// certificate. Errors wrap queue.ErrChainIdentity or
// queue.ErrChainCertificate.
func newCertState(cert tls.Certificate, fp queue.Fingerprint) (*certState, error) {
	chain, err := queue.ParseChain(cert.Certificate)
	if err != nil {
		return nil, fmt.Errorf("relay certificate: %w", err)
	}
	if fp == (queue.Fingerprint{}) {
		if fp, err = CertificateFingerprint(cert); err != nil {
			return nil, fmt.Errorf("%w: %w", queue.ErrChainIdentity, err)
		}
	}
	if err := queue.VerifyChain(chain, fp, time.Now()); err != nil {
		return nil, fmt.Errorf("relay certificate: %w", err)
	}
	leaf := chain[0]
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if pub, isKey := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !isKey || !pub.Equal(signer.Public()) {
		return nil, fmt.Errorf("relay certificate: %w: the private key is not the online certificate's", queue.ErrChainCertificate)
	}
	return &certState{cert: cert, fp: fp, notAfter: leaf.NotAfter}, nil
}

// SetCertificate makes the relay serve cert to new connections; sessions
// already open keep theirs. cert is checked as clients check it
// (queue.VerifyChain) against the relay's identity: a chain of another
// identity (or of another length) returns ErrWrongIdentity; an online
// certificate not certified by the identity, not valid now, or without
// its private key returns an error wrapping queue.ErrChainCertificate. In
// both cases nothing changes. It is safe to call at any time.
func (r *Relay) SetCertificate(cert tls.Certificate) error {
	cs, err := newCertState(cert, r.cert.Load().fp)
	if errors.Is(err, queue.ErrChainIdentity) {
		return fmt.Errorf("%w: %w", ErrWrongIdentity, err)
	}
	if err != nil {
		return err
	}
	r.cert.Store(cs)
	r.cfg.Logger.Info("online certificate replaced", "valid_until", cs.notAfter.UTC().Format(time.DateOnly))
	return nil
}

// SetDraining turns drain mode on or off. In drain mode NEW is answered
// ERR PROHIBITED (after its authorization and password checks), while
// every other command is served as usual, so that the queues on a relay
// being decommissioned drain and their owners move elsewhere.
func (r *Relay) SetDraining(on bool) {
	if r.draining.Swap(on) != on {
		if on {
			r.cfg.Logger.Info("drain mode on: new queues are refused, existing queues are served")
		} else {
			r.cfg.Logger.Info("drain mode off: new queues are accepted")
		}
	}
}

// Draining reports whether the relay is in drain mode.
func (r *Relay) Draining() bool { return r.draining.Load() }

// healthProbe remembers the last store probe.
type healthProbe struct {
	// mu is held during a probe, so that concurrent checks share it; a
	// probe is bounded by its caller's ctx.
	mu  sync.Mutex
	at  time.Time
	err error
}

// Health reports whether the relay serves: it is not closed, both its
// listeners accept connections, and its store commits a write (a durable
// probe, shared with other writes; its result is reused for a second).
// It blocks until the probe is committed or ctx is done. The error wraps
// ErrUnhealthy.
func (r *Relay) Health(ctx context.Context) error {
	if r.ctx.Err() != nil {
		return fmt.Errorf("%w: closed", ErrUnhealthy)
	}
	if n := r.accepting.Load(); n < 2 {
		return fmt.Errorf("%w: %d of 2 listeners accepting", ErrUnhealthy, n)
	}
	h := &r.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < healthMaxAge {
		return h.err
	}
	err := r.store.probe(ctx)
	if err != nil {
		err = fmt.Errorf("%w: store not writable: %w", ErrUnhealthy, err)
	}
	h.at, h.err = time.Now(), err
	return err
}

// Status is a summary of a running relay, aggregate only: it names no
// queue, session or address.
type Status struct {
	Healthy bool `json:"healthy"`
	// Problem says why the relay is unhealthy.
	Problem     string    `json:"problem,omitempty"`
	Draining    bool      `json:"draining"`
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
	// CertificateExpires is the end of the online certificate.
	CertificateExpires time.Time `json:"certificate_expires"`
	Sessions           int       `json:"sessions"`
	Subscriptions      int       `json:"subscriptions"`
	Queues             int       `json:"queues"`
	Messages           int       `json:"messages"`
	// StoredBytes is what Config.MaxStoredBytes caps: the bytes of the
	// messages held (bodies plus 64 bytes each) and 256 per queue;
	// StorageFull is set while
	// NEW and SEND are refused for lack of storage.
	StoredBytes int64 `json:"stored_bytes"`
	StorageFull bool  `json:"storage_full"`
	// StoreBytes is the size of the store file; StoreFreeBytes the part
	// of it that compaction would reclaim.
	StoreBytes     int64 `json:"store_bytes"`
	StoreFreeBytes int64 `json:"store_free_bytes"`
}

// Status returns the relay's status. It runs Health, and so blocks as
// Health does.
func (r *Relay) Status(ctx context.Context) Status {
	cs := r.cert.Load()
	st := Status{
		Healthy:            true,
		Draining:           r.Draining(),
		Fingerprint:        cs.fp.String(),
		Started:            r.started.UTC().Truncate(time.Second),
		CertificateExpires: cs.notAfter.UTC(),
	}
	if err := r.Health(ctx); err != nil {
		st.Healthy, st.Problem = false, err.Error()
	}
	r.mu.Lock()
	st.Sessions, st.Subscriptions = len(r.sessions), len(r.subs)
	r.mu.Unlock()
	if q, m, err := r.store.counts(); err == nil {
		st.Queues, st.Messages = q, m
	}
	st.StoredBytes = r.store.storedBytes()
	st.StorageFull = r.storageFull()
	if size, free, err := r.store.sizes(); err == nil {
		st.StoreBytes, st.StoreFreeBytes = size, free
	}
	return st
}

// AdminHandler returns the handler of the relay's admin listener:
//
//	GET  /metrics   the metrics, in the Prometheus text format
//	GET  /healthz   200 "ok", or 503 and the problem (see Health)
//	GET  /status    Status as JSON; 503 when unhealthy
//	POST /drain     drain mode on (?on=false: off); answers Status
//	GET  /backup    a consistent copy of the store, taken while it runs
//
// /drain and /backup need token, sent as "Authorization: Bearer TOKEN":
// the backup holds every queue's keys. With an empty token they answer
// 403. Serve it on a loopback address: the other endpoints are open,
// though aggregate only. The handler is safe for concurrent use.
func (r *Relay) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{
		// A collector that fails (no /proc, say) must not hide the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := r.Health(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, req *http.Request) {
		r.writeStatus(w, req)
	})
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, req *http.Request) {
		if !authorized(req, token) {
			http.Error(w, "forbidden: this endpoint needs the admin token", http.StatusForbidden)
			return
		}
		on := true
		if v := req.URL.Query().Get("on"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				http.Error(w, "on must be true or false", http.StatusBadRequest)
				return
			}
			on = b
		}
		r.SetDraining(on)
		r.writeStatus(w, req)
	})
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, req *http.Request) {
		if !authorized(req, token) {
			http.Error(w, "forbidden: this endpoint needs the admin token", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "no-store")
		if _, err := r.Backup(req.Context(), w); err != nil {
			r.cfg.Logger.Error("backup failed", "err", err)
			// The response has started: break it, so that the client
			// sees an incomplete transfer rather than a short file.
			panic(http.ErrAbortHandler)
		}
	})
	return mux
}

func (r *Relay) writeStatus(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), healthTimeout)
	defer cancel()
	st := r.Status(ctx)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !st.Healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// authorized reports whether req carries token, which must not be empty.
func authorized(req *http.Request, token string) bool {
	const prefix = "Bearer "
	h := req.Header.Get("Authorization")
	if token == "" || len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(token)) == 1
}
