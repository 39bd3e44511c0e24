package httpd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/internal/serve"
	"github.com/bevygap-go/bevygap/protocol"
)

// A request that arrives while the front door's NATS connection is reconnecting (its node
// died; the client moves to another one within seconds) waits for the connection instead of
// failing at once with "Matchmaker unavailable"; a connection that stays down still fails,
// after natsReconnectWait.
func TestRequestWaitsForNATSReconnect(t *testing.T) {
	t.Parallel()
	e1, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	port, user, password := e1.Port(), e1.User(), e1.Password()
	nc := bustest.Connect(t, e1, "httpd-reconnect")
	// The responder (the matchmaker's side) reconnects every 10 ms, the front door only every
	// second or so: the responder is usually back first.
	responder, err := nats.Connect(e1.ClientURL(), nats.UserInfo(user, password), nats.MaxReconnects(-1),
		nats.ReconnectWait(10*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(responder.Close)
	if _, err := responder.Subscribe(protocol.SubjectGenSession, func(m *nats.Msg) { _ = m.Respond([]byte(fakeGenReply)) }); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{SessionsPerMinute: -1, MaxStreamsPerIP: -1}, nc, quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		s.ServeHTTP(w, r)
	})
	ts := httptest.NewUnstartedServer(h)
	ts.Config = serve.NewServer(h, quietLog())
	ts.Start()
	t.Cleanup(ts.Close)

	post := func() (int, string) {
		resp, err := http.Post(ts.URL+"/matchmaker/wannaplay", "application/json", nil)
		if err != nil {
			t.Errorf("POST: %v", err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	e1.Shutdown()
	eventually.True(t, 10*time.Second, func() bool { return nc.Status() != nats.CONNECTED }, "front door noticed NATS is down")
	type result struct {
		code int
		body string
	}
	got := make(chan result, 1)
	go func() {
		code, body := post()
		got <- result{code, body}
	}()
	<-arrived // the request reached the front door while NATS is down
	e2, err := natsembed.Start(natsembed.Config{Port: port, User: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	// Without the wait the answer is at once 503 msgNATSDown. With it, the request goes out once
	// the front door is back: it gets the session, or — in the rare run where the front door
	// reconnected before the responder — "No service responders" from NATS.
	r := <-got
	okReply := r.code == http.StatusOK && r.body == fakeGenReply
	noResponder := r.code == http.StatusServiceUnavailable && r.body == "No service responders"
	if !okReply && !noResponder {
		t.Fatalf("request during the reconnect = %d %q, want 200 with the session", r.code, r.body)
	}

	// Down for longer than natsReconnectWait: a clear 503, not a hang.
	e2.Shutdown()
	eventually.True(t, 10*time.Second, func() bool { return nc.Status() != nats.CONNECTED }, "front door noticed NATS is down again")
	start := time.Now()
	code, body := post()
	if code != http.StatusServiceUnavailable || body != msgNATSDown {
		t.Fatalf("request with NATS down = %d %q, want 503 %q", code, body, msgNATSDown)
	}
	if took := time.Since(start); took < natsReconnectWait/2 {
		t.Fatalf("503 after %v, want it after waiting about %v for the reconnect", took, natsReconnectWait)
	}
}
