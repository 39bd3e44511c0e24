package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/doctor"
)

// shellWords splits a command line of the banner into words: white space separates, single
// quotes group (all the banner uses).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// parseDoctorLine splits the banner's doctor line into its environment and its arguments
// after "doctor".
func parseDoctorLine(t *testing.T, line string) (map[string]string, []string) {
	t.Helper()
	env := map[string]string{}
	words := shellWords(line)
	for i, w := range words {
		if w == "doctor" {
			return env, words[i+1:]
		}
		if k, v, ok := strings.Cut(w, "="); ok {
			env[k] = v
		}
	}
	t.Fatalf("no doctor subcommand in %q", line)
	return nil, nil
}

// TestDoctorAgainstDev: the exact command `bevygap dev` prints checks its stack and finds
// nothing wrong (exit 0); --json has the pinned shape; a broken setup exits 1.
func TestDoctorAgainstDev(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	st, err := devstack.Start(ctx, devstack.Config{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = st.Shutdown(sctx)
	})
	var banner strings.Builder
	printDevBanner(&banner, st.Info(), devstack.Config{}, "generated for this run", "bevygap")
	line := devDoctorCommand(st.Info(), "bevygap")
	if !strings.Contains(banner.String(), "\n  "+line+"\n") {
		t.Fatalf("the banner lacks the doctor line %q:\n%s", line, banner.String())
	}
	env, args := parseDoctorLine(t, line)

	t.Run("banner line", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCLI(t, "", env, append([]string{"doctor"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "nothing failed") || strings.Contains(stdout, "FAIL") || strings.Contains(stdout, "WARN") {
			t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("json shape", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCLI(t, "", env, append([]string{"doctor", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &top); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		if got := keysOf(t, stdout); !slices.Equal(got, []string{"checks", "ok", "summary"}) {
			t.Errorf("top-level keys %v", got)
		}
		if got := keysOf(t, string(top["summary"])); !slices.Equal(got, []string{"fail", "ok", "skip", "warn"}) {
			t.Errorf("summary keys %v", got)
		}
		var checks []json.RawMessage
		if err := json.Unmarshal(top["checks"], &checks); err != nil || len(checks) == 0 {
			t.Fatalf("checks: %v %s", err, top["checks"])
		}
		for _, c := range checks {
			got := keysOf(t, string(c))
			want := []string{"detail", "duration_ms", "id", "status", "title"}
			if slices.Contains(got, "fix") {
				want = []string{"detail", "duration_ms", "fix", "id", "status", "title"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("check keys %v, want %v: %s", got, want, c)
			}
		}
		var rep doctor.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || !rep.OK || rep.Checks[0].ID != "key" || rep.Checks[0].Status != doctor.StatusSkip {
			t.Errorf("report %+v (%v)", rep, err)
		}
	})

	t.Run("broken: wrong Edgegap key exits 1", func(t *testing.T) {
		t.Parallel()
		broken := map[string]string{}
		for k, v := range env {
			broken[k] = v
		}
		broken["EDGEGAP_API_KEY"] = "token wrong"
		code, stdout, stderr := runCLI(t, "", broken, append([]string{"doctor"}, args...)...)
		if code != 1 || !strings.Contains(stdout, "FAIL  edgegap.key") || !strings.Contains(stdout, "fix: EDGEGAP_API_KEY") {
			t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("the matchmaker's environment", func(t *testing.T) {
		t.Parallel()
		mm := map[string]string{
			"BEVYGAP_MATCHMAKER_APP_NAME":              st.Info().AppName,
			"BEVYGAP_MATCHMAKER_APP_VERSION":           st.Info().AppVersion,
			"BEVYGAP_MATCHMAKER_SESSION_WEBHOOK_URL":   st.Info().WebhookURL,
			"BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY": string(st.PrivateKey().AppendHex(nil)),
			"BEVYGAP_DOCTOR_CALL_TIMEOUT":              "3s",
		}
		for k, v := range env {
			mm[k] = v
		}
		code, stdout, stderr := runCLI(t, "", mm, "doctor")
		if code != 0 || !strings.Contains(stdout, "ok    key ") {
			t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, mm["BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY"]) {
			t.Error("the output contains the private key")
		}
	})
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, s string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestDoctorFlags: usage errors exit 2; the environment fills the configuration.
func TestDoctorFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown skip group", []string{"--skip", "bogus"}, `--skip "bogus": unknown check group`},
		{"unknown role", []string{"--nats-role", "admin"}, `--nats-role "admin": unknown role`},
		{"bad game", []string{"--game", "dotroom"}, "want name/version"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
		{"zero timeout", []string{"--call-timeout", "0s"}, "must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", nil, append([]string{"doctor"}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q, want 2 and %q", code, stderr, tt.want)
			}
		})
	}

	t.Run("environment", func(t *testing.T) {
		t.Parallel()
		vars := map[string]string{
			"BEVYGAP_MATCHMAKER_APP_NAME":            "spacepit",
			"BEVYGAP_MATCHMAKER_BUCKET_PREFIX":       "mm_",
			"BEVYGAP_DOCTOR_BUCKET_PREFIX":           "doc_",
			"BEVYGAP_DOCTOR_HTTPD_NATS_USER":         "httpd",
			"BEVYGAP_DOCTOR_HTTPD_NATS_PASSWORD":     "pw",
			"BEVYGAP_DOCTOR_HTTPD_NATS_INBOX_PREFIX": "_INBOX_httpd",
			"EDGEGAP_API_KEY":                        "token k",
			"NATS_USER":                              "matchmaker",
		}
		c := &doctorCommand{env: &Env{Getenv: func(k string) string { return vars[k] }}}
		if err := c.ParseFlags([]string{"--game", "other/2"}); err != nil {
			t.Fatal(err)
		}
		cfg := c.cfg
		if cfg.Games[0] != (doctor.Game{Name: "spacepit", Version: "v0.0.1"}) || cfg.Games[1] != (doctor.Game{Name: "other", Version: "2"}) {
			t.Errorf("games %v", cfg.Games)
		}
		if cfg.Buckets.Prefix != "doc_" || cfg.EdgegapKey != "token k" || cfg.NATS.User != "matchmaker" || cfg.Role != doctor.RoleMatchmaker {
			t.Errorf("config %+v", cfg)
		}
		want := []doctor.RoleCredentials{{Role: doctor.RoleHTTPD, User: "httpd", Password: "pw", InboxPrefix: "_INBOX_httpd"}}
		if !slices.Equal(cfg.RoleCredentials, want) {
			t.Errorf("role credentials %+v", cfg.RoleCredentials)
		}
	})
}
