package edgegapsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

// maxRequestBody bounds request bodies.
const maxRequestBody = 1 << 20

// endpointUnknown counts requests that match no route.
const endpointUnknown edgegap.Endpoint = "unknown"

// authKind says which credential a route needs.
type authKind int

const (
	authAPIKey  authKind = iota // one of Config.APIKeys
	authContext                 // the deployment's context token
	authDelete                  // the deployment's delete token
	authNone                    // admin API
)

type route struct {
	method   string
	pattern  []string // literal segments, "*" captures
	endpoint edgegap.Endpoint
	auth     authKind
	handle   func(s *Simulator, r *http.Request, args []string) (int, any, error)
}

// routes is the read-only routing table of the Edgegap API.
var routes = []route{
	{http.MethodGet, []string{"v1", "app", "*"}, edgegap.EndpointAppGet, authAPIKey, (*Simulator).handleAppGet},
	{http.MethodGet, []string{"v1", "app", "*", "version", "*"}, edgegap.EndpointAppVersionGet, authAPIKey, (*Simulator).handleVersionGet},
	{http.MethodPost, []string{"v1", "session"}, edgegap.EndpointSessionCreate, authAPIKey, (*Simulator).handleSessionCreate},
	{http.MethodGet, []string{"v1", "session", "*"}, edgegap.EndpointSessionGet, authAPIKey, (*Simulator).handleSessionGet},
	{http.MethodDelete, []string{"v1", "session", "*"}, edgegap.EndpointSessionDelete, authAPIKey, (*Simulator).handleSessionDelete},
	{http.MethodGet, []string{"v1", "sessions"}, edgegap.EndpointSessionList, authAPIKey, (*Simulator).handleSessionList},
	{http.MethodGet, []string{"v1", "context", "*", "*"}, edgegap.EndpointContextGet, authContext, (*Simulator).handleContextGet},
	{http.MethodDelete, []string{"v1", "self", "stop", "*", "*"}, edgegap.EndpointSelfStop, authDelete, (*Simulator).handleSelfStop},
}

// splitPath splits a URL path into segments, ignoring empty ones, so "//v1/session" and
// "/v1/session/" both mean /v1/session.
func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, x := range parts {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

func match(pattern, segs []string) ([]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	var args []string
	for i, p := range pattern {
		if p == "*" {
			args = append(args, segs[i])
		} else if p != segs[i] {
			return nil, false
		}
	}
	return args, true
}

// ServeHTTP serves the Edgegap API (/v1/...) and the admin API (/admin/...).
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs := splitPath(r.URL.Path)
	if len(segs) > 0 && segs[0] == "admin" {
		s.serveAdmin(w, r, segs[1:])
		return
	}
	var found *route
	var args []string
	methodMismatch := false
	for i := range routes {
		a, ok := match(routes[i].pattern, segs)
		if !ok {
			continue
		}
		if routes[i].method != r.Method {
			methodMismatch = true
			continue
		}
		found, args = &routes[i], a
		break
	}
	if found == nil {
		status := http.StatusNotFound
		if methodMismatch {
			status = http.StatusMethodNotAllowed
		}
		s.count(endpointUnknown, status)
		writeJSON(w, status, edgegap.ErrorBody{Message: http.StatusText(status)})
		return
	}
	status, body, header := s.serveAPI(r, found, args)
	for k, v := range header {
		w.Header().Set(k, v)
	}
	s.count(found.endpoint, status)
	writeJSON(w, status, body)
}

// serveAPI runs one API call through latency, auth, fault injection and its handler.
func (s *Simulator) serveAPI(r *http.Request, rt *route, args []string) (int, any, map[string]string) {
	s.mu.Lock()
	ef, key, hasFault := s.faults.forEndpoint(rt.endpoint)
	closed := s.closed
	s.mu.Unlock()
	if hasFault && ef.Latency > 0 {
		t := time.NewTimer(ef.Latency.D())
		select {
		case <-r.Context().Done():
			t.Stop()
			return 499, edgegap.ErrorBody{Message: "client gone"}, nil
		case <-t.C:
		}
	}
	if closed {
		return http.StatusServiceUnavailable, edgegap.ErrorBody{Message: errClosed.Error()}, nil
	}
	if !s.authorized(r, rt, args) {
		return http.StatusUnauthorized, edgegap.ErrorBody{Message: edgegap.MessageUnauthorized}, nil
	}
	if hasFault {
		if status, retryAfter, inject := s.injectFault(rt.endpoint, key); inject {
			var hdr map[string]string
			if retryAfter > 0 {
				hdr = map[string]string{"Retry-After": strconv.Itoa(retryAfter)}
			}
			msg := "injected fault"
			if status == http.StatusTooManyRequests {
				msg = edgegap.MessageRateLimited
			}
			return status, edgegap.ErrorBody{Message: msg}, hdr
		}
	}
	status, body, err := rt.handle(s, r, args)
	if err != nil {
		var ae *errAPI
		if errors.As(err, &ae) {
			return ae.status, edgegap.ErrorBody{Message: ae.message}, nil
		}
		return http.StatusInternalServerError, edgegap.ErrorBody{Message: err.Error()}, nil
	}
	return status, body, nil
}

