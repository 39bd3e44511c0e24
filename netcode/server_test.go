package netcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Loopback tests of Server and Client. Timeouts are short: tokens time out after 1 second
// where a test waits for a timeout, and peers send at 50 Hz.

const (
	testProtocolID = 0x6265767967617000
	testInterval   = 20 * time.Millisecond
	testWait       = 5 * time.Second // upper bound for anything that should happen
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testPrivateKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serverEvents records OnConnect / OnDisconnect calls.
type serverEvents struct {
	connected    chan uint64
	disconnected chan uint64
}

func newServerEvents() *serverEvents {
	return &serverEvents{connected: make(chan uint64, 64), disconnected: make(chan uint64, 64)}
}

// startServer starts a server on loopback with test defaults filled into cfg. It is closed
// when the test ends, and Serve must then have returned nil.
func startServer(t testing.TB, cfg ServerConfig, ev *serverEvents) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ProtocolID == 0 {
		cfg.ProtocolID = testProtocolID
	}
	if cfg.KeepAliveInterval == 0 {
		cfg.KeepAliveInterval = testInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if ev != nil {
		cfg.OnConnect = func(id uint64, _ netip.AddrPort) { ev.connected <- id }
		cfg.OnDisconnect = func(id uint64, _ netip.AddrPort) { ev.disconnected <- id }
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(testWait):
			t.Error("Serve did not return after Close")
		}
	})
	return s
}

// mint mints a token for the server's address (unless p.ServerAddrs is set).
func mint(t testing.TB, key Key, f Format, s *Server, p TokenParams) *ConnectToken {
	t.Helper()
	if p.ProtocolID == 0 {
		p.ProtocolID = testProtocolID
	}
	if len(p.ServerAddrs) == 0 {
		p.ServerAddrs = []netip.AddrPort{s.Addr()}
	}
	m := &Minter{Key: key, Format: f}
	tok, err := m.Mint(p)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t testing.TB, tok *ConnectToken) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	c, err := DialToken(ctx, tok, ClientConfig{Format: tok.Format, SendInterval: testInterval, Logger: testLogger()})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func waitID(t testing.TB, ch <-chan uint64, want uint64, what string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("%s: client id %d, want %d", what, got, want)
		}
	case <-time.After(testWait):
		t.Fatalf("%s: no event for client %d", what, want)
	}
}

func recvServer(t testing.TB, s *Server) Payload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	p, err := s.Recv(ctx)
	if err != nil {
		t.Fatalf("server Recv: %v", err)
	}
	return p
}

func recvClient(t testing.TB, c *Client) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	p, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("client Recv: %v", err)
	}
	return p
}

