package matchmaker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

func TestGenSessionGrantClaimDisconnect(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true})
	ctx := context.Background()
	if _, err := h.b.CertDigests.Put(ctx, "127.0.0.1", []byte("ab12cd")); err != nil {
		t.Fatal(err)
	}
	r := h.gensession(t, `{"client_ip":"81.2.69.160","extra":{"ignored":true}}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	// Exact reply shape: field names and order of the reference.
	re := regexp.MustCompile(`^\{"connect_token":"[A-Za-z0-9+/]+={0,2}","gameserver_ip":"127\.0\.0\.1","gameserver_port":\d+,"link":"127\.0\.0\.1:\d+","cert_digest":"ab12cd"\}$`)
	if !re.Match(r.raw) {
		t.Fatalf("reply JSON %s", r.raw)
	}
	if r.reply.Link != "127.0.0.1:"+strconv.Itoa(int(r.reply.GameserverPort)) {
		t.Fatalf("link %q vs port %d", r.reply.Link, r.reply.GameserverPort)
	}
	tok, err := netcode.DecodeConnectTokenBase64(r.reply.ConnectToken, netcode.FormatLightyear017)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Bytes()) != netcode.ConnectTokenBytes || tok.ProtocolID != DefaultProtocolID {
		t.Fatalf("token: %d bytes, protocol %d", len(tok.Bytes()), tok.ProtocolID)
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.reply.GameserverPort); len(tok.ServerAddrs) != 1 || tok.ServerAddrs[0] != want {
		t.Fatalf("token server addrs %v, want %v", tok.ServerAddrs, want)
	}
	cid := h.clientIDOf(t, r.reply.ConnectToken)
	cidStr := strconv.FormatUint(cid, 10)

	// KV contract: ly2eg[client id] = session id, eg2ly[session id] = client id,
	// unclaimed[session id] = session id.
	e, err := h.b.SessionsLy2Eg.Get(ctx, cidStr)
	if err != nil {
		t.Fatal(err)
	}
	sid := string(e.Value())
	if e, err := h.b.SessionsEg2Ly.Get(ctx, sid); err != nil || string(e.Value()) != cidStr {
		t.Fatalf("sessions_eg2ly[%s] = %v, %v", sid, e, err)
	}
	if e, err := h.b.UnclaimedSessions.Get(ctx, sid); err != nil || string(e.Value()) != sid {
		t.Fatalf("unclaimed_sessions[%s] = %v, %v", sid, e, err)
	}
	if h.sim.LiveSessions() != 1 {
		t.Fatalf("live sessions %d", h.sim.LiveSessions())
	}

	// The game server claims the session: it leaves unclaimed_sessions.
	h.claim(t, cidStr)
	eventually(t, 3*time.Second, "claimed session dropped from unclaimed_sessions", func() bool {
		_, err := h.b.UnclaimedSessions.Get(ctx, sid)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	// Claimed sessions outlive the unclaimed deadline.
	time.Sleep(h.cfg.ReadinessLimit + h.cfg.ClaimGrace + 300*time.Millisecond)
	if h.sim.LiveSessions() != 1 {
		t.Fatal("a claimed session was deleted")
	}
	// The player leaves: the session is deleted on Edgegap.
	h.disconnect(t, sid)
	h.noLeaks(t, 5*time.Second)
}

func TestGenSessionErrors(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		name     string
		body     string
		fault    *edgegapsim.EndpointFaults
		wantCode string
		wantDesc string
	}{
		{"bad json", `{"client_ip":`, nil, "400", "error decoding session request: body is not a JSON object"},
		{"not an object", `[1,2]`, nil, "400", "error decoding session request: body is not a JSON object"},
		{"missing client_ip", `{"ip":"1.2.3.4"}`, nil, "400", "error decoding session request: Missing client_ip field"},
		{"client_ip not a string", `{"client_ip":1234}`, nil, "400", "error decoding session request: client_ip is not a string"},
		{"client_ip not an ip", `{"client_ip":"example.com"}`, nil, "400", "client_ip is not an IP address"},
		{"empty client_ip", `{"client_ip":""}`, nil, "400", "missing client_ip"},
		{"edgegap 401", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 401}, "401", ""},
		{"edgegap 403", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 403}, "403", ""},
		{"edgegap 409", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 409}, "409", ""},
		{"edgegap 429", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 429}, "429", ""},
		{"edgegap 400", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 400}, "400", ""},
		{"edgegap 500", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 500}, "502", ""},
		{"edgegap 503", `{"client_ip":"1.2.3.4"}`, &edgegapsim.EndpointFaults{FailNext: 1, Status: 503}, "502", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != nil {
				h.sim.SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
					edgegap.EndpointSessionCreate: *tt.fault}})
			}
			r := h.gensession(t, tt.body)
			if r.errCode != tt.wantCode {
				t.Fatalf("code %q (%s), want %s", r.errCode, r.errDesc, tt.wantCode)
			}
			if tt.wantDesc != "" && r.errDesc != tt.wantDesc {
				t.Fatalf("description %q, want %q", r.errDesc, tt.wantDesc)
			}
			if len(r.raw) != 0 {
				t.Fatalf("error reply has a body: %q", r.raw)
			}
		})
	}
	h.noLeaks(t, time.Second)
}

func TestServiceDiscoveryAndStats(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	_ = h.gensession(t, `{}`)
	msg, err := h.nc.Request("$SRV.INFO."+protocol.GenSessionServiceName, nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Endpoints []struct {
			Name       string `json:"name"`
			Subject    string `json:"subject"`
			QueueGroup string `json:"queue_group"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "gensession" || info.Version != "0.0.1" || len(info.Endpoints) != 1 ||
		info.Endpoints[0].Subject != "session.gensession" || info.Endpoints[0].QueueGroup != "session_queue" ||
		info.Endpoints[0].Name != "gensession" {
		t.Fatalf("service info %s", msg.Data)
	}
	msg, err = h.nc.Request("$SRV.STATS."+protocol.GenSessionServiceName, nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Endpoints []struct {
			NumRequests int             `json:"num_requests"`
			NumErrors   int             `json:"num_errors"`
			Data        genSessionStats `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(msg.Data, &stats); err != nil {
		t.Fatal(err)
	}
	// The bad request ({} has no client_ip) is answered inside the handler, so micro's own
	// error count (what "nats micro stats" shows) includes it.
	if len(stats.Endpoints) != 1 || stats.Endpoints[0].NumRequests != 2 || stats.Endpoints[0].NumErrors != 1 ||
		stats.Endpoints[0].Data.Granted != 1 || stats.Endpoints[0].Data.Errors != 1 {
		t.Fatalf("stats %s", msg.Data)
	}
}

func TestStreamContract(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 300 * time.Millisecond})
	raw, fbs := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"81.2.69.160","game":"`+h.cfg.AppName+`","version":"v1"}`)
	if string(raw[0]) != `"Acknowledged"` {
		t.Fatalf("first message %q", raw[0])
	}
	if !regexp.MustCompile(`^\{"SessionRequestAccepted":"[A-Za-z0-9_=-]+"\}$`).Match(raw[1]) {
		t.Fatalf("second message %q", raw[1])
	}
	if len(raw[len(raw)-1]) != 0 {
		t.Fatal("stream not ended by an empty message")
	}
	last := raw[len(raw)-2]
	if !regexp.MustCompile(`^\{"SessionReady":\{"token":"[A-Za-z0-9+/]+={0,2}","ip":"127\.0\.0\.1","port":\d+,"cert_digest":""\}\}$`).Match(last) {
		t.Fatalf("final message %q", last)
	}
	for _, f := range fbs[2 : len(fbs)-1] {
		if f.Kind != protocol.FeedbackProgressReport {
			t.Fatalf("unexpected middle feedback %v", f)
		}
	}
	sid := fbs[1].Text
	cid := h.clientIDOf(t, fbs[len(fbs)-1].Ready.Token)
	if got := h.claim(t, strconv.FormatUint(cid, 10)); got != sid {
		t.Fatalf("ly2eg maps to %q, accepted %q", got, sid)
	}
	h.disconnect(t, sid)
	h.noLeaks(t, 5*time.Second)
}

func TestStreamRejectsOtherGamesAndBadRequests(t *testing.T) {
	h := newHarness(t, harnessOpts{configure: func(c *Config) { c.AnswerUnknownGames = true }})
	tests := []struct {
		name, game, version, body string
		want                      string
	}{
		{"other game", "othergame", "v1", `{"client_ip":"1.2.3.4"}`,
			`{"Error":[404,"no matchmaker here serves game \"othergame\" version \"v1\" (this one serves \"` + h.cfg.AppName + `\" version \"v1\")"]}`},
		{"other version", h.cfg.AppName, "v2", `{"client_ip":"1.2.3.4"}`, `{"Error":[404,`},
		{"name too long", strings.Repeat("a", 31), "v1", `{"client_ip":"1.2.3.4"}`, `{"Error":[400,"Game name too long (max 30 chars)"]}`},
		{"bad version", h.cfg.AppName, "v1%", `{"client_ip":"1.2.3.4"}`, `{"Error":[400,"Game version invalid"]}`},
		{"bad json", h.cfg.AppName, "v1", `nope`, `{"Error":[400,"error decoding session request: body is not a JSON object"]}`},
		{"missing ip", h.cfg.AppName, "v1", `{}`, `{"Error":[400,"error decoding session request: Missing client_ip field"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := h.stream(t, tt.game, tt.version, tt.body)
			if len(raw[len(raw)-1]) != 0 {
				t.Fatal("no terminator")
			}
			errMsg := raw[len(raw)-2]
			if !strings.HasPrefix(string(errMsg), tt.want) {
				t.Fatalf("got %s, want %s", errMsg, tt.want)
			}
		})
	}
	h.noLeaks(t, time.Second)
}

func TestReadinessTimeoutDeletesSession(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, faults: edgegapsim.Faults{NeverReadyRate: 1},
		configure: func(c *Config) { c.ReadinessLimit = 800 * time.Millisecond }})
	start := time.Now()
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "504" || r.errDesc != "session still not ready, timed out." {
		t.Fatalf("got %s %q", r.errCode, r.errDesc)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	h.noLeaks(t, 3*time.Second)
}

func TestBootFailureReportsErrorAndDeletes(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 100 * time.Millisecond, faults: edgegapsim.Faults{BootFailureRate: 1}})
	_, fbs := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"1.2.3.4"}`)
	last := fbs[len(fbs)-1]
	if last.Kind != protocol.FeedbackError || last.Code != 502 {
		t.Fatalf("last feedback %v", last)
	}
	h.noLeaks(t, 3*time.Second)
}

func TestWebhookLostFallsBackToPolling(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 100 * time.Millisecond,
		faults: edgegapsim.Faults{WebhookLossRate: 1}})
	start := time.Now()
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	// Healthy-webhook schedule: no webhook at all by the early check (10 % of the 3 s limit),
	// so one poll then finds the session ready.
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("granted after %v: polled too early for a webhook setup", d)
	}
	if v := testutilCounter(t, h.mms[0], "bevygap_matchmaker_sessions_ready_total"); v != 1 {
		t.Fatalf("sessions ready = %v", v)
	}
	if h.mms[0].hooks.isHealthy() {
		t.Fatal("webhook path still considered healthy")
	}
	// Next request polls fast.
	start = time.Now()
	if r := h.gensession(t, `{"client_ip":"1.2.3.4"}`); r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("degraded mode still slow: %v", d)
	}
	// Unclaimed: reaped.
	h.noLeaks(t, 6*time.Second)
}

