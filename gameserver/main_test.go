package gameserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/protocol"
)

// natsServer is the one embedded nats-server of this test package. It keeps its port and store
// directory so that the outage test can stop it and start it again.
type natsServer struct {
	mu   sync.Mutex
	e    *natsembed.Server
	port int
	dir  string
}

var testNATS = &natsServer{}

func TestMain(m *testing.M) {
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "gameserver-nats-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	e, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		return 0, err
	}
	testNATS.e, testNATS.dir = e, dir
	testNATS.port = e.Port()
	code := m.Run()
	testNATS.mu.Lock()
	testNATS.e.Shutdown()
	testNATS.mu.Unlock()
	return code, nil
}

// url is the loopback URL of the test server.
func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// stop shuts the server down (its JetStream data stays on disk).
func (s *natsServer) stop(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.e.Shutdown()
}

// start starts the server again on the same port with the same store.
func (s *natsServer) start(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := natsembed.Start(natsembed.Config{Port: s.port, StoreDir: s.dir})
	if err != nil {
		t.Fatalf("restart NATS: %v", err)
	}
	s.e = e
}

// connect opens a NATS connection to the test server that reconnects quickly and forever.
func connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(testNATS.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(0, 0), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// resetBuckets deletes the game server's buckets and, with history > 0, creates them again with
// that much history (so tests can read every write in order).
func resetBuckets(t testing.TB, nc *nats.Conn, history uint8) jetstream.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range bus.GameServerBucketConfigs(bus.BucketOptions{}) {
		if err := js.DeleteKeyValue(ctx, spec.Bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Fatalf("delete bucket %s: %v", spec.Bucket, err)
		}
		if history > 0 {
			spec.History = history
			if _, err := js.CreateKeyValue(ctx, spec); err != nil {
				t.Fatalf("create bucket %s: %v", spec.Bucket, err)
			}
		}
	}
	return js
}

// kv opens a bucket for the test's own reads and writes.
func kv(t testing.TB, js jetstream.JetStream, bucket string) jetstream.KeyValue {
	t.Helper()
	b, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatalf("open bucket %s: %v", bucket, err)
	}
	return b
}

// putSession stores sessions_ly2eg[clientID] = sessionID, as the matchmaker does.
func putSession(t *testing.T, js jetstream.JetStream, clientID uint64, sessionID string) {
	t.Helper()
	if _, err := kv(t, js, protocol.BucketSessionsLy2Eg).Put(t.Context(), strconv.FormatUint(clientID, 10), []byte(sessionID)); err != nil {
		t.Fatalf("put session: %v", err)
	}
}

// logBuffer collects log output; the test prints it when it fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

const (
	testContextToken = "ctx-token-dfaf50b9333b9ee07b22ed247e4a17e6"
	testDeleteToken  = "del-token-7df4cd933df87084b34ae80d8abde293"
)

// testArbitrium is a deployment environment pointing at the given context and delete URLs.
func testArbitrium(contextURL, deleteURL string) Arbitrium {
	return Arbitrium{
		RequestID:    "9170f5211e17",
		DeleteURL:    deleteURL,
		DeleteToken:  testDeleteToken,
		Location:     edgegap.DeploymentLocation{City: "Montreal", Country: "Canada"},
		ContextURL:   contextURL,
		ContextToken: testContextToken,
		PublicIP:     netip.MustParseAddr("127.0.0.1"),
		Ports:        map[string]Port{"server": {Name: "server", Internal: 6420, External: 31500, Protocol: "UDP"}},
	}
}

// fastConfig shortens every timeout and backoff so tests run quickly.
func fastConfig(arb Arbitrium) Config {
	return Config{
		Arbitrium: arb,
		Edgegap: edgegap.NewClient("", "", edgegap.WithTimeout(300*time.Millisecond),
			edgegap.WithRetries(3, 10*time.Millisecond, 40*time.Millisecond)),
		AuthorizeTimeout:  300 * time.Millisecond,
		AuthorizeAttempts: 2,
		// A missing key is read again for 200 ms (a lagging replica), then refused.
		UnknownClientGrace: 200 * time.Millisecond,
		OpTimeout:          500 * time.Millisecond,
		RetryMin:           20 * time.Millisecond,
		RetryMax:           200 * time.Millisecond,
		FlushTimeout:       2 * time.Second,
	}
}

// startAgent creates an agent and runs it until the test ends (Close in cleanup).
func startAgent(t *testing.T, cfg Config, nc *nats.Conn) (*Agent, *logBuffer, <-chan error) {
	t.Helper()
	log, lb := testLogger(t)
	a, err := New(cfg, nc, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil && !errors.Is(err, ErrUnflushed) {
			t.Errorf("Close: %v", err)
		}
	})
	return a, lb, runErr
}
