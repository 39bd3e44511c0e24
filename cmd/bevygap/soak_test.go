package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/soak"
)

// TestSoakUsage checks the command line of "bevygap soak" without running players.
func TestSoakUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"help", []string{"soak", "-h"}, 0, "gameserver-crash"},
		{"no size", []string{"soak", "--url", "http://127.0.0.1:1"}, 2, "give --players or --duration"},
		{"bad fault", []string{"soak", "--players", "1", "--edgegap", "http://127.0.0.1:1", "--faults", "meteor@1s+1s"}, 2, `unknown fault "meteor"`},
		{"faults need the simulator", []string{"soak", "--players", "1", "--faults", "edgegap-5xx@1s+1s"}, 2, "--faults needs --edgegap"},
		{"shares above 1", []string{"soak", "--players", "1", "--abandon", "0.6", "--vanish", "0.6"}, 2, "add up to"},
		{"play times", []string{"soak", "--players", "1", "--play-min", "5s", "--play-max", "1s"}, 2, "below min"},
		{"extra argument", []string{"soak", "--players", "1", "now"}, 2, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			env := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			code := run(t.Context(), tt.args, env)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.wantCode, tt.want)
			}
		})
	}
}

// TestSoakAgainstDev runs "bevygap soak --json" against an in-process stack: every player
// gets a session, and the report (exit 0) says so.
func TestSoakAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("plays sessions against a stack")
	}
	t.Parallel()
	st, err := devstack.Start(t.Context(), devstack.Config{BootTime: 100 * time.Millisecond, BootJitter: -1,
		ReadinessLimit: 3 * time.Second, ClaimGrace: 500 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Shutdown(ctx)
	})
	info := st.Info()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	code := run(t.Context(), []string{"soak", "--url", info.HTTPURL, "--game", info.AppName, "--version", info.AppVersion,
		"--players", "8", "--concurrency", "4", "--no-connect", "0.25", "--http", "0.5", "--play-min", "100ms", "--play-max", "300ms",
		"--edgegap", info.SimURL, "--poll", "50ms", "--grace", "15s", "--json", "--progress", "0"}, env)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	var rep soak.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout.String())
	}
	if rep.Requested != 8 || rep.Granted != 8 || rep.Sessions == nil || rep.Sessions.Created != 8 || len(rep.Sessions.Leaked) != 0 {
		t.Errorf("report: requested %d, granted %d, sessions %+v; want 8, 8, 8 created, none leaked", rep.Requested, rep.Granted, rep.Sessions)
	}
}
