package edgegapsim

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

// State is a snapshot of the simulator, as served by GET /admin/state.
type State struct {
	// Now is the simulated time.
	Now time.Time `json:"now"`
	// LiveSessions and LiveDeployments count what exists (a test asserting "no leaked
	// sessions" wants LiveSessions == 0).
	LiveSessions    int              `json:"live_sessions"`
	LiveDeployments int              `json:"live_deployments"`
	Sessions        []SessionInfo    `json:"sessions"`
	Deployments     []DeploymentInfo `json:"deployments"`
	Webhooks        WebhookStats     `json:"webhooks"`
}

// SessionInfo describes one live session.
type SessionInfo struct {
	SessionID    string    `json:"session_id"`
	App          string    `json:"app"`
	Version      string    `json:"version"`
	Status       string    `json:"status"`
	Ready        bool      `json:"ready"`
	DeploymentID string    `json:"deployment_request_id"`
	Users        []string  `json:"users"`
	Created      time.Time `json:"created"`
	WebhookURL   string    `json:"webhook_url,omitempty"`
}

// DeploymentInfo describes one live deployment.
type DeploymentInfo struct {
	RequestID    string         `json:"request_id"`
	App          string         `json:"app"`
	Version      string         `json:"version"`
	Status       string         `json:"status"`
	Error        string         `json:"error,omitempty"`
	Sockets      int            `json:"sockets"`
	SocketsUsage int            `json:"sockets_usage"`
	Ports        map[string]int `json:"ports"`
	Sessions     []string       `json:"sessions"`
	// Running is true while the deployment's game server runs.
	Running bool      `json:"running"`
	Created time.Time `json:"created"`
}

// CallCounts counts API calls per endpoint and HTTP status, including calls refused with 401
// and injected faults.
type CallCounts map[edgegap.Endpoint]map[int]uint64

// Endpoint returns the calls on e, whatever their status.
func (c CallCounts) Endpoint(e edgegap.Endpoint) uint64 {
	var n uint64
	for _, v := range c[e] {
		n += v
	}
	return n
}

// Total returns the calls on all endpoints.
func (c CallCounts) Total() uint64 {
	var n uint64
	for e := range c {
		n += c.Endpoint(e)
	}
	return n
}

// State returns a snapshot of live sessions and deployments.
func (s *Simulator) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Now: s.clock.Now(), LiveSessions: len(s.sessions),
		LiveDeployments: len(s.deployments), Sessions: []SessionInfo{},
		Deployments: []DeploymentInfo{}, Webhooks: s.hooks.stats()}
	for _, sess := range sortedSessions(s.sessions) {
		status, ready, _ := sessionStatus(sess)
		st.Sessions = append(st.Sessions, SessionInfo{SessionID: sess.id, App: sess.app,
			Version: sess.versionNm, Status: status, Ready: ready, DeploymentID: sess.dep.id,
			Users: append([]string{}, sess.users...), Created: sess.created,
			WebhookURL: sess.webhookURL})
	}
	for _, d := range s.sortedDeployments() {
		ports := map[string]int{}
		for n, p := range d.ports {
			ports[n] = p.External
		}
		ids := []string{}
		for _, sess := range sortedSessions(d.sessions) {
			ids = append(ids, sess.id)
		}
		st.Deployments = append(st.Deployments, DeploymentInfo{RequestID: d.id, App: d.app,
			Version: d.versionName, Status: d.status, Error: d.errMsg,
			Sockets: d.version.cfg.Sockets, SocketsUsage: d.usage, Ports: ports, Sessions: ids,
			Running: d.running, Created: d.created})
	}
	return st
}

// LiveSessions returns how many sessions exist.
func (s *Simulator) LiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// CallCounts returns a snapshot of the API call counts.
func (s *Simulator) CallCounts() CallCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(CallCounts, len(s.calls))
	for e, m := range s.calls {
		c := make(map[int]uint64, len(m))
		for k, v := range m {
			c[k] = v
		}
		out[e] = c
	}
	return out
}

// ResetCallCounts sets every call count back to zero.
func (s *Simulator) ResetCallCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[edgegap.Endpoint]map[int]uint64{}
}

