//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// benchBinary is the hush-bench executable built by TestMain: the scenarios
// run it as a real process, and it runs itself again as the relay child.
var benchBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hush-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	benchBinary = filepath.Join(dir, "hush-bench")
	args := []string{"build", "-o", benchBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hush-bench:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bench runs hush-bench with args and --json and returns the decoded
// object. The run is bounded in time, against a hang: the scenarios the
// tests run wait for counts, which a loaded machine reaches later.
func bench(t *testing.T, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, benchBinary, append(args, "--json")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("hush-bench %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	var res map[string]any
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("hush-bench %v: output is not JSON: %v\n%s", args, err, stdout.String())
	}
	if dec.More() {
		t.Fatalf("hush-bench %v: more than one JSON value on stdout", args)
	}
	return res
}

// number returns res[key] as a number, failing if it is missing or not a
// number.
func number(t *testing.T, res map[string]any, key string) float64 {
	t.Helper()
	v, ok := res[key]
	if !ok {
		t.Fatalf("no %q in %v", key, res)
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%q is %v (%T), want a number", key, v, v)
	}
	return f
}

// checkNoLoss checks that nothing was lost or duplicated.
func checkNoLoss(t *testing.T, res map[string]any) {
	t.Helper()
	if lost, dup := number(t, res, "lost"), number(t, res, "duplicated"); lost != 0 || dup != 0 {
		t.Errorf("lost %v, duplicated %v; want 0 and 0", lost, dup)
	}
}

// checkNoRefusal checks that the relay refused no SEND (but for QUOTA,
// which the bench retries) and no ACK: a refused ACK was the first sign
// of a message numbered twice.
func checkNoRefusal(t *testing.T, res map[string]any) {
	t.Helper()
	if s, a := number(t, res, "send_errors"), number(t, res, "ack_errors"); s != 0 || a != 0 {
		t.Errorf("%v SENDs and %v ACKs refused; want none", s, a)
	}
}

// TestThroughput runs the throughput scenario briefly over both
// transports, its window 2 s and on until 50 messages were delivered in
// it (so that a slow machine makes it longer, not empty): every message
// delivered exactly once, no SEND or ACK refused, and every figure there.
func TestThroughput(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			res := bench(t, "throughput", "--transport", transport, "--duration", "2s", "--warmup", "0", "--min-delivered", "50",
				"--senders", "2", "--receivers", "2", "--queues", "8", "--window", "4", "--drain", "30s")
			for _, key := range []string{"msgs_per_sec", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_msg", "rss_bytes"} {
				number(t, res, key)
			}
			checkNoLoss(t, res)
			checkNoRefusal(t, res)
			if sent, got := number(t, res, "sent_ok"), number(t, res, "delivered"); sent < 50 || got != sent {
				t.Errorf("sent %v messages, %v delivered; want at least 50, all delivered", sent, got)
			}
			if n := number(t, res, "latency_samples"); n < 50 {
				t.Errorf("%v latency samples", n)
			}
			if rss := number(t, res, "rss_bytes"); rss <= 0 {
				t.Errorf("relay RSS %v", rss)
			}
			if u := number(t, res, "unexpected"); u != 0 {
				t.Errorf("%v unexpected events", u)
			}
			for _, key := range []string{"others_cpu_percent", "steal_cpu_percent"} {
				if v := number(t, res, key); v < 0 {
					t.Errorf("%s = %v", key, v)
				}
			}
			// Every message was stored and acknowledged in the window's
			// commits: at least one commit, at least one operation each.
			if c, ops := number(t, res, "relay_commits_per_sec"), number(t, res, "relay_ops_per_commit"); c <= 0 || ops < 1 {
				t.Errorf("%v commits/s, %v operations each", c, ops)
			}
			for _, key := range []string{"relay_commit_wait_ms", "relay_commit_ms", "relay_gc_per_sec", "relay_gc_pause_ms_per_sec", "relay_gc_pause_max_ms"} {
				if v := number(t, res, key); v < 0 {
					t.Errorf("%s = %v", key, v)
				}
			}
			// The commit tail comes from the relay's histogram, whose
			// buckets start at 0.5 ms.
			if p99, top := number(t, res, "relay_commit_p99_ms"), number(t, res, "relay_commit_max_ms"); p99 < 0.5 || top < p99 {
				t.Errorf("commit p99 <= %v ms, longest <= %v ms", p99, top)
			}
		})
	}
}

