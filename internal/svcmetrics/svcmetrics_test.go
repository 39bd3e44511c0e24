package svcmetrics_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/metricstest"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// TestServeNATSSeries: two services' NATS series share one registry (as under bevygap dev),
// Serve serves them at /metrics until its context ends, and a closed connection reads 0.
func TestServeNATSSeries(t *testing.T) {
	t.Parallel()
	srv, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	a, b := bustest.Connect(t, srv, "a"), bustest.Connect(t, srv, "b")
	reg := svcmetrics.NewRegistry()
	if err := svcmetrics.RegisterNATS(reg, "httpd", a); err != nil {
		t.Fatal(err)
	}
	if err := svcmetrics.RegisterNATS(reg, "webhooksink", b); err != nil {
		t.Fatal(err)
	}
	if err := svcmetrics.RegisterNATS(reg, "httpd", b); err == nil {
		t.Error("a second registration of one service's series was accepted")
	}
	b.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svcmetrics.Serve(ctx, ln, reg) }()
	body := metricstest.Scrape(t, "http://"+ln.Addr().String()+"/metrics")
	for _, want := range []string{
		`bevygap_nats_connected{service="httpd"} 1`,
		`bevygap_nats_connected{service="webhooksink"} 0`,
		`bevygap_nats_reconnects_total{service="httpd"} 0`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	metricstest.Lint(t, "svcmetrics /metrics", body)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
