package doctor_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/doctor"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// stack is the one dev stack (in-process, loopback) the tests check. Tests that break
// something do it on their own objects (a bucket prefix, a simulator, a wrong URL), never on
// the stack's, so that they run in parallel.
var stack *devstack.Stack

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := devstack.Start(ctx, devstack.Config{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
	stack = st
	code := m.Run()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = st.Shutdown(sctx)
	scancel()
	os.Exit(code)
}

// devConfig is the configuration that checks the dev stack, as `bevygap dev` prints it.
func devConfig() doctor.Config {
	info := stack.Info()
	key := stack.PrivateKey()
	return doctor.Config{
		NATS:        bus.Config{Host: info.NATSURL, Insecure: true},
		EdgegapURL:  info.SimURL,
		EdgegapKey:  devstack.SimAPIKey,
		Games:       []doctor.Game{{Name: info.AppName, Version: info.AppVersion}},
		PrivateKey:  string(key.AppendHex(nil)),
		WebhookURL:  info.WebhookURL,
		CallTimeout: 5 * time.Second,
	}
}

func run(t *testing.T, cfg doctor.Config) doctor.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rep := doctor.Run(ctx, cfg)
	var b bytes.Buffer
	_ = doctor.WriteText(&b, rep)
	t.Logf("report:\n%s", b.String())
	return rep
}

// TestDevStackAllOK: against a healthy dev stack every check is ok, none is skipped.
func TestDevStackAllOK(t *testing.T) {
	t.Parallel()
	rep := run(t, devConfig())
	if !rep.OK || rep.Summary.Warn+rep.Summary.Fail+rep.Summary.Skip != 0 {
		t.Errorf("summary %+v, want all ok", rep.Summary)
	}
	for _, id := range []string{"key", "nats.connect", "nats.tls", "nats.auth", "nats.jetstream",
		"bucket.sessions_eg2ly", "bucket.sessions_ly2eg", "bucket.active_connections", "bucket.unclaimed_sessions",
		"bucket.cert_digests", "stream.DELETE_SESSION_STREAM", "permissions.matchmaker", "matchmaker.dotroom/1",
		"edgegap.key", "edgegap.app.dotroom/1", "clock", "webhook"} {
		if c, found := rep.Find(id); !found || c.Status != doctor.StatusOK {
			t.Errorf("check %s: %+v (found %v), want ok", id, c, found)
		}
	}
	if strings.Contains(fmt.Sprint(rep), devConfig().PrivateKey) {
		t.Error("the report contains the private key")
	}
}

