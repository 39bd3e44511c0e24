package httpd

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/serve"
)

// wsResult is everything a client saw on one matchmaker WebSocket.
type wsResult struct {
	frames []string
	code   websocket.StatusCode // -1: no close frame
	reason string
}

// wsSession dials url as an independent client would (the websocket library's client, no
// server code), sends first (unless empty), and reads until the connection ends.
func wsSession(t *testing.T, url string, hdr http.Header, first string, binary bool) wsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, code)
	}
	defer c.CloseNow()
	if first != "" {
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		if err := c.Write(ctx, typ, []byte(first)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	return readAll(ctx, t, c)
}

func readAll(ctx context.Context, t *testing.T, c *websocket.Conn) wsResult {
	t.Helper()
	var res wsResult
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			res.code = websocket.CloseStatus(err)
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				res.reason = ce.Reason
			}
			return res
		}
		if typ != websocket.MessageText {
			t.Errorf("got a binary frame %q", b)
		}
		res.frames = append(res.frames, string(b))
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func equalFrames(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("frames:\n got %q\nwant %q", got, want)
	}
}

func TestWSHappyPath(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{})
	res := wsSession(t, s.wsURL(), nil, `{"game":"happy","version":"1","client_ip":null}`, false)
	equalFrames(t, res.frames, []string{
		`"Acknowledged"`,
		`{"SessionRequestAccepted":"950dd2eaff09-S"}`,
		`{"ProgressReport":"Waiting for game server"}`,
		`{"SessionReady":{"token":"AAECAw==","ip":"1.2.3.4","port":32041,"cert_digest":"ab:cd"}}`,
	})
	if res.code != websocket.StatusNormalClosure || res.reason != "Goodbye" {
		t.Fatalf("close = %d %q, want 1000 Goodbye", res.code, res.reason)
	}
	// Loopback client: the stand-in address goes to the matchmaker, in the reference's field order.
	if got, want := f.lastRequest(), `{"client_ip":"81.128.157.100","game":"happy","version":"1"}`; got != want {
		t.Fatalf("matchmaker request = %s, want %s", got, want)
	}
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeReady)) == 1
	}, "requests{ws,ready} = 1")
	if n := int(metricValue(t, s.metrics.timeToReady)); n != 1 {
		t.Fatalf("time to ready series = %d", n)
	}
	eventually.True(t, 5*time.Second, func() bool { return metricValue(t, s.metrics.openWS) == 0 }, "open websockets to drop to 0")
}

func TestWSRelaysBytesUnchanged(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	res := wsSession(t, s.wsURL(), nil, `{"game":"raw","version":"1","client_ip":null}`, false)
	equalFrames(t, res.frames, []string{`{"ProgressReport":"a<b>&c \u00e9"}`, `{"Unknown":1}`, `"Acknowledged"`})
	if res.code != websocket.StatusNormalClosure || res.reason != "Goodbye" {
		t.Fatalf("close = %d %q", res.code, res.reason)
	}
}

func TestWSMatchmakerError(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	res := wsSession(t, s.wsURL(), nil, `{"game":"mmerror","version":"1"}`, false)
	equalFrames(t, res.frames, []string{`"Acknowledged"`, `{"Error":[409,"App version is disabled"]}`})
	if res.code != websocket.StatusNormalClosure || res.reason != "Goodbye" {
		t.Fatalf("close = %d %q", res.code, res.reason)
	}
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeMMError)) == 1
	}, "requests{ws,mm_error} = 1")
}

// After a final message the server waits finalGrace for the end message, then says Goodbye
// itself (were the grace not kept, the stream timeout would end it with an ERR frame).
func TestWSEndsAfterFinalWithoutTerminator(t *testing.T) {
	startFake(t)
	const grace = 100 * time.Millisecond
	s := newTestServer(t, Config{}, withFinalGrace(grace))
	start := time.Now()
	res := wsSession(t, s.wsURL(), nil, `{"game":"noend","version":"1"}`, false)
	if len(res.frames) != 2 || res.code != websocket.StatusNormalClosure || res.reason != "Goodbye" {
		t.Fatalf("got %q close %d %q", res.frames, res.code, res.reason)
	}
	if d := time.Since(start); d < grace {
		t.Fatalf("closed after %v, before the grace of %v", d, grace)
	}
}

