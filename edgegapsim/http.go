package edgegapsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
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
)

// apiHandler answers one API call: status, JSON body, or an error (an *errAPI for an Edgegap
// error answer).
type apiHandler func(s *Simulator, r *http.Request) (int, any, error)

// route is one endpoint of the Edgegap API.
type route struct {
	method   string
	path     string // a ServeMux path pattern
	endpoint edgegap.Endpoint
	auth     authKind
	handle   apiHandler
}

// routes is the read-only routing table of the Edgegap API. Path wildcards: {app}, {version},
// {id} (a session or deployment id) and {token} (the security number of a context URL, the
// access point of a self-stop URL).
var routes = []route{
	{http.MethodGet, "/v1/app/{app}", edgegap.EndpointAppGet, authAPIKey, (*Simulator).handleAppGet},
	{http.MethodGet, "/v1/app/{app}/version/{version}", edgegap.EndpointAppVersionGet, authAPIKey, (*Simulator).handleVersionGet},
	{http.MethodPost, "/v1/session", edgegap.EndpointSessionCreate, authAPIKey, (*Simulator).handleSessionCreate},
	{http.MethodGet, "/v1/session/{id}", edgegap.EndpointSessionGet, authAPIKey, (*Simulator).handleSessionGet},
	{http.MethodDelete, "/v1/session/{id}", edgegap.EndpointSessionDelete, authAPIKey, (*Simulator).handleSessionDelete},
	{http.MethodGet, "/v1/sessions", edgegap.EndpointSessionList, authAPIKey, (*Simulator).handleSessionList},
	{http.MethodDelete, "/v1/session/{id}/users", edgegap.EndpointSessionUsersDelete, authAPIKey, (*Simulator).handleSessionUsersDelete},
	{http.MethodGet, "/v1/context/{id}/{token}", edgegap.EndpointContextGet, authContext, (*Simulator).handleContextGet},
	{http.MethodDelete, "/v1/self/stop/{id}/{token}", edgegap.EndpointSelfStop, authDelete, (*Simulator).handleSelfStop},
}

// newMux routes the Edgegap API (see routes) and the admin API. Every route serves exactly its
// method (a GET pattern of ServeMux also takes HEAD; these do not). An API path with another
// method is 405, any other path 404, both counted under endpointUnknown; the admin API answers
// 404 to anything it does not serve and is not counted.
func (s *Simulator) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	paths := map[string]bool{}
	for i := range routes {
		rt := &routes[i]
		mux.Handle(rt.method+" "+rt.path, exactMethod(rt.method, s.methodNotAllowed, func(w http.ResponseWriter, r *http.Request) {
			s.serveRoute(w, r, rt)
		}))
		if !paths[rt.path] {
			paths[rt.path] = true
			mux.HandleFunc(rt.path, s.methodNotAllowed)
		}
	}
	s.adminRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/"); first == "admin" {
			adminNotFound(w, r)
			return
		}
		s.count(endpointUnknown, http.StatusNotFound)
		writeJSON(w, http.StatusNotFound, edgegap.ErrorBody{Message: http.StatusText(http.StatusNotFound)})
	})
	return mux
}

// exactMethod serves h for method only, and other for any other method (HEAD on a GET route).
func exactMethod(method string, other, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			other(w, r)
			return
		}
		h(w, r)
	}
}

func (s *Simulator) methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	s.count(endpointUnknown, http.StatusMethodNotAllowed)
	writeJSON(w, http.StatusMethodNotAllowed, edgegap.ErrorBody{Message: http.StatusText(http.StatusMethodNotAllowed)})
}

// ServeHTTP serves the Edgegap API (/v1/...) and the admin API (/admin/...). Empty path
// segments are ignored, so "//v1/session" (as the Rust client sends it) and "/v1/session/" both
// mean /v1/session.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, withCleanPath(r))
}

// withCleanPath returns r with the empty segments of its path dropped. "." and ".." stay
// segments of their own (ServeMux would otherwise redirect to a path without them).
func withCleanPath(r *http.Request) *http.Request {
	if plainPath(r.URL) {
		return r // nothing to clean: rewritePath would give the same path
	}
	return rewritePath(r)
}

// rewritePath is withCleanPath for any path.
func rewritePath(r *http.Request) *http.Request {
	segs := strings.Split(r.URL.Path, "/")
	path := make([]string, 0, len(segs))
	raw := make([]string, 0, len(segs))
	for _, seg := range segs {
		if seg == "" {
			continue
		}
		path = append(path, seg)
		if seg == "." || seg == ".." {
			raw = append(raw, strings.ReplaceAll(seg, ".", "%2E"))
		} else {
			raw = append(raw, url.PathEscape(seg))
		}
	}
	u := *r.URL
	u.Path = "/" + strings.Join(path, "/")
	u.RawPath = "/" + strings.Join(raw, "/")
	r2 := *r
	r2.URL = &u
	return &r2
}

