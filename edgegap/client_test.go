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
	"testing/synctest"
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

// client returns a client of e's simulator with fast retries, and the record of its calls.
func (e *env) client(opts ...edgegap.Option) (*edgegap.Client, *calls) {
	rec := &calls{}
	opts = append([]edgegap.Option{edgegap.WithRetries(4, time.Millisecond, 5*time.Millisecond),
		edgegap.WithRateLimit(rate.Inf, 1), edgegap.WithObserver(rec.observe)}, opts...)
	return edgegap.NewClient(e.srv.URL+"/", apiKey, opts...), rec
}

// calls records the CallEvents a client reports to its WithObserver hook.
type calls struct {
	mu     sync.Mutex
	events []edgegap.CallEvent
}

func (c *calls) observe(ev edgegap.CallEvent) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

// all returns the events so far.
func (c *calls) all() []edgegap.CallEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]edgegap.CallEvent(nil), c.events...)
}

// count returns the number of attempts on ep with outcome o ("" = any outcome).
func (c *calls) count(ep edgegap.Endpoint, o edgegap.Outcome) int {
	n := 0
	for _, ev := range c.all() {
		if ev.Endpoint == ep && (o == "" || ev.Outcome == o) {
			n++
		}
	}
	return n
}

func (e *env) faults(ep edgegap.Endpoint, f edgegapsim.EndpointFaults) {
	e.sim.SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{ep: f}})
}

// TestClientCalls exercises every call against the simulator and checks the wire details:
// authorization verbatim, User-Agent, and bevygap's exact session create body.
func TestClientCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, rec := e.client()
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
		ae.Endpoint != edgegap.EndpointSessionDelete || !errors.Is(err, edgegap.ErrNotFound) {
		t.Errorf("second delete: %#v", err)
	}
	if rec.count(edgegap.EndpointSessionCreate, edgegap.OutcomeOK) != 25 ||
		rec.count(edgegap.EndpointSessionDelete, edgegap.OutcomeNotFound) != 1 ||
		rec.count(edgegap.EndpointSessionList, "") != 2 {
		t.Errorf("observed calls %+v", rec.all())
	}
	if sc := e.sim.CallCounts(); sc.Total() != uint64(len(rec.all())) {
		t.Errorf("simulator saw %d calls, the observer %d", sc.Total(), len(rec.all()))
	}
}

// TestClientErrors: each HTTP error status maps to the right sentinel and carries the message.
func TestClientErrors(t *testing.T) {
	t.Parallel()
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
			cl, rec := e.client()
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
			if n := rec.count(edgegap.EndpointSessionCreate, c.outcome); n != 1 {
				t.Errorf("outcome %s observed %d times: %+v", c.outcome, n, rec.all())
			}
		})
	}
	// A real 401 from a wrong key.
	_, err := edgegap.NewClient(e.srv.URL, "token wrong").GetApp(ctx, "game")
	if !errors.Is(err, edgegap.ErrUnauthorized) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong key: %v", err)
	}
}

// TestClientRetries: GET and DELETE are retried on 5xx and 429; session create never is.
func TestClientRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c, _ := e.client()
	cr, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"})
	if err != nil {
		t.Fatal(err)
	}
	c, rec := e.client()
	e.faults(edgegap.EndpointSessionGet, edgegapsim.EndpointFaults{FailNext: 2, Status: 503})
	if _, err := c.GetSession(ctx, cr.SessionID); err != nil {
		t.Fatalf("GetSession with 2 failures: %v", err)
	}
	if events := rec.all(); len(events) != 3 || !events[0].WillRetry || events[0].StatusCode != 503 || events[2].Attempt != 3 ||
		events[2].Outcome != edgegap.OutcomeOK || events[2].WillRetry || events[0].Outcome != edgegap.OutcomeServerError {
		t.Errorf("events %+v", events)
	}
	// Too many failures: the last error comes back after maxAttempts.
	e.faults(edgegap.EndpointSessionGet, edgegapsim.EndpointFaults{FailNext: 10, Status: 500})
	e.sim.ResetCallCounts()
	if _, err := c.GetSession(ctx, cr.SessionID); !errors.Is(err, edgegap.ErrServer) {
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
	if _, err := c.GetSession(ctx, "nope-S"); !errors.Is(err, edgegap.ErrNotFound) || e.sim.CallCounts().Total() != 1 {
		t.Errorf("404: %v after %d calls", err, e.sim.CallCounts().Total())
	}
	// Session create: one attempt only, even on 503.
	e.faults(edgegap.EndpointSessionCreate, edgegapsim.EndpointFaults{FailNext: 1, Status: 503})
	e.sim.ResetCallCounts()
	if _, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game"}); !errors.Is(err, edgegap.ErrServer) {
		t.Errorf("create: %v", err)
	}
	if n := e.sim.CallCounts().Total(); n != 1 {
		t.Errorf("create attempted %d times", n)
	}
}

