package edgegapsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// required lists, per Edgegap model, the fields the strict Rust client (edgegap_async) requires.
var required = map[string][]string{
	"Application":    {"name", "is_active", "create_time", "last_updated"},
	"AppVersion":     {"name", "docker_repository", "docker_image", "docker_tag", "req_cpu", "req_memory"},
	"SessionRequest": {"session_id", "app", "version"},
	"SessionGet":     {"session_id", "status", "ready", "linked", "kind", "user_count", "app_version", "create_time", "elapsed"},
	"Deployment":     {"request_id", "public_ip", "status", "ready", "whitelisting_active", "fqdn"},
	"Location":       {"city", "country", "continent", "administrative_division", "timezone", "latitude", "longitude"},
	"SessionDelete":  {"message", "session_id"},
	"SessionContext": {"session_id", "status", "ready", "linked", "kind", "user_count"},
	"Delete":         {"message"},
	"Error":          {"message"},
}

// golden compares got (JSON) with testdata/golden/name.json, after indenting.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(got), "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", name, err, got)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test -run TestContractGolden -update)", name, err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from %s:\n got: %s\nwant: %s", name, path, buf.Bytes(), want)
	}
}

// strictDecode decodes data into v rejecting unknown fields: everything the simulator emits is
// a field of the client's model.
func strictDecode(t *testing.T, name string, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: does not decode into %T: %v", name, v, err)
	}
}

// hasRequired checks that obj has every required field of model, non-null.
func hasRequired(t *testing.T, name, model string, obj map[string]any) {
	t.Helper()
	for _, k := range required[model] {
		v, ok := obj[k]
		if !ok || v == nil {
			t.Errorf("%s: required field %s.%s missing or null", name, model, k)
		}
	}
}

func object(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, data)
	}
	return m
}

// TestContractGolden drives the simulator through a whole session lifecycle and pins every
// response and webhook body to a golden file, decodes each strictly into the client's types and
// checks the fields Edgegap's schema (and so the Rust client) requires.
func TestContractGolden(t *testing.T) {
	t.Parallel()
	envs := make(chan map[string]string, 1)
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Launcher = edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
			envs <- env
			<-ctx.Done()
			return nil
		})
	})
	hook := f.hooks.srv.URL + "/hook/session"
	// Make the webhook URL stable for the golden files.
	stable := func(b []byte) []byte {
		b = bytes.ReplaceAll(b, []byte(f.hooks.srv.URL), []byte("http://hooks.test"))
		return bytes.ReplaceAll(b, []byte(f.srv.URL), []byte("http://sim.test"))
	}

	st, body := f.raw(t, "GET", "/v1/app/game", testKey, "")
	check(t, st, 200)
	golden(t, "app_get", body)
	var app edgegap.Application
	strictDecode(t, "app_get", body, &app)
	hasRequired(t, "app_get", "Application", object(t, body))

	st, body = f.raw(t, "GET", "//v1/app/game/version/v1", testKey, "")
	check(t, st, 200)
	golden(t, "app_version_get", body)
	var ver edgegap.AppVersion
	strictDecode(t, "app_version_get", body, &ver)
	hasRequired(t, "app_version_get", "AppVersion", object(t, body))

	// The exact body bevygap sends, through the double-slash path the Rust client uses.
	st, body = f.raw(t, "POST", "//v1/session", testKey,
		`{"app_name":"game","ip_list":["81.2.69.160"],"webhook_url":"`+hook+`"}`)
	check(t, st, edgegap.StatusCreated)
	golden(t, "session_create", stable(body))
	var created edgegap.SessionCreated
	strictDecode(t, "session_create", body, &created)
	hasRequired(t, "session_create", "SessionRequest", object(t, body))

	st, body = f.raw(t, "GET", "//v1/session/"+created.SessionID, testKey, "")
	check(t, st, 200)
	golden(t, "session_get_linked", stable(body))
	checkSession(t, "session_get_linked", body)

	golden(t, "webhook_linked", stable(f.hooks.next(t)))

	f.clock.Advance(3 * time.Second)
	env := <-envs
	golden(t, "webhook_ready", stable(f.hooks.next(t)))

	f.clock.Advance(2 * time.Second)
	st, body = f.raw(t, "GET", "/v1/session/"+created.SessionID, testKey, "")
	check(t, st, 200)
	golden(t, "session_get_ready", stable(body))
	checkSession(t, "session_get_ready", body)

	st, body = f.raw(t, "GET", "/v1/sessions", testKey, "")
	check(t, st, 200)
	golden(t, "session_list", stable(body))
	var list edgegap.SessionList
	strictDecode(t, "session_list", body, &list)
	for _, item := range object(t, body)["data"].([]any) {
		hasRequired(t, "session_list", "SessionContext", item.(map[string]any))
	}

	// Context API, with the environment the game server got.
	arb, err := edgegap.ArbitriumFromEnv(envGetter(env))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", arb.ContextURL, nil)
	req.Header.Set("Authorization", arb.ContextToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	check(t, resp.StatusCode, 200)
	golden(t, "context_get", stable(body))
	var dep edgegap.Deployment
	strictDecode(t, "context_get", body, &dep)
	ctxObj := object(t, body)
	hasRequired(t, "context_get", "Deployment", ctxObj)
	hasRequired(t, "context_get", "Location", ctxObj["location"].(map[string]any))
	if _, ok := ctxObj["sockets"].(float64); !ok {
		t.Errorf("context_get: sockets must be a number (the Rust plugin reads it as u64)")
	}
	golden(t, "arbitrium_env", stable(mustJSON(t, envWithout(env, edgegap.EnvContextToken, edgegap.EnvDeleteToken))))

	st, body = f.raw(t, "DELETE", "/v1/session/"+created.SessionID, testKey, "")
	check(t, st, 200)
	golden(t, "session_delete", body)
	var del edgegap.SessionDeleted
	strictDecode(t, "session_delete", body, &del)
	hasRequired(t, "session_delete", "SessionDelete", object(t, body))

	for _, c := range []struct {
		name, method, path, auth, body string
		status                         int
	}{
		{"error_404_session", "GET", "/v1/session/" + created.SessionID, testKey, "", 404},
		{"error_401", "GET", "/v1/app/game", "token wrong", "", 401},
		{"error_401_missing", "GET", "/v1/app/game", "", "", 401},
		{"error_400_bad_json", "POST", "/v1/session", testKey, `{"app_name":`, 400},
		{"error_400_no_app_name", "POST", "/v1/session", testKey, `{"ip_list":["1.2.3.4"]}`, 400},
		{"error_400_unknown_app", "POST", "/v1/session", testKey, `{"app_name":"nope"}`, edgegap.StatusUnknownAppOnCreate},
		{"error_404_app", "GET", "/v1/app/nope", testKey, "", 404},
		{"error_404_version", "GET", "/v1/app/game/version/nope", testKey, "", 404},
		{"error_404_route", "GET", "/v1/nothing", testKey, "", 404},
		{"error_405", "PUT", "/v1/session", testKey, "", 405},
	} {
		st, body := f.raw(t, c.method, c.path, c.auth, c.body)
		if st != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, st, c.status, body)
		}
		golden(t, c.name, body)
		var e edgegap.ErrorBody
		strictDecode(t, c.name, body, &e)
		hasRequired(t, c.name, "Error", object(t, body))
	}

	// Self-stop with the deployment's delete URL and token.
	req, _ = http.NewRequest("DELETE", arb.DeleteURL, nil)
	req.Header.Set("Authorization", arb.DeleteToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	check(t, resp.StatusCode, 200)
	golden(t, "self_stop", body)
	var stop edgegap.StopResponse
	strictDecode(t, "self_stop", body, &stop)
	hasRequired(t, "self_stop", "Delete", object(t, body))

	// Linked and ready were the only webhooks of the whole lifecycle.
	f.closeAndCheckWebhooks(t, 2)
}

