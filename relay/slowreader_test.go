package relay_test

import (
	"crypto/rand"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// TestSlowReaderIsBounded opens a session that keeps sending GET commands,
// each answered by a full 16 KiB MSG block, and never reads. The relay must
// stop reading from it instead of buffering the answers: the client's
// writes stall long before everything is sent, and the relay's heap does
// not grow by anything near the volume of the answers it was asked for.
func TestSlowReaderIsBounded(t *testing.T) {
	r := startWireRelay(t)
	s := dialRaw(t, r.Addr().String())

	rKey, _ := queue.GenerateKey()
	dhKey, _ := queue.GenerateKey()
	sKey, _ := queue.GenerateKey()
	ids := s.command(rKey, nil, queue.Command{Tag: queue.TagNEW, RecipientKey: queue.PublicKey(rKey), RecipientDHKey: queue.PublicKey(dhKey)})
	s.command(rKey, ids.RecipientID[:], queue.Command{Tag: queue.TagKEY, SenderKey: queue.PublicKey(sKey)})
	body := make([]byte, queue.MaxMessageSize)
	rand.Read(body)
	if got := s.command(sKey, ids.SenderID[:], queue.Command{Tag: queue.TagSEND, Body: body}); got.Tag != queue.TagOK {
		t.Fatalf("SEND: %v %v", got.Tag, got.Error)
	}

	// One block with as many authorized GETs as fit. Each GET is answered
	// with a MSG of one whole block.
	ak, err := queue.AuthKey(rKey, s.relayKey, s.binding)
	if err != nil {
		t.Fatal(err)
	}
	var b queue.BlockBuilder
	perBlock := 0
	for {
		corr := make([]byte, queue.CorrIDSize)
		rand.Read(corr)
		tx := queue.Transmission{CorrID: corr, Entity: ids.RecipientID[:], Command: queue.Command{Tag: queue.TagGET}}
		tx.Auth = queue.AppendAuth(nil, &ak, tx.AppendSigned(nil))
		if !b.Add(tx.Append(nil)) {
			break
		}
		perBlock++
	}
	block := b.AppendBlock(nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const blocks = 400 // asks for 400*perBlock answers of 16 KiB each
	asked := int64(blocks * perBlock * queue.BlockSize)
	var written atomic.Int64
	s.tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	done := make(chan error, 1)
	go func() {
		for range blocks {
			if _, err := s.plain.Write(block); err != nil {
				done <- err
				return
			}
			written.Add(1)
		}
		done <- nil
	}()
	err = <-done
	if err == nil {
		t.Fatalf("all %d blocks (%d GETs) were accepted by a session that never reads", blocks, blocks*perBlock)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("client wrote %d of %d blocks (%d GETs per block) before the relay stopped reading; asked for %d MiB of answers; heap grew by %.1f MiB",
		written.Load(), blocks, perBlock, asked>>20, float64(growth)/(1<<20))
	if limit := int64(32 << 20); growth > limit {
		t.Fatalf("heap grew by %d bytes, more than %d", growth, limit)
	}
	// The relay still serves others.
	other := dialRaw(t, r.Addr().String())
	if got := other.command(nil, nil, queue.Command{Tag: queue.TagPING}); got.Tag != queue.TagPONG {
		t.Fatalf("PING: got %v", got.Tag)
	}
}