func TestWebhookPathCallsPerSession(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 1200 * time.Millisecond})
	h.sim.ResetCallCounts()
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.reply.ConnectToken), 10))
	h.disconnect(t, sid)
	h.noLeaks(t, 5*time.Second)
	calls := h.sim.CallCounts()
	if c, g, d := calls.Endpoint(edgegap.EndpointSessionCreate), calls.Endpoint(edgegap.EndpointSessionGet), calls.Endpoint(edgegap.EndpointSessionDelete); c != 1 || g != 1 || d != 1 {
		t.Fatalf("calls: create %d get %d delete %d (want 1/1/1)", c, g, d)
	}
}

func TestUnclaimedSessionIsReaped(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	if h.sim.LiveSessions() != 1 {
		t.Fatal("no live session")
	}
	time.Sleep(h.cfg.ReadinessLimit - 500*time.Millisecond)
	if h.sim.LiveSessions() != 1 {
		t.Fatal("reaped before its deadline")
	}
	h.noLeaks(t, 3*time.Second)
}

func TestMatchmakerKilledMidWait(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 5 * time.Second, noMatchmaker: true,
		configure: func(c *Config) { c.Reconcile = false; c.ReadinessLimit = 10 * time.Second }})
	victim := h.start(t, h.cfg)
	// Ask, and "kill" the victim as soon as Edgegap accepted the session: its NATS connection
	// dies, so it can neither answer nor clean up.
	inbox := "killtest.inbox"
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.nc.PublishRequest(protocol.SubjectMatchmakerRequestPrefix+"."+h.cfg.AppName+".v1", inbox, []byte(`{"client_ip":"1.2.3.4"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(msg.Data), `{"SessionRequestAccepted"`) {
			break
		}
	}
	victim.nc.Close()
	// A surviving matchmaker (with a short readiness limit) reaps the orphan.
	cfg := h.cfg
	cfg.ReadinessLimit = time.Second
	h.start(t, cfg)
	h.noLeaks(t, 8*time.Second)
}

func TestDeleteAPIFailingForAWhile(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.reply.ConnectToken), 10))
	h.sim.SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionDelete: {FailNext: 8, Status: 503}}})
	h.disconnect(t, sid)
	h.noLeaks(t, 10*time.Second)
	if !strings.Contains(h.logs.String(), "session delete keeps failing; still queued") {
		t.Fatal("stuck deletion not reported")
	}
}

func TestReconcileDeletesOnlyOwnOrphans(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, configure: func(c *Config) {
		c.ReadinessLimit = 500 * time.Millisecond
		c.ClaimGrace = 100 * time.Millisecond
	}})
	ctx := context.Background()
	api := h.newAPI()
	create := func(webhookURL string) string {
		t.Helper()
		s, err := api.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: h.cfg.AppName, IPList: []string{"1.2.3.4"}, WebhookURL: webhookURL})
		if err != nil {
			t.Fatal(err)
		}
		return s.SessionID
	}
	// Our orphan: created with our webhook URL (as by a crash between create and the KV write,
	// or a create that timed out on our side), but no bucket knows it.
	ours := create(h.cfg.SessionWebhookURL)
	// Foreign sessions on the same Edgegap account: another app or a Rust bevygap without a
	// webhook, and another bevygap deployment with its own webhook URL.
	foreign := []string{create(""), create(h.hookSrv.URL + "/hook/othergame")}
	alive := func(sid string) bool {
		_, err := api.GetSession(ctx, sid)
		if err != nil && !errors.Is(err, edgegap.ErrNotFound) {
			t.Fatalf("get %s: %v", sid, err)
		}
		return err == nil
	}
	eventually(t, 5*time.Second, "our orphan deleted", func() bool { return !alive(ours) })
	// Several more reconcile rounds (300 ms each) past the 600 ms age limit.
	time.Sleep(1500 * time.Millisecond)
	for _, sid := range foreign {
		if !alive(sid) {
			t.Fatalf("foreign session %s deleted by reconciliation", sid)
		}
	}
	if got := testutilCounter(t, h.mms[0], "bevygap_matchmaker_reconciled_deletes_total"); got != 1 {
		t.Fatalf("reconciled deletes = %v, want 1", got)
	}
}

func TestReconcileDisabledWithoutWebhookURL(t *testing.T) {
	h := newHarness(t, harnessOpts{configure: func(c *Config) {
		c.ReadinessLimit = 300 * time.Millisecond
		c.ClaimGrace = 100 * time.Millisecond
		c.ReconcileInterval = 100 * time.Millisecond
	}})
	if !strings.Contains(h.logs.String(), "reconciliation disabled") {
		t.Fatal("no startup log line about disabled reconciliation")
	}
	api := h.newAPI()
	s, err := api.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: h.cfg.AppName, IPList: []string{"1.2.3.4"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a dozen would-be reconcile rounds, well past the age limit
	if _, err := api.GetSession(context.Background(), s.SessionID); err != nil {
		t.Fatalf("session deleted without reconciliation: %v", err)
	}
	if c := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionList); c != 0 {
		t.Fatalf("%d session list calls with reconciliation disabled", c)
	}
}

func TestQueuePositionReported(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 600 * time.Millisecond,
		configure: func(c *Config) { c.MaxConcurrentCreates = 1 }})
	done := make(chan []protocol.Feedback, 1)
	errc := make(chan error, 1)
	go func() {
		_, fbs, err := h.streamE(h.cfg.AppName, "v1", `{"client_ip":"1.2.3.4"}`)
		errc <- err
		done <- fbs
	}()
	time.Sleep(150 * time.Millisecond)
	_, second := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"1.2.3.5"}`)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	first := <-done
	for _, fbs := range [][]protocol.Feedback{first, second} {
		if last := fbs[len(fbs)-1]; last.Kind != protocol.FeedbackSessionReady {
			t.Fatalf("not granted: %v", last)
		}
	}
	// Whichever came second (normally the second) waited in the queue at position 1.
	queued := 0
	for _, fbs := range [][]protocol.Feedback{first, second} {
		if fbs[1] == protocol.Progress("Queued: position 1") {
			queued++
		}
	}
	if queued != 1 {
		t.Fatalf("feedback: first %v, second %v", first, second)
	}
	h.noLeaks(t, 6*time.Second)
}

func TestStartRefusesUnusableApp(t *testing.T) {
	tests := []struct {
		name      string
		inactive  bool
		configure func(*Config)
		want      string
	}{
		{"inactive version", true, nil, "is not active"},
		{"unknown version", false, func(c *Config) { c.AppVersion = "v9" }, "does not know version"},
		{"unknown app", false, func(c *Config) { c.AppName = "nosuchapp" }, "does not know application"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{inactive: tt.inactive, noMatchmaker: true, configure: tt.configure})
			mm, err := New(h.cfg, Deps{NATS: h.nc, Edgegap: h.newAPI(), Logger: h.log})
			if err != nil {
				t.Fatal(err)
			}
			err = mm.Start(context.Background())
			if !errors.Is(err, ErrAppNotReady) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true})
	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	_ = h.gensession(t, `{"client_ip":"x"}`)
	h.sim.SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionCreate: {FailNext: 1, Status: 401}}})
	_ = h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	// Also a failing start (error text) and New with a bad key.
	bad := h.cfg
	bad.AppVersion = "nope"
	mm, _ := New(bad, Deps{NATS: h.nc, Edgegap: h.newAPI(), Logger: h.log})
	startErr := mm.Start(context.Background())

	key := h.cfg.PrivateKey
	var dec []string
	for _, b := range key {
		dec = append(dec, strconv.Itoa(int(b)))
	}
	secrets := []string{
		strings.Join(dec, ","), strings.Join(dec, ", "), string(key.AppendHex(nil)),
		"sim-secret-4f1c2b",
	}
	out := h.logs.String() + startErr.Error() + fmtAll(h.cfg)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("secret %q leaked", s)
		}
	}
	if !strings.Contains(h.logs.String(), `"private_key":"[REDACTED]"`) {
		t.Fatal("expected the redacted key in the startup log")
	}
}

