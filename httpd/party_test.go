package httpd

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/syncbuf"
	"github.com/bevygap-go/bevygap/protocol"
)

// Party fixtures: what the fake party service answers.
const (
	fakePartyCode  = "K7QF2M"
	fakePartyToken = "dG9rZW4tb2YtdGhlLWxlYWRlci0zMi1ieXRlcy1sb25nISE"
	codeUnknown    = "ZZZZZZ" // join answers 404
	codeFull       = "FFFFFF" // join answers 409
	codeSvcError   = "SSSSSS" // answered with NATS micro service error headers
	codeGarbage    = "GGGGGG" // answered with something that is not a PartyReply
	codeSilent     = "HHHHHH" // never answered
)

// fakeParties answers matchmaker.party.<game>.1 for one test's own game name.
type fakeParties struct {
	game string
	mu   sync.Mutex
	reqs []string
}

func startFakeParties(t *testing.T) *fakeParties {
	t.Helper()
	id := nuid.Next() // a fixed prefix, then a sequence: the tail is what differs
	f := &fakeParties{game: "party-" + strings.ToLower(id[len(id)-10:])}
	nc := connect(t)
	sub, err := nc.Subscribe("matchmaker.party."+f.game+".1", f.serve)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return f
}

func (f *fakeParties) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func (f *fakeParties) serve(m *nats.Msg) {
	f.mu.Lock()
	f.reqs = append(f.reqs, string(m.Data))
	f.mu.Unlock()
	var req protocol.PartyRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		_ = m.Respond([]byte(`{"error":{"code":400,"message":"bad request"}}`))
		return
	}
	leader := protocol.PartyMember{ID: "m1", Leader: true}
	party := &protocol.Party{Code: fakePartyCode, Members: []protocol.PartyMember{leader}, Max: 4}
	var reply protocol.PartyReply
	switch {
	case req.Code == codeSilent:
		return
	case req.Code == codeGarbage:
		_ = m.Respond([]byte(`"Acknowledged"`))
		return
	case req.Code == codeSvcError:
		out := nats.NewMsg(m.Reply)
		out.Header.Set("Nats-Service-Error-Code", "500")
		out.Header.Set("Nats-Service-Error", "boom")
		_ = m.RespondMsg(out)
		return
	case req.Code == codeUnknown:
		reply.Error = &protocol.PlayError{Code: 404, Message: "unknown party code"}
	case req.Code == codeFull:
		reply.Error = &protocol.PlayError{Code: 409, Message: "the party is full"}
	case req.Op == protocol.PartyOpCreate:
		reply = protocol.PartyReply{Party: party, Member: "m1", Token: fakePartyToken}
	case req.Op == protocol.PartyOpJoin:
		party.Members = append(party.Members, protocol.PartyMember{ID: "m2"})
		reply = protocol.PartyReply{Party: party, Member: "m2", Token: "bWVtYmVyLXR3bw"}
	case req.Op == protocol.PartyOpKick && req.Member == "m9":
		reply.Error = &protocol.PlayError{Code: 403, Message: "only the leader may kick"}
	default:
		reply = protocol.PartyReply{Party: party, Member: "m1"}
	}
	b, _ := protocol.Marshal(reply)
	_ = m.Respond(b)
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