// TestBucketTail checks the quantile and the highest bucket that
// hush-bench throughput reads from the difference of two cumulative
// histograms.
func TestBucketTail(t *testing.T) {
	bounds := []float64{1, 2, 4, 8}
	for _, tc := range []struct {
		name   string
		c0, c1 []float64
		q, top float64
		ok     bool
	}{
		// 100 new observations: 90 up to 1, 9 in (1,2], 1 in (4,8].
		{"tail", []float64{5, 5, 5, 5}, []float64{95, 104, 104, 105}, 2, 8, true},
		// 100 new, all up to 1; the earlier ones in (2,4] do not count.
		{"earlier ignored", []float64{0, 0, 7, 7}, []float64{100, 100, 107, 107}, 1, 1, true},
		// 1000 new, 11 in (2,4]: the 99th percentile is in that bucket.
		{"quantile", []float64{0, 0, 0, 0}, []float64{980, 989, 1000, 1000}, 4, 4, true},
		{"none", []float64{3, 3, 3, 3}, []float64{3, 3, 3, 3}, 0, 0, false},
		{"mismatched", []float64{0, 0, 0}, []float64{1, 1, 1, 1}, 0, 0, false},
	} {
		q, top, ok := bucketTail(bounds, tc.c0, tc.c1, 0.99)
		if ok != tc.ok || ok && (q != tc.q || top != tc.top) {
			t.Errorf("%s: bucketTail = %v, %v, %v; want %v, %v, %v", tc.name, q, top, ok, tc.q, tc.top, tc.ok)
		}
	}
}

// TestThroughputRate offers a fixed load and checks that the relay's CPU
// profile is written.
func TestThroughputRate(t *testing.T) {
	t.Parallel()
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	res := bench(t, "throughput", "--transport", "tcp", "--duration", "2s", "--warmup", "0",
		"--senders", "1", "--receivers", "1", "--queues", "4", "--rate", "20", "--cpuprofile", prof)
	checkNoLoss(t, res)
	checkNoRefusal(t, res)
	if r := number(t, res, "offered_rate"); r != 20 {
		t.Errorf("offered_rate %v, want 20", r)
	}
	if sent := number(t, res, "sent_ok"); sent < 1 || sent > 60 {
		t.Errorf("sent %v messages at 20/s for 2 s", sent)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("CPU profile: %v", err)
	}
}

// TestScaleOut runs throughput over 3 relays: every relay carries
// messages, the shares add up to all of them, and nothing is lost.
func TestScaleOut(t *testing.T) {
	t.Parallel()
	res := bench(t, "throughput", "--transport", "tcp", "--relays", "3", "--duration", "2s", "--warmup", "0",
		"--senders", "2", "--receivers", "1", "--queues", "6", "--window", "4", "--drain", "30s")
	checkNoLoss(t, res)
	checkNoRefusal(t, res)
	if n := number(t, res, "relays"); n != 3 {
		t.Errorf("relays %v, want 3", n)
	}
	if sent, got := number(t, res, "sent_ok"), number(t, res, "delivered"); sent < 1 || got != sent {
		t.Errorf("sent %v messages, %v delivered; want at least one, all delivered", sent, got)
	}
	shares, ok := res["per_relay"].([]any)
	if !ok || len(shares) != 3 {
		t.Fatalf("per_relay %v, want 3 entries", res["per_relay"])
	}
	var sum float64
	for i, v := range shares {
		sh, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("per_relay[%d] = %v", i, v)
		}
		share := number(t, sh, "share")
		if share <= 0 {
			t.Errorf("relay %d carried no message (share %v)", i, share)
		}
		sum += share
		number(t, sh, "cpu_us_per_msg")
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("shares add up to %v, want 1", sum)
	}
}

