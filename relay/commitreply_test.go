package relay_test

import (
	"bytes"
	"testing"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// TestCommitAnswersShareBlock checks that the answers which one group
// commit makes ready for a session leave in one block: SENDs to 16
// queues, then ACKs of the 16 messages, each sent in one block while the
// commit loop is held, so that each set is taken in one commit, are
// answered OK in one block per set, over both transports.
func TestCommitAnswersShareBlock(t *testing.T) {
	const n = 16
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		qs := make([]*wireQueue, n)
		for i := range qs {
			qs[i] = w.newQueue(true)
		}
		msgIDs := make([]queue.ID, n)
		round := func(what string, tx func(i int, q *wireQueue) ([]byte, []byte)) {
			t.Helper()
			release := relay.HoldCommits(t, r.Relay)
			before := relay.Commits(r.Relay)
			var txs [][]byte
			want := make(map[string]bool)
			for i, q := range qs {
				b, corr := tx(i, q)
				txs = append(txs, b)
				want[string(corr)] = true
			}
			w.send(txs...)
			relay.WaitQueued(t, r.Relay, n)
			release()
			blocks := 0
			for len(want) > 0 {
				raws, err := queue.ParseBlock(nil, w.readRaw())
				if err != nil {
					t.Fatal(err)
				}
				blocks++
				for _, raw := range raws {
					tr, _, err := queue.ParseTransmission(raw)
					if err != nil {
						t.Fatal(err)
					}
					if !want[string(tr.CorrID)] {
						t.Fatalf("%s: unexpected %v %v", what, tr.Command.Tag, tr.Command.Error)
					}
					wireOK(t, what, tr.Command)
					delete(want, string(tr.CorrID))
				}
			}
			if got := relay.Commits(r.Relay) - before; got != 2 {
				t.Fatalf("%s: %d commits, want 2 (the held one, then the %d operations)", what, got, n)
			}
			if blocks != 1 {
				t.Fatalf("%s: the %d answers of one commit came in %d blocks", what, n, blocks)
			}
		}
		round("SEND", func(i int, q *wireQueue) ([]byte, []byte) {
			return w.tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte{byte(i)}})
		})
		for i, q := range qs {
			m := w.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
			if body := q.open(t, m); !bytes.Equal(body, []byte{byte(i)}) {
				t.Fatalf("GET: %q", body)
			}
			msgIDs[i] = m.MsgID
		}
		round("ACK", func(i int, q *wireQueue) ([]byte, []byte) {
			return w.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: msgIDs[i]})
		})
	})
}
