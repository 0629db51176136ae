package relay_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hushrelay/hush/internal/relaytest"
	"github.com/hushrelay/hush/queue"
	"github.com/hushrelay/hush/relay"
)

// recorder records the bytes read from and written to a connection.
type recorder struct {
	net.Conn
	mu          sync.Mutex
	read, wrote bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.read.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.mu.Lock()
	r.wrote.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) streams() (read, wrote []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.read.Bytes()), bytes.Clone(r.wrote.Bytes())
}

// rawSession is a hand-driven protocol session over TLS/TCP that records
// both the bytes on the wire (TLS records) and the plaintext stream.
type rawSession struct {
	t        *testing.T
	wire     *recorder // TCP bytes
	plain    *recorder // bytes inside TLS
	tc       *tls.Conn
	binding  []byte
	relayKey queue.Key
	backlog  []queue.Transmission // received, not yet consumed
}

func dialRaw(t *testing.T, addr string) *rawSession {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wire := &recorder{Conn: c}
	tc := tls.Client(wire, &tls.Config{
		InsecureSkipVerify:          true, // this test checks bytes, not identity
		NextProtos:                  []string{queue.ALPN},
		MinVersion:                  tls.VersionTLS13,
		DynamicRecordSizingDisabled: true,
	})
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	st := tc.ConnectionState()
	binding, err := st.ExportKeyingMaterial("EXPORTER-hush-session-binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSession{t: t, wire: wire, tc: tc, binding: binding}
	s.plain = &recorder{Conn: tc}
	ch := queue.ClientHello{Version: queue.MaxVersion}
	if _, err := s.plain.Write(ch.AppendBlock(nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(s.plain, buf); err != nil {
		t.Fatal(err)
	}
	sh, err := queue.ParseServerHello(buf)
	if err != nil {
		t.Fatal(err)
	}
	s.relayKey = sh.SessionKey
	t.Cleanup(func() { tc.Close() })
	return s
}

// command sends one authorized command and returns the first transmission
// that answers it (events are skipped).
func (s *rawSession) command(key *ecdh.PrivateKey, entity []byte, cmd queue.Command) queue.Command {
	s.t.Helper()
	corr := make([]byte, queue.CorrIDSize)
	rand.Read(corr)
	tx := queue.Transmission{CorrID: corr, Entity: entity, Command: cmd}
	if key != nil {
		ak, err := queue.AuthKey(key, s.relayKey, s.binding)
		if err != nil {
			s.t.Fatal(err)
		}
		tx.Auth = queue.AppendAuth(nil, &ak, tx.AppendSigned(nil))
	}
	var b queue.BlockBuilder
	b.Add(tx.Append(nil))
	if _, err := s.plain.Write(b.AppendBlock(nil)); err != nil {
		s.t.Fatal(err)
	}
	return s.take(func(tx queue.Transmission) bool { return bytes.Equal(tx.CorrID, corr) }).Command
}

// take returns the first transmission received that matches, reading
// blocks until one does; the others stay in the backlog.
func (s *rawSession) take(match func(queue.Transmission) bool) queue.Transmission {
	s.t.Helper()
	for {
		for i, tx := range s.backlog {
			if match(tx) {
				s.backlog = append(s.backlog[:i:i], s.backlog[i+1:]...)
				return tx
			}
		}
		s.readBlock()
	}
}

// readBlock reads one block into the backlog.
func (s *rawSession) readBlock() {
	s.t.Helper()
	buf := make([]byte, queue.BlockSize)
	if _, err := io.ReadFull(s.plain, buf); err != nil {
		s.t.Fatal(err)
	}
	raws, err := queue.ParseBlock(nil, buf)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, raw := range raws {
		tx, _, err := queue.ParseTransmission(raw)
		if err != nil {
			s.t.Fatal(err)
		}
		s.backlog = append(s.backlog, tx)
	}
}

func startWireRelay(t *testing.T) *relay.Relay {
	t.Helper()
	return relaytest.New(t, nil).Relay
}

// TestWireUniformBlocks records a whole exchange (create, secure, send,
// subscribe, deliver, ack) on the wire and inside TLS, and shows that every
// block has the same size in both directions, that the TLS records carrying
// them all have the same length, and that the body the sender uploaded
// never appears on the recipient's connection.
func TestWireUniformBlocks(t *testing.T) {
	r := startWireRelay(t)
	addr := r.Addr().String()
	recv := dialRaw(t, addr)
	send := dialRaw(t, addr)

	rKey, _ := queue.GenerateKey()
	dhKey, _ := queue.GenerateKey()
	sKey, _ := queue.GenerateKey()
	ids := recv.command(rKey, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(rKey), RecipientDHKey: queue.PublicKey(dhKey)})
	if ids.Tag != queue.TagIDS {
		t.Fatalf("NEW: got %v", ids.Tag)
	}
	msgKey, err := queue.MessageKey(dhKey, ids.RelayDHKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := recv.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(sKey)}); got.Tag != queue.TagOK {
		t.Fatalf("KEY: got %v %v", got.Tag, got.Error)
	}

	// A recognisable body, short and long, so it would stand out anywhere.
	bodies := [][]byte{[]byte("hello, this is a short message"), bytes.Repeat([]byte("0123456789abcdef"), 900)}
	for _, body := range bodies {
		if got := send.command(sKey, ids.SenderID[:], queue.Command{Tag: queue.TagSEND, Body: body}); got.Tag != queue.TagOK {
			t.Fatalf("SEND: got %v %v", got.Tag, got.Error)
		}
	}
	if got := recv.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagSUB}); got.Tag != queue.TagOK {
		t.Fatalf("SUB: got %v %v", got.Tag, got.Error)
	}
	for i, body := range bodies {
		msg := recv.take(func(tx queue.Transmission) bool { return tx.Command.Tag == queue.TagMSG }).Command
		if bytes.Contains(msg.Body, body) {
			t.Fatalf("message %d: the delivered bytes contain the uploaded body", i)
		}
		_, opened, err := queue.OpenMessage(&msgKey, msg.MsgID, msg.Body)
		if err != nil || !bytes.Equal(opened, body) {
			t.Fatalf("message %d: opened %q, %v", i, opened, err)
		}
		if got := recv.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagACK, MsgID: msg.MsgID}); got.Tag != queue.TagOK {
			t.Fatalf("ACK: got %v %v", got.Tag, got.Error)
		}
	}

	for name, s := range map[string]*rawSession{"recipient": recv, "sender": send} {
		read, wrote := s.plain.streams()
		wireRead, wireWrote := s.wire.streams()
		for _, d := range []struct {
			dir         string
			plain, wire []byte
		}{{"down", read, wireRead}, {"up", wrote, wireWrote}} {
			if len(d.plain) == 0 || len(d.plain)%queue.BlockSize != 0 {
				t.Fatalf("%s %s: %d plaintext bytes, not a whole number of %d-byte blocks", name, d.dir, len(d.plain), queue.BlockSize)
			}
			blocks := len(d.plain) / queue.BlockSize
			sizes := appDataRecordSizes(t, d.wire)
			if len(sizes) != blocks {
				t.Fatalf("%s %s: %d large TLS records for %d blocks", name, d.dir, len(sizes), blocks)
			}
			for i, n := range sizes {
				if n != sizes[0] {
					t.Fatalf("%s %s: TLS record %d has %d bytes, record 0 has %d", name, d.dir, i, n, sizes[0])
				}
			}
			t.Logf("%s %s: %d blocks of %d bytes in %d TLS records of %d bytes", name, d.dir, blocks, queue.BlockSize, len(sizes), sizes[0])
		}
	}
	// The uploaded bodies appear in the sender's plaintext stream and never
	// in the recipient's.
	_, up := send.plain.streams()
	down, _ := recv.plain.streams()
	for i, body := range bodies {
		if !bytes.Contains(up, body) {
			t.Fatalf("body %d not found in the sender's stream: the recorder is broken", i)
		}
		if bytes.Contains(down, body) {
			t.Fatalf("body %d appears on the recipient's link", i)
		}
	}
}

// appDataRecordSizes returns the lengths of the TLS application-data
// records (content type 23) in a captured TCP stream. In TLS 1.3 every
// record after the handshake is of type 23; the encrypted handshake
// messages are too, and are told apart by size: they are far smaller than
// a block. Only records larger than half a block are returned.
func appDataRecordSizes(t *testing.T, stream []byte) []int {
	t.Helper()
	var sizes []int
	for len(stream) > 0 {
		if len(stream) < 5 {
			t.Fatalf("truncated TLS record header")
		}
		typ, n := stream[0], int(binary.BigEndian.Uint16(stream[3:5]))
		if len(stream) < 5+n {
			t.Fatalf("truncated TLS record")
		}
		if typ == 23 && n > queue.BlockSize/2 {
			sizes = append(sizes, n)
		}
		stream = stream[5+n:]
	}
	return sizes
}
