package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestHTTPCleanShutdown(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") }), nil)
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- HTTP(ctx, srv, ln, 5*time.Second, func(context.Context) error { close(drained); return nil })
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hi" {
		t.Fatalf("body %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean shutdown returned %v", err)
	}
	<-drained
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}

func TestHTTPGraceExceeded(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
	}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- HTTP(ctx, srv, ln, 50*time.Millisecond, nil) }()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, ErrGraceExceeded) {
		t.Fatalf("err = %v, want ErrGraceExceeded", err)
	}
}

func TestHTTPServeFails(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	ln.Close()
	err := HTTP(context.Background(), NewServer(http.NotFoundHandler(), nil), ln, time.Second, nil)
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("err = %v, want the serve error", err)
	}
}

// TestHTTPShutdownClosesFreshConns: a connection that never sent a request (a client's spare
// connection) does not hold the shutdown for net/http's 5 s.
func TestHTTPShutdownClosesFreshConns(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- HTTP(ctx, NewServer(http.NotFoundHandler(), nil), ln, 30*time.Second, nil) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Make sure the server has accepted it (a request on another connection is answered after).
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("shutdown still waiting after 4 s for a connection that never sent a request")
	}
	t.Logf("shutdown took %v", time.Since(start))
}
