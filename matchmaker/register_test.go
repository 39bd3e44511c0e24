package matchmaker

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
)

// outageKV is a KV bucket whose puts fail as during a NATS node failover (no stream leader: "no
// response from stream") until a given instant.
type outageKV struct {
	jetstream.KeyValue
	until time.Time
	mu    sync.Mutex
	puts  map[string]string
}

func (kv *outageKV) Put(_ context.Context, key string, value []byte) (uint64, error) {
	if time.Now().Before(kv.until) {
		return 0, jetstream.ErrNoStreamResponse
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.puts[key] = string(value)
	return 1, nil
}

// TestRegisterIDsRidesOutFailover: the session-map writes before the token reply are retried
// through a failover of a few seconds (the reply used to be 503 "session store unavailable"
// about 1 s after a node of three was killed), within registerWriteLimit.
func TestRegisterIDsRidesOutFailover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		outage  time.Duration
		wantErr bool
	}{
		{"no outage", 0, false},
		{"failover of 4 s", 4 * time.Second, false},
		{"outage beyond the limit", registerWriteLimit + time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				m, _ := newUnitMatchmaker(t, nil, &fakeEdgegap{}, nil)
				until := time.Now().Add(tt.outage)
				kv := func() *outageKV { return &outageKV{until: until, puts: map[string]string{}} }
				ly2eg, eg2ly, unclaimed := kv(), kv(), kv()
				m.b = &bus.Buckets{SessionsLy2Eg: ly2eg, SessionsEg2Ly: eg2ly, UnclaimedSessions: unclaimed}
				start := time.Now()
				err := m.registerIDs(context.Background(), "s-1", 42, time.Minute)
				if (err != nil) != tt.wantErr {
					t.Fatalf("registerIDs after %v: err = %v, want error %v", time.Since(start), err, tt.wantErr)
				}
				if tt.wantErr {
					if took := time.Since(start); took != registerWriteLimit {
						t.Errorf("gave up after %v, want %v", took, registerWriteLimit)
					}
					return
				}
				if ly2eg.puts["42"] != "s-1" || eg2ly.puts["s-1"] != "42" || unclaimed.puts["s-1"] != "s-1" {
					t.Errorf("writes: ly2eg %v, eg2ly %v, unclaimed %v", ly2eg.puts, eg2ly.puts, unclaimed.puts)
				}
				if took := time.Since(start); took < tt.outage || took > tt.outage+2*time.Second {
					t.Errorf("done after %v, outage %v", took, tt.outage)
				}
			})
		})
	}
}

// entryKV is a KV bucket whose Get returns entry (or ErrKeyNotFound when nil).
type entryKV struct {
	jetstream.KeyValue
	entry jetstream.KeyValueEntry
}

func (kv entryKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	if kv.entry == nil {
		return nil, jetstream.ErrKeyNotFound
	}
	return kv.entry, nil
}

// TestReaperRereadsRewrittenEntry: an unclaimed entry the grant rewrote (a new revision, written
// just now) while the reaper's watch lagged behind is not reaped: the reaper takes the fresh
// entry, with its new deadline, instead of queuing the deletion of a session being played.
func TestReaperRereadsRewrittenEntry(t *testing.T) {
	t.Parallel()
	m, _ := newUnitMatchmaker(t, nil, &fakeEdgegap{}, nil)
	m.unclaim = newUnclaimedReaper(m.cfg.ReadinessLimit+m.cfg.ClaimGrace, m.reapUnclaimed)
	m.unclaim.apply(fakeEntry{key: "s-1", rev: 1, created: time.Now().Add(-time.Hour), op: jetstream.KeyValuePut})
	rewritten := putEntry("s-1", 2)
	// No active connection yet, no delete queue: reaching either would fail the test.
	m.b = &bus.Buckets{UnclaimedSessions: entryKV{entry: rewritten}}
	m.reapUnclaimed(context.Background(), "s-1", 1)
	m.unclaim.mu.Lock()
	defer m.unclaim.mu.Unlock()
	if it := m.unclaim.items["s-1"]; it == nil || it.rev != 2 || !it.deadline.Equal(rewritten.created.Add(m.unclaim.ttl)) {
		t.Fatalf("reaper item after the re-read: %+v", it)
	}
}