// checkSession decodes a SessionGet strictly and checks required fields, including the
// embedded deployment's, and the bevygap reading of it.
func checkSession(t *testing.T, name string, body []byte) {
	t.Helper()
	var s edgegap.Session
	strictDecode(t, name, body, &s)
	obj := object(t, body)
	hasRequired(t, name, "SessionGet", obj)
	for _, k := range []string{"app_version", "elapsed", "user_count"} {
		if v, ok := obj[k].(float64); !ok || v != float64(int(v)) {
			t.Errorf("%s: %s must be an integer, got %v", name, k, obj[k])
		}
	}
	d, ok := obj["deployment"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no deployment", name)
	}
	hasRequired(t, name, "Deployment", d)
	if _, err := s.Endpoint(""); err != nil {
		t.Errorf("%s: bevygap could not read the game server address: %v", name, err)
	}
}

func check(t *testing.T, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("status %d, want %d", got, want)
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// envWithout returns env without the given keys (tokens are random per deployment).
func envWithout(env map[string]string, drop ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for _, k := range drop {
		out[k] = "<redacted>"
	}
	return out
}

// TestModelsMatchRequiredFields checks that each client model marks exactly the required
// fields as always-present (no omitempty) — the "exactly" of the contract.
func TestModelsMatchRequiredFields(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		model string
		typ   any
	}{
		{"Application", edgegap.Application{}},
		{"AppVersion", edgegap.AppVersion{}},
		{"SessionRequest", edgegap.SessionCreated{}},
		{"SessionGet", edgegap.Session{}},
		{"Deployment", edgegap.Deployment{}},
		{"Location", edgegap.DeploymentLocation{}},
		{"SessionDelete", edgegap.SessionDeleted{}},
		{"SessionContext", edgegap.SessionSummary{}},
		{"Delete", edgegap.StopResponse{}},
		{"Error", edgegap.ErrorBody{}},
	} {
		var always []string
		rt := reflect.TypeOf(c.typ)
		for i := 0; i < rt.NumField(); i++ {
			tag := rt.Field(i).Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if !strings.Contains(opts, "omitempty") {
				always = append(always, name)
			}
		}
		want := append([]string(nil), required[c.model]...)
		sort.Strings(always)
		sort.Strings(want)
		if !reflect.DeepEqual(always, want) {
			t.Errorf("%s (%T): always-present fields %v, required %v", c.model, c.typ, always, want)
		}
	}
}
