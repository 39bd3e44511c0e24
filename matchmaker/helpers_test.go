package matchmaker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// TestMain runs up to 8 tests at once instead of GOMAXPROCS (an explicit -parallel still
// wins): the integration tests here mostly wait for network round trips and simulated boots,
// not for the CPU, and each has its own NATS server, simulator and buckets.
func TestMain(m *testing.M) {
	if err := flag.Set("test.parallel", "8"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

const testAPIKey = "token sim-secret-4f1c2b"

var harnessSeq atomic.Int64

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is one simulated world: a NATS server (its own unless given one to share, and a
// bucket prefix of its own), an Edgegap simulator, a webhook sink that forwards to NATS, and
// matchmakers. Harnesses are independent, so tests using them run in parallel: session.gensession
// and the $SRV subjects are the same for every matchmaker on a NATS server, so only harnesses
// of one test may share a server.
type harness struct {
	t       *testing.T
	nc      *nats.Conn
	sim     *edgegapsim.Simulator
	simSrv  *httptest.Server
	hookSrv *httptest.Server
	cfg     Config
	b       *bus.Buckets
	logs    *lockedBuffer
	log     *slog.Logger
	mms     []*Matchmaker
	srv     *natsembed.Server

	mu   sync.Mutex
	regs map[*Matchmaker]*prometheus.Registry
}

type harnessOpts struct {
	boot         time.Duration
	webhook      bool
	faults       edgegapsim.Faults
	clock        edgegapsim.Clock
	inactive     bool
	sockets      int
	configure    func(*Config)
	noMatchmaker bool
	// quiet discards the logs (benchmarks).
	quiet bool
	// nats is a server to share with other harnesses of the same test (default: a server of
	// the harness's own).
	nats *natsembed.Server
	// launcher runs the simulator's game servers (default: none, deployments get ready alone).
	launcher edgegapsim.Launcher
}

// newNATS starts an embedded nats-server with JetStream that stops with t.
func newNATS(t testing.TB) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	n := harnessSeq.Add(1)
	h := &harness{logs: &lockedBuffer{}, srv: o.nats, regs: make(map[*Matchmaker]*prometheus.Registry)}
	if h.srv == nil {
		h.srv = newNATS(t)
	}
	if tt, ok := t.(*testing.T); ok {
		h.t = tt
	}
	h.log = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.quiet {
		h.log = slog.New(slog.DiscardHandler)
	}
	t.Cleanup(func() {
		// A failed test shows what the matchmakers logged (the last lines), for CI.
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
			t.Logf("last %d of %d log lines:\n%s", min(len(lines), 80), len(lines), strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	})

	nc, err := bus.Connect(context.Background(), bustest.Config(h.srv, "test"), h.log)
	if err != nil {
		t.Fatal(err)
	}
	h.nc = nc
	t.Cleanup(nc.Close)

	boot := o.boot
	if boot == 0 {
		boot = 20 * time.Millisecond
	}
	app := fmt.Sprintf("game%d", n)
	active := !o.inactive
	sockets := o.sockets
	if sockets == 0 {
		sockets = 1 // one session per deployment: every session boots
	}
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys:    []string{testAPIKey},
		Apps:       []edgegapsim.AppConfig{{Name: app, Versions: []edgegapsim.VersionConfig{{Name: "v1", Active: &active, Sockets: sockets}}}},
		BootTime:   edgegapsim.Duration(boot),
		BootJitter: -1,
		Faults:     o.faults,
		Clock:      o.clock,
		Launcher:   o.launcher,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.sim = sim
	h.simSrv = httptest.NewServer(sim)
	sim.SetBaseURL(h.simSrv.URL)
	t.Cleanup(func() {
		h.simSrv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(ctx)
	})

	// The webhook sink: POST /hook/{name} -> publish on webhook.<name>.
	h.hookSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/hook/")
		if !ok || name == "" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := nc.Publish(protocol.WebhookSubject(name), body); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "OK")
	}))
	t.Cleanup(h.hookSrv.Close)

	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AppName, cfg.AppVersion = app, "v1"
	cfg.PrivateKey = key
	cfg.ReadinessLimit = 3 * time.Second
	cfg.ClaimGrace = 500 * time.Millisecond
	cfg.CertDigestWait = 200 * time.Millisecond
	cfg.PollInitial = 50 * time.Millisecond
	cfg.PollMax = 200 * time.Millisecond
	cfg.DeleteRetryBase = 50 * time.Millisecond
	cfg.DeleteRetryMax = 400 * time.Millisecond
	cfg.DeleteStuckAfter = 3
	cfg.ReconcileInterval = 300 * time.Millisecond
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.EdgegapCallTimeout = 3 * time.Second
	cfg.Buckets = bus.BucketOptions{Prefix: fmt.Sprintf("t%d_", n), Memory: true}
	if o.webhook {
		cfg.SessionWebhookURL = h.hookSrv.URL + "/hook/session"
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	h.cfg = cfg

	b, err := bus.Open(context.Background(), nc, cfg.Buckets)
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	if !o.noMatchmaker {
		h.start(t, cfg)
	}
	return h
}

