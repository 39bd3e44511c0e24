package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bevygap-go/bevygap/edgegap"
)

// metrics are the matchmaker's Prometheus collectors, registered on one per-instance registry.
type metrics struct {
	requests        *prometheus.CounterVec   // kind, code
	requestDuration *prometheus.HistogramVec // kind, result
	inFlight        prometheus.Gauge
	queued          prometheus.Gauge
	edgegapCalls    *prometheus.CounterVec // endpoint, outcome
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

func newMetrics(reg *prometheus.Registry) *metrics {
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
		edgegapCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_edgegap_calls_total",
			Help: "Edgegap API calls made by the matchmaker, by endpoint and outcome.",
		}, []string{"endpoint", "outcome"}),
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
	reg.MustRegister(m.requests, m.requestDuration, m.inFlight, m.queued, m.edgegapCalls,
		m.readyVia, m.webhooks, m.readyTimeouts, m.deletes, m.deletesStuck, m.deleteEnqueued,
		m.reaped, m.reconciled, m.webhookHealthy)
	return m
}

// countingAPI counts every Edgegap call per endpoint and outcome.
type countingAPI struct {
	api EdgegapAPI
	m   *metrics
}

func (c countingAPI) observe(e edgegap.Endpoint, err error) {
	c.m.edgegapCalls.WithLabelValues(string(e), outcomeLabel(err)).Inc()
}

func outcomeLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	if code := edgegap.StatusCode(err); code != 0 {
		return strconv.Itoa(code)
	}
	return "network_error"
}

func (c countingAPI) GetApp(ctx context.Context, app string) (*edgegap.Application, error) {
	r, err := c.api.GetApp(ctx, app)
	c.observe(edgegap.EndpointAppGet, err)
	return r, err
}

func (c countingAPI) GetAppVersion(ctx context.Context, app, version string) (*edgegap.AppVersion, error) {
	r, err := c.api.GetAppVersion(ctx, app, version)
	c.observe(edgegap.EndpointAppVersionGet, err)
	return r, err
}

func (c countingAPI) CreateSession(ctx context.Context, req edgegap.SessionCreateRequest) (*edgegap.SessionCreated, error) {
	r, err := c.api.CreateSession(ctx, req)
	c.observe(edgegap.EndpointSessionCreate, err)
	return r, err
}

func (c countingAPI) GetSession(ctx context.Context, id string) (*edgegap.Session, error) {
	r, err := c.api.GetSession(ctx, id)
	c.observe(edgegap.EndpointSessionGet, err)
	return r, err
}

func (c countingAPI) DeleteSession(ctx context.Context, id string) (*edgegap.SessionDeleted, error) {
	r, err := c.api.DeleteSession(ctx, id)
	c.observe(edgegap.EndpointSessionDelete, err)
	return r, err
}

func (c countingAPI) ListAllSessions(ctx context.Context) ([]edgegap.SessionSummary, error) {
	r, err := c.api.ListAllSessions(ctx)
	c.observe(edgegap.EndpointSessionList, err)
	return r, err
}

// ServeMetrics serves reg at /metrics on ln until ctx ends, then closes ln. It is a helper for
// the command; ln should normally listen on a loopback address.
func ServeMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("matchmaker: metrics server: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}