// TestBroken: each deliberately broken setup fails the right check, with the fix.
func TestBroken(t *testing.T) {
	t.Parallel()
	// A simulator whose app has an inactive version.
	sim, err := edgegapsim.New(edgegapsim.Config{
		Apps: []edgegapsim.AppConfig{{Name: "dotroom", Versions: []edgegapsim.VersionConfig{
			{Name: "1"}, {Name: "off", Active: edgegap.Ptr(false)}}}},
		APIKeys: []string{devstack.SimAPIKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)

	tests := []struct {
		name        string
		setup       func(t *testing.T, c *doctor.Config)
		id          string
		status      doctor.Status
		detail, fix string
	}{
		{
			name: "nats unreachable",
			setup: func(_ *testing.T, c *doctor.Config) {
				c.NATS.Host = "nats://127.0.0.1:1"
				c.CallTimeout = 300 * time.Millisecond
			},
			id: "nats.connect", status: doctor.StatusFail, detail: "cannot reach NATS", fix: "NATS_HOST",
		},
		{
			name: "nats unreachable skips the bucket checks",
			setup: func(_ *testing.T, c *doctor.Config) {
				c.NATS.Host = "nats://127.0.0.1:1"
				c.CallTimeout = 300 * time.Millisecond
			},
			id: "bucket.sessions_ly2eg", status: doctor.StatusSkip, detail: "no NATS connection",
		},
		{
			name: "TLS wanted, server has none",
			setup: func(_ *testing.T, c *doctor.Config) {
				c.NATS.Insecure = false
				c.NATS.Host = strings.TrimPrefix(c.NATS.Host, "nats://")
				c.CallTimeout = 300 * time.Millisecond
			},
			id: "nats.tls", status: doctor.StatusFail, detail: "the server has none", fix: "NATS_INSECURE=1",
		},
		{
			name:  "wrong Edgegap key",
			setup: func(_ *testing.T, c *doctor.Config) { c.EdgegapKey = "token wrong" },
			id:    "edgegap.key", status: doctor.StatusFail, detail: "refused the key (HTTP 401)", fix: "EDGEGAP_API_KEY",
		},
		{
			name:  "Edgegap key without token prefix",
			setup: func(_ *testing.T, c *doctor.Config) { c.EdgegapKey = "bevygap-dev" },
			id:    "edgegap.key", status: doctor.StatusFail, fix: `no "token " prefix`,
		},
		{
			name:  "no Edgegap key",
			setup: func(_ *testing.T, c *doctor.Config) { c.EdgegapKey = "" },
			id:    "edgegap.key", status: doctor.StatusFail, detail: "EDGEGAP_API_KEY is not set",
		},
		{
			name:  "missing app version",
			setup: func(_ *testing.T, c *doctor.Config) { c.Games = []doctor.Game{{Name: "dotroom", Version: "nope"}} },
			id:    "edgegap.app.dotroom/nope", status: doctor.StatusFail, detail: `does not know version "nope"`, fix: "--app-version",
		},
		{
			name:  "missing app",
			setup: func(_ *testing.T, c *doctor.Config) { c.Games = []doctor.Game{{Name: "nogame", Version: "1"}} },
			id:    "edgegap.app.nogame/1", status: doctor.StatusFail, detail: `does not know application "nogame"`, fix: "--app-name",
		},
		{
			name: "inactive app version",
			setup: func(_ *testing.T, c *doctor.Config) {
				c.EdgegapURL = simSrv.URL
				c.Games = []doctor.Game{{Name: "dotroom", Version: "off"}}
			},
			id: "edgegap.app.dotroom/off", status: doctor.StatusFail, detail: "is not active", fix: "activate the version",
		},
		{
			name:  "no matchmaker serving the game",
			setup: func(_ *testing.T, c *doctor.Config) { c.Games = []doctor.Game{{Name: "dotroom", Version: "nope"}} },
			id:    "matchmaker.dotroom/nope", status: doctor.StatusFail, detail: "no matchmaker subscribes matchmaker.request.dotroom.nope",
			fix: "--app-name dotroom --app-version nope",
		},
		{
			name: "bucket with wrong TTL and history",
			setup: func(t *testing.T, c *doctor.Config) {
				c.Buckets.Prefix = "broken_"
				js, err := jetstream.New(stack.NATS())
				if err != nil {
					t.Fatal(err)
				}
				want := bus.BucketConfigs(c.Buckets)[1] // broken_sessions_ly2eg
				want.TTL, want.History = time.Minute, 5
				if _, err := js.CreateKeyValue(t.Context(), want); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), want.Bucket) })
			},
			id: "bucket.broken_sessions_ly2eg", status: doctor.StatusFail,
			detail: "TTL (max age) is 1m0s, want 30s; history is 5, want 1", fix: "restart a matchmaker",
		},
		{
			name:  "missing bucket",
			setup: func(_ *testing.T, c *doctor.Config) { c.Buckets.Prefix = "absent_" },
			id:    "bucket.absent_cert_digests", status: doctor.StatusFail, detail: "does not exist", fix: "start a matchmaker",
		},
		{
			name:  "bucket replicas differ from the flags",
			setup: func(_ *testing.T, c *doctor.Config) { c.Buckets.Replicas = 3 },
			id:    "stream.DELETE_SESSION_STREAM", status: doctor.StatusFail, detail: "replicas is 1, want 3", fix: "--replicas",
		},
		{
			name:  "bad private key",
			setup: func(_ *testing.T, c *doctor.Config) { c.PrivateKey = "1,2,3" },
			id:    "key", status: doctor.StatusFail, detail: "cannot be read", fix: "openssl rand -hex 32",
		},
		{
			name:  "all-zero private key",
			setup: func(_ *testing.T, c *doctor.Config) { c.PrivateKey = strings.Repeat("0", 64) },
			id:    "key", status: doctor.StatusFail, detail: "all zeros", fix: "BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY",
		},
		{
			name:  "no private key",
			setup: func(_ *testing.T, c *doctor.Config) { c.PrivateKey = "" },
			id:    "key", status: doctor.StatusFail, detail: "refuses to start",
		},
		{
			name:  "webhook sink unreachable",
			setup: func(_ *testing.T, c *doctor.Config) { c.WebhookURL = "http://127.0.0.1:1/hook/session" },
			id:    "webhook", status: doctor.StatusFail, detail: "cannot reach the webhook sink", fix: "run bevygap webhook-sink",
		},
		{
			name:  "webhook URL not the sink",
			setup: func(_ *testing.T, c *doctor.Config) { c.WebhookURL = stack.Info().HTTPURL + "/hook/session" },
			id:    "webhook", status: doctor.StatusFail, detail: "nothing there takes webhooks", fix: "/hook/session",
		},
		{
			name:  "webhook subject the matchmaker does not hear",
			setup: func(_ *testing.T, c *doctor.Config) { c.WebhookSubject = "hooks.*" },
			id:    "webhook", status: doctor.StatusFail, detail: "the matchmaker listens on hooks.*",
		},
		{
			name:  "no webhook URL",
			setup: func(_ *testing.T, c *doctor.Config) { c.WebhookURL = "" },
			id:    "webhook", status: doctor.StatusWarn, detail: "polling", fix: "--session-webhook-url",
		},
		{
			name: "a loopback webhook URL with the real Edgegap",
			setup: func(_ *testing.T, c *doctor.Config) {
				c.EdgegapURL = "https://api.edgegap.invalid"
				c.CallTimeout = time.Second
			},
			id: "webhook", status: doctor.StatusWarn, detail: "Edgegap cannot reach 127.0.0.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := devConfig()
			tt.setup(t, &cfg)
			rep := run(t, cfg)
			c, found := rep.Find(tt.id)
			if !found {
				t.Fatalf("no check %s", tt.id)
			}
			if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) || !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("check %s = %+v\nwant status %s, detail with %q, fix with %q", tt.id, c, tt.status, tt.detail, tt.fix)
			}
			if rep.OK != (rep.Summary.Fail == 0) {
				t.Errorf("OK %v with summary %+v", rep.OK, rep.Summary)
			}
			if tt.status == doctor.StatusFail && rep.OK {
				t.Error("report OK with a failed check")
			}
		})
	}
}

