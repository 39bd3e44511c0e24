// Package statusfeed carries the numbers of the operator status page (docs/status.md) across
// processes: every matchmaker and every front door publishes a small JSON [Snapshot] of itself
// on NATS subject bevygap.status.<role>.<instance> at a fixed interval, and the front door that
// serves /status keeps the latest snapshot of each instance ([Aggregator]) and sums them into one
// [View]. History (grants and time to ready over the last minutes) travels inside each snapshot,
// so a front door started a second ago still draws whole charts.
package statusfeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Subjects and roles.
const (
	// SubjectPrefix is the root of every status subject: bevygap.status.<role>.<instance>.
	SubjectPrefix = "bevygap.status"
	// RoleMatchmaker and RoleHTTPD are the roles that publish snapshots.
	RoleMatchmaker = "matchmaker"
	RoleHTTPD      = "httpd"
	// DefaultInterval is how often an instance publishes its snapshot.
	DefaultInterval = 5 * time.Second
	// HistoryWindow is how far back the history in a snapshot (and the charts) reach.
	HistoryWindow = 5 * time.Minute
	// maxErrors is how many recent errors a snapshot and the view carry.
	maxErrors = 20
)

// TTRBounds are the upper bounds (seconds) of the time-to-ready buckets of [Sample.TTR]; the
// last bucket of a sample counts everything above the last bound.
var TTRBounds = []float64{0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90}

// Subject is the subject an instance publishes its snapshots on.
func Subject(role, instance string) string { return SubjectPrefix + "." + role + "." + instance }

// NewInstanceID returns a random id usable as a subject token.
func NewInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Snapshot is what one instance publishes about itself.
type Snapshot struct {
	Role     string    `json:"role"`
	Instance string    `json:"instance"`
	Host     string    `json:"host,omitempty"`
	App      string    `json:"app,omitempty"`
	Version  string    `json:"version,omitempty"`
	Prefix   string    `json:"bucket_prefix,omitempty"`
	At       time.Time `json:"at"`
	Started  time.Time `json:"started"`
	// IntervalMS is the publishing interval; the aggregator forgets an instance silent for
	// three intervals.
	IntervalMS int64 `json:"interval_ms"`

	// OpenStreams is a front door's open WebSockets plus chunked streams: waiting players.
	OpenStreams int `json:"open_streams,omitempty"`

	// Matchmaker numbers: requests waiting for an admission slot, Edgegap creates in flight,
	// sessions waiting for readiness, cumulative answers since start.
	Queued       int    `json:"queued,omitempty"`
	Creating     int    `json:"creating,omitempty"`
	WaitingReady int    `json:"waiting_ready,omitempty"`
	Granted      uint64 `json:"granted,omitempty"`
	Failed       uint64 `json:"failed,omitempty"`
	// EdgegapCalls counts HTTP attempts by endpoint and outcome (edgegap.Endpoint,
	// edgegap.Outcome), from the matchmaker's bevygap_matchmaker_edgegap_calls_total.
	EdgegapCalls map[string]map[string]uint64 `json:"edgegap_calls,omitempty"`
	History      []Sample                     `json:"history,omitempty"`
	Errors       []ErrorEvent                 `json:"errors,omitempty"`
	// Shared is the state of the shared buckets and the delete queue as this matchmaker read it.
	Shared *Shared `json:"shared,omitempty"`
	// Edgegap is the last session list the matchmaker's reconciler fetched.
	Edgegap *EdgegapView `json:"edgegap,omitempty"`
}

// Sample is one point of a matchmaker's history: cumulative counts at At.
type Sample struct {
	At      time.Time `json:"at"`
	Granted uint64    `json:"granted"`
	Failed  uint64    `json:"failed"`
	// TTR counts granted requests per time-to-ready bucket (len(TTRBounds)+1 entries).
	TTR []uint64 `json:"ttr"`
}

// ErrorEvent is one failed session request.
type ErrorEvent struct {
	At       time.Time `json:"at"`
	Code     int       `json:"code"`
	Message  string    `json:"message"`
	Instance string    `json:"instance,omitempty"`
}

