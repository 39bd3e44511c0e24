package httpd

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// Outcomes of a request, the "outcome" label of bevygap_httpd_requests_total.
const (
	outcomeReady        = "ready"         // stream ended with SessionReady, or wannaplay 200
	outcomeMMError      = "mm_error"      // the matchmaker answered an Error
	outcomeEnded        = "ended"         // stream ended without SessionReady or Error
	outcomeRejected     = "rejected"      // refused before NATS: bad input, limits, origin
	outcomeNoMatchmaker = "no_matchmaker" // NATS said no responders
	outcomeTimeout      = "timeout"       // matchmaker did not finish in time
	outcomeClientGone   = "client_gone"   // the client went away first
	outcomeShutdown     = "shutdown"      // server shutting down
	outcomeFailed       = "failed"        // NATS or write failure
	outcomeOK           = "ok"            // non-session routes
)

// metrics are the front door's Prometheus collectors.
type metrics struct {
	requests    *prometheus.CounterVec
	openWS      prometheus.Gauge
	openStreams prometheus.Gauge
	timeToReady prometheus.Histogram
	rejects     *prometheus.CounterVec
	resent      *prometheus.CounterVec
}

// newMetrics registers the front door's series, and those of its NATS connection nc
// (bevygap_nats_connected{service="httpd"}), on reg.
func newMetrics(reg prometheus.Registerer, nc *nats.Conn) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_httpd_requests_total",
			Help: "Requests by route and outcome.",
		}, []string{"route", "outcome"}),
		openWS: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_httpd_open_websockets",
			Help: "Open matchmaker WebSockets.",
		}),
		openStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bevygap_httpd_open_streams",
			Help: "Open WebSockets plus open chunked session streams (what the stream caps count).",
		}),
		timeToReady: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bevygap_httpd_time_to_ready_seconds",
			Help:    "Time from a session request to the SessionReady message relayed to the client.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120},
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_httpd_rejects_total",
			Help: "Requests refused by the front door, by reason.",
		}, []string{"reason"}),
		resent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_httpd_requests_resent_total",
			Help: "Session requests sent to the matchmakers once more because no message came back in time (lost with a NATS node, or their matchmaker died at once), by route.",
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.openWS, m.openStreams, m.timeToReady, m.rejects, m.resent} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpd: register metrics: %w", err)
		}
	}
	if err := svcmetrics.RegisterNATS(reg, "httpd", nc); err != nil {
		return nil, fmt.Errorf("httpd: %w", err)
	}
	return m, nil
}
