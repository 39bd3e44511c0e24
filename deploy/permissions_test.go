package deploy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/doctor"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/gameserver"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/matchmaker"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
	"github.com/bevygap-go/bevygap/webhooksink"
)

// The roles of nats/auth.conf and the environment variables holding their passwords.
const (
	roleMatchmaker     = "matchmaker"
	roleHTTPD          = "httpd"
	roleWebhook        = "webhook"
	roleGameServer     = "gameserver"
	roleRustGameServer = "rust_gameserver"

	testApp     = "permgame"
	testVersion = "v1"
	testAPIKey  = "token perm-test"
	testDigest  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

var rolePasswordEnv = map[string]string{
	roleMatchmaker:     "NATS_MATCHMAKER_PASSWORD",
	roleHTTPD:          "NATS_HTTPD_PASSWORD",
	roleWebhook:        "NATS_WEBHOOK_PASSWORD",
	roleGameServer:     "NATS_GAMESERVER_PASSWORD",
	roleRustGameServer: "NATS_RUST_GAMESERVER_PASSWORD",
}

// roleInboxPrefix is each role's NATS_INBOX_PREFIX, as compose.yaml sets it ("" = the default
// _INBOX: the webhook sink never subscribes, the Rust game server plugin cannot change it).
var roleInboxPrefix = map[string]string{
	roleMatchmaker: "_INBOX_mm",
	roleHTTPD:      "_INBOX_httpd",
	roleGameServer: "_INBOX_gs",
}

// violationLog records the server's permission-violation log lines.
type violationLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *violationLog) add(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	if !strings.Contains(line, "Violation") {
		return
	}
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *violationLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *violationLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *violationLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *violationLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Tracef(format string, v ...any)  {}

// env is the test's NATS server and role passwords.
type env struct {
	srv       *server.Server
	passwords map[string]string
	log       *slog.Logger
	viol      *violationLog
}

// startNATS starts an embedded JetStream server on a random loopback port whose users and
// permissions are nats/auth.conf, included unchanged (only listen address and store differ from
// nats/nats.conf).
func startNATS(t *testing.T) *env {
	t.Helper()
	e := &env{passwords: map[string]string{}, viol: &violationLog{},
		log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for role, v := range rolePasswordEnv {
		e.passwords[role] = "pw-" + randomHex(t, 16) // a NATS config $VAR that looks like a number or bool would not be a string
		t.Setenv(v, e.passwords[role])
	}
	dir := t.TempDir()
	auth, err := filepath.Abs(filepath.Join("nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, auth)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}\ninclude %q\n",
		filepath.Join(dir, "js"), filepath.ToSlash(rel))
	path := filepath.Join(dir, "test.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats/auth.conf does not load: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, false
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetLogger(e.viol, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	e.srv = srv
	return e
}

// connect opens a service connection as role through bus.Connect, as the services do.
func (e *env) connect(t *testing.T, role, name string) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.Config{Host: e.srv.ClientURL(), User: role, Password: e.passwords[role],
		Insecure: true, Name: name, ConnectWait: 5 * time.Second, InboxPrefix: roleInboxPrefix[role]}, e.log.With("component", name))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// probe is a connection as role (with the role's inbox prefix) that records the permission
// violations the server reports.
type probe struct {
	nc   *nats.Conn
	errs chan error
}

func (e *env) probe(t *testing.T, role string) *probe {
	t.Helper()
	p := &probe{errs: make(chan error, 64)}
	opts := []nats.Option{nats.UserInfo(role, e.passwords[role]), nats.Name("probe-" + role),
		nats.Timeout(5 * time.Second), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case p.errs <- err:
			default:
			}
		})}
	if prefix := roleInboxPrefix[role]; prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(e.srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("probe connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	return p
}

// expectViolation waits for the server's permission violation naming subject.
func (p *probe) expectViolation(t *testing.T, subject string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-p.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
			t.Logf("other async error: %v", err)
		case <-timeout:
			t.Fatalf("no permissions violation for %q", subject)
		}
	}
}

// denied runs op, a request the probe's role may not make, waits for the server's permission
// violation naming subject, then cancels op's context (a refused request is never answered):
// op must not have succeeded.
func (p *probe) denied(t *testing.T, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	p.expectViolation(t, subject)
	cancel()
	if err := <-done; err == nil {
		t.Errorf("request on %s succeeded", subject)
	}
}

// TestNATSConfigShipsTheTestedPermissions checks that the cluster config loads (with the
// environment compose gives it) and carries exactly the users of auth.conf.
func TestNATSConfigShipsTheTestedPermissions(t *testing.T) {
	for _, v := range rolePasswordEnv {
		t.Setenv(v, "x-"+v)
	}
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	cluster, err := server.ProcessConfigFile(filepath.Join("nats", "nats.conf"))
	if err != nil {
		t.Fatalf("nats/nats.conf: %v", err)
	}
	if !cluster.JetStream || cluster.Cluster.Name == "" || len(cluster.Routes) != 3 || cluster.ServerName != "nats-1" {
		t.Errorf("nats.conf: jetstream=%t cluster=%q routes=%d server_name=%q; want JetStream, a named cluster, 3 routes, server_name from $NATS_SERVER_NAME",
			cluster.JetStream, cluster.Cluster.Name, len(cluster.Routes), cluster.ServerName)
	}
	dir := t.TempDir()
	auth, err := filepath.Abs(filepath.Join("nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "only-auth.conf")
	// include paths are relative to the including file.
	rel, err := filepath.Rel(dir, auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf("include %q\n", filepath.ToSlash(rel))), 0o600); err != nil {
		t.Fatal(err)
	}
	only, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users := func(o *server.Options) map[string]string {
		m := map[string]string{}
		for _, u := range o.Users {
			b, _ := json.Marshal(u.Permissions)
			m[u.Username] = string(b)
		}
		return m
	}
	got, want := users(cluster), users(only)
	if len(want) != len(rolePasswordEnv) {
		t.Fatalf("auth.conf has users %v, want the %d roles", want, len(rolePasswordEnv))
	}
	for role := range rolePasswordEnv {
		if got[role] == "" || got[role] != want[role] {
			t.Errorf("user %s: nats.conf permissions %s, auth.conf %s", role, got[role], want[role])
		}
	}
	for _, u := range cluster.Users {
		if u.Password != "x-"+rolePasswordEnv[u.Username] {
			t.Errorf("user %s: password not taken from $%s", u.Username, rolePasswordEnv[u.Username])
		}
	}
}

// TestInboxPrefixesMatch checks that compose.yaml gives each service the inbox prefix that
// auth.conf lets its user read (the prefixes TestRolePermissions runs with), and that no role
// but rust_gameserver may read another prefix.
func TestInboxPrefixesMatch(t *testing.T) {
	for _, v := range rolePasswordEnv {
		t.Setenv(v, "x-"+v)
	}
	dir := t.TempDir()
	auth, err := filepath.Abs(filepath.Join("nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, auth)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "only-auth.conf")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("include %q\n", filepath.ToSlash(rel))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		var inboxes []string
		if u.Permissions != nil && u.Permissions.Subscribe != nil {
			for _, s := range u.Permissions.Subscribe.Allow {
				if strings.HasPrefix(s, "_INBOX") {
					inboxes = append(inboxes, s)
				}
			}
		}
		want := []string{roleInboxPrefix[u.Username] + ".>"}
		switch u.Username {
		case roleWebhook:
			want = nil
		case roleRustGameServer:
			want = []string{"_INBOX.>"}
		}
		if !slices.Equal(inboxes, want) {
			t.Errorf("user %s may subscribe %v, want %v", u.Username, inboxes, want)
		}
	}

	compose, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(compose), "\n")
	for _, role := range []string{roleMatchmaker, roleHTTPD} {
		found := false
		for i, line := range lines {
			if strings.TrimSpace(line) != "NATS_USER: "+role {
				continue
			}
			found = true
			ok := false
			for _, next := range lines[i+1 : min(i+8, len(lines))] {
				if strings.TrimSpace(next) == "NATS_INBOX_PREFIX: "+roleInboxPrefix[role] {
					ok = true
				}
			}
			if !ok {
				t.Errorf("compose.yaml: the service with NATS_USER %s lacks NATS_INBOX_PREFIX: %s", role, roleInboxPrefix[role])
			}
		}
		if !found {
			t.Errorf("compose.yaml: no service with NATS_USER %s", role)
		}
	}
}

// gameServers hands the test the agent of each deployment the simulator launches.
type gameServers struct {
	agents chan *gameserver.Agent
}

// TestRolePermissions runs the whole stack, each service with its own NATS role, grants a
// session end to end, claims and releases it from a game server agent, and checks what each
// role must not be able to do.
func TestRolePermissions(t *testing.T) {
	e := startNATS(t)
	ctx := t.Context()

	// The Edgegap simulator; each deployment runs a gameserver.Agent as the gameserver role.
	simLn := listen(t)
	simURL := "http://" + simLn.Addr().String()
	gs := &gameServers{agents: make(chan *gameserver.Agent, 8)}
	sim, err := edgegapsim.New(edgegapsim.Config{
		Apps: []edgegapsim.AppConfig{{Name: testApp, Versions: []edgegapsim.VersionConfig{{
			Name: testVersion, Kind: "Seat", Sockets: 4, EmptyTTL: edgegapsim.Duration(time.Minute)}}}},
		APIKeys:    []string{testAPIKey},
		BaseURL:    simURL,
		BootTime:   edgegapsim.Duration(700 * time.Millisecond),
		BootJitter: edgegapsim.Duration(50 * time.Millisecond),
		Launcher: edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
			arb, err := gameserver.EnvFromEnviron(func(k string) string { return env[k] })
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			nc, err := bus.Connect(cctx, bus.Config{Host: e.srv.ClientURL(), User: roleGameServer,
				Password: e.passwords[roleGameServer], Insecure: true, Name: "gameserver-" + arb.RequestID,
				InboxPrefix: roleInboxPrefix[roleGameServer]}, e.log)
			cancel()
			if err != nil {
				return err
			}
			defer nc.Close()
			agent, err := gameserver.New(gameserver.Config{Arbitrium: arb, CertDigest: testDigest}, nc, e.log.With("component", "gameserver"))
			if err != nil {
				return err
			}
			gs.agents <- agent // the matchmaker waits for cert digests only of deployments that booted ≥ 0.5 s
			if err := agent.Run(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		}),
		Logger: e.log.With("component", "edgegap-sim"),
	})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "edgegap-sim", func(ctx context.Context) error { return sim.Serve(ctx, simLn) })
	api := edgegap.NewClient(simURL, testAPIKey, edgegap.WithRateLimit(rate.Inf, 0))

	// The webhook sink, with a shared secret in the session webhook URL.
	secret := randomHex(t, 16)
	sinkLn := listen(t)
	sink, err := webhooksink.New(webhooksink.Config{Secret: secret}, e.connect(t, roleWebhook, "bevygap-webhook-sink"), e.log.With("component", "webhook-sink"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "webhook-sink", func(ctx context.Context) error { return sink.Serve(ctx, sinkLn) })

	// Two matchmakers: the first creates the buckets and the stream, the second updates them.
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var mms []*matchmaker.Matchmaker
	for i := range 2 {
		mc := matchmaker.DefaultConfig()
		mc.AppName, mc.AppVersion, mc.PrivateKey = testApp, testVersion, key
		mc.SessionWebhookURL = "http://" + sinkLn.Addr().String() + "/hook/session?token=" + secret
		mc.ReadinessLimit, mc.ClaimGrace, mc.CertDigestWait = 4*time.Second, time.Second, 5*time.Second
		mc.ShutdownTimeout = 2 * time.Second
		mc.StatusInterval = 200 * time.Millisecond
		mm, err := matchmaker.New(mc, matchmaker.Deps{NATS: e.connect(t, roleMatchmaker, fmt.Sprintf("bevygap-matchmaker-%d", i)),
			Edgegap: api, Logger: e.log})
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = mm.Start(sctx)
		cancel()
		if err != nil {
			t.Fatalf("matchmaker %d with the matchmaker role: %v", i, err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = mm.Shutdown(cctx)
		})
		mms = append(mms, mm)
	}

	// The front door.
	httpLn := listen(t)
	const statusToken = "status-page-token"
	front, err := httpd.New(httpd.Config{AllowedOrigins: []string{"*"}, SessionsPerMinute: -1, MaxStreamsPerIP: -1,
		Status: httpd.StatusConfig{Token: statusToken, PublishInterval: 200 * time.Millisecond}},
		e.connect(t, roleHTTPD, "bevygap-httpd"), e.log.With("component", "httpd"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "httpd", func(ctx context.Context) error { return front.Serve(ctx, httpLn) })
	httpURL := "http://" + httpLn.Addr().String()

	t.Run("readyz_pings_the_matchmaker", func(t *testing.T) {
		eventually.NoError(t, 10*time.Second, func() error {
			if code, body := httpDo(t, http.MethodGet, httpURL+"/readyz"); code != http.StatusOK {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		}, "httpd /readyz = 200")
	})

	t.Run("status_page_sums_both_matchmakers", func(t *testing.T) {
		// Both matchmakers publish their snapshots (and read the buckets and the delete stream
		// for them), the front door publishes its own and reads everyone's.
		eventually.NoError(t, 10*time.Second, func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/status.json", nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+statusToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }()
			var v struct {
				Instances []struct{ Role string } `json:"instances"`
				Sessions  *struct{}               `json:"sessions"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status.json: %d %v", resp.StatusCode, err)
			}
			roles := map[string]int{}
			for _, in := range v.Instances {
				roles[in.Role]++
			}
			if roles["matchmaker"] != 2 || roles["httpd"] != 1 {
				return fmt.Errorf("instances %v, want 2 matchmakers and 1 httpd", roles)
			}
			return nil
		}, "status page lists both matchmakers and the front door")
	})

	t.Run("party_route", func(t *testing.T) {
		// httpd may request matchmaker.party.*.*, the matchmaker role may serve it and answer
		// on _INBOX_httpd (a stand-in party service on a game of its own: the real matchmakers
		// serve testApp only).
		mmNC := e.connect(t, roleMatchmaker, "bevygap-matchmaker-party")
		sub, err := mmNC.Subscribe("matchmaker.party.permgame.1", func(m *nats.Msg) {
			_ = m.Respond([]byte(`{"party":{"code":"K7QF2M","members":[{"id":"m1","leader":true,"waiting":false}],"max":4},"member":"m1","token":"dG9rZW4"}`))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := mmNC.Flush(); err != nil {
			t.Fatal(err)
		}
		if code, body := httpDo(t, http.MethodPost, httpURL+"/matchmaker/party/permgame/1"); code != http.StatusOK || !strings.Contains(body, `"code":"K7QF2M"`) {
			t.Fatalf("POST /matchmaker/party/permgame/1: %d %s", code, body)
		}
		// Backfill: a Go game server asks, the matchmaker role serves it and answers on _INBOX_gs.
		bf, err := mmNC.Subscribe("matchmaker.backfill.permgame.1", func(m *nats.Msg) { _ = m.Respond([]byte(`{"ticket":"bf-1"}`)) })
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = bf.Unsubscribe() }()
		if err := mmNC.Flush(); err != nil {
			t.Fatal(err)
		}
		gsNC := e.connect(t, roleGameServer, "gameserver-backfill")
		if reply, err := gsNC.Request("matchmaker.backfill.permgame.1", []byte(`{"queue":"room","request_id":"x","public_ip":"1.2.3.4","slots":1}`), 5*time.Second); err != nil || string(reply.Data) != `{"ticket":"bf-1"}` {
			t.Fatalf("backfill request as the gameserver role: %v", err)
		}
		// The real matchmakers' party service: its play_parties bucket with the matchmaker role.
		if code, body := httpDo(t, http.MethodPost, httpURL+"/matchmaker/party/"+testApp+"/"+testVersion); code != http.StatusOK || !strings.Contains(body, `"token":"`) {
			t.Fatalf("create a party with the real matchmakers: %d %s", code, body)
		}
	})

	t.Run("abandoned_request_cancel", func(t *testing.T) {
		// httpd may publish matchmaker.cancel.*.* and the matchmaker role may subscribe it: a
		// player who leaves after SessionRequestAccepted has the session deleted at once, long
		// before the unclaimed reaper (readiness limit + grace = 5 s) would.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+httpLn.Addr().String()+"/matchmaker/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		req := `{"game":"` + testApp + `","version":"` + testVersion + `","client_ip":"81.2.69.160"}`
		if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
			t.Fatal(err)
		}
		sid := ""
		for sid == "" {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var f protocol.Feedback
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatalf("frame %q: %v", b, err)
			}
			if f.Kind == protocol.FeedbackSessionRequestAccepted {
				sid = f.Text
			}
		}
		_ = c.CloseNow()
		eventually.True(t, 3*time.Second, func() bool {
			_, err := api.GetSession(ctx, sid)
			return errors.Is(err, edgegap.ErrNotFound)
		}, "session %s deleted within 3 s of the player leaving", sid)
	})

	var sessionID string
	var clientID uint64
	t.Run("websocket_grant", func(t *testing.T) {
		frames := wsSession(t, "ws://"+httpLn.Addr().String()+"/matchmaker/ws")
		var ready *protocol.SessionReady
		for _, f := range frames {
			switch f.Kind {
			case protocol.FeedbackSessionRequestAccepted:
				sessionID = f.Text
			case protocol.FeedbackSessionReady:
				ready = f.Ready
			case protocol.FeedbackError:
				t.Fatalf("matchmaker error %d: %s", f.Code, f.Text)
			}
		}
		if sessionID == "" || ready == nil {
			t.Fatalf("frames %v: want SessionRequestAccepted and SessionReady", frames)
		}
		if ready.CertDigest != testDigest {
			t.Errorf("cert_digest %q, want the game server's %q (cert_digests put by the gameserver role, read by the matchmaker)", ready.CertDigest, testDigest)
		}
		clientID = tokenClientID(t, ready.Token, key)
	})
	if sessionID == "" {
		t.FailNow()
	}

	var agent *gameserver.Agent
	select {
	case agent = <-gs.agents:
	case <-time.After(10 * time.Second):
		t.Fatal("no game server launched")
	}
	select {
	case <-agent.Ready(): // context published on gameserver.contexts, cert digest stored
	case <-time.After(10 * time.Second):
		t.Fatal("game server agent not ready: context publish or cert digest put failed")
	}

	mmJS, err := jetstream.New(e.connect(t, roleMatchmaker, "probe-matchmaker-kv"))
	if err != nil {
		t.Fatal(err)
	}
	gsJS, err := jetstream.New(e.connect(t, roleGameServer, "probe-gameserver-kv"))
	if err != nil {
		t.Fatal(err)
	}
	ly2eg, err := gsJS.KeyValue(ctx, protocol.BucketSessionsLy2Eg) // game servers read it
	if err != nil {
		t.Fatal(err)
	}

	// A one-shot grant nobody claims: the unclaimed reaper deletes it ReadinessLimit +
	// ClaimGrace after its creation. The steps below run meanwhile; wannaplay_reaped checks.
	var unclaimedID string
	t.Run("wannaplay_grant", func(t *testing.T) {
		code, body := httpDo(t, http.MethodPost, httpURL+"/matchmaker/wannaplay?client_ip=81.2.69.160")
		var reply protocol.GenSessionReply
		if err := json.Unmarshal([]byte(body), &reply); code != http.StatusOK || err != nil || reply.ConnectToken == "" {
			t.Fatalf("wannaplay: %d %s (%v)", code, body, err)
		}
		id := tokenClientID(t, reply.ConnectToken, key)
		e, err := ly2eg.Get(ctx, fmt.Sprint(id))
		if err != nil {
			t.Fatalf("sessions_ly2eg[%d] of the wannaplay grant: %v", id, err)
		}
		unclaimedID = string(e.Value())
	})

	t.Run("gameserver_claims_and_releases", func(t *testing.T) {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := agent.AuthorizeClient(actx, clientID)
		if err != nil || got != sessionID {
			t.Fatalf("AuthorizeClient(%d) = %q, %v; want %q (sessions_ly2eg read by the gameserver role)", clientID, got, err, sessionID)
		}
		if _, err := agent.AuthorizeClient(actx, clientID^0x5a5a5a5a); !errors.Is(err, gameserver.ErrUnknownClient) {
			t.Errorf("AuthorizeClient(forged id) = %v, want ErrUnknownClient", err)
		}
		agent.ClientConnected(clientID)
		active, err := mmJS.KeyValue(actx, protocol.BucketActiveConnections)
		if err != nil {
			t.Fatal(err)
		}
		eventually.NoError(t, 10*time.Second, func() error {
			e, err := active.Get(actx, sessionID)
			if err != nil {
				return err
			}
			if got := string(e.Value()); got != fmt.Sprint(clientID) {
				return fmt.Errorf("value %q", got)
			}
			return nil
		}, "active_connections[session] = client id")
		agent.ClientDisconnected(clientID)
		eventually.NoError(t, 15*time.Second, func() error { return sessionDeleted(actx, api, sessionID) },
			"session deleted on Edgegap after the player left")
	})

	t.Run("rust_gameserver_default_inbox", func(t *testing.T) {
		// A Rust game server keeps async-nats' _INBOX prefix; its user allows exactly that.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		js, err := jetstream.New(e.connect(t, roleRustGameServer, "rust-gameserver"))
		if err != nil {
			t.Fatal(err)
		}
		kv := map[string]jetstream.KeyValue{}
		for _, bucket := range []string{protocol.BucketSessionsLy2Eg, protocol.BucketActiveConnections, protocol.BucketCertDigests} {
			if kv[bucket], err = js.KeyValue(rctx, bucket); err != nil {
				t.Fatalf("open %s as rust_gameserver: %v", bucket, err)
			}
		}
		if _, err := kv[protocol.BucketSessionsLy2Eg].Get(rctx, fmt.Sprint(clientID^0x5a5a5a5a)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("get from sessions_ly2eg as rust_gameserver: %v, want not found", err)
		}
		if _, err := kv[protocol.BucketCertDigests].Put(rctx, "198.51.100.77", []byte(testDigest)); err != nil {
			t.Errorf("put into cert_digests as rust_gameserver: %v", err)
		}
		// bevygap_shared creates every bucket and the delete stream on each boot, with exactly
		// these request bodies (async-nats 0.36, recorded in bus/testdata), and panics when one
		// fails: the user must be allowed to, and the matchmaker's streams must match them.
		rnc := e.connect(t, roleRustGameServer, "rust-gameserver-boot")
		files, err := filepath.Glob("../bus/testdata/async-nats-0.36.0/*.json")
		if err != nil || len(files) != 6 {
			t.Fatalf("async-nats create bodies: %v %v", files, err)
		}
		for _, f := range files {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			stream := strings.TrimSuffix(filepath.Base(f), ".json")
			msg, err := rnc.RequestWithContext(rctx, "$JS.API.STREAM.CREATE."+stream, body)
			if err != nil {
				t.Fatalf("create %s as rust_gameserver: %v", stream, err)
			}
			var resp struct {
				Error *struct {
					Code        int    `json:"code"`
					ErrCode     int    `json:"err_code"`
					Description string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(msg.Data, &resp); err != nil {
				t.Fatalf("create %s: %v: %s", stream, err, msg.Data)
			}
			if resp.Error != nil {
				t.Errorf("a Rust game server's boot-time create of %s fails: %d/%d %s", stream, resp.Error.Code, resp.Error.ErrCode, resp.Error.Description)
			}
		}
	})

	if v := e.viol.snapshot(); len(v) > 0 {
		t.Fatalf("the services needed rights the roles do not have:\n%s", strings.Join(v, "\n"))
	}
	streamsBefore := streamCount(t, e.srv)

	// What each role must not do.
	cases := []struct {
		name string
		role string
		run  func(t *testing.T, p *probe)
	}{
		{"gameserver_cannot_publish_webhook", roleGameServer, func(t *testing.T, p *probe) {
			mmNC := e.connect(t, roleMatchmaker, "probe-matchmaker-webhooks")
			sub, err := mmNC.SubscribeSync("webhook.*")
			if err != nil {
				t.Fatal(err)
			}
			if err := mmNC.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := p.nc.Publish("webhook.session", []byte(`{"session_id":"forged","status":"Ready"}`)); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, "webhook.session")
			// The server has refused the publish; a marker published now (by the role that may)
			// reaches the subscriber after the forged webhook, had that been delivered.
			hooks := e.connect(t, roleWebhook, "probe-webhook-marker")
			if err := hooks.Publish("webhook.zz-marker", nil); err != nil {
				t.Fatal(err)
			}
			for {
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("marker not received: %v", err)
				}
				if m.Subject == "webhook.zz-marker" {
					break
				}
				if strings.Contains(string(m.Data), "forged") {
					t.Fatalf("forged webhook delivered: %s", m.Data)
				}
			}
		}},
		{"gameserver_cannot_write_session_maps", roleGameServer, func(t *testing.T, p *probe) {
			js, _ := jetstream.New(p.nc)
			for _, bucket := range []string{protocol.BucketSessionsLy2Eg, protocol.BucketSessionsEg2Ly, protocol.BucketUnclaimedSessions} {
				p.denied(t, "$KV."+bucket+".42", func(ctx context.Context) error {
					_, err := js.Publish(ctx, "$KV."+bucket+".42", []byte("forged"))
					return err
				})
			}
			kv, err := js.KeyValue(ctx, protocol.BucketSessionsLy2Eg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, "42"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("sessions_ly2eg[42] after the forged put: %v, want not found", err)
			}
		}},
		{"gameserver_cannot_serve_matchmaking", roleGameServer, func(t *testing.T, p *probe) {
			for _, s := range []struct{ subj, queue string }{
				{protocol.SubjectGenSession, protocol.GenSessionQueue},
				{"matchmaker.request.*.*", matchmaker.StreamQueueGroup},
				{"webhook.*", ""},
			} {
				if _, err := p.nc.QueueSubscribe(s.subj, s.queue, func(*nats.Msg) {}); err != nil {
					t.Fatal(err)
				}
				_ = p.nc.Flush()
				p.expectViolation(t, s.subj)
			}
		}},
		{"gameserver_cannot_manage_parties", roleGameServer, func(t *testing.T, p *probe) {
			subj := protocol.SubjectMatchmakerPartyPrefix + "." + testApp + "." + testVersion
			if err := p.nc.Publish(subj, []byte(`{"op":"create"}`)); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, subj)
			if _, err := p.nc.SubscribeSync(protocol.SubjectMatchmakerPartyPrefix + ".>"); err != nil {
				t.Fatal(err)
			}
			_ = p.nc.Flush()
			p.expectViolation(t, protocol.SubjectMatchmakerPartyPrefix+".>")
		}},
		{"gameserver_cannot_queue_deletes", roleGameServer, func(t *testing.T, p *probe) {
			if err := p.nc.Publish(protocol.DeleteSessionSubjectPrefix+".victim", []byte("victim")); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, protocol.DeleteSessionSubjectPrefix+".victim")
		}},
		{"gameserver_cannot_manage_streams", roleGameServer, func(t *testing.T, p *probe) {
			js, _ := jetstream.New(p.nc)
			p.denied(t, "$JS.API.STREAM.CREATE.EVIL", func(ctx context.Context) error {
				_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
				return err
			})
			p.denied(t, "$JS.API.STREAM.DELETE.KV_"+protocol.BucketSessionsLy2Eg, func(ctx context.Context) error {
				return js.DeleteStream(ctx, "KV_"+protocol.BucketSessionsLy2Eg)
			})
			p.denied(t, "$JS.API.CONSUMER", func(ctx context.Context) error {
				_, err := js.CreateOrUpdateConsumer(ctx, protocol.DeleteSessionStream, jetstream.ConsumerConfig{Durable: protocol.DeleteSessionConsumer})
				return err
			})
		}},
		{"webhook_cannot_read_kv", roleWebhook, func(t *testing.T, p *probe) {
			js, _ := jetstream.New(p.nc)
			p.denied(t, "_INBOX", func(ctx context.Context) error {
				_, err := js.KeyValue(ctx, protocol.BucketSessionsLy2Eg)
				return err
			})
			if err := p.nc.Publish("$JS.API.DIRECT.GET.KV_sessions_ly2eg.$KV.sessions_ly2eg.1", nil); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, "$JS.API.DIRECT.GET.KV_sessions_ly2eg")
		}},
		{"gameserver_cannot_read_replies", roleGameServer, func(t *testing.T, p *probe) {
			// Neither the Go nor the Rust game server role may listen where connect tokens
			// travel (matchmaker -> httpd) or where the matchmaker's KV reads come back.
			var stolen []*nats.Subscription
			for _, subj := range []string{"_INBOX_httpd.>", "_INBOX_mm.>", "_INBOX.>"} {
				sub, err := p.nc.SubscribeSync(subj)
				if err != nil {
					t.Fatal(err)
				}
				_ = p.nc.Flush()
				p.expectViolation(t, subj)
				stolen = append(stolen, sub)
			}
			rust := e.probe(t, roleRustGameServer)
			for _, subj := range []string{"_INBOX_httpd.>", "_INBOX_mm.>"} {
				sub, err := rust.nc.SubscribeSync(subj)
				if err != nil {
					t.Fatal(err)
				}
				_ = rust.nc.Flush()
				rust.expectViolation(t, subj)
				stolen = append(stolen, sub)
			}
			rustInbox, err := rust.nc.SubscribeSync("_INBOX.>") // allowed: its own replies
			if err != nil {
				t.Fatal(err)
			}
			// The control: httpd's role may read its own inbox, and sees the token go by.
			control := e.probe(t, roleHTTPD)
			seen, err := control.nc.SubscribeSync("_INBOX_httpd.>")
			if err != nil {
				t.Fatal(err)
			}
			for _, nc := range []*nats.Conn{p.nc, rust.nc, control.nc} {
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}

			code, body := httpDo(t, http.MethodPost, httpURL+"/matchmaker/wannaplay?client_ip=81.2.69.160")
			var reply protocol.GenSessionReply
			if err := json.Unmarshal([]byte(body), &reply); code != http.StatusOK || err != nil || reply.ConnectToken == "" {
				t.Fatalf("wannaplay: %d %s (%v)", code, body, err)
			}
			sawToken := false
			for !sawToken {
				m, err := seen.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("control on _INBOX_httpd.> never saw the token: %v", err)
				}
				sawToken = strings.Contains(string(m.Data), reply.ConnectToken)
			}
			// The server routed the token to every matching subscription at once, before the
			// control saw it; a flush round trip now brings anything routed to the game server
			// roles into their subscriptions' queues.
			for _, nc := range []*nats.Conn{p.nc, rust.nc} {
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			for _, sub := range stolen {
				if n, _, _ := sub.Pending(); n != 0 {
					m, _ := sub.NextMsg(time.Second)
					t.Errorf("game server role received %d messages on %s, first %.80s", n, sub.Subject, m.Data)
				}
			}
			n, _, err := rustInbox.Pending()
			if err != nil {
				t.Fatal(err)
			}
			for range n {
				m, err := rustInbox.NextMsg(time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(m.Data), reply.ConnectToken) || strings.Contains(string(m.Data), "connect_token") {
					t.Errorf("rust_gameserver read a connect token on %s", m.Subject)
				}
			}
		}},
		{"httpd_cannot_read_matchmaker_replies", roleHTTPD, func(t *testing.T, p *probe) {
			for _, subj := range []string{"_INBOX_mm.>", "_INBOX_gs.>", "_INBOX.>"} {
				if _, err := p.nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				_ = p.nc.Flush()
				p.expectViolation(t, subj)
			}
		}},
		{"httpd_cannot_fake_matchmaker_status", roleHTTPD, func(t *testing.T, p *probe) {
			if err := p.nc.Publish("bevygap.status.matchmaker.fake", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, "bevygap.status.matchmaker.fake")
		}},
		{"gameserver_cannot_read_status", roleGameServer, func(t *testing.T, p *probe) {
			if _, err := p.nc.SubscribeSync("bevygap.status.>"); err != nil {
				t.Fatal(err)
			}
			_ = p.nc.Flush()
			p.expectViolation(t, "bevygap.status.>")
		}},
		{"httpd_cannot_impersonate_matchmaker", roleHTTPD, func(t *testing.T, p *probe) {
			if _, err := p.nc.QueueSubscribe(protocol.SubjectGenSession, protocol.GenSessionQueue, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			_ = p.nc.Flush()
			p.expectViolation(t, protocol.SubjectGenSession)
			if err := p.nc.Publish("$KV.sessions_ly2eg.1", []byte("x")); err != nil {
				t.Fatal(err)
			}
			p.expectViolation(t, "$KV.sessions_ly2eg.1")
		}},
	}
	t.Run("denied", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, e.probe(t, c.role))
			})
		}
	})

	t.Run("wannaplay_reaped", func(t *testing.T) {
		if unclaimedID == "" {
			t.Skip("no wannaplay grant")
		}
		// Nobody connected: the unclaimed reaper has the session deleted (readiness limit +
		// grace after its creation).
		eventually.NoError(t, 20*time.Second, func() error { return sessionDeleted(ctx, api, unclaimedID) },
			"unclaimed session reaped")
	})

	if n := streamCount(t, e.srv); n != streamsBefore {
		t.Errorf("streams: %d before the negative cases, %d after", streamsBefore, n)
	}
	// The negative cases only broke rules on their probe connections (and the server's log,
	// which names the connection, saw them: the recorder works).
	lines := e.viol.snapshot()
	probes := 0
	for _, line := range lines {
		if strings.Contains(line, ":probe-") {
			probes++
		} else {
			t.Errorf("a service hit a permission violation: %s", line)
		}
	}
	if probes < len(cases) {
		t.Errorf("the server logged %d probe violations, want at least %d (one per case)", probes, len(cases))
	}
	// Both matchmakers still serve after everything above: each answers a NATS micro PING.
	ping, err := micro.ControlSubject(micro.PingVerb, protocol.GenSessionServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	pinger := e.connect(t, roleHTTPD, "probe-httpd-ping")
	inbox := pinger.NewInbox()
	pongs, err := pinger.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := pinger.PublishRequest(ping, inbox, nil); err != nil {
		t.Fatal(err)
	}
	for i := range mms {
		if _, err := pongs.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("%d of %d matchmakers answered PING: %v", i, len(mms), err)
		}
	}
}

