//go:build linux

package main

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/queue"
)

// The forward scenario measures private message routing (issue 17,
// PROTOCOL.md section 20) against a direct send, in the same run: two
// relay children, a forwarding relay F and a destination D; a recipient
// subscribed on D to two queues; a sender that sends to one of them
// directly on D and to the other through F (PRXY once, then PFWD per
// message). Each run sends --messages messages each way, direct and
// forwarded alternately, one at a time at --rate (below the forwarding
// relay's per-session pacing, so that pacing adds nothing), and measures
// each message's time from the sender's SEND (or PFWD) to its delivery
// to the recipient, and the relays' CPU time per message from /proc. It
// prints each run's figures and the median of the runs'.

type forwardOptions struct {
	commonOptions
	runs     int
	messages int
	rate     float64
	body     int
}

// forwardMode is one way of sending's figures in one run.
type forwardMode struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// DestCPUUs is the destination relay's CPU time per message, in µs;
	// FwdCPUUs the forwarding relay's (0 for direct sends).
	DestCPUUs  float64 `json:"dest_cpu_us_per_msg"`
	FwdCPUUs   float64 `json:"fwd_cpu_us_per_msg"`
	TotalCPUUs float64 `json:"relays_cpu_us_per_msg"`
}

type forwardRun struct {
	Direct    forwardMode `json:"direct"`
	Forwarded forwardMode `json:"forwarded"`
}

type forwardResult struct {
	Transport string       `json:"transport"`
	Messages  int          `json:"messages"`
	Rate      float64      `json:"rate"`
	Body      int          `json:"body_bytes"`
	Runs      []forwardRun `json:"runs"`
	// Direct and Forwarded are the medians of the runs' figures.
	Direct    forwardMode `json:"direct"`
	Forwarded forwardMode `json:"forwarded"`
	// Delivered counts the messages delivered, each checked once and in
	// order: 2 × runs × messages when nothing was lost.
	Delivered int `json:"delivered"`
}

func runForwardCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &forwardOptions{}
	help, err := scenarioFlags("hush-bench forward", &o.commonOptions, args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&o.runs, "runs", 3, "runs, each with --messages direct and --messages forwarded")
		fs.IntVar(&o.messages, "messages", 500, "messages per way of sending and run")
		fs.Float64Var(&o.rate, "rate", 100, "messages per second, one at a time (the forwarding relay paces a session at 200/s)")
		fs.IntVar(&o.body, "body", 1000, "message body size in bytes (at least 8)")
	})
	if help || err != nil {
		return err
	}
	switch {
	case o.relayAddr != "":
		return usageError{"forward starts its two relays: --relay does not apply"}
	case o.runs < 1 || o.messages < 1 || o.rate <= 0:
		return usageError{"--runs and --messages must be at least 1, --rate above 0"}
	case o.body < 8 || o.body > queue.MaxMessageSize:
		return usageError{fmt.Sprintf("--body must be 8 to %d bytes", queue.MaxMessageSize)}
	}
	res, err := runForward(ctx, o)
	if err != nil {
		return err
	}
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "private routing: %d messages each way and run, %d-byte bodies, %.0f/s, sender over %s, relay to relay over TCP\n",
		res.Messages, res.Body, res.Rate, res.Transport)
	row := func(name string, m forwardMode) {
		fmt.Fprintf(stdout, "  %-9s latency p50 %6.2f ms  p99 %6.2f ms   relay CPU per message: destination %5.0f µs, forwarding %5.0f µs, both %5.0f µs\n",
			name, m.P50Ms, m.P99Ms, m.DestCPUUs, m.FwdCPUUs, m.TotalCPUUs)
	}
	for i, r := range res.Runs {
		fmt.Fprintf(stdout, "run %d\n", i+1)
		row("direct", r.Direct)
		row("forwarded", r.Forwarded)
	}
	fmt.Fprintf(stdout, "median of %d runs\n", len(res.Runs))
	row("direct", res.Direct)
	row("forwarded", res.Forwarded)
	if res.Direct.P50Ms > 0 && res.Direct.TotalCPUUs > 0 {
		fmt.Fprintf(stdout, "forwarded / direct: latency p50 %.2f×, relay CPU %.2f×\n",
			res.Forwarded.P50Ms/res.Direct.P50Ms, res.Forwarded.TotalCPUUs/res.Direct.TotalCPUUs)
	}
	return nil
}

