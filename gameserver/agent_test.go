package gameserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// okContext is a context server that always answers.
func okContext(t *testing.T) *contextServer {
	return newContextServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveContext(w) })
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	good := testArbitrium("http://127.0.0.1:1/ctx", "http://127.0.0.1:1/stop")
	tests := []struct {
		name   string
		mutate func(*Config)
		nc     *nats.Conn
	}{
		{"nil connection", func(*Config) {}, nil},
		{"no context URL", func(c *Config) { c.Arbitrium.ContextURL = "" }, nc},
		{"no context token", func(c *Config) { c.Arbitrium.ContextToken = "" }, nc},
		{"digest without public IP", func(c *Config) { c.CertDigest = "ab"; c.Arbitrium.PublicIP = netipZero() }, nc},
		{"idle timeout without delete token", func(c *Config) { c.IdleTimeout = time.Minute; c.Arbitrium.DeleteToken = "" }, nc},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, nc},
		{"unknown transport", func(c *Config) { c.Transport = "tcp" }, nc},
		{"webtransport without public IP", func(c *Config) {
			c.Transport = netcode.TransportWebTransport
			c.Arbitrium.PublicIP = netipZero()
		}, nc},
		{"webtransport with a digest of its own", func(c *Config) {
			c.Transport = netcode.TransportWebTransport
			c.CertDigest = "ab"
		}, nc},
		{"certificate valid too long", func(c *Config) {
			c.Transport = netcode.TransportWebTransport
			c.CertValidity = 15 * 24 * time.Hour
		}, nc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Arbitrium: good}
			tt.mutate(&cfg)
			if _, err := New(cfg, tt.nc, nil); !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := New(Config{Arbitrium: good}, nc, nil); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

func TestAuthorizeClient(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 1)
	putSession(t, js, 42, "950dd2eaff09-S")
	putSession(t, js, 18446744073709551615, "max-S")
	putSession(t, js, 43, "")
	putSession(t, js, 44, "not a.session")
	cs := okContext(t)
	a, _, _ := startAgent(t, fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")), nc)

	tests := []struct {
		name        string
		clientID    uint64
		wantSession string
		wantErr     error
	}{
		{"known client", 42, "950dd2eaff09-S", nil},
		{"known again (cached)", 42, "950dd2eaff09-S", nil},
		{"largest client id", 18446744073709551615, "max-S", nil},
		{"unknown client", 7, "", ErrUnknownClient},
		{"empty session id", 43, "", ErrUnknownClient},
		{"session id that cannot be a key", 44, "", ErrUnknownClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			got, err := a.AuthorizeClient(ctx, tt.clientID)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.wantSession {
				t.Fatalf("session = %q, want %q", got, tt.wantSession)
			}
			if errors.Is(err, ErrNATSUnavailable) {
				t.Fatal("unknown client reported as NATS trouble")
			}
		})
	}

	a.ClientConnected(42)
	if _, err := a.AuthorizeClient(t.Context(), 42); !errors.Is(err, ErrAlreadyConnected) {
		t.Fatalf("second connection of client 42: %v, want ErrAlreadyConnected", err)
	}
}

func TestAuthorizeClientNATSUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(f *fakeNATS)
		took   time.Duration // attempts × lookup + backoff, on the fake clock
	}{
		// It waits for the reconnect for AuthorizeAttempts × AuthorizeTimeout (2 × 300 ms).
		{"disconnected", func(f *fakeNATS) { f.setConnected(false) }, 2 * 300 * time.Millisecond},
		// Each lookup hangs until AuthorizeTimeout (300 ms).
		{"lookups hang", func(f *fakeNATS) { f.hang = true }, 2*300*time.Millisecond + 50*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inBubble(t, func(t *testing.T, w *fakeWorld) {
				w.nats.putSession("42", "s-42")
				tt.break_(w.nats)
				a, _ := w.newAgent(t, w.config())
				start := time.Now()
				_, err := a.AuthorizeClient(t.Context(), 42)
				if !errors.Is(err, ErrNATSUnavailable) || errors.Is(err, ErrUnknownClient) {
					t.Fatalf("err = %v, want ErrNATSUnavailable only", err)
				}
				if d := time.Since(start); d != tt.took {
					t.Fatalf("AuthorizeClient took %v with NATS down, want %v", d, tt.took)
				}
				if err := a.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
				if _, err := a.AuthorizeClient(t.Context(), 42); !errors.Is(err, ErrClosed) {
					t.Fatalf("after Close: %v, want ErrClosed", err)
				}
			})
		})
	}
}

