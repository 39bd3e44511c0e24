package edgegapsim_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

const testKey = "token test-key-123"

var testStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	sim    *edgegapsim.Simulator
	srv    *httptest.Server
	clock  *edgegapsim.FakeClock
	client *edgegap.Client
	hooks  *hookReceiver
}

// newFixture starts a deterministic simulator (fake clock, fixed seed, sequential ports) on an
// httptest server, with app "game" version "v1" (Seat, 2 sockets, 3 s boot, 10 min TTL).
func newFixture(t *testing.T, mutate func(*edgegapsim.Config)) *fixture {
	t.Helper()
	clock := edgegapsim.NewFakeClock(testStart)
	var portMu sync.Mutex
	next := 31000
	cfg := edgegapsim.Config{
		APIKeys: []string{testKey},
		Apps: []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{
			Name: "v1", Sockets: 2, EmptyTTL: edgegapsim.Duration(10 * time.Minute),
		}}}},
		BootTime:   edgegapsim.Duration(3 * time.Second),
		BootJitter: -1,
		Seed:       42,
		Clock:      clock,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		AllocatePort: func(string) (int, error) {
			portMu.Lock()
			defer portMu.Unlock()
			next++
			return next, nil
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := edgegapsim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(sim)
	sim.SetBaseURL(srv.URL)
	f := &fixture{sim: sim, srv: srv, clock: clock, hooks: newHookReceiver(t),
		client: edgegap.NewClient(srv.URL, testKey, edgegap.WithRetries(1, 0, 0))}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sim.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
	})
	return f
}

// hookReceiver is an httptest server collecting webhook bodies.
type hookReceiver struct {
	srv    *httptest.Server
	bodies chan []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{bodies: make(chan []byte, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad webhook", http.StatusBadRequest)
			return
		}
		h.bodies <- b
		_, _ = w.Write([]byte("OK"))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// next waits for the next webhook body.
func (h *hookReceiver) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-h.bodies:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook arrived")
		return nil
	}
}

// closeAndCheckWebhooks closes the simulator, which waits for its webhook workers to finish
// every queued webhook, and then checks that the receiver has no webhook left that the test did
// not take with next, that none was dropped, and that sent were sent in all.
func (f *fixture) closeAndCheckWebhooks(t *testing.T, sent uint64) {
	t.Helper()
	if err := f.sim.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-f.hooks.bodies:
		t.Errorf("unexpected webhook: %s", b)
	default:
	}
	if st := f.sim.State().Webhooks; st.Sent != sent || st.Dropped != 0 || st.Failed != 0 {
		t.Errorf("webhooks %+v, want %d sent and none dropped or failed", st, sent)
	}
}

func (f *fixture) create(t *testing.T, req edgegap.SessionCreateRequest) string {
	t.Helper()
	if req.AppName == "" {
		req.AppName = "game"
	}
	c, err := f.client.CreateSession(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return c.SessionID
}

func (f *fixture) get(t *testing.T, id string) *edgegap.Session {
	t.Helper()
	s, err := f.client.GetSession(context.Background(), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	return s
}

// raw does an HTTP request and returns status and body.
func (f *fixture) raw(t *testing.T, method, path, auth, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envGetter turns an env map into a getenv function.
func envGetter(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newRecorder serves one request with the test API key straight through the handler.
func newRecorder(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", testKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
