// Package svcmetrics holds what the service processes (httpd, webhook sink, the bevygap
// commands) share about Prometheus metrics.
package svcmetrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry is the Prometheus registry of one service process: its own metrics plus the Go
// runtime and process collectors (never the global default registry).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
