package httpd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bench/measure"
)

// benchConns is the number of WebSockets BenchmarkWaitingWebSocketMemory holds open.
var benchConns = flag.Int("bench-conns", 0, "connections for BenchmarkWaitingWebSocketMemory (default $BEVYGAP_BENCH_CONNS or 10000)")

func numBenchConns() int {
	if *benchConns > 0 {
		return *benchConns
	}
	if n, err := strconv.Atoi(os.Getenv("BEVYGAP_BENCH_CONNS")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// envBenchClient, set, makes this test binary the client process of the benchmark.
const envBenchClient = "BEVYGAP_BENCH_CLIENT"

// BenchmarkWaitingWebSocketMemory measures the server memory (heap in use + goroutine stacks)
// per open WebSocket of a player waiting for the matchmaker, beside a bare coder/websocket echo
// server measured the same way in the same run. The clients run in a separate process (this test
// binary, re-executed) so that their memory is not counted. Run with
//
//	go test -run '^$' -bench WaitingWebSocketMemory -benchtime 1x ./httpd/ [-bench-conns 10000]
func BenchmarkWaitingWebSocketMemory(b *testing.B) {
	n := numBenchConns()
	raiseNoFile(b, uint64(n+1024)) // the clients are another process

	echo := http.HandlerFunc(measure.EchoWebSocket)
	echoKiB := measureConnMemory(b, n, echo, "", "hello", "hello", nil)

	// The front door, with a matchmaker that acknowledges every request and never finishes it
	// (a synchronous NATS callback: it costs the server process nothing per request).
	nc := connect(b)
	fake := connect(b)
	sub, err := fake.Subscribe("matchmaker.request.*.1", func(m *nats.Msg) { _ = m.Respond([]byte(`"Acknowledged"`)) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := fake.Flush(); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{SessionsPerMinute: -1, MaxStreams: -1, MaxStreamsPerIP: -1, StreamTimeout: time.Hour}, nc, quietLog(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	httpdKiB := measureConnMemory(b, n, s, "/matchmaker/ws", `{"game":"bench","version":"1","client_ip":null}`, `"Acknowledged"`,
		func() error {
			if s.streams.open() != n || s.replies.pending() != n {
				return fmt.Errorf("server holds %d streams, %d waiters; want %d", s.streams.open(), s.replies.pending(), n)
			}
			return nil
		})
	b.ReportMetric(echoKiB, "echo-KiB/conn")
	b.ReportMetric(httpdKiB, "httpd-KiB/conn")
	fmt.Printf("waiting WebSockets: %d conns: bevygap httpd %.1f KiB/conn, bare echo server %.1f KiB/conn (target <= 30 KiB)\n", n, httpdKiB, echoKiB)
}

// measureConnMemory serves h, has a client process open n WebSockets to path and exchange one
// message each, and returns the growth of heap-in-use + stack-in-use per connection in KiB.
func measureConnMemory(b *testing.B, n int, h http.Handler, path, first, want string, check func() error) float64 {
	b.Helper()
	ts := httptest.NewServer(h)
	defer ts.Close()
	before := measure.MemInUse()
	t0 := time.Now()
	defer func() { debugf("%s: %d conns, %v total", path, n, time.Since(t0)) }()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWebSocketClient$")
	cmd.Env = append(os.Environ(), envBenchClient+"=1")
	cmd.Stderr = os.Stderr
	release, err := measure.HoldIdle(b.Context(), cmd, measure.ClientSpec{
		URL: "ws" + strings.TrimPrefix(ts.URL, "http") + path, N: n, First: first, WantPrefix: want})
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	debugf("%s: %d conns ready after %v", path, n, time.Since(t0))
	time.Sleep(500 * time.Millisecond) // let server goroutines park
	if check != nil {
		if err := check(); err != nil {
			b.Fatal(err)
		}
	}
	after := measure.MemInUse()
	if os.Getenv("BEVYGAP_BENCH_DEBUG") != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		debugf("%s: heap in use %d, stacks %d, goroutines %d", path, ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	}
	return float64(int64(after)-int64(before)) / float64(n) / 1024
}

func raiseNoFile(tb testing.TB, want uint64) {
	if _, err := measure.RaiseNoFile(want); errors.Is(err, measure.ErrNoFileLimit) {
		tb.Skipf("%v; lower -bench-conns", err)
	} else if err != nil {
		tb.Fatal(err)
	}
}

// TestBenchWebSocketClient is the client process of BenchmarkWaitingWebSocketMemory; it is
// skipped unless that benchmark starts it. It runs measure.ServeClients: opens the WebSockets
// the benchmark asks for on stdin, prints READY and holds them until stdin closes.
func TestBenchWebSocketClient(t *testing.T) {
	if os.Getenv(envBenchClient) == "" {
		t.Skip("helper process of BenchmarkWaitingWebSocketMemory")
	}
	if err := measure.ServeClients(t.Context(), os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func debugf(format string, args ...any) {
	if os.Getenv("BEVYGAP_BENCH_DEBUG") != "" {
		fmt.Printf(format+"\n", args...)
	}
}
