package httpd

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/internal/serve"
	"github.com/bevygap-go/bevygap/protocol"
)

// testNATS is the one embedded nats-server of this package's tests.
var testNATS *natsembed.Server

func TestMain(m *testing.M) { bustest.Main(m, &testNATS) }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return bustest.Connect(tb, testNATS, "httpd-test")
}

// fakeMatchmaker stands in for the matchmaker: a NATS micro service answering
// session.gensession and matchmaker.request.<game>.1 with canned scripts chosen by game name
// (streams) or client IP (gensession). Version "2" has no responder.
type fakeMatchmaker struct {
	mu          sync.Mutex
	requests    [][]byte // raw streaming request bodies
	genRequests [][]byte
	stop        chan struct{}
	// release lets the "gated" game send its SessionReady and end (close it, once).
	release chan struct{}
	// nc is the fake's connection: the answers a fake gives after its handler returned are
	// published on it to the request's reply subject (micro.Request.Respond must not be called
	// then: the service reads the request's response error when the handler returns).
	nc *nats.Conn
	// deafSeen counts the requests of game "deafonce", which ignores its first request as if
	// it were lost on the way, and answers like "happy" from the second on.
	deafSeen int
}

const (
	fakeSessionID = "950dd2eaff09-S"
	fakeToken     = "AAECAw=="
	// fakeGenReply is what the fake answers to session.gensession.
	fakeGenReply = `{"connect_token":"AAECAw==","gameserver_ip":"1.2.3.4","gameserver_port":32041,"link":"1.2.3.4:32041","cert_digest":"ab:cd"}`
	ipGenError   = "203.0.113.9"  // gensession answers a service error
	ipGenHang    = "203.0.113.10" // gensession never answers
)

func startFake(tb testing.TB) *fakeMatchmaker {
	tb.Helper()
	nc := connect(tb)
	f := &fakeMatchmaker{stop: make(chan struct{}), release: make(chan struct{}), nc: nc}
	// Each fake has queue groups of its own: a fake of an earlier (sub)test whose connection is
	// still closing on the server must not be picked as "the" member of a shared queue group and
	// swallow a request; with distinct groups every live fake gets every request.
	queue := protocol.GenSessionQueue + "-" + nuid.Next()
	svc, err := micro.AddService(nc, micro.Config{Name: protocol.GenSessionServiceName, Version: "0.0.1", QueueGroup: queue})
	if err != nil {
		tb.Fatal(err)
	}
	g := svc.AddGroup(protocol.GenSessionGroup, micro.WithGroupQueueGroup(queue))
	if err := g.AddEndpoint(protocol.GenSessionEndpoint, micro.HandlerFunc(f.genSession)); err != nil {
		tb.Fatal(err)
	}
	if err := svc.AddEndpoint("request", micro.HandlerFunc(f.stream), micro.WithEndpointSubject("matchmaker.request.*.1")); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		close(f.stop)
		_ = svc.Stop()
	})
	return f
}

func (f *fakeMatchmaker) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return string(f.requests[len(f.requests)-1])
}

func (f *fakeMatchmaker) count() (streams, gens int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests), len(f.genRequests)
}

func (f *fakeMatchmaker) genSession(req micro.Request) {
	f.mu.Lock()
	f.genRequests = append(f.genRequests, append([]byte(nil), req.Data()...))
	f.mu.Unlock()
	var r protocol.GenSessionRequest
	_ = json.Unmarshal(req.Data(), &r)
	switch r.ClientIP {
	case ipGenError:
		_ = req.Error("409", "App version is disabled", nil)
	case ipGenHang:
	default:
		_ = req.Respond([]byte(fakeGenReply))
	}
}

func mustMarshal(f protocol.Feedback) []byte {
	b, err := protocol.Marshal(f)
	if err != nil {
		panic(err)
	}
	return b
}

