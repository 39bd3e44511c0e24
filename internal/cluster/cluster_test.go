package cluster

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPlanFollowsCompose checks, without starting anything, that every process gets the
// command and environment compose.yaml gives its service, with the compose network's
// addresses turned into loopback ports and nothing left that only resolves inside compose.
func TestPlanFollowsCompose(t *testing.T) {
	t.Parallel()
	cfg := Config{DeployDir: filepath.Join("..", "..", "deploy"), Dir: t.TempDir(), Bevygap: "/bin/bevygap",
		NATSServer: "/bin/nats-server", GameServer: "/bin/dotroom",
		Args: map[string][]string{"edgegap-sim": {"--boot-time=1s"}}}
	insts, ep, secrets, err := plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	services, err := readCompose(cfg.DeployDir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]instance{}
	var names []string
	for _, in := range insts {
		byName[in.name] = in
		names = append(names, in.name)
	}
	want := []string{"nats-1", "nats-2", "nats-3", "edgegap-sim", "matchmaker-1", "matchmaker-2", "httpd-1", "httpd-2", "webhook-sink"}
	if !slices.Equal(names, want) {
		t.Fatalf("processes %v, want %v", names, want)
	}
	for _, in := range insts {
		env := map[string]string{}
		for _, kv := range in.spec.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		// Every variable of the service's compose environment is set, none empty.
		for k := range services[in.service].Environment {
			if env[k] == "" {
				t.Errorf("%s: %s missing or empty", in.name, k)
			}
		}
		for _, s := range append(slices.Clone(in.spec.Args), in.spec.Env...) {
			for _, bad := range []string{"0.0.0.0", "nats-1:", "nats-2:", "nats-3:", "edgegap-sim:", "webhook-sink:", "${", "change-me"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s: %q still has %q", in.name, s, bad)
				}
			}
		}
		if in.service != in.name && in.service != "httpd" {
			t.Errorf("%s: service %s", in.name, in.service)
		}
		if !strings.HasPrefix(in.service, "nats") {
			if in.spec.Args[0] != services[in.service].Command[0] {
				t.Errorf("%s: args %v do not start with compose's command %v", in.name, in.spec.Args, services[in.service].Command)
			}
		}
		if strings.HasPrefix(in.name, "matchmaker") {
			if !slices.Contains(in.spec.Args, "--replicas=3") || env["NATS_USER"] != "matchmaker" ||
				env["NATS_PASSWORD"] != secrets["NATS_MATCHMAKER_PASSWORD"] || env["NATS_INBOX_PREFIX"] != "_INBOX_mm" {
				t.Errorf("%s: args %v env %v", in.name, in.spec.Args, in.spec.Env)
			}
			if !strings.HasPrefix(env["BEVYGAP_MATCHMAKER_SESSION_WEBHOOK_URL"], ep.WebhookSink+"/hook/session?token="+secrets["BEVYGAP_WEBHOOK_SECRET"]) {
				t.Errorf("%s: webhook URL %q, sink at %s", in.name, env["BEVYGAP_MATCHMAKER_SESSION_WEBHOOK_URL"], ep.WebhookSink)
			}
			if env["EDGEGAP_API_URL"] != ep.Simulator {
				t.Errorf("%s: EDGEGAP_API_URL %q, simulator at %s", in.name, env["EDGEGAP_API_URL"], ep.Simulator)
			}
			if want := strings.Join(trimScheme(ep.NATS), ","); env["NATS_HOST"] != want {
				t.Errorf("%s: NATS_HOST %q, want %q", in.name, env["NATS_HOST"], want)
			}
		}
	}
	sim := byName["edgegap-sim"]
	if n := len(sim.spec.Args); n < 2 || sim.spec.Args[n-2] != "--exec" || sim.spec.Args[n-1] != cfg.GameServer ||
		!slices.Contains(sim.spec.Args, "--boot-time=1s") {
		t.Errorf("edgegap-sim args %v", sim.spec.Args)
	}
	if !slices.Contains(sim.spec.Env, "NATS_USER=gameserver") || !slices.Contains(sim.spec.Env, "NATS_INBOX_PREFIX=_INBOX_gs") {
		t.Errorf("edgegap-sim env lacks the game servers' NATS settings: %v", sim.spec.Env)
	}
	if len(ep.HTTPD) != 2 || ep.HTTPD[0] == ep.HTTPD[1] || len(ep.MatchmakerMetrics) != 2 || ep.MatchmakerMetrics[0] == ep.MatchmakerMetrics[1] {
		t.Errorf("endpoints %+v", ep)
	}
}

func trimScheme(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimPrefix(u, "nats://")
	}
	return out
}

// TestNATSConfigChangesOnlyAddresses checks that each node's config is deploy/nats/nats.conf
// with only addresses, store and include path changed.
func TestNATSConfigChangesOnlyAddresses(t *testing.T) {
	t.Parallel()
	nodes := []natsNode{{4001, 8001, 6001, "/s/1"}, {4002, 8002, 6002, "/s/2"}, {4003, 8003, 6003, "/s/3"}}
	conf, err := natsConfig(filepath.Join("..", "..", "deploy"), t.TempDir(), nodes, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen: 127.0.0.1:4002\n", "http: 127.0.0.1:8002\n", "listen: 127.0.0.1:6002\n",
		`store_dir: "/s/2"`, "nats-route://127.0.0.1:6001\n", "nats-route://127.0.0.1:6003\n", "server_name: $NATS_SERVER_NAME\n", "auth.conf\"\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "0.0.0.0") || strings.Contains(conf, "nats-route://nats-") {
		t.Errorf("compose addresses left:\n%s", conf)
	}
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"A": "a", "E": ""}
	tests := []struct {
		in, want string
		err      bool
	}{
		{"x${A}y", "xay", false},
		{"${A:?need}", "a", false},
		{"${B:?need it}", "", true},
		{"${E:-d}", "d", false},
		{"${E-d}", "", false},
		{"${B-d}", "d", false},
		{"$${A}", "${A}", false},
	}
	for _, tt := range tests {
		got, err := interpolate(tt.in, vars)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("interpolate(%q) = %q, %v; want %q (error %t)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParentPID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stat string
		want int
		ok   bool
	}{
		{"1234 (dotroom-server) S 77 1234 1234 0 -1", 77, true},
		{"1234 (odd ) name (x)) R 42 1 1", 42, true},
		{"1234 (no close S 77", 0, false},
		{"1234 (x) S", 0, false},
		{"1234 (x) S notanumber", 0, false},
	}
	for _, tc := range tests {
		got, ok := parentPID(tc.stat)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parentPID(%q) = %d, %v; want %d, %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
	if v := envValue("A=1\x00ARBITRIUM_REQUEST_ID=abc\x00B=2\x00", "ARBITRIUM_REQUEST_ID"); v != "abc" {
		t.Errorf("envValue = %q", v)
	}
}
