package devstack

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestStartBusyPort: an address already in use fails Start at once with a *ListenError naming
// the component, before NATS or anything else runs (a busy NATS port would otherwise cost the
// nats-server's 10 s readiness wait).
func TestStartBusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests, unlike a defer
	addr := busy.Addr().String()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	tests := []struct {
		name      string
		cfg       Config
		component string
	}{
		{"nats", Config{NATSPort: port}, ComponentNATS},
		{"httpd", Config{HTTPAddr: addr}, ComponentHTTPD},
		{"webhook_sink", Config{WebhookAddr: addr}, ComponentWebhookSink},
		{"sim", Config{SimAddr: addr}, ComponentSim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			st, err := Start(t.Context(), tt.cfg)
			if err == nil {
				_ = st.Shutdown(t.Context())
				t.Fatal("Start succeeded on a busy port")
			}
			var le *ListenError
			if !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is not a *ListenError", err, err)
			}
			if le.Component != tt.component || le.Addr != addr {
				t.Errorf("ListenError{%q, %q}, want {%q, %q}", le.Component, le.Addr, tt.component, addr)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %v does not match EADDRINUSE", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Start took %s to fail: something was started first", d)
			}
		})
	}
}
