package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/serve"
)

// metrics are the matchmaker's Prometheus collectors, registered on one per-instance registry.
// The Edgegap call counter is not among them: the Edgegap client feeds it (EdgegapObserver).
type metrics struct {
	requests        *prometheus.CounterVec   // kind, code
	requestDuration *prometheus.HistogramVec // kind, result
	inFlight        prometheus.Gauge
	queued          prometheus.Gauge
	readyVia        *prometheus.CounterVec // via: webhook, poll
	webhooks        *prometheus.CounterVec // matched: owned, cached
	readyTimeouts   prometheus.Counter
	deletes         *prometheus.CounterVec // result: deleted, already_gone, retry
	deletesStuck    prometheus.Counter
	deleteEnqueued  *prometheus.CounterVec // reason
	reaped          prometheus.Counter
	reconciled      prometheus.Counter
	webhookHealthy  prometheus.Gauge
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
			Help: "Sessions found ready, by what revealed it (webhook or poll).",
		}, []string{"via"}),
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
	}
	reg.MustRegister(m.requests, m.requestDuration, m.inFlight, m.queued, m.readyVia, m.webhooks, m.readyTimeouts, m.deletes, m.deletesStuck, m.deleteEnqueued,
		m.reaped, m.reconciled, m.webhookHealthy)
	return m
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
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bevygap_matchmaker_edgegap_calls_total",
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
	return func(ev edgegap.CallEvent) {
		calls.WithLabelValues(string(ev.Endpoint), string(ev.Outcome)).Inc()
	}
}

// ServeMetrics serves g at /metrics on ln until ctx ends, then shuts down gracefully (in-flight
// scrapes get 5 s) and closes ln. It is a helper for the command; ln should normally listen on a
// loopback address.
func ServeMetrics(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	var opts promhttp.HandlerOpts
	if reg, ok := g.(prometheus.Registerer); ok {
		opts.Registry = reg // also count the scrapes themselves (promhttp_metric_handler_*)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, opts))
	if err := serve.HTTP(ctx, serve.NewServer(mux, nil), ln, 5*time.Second, nil); err != nil {
		return fmt.Errorf("matchmaker: metrics server: %w", err)
	}
	return nil
}
