package main

import (
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"plain", nil, 0, "bevygap ", ""},
		{"extra argument", []string{"extra"}, 2, "", `Error: unexpected argument "extra"` + "\nTry: bevygap version\n"},
		{"two arguments", []string{"a", "b"}, 2, "", `unexpected argument "a"`},
		{"unknown flag", []string{"--short"}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", nil, append([]string{"version"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tt.wantCode, stderr)
			}
			if tt.wantStdout != "" && (!strings.HasPrefix(stdout, tt.wantStdout) || strings.Count(stdout, "\n") != 1) {
				t.Errorf("stdout = %q, want one line starting with %q", stdout, tt.wantStdout)
			}
			if tt.wantStdout == "" && stdout != "" {
				t.Errorf("an error printed the version: %q", stdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}
