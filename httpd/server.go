// Package httpd is bevygap's public front door: the HTTP and WebSocket service through which game
// clients reach the matchmaker. Clients never talk to NATS; this package turns their requests into
// NATS requests and relays the answers.
//
// Routes (Go 1.22 ServeMux patterns):
//
//	GET  /matchmaker/ws                        WebSocket: one request message in, feedback frames out
//	POST /matchmaker/request/{game}/{version}  the same stream as chunked HTTP, one JSON per line
//	POST /matchmaker/wannaplay, GET /wannaplay one-shot session.gensession
//	POST /matchmaker/party/{game}/{version}[/{code}/join|leave|kick], GET …/{code}
//	                                           party management (party.go, docs/play-together.md)
//	GET  /, /matchmaker                        a small status page
//	GET  /healthz, /readyz, /metrics           liveness, readiness (NATS + matchmaker), Prometheus
//
// The WebSocket flow, wire-compatible with the Rust bevygap_matchmaker_httpd:
//
//	client                         httpd                                matchmaker (NATS)
//	  |-- upgrade ------------------>| origin, stream caps
//	  |-- {"game","version",         | (within FirstMessageTimeout)
//	  |    "client_ip"} ------------>| validate, rate limit, pick client IP
//	  |                              |-- matchmaker.request.<g>.<v> ------>|
//	  |<- "Acknowledged" ------------|<------------------------------------|
//	  |<- {"ProgressReport":…} ------|<------------------------------------|
//	  |<- {"SessionReady":{…}} ------|<------------------------------------|
//	  |<- close 1000 "Goodbye" ------|<-- empty message (end of stream) ---|
//
// Every failure the client can be told about is one text frame "ERR <message>" followed by a
// close handshake. Frames are relayed byte for byte as the matchmaker produced them.
//
// All replies of all streaming requests arrive on one wildcard inbox subscription, and a waiting
// WebSocket player is served by one parked goroutine (timeouts and shutdown are timers and
// context callbacks), so a waiting player costs about as much memory as a bare WebSocket echo
// connection (~20 KiB; see BenchmarkWaitingWebSocketMemory).
package httpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/serve"
	"github.com/bevygap-go/bevygap/internal/statusfeed"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/protocol"
)

// Server is the front door. It is an http.Handler; run it with [Server.Serve] or mount it in
// your own http.Server (give it a ReadHeaderTimeout and no WriteTimeout: streams are long) and
// call [Server.Shutdown] beside that server's Shutdown.
type Server struct {
	cfg      Config
	nc       *nats.Conn
	log      *slog.Logger
	replies  *replyMux
	metrics  *metrics
	gatherer prometheus.Gatherer
	handler  http.Handler
	ips      ipPolicy
	cors     corsPolicy
	limiter  *ipRateLimiter
	streams  *streamCounter
	status   *statusfeed.Aggregator // nil unless the status page is on (status.go)

	// partyLimiter is the per-IP budget of party operations (party.go), apart from sessions'.
	partyLimiter *ipRateLimiter

	// finalGrace is how long a stream still waits for the matchmaker's end-of-stream message
	// after a final (SessionReady or Error) feedback: defaultFinalGrace (tests shorten it).
	finalGrace time.Duration
	// readyCacheTTL is how long /readyz reuses its last matchmaker probe: defaultReadyCacheTTL
	// (tests shorten it).
	readyCacheTTL time.Duration

	stopCtx context.Context // cancelled by Shutdown
	stop    context.CancelFunc

	mu        sync.Mutex
	closing   bool
	wg        sync.WaitGroup
	closeOnce sync.Once

	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
}

// New builds the front door on an established NATS connection. reg receives the metrics; nil
// means a fresh registry of the Server's own (with Go and process collectors). /metrics serves
// reg when it is also a prometheus.Gatherer (a *prometheus.Registry is). New never uses the
// global default registry.
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if nc == nil {
		return nil, errors.New("httpd: nil NATS connection")
	}
	if log == nil {
		log = slog.Default()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if reg == nil {
		reg = svcmetrics.NewRegistry()
	}
	m, err := newMetrics(reg, nc)
	if err != nil {
		return nil, err
	}
	replies, err := newReplyMux(nc)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		nc:      nc,
		log:     log,
		replies: replies,
		metrics: m,
		ips:     ipPolicy{trusted: cfg.TrustedProxies, allowOverride: !cfg.DisableClientIPOverride, standIn: cfg.StandInIP},
		cors:    newCORSPolicy(cfg.AllowedOrigins),
		limiter: newIPRateLimiter(cfg.SessionsPerMinute, cfg.SessionBurst),
		streams: newStreamCounter(cfg.MaxStreams, cfg.MaxStreamsPerIP),

		partyLimiter: newIPRateLimiter(cfg.PartyOpsPerMinute, cfg.PartyOpsBurst),

		finalGrace:    defaultFinalGrace,
		readyCacheTTL: defaultReadyCacheTTL,
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	// Make the context's done channel now, in New's goroutine: a context creates it on the
	// first Done call, and the first caller may be a request served on fake time
	// (testing/synctest), whose channel the status publisher below must not select on.
	_ = s.stopCtx.Done()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /matchmaker", s.handleIndex)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.gatherer != nil {
		mux.Handle("GET /metrics", svcmetrics.Handler(s.gatherer))
	}
	mux.HandleFunc("GET /matchmaker/ws", s.handleWS)
	mux.HandleFunc("POST /matchmaker/request/{game}/{version}", s.handleStream)
	mux.HandleFunc("POST /matchmaker/wannaplay", s.handleWannaplay)
	mux.HandleFunc("GET /wannaplay", s.handleWannaplay)
	s.registerParty(mux)
	if err := s.startStatus(mux); err != nil {
		s.stop()
		_ = replies.close()
		return nil, err
	}
	s.handler = s.cors.handler(s.limitBody(mux), func(reason string) { s.metrics.rejects.WithLabelValues(reason).Inc() })

	log.Info("httpd ready", "allowed_origins", cfg.AllowedOrigins, "trusted_proxies", len(cfg.TrustedProxies),
		"stand_in_ip", cfg.StandInIP, "client_ip_override", !cfg.DisableClientIPOverride,
		"sessions_per_minute", cfg.SessionsPerMinute, "burst", cfg.SessionBurst,
		"max_streams", cfg.MaxStreams, "max_streams_per_ip", cfg.MaxStreamsPerIP,
		"status_page", cfg.Status.Enabled(), "status_token", cfg.Status.Token != "", "status_allow_from", len(cfg.Status.AllowFrom))
	return s, nil
}