func TestIdle(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			// 20 sessions from 2 client processes and 3 source addresses
			// (127.1.0.2 to 127.1.0.4), as the large runs spread theirs.
			prof := filepath.Join(t.TempDir(), "client.cpu")
			res := bench(t, "idle", "--transport", transport, "--sessions", "20", "--settle", "100ms",
				"--procs", "2", "--per-address", "8", "--probe", "300ms", "--client-cpuprofile", prof)
			checkNoLoss(t, res)
			// The client processes yield to the relay: every thread of
			// theirs is 5 nicer than the relay (at most 19).
			if r, c := number(t, res, "relay_nice"), number(t, res, "clients_nice"); c != min(r+5, 19) {
				t.Errorf("relay at nice %v, its clients at %v; want %v", r, c, min(r+5, 19))
			}
			if fi, err := os.Stat(prof); err != nil {
				t.Errorf("client CPU profile: %v", err)
			} else if fi.Size() == 0 {
				t.Errorf("client CPU profile is empty")
			}
			if n := number(t, res, "sessions"); n != 20 {
				t.Errorf("sessions %v, want 20", n)
			}
			if p, a, n := number(t, res, "procs"), number(t, res, "addresses"), number(t, res, "prefixes"); p != 2 || a != 3 || n != 1 {
				t.Errorf("%v processes, %v addresses in %v /24s; want 2, 3 and 1", p, a, n)
			}
			if fds := number(t, res, "relay_fds"); transport == "tcp" && fds < 20 {
				t.Errorf("relay holds %v descriptors, want at least one per TCP session (20)", fds)
			}
			if n := number(t, res, "probe_delivered"); n < 1 {
				t.Errorf("the probe client got %v messages with the sessions open", n)
			}
			if f := number(t, res, "probe_failures"); f != 0 {
				t.Errorf("the probe client had %v failures", f)
			}
			// Every phase of the probe ran: before the sessions, with
			// them, with their clients stopped (sessions whose clients
			// were stopped must still answer: checkNoLoss) and after.
			// (A PING's round trip is measured when it is answered; a
			// delivery may come after the phase on a loaded machine.)
			for _, phase := range []string{"_before", "", "_paused", "_after"} {
				number(t, res, "probe_deliver_p99"+phase+"_ms")
				if v := number(t, res, "probe_ping_p99"+phase+"_ms"); v <= 0 {
					t.Errorf("probe_ping_p99%s_ms %v, want a round trip", phase, v)
				}
			}
			number(t, res, "clients_cpu_percent")
			number(t, res, "load_end")
			number(t, res, "rss_per_session_bytes")
			if rss := number(t, res, "rss_bytes"); rss <= 0 {
				t.Errorf("relay RSS %v", rss)
			}
		})
	}
}

func TestQueues(t *testing.T) {
	t.Parallel()
	res := bench(t, "queues", "--transport", "tcp", "--queues", "200", "--restarts", "2", "--sample", "50")
	checkNoLoss(t, res)
	if n := number(t, res, "queues"); n != 200 {
		t.Errorf("queues %v, want 200", n)
	}
	if n := number(t, res, "checked"); n < 50 {
		t.Errorf("checked %v queues after the restart, want at least 50", n)
	}
	if n := number(t, res, "stored_before"); n != 0 {
		t.Errorf("stored_before %v, want 0 (a new store)", n)
	}
	for _, key := range []string{"rss_bytes", "db_bytes", "restart_ms", "cpu_us_per_new", "client_cpu_us_per_new",
		"relay_commits_per_sec", "relay_ops_per_commit", "relay_commit_ms", "relay_commit_busy_percent"} {
		if v := number(t, res, key); v <= 0 {
			t.Errorf("%s %v, want more than 0", key, v)
		}
	}
	if v := number(t, res, "relay_trims_per_sec"); v < 0 {
		t.Errorf("relay_trims_per_sec %v, want at least 0", v)
	}
	if r, ok := res["restarts_ms"].([]any); !ok || len(r) != 2 {
		t.Errorf("restarts_ms %v, want 2 values", res["restarts_ms"])
	}
}

// TestQueuesOnStore: the queues scenario run again on the store of an
// earlier run (--data) counts what it held and adds to it, as the rate at
// a million stored queues is measured (docs/performance.md); the second
// run makes its keys beforehand (--pregenerate), with a relay that never
// trims its store's mapping.
func TestQueuesOnStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"queues", "--transport", "tcp", "--queues", "60", "--restarts", "1", "--sample", "20", "--data", dir}
	first := bench(t, args...)
	checkNoLoss(t, first)
	if n := number(t, first, "stored_before"); n != 0 {
		t.Errorf("first run: stored_before %v, want 0", n)
	}
	second := bench(t, append(args, "--pregenerate", "--relay-mapped-limit-mib", "-1")...)
	checkNoLoss(t, second)
	if p, ok := second["pregenerated"].(bool); !ok || !p {
		t.Errorf("second run: pregenerated %v, want true", second["pregenerated"])
	}
	if n := number(t, second, "stored_before"); n != 60 {
		t.Errorf("second run: stored_before %v, want 60", n)
	}
	if n := number(t, second, "checked"); n < 20 {
		t.Errorf("second run: checked %v queues, want at least 20", n)
	}
}

func TestUsage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"nosuch"},
		{"throughput", "--transport", "udp"},
		{"throughput", "--body", "16001"},
		{"idle", "--relay", "hush://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:1"},
	} {
		err := exec.CommandContext(ctx, benchBinary, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("hush-bench %v: %v, want exit status 2", args, err)
		}
	}
}

