package bus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:pw@host:4222", "nats://alice:[REDACTED]@host:4222"},
		{"nats://tok3n@host:4222", "nats://[REDACTED]@host:4222"},
		{"tls://a:b@h1:1,nats://tok@h2:2,nats://h3:3", "tls://a:[REDACTED]@h1:1,nats://[REDACTED]@h2:2,nats://h3:3"},
		{"alice:p@ss@host", "alice:[REDACTED]@host"},
	}
	for _, c := range cases {
		if got := redactURL(c.in); got != c.want {
			t.Errorf("redactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestConnectNeverLogsCredentials: a token or password in NATS_HOST (or NATS_PASSWORD) shows
// neither in the retry log lines nor in the final error, also when the URL does not parse
// (net/url quotes the whole URL in its error).
func TestConnectNeverLogsCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: every attempt fails
	cases := []struct {
		name, host, password string
		secrets              []string
	}{
		{"token", "nats://SECRETTOKEN123@" + closed, "", []string{"SECRETTOKEN123"}},
		{"user and password", "nats://alice:SECRETPW456@" + closed, "", []string{"SECRETPW456"}},
		{"unparsable URL", "nats://alice:SECRET%zzPW@" + closed, "", []string{"SECRET%zzPW", "SECRET"}},
		{"several servers", "nats://" + closed + ",nats://TOKENB789@" + closed, "", []string{"TOKENB789"}},
		{"password from env", "nats://" + closed, "ENVPASS321", []string{"ENVPASS321"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg := Config{Host: c.host, Password: c.password, User: "alice", Insecure: true, ConnectWait: 700 * time.Millisecond}
			_, err := Connect(context.Background(), cfg, log)
			if err == nil {
				t.Fatal("connected to a closed port")
			}
			out := logs.String() + "\n" + err.Error() + "\n" + fmt.Sprintf("%+v", err)
			if !strings.Contains(logs.String(), "retrying") && !strings.Contains(err.Error(), "NATS") {
				t.Fatalf("no retry line and no NATS error: %s", out)
			}
			for _, s := range c.secrets {
				if strings.Contains(out, s) {
					t.Errorf("secret %q leaked:\n%s", s, out)
				}
			}
		})
	}
}
