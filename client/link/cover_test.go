package link

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// Record lengths of a block on the wire over TCP: a client block is four
// records of clientRecordSize bytes, a relay block one record; each
// record adds its content type byte and a 16-byte AEAD tag.
const (
	upRecordLen   = clientRecordSize + 1 + 16
	downRecordLen = queue.BlockSize + 1 + 16
)

// blockCounts counts, per second from start, the blocks of one proxied
// connection in each direction, as an observer of the network sees them.
func blockCounts(recs []relaytest.Record, start time.Time, seconds int) (up, down []int) {
	up, down = make([]int, seconds), make([]int, seconds)
	upRecords := 0
	for _, r := range recs {
		sec := int(r.Time.Sub(start) / time.Second)
		if r.Time.Before(start) || sec >= seconds || r.Type != 23 {
			continue
		}
		switch {
		case r.Up && r.Len == upRecordLen:
			upRecords++
			if upRecords%4 == 0 {
				up[sec]++
			}
		case !r.Up && r.Len == downRecordLen:
			down[sec]++
		}
	}
	return up, down
}

// poissonUpper returns the least k such that a Poisson variable of mean
// lambda exceeds k with probability below p.
func poissonUpper(lambda, p float64) int {
	term := math.Exp(-lambda)
	cdf := term
	k := 0
	for 1-cdf >= p {
		k++
		term *= lambda / float64(k)
		cdf += term
	}
	return k
}

