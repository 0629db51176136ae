package relay

import (
	"encoding/binary"
	"testing"

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
