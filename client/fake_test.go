package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// This file holds a fake HTTP front door that speaks the wire contract of DESIGN.md ("HTTP front
// door") byte for byte, scripted per test. It deliberately does not use package httpd.

// ending says how the fake ends a stream after its scripted messages.
type ending int

const (
	endGoodbye   ending = iota // WebSocket: close 1000 "Goodbye"; HTTP: end of body
	endAbrupt                  // WebSocket: drop the TCP connection without a close frame; HTTP: same as endGoodbye
	endHang                    // never answer again (until the client goes away)
	endClose1011               // WebSocket: close 1011 "internal error"
)

// message is one scripted server message: a text frame / chunk, or a binary frame.
type message struct {
	text   string
	binary []byte
}

func text(s string) message { return message{text: s} }

// script is what the fake does for one request.
type script struct {
	messages []message
	end      ending
	status   int // != 0: refuse the request with this HTTP status
}

// received is what the fake saw of one request.
type received struct {
	path     string
	query    url.Values
	method   string
	frame    string // WebSocket: the first text frame, byte for byte
	closeErr error  // WebSocket: the result of the server's closing handshake (endGoodbye)
}

// fakeFrontDoor serves /matchmaker/ws and /matchmaker/request/{game}/{version} from a script.
type fakeFrontDoor struct {
	t      testing.TB
	script script
	srv    *httptest.Server

	mu   sync.Mutex
	reqs []received
	done chan struct{} // closed after each handler finished (buffered signal)
}

func newFakeFrontDoor(t testing.TB, s script) *fakeFrontDoor {
	t.Helper()
	f := &fakeFrontDoor{t: t, script: s, done: make(chan struct{}, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /matchmaker/ws", f.serveWS)
	mux.HandleFunc("POST /matchmaker/request/{game}/{version}", f.serveChunked)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// wsURL returns the WebSocket URL of the fake.
func (f *fakeFrontDoor) wsURL() string { return "ws" + f.srv.URL[len("http"):] + "/matchmaker/ws" }

// last waits for the handler of the most recent request to finish and returns what it saw.
func (f *fakeFrontDoor) last() received {
	f.t.Helper()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		f.t.Fatal("fake front door: handler did not finish")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		f.t.Fatal("fake front door: no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeFrontDoor) record(r received) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	select {
	case f.done <- struct{}{}:
	default: // nobody waits (benchmarks)
	}
}

func (f *fakeFrontDoor) serveWS(w http.ResponseWriter, r *http.Request) {
	rec := received{path: r.URL.Path, query: r.URL.Query(), method: r.Method}
	defer func() { f.record(rec) }()
	if f.script.status != 0 {
		http.Error(w, "refused by test", f.script.status)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		f.t.Errorf("fake: accept: %v", err)
		return
	}
	defer conn.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The reference reads one text message within 10 s.
	typ, b, err := conn.Read(ctx)
	if err != nil || typ != websocket.MessageText {
		f.t.Errorf("fake: first message: type %v, err %v", typ, err)
		return
	}
	rec.frame = string(b)
	for _, m := range f.script.messages {
		typ, data := websocket.MessageText, []byte(m.text)
		if m.binary != nil {
			typ, data = websocket.MessageBinary, m.binary
		}
		if err := conn.Write(ctx, typ, data); err != nil {
			return // the client may legitimately have gone (e.g. after an error)
		}
	}
	switch f.script.end {
	case endGoodbye:
		rec.closeErr = conn.Close(websocket.StatusNormalClosure, "Goodbye")
	case endClose1011:
		_ = conn.Close(websocket.StatusInternalError, "internal error")
	case endAbrupt:
		_ = conn.CloseNow()
	case endHang:
		_, _, _ = conn.Read(ctx) // returns when the client drops the connection
	}
}

func (f *fakeFrontDoor) serveChunked(w http.ResponseWriter, r *http.Request) {
	rec := received{path: r.URL.Path, query: r.URL.Query(), method: r.Method}
	defer func() { f.record(rec) }()
	if f.script.status != 0 {
		http.Error(w, "refused by test", f.script.status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	for _, m := range f.script.messages {
		if _, err := w.Write([]byte(m.text)); err != nil {
			return
		}
		fl.Flush()
	}
	if f.script.end == endHang {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
}

// testToken mints a connect token for addr in format f and returns its base64 and the token.
func testToken(t testing.TB, f netcode.Format, addr string) (string, *netcode.ConnectToken) {
	t.Helper()
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m := &netcode.Minter{Key: key, Format: f}
	tok, err := m.Mint(netcode.TokenParams{
		ProtocolID:  1982,
		ClientID:    42,
		ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort(addr)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Base64(), tok
}

// readyJSON returns the byte-exact SessionReady frame for token b64 at ip:port.
func readyJSON(t testing.TB, b64, ip string, port uint16, digest string) string {
	t.Helper()
	b, err := protocol.Marshal(protocol.Ready(protocol.SessionReady{Token: b64, IP: ip, Port: port, CertDigest: digest}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"SessionReady":{"token":"` + b64 + `","ip":"` + ip + `","port":` + strconv.Itoa(int(port)) + `,"cert_digest":"` + digest + `"}}`
	if string(b) != want {
		t.Fatalf("SessionReady frame drifted from the contract:\n got %s\nwant %s", b, want)
	}
	return string(b)
}
