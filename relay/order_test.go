package relay_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// pipelineRounds is how many times each pipelining case runs.
const pipelineRounds = 100

// TestPipelinedOrder sends two commands on the same queue back to back,
// in one block and in two consecutive blocks, without waiting for the
// first answer: the second sees the effect of the first (PROTOCOL.md
// section 6, per-queue order), 100 times of 100, over both transports.
func TestPipelinedOrder(t *testing.T) {
	type pair struct {
		first, second func(w *wireConn, q *wireQueue) ([]byte, []byte) // transmission, corrID
		check         func(t *testing.T, q *wireQueue, first, second queue.Command)
		secured       bool // the queue is secured first
		message       bool // the queue holds a message first
	}
	body := []byte("pipelined")
	send := func(w *wireConn, q *wireQueue) ([]byte, []byte) {
		return w.tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: body})
	}
	recipient := func(tag queue.Tag) func(w *wireConn, q *wireQueue) ([]byte, []byte) {
		return func(w *wireConn, q *wireQueue) ([]byte, []byte) {
			return w.tx(q.rKey, q.rid, queue.Command{Tag: tag})
		}
	}
	cases := map[string]pair{
		"KEY+SEND": {
			first: func(w *wireConn, q *wireQueue) ([]byte, []byte) {
				return w.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(q.sKey)})
			},
			second: send,
			check: func(t *testing.T, q *wireQueue, a, b queue.Command) {
				wireOK(t, "KEY", a)
				wireOK(t, "SEND after KEY", b)
			},
		},
		"SKEY+SEND": {
			first: func(w *wireConn, q *wireQueue) ([]byte, []byte) {
				return w.tx(q.sKey, q.sid, queue.Command{Tag: queue.TagSKEY, SenderKey: queue.PublicKey(q.sKey)})
			},
			second: send,
			check: func(t *testing.T, q *wireQueue, a, b queue.Command) {
				wireOK(t, "SKEY", a)
				wireOK(t, "SEND after SKEY", b)
			},
		},
		"SEND+GET": {
			first: send, second: recipient(queue.TagGET), secured: true,
			check: func(t *testing.T, q *wireQueue, a, b queue.Command) {
				wireOK(t, "SEND", a)
				if got := q.open(t, b); !bytes.Equal(got, body) {
					t.Fatalf("GET after SEND: %q", got)
				}
			},
		},
		"OFF+SEND": {
			first: recipient(queue.TagOFF), second: send, secured: true,
			check: func(t *testing.T, q *wireQueue, a, b queue.Command) {
				wireOK(t, "OFF", a)
				wireErr(t, "SEND after OFF", b, queue.AUTH)
			},
		},
		"DEL+GET": {
			first: recipient(queue.TagDEL), second: recipient(queue.TagGET), secured: true, message: true,
			check: func(t *testing.T, q *wireQueue, a, b queue.Command) {
				wireOK(t, "DEL", a)
				wireErr(t, "GET after DEL", b, queue.AUTH)
			},
		},
	}
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		w := dialWire(t, r.addr, transport)
		for name, c := range cases {
			for _, blocks := range []string{"one block", "two blocks"} {
				t.Run(name+"/"+blocks, func(t *testing.T) {
					w.t = t
					for range pipelineRounds {
						q := w.newQueue(c.secured)
						if c.message {
							wireOK(t, "SEND", w.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: body}))
						}
						tx1, corr1 := c.first(w, q)
						tx2, corr2 := c.second(w, q)
						if blocks == "one block" {
							w.send(tx1, tx2)
						} else {
							w.send(tx1)
							w.send(tx2)
						}
						c.check(t, q, w.response(corr1).Command, w.response(corr2).Command)
					}
				})
			}
		}
	})
}

// wireSubscriber returns a session subscribed to a new secured queue
// holding n messages, "message 0" to "message n-1", sent from another
// session, and that queue.
func wireSubscriber(t *testing.T, r *wireRelay, transport string, n int) (sub, other *wireConn, q *wireQueue) {
	t.Helper()
	sub = dialWire(t, r.addr, transport)
	other = dialWire(t, r.addr, transport)
	q = sub.newQueue(true)
	for i := range n {
		wireOK(t, "SEND", other.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: fmt.Appendf(nil, "message %d", i)}))
	}
	wireOK(t, "SUB", sub.do(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB}))
	return sub, other, q
}

