package statusfeed

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/natsembed"
)

var update = flag.Bool("update", false, "rewrite testdata/view.golden.json")

var t0 = time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)

// history returns samples every 5 s from t0-60s to t0 with granted growing by perStep each step
// (each grant taking about ttr seconds) and one failure every 4 steps.
func history(perStep uint64, ttr float64) []Sample {
	var out []Sample
	var g, f uint64
	buckets := make([]uint64, len(TTRBounds)+1)
	idx := 0
	for idx < len(TTRBounds) && TTRBounds[idx] < ttr {
		idx++
	}
	for i := 0; i <= 12; i++ {
		out = append(out, Sample{At: t0.Add(time.Duration(i-12) * 5 * time.Second), Granted: g, Failed: f, TTR: append([]uint64(nil), buckets...)})
		g += perStep
		buckets[idx] += perStep
		if i%4 == 3 {
			f++
		}
	}
	return out
}

// fixture is two matchmakers (one a little behind with its shared view), a matchmaker of
// another bucket prefix, two front doors and one front door gone silent.
func fixture() []Snapshot {
	mm := func(id string, queued, creating, waiting int, granted uint64, hist []Sample) Snapshot {
		return Snapshot{Role: RoleMatchmaker, Instance: id, Host: "mm-" + id, App: "dotroom", Version: "1",
			At: t0.Add(-time.Second), Started: t0.Add(-10 * time.Minute), IntervalMS: 5000,
			Queued: queued, Creating: creating, WaitingReady: waiting, Granted: granted, Failed: 3,
			EdgegapCalls: map[string]map[string]uint64{
				"session_create": {"ok": granted, "rate_limited": 1},
				"session_get":    {"ok": 2},
			},
			History: hist,
		}
	}
	a := mm("aaaa", 1, 2, 3, 40, history(2, 1.5))
	a.Errors = []ErrorEvent{{At: t0.Add(-30 * time.Second), Code: 504, Message: "session still not ready, timed out."}}
	a.Shared = &Shared{At: t0.Add(-time.Second), Unclaimed: 5, Claimed: 7, OldestSessionID: "s-old", OldestSince: t0.Add(-90 * time.Second),
		OldestBucket: "active_connections", DeleteQueue: 2, DeleteOldest: t0.Add(-4 * time.Second)}
	a.Edgegap = &EdgegapView{At: t0.Add(-20 * time.Second), Sessions: 14, Ready: 12, Deployments: 3}
	b := mm("bbbb", 0, 1, 1, 10, history(1, 6))
	b.Errors = []ErrorEvent{{At: t0.Add(-10 * time.Second), Code: 502, Message: "Edgegap failed: 500"}}
	b.Shared = &Shared{At: t0.Add(-3 * time.Second), Unclaimed: 4, Claimed: 7, DeleteQueue: 3} // older: ignored
	b.Edgegap = &EdgegapView{At: t0.Add(-50 * time.Second), Sessions: 13, Ready: 11, Deployments: 3}
	other := mm("cccc", 0, 0, 0, 0, nil)
	other.Prefix, other.App = "spacepit_", "spacepit"
	other.EdgegapCalls = nil
	other.Shared = &Shared{At: t0.Add(-2 * time.Second), Unclaimed: 1, Claimed: 2, DeleteQueue: 0}
	h := func(id string, open int, at time.Time) Snapshot {
		return Snapshot{Role: RoleHTTPD, Instance: id, At: at, Started: t0.Add(-time.Hour), IntervalMS: 5000, OpenStreams: open}
	}
	return []Snapshot{a, b, other, h("h1", 4, t0.Add(-2*time.Second)), h("h2", 2, t0.Add(-4*time.Second)), h("gone", 100, t0.Add(-20*time.Second))}
}

// TestViewGolden pins the JSON of /status.json (the page reads these names).
func TestViewGolden(t *testing.T) {
	t.Parallel()
	a, _ := NewAggregator(nil)
	for _, s := range fixture() {
		a.Add(s)
	}
	got, err := json.MarshalIndent(a.View(t0), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "view.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("view differs from %s (go test -run TestViewGolden -update ./internal/statusfeed/ after checking):\n%s", path, got)
	}
}

