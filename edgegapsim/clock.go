package edgegapsim

import (
	"sort"
	"sync"
	"time"
)

// Clock is the simulator's source of time. Boot times, elapsed seconds, create times and the
// empty time-to-live all follow it; injected HTTP latency and webhook timeouts use real time.
type Clock interface {
	// Now returns the current simulated time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for FakeClock, inside Advance) once d of
	// simulated time has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not happened yet, and reports whether it did so.
	Stop() bool
}

// realClock is the wall clock, the default Clock.
type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// ScaledClock returns a clock that runs factor times faster than the wall clock (factor 100:
// a 30 s boot takes 300 ms of real time while the API reports elapsed = 30). Factors <= 0 mean 1.
func ScaledClock(factor float64) Clock {
	if factor <= 0 {
		factor = 1
	}
	now := time.Now()
	return &scaledClock{factor: factor, realStart: now, simStart: now}
}

type scaledClock struct {
	factor    float64
	realStart time.Time
	simStart  time.Time
}

func (c *scaledClock) Now() time.Time {
	return c.simStart.Add(time.Duration(float64(time.Since(c.realStart)) * c.factor))
}

func (c *scaledClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(time.Duration(float64(d)/c.factor), f)
}

// FakeClock is a manually advanced clock for deterministic tests. Timers fire synchronously,
// in time order, inside Advance. The zero value is not usable; call NewFakeClock.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*fakeTimer
}

// NewFakeClock returns a FakeClock showing start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  uint64
	f    func()
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run in Advance once d has passed.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d, running every timer that falls due, in order, each
// with the clock set to its due time. Timers scheduled by those callbacks run too if they fall
// due before the end of the advance.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.Slice(c.timers, func(i, j int) bool {
			if c.timers[i].when.Equal(c.timers[j].when) {
				return c.timers[i].seq < c.timers[j].seq
			}
			return c.timers[i].when.Before(c.timers[j].when)
		})
		if len(c.timers) == 0 || c.timers[0].when.After(target) {
			c.now = target
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.mu.Unlock()
		t.f()
	}
}

// Pending returns how many timers are scheduled.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