func TestWSClientIP(t *testing.T) {
	startFake(t)
	tests := []struct {
		name    string
		cfg     Config
		query   string
		message string
		want    string
	}{
		{"loopback peer gets stand-in", Config{}, "", `null`, "81.128.157.100"},
		{"custom stand-in", Config{StandInIP: mustAddr("198.51.100.1")}, "", `null`, "198.51.100.1"},
		{"message override", Config{}, "", `"203.0.113.7"`, "203.0.113.7"},
		{"empty message override ignored", Config{}, "", `""`, "81.128.157.100"},
		{"query override wins", Config{}, "?client_ip=203.0.113.8", `"203.0.113.7"`, "203.0.113.8"},
		{"ipv6 override", Config{}, "", `"2001:db8::1"`, "2001:db8::1"},
		{"private override gets stand-in", Config{}, "", `"192.168.1.5"`, "81.128.157.100"},
		{"override disabled", Config{DisableClientIPOverride: true}, "?client_ip=203.0.113.8", `"203.0.113.7"`, "81.128.157.100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg)
			res := wsSession(t, s.wsURL()+tt.query, nil, `{"game":"echo","version":"1","client_ip":`+tt.message+`}`, false)
			equalFrames(t, res.frames, []string{`{"ProgressReport":"` + tt.want + `"}`})
		})
	}
}

func TestWSErrors(t *testing.T) {
	f := startFake(t)
	long := strings.Repeat("v", 31)
	tests := []struct {
		name   string
		first  string
		binary bool
		want   string // the ERR frame
		code   websocket.StatusCode
	}{
		{"bad json", `{"game":`, false, "ERR Failed to parse request message as RequestSession: ", websocket.StatusPolicyViolation},
		{"wrong type", `{"game":1,"version":"1"}`, false, "ERR Failed to parse request message as RequestSession: ", websocket.StatusPolicyViolation},
		{"binary", `{"game":"happy","version":"1"}`, true, "ERR Expected text message, got binary", websocket.StatusUnsupportedData},
		{"bad game", `{"game":"a.b","version":"1"}`, false, "ERR Game name invalid", websocket.StatusPolicyViolation},
		{"missing game", `{"version":"1"}`, false, "ERR Game name invalid", websocket.StatusPolicyViolation},
		{"long version", `{"game":"happy","version":"` + long + `"}`, false, "ERR Game version too long (max 30 chars)", websocket.StatusPolicyViolation},
		{"bad client ip", `{"game":"happy","version":"1","client_ip":"nope"}`, false, "ERR Invalid client_ip", websocket.StatusPolicyViolation},
		{"no matchmaker", `{"game":"happy","version":"2"}`, false, "ERR No matchmaker is serving this game and version", websocket.StatusTryAgainLater},
	}
	s := newTestServer(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := wsSession(t, s.wsURL(), nil, tt.first, tt.binary)
			if len(res.frames) != 1 || !strings.HasPrefix(res.frames[0], tt.want) {
				t.Fatalf("frames %q, want one starting with %q", res.frames, tt.want)
			}
			if res.code != tt.code {
				t.Fatalf("close code %d, want %d (reason %q)", res.code, tt.code, res.reason)
			}
		})
	}
	// Nothing above may reach the matchmaker ("no matchmaker" asks version 2, which it does not serve).
	if n, _ := f.count(); n != 0 {
		t.Fatalf("matchmaker saw %d requests", n)
	}
}

