package matchmaker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// certCache is this matchmaker's copy of the cert_digests bucket, kept by one KV watch, so
// that a grant reads the game server's certificate digest from memory instead of making two
// KV reads (two NATS round trips, even for UDP games, which have no digest at all).
//
// It answers only while its watch has replayed the bucket and follows it ("ready"); before
// that, and while the watch is restarted, certDigest reads the bucket directly as it always
// did. A write reaches the cache after the watch's delivery delay (well under a millisecond
// on a healthy NATS): a digest is written when its game server starts, long before a warm
// session is granted on it, and a fresh deployment's digest is waited for (below), so the
// delay does not change the answer except for a digest written in the same instant as the
// grant of a session that did not have to wait for its deployment.
//
// A grant that has to wait for a fresh game server's digest registers a waiter and is woken
// by the first write of one of its keys that the watch delivers after it registered — what a
// per-grant watch of those keys (UpdatesOnly) would have delivered, without creating a
// consumer per grant. Entries older than the bucket's TTL count as gone (expiry leaves no
// delete marker in the watch) and are swept hourly.
type certCache struct {
	mu      sync.Mutex
	ready   bool
	ttl     time.Duration
	entries map[string]certEntry
	waiters map[*certWaiter]struct{}
	// lastRev is the revision of the last entry applied (tests wait for their writes with it).
	lastRev uint64
}

// certEntry is one cert_digests value.
type certEntry struct {
	value   string
	created time.Time // the server's time of the write
}

// certWaiter is a grant waiting for a fresh digest under one of keys.
type certWaiter struct {
	keys      [2]string
	createdAt time.Time
	ch        chan string // buffered 1: gets the first fresh value
}

func newCertCache() *certCache {
	return &certCache{entries: map[string]certEntry{}, waiters: map[*certWaiter]struct{}{}}
}

// certCacheSweep is how often expired entries are dropped from the cache.
const certCacheSweep = time.Hour

// startCertCache starts the cert_digests watch that fills m.certs, until bg ends. Start calls
// it before it subscribes to any request subject, so request goroutines read m.certs without
// a lock. Requests answered before the watch's replay is done read the bucket directly.
func (m *Matchmaker) startCertCache(bg context.Context) {
	c := newCertCache()
	m.certs = c
	kv := m.b.CertDigests
	m.goBackground(func() { c.run(bg, kv, m.log) })
}

// run keeps the watch going until ctx ends: each (re)started watch replays the bucket into an
// empty cache, which is ready once the replay is done; a watch that fails or ends is started
// again with backoff, the cache not answering in between.
func (c *certCache) run(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) {
	b := backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Start()
	sweep := time.NewTicker(certCacheSweep)
	defer sweep.Stop()
	for ctx.Err() == nil {
		ttl := bus.CertDigestTTL
		if st, err := kv.Status(ctx); err == nil {
			ttl = st.TTL()
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			log.Warn("cert_digests watch failed, retrying (digests are read from the bucket meanwhile)", logkey.Err, err)
			_ = b.Wait(ctx)
			continue
		}
		b.Reset()
		c.restart(ttl)
		replaying := true
	follow:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					break follow
				}
				if e == nil {
					replaying = false
					c.setReady()
					continue
				}
				c.apply(e, replaying)
			case now := <-sweep.C:
				c.sweep(now)
			case <-ctx.Done():
				break follow
			}
		}
		_ = w.Stop()
		c.unready()
		if ctx.Err() == nil {
			log.Warn("cert_digests watch ended, restarting (digests are read from the bucket meanwhile)")
			_ = b.Wait(ctx)
		}
	}
}

func (c *certCache) restart(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready = false
	c.ttl = ttl
	c.entries = map[string]certEntry{}
}

func (c *certCache) setReady() {
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
}

func (c *certCache) unready() {
	c.mu.Lock()
	c.ready = false
	c.mu.Unlock()
}

// apply records one entry of the watch and wakes the waiters it is fresh for: every waiter of
// its key for a live write; for a replayed one (after a restart) only those whose session is
// older than the write.
func (c *certCache) apply(e jetstream.KeyValueEntry, replaying bool) {
	key := e.Key()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastRev = max(c.lastRev, e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		delete(c.entries, key)
		return
	}
	ce := certEntry{value: string(e.Value()), created: e.Created()}
	c.entries[key] = ce
	for w := range c.waiters {
		if (w.keys[0] == key || w.keys[1] == key) && (!replaying || ce.created.After(w.createdAt)) {
			w.ch <- ce.value // buffered, and a waiter is sent to once: it leaves the set now
			delete(c.waiters, w)
		}
	}
}

// get returns the live entry of key (caller holds mu).
func (c *certCache) get(key string, now time.Time) (certEntry, bool) {
	if key == "" {
		return certEntry{}, false
	}
	e, ok := c.entries[key]
	if !ok {
		return certEntry{}, false
	}
	if c.ttl > 0 && now.Sub(e.created) > c.ttl {
		delete(c.entries, key)
		return certEntry{}, false
	}
	return e, true
}

func (c *certCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		c.get(k, now)
	}
}

// seen reports whether the cache is ready and has applied the write of revision rev.
func (c *certCache) seen(rev uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready && c.lastRev >= rev
}

// digest is certDigest's lookup through the cache, with the same rules (see certDigest); ok is
// false when the cache is not ready and the bucket must be read directly.
func (c *certCache) digest(ctx context.Context, depKey, ipKey string, createdAt time.Time, fresh bool, wait time.Duration) (digest string, ok bool) {
	c.mu.Lock()
	if !c.ready {
		c.mu.Unlock()
		return "", false
	}
	now := time.Now()
	if e, ok := c.get(depKey, now); ok {
		c.mu.Unlock()
		return e.value, true
	}
	fallback := ""
	if e, ok := c.get(ipKey, now); ok {
		fallback = e.value
		if !fresh || e.created.After(createdAt) {
			c.mu.Unlock()
			return fallback, true
		}
	}
	if !fresh || (depKey == "" && ipKey == "") {
		c.mu.Unlock()
		return fallback, true
	}
	// Registered under the same lock as the look above: no write can slip in between.
	w := &certWaiter{keys: [2]string{depKey, ipKey}, createdAt: createdAt, ch: make(chan string, 1)}
	c.waiters[w] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case v := <-w.ch:
		return v, true
	case <-t.C:
	case <-ctx.Done():
	}
	select { // a write that came with the timer
	case v := <-w.ch:
		return v, true
	default:
		return fallback, true
	}
}
