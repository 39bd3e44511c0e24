package matchmaker

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// metrics are the matchmaker's Prometheus collectors, registered on one per-instance registry.
// The Edgegap call counter is not among them: the Edgegap client feeds it (EdgegapObserver).
type metrics struct {
	requests        *prometheus.CounterVec   // kind, code
	requestDuration *prometheus.HistogramVec // kind, result
	inFlight        prometheus.Gauge
	queued          prometheus.Gauge
	readyVia        *prometheus.CounterVec // via: immediate, webhook, poll, reconnect
	looks           *prometheus.CounterVec // found: ready, not_ready
	webhooks        *prometheus.CounterVec // matched: owned, other
	readyTimeouts   prometheus.Counter
	deletes         *prometheus.CounterVec // result: deleted, already_gone, retry, superseded
	deletesStuck    prometheus.Counter
	deleteEnqueued  *prometheus.CounterVec // reason
	reaped          prometheus.Counter
	reconciled      prometheus.Counter
	webhookHealthy  prometheus.Gauge
	edgegapSessions prometheus.Gauge       // ours on Edgegap at the last reconciliation
	unknownSessions prometheus.Gauge       // ours on Edgegap, known to no bucket, at the last reconciliation
	abandoned       *prometheus.CounterVec // phase: queued, creating, waiting, granted
	abandonedDelete prometheus.Histogram   // cancel → DELETE done, for sessions of abandoned requests
	queue           *queueMetrics          // match queues (queue_metrics.go)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_requests_total",
			Help: "Session requests answered, by kind (gensession, stream) and result code (200 = granted).",
		}, []string{"kind", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bevygap_matchmaker_request_duration_seconds",
			Help:    "Time from receiving a session request to its final answer.",
			Buckets: []float64{0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90},
		}, []string{"kind", "result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_requests_in_flight",
			Help: "Session requests being handled (queued or waiting for readiness).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_requests_queued",
			Help: "Session requests waiting for a session-creation slot.",
		}),
		readyVia: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_sessions_ready_total",
			Help: "Sessions found ready, by what revealed it (immediate: a GET right after the create; webhook; poll; or reconnect: a check after the NATS connection came back).",
		}, []string{"via"}),
		looks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_session_looks_total",
			Help: "GETs of a session right after its create (with webhooks, when the Edgegap rate limit had a call to spare), by what they found.",
		}, []string{"found"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_webhooks_total",
			Help: "Session webhooks received on NATS, by whether a waiter of this process owned the session.",
		}, []string{"matched"}),
		readyTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_readiness_timeouts_total",
			Help: "Sessions that did not become ready within the readiness limit (deleted).",
		}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_session_deletes_total",
			Help: "Edgegap session deletions attempted by the delete worker, by result.",
		}, []string{"result"}),
		deletesStuck: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_session_deletes_stuck_total",
			Help: "Deletions that failed DeleteStuckAfter times (still queued and retried).",
		}),
		deleteEnqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_session_deletes_enqueued_total",
			Help: "Session deletions enqueued, by reason.",
		}, []string{"reason"}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_unclaimed_reaped_total",
			Help: "Unclaimed sessions reaped after the readiness limit plus grace.",
		}),
		reconciled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_reconciled_deletes_total",
			Help: "Sessions found on Edgegap that no KV bucket knew, deleted by reconciliation.",
		}),
		webhookHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_webhook_healthy",
			Help: "1 while session webhooks arrive (slow fallback polling), 0 when polling fast.",
		}),
		edgegapSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_edgegap_sessions",
			Help: "Sessions of this deployment (carrying its webhook URL) that Edgegap listed at the last reconciliation.",
		}),
		unknownSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_unknown_sessions",
			Help: "Sessions of this deployment listed by Edgegap at the last reconciliation that no KV bucket knew (deleted once older than the readiness limit plus grace).",
		}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_abandoned_requests_total",
			Help: "Streaming session requests whose player went away before the answer (a cancel from the front door), by the phase they were in: queued (no session created), creating (the session was deleted as soon as the create returned), waiting (deleted at once), granted (the SessionReady could not be relayed: deleted unless claimed).",
		}, []string{"phase"}),
		abandonedDelete: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bevygap_matchmaker_abandoned_session_delete_seconds",
			Help:    "For a session created for a player who went away: time from the cancel to its deletion on Edgegap (done by the request itself; a failed DELETE is queued and not observed).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20},
		}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.inFlight, m.queued, m.readyVia, m.looks, m.webhooks, m.readyTimeouts, m.deletes, m.deletesStuck, m.deleteEnqueued,
		m.reaped, m.reconciled, m.webhookHealthy, m.edgegapSessions, m.unknownSessions, m.abandoned, m.abandonedDelete)
	m.queue = newQueueMetrics(reg)
	return m
}

