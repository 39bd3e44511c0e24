package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// abandonPlayers is how many players TestAbandonedRequestsCostNothing sends;
// BEVYGAP_ABANDON_PLAYERS measures more (issue 15 measured 1,500).
func abandonPlayers(t *testing.T) int {
	if v := os.Getenv("BEVYGAP_ABANDON_PLAYERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("BEVYGAP_ABANDON_PLAYERS=%q", v)
		}
		return n
	}
	return 100
}

// TestAbandonedRequestsCostNothing: players who close their WebSocket right after
// "Acknowledged" leave no session behind: the front door cancels their requests, queued ones
// never create a session, and one whose create was already under way is deleted at once — not
// after the readiness limit plus the claim grace (62 s by default).
func TestAbandonedRequestsCostNothing(t *testing.T) {
	t.Parallel()
	n := abandonPlayers(t)
	st, err := Start(t.Context(), Config{
		Sockets:         64,
		ShutdownTimeout: time.Second,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	// Every session's life, as seen by polling the simulator: created → last seen alive.
	lives := map[string][2]time.Time{}
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			now := time.Now()
			for _, ss := range st.Sim().State().Sessions {
				lives[ss.SessionID] = [2]time.Time{ss.Created, now}
			}
			select {
			case <-stopWatch:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, st.Info().WebSocketURL, nil)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = c.CloseNow() }()
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"`+DefaultAppName+`","version":"`+DefaultAppVersion+`"}`)); err != nil {
				errs <- err
				return
			}
			if _, b, err := c.Read(ctx); err != nil || string(b) != `"Acknowledged"` {
				errs <- err
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("player: %v", err)
	}
	left := time.Now()
	// Within 2 s of the last player leaving (more on a loaded machine: the bound is logged).
	eventually.True(t, 30*time.Second, func() bool { return st.Sim().LiveSessions() == 0 }, "no session left")
	gone := time.Since(left)
	close(stopWatch)
	<-watched
	calls := st.Sim().CallCounts()
	var lifetimes []time.Duration
	for _, l := range lives {
		lifetimes = append(lifetimes, l[1].Sub(l[0]))
	}
	slices.Sort(lifetimes)
	pct := func(p float64) time.Duration {
		if len(lifetimes) == 0 {
			return 0
		}
		return lifetimes[min(len(lifetimes)-1, int(p*float64(len(lifetimes))))].Round(time.Millisecond)
	}
	t.Logf("%d players left after Acknowledged (all within %v): %d sessions created, %d deleted; session life (create → last seen, 10 ms polls) p50 %v p99 %v max %v; none left %v after the last player left",
		n, left.Sub(start).Round(time.Millisecond), calls.Endpoint(edgegap.EndpointSessionCreate),
		calls.Endpoint(edgegap.EndpointSessionDelete), pct(0.5), pct(0.99), pct(1), gone.Round(time.Millisecond))
	// The matchmaker's own measure: cancel → DELETE done, per session.
	mfs, err := st.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bevygap_matchmaker_abandoned_session_delete_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		line := fmt.Sprintf("cancel → DELETE done: %d sessions, mean %v", h.GetSampleCount(),
			time.Duration(h.GetSampleSum()/float64(max(1, h.GetSampleCount()))*float64(time.Second)).Round(time.Millisecond))
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() >= 0.1 && b.GetUpperBound() <= 5 {
				line += fmt.Sprintf(", ≤%gs %.1f%%", b.GetUpperBound(), 100*float64(b.GetCumulativeCount())/float64(max(1, h.GetSampleCount())))
			}
		}
		t.Log(line)
	}
	if m := pct(1); m > 5*time.Second {
		t.Errorf("a session of an abandoned request lived %v, want about 2 s at most", m)
	}
}
