package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

const (
	acknowledged = `"Acknowledged"`
	accepted     = `{"SessionRequestAccepted":"sess-123"}`
	progress     = `{"ProgressReport":"Waiting for game server"}`
)

// progressLog collects the progress steps of a request as strings.
type progressLog struct{ steps []string }

func (p *progressLog) add(pr Progress) { p.steps = append(p.steps, pr.String()) }

func TestRequestWebSocketSuccess(t *testing.T) {
	t.Parallel()
	b64, tok := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	fd := newFakeFrontDoor(t, script{messages: []message{
		text(acknowledged), text(accepted), text(progress),
		text(readyJSON(t, b64, "127.0.0.1", 40123, "ab:cd")),
	}})
	var pl progressLog
	s, err := Request(context.Background(), fd.wsURL(), "bevygap-spaceships", "1", Options{OnProgress: pl.add})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	got := fd.last()
	if want := `{"game":"bevygap-spaceships","version":"1","client_ip":null}`; got.frame != want {
		t.Errorf("request frame:\n got %s\nwant %s", got.frame, want)
	}
	if got.query.Has("client_ip") {
		t.Errorf("client_ip query sent without Options.ClientIP: %v", got.query)
	}
	if got.closeErr != nil {
		t.Errorf("closing handshake was not clean from the server's side: %v", got.closeErr)
	}
	if s.SessionID != "sess-123" || s.ServerAddr != netip.MustParseAddrPort("127.0.0.1:40123") || s.CertDigest != "ab:cd" {
		t.Errorf("session = %+v", s)
	}
	if s.TokenBase64 != b64 || !bytes.Equal(s.Token, tok.Bytes()) || len(s.Token) != netcode.ConnectTokenBytes {
		t.Errorf("token not handed over intact")
	}
	if s.ConnectToken == nil || s.ConnectToken.ProtocolID != 1982 ||
		!reflect.DeepEqual(s.ConnectToken.ServerAddrs, tok.ServerAddrs) ||
		s.ConnectToken.ExpireTimestamp != tok.ExpireTimestamp {
		t.Errorf("decoded token = %+v", s.ConnectToken)
	}
	if exp := s.ExpiresAt(); exp.Unix() != int64(tok.ExpireTimestamp) {
		t.Errorf("ExpiresAt = %v", exp)
	}
	wantSteps := []string{
		"Request",
		"AwaitingResponse(Requesting ...)",
		"AwaitingResponse(Request acknowledged)",
		"AwaitingResponse(Session created: sess-123)",
		"AwaitingResponse(Progress: Waiting for game server)",
		"ReadyToConnect",
		"Finished",
	}
	if !reflect.DeepEqual(pl.steps, wantSteps) {
		t.Errorf("progress:\n got %q\nwant %q", pl.steps, wantSteps)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("got", "session", s, "value", *s)
	if !strings.Contains(logged.String(), "session.session_id=sess-123 session.server=127.0.0.1:40123") {
		t.Errorf("slog output: %s", logged.String())
	}
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, *s, *s, *s), logged.String()} {
		if strings.Contains(out, b64[:40]) {
			t.Errorf("session printing shows the token: %s", out)
		}
	}
}

func TestRequestClientIP(t *testing.T) {
	t.Parallel()
	b64, _ := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	for _, tr := range []Transport{TransportWebSocket, TransportHTTP} {
		t.Run(tr.String(), func(t *testing.T) {
			t.Parallel()
			fd := newFakeFrontDoor(t, script{messages: []message{text(readyJSON(t, b64, "127.0.0.1", 40123, "") + "\n")}})
			_, err := Request(context.Background(), fd.srv.URL, "g", "v", Options{ClientIP: "81.128.157.100", Transport: tr})
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			got := fd.last()
			if q := got.query.Get("client_ip"); q != "81.128.157.100" {
				t.Errorf("client_ip query = %q", q)
			}
			if tr == TransportWebSocket {
				if want := `{"game":"g","version":"v","client_ip":"81.128.157.100"}`; got.frame != want {
					t.Errorf("request frame:\n got %s\nwant %s", got.frame, want)
				}
			}
		})
	}
}