// Shared is the state of the shared JetStream objects.
type Shared struct {
	At        time.Time `json:"at"`
	Unclaimed int       `json:"unclaimed"`
	Claimed   int       `json:"claimed"`
	// OldestSessionID and OldestSince name the live session (unclaimed or claimed) with the
	// oldest bucket entry, and the time of that entry.
	OldestSessionID string    `json:"oldest_session_id,omitempty"`
	OldestSince     time.Time `json:"oldest_since,omitzero"`
	OldestBucket    string    `json:"oldest_bucket,omitempty"`
	// DeleteQueue is the number of deletions in the delete stream (queued or being retried);
	// DeleteOldest the time of the oldest.
	DeleteQueue  int       `json:"delete_queue"`
	DeleteOldest time.Time `json:"delete_oldest,omitzero"`
}

// EdgegapView is what Edgegap's session list said about this deployment's sessions.
type EdgegapView struct {
	At          time.Time `json:"at"`
	Sessions    int       `json:"sessions"`
	Ready       int       `json:"ready"`
	Deployments int       `json:"deployments"`
}

// Hostname returns the host name for [Snapshot.Host] ("" if unknown).
func Hostname() string {
	h, _ := os.Hostname()
	return h
}

// Publish publishes build's snapshot on its subject at once and then every interval until ctx
// ends or nc is closed. Publish errors are logged at debug level (a missing permission shows in
// the server log).
func Publish(ctx context.Context, nc *nats.Conn, interval time.Duration, log *slog.Logger, build func(context.Context, time.Time) Snapshot) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s := build(ctx, time.Now())
		s.IntervalMS = interval.Milliseconds()
		if b, err := json.Marshal(s); err == nil {
			err := nc.Publish(Subject(s.Role, s.Instance), b)
			if errors.Is(err, nats.ErrConnectionClosed) {
				return
			}
			if err != nil && log != nil {
				log.Debug("status snapshot not published", logkey.Err, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Recorder keeps a matchmaker's status numbers between snapshots. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	creating int
	granted  uint64
	failed   uint64
	ttr      []uint64
	errors   []ErrorEvent
	history  []Sample
	edgegap  *EdgegapView
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{ttr: make([]uint64, len(TTRBounds)+1)} }

// Creating adds delta to the Edgegap creates in flight.
func (r *Recorder) Creating(delta int) {
	r.mu.Lock()
	r.creating += delta
	r.mu.Unlock()
}

// Granted counts a granted request that took d.
func (r *Recorder) Granted(d time.Duration) {
	i := sort.SearchFloat64s(TTRBounds, d.Seconds())
	r.mu.Lock()
	r.granted++
	r.ttr[i]++
	r.mu.Unlock()
}

// Failed counts a failed request and remembers it among the recent errors.
func (r *Recorder) Failed(at time.Time, code int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed++
	r.errors = append(r.errors, ErrorEvent{At: at.UTC(), Code: code, Message: msg})
	if len(r.errors) > maxErrors {
		r.errors = append(r.errors[:0:0], r.errors[len(r.errors)-maxErrors:]...)
	}
}

// SetEdgegap records the latest view of Edgegap's session list.
func (r *Recorder) SetEdgegap(v EdgegapView) {
	r.mu.Lock()
	r.edgegap = &v
	r.mu.Unlock()
}

// Fill takes a history sample at now and copies the counters, history and recent errors into s.
func (r *Recorder) Fill(s *Snapshot, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history = append(r.history, Sample{At: now.UTC(), Granted: r.granted, Failed: r.failed, TTR: append([]uint64(nil), r.ttr...)})
	cut := 0
	for cut < len(r.history)-1 && now.Sub(r.history[cut].At) > HistoryWindow+DefaultInterval {
		cut++
	}
	r.history = r.history[cut:]
	s.Creating = r.creating
	s.Granted, s.Failed = r.granted, r.failed
	s.History = append([]Sample(nil), r.history...)
	s.Errors = append([]ErrorEvent(nil), r.errors...)
	if r.edgegap != nil {
		v := *r.edgegap
		s.Edgegap = &v
	}
}