func (f *fakeMatchmaker) stream(req micro.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, append([]byte(nil), req.Data()...))
	f.mu.Unlock()
	game := strings.Split(req.Subject(), ".")[2]
	ready := protocol.Ready(protocol.SessionReady{Token: fakeToken, IP: "1.2.3.4", Port: 32041, CertDigest: "ab:cd"})
	var script [][]byte
	switch game {
	case "happy":
		script = [][]byte{mustMarshal(protocol.Acknowledged()), mustMarshal(protocol.Accepted(fakeSessionID)),
			mustMarshal(protocol.Progress("Waiting for game server")), mustMarshal(ready), {}}
	case "deafonce":
		f.mu.Lock()
		f.deafSeen++
		first := f.deafSeen == 1
		f.mu.Unlock()
		if first {
			return
		}
		script = [][]byte{mustMarshal(protocol.Acknowledged()), mustMarshal(protocol.Accepted(fakeSessionID)), mustMarshal(ready), {}}
	case "twice": // the final twice and a stray progress before the end (a matchmaker resends its final)
		script = [][]byte{mustMarshal(protocol.Acknowledged()), mustMarshal(ready), mustMarshal(ready),
			mustMarshal(protocol.Progress("stray")), {}}
	case "mmerror":
		script = [][]byte{mustMarshal(protocol.Acknowledged()), mustMarshal(protocol.Error(409, "App version is disabled")), {}}
	case "echo":
		var r protocol.MatchmakerRequest
		_ = json.Unmarshal(req.Data(), &r)
		script = [][]byte{mustMarshal(protocol.Progress(r.ClientIP)), {}}
	case "raw":
		script = [][]byte{[]byte(`{"ProgressReport":"a<b>&c \u00e9"}`), []byte(`{"Unknown":1}`), []byte(`"Acknowledged"`), {}}
	case "noend":
		script = [][]byte{mustMarshal(protocol.Acknowledged()), mustMarshal(ready)}
	case "hang": // acknowledges, then says nothing until the fake stops
		_ = req.Respond(mustMarshal(protocol.Acknowledged()))
		go func() {
			<-f.stop
			_ = f.nc.Publish(req.Reply(), nil)
		}()
		return
	case "gated": // acknowledges, then is ready once the test closes f.release
		_ = req.Respond(mustMarshal(protocol.Acknowledged()))
		go func() {
			select {
			case <-f.release:
				_ = f.nc.Publish(req.Reply(), mustMarshal(ready))
			case <-f.stop:
			}
			_ = f.nc.Publish(req.Reply(), nil)
		}()
		return
	default:
		script = [][]byte{mustMarshal(protocol.Error(404, "unknown test game")), {}}
	}
	for _, b := range script {
		_ = req.Respond(b)
	}
}

// testServer is a front door on an httptest server.
type testServer struct {
	*Server
	ts  *httptest.Server
	reg *prometheus.Registry
}

func (t *testServer) wsURL() string {
	return "ws" + strings.TrimPrefix(t.ts.URL, "http") + "/matchmaker/ws"
}

// testOption changes the front door or its http.Server before the server starts.
type testOption func(*Server, *http.Server)

// withReadTimeout sets the http.Server's ReadTimeout.
func withReadTimeout(d time.Duration) testOption {
	return func(_ *Server, hs *http.Server) { hs.ReadTimeout = d }
}

// withFinalGrace sets how long a stream waits for the end message after a final message.
func withFinalGrace(d time.Duration) testOption {
	return func(s *Server, _ *http.Server) { s.finalGrace = d }
}

// withReadyCacheTTL sets how long /readyz reuses a probe.
func withReadyCacheTTL(d time.Duration) testOption {
	return func(s *Server, _ *http.Server) { s.readyCacheTTL = d }
}

// newTestServer starts a front door with cfg (limits relaxed unless cfg sets them) behind an
// http.Server configured like Serve's (serve.NewServer), changed by opts.
func newTestServer(tb testing.TB, cfg Config, opts ...testOption) *testServer {
	tb.Helper()
	if cfg.SessionsPerMinute == 0 {
		cfg.SessionsPerMinute = -1
	}
	if cfg.MaxStreamsPerIP == 0 {
		cfg.MaxStreamsPerIP = -1
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, connect(tb), quietLog(), reg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s)
	ts.Config = serve.NewServer(s, quietLog())
	for _, o := range opts {
		o(s, ts.Config)
	}
	ts.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return &testServer{Server: s, ts: ts, reg: reg}
}

// metricValue reads a counter, gauge or histogram (its sample count) without testutil.
func metricValue(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		tb.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Histogram != nil:
		return float64(out.Histogram.GetSampleCount())
	}
	tb.Fatalf("unsupported metric %v", m.Desc())
	return 0
}

// pipeNet is an in-memory network for tests on fake time (testing/synctest), where real sockets
// would keep time from advancing: it is the server's net.Listener, and its DialContext hands
// Accept the other end of a net.Pipe.
type pipeNet struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for a DialContext.
func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and DialContext fail.
func (p *pipeNet) Close() error {
	p.closeOnce.Do(func() { close(p.done) })
	return nil
}

// Addr is "pipe".
func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

// DialContext connects to the listener, whatever the address.
func (p *pipeNet) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
