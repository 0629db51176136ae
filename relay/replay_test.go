package relay

import (
	"testing"

	"github.com/hushrelay/hush/queue"
)

// TestReplayFilter: section 20.5. A key is accepted once within the
// window; a timestamp outside it is refused; keys are forgotten only
// once their timestamps have left the window; a full filter refuses new
// keys and evicts none.
func TestReplayFilter(t *testing.T) {
	f := newReplayFilter(3)
	const now = 1_700_000_000
	k := func(b byte) queue.Key { return queue.Key{b} }
	w := f.window
	steps := []struct {
		key      queue.Key
		ts, at   int64
		want     replayVerdict
		wantSize int
	}{
		{k(1), now, now, replayNew, 1},
		{k(1), now, now, replaySeen, 1},
		{k(1), now, now + w, replaySeen, 1}, // still in the window
		{k(2), now - w - 1, now, replayWindow, 1},
		{k(2), now + w + 1, now, replayWindow, 1},
		{k(2), now + w, now, replayNew, 2},
		{k(3), now - w, now, replayNew, 3},
		{k(4), now, now, replayFull, 3},
		{k(1), now, now, replaySeen, 3},
		// 3w later, every key's timestamp has left the window: all go.
		{k(5), now + 3*w, now + 3*w, replayNew, 1},
		{k(1), now, now + 3*w, replayWindow, 1},
	}
	for i, s := range steps {
		if got := f.admit(s.key, s.ts, s.at); got != s.want {
			t.Fatalf("step %d: admit = %v, want %v", i, got, s.want)
		}
		if got := f.size(); got != s.wantSize {
			t.Fatalf("step %d: %d keys held, want %d", i, got, s.wantSize)
		}
	}
}
