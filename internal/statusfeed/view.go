package statusfeed

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Chart shape of a [View]: HistoryWindow cut into bins of BinWidth.
const (
	BinWidth = 10 * time.Second
	bins     = int(HistoryWindow / BinWidth)
)

// View is the JSON the status page polls (GET /status.json): the sum over every live instance.
type View struct {
	At time.Time `json:"at"`
	// Instances are the live publishers, matchmakers first.
	Instances []InstanceView `json:"instances"`
	// WaitingPlayers is the open session request streams over all front doors.
	WaitingPlayers int `json:"waiting_players"`
	// Queued is the requests waiting for a session-creation slot over all matchmakers.
	Queued   int           `json:"queued"`
	Sessions SessionStates `json:"sessions"`
	// Edgegap is Edgegap's own session list as last seen (nil before the first reconciliation).
	Edgegap      *EdgegapSummary `json:"edgegap"`
	Grants       Grants          `json:"grants"`
	EdgegapCalls []CallCount     `json:"edgegap_calls"`
	DeleteQueue  DeleteQueue     `json:"delete_queue"`
	// OldestSession is the live session with the oldest bucket entry (nil when none).
	OldestSession *OldestSession `json:"oldest_session"`
	// Errors are the most recent failed requests over all matchmakers, newest first.
	Errors []ErrorEvent `json:"errors"`
}

// InstanceView describes one publisher.
type InstanceView struct {
	Role       string  `json:"role"`
	Instance   string  `json:"instance"`
	Host       string  `json:"host,omitempty"`
	App        string  `json:"app,omitempty"`
	Version    string  `json:"version,omitempty"`
	AgeSeconds float64 `json:"age_seconds"`
	UpSeconds  float64 `json:"up_seconds"`
}

// SessionStates counts sessions by where they are in their life.
type SessionStates struct {
	Creating     int `json:"creating"`
	WaitingReady int `json:"waiting_ready"`
	Ready        int `json:"ready"`
	Claimed      int `json:"claimed"`
	Deleting     int `json:"deleting"`
}

// EdgegapSummary is [EdgegapView] with its age.
type EdgegapSummary struct {
	Sessions    int     `json:"sessions"`
	Ready       int     `json:"ready"`
	Deployments int     `json:"deployments"`
	AgeSeconds  float64 `json:"age_seconds"`
}

// Grants are the granted and failed requests over the history window.
type Grants struct {
	Total         uint64      `json:"total"`
	Failed        uint64      `json:"failed"`
	BinSeconds    float64     `json:"bin_seconds"`
	WindowSeconds float64     `json:"window_seconds"`
	PerSecond     []float64   `json:"per_second"`
	FailedPerSec  []float64   `json:"failed_per_second"`
	TTR           Quantiles   `json:"time_to_ready"`
	TTRSeries     []Quantiles `json:"time_to_ready_series"`
}

// Quantiles of time to ready in seconds over some grants (zero when Count is 0).
type Quantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
}

// CallCount is the Edgegap calls of one endpoint and outcome.
type CallCount struct {
	Endpoint string `json:"endpoint"`
	Outcome  string `json:"outcome"`
	Count    uint64 `json:"count"`
}