// TestRetryBackoff: a failing write is retried after RetryMin, then twice as long each time up
// to RetryMax; the outage and its end are logged.
func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("5", "s5")
		var failed atomic.Int32
		w.nats.fail = func(op, bucket, _ string) error {
			if op == "put" && bucket == protocol.BucketActiveConnections && failed.Add(1) <= 6 {
				return errors.New("nats: timeout")
			}
			return nil
		}
		cfg := w.config() // RetryMin 20 ms, RetryMax 200 ms
		a, lb, _ := w.startAgent(t, cfg)
		a.ClientConnected(5)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got, want := w.nats.activeOps(), []kvOp{{"PUT", "s5", "5"}}; !slices.Equal(got, want) {
			t.Fatalf("writes %v, want %v", got, want)
		}
		calls := w.nats.callTimes("put " + protocol.BucketActiveConnections)
		var gaps []time.Duration
		for i := 1; i < len(calls); i++ {
			gaps = append(gaps, calls[i].Sub(calls[i-1]))
		}
		ms := time.Millisecond
		if want := []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 200 * ms, 200 * ms}; !slices.Equal(gaps, want) {
			t.Fatalf("waits between attempts %v, want %v", gaps, want)
		}
		logs := lb.String()
		for _, s := range []string{"failed; retrying with backoff", "attempt=4", "succeeded after retries", "attempts=7"} {
			if !strings.Contains(logs, s) {
				t.Errorf("log does not say %q", s)
			}
		}
		if strings.Contains(logs, "attempt=3 ") {
			t.Error("third failure logged (only 1, 2, 4, 8, … are)")
		}
	})
}

// TestPermanentWriteErrorDropsEvent: an error retrying cannot fix is not retried; the event is
// dropped and logged, and the next one is written.
func TestPermanentWriteErrorDropsEvent(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("5", "s5")
		w.nats.putSession("6", "s6")
		w.nats.fail = func(op, _, key string) error {
			if op == "put" && key == "s5" {
				return fmt.Errorf("put: %w", jetstream.ErrInvalidKey)
			}
			return nil
		}
		a, lb, _ := w.startAgent(t, w.config())
		a.ClientConnected(5)
		a.ClientConnected(6)
		synctest.Wait()
		if got, want := w.nats.activeOps(), []kvOp{{"PUT", "s6", "6"}}; !slices.Equal(got, want) {
			t.Fatalf("writes %v, want %v", got, want)
		}
		if n := len(w.nats.callTimes("put " + protocol.BucketActiveConnections)); n != 2 {
			t.Fatalf("%d puts, want 2 (no retry of the permanent failure)", n)
		}
		if a.pending() != 0 || !strings.Contains(lb.String(), "dropping event that cannot be written") {
			t.Fatalf("pending %d; log:\n%s", a.pending(), lb.String())
		}
	})
}

// TestEventsWaitForReconnect: while NATS is down the agent waits for the reconnect instead of
// backing off, keeps events in order, and writes them as soon as NATS is back.
func TestEventsWaitForReconnect(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("1", "s1")
		w.nats.putSession("2", "s2")
		cfg := w.config() // RetryMin 20 ms: the connection state is polled every 20 ms
		a, lb, _ := w.startAgent(t, cfg)
		a.ClientConnected(1)
		synctest.Wait()

		w.nats.setConnected(false)
		start := time.Now()
		a.ClientDisconnected(1)
		a.ClientConnected(2)
		if d := time.Since(start); d != 0 {
			t.Fatalf("hooks blocked for %v during an outage", d)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := a.pending(); got != 2 {
			t.Fatalf("pending = %d during the outage, want 2", got)
		}
		// The agent checks the connection before each write: nothing is tried while down.
		if n := len(w.nats.callTimes("delete " + protocol.BucketActiveConnections)); n != 0 {
			t.Fatalf("%d deletes tried while disconnected", n)
		}
		if !strings.Contains(lb.String(), "write disconnect event: failed; retrying with backoff") {
			t.Error("outage not logged")
		}

		w.nats.setConnected(true)
		time.Sleep(cfg.RetryMin)
		synctest.Wait()
		want := []kvOp{{"PUT", "s1", "1"}, {"DEL", "s1", ""}, {"PUT", "s2", "2"}}
		if got := w.nats.activeOps(); !slices.Equal(got, want) {
			t.Fatalf("writes %v within RetryMin of the reconnect, want %v", got, want)
		}
		if a.pending() != 0 {
			t.Fatalf("pending = %d after the reconnect", a.pending())
		}
	})
}