func ipv6LoopbackAvailable() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func TestConnectExchangeDisconnect(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		addr   string
	}{
		{"lightyear-0.17 IPv4", FormatLightyear017, "127.0.0.1:0"},
		{"lightyear-0.20 IPv4", FormatLightyear020, "127.0.0.1:0"},
		{"lightyear-0.17 IPv6", FormatLightyear017, "[::1]:0"},
		{"lightyear-0.20 IPv6", FormatLightyear020, "[::1]:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.addr[0] == '[' && !ipv6LoopbackAvailable() {
				t.Skip("no IPv6 loopback")
			}
			key := testPrivateKey(t)
			ev := newServerEvents()
			s := startServer(t, ServerConfig{Addr: tc.addr, PrivateKey: key, Format: tc.format, PublicAddr: netip.AddrPort{}}, ev)
			var ud [UserDataBytes]byte
			copy(ud[:], "session-42")
			tok := mint(t, key, tc.format, s, TokenParams{ClientID: 42, UserData: ud})

			c, err := dial(t, tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.ClientID() != 42 {
				t.Fatalf("ClientID = %d, want 42 (from the keep-alive)", c.ClientID())
			}
			waitID(t, ev.connected, 42, "OnConnect")
			clients := s.Clients()
			if len(clients) != 1 || clients[0].ClientID != 42 || clients[0].UserData != ud || clients[0].Addr != c.LocalAddr() {
				t.Fatalf("Clients() = %+v, client at %s", clients, c.LocalAddr())
			}

			// Server to client first: the client is not confirmed yet, so a keep-alive goes
			// before the payload.
			if err := s.Send(42, []byte("welcome")); err != nil {
				t.Fatal(err)
			}
			if got := recvClient(t, c); string(got) != "welcome" {
				t.Fatalf("client got %q", got)
			}
			for i := range 20 {
				msg := bytes.Repeat([]byte{byte(i)}, 1+i*60)
				if err := c.Send(msg); err != nil {
					t.Fatal(err)
				}
				p := recvServer(t, s)
				if p.ClientID != 42 || !bytes.Equal(p.Data, msg) {
					t.Fatalf("server got %d bytes from %d, want %d bytes from 42", len(p.Data), p.ClientID, len(msg))
				}
				if err := s.Send(42, p.Data); err != nil {
					t.Fatal(err)
				}
				if got := recvClient(t, c); !bytes.Equal(got, msg) {
					t.Fatalf("echo %d differs", i)
				}
			}
			big := make([]byte, MaxPayloadBytes)
			if err := c.Send(big); err != nil {
				t.Fatalf("max payload: %v", err)
			}
			if p := recvServer(t, s); len(p.Data) != MaxPayloadBytes {
				t.Fatalf("max payload arrived with %d bytes", len(p.Data))
			}
			if err := c.Send(make([]byte, MaxPayloadBytes+1)); !errors.Is(err, ErrPayloadSize) {
				t.Fatalf("oversized payload: err = %v", err)
			}
			if err := s.Send(42, nil); !errors.Is(err, ErrPayloadSize) {
				t.Fatalf("empty payload: err = %v", err)
			}

			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			waitID(t, ev.disconnected, 42, "OnDisconnect")
			if n := s.NumClients(); n != 0 {
				t.Fatalf("NumClients = %d after disconnect", n)
			}
			if err := s.Send(42, []byte("x")); !errors.Is(err, ErrClientNotConnected) {
				t.Fatalf("Send after disconnect: err = %v", err)
			}
			if err := c.Send([]byte("x")); !errors.Is(err, ErrClientClosed) {
				t.Fatalf("client Send after Close: err = %v", err)
			}
		})
	}
}

func TestServerDisconnectsClient(t *testing.T) {
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key}, ev)
	c, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 7}))
	if err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.connected, 7, "OnConnect")
	if err := s.Disconnect(7); err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.disconnected, 7, "OnDisconnect")
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("client did not notice the disconnect")
	}
	if !errors.Is(c.Err(), ErrDisconnected) {
		t.Fatalf("client Err = %v, want ErrDisconnected", c.Err())
	}
	if _, err := c.Recv(context.Background()); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Recv after disconnect: %v", err)
	}
	if err := s.Disconnect(7); !errors.Is(err, ErrClientNotConnected) {
		t.Fatalf("second Disconnect: %v", err)
	}
}

func TestServerCloseDisconnectsClients(t *testing.T) {
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key}, ev)
	c1, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{c1, c2} {
		select {
		case <-c.Done():
		case <-time.After(testWait):
			t.Fatal("client not disconnected by Close")
		}
		if !errors.Is(c.Err(), ErrDisconnected) {
			t.Fatalf("client Err = %v", c.Err())
		}
	}
	got := map[uint64]bool{}
	for range 2 {
		select {
		case id := <-ev.disconnected:
			got[id] = true
		case <-time.After(testWait):
			t.Fatal("missing OnDisconnect after Close")
		}
	}
	if !got[1] || !got[2] {
		t.Fatalf("OnDisconnect for %v", got)
	}
	if _, err := s.Recv(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
	if err := s.Send(1, []byte("x")); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}

func TestServerTimesOutSilentClient(t *testing.T) {
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key}, ev)
	r := newRawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 9, TimeoutSeconds: 1}), s.Addr())
	r.connect()
	waitID(t, ev.connected, 9, "OnConnect")
	start := time.Now()
	// The raw client now stays silent.
	waitID(t, ev.disconnected, 9, "OnDisconnect after timeout")
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("timed out after %v, before the token's 1 s", d)
	}
}

