package httpd

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// cancelWatch sees, on a connection of the test's own, the streaming requests a front door
// publishes (for their reply subjects) and the cancels on matchmaker.cancel.*.1.
type cancelWatch struct {
	s       *testServer
	nc      *nats.Conn
	reqs    *nats.Subscription
	cancels *nats.Subscription
}

func watchCancels(t *testing.T, s *testServer) *cancelWatch {
	t.Helper()
	nc := connect(t)
	reqs, err := nc.SubscribeSync(protocol.SubjectMatchmakerRequestPrefix + ".*.1")
	if err != nil {
		t.Fatal(err)
	}
	cancels, err := nc.SubscribeSync(protocol.SubjectMatchmakerCancelPrefix + ".*.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &cancelWatch{s: s, nc: nc, reqs: reqs, cancels: cancels}
}

// reply returns the reply subject of the next request s published.
func (w *cancelWatch) reply(t *testing.T) string {
	t.Helper()
	for {
		msg, err := w.reqs.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no request seen: %v", err)
		}
		if strings.HasPrefix(msg.Reply, w.s.replies.prefix) {
			return msg.Reply
		}
	}
}

// canceled waits for the cancel of the request answered on reply, for game.
func (w *cancelWatch) canceled(t *testing.T, game, reply string) {
	t.Helper()
	want, _ := protocol.MatchmakerCancelSubject(game, "1")
	for {
		msg, err := w.cancels.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no cancel for %s: %v", reply, err)
		}
		if string(msg.Data) == reply {
			if msg.Subject != want {
				t.Fatalf("cancel on %s, want %s", msg.Subject, want)
			}
			return
		}
	}
}

// none checks that no cancel was published for reply. Call it once the front door has counted
// the request (the cancel is published before): flushing its connection and then ours leaves
// any cancel it published in our subscription's pending messages.
func (w *cancelWatch) none(t *testing.T, reply string) {
	t.Helper()
	if err := w.s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n, _, err := w.cancels.Pending()
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		msg, err := w.cancels.NextMsg(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg.Data) == reply {
			t.Fatalf("cancel published for %s after a final feedback", reply)
		}
	}
}

// A WebSocket request given up before the final feedback is canceled: the client closed after
// "Acknowledged", or the front door's stream deadline passed.
func TestCancelWhenWSRequestIsGivenUp(t *testing.T) {
	startFake(t)
	for _, tc := range []struct {
		name    string
		cfg     Config
		giveUp  func(*websocket.Conn)
		outcome string
	}{
		{"client closes", Config{}, func(c *websocket.Conn) { _ = c.CloseNow() }, outcomeClientGone},
		{"client says goodbye", Config{}, func(c *websocket.Conn) { _ = c.Close(websocket.StatusNormalClosure, "bye") }, outcomeClientGone},
		{"stream timeout", Config{StreamTimeout: 300 * time.Millisecond}, func(c *websocket.Conn) {
			for { // read on (the error frame, then the close handshake)
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
			}
		}, outcomeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.cfg)
			w := watchCancels(t, s)
			c := openHanging(t, s)
			defer func() { _ = c.CloseNow() }()
			reply := w.reply(t)
			tc.giveUp(c)
			w.canceled(t, "hang", reply)
			eventually.True(t, 5*time.Second, func() bool {
				return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, tc.outcome)) == 1
			}, "requests{ws,%s} = 1", tc.outcome)
		})
	}
}

// A chunked HTTP request whose client disconnects before the final feedback is canceled.
func TestCancelWhenStreamClientLeaves(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	w := watchCancels(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rctx, leave := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "POST", s.ts.URL+"/matchmaker/request/hang/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "\"Acknowledged\"\n" {
		t.Fatalf("first line %q", line)
	}
	reply := w.reply(t)
	leave()
	w.canceled(t, "hang", reply)
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeStream, outcomeClientGone)) == 1
	}, "requests{stream,client_gone} = 1")
}

// No cancel once the matchmaker has sent its final feedback (SessionReady or Error), even when
// the client hangs up before the end-of-stream message.
func TestNoCancelAfterFinalFeedback(t *testing.T) {
	startFake(t)
	wsRun := func(game string, frames int) func(*testing.T, *testServer) {
		return func(t *testing.T, s *testServer) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, s.wsURL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.CloseNow() }()
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"`+game+`","version":"1"}`)); err != nil {
				t.Fatal(err)
			}
			for range frames {
				if _, _, err := c.Read(ctx); err != nil {
					t.Fatal(err)
				}
			}
			_ = c.CloseNow()
		}
	}
	httpRun := func(game string) func(*testing.T, *testServer) {
		return func(t *testing.T, s *testServer) {
			resp, err := http.Post(s.ts.URL+"/matchmaker/request/"+game+"/1", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}
	for _, tc := range []struct {
		name    string
		run     func(*testing.T, *testServer)
		route   string
		outcome string
	}{
		{"ws ready then hang up", wsRun("noend", 2), routeWS, outcomeReady},
		{"ws ready", wsRun("happy", 4), routeWS, outcomeReady},
		{"ws matchmaker error", wsRun("mmerror", 2), routeWS, outcomeMMError},
		{"http ready", httpRun("happy"), routeStream, outcomeReady},
		{"http matchmaker error", httpRun("mmerror"), routeStream, outcomeMMError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			w := watchCancels(t, s)
			tc.run(t, s)
			reply := w.reply(t)
			eventually.True(t, 5*time.Second, func() bool {
				return metricValue(t, s.metrics.requests.WithLabelValues(tc.route, tc.outcome)) == 1
			}, "requests{%s,%s} = 1", tc.route, tc.outcome)
			w.none(t, reply)
		})
	}
}

func TestAbandons(t *testing.T) {
	t.Parallel()
	for outcome, want := range map[string]bool{
		outcomeReady: false, outcomeMMError: false, outcomeEnded: false, outcomeNoMatchmaker: false,
		outcomeClientGone: true, outcomeTimeout: true, outcomeShutdown: true, outcomeFailed: true, outcomeRejected: true,
	} {
		if got := abandons(outcome); got != want {
			t.Errorf("abandons(%q) = %v, want %v", outcome, got, want)
		}
	}
}
