package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodePointsToTroubleshooting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode int
		pointer  bool
	}{
		{"runtime error", errors.New("bus: could not connect to NATS"), 1, true},
		{"chosen exit code", &exitCodeError{code: 3, err: errors.New("game server: connection timed out")}, 3, true},
		{"usage error has a Try: line instead", &usageError{message: "bad flag", hint: "bevygap play -h"}, 2, false},
		{"interrupted", fmt.Errorf("matchmaking: %w", context.Canceled), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := exitCode(&stderr, tt.err); code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if !strings.HasPrefix(lines[0], "Error: ") {
				t.Errorf("first line %q, want the error", lines[0])
			}
			got := strings.Contains(stderr.String(), "See: "+troubleshootingURL)
			if got != tt.pointer {
				t.Errorf("pointer to the troubleshooting page = %v, want %v:\n%s", got, tt.pointer, stderr.String())
			}
		})
	}
}

// TestTroubleshootingURLNamesThePage keeps the URL pointing at the page in this repository.
func TestTroubleshootingURLNamesThePage(t *testing.T) {
	t.Parallel()
	_, path, ok := strings.Cut(troubleshootingURL, "/blob/main/")
	if !ok {
		t.Fatalf("%s: not a /blob/main/ URL", troubleshootingURL)
	}
	if _, err := os.Stat(filepath.Join("..", "..", filepath.FromSlash(path))); err != nil {
		t.Errorf("the troubleshooting URL names %s, which is not in the repository: %v", path, err)
	}
}
