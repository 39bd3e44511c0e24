package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// shutdownSessions is how many sessions TestShutdownSweepIsBoundedAndParallel leaves for the
// shutdown sweep; BEVYGAP_SHUTDOWN_SESSIONS measures more (docs/dev.md has the numbers).
func shutdownSessions(t *testing.T) int {
	if v := os.Getenv("BEVYGAP_SHUTDOWN_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("BEVYGAP_SHUTDOWN_SESSIONS=%q", v)
		}
		return n
	}
	return 2000
}

// startSweepStack starts a stack whose sessions all fit on one deployment (one game server),
// with no request in flight: what Shutdown finds is only what the test created. A nil log
// is the test's output (warnings).
func startSweepStack(t *testing.T, sessions int, log *slog.Logger) *Stack {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	st, err := Start(t.Context(), Config{
		BootTime:        time.Millisecond,
		BootJitter:      -1,
		Sockets:         sessions,
		ShutdownTimeout: time.Second,
		Logger:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Shutdown(ctx)
	})
	return st
}

// createSessions creates n sessions through the simulator's API, 32 at a time.
func createSessions(t *testing.T, st *Stack, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	ids := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range ids {
				_, err := st.Edgegap().CreateSession(t.Context(), edgegap.SessionCreateRequest{
					AppName: DefaultAppName, IPList: []string{fmt.Sprintf("198.51.%d.%d", i/250, i%250+1)}})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("create session: %v", err)
	default:
	}
	if got := st.Sim().LiveSessions(); got != n {
		t.Fatalf("%d live sessions, want %d", got, n)
	}
}

// Shutdown deletes the sessions left in parallel, well within its deadline, and reports a clean
// stop.
func TestShutdownSweepIsBoundedAndParallel(t *testing.T) {
	t.Parallel()
	n := shutdownSessions(t)
	st := startSweepStack(t, n, nil)
	createSessions(t, st, n)
	if testing.Verbose() { // the time of each step
		st.log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	took := time.Since(start)
	t.Logf("shutdown with %d sessions left took %v", n, took.Round(time.Millisecond))
	if left := st.Sim().LiveSessions(); left != 0 {
		t.Fatalf("%d sessions left", left)
	}
	if deletes := st.Sim().CallCounts().Endpoint(edgegap.EndpointSessionDelete); deletes < uint64(n) {
		t.Fatalf("%d DELETE calls for %d sessions", deletes, n)
	}
}

// A shutdown that cannot delete every session gives up (no retrying until the deadline) and
// says so: how many sessions are left (ErrLeakedSessions), not a clean stop.
func TestShutdownSaysWhatWasLeft(t *testing.T) {
	t.Parallel()
	const n = 3
	st := startSweepStack(t, 8, nil)
	createSessions(t, st, n)
	st.Sim().SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionDelete: {ErrorRate: 1, Status: 500},
	}})
	const budget = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	err := st.Shutdown(ctx)
	took := time.Since(start)
	if took > budget/2 {
		t.Errorf("shutdown took %v: it should give up on failing deletes long before its %v deadline", took, budget)
	}
	var se *ShutdownError
	if !errors.As(err, &se) || !errors.Is(err, ErrLeakedSessions) {
		t.Fatalf("shutdown error %v, want a *ShutdownError matching ErrLeakedSessions", err)
	}
	if se.Sessions != n || !strings.HasPrefix(se.Summary(), "3 sessions could not be deleted") {
		t.Fatalf("Sessions %d, summary %q", se.Sessions, se.Summary())
	}
}

// A matchmaker that cannot finish within its share of the shutdown's time (here: a session
// create that Edgegap answers only after 10 s, which the matchmaker does not abandon, see
// docs/matchmaker.md) is left behind: the shutdown still ends by its deadline, and says so.
func TestShutdownIsBoundedByItsDeadline(t *testing.T) {
	t.Parallel()
	// The matchmaker left behind logs after the test has ended: not into the test's output.
	st := startSweepStack(t, 8, slog.New(slog.DiscardHandler))
	st.Sim().SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionCreate: {Latency: edgegapsim.Duration(10 * time.Second)},
	}})
	inbox := nats.NewInbox()
	sub, err := st.NATS().SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.NATS().PublishRequest("matchmaker.request."+DefaultAppName+"."+DefaultAppVersion, inbox, []byte(`{"client_ip":"198.51.100.7"}`)); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(10 * time.Second); err != nil || string(msg.Data) != `"Acknowledged"` {
		t.Fatalf("first feedback %v, %v", msg, err)
	}
	const budget = 2 * time.Second // the matchmaker's share (1.3 s) outlasts its --shutdown-timeout (1 s)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	err = st.Shutdown(ctx)
	if took := time.Since(start); took > budget+time.Second {
		t.Errorf("shutdown took %v with a %v deadline", took, budget)
	}
	var se *ShutdownError
	if !errors.As(err, &se) || !strings.Contains(se.Summary(), "the matchmaker did not stop in time") {
		t.Fatalf("shutdown error %v, want one saying the matchmaker did not stop", err)
	}
}

// A component that stops with an error during the shutdown (the simulator whose game servers
// did not exit in time, say) makes the shutdown say so, instead of a clean stop.
func TestShutdownReportsComponentStopErrors(t *testing.T) {
	t.Parallel()
	st := &Stack{log: slog.New(slog.DiscardHandler), failed: make(chan struct{})}
	st.simStop, st.simDone = st.serve("edgegap-sim", func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("edgegapsim: close: %w", context.DeadlineExceeded)
	})
	err := st.Shutdown(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "edgegap-sim: edgegapsim: close: context deadline exceeded") {
		t.Fatalf("shutdown error %v, want the simulator's stop error", err)
	}
}

func TestShutdownErrorSummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  ShutdownError
		want string
		leak bool
	}{
		{ShutdownError{Sessions: 1}, "1 session could not be deleted", true},
		{ShutdownError{Sessions: 2, Problems: []error{errors.New("edgegap-sim: context deadline exceeded")}},
			"2 sessions could not be deleted; edgegap-sim: context deadline exceeded", true},
		{ShutdownError{Problems: []error{context.DeadlineExceeded}}, "context deadline exceeded", false},
	}
	for _, tt := range tests {
		if got := tt.err.Summary(); got != tt.want {
			t.Errorf("Summary() = %q, want %q", got, tt.want)
		}
		if got := errors.Is(&tt.err, ErrLeakedSessions); got != tt.leak {
			t.Errorf("%q: errors.Is(ErrLeakedSessions) = %v", tt.want, got)
		}
	}
	if !errors.Is(&tests[2].err, context.DeadlineExceeded) {
		t.Error("problems are not unwrapped")
	}
}
