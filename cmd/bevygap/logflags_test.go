package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
)

// TestLogFlags: the level and the format come from the flags, else from LOG_LEVEL and
// LOG_FORMAT, else info and text; bad values are usage errors naming the flag and the variable.
func TestLogFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		env                 map[string]string
		args                []string
		wantErr             string // "" = no error
		wantDebug, wantInfo bool
		wantJSON            bool
	}{
		{"defaults", nil, nil, "", false, true, false},
		{"flags", nil, []string{"--log-level", "debug", "--log-format", "json"}, "", true, true, true},
		{"env", map[string]string{envLogLevel: "warn", envLogFormat: "JSON"}, nil, "", false, false, true},
		{"flags win over env", map[string]string{envLogLevel: "error", envLogFormat: "json"},
			[]string{"--log-level=debug", "--log-format=text"}, "", true, true, false},
		{"upper case level", nil, []string{"--log-level", "DEBUG"}, "", true, true, false},
		{"bad level", nil, []string{"--log-level", "loud"}, `--log-level (or $LOG_LEVEL) "loud": want debug, info, warn or error`, false, false, false},
		{"bad format", nil, []string{"--log-format", "xml"}, `--log-format (or $LOG_FORMAT) "xml": want text or json`, false, false, false},
		{"bad env level", map[string]string{envLogLevel: "verbose"}, nil, `$LOG_LEVEL) "verbose"`, false, false, false},
		{"bad env format", map[string]string{envLogFormat: "yaml"}, nil, `$LOG_FORMAT) "yaml"`, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return tt.env[k] }}
			fs := newFlagSet(env, "test", "")
			logs := addLogFlags(fs, env)
			if err := parseFlags(fs, tt.args); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log, err := logs.logger(&out)
			if tt.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(ue.message, tt.wantErr) || ue.hint == "" {
					t.Fatalf("err = %v, want a usage error with a hint containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("a debug line")
			log.Info("an info line")
			got := out.String()
			if strings.Contains(got, "a debug line") != tt.wantDebug || strings.Contains(got, "an info line") != tt.wantInfo {
				t.Errorf("output %q: want debug %v, info %v", got, tt.wantDebug, tt.wantInfo)
			}
			if got != "" && strings.HasPrefix(got, "{") != tt.wantJSON {
				t.Errorf("output %q: want JSON %v", got, tt.wantJSON)
			}
		})
	}
}

// TestLogFlagsEveryCommand: every command that logs takes --log-level and --log-format (and
// LOG_LEVEL, LOG_FORMAT): bad values are usage errors (exit 2) before anything starts; at debug
// its first line is the debug "starting" line, which info leaves out. Each run ends by itself
// right after that line (a cancelled context, or a busy port for dev), so its whole output is
// there to look at.
func TestLogFlagsEveryCommand(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests, unlike a defer
	withNATS := func(more map[string]string) map[string]string {
		env := maps.Clone(unreachableNATS)
		maps.Copy(env, more)
		return env
	}
	commands := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"dev", []string{"--http-addr", busy.Addr().String(), "--nats-addr", "127.0.0.1:0", "--webhook-addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0"}, nil},
		{"edgegap-sim", []string{"--bind", "127.0.0.1:0"}, nil},
		{"httpd", []string{"--bind", "127.0.0.1:0"}, withNATS(nil)},
		{"webhook-sink", []string{"--bind", "127.0.0.1:0"}, withNATS(nil)},
		{"matchmaker", nil, withNATS(map[string]string{"EDGEGAP_API_KEY": "token x", matchmakerEnvPrefix + "LIGHTYEAR_PRIVATE_KEY": testKeyDecimal})},
	}
	bad := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad --log-level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad --log-format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"bad LOG_LEVEL", nil, map[string]string{envLogLevel: "loud"}, "$LOG_LEVEL"},
		{"bad LOG_FORMAT", nil, map[string]string{envLogFormat: "xml"}, "$LOG_FORMAT"},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, b := range bad {
				env := maps.Clone(c.env)
				if env == nil {
					env = map[string]string{}
				}
				maps.Copy(env, b.env)
				code, stdout, stderr := runCLIContext(t.Context(), env, append(append([]string{c.name}, c.args...), b.args...)...)
				if code != 2 || !strings.Contains(stderr, b.want) || stdout != "" {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 naming %s and nothing started", b.name, code, stdout, stderr, b.want)
				}
			}
			// Runs that stop right after their first line: a cancelled context (dev: a busy port).
			ctx, cancel := context.WithCancel(t.Context())
			if c.name != "dev" {
				cancel()
			}
			defer cancel()
			start := `"level":"DEBUG","msg":"starting","command":"bevygap ` + c.name + `"`
			_, _, stderr := runCLIContext(ctx, c.env, append([]string{c.name, "--log-level", "debug", "--log-format", "json"}, c.args...)...)
			if !strings.Contains(stderr, start) {
				t.Errorf("--log-level debug --log-format json: no %s line in\n%s", start, stderr)
			}
			env := maps.Clone(c.env)
			if env == nil {
				env = map[string]string{}
			}
			env[envLogLevel], env[envLogFormat] = "debug", "text"
			_, _, stderr = runCLIContext(ctx, env, append([]string{c.name}, c.args...)...)
			if want := `level=DEBUG msg=starting command="bevygap ` + c.name + `"`; !strings.Contains(stderr, want) {
				t.Errorf("LOG_LEVEL=debug LOG_FORMAT=text: no %s line in\n%s", want, stderr)
			}
			_, _, stderr = runCLIContext(ctx, c.env, append([]string{c.name, "--log-level", "info"}, c.args...)...)
			if strings.Contains(stderr, "level=DEBUG") {
				t.Errorf("--log-level info: debug lines in\n%s", stderr)
			}
		})
	}
}
