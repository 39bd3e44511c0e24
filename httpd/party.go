package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/names"
	"github.com/bevygap-go/bevygap/protocol"
)

// The party routes (docs/play-together.md) relay one party operation each to the matchmaker as a
// NATS request on matchmaker.party.<game>.<version> (protocol.PartyRequest, reply
// protocol.PartyReply):
//
//	POST /matchmaker/party/{game}/{version}               create; the caller becomes the leader
//	POST /matchmaker/party/{game}/{version}/{code}/join   join with a code
//	POST /matchmaker/party/{game}/{version}/{code}/leave  leave          (token)
//	POST /matchmaker/party/{game}/{version}/{code}/kick   remove member  (token, {"member"})
//	GET  /matchmaker/party/{game}/{version}/{code}        show the party (token)
//
// The party token travels in an "Authorization: Bearer <token>" header, or in a POST's JSON
// body {"token":"…"}; never in the URL. Leave, kick and get need it; on create and join it is
// optional: the caller's token of a party it is still in (the matchmaker then refuses with 409,
// or, for the same party, answers the membership again). Answers are JSON: the reply's party, member and
// token with 200, or {"error":{"code":N,"message":"…"}} with the HTTP status N — the
// matchmaker's PlayError code, or the front door's own (400 bad input, 403 origin, 413 body
// too large, 429 rate limited, 503 no matchmaker or shutting down, 504 no answer in time).

const routeParty = "party"

// maxMemberIDLen is the longest member id a kick may name.
const maxMemberIDLen = 64

// partyBody is the optional JSON body of a party POST.
type partyBody struct {
	Token  string `json:"token"`
	Member string `json:"member"`
}

// registerParty adds the party routes to mux.
func (s *Server) registerParty(mux *http.ServeMux) {
	mux.HandleFunc("POST /matchmaker/party/{game}/{version}", func(w http.ResponseWriter, r *http.Request) {
		s.handleParty(w, r, protocol.PartyOpCreate)
	})
	mux.HandleFunc("POST /matchmaker/party/{game}/{version}/{code}/{op}", func(w http.ResponseWriter, r *http.Request) {
		switch op := r.PathValue("op"); op {
		case protocol.PartyOpJoin, protocol.PartyOpLeave, protocol.PartyOpKick:
			s.handleParty(w, r, op)
		default:
			s.partyFail(w, "not_found", http.StatusNotFound, "unknown party operation "+strconv.Quote(op)+" (want join, leave or kick)")
		}
	})
	mux.HandleFunc("GET /matchmaker/party/{game}/{version}/{code}", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Allow", "GET")
			writeText(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		s.handleParty(w, r, protocol.PartyOpGet)
	})
}

// handleParty checks one party operation and relays it to the matchmaker.
func (s *Server) handleParty(w http.ResponseWriter, r *http.Request, op string) {
	start := time.Now()
	if !s.cors.permits(r) {
		s.partyFail(w, "origin", http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.begin() {
		s.partyFail(w, "shutting_down", http.StatusServiceUnavailable, msgShutdown)
		return
	}
	defer s.wg.Done()
	subject, err := protocol.MatchmakerPartySubject(r.PathValue("game"), r.PathValue("version"))
	if err != nil {
		s.partyFail(w, "invalid_name", http.StatusBadRequest, nameError(err))
		return
	}
	req, reason, msg := s.partyRequest(r, op)
	if reason != "" {
		code := http.StatusBadRequest
		if reason == "body_too_large" {
			code = http.StatusRequestEntityTooLarge
		}
		s.partyFail(w, reason, code, msg)
		return
	}
	src := s.ips.requestSource(r)
	ip, err := s.ips.placement(src, r.URL.Query().Get("client_ip"))
	if err != nil {
		s.partyFail(w, "bad_client_ip", http.StatusBadRequest, "Invalid client_ip")
		return
	}
	req.ClientIP = ip.String()
	if !s.partyLimiter.allow(limitKey(src), time.Now()) {
		s.partyFail(w, "rate_limited", http.StatusTooManyRequests, msgRateLimited)
		return
	}
	outcome := s.relayParty(w, r, subject, req)
	s.metrics.requests.WithLabelValues(routeParty, outcome).Inc()
	// Never log the token (nor the body that carries it). A get is a waiting leader's poll: debug.
	level := slog.LevelInfo
	if op == protocol.PartyOpGet && outcome == outcomeOK {
		level = slog.LevelDebug
	}
	s.log.Log(r.Context(), level, "party request", "route", routeParty, "op", op, "peer", src, logkey.Game, r.PathValue("game"),
		logkey.Version, r.PathValue("version"), "code", req.Code, "outcome", outcome,
		"duration", time.Since(start).Round(time.Millisecond))
}

// partyRequest reads and checks the operation's code, token, member and body. A non-empty
// reason (the rejects label) means the request is refused with msg.
func (s *Server) partyRequest(r *http.Request, op string) (req protocol.PartyRequest, reason, msg string) {
	req.Op = op
	var body partyBody
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, "body_too_large", "request body too large"
		}
		return req, "bad_request", "could not read request body"
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			return req, "bad_request", `request body must be a JSON object like {"token":"…","member":"…"}`
		}
	}
	if op != protocol.PartyOpCreate {
		req.Code = r.PathValue("code")
		if !protocol.ValidPartyCode(req.Code) {
			return req, "bad_party_code", "invalid party code: want " + strconv.Itoa(protocol.PartyCodeLen) +
				" characters of " + protocol.PartyCodeAlphabet
		}
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return req, "bad_request", `Authorization header must be "Bearer <party token>"`
	}
	switch {
	case token == "":
		token = body.Token
	case body.Token != "" && body.Token != token:
		return req, "bad_request", "two different party tokens (header and body)"
	}
	switch op {
	case protocol.PartyOpLeave, protocol.PartyOpKick, protocol.PartyOpGet:
		if !protocol.ValidPartyToken(token) {
			return req, "bad_party_token", "party token missing or malformed (send it as Authorization: Bearer <token>)"
		}
		req.Token = token
	default: // create, join: a token the caller holds (of another party, or of this one) is optional
		if token != "" && !protocol.ValidPartyToken(token) {
			return req, "bad_party_token", "party token malformed"
		}
		req.Token = token
	}
	if op == protocol.PartyOpKick {
		if !names.Valid(body.Member, maxMemberIDLen, "_-") {
			return req, "bad_request", `kick needs the member id to remove: {"member":"…"}`
		}
		req.Member = body.Member
	}
	return req, "", ""
}