// plainPath reports whether u's path is already clean: it starts with "/", has no empty, "."
// or ".." segment (but for the path "/"), and only unreserved characters (which no escaping
// changes), and was sent without escapes. withCleanPath would rewrite it to itself.
func plainPath(u *url.URL) bool {
	p := u.Path
	if u.RawPath != "" || p == "" || p[0] != '/' {
		return false
	}
	if p == "/" {
		return true
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c == '/' {
				if seg := p[segStart:i]; seg == "" || seg == "." || seg == ".." {
					return false
				}
				segStart = i + 1
				continue
			}
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
				return false
			}
			continue
		}
		if seg := p[segStart:]; seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// serveRoute answers one API call and counts it.
func (s *Simulator) serveRoute(w http.ResponseWriter, r *http.Request, rt *route) {
	status, body, header := s.serveAPI(r, rt)
	for k, v := range header {
		w.Header().Set(k, v)
	}
	s.count(rt.endpoint, status)
	s.writeAPI(w, status, body)
}

// jsonBody is a reusable buffer for an answer's JSON.
type jsonBody struct{ b []byte }

// writeAPI is writeJSON (the same bytes) with edgegap.AppendJSON, which writes the session
// models without reflection, into a buffer of the simulator's pool instead of a new one.
func (s *Simulator) writeAPI(w http.ResponseWriter, status int, body any) {
	jb, _ := s.bodies.Get().(*jsonBody)
	if jb == nil {
		jb = new(jsonBody)
	}
	data, err := edgegap.AppendJSON(jb.b[:0], body)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(encodeFailed)
	} else {
		data = append(data, '\n')
		jb.b = data
	}
	writeBody(w, status, data)
	if cap(jb.b) <= 64<<10 { // an unusually large answer (a long list) is not kept
		s.bodies.Put(jb)
	}
}

// serveAPI runs one API call through latency, auth, fault injection and its handler.
func (s *Simulator) serveAPI(r *http.Request, rt *route) (int, any, map[string]string) {
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
		case <-s.stopping:
			t.Stop()
			return http.StatusServiceUnavailable, edgegap.ErrorBody{Message: errClosed.Error()}, nil
		case <-t.C:
		}
	}
	if closed {
		return http.StatusServiceUnavailable, edgegap.ErrorBody{Message: errClosed.Error()}, nil
	}
	if !s.authorized(r, rt) {
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
	status, body, err := rt.handle(s, r)
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
	s.log.Info("injected fault", logkey.Endpoint, e, "status", status)
	return status, retryAfter, true
}

// authorized checks the authorization header against the credential the route needs.
func (s *Simulator) authorized(r *http.Request, rt *route) bool {
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
		d, ok := s.deployments[r.PathValue("id")]
		if !ok {
			return true // the handler answers 404
		}
		want := d.contextTok
		if rt.auth == authDelete {
			want = d.deleteTok
		}
		return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
	return false
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

// encodeFailed is the answer (status 500) to a body that does not encode.
const encodeFailed = `{"message":"encode response"}` + "\n"

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(encodeFailed)
	} else {
		data = append(data, '\n')
	}
	writeBody(w, status, data)
}

// writeBody answers status with the JSON data.
func writeBody(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
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
	if err := edgegap.Unmarshal(data, v); err != nil { // json.Unmarshal, faster for a session create
		return apiErr(http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return nil
}

func (s *Simulator) handleAppGet(r *http.Request) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[r.PathValue("app")]
	if !ok {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageAppNotFound)
	}
	return http.StatusOK, s.appView(a), nil
}

func (s *Simulator) handleVersionGet(r *http.Request) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.version(r.PathValue("app"), r.PathValue("version"), http.StatusNotFound)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.versionView(v), nil
}

func (s *Simulator) handleSessionCreate(r *http.Request) (int, any, error) {
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
	s.log.Info("session created", logkey.SessionID, sess.id, logkey.Deployment, sess.dep.id, "users", len(sess.users))
	return edgegap.StatusCreated, out, nil
}

func (s *Simulator) handleSessionGet(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, err := s.sessionLocked(id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.sessionView(sess), nil
}

func (s *Simulator) handleSessionDelete(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteSessionLocked(id); err != nil {
		return 0, nil, err
	}
	s.log.Info("session deleted", logkey.SessionID, id)
	return http.StatusOK, edgegap.SessionDeleted{Message: edgegap.MessageSessionDeleted, SessionID: id}, nil
}

func (s *Simulator) handleSessionList(r *http.Request) (int, any, error) {
	page, limit := 1, 20
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
		page = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.listedSessionsLocked()
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

func (s *Simulator) handleContextGet(r *http.Request) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[r.PathValue("id")]
	if !ok || strconv.Itoa(d.securityNum) != r.PathValue("token") {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageDeploymentNotFound)
	}
	return http.StatusOK, s.deploymentView(d), nil
}

func (s *Simulator) handleSelfStop(r *http.Request) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[r.PathValue("id")]
	if !ok || strconv.Itoa(d.accessPoint) != r.PathValue("token") {
		return 0, nil, apiErr(http.StatusNotFound, edgegap.MessageDeploymentNotFound)
	}
	s.terminateLocked(d, "self-stop")
	return http.StatusOK, edgegap.StopResponse{Message: edgegap.MessageSelfStopped}, nil
}
