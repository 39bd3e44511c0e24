package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// unreachableNATS is an environment whose NATS server cannot be reached: a command that dialed
// it would retry for the whole connect wait (30 s) before failing.
var unreachableNATS = map[string]string{"NATS_HOST": "127.0.0.1:1", "NATS_INSECURE": "1"}

// runCLIWithin runs the command like runCLI, but gives up after limit so that a command that
// waits for NATS fails the test quickly instead of hanging it.
func runCLIWithin(t *testing.T, limit time.Duration, envVars map[string]string, args ...string) (code int, stderr string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var out, errb strings.Builder
	env := &Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return envVars[k] },
	}
	start := time.Now()
	code = run(ctx, args, env)
	return code, errb.String(), time.Since(start)
}

// TestBindCheckedBeforeNATS: a bad --bind is a usage error and a busy one an error, both
// reported at once, without waiting for the (unreachable) NATS server.
func TestBindCheckedBeforeNATS(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name       string
		bind       string
		wantCode   int
		wantStderr []string
	}{
		{"no port", "nonsense", 2, []string{`Error: --bind "nonsense": not an ip:port address`, "Try: bevygap %s --bind 0.0.0.0:"}},
		{"port not a number", "127.0.0.1:http", 2, []string{`port "http" is not a number`, "Try: "}},
		{"port too large", "127.0.0.1:65536", 2, []string{`port "65536"`, "Try: "}},
		{"bad host", "bad host!:3000", 2, []string{`"bad host!" is neither an IP address nor a host name`, "Try: "}},
		{"busy port", busy.Addr().String(), 1, []string{"Error: listen on " + busy.Addr().String()}},
	}
	for _, cmd := range []string{"httpd", "webhook-sink"} {
		for _, tt := range tests {
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				code, stderr, took := runCLIWithin(t, 10*time.Second, unreachableNATS, cmd, "--bind", tt.bind)
				if code != tt.wantCode {
					t.Fatalf("exit %d, want %d (after %s)\nstderr: %s", code, tt.wantCode, took, stderr)
				}
				for _, w := range tt.wantStderr {
					if w = strings.ReplaceAll(w, "%s", cmd); !strings.Contains(stderr, w) {
						t.Errorf("stderr does not mention %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stderr, "NATS") {
					t.Errorf("the command tried NATS before checking --bind:\n%s", stderr)
				}
				if took > 2*time.Second {
					t.Errorf("took %s: --bind was not checked before connecting to NATS", took)
				}
			})
		}
	}
}

// TestListen: listen returns a working listener on a good address (here a random loopback
// port).
func TestListen(t *testing.T) {
	t.Parallel()
	ln, err := listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial the listener: %v", err)
	}
	c.Close()
}

func TestCheckBind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		bind string
		ok   bool
	}{
		{"0.0.0.0:3000", true},
		{":3000", true},
		{"127.0.0.1:0", true},
		{"[::1]:3000", true},
		{"[fe80::1%eth0]:3000", true},
		{"localhost:3000", true},
		{"mm.example.com:443", true},
		{"nonsense", false},
		{"", false},
		{"3000", false},
		{"::1:3000", false},
		{"127.0.0.1:", false},
		{"127.0.0.1:-1", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:http", false},
		{"-bad-.example:3000", false},
		{"a..b:3000", false},
		{"under_score:3000", false},
		{strings.Repeat("a", 64) + ":3000", false},
	}
	for _, tt := range tests {
		err := checkBind(tt.bind)
		if (err == nil) != tt.ok {
			t.Errorf("checkBind(%q) = %v, want ok=%v", tt.bind, err, tt.ok)
		}
	}
}