// TestViewSums checks the sums of the fixture by hand, independent of the golden file.
func TestViewSums(t *testing.T) {
	t.Parallel()
	a, _ := NewAggregator(nil)
	for _, s := range fixture() {
		a.Add(s)
	}
	v := a.View(t0)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"waiting players (silent front door dropped)", float64(v.WaitingPlayers), 6},
		{"queued", float64(v.Queued), 1},
		{"creating", float64(v.Sessions.Creating), 3},
		{"waiting ready", float64(v.Sessions.WaitingReady), 4},
		{"ready = unclaimed (5+1) - waiting (4)", float64(v.Sessions.Ready), 2},
		{"claimed (newest view per prefix: 7+2)", float64(v.Sessions.Claimed), 9},
		{"deleting", float64(v.Sessions.Deleting), 2},
		{"delete queue oldest", v.DeleteQueue.OldestAgeSeconds, 4},
		{"oldest session", v.OldestSession.AgeSeconds, 90},
		{"edgegap deployments (newest view)", float64(v.Edgegap.Deployments), 3},
		{"edgegap view age", v.Edgegap.AgeSeconds, 20},
		{"granted", float64(v.Grants.Total), 50},
		{"instances", float64(len(v.Instances)), 5},
		{"errors", float64(len(v.Errors)), 2},
		{"ttr count (12 steps of 2 + 12 of 1)", float64(v.Grants.TTR.Count), 36},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if v.Errors[0].Code != 502 || v.Errors[0].Instance != "bbbb" {
		t.Errorf("newest error first: %+v", v.Errors[0])
	}
	var creates uint64
	for _, c := range v.EdgegapCalls {
		if c.Endpoint == "session_create" && c.Outcome == "ok" {
			creates = c.Count
		}
	}
	if creates != 50 {
		t.Errorf("session_create ok over both matchmakers: %d, want 50", creates)
	}
	var rate float64
	for _, r := range v.Grants.PerSecond {
		rate += r * v.Grants.BinSeconds
	}
	if rate != 36 {
		t.Errorf("grants over the window: %v, want 36", rate)
	}
}

func TestQuantiles(t *testing.T) {
	t.Parallel()
	n := len(TTRBounds) + 1
	one := func(i int, c uint64) []uint64 { b := make([]uint64, n); b[i] = c; return b }
	tests := []struct {
		name   string
		counts []uint64
		want   Quantiles
	}{
		{"empty", make([]uint64, n), Quantiles{}},
		{"all in first bucket", one(0, 10), Quantiles{Count: 10, P50: 0.125, P90: 0.225, P99: 0.248}},
		{"all in 1..2 s", one(3, 100), Quantiles{Count: 100, P50: 1.5, P90: 1.9, P99: 1.99}},
		{"overflow reports the last bound", one(n-1, 3), Quantiles{Count: 3, P50: 90, P90: 90, P99: 90}},
	}
	for _, tt := range tests {
		if got := quantiles(tt.counts); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	r.Creating(2)
	r.Creating(-1)
	r.Granted(1500 * time.Millisecond)
	r.Granted(100 * time.Second)
	for i := range maxErrors + 5 {
		r.Failed(t0, 500+i, "boom")
	}
	var s Snapshot
	r.Fill(&s, t0)
	r.Fill(&s, t0.Add(HistoryWindow+time.Hour)) // the first sample falls out of the window
	if s.Creating != 1 || s.Granted != 2 || s.Failed != maxErrors+5 || len(s.Errors) != maxErrors || s.Errors[0].Code != 505 {
		t.Errorf("snapshot %+v", s)
	}
	if len(s.History) != 1 || s.History[0].TTR[3] != 1 || s.History[0].TTR[len(TTRBounds)] != 1 {
		t.Errorf("history %+v", s.History)
	}
}

// TestAggregateOverNATS: two matchmakers and a front door publish through a real NATS server;
// one aggregator sums them, and forgets an instance that stopped publishing.
func TestAggregateOverNATS(t *testing.T) {
	t.Parallel()
	srv, err := natsembed.Start(natsembed.Config{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := bustest.Connect(t, srv, "statusfeed-test")
	agg, err := NewAggregator(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = agg.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(ctx context.Context, s Snapshot, rec *Recorder) {
		go Publish(ctx, bustest.Connect(t, srv, s.Instance), 20*time.Millisecond, nil, func(_ context.Context, now time.Time) Snapshot {
			s.At = now
			if rec != nil {
				rec.Fill(&s, now)
			}
			return s
		})
	}
	r1, r2 := NewRecorder(), NewRecorder()
	r1.Granted(time.Second)
	r2.Granted(time.Second)
	r2.Granted(2 * time.Second)
	r2.Failed(time.Now(), 503, "session store unavailable")
	publish(ctx, Snapshot{Role: RoleMatchmaker, Instance: "mm1", WaitingReady: 1, Shared: &Shared{At: time.Now(), Claimed: 3}}, r1)
	mm2ctx, stopMM2 := context.WithCancel(ctx)
	publish(mm2ctx, Snapshot{Role: RoleMatchmaker, Instance: "mm2", WaitingReady: 2}, r2)
	publish(ctx, Snapshot{Role: RoleHTTPD, Instance: "h1", OpenStreams: 3}, nil)

	eventually.True(t, 5*time.Second, func() bool {
		v := agg.View(time.Now())
		return len(v.Instances) == 3 && v.Grants.Total == 3 && v.Sessions.WaitingReady == 3 && v.WaitingPlayers == 3 &&
			v.Sessions.Claimed == 3 && len(v.Errors) == 1
	}, "view of two matchmakers and a front door: %+v", agg.View(time.Now()))

	stopMM2()
	// An instance is forgotten after three intervals, at least 15 s: 14.9 s ahead the live
	// ones (publishing every 20 ms) are still there and mm2, silent, is gone.
	eventually.True(t, 5*time.Second, func() bool {
		v := agg.View(time.Now().Add(14900 * time.Millisecond))
		return len(v.Instances) == 2 && v.Grants.Total == 1 && v.Sessions.WaitingReady == 1
	}, "mm2 not forgotten: %+v", agg.View(time.Now()))
}
