package edgegapsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// FuzzSessionCreate feeds arbitrary bodies to POST /v1/session: the simulator must answer 200
// with a session, or a 4xx with {"message": ...} — never a 5xx or a panic.
func FuzzSessionCreate(f *testing.F) {
	for _, seed := range []string{
		`{"app_name":"game","ip_list":["81.2.69.160"]}`,
		`{"app_name":"game","ip_list":["1.2.3.4","::1"],"webhook_url":"http://127.0.0.1:1/x"}`,
		`{"app_name":"game","geo_ip_list":[{"ip":"1.2.3.4","latitude":1,"longitude":2}],"version_name":"v1"}`,
		`{"app_name":"game","deployment_request_id":"nope"}`,
		`{"app_name":5}`, `{"app_name":"game","ip_list":"x"}`, `[]`, `null`, ``, `{`, "\x00",
		`{"app_name":"game","selectors":[{"tag":"a"}],"filters":[{"field":"f","values":["v"],"filter_type":"any"}]}`,
	} {
		f.Add(seed)
	}
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{testKey}, Seed: 1, Logger: discard(),
		Clock:      edgegapsim.NewFakeClock(testStart),
		Apps:       []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
		HTTPClient: &http.Client{Transport: refuseTransport{}}, AllocatePort: func(string) (int, error) { return 40000, nil },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sim.Close(f.Context()) })
	f.Fuzz(func(t *testing.T, body string) {
		rec := newRecorder(sim, "POST", "/v1/session", body)
		switch {
		case rec.Code == edgegap.StatusCreated:
			var c edgegap.SessionCreated
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil || c.SessionID == "" {
				t.Fatalf("200 without session: %s", rec.Body)
			}
			// Keep the simulator small: delete what was created.
			if del := newRecorder(sim, "DELETE", "/v1/session/"+c.SessionID, ""); del.Code != 200 {
				t.Fatalf("delete: %d", del.Code)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e edgegap.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("%d without message: %q", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}

// refuseTransport fails every request, so fuzzed webhook URLs never leave the process.
type refuseTransport struct{}

func (refuseTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("webhooks disabled in fuzzing")
}

// FuzzAdminFaults feeds arbitrary bodies to PUT /admin/faults: 200 or 400 with a message.
func FuzzAdminFaults(f *testing.F) {
	f.Add(`{"endpoints":{"session_create":{"error_rate":0.5,"status":503,"latency":"1ms"}},"boot_failure_rate":0.1}`)
	f.Add(`{"endpoints":{"*":{"fail_next":2,"latency":0.001}}}`)
	f.Add(`{"endpoints":{"x":{"latency":"forever"}}}`)
	f.Add(`{`)
	sim, err := edgegapsim.New(edgegapsim.Config{APIKeys: []string{testKey}, Seed: 1, Logger: discard(),
		Clock: edgegapsim.NewFakeClock(testStart)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sim.Close(f.Context()) })
	f.Fuzz(func(t *testing.T, body string) {
		rec := newRecorder(sim, "PUT", "/admin/faults", body)
		var e edgegap.ErrorBody
		switch rec.Code {
		case 200:
		case 400:
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("400 without message: %q", rec.Body)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		sim.SetFaults(edgegapsim.Faults{}) // never let fuzzed latency slow the next input
	})
}
