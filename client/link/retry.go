package link

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Defaults of the retry settings of Config.
const (
	// DefaultRetryMin is the first delay after a failed attempt.
	DefaultRetryMin = 200 * time.Millisecond
	// DefaultRetryMax caps the delay while a relay is unreachable, for
	// DefaultRetrySlowAfter. It is short so that a relay that comes back
	// is reached again within about a second; an attempt on a relay that
	// is down costs a TCP SYN, or a few QUIC Initial packets of about 1.3
	// KB each (at most four in the QUICTimeout of one attempt).
	DefaultRetryMax = 1 * time.Second
	// DefaultRetrySlowAfter is how long a relay may stay unreachable
	// before attempts slow down to DefaultRetrySlow.
	DefaultRetrySlowAfter = 5 * time.Minute
	// DefaultRetrySlow is the delay between attempts on a relay that has
	// been unreachable for DefaultRetrySlowAfter, or that refused the
	// connection for good (see Permanent).
	DefaultRetrySlow = 30 * time.Second
)

// Permanent reports whether err, from Dial or a command, will not go away
// by trying again: the relay is not the one the address pins
// (ErrWrongFingerprint), its TLS is unusable (ErrTLS), or it refuses the
// address's password (ErrWrongPassword). A caller should report it at
// once; it may keep trying, slowly, in case the relay's operator fixes it.
func Permanent(err error) bool {
	return errors.Is(err, ErrWrongFingerprint) || errors.Is(err, ErrTLS) || errors.Is(err, ErrWrongPassword)
}

// Backoff gives the delays between the attempts to reach one relay
// (Config's retry settings): after the first failure a random delay
// between RetryMin/2 and RetryMin, then twice as long each time up to
// RetryMax; RetrySlow once the relay has been failing for RetrySlowAfter,
// or after a permanent error. The randomness, between half of each delay
// and all of it, keeps the clients of a relay that restarts from all
// coming back at once. Reset it after a success. Make one with
// NewBackoff; it is not safe for concurrent use.
type Backoff struct {
	min, max, slow, slowAfter time.Duration

	next  time.Duration // the upper bound of the next delay
	since time.Time     // the first failure since the last Reset; zero if none
}

// NewBackoff returns a Backoff with cfg's retry settings, or their
// defaults.
func NewBackoff(cfg Config) *Backoff {
	b := &Backoff{min: cfg.RetryMin, max: cfg.RetryMax, slow: cfg.RetrySlow, slowAfter: cfg.RetrySlowAfter}
	if b.min <= 0 {
		b.min = DefaultRetryMin
	}
	if b.max <= 0 {
		b.max = DefaultRetryMax
	}
	b.max = max(b.max, b.min)
	if b.slow <= 0 {
		b.slow = DefaultRetrySlow
	}
	if b.slowAfter <= 0 {
		b.slowAfter = DefaultRetrySlowAfter
	}
	b.Reset()
	return b
}

// Next returns how long to wait after an attempt that failed with err.
func (b *Backoff) Next(err error) time.Duration {
	now := time.Now()
	if b.since.IsZero() {
		b.since = now
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	if Permanent(err) || now.Sub(b.since) >= b.slowAfter {
		d = b.slow
	}
	return d/2 + rand.N(d/2+1)
}

// Reset starts the delays again from RetryMin, after a success.
func (b *Backoff) Reset() {
	b.next, b.since = b.min, time.Time{}
}