// ErrUnknownDeployment is returned for a deployment id the simulator does not know (any more).
var ErrUnknownDeployment = errors.New("edgegapsim: unknown deployment")

// TerminateDeployment ends a deployment as if it had been stopped: its game server is stopped
// and its sessions answer 410.
func (s *Simulator) TerminateDeployment(requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[requestID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownDeployment, requestID)
	}
	s.terminateLocked(d, "terminated by admin")
	return nil
}

// FailDeployment puts a deployment in Status.ERROR with the given reason, as if its game
// server had crashed: the game server is stopped, its sessions report the error and get an
// "Error" webhook.
func (s *Simulator) FailDeployment(requestID, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deployments[requestID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownDeployment, requestID)
	}
	if reason == "" {
		reason = "failed by admin"
	}
	s.failLocked(d, reason)
	return nil
}

// callsJSON is the body of GET /admin/calls: counts keyed by endpoint, then by status code as
// a string, plus the total.
type callsJSON struct {
	Calls map[edgegap.Endpoint]map[string]uint64 `json:"calls"`
	Total uint64                                 `json:"total"`
}

// adminRoutes adds the admin API to mux:
//
//	GET    /admin/state   State (live sessions and deployments, webhook counters)
//	GET    /admin/calls   API call counts per endpoint and status
//	DELETE /admin/calls   reset the call counts
//	GET    /admin/faults  current Faults
//	PUT    /admin/faults  replace Faults (body: Faults JSON); POST is accepted too
//	GET    /admin/healthz "ok"
//	DELETE /admin/deployments/{id}       TerminateDeployment
//	POST   /admin/deployments/{id}/fail  FailDeployment (optional body {"message": reason})
//
// Anything else under /admin is 404 (see newMux).
func (s *Simulator) adminRoutes(mux *http.ServeMux) {
	handle := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, exactMethod(method, adminNotFound, h))
	}
	handle(http.MethodGet, "/admin/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.State())
	})
	handle(http.MethodGet, "/admin/calls", func(w http.ResponseWriter, _ *http.Request) {
		cc := s.CallCounts()
		out := callsJSON{Calls: map[edgegap.Endpoint]map[string]uint64{}, Total: cc.Total()}
		for e, m := range cc {
			c := map[string]uint64{}
			for k, v := range m {
				c[strconv.Itoa(k)] = v
			}
			out.Calls[e] = c
		}
		writeJSON(w, http.StatusOK, out)
	})
	handle(http.MethodDelete, "/admin/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCallCounts()
		writeJSON(w, http.StatusOK, edgegap.ErrorBody{Message: "call counts reset"})
	})
	handle(http.MethodGet, "/admin/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	setFaults := func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if err := decodeBody(r, &f); err != nil {
			writeJSON(w, http.StatusBadRequest, edgegap.ErrorBody{Message: err.Error()})
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.Faults())
	}
	handle(http.MethodPut, "/admin/faults", setFaults)
	handle(http.MethodPost, "/admin/faults", setFaults)
	handle(http.MethodGet, "/admin/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, edgegap.ErrorBody{Message: "ok"})
	})
	handle(http.MethodDelete, "/admin/deployments/{id}", func(w http.ResponseWriter, r *http.Request) {
		adminResult(w, s.TerminateDeployment(r.PathValue("id")))
	})
	handle(http.MethodPost, "/admin/deployments/{id}/fail", func(w http.ResponseWriter, r *http.Request) {
		var body edgegap.ErrorBody
		if r.ContentLength != 0 {
			if err := decodeBody(r, &body); err != nil {
				writeJSON(w, http.StatusBadRequest, edgegap.ErrorBody{Message: err.Error()})
				return
			}
		}
		adminResult(w, s.FailDeployment(r.PathValue("id"), body.Message))
	})
}

// adminResult answers an admin action: "ok", or 404 with the error.
func adminResult(w http.ResponseWriter, err error) {
	if err != nil {
		writeJSON(w, http.StatusNotFound, edgegap.ErrorBody{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, edgegap.ErrorBody{Message: "ok"})
}

// adminNotFound answers an admin path or method that does not exist.
func adminNotFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, edgegap.ErrorBody{Message: http.StatusText(http.StatusNotFound)})
}