// nextMessage returns the body and ID of the next MSG event of q on w.
func (w *wireConn) nextMessage(q *wireQueue) (string, queue.ID) {
	w.t.Helper()
	ev := w.event(queue.TagMSG, q.rid)
	return string(q.open(w.t, ev.Command)), ev.Command.MsgID
}

// TestSubscriberNotStuck covers the ways a subscriber could stop
// receiving although messages wait (PROTOCOL.md section 12): the message
// delivered to it is acknowledged by another session (which read it with
// GET: the subscriber skipped its ACK), or the subscriber sends SUB again
// in the same block as its ACK, in either order. Each time the subscriber
// must receive the next message.
func TestSubscriberNotStuck(t *testing.T) {
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, nil)
		t.Run("ACK from another session", func(t *testing.T) {
			const n = 20
			sub, other, q := wireSubscriber(t, r, transport, n)
			sub.t, other.t = t, t
			for i := range n {
				got, id := sub.nextMessage(q)
				if want := fmt.Sprintf("message %d", i); got != want {
					t.Fatalf("received %q, want %q", got, want)
				}
				// The other session reads the same message with GET and
				// acknowledges it; the subscriber never sends ACK.
				m := other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
				if m.Tag != queue.TagMSG || m.MsgID != id {
					t.Fatalf("GET: %v %v, want the message delivered", m.Tag, m.Error)
				}
				wireOK(t, "ACK from the other session", other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id}))
			}
		})
		for _, order := range []string{"ACK+SUB", "SUB+ACK"} {
			t.Run(order+" in one block", func(t *testing.T) {
				const n = 50
				sub, _, q := wireSubscriber(t, r, transport, n)
				sub.t = t
				next := 0 // the next message not yet acknowledged
				for next < n {
					got, id := sub.nextMessage(q)
					var i int
					if _, err := fmt.Sscanf(got, "message %d", &i); err != nil || i != next {
						t.Fatalf("received %q, want message %d (a duplicate would be the previous one)", got, next)
					}
					ack, ackCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagACK, MsgID: id})
					subTx, subCorr := sub.tx(q.rKey, q.rid, queue.Command{Tag: queue.TagSUB})
					if order == "ACK+SUB" {
						sub.send(ack, subTx)
					} else {
						sub.send(subTx, ack)
					}
					wireOK(t, "ACK", sub.response(ackCorr).Command)
					wireOK(t, "SUB", sub.response(subCorr).Command)
					next++
					// SUB before the ACK may deliver the acknowledged
					// message again: skip such duplicates.
					for next < n {
						ev := sub.take(func(tx queue.Transmission) bool { return tx.CorrID == nil })
						body := string(q.open(t, ev.Command))
						if body == fmt.Sprintf("message %d", next-1) {
							continue
						}
						sub.backlog = append([]queue.Transmission{ev}, sub.backlog...)
						break
					}
				}
			})
		}
	})
}

// TestSubscriberAfterExpiry expires the message delivered to a subscriber
// that did not acknowledge it: the subscriber then receives the next
// message, both when it was already waiting and when it arrives later.
func TestSubscriberAfterExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for messages to expire")
	}
	const ttl = 3 * time.Second
	wireTransports(t, func(t *testing.T, transport string) {
		r := startWireRelayWith(t, func(c *relay.Config) {
			c.MessageTTL = ttl
			c.SweepInterval = 100 * time.Millisecond
		})
		sub, other, q := wireSubscriber(t, r, transport, 1)
		if got, _ := sub.nextMessage(q); got != "message 0" {
			t.Fatalf("received %q", got)
		}
		// message 1 is stored 3 s after message 0, so it expires 3 s
		// after it: it is delivered in between, once message 0 expired.
		time.Sleep(ttl)
		wireOK(t, "SEND", other.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("message 1")}))
		if got, _ := sub.nextMessage(q); got != "message 1" {
			t.Fatalf("received %q, want message 1 after message 0 expired", got)
		}
		// Now message 1 expires too, with nothing behind it; the next
		// SEND is delivered.
		deadline := time.Now().Add(4 * ttl)
		for {
			c := other.do(q.rKey, q.rid, queue.Command{Tag: queue.TagGET})
			if c.Tag == queue.TagERR && c.Error == queue.NO_MSG {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("message 1 did not expire")
			}
			time.Sleep(100 * time.Millisecond)
		}
		wireOK(t, "SEND", other.do(q.sKey, q.sid, queue.Command{Tag: queue.TagSEND, Body: []byte("message 2")}))
		if got, _ := sub.nextMessage(q); got != "message 2" {
			t.Fatalf("received %q, want message 2 after message 1 expired", got)
		}
	})
}
