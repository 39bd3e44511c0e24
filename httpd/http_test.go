package httpd

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/internal/metricstest"
)

func do(t *testing.T, method, url string, hdr http.Header, body string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
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
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestStreamHappyPath(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{})
	resp, body := do(t, "POST", s.ts.URL+"/matchmaker/request/happy/1?client_ip=203.0.113.5", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v", resp.TransferEncoding)
	}
	want := `"Acknowledged"` + "\n" +
		`{"SessionRequestAccepted":"950dd2eaff09-S"}` + "\n" +
		`{"ProgressReport":"Waiting for game server"}` + "\n" +
		`{"SessionReady":{"token":"AAECAw==","ip":"1.2.3.4","port":32041,"cert_digest":"ab:cd"}}` + "\n"
	if body != want {
		t.Fatalf("body:\n%s\nwant:\n%s", body, want)
	}
	if got := f.lastRequest(); got != `{"client_ip":"203.0.113.5","game":"happy","version":"1"}` {
		t.Fatalf("matchmaker request %s", got)
	}
}

// The stream must be flushed line by line (the fake holds its SessionReady until the test has
// read the first line), and outlive the http.Server's ReadTimeout.
func TestStreamFlushesAndOutlivesReadTimeout(t *testing.T) {
	f := startFake(t)
	const readTimeout = 100 * time.Millisecond
	s := newTestServer(t, Config{}, withReadTimeout(readTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.ts.URL+"/matchmaker/request/gated/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "\"Acknowledged\"\n" {
		t.Fatalf("first line %q %v: not flushed", line, err)
	}
	time.Sleep(3 * readTimeout) // the connection's read deadline would have passed by now
	close(f.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(rest), `{"SessionReady":`) {
		t.Fatalf("rest %q", rest)
	}
}

func TestStreamErrors(t *testing.T) {
	startFake(t)
	tests := []struct {
		name string
		cfg  Config
		path string
		code int
		body string
	}{
		{"invalid game", Config{}, "/matchmaker/request/a.b/1", 400, "Game name invalid"},
		{"long version", Config{}, "/matchmaker/request/happy/" + strings.Repeat("1", 31), 400, "Game version too long (max 30 chars)"},
		{"bad client ip", Config{}, "/matchmaker/request/happy/1?client_ip=x", 400, "Invalid client_ip"},
		{"no matchmaker", Config{}, "/matchmaker/request/happy/2", 503, msgNoMatchmaker},
		{"timeout after start", Config{StreamTimeout: 300 * time.Millisecond}, "/matchmaker/request/hang/1", 200,
			"\"Acknowledged\"\n{\"Error\":[504,\"Timeout waiting for matchmaker\"]}\n"},
		{"matchmaker error", Config{}, "/matchmaker/request/mmerror/1", 200,
			"\"Acknowledged\"\n{\"Error\":[409,\"App version is disabled\"]}\n"},
		{"rate limited", Config{SessionsPerMinute: 1, SessionBurst: 1}, "", 429, msgRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg)
			path := tt.path
			if path == "" { // use up the bucket first
				path = "/matchmaker/request/mmerror/1"
				if resp, _ := do(t, "POST", s.ts.URL+path, nil, ""); resp.StatusCode != 200 {
					t.Fatalf("first request: %d", resp.StatusCode)
				}
			}
			resp, body := do(t, "POST", s.ts.URL+path, nil, "")
			if resp.StatusCode != tt.code || body != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.code, tt.body)
			}
		})
	}
}

func TestStreamShutdown(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.ts.URL+"/matchmaker/request/hang/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "\"Acknowledged\"\n" {
		t.Fatalf("first line %q", line)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "{\"Error\":[503,\"server shutting down\"]}\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestWannaplay(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		fake   bool
		cfg    Config
		code   int
		body   string
	}{
		{"post", "POST", "/matchmaker/wannaplay", true, Config{}, 200, fakeGenReply},
		{"get", "GET", "/wannaplay", true, Config{}, 200, fakeGenReply},
		{"service error", "POST", "/matchmaker/wannaplay?client_ip=" + ipGenError, true, Config{}, 409, "App version is disabled"},
		{"timeout", "POST", "/matchmaker/wannaplay?client_ip=" + ipGenHang, true, Config{GenSessionTimeout: 200 * time.Millisecond}, 408, "Request timeout"},
		{"no responders", "POST", "/matchmaker/wannaplay", false, Config{}, 503, "No service responders"},
		{"bad client ip", "POST", "/matchmaker/wannaplay?client_ip=1.2.3", true, Config{}, 400, "Invalid client_ip"},
		{"wrong method", "PUT", "/matchmaker/wannaplay", true, Config{}, 405, ""},
		{"head starts nothing", "HEAD", "/wannaplay", true, Config{}, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fakeMatchmaker
			if tt.fake {
				f = startFake(t)
			}
			s := newTestServer(t, tt.cfg)
			resp, body := do(t, tt.method, s.ts.URL+tt.path, nil, "")
			if resp.StatusCode != tt.code || (tt.body != "" && body != tt.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.code, tt.body)
			}
			if tt.fake && tt.code >= 400 && tt.code < 500 && tt.code != 409 && tt.code != 408 {
				if _, n := f.count(); n != 0 {
					t.Fatalf("refused request reached the matchmaker")
				}
			}
			if tt.code == 200 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("content-type %q", ct)
				}
				f.mu.Lock()
				got := string(f.genRequests[0])
				f.mu.Unlock()
				if got != `{"client_ip":"81.128.157.100"}` {
					t.Fatalf("gensession request %s", got)
				}
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{MaxBodyBytes: 100})
	resp, _ := do(t, "POST", s.ts.URL+"/matchmaker/wannaplay", nil, strings.Repeat("x", 101))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, n := f.count(); n != 0 {
		t.Fatal("oversized request reached the matchmaker")
	}
	resp, _ = do(t, "POST", s.ts.URL+"/matchmaker/wannaplay", nil, strings.Repeat("x", 100))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d at the limit", resp.StatusCode)
	}
}

