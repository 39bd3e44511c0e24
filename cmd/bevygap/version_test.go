package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
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
			t.Parallel()
			code, stdout, stderr := runCLI(t, "", nil, append([]string{"version"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tt.wantCode, stderr)
			}
			if tt.wantStdout != "" && (!strings.HasPrefix(stdout, tt.wantStdout) || !strings.Contains(stdout, "\ngo      go1.")) {
				t.Errorf("stdout = %q, want it to start with %q and name the Go version", stdout, tt.wantStdout)
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

func TestVersionText(t *testing.T) {
	t.Parallel()
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	main := func(v string) debug.Module { return debug.Module{Path: "github.com/bevygap-go/bevygap", Version: v} }
	tests := []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"go install at a tag", "v1.2.3", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main("v1.2.3")},
			"bevygap v1.2.3\nmodule  github.com/bevygap-go/bevygap v1.2.3\ncommit  the tag v1.2.3\ngo      go1.26.8" + platform},
		{"go install at a commit", "v0.0.0-20260102030405-abcdef123456", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main("v0.0.0-20260102030405-abcdef123456")},
			"bevygap v0.0.0-20260102030405-abcdef123456\nmodule  github.com/bevygap-go/bevygap v0.0.0-20260102030405-abcdef123456\ncommit  abcdef123456 (from the pseudo-version)\ngo      go1.26.8" + platform},
		{"pseudo-version after a tag", "v1.2.4-0.20260102030405-abcdef123456", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main("v1.2.4-0.20260102030405-abcdef123456")},
			"bevygap v1.2.4-0.20260102030405-abcdef123456\nmodule  github.com/bevygap-go/bevygap v1.2.4-0.20260102030405-abcdef123456\ncommit  abcdef123456 (from the pseudo-version)\ngo      go1.26.8" + platform},
		{"checkout with VCS stamp", "devel+0123456789ab", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main("(devel)"),
			Settings: settings("vcs.revision", "0123456789abcdef0123456789abcdef01234567", "vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "true", "GOOS", "linux", "GOARCH", "arm64")},
			"bevygap devel+0123456789ab\nmodule  github.com/bevygap-go/bevygap (devel)\ncommit  0123456789abcdef0123456789abcdef01234567 (2026-01-02T03:04:05Z, with uncommitted changes)\ngo      go1.26.8 linux/arm64\n"},
		{"checkout without VCS stamp", "devel", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main("(devel)")},
			"bevygap devel\nmodule  github.com/bevygap-go/bevygap (devel)\ncommit  unknown (built without VCS information, e.g. -buildvcs=false)\ngo      go1.26.8" + platform},
		{"no build info", "devel", nil, "bevygap devel\ncommit  unknown (no build information in this binary)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionText(tt.version, tt.bi, tt.bi != nil); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPseudoVersionRev(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"v0.0.0-20260102030405-abcdef123456":       "abcdef123456",
		"v0.0.0-20260102030405-abcdef123456+dirty": "abcdef123456",
		"v1.2.4-0.20260102030405-abcdef123456":     "abcdef123456",
		"v1.2.4-pre.0.20260102030405-abcdef123456": "abcdef123456",
		"v1.2.3":                             "",
		"v1.2.3-rc1":                         "",
		"v1.2.3-beta-abcdef123456":           "",
		"v0.0.0-20260102030405-ABCDEF123456": "",
		"(devel)":                            "",
	} {
		if got := pseudoVersionRev(v); got != want {
			t.Errorf("pseudoVersionRev(%q) = %q, want %q", v, got, want)
		}
	}
}