// bearer returns the token of an "Authorization: Bearer <token>" header value; ("", true) for
// no header, false for a header of another form.
func bearer(h string) (string, bool) {
	if h == "" {
		return "", true
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// relayParty sends req to the matchmaker and writes its answer; it returns the outcome.
func (s *Server) relayParty(w http.ResponseWriter, r *http.Request, subject string, req protocol.PartyRequest) string {
	if !s.natsUp(r.Context().Done()) {
		s.partyError(w, http.StatusServiceUnavailable, msgNATSDown)
		return outcomeFailed
	}
	payload, err := protocol.Marshal(req)
	if err != nil {
		s.partyError(w, http.StatusInternalServerError, msgSendFailed)
		return outcomeFailed
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PartyTimeout)
	defer cancel()
	msg, err := s.nc.RequestWithContext(ctx, subject, payload)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		s.partyError(w, http.StatusServiceUnavailable, msgNoMatchmaker)
		return outcomeNoMatchmaker
	case r.Context().Err() != nil:
		return outcomeClientGone
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		s.partyError(w, http.StatusGatewayTimeout, msgTimeout)
		return outcomeTimeout
	default:
		s.log.Warn("httpd: party request", logkey.Subject, subject, logkey.Err, err)
		s.partyError(w, http.StatusInternalServerError, msgSendFailed)
		return outcomeFailed
	}
	if code, text, ok := serviceError(msg); ok {
		s.partyError(w, code, text)
		return outcomeMMError
	}
	var reply protocol.PartyReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		s.log.Warn("httpd: party reply is not a PartyReply", logkey.Subject, subject, logkey.Err, err)
		s.partyError(w, http.StatusBadGateway, "malformed answer from the matchmaker")
		return outcomeFailed
	}
	if reply.Error != nil {
		code := http.StatusInternalServerError
		if c, err := parseStatus(strconv.Itoa(int(reply.Error.Code))); err == nil {
			code = c
		}
		s.partyError(w, code, reply.Error.Message)
		return outcomeMMError
	}
	// Relayed as the matchmaker wrote it (it holds the caller's token on create and join).
	writePartyJSON(w, http.StatusOK, msg.Data)
	return outcomeOK
}

// partyFail refuses a party request before NATS, counting it.
func (s *Server) partyFail(w http.ResponseWriter, reason string, code int, msg string) {
	s.metrics.rejects.WithLabelValues(reason).Inc()
	s.metrics.requests.WithLabelValues(routeParty, outcomeRejected).Inc()
	s.partyError(w, code, msg)
}

// partyError answers {"error":{"code":code,"message":msg}} with HTTP status code.
func (s *Server) partyError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	b, err := protocol.Marshal(protocol.PartyReply{Error: &protocol.PlayError{Code: uint16(code), Message: msg}})
	if err != nil {
		writeText(w, code, msg)
		return
	}
	writePartyJSON(w, code, b)
}

// writePartyJSON writes a JSON body b (a newline is added) with status code.
func writePartyJSON(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// streamBody is the optional JSON body of the chunked POST /matchmaker/request/{game}/{version}:
// the play-together fields of the request. An empty body is a plain request.
type streamBody struct {
	Queue string             `json:"queue,omitempty"`
	Props protocol.Props     `json:"props,omitempty"`
	Party *protocol.PartyRef `json:"party,omitempty"`
}

// readStreamBody reads and checks the chunked route's body; false means it answered an error.
func (s *Server) readStreamBody(w http.ResponseWriter, r *http.Request, route string) (streamBody, bool) {
	var body streamBody
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.reject(w, route, "body_too_large", http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			s.reject(w, route, "bad_request", http.StatusBadRequest, "could not read request body")
		}
		return body, false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return body, true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.reject(w, route, "bad_request", http.StatusBadRequest,
			`request body must be empty or a JSON object {"queue","props","party"}: `+err.Error())
		return body, false
	}
	if dec.More() {
		s.reject(w, route, "bad_request", http.StatusBadRequest, "request body has more than one JSON document")
		return body, false
	}
	if err := protocol.ValidatePlay(body.Queue, body.Props, body.Party); err != nil {
		s.reject(w, route, "bad_play_request", http.StatusBadRequest, playError(err))
		return body, false
	}
	return body, true
}

// playError turns a protocol.ValidatePlay error into a message for the player.
func playError(err error) string {
	return strings.TrimPrefix(err.Error(), protocol.ErrInvalidPlay.Error()+": ")
}

// streamTimeout bounds a whole streaming request: StreamTimeout, or PlayStreamTimeout for a
// play-together request.
func (s *Server) streamTimeout(req protocol.MatchmakerRequest) time.Duration {
	if req.Play() {
		return s.cfg.PlayStreamTimeout
	}
	return s.cfg.StreamTimeout
}
