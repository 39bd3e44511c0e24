package main

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/syncbuf"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/metricstest"
)

// TestEdgegapSimServes runs "bevygap edgegap-sim" on a random loopback port, creates a session
// with the Edgegap client until it is ready, and stops the command by cancelling its context.
func TestEdgegapSimServes(t *testing.T) {
	t.Parallel()
	stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	env := &Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr,
		Getenv: func(k string) string {
			if k == edgegap.EnvAPIKey {
				return "token from-env"
			}
			return ""
		}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"edgegap-sim", "--bind", "127.0.0.1:0", "--app", "g", "--version", "v9",
			"--boot-time", "20ms", "--boot-jitter", "0", "--seed", "5", "--metrics-addr", "127.0.0.1:0"}, env)
	}()
	re := regexp.MustCompile(`Edgegap API on (http://\S+)`)
	var url string
	eventually.True(t, 5*time.Second, func() bool {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		return url != ""
	}, "the simulator's URL on stdout")
	c := edgegap.NewClient(url, "token from-env")
	cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "g", IPList: []string{"1.2.3.4"}})
	if err != nil || cr.Version != "v9" {
		t.Fatalf("create: %+v %v", cr, err)
	}
	eventually.True(t, 5*time.Second, func() bool {
		s, err := c.GetSession(ctx, cr.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		return s.Ready
	}, "session %s ready", cr.SessionID)
	if strings.Contains(stdout.String()+stderr.String(), "from-env") {
		t.Error("API key printed")
	}
	// --metrics-addr: the simulator's series, passing `promtool check metrics`.
	m := regexp.MustCompile(`metrics on (http://\S+/metrics)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no metrics URL on stdout: %s", stdout.String())
	}
	body := metricstest.Scrape(t, m[1])
	if want := `bevygap_edgegapsim_sessions{app="g",ready="true",version="v9"} 1`; !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
	metricstest.Lint(t, "edgegap-sim --metrics-addr", body)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("edgegap-sim did not stop")
	}
}

func TestEdgegapSimUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--ports", "server"},
		{"--ports", "server:0/udp"},
		{"--time-scale", "0"},
		{"--faults", "{"},
		{"--kind", "Default"},
		{"--public-ip", "localhost"},
		{"--config", "/nonexistent/edgegap-sim.json"},
		{"extra-arg"},
		{"--metrics-addr", "nope"},
	} {
		stderr := &syncbuf.Buffer{}
		env := &Env{Stdin: strings.NewReader(""), Stdout: &syncbuf.Buffer{}, Stderr: stderr,
			Getenv: func(string) string { return "" }}
		if code := run(context.Background(), append([]string{"edgegap-sim", "--bind", "127.0.0.1:0"}, args...), env); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

// TestEdgegapSimBindAlias: --bind is the listen address, --addr its deprecated alias; both set
// the same value (seen in the error for a busy port), and two different values are a usage
// error.
func TestEdgegapSimBindAlias(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	tests := []struct {
		name       string
		args       []string
		code       int
		want       string
		deprecated bool
	}{
		{"bind", []string{"--bind", addr}, 1, "listen on " + addr, false},
		{"addr_alias", []string{"--addr", addr}, 1, "listen on " + addr, true},
		{"both_same", []string{"--addr", addr, "--bind", addr}, 1, "listen on " + addr, true},
		{"both_differ", []string{"--addr", addr, "--bind", "127.0.0.1:0"}, 2, "disagree", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
			env := &Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr,
				Getenv: func(string) string { return "" }}
			if code := run(t.Context(), append([]string{"edgegap-sim"}, tt.args...), env); code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %s)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.want)
			}
			if got := strings.Contains(stderr.String(), "--addr is deprecated"); got != tt.deprecated {
				t.Errorf("deprecation notice printed: %v, want %v (stderr %q)", got, tt.deprecated, stderr.String())
			}
			if stdout.String() != "" {
				t.Errorf("stdout %q: it served", stdout.String())
			}
		})
	}
}
