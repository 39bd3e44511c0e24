package httpd

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipRateLimiter is a token bucket per client IP (per /64 for IPv6). Buckets that have been full
// long enough are forgotten, so memory stays proportional to recently active clients.
type ipRateLimiter struct {
	limit rate.Limit // tokens per second; rate.Inf disables the limiter
	burst int
	idle  time.Duration // after this long unused a bucket is full again and can be dropped

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPRateLimiter(perMinute float64, burst int) *ipRateLimiter {
	l := &ipRateLimiter{burst: burst, buckets: map[netip.Prefix]*bucket{}}
	if perMinute < 0 {
		l.limit = rate.Inf
		return l
	}
	l.limit = rate.Limit(perMinute / 60)
	l.idle = time.Duration(float64(burst)/float64(l.limit)*float64(time.Second)) + time.Second
	return l
}

// allow takes one token for key at now; false means rate limited.
func (l *ipRateLimiter) allow(key netip.Prefix, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.lastSweep = now
		for k, b := range l.buckets {
			if now.Sub(b.last) > l.idle {
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// size returns how many buckets are held (for tests).
func (l *ipRateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// streamCounter caps concurrent streams in total and per IP.
type streamCounter struct {
	max, maxPerIP int // negative: unlimited

	mu    sync.Mutex
	total int
	perIP map[netip.Prefix]int
}

func newStreamCounter(max, maxPerIP int) *streamCounter {
	return &streamCounter{max: max, maxPerIP: maxPerIP, perIP: map[netip.Prefix]int{}}
}

// acquire takes a slot for key. It returns "" on success, else the reject reason
// ("too_many_streams" or "too_many_streams_ip").
func (c *streamCounter) acquire(key netip.Prefix) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max >= 0 && c.total >= c.max {
		return "too_many_streams"
	}
	if c.maxPerIP >= 0 && c.perIP[key] >= c.maxPerIP {
		return "too_many_streams_ip"
	}
	c.total++
	c.perIP[key]++
	return ""
}

// release returns a slot taken by acquire.
func (c *streamCounter) release(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if n := c.perIP[key] - 1; n > 0 {
		c.perIP[key] = n
	} else {
		delete(c.perIP, key)
	}
}

// open returns the number of open streams.
func (c *streamCounter) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
