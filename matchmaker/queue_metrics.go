package matchmaker

import "github.com/prometheus/client_golang/prometheus"

// queueMetrics are the match queues' Prometheus series (registered with the matchmaker's, with
// or without queues, so that dashboards see zeros rather than nothing).
type queueMetrics struct {
	leaseHeld *prometheus.GaugeVec     // queue
	waiting   *prometheus.GaugeVec     // queue: players of the waiting tickets, as the holder sees them
	matches   *prometheus.CounterVec   // queue, result: formed, failed, conflict
	dropped   *prometheus.CounterVec   // queue, reason: expired, invalid, withdrawn
	formPass  *prometheus.HistogramVec // queue: one match.Form pass
}

func newQueueMetrics(reg prometheus.Registerer) *queueMetrics {
	q := &queueMetrics{
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_queue_lease_held",
			Help: "1 while this matchmaker holds the queue's lease and forms its matches, else 0.",
		}, []string{"queue"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bevygap_matchmaker_queue_players_waiting",
			Help: "Players of the tickets waiting in the queue, as this matchmaker sees them while it holds the queue's lease (0 otherwise).",
		}, []string{"queue"}),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_queue_matches_total",
			Help: "Matches formed by this matchmaker, by result: formed (players answered), failed (the group got no server), conflict (a ticket changed before it was claimed; the rest went back to the queue).",
		}, []string{"queue", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_matchmaker_queue_tickets_dropped_total",
			Help: "Tickets removed without a match, by reason: expired (wait limit), invalid (no longer fits the queue), withdrawn (the player went away).",
		}, []string{"queue", "reason"}),
		formPass: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bevygap_matchmaker_queue_form_pass_seconds",
			Help:    "Duration of one pass of the matching over a queue's waiting tickets.",
			Buckets: []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"queue"}),
	}
	reg.MustRegister(q.leaseHeld, q.waiting, q.matches, q.dropped, q.formPass)
	return q
}
