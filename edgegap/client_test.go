package edgegap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/buildinfo"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

const apiKey = "token secret-key-4242"

type env struct {
	sim    *edgegapsim.Simulator
	srv    *httptest.Server
	clock  *edgegapsim.FakeClock
	mu     sync.Mutex
	hdrs   []http.Header
	bodies []string
}

// newEnv serves a deterministic simulator (fake clock, app "game"/"v1", 3 s boot) behind a
// recorder of request headers and bodies.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: edgegapsim.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{apiKey}, Seed: 3, Clock: e.clock, BootJitter: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Apps:   []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = sim
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.hdrs = append(e.hdrs, r.Header.Clone())
		e.bodies = append(e.bodies, string(b))
		e.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		sim.ServeHTTP(w, r)
	}))
	sim.SetBaseURL(e.srv.URL)
	t.Cleanup(func() { _ = sim.Close(context.Background()); e.srv.Close() })
	return e
}

func (e *env) client(opts ...edgegap.Option) *edgegap.Client {
	opts = append([]edgegap.Option{edgegap.WithRetries(4, time.Millisecond, 5*time.Millisecond),
		edgegap.WithRateLimit(rate.Inf, 1)}, opts...)
	return edgegap.NewClient(e.srv.URL+"/", apiKey, opts...)
}

func (e *env) faults(ep edgegap.Endpoint, f edgegapsim.EndpointFaults) {
	e.sim.SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{ep: f}})
}

// TestClientCalls exercises every call against the simulator and checks the wire details:
// authorization verbatim, User-Agent, and bevygap's exact session create body.
func TestClientCalls(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	ctx := context.Background()
	app, err := c.GetApp(ctx, "game")
	if err != nil || app.Name != "game" || !app.IsActive {
		t.Fatalf("GetApp: %+v %v", app, err)
	}
	v, err := c.GetAppVersion(ctx, "game", "v1")
	if err != nil || v.Name != "v1" || !v.Active() || v.SessionConfig.Kind != "Seat" {
		t.Fatalf("GetAppVersion: %+v %v", v, err)
	}
	cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game", IPList: []string{"81.2.69.160"}})
	if err != nil || cr.App != "game" || cr.Version != "v1" {
		t.Fatalf("CreateSession: %+v %v", cr, err)
	}
	e.mu.Lock()
	body, hdr := e.bodies[len(e.bodies)-1], e.hdrs[len(e.hdrs)-1]
	e.mu.Unlock()
	if body != `{"app_name":"game","ip_list":["81.2.69.160"]}` {
		t.Errorf("session create body %s", body)
	}
	if hdr.Get("Authorization") != apiKey || hdr.Get("User-Agent") != buildinfo.UserAgent() ||
		hdr.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", hdr)
	}
	s, err := c.GetSession(ctx, cr.SessionID)
	if err != nil || s.Ready || !s.Linked {
		t.Fatalf("GetSession: %+v %v", s, err)
	}
	e.clock.Advance(3 * time.Second)
	s, err = c.GetSession(ctx, cr.SessionID)
	if err != nil || !s.Ready || !edgegap.StatusIs(s.Status, edgegap.SessionStatusReady) {
		t.Fatalf("GetSession after boot: %+v %v", s, err)
	}
	if addr, err := s.Endpoint(""); err != nil || addr.Addr().String() != "127.0.0.1" || addr.Port() == 0 {
		t.Errorf("Endpoint: %v %v", addr, err)
	}
	for i := 0; i < 24; i++ {
		if _, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListSessions(ctx, edgegap.ListOptions{Page: 2, Limit: 10})
	if err != nil || len(page.Data) != 10 || *page.TotalCount != 25 || !page.Pagination.HasNext {
		t.Fatalf("ListSessions: %+v %v", page, err)
	}
	all, err := c.ListAllSessions(ctx)
	if err != nil || len(all) != 25 || all[0].SessionID != cr.SessionID {
		t.Fatalf("ListAllSessions: %d %v", len(all), err)
	}
	del, err := c.DeleteSession(ctx, cr.SessionID)
	if err != nil || del.SessionID != cr.SessionID {
		t.Fatalf("DeleteSession: %+v %v", del, err)
	}
	_, err = c.DeleteSession(ctx, cr.SessionID)
	var ae *edgegap.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Message != edgegap.MessageSessionNotFound ||
		ae.Endpoint != edgegap.EndpointSessionDelete || !edgegap.IsNotFound(err) {
		t.Errorf("second delete: %#v", err)
	}
	st := c.Stats()
	if st[edgegap.CallKey{Endpoint: edgegap.EndpointSessionCreate, Outcome: edgegap.OutcomeOK}] != 25 ||
		st[edgegap.CallKey{Endpoint: edgegap.EndpointSessionDelete, Outcome: edgegap.OutcomeNotFound}] != 1 ||
		st.Endpoint(edgegap.EndpointSessionList) != 2 {
		t.Errorf("stats %v", st)
	}
	if sc := e.sim.CallCounts(); sc.Total() != st.Total() {
		t.Errorf("simulator saw %d calls, client counted %d", sc.Total(), st.Total())
	}
}

