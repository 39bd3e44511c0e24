package edgegap_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
)

// TestDocumentedExamples decodes the example bodies of edgegap-api.md (captured/assembled from
// Edgegap's schema) into the client's types.
func TestDocumentedExamples(t *testing.T) {
	var s edgegap.Session
	decodeFile(t, "testdata/session_get_ready_doc.json", &s)
	addr, err := s.Endpoint("")
	if err != nil || addr.String() != "162.254.141.66:31500" || s.CustomID != nil || s.Error != nil ||
		s.AppVersion != 12345 || *s.Deployment.Sockets != 6 || s.Deployment.Ports["server"].Proxy != nil {
		t.Errorf("session: %v %v %+v", addr, err, s)
	}
	w, err := edgegap.ParseSessionWebhook(readFile(t, "testdata/webhook_doc.json"))
	if err != nil || !edgegap.StatusIs(w.Status, edgegap.SessionStatusReady) || *w.DeploymentRequestID != "57f84a8e1298" {
		t.Errorf("webhook: %+v %v", w, err)
	}
	var c edgegap.SessionCreated
	decodeFile(t, "testdata/session_create_doc.json", &c)
	if c.SessionID != "950dd2eaff09-S" || c.DeploymentRequestID != nil || *c.WebhookURL == "" {
		t.Errorf("created: %+v", c)
	}
}

// TestSessionCreateRequestJSON: optional fields are omitted, never null — the exact bodies
// bevygap sends.
func TestSessionCreateRequestJSON(t *testing.T) {
	for _, c := range []struct {
		req  edgegap.SessionCreateRequest
		want string
	}{
		{edgegap.SessionCreateRequest{AppName: "spacepit_server", IPList: []string{"81.2.69.160"}},
			`{"app_name":"spacepit_server","ip_list":["81.2.69.160"]}`},
		{edgegap.SessionCreateRequest{AppName: "a", IPList: []string{"1.2.3.4"}, WebhookURL: "https://h/x"},
			`{"app_name":"a","ip_list":["1.2.3.4"],"webhook_url":"https://h/x"}`},
		{edgegap.SessionCreateRequest{AppName: "a", VersionName: "v1", SkipTelemetry: edgegap.Ptr(false)},
			`{"app_name":"a","version_name":"v1","skip_telemetry":false}`},
	} {
		b, err := json.Marshal(c.req)
		if err != nil || string(b) != c.want {
			t.Errorf("got %s, want %s", b, c.want)
		}
	}
}