// TestCoverHidesWhenMessagesMove records, through a TCP proxy, a
// connection that sends a message to its own queue, receives it and
// acknowledges it in 5 of 20 seconds, and counts the blocks per second in
// each direction, as an observer of the network can. Without cover
// traffic every block is a message's (keep-alives are off): the observer
// places each message to its second. With cover blocks at a mean of 100 ms
// (Config.Cover), every second carries blocks both ways, and the counts
// of the message seconds lie within the range of the cover alone: below
// the count that cover blocks exceed with probability 10^-6 in a second.
// Both runs print their counts.
func TestCoverHidesWhenMessagesMove(t *testing.T) {
	const (
		seconds = 20
		cover   = 100 * time.Millisecond
	)
	msgSeconds := map[int]bool{2: true, 6: true, 9: true, 13: true, 17: true}
	for _, withCover := range []bool{false, true} {
		name := "without-cover"
		if withCover {
			name = "with-cover"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			addr := startRelay(t, nil)
			proxy := relaytest.NewProxy(t, addr.HostPort())
			cfg := Config{
				Transport: TransportTCP,
				KeepAlive: -1,
				DialTCP: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, proxy.Addr())
				},
			}
			if withCover {
				cfg.Cover = cover
			}
			c := dialPeer(t, ctx, addr, cfg)
			q, sk := securedQueue(t, ctx, c)
			if err := c.Subscribe(ctx, q); err != nil {
				t.Fatal(err)
			}
			start := time.Now().Add(time.Second).Truncate(time.Second)
			time.Sleep(time.Until(start))
			for s := range seconds {
				if !msgSeconds[s] {
					continue
				}
				time.Sleep(time.Until(start.Add(time.Duration(s)*time.Second + 300*time.Millisecond)))
				body := []byte(fmt.Sprintf("message in second %d", s))
				if err := c.Send(ctx, q.SenderID, sk, body); err != nil {
					t.Fatal(err)
				}
				var ev Event
				select {
				case ev = <-c.Events():
				case <-ctx.Done():
					t.Fatal("no message")
				}
				if string(ev.Message.Body) != string(body) {
					t.Fatalf("received %q, want %q", ev.Message.Body, body)
				}
				if err := c.Ack(ctx, q, ev.Message.ID); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Until(start.Add(seconds * time.Second)))
			recs := proxy.Records()
			up, down := blockCounts(recs, start, seconds)
			wire := 0 // bytes on the wire after start, TLS record headers included
			for _, r := range recs {
				if r.Time.Before(start) {
					continue
				}
				if r.Type != 23 || (r.Up && r.Len != upRecordLen) || (!r.Up && r.Len != downRecordLen) {
					t.Errorf("a record of type %d and %d bytes (up %v): not a block's", r.Type, r.Len, r.Up)
				}
				wire += 5 + r.Len
			}

			var lines []string
			quietUp, quietDown, quiet := 0, 0, 0
			for s := range seconds {
				mark := ""
				if msgSeconds[s] {
					mark = "  <- message"
				} else {
					quietUp, quietDown, quiet = quietUp+up[s], quietDown+down[s], quiet+1
				}
				lines = append(lines, fmt.Sprintf("second %2d: %2d up %2d down%s", s, up[s], down[s], mark))
			}
			t.Logf("blocks per second, as an observer counts them:\n%s", strings.Join(lines, "\n"))

			if !withCover {
				// Every block is a message's: in its second, or the next
				// one on a slow machine.
				for s := range seconds {
					if msgSeconds[s] {
						if up[s]+up[min(s+1, seconds-1)] < 2 || down[s]+down[min(s+1, seconds-1)] < 2 {
							t.Errorf("second %d: a message moved, yet %d and %d blocks", s, up[s], down[s])
						}
					} else if !msgSeconds[s-1] && (up[s] != 0 || down[s] != 0) {
						t.Errorf("second %d: no message, yet %d and %d blocks", s, up[s], down[s])
					}
				}
				return
			}
			blocks := 0
			for s := range seconds {
				blocks += up[s]
			}
			perExchange := float64(wire) / float64(blocks)
			t.Logf("cost: %.0f bytes of TLS records per block each way (%d up, %d down): %.0f MB an hour at a mean of 1 s, %.0f MB at 10 s",
				perExchange, 4*(5+upRecordLen), 5+downRecordLen, 3600*perExchange/1e6, 360*perExchange/1e6)
			lambda := float64(time.Second) / float64(cover)
			limit := poissonUpper(lambda, 1e-6)
			t.Logf("cover alone: mean %.1f up, %.1f down a second (nominal %.0f); a second of cover exceeds %d blocks with probability below 10^-6",
				float64(quietUp)/float64(quiet), float64(quietDown)/float64(quiet), lambda, limit)
			if quietUp < quiet*int(lambda)/4 || quietDown < quiet*int(lambda)/4 {
				t.Fatalf("cover alone: %d up and %d down blocks in %d seconds, want about %.0f a second", quietUp, quietDown, quiet, lambda)
			}
			for s := range seconds {
				if msgSeconds[s] && (up[s] > limit || down[s] > limit) {
					t.Errorf("second %d, with a message: %d up, %d down, above the cover's range (%d)", s, up[s], down[s], limit)
				}
			}
		})
	}
}

// BenchmarkPongAndOK measures, on one TCP connection to a relay on
// loopback, how long a SEND waits for its OK and a PING for its PONG,
// alternately, and reports their medians: a relay delays each PONG by the
// latency of one of its recent writes (queue/PROTOCOL.md section 9), so
// that an observer cannot tell a PONG from an OK by the time it takes.
func BenchmarkPongAndOK(b *testing.B) {
	ctx := context.Background()
	addr := relaytest.New(b, nil).Address
	c, err := Dial(ctx, addr, Config{Transport: TransportTCP, KeepAlive: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q, sk := securedQueue(b, ctx, c)
	var oks, pongs []time.Duration
	body := make([]byte, 100)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := c.Send(ctx, q.SenderID, sk, body); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
		oks, pongs = append(oks, t1.Sub(t0)), append(pongs, time.Since(t1))
		if m, err := c.Get(ctx, q); err == nil {
			c.Ack(ctx, q, m.ID) // keep the queue below its quota
		}
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds())
	}
	b.ReportMetric(median(oks), "µs-OK")
	b.ReportMetric(median(pongs), "µs-PONG")
}