// TestClientErrors: each HTTP error status maps to the right sentinel and carries the message.
func TestClientErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		status   int
		sentinel error
		outcome  edgegap.Outcome
	}{
		{400, edgegap.ErrBadRequest, edgegap.OutcomeClientError},
		{401, edgegap.ErrUnauthorized, edgegap.OutcomeUnauthorized},
		{404, edgegap.ErrNotFound, edgegap.OutcomeNotFound},
		{409, edgegap.ErrConflict, edgegap.OutcomeConflict},
		{410, edgegap.ErrGone, edgegap.OutcomeNotFound},
		{429, edgegap.ErrRateLimited, edgegap.OutcomeRateLimited},
		{500, edgegap.ErrServer, edgegap.OutcomeServerError},
		{503, edgegap.ErrServer, edgegap.OutcomeServerError},
	} {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			e.faults(edgegap.EndpointSessionCreate, edgegapsim.EndpointFaults{FailNext: 1, Status: c.status})
			cl := e.client()
			_, err := cl.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"})
			if !errors.Is(err, c.sentinel) || edgegap.StatusCode(err) != c.status {
				t.Fatalf("err %v, want %v", err, c.sentinel)
			}
			var ae *edgegap.APIError
			if !errors.As(err, &ae) || ae.Message == "" {
				t.Errorf("no message in %#v", err)
			}
			for _, other := range []error{edgegap.ErrBadRequest, edgegap.ErrUnauthorized, edgegap.ErrConflict,
				edgegap.ErrRateLimited, edgegap.ErrServer} {
				if other != c.sentinel && errors.Is(err, other) {
					t.Errorf("%d also matches %v", c.status, other)
				}
			}
			if n := cl.Stats()[edgegap.CallKey{Endpoint: edgegap.EndpointSessionCreate, Outcome: c.outcome}]; n != 1 {
				t.Errorf("outcome %s counted %d times: %v", c.outcome, n, cl.Stats())
			}
		})
	}
	// A real 401 from a wrong key.
	_, err := edgegap.NewClient(e.srv.URL, "token wrong").GetApp(ctx, "game")
	if !edgegap.IsUnauthorized(err) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong key: %v", err)
	}
}

// TestClientRetries: GET and DELETE are retried on 5xx and 429; session create never is.
func TestClientRetries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client()
	cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"})
	if err != nil {
		t.Fatal(err)
	}
	var events []edgegap.CallEvent
	c = e.client(edgegap.WithObserver(func(ev edgegap.CallEvent) { events = append(events, ev) }))
	e.faults(edgegap.EndpointSessionGet, edgegapsim.EndpointFaults{FailNext: 2, Status: 503})
	if _, err := c.GetSession(ctx, cr.SessionID); err != nil {
		t.Fatalf("GetSession with 2 failures: %v", err)
	}
	if len(events) != 3 || !events[0].WillRetry || events[0].StatusCode != 503 || events[2].Attempt != 3 ||
		events[2].Outcome != edgegap.OutcomeOK || events[2].WillRetry {
		t.Errorf("events %+v", events)
	}
	// Too many failures: the last error comes back after maxAttempts.
	e.faults(edgegap.EndpointSessionGet, edgegapsim.EndpointFaults{FailNext: 10, Status: 500})
	e.sim.ResetCallCounts()
	if _, err := c.GetSession(ctx, cr.SessionID); !edgegap.IsServerError(err) {
		t.Errorf("err %v", err)
	}
	if n := e.sim.CallCounts().Endpoint(edgegap.EndpointSessionGet); n != 4 {
		t.Errorf("%d attempts, want 4", n)
	}
	// DELETE is retried.
	e.faults(edgegap.EndpointSessionDelete, edgegapsim.EndpointFaults{FailNext: 1, Status: 502})
	if _, err := c.DeleteSession(ctx, cr.SessionID); err != nil {
		t.Errorf("delete with one 502: %v", err)
	}
	// 404 is not retried.
	e.sim.ResetCallCounts()
	if _, err := c.GetSession(ctx, "nope-S"); !edgegap.IsNotFound(err) || e.sim.CallCounts().Total() != 1 {
		t.Errorf("404: %v after %d calls", err, e.sim.CallCounts().Total())
	}
	// Session create: one attempt only, even on 503.
	e.faults(edgegap.EndpointSessionCreate, edgegapsim.EndpointFaults{FailNext: 1, Status: 503})
	e.sim.ResetCallCounts()
	if _, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"}); !edgegap.IsServerError(err) {
		t.Errorf("create: %v", err)
	}
	if n := e.sim.CallCounts().Total(); n != 1 {
		t.Errorf("create attempted %d times", n)
	}
}