func TestConfigValidation(t *testing.T) {
	key, _ := netcode.GenerateKey()
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"zero key", func(c *Config) { c.PrivateKey = netcode.Key{} }},
		{"no app", func(c *Config) { c.AppName = "" }},
		{"dotted app", func(c *Config) { c.AppName = "a.b" }},
		{"bad webhook", func(c *Config) { c.SessionWebhookURL = "ftp://x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.PrivateKey = key
			tt.mutate(&c)
			if _, err := New(c, Deps{}); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	c := DefaultConfig()
	c.AllowZeroKey = true
	if _, err := New(c, Deps{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("missing deps: err = %v", err)
	}
}

func TestGracefulShutdownFailsInFlightCleanly(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 5 * time.Second, noMatchmaker: true,
		configure: func(c *Config) { c.ReadinessLimit = 10 * time.Second; c.ShutdownTimeout = 300 * time.Millisecond }})
	mm := h.start(t, h.cfg)
	done := make(chan []protocol.Feedback, 1)
	errc := make(chan error, 1)
	go func() {
		_, fbs, err := h.streamE(h.cfg.AppName, "v1", `{"client_ip":"1.2.3.4"}`)
		errc <- err
		done <- fbs
	}()
	eventually(t, 3*time.Second, "session created", func() bool { return h.sim.LiveSessions() == 1 })
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	fbs := <-done
	if last := fbs[len(fbs)-1]; last.Kind != protocol.FeedbackError || last.Code != 503 || last.Text != "matchmaker shutting down" {
		t.Fatalf("last feedback %v", last)
	}
	// No matchmaker answers any more.
	if _, err := h.nc.Request(protocol.SubjectGenSession, []byte(`{"client_ip":"1.2.3.4"}`), 300*time.Millisecond); err == nil {
		t.Fatal("gensession still answered after shutdown")
	}
	// The abandoned session is queued; a new matchmaker's delete worker deletes it.
	h.start(t, h.cfg)
	h.noLeaks(t, 5*time.Second)
}

