package httpd

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

const (
	routeStream    = "stream"
	routeWannaplay = "wannaplay"
)

// readBody consumes the (ignored) request body within the size limit; false means it answered
// an error.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, route string) bool {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.reject(w, route, "body_too_large", http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			s.reject(w, route, "bad_request", http.StatusBadRequest, "could not read request body")
		}
		return false
	}
	return true
}

// handleStream serves POST /matchmaker/request/{game}/{version}: the session request stream as
// chunked HTTP, one feedback JSON document per line, each flushed as it arrives. Errors found
// before the first feedback are HTTP status codes; later ones end the stream with an Error line.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	game, version := r.PathValue("game"), r.PathValue("version")
	if !s.cors.permits(r) {
		s.reject(w, routeStream, "origin", http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.begin() {
		s.reject(w, routeStream, "shutting_down", http.StatusServiceUnavailable, msgShutdown)
		return
	}
	defer s.wg.Done()
	play, ok := s.readStreamBody(w, r, routeStream) // party.go: optional {"queue","props","party"}
	if !ok {
		return
	}
	subject, err := protocol.MatchmakerRequestSubject(game, version)
	if err != nil {
		s.reject(w, routeStream, "invalid_name", http.StatusBadRequest, nameError(err))
		return
	}
	src := s.ips.requestSource(r)
	key := limitKey(src)
	ip, err := s.ips.placement(src, r.URL.Query().Get("client_ip"))
	if err != nil {
		s.reject(w, routeStream, "bad_client_ip", http.StatusBadRequest, "Invalid client_ip")
		return
	}
	if reason := s.streams.acquire(key); reason != "" {
		code := http.StatusTooManyRequests
		if reason == "too_many_streams" {
			code = http.StatusServiceUnavailable
		}
		s.reject(w, routeStream, reason, code, "too many open connections")
		return
	}
	defer s.streams.release(key)
	if !s.limiter.allow(key, time.Now()) {
		s.reject(w, routeStream, "rate_limited", http.StatusTooManyRequests, msgRateLimited)
		return
	}
	mreq := protocol.MatchmakerRequest{ClientIP: ip.String(), Game: game, Version: version,
		Queue: play.Queue, Props: play.Props, Party: play.Party}
	payload, err := protocol.Marshal(mreq)
	if err != nil {
		writeText(w, http.StatusInternalServerError, msgSendFailed)
		return
	}
	s.metrics.openStreams.Inc()
	defer s.metrics.openStreams.Dec()

	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the body is read; the server's read timeout must not cancel us
	started := false
	send := func(b []byte) error {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		line := make([]byte, 0, len(b)+1)
		line = append(append(line, b...), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		return rc.Flush()
	}
	res := s.relay(subject, payload, s.streamTimeout(mreq), start, r.Context().Done(), s.stopCtx.Done(), send)
	if res.outcome == "" {
		res = relayResult{outcome: outcomeShutdown, errMsg: msgShutdown, errCode: 503, reply: res.reply}
	}
	s.cancelAbandoned(game, version, res.reply, res.outcome) // cancel.go; before a last write that may block
	if res.errMsg != "" {
		if started {
			if b, err := protocol.Marshal(protocol.Error(res.errCode, res.errMsg)); err == nil {
				_ = send(b)
			}
		} else {
			w.Header().Set("Retry-After", "10")
			writeText(w, int(res.errCode), res.errMsg)
		}
	}
	s.metrics.requests.WithLabelValues(routeStream, res.outcome).Inc()
	s.log.Info("session request", "route", routeStream, "peer", src, logkey.Game, game, logkey.Version, version,
		"outcome", res.outcome, "duration", time.Since(start).Round(time.Millisecond))
}

// handleWannaplay serves POST /matchmaker/wannaplay and GET /wannaplay: a one-shot
// session.gensession request whose reply JSON is the response body. Timeout -> 408, no
// matchmaker -> 503, a matchmaker service error -> its code and message (as the reference).
func (s *Server) handleWannaplay(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method == http.MethodHead { // the GET pattern matches HEAD too; a HEAD must not start a session
		w.Header().Set("Allow", "GET, POST")
		writeText(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if !s.cors.permits(r) {
		s.reject(w, routeWannaplay, "origin", http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.begin() {
		s.reject(w, routeWannaplay, "shutting_down", http.StatusServiceUnavailable, msgShutdown)
		return
	}
	defer s.wg.Done()
	if !s.readBody(w, r, routeWannaplay) {
		return
	}
	src := s.ips.requestSource(r)
	ip, err := s.ips.placement(src, r.URL.Query().Get("client_ip"))
	if err != nil {
		s.reject(w, routeWannaplay, "bad_client_ip", http.StatusBadRequest, "Invalid client_ip")
		return
	}
	if !s.limiter.allow(limitKey(src), time.Now()) {
		s.reject(w, routeWannaplay, "rate_limited", http.StatusTooManyRequests, msgRateLimited)
		return
	}
	outcome := s.wannaplay(w, r, ip.String())
	s.metrics.requests.WithLabelValues(routeWannaplay, outcome).Inc()
	s.log.Info("session request", "route", routeWannaplay, "peer", src, "outcome", outcome,
		"duration", time.Since(start).Round(time.Millisecond))
}

func (s *Server) wannaplay(w http.ResponseWriter, r *http.Request, clientIP string) string {
	if !s.natsUp(r.Context().Done()) {
		writeText(w, http.StatusServiceUnavailable, msgNATSDown)
		return outcomeFailed
	}
	payload, err := protocol.Marshal(protocol.GenSessionRequest{ClientIP: clientIP})
	if err != nil {
		writeText(w, http.StatusInternalServerError, "Unhandled error")
		return outcomeFailed
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.GenSessionTimeout)
	defer cancel()
	// Shutdown does not cut a one-shot request short: it is bounded by GenSessionTimeout and
	// the drain deadline.
	msg, err := s.nc.RequestWithContext(ctx, protocol.SubjectGenSession, payload)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		writeText(w, http.StatusServiceUnavailable, "No service responders")
		return outcomeNoMatchmaker
	case r.Context().Err() != nil:
		return outcomeClientGone
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		writeText(w, http.StatusRequestTimeout, "Request timeout")
		return outcomeTimeout
	default:
		s.log.Warn("httpd: gensession request", logkey.Err, err)
		writeText(w, http.StatusInternalServerError, "Unhandled error")
		return outcomeFailed
	}
	if code, text, ok := serviceError(msg); ok {
		writeText(w, code, text)
		return outcomeMMError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(msg.Data)
	return outcomeReady
}

// serviceError extracts the NATS micro service error headers of a reply. A code that is not a
// valid HTTP error status becomes 500.
func serviceError(msg *nats.Msg) (code int, text string, ok bool) {
	if msg.Header == nil {
		return 0, "", false
	}
	c := msg.Header.Get("Nats-Service-Error-Code")
	if c == "" {
		return 0, "", false
	}
	code = http.StatusInternalServerError
	if n, err := parseStatus(c); err == nil {
		code = n
	}
	return code, msg.Header.Get("Nats-Service-Error"), true
}

// parseStatus parses an HTTP error status code (400-599).
func parseStatus(s string) (int, error) {
	n := 0
	if len(s) != 3 {
		return 0, errors.New("not a status code")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a status code")
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 400 || n > 599 {
		return 0, errors.New("not an error status code")
	}
	return n, nil
}