// TestWSFirstMessageTimeout runs on fake time over an in-memory network: a client that sends
// nothing is told so exactly FirstMessageTimeout (the default, 10 s) after the upgrade.
func TestWSFirstMessageTimeout(t *testing.T) {
	t.Parallel()
	// The NATS connection is made outside the bubble (real network); this test never uses it.
	s, err := New(Config{}, connect(t), quietLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		hs := serve.NewServer(s, quietLog())
		served := make(chan error, 1)
		go func() { served <- hs.Serve(pn) }()
		hc := &http.Client{Transport: &http.Transport{DialContext: pn.DialContext}}
		ctx := context.Background()
		c, _, err := websocket.Dial(ctx, "ws://front.test/matchmaker/ws", &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res := readAll(ctx, t, c)
		if d := time.Since(start); d != DefaultFirstMessageTimeout {
			t.Errorf("ended after %v, want %v", d, DefaultFirstMessageTimeout)
		}
		equalFrames(t, res.frames, []string{"ERR Timeout waiting for websocket request message: 10s"})
		if res.code != websocket.StatusPolicyViolation {
			t.Errorf("close code %d", res.code)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		_ = hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	if n := metricValue(t, s.metrics.rejects.WithLabelValues("first_message_timeout")); n != 1 {
		t.Fatalf("rejects{first_message_timeout} = %v", n)
	}
}

func TestWSStreamTimeout(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{StreamTimeout: 300 * time.Millisecond})
	res := wsSession(t, s.wsURL(), nil, `{"game":"hang","version":"1"}`, false)
	equalFrames(t, res.frames, []string{`"Acknowledged"`, "ERR Timeout waiting for matchmaker"})
	if res.code != websocket.StatusTryAgainLater {
		t.Fatalf("close code %d", res.code)
	}
}

// openHanging dials and sends a request that the fake acknowledges and then never finishes.
func openHanging(t *testing.T, s *testServer) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"hang","version":"1"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil || string(b) != `"Acknowledged"` {
		t.Fatalf("first frame %q, %v", b, err)
	}
	return c
}

func TestWSClientLeavesMidWait(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	c := openHanging(t, s)
	if s.replies.pending() != 1 || s.streams.open() != 1 {
		t.Fatalf("pending %d open %d, want 1 1", s.replies.pending(), s.streams.open())
	}
	_ = c.CloseNow()
	eventually.True(t, 5*time.Second, func() bool {
		return s.replies.pending() == 0 && s.streams.open() == 0 && metricValue(t, s.metrics.openWS) == 0
	}, "server to forget the client")
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeClientGone)) == 1
	}, "outcome client_gone")
}

func TestWSShutdown(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	waiting := openHanging(t, s)
	// A second client that has not sent its request yet.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	idle, _, err := websocket.Dial(ctx, s.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, func() bool { return s.streams.open() == 2 }, "two open streams")

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	for _, c := range []*websocket.Conn{waiting, idle} {
		res := readAll(ctx, t, c)
		equalFrames(t, res.frames, []string{"ERR server shutting down"})
		if res.code != websocket.StatusGoingAway {
			t.Fatalf("close code %d", res.code)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// No new sessions after shutdown.
	_, resp, err := websocket.Dial(ctx, s.wsURL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", err, resp)
	}
}

func TestWSRateLimit(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{SessionsPerMinute: 1, SessionBurst: 2})
	for i := 0; i < 2; i++ {
		res := wsSession(t, s.wsURL(), nil, `{"game":"mmerror","version":"1"}`, false)
		if len(res.frames) != 2 {
			t.Fatalf("request %d: %q", i, res.frames)
		}
	}
	res := wsSession(t, s.wsURL(), nil, `{"game":"mmerror","version":"1"}`, false)
	equalFrames(t, res.frames, []string{"ERR rate limited"})
	if res.code != websocket.StatusTryAgainLater {
		t.Fatalf("close code %d", res.code)
	}
}

func TestWSConnectionCaps(t *testing.T) {
	startFake(t)
	tests := []struct {
		name string
		cfg  Config
		code int
	}{
		{"per ip", Config{MaxStreamsPerIP: 1}, http.StatusTooManyRequests},
		{"total", Config{MaxStreams: 1}, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg)
			first := openHanging(t, s)
			defer first.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, s.wsURL(), nil)
			if err == nil || resp == nil || resp.StatusCode != tt.code {
				t.Fatalf("second dial: %v %v, want HTTP %d", err, resp, tt.code)
			}
		})
	}
}