func TestClientTimesOutSilentServer(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key}, nil)
	c, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 3, TimeoutSeconds: 1}))
	if err != nil {
		t.Fatal(err)
	}
	// Kill the socket under the server: no disconnect packet can reach the client.
	s.mu.Lock()
	_ = s.udp.Close()
	s.mu.Unlock()
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("client did not time out")
	}
	if !errors.Is(c.Err(), ErrConnectionTimedOut) {
		t.Fatalf("client Err = %v, want ErrConnectionTimedOut", c.Err())
	}
}

func TestDialFailures(t *testing.T) {
	key := testPrivateKey(t)
	otherKey := testPrivateKey(t)
	tests := []struct {
		name    string
		cfg     ServerConfig
		params  TokenParams
		key     Key
		prepare func(t *testing.T, s *Server)
		want    error
		reason  DeniedReason
	}{
		{
			name:   "wrong protocol id",
			params: TokenParams{ClientID: 1, ProtocolID: testProtocolID + 1, TimeoutSeconds: 1},
			want:   ErrConnectionRequestTimedOut,
		},
		{
			name:   "token minted with another key",
			params: TokenParams{ClientID: 1, TimeoutSeconds: 1},
			key:    otherKey,
			want:   ErrConnectionRequestTimedOut,
		},
		{
			name:   "expired token (server clock an hour ahead)",
			cfg:    ServerConfig{Now: func() time.Time { return time.Now().Add(time.Hour) }},
			params: TokenParams{ClientID: 1, ExpireSeconds: 1, TimeoutSeconds: 5},
			want:   ErrConnectTokenExpired,
		},
		{
			name:   "server's public address not in the token",
			cfg:    ServerConfig{PublicAddr: netip.MustParseAddrPort("198.51.100.1:31500")},
			params: TokenParams{ClientID: 1, TimeoutSeconds: 1},
			want:   ErrConnectionRequestTimedOut,
		},
		{
			name:   "server full",
			cfg:    ServerConfig{MaxClients: 1},
			params: TokenParams{ClientID: 2, TimeoutSeconds: 1},
			prepare: func(t *testing.T, s *Server) {
				if _, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 1})); err != nil {
					t.Fatal(err)
				}
			},
			want:   ErrConnectionDenied,
			reason: DeniedServerFull,
		},
		{
			name:   "refused by hook",
			cfg:    ServerConfig{OnConnectRequest: func(context.Context, uint64, [UserDataBytes]byte) error { return errors.New("no session") }},
			params: TokenParams{ClientID: 1, TimeoutSeconds: 1},
			want:   ErrConnectionDenied,
			reason: DeniedBanned,
		},
		{
			name: "hook times out",
			cfg: ServerConfig{
				ConnectRequestTimeout: 100 * time.Millisecond,
				OnConnectRequest: func(ctx context.Context, _ uint64, _ [UserDataBytes]byte) error {
					<-ctx.Done()
					return ctx.Err()
				},
			},
			params: TokenParams{ClientID: 1, TimeoutSeconds: 2},
			want:   ErrConnectionDenied,
			reason: DeniedInternalError,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.PrivateKey = key
			s := startServer(t, tc.cfg, nil)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			k := key
			if tc.key != (Key{}) {
				k = tc.key
			}
			_, err := dial(t, mint(t, k, 0, s, tc.params))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial error = %v, want %v", err, tc.want)
			}
			if tc.want == ErrConnectionDenied {
				var de *DeniedError
				if !errors.As(err, &de) || de.Reason != tc.reason || de.Server != s.Addr() {
					t.Fatalf("denied error = %#v, want reason %v from %s", err, tc.reason, s.Addr())
				}
			}
		})
	}
}

func TestDialInvalidToken(t *testing.T) {
	tests := []struct {
		name  string
		token []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a token")},
		{"2048 zero bytes", make([]byte, ConnectTokenBytes)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Dial(context.Background(), tc.token, ClientConfig{}); !errors.Is(err, ErrInvalidConnectToken) {
				t.Fatalf("err = %v, want ErrInvalidConnectToken", err)
			}
		})
	}
}

