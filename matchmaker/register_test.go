package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
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

func (kv *outageKV) Update(ctx context.Context, key string, value []byte, _ uint64) (uint64, error) {
	return kv.Put(ctx, key, value)
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
				// Granted late in the session's life: the unclaimed entry is re-armed too.
				created := start.Add(-m.cfg.ReadinessLimit)
				err := m.registerIDs(context.Background(), "s-1", 42, tracked{rev: 1, created: created})
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

// TestReaperAndLateGrantExclusive: a grant that comes late in a session's life (it re-arms the
// unclaimed_sessions entry, keepUnclaimed) and the reapers of two matchmakers race for the same
// compare-and-set: either the grant wins (the entry lives on, nothing is queued) or one reaper
// does (exactly one deletion queued, the grant fails with errReaped) — never a token for a
// session being deleted. Found by the long soak: 4 sessions granted 9–12 s after their create
// (Edgegap answering 429) were reaped in the same instant and deleted under their players.
func TestReaperAndLateGrantExclusive(t *testing.T) {
	t.Parallel()
	b := openBuckets(t, "reap_")
	const limit, grace = 300 * time.Millisecond, 100 * time.Millisecond
	newMM := func() *Matchmaker {
		m, _ := newUnitMatchmaker(t, func(c *Config) { c.ReadinessLimit, c.ClaimGrace = limit, grace }, &fakeEdgegap{}, nil)
		m.b = b
		m.unclaim = newUnclaimedReaper(limit+grace, m.reapUnclaimed)
		return m
	}
	mms := []*Matchmaker{newMM(), newMM()}
	ctx := t.Context()
	queued := func(t *testing.T, sid string) uint64 {
		t.Helper()
		subject := b.Names.DeleteSubjectBase + "." + sid
		info, err := b.DeleteStream.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	track := func(t *testing.T, sid string) tracked {
		t.Helper()
		rev, err := mms[0].trackUnclaimedCtx(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		e, err := b.UnclaimedSessions.Get(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(limit + grace + 20*time.Millisecond) // late: past the reaper's deadline
		return tracked{rev: rev, created: e.Created()}
	}

	t.Run("grant first", func(t *testing.T) {
		t.Parallel()
		tr := track(t, "late-grant-first")
		if err := mms[0].keepUnclaimed(ctx, "late-grant-first", tr); err != nil {
			t.Fatalf("keepUnclaimed: %v", err)
		}
		mms[1].reapUnclaimed(ctx, "late-grant-first", tr.rev) // its watch still has the old revision
		if e, err := b.UnclaimedSessions.Get(ctx, "late-grant-first"); err != nil || e.Revision() <= tr.rev {
			t.Errorf("entry after the grant and a lagging reaper: %v, %v (want a newer revision than %d)", e, err, tr.rev)
		}
		if n := queued(t, "late-grant-first"); n != 0 {
			t.Errorf("%d deletions queued for a granted session", n)
		}
	})
	t.Run("reaper first", func(t *testing.T) {
		t.Parallel()
		tr := track(t, "late-reaper-first")
		mms[1].reapUnclaimed(ctx, "late-reaper-first", tr.rev)
		if err := mms[0].keepUnclaimed(ctx, "late-reaper-first", tr); !errors.Is(err, errReaped) {
			t.Errorf("keepUnclaimed after the reaper: err = %v, want errReaped", err)
		}
		if n := queued(t, "late-reaper-first"); n != 1 {
			t.Errorf("%d deletions queued, want 1", n)
		}
	})
	t.Run("together", func(t *testing.T) {
		t.Parallel()
		const n = 12
		trs := make([]tracked, n)
		for i := range n {
			rev, err := mms[0].trackUnclaimedCtx(ctx, fmt.Sprintf("late-race-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			trs[i] = tracked{rev: rev, created: time.Now()}
		}
		time.Sleep(limit + grace + 20*time.Millisecond)
		var granted int
		for i := range n {
			sid := fmt.Sprintf("late-race-%d", i)
			var wg sync.WaitGroup
			var gerr error
			wg.Go(func() { gerr = mms[0].keepUnclaimed(ctx, sid, trs[i]) })
			for _, m := range mms {
				wg.Go(func() { m.reapUnclaimed(ctx, sid, trs[i].rev) })
			}
			wg.Wait()
			q := queued(t, sid)
			switch {
			case gerr == nil && q == 0:
				granted++
			case errors.Is(gerr, errReaped) && q == 1:
			default:
				t.Errorf("%s: grant err = %v with %d deletions queued; want a grant and none, or errReaped and one", sid, gerr, q)
			}
		}
		t.Logf("%d of %d late grants won the race", granted, n)
	})
}

// createAPI is a fakeEdgegap whose session creates succeed with session id sid.
type createAPI struct {
	*fakeEdgegap
	sid string
}

func (a createAPI) CreateSession(context.Context, edgegap.SessionCreateRequest) (*edgegap.SessionCreated, error) {
	return &edgegap.SessionCreated{SessionID: a.sid}, nil
}

// TestReadinessLimitAfterTheUnclaimedWrite: a NATS failover that holds the unclaimed_sessions
// write for longer than the readiness limit (a stream-leader election took 7.5 s in the long
// soak, whose limit was 8 s: 21 players got 504) does not fail a session that is ready at
// once: the limit counts from that write, as the reaper's deadline does.
func TestReadinessLimitAfterTheUnclaimedWrite(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const limit = 3 * time.Second
		api := createAPI{sid: "s-1", fakeEdgegap: &fakeEdgegap{getSession: func(id string) (*edgegap.Session, error) {
			return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusReady, Ready: true,
				Deployment: &edgegap.Deployment{RequestID: "dep", PublicIP: "203.0.113.7",
					Ports: map[string]edgegap.PortMapping{"game": {External: new(31000)}}}}, nil
		}}}
		m, _ := newUnitMatchmaker(t, func(c *Config) {
			c.ReadinessLimit, c.CertDigestWait = limit, 0
			c.SessionWebhookURL = "https://hooks.example/hook/session" // the first check at 10 % of the limit
		}, api, nil)
		start := time.Now()
		kv := func(outage time.Duration) *outageKV {
			return &outageKV{until: start.Add(outage), puts: map[string]string{}}
		}
		unclaimed := kv(limit + 2*time.Second)
		m.b = &bus.Buckets{UnclaimedSessions: unclaimed, SessionsLy2Eg: kv(0), SessionsEg2Ly: kv(0), CertDigests: entryKV{}}
		pr := m.trackPlain("_INBOX.test")
		g, rerr := m.admittedSession(context.Background(), pr, netip.MustParseAddr("198.51.100.9"), nil)
		if rerr != nil {
			t.Fatalf("after a %v stall of the unclaimed write: %v", limit+2*time.Second, rerr)
		}
		if g.sessionID != "s-1" || unclaimed.puts["s-1"] != "s-1" {
			t.Errorf("grant %+v, unclaimed entry %v", g, unclaimed.puts)
		}
	})
}