func TestPollScheduleTable(t *testing.T) {
	tests := []struct {
		name          string
		hook, healthy bool
		want          []time.Duration
	}{
		{"webhook healthy", true, true, []time.Duration{5 * time.Second, 36 * time.Second, 48 * time.Second, 57 * time.Second}},
		{"webhook degraded", true, false, nil},
		{"no webhook", false, true, nil},
	}
	for _, tt := range tests {
		got := pollSchedule(time.Minute, 500*time.Millisecond, 3*time.Second, tt.hook, tt.healthy)
		if tt.want != nil {
			if len(got) != len(tt.want) || got[0] != tt.want[0] || got[1] != tt.want[1] || got[3] != tt.want[3] {
				t.Errorf("%s: %v", tt.name, got)
			}
			continue
		}
		if got[0] != 0 || got[1] != 500*time.Millisecond || got[2] != 1500*time.Millisecond || got[3] != 3500*time.Millisecond {
			t.Errorf("%s: %v", tt.name, got[:4])
		}
		for i := 4; i < len(got); i++ {
			if got[i]-got[i-1] != 3*time.Second {
				t.Errorf("%s: interval %v at %d", tt.name, got[i]-got[i-1], i)
			}
		}
		if len(got) > 25 {
			t.Errorf("%s: %d polls in a minute", tt.name, len(got))
		}
	}
}

