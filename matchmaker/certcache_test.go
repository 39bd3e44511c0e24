package matchmaker

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeCertEntry is a cert_digests watch entry.
type fakeCertEntry struct {
	key, value string
	rev        uint64
	created    time.Time
	op         jetstream.KeyValueOp
}

func (e fakeCertEntry) Bucket() string                  { return "cert_digests" }
func (e fakeCertEntry) Key() string                     { return e.key }
func (e fakeCertEntry) Value() []byte                   { return []byte(e.value) }
func (e fakeCertEntry) Revision() uint64                { return e.rev }
func (e fakeCertEntry) Created() time.Time              { return e.created }
func (e fakeCertEntry) Delta() uint64                   { return 0 }
func (e fakeCertEntry) Operation() jetstream.KeyValueOp { return e.op }

// TestCertCache: the cache's own rules, beyond the lookup semantics TestCertDigestLookup
// compares with the direct reads: it does not answer before its replay is done; expired and
// deleted entries are gone; a grant waiting for a fresh digest is woken by a live write of its
// keys, by a replayed one (after a watch restart) only when it is newer than the session, and
// gets the fallback when nothing comes within the wait.
func TestCertCache(t *testing.T) {
	t.Parallel()
	const dep, ipk = "10.0.0.1.dep", "10.0.0.1"
	const wait = time.Second
	// step is one watch entry; at is its write time relative to the session's creation.
	type step struct {
		key, value string
		at         time.Duration
		op         jetstream.KeyValueOp
		replaying  bool
	}
	tests := []struct {
		name     string
		ready    bool
		ttl      time.Duration
		before   []step // applied before the lookup (times relative to the session's creation)
		fresh    bool
		during   []step // applied while the lookup waits
		want     string
		wantOK   bool
		wantWait bool // the lookup waited the whole CertDigestWait
	}{
		{name: "not ready: read the bucket", ready: false, before: []step{{key: dep, value: "d"}}, want: "", wantOK: false},
		{name: "deployment key", ready: true, before: []step{{key: dep, value: "d", at: -time.Hour}}, want: "d", wantOK: true},
		{name: "expired entry is gone", ready: true, ttl: time.Hour, before: []step{{key: dep, value: "d", at: -2 * time.Hour}}, want: "", wantOK: true},
		{name: "deleted entry is gone", ready: true, before: []step{
			{key: ipk, value: "old", at: -time.Hour},
			{key: ipk, at: -time.Minute, op: jetstream.KeyValueDelete},
		}, want: "", wantOK: true},
		{name: "fresh: live write wakes", ready: true, fresh: true,
			before: []step{{key: ipk, value: "old", at: -time.Hour}},
			during: []step{{key: dep, value: "mine", at: time.Millisecond}}, want: "mine", wantOK: true},
		{name: "fresh: other key does not wake", ready: true, fresh: true,
			before: []step{{key: ipk, value: "old", at: -time.Hour}},
			during: []step{{key: "10.0.0.2", value: "other", at: time.Millisecond}}, want: "old", wantOK: true, wantWait: true},
		{name: "fresh: replayed old write does not wake", ready: true, fresh: true,
			during: []step{{key: ipk, value: "old", at: -time.Hour, replaying: true}}, want: "", wantOK: true, wantWait: true},
		{name: "fresh: replayed new write wakes", ready: true, fresh: true,
			during: []step{{key: ipk, value: "new", at: time.Millisecond, replaying: true}}, want: "new", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				createdAt := time.Now()
				c := newCertCache()
				c.restart(tt.ttl)
				if tt.ready {
					c.setReady()
				}
				apply := func(steps []step) {
					for i, s := range steps {
						c.apply(fakeCertEntry{key: s.key, value: s.value, rev: uint64(i + 1), created: createdAt.Add(s.at), op: s.op}, s.replaying)
					}
				}
				apply(tt.before)
				type result struct {
					d  string
					ok bool
				}
				done := make(chan result, 1)
				t0 := time.Now()
				go func() {
					d, ok := c.digest(context.Background(), dep, ipk, createdAt, tt.fresh, wait)
					done <- result{d, ok}
				}()
				synctest.Wait() // the lookup answered or waits
				apply(tt.during)
				r := <-done
				if r.d != tt.want || r.ok != tt.wantOK {
					t.Errorf("digest = %q, %v; want %q, %v", r.d, r.ok, tt.want, tt.wantOK)
				}
				if waited := time.Since(t0) >= wait; waited != tt.wantWait {
					t.Errorf("waited the whole wait: %v, want %v", waited, tt.wantWait)
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				if len(c.waiters) != 0 {
					t.Errorf("%d waiters left", len(c.waiters))
				}
			})
		})
	}
}
