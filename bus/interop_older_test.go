package bus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/cluster"
)

// olderNATSServers are the nats-server releases the creation contract is checked against
// besides the one go.mod pins (the embedded server of the other interop tests): 2.10.21 is what
// the Rust reference deployment pins (docs/nats-buckets.md, supported versions).
var olderNATSServers = []string{"v2.10.21"}

// TestAsyncNatsInteropOlderServers runs every creation contract check (ours and the recorded
// async-nats 0.36 bodies) against a real nats-server process of each older release, built with
// `go install github.com/nats-io/nats-server/v2@<version>` (a module download through the Go
// proxy the first time, about 40 s; then about 2 s from Go's caches).
func TestAsyncNatsInteropOlderServers(t *testing.T) {
	if testing.Short() || os.Getenv(processTestsEnv) == "" {
		t.Skip("builds older nats-server releases: set " + processTestsEnv + "=1 to run it (.ci/run does)")
	}
	t.Parallel()
	for _, version := range olderNATSServers {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			bin, err := cluster.BuildNATSServer(ctx, t.TempDir(), version)
			if err != nil {
				t.Fatal(err)
			}
			// A fresh server per check: 2.10.21 removes a deleted stream's directories in the
			// background, which can race with the next check creating the first stream again
			// ("could not create storage directory"); deployments never delete these streams.
			for _, c := range interopChecks {
				t.Run(c.name, func(t *testing.T) { c.run(t, startNATSProcess(ctx, t, bin)) })
			}
		})
	}
}

// startNATSProcess starts nats-server bin with JetStream and one user on free loopback ports,
// stopped (by its PID, bounded) when t ends, and returns a Config to connect to it.
func startNATSProcess(ctx context.Context, t *testing.T, bin string) Config {
	t.Helper()
	dir := t.TempDir()
	client, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	monitor, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const user, password = "bevygap", "interop-pw"
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\njetstream {\n  store_dir: %s\n}\n"+
		"authorization {\n  user: %s\n  password: %s\n}\n", client, monitor, strconv.Quote(filepath.Join(dir, "js")), user, password)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := cluster.StartProcess(cluster.ProcessSpec{Name: "nats-server", Path: bin, Args: []string{"--config", path},
		Output: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stop nats-server: %v", err)
		}
	})
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cluster.WaitReady(readyCtx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", monitor)); err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	return Config{Host: fmt.Sprintf("nats://127.0.0.1:%d", client), User: user, Password: password, Insecure: true, Name: "interop"}
}

// processTestsEnv names the variable that turns on the tests that build binaries and run many
// processes (slow on 2 cores, so not part of a plain go test ./...; .ci/run sets it).
const processTestsEnv = "BEVYGAP_PROCESS_TESTS"