// fakeAPI is an in-memory Edgegap: a transport without sockets, so that a client using it runs
// inside a synctest bubble on fake time. answer serves the n-th request (1 for the first).
type fakeAPI struct {
	mu     sync.Mutex
	at     []time.Time // when each request arrived
	answer func(n int, r *http.Request) (*http.Response, error)
}

func (f *fakeAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.at = append(f.at, time.Now())
	n := len(f.at)
	f.mu.Unlock()
	return f.answer(n, r)
}

// gaps returns the time between consecutive requests.
func (f *fakeAPI) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(f.at); i++ {
		out = append(out, f.at[i].Sub(f.at[i-1]))
	}
	return out
}

// client returns a client of f with the given options after fast defaults and an observer.
func (f *fakeAPI) client(opts ...edgegap.Option) (*edgegap.Client, *calls) {
	rec := &calls{}
	opts = append([]edgegap.Option{edgegap.WithHTTPClient(&http.Client{Transport: f}),
		edgegap.WithRateLimit(rate.Inf, 1), edgegap.WithObserver(rec.observe)}, opts...)
	return edgegap.NewClient("http://edgegap.invalid", apiKey, opts...), rec
}

// reply is an HTTP answer of the fake API.
func reply(r *http.Request, status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: r}
}

const appJSON = `{"name":"game","is_active":true}`

// hang waits for the request's context to end, like a server that never answers.
func hang(_ int, r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// TestClientRetryAfter: a 429 with Retry-After is retried no earlier than asked; with a
// deadline shorter than Retry-After the client gives up at once.
func TestClientRetryAfter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAPI{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n%2 == 1 {
				return reply(r, http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, `{"message":"slow down"}`), nil
			}
			return reply(r, http.StatusOK, nil, appJSON), nil
		}}
		c, _ := f.client(edgegap.WithRetries(4, time.Millisecond, 5*time.Millisecond))
		if _, err := c.GetApp(context.Background(), "game"); err != nil {
			t.Fatal(err)
		}
		if g := f.gaps(); len(g) != 1 || g[0] != time.Second {
			t.Errorf("retried after %v, want exactly the 1 s asked for", g)
		}

		f = &fakeAPI{answer: func(_ int, r *http.Request) (*http.Response, error) {
			return reply(r, http.StatusTooManyRequests, http.Header{"Retry-After": {"30"}}, `{"message":"slow down"}`), nil
		}}
		c, _ = f.client(edgegap.WithRetries(4, time.Millisecond, 5*time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.GetApp(ctx, "game")
		var ae *edgegap.APIError
		if !errors.As(err, &ae) || ae.RetryAfter != 30*time.Second || time.Since(start) != 0 || len(f.at) != 1 {
			t.Errorf("err %v after %v and %d attempts, want the 429 at once", err, time.Since(start), len(f.at))
		}
	})
}

// TestClientBackoff: the waits between attempts grow exponentially with equal jitter (between
// half and all of base·2ⁿ, capped), and each attempt is reported to the observer.
func TestClientBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAPI{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n <= 3 {
				return reply(r, http.StatusServiceUnavailable, nil, `{"message":"busy"}`), nil
			}
			return reply(r, http.StatusOK, nil, appJSON), nil
		}}
		c, rec := f.client(edgegap.WithRetries(4, 100*time.Millisecond, 250*time.Millisecond))
		if _, err := c.GetApp(context.Background(), "game"); err != nil {
			t.Fatal(err)
		}
		g := f.gaps()
		want := [][2]time.Duration{{50 * time.Millisecond, 100 * time.Millisecond},
			{100 * time.Millisecond, 200 * time.Millisecond}, {125 * time.Millisecond, 250 * time.Millisecond}}
		if len(g) != len(want) {
			t.Fatalf("gaps %v", g)
		}
		for i, w := range want {
			if g[i] < w[0] || g[i] > w[1] {
				t.Errorf("wait %d = %v, want in [%v, %v]", i+1, g[i], w[0], w[1])
			}
		}
		ev := rec.all()
		if len(ev) != 4 || ev[0].Outcome != edgegap.OutcomeServerError || !ev[2].WillRetry ||
			ev[3].Outcome != edgegap.OutcomeOK || ev[3].Attempt != 4 || ev[3].WillRetry {
			t.Errorf("events %+v", ev)
		}
	})
}

// TestClientTimeout: each attempt is bounded by the client timeout.
func TestClientTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAPI{answer: hang}
		c, rec := f.client(edgegap.WithTimeout(50*time.Millisecond), edgegap.WithRetries(2, time.Millisecond, time.Millisecond))
		start := time.Now()
		_, err := c.GetApp(context.Background(), "game")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v", err)
		}
		// Two attempts of 50 ms and one backoff of 0.5 to 1 ms.
		if d := time.Since(start); d < 100*time.Millisecond || d > 101*time.Millisecond {
			t.Errorf("gave up after %v", d)
		}
		if n := rec.count(edgegap.EndpointAppGet, edgegap.OutcomeNetworkError); n != 2 {
			t.Errorf("%d timed-out attempts, want 2", n)
		}
	})
}

