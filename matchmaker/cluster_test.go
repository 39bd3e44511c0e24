package matchmaker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// startCluster starts n in-process nats-servers with JetStream, clustered over loopback routes,
// and waits until they accept connections. They stop with t.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	srvs := make([]*server.Server, n)
	for i := range srvs {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "liveness", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		srvs[i] = s
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	// Generous: .ci/run starts these nodes while the same step builds nats-server, bevygap and
	// the game server for the deploy/ topology (both cores busy; once 10 s was not enough).
	for i, s := range srvs {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("cluster node n%d not ready after 30 s", i+1)
		}
	}
	return srvs
}

// consumerHost returns the index of the node leading a consumer of stream (any consumer: the
// test's buckets have one watch each), or -1.
func consumerHost(srvs []*server.Server, stream string) int {
	for i, s := range srvs {
		if !s.Running() {
			continue
		}
		jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err != nil {
			continue
		}
		for _, acc := range jsz.AccountDetails {
			for _, st := range acc.Streams {
				if st.Name != stream {
					continue
				}
				for _, c := range st.Consumer {
					if c.Cluster != nil && c.Cluster.Leader == s.Name() {
						return i
					}
				}
			}
		}
	}
	return -1
}

// TestClusterNodeKilledWatchResumes: on a 3-node cluster with R3 buckets, the node hosting the
// active_connections watch's consumer goes away. The watch resumes within seconds — through the
// reconnect (if the matchmaker was connected to that node) or the stall check (if not; nats.go
// alone notices after 10 s) — and requests during the failover get a session, not 503: a player
// who connects and leaves right after the kill has the session deleted promptly.
func TestClusterNodeKilledWatchResumes(t *testing.T) {
	t.Parallel()
	if os.Getenv("BEVYGAP_PROCESS_TESTS") == "" {
		t.Skip("starts a 3-node NATS cluster (12-17 s): set BEVYGAP_PROCESS_TESTS=1")
	}
	srvs := startCluster(t, 3)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			t.Logf("last lines:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func(i int, name string) *bus.Config {
		return &bus.Config{Host: srvs[i].ClientURL(), Insecure: true, Name: name}
	}
	tc, err := bus.Connect(ctx, *connect(1, "test"), log) // the matchmaker's node
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	opts := bus.BucketOptions{Prefix: "cl_", Replicas: 3}
	b, err := bus.Open(ctx, tc, opts) // retried until the cluster has a meta leader
	if err != nil {
		t.Fatal(err)
	}

	sim, err := edgegapsim.New(edgegapsim.Config{APIKeys: []string{testAPIKey},
		Apps:     []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1", Sockets: 1}}}},
		BootTime: edgegapsim.Duration(20 * time.Millisecond), BootJitter: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	sim.SetBaseURL(simSrv.URL)
	t.Cleanup(func() { simSrv.Close(); _ = sim.Close(context.Background()) })
	h := &harness{sim: sim, simSrv: simSrv, log: log, logs: logs, b: b, nc: tc, regs: map[*Matchmaker]*prometheus.Registry{}}

	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AppName, cfg.AppVersion, cfg.PrivateKey = "game", "v1", key
	cfg.ReadinessLimit = 30 * time.Second // the reaper cannot be what deletes the session
	cfg.ReconcileInterval = time.Hour
	cfg.CertDigestWait = 0
	cfg.Buckets = opts
	h.cfg = cfg
	mc, err := bus.Connect(ctx, *connect(1, "mm"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	mm, err := New(cfg, Deps{NATS: mc, Edgegap: h.newAPI(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := mm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.mms = append(h.mms, mm)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = mm.Shutdown(sctx)
	})

	var victim int
	eventually.True(t, 10*time.Second, func() bool {
		victim = consumerHost(srvs, "KV_cl_active_connections")
		return victim >= 0
	}, "active_connections watch consumer placed")
	path := "stall check"
	if victim == 1 {
		path = "reconnect"
	}
	t.Logf("killing node n%d, which hosts the watch's consumer (matchmaker connected to n2: path %s)", victim+1, path)
	srvs[victim].Shutdown()
	killed := time.Now()

	// A client whose node went away retries once reconnected (as httpd's players would).
	var reply *nats.Msg
	eventually.True(t, 15*time.Second, func() bool {
		var err error
		reply, err = tc.Request(protocol.SubjectGenSession, []byte(`{"client_ip":"81.2.69.160"}`), 5*time.Second)
		return err == nil
	}, "gensession answered after the kill")
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
		t.Fatalf("gensession during the failover: %s %s", code, reply.Header.Get("Nats-Service-Error"))
	}
	var r protocol.GenSessionReply
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		t.Fatal(err)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.ConnectToken), 10))
	h.disconnect(t, sid)
	left := time.Now()
	eventually.True(t, 8*time.Second, func() bool { return sim.LiveSessions() == 0 }, "session deleted after its player left")
	t.Logf("granted %v after the kill; deleted %v after the player left", left.Sub(killed).Round(time.Millisecond), time.Since(left).Round(time.Millisecond))
}
