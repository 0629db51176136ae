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
