package relay

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/hushrelay/hush/queue"
)

// TestAuthCacheEvictsPart fills a session's authorization-key cache and
// adds one more key: an eighth of the cache is evicted, not all of it, and
// the new key and most of the old ones are still there.
func TestAuthCacheEvictsPart(t *testing.T) {
	s := &session{authCache: make(map[queue.Key][32]byte)}
	key := func(i int) (queue.Key, [32]byte) {
		var k queue.Key
		var ak [32]byte
		binary.BigEndian.PutUint64(k[:], uint64(i))
		binary.BigEndian.PutUint64(ak[:], uint64(i)^0xa5a5)
		return k, ak
	}
	for i := range maxAuthCache {
		s.cacheAuthKey(key(i))
	}
	if len(s.authCache) != maxAuthCache {
		t.Fatalf("%d keys cached, want %d", len(s.authCache), maxAuthCache)
	}
	k, ak := key(maxAuthCache)
	s.cacheAuthKey(k, ak)
	if want := maxAuthCache - maxAuthCache/8 + 1; len(s.authCache) != want {
		t.Fatalf("after one more key: %d cached, want %d", len(s.authCache), want)
	}
	if got, ok := s.authCache[k]; !ok || got != ak {
		t.Fatal("the new key is not cached")
	}
	kept := 0
	for i := range maxAuthCache {
		k, ak := key(i)
		if got, ok := s.authCache[k]; ok {
			if got != ak {
				t.Fatalf("key %d maps to the wrong authorization key", i)
			}
			kept++
		}
	}
	if kept != maxAuthCache-maxAuthCache/8 {
		t.Errorf("%d old keys kept, want %d", kept, maxAuthCache-maxAuthCache/8)
	}
}

// TestVerifyCachesOnlyProvenKeys checks that a session caches a queue's
// authorization key only after that key authorized a command it was told
// to keep: failed attempts and keys of unknown queues leave no entry, so
// neither a client nor the timing of later commands can use the cache to
// learn whether a queue exists.
func TestVerifyCachesOnlyProvenKeys(t *testing.T) {
	relayKey, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	binding := make([]byte, queue.BindingSize)
	s := &session{key: relayKey, binding: binding, authCache: make(map[queue.Key][32]byte)}
	clientKey, err := queue.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k := queue.PublicKey(clientKey)
	ak, err := queue.AuthKey(clientKey, queue.PublicKey(relayKey), binding)
	if err != nil {
		t.Fatal(err)
	}
	signed := []byte("a signed transmission")
	good := queue.AppendAuth(nil, &ak, signed)
	bad := append([]byte(nil), good...)
	bad[0] ^= 1

	if s.verify(k, signed, bad, true) {
		t.Fatal("a wrong authenticator verified")
	}
	if s.verify(k, signed, good, false) != true {
		t.Fatal("a right authenticator did not verify")
	}
	if len(s.authCache) != 0 {
		t.Fatalf("%d keys cached after a failure and an unkept success", len(s.authCache))
	}
	if !s.verify(k, signed, good, true) {
		t.Fatal("a right authenticator did not verify")
	}
	if got, ok := s.authCache[k]; !ok || got != ak {
		t.Fatal("the proven key is not cached")
	}
	if s.verify(k, signed, bad, true) || !s.verify(k, signed, good, false) {
		t.Error("the cached key verifies wrongly")
	}
}

// TestPongWaitsAsLongAsAWrite checks the PONG delay (PROTOCOL.md section
// 9): none before the first durable write, then always the latency of one
// of the last writeSamples writes, and every one of them in time; never
// more than maxPongDelay.
func TestPongWaitsAsLongAsAWrite(t *testing.T) {
	r := new(Relay)
	if d := r.pongDelay(); d != 0 {
		t.Fatalf("before any write: a delay of %v", d)
	}
	noted := make(map[time.Duration]bool)
	for i := range writeSamples + 10 {
		d := time.Duration(i+1) * time.Microsecond
		r.noteWrite(d)
		if i >= 10 { // the first ten are overwritten
			noted[d] = true
		}
	}
	drawn := make(map[time.Duration]bool)
	for range 100 * writeSamples {
		d := r.pongDelay()
		if !noted[d] {
			t.Fatalf("a delay of %v, not one of the last %d writes' latencies", d, writeSamples)
		}
		drawn[d] = true
	}
	if len(drawn) != writeSamples {
		t.Errorf("drew %d of the %d latencies", len(drawn), writeSamples)
	}
	for range writeSamples {
		r.noteWrite(time.Hour)
	}
	if d := r.pongDelay(); d != maxPongDelay {
		t.Errorf("after hour-long writes: a delay of %v, want %v", d, maxPongDelay)
	}
}
