package edgegapsim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestCloseEndsInjectedLatency: closing the simulator while a call waits out an injected
// latency answers that call 503 at once (Serve closes the same way when its context ends,
// before the HTTP shutdown waits for in-flight calls: soak finding F5, where a stopped
// simulator waited past its 5 s grace and exited 1).
func TestCloseEndsInjectedLatency(t *testing.T) {
	t.Parallel()
	sim, err := edgegapsim.New(edgegapsim.Config{APIKeys: []string{testKey}, Logger: discard(), Seed: 1,
		Faults: edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
			"*": {Latency: edgegapsim.Duration(time.Minute)}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)

	written := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(written) }}
	rctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, srv.URL+"/v1/app/game", nil)
	req.Header.Set("Authorization", testKey)
	answered := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("request: %v", err)
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-written
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := sim.Close(cctx); err != nil {
		t.Fatal(err)
	}
	select {
	case status := <-answered:
		if status != http.StatusServiceUnavailable {
			t.Errorf("delayed call answered %d, want 503", status)
		}
	case <-time.After(10 * time.Second): // the injected latency is a minute
		t.Fatal("the delayed call still waits after Close")
	}
}
