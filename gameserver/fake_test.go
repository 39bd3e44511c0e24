package gameserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/protocol"
)

// This file holds in-memory fakes of what the agent talks to — the NATS connection, the three KV
// buckets and the Edgegap HTTP API — so that tests whose behaviour hangs on timers (idle
// self-destruct, retries with backoff, waiting for a reconnect) run on fake time with
// testing/synctest. Real NATS and real sockets cannot sit inside a bubble; the tests against the
// embedded nats-server (main_test.go) cover the real KV and reconnect semantics.

// errFakeDown is the error of a KV operation while the fake connection is down.
var errFakeDown = errors.New("fake NATS: not connected")

// fakeNATS is the agent's NATS connection and KV buckets, in memory.
type fakeNATS struct {
	mu        sync.Mutex
	connected bool
	closed    bool
	published [][]byte               // bodies published on gameserver.contexts
	kv        map[string][]byte      // bucket + "/" + key -> value
	rev       map[string]uint64      // bucket + "/" + key -> revision of its last write
	seq       uint64                 // last revision handed out
	ops       []kvOp                 // writes to active_connections, in order
	calls     map[string][]time.Time // "put active_connections" … -> when each call came
	// fail, when set, decides the error of a KV call before it happens (nil: it succeeds).
	fail func(op, bucket, key string) error
	// hang makes every KV call wait until its context ends.
	hang bool
}

func newFakeNATS() *fakeNATS {
	return &fakeNATS{connected: true, kv: make(map[string][]byte), rev: make(map[string]uint64), calls: make(map[string][]time.Time)}
}

func (f *fakeNATS) IsConnected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected && !f.closed
}

func (f *fakeNATS) IsClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// setConnected simulates an outage (false) or the reconnect (true).
func (f *fakeNATS) setConnected(up bool) {
	f.mu.Lock()
	f.connected = up
	f.mu.Unlock()
}

func (f *fakeNATS) Publish(subject string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nats.ErrConnectionClosed
	}
	if subject == protocol.SubjectGameserverContexts {
		f.published = append(f.published, append([]byte(nil), data...))
	}
	return nil
}

func (f *fakeNATS) FlushWithContext(ctx context.Context) error {
	if !f.IsConnected() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// publishedContexts returns what was published on gameserver.contexts.
func (f *fakeNATS) publishedContexts() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.published...)
}

// activeOps returns the writes to active_connections, in order.
func (f *fakeNATS) activeOps() []kvOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]kvOp(nil), f.ops...)
}

// callTimes returns when the calls of one kind ("put active_connections", …) came.
func (f *fakeNATS) callTimes(kind string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[kind]...)
}

// putSession stores sessions_ly2eg[clientID], as the matchmaker does.
func (f *fakeNATS) putSession(clientID, sessionID string) {
	f.mu.Lock()
	f.kv[protocol.BucketSessionsLy2Eg+"/"+clientID] = []byte(sessionID)
	f.mu.Unlock()
}

// value returns bucket[key].
func (f *fakeNATS) value(bucket, key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.kv[bucket+"/"+key]
	return string(v), ok
}

// buckets returns the game server's buckets backed by f.
func (f *fakeNATS) buckets() *bus.GameServerBuckets {
	return &bus.GameServerBuckets{
		SessionsLy2Eg:     &fakeKV{f: f, bucket: protocol.BucketSessionsLy2Eg},
		ActiveConnections: &fakeKV{f: f, bucket: protocol.BucketActiveConnections},
		CertDigests:       &fakeKV{f: f, bucket: protocol.BucketCertDigests},
	}
}

// call records a KV call and returns the error it fails with, if any.
func (f *fakeNATS) call(ctx context.Context, op, bucket, key string) error {
	f.mu.Lock()
	kind := op + " " + bucket
	f.calls[kind] = append(f.calls[kind], time.Now())
	down, fail, hang := !f.connected || f.closed, f.fail, f.hang
	f.mu.Unlock()
	if down {
		return errFakeDown
	}
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail != nil {
		return fail(op, bucket, key)
	}
	return nil
}