func TestStatusIs(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Status.READY", "Ready", true},
		{"Ready", edgegap.SessionStatusReady, true},
		{"status.ready", "READY", true},
		{" Status.ERROR ", "Error", true},
		{"Status.READY", "Status.LINKED", false},
		{"Status.", "", true},
		{"", "Ready", false},
	} {
		if got := edgegap.StatusIs(c.a, c.b); got != c.want {
			t.Errorf("StatusIs(%q, %q) = %v", c.a, c.b, got)
		}
	}
	for in, want := range map[string]string{"Status.READY": "Ready", "Status.LINKED": "Linked",
		"Status.ERROR": "Error", "Status.UNPROCESSABLE": "Unprocessable", "": ""} {
		if got := edgegap.WebhookStatus(in); got != want {
			t.Errorf("WebhookStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAPIErrorIs(t *testing.T) {
	all := []error{edgegap.ErrNotFound, edgegap.ErrGone, edgegap.ErrUnauthorized, edgegap.ErrConflict,
		edgegap.ErrRateLimited, edgegap.ErrServer, edgegap.ErrBadRequest}
	for _, c := range []struct {
		status int
		is     []error
	}{
		{400, []error{edgegap.ErrBadRequest}},
		{401, []error{edgegap.ErrUnauthorized}},
		{403, []error{edgegap.ErrUnauthorized}},
		{404, []error{edgegap.ErrNotFound}},
		{409, []error{edgegap.ErrConflict}},
		{410, []error{edgegap.ErrNotFound, edgegap.ErrGone}},
		{422, []error{edgegap.ErrBadRequest}},
		{429, []error{edgegap.ErrRateLimited}},
		{500, []error{edgegap.ErrServer}},
		{503, []error{edgegap.ErrServer}},
		{418, nil},
	} {
		err := fmt.Errorf("wrapped: %w", &edgegap.APIError{Endpoint: edgegap.EndpointSessionGet, StatusCode: c.status, Message: "m"})
		for _, s := range all {
			want := false
			for _, w := range c.is {
				want = want || w == s
			}
			if got := errors.Is(err, s); got != want {
				t.Errorf("%d is %v: %v, want %v", c.status, s, got, want)
			}
		}
		if edgegap.StatusCode(err) != c.status {
			t.Errorf("StatusCode = %d", edgegap.StatusCode(err))
		}
	}
	if e := (&edgegap.APIError{Endpoint: "x", StatusCode: http.StatusBadGateway}); !strings.Contains(e.Error(), http.StatusText(http.StatusBadGateway)) {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestArbitriumEnv(t *testing.T) {
	env := map[string]string{
		edgegap.EnvRequestID:          "9170f5211e17",
		edgegap.EnvDeleteURL:          "https://api.edgegap.com/v1/self/stop/9f511e17/660",
		edgegap.EnvDeleteToken:        "7df4cd933df87084b34ae80d8abde293",
		edgegap.EnvDeploymentLocation: `{"city":"Montreal","country":"Canada","continent":"North America","administrative_division":"Quebec","timezone":"Eastern Time","latitude":45.513707,"longitude":-73.619073}`,
		edgegap.EnvContextURL:         "https://api.edgegap.com/v1/context/9170f5211e17/17",
		edgegap.EnvContextToken:       "dfaf50b9333b9ee07b22ed247e4a17e6",
		edgegap.EnvPublicIP:           "162.254.141.66",
		edgegap.EnvPortsMapping:       `{"ports":{"5000":{"name":"game_port","internal":5000,"external":31500,"protocol":"HTTP"}}}`,
	}
	if _, err := edgegap.ArbitriumFromEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	arb := edgegap.ArbitriumEnv{
		RequestID: env[edgegap.EnvRequestID], DeleteURL: env[edgegap.EnvDeleteURL],
		DeleteToken: env[edgegap.EnvDeleteToken], DeploymentLocation: env[edgegap.EnvDeploymentLocation],
		ContextURL: env[edgegap.EnvContextURL], ContextToken: env[edgegap.EnvContextToken],
		PublicIP: env[edgegap.EnvPublicIP], PortsMapping: env[edgegap.EnvPortsMapping],
	}
	rid, sec, err := arb.ContextParts()
	if err != nil || rid != "9170f5211e17" || sec != 17 {
		t.Errorf("ContextParts: %q %d %v", rid, sec, err)
	}
	ports, err := arb.Ports()
	if err != nil || ports["5000"].External != 31500 || ports["5000"].Name != "game_port" {
		t.Errorf("Ports: %+v %v", ports, err)
	}
	loc, err := arb.Location()
	if err != nil || loc.City != "Montreal" {
		t.Errorf("Location: %+v %v", loc, err)
	}
	if len(arb.Vars()) != 8 || arb.Vars()[edgegap.EnvPublicIP] != "162.254.141.66" {
		t.Errorf("Vars: %v", arb.Vars())
	}
	delete(env, edgegap.EnvPublicIP)
	delete(env, edgegap.EnvContextToken)
	_, err = edgegap.ArbitriumFromEnv(func(k string) string { return env[k] })
	if err == nil || err.Error() != "edgegap: ARBITRIUM_* environment: missing ARBITRIUM_CONTEXT_TOKEN, ARBITRIUM_PUBLIC_IP (is this process running in an Edgegap deployment?)" {
		t.Errorf("missing vars: %v", err)
	}
	if got := edgegap.PortEnvName("game-port", "EXTERNAL"); got != "ARBITRIUM_PORT_GAME_PORT_EXTERNAL" {
		t.Errorf("PortEnvName: %s", got)
	}
}

func TestDeploymentEndpointErrors(t *testing.T) {
	for name, d := range map[string]edgegap.Deployment{
		"hostname":    {PublicIP: "x.example.com", Ports: map[string]edgegap.PortMapping{"s": {External: edgegap.Ptr(1)}}},
		"no ports":    {PublicIP: "1.2.3.4"},
		"no external": {PublicIP: "1.2.3.4", Ports: map[string]edgegap.PortMapping{"s": {}}},
	} {
		if _, err := d.Endpoint(""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	d := edgegap.Deployment{PublicIP: "::1", Ports: map[string]edgegap.PortMapping{
		"b": {External: edgegap.Ptr(2)}, "a": {External: edgegap.Ptr(1)}}}
	if a, err := d.Endpoint(""); err != nil || a.String() != "[::1]:1" {
		t.Errorf("first by name: %v %v", a, err)
	}
	if a, err := d.Endpoint("b"); err != nil || a.Port() != 2 {
		t.Errorf("named: %v %v", a, err)
	}
	var s edgegap.Session
	if _, err := s.Endpoint(""); err == nil {
		t.Error("session without deployment")
	}
}

// FuzzParseSessionWebhook: any body either parses to a webhook with a session id or errors.
func FuzzParseSessionWebhook(f *testing.F) {
	f.Add([]byte(`{"session_id":"a-S","status":"Ready","ready":true,"linked":true,"kind":"Seat","user_count":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"session_id":5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := edgegap.ParseSessionWebhook(b)
		if err == nil && w.SessionID == "" {
			t.Fatal("accepted webhook without session id")
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeFile(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
