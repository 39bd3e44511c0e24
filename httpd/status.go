package httpd

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/internal/statusfeed"
)

// StatusConfig controls the operator status page, GET /status and GET /status.json
// (docs/status.md). The zero value leaves it off: the routes answer 404. It is on when Token or
// AllowFrom is set (both set: both are required), or when Open is set.
type StatusConfig struct {
	// Token, when set, must come as "Authorization: Bearer <token>" or as ?token=<token> (the
	// page passes the token of its own URL on to its JSON requests). Compared in constant
	// time, never logged.
	Token string
	// AllowFrom, when set, lists the client addresses (CIDRs or single addresses) that may see
	// the page. The client address is the TCP peer, or X-Forwarded-For from a trusted proxy.
	AllowFrom []netip.Prefix
	// Open serves the page to anyone who can reach the listener. Only for a listener on
	// loopback (bevygap dev turns it on).
	Open bool
	// PublishInterval is how often this front door publishes its own numbers (open streams)
	// on bevygap.status.httpd.<instance>, whether or not it serves the page: 0 means every 5 s,
	// negative never.
	PublishInterval time.Duration
}

// Enabled reports whether the status routes are served.
func (c StatusConfig) Enabled() bool { return c.Open || c.Token != "" || len(c.AllowFrom) > 0 }

//go:embed status.html
var statusHTML []byte

// statusCSP allows only the page's own inline style and script and requests to this origin:
// nothing is loaded from anywhere else, so the page works offline.
const statusCSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusAllowed checks the token and the allow-list; false means it answered the refusal.
func (s *Server) statusAllowed(w http.ResponseWriter, r *http.Request) bool {
	c := s.cfg.Status
	if len(c.AllowFrom) > 0 {
		src := s.ips.requestSource(r).Unmap()
		ok := false
		for _, p := range c.AllowFrom {
			if p.Contains(src) {
				ok = true
				break
			}
		}
		if !ok {
			writeText(w, http.StatusForbidden, "forbidden\n")
			return false
		}
	}
	if c.Token != "" {
		got := r.URL.Query().Get("token")
		if h := r.Header.Get("Authorization"); h != "" {
			scheme, tok, _ := strings.Cut(h, " ")
			if strings.EqualFold(scheme, "Bearer") {
				got = strings.TrimSpace(tok)
			}
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(c.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bevygap status"`)
			writeText(w, http.StatusUnauthorized, "unauthorized\n")
			return false
		}
	}
	return true
}

func statusHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer") // the token may be in the URL
	h.Set("X-Frame-Options", "DENY")
}

func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	if !s.statusAllowed(w, r) {
		return
	}
	statusHeaders(w)
	w.Header().Set("Content-Security-Policy", statusCSP)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(statusHTML)
}

func (s *Server) handleStatusJSON(w http.ResponseWriter, r *http.Request) {
	if !s.statusAllowed(w, r) {
		return
	}
	statusHeaders(w)
	b, err := json.Marshal(s.status.View(time.Now()))
	if err != nil {
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("encode: %v\n", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// startStatus publishes this front door's snapshot and, when the page is on, subscribes to
// everyone's snapshots and adds the routes to mux.
func (s *Server) startStatus(mux *http.ServeMux) error {
	c := s.cfg.Status
	if c.Enabled() {
		agg, err := statusfeed.NewAggregator(s.nc)
		if err != nil {
			return fmt.Errorf("httpd: status: %w", err)
		}
		s.status = agg
		mux.HandleFunc("GET /status", s.handleStatusPage)
		mux.HandleFunc("GET /status.json", s.handleStatusJSON)
	}
	if c.PublishInterval >= 0 {
		instance, started := statusfeed.NewInstanceID(), time.Now().UTC()
		host := statusfeed.Hostname()
		go statusfeed.Publish(s.stopCtx, s.nc, c.PublishInterval, s.log, func(_ context.Context, now time.Time) statusfeed.Snapshot {
			return statusfeed.Snapshot{Role: statusfeed.RoleHTTPD, Instance: instance, Host: host, At: now.UTC(), Started: started,
				OpenStreams: s.streams.open()}
		})
	}
	return nil
}

// closeStatus stops listening to snapshots.
func (s *Server) closeStatus() {
	if s.status != nil {
		_ = s.status.Close()
	}
}