func TestNATSRestartMidFlight(t *testing.T) {
	dir := t.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Port()
	t.Cleanup(func() { srv.Shutdown() })
	h := newHarness(t, harnessOpts{nats: srv, webhook: true, boot: 2 * time.Second,
		configure: func(c *Config) {
			c.Buckets.Memory = false // survive the restart
			c.ReadinessLimit = 6 * time.Second
		}})
	inbox := nats.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.nc.PublishRequest(protocol.SubjectMatchmakerRequestPrefix+"."+h.cfg.AppName+".v1", inbox, []byte(`{"client_ip":"1.2.3.4"}`)); err != nil {
		t.Fatal(err)
	}
	var fbs []protocol.Feedback
	restarted := false
	for {
		msg, err := sub.NextMsg(15 * time.Second)
		if err != nil {
			t.Fatalf("stream: %v after %v", err, fbs)
		}
		if len(msg.Data) == 0 {
			break
		}
		var f protocol.Feedback
		if err := json.Unmarshal(msg.Data, &f); err != nil {
			t.Fatal(err)
		}
		fbs = append(fbs, f)
		if f.Kind == protocol.FeedbackSessionRequestAccepted && !restarted {
			restarted = true
			srv.Shutdown()
			time.Sleep(300 * time.Millisecond)
			srv2, err := natsembed.Start(natsembed.Config{StoreDir: dir, Port: port})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv2.Shutdown() })
		}
	}
	last := fbs[len(fbs)-1]
	if !last.IsFinal() {
		t.Fatalf("stream ended without a final feedback: %v", fbs)
	}
	t.Logf("outcome across the restart: %v", last)
	if last.Kind == protocol.FeedbackSessionReady {
		sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, last.Ready.Token), 10))
		h.disconnect(t, sid)
	}
	h.noLeaks(t, 15*time.Second)
}