// injectFault decides whether to fail this call; it consumes FailNext.
func (s *Simulator) injectFault(e, key edgegap.Endpoint) (status, retryAfter int, inject bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ef, ok := s.faults.Endpoints[key]
	if !ok {
		return 0, 0, false
	}
	switch {
	case ef.FailNext > 0:
		ef.FailNext--
		s.faults.Endpoints[key] = ef
	case s.roll(ef.ErrorRate):
	default:
		return 0, 0, false
	}
	status = ef.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	retryAfter = ef.RetryAfterSeconds
	if retryAfter == 0 && status == http.StatusTooManyRequests {
		retryAfter = 1
	}
	s.log.Info("injected fault", "endpoint", e, "status", status)
	return status, retryAfter, true
}

// authorized checks the authorization header against the credential the route needs.
func (s *Simulator) authorized(r *http.Request, rt *route, args []string) bool {
	got := r.Header.Get("Authorization")
	if got == "" {
		return false
	}
	switch rt.auth {
	case authAPIKey:
		ok := false
		for _, k := range s.cfg.APIKeys {
			if subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1 {
				ok = true
			}
		}
		return ok
	case authContext, authDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		d, ok := s.deployments[args[0]]
		if !ok {
			return true // the handler answers 404
		}
		want := d.contextTok
		if rt.auth == authDelete {
			want = d.deleteTok
		}
		return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
	return true
}

// count records one API call.
func (s *Simulator) count(e edgegap.Endpoint, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.calls[e]
	if m == nil {
		m = map[int]uint64{}
		s.calls[e] = m
	}
	m[status]++
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"message":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// decodeBody reads a JSON request body into v; malformed JSON is a 400.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return apiErr(http.StatusBadRequest, "cannot read body: "+err.Error())
	}
	if len(data) > maxRequestBody {
		return apiErr(http.StatusRequestEntityTooLarge, "body too large")
	}
	return decodeJSON(data, v)
}

// decodeJSON unmarshals data into v, turning any JSON error into a 400.
func decodeJSON(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return apiErr(http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return nil
}

func (s *Simulator) handleAppGet(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[args[0]]
	if !ok {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageAppNotFound)
	}
	return http.StatusOK, s.appView(a), nil
}

func (s *Simulator) handleVersionGet(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.version(args[0], args[1], http.StatusNotFound)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.versionView(v), nil
}

func (s *Simulator) handleSessionCreate(r *http.Request, _ []string) (int, any, error) {
	var req edgegap.SessionCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, err := s.createSessionLocked(req)
	if err != nil {
		return 0, nil, err
	}
	out := edgegap.SessionCreated{SessionID: sess.id, App: sess.app, Version: sess.versionNm}
	if req.DeploymentRequestID != "" {
		out.DeploymentRequestID = edgegap.Ptr(req.DeploymentRequestID)
	}
	if len(req.Selectors) > 0 {
		out.Selectors = req.Selectors
	}
	if req.WebhookURL != "" {
		out.WebhookURL = edgegap.Ptr(req.WebhookURL)
	}
	s.log.Info("session created", "session", sess.id, "deployment", sess.dep.id, "users", len(sess.users))
	return edgegap.StatusCreated, out, nil
}

func (s *Simulator) handleSessionGet(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[args[0]]
	if !ok {
		if _, gone := s.gone[args[0]]; gone {
			return 0, nil, apiErr(edgegap.StatusSessionGone, edgegap.MessageTerminated)
		}
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageSessionNotFound)
	}
	return http.StatusOK, s.sessionView(sess), nil
}

func (s *Simulator) handleSessionDelete(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteSessionLocked(args[0]); err != nil {
		return 0, nil, err
	}
	s.log.Info("session deleted", "session", args[0])
	return http.StatusOK, edgegap.SessionDeleted{Message: edgegap.MessageSessionDeleted, SessionID: args[0]}, nil
}

func (s *Simulator) handleSessionList(r *http.Request, _ []string) (int, any, error) {
	page, limit := 1, 20
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
		page = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all := sortedSessions(s.sessions)
	numPages := max(1, (len(all)+limit-1)/limit)
	from := min((page-1)*limit, len(all))
	to := min(from+limit, len(all))
	data := make([]edgegap.SessionSummary, 0, to-from)
	for _, sess := range all[from:to] {
		data = append(data, s.summaryView(sess, false))
	}
	p := edgegap.Pagination{Number: page, Paginator: edgegap.Paginator{NumPages: numPages},
		HasNext: page < numPages, HasPrevious: page > 1}
	if p.HasNext {
		p.NextPageNumber = edgegap.Ptr(page + 1)
	}
	if p.HasPrevious {
		p.PreviousPageNumber = edgegap.Ptr(page - 1)
	}
	return http.StatusOK, edgegap.SessionList{Data: data, TotalCount: edgegap.Ptr(len(all)), Pagination: &p}, nil
}

func (s *Simulator) handleContextGet(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[args[0]]
	if !ok || strconv.Itoa(d.securityNum) != args[1] {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageDeploymentNotFound)
	}
	return http.StatusOK, s.deploymentView(d), nil
}

func (s *Simulator) handleSelfStop(_ *http.Request, args []string) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[args[0]]
	if !ok || strconv.Itoa(d.accessPoint) != args[1] {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageDeploymentNotFound)
	}
	s.terminateLocked(d, "self-stop")
	return http.StatusOK, edgegap.StopResponse{Message: edgegap.MessageSelfStopped}, nil
}
