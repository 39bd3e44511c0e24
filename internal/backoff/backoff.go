// Package backoff is the one retry policy of this module: exponential delays between a base and
// a cap, with optional jitter, and a context-aware sleep. Every retry loop (NATS connect, KV
// writes, Edgegap calls, the game-server agent, the delete worker) uses it, so the timers are
// all of one kind and tests can run them on fake time with testing/synctest.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy describes exponential backoff: the first retry waits Base, each next one twice the
// previous, never more than Max. Jitter in [0, 1] is the random share of each delay: 0 means
// none, 0.5 is "equal jitter" (half fixed, half random), 1 is "full jitter". The zero Policy
// retries at once; a Max below Base means Base.
type Policy struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// Delay returns the wait before retry number attempt (1 for the first retry).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Base
	limit := max(p.Max, p.Base)
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if j := min(max(p.Jitter, 0), 1); j > 0 && d > 0 {
		random := time.Duration(float64(d) * j)
		d = d - random + rand.N(random+1)
	}
	return d
}

// Backoff is the state of one retry loop over a Policy. The zero value is not usable; make one
// with [Policy.Start].
type Backoff struct {
	p       Policy
	attempt int
}

// Start returns a fresh Backoff over p.
func (p Policy) Start() *Backoff { return &Backoff{p: p} }

// Next returns the wait before the next retry and counts it.
func (b *Backoff) Next() time.Duration {
	b.attempt++
	return b.p.Delay(b.attempt)
}

// Attempt returns how many delays Next has handed out since Start or Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts the delays over from Base, e.g. after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for the next delay. It returns ctx's error if ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d or until ctx ends, whichever comes first. It returns nil after the full
// wait and ctx.Err() otherwise. d <= 0 returns at once (ctx.Err() if ctx has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Permanent wraps err so that [Retry] stops and returns err (unwrapped) at once. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err: err}
}

// Retry calls op until it returns nil, returns an error wrapped by [Permanent] (Retry returns
// the inner error), or ctx ends (Retry returns op's last error joined with ctx's). Between
// calls it waits p's delays; onRetry, when not nil, is told of each failure that will be
// retried (attempt is 1 for the first call) and the wait before the next call.
func Retry(ctx context.Context, p Policy, op func(ctx context.Context) error, onRetry func(attempt int, wait time.Duration, err error)) error {
	b := p.Start()
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		var perm *permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		wait := b.Next()
		if onRetry != nil {
			onRetry(b.Attempt(), wait, err)
		}
		if serr := Sleep(ctx, wait); serr != nil {
			return errors.Join(err, serr)
		}
	}
}