func TestTwoMatchmakersShareLoadWithoutDoubleWork(t *testing.T) {
	h := newHarness(t, harnessOpts{sockets: 100})
	second := h.start(t, h.cfg)
	const n = 12
	h.sim.ResetCallCounts()
	type result struct {
		acks, ready int
		err         error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			_, fbs, err := h.streamE(h.cfg.AppName, "v1", `{"client_ip":"1.2.3.4"}`)
			r := result{err: err}
			for _, f := range fbs {
				switch f.Kind {
				case protocol.FeedbackAcknowledged:
					r.acks++
				case protocol.FeedbackSessionReady:
					r.ready++
				}
			}
			results <- r
		}()
	}
	for i := 0; i < n; i++ {
		if r := <-results; r.err != nil || r.acks != 1 || r.ready != 1 {
			t.Fatalf("request %d: %d acknowledgements, %d grants, err %v", i, r.acks, r.ready, r.err)
		}
	}
	if c := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); c != n {
		t.Fatalf("%d session creates for %d requests", c, n)
	}
	served := func(mm *Matchmaker) float64 {
		return testutilCounter(t, mm, "bevygap_matchmaker_requests_total")
	}
	a, b := served(h.mms[0]), served(second)
	if a+b != n {
		t.Fatalf("served %v + %v, want %d", a, b, n)
	}
	t.Logf("first matchmaker served %v, second %v", a, b)
	h.noLeaks(t, 6*time.Second)
}

