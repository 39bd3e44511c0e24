package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/syncbuf"
	"github.com/bevygap-go/bevygap/protocol"
)

// partyFrontDoor is a fake front door with the party routes (docs/play-together.md) and the
// WebSocket route; package httpd is deliberately not used. Its party K7QF2M has one member
// (the leader) at the first GET and two from the second on; joining any other code is 404.
type partyFrontDoor struct {
	srv   *httptest.Server
	ready string // the SessionReady frame

	mu     sync.Mutex
	gets   int
	leaves []string // the tokens of the leave requests
	frames []string // the WebSocket request messages
	auth   []string // the Authorization headers of the party requests
}

const partyTestToken = "bGVhZGVyLXRva2VuLW9mLTMyLWJ5dGVzLWluLWJhc2U2NA"

func newPartyFrontDoor(t *testing.T, ready string) *partyFrontDoor {
	t.Helper()
	f := &partyFrontDoor{ready: ready}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, r protocol.PartyReply) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(r)
	}
	leader := protocol.PartyMember{ID: "m1", Leader: true}
	one := &protocol.Party{Code: "K7QF2M", Members: []protocol.PartyMember{leader}, Max: 8}
	two := &protocol.Party{Code: "K7QF2M", Members: []protocol.PartyMember{leader, {ID: "m2", Waiting: true}}, Max: 8}
	record := func(r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
	}
	mux.HandleFunc("POST /matchmaker/party/{game}/{version}", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		reply(w, 200, protocol.PartyReply{Party: one, Member: "m1", Token: partyTestToken})
	})
	mux.HandleFunc("POST /matchmaker/party/{game}/{version}/{code}/join", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		if r.PathValue("code") != "K7QF2M" {
			reply(w, 404, protocol.PartyReply{Error: &protocol.PlayError{Code: 404, Message: "unknown party code"}})
			return
		}
		reply(w, 200, protocol.PartyReply{Party: two, Member: "m2", Token: partyTestToken})
	})
	mux.HandleFunc("GET /matchmaker/party/{game}/{version}/{code}", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		f.mu.Lock()
		f.gets++
		p := one
		if f.gets > 1 {
			p = two
		}
		f.mu.Unlock()
		reply(w, 200, protocol.PartyReply{Party: p, Member: "m1"})
	})
	mux.HandleFunc("POST /matchmaker/party/{game}/{version}/{code}/leave", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		f.mu.Lock()
		f.leaves = append(f.leaves, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		f.mu.Unlock()
		reply(w, 200, protocol.PartyReply{Member: "m1"})
	})
	mux.HandleFunc("GET /matchmaker/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.frames = append(f.frames, string(b))
		f.mu.Unlock()
		for _, m := range []string{`"Acknowledged"`, `{"ProgressReport":"Waiting for party members (1 of 2 ready)"}`, f.ready} {
			if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		_ = conn.Close(websocket.StatusNormalClosure, "Goodbye")
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *partyFrontDoor) snapshot() (gets int, leaves, frames, auth []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets, append([]string(nil), f.leaves...), append([]string(nil), f.frames...), append([]string(nil), f.auth...)
}

// The leader creates the party, prints its code, waits for --party-wait members, then sends
// its own request (with queue and props) and leaves the party at the end.
func TestPlayPartyCreate(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddrPort("127.0.0.1:40123")
	b64, _ := playToken(t, addr)
	f := newPartyFrontDoor(t, playReadyFrame(b64, addr))
	code, stdout, stderr := runPlayCLI(t, "--url", f.srv.URL, "--json", "--packets", "0", "--party", "create",
		"--party-wait", "2", "--queue", "duo", "--prop", "skill=1200", "--prop", "mode=ctf")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stderr, "Party K7QF2M created") || !strings.Contains(stderr, "bevygap play --party join K7QF2M") {
		t.Errorf("the code is not on stderr:\n%s", stderr)
	}
	res := decodePlayResult(t, stdout)
	if !res.OK || res.Queue != "duo" || res.Session == nil || res.Session.Server != addr.String() {
		t.Fatalf("result %+v", res)
	}
	if want := (protocol.Props{"skill": protocol.Num(1200), "mode": protocol.Str("ctf")}); len(res.Props) != 2 ||
		res.Props["skill"] != want["skill"] || res.Props["mode"] != want["mode"] {
		t.Errorf("props %+v", res.Props)
	}
	if p := res.Party; p == nil || p.Code != "K7QF2M" || p.Member != "m1" || !p.Leader || p.Members != 2 || p.WaitMS <= 0 {
		t.Errorf("party %+v", res.Party)
	}
	gets, leaves, frames, auth := f.snapshot()
	if gets != 2 {
		t.Errorf("the leader looked at the party %d times, want 2 (1 member, then 2)", gets)
	}
	want := `{"game":"dotroom","version":"1","client_ip":null,"queue":"duo","props":{"mode":"ctf","skill":1200},"party":{"code":"K7QF2M","token":"` + partyTestToken + `"}}`
	if len(frames) != 1 || frames[0] != want {
		t.Errorf("request messages %q\nwant [%s]", frames, want)
	}
	if len(leaves) != 1 || leaves[0] != partyTestToken {
		t.Errorf("leave requests %q", leaves)
	}
	if auth[0] != "" || auth[1] != "Bearer "+partyTestToken {
		t.Errorf("Authorization headers %q: none on create, the token after", auth)
	}
	if strings.Contains(stdout+stderr, partyTestToken) {
		t.Errorf("the party token was printed")
	}
}