func TestWSOrigin(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{AllowedOrigins: []string{"https://game.example"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, s.wsURL(), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	res := wsSession(t, s.wsURL(), http.Header{"Origin": {"https://game.example"}}, `{"game":"happy","version":"1"}`, false)
	if len(res.frames) != 4 {
		t.Fatalf("allowed origin: %q", res.frames)
	}
}

// A waiting WebSocket must outlive the http.Server's ReadTimeout (hijacked connections have
// their own timeouts).
func TestWSOutlivesServerReadTimeout(t *testing.T) {
	f := startFake(t)
	const readTimeout = 100 * time.Millisecond
	s := newTestServer(t, Config{}, withReadTimeout(readTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"gated","version":"1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != `"Acknowledged"` {
		t.Fatalf("first frame %q %v", b, err)
	}
	time.Sleep(3 * readTimeout) // the connection's read deadline would have passed by now
	close(f.release)
	res := readAll(ctx, t, c)
	if len(res.frames) != 1 || !strings.HasPrefix(res.frames[0], `{"SessionReady":`) || res.reason != "Goodbye" {
		t.Fatalf("got %q close %d %q", res.frames, res.code, res.reason)
	}
}

func TestWSDataWhileWaitingIsRefused(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	c := openHanging(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"happy","version":"1"}`)); err != nil {
		t.Fatal(err)
	}
	res := readAll(ctx, t, c)
	equalFrames(t, res.frames, []string{"ERR unexpected message while waiting for the matchmaker"})
	if res.code != websocket.StatusPolicyViolation {
		t.Fatalf("close code %d", res.code)
	}
	eventually.True(t, 5*time.Second, func() bool { return s.replies.pending() == 0 && s.streams.open() == 0 }, "waiter released")
}

func TestWSMessageSizeLimit(t *testing.T) {
	f := startFake(t)
	s := newTestServer(t, Config{MaxMessageBytes: 64})
	res := wsSession(t, s.wsURL(), nil, `{"game":"happy","version":"1","client_ip":null,"padding":"`+strings.Repeat("x", 100)+`"}`, false)
	if len(res.frames) != 0 || res.code != websocket.StatusMessageTooBig {
		t.Fatalf("got %q close %d", res.frames, res.code)
	}
	if n, _ := f.count(); n != 0 {
		t.Fatal("oversized request reached the matchmaker")
	}
}

func TestCloseReason(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes
	got := closeReason(long)
	if len(got) > 123 || !utf8.ValidString(got) || !strings.HasPrefix(long, got) {
		t.Fatalf("closeReason: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if closeReason("Goodbye") != "Goodbye" {
		t.Fatal("short reason changed")
	}
}

// A client that hangs up once it has its SessionReady (before the Goodbye) still counts as ready.
func TestWSClientLeavesAfterReadyCountsAsReady(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"game":"noend","version":"1"}`)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.CloseNow()
	eventually.True(t, 5*time.Second, func() bool {
		return metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeReady)) == 1
	}, "requests{ws,ready} = 1")
	if n := metricValue(t, s.metrics.requests.WithLabelValues(routeWS, outcomeClientGone)); n != 0 {
		t.Fatalf("counted as client_gone %v times", n)
	}
}

// TestNothingAfterTheFinal: once the final feedback is relayed, the front door sends the client
// nothing more but ends the stream: a matchmaker resends its final (matchmaker.resendFinal),
// and a second SessionReady must not reach a client that got the first.
func TestNothingAfterTheFinal(t *testing.T) {
	startFake(t)
	s := newTestServer(t, Config{})
	ready := `{"SessionReady":{"token":"AAECAw==","ip":"1.2.3.4","port":32041,"cert_digest":"ab:cd"}}`
	t.Run("ws", func(t *testing.T) {
		res := wsSession(t, s.wsURL(), nil, `{"game":"twice","version":"1","client_ip":null}`, false)
		equalFrames(t, res.frames, []string{`"Acknowledged"`, ready})
		if res.code != websocket.StatusNormalClosure {
			t.Fatalf("close = %d %q", res.code, res.reason)
		}
	})
	t.Run("http", func(t *testing.T) {
		resp, body := do(t, "POST", s.ts.URL+"/matchmaker/request/twice/1", nil, "")
		if want := `"Acknowledged"` + "\n" + ready + "\n"; resp.StatusCode != 200 || body != want {
			t.Fatalf("%d body:\n%s\nwant:\n%s", resp.StatusCode, body, want)
		}
	})
}