// newAPI returns an Edgegap client for the simulator.
func (h *harness) newAPI(opts ...edgegap.Option) *edgegap.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	opts = append([]edgegap.Option{edgegap.WithHTTPClient(&http.Client{Transport: tr}),
		edgegap.WithRateLimit(rate.Inf, 1),
		edgegap.WithRetries(2, 20*time.Millisecond, 100*time.Millisecond),
		edgegap.WithLogger(h.log)}, opts...)
	return edgegap.NewClient(h.simSrv.URL, testAPIKey, opts...)
}

// start starts a matchmaker with its own NATS connection (so that a test can "kill" it).
func (h *harness) start(t testing.TB, cfg Config) *Matchmaker {
	t.Helper()
	mm := h.startWith(t, cfg, func(api EdgegapAPI) EdgegapAPI { return api })
	h.mms = append(h.mms, mm)
	return mm
}

// startWith starts a matchmaker with its own NATS connection whose Edgegap client is wrapped
// by wrap, and shuts it down when the test ends.
func (h *harness) startWith(t testing.TB, cfg Config, wrap func(EdgegapAPI) EdgegapAPI) *Matchmaker {
	t.Helper()
	nc, err := bus.Connect(context.Background(), bustest.Config(h.srv, "mm"), h.log)
	if err != nil {
		t.Fatal(err)
	}
	// Wired like the command: one registry, fed by the matchmaker and by its Edgegap client.
	reg := prometheus.NewRegistry()
	api := wrap(h.newAPI(edgegap.WithObserver(EdgegapObserver(reg))))
	mm, err := New(cfg, Deps{NATS: nc, Edgegap: api, Logger: h.log, Registry: reg})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	h.mu.Lock()
	h.regs[mm] = reg
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mm.Start(ctx); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = mm.Shutdown(ctx)
		nc.Close()
	})
	return mm
}

// genReply is the outcome of one session.gensession request.
type genReply struct {
	raw     []byte
	reply   protocol.GenSessionReply
	errCode string
	errDesc string
}

func (h *harness) gensession(t testing.TB, body string) genReply {
	t.Helper()
	msg, err := h.nc.Request(protocol.SubjectGenSession, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("gensession request: %v", err)
	}
	r := genReply{raw: msg.Data, errCode: msg.Header.Get("Nats-Service-Error-Code"), errDesc: msg.Header.Get("Nats-Service-Error")}
	if r.errCode == "" {
		if err := json.Unmarshal(msg.Data, &r.reply); err != nil {
			t.Fatalf("reply %q: %v", msg.Data, err)
		}
	}
	return r
}

// streamReader is one streaming request whose messages the test reads as they come.
type streamReader struct {
	sub *nats.Subscription
}

// openStream publishes a streaming request for game and version.
func (h *harness) openStream(game, version, body string) (*streamReader, error) {
	inbox := nats.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	if err := h.nc.PublishRequest(protocol.SubjectMatchmakerRequestPrefix+"."+game+"."+version, inbox, []byte(body)); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return &streamReader{sub: sub}, nil
}

// next returns the next message: its raw bytes and, unless it is the empty terminator (end),
// the feedback it holds.
func (s *streamReader) next() (raw []byte, f protocol.Feedback, end bool, err error) {
	msg, err := s.sub.NextMsg(15 * time.Second)
	if err != nil {
		return nil, f, false, err
	}
	if len(msg.Data) == 0 {
		return msg.Data, f, true, nil
	}
	if err := json.Unmarshal(msg.Data, &f); err != nil {
		return msg.Data, f, false, fmt.Errorf("feedback %q: %w", msg.Data, err)
	}
	return msg.Data, f, false, nil
}

