package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/internal/syncbuf"
)

// runCLI runs the binary's entry point with stdin, buffers and a map-backed environment.
func runCLI(t *testing.T, stdin string, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncbuf.Buffer
	env := &Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return envVars[k] },
	}
	code = run(t.Context(), args, env)
	return code, out.String(), errb.String()
}

// runCLIContext runs the binary's entry point like runCLI, with ctx and no stdin.
func runCLIContext(ctx context.Context, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb syncbuf.Buffer
	env := &Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return envVars[k] },
	}
	code = run(ctx, args, env)
	return code, out.String(), errb.String()
}

// fakeCommand records what runCommand calls.
type fakeCommand struct {
	parseErr, runErr, closeErr error
	calls                      []string
}

func (f *fakeCommand) ParseFlags([]string) error {
	f.calls = append(f.calls, "parse")
	return f.parseErr
}
func (f *fakeCommand) Run(context.Context) error { f.calls = append(f.calls, "run"); return f.runErr }
func (f *fakeCommand) Close() error              { f.calls = append(f.calls, "close"); return f.closeErr }

// TestRunCommand: Run only after a good parse, Close always, and the first error wins.
func TestRunCommand(t *testing.T) {
	t.Parallel()
	errParse, errRun, errClose := errors.New("parse"), errors.New("run"), errors.New("close")
	tests := []struct {
		name                       string
		parseErr, runErr, closeErr error
		want                       error
		wantCalls                  string
	}{
		{"ok", nil, nil, nil, nil, "parse run close"},
		{"usage error", errParse, nil, errClose, errParse, "parse close"},
		{"run fails", nil, errRun, errClose, errRun, "parse run close"},
		{"close fails", nil, nil, errClose, errClose, "parse run close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeCommand{parseErr: tt.parseErr, runErr: tt.runErr, closeErr: tt.closeErr}
			if err := runCommand(t.Context(), c, nil); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if got := strings.Join(c.calls, " "); got != tt.wantCalls {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
		})
	}
}