// tokenClientID opens a base64 connect token with key and returns its client id.
func tokenClientID(t *testing.T, token string, key netcode.Key) uint64 {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := netcode.DecodeConnectToken(raw, netcode.FormatLightyear017)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := tok.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	return priv.ClientID
}

// sessionDeleted returns nil once Edgegap (the simulator) no longer knows session id.
func sessionDeleted(ctx context.Context, api *edgegap.Client, id string) error {
	_, err := api.GetSession(ctx, id)
	if errors.Is(err, edgegap.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("GetSession(%s) = %v, want not found", id, err)
}

func streamCount(t *testing.T, srv *server.Server) int {
	t.Helper()
	jsz, err := srv.Jsz(&server.JSzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return jsz.Streams
}

// wsSession requests a session over the front door's WebSocket and returns the feedback frames.
func wsSession(t *testing.T, url string) []protocol.Feedback {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	req := `{"game":"` + testApp + `","version":"` + testVersion + `","client_ip":"81.2.69.160"}`
	if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		t.Fatal(err)
	}
	var out []protocol.Feedback
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("WebSocket ended with %v after %v", err, out)
			}
			return out
		}
		var f protocol.Feedback
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		out = append(out, f)
	}
}

func httpDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serve runs a server until the test ends.
func serve(t *testing.T, name string, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				t.Logf("%s stopped: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestDoctorPermissionsAgainstAuthConf: `bevygap doctor`'s permission probes (every operation a
// role needs that can be tried without side effects, play together included) pass for every
// role with the users and permissions of nats/auth.conf: the doctor and the shipped
// permissions agree.
func TestDoctorPermissionsAgainstAuthConf(t *testing.T) {
	e := startNATS(t)
	creds := func(doctorRole, role string) doctor.RoleCredentials {
		return doctor.RoleCredentials{Role: doctorRole, User: role, Password: e.passwords[role], InboxPrefix: roleInboxPrefix[role]}
	}
	cfg := doctor.Config{
		NATS: bus.Config{Host: e.srv.ClientURL(), User: roleMatchmaker, Password: e.passwords[roleMatchmaker],
			InboxPrefix: roleInboxPrefix[roleMatchmaker], Insecure: true},
		Role:  doctor.RoleMatchmaker,
		Games: []doctor.Game{{Name: testApp, Version: testVersion}},
		RoleCredentials: []doctor.RoleCredentials{creds(doctor.RoleHTTPD, roleHTTPD),
			creds(doctor.RoleWebhookSink, roleWebhook), creds(doctor.RoleGameServer, roleGameServer)},
		CallTimeout: 5 * time.Second,
		Skip:        []string{doctor.GroupKey, doctor.GroupMatchmaker, doctor.GroupEdgegap, doctor.GroupClock, doctor.GroupWebhook},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rep := doctor.Run(ctx, cfg)
	for _, role := range []string{doctor.RoleMatchmaker, doctor.RoleHTTPD, doctor.RoleWebhookSink, doctor.RoleGameServer} {
		c, ok := rep.Find("permissions." + role)
		if !ok || c.Status != doctor.StatusOK {
			t.Errorf("permissions.%s: %+v (found %v)", role, c, ok)
		}
	}
	if v := e.viol.snapshot(); len(v) > 0 {
		t.Errorf("the server logged permission violations: %q", v)
	}
}
