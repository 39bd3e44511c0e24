package httpd

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// A matchmaker that goes silent (killed while the request waits) ends the WebSocket after the
// idle timeout with a clear error, instead of at the stream timeout; the request is canceled.
func TestWSIdleTimeout(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{StreamIdleTimeout: 300 * time.Millisecond})
	w := watchCancels(t, s)
	start := time.Now()
	res := wsSession(t, s.wsURL(), nil, `{"game":"hang","version":"1"}`, false)
	equalFrames(t, res.frames, []string{`"Acknowledged"`, "ERR " + msgMMLost})
	if res.code != websocket.StatusTryAgainLater {
		t.Fatalf("close code %d", res.code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("ended after %v", took)
	}
	w.canceled(t, "hang", w.reply(t))
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeMMLost)) == 1
	}, "requests{ws,mm_lost} = 1")
}

// The same over chunked HTTP: the stream ends with a 503 Error line.
func TestStreamIdleTimeout(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{StreamIdleTimeout: 300 * time.Millisecond})
	w := watchCancels(t, s)
	resp, err := http.Post(s.ts.URL+"/matchmaker/request/hang/1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if want := "\"Acknowledged\"\n{\"Error\":[503,\"" + msgMMLost + "\"]}\n"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	w.canceled(t, "hang", w.reply(t))
}

// Every message from the matchmaker re-arms the idle timeout: a request that hears from its
// matchmaker more often than that is never cut short, however long it takes.
func TestIdleTimeoutIsResetByEveryMessage(t *testing.T) {
	const idle = 600 * time.Millisecond
	nc := connect(t)
	ready := protocol.Ready(protocol.SessionReady{Token: fakeToken, IP: "1.2.3.4", Port: 32041})
	sub, err := nc.Subscribe("matchmaker.request.ticking.3", func(m *nats.Msg) {
		go func() {
			_ = m.Respond(mustMarshal(protocol.Acknowledged()))
			for range 8 { // a message every idle/6, 8 of them: longer than the idle timeout in all
				time.Sleep(idle / 6)
				_ = m.Respond(mustMarshal(protocol.Progress("Still working")))
			}
			_ = m.Respond(mustMarshal(ready))
			_ = m.Respond(nil)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, Config{StreamIdleTimeout: idle})
	res := wsSession(t, s.wsURL(), nil, `{"game":"ticking","version":"3"}`, false)
	if n := len(res.frames); n != 10 || res.frames[n-1] != string(mustMarshal(ready)) || res.code != websocket.StatusNormalClosure {
		t.Fatalf("WebSocket: %d frames, last %q, close %d", n, res.frames[max(0, n-1)], res.code)
	}
	resp, err := http.Post(s.ts.URL+"/matchmaker/request/ticking/3", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if got := string(body); len(got) < 20 || got[len(got)-len(mustMarshal(ready))-1:] != string(mustMarshal(ready))+"\n" {
		t.Fatalf("chunked body %q: want it to end with SessionReady", got)
	}
}