func TestCORS(t *testing.T) {
	startFake(t)
	preflight := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}
	}
	tests := []struct {
		name        string
		origins     []string
		method      string
		path        string
		hdr         http.Header
		code        int
		allowOrigin string
	}{
		{"preflight default origin", nil, "OPTIONS", "/matchmaker/wannaplay", preflight("http://localhost:8000"), 204, "http://localhost:8000"},
		{"preflight other origin", nil, "OPTIONS", "/matchmaker/wannaplay", preflight("http://localhost:9000"), 403, ""},
		{"preflight listed origin", []string{"https://a.example", "https://b.example"}, "OPTIONS", "/matchmaker/request/happy/1", preflight("https://b.example"), 204, "https://b.example"},
		{"preflight star", []string{"*"}, "OPTIONS", "/matchmaker/wannaplay", preflight("https://any.example"), 204, "*"},
		{"post allowed origin", nil, "POST", "/matchmaker/wannaplay", http.Header{"Origin": {"http://localhost:8000"}}, 200, "http://localhost:8000"},
		{"post foreign origin refused", nil, "POST", "/matchmaker/wannaplay", http.Header{"Origin": {"https://evil.example"}}, 403, ""},
		{"post no origin (native client)", nil, "POST", "/matchmaker/wannaplay", nil, 200, ""},
		{"get status page cross-origin", nil, "GET", "/healthz", http.Header{"Origin": {"https://evil.example"}}, 200, ""},
		{"empty list allows no browser", []string{}, "POST", "/wannaplay", http.Header{"Origin": {"http://localhost:8000"}}, 405, ""},
		{"empty list refuses browser", []string{}, "POST", "/matchmaker/wannaplay", http.Header{"Origin": {"http://localhost:8000"}}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{AllowedOrigins: tt.origins})
			resp, _ := do(t, tt.method, s.ts.URL+tt.path, tt.hdr, "")
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, tt.allowOrigin)
			}
			if tt.code == 204 && resp.Header.Get("Access-Control-Allow-Methods") == "" {
				t.Fatal("preflight without Allow-Methods")
			}
			if tt.hdr.Get("Origin") != "" && !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Fatal("missing Vary: Origin")
			}
		})
	}
}

func TestStatusRoutes(t *testing.T) {
	s := newTestServer(t, Config{}, withReadyCacheTTL(time.Nanosecond))
	tests := []struct {
		path     string
		code     int
		contains string
	}{
		{"/", 200, "Bevygap Matchmaker Webservice"},
		{"/matchmaker", 200, "/metrics"},
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "no matchmaker"},
		{"/nope", 404, ""},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", s.ts.URL+tt.path, nil, "")
		if resp.StatusCode != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d %q", tt.path, resp.StatusCode, body)
		}
	}
	startFake(t)
	// The probe's ping has 1 s: on a loaded machine one may time out (503), the next passes.
	for attempt := 1; ; attempt++ {
		resp, body := do(t, "GET", s.ts.URL+"/readyz", nil, "")
		if resp.StatusCode == 200 {
			break
		}
		if attempt == 5 {
			t.Fatalf("readyz with a matchmaker: %d %q", resp.StatusCode, body)
		}
	}
	do(t, "POST", s.ts.URL+"/matchmaker/request/happy/1", nil, "")
	resp, body := do(t, "GET", s.ts.URL+"/metrics", nil, "")
	for _, want := range []string{
		`bevygap_httpd_requests_total{outcome="ready",route="stream"} 1`,
		"bevygap_httpd_open_websockets 0",
		"bevygap_httpd_time_to_ready_seconds_count 1",
	} {
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	metricstest.Lint(t, "httpd /metrics", body)
}

func TestServeGracefulAndOwnRegistry(t *testing.T) {
	startFake(t)
	s, err := New(Config{}, connect(t), quietLog(), nil) // nil: a registry of its own
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	if resp, body := do(t, "GET", base+"/metrics", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, `bevygap_nats_connected{service="httpd"} 1`) {
		t.Fatalf("metrics of an own registry: %d", resp.StatusCode)
	} else {
		metricstest.Lint(t, "standalone httpd /metrics", body)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, "ws://"+ln.Addr().String()+"/matchmaker/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(dctx, websocket.MessageText, []byte(`{"game":"hang","version":"1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(dctx); err != nil || string(b) != `"Acknowledged"` {
		t.Fatalf("first frame %q %v", b, err)
	}
	cancel()
	res := readAll(dctx, t, c)
	equalFrames(t, res.frames, []string{"ERR server shutting down"})
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}
