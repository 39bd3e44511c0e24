package edgegapsim_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// benchSim starts a simulator on a real loopback HTTP server with a clock scaled by factor.
func benchSim(b *testing.B, factor float64, boot time.Duration, sockets int) (*edgegapsim.Simulator, *edgegap.Client) {
	b.Helper()
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{testKey}, Seed: 7, Logger: discard(), BootJitter: -1,
		BootTime: edgegapsim.Duration(boot), Clock: edgegapsim.ScaledClock(factor),
		Apps: []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{
			Name: "v1", Sockets: sockets, EmptyTTL: edgegapsim.Duration(time.Second)}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	sim.SetBaseURL(srv.URL)
	b.Cleanup(func() { _ = sim.Close(context.Background()); srv.Close() })
	return sim, edgegap.NewClient(srv.URL, testKey, edgegap.WithRateLimit(rate.Inf, 1))
}

// BenchmarkSessionReady30sBoot measures a "30 s boot" session (new deployment each time) with
// the clock scaled 1000x: create, then poll every 2 ms until ready. Expect ~30 ms/op; the
// reported sim-s/op is the elapsed value the API showed at readiness.
func BenchmarkSessionReady30sBoot(b *testing.B) {
	sim, c := benchSim(b, 1000, 30*time.Second, 1)
	ctx := context.Background()
	var elapsed, polls int
	var ids []string
	for b.Loop() {
		cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game", IPList: []string{"1.2.3.4"}})
		if err != nil {
			b.Fatal(err)
		}
		for {
			s, err := c.GetSession(ctx, cr.SessionID)
			if err != nil {
				b.Fatal(err)
			}
			polls++
			if s.Ready {
				elapsed += s.Elapsed
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		ids = append(ids, cr.SessionID) // kept until the end, so every create needs a new deployment
	}
	b.StopTimer()
	if n := sim.State().LiveDeployments; n != len(ids) {
		b.Errorf("%d deployments for %d sessions", n, len(ids))
	}
	for _, id := range ids {
		if _, err := c.DeleteSession(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(elapsed)/float64(b.N), "sim-s/op")
	b.ReportMetric(float64(polls)/float64(b.N), "polls/op")
}

// BenchmarkSessionReuse measures API throughput on a ready deployment: create (linked and ready
// at once), get, delete.
func BenchmarkSessionReuse(b *testing.B) {
	sim, c := benchSim(b, 1, time.Millisecond, 1000)
	ctx := context.Background()
	warm, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if s, err := c.GetSession(ctx, warm.SessionID); err == nil && s.Ready {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("warm-up deployment not ready")
		}
		time.Sleep(time.Millisecond)
	}
	sim.ResetCallCounts()
	for b.Loop() {
		cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"})
		if err != nil {
			b.Fatal(err)
		}
		if s, err := c.GetSession(ctx, cr.SessionID); err != nil || !s.Ready {
			b.Fatalf("not ready at once: %+v %v", s, err)
		}
		if _, err := c.DeleteSession(ctx, cr.SessionID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sim.CallCounts().Total())/float64(b.N), "calls/op")
}
