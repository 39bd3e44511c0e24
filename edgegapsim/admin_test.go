package edgegapsim_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestAdminAPI: faults are switched over HTTP, call counts and live state are served.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	st, body := f.raw(t, "PUT", "/admin/faults", "",
		`{"endpoints":{"session_get":{"fail_next":2,"status":429,"retry_after_seconds":7},"*":{"error_rate":0}}}`)
	if st != 200 {
		t.Fatalf("PUT faults: %d %s", st, body)
	}
	id := f.create(t, edgegap.SessionCreateRequest{})
	for i, want := range []int{429, 429, 200} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/v1/session/"+id, nil)
		req.Header.Set("Authorization", testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("call %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") != "7" {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
	f.raw(t, "GET", "/v1/app/game", "token nope", "")

	st, body = f.raw(t, "GET", "/admin/calls", "", "")
	var calls struct {
		Calls map[string]map[string]uint64 `json:"calls"`
		Total uint64                       `json:"total"`
	}
	if err := json.Unmarshal(body, &calls); err != nil || st != 200 {
		t.Fatalf("calls: %d %s %v", st, body, err)
	}
	if calls.Calls["session_get"]["429"] != 2 || calls.Calls["session_get"]["200"] != 1 ||
		calls.Calls["session_create"]["200"] != 1 || calls.Calls["app_get"]["401"] != 1 || calls.Total != 5 {
		t.Errorf("calls: %s", body)
	}
	if cc := f.sim.CallCounts(); cc.Endpoint(edgegap.EndpointSessionGet) != 3 || cc.Total() != 5 {
		t.Errorf("CallCounts: %v", cc)
	}

	st, body = f.raw(t, "GET", "/admin/state", "", "")
	var state edgegapsim.State
	if err := json.Unmarshal(body, &state); err != nil || st != 200 {
		t.Fatalf("state: %d %v", st, err)
	}
	if state.LiveSessions != 1 || state.LiveDeployments != 1 || state.Sessions[0].SessionID != id ||
		state.Deployments[0].Sessions[0] != id || !state.Now.Equal(testStart) {
		t.Errorf("state: %s", body)
	}

	if st, _ := f.raw(t, "DELETE", "/admin/calls", "", ""); st != 200 || f.sim.CallCounts().Total() != 0 {
		t.Errorf("reset calls: %d %v", st, f.sim.CallCounts())
	}
	if st, body := f.raw(t, "PUT", "/admin/faults", "", `{"endpoints":`); st != 400 || !strings.Contains(string(body), "message") {
		t.Errorf("bad faults JSON: %d %s", st, body)
	}
	st, body = f.raw(t, "GET", "/admin/faults", "", "")
	var fl edgegapsim.Faults
	if err := json.Unmarshal(body, &fl); err != nil || st != 200 || fl.Endpoints["session_get"].FailNext != 0 ||
		fl.Endpoints["session_get"].Status != 429 {
		t.Errorf("faults after use: %s", body)
	}
}

// TestInjectedLatency: latency faults delay answers in real time.
func TestInjectedLatency(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Faults.Endpoints = map[edgegap.Endpoint]edgegapsim.EndpointFaults{
			edgegap.EndpointAppGet: {Latency: edgegapsim.Duration(100 * time.Millisecond)}}
	})
	start := time.Now()
	if st, _ := f.raw(t, "GET", "/v1/app/game", testKey, ""); st != 200 {
		t.Fatal(st)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %v, want >= 100ms", d)
	}
}

// TestErrorRateIsSeeded: the same seed gives the same fault pattern.
func TestErrorRateIsSeeded(t *testing.T) {
	t.Parallel()
	pattern := func() string {
		f := newFixture(t, func(c *edgegapsim.Config) {
			c.Faults.Endpoints = map[edgegap.Endpoint]edgegapsim.EndpointFaults{
				edgegapsim.AllEndpoints: {ErrorRate: 0.5, Status: 500}}
		})
		var b strings.Builder
		for i := 0; i < 40; i++ {
			st, _ := f.raw(t, "GET", "/v1/app/game", testKey, "")
			b.WriteString(map[bool]string{true: "x", false: "."}[st == 500])
		}
		return b.String()
	}
	p1, p2 := pattern(), pattern()
	if p1 != p2 || !strings.Contains(p1, "x") || !strings.Contains(p1, ".") {
		t.Errorf("patterns %s / %s", p1, p2)
	}
}

// TestConfigFile: the documented config format parses, unknown fields are refused.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	cfg, err := edgegapsim.LoadConfigFile("testdata/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 1 || cfg.Apps[0].Versions[0].Kind != "Seat" || cfg.Apps[0].Versions[0].Ports[0].Name != "server" ||
		cfg.BootTime.D() != 3*time.Second || cfg.Apps[0].Versions[0].EmptyTTL.D() != 10*time.Minute ||
		cfg.Faults.Endpoints["session_create"].ErrorRate != 0.05 {
		t.Errorf("config: %+v", cfg)
	}
	sim, err := edgegapsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = sim.Close(t.Context())
	typo := filepath.Join(t.TempDir(), "typo.json")
	if err := os.WriteFile(typo, []byte(`{"api_keys":["k"],"boot_tme":"1s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := edgegapsim.LoadConfigFile(typo); err == nil || !strings.Contains(err.Error(), "boot_tme") {
		t.Errorf("typo in config: %v, want an error naming the unknown field", err)
	}
}

// TestAdminDeploymentControl: tests can crash or stop a deployment through the admin API.
func TestAdminDeploymentControl(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) { c.Apps[0].Versions[0].Sockets = 1 })
	id1 := f.create(t, edgegap.SessionCreateRequest{WebhookURL: f.hooks.srv.URL})
	id2 := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(3 * time.Second)
	d1, d2 := f.get(t, id1).Deployment.RequestID, f.get(t, id2).Deployment.RequestID
	f.hooks.next(t) // linked
	f.hooks.next(t) // ready
	if st, body := f.raw(t, "POST", "/admin/deployments/"+d1+"/fail", "", `{"message":"boom"}`); st != 200 {
		t.Fatalf("fail: %d %s", st, body)
	}
	if g := f.get(t, id1); g.Error == nil || *g.Error != "boom" {
		t.Errorf("after fail: %+v", g)
	}
	if w, _ := edgegap.ParseSessionWebhook(f.hooks.next(t)); w.Status != "Error" {
		t.Errorf("webhook %+v", w)
	}
	if st, _ := f.raw(t, "DELETE", "/admin/deployments/"+d2, "", ""); st != 200 {
		t.Fatalf("terminate: %d", st)
	}
	if _, err := f.client.GetSession(t.Context(), id2); edgegap.StatusCode(err) != 410 {
		t.Errorf("session of terminated deployment: %v", err)
	}
	if st, _ := f.raw(t, "DELETE", "/admin/deployments/"+d2, "", ""); st != 404 {
		t.Errorf("second terminate: %d, want 404", st)
	}
}
