package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bevygap-go/bevygap/internal/natsembed"
)

// testServer is the one embedded nats-server shared by every test of this package.
var testServer *natsembed.Server

func TestMain(m *testing.M) {
	var err error
	testServer, err = natsembed.Start(natsembed.Config{User: "bevygap", Password: "s3cret-pw"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testServer.Shutdown()
	os.Exit(code)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"NATS_HOST": "nats.example.com:4222", "NATS_USER": "u", "NATS_PASS": "p2",
		"NATS_CA": "/ca.pem", "NATS_INSECURE": "1", "NATS_INBOX_PREFIX": "_INBOX_httpd",
	}
	c := ConfigFromEnv(func(k string) string { return env[k] })
	want := Config{Host: "nats.example.com:4222", User: "u", Password: "p2", CAFile: "/ca.pem", Insecure: true, InboxPrefix: "_INBOX_httpd"}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	env["NATS_PASSWORD"] = "p1"
	if c := ConfigFromEnv(func(k string) string { return env[k] }); c.Password != "p1" {
		t.Fatalf("NATS_PASSWORD must win over NATS_PASS, got %q", c.Password)
	}
	if c := ConfigFromEnv(func(string) string { return "" }); c.Insecure || c.InboxPrefix != "" {
		t.Fatalf("from an empty environment: %+v, want secure and the default inbox prefix", c)
	}
}

func TestServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host     string
		insecure bool
		want     string
		wantErr  bool
	}{
		{"", false, "tls://127.0.0.1", false},
		{"nats.example.com", false, "tls://nats.example.com", false},
		{"nats.example.com:4222", true, "nats://nats.example.com:4222", false},
		{"tls://a:1, nats://b:2", true, "tls://a:1,nats://b:2", false},
		{"wss://a", false, "wss://a", false},
		{"http://a", false, "", true},
		{" , ", false, "", true},
	}
	for _, tt := range tests {
		got, err := Config{Host: tt.host, Insecure: tt.insecure}.servers()
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v", tt.host, err)
			continue
		}
		if !tt.wantErr && strings.Join(got, ",") != tt.want {
			t.Errorf("%q: got %v, want %s", tt.host, got, tt.want)
		}
	}
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	c := Config{Host: "nats://admin:hunter2@h:4222", User: "u", Password: "hunter2", CAContents: "-----BEGIN hunter2"}
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("cfg", "nats", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), c.String(), buf.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret leaked: %s", s)
		}
	}
}

func TestConfigShowsInboxPrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		prefix, wantString, wantLog string
	}{
		{"", `InboxPrefix:""`, `"inbox_prefix":"_INBOX"`},
		{"_INBOX_mm", `InboxPrefix:"_INBOX_mm"`, `"inbox_prefix":"_INBOX_mm"`},
	} {
		c := Config{Host: "h", InboxPrefix: tt.prefix}
		var buf strings.Builder
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "nats", c)
		if !strings.Contains(c.String(), tt.wantString) || !strings.Contains(buf.String(), tt.wantLog) {
			t.Errorf("prefix %q: String %s, log %s; want %s and %s", tt.prefix, c.String(), buf.String(), tt.wantString, tt.wantLog)
		}
	}
}

func TestValidateInboxPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"_INBOX", true},
		{"_INBOX_httpd", true},
		{"_I.httpd.eu-1", true},
		{"$R.mm", true},
		{"_INBOX.>", false},
		{"_INBOX.*", false},
		{"_INBOX*", false},
		{">", false},
		{"_INBOX.", false},
		{".x", false},
		{"a..b", false},
		{"_INBOX httpd", false},
		{"_INBOX\thttpd", false},
		{"_INBOX\n", false},
		{"_INBOX\x00", false},
		{"\xff\xfe", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		err := ValidateInboxPrefix(tt.prefix)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateInboxPrefix(%q) = %v, want ok=%t", tt.prefix, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInboxPrefix) {
			t.Errorf("ValidateInboxPrefix(%q) = %v, want it to wrap ErrInboxPrefix", tt.prefix, err)
		}
	}
}

func TestConnectRefusesBadInboxPrefix(t *testing.T) {
	t.Parallel()
	cfg := testConfig("test")
	cfg.InboxPrefix = "_INBOX.>"
	cfg.ConnectWait = 10 * time.Second
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		nc, err := Connect(context.Background(), cfg, quietLogger())
		if err == nil {
			nc.Close()
		}
		if !errors.Is(err, ErrInboxPrefix) || !strings.Contains(err.Error(), "_INBOX.>") {
			t.Fatalf("err = %v, want ErrInboxPrefix naming the prefix", err)
		}
		if d := time.Since(start); d != 0 { // fake time: any retry would have waited
			t.Fatalf("a bad prefix was retried (for %v) instead of refused", d)
		}
	})
}

