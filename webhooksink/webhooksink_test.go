package webhooksink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/metricstest"
	"github.com/bevygap-go/bevygap/internal/natsembed"
)

var testNATS *natsembed.Server

func TestMain(m *testing.M) { bustest.Main(m, &testNATS) }

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	return bustest.Connect(t, testNATS, "sink-test")
}

func newSink(t *testing.T, cfg Config, nc *nats.Conn) (*httptest.Server, *strings.Builder) {
	t.Helper()
	var logs strings.Builder
	s, err := New(cfg, nc, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, &logs
}

func post(t *testing.T, url string, hdr http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const sessionBody = `{"session_id":"950dd2eaff09-S","status":"Status.READY","ready":true}`

func TestHook(t *testing.T) {
	nc := connect(t)
	sub, err := nc.SubscribeSync("webhook.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-hook-token"
	tests := []struct {
		name    string
		cfg     Config
		path    string
		hdr     http.Header
		body    string
		code    int
		resp    string
		subject string // "" means nothing may be published
	}{
		{"publish", Config{}, "/hook/session", nil, sessionBody, 200, "OK", "webhook.session"},
		{"name with dash and underscore", Config{}, "/hook/my_hook-2", nil, `{}`, 200, "OK", "webhook.my_hook-2"},
		{"name with dot", Config{}, "/hook/a.b", nil, `{}`, 400, "", ""},
		{"name with wildcard", Config{}, "/hook/%2A", nil, `{}`, 400, "", ""},
		{"name too long", Config{}, "/hook/" + strings.Repeat("a", 65), nil, `{}`, 400, "", ""},
		{"name at limit", Config{}, "/hook/" + strings.Repeat("a", 64), nil, `{}`, 200, "OK", "webhook." + strings.Repeat("a", 64)},
		{"empty body", Config{}, "/hook/session", nil, ``, 400, "empty body", ""},
		{"not json", Config{}, "/hook/session", nil, `hello`, 400, "body is not valid JSON", ""},
		{"not json allowed", Config{AllowNonJSON: true}, "/hook/raw", nil, `hello`, 200, "OK", "webhook.raw"},
		{"too large", Config{MaxBodyBytes: 10}, "/hook/session", nil, `{"a":"0123456789"}`, 413, "", ""},
		{"secret missing", Config{Secret: secret}, "/hook/session", nil, sessionBody, 401, "", ""},
		{"secret wrong", Config{Secret: secret}, "/hook/session?token=nope", nil, sessionBody, 401, "", ""},
		{"secret in url", Config{Secret: secret}, "/hook/session?token=" + secret, nil, sessionBody, 200, "OK", "webhook.session"},
		{"secret in header", Config{Secret: secret}, "/hook/session", http.Header{"X-Webhook-Token": {secret}}, sessionBody, 200, "OK", "webhook.session"},
		{"secret as bearer", Config{Secret: secret}, "/hook/session", http.Header{"Authorization": {"Bearer " + secret}}, sessionBody, 200, "OK", "webhook.session"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, logs := newSink(t, tt.cfg, connect(t))
			code, resp := post(t, ts.URL+tt.path, tt.hdr, tt.body)
			if code != tt.code || (tt.resp != "" && resp != tt.resp) {
				t.Fatalf("got %d %q, want %d %q", code, resp, tt.code, tt.resp)
			}
			// The sink answers only after the NATS server has taken its publish, so a marker
			// published now reaches the subscriber after anything the sink published.
			marker := fmt.Sprintf("webhook.zz-marker-%d", i)
			if err := nc.Publish(marker, nil); err != nil {
				t.Fatal(err)
			}
			var got []*nats.Msg
			for {
				msg, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("marker not received: %v", err)
				}
				if msg.Subject == marker {
					break
				}
				got = append(got, msg)
			}
			if tt.subject == "" {
				if len(got) != 0 {
					t.Fatalf("published %s although refused", got[0].Subject)
				}
				return
			}
			if len(got) != 1 || got[0].Subject != tt.subject || string(got[0].Data) != tt.body {
				t.Fatalf("published %d messages, want one on %s with the body", len(got), tt.subject)
			}
			if strings.Contains(logs.String(), secret) {
				t.Fatal("secret in log")
			}
		})
	}
}

func TestHookNATSDown(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	ts, _ := newSink(t, Config{}, nc)
	nc.Close()
	code, _ := post(t, ts.URL+"/hook/session", nil, sessionBody)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
}

func TestRoutesAndMetrics(t *testing.T) {
	t.Parallel()
	ts, _ := newSink(t, Config{}, connect(t))
	post(t, ts.URL+"/hook/session", nil, sessionBody)
	post(t, ts.URL+"/hook/a.b", nil, sessionBody)
	for _, tt := range []struct {
		path, want string
		code       int
	}{
		{"/healthz", "ok", 200},
		{"/", "Webhook catcher", 200},
		{"/metrics", `bevygap_webhooksink_requests_total{outcome="published"} 1`, 200},
		{"/metrics", `bevygap_webhooksink_requests_total{outcome="bad_name"} 1`, 200},
		{"/metrics", `bevygap_nats_connected{service="webhooksink"} 1`, 200},
		{"/hook/session", "", 405}, // GET
	} {
		resp, err := http.Get(ts.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: %d %q", tt.path, resp.StatusCode, b)
		}
	}
	metricstest.Lint(t, "webhook sink /metrics", metricstest.Scrape(t, ts.URL+"/metrics"))
}

func TestConfigHidesSecret(t *testing.T) {
	t.Parallel()
	c := Config{Secret: "hunter2"}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "cfg", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logs.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret leaked: %s", s)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"session": true, "A-z_0": true, "": false, "a b": false, "a.b": false, "a>": false, "a*": false,
		"a=b": false, "a/b": false, "é": false, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false,
	} {
		if validName(name) != want {
			t.Errorf("validName(%q) = %v", name, !want)
		}
	}
}

func FuzzHookName(f *testing.F) {
	f.Add("session")
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, name string) {
		if validName(name) && strings.ContainsAny(name, ".*> \t\r\n") {
			t.Fatalf("unsafe name %q accepted", name)
		}
	})
}

// tcpProxy forwards loopback connections to target until cut is called.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

// cut closes the listener and every forwarded connection: NATS is unreachable from then on.
func (p *tcpProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// While the connection to NATS is down (reconnecting), the sink must answer 503, not park the
// body in the reconnect buffer and claim success.
func TestHookNATSDisconnected(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testNATS.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	p := newTCPProxy(t, u.Host)
	cfg := bustest.Config(testNATS, "sink-test")
	cfg.Host = "nats://" + p.ln.Addr().String()
	nc, err := bus.Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ts, _ := newSink(t, Config{FlushTimeout: time.Second}, nc)
	if code, _ := post(t, ts.URL+"/hook/session", nil, sessionBody); code != 200 {
		t.Fatalf("connected: %d", code)
	}
	down := nc.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	p.cut()
	select {
	case <-down:
	case <-time.After(10 * time.Second):
		t.Fatal("the NATS connection did not notice the cut")
	}
	code, body := post(t, ts.URL+"/hook/session", nil, sessionBody)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("disconnected: %d %q, want 503", code, body)
	}
}

// TestServe: Serve answers until its context ends, then returns nil and stops listening.
func TestServe(t *testing.T) {
	t.Parallel()
	s, err := New(Config{}, connect(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	if code, _ := post(t, "http://"+ln.Addr().String()+"/hook/session", nil, sessionBody); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("still accepting after Serve returned")
	}
}
