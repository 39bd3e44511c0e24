package matchmaker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/statusfeed"
)

// edgegapCallsMetric is the counter EdgegapObserver counts into; the status snapshot reads it.
const edgegapCallsMetric = "bevygap_matchmaker_edgegap_calls_total"

// statusScanTimeout bounds reading the shared buckets and the delete stream for one snapshot.
const statusScanTimeout = 3 * time.Second

// runStatus publishes this matchmaker's status snapshot (docs/status.md) every
// Config.StatusInterval until ctx ends.
func (m *Matchmaker) runStatus(ctx context.Context) {
	statusfeed.Publish(ctx, m.nc, m.cfg.StatusInterval, m.log, m.statusSnapshot)
}

// statusSnapshot builds the snapshot published on bevygap.status.matchmaker.<instance>.
func (m *Matchmaker) statusSnapshot(ctx context.Context, now time.Time) statusfeed.Snapshot {
	s := statusfeed.Snapshot{
		Role: statusfeed.RoleMatchmaker, Instance: m.instance, Host: statusfeed.Hostname(),
		App: m.cfg.AppName, Version: m.cfg.AppVersion, Prefix: m.cfg.Buckets.Prefix,
		At: now.UTC(), Started: m.startedAt.UTC(),
		Queued: m.admit.queued(), WaitingReady: m.hooks.waiting(),
	}
	m.status.Fill(&s, now)
	s.EdgegapCalls = m.edgegapCalls()
	m.mu.Lock()
	b := m.b
	m.mu.Unlock()
	if b == nil {
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, statusScanTimeout)
	defer cancel()
	sh := &statusfeed.Shared{At: now.UTC()}
	var err error
	var oldU, oldC time.Time
	var keyU, keyC string
	if sh.Unclaimed, keyU, oldU, err = scanBucket(ctx, b.UnclaimedSessions); err != nil {
		m.log.Debug("status: unclaimed_sessions not read", logkey.Err, err)
		return s
	}
	if sh.Claimed, keyC, oldC, err = scanBucket(ctx, b.ActiveConnections); err != nil {
		m.log.Debug("status: active_connections not read", logkey.Err, err)
		return s
	}
	switch {
	case keyU != "" && (keyC == "" || oldU.Before(oldC)):
		sh.OldestSessionID, sh.OldestSince, sh.OldestBucket = keyU, oldU.UTC(), b.Names.UnclaimedSessions
	case keyC != "":
		sh.OldestSessionID, sh.OldestSince, sh.OldestBucket = keyC, oldC.UTC(), b.Names.ActiveConnections
	}
	info, err := b.DeleteStream.Info(ctx)
	if err != nil {
		m.log.Debug("status: delete stream info not read", logkey.Err, err)
		return s
	}
	sh.DeleteQueue = int(info.State.Msgs)
	if info.State.Msgs > 0 {
		sh.DeleteOldest = info.State.FirstTime.UTC()
	}
	s.Shared = sh
	return s
}

// scanBucket counts the keys of kv and finds the one with the oldest entry, reading metadata
// only.
func scanBucket(ctx context.Context, kv jetstream.KeyValue) (n int, oldestKey string, oldest time.Time, err error) {
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return 0, "", time.Time{}, err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return 0, "", time.Time{}, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return 0, "", time.Time{}, errors.New("watch ended")
			}
			if e == nil {
				return n, oldestKey, oldest, nil
			}
			n++
			if oldestKey == "" || e.Created().Before(oldest) {
				oldestKey, oldest = e.Key(), e.Created()
			}
		}
	}
}

// edgegapCalls reads bevygap_matchmaker_edgegap_calls_total: endpoint -> outcome -> attempts.
// It collects that counter alone: gathering the whole registry every status interval would
// also run every other collector of the process (in `bevygap dev`, the simulator's, which
// lists every session).
func (m *Matchmaker) edgegapCalls() map[string]map[string]uint64 {
	ch := make(chan prometheus.Metric, 32)
	go func() {
		m.edgegapCallsVec.Collect(ch)
		close(ch)
	}()
	out := map[string]map[string]uint64{}
	for metric := range ch {
		var mt dto.Metric
		if metric.Write(&mt) != nil {
			continue
		}
		var ep, oc string
		for _, l := range mt.GetLabel() {
			switch l.GetName() {
			case "endpoint":
				ep = l.GetValue()
			case "outcome":
				oc = l.GetValue()
			}
		}
		if out[ep] == nil {
			out[ep] = map[string]uint64{}
		}
		out[ep][oc] += uint64(mt.GetCounter().GetValue())
	}
	return out
}

// recordEdgegapView remembers what the reconciler's session list said about our sessions.
func (m *Matchmaker) recordEdgegapView(ours []edgegap.SessionSummary) {
	deps := map[string]bool{}
	ready := 0
	for _, s := range ours {
		if s.Ready {
			ready++
		}
		if s.DeploymentRequestID != nil && *s.DeploymentRequestID != "" {
			deps[*s.DeploymentRequestID] = true
		}
	}
	m.status.SetEdgegap(statusfeed.EdgegapView{At: time.Now().UTC(), Sessions: len(ours), Ready: ready, Deployments: len(deps)})
}