// TestChaos runs a short chaos scenario on both transports: 20 contacts,
// a 12 s outage of one relay early on, on until 2 invitations made during
// it were accepted, then relays killed and restarted, traffic for 25 s and
// on until at least 50 messages were sent and 2 relays killed (the
// outage's included): a slow machine makes the run longer, not smaller.
// Every message must be shown exactly once and in order, and the
// invitations accepted during the outage must connect (the drain waits
// for both). The recovery times are logged, not checked.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos scenario takes about a minute")
	}
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			res := bench(t, "chaos", "--transport", transport, "--contacts", "20", "--duration", "25s", "--min-sent", "50", "--min-kills", "2", "--rate", "10",
				"--outage-at", "2s", "--outage", "12s", "--outage-invites", "4", "--outage-min-accepted", "2", "--invite-timeout", "10s",
				"--kill-min", "4s", "--kill-max", "6s", "--down-min", "1s", "--down-max", "3s", "--drain", "100s")
			for _, key := range []string{"lost", "duplicated", "out_of_order", "unexpected", "send_errors", "problems_gap", "problems_other"} {
				if v := number(t, res, key); v != 0 {
					t.Errorf("%s = %v, want 0", key, v)
				}
			}
			if res["drained"] != true {
				t.Errorf("not every message was shown within the drain bound")
			}
			if sent, got := number(t, res, "sent"), number(t, res, "delivered"); sent < 50 || got != sent {
				t.Errorf("sent %v messages, %v shown; want at least 50, all shown", sent, got)
			}
			kills := number(t, res, "kills")
			if kills < 2 {
				t.Errorf("%v kills, want the outage and at least one more", kills)
			}
			restarts, _ := res["restarts"].([]any)
			outages := 0
			for _, r := range restarts {
				if m, ok := r.(map[string]any); ok && m["outage"] == true {
					outages++
				}
			}
			if float64(len(restarts)) != kills || outages != 1 {
				t.Errorf("%d restarts, %d of them the outage; want %v and 1", len(restarts), outages, kills)
			}
			accepted, connected := number(t, res, "outage_invites"), number(t, res, "outage_invites_connected")
			if accepted < 1 || connected != accepted {
				t.Errorf("%v invitations accepted during the outage, %v connected; want at least one, all connected", accepted, connected)
			}
			t.Logf("%s: restart to first delivery median %v ms, worst %v ms (%v without one); drained in %.1f s; outage invitations: %v attempts, %v failed, %v connected before the relay came back",
				transport, res["recovery_median_ms"], res["recovery_worst_ms"], res["unrecovered"], number(t, res, "drain_s"),
				res["outage_invite_attempts"], res["outage_invite_failures"], res["outage_invites_connected_in_outage"])
		})
	}
}

// TestTiming runs the timing scenario briefly over both transports: it
// reports every command that names a queue, each answered ERR AUTH for an
// unknown ID and for a live queue (the run fails otherwise), with its
// median answer times. The figures are printed, not judged.
func TestTiming(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		res := bench(t, "timing", "--rounds", "20", "--queues", "4", "--transport", tr)
		cmds, ok := res["commands"].([]any)
		if !ok || len(cmds) != 8 {
			t.Fatalf("%s: commands %v, want 8", tr, res["commands"])
		}
		for _, c := range cmds {
			row := c.(map[string]any)
			if number(t, row, "unknown_p50_us") <= 0 || number(t, row, "known_p50_us") <= 0 {
				t.Errorf("%s: %v", tr, row)
			}
			t.Logf("%s %-4v unknown %6.0f µs, live %6.0f µs, ratio %.2f", tr, row["command"], row["unknown_p50_us"], row["known_p50_us"], row["ratio"])
		}
	}
}

// TestDown runs the down scenario once with two connections per
// transport: every QUIC connection ended because the relay went silent
// (link.ErrSilent), and the figures are there; none is timed.
func TestDown(t *testing.T) {
	t.Parallel()
	res := bench(t, "down", "--runs", "1", "--conns", "2", "--idle", "1s")
	for _, key := range []string{"quic_median_ms", "tcp_median_ms"} {
		if v := number(t, res, key); v < 0 {
			t.Errorf("%s = %v", key, v)
		}
	}
	runs, ok := res["runs"].([]any)
	if !ok || len(runs) != 1 {
		t.Fatalf("runs: %v, want one", res["runs"])
	}
	if n := number(t, runs[0].(map[string]any), "quic_silent"); n != 2 {
		t.Errorf("%v QUIC connections ended silent, want 2", n)
	}
}
