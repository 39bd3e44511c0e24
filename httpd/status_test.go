package httpd

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/statusfeed"
)

// TestStatusAccess pins who may see /status and /status.json: nobody by default, then the
// token and the allow-list (the httptest client connects from 127.0.0.1).
func TestStatusAccess(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	tests := []struct {
		name  string
		cfg   StatusConfig
		query string
		hdr   http.Header
		code  int
	}{
		{"off by default", StatusConfig{}, "", nil, http.StatusNotFound},
		{"off even with a token sent", StatusConfig{}, "", bearer(token), http.StatusNotFound},
		{"token missing", StatusConfig{Token: token}, "", nil, http.StatusUnauthorized},
		{"token wrong", StatusConfig{Token: token}, "", bearer("s3cret-tokem"), http.StatusUnauthorized},
		{"token prefix only", StatusConfig{Token: token}, "", bearer("s3cret"), http.StatusUnauthorized},
		{"token empty bearer", StatusConfig{Token: token}, "", bearer(""), http.StatusUnauthorized},
		{"token wrong scheme", StatusConfig{Token: token}, "", http.Header{"Authorization": {"Basic " + token}}, http.StatusUnauthorized},
		{"token in header", StatusConfig{Token: token}, "", bearer(token), http.StatusOK},
		{"token in query", StatusConfig{Token: token}, "?token=" + token, nil, http.StatusOK},
		{"wrong header beats right query", StatusConfig{Token: token}, "?token=" + token, bearer("nope"), http.StatusUnauthorized},
		{"allow-list hit", StatusConfig{AllowFrom: loopback}, "", nil, http.StatusOK},
		{"allow-list miss", StatusConfig{AllowFrom: elsewhere}, "", nil, http.StatusForbidden},
		{"allow-list miss with token", StatusConfig{AllowFrom: elsewhere, Token: token}, "", bearer(token), http.StatusForbidden},
		{"allow-list hit without token", StatusConfig{AllowFrom: loopback, Token: token}, "", nil, http.StatusUnauthorized},
		{"allow-list hit and token", StatusConfig{AllowFrom: loopback, Token: token}, "", bearer(token), http.StatusOK},
		{"open", StatusConfig{Open: true}, "", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, Config{Status: tt.cfg})
			for _, path := range []string{"/status", "/status.json"} {
				resp, body := do(t, "GET", s.ts.URL+path+tt.query, tt.hdr, "")
				if resp.StatusCode != tt.code {
					t.Fatalf("%s: %d %q, want %d", path, resp.StatusCode, body, tt.code)
				}
				if strings.Contains(body, token) {
					t.Errorf("%s: the answer contains the token", path)
				}
				if tt.code == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 without a Bearer challenge", path)
				}
				if tt.code == http.StatusOK && resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s: Cache-Control %q", path, resp.Header.Get("Cache-Control"))
				}
			}
		})
	}
}

// TestStatusTrustedProxy: behind a trusted proxy the allow-list checks the X-Forwarded-For
// client, from anyone else the header is ignored.
func TestStatusTrustedProxy(t *testing.T) {
	t.Parallel()
	allow := []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}
	xff := http.Header{"X-Forwarded-For": {"198.51.100.7"}}
	untrusted := newTestServer(t, Config{Status: StatusConfig{AllowFrom: allow}})
	if resp, _ := do(t, "GET", untrusted.ts.URL+"/status.json", xff, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("X-Forwarded-For from an untrusted peer: %d, want 403", resp.StatusCode)
	}
	trusted := newTestServer(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Status: StatusConfig{AllowFrom: allow}})
	if resp, _ := do(t, "GET", trusted.ts.URL+"/status.json", xff, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("X-Forwarded-For from a trusted proxy: %d, want 200", resp.StatusCode)
	}
}

// TestStatusPageAndJSON: the page is self-contained (no external script, style or font) and
// the JSON lists this front door and counts its waiting player, through NATS.
func TestStatusPageAndJSON(t *testing.T) {
	t.Parallel()
	startFake(t)
	s := newTestServer(t, Config{Status: StatusConfig{Open: true, PublishInterval: 50 * time.Millisecond}})
	// A player waiting for the matchmaker: the "gated" game acknowledges and holds.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.ts.URL+"/matchmaker/request/gated/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "\"Acknowledged\"\n" {
		t.Fatalf("first line %q %v", line, err)
	}

	page, body := do(t, "GET", s.ts.URL+"/status", nil, "")
	if page.StatusCode != 200 || !strings.Contains(body, "status.json") {
		t.Fatalf("page: %d", page.StatusCode)
	}
	for _, bad := range []string{"http://", "https://", "//cdn", "src=", "@import", "url("} {
		if strings.Contains(strings.ReplaceAll(body, "http://www.w3.org/2000/svg", ""), bad) {
			t.Errorf("page refers to something outside itself: %q", bad)
		}
	}
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	eventually.True(t, 10*time.Second, func() bool {
		_, body := do(t, "GET", s.ts.URL+"/status.json", nil, "")
		var v statusfeed.View
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("status.json: %v: %s", err, body)
		}
		for _, in := range v.Instances {
			if in.Role == statusfeed.RoleHTTPD && v.WaitingPlayers >= 1 {
				return true
			}
		}
		return false
	}, "status.json lists no front door with a waiting player")
}
