// Package svcmetrics holds what the service processes (matchmaker, httpd, webhook sink, Edgegap
// simulator, the bevygap commands) share about Prometheus metrics: the per-process registry, the
// NATS connection series every service exports, and the stand-alone /metrics listener.
//
// Naming (see docs/metrics.md): every series is bevygap_<service>_<what>[_<unit>], counters end
// in _total, durations are seconds, sizes bytes; the series common to several services carry a
// service label instead of a service prefix, so that one registry (bevygap dev) can hold them
// all.
package svcmetrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bevygap-go/bevygap/internal/serve"
)

// NewRegistry is the Prometheus registry of one service process: its own metrics plus the Go
// runtime and process collectors (never the global default registry).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// RegisterNATS registers, on reg, the series of service's NATS connection nc:
// bevygap_nats_connected{service} (1 while connected, else 0) and
// bevygap_nats_reconnects_total{service}. Several services may register on one registry, each
// under its own service name.
func RegisterNATS(reg prometheus.Registerer, service string, nc *nats.Conn) error {
	labels := prometheus.Labels{"service": service}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "bevygap_nats_connected",
		Help:        "1 while the service's NATS connection is connected, 0 while it is disconnected, reconnecting or closed.",
		ConstLabels: labels,
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	reconnects := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "bevygap_nats_reconnects_total",
		Help:        "Reconnections of the service's NATS connection.",
		ConstLabels: labels,
	}, func() float64 { return float64(nc.Stats().Reconnects) })
	for _, c := range []prometheus.Collector{connected, reconnects} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("svcmetrics: register NATS metrics of %s: %w", service, err)
		}
	}
	return nil
}

// Handler serves g in the Prometheus text format. When g is also a Registerer, the scrapes
// themselves are counted too (promhttp_metric_handler_*).
func Handler(g prometheus.Gatherer) http.Handler {
	var opts promhttp.HandlerOpts
	if reg, ok := g.(prometheus.Registerer); ok {
		opts.Registry = reg
	}
	return promhttp.HandlerFor(g, opts)
}

// Serve serves g at /metrics on ln until ctx ends, then shuts down gracefully (in-flight
// scrapes get 5 s) and closes ln. ln should normally listen on a loopback or private address.
func Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(g))
	if err := serve.HTTP(ctx, serve.NewServer(mux, nil), ln, 5*time.Second, nil); err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}