// fakeKV is one bucket of a fakeNATS. Only the methods the agent calls are implemented; any
// other panics (nil embedded interface).
type fakeKV struct {
	jetstream.KeyValue
	f      *fakeNATS
	bucket string
}

func (b *fakeKV) Bucket() string { return b.bucket }

func (b *fakeKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if err := b.f.call(ctx, "get", b.bucket, key); err != nil {
		return nil, err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	v, ok := b.f.kv[b.bucket+"/"+key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return fakeEntry{key: key, value: append([]byte(nil), v...), revision: b.f.rev[b.bucket+"/"+key]}, nil
}

func (b *fakeKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := b.f.call(ctx, "put", b.bucket, key); err != nil {
		return 0, err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	if b.bucket == protocol.BucketActiveConnections {
		b.f.ops = append(b.f.ops, kvOp{"PUT", key, string(value)})
	}
	return b.f.writeLocked(b.bucket, key, value), nil
}

// Create writes key only if it does not exist.
func (b *fakeKV) Create(ctx context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	if err := b.f.call(ctx, "create", b.bucket, key); err != nil {
		return 0, err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	if _, ok := b.f.kv[b.bucket+"/"+key]; ok {
		return 0, jetstream.ErrKeyExists
	}
	return b.f.writeLocked(b.bucket, key, value), nil
}

// Update writes key only if its last revision is revision.
func (b *fakeKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := b.f.call(ctx, "update", b.bucket, key); err != nil {
		return 0, err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	if b.f.rev[b.bucket+"/"+key] != revision {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return b.f.writeLocked(b.bucket, key, value), nil
}

// Watch sends the current values of the keys that match filter (a key, or "prefix.*"), then
// nil; later writes are not sent.
func (b *fakeKV) Watch(ctx context.Context, filter string, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if err := b.f.call(ctx, "watch", b.bucket, filter); err != nil {
		return nil, err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	var entries []jetstream.KeyValueEntry
	for bk, v := range b.f.kv {
		key, ok := strings.CutPrefix(bk, b.bucket+"/")
		if !ok {
			continue
		}
		prefix, wild := strings.CutSuffix(filter, "*")
		if key == filter || (wild && strings.HasPrefix(key, prefix) && !strings.Contains(key[len(prefix):], ".")) {
			entries = append(entries, fakeEntry{key: key, value: append([]byte(nil), v...), revision: b.f.rev[bk]})
		}
	}
	ch := make(chan jetstream.KeyValueEntry, len(entries)+1)
	for _, e := range entries {
		ch <- e
	}
	ch <- nil
	return fakeWatcher{ch}, nil
}

// fakeWatcher replays what fakeKV.Watch found.
type fakeWatcher struct{ ch chan jetstream.KeyValueEntry }

func (w fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w fakeWatcher) Stop() error                             { return nil }

// writeLocked stores bucket[key] = value with a new revision; f.mu must be held.
func (f *fakeNATS) writeLocked(bucket, key string, value []byte) uint64 {
	f.seq++
	f.kv[bucket+"/"+key] = append([]byte(nil), value...)
	f.rev[bucket+"/"+key] = f.seq
	return f.seq
}

func (b *fakeKV) Delete(ctx context.Context, key string, _ ...jetstream.KVDeleteOpt) error {
	if err := b.f.call(ctx, "delete", b.bucket, key); err != nil {
		return err
	}
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	delete(b.f.kv, b.bucket+"/"+key)
	if b.bucket == protocol.BucketActiveConnections {
		b.f.ops = append(b.f.ops, kvOp{"DEL", key, ""})
	}
	return nil
}

// fakeEntry is a KV entry (a put) with a key, a value and a revision; other methods panic.
type fakeEntry struct {
	jetstream.KeyValueEntry
	key      string
	value    []byte
	revision uint64
}

func (e fakeEntry) Key() string { return e.key }

func (e fakeEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func (e fakeEntry) Value() []byte { return e.value }

func (e fakeEntry) Revision() uint64 { return e.revision }

// handlerTransport serves HTTP requests with a handler in memory, on the caller's goroutine.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err // the client gave up (attempt timeout) before the answer
	}
	return rec.Result(), nil
}

// fakeAPI records the calls to the fake context and delete URLs; respond decides, per request
// number (from 1), what to do.
type fakeAPI struct {
	respond  func(n int, w http.ResponseWriter, r *http.Request)
	mu       sync.Mutex
	requests []*http.Request
	at       []time.Time
}

func (api *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api.mu.Lock()
	api.requests = append(api.requests, r.Clone(context.Background()))
	api.at = append(api.at, time.Now())
	n := len(api.requests)
	api.mu.Unlock()
	api.respond(n, w, r)
}

func (api *fakeAPI) count() int {
	api.mu.Lock()
	defer api.mu.Unlock()
	return len(api.requests)
}

func (api *fakeAPI) request(i int) (*http.Request, time.Time) {
	api.mu.Lock()
	defer api.mu.Unlock()
	return api.requests[i], api.at[i]
}

// fakeWorld is an agent's surroundings on fake time: NATS and the two Edgegap URLs
// (http://context.test/ctx and http://delete.test/stop).
type fakeWorld struct {
	nats   *fakeNATS
	ctxAPI *fakeAPI
	delAPI *fakeAPI
}

const (
	fakeContextURL = "http://context.test/v1/context/9170f5211e17/17"
	fakeDeleteURL  = "http://delete.test/v1/self/stop/9f511e17/660"
)

// newFakeWorld returns surroundings whose context API serves contextBody and whose delete URL
// answers 200.
func newFakeWorld() *fakeWorld {
	return &fakeWorld{
		nats:   newFakeNATS(),
		ctxAPI: &fakeAPI{respond: func(_ int, w http.ResponseWriter, _ *http.Request) { serveContext(w) }},
		delAPI: &fakeAPI{respond: func(_ int, w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"message":"Deployment 9170f5211e17 will be deleted"}`))
		}},
	}
}

// config is fastConfig for the fake world: the Edgegap client reaches the fake APIs in memory.
func (w *fakeWorld) config() Config {
	cfg := fastConfig(testArbitrium(fakeContextURL, fakeDeleteURL))
	mux := http.NewServeMux()
	mux.Handle("context.test/", w.ctxAPI)
	mux.Handle("delete.test/", w.delAPI)
	cfg.Edgegap = edgegap.NewClient("", "", edgegap.WithTimeout(300*time.Millisecond),
		edgegap.WithRetries(3, 10*time.Millisecond, 40*time.Millisecond),
		edgegap.WithHTTPClient(&http.Client{Transport: handlerTransport{mux}}))
	return cfg
}

// inBubble runs f in a synctest bubble with fresh fake surroundings.
func inBubble(t *testing.T, f func(t *testing.T, w *fakeWorld)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { f(t, newFakeWorld()) })
}

// newAgent returns an agent on w's fakes; it is closed when the test ends.
func (w *fakeWorld) newAgent(t *testing.T, cfg Config) (*Agent, *logBuffer) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	log, lb := testLogger(t)
	a, err := newAgent(cfg, w.nats, nil, w.nats.buckets(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil && !errors.Is(err, ErrUnflushed) {
			t.Errorf("Close: %v", err)
		}
	})
	return a, lb
}

// startAgent returns an agent on w's fakes, running until the test ends.
func (w *fakeWorld) startAgent(t *testing.T, cfg Config) (*Agent, *logBuffer, <-chan error) {
	t.Helper()
	a, lb := w.newAgent(t, cfg)
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(context.Background()) }()
	return a, lb, runErr
}
