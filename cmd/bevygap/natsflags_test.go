package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestNATSClientFlagsInboxPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string
		wantErr bool
	}{
		{"default", nil, nil, "", false},
		{"from env", map[string]string{"NATS_INBOX_PREFIX": "_INBOX_env"}, nil, "_INBOX_env", false},
		{"flag wins over env", map[string]string{"NATS_INBOX_PREFIX": "_INBOX_env"}, []string{"--nats-inbox-prefix", "_INBOX_flag"}, "_INBOX_flag", false},
		{"dotted", nil, []string{"--nats-inbox-prefix=_I.httpd"}, "_I.httpd", false},
		{"flag clears env", map[string]string{"NATS_INBOX_PREFIX": "_INBOX_env"}, []string{"--nats-inbox-prefix="}, "", false},
		{"wildcard", nil, []string{"--nats-inbox-prefix", "_INBOX.*"}, "", true},
		{"space", nil, []string{"--nats-inbox-prefix", "_INBOX httpd"}, "", true},
		{"trailing dot", nil, []string{"--nats-inbox-prefix", "_INBOX_httpd."}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return tt.env[k] }}
			fs := newFlagSet(env, "test", "")
			cfg := addNATSClientFlags(fs, env, "bevygap-test")
			err := parseFlags(fs, tt.args)
			if tt.wantErr {
				var ue *usageError
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "inbox prefix") {
					t.Fatalf("err = %v, want a usage error about the inbox prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg().InboxPrefix; got != tt.want {
				t.Fatalf("InboxPrefix = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestServiceCommandsTakeInboxPrefix checks that every NATS service command has the flag and
// refuses a bad prefix as a usage error (exit 2), and a bad NATS_INBOX_PREFIX before dialing.
func TestServiceCommandsTakeInboxPrefix(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"httpd", "matchmaker", "webhook-sink"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", nil, cmd, "-h")
			if code != 0 || !strings.Contains(stderr, "-nats-inbox-prefix") || !strings.Contains(stderr, "NATS_INBOX_PREFIX") {
				t.Fatalf("%s -h: exit %d, help lacks --nats-inbox-prefix:\n%s", cmd, code, stderr)
			}
			code, _, stderr = runCLI(t, "", nil, cmd, "--nats-inbox-prefix", "_INBOX.>")
			if code != 2 || !strings.Contains(stderr, "inbox prefix") {
				t.Fatalf("%s --nats-inbox-prefix _INBOX.>: exit %d, stderr %q; want a usage error", cmd, code, stderr)
			}
		})
	}
	// From the environment the prefix reaches bus.Connect, which refuses it without dialing
	// (127.0.0.1:1 would otherwise be retried).
	code, _, stderr := runCLI(t, "", map[string]string{"NATS_INBOX_PREFIX": "bad prefix", "NATS_HOST": "127.0.0.1:1", "NATS_INSECURE": "1"}, "httpd")
	if code != 1 || !strings.Contains(stderr, "invalid NATS inbox prefix") {
		t.Fatalf("httpd with NATS_INBOX_PREFIX=\"bad prefix\": exit %d, stderr %q", code, stderr)
	}
}
