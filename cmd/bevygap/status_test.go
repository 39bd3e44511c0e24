package main

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/httpd"
)

func testEnv(vars map[string]string) *Env {
	return &Env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		Getenv: func(k string) string { return vars[k] }}
}

// TestHTTPDStatusFlags: the status page is off by default, the token comes from the
// environment only, --status-allow (or its variable) takes CIDRs and addresses.
func TestHTTPDStatusFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    httpd.StatusConfig
		wantErr string
	}{
		{"off by default", nil, nil, httpd.StatusConfig{}, ""},
		{"token from the environment", map[string]string{httpdStatusTokenEnv: " t0ken "}, nil, httpd.StatusConfig{Token: "t0ken"}, ""},
		{"allow-list flag", nil, []string{"--status-allow", "10.0.0.0/8, 192.0.2.1"},
			httpd.StatusConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}}, ""},
		{"allow-list variable", map[string]string{"BEVYGAP_HTTPD_STATUS_ALLOW": "::1"}, nil,
			httpd.StatusConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix("::1/128")}}, ""},
		{"bad allow-list", nil, []string{"--status-allow", "10.0.0.0/33"}, httpd.StatusConfig{}, "--status-allow"},
		{"no token flag", nil, []string{"--status-token", "x"}, httpd.StatusConfig{}, "status-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &httpdCommand{env: testEnv(tt.env)}
			err := c.ParseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+c.env.Stderr.(*bytes.Buffer).String(), tt.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.cfg.Status
			if got.Token != tt.want.Token || !slices.Equal(got.AllowFrom, tt.want.AllowFrom) || got.Open {
				t.Errorf("status %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDevStatusPage: bevygap dev serves the page without a token on loopback only, and says
// where it is.
func TestDevStatusPage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr string
		open bool
	}{{"127.0.0.1:3000", true}, {"[::1]:3000", true}, {"localhost:3000", true}, {"0.0.0.0:3000", false}, {"192.0.2.1:3000", false}} {
		c := &devCommand{env: testEnv(nil)}
		if err := c.ParseFlags([]string{"--http-addr", tt.addr}); err != nil {
			t.Fatalf("%s: %v", tt.addr, err)
		}
		if c.cfg.Status.Open != tt.open {
			t.Errorf("--http-addr %s: status page open %t, want %t", tt.addr, c.cfg.Status.Open, tt.open)
		}
		var b bytes.Buffer
		printDevBanner(&b, devstack.Info{HTTPURL: "http://" + tt.addr}, c.cfg, "generated", "bevygap")
		if want := "Status page   http://" + tt.addr + "/status\n"; tt.open != strings.Contains(b.String(), want) {
			t.Errorf("--http-addr %s: banner %q (want the page line: %t)", tt.addr, b.String(), tt.open)
		}
	}
}
