package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/edgegap"
)

// TestUnclaimedReaper runs the reaper's deadline heap on fake time: an entry is reaped exactly
// ttl after its last write, never after its delete marker, again every recheck while its delete
// marker does not come, and not at all once the watch restarted without it.
func TestUnclaimedReaper(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		start := time.Now()
		var mu sync.Mutex
		var reaps []string // "key@rev@seconds"
		var r *unclaimedReaper
		r = newUnclaimedReaper(ttl, func(_ context.Context, key string, rev uint64) {
			mu.Lock()
			reaps = append(reaps, fmt.Sprintf("%s@%d@%v", key, rev, time.Since(start)))
			mu.Unlock()
			if key != "stuck" {
				r.apply(deleteEntry(key, rev+100)) // the delete marker the real reap writes
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.run(ctx); close(done) }()
		took := func(want ...string) {
			t.Helper()
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(reaps)
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(reaps, want) {
				t.Fatalf("at %v: reaped %v, want %v", time.Since(start), reaps, want)
			}
			reaps = reaps[:0]
		}

		r.apply(putEntry("a", 1))         // reaped at 10 s
		r.apply(putEntry("claimed", 2))   // claimed at 4 s: never reaped
		r.apply(putEntry("rewritten", 3)) // written again at 6 s: reaped at 16 s
		r.apply(putEntry("stuck", 4))     // its delete marker never comes: 10 s, 15 s, 20 s …
		time.Sleep(4 * time.Second)
		r.apply(deleteEntry("claimed", 5))
		if r.has("claimed") || !r.has("a") {
			t.Fatal("has() does not follow the watch")
		}
		time.Sleep(2 * time.Second)
		r.apply(putEntry("rewritten", 6))
		time.Sleep(ttl - 6*time.Second - time.Nanosecond)
		took()
		time.Sleep(time.Nanosecond)
		took("a@1@10s", "stuck@4@10s")
		time.Sleep(reapRecheck)
		took("stuck@4@15s")
		time.Sleep(time.Second)
		took("rewritten@6@16s")
		time.Sleep(4 * time.Second)
		took("stuck@4@20s")
		// A restarted watch replays the bucket, which no longer holds "stuck".
		r.reset()
		time.Sleep(2 * time.Hour)
		took()
		cancel()
		<-done
	})
}

// TestWatchKV: the first watch's failure is reported to the starter; later failures and ended
// watches restart with backoff (200 ms doubling), each restart replaying the bucket.
func TestWatchKV(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		logs := &lockedBuffer{}
		m, _ := newUnitMatchmaker(t, nil, &fakeEdgegap{}, logs)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		failing := &fakeKV{watches: []func() (jetstream.KeyWatcher, error){
			func() (jetstream.KeyWatcher, error) { return nil, errors.New("no JetStream") }}}
		ready := make(chan error, 1)
		m.watchKV(ctx, failing, "unclaimed_sessions", ready, nil, nil)
		if err := <-ready; err == nil || !strings.Contains(err.Error(), "no JetStream") {
			t.Fatalf("first watch: %v", err)
		}

		first := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry, 4)}
		second := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry, 4)}
		fail := func() (jetstream.KeyWatcher, error) { return nil, errors.New("nats: timeout") }
		kv := &fakeKV{watches: []func() (jetstream.KeyWatcher, error){
			func() (jetstream.KeyWatcher, error) { return first, nil },
			fail, fail,
			func() (jetstream.KeyWatcher, error) { return second, nil },
		}}
		type seen struct {
			key       string
			replaying bool
		}
		var mu sync.Mutex
		var got []seen
		restarts := 0
		start := time.Now()
		ready = make(chan error, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.watchKV(ctx, kv, "active_connections", ready,
				func() { mu.Lock(); restarts++; mu.Unlock() },
				func(e jetstream.KeyValueEntry, replaying bool) {
					mu.Lock()
					got = append(got, seen{e.Key(), replaying})
					mu.Unlock()
				})
		}()
		first.updates <- putEntry("old", 1)
		first.updates <- nil // replay done
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
		first.updates <- putEntry("new", 2)
		close(first.updates) // the watch ends: restart after 200 ms, fail twice (400, 800 ms)
		second.updates <- putEntry("old", 1)
		second.updates <- nil
		time.Sleep(time.Minute)

		mu.Lock()
		want := []seen{{"old", true}, {"new", false}, {"old", true}}
		if !slices.Equal(got, want) || restarts != 2 {
			t.Errorf("entries %v with %d restarts, want %v with 2", got, restarts, want)
		}
		mu.Unlock()
		var at []time.Duration
		kv.mu.Lock()
		for _, c := range kv.calls {
			at = append(at, c.Sub(start))
		}
		kv.mu.Unlock()
		ms := time.Millisecond
		if want := []time.Duration{0, 200 * ms, 600 * ms, 1400 * ms}; !slices.Equal(at, want) {
			t.Errorf("WatchAll at %v, want %v", at, want)
		}
		if !strings.Contains(logs.String(), "active_connections watch ended, restarting") ||
			!strings.Contains(logs.String(), "active_connections watch failed, retrying") {
			t.Errorf("logs: %s", logs)
		}
		// The end of bg ends the watch (a real watch's channel closes then) and watchKV.
		cancel()
		close(second.updates)
		<-done
	})
}