// ServeHTTP serves every route of the front door.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.handler.ServeHTTP(w, r)
}

// limitBody caps every request body at MaxBodyBytes and refuses a declared larger one at once.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			s.metrics.rejects.WithLabelValues("body_too_large").Inc()
			writeText(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// begin registers a request that Shutdown must wait for; false once shutting down.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops taking session requests, tells every open WebSocket "ERR server shutting down"
// (chunked streams get a final Error line), and waits for them to finish or for ctx to end.
// It does not close listeners: [Server.Serve] does that, or do it with your http.Server's
// Shutdown, concurrently. The NATS connection is left open for the caller to close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.closeOnce.Do(func() {
			s.closeStatus()
			if err := s.replies.close(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				s.log.Warn("httpd: unsubscribe reply inbox", logkey.Err, err)
			}
		})
		return nil
	case <-ctx.Done():
		return fmt.Errorf("httpd: shutdown: %d streams still open: %w", s.streams.open(), ctx.Err())
	}
}

// drainTimeout is how long [Server.Serve] waits for open streams after its context ends.
const drainTimeout = 15 * time.Second

// Serve accepts connections on ln until ctx ends, then shuts down gracefully: it stops
// accepting, tells open WebSockets the server is going away and drains for at most 15 s. It
// returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	drain := func(ctx context.Context) error {
		s.log.Info("httpd shutting down", "open_streams", s.streams.open())
		return s.Shutdown(ctx)
	}
	if err := serve.HTTP(ctx, serve.NewServer(s, s.log), ln, drainTimeout, drain); err != nil {
		return fmt.Errorf("httpd: %w", err)
	}
	return nil
}

const indexHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Bevygap Matchmaker Webservice</title></head>
<body>
<h1>Bevygap Matchmaker Webservice.</h1>
<p>This is the front door of a <a href="https://github.com/RJ/bevygap">bevygap</a> matchmaker:
game clients ask it for a game server here. There is nothing to see in a browser.</p>
<ul>
<li><code>GET /matchmaker/ws</code> &mdash; WebSocket session request</li>
<li><code>POST /matchmaker/request/{game}/{version}</code> &mdash; the same as a chunked HTTP stream</li>
<li><code>POST /matchmaker/wannaplay</code> &mdash; one-shot session request</li>
<li><code>POST /matchmaker/party/{game}/{version}</code> &mdash; parties: create, then <code>/{code}/join</code>, <code>/leave</code>, <code>/kick</code>; <code>GET &hellip;/{code}</code></li>
</ul>
<p>Operators: <a href="/healthz">/healthz</a> &middot; <a href="/readyz">/readyz</a> &middot; <a href="/metrics">/metrics</a></p>
</body></html>
`

func (s *Server) handleIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, indexHTML)
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// errNotReady wraps every reason /readyz fails.
var errNotReady = errors.New("not ready")

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(r.Context()); err != nil {
		writeText(w, http.StatusServiceUnavailable, err.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

// ready checks that NATS is connected and a matchmaker answers a NATS micro PING. Probe results
// are cached for readyCacheTTL, so /readyz cannot be used to flood NATS.
func (s *Server) ready(ctx context.Context) error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS %s", errNotReady, st)
	}
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if !s.readyAt.IsZero() && time.Since(s.readyAt) < s.readyCacheTTL {
		return s.readyErr
	}
	subj, err := micro.ControlSubject(micro.PingVerb, protocol.GenSessionServiceName, "")
	if err != nil {
		return fmt.Errorf("%w: %v", errNotReady, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = s.nc.RequestWithContext(ctx, subj, nil)
	switch {
	case err == nil:
		s.readyErr = nil
	case errors.Is(err, nats.ErrNoResponders):
		s.readyErr = fmt.Errorf("%w: no matchmaker (service %q) is running", errNotReady, protocol.GenSessionServiceName)
	default:
		s.readyErr = fmt.Errorf("%w: matchmaker ping: %v", errNotReady, err)
	}
	s.readyAt = time.Now()
	return s.readyErr
}

// writeText answers a short plain-text body (no trailing newline is added, like the reference).
func writeText(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// reject answers a refused request and counts it.
func (s *Server) reject(w http.ResponseWriter, route, reason string, code int, msg string) {
	s.metrics.rejects.WithLabelValues(reason).Inc()
	s.metrics.requests.WithLabelValues(route, outcomeRejected).Inc()
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	writeText(w, code, msg)
}
