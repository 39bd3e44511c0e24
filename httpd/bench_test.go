package httpd

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
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

// Environment of the client helper process.
const (
	envBenchClientURL   = "BEVYGAP_BENCH_CLIENT_URL"
	envBenchClientN     = "BEVYGAP_BENCH_CLIENT_N"
	envBenchClientFirst = "BEVYGAP_BENCH_CLIENT_FIRST"
	envBenchClientWant  = "BEVYGAP_BENCH_CLIENT_WANT"
)

// BenchmarkWaitingWebSocketMemory measures the server memory (heap in use + goroutine stacks)
// per open WebSocket of a player waiting for the matchmaker, beside a bare coder/websocket echo
// server measured the same way in the same run. The clients run in a separate process (this test
// binary, re-executed) so that their memory is not counted. Run with
//
//	go test -run '^$' -bench WaitingWebSocketMemory -benchtime 1x ./httpd/ [-bench-conns 10000]
func BenchmarkWaitingWebSocketMemory(b *testing.B) {
	n := numBenchConns()
	raiseNoFile(b, uint64(n+1024)) // the clients are another process

	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				return
			}
		}
	})
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
	before := memInUse()
	t0 := time.Now()
	defer func() { debugf("%s: %d conns, %v total", path, n, time.Since(t0)) }()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWebSocketClient$")
	cmd.Env = append(os.Environ(),
		envBenchClientURL+"=ws"+strings.TrimPrefix(ts.URL, "http")+path,
		envBenchClientN+"="+strconv.Itoa(n),
		envBenchClientFirst+"="+first,
		envBenchClientWant+"="+want)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "READY") {
			ready = true
			break
		} else if strings.HasPrefix(line, "FAIL") {
			b.Fatalf("client: %s", line)
		}
	}
	if !ready {
		b.Fatal("client process ended before its connections were ready")
	}
	debugf("%s: %d conns ready after %v", path, n, time.Since(t0))
	time.Sleep(500 * time.Millisecond) // let server goroutines park
	if check != nil {
		if err := check(); err != nil {
			b.Fatal(err)
		}
	}
	after := memInUse()
	if os.Getenv("BEVYGAP_BENCH_DEBUG") != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		debugf("%s: heap in use %d, stacks %d, goroutines %d", path, ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	}
	return float64(int64(after)-int64(before)) / float64(n) / 1024
}

func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

func raiseNoFile(tb testing.TB, want uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
	if rl.Cur >= want {
		return
	}
	rl.Cur = min(want, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
	if rl.Cur < want {
		tb.Skipf("RLIMIT_NOFILE hard limit %d is below the %d needed; lower -bench-conns", rl.Max, want)
	}
}

// TestBenchWebSocketClient is the client process of BenchmarkWaitingWebSocketMemory; it is
// skipped unless that benchmark starts it. It opens N WebSockets (from several 127.0.0.x source
// addresses, so ephemeral ports do not run short), sends FIRST on each, checks the reply is WANT,
// prints READY and holds the connections until stdin closes.
func TestBenchWebSocketClient(t *testing.T) {
	url := os.Getenv(envBenchClientURL)
	if url == "" {
		t.Skip("helper process of BenchmarkWaitingWebSocketMemory")
	}
	n, _ := strconv.Atoi(os.Getenv(envBenchClientN))
	first, want := os.Getenv(envBenchClientFirst), os.Getenv(envBenchClientWant)
	raiseNoFile(t, uint64(n+1024))
	// One HTTP client per 127.0.0.x source address, 16000 connections each.
	clients := make([]*http.Client, n/16000+1)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}, Timeout: 10 * time.Second}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	var next atomic.Int64
	var failed atomic.Value
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				hc := clients[i/16000]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
				if err == nil {
					err = c.Write(ctx, websocket.MessageText, []byte(first))
				}
				var got []byte
				if err == nil {
					_, got, err = c.Read(ctx)
				}
				cancel()
				if err == nil && string(got) != want {
					err = fmt.Errorf("reply %q, want %q", got, want)
				}
				if err != nil {
					failed.Store(fmt.Sprintf("conn %d: %v", i, err))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		fmt.Println("FAIL", f)
		return
	}
	fmt.Println("READY", n)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the benchmark closes stdin
	for _, c := range conns {
		_ = c.CloseNow()
	}
}

func debugf(format string, args ...any) {
	if os.Getenv("BEVYGAP_BENCH_DEBUG") != "" {
		fmt.Printf(format+"\n", args...)
	}
}
