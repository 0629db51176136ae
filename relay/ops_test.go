package relay_test

// Tests of the operator's surface: metrics, health, status, drain mode,
// hot backups, store checks, compaction and certificate rotation.

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

const testToken = "test-admin-token"

// adminServer serves r's admin handler on 127.0.0.1 for the test.
func adminServer(t *testing.T, r *relay.Relay) string {
	t.Helper()
	srv := httptest.NewServer(r.AdminHandler(testToken))
	t.Cleanup(srv.Close)
	return srv.URL
}

// adminCall sends a request to the admin handler and returns the status
// code and body.
func adminCall(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, body
}

// scrape fetches /metrics and parses it as the Prometheus text format.
func scrape(t *testing.T, base string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	code, body := adminCall(t, http.MethodGet, base+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as the Prometheus text format: %v\n%s", err, body)
	}
	return fams, string(body)
}

// metricValue returns the value of the counter or gauge name with the
// given label (name=value, or "" for none); it fails the test if there is
// none.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name, label string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		if label != "" {
			k, v, _ := strings.Cut(label, "=")
			match := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

// TestMetricsCountWorkload runs a known workload and checks that /metrics
// parses as the Prometheus text format, counts it exactly, and labels
// nothing by queue.
func TestMetricsCountWorkload(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	base := adminServer(t, e.r)
	rc := e.dial(ctx, link.TransportTCP)
	sc := e.dial(ctx, link.TransportQUIC)

	q1, sk1 := e2eSecuredQueue(t, ctx, rc)
	q2, sk2 := e2eSecuredQueue(t, ctx, rc)
	q3, err := rc.Create(ctx) // never secured
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := sc.Send(ctx, q1.SenderID, sk1, e2eBody(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := sc.Send(ctx, q2.SenderID, sk2, e2eBody(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Subscribe(ctx, q1); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m := e2eMessage(t, ctx, rc, q1)
		if err := rc.Ack(ctx, q1, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	m, err := rc.Get(ctx, q2)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Ack(ctx, q2, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Get(ctx, q2); err != nil { // the second, left in the queue
		t.Fatal(err)
	}
	// Three errors, one of each: AUTH, PROHIBITED, NO_MSG.
	if err := sc.Send(ctx, q3.SenderID, sk1, []byte("x")); !errors.Is(err, queue.AUTH) {
		t.Fatalf("send to an unsecured queue: %v, want AUTH", err)
	}
	if _, err := rc.Get(ctx, q1); !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("get on a subscribed queue: %v, want PROHIBITED", err)
	}
	if err := rc.Ack(ctx, q2, queue.NewID()); !errors.Is(err, queue.NO_MSG) {
		t.Fatalf("ack of a wrong ID: %v, want NO_MSG", err)
	}
	if err := rc.Delete(ctx, q3); err != nil {
		t.Fatal(err)
	}

	fams, text := scrape(t, base)
	for name, want := range map[string]float64{
		"hush_relay_queues_created_total":        3,
		"hush_relay_queues_deleted_total":        1,
		"hush_relay_queues_expired_total":        0,
		"hush_relay_messages_received_total":     7,
		"hush_relay_messages_delivered_total":    7, // 5 pushed, 2 by GET
		"hush_relay_messages_acknowledged_total": 6,
		"hush_relay_messages_expired_total":      0,
		"hush_relay_sessions":                    2,
		"hush_relay_sessions_total":              2,
		"hush_relay_subscriptions":               1,
		"hush_relay_queues":                      2,
		"hush_relay_messages_stored":             1,
		"hush_relay_draining":                    0,
		"hush_relay_store_commit_errors_total":   0,
		"hush_relay_handshake_failures_total":    0,
	} {
		if got := metricValue(t, fams, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for label, want := range map[string]float64{
		"command=NEW": 3, "command=KEY": 2, "command=SEND": 8, "command=SUB": 1,
		"command=ACK": 7, "command=GET": 3, "command=DEL": 1, "command=OFF": 0, "command=SKEY": 0,
	} {
		if got := metricValue(t, fams, "hush_relay_commands_total", label); got != want {
			t.Errorf("hush_relay_commands_total{%s} = %v, want %v", label, got, want)
		}
	}
	for label, want := range map[string]float64{
		"code=AUTH": 1, "code=PROHIBITED": 1, "code=NO_MSG": 1,
		"code=QUOTA": 0, "code=LARGE": 0, "code=SYNTAX": 0, "code=INTERNAL": 0,
	} {
		if got := metricValue(t, fams, "hush_relay_errors_total", label); got != want {
			t.Errorf("hush_relay_errors_total{%s} = %v, want %v", label, got, want)
		}
	}
	if n := metricValue(t, fams, "hush_relay_store_commit_seconds", ""); n < 1 {
		t.Errorf("hush_relay_store_commit_seconds counts %v commits", n)
	}
	// The wait before each commit is observed once per commit.
	if w, n := metricValue(t, fams, "hush_relay_store_commit_wait_seconds", ""), metricValue(t, fams, "hush_relay_store_commit_seconds", ""); w != n {
		t.Errorf("hush_relay_store_commit_wait_seconds counts %v commits, hush_relay_store_commit_seconds %v", w, n)
	}
	// Every committed operation is counted once: at least the 7 stored
	// messages, 6 acknowledgements and 3 new queues, in as many commits as
	// the duration histogram counts.
	if f := fams["hush_relay_store_commit_operations"]; f == nil || len(f.GetMetric()) != 1 {
		t.Error("no hush_relay_store_commit_operations")
	} else {
		h := f.GetMetric()[0].GetHistogram()
		commits := metricValue(t, fams, "hush_relay_store_commit_seconds", "")
		if float64(h.GetSampleCount()) != commits || h.GetSampleSum() < 7+6+3 || h.GetSampleSum() < commits {
			t.Errorf("hush_relay_store_commit_operations: %d commits (%v timed), %v operations", h.GetSampleCount(), commits, h.GetSampleSum())
		}
	}
	if v := metricValue(t, fams, "hush_relay_store_size_bytes", ""); v < 4096 {
		t.Errorf("hush_relay_store_size_bytes = %v", v)
	}
	if v := metricValue(t, fams, "hush_relay_certificate_expiry_timestamp_seconds", ""); time.Unix(int64(v), 0).Before(time.Now()) {
		t.Errorf("certificate expiry %v is in the past", time.Unix(int64(v), 0))
	}
	metricValue(t, fams, "go_goroutines", "")

	// Aggregate only: the only labels are the command, the code, the
	// budget, the transport, the limit and the reason a forwarded command
	// was refused, and no ID appears in any form.
	for name, f := range fams {
		if !strings.HasPrefix(name, "hush_relay_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "command", "code", "budget", "transport", "limit", "reason":
				default:
					t.Errorf("%s has a label %s", name, lp.GetName())
				}
			}
		}
	}
	for _, q := range []link.Queue{q1, q2, q3} {
		for _, id := range []queue.ID{q.RecipientID, q.SenderID} {
			if strings.Contains(text, id.String()) || strings.Contains(text, hex.EncodeToString(id[:])) {
				t.Errorf("/metrics holds a queue ID")
			}
		}
	}
}

// TestMetricsCountExpiry counts expired messages and queues.
func TestMetricsCountExpiry(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, func(c *relay.Config) {
		c.MessageTTL = time.Second
		c.UnsecuredTTL = time.Second
		c.SweepInterval = 100 * time.Millisecond
	})
	base := adminServer(t, e.r)
	rc := e.dial(ctx, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	if _, err := rc.Create(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := rc.Send(ctx, q.SenderID, sk, e2eBody(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the sweeps, within the test's bound.
	for {
		fams, _ := scrape(t, base)
		if metricValue(t, fams, "hush_relay_messages_expired_total", "") >= 3 &&
			metricValue(t, fams, "hush_relay_queues_expired_total", "") >= 1 {
			// A scrape reads its metrics at different moments: the
			// gauges are read again, after the counts.
			fams, _ = scrape(t, base)
			for name, want := range map[string]float64{
				"hush_relay_messages_expired_total": 3,
				"hush_relay_queues_expired_total":   1,
				"hush_relay_messages_stored":        0,
				"hush_relay_queues":                 1,
			} {
				if got := metricValue(t, fams, name, ""); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the messages did not expire")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestHealthAndStatus checks /healthz and /status on a running and on a
// closed relay.
func TestHealthAndStatus(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	base := adminServer(t, e.r)
	rc := e.dial(ctx, link.TransportQUIC)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	if err := rc.Send(ctx, q.SenderID, sk, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if code, body := adminCall(t, http.MethodGet, base+"/healthz", ""); code != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	code, body := adminCall(t, http.MethodGet, base+"/status", "")
	var st relay.Status
	if err := json.Unmarshal(body, &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status: %d %s (%v)", code, body, err)
	}
	if !st.Healthy || st.Draining || st.Fingerprint != e.addr.Fingerprint.String() ||
		st.Sessions != 1 || st.Queues != 1 || st.Messages != 1 || st.StoreBytes == 0 ||
		st.CertificateExpires.Before(time.Now()) {
		t.Errorf("/status: %+v", st)
	}
	if strings.Contains(string(body), q.SenderID.String()) || strings.Contains(string(body), q.RecipientID.String()) {
		t.Error("/status names a queue")
	}
	// The endpoints that reveal or change the relay need the token.
	for _, tok := range []string{"", "wrong"} {
		if code, _ := adminCall(t, http.MethodGet, base+"/backup", tok); code != http.StatusForbidden {
			t.Errorf("/backup with token %q: %d, want 403", tok, code)
		}
		if code, _ := adminCall(t, http.MethodPost, base+"/drain", tok); code != http.StatusForbidden {
			t.Errorf("/drain with token %q: %d, want 403", tok, code)
		}
	}
	if e.r.Draining() {
		t.Error("a refused /drain turned drain mode on")
	}

	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	code, body = adminCall(t, http.MethodGet, base+"/healthz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "closed") {
		t.Errorf("/healthz of a closed relay: %d %q, want 503", code, body)
	}
	if err := e.r.Health(ctx); !errors.Is(err, relay.ErrUnhealthy) {
		t.Errorf("Health of a closed relay: %v, want ErrUnhealthy", err)
	}
}

// TestDrain checks that drain mode refuses NEW, and only to holders of
// the password, while the queues already there are served; and that the
// admin listener turns it on and off.
func TestDrain(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, func(c *relay.Config) { c.Password = "secret" })
	base := adminServer(t, e.r)
	rc := e.dial(ctx, link.TransportTCP)
	sc := e.dial(ctx, link.TransportQUIC)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	if err := sc.Send(ctx, q.SenderID, sk, e2eBody(0)); err != nil {
		t.Fatal(err)
	}

	code, body := adminCall(t, http.MethodPost, base+"/drain", testToken)
	var st relay.Status
	if err := json.Unmarshal(body, &st); err != nil || code != http.StatusOK || !st.Draining || !e.r.Draining() {
		t.Fatalf("POST /drain: %d %s", code, body)
	}
	if _, err := rc.Create(ctx); !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("create while draining: %v, want PROHIBITED", err)
	}
	wrong := e.addr
	wrong.Password = "not-it"
	wc := e2eDial(t, ctx, wrong, link.TransportTCP)
	if _, err := wc.Create(ctx); !errors.Is(err, link.ErrWrongPassword) {
		t.Fatalf("create with a wrong password while draining: %v, want ErrWrongPassword", err)
	}
	// Existing queues: sending, delivery and acknowledgement go on.
	if err := sc.Send(ctx, q.SenderID, sk, e2eBody(1)); err != nil {
		t.Fatalf("send while draining: %v", err)
	}
	if err := rc.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		m := e2eMessage(t, ctx, rc, q)
		if !bytes.Equal(m.Body, e2eBody(i)) {
			t.Fatalf("message %d while draining: %q", i, m.Body)
		}
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	fams, _ := scrape(t, base)
	if v := metricValue(t, fams, "hush_relay_draining", ""); v != 1 {
		t.Errorf("hush_relay_draining = %v while draining", v)
	}
	if v := metricValue(t, fams, "hush_relay_errors_total", "code=PROHIBITED"); v != 1 {
		t.Errorf("PROHIBITED errors: %v, want 1", v)
	}

	if code, body := adminCall(t, http.MethodPost, base+"/drain?on=false", testToken); code != http.StatusOK {
		t.Fatalf("POST /drain?on=false: %d %s", code, body)
	}
	if _, err := rc.Create(ctx); err != nil {
		t.Fatalf("create after drain mode: %v", err)
	}

	// Drain mode from the configuration.
	d := startE2ERelay(t, func(c *relay.Config) { c.Drain = true })
	dc := d.dial(ctx, link.TransportQUIC)
	if _, err := dc.Create(ctx); !errors.Is(err, queue.PROHIBITED) {
		t.Fatalf("create on a relay started in drain mode: %v, want PROHIBITED", err)
	}
}

// TestBackupUnderLoad takes a hot backup through the admin handler while
// senders send and a recipient receives and acknowledges, restores it,
// and checks that a relay on the restored store delivers exactly the
// messages the backup holds, among them every message acknowledged to
// its sender before the backup started and not acknowledged by the
// recipient before it ended.
func TestBackupUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := startE2ERelay(t, func(c *relay.Config) {
		c.QueueQuota = 1 << 20
		c.SendRate = 1e6
	})
	base := adminServer(t, e.r)
	rc := e.dial(ctx, link.TransportTCP)
	const nq = 4
	var (
		queues [nq]link.Queue
		keys   [nq]*ecdh.PrivateKey // sender keys
	)
	for i := range nq {
		queues[i], keys[i] = e2eSecuredQueue(t, ctx, rc)
	}

	// clock orders events: sends answered OK, ACKs about to be sent,
	// and the start and end of the backup.
	var (
		clock     atomic.Int64
		mu        sync.Mutex
		okAt      = map[string]int64{} // body -> when its SEND was answered OK
		ackSentAt = map[string]int64{} // body -> when its ACK was sent
		attempted = map[string]int{}   // body -> queue
	)
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range nq {
		transport := []link.Transport{link.TransportQUIC, link.TransportTCP}[i%2]
		c := e.dial(ctx, transport)
		wg.Go(func() {
			for n := 0; load.Err() == nil; n++ {
				body := fmt.Sprintf("q%d-%06d", i, n)
				mu.Lock()
				attempted[body] = i
				mu.Unlock()
				if err := c.Send(load, queues[i].SenderID, keys[i], []byte(body)); err != nil {
					if load.Err() == nil {
						t.Errorf("send %s: %v", body, err)
					}
					return
				}
				mu.Lock()
				okAt[body] = clock.Add(1)
				mu.Unlock()
			}
		})
	}
	// The recipient drains queues 0 and 1 as messages come.
	for i := range 2 {
		if err := rc.Subscribe(ctx, queues[i]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Go(func() {
		for {
			select {
			case <-load.Done():
				return
			case ev := <-rc.Events():
				if ev.Kind != link.EventMessage || ev.Err != nil {
					t.Errorf("event %v: %v", ev.Kind, ev.Err)
					return
				}
				q := queues[0]
				if ev.RecipientID == queues[1].RecipientID {
					q = queues[1]
				}
				mu.Lock()
				ackSentAt[string(ev.Message.Body)] = clock.Add(1)
				mu.Unlock()
				if err := rc.Ack(load, q, ev.Message.ID); err != nil {
					if load.Err() == nil {
						t.Errorf("ack: %v", err)
					}
					return
				}
			}
		}
	})
	waitFor := func(n int64) {
		for clock.Load() < n {
			select {
			case <-ctx.Done():
				t.Fatalf("the load did not reach %d events", n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor(500)

	backupFile := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	backupStart := clock.Add(1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, resp.Body)
	resp.Body.Close()
	backupEnd := clock.Add(1)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /backup: %s, %d bytes, %v", resp.Status, n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(backupEnd + 500) // the load goes on after the backup
	stopLoad()
	wg.Wait()
	e.r.Close()

	rep, err := relay.CheckStore(backupFile)
	if err != nil {
		t.Fatalf("the backup is not consistent: %v", err)
	}
	if rep.Queues != nq || rep.Messages == 0 || rep.Size != n {
		t.Fatalf("backup report %+v, %d bytes written", rep, n)
	}

	// Restore into a new directory and serve it with the same identity.
	restored := filepath.Join(t.TempDir(), "relay.db")
	if _, err := relay.RestoreStore(backupFile, restored); err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.StorePath, cfg.Listen = restored, "127.0.0.1:0"
	r2, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	addr := e.addr
	addr.Port = uint16(r2.Addr().(*net.TCPAddr).Port)
	c2 := e2eDial(t, ctx, addr, link.TransportQUIC)
	for _, q := range queues {
		if err := c2.Subscribe(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	delivered := map[string]bool{}
	last := map[int]string{}
	for len(delivered) < rep.Messages {
		ev := e2eEvent(t, ctx, c2)
		if ev.Kind != link.EventMessage || ev.Err != nil {
			t.Fatalf("event %v: %v", ev.Kind, ev.Err)
		}
		body := string(ev.Message.Body)
		qi, ok := attempted[body]
		switch {
		case !ok:
			t.Fatalf("delivered %q, which nobody sent", body)
		case delivered[body]:
			t.Fatalf("%q delivered twice", body)
		case queues[qi].RecipientID != ev.RecipientID:
			t.Fatalf("%q delivered from another queue", body)
		case body <= last[qi]:
			t.Fatalf("%q delivered after %q", body, last[qi])
		}
		delivered[body], last[qi] = true, body
		var q link.Queue
		for _, x := range queues {
			if x.RecipientID == ev.RecipientID {
				q = x
			}
		}
		if err := c2.Ack(ctx, q, ev.Message.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing more: every queue is empty now.
	g := e2eDial(t, ctx, addr, link.TransportTCP)
	for i, q := range queues {
		if _, err := g.Get(ctx, q); !errors.Is(err, link.ErrNoMessage) {
			t.Errorf("queue %d after delivering the %d messages of the backup: %v, want ErrNoMessage", i, rep.Messages, err)
		}
	}
	var must []string
	for body, at := range okAt {
		if at >= backupStart {
			continue
		}
		if ack, ok := ackSentAt[body]; ok && ack <= backupEnd {
			continue
		}
		must = append(must, body)
		if !delivered[body] {
			t.Errorf("%q, acknowledged to its sender before the backup, was not restored", body)
		}
	}
	sort.Strings(must)
	if len(must) == 0 {
		t.Error("no message was certain to be in the backup: the test proved nothing")
	}
	t.Logf("backup of %d bytes under load: %d messages restored and delivered, %d of them certain; %d sends in all",
		n, rep.Messages, len(must), len(okAt))
}

// fillStore runs a relay on a new store, creates queues and messages on
// it, closes it, and returns the store's path and the queues.
func fillStore(t *testing.T) (string, []link.Queue) {
	t.Helper()
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	rc := e.dial(ctx, link.TransportTCP)
	var qs []link.Queue
	for i := range 3 {
		q, sk := e2eSecuredQueue(t, ctx, rc)
		for j := range 4 + i {
			if err := rc.Send(ctx, q.SenderID, sk, e2eBody(j)); err != nil {
				t.Fatal(err)
			}
		}
		qs = append(qs, q)
	}
	q, err := rc.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qs = append(qs, q)
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	return e.cfg.StorePath, qs
}

// damaged writes a copy of the file at path changed by f.
func damaged(t *testing.T, path string, f func([]byte) []byte) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(out, f(bytes.Clone(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckStore checks a consistent store, and finds damage of several
// kinds without crashing.
func TestCheckStore(t *testing.T) {
	path, qs := fillStore(t)
	rep, err := relay.CheckStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Queues != 4 || rep.Unsecured != 1 || rep.Suspended != 0 || rep.Messages != 4+5+6 || rep.Free < 0 {
		t.Errorf("report %+v, want 4 queues (1 unsecured) and 15 messages", rep)
	}
	sid := qs[0].SenderID
	rkey := queue.PublicKey(qs[0].RecipientKey)
	const page = 4096
	for name, f := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:3*page] }, // the pages in use go further
		"zeroed pages": func(b []byte) []byte {
			// Every page that holds the sender ID: the live ones among
			// them are part of the B+tree.
			for off := 0; ; {
				i := bytes.Index(b[off:], sid[:])
				if i < 0 {
					break
				}
				p := (off + i) / page * page
				if p >= 2*page {
					clear(b[p : p+page])
				}
				off = p + page
			}
			return b
		},
		"queue record": func(b []byte) []byte {
			// The record holds the sender ID then the recipient key,
			// after its version byte and flags.
			rec := append(sid[:], rkey[:]...)
			for off := 0; ; {
				i := bytes.Index(b[off:], rec)
				if i < 0 {
					break
				}
				b[off+i-2] = 0x7f
				off += i + 1
			}
			return b
		},
		"not a store": func(b []byte) []byte {
			rand.Read(b)
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := damaged(t, path, f)
			_, err := relay.CheckStore(bad)
			if !errors.Is(err, relay.ErrStoreDamaged) {
				t.Fatalf("CheckStore: %v, want ErrStoreDamaged", err)
			}
			if strings.Contains(err.Error(), sid.String()) {
				t.Errorf("the error names a queue: %v", err)
			}
			t.Log(err)
			if _, err := relay.RestoreStore(bad, filepath.Join(t.TempDir(), "relay.db")); !errors.Is(err, relay.ErrStoreDamaged) {
				t.Errorf("RestoreStore of a damaged backup: %v, want ErrStoreDamaged", err)
			}
		})
	}
}

// TestStoreInUse checks that the offline operations refuse a store that a
// running relay holds, and that a hot backup of it is consistent.
func TestStoreInUse(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, nil)
	path := e.cfg.StorePath
	if _, err := relay.CheckStore(path); !errors.Is(err, relay.ErrStoreInUse) {
		t.Errorf("CheckStore of a running relay's store: %v, want ErrStoreInUse", err)
	}
	if _, _, err := relay.CompactStore(path); !errors.Is(err, relay.ErrStoreInUse) {
		t.Errorf("CompactStore of a running relay's store: %v, want ErrStoreInUse", err)
	}
	var buf bytes.Buffer
	if _, err := relay.BackupStore(ctx, path, &buf); !errors.Is(err, relay.ErrStoreInUse) {
		t.Errorf("BackupStore of a running relay's store: %v, want ErrStoreInUse", err)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Backup(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := relay.RestoreStore(backup, path); !errors.Is(err, relay.ErrStoreInUse) {
		t.Errorf("RestoreStore over a running relay's store: %v, want ErrStoreInUse", err)
	}
	if _, err := relay.CheckStore(backup); err != nil {
		t.Errorf("the hot backup: %v", err)
	}
}

// TestCompactStore fills a store with a backlog, drains it, and checks
// that compaction gives the space back and keeps the queue.
func TestCompactStore(t *testing.T) {
	ctx := e2eContext(t)
	e := startE2ERelay(t, func(c *relay.Config) { c.QueueQuota = 1000 })
	rc := e.dial(ctx, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, rc)
	const n = 300
	body := bytes.Repeat([]byte{0xa5}, queue.MaxMessageSize)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < n; i += 10 {
				if err := rc.Send(ctx, q.SenderID, sk, body); err != nil {
					t.Errorf("send %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := rc.Subscribe(ctx, q); err != nil {
		t.Fatal(err)
	}
	for range n {
		m := e2eMessage(t, ctx, rc, q)
		if err := rc.Ack(ctx, q, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.r.Close()

	before, after, err := relay.CompactStore(e.cfg.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction after a drained backlog of %d messages of %d bytes: %d -> %d bytes", n, len(body), before, after)
	if before < n*queue.MaxMessageSize || after > before/8 {
		t.Errorf("compaction: %d -> %d bytes; want a store of at least %d bytes to shrink 8 times", before, after, n*queue.MaxMessageSize)
	}
	rep, err := relay.CheckStore(e.cfg.StorePath)
	if err != nil || rep.Queues != 1 || rep.Messages != 0 || rep.Size != after {
		t.Fatalf("after compaction: %+v, %v", rep, err)
	}
	e.restart()
	rc = e.dial(ctx, link.TransportQUIC)
	if err := rc.Send(ctx, q.SenderID, sk, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := rc.Get(ctx, q); err != nil || string(m.Body) != "after" {
		t.Fatalf("get after compaction: %q, %v", m.Body, err)
	}
}

// TestSetCertificate rotates the online certificate of a running relay:
// new connections get the new one, under the same address; a certificate
// of another identity is refused.
func TestSetCertificate(t *testing.T) {
	ctx := e2eContext(t)
	_, id, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	first, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := startE2ERelay(t, func(c *relay.Config) { c.Certificate = first })
	old := e.dial(ctx, link.TransportTCP)
	q, sk := e2eSecuredQueue(t, ctx, old)

	second, err := relay.IssueCertificate(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.SetCertificate(second); err != nil {
		t.Fatal(err)
	}
	for _, want := range []tls.Certificate{second} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", e.r.Addr().String(), &tls.Config{
			InsecureSkipVerify: true, // only to read the certificate served
			NextProtos:         []string{queue.ALPN},
			MinVersion:         tls.VersionTLS13,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := conn.ConnectionState().PeerCertificates[0].Raw
		conn.Close()
		if !bytes.Equal(got, want.Certificate[0]) {
			t.Error("a new connection did not get the new certificate")
		}
	}
	// The address is the same: both transports connect, and the session
	// opened before the rotation still works.
	for _, tr := range []link.Transport{link.TransportQUIC, link.TransportTCP} {
		c := e.dial(ctx, tr)
		if err := c.Send(ctx, q.SenderID, sk, []byte(tr)); err != nil {
			t.Fatalf("send over %s after the rotation: %v", tr, err)
		}
	}
	if err := old.Ping(ctx); err != nil {
		t.Errorf("the session opened before the rotation: %v", err)
	}

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	foreign, err := relay.IssueCertificate(other, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.SetCertificate(foreign); !errors.Is(err, relay.ErrWrongIdentity) {
		t.Errorf("SetCertificate of another identity: %v, want ErrWrongIdentity", err)
	}
	c := e.dial(ctx, link.TransportQUIC) // still the right identity
	if _, err := c.Get(ctx, q); err != nil {
		t.Fatal(err)
	}
}