// A member joins (code in any case, flags after it), plays at once and leaves at the end.
func TestPlayPartyJoin(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddrPort("127.0.0.1:40124")
	b64, _ := playToken(t, addr)
	f := newPartyFrontDoor(t, playReadyFrame(b64, addr))
	code, stdout, stderr := runPlayCLI(t, "--url", f.srv.URL, "--party", "join", "k7qf2m", "--packets", "0")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stdout, "Joined party K7QF2M as m2 (2 of 8 members)") || !strings.Contains(stdout, "Session ready") {
		t.Errorf("stdout:\n%s", stdout)
	}
	gets, leaves, frames, _ := f.snapshot()
	want := `{"game":"dotroom","version":"1","client_ip":null,"party":{"code":"K7QF2M","token":"` + partyTestToken + `"}}`
	if gets != 0 || len(frames) != 1 || frames[0] != want || len(leaves) != 1 {
		t.Errorf("gets %d, frames %q, leaves %d; want 0, [%s], 1", gets, frames, len(leaves), want)
	}

	// More members than a party may hold: refused at once (and the party left), not a wait.
	code, _, stderr = runPlayCLI(t, "--url", f.srv.URL, "--party", "create", "--party-wait", "9", "--packets", "0")
	if _, leaves, _, _ := f.snapshot(); code != 1 || !strings.Contains(stderr, "--party-wait 9: a party holds at most 8 members") || len(leaves) != 2 {
		t.Fatalf("--party-wait 9: exit %d, %d leaves\n%s", code, len(leaves), stderr)
	}

	code, stdout, stderr = runPlayCLI(t, "--url", f.srv.URL, "--json", "--party", "join=ZZZZZZ", "--packets", "0")
	if code != 1 {
		t.Fatalf("join an unknown party: exit %d\nstderr: %s", code, stderr)
	}
	res := decodePlayResult(t, stdout)
	if res.OK || res.Error == nil || res.Error.Kind != "party" || res.Error.Code != 404 || !strings.Contains(res.Error.Message, "unknown party code") ||
		res.Progress == nil || !strings.Contains(stdout, `"progress": []`) {
		t.Errorf("result %+v, error %+v", res, res.Error)
	}
}

func TestPlayPartyUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown op", []string{"--party", "start"}, `--party "start": want create or join CODE`},
		{"join without code", []string{"--party", "join"}, "--party join needs the party's code"},
		{"bad code", []string{"--party", "join", "K7QF2O"}, `party code "K7QF2O": want 6 characters`},
		{"create with code", []string{"--party", "create=K7QF2M"}, "want create or join CODE"},
		{"wait without create", []string{"--party", "join", "K7QF2M", "--party-wait", "3"}, "--party-wait goes with --party create"},
		{"wait zero", []string{"--party", "create", "--party-wait", "0"}, "--party-wait must be between 1 and 64"},
		{"bad queue", []string{"--queue", "a b"}, `--queue "a b"`},
		{"prop without value", []string{"--prop", "skill"}, `"skill": want name=value`},
		{"bad prop name", []string{"--prop", "a.b=1"}, `property name "a.b"`},
		{"extra after code", []string{"--party", "join", "K7QF2M", "now"}, `unexpected argument "now"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runPlayCLI(t, append([]string{"--json", "--url", "ws://127.0.0.1:1/matchmaker/ws"}, tt.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 mentioning %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestPropsFlag(t *testing.T) {
	t.Parallel()
	var p propsFlag
	for _, s := range []string{"skill=1200", "ratio=-0.5", "mode=ctf", "map=", "big=1e3", "inf=inf", "v=1.2.3"} {
		if err := p.Set(s); err != nil {
			t.Fatalf("Set(%q): %v", s, err)
		}
	}
	want := protocol.Props{"skill": protocol.Num(1200), "ratio": protocol.Num(-0.5), "mode": protocol.Str("ctf"),
		"map": protocol.Str(""), "big": protocol.Num(1000), "inf": protocol.Str("inf"), "v": protocol.Str("1.2.3")}
	if len(p.props) != len(want) {
		t.Fatalf("props %+v", p.props)
	}
	for k, v := range want {
		if p.props[k] != v {
			t.Errorf("%s = %+v, want %+v", k, p.props[k], v)
		}
	}
	if got := p.String(); got != "big=1000,inf=inf,map=,mode=ctf,ratio=-0.5,skill=1200,v=1.2.3" {
		t.Errorf("String() = %q", got)
	}
}

// runPlayAsync starts "bevygap play args..." and returns its stderr (safe to read while it
// runs), its stdout once done, and its exit code.
func runPlayAsync(t *testing.T, args ...string) (stderr *syncbuf.Buffer, done chan struct{}, result func() (int, string)) {
	t.Helper()
	stderr, stdout := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	env := &Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: func(string) string { return "" }}
	done = make(chan struct{})
	code := 0
	go func() {
		defer close(done)
		code = run(context.Background(), append([]string{"play"}, args...), env)
	}()
	return stderr, done, func() (int, string) {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("bevygap play %q did not finish\n%s", args, stderr.String())
		}
		return code, stdout.String()
	}
}

// The whole flow against a real stack (devstack: front door, matchmaker with the dev queues,
// simulator, game servers): two players in the queue duo get the same game server; a party of
// two (a leader who waits for one member) gets one game server.
func TestPlayTogetherAgainstDev(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	st, err := devstack.Start(ctx, devstack.Config{BootTime: -1, BootJitter: -1})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = st.Shutdown(sctx)
	})
	url := st.Info().WebSocketURL
	both := func(what string, a, b func() (int, string)) (playResult, playResult) {
		t.Helper()
		var res [2]playResult
		for i, f := range []func() (int, string){a, b} {
			code, stdout := f()
			if code != 0 {
				t.Fatalf("%s: player %d exit %d: %s", what, i+1, code, stdout)
			}
			res[i] = decodePlayResult(t, stdout)
		}
		if res[0].Session == nil || res[1].Session == nil || res[0].Session.Server != res[1].Session.Server {
			t.Fatalf("%s: not on one game server: %+v %+v", what, res[0].Session, res[1].Session)
		}
		return res[0], res[1]
	}

	t.Run("queue duo", func(t *testing.T) {
		_, _, first := runPlayAsync(t, "--url", url, "--queue", "duo", "--packets", "1", "--json")
		_, _, second := runPlayAsync(t, "--url", url, "--queue", "duo", "--packets", "1", "--json")
		a, b := both("duo", first, second)
		if a.Queue != "duo" || b.Queue != "duo" || a.GameServer == nil || !a.GameServer.Connected || b.GameServer == nil || !b.GameServer.Connected {
			t.Fatalf("results %+v / %+v", a, b)
		}
	})

	t.Run("party", func(t *testing.T) {
		leaderErr, _, leader := runPlayAsync(t, "--url", url, "--party", "create", "--party-wait", "2", "--packets", "1", "--json")
		var code string
		eventually.True(t, 10*time.Second, func() bool {
			_, rest, ok := strings.Cut(leaderErr.String(), "bevygap play --party join ")
			if ok && len(rest) >= protocol.PartyCodeLen {
				code = rest[:protocol.PartyCodeLen]
			}
			return code != ""
		}, "the leader prints the party code")
		_, _, member := runPlayAsync(t, "--url", url, "--party", "join", code, "--packets", "1", "--json")
		l, m := both("party", leader, member)
		if l.Party == nil || !l.Party.Leader || l.Party.Code != code || m.Party == nil || m.Party.Leader || m.Party.Code != code ||
			!l.GameServer.Connected || !m.GameServer.Connected {
			t.Fatalf("results %+v %+v / %+v %+v", l, l.Party, m, m.Party)
		}
	})
}

// A play-together run first waits for other players: its --timeout defaults to 10 min.
func TestPlayTogetherTimeoutDefault(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want time.Duration
	}{
		{nil, playDefaultTimeout},
		{[]string{"--queue", "duo"}, playDefaultTogetherTimeout},
		{[]string{"--prop", "skill=1"}, playDefaultTogetherTimeout},
		{[]string{"--party", "join", "K7QF2M"}, playDefaultTogetherTimeout},
		{[]string{"--party", "join", "K7QF2M", "--timeout", "30s"}, 30 * time.Second},
		{[]string{"--timeout", "30s", "--party", "create"}, 30 * time.Second},
	} {
		env := &Env{Stdin: strings.NewReader(""), Stdout: &syncbuf.Buffer{}, Stderr: &syncbuf.Buffer{}, Getenv: func(string) string { return "" }}
		c, err := parsePlayFlags(env, tt.args)
		if err != nil || c.timeout != tt.want {
			t.Errorf("%q: timeout %v, %v; want %v", tt.args, c.timeout, err, tt.want)
		}
	}
}
