package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestClusterUsage checks the command line of "bevygap cluster" without starting anything
// (deploy/cluster_test.go runs the topology itself).
func TestClusterUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no subcommand", []string{"cluster"}, 2, "needs a subcommand: up"},
		{"unknown subcommand", []string{"cluster", "down"}, 2, "needs a subcommand: up"},
		{"help", []string{"cluster", "up", "-h"}, 0, "-arg value"},
		{"no compose.yaml", []string{"cluster", "up", "--deploy", t.TempDir()}, 2, "no compose.yaml there"},
		{"bad --arg", []string{"cluster", "up", "--arg", "edgegap-sim"}, 2, "want service=arg"},
		{"extra argument", []string{"cluster", "up", "now"}, 2, `unexpected argument "now"`},
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
