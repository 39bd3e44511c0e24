package edgegapsim

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	simSessionsDesc = prometheus.NewDesc("bevygap_edgegapsim_sessions",
		"Live sessions of the simulator, by app, version and whether they are ready.", []string{"app", "version", "ready"}, nil)
	simDeploymentsDesc = prometheus.NewDesc("bevygap_edgegapsim_deployments",
		"Live deployments of the simulator, by app, version and Edgegap status (Status.DEPLOYING, Status.READY, Status.ERROR).",
		[]string{"app", "version", "status"}, nil)
	simOldestSessionDesc = prometheus.NewDesc("bevygap_edgegapsim_oldest_session_age_seconds",
		"Age of the simulator's oldest live session in simulated time; 0 when there is none.", nil, nil)
	simCallsDesc = prometheus.NewDesc("bevygap_edgegapsim_api_calls_total",
		"Edgegap API calls the simulator answered, by endpoint and HTTP status code (including 401s and injected faults; reset by the admin API).",
		[]string{"endpoint", "code"}, nil)
	simWebhooksDesc = prometheus.NewDesc("bevygap_edgegapsim_webhooks_total",
		"Session webhooks of the simulator, by result (sent, failed, lost by a fault, dropped).", []string{"result"}, nil)
)

// Collector returns a Prometheus collector of the simulator's state, read at scrape time:
// bevygap_edgegapsim_sessions, _deployments, _oldest_session_age_seconds, _api_calls_total and
// _webhooks_total (see docs/metrics.md). Register it on the registry that serves /metrics.
func (s *Simulator) Collector() prometheus.Collector { return simCollector{s} }

type simCollector struct{ s *Simulator }

func (c simCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{simSessionsDesc, simDeploymentsDesc, simOldestSessionDesc, simCallsDesc, simWebhooksDesc} {
		ch <- d
	}
}

func (c simCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.State()
	type key struct{ app, version, x string }
	sessions := map[key]int{}
	var oldest float64
	for _, sess := range st.Sessions {
		sessions[key{sess.App, sess.Version, strconv.FormatBool(sess.Ready)}]++
		oldest = max(oldest, st.Now.Sub(sess.Created).Seconds())
	}
	for k, n := range sessions {
		ch <- prometheus.MustNewConstMetric(simSessionsDesc, prometheus.GaugeValue, float64(n), k.app, k.version, k.x)
	}
	deployments := map[key]int{}
	for _, d := range st.Deployments {
		deployments[key{d.App, d.Version, d.Status}]++
	}
	for k, n := range deployments {
		ch <- prometheus.MustNewConstMetric(simDeploymentsDesc, prometheus.GaugeValue, float64(n), k.app, k.version, k.x)
	}
	ch <- prometheus.MustNewConstMetric(simOldestSessionDesc, prometheus.GaugeValue, oldest)
	for e, byCode := range c.s.CallCounts() {
		for code, n := range byCode {
			ch <- prometheus.MustNewConstMetric(simCallsDesc, prometheus.CounterValue, float64(n), string(e), strconv.Itoa(code))
		}
	}
	w := st.Webhooks
	for _, r := range []struct {
		result string
		n      uint64
	}{{"sent", w.Sent}, {"failed", w.Failed}, {"lost", w.Lost}, {"dropped", w.Dropped}} {
		ch <- prometheus.MustNewConstMetric(simWebhooksDesc, prometheus.CounterValue, float64(r.n), r.result)
	}
}