func TestConnectAndDisconnectWriteActiveConnections(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 8)
	putSession(t, js, 42, "sess-42")
	putSession(t, js, 99, "sess-99")
	cs := okContext(t)
	a, _, _ := startAgent(t, fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")), nc)
	active := kv(t, js, protocol.BucketActiveConnections)

	value := func(key string) (string, bool) {
		e, err := active.Get(t.Context(), key)
		if err != nil {
			return "", false
		}
		return string(e.Value()), true
	}

	// Client 42 goes through AuthorizeClient; client 99's netcode server never asked (the agent
	// looks the session up itself).
	if _, err := a.AuthorizeClient(t.Context(), 42); err != nil {
		t.Fatal(err)
	}
	a.ClientConnected(42)
	a.ClientConnected(99)
	eventually.True(t, 5*time.Second, func() bool {
		v42, ok42 := value("sess-42")
		v99, ok99 := value("sess-99")
		return ok42 && ok99 && v42 == "42" && v99 == "99"
	}, "active_connections puts")
	if a.Connected() != 2 {
		t.Fatalf("Connected() = %d", a.Connected())
	}

	a.ClientDisconnected(42)
	a.ClientDisconnected(99)
	a.ClientDisconnected(1234) // never connected: ignored
	eventually.True(t, 5*time.Second, func() bool {
		_, ok42 := value("sess-42")
		_, ok99 := value("sess-99")
		return !ok42 && !ok99 && a.pending() == 0
	}, "active_connections deletes")
	// The matchmaker reacts to a delete marker, not to a purge.
	e, err := active.GetRevision(t.Context(), "sess-42", lastRevision(t, active, "sess-42"))
	if err == nil || e != nil {
		t.Fatalf("last revision of sess-42 is not a delete: %v %v", e, err)
	}
	h, err := active.History(t.Context(), "sess-42")
	if err != nil || len(h) != 2 || h[0].Operation() != jetstream.KeyValuePut || h[1].Operation() != jetstream.KeyValueDelete {
		t.Fatalf("history of sess-42: %v %v", h, err)
	}
}

func lastRevision(t *testing.T, b jetstream.KeyValue, key string) uint64 {
	h, err := b.History(t.Context(), key)
	if err != nil || len(h) == 0 {
		t.Fatalf("history %s: %v", key, err)
	}
	return h[len(h)-1].Revision()
}

// kvOp is one write to active_connections as seen in its stream.
type kvOp struct{ op, key, value string }

// activeConnectionOps reads every write of active_connections, in stream order.
func activeConnectionOps(t *testing.T, js jetstream.JetStream) []kvOp {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+protocol.BucketActiveConnections)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ops []kvOp
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		op := "PUT"
		if o := m.Header.Get("KV-Operation"); o != "" {
			op = o
		}
		key := strings.TrimPrefix(m.Subject, "$KV."+protocol.BucketActiveConnections+".")
		ops = append(ops, kvOp{op, key, string(m.Data)})
	}
	return ops
}

// dedupe drops adjacent repeats (an at-least-once retry may write the same thing twice).
func dedupe(ops []kvOp) []kvOp {
	var out []kvOp
	for _, o := range ops {
		if len(out) > 0 && out[len(out)-1] == o {
			continue
		}
		out = append(out, o)
	}
	return out
}