func TestDottedVersionUsesLiteralSubject(t *testing.T) {
	h := newHarness(t, harnessOpts{noMatchmaker: true})
	if err := h.sim.AddApp(edgegapsim.AppConfig{Name: "spacepit_" + h.cfg.AppName, Versions: []edgegapsim.VersionConfig{{Name: "v0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	cfg := h.cfg
	cfg.AppName, cfg.AppVersion = "spacepit_"+h.cfg.AppName, "v0.0.1"
	h.cfg = cfg
	h.start(t, cfg)
	_, fbs := h.stream(t, cfg.AppName, "v0.0.1", `{"client_ip":"1.2.3.4"}`)
	if last := fbs[len(fbs)-1]; last.Kind != protocol.FeedbackSessionReady {
		t.Fatalf("last feedback %v", last)
	}
	// By default nobody answers other names: NATS reports no responders.
	if _, err := h.nc.Request(protocol.SubjectMatchmakerRequestPrefix+".othergame.v1", []byte(`{"client_ip":"1.2.3.4"}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request for an unserved game: err = %v, want no responders", err)
	}
	h.noLeaks(t, 6*time.Second)
}

func TestMetricsCountEdgegapCalls(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r := h.gensession(t, `{"client_ip":"1.2.3.4"}`); r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	mfs, err := h.mms[0].Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "bevygap_matchmaker_edgegap_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["endpoint"]+"/"+labels["outcome"]] = m.GetCounter().GetValue()
		}
	}
	for _, k := range []string{"app_get/ok", "app_version_get/ok", "session_create/ok", "session_get/ok"} {
		if got[k] < 1 {
			t.Errorf("%s = %v (all: %v)", k, got[k], got)
		}
	}
}

func TestThousandWaitingRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const n = 1000
	// The readiness limit is generous so that the fallback polls (at 60/80/95 % of it) stay out of
	// the way even on a slow, loaded machine or under -race: the test is about webhook wake-ups.
	h := newHarness(t, harnessOpts{quiet: true, webhook: true, boot: time.Second, sockets: 50,
		configure: func(c *Config) {
			c.MaxConcurrentCreates = 600
			c.ReadinessLimit = 20 * time.Second
			c.Reconcile = false
		}})
	errs := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func() {
			msg, err := h.nc.Request(protocol.SubjectGenSession, []byte(`{"client_ip":"1.2.3.4"}`), 30*time.Second)
			if err == nil && msg.Header.Get("Nats-Service-Error-Code") != "" {
				err = errors.New(msg.Header.Get("Nats-Service-Error-Code") + " " + msg.Header.Get("Nats-Service-Error"))
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	t.Logf("%d sessions granted in %v", n, time.Since(start))
	if c := h.sim.CallCounts(); c.Endpoint(edgegap.EndpointSessionCreate) != n || c.Endpoint(edgegap.EndpointSessionGet) > n+n/10 {
		t.Fatalf("calls: %d creates, %d gets", c.Endpoint(edgegap.EndpointSessionCreate), c.Endpoint(edgegap.EndpointSessionGet))
	}
	h.noLeaks(t, 30*time.Second)
}

func TestServeMetrics(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeMetrics(ctx, ln, h.mms[0].Registry()) }()
	var body string
	eventually(t, 3*time.Second, "metrics served", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	for _, want := range []string{`bevygap_matchmaker_edgegap_calls_total{endpoint="app_get",outcome="ok"} 1`, "bevygap_matchmaker_webhook_healthy 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestGracefulShutdownLetsInFlightFinish(t *testing.T) {
	h := newHarness(t, harnessOpts{webhook: true, boot: 500 * time.Millisecond, noMatchmaker: true,
		configure: func(c *Config) { c.ReadinessLimit = 20 * time.Second; c.ShutdownTimeout = 10 * time.Second }})
	mm := h.start(t, h.cfg)
	type out struct {
		fbs []protocol.Feedback
		err error
	}
	done := make(chan out, 1)
	start := time.Now()
	go func() {
		_, fbs, err := h.streamE(h.cfg.AppName, "v1", `{"client_ip":"1.2.3.4"}`)
		done <- out{fbs, err}
	}()
	eventually(t, 3*time.Second, "session created", func() bool { return h.sim.LiveSessions() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := mm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if last := o.fbs[len(o.fbs)-1]; last.Kind != protocol.FeedbackSessionReady {
		t.Fatalf("last feedback %v", last)
	}
	// Woken by its webhook during shutdown, not by the late fallback poll (12 s).
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("in-flight request took %v", d)
	}
}
