// Package webhooksink receives webhooks over HTTP and publishes each body on NATS, so that services
// behind NATS (the matchmaker) learn about Edgegap session changes without being reachable from
// the internet.
//
//	POST /hook/{name}   body published on NATS subject "webhook.<name>"; answers "OK"
//	GET  /healthz       process up
//	GET  /metrics       Prometheus
//
// The sink never answers 200 for a body it has not handed to the NATS server: it publishes, then
// flushes (a PING/PONG round trip) within FlushTimeout, and answers 503 when NATS is down, so that
// the sender (Edgegap) retries. With a Secret configured, a request must carry it (URL query
// ?token=, header X-Webhook-Token, or Authorization: Bearer), so strangers cannot inject fake
// "session ready" events.
package webhooksink

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/internal/jsonvalid"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/names"
	"github.com/bevygap-go/bevygap/internal/serve"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/protocol"
)

// Defaults of [Config].
const (
	// DefaultBind is the reference's listen address.
	DefaultBind = "0.0.0.0:3001"
	// DefaultMaxBodyBytes limits a webhook body (Edgegap session bodies are a few KiB).
	DefaultMaxBodyBytes = 256 << 10
	// DefaultFlushTimeout bounds the NATS round trip that confirms a publish.
	DefaultFlushTimeout = 5 * time.Second
)

const (
	// maxNameLen is the longest hook name accepted.
	maxNameLen = 64
	// shutdownGrace bounds Serve's graceful shutdown.
	shutdownGrace = 10 * time.Second
)

// Config configures the sink. The zero value works: no secret, default limits, JSON bodies only.
type Config struct {
	// Secret, when set, must be presented by every request (?token=, X-Webhook-Token header or
	// Authorization: Bearer). Compared in constant time; never logged.
	Secret string
	// MaxBodyBytes limits a body; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// FlushTimeout bounds the publish confirmation; zero means DefaultFlushTimeout.
	FlushTimeout time.Duration
	// AllowNonJSON accepts bodies that are not valid JSON (by default they get 400).
	AllowNonJSON bool
}

// String describes c without the secret.
func (c Config) String() string {
	return fmt.Sprintf("webhooksink.Config{Secret:%t MaxBodyBytes:%d FlushTimeout:%v AllowNonJSON:%t}",
		c.Secret != "", c.MaxBodyBytes, c.FlushTimeout, c.AllowNonJSON)
}

// GoString is String, so that %#v does not print the secret either.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog print c without the secret.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Sink is the webhook receiver, an http.Handler.
type Sink struct {
	cfg      Config
	secret   [32]byte // sha256 of Secret
	nc       *nats.Conn
	log      *slog.Logger
	requests *prometheus.CounterVec
	bytes    prometheus.Counter
	mux      *http.ServeMux
	confirm  *confirmer
}

// Outcomes, the "outcome" label of bevygap_webhooksink_requests_total.
const (
	outcomePublished    = "published"
	outcomeBadName      = "bad_name"
	outcomeBadBody      = "bad_body"
	outcomeTooLarge     = "too_large"
	outcomeUnauthorized = "unauthorized"
	outcomeNATSDown     = "nats_down"
)

// New builds a sink on an established NATS connection. reg receives the metrics; nil means a
// fresh registry of the Sink's own (with Go and process collectors). /metrics serves reg when it
// is also a prometheus.Gatherer.
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if nc == nil {
		return nil, errors.New("webhooksink: nil NATS connection")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	if reg == nil {
		reg = svcmetrics.NewRegistry()
	}
	s := &Sink{
		cfg:     cfg,
		nc:      nc,
		log:     log,
		confirm: &confirmer{nc: nc, timeout: cfg.FlushTimeout},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bevygap_webhooksink_requests_total",
			Help: "Webhook requests by outcome.",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bevygap_webhooksink_published_bytes_total",
			Help: "Bytes of webhook bodies published on NATS.",
		}),
	}
	if cfg.Secret != "" {
		s.secret = sha256.Sum256([]byte(cfg.Secret))
	}
	for _, c := range []prometheus.Collector{s.requests, s.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webhooksink: register metrics: %w", err)
		}
	}
	if err := svcmetrics.RegisterNATS(reg, "webhooksink", nc); err != nil {
		return nil, fmt.Errorf("webhooksink: %w", err)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /hook/{name}", s.handleHook)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok\n") })
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<h1>Webhook catcher</h1><p>bevygap webhook sink: POST /hook/{name}. "+
			`<a href="/healthz">/healthz</a> <a href="/metrics">/metrics</a></p>`+"\n")
	})
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.mux.Handle("GET /metrics", svcmetrics.Handler(g))
	}
	log.Info("webhook sink ready", "config", cfg)
	return s, nil
}

