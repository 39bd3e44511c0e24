package edgegapsim_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestRouting pins what every method and path shape is routed to: the status, the message of
// the JSON answer and the endpoint the call is counted under ("" = not counted, as the admin
// API is not). Empty path segments are ignored ("//v1/session" is /v1/session, as on Edgegap),
// a known path with another method is 405, anything else 404.
func TestRouting(t *testing.T) {
	t.Parallel()
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{testKey}, Seed: 1, Logger: discard(),
		Clock:        edgegapsim.NewFakeClock(testStart),
		Apps:         []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
		AllocatePort: func(string) (int, error) { return 40000, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close(t.Context()) })
	tests := []struct {
		method, path string
		status       int
		message      string           // "" = any (a 2xx answer's body is not an ErrorBody)
		counted      edgegap.Endpoint // "" = not counted
	}{
		{"GET", "/v1/app/game", 200, "", edgegap.EndpointAppGet},
		{"GET", "//v1/app/game", 200, "", edgegap.EndpointAppGet},
		{"GET", "/v1/app/game/", 200, "", edgegap.EndpointAppGet},
		{"GET", "/v1//app///game", 200, "", edgegap.EndpointAppGet},
		{"HEAD", "/v1/app/game", 405, "", endpointUnknown},
		{"POST", "/v1/app/game", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/V1/app/game", 404, "Not Found", endpointUnknown},
		{"GET", "/v1/app/nope", 404, edgegap.MessageAppNotFound, edgegap.EndpointAppGet},
		{"GET", "/v1/app/./version/v1", 404, edgegap.MessageAppNotFound, edgegap.EndpointAppVersionGet},
		{"GET", "/v1/app/game/version/v1", 200, "", edgegap.EndpointAppVersionGet},
		{"GET", "//v1/app/game/version/v1", 200, "", edgegap.EndpointAppVersionGet},
		{"DELETE", "/v1/app/game/version/v1", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/app/game/version", 404, "Not Found", endpointUnknown},
		{"GET", "/v1/app/game/version/v1/x", 404, "Not Found", endpointUnknown},
		{"POST", "//v1/session", 400, "invalid JSON body: unexpected end of JSON input", edgegap.EndpointSessionCreate},
		{"POST", "/v1/session/", 400, "invalid JSON body: unexpected end of JSON input", edgegap.EndpointSessionCreate},
		{"PUT", "/v1/session", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/session", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/session/abc-S", 404, edgegap.MessageSessionNotFound, edgegap.EndpointSessionGet},
		{"GET", "//v1/session/abc-S/", 404, edgegap.MessageSessionNotFound, edgegap.EndpointSessionGet},
		{"GET", "/v1/session/..", 404, edgegap.MessageSessionNotFound, edgegap.EndpointSessionGet},
		{"GET", "/v1/session/a%2Fb", 404, "Not Found", endpointUnknown},
		{"HEAD", "/v1/session/abc-S", 405, "", endpointUnknown},
		{"DELETE", "/v1/session/abc-S", 404, edgegap.MessageSessionNotFound, edgegap.EndpointSessionDelete},
		{"PATCH", "/v1/session/abc-S", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/sessions", 200, "", edgegap.EndpointSessionList},
		{"GET", "/v1/sessions/", 200, "", edgegap.EndpointSessionList},
		{"POST", "/v1/sessions", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/context/nope/1", 404, edgegap.MessageDeploymentNotFound, edgegap.EndpointContextGet},
		{"POST", "/v1/context/nope/1", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/v1/context/nope", 404, "Not Found", endpointUnknown},
		{"DELETE", "/v1/self/stop/nope/1", 404, edgegap.MessageDeploymentNotFound, edgegap.EndpointSelfStop},
		{"GET", "/v1/self/stop/nope/1", 405, "Method Not Allowed", endpointUnknown},
		{"GET", "/", 404, "Not Found", endpointUnknown},
		{"GET", "", 404, "Not Found", endpointUnknown},
		{"GET", "/v1", 404, "Not Found", endpointUnknown},
		{"GET", "/v1/nothing", 404, "Not Found", endpointUnknown},
		{"GET", "/metrics", 404, "Not Found", endpointUnknown},
		{"GET", "/admin/state", 200, "", ""},
		{"GET", "//admin/state/", 200, "", ""},
		{"HEAD", "/admin/state", 404, "", ""},
		{"POST", "/admin/state", 404, "Not Found", ""},
		{"GET", "/admin", 404, "Not Found", ""},
		{"GET", "/admin/", 404, "Not Found", ""},
		{"GET", "/admin/nope", 404, "Not Found", ""},
		{"GET", "/admin/state/x", 404, "Not Found", ""},
		{"GET", "/admin/calls", 200, "", ""},
		{"DELETE", "/admin/calls", 200, "call counts reset", ""},
		{"POST", "/admin/calls", 404, "Not Found", ""},
		{"GET", "/admin/faults", 200, "", ""},
		{"PUT", "/admin/faults", 200, "", ""},
		{"POST", "/admin/faults", 200, "", ""},
		{"DELETE", "/admin/faults", 404, "Not Found", ""},
		{"GET", "/admin/healthz", 200, "ok", ""},
		{"GET", "/admin/deployments", 404, "Not Found", ""},
		{"GET", "/admin/deployments/nope", 404, "Not Found", ""},
		{"DELETE", "/admin/deployments/nope", 404, "edgegapsim: unknown deployment: nope", ""},
		{"POST", "/admin/deployments/nope/fail", 404, "edgegapsim: unknown deployment: nope", ""},
		{"GET", "/admin/deployments/nope/fail", 404, "Not Found", ""},
		{"POST", "/admin/deployments/nope/x", 404, "Not Found", ""},
		{"DELETE", "/admin/deployments/nope/fail/x", 404, "Not Found", ""},
	}
	for _, tt := range tests {
		body := ""
		if tt.method == "PUT" || tt.method == "POST" && tt.path == "/admin/faults" {
			body = `{}`
		}
		before := sim.CallCounts()
		req := httptest.NewRequest(tt.method, "http://sim.test"+tt.path, strings.NewReader(body))
		req.Header.Set("Authorization", testKey)
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("%s %q: status %d, want %d (%s)", tt.method, tt.path, rec.Code, tt.status, rec.Body)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %q: Content-Type %q", tt.method, tt.path, ct)
		}
		if rec.Header().Get("Location") != "" || rec.Header().Get("Allow") != "" {
			t.Errorf("%s %q: unexpected headers %v", tt.method, tt.path, rec.Header())
		}
		if tt.message != "" {
			var e edgegap.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message != tt.message {
				t.Errorf("%s %q: body %s, want message %q", tt.method, tt.path, rec.Body, tt.message)
			}
		}
		after := sim.CallCounts()
		if tt.path == "/admin/calls" && tt.method == "DELETE" {
			continue // the counts were reset
		}
		var counted []edgegap.Endpoint
		for e := range after {
			if after.Endpoint(e) != before.Endpoint(e) {
				counted = append(counted, e)
			}
		}
		switch {
		case tt.counted == "" && len(counted) != 0:
			t.Errorf("%s %q: counted under %v, want not counted", tt.method, tt.path, counted)
		case tt.counted != "" && (len(counted) != 1 || counted[0] != tt.counted || after[tt.counted][tt.status] != before[tt.counted][tt.status]+1):
			t.Errorf("%s %q: counted under %v, want %s with status %d", tt.method, tt.path, counted, tt.counted, tt.status)
		}
	}
}

// endpointUnknown is the endpoint name under which calls matching no route are counted.
const endpointUnknown edgegap.Endpoint = "unknown"