// TestSkip: a skipped group is reported as skipped, not run; skipping nats skips every check
// that needs it.
func TestSkip(t *testing.T) {
	t.Parallel()
	cfg := devConfig()
	cfg.PrivateKey = "bad"
	cfg.Skip = []string{doctor.GroupKey, doctor.GroupWebhook, doctor.GroupNATS}
	rep := run(t, cfg)
	for _, id := range []string{"key", "webhook", "nats.connect", "bucket.sessions_ly2eg", "permissions.matchmaker", "matchmaker.dotroom/1"} {
		if c, _ := rep.Find(id); c.Status != doctor.StatusSkip || !strings.Contains(c.Detail, "--skip") {
			t.Errorf("%s: %+v, want skipped", id, c)
		}
	}
	if !rep.OK {
		t.Errorf("summary %+v", rep.Summary)
	}
}

// TestPermissions: each role's credentials are tried on a NATS server with least-privilege
// users (a subset of deploy/nats/auth.conf); a denied operation fails the role's check with
// the fix.
func TestPermissions(t *testing.T) {
	t.Parallel()
	srv := permServer(t)

	tests := []struct {
		name        string
		creds       doctor.RoleCredentials
		status      doctor.Status
		detail, fix string
	}{
		{"httpd with its inbox prefix", doctor.RoleCredentials{Role: doctor.RoleHTTPD, User: "httpd", Password: "h", InboxPrefix: "_INBOX_httpd"},
			doctor.StatusOK, "all 4 operations the httpd needs", ""},
		{"httpd without its inbox prefix", doctor.RoleCredentials{Role: doctor.RoleHTTPD, User: "httpd", Password: "h"},
			doctor.StatusFail, "Subscription", "NATS_INBOX_PREFIX"},
		{"webhook sink may not publish webhook.*", doctor.RoleCredentials{Role: doctor.RoleWebhookSink, User: "webhook", Password: "w"},
			doctor.StatusFail, "publish webhook.bevygap-doctor", `allow it for user "webhook"`},
		{"wrong password", doctor.RoleCredentials{Role: doctor.RoleHTTPD, User: "httpd", Password: "nope"},
			doctor.StatusFail, "cannot connect", "BEVYGAP_DOCTOR_HTTPD_NATS_USER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := devConfig()
			cfg.NATS = bus.Config{Host: srv.ClientURL(), User: "admin", Password: "a", Insecure: true}
			cfg.Role = "none"
			cfg.RoleCredentials = []doctor.RoleCredentials{tt.creds}
			cfg.CallTimeout = 2 * time.Second
			cfg.Skip = []string{doctor.GroupKey, doctor.GroupEdgegap, doctor.GroupWebhook, doctor.GroupMatchmaker}
			rep := run(t, cfg)
			c, _ := rep.Find("permissions." + tt.creds.Role)
			if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) || !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("%+v\nwant status %s, detail with %q, fix with %q", c, tt.status, tt.detail, tt.fix)
			}
		})
	}
}