func TestDialBase64AndBytes(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key}, nil)
	for i, form := range []func(*ConnectToken) []byte{
		func(t *ConnectToken) []byte { return t.Bytes() },
		func(t *ConnectToken) []byte { return []byte(t.Base64() + "\n") },
	} {
		tok := mint(t, key, 0, s, TokenParams{ClientID: uint64(100 + i)})
		c, err := Dial(context.Background(), form(tok), ClientConfig{SendInterval: testInterval, Logger: testLogger()})
		if err != nil {
			t.Fatalf("form %d: %v", i, err)
		}
		_ = c.Close()
	}
}

func TestDialTriesServersInOrder(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key}, nil)
	// A loopback port where nothing listens: the first attempt times out.
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = dead.Close()
	tok := mint(t, key, 0, s, TokenParams{ClientID: 5, TimeoutSeconds: 1, ServerAddrs: []netip.AddrPort{deadAddr, s.Addr()}})
	c, err := dial(t, tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerAddr() != s.Addr() {
		t.Fatalf("connected to %s, want %s", c.ServerAddr(), s.Addr())
	}
}

func TestDialContextCancelled(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key, ProtocolID: 99}, nil) // never answers
	tok := mint(t, key, 0, s, TokenParams{ClientID: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := DialToken(ctx, tok, ClientConfig{SendInterval: testInterval, Logger: testLogger()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial returned %v after the context ended", d)
	}
}

func TestConnectRequestHookIsAsyncAndCalledOnce(t *testing.T) {
	key := testPrivateKey(t)
	var calls atomic.Int32
	var mu sync.Mutex
	seen := map[uint64][UserDataBytes]byte{}
	hook := func(ctx context.Context, id uint64, ud [UserDataBytes]byte) error {
		calls.Add(1)
		mu.Lock()
		seen[id] = ud
		mu.Unlock()
		select { // a slow lookup (e.g. NATS KV) during which the client retries ~15 times
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if id == 666 {
			return fmt.Errorf("no session for client %d: %w", id, &DeniedError{Reason: DeniedAlreadyConnected})
		}
		return nil
	}
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key, OnConnectRequest: hook}, ev)
	var ud [UserDataBytes]byte
	copy(ud[:], "edgegap-session")

	// While one client waits on the hook, another connected client keeps being served: the
	// hook does not block the packet loop.
	first, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.connected, 1, "OnConnect")
	calls.Store(0)

	denied := make(chan error, 1)
	go func() {
		_, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 666, UserData: ud}))
		denied <- err
	}()
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if err := first.Send([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if p := recvServer(t, s); p.Data[0] != byte(i) {
			t.Fatalf("payload %d = %v", i, p.Data)
		}
	}
	err = <-denied
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason != DeniedAlreadyConnected {
		t.Fatalf("Dial(666) = %v, want denied (the hook's reason)", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("hook called %d times for one client that retried, want 1", n)
	}
	mu.Lock()
	gotUD := seen[666]
	mu.Unlock()
	if gotUD != ud {
		t.Fatal("hook did not receive the token's user data")
	}
	if _, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 2})); err != nil {
		t.Fatalf("accepted client: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("hook calls = %d, want 2", n)
	}
}

func TestCloseCancelsRunningHook(t *testing.T) {
	key := testPrivateKey(t)
	started := make(chan struct{})
	returned := make(chan error, 1)
	s := startServer(t, ServerConfig{
		PrivateKey:            key,
		ConnectRequestTimeout: time.Minute,
		OnConnectRequest: func(ctx context.Context, _ uint64, _ [UserDataBytes]byte) error {
			close(started)
			<-ctx.Done()
			returned <- ctx.Err()
			return ctx.Err()
		},
	}, nil)
	r := newRawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 1}), s.Addr())
	r.sendRequest()
	select {
	case <-started:
	case <-time.After(testWait):
		t.Fatal("hook not called")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("hook ctx err = %v", err)
		}
	default:
		t.Fatal("Close returned before the hook returned")
	}
}

