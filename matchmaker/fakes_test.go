package matchmaker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/edgegap"
)

// The in-memory fakes of this file let units of the matchmaker (readiness wait, reaper heap,
// delete worker, KV watch) run without NATS or HTTP, inside a testing/synctest bubble on fake
// time.

var errNotFaked = errors.New("fake: call not expected")

// fakeEdgegap is an in-memory EdgegapAPI. It records when GetSession was called; unset
// functions fail.
type fakeEdgegap struct {
	getSession    func(id string) (*edgegap.Session, error)
	deleteSession func(id string) error

	mu   sync.Mutex
	gets []time.Time
}

func (f *fakeEdgegap) GetApp(context.Context, string) (*edgegap.Application, error) {
	return nil, errNotFaked
}

func (f *fakeEdgegap) GetAppVersion(context.Context, string, string) (*edgegap.AppVersion, error) {
	return nil, errNotFaked
}

func (f *fakeEdgegap) CreateSession(context.Context, edgegap.SessionCreateRequest) (*edgegap.SessionCreated, error) {
	return nil, errNotFaked
}

func (f *fakeEdgegap) GetSession(_ context.Context, id string) (*edgegap.Session, error) {
	f.mu.Lock()
	f.gets = append(f.gets, time.Now())
	f.mu.Unlock()
	if f.getSession == nil {
		return nil, errNotFaked
	}
	return f.getSession(id)
}

func (f *fakeEdgegap) DeleteSession(_ context.Context, id string) (*edgegap.SessionDeleted, error) {
	if f.deleteSession == nil {
		return nil, errNotFaked
	}
	if err := f.deleteSession(id); err != nil {
		return nil, err
	}
	return &edgegap.SessionDeleted{SessionID: id}, nil
}

func (f *fakeEdgegap) ListAllSessions(context.Context) ([]edgegap.SessionSummary, error) {
	return nil, errNotFaked
}

// getTimes returns when GetSession was called, relative to since.
func (f *fakeEdgegap) getTimes(since time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []time.Duration{}
	for _, at := range f.gets {
		out = append(out, at.Sub(since))
	}
	return out
}

// newUnitMatchmaker returns a matchmaker for game/v1 that is never started (no NATS), with
// api as its Edgegap, logs in logs (when not nil) and metrics in the returned registry.
func newUnitMatchmaker(t testing.TB, configure func(*Config), api EdgegapAPI, logs *lockedBuffer) (*Matchmaker, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AppName, cfg.AppVersion, cfg.AllowZeroKey = "game", "v1", true
	if configure != nil {
		configure(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if logs != nil {
		log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	reg := prometheus.NewRegistry()
	m := newMatchmaker(cfg, Deps{Edgegap: api, Logger: log, Registry: reg})
	t.Cleanup(m.reqCancel)
	return m, reg
}

// metricSum sums the values of the counters or gauges of family name in g whose labels include
// every pair of labels.
func metricSum(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// fakeEntry is a KV entry; methods it does not override panic (they are not used).
type fakeEntry struct {
	jetstream.KeyValueEntry
	key     string
	rev     uint64
	created time.Time
	op      jetstream.KeyValueOp
}

func (e fakeEntry) Key() string                     { return e.key }
func (e fakeEntry) Revision() uint64                { return e.rev }
func (e fakeEntry) Created() time.Time              { return e.created }
func (e fakeEntry) Operation() jetstream.KeyValueOp { return e.op }
func (e fakeEntry) Value() []byte                   { return []byte(e.key) }

// putEntry and deleteEntry are a put and a delete marker of key written now.
func putEntry(key string, rev uint64) fakeEntry {
	return fakeEntry{key: key, rev: rev, created: time.Now(), op: jetstream.KeyValuePut}
}

func deleteEntry(key string, rev uint64) fakeEntry {
	return fakeEntry{key: key, rev: rev, created: time.Now(), op: jetstream.KeyValueDelete}
}

// fakeWatcher is a KV watch whose updates the test sends.
type fakeWatcher struct {
	jetstream.KeyWatcher
	updates chan jetstream.KeyValueEntry
}

func (w *fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.updates }
func (w *fakeWatcher) Stop() error                             { return nil }

// fakeKV is a KV bucket whose WatchAll returns, in turn, the results of watches. Its Status
// reports lastSeq as the stream's last sequence, or fails when lastSeq is nil.
type fakeKV struct {
	jetstream.KeyValue
	mu      sync.Mutex
	watches []func() (jetstream.KeyWatcher, error)
	calls   []time.Time
	lastSeq func() uint64
}

// fakeStatus is a KV status that carries stream info, like jetstream's.
type fakeStatus struct {
	jetstream.KeyValueStatus
	info *jetstream.StreamInfo
}

func (s fakeStatus) StreamInfo() *jetstream.StreamInfo { return s.info }

func (kv *fakeKV) Status(context.Context) (jetstream.KeyValueStatus, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if kv.lastSeq == nil {
		return nil, errNotFaked
	}
	return fakeStatus{info: &jetstream.StreamInfo{State: jetstream.StreamState{LastSeq: kv.lastSeq()}}}, nil
}

func (kv *fakeKV) WatchAll(ctx context.Context, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	kv.mu.Lock()
	kv.calls = append(kv.calls, time.Now())
	var next func() (jetstream.KeyWatcher, error)
	if len(kv.watches) > 0 {
		next, kv.watches = kv.watches[0], kv.watches[1:]
	}
	kv.mu.Unlock()
	if next == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return next()
}

// fakeMsg is a delete-queue message: a session id delivered for the n-th time. It records how
// it was settled.
type fakeMsg struct {
	jetstream.Msg
	data      string
	delivered uint64

	settled string        // "ack", "nak", "nak_delay", "term"
	delay   time.Duration // of NakWithDelay
}

func (m *fakeMsg) Data() []byte    { return []byte(m.data) }
func (m *fakeMsg) Subject() string { return "delete." + m.data }
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered}, nil
}
func (m *fakeMsg) DoubleAck(context.Context) error { m.settled = "ack"; return nil }
func (m *fakeMsg) Nak() error                      { m.settled = "nak"; return nil }
func (m *fakeMsg) Term() error                     { m.settled = "term"; return nil }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	m.settled, m.delay = "nak_delay", d
	return nil
}