// TestClientRetryAfter: a 429 with Retry-After is retried no earlier than asked.
func TestClientRetryAfter(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.faults(edgegap.EndpointAppGet, edgegapsim.EndpointFaults{FailNext: 1, Status: 429, RetryAfterSeconds: 1})
	start := time.Now()
	if _, err := c.GetApp(context.Background(), "game"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v, want >= 1s", d)
	}
	// With a deadline shorter than Retry-After the client gives up at once.
	e.faults(edgegap.EndpointAppGet, edgegapsim.EndpointFaults{FailNext: 1, Status: 429, RetryAfterSeconds: 30})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start = time.Now()
	_, err := c.GetApp(ctx, "game")
	var ae *edgegap.APIError
	if !errors.As(err, &ae) || ae.RetryAfter != 30*time.Second || time.Since(start) > time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}

// TestClientTimeout: each attempt is bounded by the client timeout.
func TestClientTimeout(t *testing.T) {
	e := newEnv(t)
	e.faults(edgegap.EndpointAppGet, edgegapsim.EndpointFaults{Latency: edgegapsim.Duration(time.Second)})
	c := e.client(edgegap.WithTimeout(50*time.Millisecond), edgegap.WithRetries(2, time.Millisecond, time.Millisecond))
	start := time.Now()
	_, err := c.GetApp(context.Background(), "game")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 800*time.Millisecond {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
	if n := c.Stats()[edgegap.CallKey{Endpoint: edgegap.EndpointAppGet, Outcome: edgegap.OutcomeNetworkError}]; n != 2 {
		t.Errorf("%d timed-out attempts, want 2", n)
	}
}

// TestClientContextCancel: cancelling the caller's context ends the call promptly.
func TestClientContextCancel(t *testing.T) {
	e := newEnv(t)
	e.faults(edgegap.EndpointAppGet, edgegapsim.EndpointFaults{Latency: edgegapsim.Duration(2 * time.Second)})
	c := e.client()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.GetApp(ctx, "game")
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
	if n := c.Stats()[edgegap.CallKey{Endpoint: edgegap.EndpointAppGet, Outcome: edgegap.OutcomeCanceled}]; n != 1 {
		t.Errorf("stats %v", c.Stats())
	}
}

// TestClientRateLimit: the client-side limiter spaces calls per endpoint.
func TestClientRateLimit(t *testing.T) {
	e := newEnv(t)
	c := e.client(edgegap.WithRateLimit(20, 1))
	start := time.Now()
	for i := 0; i < 5; i++ {
		if _, err := c.GetApp(context.Background(), "game"); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Errorf("5 calls at 20/s took %v, want >= 200ms", d)
	}
	// Waiting for the limiter honours the context.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _ = c.GetApp(ctx, "game")
	if _, err := c.GetApp(ctx, "game"); err == nil {
		t.Error("rate-limited call with a 10ms deadline succeeded")
	}
}

// TestSecretsNotPrinted: neither the client nor its errors show the API key.
func TestSecretsNotPrinted(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	_, err := edgegap.NewClient(e.srv.URL, apiKey+"x").GetApp(context.Background(), "game")
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v %+v", err, err)} {
		if strings.Contains(s, "secret-key") {
			t.Errorf("secret printed: %s", s)
		}
	}
	arb := edgegap.ArbitriumEnv{ContextToken: "ctx-secret", DeleteToken: "del-secret"}
	if s := fmt.Sprintf("%v %+v %#v", arb, arb, arb); strings.Contains(s, "secret") {
		t.Errorf("token printed: %s", s)
	}
}

// TestBadResponseBody: a 2xx answer that is not the model's JSON is a decode error, not retried.
func TestBadResponseBody(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		_, _ = w.Write([]byte("<html>"))
	}))
	defer srv.Close()
	c := edgegap.NewClient(srv.URL, "k", edgegap.WithRetries(3, time.Millisecond, time.Millisecond))
	_, err := c.GetApp(context.Background(), "x")
	var se *json.SyntaxError
	if !errors.As(err, &se) || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	if n := c.Stats()[edgegap.CallKey{Endpoint: edgegap.EndpointAppGet, Outcome: edgegap.OutcomeDecodeError}]; n != 1 {
		t.Errorf("stats %v", c.Stats())
	}
}