// TestClientContextCancel: cancelling the caller's context ends the call at once, unretried.
func TestClientContextCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAPI{answer: hang}
		c, rec := f.client(edgegap.WithRetries(4, time.Millisecond, time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.GetApp(ctx, "game")
		if !errors.Is(err, context.Canceled) || time.Since(start) != 50*time.Millisecond {
			t.Errorf("err %v after %v", err, time.Since(start))
		}
		if n := rec.count(edgegap.EndpointAppGet, edgegap.OutcomeCanceled); n != 1 || len(rec.all()) != 1 {
			t.Errorf("events %+v", rec.all())
		}
	})
}

// TestClientRateLimit: the client-side limiter spaces calls per endpoint.
func TestClientRateLimit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAPI{answer: func(_ int, r *http.Request) (*http.Response, error) {
			return reply(r, http.StatusOK, nil, appJSON), nil
		}}
		c, _ := f.client(edgegap.WithRateLimit(20, 1))
		start := time.Now()
		for i := 0; i < 5; i++ {
			if _, err := c.GetApp(context.Background(), "game"); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Errorf("5 calls at 20/s took %v, want 200ms", d)
		}
		// Another endpoint has a limiter of its own.
		start = time.Now()
		if _, err := c.GetSession(context.Background(), "s-S"); err != nil || time.Since(start) != 0 {
			t.Errorf("first session get: %v after %v", err, time.Since(start))
		}
		// Waiting for the limiter honours the context.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, _ = c.GetApp(ctx, "game")
		if _, err := c.GetApp(ctx, "game"); err == nil {
			t.Error("rate-limited call with a 10ms deadline succeeded")
		}
	})
}

// TestGetSessionNow: the call is made only when the endpoint's limiter has a call to spare at
// once (it then takes it), never waits and is never retried; otherwise ErrNoSpareCall without a
// request.
func TestGetSessionNow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		status := http.StatusOK
		f := &fakeAPI{answer: func(_ int, r *http.Request) (*http.Response, error) {
			if status != http.StatusOK {
				return reply(r, status, nil, `{"message":"busy"}`), nil
			}
			return reply(r, http.StatusOK, nil, `{"session_id":"s-S","status":"Status.READY","ready":true,"linked":true,"kind":"Seat","user_count":1,"app_version":1,"create_time":"2024-01-01 00:00:00","elapsed":0}`), nil
		}}
		c, rec := f.client(edgegap.WithRateLimit(10, 1))
		start := time.Now()
		s, err := c.GetSessionNow(context.Background(), "s-S")
		if err != nil || s.SessionID != "s-S" || !s.Ready {
			t.Fatalf("first look: %+v, %v", s, err)
		}
		// The burst is spent: no request, no wait.
		if _, err := c.GetSessionNow(context.Background(), "s-S"); !errors.Is(err, edgegap.ErrNoSpareCall) {
			t.Fatalf("second look at once: %v, want ErrNoSpareCall", err)
		}
		if time.Since(start) != 0 || len(f.at) != 1 {
			t.Fatalf("after %v, %d requests; want no wait and 1 request", time.Since(start), len(f.at))
		}
		// A GetSession waits for the call the look took.
		if _, err := c.GetSession(context.Background(), "s-S"); err != nil || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("get after the look: %v after %v, want 100ms", err, time.Since(start))
		}
		// A failed look is not retried (GetSession would retry a 503).
		time.Sleep(100 * time.Millisecond)
		status = http.StatusServiceUnavailable
		if _, err := c.GetSessionNow(context.Background(), "s-S"); !errors.Is(err, edgegap.ErrServer) {
			t.Fatalf("look at a 503: %v, want ErrServer", err)
		}
		if n := rec.count(edgegap.EndpointSessionGet, edgegap.OutcomeServerError); n != 1 || len(f.at) != 3 {
			t.Errorf("503 looks: %d attempts, %d requests; want 1 and 3", n, len(f.at))
		}
	})
}

// TestSecretsNotPrinted: neither the client nor its errors show the API key.
func TestSecretsNotPrinted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, _ := e.client()
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
	t.Parallel()
	f := &fakeAPI{answer: func(_ int, r *http.Request) (*http.Response, error) {
		return reply(r, http.StatusOK, nil, "<html>"), nil
	}}
	c, rec := f.client(edgegap.WithRetries(3, time.Millisecond, time.Millisecond))
	_, err := c.GetApp(context.Background(), "x")
	var se *json.SyntaxError
	if !errors.As(err, &se) || len(f.at) != 1 {
		t.Errorf("err %v after %d calls", err, len(f.at))
	}
	if n := rec.count(edgegap.EndpointAppGet, edgegap.OutcomeDecodeError); n != 1 {
		t.Errorf("events %+v", rec.all())
	}
}