// DeleteQueue is the delete stream's depth and the age of its oldest message.
type DeleteQueue struct {
	Depth            int     `json:"depth"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// OldestSession is the live session with the oldest bucket entry.
type OldestSession struct {
	SessionID  string  `json:"session_id"`
	Bucket     string  `json:"bucket"`
	AgeSeconds float64 `json:"age_seconds"`
}

// Aggregator keeps the latest snapshot of every instance. It is safe for concurrent use.
type Aggregator struct {
	mu     sync.Mutex
	latest map[string]Snapshot // role.instance -> snapshot
	sub    *nats.Subscription
}

// NewAggregator returns an aggregator fed by nc (nil: only by [Aggregator.Add]).
func NewAggregator(nc *nats.Conn) (*Aggregator, error) {
	a := &Aggregator{latest: make(map[string]Snapshot)}
	if nc == nil {
		return a, nil
	}
	sub, err := nc.Subscribe(SubjectPrefix+".>", func(m *nats.Msg) {
		var s Snapshot
		if json.Unmarshal(m.Data, &s) == nil && s.Role != "" && s.Instance != "" {
			a.Add(s)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("statusfeed: subscribe %s.>: %w", SubjectPrefix, err)
	}
	a.sub = sub
	return a, nil
}

// Add stores s as its instance's latest snapshot.
func (a *Aggregator) Add(s Snapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := s.Role + "." + s.Instance
	if old, ok := a.latest[k]; ok && old.At.After(s.At) {
		return
	}
	a.latest[k] = s
}

// Close stops listening.
func (a *Aggregator) Close() error {
	if a.sub == nil {
		return nil
	}
	return a.sub.Unsubscribe()
}

// live returns the snapshots of instances heard from within three intervals (at least 15 s)
// and forgets the others.
func (a *Aggregator) live(now time.Time) []Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Snapshot, 0, len(a.latest))
	for k, s := range a.latest {
		ttl := max(3*time.Duration(s.IntervalMS)*time.Millisecond, 15*time.Second)
		if now.Sub(s.At) > ttl {
			delete(a.latest, k)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role == RoleMatchmaker
		}
		return out[i].Instance < out[j].Instance
	})
	return out
}

// View sums the live snapshots as of now.
func (a *Aggregator) View(now time.Time) View {
	snaps := a.live(now)
	v := View{
		At:           now.UTC(),
		Instances:    []InstanceView{},
		EdgegapCalls: []CallCount{},
		Errors:       []ErrorEvent{},
	}
	calls := map[[2]string]uint64{}
	shared := map[string]*Shared{}       // newest per bucket prefix
	egViews := map[string]*EdgegapView{} // newest per bucket prefix
	for _, s := range snaps {
		v.Instances = append(v.Instances, InstanceView{Role: s.Role, Instance: s.Instance, Host: s.Host, App: s.App, Version: s.Version,
			AgeSeconds: secs(now.Sub(s.At)), UpSeconds: secs(now.Sub(s.Started))})
		switch s.Role {
		case RoleHTTPD:
			v.WaitingPlayers += s.OpenStreams
		case RoleMatchmaker:
			v.Queued += s.Queued
			v.Sessions.Creating += s.Creating
			v.Sessions.WaitingReady += s.WaitingReady
			v.Grants.Total += s.Granted
			v.Grants.Failed += s.Failed
			for ep, outs := range s.EdgegapCalls {
				for o, n := range outs {
					calls[[2]string{ep, o}] += n
				}
			}
			for _, e := range s.Errors {
				e.Instance = s.Instance
				v.Errors = append(v.Errors, e)
			}
			if s.Shared != nil && (shared[s.Prefix] == nil || s.Shared.At.After(shared[s.Prefix].At)) {
				shared[s.Prefix] = s.Shared
			}
			if s.Edgegap != nil && (egViews[s.Prefix] == nil || s.Edgegap.At.After(egViews[s.Prefix].At)) {
				egViews[s.Prefix] = s.Edgegap
			}
		}
	}
	for k, n := range calls {
		v.EdgegapCalls = append(v.EdgegapCalls, CallCount{Endpoint: k[0], Outcome: k[1], Count: n})
	}
	sort.Slice(v.EdgegapCalls, func(i, j int) bool {
		a, b := v.EdgegapCalls[i], v.EdgegapCalls[j]
		if a.Endpoint != b.Endpoint {
			return a.Endpoint < b.Endpoint
		}
		return a.Outcome < b.Outcome
	})
	sort.SliceStable(v.Errors, func(i, j int) bool { return v.Errors[i].At.After(v.Errors[j].At) })
	if len(v.Errors) > maxErrors {
		v.Errors = v.Errors[:maxErrors]
	}

	unclaimed := 0
	for _, sh := range sortedByKey(shared) {
		unclaimed += sh.Unclaimed
		v.Sessions.Claimed += sh.Claimed
		v.Sessions.Deleting += sh.DeleteQueue
		v.DeleteQueue.Depth += sh.DeleteQueue
		if !sh.DeleteOldest.IsZero() {
			v.DeleteQueue.OldestAgeSeconds = math.Max(v.DeleteQueue.OldestAgeSeconds, secs(now.Sub(sh.DeleteOldest)))
		}
		if sh.OldestSessionID != "" {
			age := secs(now.Sub(sh.OldestSince))
			if v.OldestSession == nil || age > v.OldestSession.AgeSeconds {
				v.OldestSession = &OldestSession{SessionID: sh.OldestSessionID, Bucket: sh.OldestBucket, AgeSeconds: age}
			}
		}
	}
	// unclaimed_sessions holds every session from its creation until its claim: those nobody
	// waits for any more are ready (their player has the token and is connecting).
	v.Sessions.Ready = max(0, unclaimed-v.Sessions.WaitingReady)
	for _, e := range sortedByKey(egViews) {
		if v.Edgegap == nil {
			v.Edgegap = &EdgegapSummary{AgeSeconds: secs(now.Sub(e.At))}
		}
		v.Edgegap.Sessions += e.Sessions
		v.Edgegap.Ready += e.Ready
		v.Edgegap.Deployments += e.Deployments
		v.Edgegap.AgeSeconds = math.Max(v.Edgegap.AgeSeconds, secs(now.Sub(e.At)))
	}
	v.Grants.fill(snaps, now)
	return v
}

// fill computes the per-bin rates and time-to-ready quantiles from the matchmakers' histories.
func (g *Grants) fill(snaps []Snapshot, now time.Time) {
	g.BinSeconds, g.WindowSeconds = BinWidth.Seconds(), HistoryWindow.Seconds()
	granted := make([]uint64, bins)
	failed := make([]uint64, bins)
	ttr := make([][]uint64, bins)
	all := make([]uint64, len(TTRBounds)+1)
	for i := range ttr {
		ttr[i] = make([]uint64, len(TTRBounds)+1)
	}
	start := now.Add(-HistoryWindow)
	for _, s := range snaps {
		for i := 1; i < len(s.History); i++ {
			prev, cur := s.History[i-1], s.History[i]
			if !cur.At.After(start) || cur.At.After(now) || cur.Granted < prev.Granted || cur.Failed < prev.Failed {
				continue
			}
			b := min(int(cur.At.Sub(start)/BinWidth), bins-1)
			granted[b] += cur.Granted - prev.Granted
			failed[b] += cur.Failed - prev.Failed
			for k := range cur.TTR {
				if k < len(prev.TTR) && k < len(all) && cur.TTR[k] >= prev.TTR[k] {
					d := cur.TTR[k] - prev.TTR[k]
					ttr[b][k] += d
					all[k] += d
				}
			}
		}
	}
	g.PerSecond = make([]float64, bins)
	g.FailedPerSec = make([]float64, bins)
	g.TTRSeries = make([]Quantiles, bins)
	for b := range bins {
		g.PerSecond[b] = round(float64(granted[b]) / BinWidth.Seconds())
		g.FailedPerSec[b] = round(float64(failed[b]) / BinWidth.Seconds())
		g.TTRSeries[b] = quantiles(ttr[b])
	}
	g.TTR = quantiles(all)
}

// quantiles estimates quantiles from bucket counts by linear interpolation inside a bucket
// (like Prometheus' histogram_quantile); the overflow bucket reports the last bound.
func quantiles(counts []uint64) Quantiles {
	var n uint64
	for _, c := range counts {
		n += c
	}
	q := Quantiles{Count: n}
	if n == 0 {
		return q
	}
	at := func(p float64) float64 {
		rank := p * float64(n)
		var cum float64
		for i, c := range counts {
			if c == 0 {
				continue
			}
			if cum+float64(c) >= rank {
				if i >= len(TTRBounds) {
					return TTRBounds[len(TTRBounds)-1]
				}
				lo := 0.0
				if i > 0 {
					lo = TTRBounds[i-1]
				}
				return round(lo + (TTRBounds[i]-lo)*(rank-cum)/float64(c))
			}
			cum += float64(c)
		}
		return TTRBounds[len(TTRBounds)-1]
	}
	q.P50, q.P90, q.P99 = at(0.5), at(0.9), at(0.99)
	return q
}

func secs(d time.Duration) float64 { return round(max(d, 0).Seconds()) }

// round keeps three decimals, so the JSON stays short and stable.
func round(f float64) float64 { return math.Round(f*1000) / 1000 }

func sortedByKey[T any](m map[string]*T) []*T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*T, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}
