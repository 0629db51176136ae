package client_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/link"
	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
)

// TLS record lengths of blocks over TCP (queue/PROTOCOL.md section 2): a
// client block is four records of 4,096 bytes of plaintext, a relay block
// one record; each record adds its content type byte and a 16-byte tag.
const (
	clientRecordLen = 4096 + 1 + 16
	relayRecordLen  = queue.BlockSize + 1 + 16
)

// wireCount is what an observer of the network between clients and
// relays counts: blocks each way, over every proxied connection.
type wireCount struct{ up, down int }

// observe returns the blocks recorded by the proxies so far, and every
// record after a connection's TLS handshake that is not a block's.
func observe(proxies []*relaytest.Proxy) (wireCount, []relaytest.Record) {
	var n wireCount
	var odd []relaytest.Record
	for _, p := range proxies {
		upRecords := make(map[int]int)
		handshaken := make(map[int]bool) // the client's Finished went up
		for _, r := range p.Records() {
			if r.Type != 23 {
				continue // the handshake's clear records
			}
			switch {
			case r.Up && !handshaken[r.Conn]:
				handshaken[r.Conn] = true // the client's Finished
			case !handshaken[r.Conn]:
				// the relay's encrypted handshake records
			case r.Up && r.Len == clientRecordLen:
				if upRecords[r.Conn]++; upRecords[r.Conn]%4 == 0 {
					n.up++
				}
			case !r.Up && r.Len == relayRecordLen:
				n.down++
			default:
				odd = append(odd, r)
			}
		}
	}
	return n, odd
}

// TestWireShowsNoMessageLengthOrKind runs a conversation over TLS over
// TCP through recording proxies, one per relay, as an observer of the
// network sees it: a confirmation and a ready message (the handshake), texts
// of 2 and 9,000 bytes and the longest (14,353) each way, and a forget
// notice. After each
// connection's TLS handshake every record has one of two lengths, that
// of a client block's record or of a relay block's, whatever the message
// carried; and every text, whatever its length, costs the same blocks: 2
// up (SEND, ACK) and 3 down (OK, MSG, OK), counted exactly, and as many
// for its delivery receipt (section 19.12), an envelope like any other.
func TestWireShowsNoMessageLengthOrKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var proxies []*relaytest.Proxy
	via := make(map[string]string) // relay host:port to its proxy's
	var addrs []queue.Address
	for range 2 {
		r := relaytest.New(t, nil)
		p := relaytest.NewProxy(t, r.HostPort)
		proxies, addrs = append(proxies, p), append(addrs, r.Address)
		via[r.HostPort] = p.Addr()
	}
	dial := link.Config{
		Transport: link.TransportTCP,
		KeepAlive: -1, // no keep-alives: every block is the conversation's
		DialTCP: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, via[addr])
		},
	}
	alice := newPersonWith(t, dial, addrs...)
	bob := newPersonWith(t, dial, addrs...)
	connect(ctx, t, alice, bob)

	// waitFor polls until the proxies have counted want blocks.
	waitFor := func(want wireCount) {
		t.Helper()
		for {
			got, _ := observe(proxies)
			if got == want {
				return
			}
			if got.up > want.up || got.down > want.down {
				t.Fatalf("%d blocks up and %d down, want %d and %d", got.up, got.down, want.up, want.down)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d blocks up and %d down, want %d and %d", got.up, got.down, want.up, want.down)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	// settle returns the count once it has not changed for half a second:
	// the handshake's last ACKs may still be on their way.
	settle := func() wireCount {
		last, _ := observe(proxies)
		for {
			select {
			case <-ctx.Done():
				t.Fatal("the traffic does not settle")
			case <-time.After(500 * time.Millisecond):
			}
			got, _ := observe(proxies)
			if got == last {
				return got
			}
			last = got
		}
	}
	texts := []string{"hi", strings.Repeat("x", 9000), strings.Repeat("y", client.MaxTextSize)}
	per := wireCount{up: 2 * 2, down: 2 * 3} // the text and its receipt
	want := settle()
	for _, dir := range []struct {
		from, to *person
		name     string // what to calls from
	}{{alice, bob, "a"}, {bob, alice, "b"}} {
		for _, text := range texts {
			to := "b"
			if dir.from == bob {
				to = "a"
			}
			if _, err := dir.from.c.Send(ctx, to, text); err != nil {
				t.Fatal(err)
			}
			expectMessage(ctx, t, dir.to, dir.name, text)
			want.up, want.down = want.up+per.up, want.down+per.down
			waitFor(want)
			t.Logf("a text of %5d bytes and its receipt: %d blocks up, %d down", len(text), per.up, per.down)
		}
	}
	// Nothing more comes after the last ACK's OK.
	if got := settle(); got != want {
		t.Fatalf("%d blocks up and %d down, want %d and %d", got.up, got.down, want.up, want.down)
	}

	// A forget notice, the last kind of payload.
	if err := bob.c.Forget(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	flush(ctx, t, bob)
	if ev := alice.next(ctx, client.EventProblem); ev.Contact != "b" {
		t.Fatalf("a problem with %q, want the notice from b", ev.Contact)
	}
	got, odd := observe(proxies) // before Close, whose TLS close_notify alerts are not blocks
	alice.c.Close()
	bob.c.Close()
	for _, r := range odd {
		t.Errorf("connection %d: a record of %d bytes (up %v), not a block's", r.Conn, r.Len, r.Up)
	}
	if got.up == 0 || got.down == 0 {
		t.Fatal("no blocks recorded: the proxies are not in the path")
	}
	t.Logf("the whole conversation: %d blocks up and %d down, in records of %d and %d bytes only", got.up, got.down, clientRecordLen, relayRecordLen)
}