// TestDeleteOne: the delete worker acks a deleted or already gone session, drops a message
// that is not a session id, hands work back on shutdown, and otherwise asks for redelivery
// after DeleteRetryBase doubling up to DeleteRetryMax, reporting the deletion as stuck from
// DeleteStuckAfter deliveries on.
func TestDeleteOne(t *testing.T) {
	t.Parallel()
	unavailable := &edgegap.APIError{Endpoint: edgegap.EndpointSessionDelete, StatusCode: 503}
	tests := []struct {
		name      string
		data      string
		delivered uint64
		err       error
		shutdown  bool
		settled   string
		delay     time.Duration
		stuck     float64
		result    string
	}{
		{name: "deleted", data: "s-1", delivered: 1, settled: "ack", result: "deleted"},
		{name: "already gone (404)", data: "s-1", delivered: 1, settled: "ack", result: "already_gone",
			err: &edgegap.APIError{Endpoint: edgegap.EndpointSessionDelete, StatusCode: 404}},
		{name: "already gone (410)", data: "s-1", delivered: 2, settled: "ack", result: "already_gone",
			err: &edgegap.APIError{Endpoint: edgegap.EndpointSessionDelete, StatusCode: 410}},
		{name: "not a session id", data: "a b", delivered: 1, settled: "term"},
		{name: "shutting down", data: "s-1", delivered: 1, err: unavailable, shutdown: true, settled: "nak"},
		{name: "first failure", data: "s-1", delivered: 1, err: unavailable, settled: "nak_delay", delay: time.Second, result: "retry"},
		{name: "second failure", data: "s-1", delivered: 2, err: unavailable, settled: "nak_delay", delay: 2 * time.Second, result: "retry"},
		{name: "stuck", data: "s-1", delivered: 3, err: unavailable, settled: "nak_delay", delay: 4 * time.Second, stuck: 1, result: "retry"},
		{name: "still stuck", data: "s-1", delivered: 4, err: unavailable, settled: "nak_delay", delay: 8 * time.Second, result: "retry"},
		{name: "capped", data: "s-1", delivered: 200, err: unavailable, settled: "nak_delay", delay: 8 * time.Second, result: "retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var deleted []string
			api := &fakeEdgegap{deleteSession: func(id string) error { deleted = append(deleted, id); return tt.err }}
			m, reg := newUnitMatchmaker(t, func(c *Config) {
				c.DeleteRetryBase, c.DeleteRetryMax, c.DeleteStuckAfter = time.Second, 8*time.Second, 3
			}, api, nil)
			bg, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.shutdown {
				api.deleteSession = func(id string) error { deleted = append(deleted, id); cancel(); return tt.err }
			}
			msg := &fakeMsg{data: tt.data, delivered: tt.delivered}
			m.deleteOne(bg, msg, nil)
			if msg.settled != tt.settled || msg.delay != tt.delay {
				t.Errorf("settled %s after %v, want %s after %v", msg.settled, msg.delay, tt.settled, tt.delay)
			}
			if tt.settled == "term" && len(deleted) != 0 {
				t.Errorf("deleted %v", deleted)
			}
			if v := metricSum(t, reg, "bevygap_matchmaker_session_deletes_stuck_total", nil); v != tt.stuck {
				t.Errorf("stuck = %v, want %v", v, tt.stuck)
			}
			if tt.result != "" {
				if v := metricSum(t, reg, "bevygap_matchmaker_session_deletes_total", map[string]string{"result": tt.result}); v != 1 {
					t.Errorf("deletes{result=%s} = %v", tt.result, v)
				}
			}
		})
	}
}