func TestRequestWebSocketFailures(t *testing.T) {
	t.Parallel()
	b64, _ := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	b64v20, _ := testToken(t, netcode.FormatLightyear020, "127.0.0.1:40123")
	short := "AAAA"
	tests := []struct {
		name     string
		script   script
		opts     Options
		wantIs   error  // errors.Is target
		wantAs   any    // pointer to a typed error to errors.As into, compared with wantVal
		wantVal  any    // the expected typed error value
		wantLast string // last progress step
	}{
		{
			name:   "ERR frame then abrupt close",
			script: script{messages: []message{text("ERR Timeout waiting for websocket request message: 10s")}, end: endAbrupt},
			wantAs: new(*ServerError), wantVal: &ServerError{Message: "Timeout waiting for websocket request message: 10s"},
			wantLast: "Error(0, matchmaker front door error: Timeout waiting for websocket request message: 10s)",
		},
		{
			name:   "ERR frame after progress",
			script: script{messages: []message{text(acknowledged), text("ERR Can't send chunk to ws client")}, end: endGoodbye},
			wantAs: new(*ServerError), wantVal: &ServerError{Message: "Can't send chunk to ws client"},
		},
		{
			name:   "matchmaker error",
			script: script{messages: []message{text(acknowledged), text(accepted), text(`{"Error":[504,"Game server not ready in time"]}`)}},
			wantAs: new(*MatchmakerError), wantVal: &MatchmakerError{Code: 504, Message: "Game server not ready in time"},
			wantLast: "Error(504, Game server not ready in time)",
		},
		{
			name:   "non-JSON frame",
			script: script{messages: []message{text("hello there")}},
			wantIs: ErrProtocol,
		},
		{
			name:   "ERR without space is not an ERR frame",
			script: script{messages: []message{text("ERROR")}},
			wantIs: ErrProtocol,
		},
		{
			name:   "message too long",
			script: script{messages: []message{text(`{"ProgressReport":"` + strings.Repeat("x", maxMessageBytes) + `"}`)}},
			wantIs: ErrProtocol,
		},
		{
			name:   "unknown feedback variant",
			script: script{messages: []message{text(`{"Queued":3}`)}},
			wantIs: ErrProtocol,
		},
		{
			name:   "normal close before the session is ready",
			script: script{messages: []message{text(acknowledged)}, end: endGoodbye},
			wantIs: ErrStreamEnded,
		},
		{
			name:   "close 1011",
			script: script{messages: []message{text(acknowledged)}, end: endClose1011},
			wantIs: ErrStreamEnded,
		},
		{
			name:   "abrupt close",
			script: script{messages: []message{text(acknowledged), text(accepted)}, end: endAbrupt},
			wantIs: ErrStreamEnded,
		},
		{
			name:   "server never answers",
			script: script{end: endHang},
			opts:   Options{Timeout: 200 * time.Millisecond},
			wantIs: ErrTimeout,
		},
		{
			name:   "token not base64",
			script: script{messages: []message{text(readyJSON(t, "not base64!", "127.0.0.1", 40123, ""))}},
			wantIs: ErrInvalidSession,
		},
		{
			name:   "token too short",
			script: script{messages: []message{text(readyJSON(t, short, "127.0.0.1", 40123, ""))}},
			wantIs: netcode.ErrTokenSize,
		},
		{
			name:   "token in the other byte order",
			script: script{messages: []message{text(readyJSON(t, b64v20, "127.0.0.1", 40123, ""))}},
			wantIs: ErrInvalidSession,
		},
		{
			name:   "ip is not an address",
			script: script{messages: []message{text(readyJSON(t, b64, "game.example", 40123, ""))}},
			wantIs: ErrInvalidSession,
		},
		{
			name:   "port 0",
			script: script{messages: []message{text(readyJSON(t, b64, "127.0.0.1", 0, ""))}},
			wantIs: ErrInvalidSession,
		},
		{
			name:   "HTTP refusal",
			script: script{status: http.StatusTooManyRequests},
			wantAs: new(*StatusError), wantVal: &StatusError{StatusCode: 429, Body: "refused by test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fd := newFakeFrontDoor(t, tt.script)
			var pl progressLog
			tt.opts.OnProgress = pl.add
			s, err := Request(context.Background(), fd.wsURL(), "bevygap-spaceships", "1", tt.opts)
			if err == nil {
				t.Fatalf("Request succeeded with %v", s)
			}
			if s != nil {
				t.Errorf("session %v returned with error", s)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if tt.wantAs != nil {
				if !errors.As(err, tt.wantAs) {
					t.Fatalf("error %q (%T) is not %T", err, err, tt.wantAs)
				}
				if got := reflect.ValueOf(tt.wantAs).Elem().Interface(); !reflect.DeepEqual(got, tt.wantVal) {
					t.Errorf("typed error = %#v, want %#v", got, tt.wantVal)
				}
			}
			if len(pl.steps) == 0 || !strings.HasPrefix(pl.steps[len(pl.steps)-1], "Error(") {
				t.Errorf("last progress step is not Error: %q", pl.steps)
			} else if tt.wantLast != "" && pl.steps[len(pl.steps)-1] != tt.wantLast {
				t.Errorf("last progress step = %q, want %q", pl.steps[len(pl.steps)-1], tt.wantLast)
			}
			fd.last() // the server side finished too (no goroutine left hanging)
		})
	}
}

func TestRequestTokenFormat(t *testing.T) {
	t.Parallel()
	b64, tok := testToken(t, netcode.FormatLightyear020, "[::1]:5000")
	fd := newFakeFrontDoor(t, script{messages: []message{text(readyJSON(t, b64, "::1", 5000, ""))}})
	s, err := Request(context.Background(), fd.wsURL(), "g", "v", Options{TokenFormat: netcode.FormatLightyear020})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if s.ConnectToken.Format != netcode.FormatLightyear020 || !reflect.DeepEqual(s.ConnectToken.ServerAddrs, tok.ServerAddrs) {
		t.Errorf("decoded token = %+v", s.ConnectToken)
	}
	if s.ServerAddr != netip.MustParseAddrPort("[::1]:5000") {
		t.Errorf("server addr = %v", s.ServerAddr)
	}

	// The same token read as lightyear-0.17 fails, with a hint naming the right format.
	fd = newFakeFrontDoor(t, script{messages: []message{text(readyJSON(t, b64, "::1", 5000, ""))}})
	_, err = Request(context.Background(), fd.wsURL(), "g", "v", Options{})
	if !errors.Is(err, ErrInvalidSession) || !strings.Contains(err.Error(), "decodes as lightyear-0.20") {
		t.Errorf("wrong format: got %v", err)
	}
}

func TestRequestIgnoresBinaryFrames(t *testing.T) {
	t.Parallel()
	b64, _ := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	fd := newFakeFrontDoor(t, script{messages: []message{
		text(acknowledged), {binary: []byte{1, 2, 3}}, text(readyJSON(t, b64, "127.0.0.1", 40123, "")),
	}})
	if _, err := Request(context.Background(), fd.wsURL(), "g", "v", Options{}); err != nil {
		t.Fatalf("Request: %v", err)
	}
}

func TestRequestChunked(t *testing.T) {
	t.Parallel()
	b64, tok := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	ready := readyJSON(t, b64, "127.0.0.1", 40123, "")
	tests := []struct {
		name   string
		script script
		wantIs error
		wantAs any
	}{
		{name: "one document per line", script: script{messages: []message{
			text(acknowledged + "\n"), text(accepted + "\n"), text(progress + "\n"), text(ready + "\n"),
		}}},
		{name: "reference style: concatenated chunks", script: script{messages: []message{
			text(acknowledged), text(accepted), text(progress), text(ready),
		}}},
		{name: "documents split across chunks", script: script{messages: []message{
			text(acknowledged + accepted[:10]), text(accepted[10:] + "\r\n" + ready[:1000]), text(ready[1000:]),
		}}},
		{name: "ERR line", script: script{messages: []message{text(acknowledged + "\n"), text("ERR No service responders\n")}},
			wantAs: new(*ServerError)},
		{name: "matchmaker error", script: script{messages: []message{text(`{"Error":[500,"Edgegap said no"]}` + "\n")}},
			wantAs: new(*MatchmakerError)},
		{name: "body ends without final", script: script{messages: []message{text(acknowledged + "\n")}},
			wantIs: ErrStreamEnded},
		{name: "body ends inside a document", script: script{messages: []message{text(acknowledged + ready[:100])}},
			wantIs: ErrStreamEnded},
		{name: "garbage", script: script{messages: []message{text("<html>oops</html>\n")}},
			wantIs: ErrProtocol},
		{name: "refused", script: script{status: http.StatusNotFound},
			wantAs: new(*StatusError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fd := newFakeFrontDoor(t, tt.script)
			var pl progressLog
			// A ws:// URL naming the WebSocket route is mapped to the chunked route.
			s, err := Request(context.Background(), fd.wsURL(), "bevygap-spaceships", "1", Options{Transport: TransportHTTP, OnProgress: pl.add})
			got := fd.last()
			if got.method != http.MethodPost || got.path != "/matchmaker/request/bevygap-spaceships/1" {
				t.Errorf("request: %s %s", got.method, got.path)
			}
			if tt.wantIs == nil && tt.wantAs == nil {
				if err != nil {
					t.Fatalf("Request: %v", err)
				}
				if !bytes.Equal(s.Token, tok.Bytes()) {
					t.Error("token not handed over intact")
				}
				if pl.steps[len(pl.steps)-1] != "Finished" {
					t.Errorf("progress = %q", pl.steps)
				}
				return
			}
			if err == nil {
				t.Fatal("Request succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Errorf("error %q (%T) is not %T", err, err, tt.wantAs)
			}
		})
	}
}

func TestRequestChunkedTimeout(t *testing.T) {
	t.Parallel()
	fd := newFakeFrontDoor(t, script{messages: []message{text(acknowledged + "\n")}, end: endHang})
	_, err := Request(context.Background(), fd.srv.URL, "g", "v", Options{Transport: TransportHTTP, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want ErrTimeout and DeadlineExceeded", err)
	}
	fd.last()
}

func TestRequestCancelled(t *testing.T) {
	t.Parallel()
	fd := newFakeFrontDoor(t, script{end: endHang})
	ctx, cancel := context.WithCancel(context.Background())
	opts := Options{OnProgress: func(p Progress) {
		if p.State == StateAwaitingResponse {
			cancel()
		}
	}}
	_, err := Request(ctx, fd.wsURL(), "g", "v", opts)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	fd.last()
}

func TestRequestConnectFailures(t *testing.T) {
	// A port with nothing listening: bind one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, url, game string
		wantIs          error
	}{
		{"nothing listening ws", "ws://" + dead + "/matchmaker/ws", "g", ErrConnect},
		{"nothing listening http", "http://" + dead, "g", ErrConnect},
		{"no scheme", dead + "/matchmaker/ws", "g", ErrInvalidURL},
		{"ftp", "ftp://" + dead, "g", ErrInvalidURL},
		{"no host", "ws:///matchmaker/ws", "g", ErrInvalidURL},
		{"unparsable", "ws://[::1", "g", ErrInvalidURL},
		{"bad game name", "ws://" + dead, "bevygap/spaceships", protocol.ErrInvalidName},
		{"empty game name", "ws://" + dead, "", protocol.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var pl progressLog
			_, err := Request(context.Background(), tt.url, tt.game, "1", Options{OnProgress: pl.add, Timeout: 5 * time.Second})
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want %v", err, tt.wantIs)
			}
			if len(pl.steps) == 0 || pl.steps[len(pl.steps)-1][:5] != "Error" {
				t.Errorf("progress = %q", pl.steps)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		transport Transport
		clientIP  string
		want      string
		wantErr   bool
	}{
		{"ws://127.0.0.1:3000/matchmaker/ws", TransportWebSocket, "", "ws://127.0.0.1:3000/matchmaker/ws", false},
		{"http://127.0.0.1:3000/matchmaker/ws", TransportWebSocket, "", "ws://127.0.0.1:3000/matchmaker/ws", false},
		{"https://mm.example.com/matchmaker/ws", TransportWebSocket, "", "wss://mm.example.com/matchmaker/ws", false},
		{"WSS://mm.example.com", TransportWebSocket, "", "wss://mm.example.com/matchmaker/ws", false},
		{"http://127.0.0.1:3000/", TransportWebSocket, "", "ws://127.0.0.1:3000/matchmaker/ws", false},
		{"http://h/prefix/matchmaker", TransportWebSocket, "", "ws://h/prefix/matchmaker/ws", false},
		{"ws://h/custom/socket#frag", TransportWebSocket, "", "ws://h/custom/socket", false},
		{"ws://h/matchmaker/ws?x=1", TransportWebSocket, "1.2.3.4", "ws://h/matchmaker/ws?client_ip=1.2.3.4&x=1", false},
		{"ws://h/matchmaker/ws?client_ip=9.9.9.9", TransportWebSocket, "1.2.3.4", "ws://h/matchmaker/ws?client_ip=1.2.3.4", false},
		{"ws://127.0.0.1:3000/matchmaker/ws", TransportHTTP, "", "http://127.0.0.1:3000/matchmaker/request/g/v", false},
		{"wss://mm.example.com/matchmaker/ws/", TransportHTTP, "", "https://mm.example.com/matchmaker/request/g/v", false},
		{"http://h", TransportHTTP, "::1", "http://h/matchmaker/request/g/v?client_ip=%3A%3A1", false},
		{"http://h/matchmaker", TransportHTTP, "", "http://h/matchmaker/request/g/v", false},
		{"http://h/matchmaker/request", TransportHTTP, "", "http://h/matchmaker/request/g/v", false},
		{"http://h/p/ws", TransportHTTP, "", "http://h/p/request/g/v", false},
		{"http://h/somewhere", TransportHTTP, "", "", true},
		{"tcp://h", TransportWebSocket, "", "", true},
		{"//h/matchmaker/ws", TransportWebSocket, "", "", true},
		{"ws://:3000/matchmaker/ws", TransportWebSocket, "", "", true},
		{"ws://h", Transport(9), "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in+"/"+tt.transport.String(), func(t *testing.T) {
			t.Parallel()
			got, err := endpoint(tt.in, tt.transport, "g", "v", tt.clientIP)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidURL) {
					t.Errorf("got %q, %v; want ErrInvalidURL", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// Names with white space are escaped as one path segment.
	got, err := endpoint("http://h", TransportHTTP, "my game", "v 1", "")
	if err != nil || got != "http://h/matchmaker/request/my%20game/v%201" {
		t.Errorf("escaped names: got %q, %v", got, err)
	}
}

func TestParseTransportAndStrings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Transport
		ok   bool
	}{
		{"", TransportWebSocket, true}, {"ws", TransportWebSocket, true}, {"websocket", TransportWebSocket, true},
		{"http", TransportHTTP, true}, {"chunked", TransportHTTP, true}, {"udp", 0, false}, {"WS", 0, false},
	} {
		got, err := parseTransport(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseTransport(%q) = %v, %v", tt.in, got, err)
		}
	}
	var tr Transport
	if err := tr.Set("http"); err != nil || tr != TransportHTTP {
		t.Errorf("Set: %v %v", tr, err)
	}
	if err := tr.Set("x"); err == nil || tr != TransportHTTP {
		t.Errorf("Set of a bad name changed the value or did not fail: %v %v", tr, err)
	}
	for s, want := range map[State]string{
		StateRequest: "Request", StateAwaitingResponse: "AwaitingResponse", StateReadyToConnect: "ReadyToConnect",
		StateFinished: "Finished", StateError: "Error", 0: "State(0)",
	} {
		if s.String() != want {
			t.Errorf("State(%d).String() = %q, want %q", s, s.String(), want)
		}
	}
	if got := (Progress{State: StateError, Code: 503, Message: "busy"}).String(); got != "Error(503, busy)" {
		t.Errorf("Progress.String = %q", got)
	}
	if got := Transport(7).String(); got != "Transport(7)" {
		t.Errorf("Transport(7).String = %q", got)
	}
}

// BenchmarkRequestWebSocket measures one whole session request over loopback against the fake
// front door: dial, request frame, four feedback frames, token decoding, closing handshake.
func BenchmarkRequestWebSocket(b *testing.B) {
	b64, _ := testToken(b, netcode.FormatLightyear017, "127.0.0.1:40123")
	frames := []message{text(acknowledged), text(accepted), text(progress), text(readyJSON(b, b64, "127.0.0.1", 40123, ""))}
	fd := newFakeFrontDoor(b, script{messages: frames})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Request(context.Background(), fd.wsURL(), "g", "v", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplitFeedback measures cutting a reference-style (concatenated) chunked body.
func BenchmarkSplitFeedback(b *testing.B) {
	b64, _ := testToken(b, netcode.FormatLightyear017, "127.0.0.1:40123")
	body := acknowledged + accepted + progress + progress + readyJSON(b, b64, "127.0.0.1", 40123, "")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		toks, err := scanReader(strings.NewReader(body))
		if err != nil || len(toks) != 5 {
			b.Fatal(toks, err)
		}
	}
}

func TestSessionDial(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := netcode.NewServer(netcode.ServerConfig{Addr: "127.0.0.1:0", ProtocolID: 1982, PrivateKey: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx) }()
	defer func() { cancel(); _ = srv.Close(); <-served }()

	// The token names only an address where nobody answers (with a 5 s timeout): Dial must
	// try the SessionReady address first, as the Rust plugin connects to ip:port.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	tok, err := (&netcode.Minter{Key: key}).Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: 5, TimeoutSeconds: 5, ServerAddrs: []netip.AddrPort{dead}})
	if err != nil {
		t.Fatal(err)
	}
	b64 := tok.Base64()
	fd := newFakeFrontDoor(t, script{messages: []message{text(readyJSON(t, b64, "127.0.0.1", srv.Addr().Port(), ""))}})
	sess, err := Request(ctx, fd.wsURL(), "g", "v", Options{})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	c, err := sess.Dial(ctx, netcode.ClientConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if c.ServerAddr() != srv.Addr() || sess.ConnectToken.ServerAddrs[0] != dead {
		t.Errorf("connected to %v (server %v); token addresses now %v", c.ServerAddr(), srv.Addr(), sess.ConnectToken.ServerAddrs)
	}

	if _, err := (&Session{}).Dial(ctx, netcode.ClientConfig{}); !errors.Is(err, ErrInvalidSession) {
		t.Errorf("Dial without a token: %v", err)
	}
}

// TestSessionDialTransport: Dial picks WebTransport pinned to the session's digest when the
// session has one, UDP otherwise; an explicit transport or digest overrides.
func TestSessionDialTransport(t *testing.T) {
	t.Parallel()
	ctx := t.Context() // the subtests run after this function returned
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.DiscardHandler)
	serve := func(cfg netcode.ServerConfig) *netcode.Server {
		t.Helper()
		cfg.Addr, cfg.ProtocolID, cfg.PrivateKey, cfg.Logger = "127.0.0.1:0", 1982, key, discard
		srv, err := netcode.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Listen(ctx); err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(ctx) }()
		t.Cleanup(func() { _ = srv.Close(); <-served })
		return srv
	}
	rot, err := netcode.NewCertRotator(netcode.CertRotatorConfig{Hosts: []string{"127.0.0.1"}, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	_, otherDigest, err := netcode.SelfSignedCert([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	udp := serve(netcode.ServerConfig{})
	wt := serve(netcode.ServerConfig{Transport: netcode.TransportWebTransport, TLSConfig: rot.TLSConfig()})
	right, wrong := rot.Digest(), otherDigest

	tests := []struct {
		name      string
		server    *netcode.Server
		digest    string // the session's cert_digest
		transport netcode.Transport
		pin       *netcode.CertDigest
		wantErr   error
	}{
		{name: "auto without digest: udp", server: udp},
		{name: "auto with digest: webtransport pinned", server: wt, digest: right.String()},
		{name: "auto with plain-hex digest", server: wt, digest: strings.ReplaceAll(right.String(), ":", "")},
		{name: "auto with another certificate's digest", server: wt, digest: wrong.String(), wantErr: netcode.ErrCertMismatch},
		{name: "explicit udp despite digest", server: udp, digest: right.String(), transport: netcode.TransportUDP},
		{name: "explicit webtransport without digest: unpinned", server: wt, transport: netcode.TransportWebTransport},
		{name: "explicit pin overrides the session's", server: wt, digest: right.String(), transport: netcode.TransportWebTransport, pin: &wrong, wantErr: netcode.ErrCertMismatch},
		{name: "malformed digest", server: wt, digest: "not-a-digest", wantErr: ErrInvalidSession},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := (&netcode.Minter{Key: key}).Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: uint64(100 + i),
				TimeoutSeconds: 5, ServerAddrs: []netip.AddrPort{tt.server.Addr()}})
			if err != nil {
				t.Fatal(err)
			}
			sess := &Session{ServerAddr: tt.server.Addr(), CertDigest: tt.digest, ConnectToken: tok}
			c, err := sess.Dial(ctx, netcode.ClientConfig{Transport: tt.transport, CertDigest: tt.pin, Logger: discard})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Dial = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if c.ServerAddr() != tt.server.Addr() {
				t.Errorf("connected to %v, want %v", c.ServerAddr(), tt.server.Addr())
			}
		})
	}
}
