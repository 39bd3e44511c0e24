package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/match"
)

func TestMatchmakerUsageErrors(t *testing.T) {
	t.Parallel()
	secretKey := "9,8,7,6,5,4,3,2,1,0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,0,1,299"
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no key", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, nil, "no Lightyear private key"},
		{"bad key flag", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", secretKey}, "--lightyear-private-key"},
		{"bad key env", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api", "BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY": secretKey}, nil, "--lightyear-private-key"},
		{"no api key", nil, []string{"--lightyear-private-key", testKeyDecimal}, "EDGEGAP_API_KEY is not set"},
		{"bad token format", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--token-format", "lightyear-9"}, "token-format"},
		{"bad metrics addr", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", testKeyDecimal, "--metrics-addr", "nope"}, "--metrics-addr"},
		{"bad webhook url", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", testKeyDecimal, "--session-webhook-url", "ftp://x"}, "session webhook url"},
		{"missing queues file", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", testKeyDecimal, "--queues", "/nonexistent/queues.json"}, "--queues"},
		{"missing queues file env", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api", "BEVYGAP_MATCHMAKER_QUEUES": "/nonexistent/queues.json"}, []string{"--lightyear-private-key", testKeyDecimal}, "--queues"},
		{"negative edgegap rate", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", testKeyDecimal, "--edgegap-rate-limit", "-1"}, "--edgegap-rate-limit -1"},
		{"edgegap rate not a number", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api"}, []string{"--lightyear-private-key", testKeyDecimal, "--edgegap-rate-limit", "fast"}, "-edgegap-rate-limit"},
		{"zero edgegap burst env", map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api", "BEVYGAP_MATCHMAKER_EDGEGAP_RATE_BURST": "0"}, []string{"--lightyear-private-key", testKeyDecimal}, "--edgegap-rate-burst 0"},
		{"extra arg", nil, []string{"oops"}, "unexpected argument"},
		{"own subject and unknown games", nil, []string{"--only-own-subject", "--answer-unknown-games"}, "--only-own-subject contradicts --answer-unknown-games"},
		{"wildcard but no unknown games", nil, []string{"--only-own-subject=false", "--answer-unknown-games=false"}, "--only-own-subject=false contradicts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", tt.env, append([]string{"matchmaker"}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			if strings.Contains(stderr, "299") || strings.Contains(stderr, "token s3cr3t-api") {
				t.Fatalf("secret echoed: %q", stderr)
			}
		})
	}
}

func TestMatchmakerHelpListsReferenceFlags(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI(t, "", map[string]string{"BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY": testKeyDecimal}, "matchmaker", "-h")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"-app-name", `(default "spacepit_server")`, "-app-version", `(default "v0.0.1")`,
		"-lightyear-private-key", "-lightyear-protocol-id", "(default 1982)", "-session-webhook-url", "-token-format", "lightyear-0.17", "-metrics-addr",
		"-answer-unknown-games", "-only-own-subject", "needs --session-webhook-url"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("help lacks %q", f)
		}
	}
	if strings.Contains(stderr, "1,2,3,4,5") {
		t.Fatal("help shows the private key from the environment")
	}
}

func TestMatchmakerQueuesFlag(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queues.json")
	if err := os.WriteFile(path, []byte(`{"queues":[{"name":"duo","min":2,"max":2,"kind":"match"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"EDGEGAP_API_KEY": "token s3cr3t-api", "BEVYGAP_MATCHMAKER_QUEUES": path}
	c := &matchmakerCommand{env: &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard,
		Getenv: func(k string) string { return vars[k] }}}
	if err := c.ParseFlags([]string{"--lightyear-private-key", testKeyDecimal}); err != nil {
		t.Fatal(err)
	}
	q, err := c.cfg.Queues.Queue("duo")
	if err != nil || q.Min != 2 || q.Kind != match.KindMatch {
		t.Fatalf("queue duo: %+v, %v", q, err)
	}
}