// permServer starts a nats-server with JetStream and least-privilege users (a subset of
// deploy/nats/auth.conf): admin (everything), httpd, and webhook (which may publish only
// hooks.*, subscribe nothing).
func permServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "a"},
			{Username: "httpd", Password: "h", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"matchmaker.request.*.*", "matchmaker.party.*.*", "matchmaker.cancel.*.*", "session.gensession", "$SRV.PING.gensession"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_httpd.>"}},
			}},
			{Username: "webhook", Password: "w", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"hooks.*"}},
				Subscribe: &server.SubjectPermission{Deny: []string{">"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// TestMatchmakerCheckCredentials: asking a matchmaker is httpd's right; with a main user that
// may not, the check warns, and with httpd's credentials given it asks with those.
func TestMatchmakerCheckCredentials(t *testing.T) {
	t.Parallel()
	srv := permServer(t)
	httpd := doctor.RoleCredentials{Role: doctor.RoleHTTPD, User: "httpd", Password: "h", InboxPrefix: "_INBOX_httpd"}
	for _, tt := range []struct {
		name   string
		creds  []doctor.RoleCredentials
		status doctor.Status
		detail string
	}{
		{"main user may not ask", nil, doctor.StatusWarn, "may not send matchmaker requests"},
		{"httpd credentials", []doctor.RoleCredentials{httpd}, doctor.StatusFail, "no matchmaker subscribes matchmaker.request.dotroom.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := devConfig()
			cfg.NATS = bus.Config{Host: srv.ClientURL(), User: "webhook", Password: "w", Insecure: true}
			cfg.Role = "none"
			cfg.RoleCredentials = tt.creds
			cfg.CallTimeout = 2 * time.Second
			cfg.Skip = []string{doctor.GroupKey, doctor.GroupEdgegap, doctor.GroupWebhook, doctor.GroupPermissions}
			rep := run(t, cfg)
			c, _ := rep.Find("matchmaker.dotroom/1")
			if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) {
				t.Errorf("%+v\nwant status %s, detail with %q", c, tt.status, tt.detail)
			}
		})
	}
}

// tlsServer starts a nats-server that requires TLS with a self-signed certificate for
// 127.0.0.1, valid for validFor; it returns the server and the certificate's PEM (its own CA).
func tlsServer(t *testing.T, validFor time.Duration) (*server.Server, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor-test-nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, TLS: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestTLS: a trusted certificate is ok, an untrusted one or plain TCP against TLS fails with the
// fix, a certificate about to expire warns.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv, ca := tlsServer(t, 90*24*time.Hour)
	expiring, expiringCA := tlsServer(t, 3*24*time.Hour)
	addr := strings.TrimPrefix(srv.ClientURL(), "nats://")
	tests := []struct {
		name        string
		nats        bus.Config
		status      doctor.Status
		detail, fix string
	}{
		{"trusted with NATS_CA_CONTENTS", bus.Config{Host: addr, CAContents: ca}, doctor.StatusOK, `certificate "doctor-test-nats"`, ""},
		{"not trusted", bus.Config{Host: addr}, doctor.StatusFail, "not trusted", "NATS_CA"},
		{"NATS_INSECURE against a TLS server", bus.Config{Host: addr, Insecure: true, CAContents: ca}, doctor.StatusFail, "requires TLS", "unset NATS_INSECURE"},
		{"bad CA", bus.Config{Host: addr, CAContents: "not a PEM"}, doctor.StatusFail, "bad NATS CA", "NATS_CA"},
		{"expiring certificate", bus.Config{Host: strings.TrimPrefix(expiring.ClientURL(), "nats://"), CAContents: expiringCA},
			doctor.StatusWarn, "expires in less than 14 days", "renew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := devConfig()
			cfg.NATS = tt.nats
			cfg.CallTimeout = time.Second
			cfg.Skip = []string{doctor.GroupKey, doctor.GroupEdgegap, doctor.GroupWebhook, doctor.GroupMatchmaker, doctor.GroupPermissions}
			rep := run(t, cfg)
			c, _ := rep.Find("nats.tls")
			if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) || !strings.Contains(c.Fix, tt.fix) {
				t.Errorf("%+v\nwant status %s, detail with %q, fix with %q", c, tt.status, tt.detail, tt.fix)
			}
		})
	}
}

// TestJetStreamOff: a NATS server without JetStream fails the JetStream check with the fix,
// and the bucket checks are skipped.
func TestJetStreamOff(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	cfg := devConfig()
	cfg.NATS = bus.Config{Host: srv.ClientURL(), Insecure: true}
	cfg.Skip = []string{doctor.GroupKey, doctor.GroupEdgegap, doctor.GroupWebhook, doctor.GroupMatchmaker}
	rep := run(t, cfg)
	if c, _ := rep.Find("nats.jetstream"); c.Status != doctor.StatusFail || !strings.Contains(c.Fix, "-js") {
		t.Errorf("nats.jetstream: %+v", c)
	}
	if c, _ := rep.Find("bucket.sessions_ly2eg"); c.Status != doctor.StatusSkip {
		t.Errorf("bucket.sessions_ly2eg: %+v", c)
	}
}
