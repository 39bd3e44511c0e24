package edgegapsim_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/metricstest"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// TestCollector: the simulator's series, as `bevygap edgegap-sim --metrics-addr` serves them,
// count its sessions, deployments and calls, and pass `promtool check metrics`.
func TestCollector(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(time.Second) // boot takes 3 s: the deployment is still deploying
	reg := svcmetrics.NewRegistry()
	reg.MustRegister(f.sim.Collector())
	srv := httptest.NewServer(svcmetrics.Handler(reg))
	defer srv.Close()
	body := metricstest.Scrape(t, srv.URL)
	for _, want := range []string{
		`bevygap_edgegapsim_sessions{app="game",ready="false",version="v1"} 1`,
		`bevygap_edgegapsim_deployments{app="game",status="Status.DEPLOYING",version="v1"} 1`,
		`bevygap_edgegapsim_oldest_session_age_seconds 1`,
		`bevygap_edgegapsim_api_calls_total{code="200",endpoint="session_create"} 1`,
		`bevygap_edgegapsim_webhooks_total{result="sent"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	metricstest.Lint(t, "edgegap-sim /metrics", body)
}