// rest collects the messages up to the terminator and ends the subscription.
func (s *streamReader) rest() (raw [][]byte, fbs []protocol.Feedback, err error) {
	defer func() { _ = s.sub.Unsubscribe() }()
	for {
		r, f, end, err := s.next()
		if err != nil {
			return raw, fbs, fmt.Errorf("stream: %w after %d messages", err, len(raw))
		}
		raw = append(raw, r)
		if end {
			return raw, fbs, nil
		}
		fbs = append(fbs, f)
	}
}

// stream sends a streaming request and collects every message up to the empty terminator.
func (h *harness) stream(t testing.TB, game, version, body string) (raw [][]byte, fbs []protocol.Feedback) {
	t.Helper()
	raw, fbs, err := h.streamE(game, version, body)
	if err != nil {
		t.Fatal(err)
	}
	return raw, fbs
}

// streamE is stream for goroutines other than the test's: it returns errors.
func (h *harness) streamE(game, version, body string) (raw [][]byte, fbs []protocol.Feedback, err error) {
	s, err := h.openStream(game, version, body)
	if err != nil {
		return nil, nil, err
	}
	return s.rest()
}

// noLeaks waits until the simulator has no live session.
// d is the expected bound; the wait allows at least minLeakWait, because a loaded machine (the
// whole package in parallel beside a cold build) can take several seconds to start a matchmaker
// and run its delete worker. A passing test does not wait longer for it.
func (h *harness) noLeaks(t testing.TB, d time.Duration) {
	t.Helper()
	eventually.True(t, max(d, minLeakWait), func() bool { return h.sim.LiveSessions() == 0 }, "no live session in the simulator")
}

// minLeakWait is the least time noLeaks waits for the simulator to have no live session.
const minLeakWait = 30 * time.Second

// releaseAll plays the game servers of every granted session: a player connects and leaves, so
// the matchmaker deletes the session at once (instead of the unclaimed reaper, after
// ReadinessLimit + ClaimGrace). It then waits until no session is left.
func (h *harness) releaseAll(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	keys, err := h.b.SessionsEg2Ly.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		t.Fatal(err)
	}
	for _, sid := range keys {
		if _, err := h.b.ActiveConnections.Put(ctx, sid, []byte("1")); err != nil {
			t.Fatal(err)
		}
		h.disconnect(t, sid)
	}
	h.noLeaks(t, 10*time.Second)
}

// claim plays the game server: maps the client id to a session and writes active_connections.
func (h *harness) claim(t testing.TB, clientID string) string {
	t.Helper()
	ctx := context.Background()
	e, err := h.b.SessionsLy2Eg.Get(ctx, clientID)
	if err != nil {
		t.Fatalf("sessions_ly2eg[%s]: %v", clientID, err)
	}
	sid := string(e.Value())
	if _, err := h.b.ActiveConnections.Put(ctx, sid, []byte(clientID)); err != nil {
		t.Fatal(err)
	}
	return sid
}

func (h *harness) disconnect(t testing.TB, sid string) {
	t.Helper()
	if err := h.b.ActiveConnections.Delete(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
}

// clientIDOf opens a token's private part to read the client id.
func (h *harness) clientIDOf(t testing.TB, token string) uint64 {
	t.Helper()
	tok, err := netcode.DecodeConnectTokenBase64(token, h.cfg.TokenFormat)
	if err != nil {
		t.Fatalf("decode token: %v", err)
	}
	p, err := tok.Open(h.cfg.PrivateKey)
	if err != nil {
		t.Fatalf("open token: %v", err)
	}
	return p.ClientID
}

// fmtAll prints v with every fmt verb a log line might use.
func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }

// registry returns the metrics registry of a matchmaker started by h.
func (h *harness) registry(mm *Matchmaker) *prometheus.Registry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.regs[mm]
}

// counter sums every series of the counter family name of mm's metrics.
func (h *harness) counter(t testing.TB, mm *Matchmaker, name string) float64 {
	t.Helper()
	mfs, err := h.registry(mm).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// openBuckets opens the buckets, with prefix, on the package's NATS server (memory storage).
func openBuckets(t *testing.T, prefix string) *bus.Buckets {
	t.Helper()
	srv := newNATS(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(srv.User(), srv.Password()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Open(t.Context(), nc, bus.BucketOptions{Prefix: prefix, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
