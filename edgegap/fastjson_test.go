package edgegap

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fastSample is a session as the simulator serves it (GET /v1/session/{id}).
func fastSample() *Session {
	loc := DeploymentLocation{City: "Montreal", Country: "Canada", Continent: "North America",
		AdministrativeDivision: "Quebec", Timezone: "America/Toronto", Latitude: 45.5017, Longitude: -73.5673}
	users := []SessionUser{{IP: "127.0.0.1"}, {IP: "10.0.0.2", Latitude: Ptr(1.5), Longitude: Ptr(-2e-9)}}
	return &Session{SessionID: "0123456789ab-S", Status: "Status.READY", Ready: true, Linked: true, Kind: "Seat",
		UserCount: 2, AppVersion: 1, CreateTime: "2026-12-02 20:17:54.123456", Elapsed: 3, Error: Ptr("x"),
		SessionUsers: users, SessionIPs: users, WebhookURL: Ptr("http://127.0.0.1:3001/hook/session"),
		Deployment: &Deployment{RequestID: "abcdef012345", PublicIP: "127.0.0.1", Status: "Status.READY", Ready: true,
			FQDN: "abcdef012345.pr.edgegap.net",
			Ports: map[string]PortMapping{
				"gameport": {External: Ptr(31000), Internal: Ptr(6420), Protocol: Ptr("UDP"), Name: Ptr("gameport"),
					TLSUpgrade: Ptr(false), Link: Ptr("abcdef012345.pr.edgegap.net:31000")},
				"web": {External: Ptr(-1), Proxy: Ptr(0)},
			},
			Location: &loc, Tags: []string{}, Sockets: Ptr(1 << 30), SocketsUsage: Ptr(5), IsJoinableBySession: Ptr(true)}}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fastDecoders runs the fast decoder of each session model on data: the value and whether it
// took the input.
var fastDecoders = map[string]func(data []byte) (any, bool){
	"Session": func(data []byte) (any, bool) {
		var s Session
		r := jsonReader{b: data}
		return &s, r.session(&s) && r.end()
	},
	"SessionCreated": func(data []byte) (any, bool) {
		var s SessionCreated
		r := jsonReader{b: data}
		return &s, r.sessionCreated(&s) && r.end()
	},
	"SessionCreateRequest": func(data []byte) (any, bool) {
		var s SessionCreateRequest
		r := jsonReader{b: data}
		return &s, r.sessionCreateRequest(&s) && r.end()
	},
	"SessionSummary": func(data []byte) (any, bool) {
		var s SessionSummary
		r := jsonReader{b: data}
		return &s, r.sessionSummary(&s) && r.end()
	},
}

// checkFast fails when the fast decoder of a model took data and decoded it otherwise than
// encoding/json; it reports whether the fast decoder took it.
func checkFast(t *testing.T, model string, data []byte) bool {
	t.Helper()
	got, ok := fastDecoders[model](data)
	if !ok {
		return false
	}
	want := reflect.New(reflect.TypeOf(got).Elem()).Interface()
	if err := json.Unmarshal(data, want); err != nil {
		t.Fatalf("%s: fast decoder took %q, encoding/json fails: %v", model, data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: %q decoded\n fast %+v\n json %+v", model, data, got, want)
	}
	return true
}

func TestFastDecode(t *testing.T) {
	sess := mustJSON(t, fastSample())
	created := mustJSON(t, SessionCreated{SessionID: "0123456789ab-S", App: "dotroom", Version: "1",
		DeploymentRequestID: Ptr("abc"), WebhookURL: Ptr("http://h/hook/session")})
	summary := mustJSON(t, SessionSummary{SessionID: "0123456789ab-S", Status: "READY", Ready: true, Linked: true,
		Kind: "Seat", UserCount: 1, DeploymentRequestID: Ptr("abc"), WebhookURL: Ptr("http://h/hook/session")})
	// The answers of the simulator go the fast way.
	create := mustJSON(t, SessionCreateRequest{AppName: "dotroom", VersionName: "1", IPList: []string{"127.0.0.1", "::1"},
		DeploymentRequestID: "d", City: "c", Country: "k", Continent: "n", AdministrativeDivision: "a", Region: "r",
		WebhookURL: "http://127.0.0.1:3001/hook/session", SkipTelemetry: Ptr(true)})
	for model, data := range map[string]string{"Session": sess, "SessionCreated": created, "SessionSummary": summary,
		"SessionCreateRequest": create, "SessionCreateRequest ": `{"app_name":"g","ip_list":[],"selectors":null,"geo_ip_list":null}`,
		"Session ": " \n{ \"session_id\" : \"x\" , \"deployment\" : null, \"session_users\": [], \"elapsed\": -0 }\t"} {
		if !checkFast(t, strings.TrimSpace(model), []byte(data)) {
			t.Errorf("%s: the fast decoder did not take %s", model, data)
		}
	}
	// Input the fast decoders must leave to encoding/json (or decode exactly as it does).
	odd := []string{
		``, `null`, `[]`, `"x"`, `{}`, `{} x`, `{}{}`, "{}\x00", `{"session_id":"a","session_id":"b"}`,
		`{"Session_ID":"a"}`, `{"session_id":"a\u0062"}`, `{"session_id":"a\"b"}`, `{"session_id":"é"}`,
		"{\"session_id\":\"\x7f\"}", "{\"session_id\":\"\x01\"}", `{"session_id":1}`, `{"ready":"true"}`,
		`{"ready":tru}`, `{"ready":nul}`, `{"ready":null}`, `{"user_count":1.0}`, `{"user_count":1e2}`,
		`{"user_count":-0}`, `{"user_count":01}`, `{"user_count":-}`, `{"user_count":999999999999999999}`,
		`{"user_count":9999999999999999999}`, `{"user_count":-999999999999999999}`, `{"user_count":"1"}`,
		`{"session_users":[null,{}]}`, `{"session_users":[{"ip":"a","ip":"b"}]}`, `{"session_users":[1]}`,
		`{"session_users":[{"latitude":1e400}]}`, `{"session_users":[{"latitude":-1.5e-3,"longitude":0}]}`,
		`{"deployment":{"ports":{"a":{"external":1},"a":{"internal":2}}}}`, `{"deployment":{"ports":{"a":null}}}`,
		`{"deployment":{"ports":{}}}`, `{"deployment":{"tags":[null,"x"]}}`, `{"deployment":{"tags":null}}`,
		`{"deployment":{"location":{"latitude":1,"longitude":2.5,"city":null}}}`, `{"deployment":{},"deployment":{}}`,
		`{"selectors":null}`, `{"selectors":[]}`, `{"extra":1}`, `{"session_id":"a",}`, `{"session_id":"a"`,
		`{"session_id" "a"}`, `{,}`, `{"custom_id":null,"error":null,"webhook_url":"u"}`,
		`{"app_name":"a","ip_list":["x",null]}`, `{"ip_list":[1]}`, `{"ip_list":{}}`, `{"selectors":null,"selectors":null}`,
		`{"location":{"latitude":1}}`, `{"filters":[]}`, `{"skip_telemetry":false,"skip_telemetry":true}`,
	}
	for _, data := range odd {
		for model := range fastDecoders {
			checkFast(t, model, []byte(data))
		}
	}
	// decodeJSON gives encoding/json's answer either way.
	for _, data := range append(odd, sess) {
		var a, b Session
		errA, errB := decodeJSON([]byte(data), &a), json.Unmarshal([]byte(data), &b)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("decodeJSON(%q) = %+v, %v; encoding/json %+v, %v", data, a, errA, b, errB)
		}
	}
	if _, err := ParseSessionWebhook([]byte(summary)); err != nil {
		t.Error(err)
	}
}

// TestFastDecodeAllocs: the fast path allocates far less than encoding/json for a session.
func TestFastDecodeAllocs(t *testing.T) {
	data := []byte(mustJSON(t, fastSample()))
	fast := testing.AllocsPerRun(50, func() {
		var s Session
		if err := decodeJSON(data, &s); err != nil {
			t.Fatal(err)
		}
	})
	slow := testing.AllocsPerRun(50, func() {
		var s Session
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatal(err)
		}
	})
	if fast >= slow*2/3 {
		t.Errorf("fast decode: %v allocations, encoding/json %v", fast, slow)
	}
}

func FuzzFastDecode(f *testing.F) {
	f.Add(mustJSON(f, fastSample()))
	f.Add(mustJSON(f, SessionCreated{SessionID: "s", App: "a", Version: "v", WebhookURL: Ptr("u")}))
	f.Add(mustJSON(f, SessionSummary{SessionID: "s", Status: "READY", DeploymentRequestID: Ptr("d")}))
	f.Add(mustJSON(f, SessionCreateRequest{AppName: "a", IPList: []string{"1.2.3.4"}, WebhookURL: "http://h/x"}))
	f.Add(`{"session_users":[null,{"latitude":1e-7}],"deployment":{"ports":{"a":{},"a":null},"tags":[]}}`)
	f.Fuzz(func(t *testing.T, data string) {
		for model := range fastDecoders {
			checkFast(t, model, []byte(data))
		}
	})
}

func BenchmarkDecodeSession(b *testing.B) {
	data := []byte(mustJSON(b, fastSample()))
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var s Session
			if err := decodeJSON(data, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var s Session
			if err := json.Unmarshal(data, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