func TestReplayedPacketsIgnored(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key}, nil)
	r := newRawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 11}), s.Addr())
	r.connect()

	first := r.seal(r.send, packetPayload, 10, []byte("ten"))
	r.write(first)
	if p := recvServer(t, s); string(p.Data) != "ten" {
		t.Fatalf("got %q", p.Data)
	}
	r.write(first)                                         // replay of the same datagram
	r.write(r.seal(r.send, packetPayload, 5, []byte("5"))) // older but unseen: accepted
	r.write(r.seal(r.send, packetPayload, 300, []byte("300")))
	r.write(r.seal(r.send, packetPayload, 10, []byte("ten again"))) // same sequence, new body
	r.write(r.seal(r.send, packetPayload, 44, []byte("44")))        // 300-256: out of the window
	r.write(r.seal(r.send, packetPayload, 301, []byte("end")))
	for _, want := range []string{"5", "300", "end"} {
		if p := recvServer(t, s); string(p.Data) != want {
			t.Fatalf("got %q, want %q", p.Data, want)
		}
	}
}

func TestForgedPacketsIgnored(t *testing.T) {
	key := testPrivateKey(t)
	s := startServer(t, ServerConfig{PrivateKey: key}, nil)
	tok := mint(t, key, 0, s, TokenParams{ClientID: 12})
	r := newRawClient(t, tok, s.Addr())
	r.connect()

	wrongKey, _ := newPacketCipher(testPrivateKey(t), 0, testProtocolID)
	wrongProtocol, _ := newPacketCipher(tok.ClientToServerKey, 0, testProtocolID+1)
	serverKey, _ := newPacketCipher(tok.ServerToClientKey, 0, testProtocolID) // the other direction's key
	r.write(r.seal(wrongKey, packetPayload, 1, []byte("wrong key")))
	r.write(r.seal(wrongProtocol, packetPayload, 2, []byte("wrong protocol")))
	r.write(r.seal(serverKey, packetPayload, 3, []byte("reflected")))
	flipped := r.seal(r.send, packetPayload, 4, []byte("flipped"))
	flipped[5] ^= 0x40
	r.write(flipped)
	retyped := r.seal(r.send, packetKeepAlive, 5, make([]byte, 8))
	retyped[0] = retyped[0]&0xf0 | byte(packetDisconnect) // keep-alive relabelled as disconnect
	r.write(retyped)

	// Correct keys, but from another address: no mapping there, so ignored.
	other := newRawClient(t, tok, s.Addr())
	other.write(r.seal(r.send, packetPayload, 6, []byte("other address")))
	other.write(r.seal(r.send, packetDisconnect, 7, nil))

	r.write(r.seal(r.send, packetPayload, 8, []byte("genuine")))
	if p := recvServer(t, s); string(p.Data) != "genuine" {
		t.Fatalf("got %q, want the genuine payload only", p.Data)
	}
	if s.NumClients() != 1 {
		t.Fatal("a forged disconnect disconnected the client")
	}
}

func TestTokenReusedFromSecondAddressRefused(t *testing.T) {
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key}, ev)
	tok := mint(t, key, 0, s, TokenParams{ClientID: 13})

	// The second address uses the token first, but stops before connecting: the token is
	// now bound to that address.
	thief := newRawClient(t, tok, s.Addr())
	thief.sendRequest()
	if h, _, err := thief.read(testWait); err != nil || h.typ != packetChallenge {
		t.Fatalf("first use: %v %v", h.typ, err)
	}
	owner := newRawClient(t, tok, s.Addr())
	for range 3 {
		owner.sendRequest()
	}
	if h, _, err := owner.read(300 * time.Millisecond); err == nil {
		t.Fatalf("server answered a reused token from a second address with a %s packet", h.typ)
	}
	// The first address may still complete its handshake.
	thief.connect()
	waitID(t, ev.connected, 13, "OnConnect")
}

func TestNewServerValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  ServerConfig
	}{
		{"no address", ServerConfig{}},
		{"too many clients", ServerConfig{Addr: "127.0.0.1:0", MaxClients: MaxClientsLimit + 1}},
		{"negative clients", ServerConfig{Addr: "127.0.0.1:0", MaxClients: -1}},
		{"unknown format", ServerConfig{Addr: "127.0.0.1:0", Format: 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServer(tc.cfg); err == nil {
				t.Fatal("NewServer accepted a bad config")
			}
		})
	}
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxClients() != DefaultMaxClients {
		t.Fatalf("MaxClients = %d", s.MaxClients())
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("Serve before Listen succeeded")
	}
	_ = s.Close()
}