// forwardBench is the relays and connections of a forward run.
type forwardBench struct {
	o         *forwardOptions
	fwd, dest *relayChild
	recv      *link.Conn
	direct    *link.Conn
	proxied   *link.Proxied
	// queues and keys: [0] direct, [1] forwarded.
	queues [2]link.Queue
	keys   [2]*ecdh.PrivateKey
	seq    uint64 // the last sequence number sent
	got    uint64 // the last delivered
}

func runForward(ctx context.Context, o *forwardOptions) (*forwardResult, error) {
	dir, err := os.MkdirTemp("", "hush-bench-forward-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &forwardBench{o: o}
	if b.dest, err = startChild(ctx, childOptions{dataDir: dir + "/dest", newRate: o.newRate, sendRate: o.sendRate}); err != nil {
		return nil, err
	}
	defer b.dest.Stop()
	if b.fwd, err = startChild(ctx, childOptions{dataDir: dir + "/fwd", newRate: o.newRate, sendRate: o.sendRate}); err != nil {
		return nil, err
	}
	defer b.fwd.Stop()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	defer b.recv.Close()
	defer b.direct.Close()
	defer b.proxied.Conn().Close()

	res := &forwardResult{Transport: o.transport, Messages: o.messages, Rate: o.rate, Body: o.body}
	for i := range o.runs {
		var r forwardRun
		// Alternate which way goes first, so that neither always runs on
		// a warmer relay.
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, way := range order {
			m, err := b.measure(ctx, way)
			if err != nil {
				return nil, fmt.Errorf("run %d: %w", i+1, err)
			}
			if way == 0 {
				r.Direct = m
			} else {
				r.Forwarded = m
			}
		}
		o.progressf("run %d: direct p50 %.2f ms, forwarded p50 %.2f ms", i+1, r.Direct.P50Ms, r.Forwarded.P50Ms)
		res.Runs = append(res.Runs, r)
	}
	res.Delivered = int(b.got)
	med := func(f func(forwardRun) float64) float64 {
		var v []float64
		for _, r := range res.Runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	res.Direct = forwardMode{
		P50Ms:      med(func(r forwardRun) float64 { return r.Direct.P50Ms }),
		P99Ms:      med(func(r forwardRun) float64 { return r.Direct.P99Ms }),
		DestCPUUs:  med(func(r forwardRun) float64 { return r.Direct.DestCPUUs }),
		FwdCPUUs:   med(func(r forwardRun) float64 { return r.Direct.FwdCPUUs }),
		TotalCPUUs: med(func(r forwardRun) float64 { return r.Direct.TotalCPUUs }),
	}
	res.Forwarded = forwardMode{
		P50Ms:      med(func(r forwardRun) float64 { return r.Forwarded.P50Ms }),
		P99Ms:      med(func(r forwardRun) float64 { return r.Forwarded.P99Ms }),
		DestCPUUs:  med(func(r forwardRun) float64 { return r.Forwarded.DestCPUUs }),
		FwdCPUUs:   med(func(r forwardRun) float64 { return r.Forwarded.FwdCPUUs }),
		TotalCPUUs: med(func(r forwardRun) float64 { return r.Forwarded.TotalCPUUs }),
	}
	return res, nil
}

// setup connects the recipient and the sender, makes and secures the two
// queues, and opens the proxied session through F.
func (b *forwardBench) setup(ctx context.Context) error {
	cfg := link.Config{Transport: link.Transport(b.o.transport)}
	var err error
	if b.recv, err = link.Dial(ctx, b.dest.addr, cfg); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	if b.direct, err = link.Dial(ctx, b.dest.addr, cfg); err != nil {
		return fmt.Errorf("direct sender: %w", err)
	}
	fc, err := link.Dial(ctx, b.fwd.addr, cfg)
	if err != nil {
		return fmt.Errorf("sender to the forwarding relay: %w", err)
	}
	if b.proxied, err = fc.Proxy(ctx, b.dest.addr); err != nil {
		fc.Close()
		return fmt.Errorf("PRXY: %w", err)
	}
	for i := range b.queues {
		if b.queues[i], err = b.recv.Create(ctx); err != nil {
			return err
		}
		if err := b.recv.Subscribe(ctx, b.queues[i]); err != nil {
			return err
		}
		if b.keys[i], err = queue.GenerateKey(); err != nil {
			return err
		}
	}
	if err := b.direct.SecureSender(ctx, b.queues[0].SenderID, b.keys[0]); err != nil {
		return fmt.Errorf("SKEY: %w", err)
	}
	if err := b.proxied.SecureSender(ctx, b.queues[1].SenderID, b.keys[1]); err != nil {
		return fmt.Errorf("forwarded SKEY: %w", err)
	}
	return nil
}

// measure sends --messages messages one way (0 direct, 1 forwarded), one
// at a time at --rate, each waited for at the recipient and acknowledged,
// and returns the latencies' percentiles and the relays' CPU per message.
func (b *forwardBench) measure(ctx context.Context, way int) (forwardMode, error) {
	var m forwardMode
	q, key := b.queues[way], b.keys[way]
	body := make([]byte, b.o.body)
	lat := make([]time.Duration, 0, b.o.messages)
	every := time.Duration(float64(time.Second) / b.o.rate)
	d0, err := b.dest.Sample()
	if err != nil {
		return m, err
	}
	f0, err := b.fwd.Sample()
	if err != nil {
		return m, err
	}
	next := time.Now()
	for range b.o.messages {
		if err := sleepUntil(ctx, next); err != nil {
			return m, err
		}
		next = next.Add(every)
		b.seq++
		binary.BigEndian.PutUint64(body, b.seq)
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if way == 0 {
			err = b.direct.Send(sctx, q.SenderID, key, body)
		} else {
			err = b.proxied.Send(sctx, q.SenderID, key, body)
		}
		cancel()
		if err != nil {
			return m, fmt.Errorf("send %d: %w", b.seq, err)
		}
		ev, err := b.next(ctx)
		if err != nil {
			return m, err
		}
		lat = append(lat, time.Since(start))
		if ev.RecipientID != q.RecipientID || len(ev.Message.Body) < 8 || binary.BigEndian.Uint64(ev.Message.Body) != b.seq {
			return m, fmt.Errorf("message %d: delivered out of order or on the wrong queue", b.seq)
		}
		b.got++
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = b.recv.Ack(actx, q, ev.Message.ID)
		cancel()
		if err != nil {
			return m, fmt.Errorf("ack %d: %w", b.seq, err)
		}
	}
	d1, err := b.dest.Sample()
	if err != nil {
		return m, err
	}
	f1, err := b.fwd.Sample()
	if err != nil {
		return m, err
	}
	n := float64(b.o.messages)
	m.DestCPUUs = float64((d1.CPU - d0.CPU).Microseconds()) / n
	m.FwdCPUUs = float64((f1.CPU - f0.CPU).Microseconds()) / n
	m.TotalCPUUs = m.DestCPUUs + m.FwdCPUUs
	slices.Sort(lat)
	m.P50Ms, m.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))
	return m, nil
}

// next returns the recipient's next message event.
func (b *forwardBench) next(ctx context.Context) (link.Event, error) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-b.recv.Events():
			if !ok {
				return ev, fmt.Errorf("the recipient's connection ended: %w", b.recv.Err())
			}
			if ev.Kind == link.EventMessage {
				if ev.Err != nil {
					return ev, ev.Err
				}
				return ev, nil
			}
		case <-t.C:
			return link.Event{}, errors.New("no delivery within 30 s")
		case <-ctx.Done():
			return link.Event{}, ctx.Err()
		}
	}
}