// ServeHTTP serves the sink's routes.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// validName reports whether name is a safe hook name: 1 to maxNameLen of A-Z a-z 0-9 '_' '-'
// (one NATS subject token, never a wildcard).
func validName(name string) bool { return names.Valid(name, maxNameLen, "_-") }

// authorized checks the shared secret, if one is configured.
func (s *Sink) authorized(r *http.Request) bool {
	if s.cfg.Secret == "" {
		return true
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		token = r.Header.Get("X-Webhook-Token")
	}
	if token == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			token = a[7:]
		}
	}
	if token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.secret[:]) == 1
}

func (s *Sink) handleHook(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	outcome, code, msg := s.hook(r, name)
	s.requests.WithLabelValues(outcome).Inc()
	if code != http.StatusOK {
		// The name is logged only when it is safe; the token never is.
		logName := name
		if !validName(name) {
			logName = "(invalid)"
		}
		s.log.Warn("webhook refused", "name", logName, "status", code, "reason", msg, "peer", r.RemoteAddr)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
	}
	text(w, code, msg)
}

// hook validates and publishes one webhook; it returns the outcome label, HTTP status and body.
func (s *Sink) hook(r *http.Request, name string) (string, int, string) {
	if !s.authorized(r) {
		return outcomeUnauthorized, http.StatusUnauthorized, "missing or wrong webhook token"
	}
	if !validName(name) {
		return outcomeBadName, http.StatusBadRequest, "hook name must be 1-64 characters of A-Z a-z 0-9 _ -"
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return outcomeTooLarge, http.StatusRequestEntityTooLarge, "body larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes"
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return outcomeTooLarge, http.StatusRequestEntityTooLarge, "body larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes"
		}
		return outcomeBadBody, http.StatusBadRequest, "could not read body"
	}
	if len(body) == 0 {
		return outcomeBadBody, http.StatusBadRequest, "empty body"
	}
	if !s.cfg.AllowNonJSON && !jsonvalid.Valid(body) {
		return outcomeBadBody, http.StatusBadRequest, "body is not valid JSON"
	}
	if err := s.publish(protocol.WebhookSubject(name), body); err != nil {
		s.log.Error("webhook not published", "name", name, logkey.Err, err)
		return outcomeNATSDown, http.StatusServiceUnavailable, "NATS unavailable, retry later"
	}
	s.bytes.Add(float64(len(body)))
	if s.log.Enabled(context.Background(), slog.LevelInfo) { // its arguments cost allocations even when not logged
		s.log.Info("webhook published", logkey.Subject, protocol.WebhookSubject(name), "bytes", len(body))
	}
	return outcomePublished, http.StatusOK, "OK"
}

// errNATSUnavailable is returned (wrapped) when the connection is not up; the body is not queued.
var errNATSUnavailable = errors.New("webhooksink: NATS not connected")

// publish hands body to the NATS server and confirms it with a flush round trip (shared with
// the webhooks published at the same time, see confirmer). While disconnected it fails at once
// instead of parking the body in the reconnect buffer.
func (s *Sink) publish(subject string, body []byte) error {
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w (%s)", errNATSUnavailable, st)
	}
	if err := s.nc.Publish(subject, body); err != nil {
		return fmt.Errorf("webhooksink: publish %s: %w", subject, err)
	}
	if err := s.confirm.confirm(); err != nil {
		return fmt.Errorf("webhooksink: confirm publish %s: %w", subject, err)
	}
	return nil
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// Serve serves s on ln until ctx ends, then shuts the HTTP server down gracefully (at most
// 10 s for requests in flight).
func (s *Sink) Serve(ctx context.Context, ln net.Listener) error {
	if err := serve.HTTP(ctx, serve.NewServer(s, s.log), ln, shutdownGrace, nil); err != nil {
		return fmt.Errorf("webhooksink: %w", err)
	}
	return nil
}