func TestEventsSurviveNATSOutageInOrder(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 64)
	for id, s := range map[uint64]string{1: "s1", 2: "s2", 3: "s3"} {
		putSession(t, js, id, s)
	}
	cs := okContext(t)
	a, lb, _ := startAgent(t, fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")), nc)
	<-a.Ready()
	for _, id := range []uint64{1, 2, 3} {
		if _, err := a.AuthorizeClient(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	// Client 1 is connected before the outage.
	a.ClientConnected(1)
	eventually.True(t, 5*time.Second, func() bool { return a.pending() == 0 }, "first connect written")

	// Client 4's session exists, but the agent has not looked it up (4 is never authorized):
	// the lookup happens when its connect event is written, after the outage. (It is stored
	// before the outage because the writer may drain the queue as soon as NATS is back, before
	// the test could write it.)
	putSession(t, js, 4, "s4")
	testNATS.stop(t)
	eventually.True(t, 5*time.Second, func() bool { return !nc.IsConnected() }, "agent notices the outage")

	// The game keeps running (that the hooks return at once is timed on the fake clock in
	// TestEventsWaitForReconnect).
	a.ClientDisconnected(1)
	a.ClientConnected(2)
	a.ClientConnected(3)
	a.ClientDisconnected(2)
	a.ClientDisconnected(3)
	a.ClientConnected(4) // never authorized: its session is looked up after the outage
	eventually.True(t, 5*time.Second, func() bool {
		return strings.Contains(lb.String(), "write disconnect event: failed; retrying with backoff")
	}, "a write fails during the outage")
	if got := a.pending(); got != 6 {
		t.Fatalf("Pending() = %d during outage, want 6", got)
	}
	if _, err := a.AuthorizeClient(t.Context(), 5); !errors.Is(err, ErrNATSUnavailable) {
		t.Fatalf("AuthorizeClient during outage = %v, want ErrNATSUnavailable", err)
	}

	testNATS.start(t)
	eventually.True(t, 15*time.Second, func() bool { return a.pending() == 0 }, "buffered events written")

	want := []kvOp{
		{"PUT", "s1", "1"},
		{"DEL", "s1", ""},
		{"PUT", "s2", "2"},
		{"PUT", "s3", "3"},
		{"DEL", "s2", ""},
		{"DEL", "s3", ""},
		{"PUT", "s4", "4"},
	}
	got := dedupe(activeConnectionOps(t, js))
	if len(got) != len(want) {
		t.Fatalf("active_connections writes:\n got %v\nwant %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("write %d: got %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	logs := lb.String()
	for _, s := range []string{"failed; retrying with backoff", "succeeded after retries", "NATS unavailable"} {
		if !strings.Contains(logs, s) {
			t.Errorf("log does not say %q", s)
		}
	}
}

func TestCloseFlushesPendingEvents(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 8)
	putSession(t, js, 5, "s5")
	cs := okContext(t)
	log, _ := testLogger(t)
	a, err := New(fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")), nc, log)
	if err != nil {
		t.Fatal(err)
	}
	// Hooks work before Run; Close without Run writes what is queued.
	a.ClientConnected(5)
	a.ClientDisconnected(5)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := dedupe(activeConnectionOps(t, js))
	want := []kvOp{{"PUT", "s5", "5"}, {"DEL", "s5", ""}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("writes %v, want %v", got, want)
	}
	if err := a.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v", err)
	}
}

func TestCloseIsBoundedWhenNATSIsGone(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 1)
	putSession(t, js, 6, "s6")
	cs := okContext(t)
	cfg := fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop"))
	cfg.FlushTimeout = 200 * time.Millisecond
	a, _, runErr := startAgent(t, cfg, nc)
	<-a.Ready()
	nc.Close()
	a.ClientConnected(6)

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err := a.Close(ctx)
	if !errors.Is(err, ErrUnflushed) {
		t.Fatalf("Close = %v, want ErrUnflushed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v; FlushTimeout is 200ms", d)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func netipZero() (z netip.Addr) { return z }

func TestBucketPrefix(t *testing.T) {
	nc := connect(t)
	resetBuckets(t, nc, 1)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts := bus.BucketOptions{Prefix: "spacepit_"}
	for _, c := range bus.GameServerBucketConfigs(opts) {
		_ = js.DeleteKeyValue(t.Context(), c.Bucket)
		if _, err := js.CreateKeyValue(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv(t, js, "spacepit_sessions_ly2eg").Put(t.Context(), "77", []byte("p-77")); err != nil {
		t.Fatal(err)
	}
	cs := okContext(t)
	cfg := fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop"))
	cfg.Buckets = opts
	a, _, _ := startAgent(t, cfg, nc)
	if s, err := a.AuthorizeClient(t.Context(), 77); err != nil || s != "p-77" {
		t.Fatalf("AuthorizeClient = %q, %v", s, err)
	}
	a.ClientConnected(77)
	eventually.True(t, 5*time.Second, func() bool {
		e, err := kv(t, js, "spacepit_active_connections").Get(t.Context(), "p-77")
		return err == nil && string(e.Value()) == "77"
	}, "prefixed active_connections put")
	if _, err := kv(t, js, protocol.BucketActiveConnections).Get(t.Context(), "p-77"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("unprefixed bucket written: %v", err)
	}

	cfg.Buckets.Prefix = "bad.prefix"
	if _, err := New(cfg, nc, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad prefix accepted: %v", err)
	}
}

func TestDisconnectsAfterRunReturnedAreFlushedByClose(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 8)
	putSession(t, js, 11, "s11")
	cs := okContext(t)
	log, _ := testLogger(t)
	a, err := New(fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")), nc, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	a.ClientConnected(11)
	eventually.True(t, 5*time.Second, func() bool { return a.pending() == 0 }, "connect written")

	// SIGTERM: the signal context ends Run first, then the game kicks its players, then Close.
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v", err)
	}
	a.ClientDisconnected(11)
	cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer ccancel()
	if err := a.Close(cctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	got := dedupe(activeConnectionOps(t, js))
	want := []kvOp{{"PUT", "s11", "11"}, {"DEL", "s11", ""}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("writes %v, want %v", got, want)
	}
}
