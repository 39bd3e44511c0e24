package devstack

import (
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/internal/metricstest"
)

// testMetrics checks what `bevygap dev` serves at /metrics, after players have played: one
// exposition (the front door's, and the same at the webhook sink) holding every component's
// series, and `promtool check metrics` (promlint, the same code) finds no problem in it.
func testMetrics(t *testing.T, st *Stack) {
	front := metricstest.Scrape(t, st.Info().HTTPURL+"/metrics")
	sink := metricstest.Scrape(t, strings.TrimSuffix(st.Info().WebhookURL, "/hook/session")+"/metrics")
	metricstest.Lint(t, "dev front door /metrics", front)
	metricstest.Lint(t, "dev webhook sink /metrics", sink)
	for _, want := range []string{
		"bevygap_httpd_requests_total{",
		"bevygap_httpd_time_to_ready_seconds_bucket{",
		"bevygap_matchmaker_requests_total{",
		`bevygap_matchmaker_edgegap_calls_total{endpoint="session_create",outcome="ok"}`,
		`bevygap_matchmaker_serving{app="` + st.Info().AppName + `",version="` + st.Info().AppVersion + `"} 1`,
		"bevygap_matchmaker_delete_queue_messages ",
		"bevygap_matchmaker_oldest_unclaimed_session_age_seconds ",
		`bevygap_webhooksink_requests_total{outcome="published"}`,
		`bevygap_edgegapsim_api_calls_total{code="200",endpoint="session_create"}`,
		`bevygap_edgegapsim_webhooks_total{result="sent"}`,
		`bevygap_nats_connected{service="httpd"} 1`,
		`bevygap_nats_connected{service="matchmaker"} 1`,
		`bevygap_nats_connected{service="webhooksink"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(front, want) {
			t.Errorf("front door /metrics lacks %q", want)
		}
	}
}