func TestServeStopsWithContext(t *testing.T) {
	key := testPrivateKey(t)
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", PrivateKey: key, ProtocolID: testProtocolID, Logger: testLogger(), KeepAliveInterval: testInterval})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	c, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Serve did not stop with its context")
	}
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("client not disconnected")
	}
}

// rawClient speaks the protocol packet by packet, to test what a well-behaved Client never
// sends.
type rawClient struct {
	t        testing.TB
	conn     *net.UDPConn
	tok      *ConnectToken
	send     *packetCipher
	recv     *packetCipher
	sequence uint64
}

func newRawClient(t testing.TB, tok *ConnectToken, server netip.AddrPort) *rawClient {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	send, _ := newPacketCipher(tok.ClientToServerKey, tok.Format, tok.ProtocolID)
	recv, _ := newPacketCipher(tok.ServerToClientKey, tok.Format, tok.ProtocolID)
	return &rawClient{t: t, conn: conn, tok: tok, send: send, recv: recv}
}

func (r *rawClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawClient) seal(c *packetCipher, typ packetType, seq uint64, body []byte) []byte {
	return c.appendPacket(nil, typ, seq, body)
}

func (r *rawClient) sendRequest() { r.write(appendRequestPacket(nil, r.tok)) }

// read returns the next packet from the server, decrypted, or an error after timeout.
func (r *rawClient) read(timeout time.Duration) (packetHeader, []byte, error) {
	buf := make([]byte, packetBufferBytes)
	deadline := time.Now().Add(timeout)
	for {
		_ = r.conn.SetReadDeadline(deadline)
		n, err := r.conn.Read(buf)
		if err != nil {
			return packetHeader{}, nil, err
		}
		h, err := readPacketHeader(buf[:n])
		if err != nil {
			continue
		}
		body, err := r.recv.open(buf[:n], h)
		if err != nil {
			continue
		}
		return h, bytes.Clone(body), nil
	}
}

// connect performs the handshake: request, challenge, response, keep-alive.
func (r *rawClient) connect() {
	r.t.Helper()
	r.sendRequest()
	deadline := time.Now().Add(testWait)
	for time.Now().Before(deadline) {
		h, body, err := r.read(100 * time.Millisecond)
		if err != nil {
			r.sendRequest()
			continue
		}
		switch h.typ {
		case packetChallenge:
			r.write(r.seal(r.send, packetResponse, 1<<40, body)) // echo sequence and token
		case packetKeepAlive:
			return
		}
	}
	r.t.Fatal("raw client could not connect")
}

func TestManyClientsConcurrently(t *testing.T) {
	const n = 32
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := startServer(t, ServerConfig{PrivateKey: key, MaxClients: n}, ev)
	clients := make([]*Client, n)
	errs := make(chan error, n)
	for i := range clients {
		tok := mint(t, key, 0, s, TokenParams{ClientID: uint64(1000 + i)})
		go func() {
			c, err := dial(t, tok)
			clients[i] = c
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.NumClients(); got != n {
		t.Fatalf("NumClients = %d, want %d", got, n)
	}
	slots := map[int]bool{}
	for _, ci := range s.Clients() {
		slots[ci.Index] = true
	}
	if len(slots) != n {
		t.Fatalf("%d distinct slots for %d clients", len(slots), n)
	}
	if _, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 1, TimeoutSeconds: 1})); !errors.Is(err, ErrConnectionDenied) {
		t.Fatalf("client %d: err = %v, want denied", n+1, err)
	}
	for i, c := range clients {
		if err := c.Send([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		p := recvServer(t, s)
		if uint64(p.Data[0])+1000 != p.ClientID {
			t.Fatalf("payload %d from client %d", p.Data[0], p.ClientID)
		}
		if err := s.Send(p.ClientID, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		if got := recvClient(t, c); got[0] != byte(i) {
			t.Fatalf("client %d got %d", i, got[0])
		}
	}
	// A freed slot is reused.
	_ = clients[5].Close()
	waitID(t, ev.disconnected, 1005, "OnDisconnect")
	if _, err := dial(t, mint(t, key, 0, s, TokenParams{ClientID: 2})); err != nil {
		t.Fatalf("after a client left: %v", err)
	}
}