// registerStateMetrics registers the series read at scrape time from the matchmaker's state:
// whether it serves its game, the unclaimed sessions its reaper watches, the delete queue and
// its NATS connection.
func (m *Matchmaker) registerStateMetrics(reg prometheus.Registerer) {
	game := prometheus.Labels{"app": m.cfg.AppName, "version": m.cfg.AppVersion}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "bevygap_matchmaker_serving",
			Help:        "1 while this matchmaker answers session requests for the game version app/version (started, not shutting down), else 0.",
			ConstLabels: game,
		}, func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.svc != nil && !m.stopped {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_unclaimed_sessions",
			Help: "Sessions granted but not claimed by a player yet (entries of unclaimed_sessions, as this matchmaker's watch sees them).",
		}, func() float64 { n, _ := m.unclaimedStats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_unclaimed_reap_after_seconds",
			Help: "The readiness limit plus the claim grace: an unclaimed session older than this is reaped (configuration, for alerts).",
		}, func() float64 { return (m.cfg.ReadinessLimit + m.cfg.ClaimGrace).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_oldest_unclaimed_session_age_seconds",
			Help: "Age of the oldest unclaimed session (time since its unclaimed_sessions entry was written); 0 when there is none.",
		}, func() float64 {
			_, oldest := m.unclaimedStats()
			if oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		}),
		&deleteQueueCollector{m: m},
	)
	if m.nc != nil {
		if err := svcmetrics.RegisterNATS(reg, "matchmaker", m.nc); err != nil {
			panic(err) // like MustRegister: a second matchmaker on one registry is a programming error
		}
	}
}

// unclaimedStats returns how many entries the unclaimed reaper knows and the write time of the
// oldest (zero when none, or before Start).
func (m *Matchmaker) unclaimedStats() (int, time.Time) {
	m.mu.Lock()
	r := m.unclaim
	m.mu.Unlock()
	if r == nil {
		return 0, time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest time.Time
	for _, it := range r.items {
		if oldest.IsZero() || it.created.Before(oldest) {
			oldest = it.created
		}
	}
	return len(r.items), oldest
}

var (
	deleteQueueMessagesDesc = prometheus.NewDesc("bevygap_matchmaker_delete_queue_messages",
		"Session deletions waiting in the delete queue (JetStream work-queue stream), as the stream reports them.", nil, nil)
	deleteQueueOldestDesc = prometheus.NewDesc("bevygap_matchmaker_delete_queue_oldest_age_seconds",
		"Age of the oldest session deletion waiting in the delete queue; 0 when the queue is empty.", nil, nil)
)

// deleteQueueScrapeTimeout bounds the stream-info request of one scrape.
const deleteQueueScrapeTimeout = 2 * time.Second

// deleteQueueCollector reads the delete queue's depth and oldest message from the stream info
// at scrape time. Before Start, or when NATS does not answer, it reports nothing (the
// bevygap_nats_connected series tells why).
type deleteQueueCollector struct{ m *Matchmaker }

func (c *deleteQueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deleteQueueMessagesDesc
	ch <- deleteQueueOldestDesc
}

func (c *deleteQueueCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	b := c.m.b
	c.m.mu.Unlock()
	if b == nil || b.DeleteStream == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deleteQueueScrapeTimeout)
	defer cancel()
	info, err := b.DeleteStream.Info(ctx)
	if err != nil {
		c.m.log.Debug("metrics: delete queue info failed", logkey.Err, err)
		return
	}
	var age float64
	if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
		age = max(time.Since(info.State.FirstTime).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(deleteQueueMessagesDesc, prometheus.GaugeValue, float64(info.State.Msgs))
	ch <- prometheus.MustNewConstMetric(deleteQueueOldestDesc, prometheus.GaugeValue, age)
}

// EdgegapObserver returns the hook for edgegap.WithObserver that counts every HTTP attempt of an
// Edgegap client in bevygap_matchmaker_edgegap_calls_total{endpoint,outcome}, registered on reg.
// endpoint is an edgegap.Endpoint (session_create, session_get, …) and outcome an
// edgegap.Outcome (ok, not_found, rate_limited, server_error, network_error, canceled, …); a
// retried call counts once per attempt, as Edgegap sees and rate-limits it. Build the
// matchmaker's client with it and give the same registry to [Deps]:
//
//	reg := prometheus.NewRegistry()
//	api := edgegap.NewClient(url, key, edgegap.WithObserver(matchmaker.EdgegapObserver(reg)))
//	mm, err := matchmaker.New(cfg, matchmaker.Deps{NATS: nc, Edgegap: api, Registry: reg})
//
// Observers made for the same registry count into the same series.
func EdgegapObserver(reg prometheus.Registerer) func(edgegap.CallEvent) {
	calls := edgegapCallsVec(reg)
	return func(ev edgegap.CallEvent) {
		calls.WithLabelValues(string(ev.Endpoint), string(ev.Outcome)).Inc()
	}
}

// edgegapCallsVec returns bevygap_matchmaker_edgegap_calls_total as registered on reg,
// registering it when it is not yet: EdgegapObserver counts into it, the status snapshot reads
// it.
func edgegapCallsVec(reg prometheus.Registerer) *prometheus.CounterVec {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: edgegapCallsMetric,
		Help: "HTTP attempts of the matchmaker's Edgegap client, by endpoint and outcome (a retried call counts each attempt).",
	}, []string{"endpoint", "outcome"})
	if err := reg.Register(calls); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				calls = existing
			}
		}
	}
	return calls
}