func TestConnectEmbedded(t *testing.T) {
	t.Parallel()
	nc, err := Connect(context.Background(), testConfig("test"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(2 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestConnectWrongPasswordFailsFast(t *testing.T) {
	t.Parallel()
	cfg := testConfig("test")
	cfg.Password = "wrong"
	cfg.ConnectWait = 20 * time.Second
	// On fake time: the dial and the server's refusal are real I/O, which takes no fake time;
	// a retry would wait at least 250 ms of it.
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		_, err := Connect(context.Background(), cfg, quietLogger())
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("err = %v, want ErrAuth", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("password in error: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("auth failure was retried (for %v) instead of failing fast", d)
		}
	})
}

// TestConnectRetriesWithBackoff: an unreachable server is tried again after 250 ms, then after
// twice the previous wait up to 5 s, until ConnectWait has passed (on fake time: nothing
// listens on port 1, every dial is refused at once).
func TestConnectRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs strings.Builder
		cfg := Config{Host: "127.0.0.1:1", Insecure: true, ConnectWait: 20 * time.Second}
		start := time.Now()
		_, err := Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if took := time.Since(start); took != cfg.ConnectWait {
			t.Errorf("gave up after %v, want ConnectWait (%v)", took, cfg.ConnectWait)
		}
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "after 8 attempts") {
			t.Fatalf("error does not name the server and the 8 attempts: %v", err)
		}
		var waits []string
		for _, m := range regexp.MustCompile(`attempt=(\d+) .* retry_in=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
			waits = append(waits, m[1]+":"+m[2])
		}
		want := "1:250ms 2:500ms 3:1s 4:2s 5:4s 6:5s 7:5s 8:5s"
		if got := strings.Join(waits, " "); got != want {
			t.Errorf("attempts and waits %q, want %q", got, want)
		}
	})
}

func TestConnectBadCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := dir + "/ca.pem"
	if err := os.WriteFile(bad, []byte("not a pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{Host: "127.0.0.1:1", CAFile: bad},
		{Host: "127.0.0.1:1", CAFile: dir + "/missing.pem"},
		{Host: "127.0.0.1:1", CAContents: "garbage"},
	} {
		if _, err := Connect(context.Background(), cfg, quietLogger()); !errors.Is(err, ErrBadCA) {
			t.Errorf("%v: err = %v, want ErrBadCA", cfg, err)
		}
	}
}

func TestConnectWithoutHostSaysSo(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	// Nothing answers TLS on the default address 127.0.0.1:4222 here, so this fails; what
	// matters is that the log and the error name NATS_HOST. The retries run on fake time.
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ConnectWait: 300 * time.Millisecond}
		_, err := Connect(context.Background(), cfg, log)
		if err == nil {
			t.Skip("a TLS NATS server answers on 127.0.0.1:4222 on this machine")
		}
		if !strings.Contains(err.Error(), "NATS_HOST is not set") {
			t.Fatalf("error does not explain the missing NATS_HOST: %v", err)
		}
	})
	if !strings.Contains(buf.String(), "NATS_HOST is not set") {
		t.Fatalf("log does not warn about the missing NATS_HOST: %s", buf.String())
	}
}

// testConfig returns a client Config that reaches testServer as client name.
func testConfig(name string) Config {
	return Config{Host: testServer.ClientURL(), User: testServer.User(), Password: testServer.Password(), Insecure: true, Name: name}
}

// TestConnectTLSToPlainServerFailsFast: TLS is the default, and a server without TLS refuses it
// the same way on every attempt, so Connect fails at once (long before ConnectWait) and says
// how to fix it.
func TestConnectTLSToPlainServerFailsFast(t *testing.T) {
	t.Parallel()
	hostPort := strings.TrimPrefix(testServer.ClientURL(), "nats://")
	for _, host := range []string{hostPort, testServer.ClientURL()} {
		cfg := Config{Host: host, User: testServer.User(), Password: testServer.Password(), ConnectWait: time.Minute}
		done := make(chan error, 1)
		go func() {
			_, err := Connect(context.Background(), cfg, quietLogger())
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "does not offer TLS: set NATS_INSECURE=1") {
				t.Fatalf("host %s: err = %v, want the NATS_INSECURE hint", host, err)
			}
		case <-time.After(cfg.ConnectWait / 2):
			t.Fatalf("host %s: TLS to a plain server still retried after %v", host, cfg.ConnectWait/2)
		}
	}
}