func TestPartyRoutes(t *testing.T) {
	t.Parallel()
	f := startFakeParties(t)
	s := newTestServer(t, Config{})
	base := s.ts.URL + "/matchmaker/party/" + f.game + "/1"
	tok := bearerHeader(fakePartyToken)
	created := `{"party":{"code":"K7QF2M","members":[{"id":"m1","leader":true,"waiting":false}],"max":4},"member":"m1","token":"` + fakePartyToken + `"}`
	shown := `{"party":{"code":"K7QF2M","members":[{"id":"m1","leader":true,"waiting":false}],"max":4},"member":"m1"}`
	tests := []struct {
		name, method, path string
		hdr                http.Header
		body               string
		code               int
		want               string // the response body (without its newline)
		sent               string // the PartyRequest the matchmaker received; "" = none
	}{
		{"create", "POST", "", nil, "", 200, created, `{"op":"create","client_ip":"81.128.157.100"}`},
		{"create with client ip", "POST", "?client_ip=203.0.113.5", nil, "{}", 200, created, `{"op":"create","client_ip":"203.0.113.5"}`},
		{"create with the token of another party", "POST", "", tok, "", 200, created,
			`{"op":"create","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},
		{"create with a malformed token", "POST", "", bearerHeader("a;b"), "", 400, `{"error":{"code":400,"message":"party token malformed"}}`, ""},
		{"join", "POST", "/K7QF2M/join", nil, "", 200,
			`{"party":{"code":"K7QF2M","members":[{"id":"m1","leader":true,"waiting":false},{"id":"m2","leader":false,"waiting":false}],"max":4},"member":"m2","token":"bWVtYmVyLXR3bw"}`,
			`{"op":"join","code":"K7QF2M","client_ip":"81.128.157.100"}`},
		{"get", "GET", "/K7QF2M", tok, "", 200, shown,
			`{"op":"get","code":"K7QF2M","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},
		{"leave with header", "POST", "/K7QF2M/leave", tok, "", 200, shown,
			`{"op":"leave","code":"K7QF2M","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},
		{"leave with body token", "POST", "/K7QF2M/leave", nil, `{"token":"` + fakePartyToken + `"}`, 200, shown,
			`{"op":"leave","code":"K7QF2M","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},
		{"kick", "POST", "/K7QF2M/kick", nil, `{"token":"` + fakePartyToken + `","member":"m2"}`, 200, shown,
			`{"op":"kick","code":"K7QF2M","token":"` + fakePartyToken + `","member":"m2","client_ip":"81.128.157.100"}`},
		{"kick refused", "POST", "/K7QF2M/kick", tok, `{"member":"m9"}`, 403,
			`{"error":{"code":403,"message":"only the leader may kick"}}`,
			`{"op":"kick","code":"K7QF2M","token":"` + fakePartyToken + `","member":"m9","client_ip":"81.128.157.100"}`},
		{"unknown code", "POST", "/ZZZZZZ/join", nil, "", 404, `{"error":{"code":404,"message":"unknown party code"}}`,
			`{"op":"join","code":"ZZZZZZ","client_ip":"81.128.157.100"}`},
		{"full party", "POST", "/FFFFFF/join", nil, "", 409, `{"error":{"code":409,"message":"the party is full"}}`,
			`{"op":"join","code":"FFFFFF","client_ip":"81.128.157.100"}`},
		{"service error headers", "GET", "/SSSSSS", tok, "", 500, `{"error":{"code":500,"message":"boom"}}`,
			`{"op":"get","code":"SSSSSS","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},
		{"garbage reply", "GET", "/GGGGGG", tok, "", 502, `{"error":{"code":502,"message":"malformed answer from the matchmaker"}}`,
			`{"op":"get","code":"GGGGGG","token":"` + fakePartyToken + `","client_ip":"81.128.157.100"}`},

		// Refused at the front door: nothing reaches NATS.
		{"bad code", "POST", "/k7qf2m/join", nil, "", 400, `{"error":{"code":400,"message":"invalid party code: want 6 characters of 23456789ABCDEFGHJKMNPQRSTUVWXYZ"}}`, ""},
		{"code with look-alike", "GET", "/K7QF2O", tok, "", 400, `{"error":{"code":400,"message":"invalid party code: want 6 characters of 23456789ABCDEFGHJKMNPQRSTUVWXYZ"}}`, ""},
		{"unknown op", "POST", "/K7QF2M/start", nil, "", 404, `{"error":{"code":404,"message":"unknown party operation \"start\" (want join, leave or kick)"}}`, ""},
		{"get without token", "GET", "/K7QF2M", nil, "", 400, `{"error":{"code":400,"message":"party token missing or malformed (send it as Authorization: Bearer <token>)"}}`, ""},
		{"token in the query is not read", "GET", "/K7QF2M?token=" + fakePartyToken, nil, "", 400, `{"error":{"code":400,"message":"party token missing or malformed (send it as Authorization: Bearer <token>)"}}`, ""},
		{"basic auth", "GET", "/K7QF2M", http.Header{"Authorization": {"Basic eDp5"}}, "", 400, `{"error":{"code":400,"message":"Authorization header must be \"Bearer <party token>\""}}`, ""},
		{"malformed token", "POST", "/K7QF2M/leave", bearerHeader("a b"), "", 400, `{"error":{"code":400,"message":"party token missing or malformed (send it as Authorization: Bearer <token>)"}}`, ""},
		{"two tokens", "POST", "/K7QF2M/leave", tok, `{"token":"other"}`, 400, `{"error":{"code":400,"message":"two different party tokens (header and body)"}}`, ""},
		{"kick without member", "POST", "/K7QF2M/kick", tok, "", 400, `{"error":{"code":400,"message":"kick needs the member id to remove: {\"member\":\"…\"}"}}`, ""},
		{"body not json", "POST", "/K7QF2M/leave", tok, "token=x", 400, `{"error":{"code":400,"message":"request body must be a JSON object like {\"token\":\"…\",\"member\":\"…\"}"}}`, ""},
		{"bad client ip", "POST", "?client_ip=nope", nil, "", 400, `{"error":{"code":400,"message":"Invalid client_ip"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.requests())
			resp, body := do(t, tt.method, base+tt.path, tt.hdr, tt.body)
			if resp.StatusCode != tt.code || body != tt.want+"\n" {
				t.Fatalf("HTTP %d %s\nwant %d %s", resp.StatusCode, body, tt.code, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			reqs := f.requests()
			switch {
			case tt.sent == "" && len(reqs) != before:
				t.Fatalf("the matchmaker was asked %q", reqs[before:])
			case tt.sent != "" && (len(reqs) != before+1 || reqs[before] != tt.sent):
				t.Fatalf("the matchmaker was asked %q, want [%s]", reqs[before:], tt.sent)
			}
		})
	}
}

func TestPartyBadGameName(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	resp, body := do(t, "POST", s.ts.URL+"/matchmaker/party/a.b/1", nil, "")
	if resp.StatusCode != 400 || body != `{"error":{"code":400,"message":"Game name invalid"}}`+"\n" {
		t.Fatalf("HTTP %d %s", resp.StatusCode, body)
	}
}

func TestPartyNoMatchmakerAndTimeout(t *testing.T) {
	t.Parallel()
	f := startFakeParties(t)
	s := newTestServer(t, Config{PartyTimeout: 200 * time.Millisecond})
	resp, body := do(t, "POST", s.ts.URL+"/matchmaker/party/"+f.game+"/2", nil, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" ||
		body != `{"error":{"code":503,"message":"`+msgNoMatchmaker+`"}}`+"\n" {
		t.Fatalf("no responders: HTTP %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", s.ts.URL+"/matchmaker/party/"+f.game+"/1/"+codeSilent, bearerHeader(fakePartyToken), "")
	if resp.StatusCode != 504 || body != `{"error":{"code":504,"message":"`+msgTimeout+`"}}`+"\n" {
		t.Fatalf("silent matchmaker: HTTP %d %s", resp.StatusCode, body)
	}
	for outcome, want := range map[string]float64{outcomeNoMatchmaker: 1, outcomeTimeout: 1} {
		if got := metricValue(t, s.metrics.requests.WithLabelValues(routeParty, outcome)); got != want {
			t.Errorf("requests{party,%s} = %v, want %v", outcome, got, want)
		}
	}
}

// Party operations have a rate budget of their own: using it up does not stop session requests.
// Not parallel: it uses startFake, whose fakes count every test's requests.
func TestPartyRateLimit(t *testing.T) {
	startFake(t)
	f := startFakeParties(t)
	s := newTestServer(t, Config{PartyOpsPerMinute: 1, PartyOpsBurst: 2, SessionsPerMinute: 1, SessionBurst: 1})
	url := s.ts.URL + "/matchmaker/party/" + f.game + "/1"
	for i := range 2 {
		if resp, body := do(t, "POST", url, nil, ""); resp.StatusCode != 200 {
			t.Fatalf("create %d: HTTP %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "POST", url, nil, "")
	if resp.StatusCode != 429 || body != `{"error":{"code":429,"message":"rate limited"}}`+"\n" {
		t.Fatalf("third create: HTTP %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "POST", s.ts.URL+"/matchmaker/request/mmerror/1", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("a session request after the party budget is spent: HTTP %d", resp.StatusCode)
	}
}

func TestPartyCORS(t *testing.T) {
	t.Parallel()
	f := startFakeParties(t)
	s := newTestServer(t, Config{AllowedOrigins: []string{"https://game.example"}})
	url := s.ts.URL + "/matchmaker/party/" + f.game + "/1/" + fakePartyCode
	resp, _ := do(t, "OPTIONS", url, http.Header{"Origin": {"https://game.example"},
		"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}, "")
	if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: HTTP %d, allow headers %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Headers"))
	}
	resp, body := do(t, "POST", url+"/join", http.Header{"Origin": {"https://evil.example"}}, "")
	if resp.StatusCode != 403 || body != `{"error":{"code":403,"message":"origin not allowed"}}`+"\n" {
		t.Fatalf("foreign origin: HTTP %d %s", resp.StatusCode, body)
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("the matchmaker was asked %d times: %q", n, f.requests())
	}
}

// The party token is a credential: the front door's logs never show it.
func TestPartyTokenNotLogged(t *testing.T) {
	t.Parallel()
	f := startFakeParties(t)
	var logs syncbuf.Buffer
	s := newTestServer(t, Config{}, func(s *Server, _ *http.Server) {
		s.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	base := s.ts.URL + "/matchmaker/party/" + f.game + "/1"
	do(t, "POST", base, nil, "")
	do(t, "GET", base+"/"+fakePartyCode, bearerHeader(fakePartyToken), "")
	do(t, "POST", base+"/"+fakePartyCode+"/kick", nil, `{"token":"`+fakePartyToken+`","member":"m2"}`)
	eventually.True(t, 5*time.Second, func() bool { return strings.Count(logs.String(), "party request") == 3 }, "three party log lines")
	if strings.Contains(logs.String(), fakePartyToken) {
		t.Fatalf("the log shows a party token:\n%s", logs.String())
	}
}

func TestStreamPlayBody(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{})
	url := s.ts.URL + "/matchmaker/request/happy/1?client_ip=203.0.113.5"
	tests := []struct {
		name, body string
		code       int
		resp       string // the response body's beginning
		sent       string // the matchmaker request; "" = none
	}{
		{"empty body is a plain request", "", 200, `"Acknowledged"`, `{"client_ip":"203.0.113.5","game":"happy","version":"1"}`},
		{"empty object is a plain request", " {} ", 200, `"Acknowledged"`, `{"client_ip":"203.0.113.5","game":"happy","version":"1"}`},
		{"queue and props", `{"queue":"duo","props":{"skill":1200,"mode":"ctf"}}`, 200, `"Acknowledged"`,
			`{"client_ip":"203.0.113.5","game":"happy","version":"1","queue":"duo","props":{"mode":"ctf","skill":1200}}`},
		{"party", `{"party":{"code":"K7QF2M","token":"` + fakePartyToken + `"}}`, 200, `"Acknowledged"`,
			`{"client_ip":"203.0.113.5","game":"happy","version":"1","party":{"code":"K7QF2M","token":"` + fakePartyToken + `"}}`},
		{"bad queue", `{"queue":"a b"}`, 400, `queue name "a b": use 1-30 letters`, ""},
		{"bad prop value", `{"props":{"skill":true}}`, 400, `request body must be empty or a JSON object`, ""},
		{"bad prop name", `{"props":{"a.b":1}}`, 400, `invalid props: property name "a.b"`, ""},
		{"bad party code", `{"party":{"code":"nope","token":"x"}}`, 400, `party code "nope"`, ""},
		{"party without token", `{"party":{"code":"K7QF2M"}}`, 400, `party token missing or malformed`, ""},
		{"unknown field", `{"queu":"duo"}`, 400, `request body must be empty or a JSON object {"queue","props","party"}: json: unknown field "queu"`, ""},
		{"two documents", `{} {}`, 400, `request body has more than one JSON document`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := f.count()
			resp, body := do(t, "POST", url, nil, tt.body)
			if resp.StatusCode != tt.code || !strings.HasPrefix(body, tt.resp) {
				t.Fatalf("HTTP %d %q, want %d starting with %q", resp.StatusCode, body, tt.code, tt.resp)
			}
			n, _ := f.count()
			switch {
			case tt.sent == "" && n != before:
				t.Fatalf("the matchmaker got %s", f.lastRequest())
			case tt.sent != "" && (n != before+1 || f.lastRequest() != tt.sent):
				t.Fatalf("the matchmaker got %s, want %s", f.lastRequest(), tt.sent)
			}
		})
	}
}

func TestWSPlayRequest(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{})
	res := wsSession(t, s.wsURL(), nil, `{"game":"happy","version":"1","client_ip":"203.0.113.5","queue":"room","props":{"skill":1200.5},"party":{"code":"K7QF2M","token":"`+fakePartyToken+`"}}`, false)
	if res.code != websocket.StatusNormalClosure || len(res.frames) != 4 {
		t.Fatalf("frames %q close %d %q", res.frames, res.code, res.reason)
	}
	if got, want := f.lastRequest(), `{"client_ip":"203.0.113.5","game":"happy","version":"1","queue":"room","props":{"skill":1200.5},"party":{"code":"K7QF2M","token":"`+fakePartyToken+`"}}`; got != want {
		t.Fatalf("matchmaker request\n got %s\nwant %s", got, want)
	}
	tests := []struct{ name, first, want string }{
		{"bad queue", `{"game":"happy","version":"1","queue":"duo!"}`, `ERR queue name "duo!": use 1-30 letters, digits, '_' or '-'`},
		{"long queue", `{"game":"happy","version":"1","queue":"` + strings.Repeat("q", 31) + `"}`, `ERR queue name "`},
		{"bad prop value", `{"game":"happy","version":"1","props":{"skill":[1]}}`, `ERR Failed to parse request message as RequestSession: invalid props`},
		{"long prop string", `{"game":"happy","version":"1","props":{"map":"` + strings.Repeat("m", 65) + `"}}`, `ERR invalid props: property "map" is longer than 64 bytes`},
		{"too many props", `{"game":"happy","version":"1","props":{` + manyProps(17) + `}}`, `ERR invalid props: at most 16 properties`},
		{"bad party code", `{"game":"happy","version":"1","party":{"code":"K7QF2","token":"t"}}`, `ERR party code "K7QF2": want 6 characters`},
		{"party without token", `{"game":"happy","version":"1","party":{"code":"K7QF2M"}}`, `ERR party token missing or malformed`},
	}
	before, _ := f.count()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := wsSession(t, s.wsURL(), nil, tt.first, false)
			if len(res.frames) != 1 || !strings.HasPrefix(res.frames[0], tt.want) {
				t.Fatalf("frames %q, want one starting with %q", res.frames, tt.want)
			}
			if res.code != websocket.StatusPolicyViolation {
				t.Fatalf("close %d %q, want 1008", res.code, res.reason)
			}
		})
	}
	if n, _ := f.count(); n != before {
		t.Fatalf("the matchmaker got %d bad requests", n-before)
	}
}

func manyProps(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"p` + strings.Repeat("x", i) + `":1`
	}
	return strings.Join(parts, ",")
}

// A play-together request waits for other players first: it is bounded by PlayStreamTimeout,
// not StreamTimeout (here the shorter one, so that the test is quick).
// Not parallel: it uses startFake.
func TestPlayStreamTimeout(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{StreamTimeout: time.Minute, PlayStreamTimeout: 300 * time.Millisecond})
	start := time.Now()
	res := wsSession(t, s.wsURL(), nil, `{"game":"hang","version":"1","queue":"duo"}`, false)
	if len(res.frames) != 2 || res.frames[1] != "ERR "+msgTimeout || res.code != websocket.StatusTryAgainLater {
		t.Fatalf("ws: frames %q close %d", res.frames, res.code)
	}
	resp, body := do(t, "POST", s.ts.URL+"/matchmaker/request/hang/1", nil, `{"queue":"duo"}`)
	if resp.StatusCode != 200 || body != "\"Acknowledged\"\n{\"Error\":[504,\"Timeout waiting for matchmaker\"]}\n" {
		t.Fatalf("chunked: HTTP %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %v: the plain StreamTimeout applied", d)
	}
}
