package netcode

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bevygap-go/bevygap/internal/eventually"
)

// Tests of Server and Client over loopback UDP, and over an in-memory network on fake time
// (testing/synctest) where timers drive the behaviour: timeouts, token expiry, the refusal
// hook's bound. Peers send at 50 Hz.

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

// mint mints a token for the server's address (unless p.ServerAddrs is set).
func mint(t testing.TB, key Key, f Format, s *Server, p TokenParams) *ConnectToken {
	t.Helper()
	return mintWith(t, &Minter{Key: key, Format: f}, s, p)
}

// mintWith is mint with a Minter of the test's own.
func mintWith(t testing.TB, m *Minter, s *Server, p TokenParams) *ConnectToken {
	t.Helper()
	if p.ProtocolID == 0 {
		p.ProtocolID = testProtocolID
	}
	if len(p.ServerAddrs) == 0 {
		p.ServerAddrs = []netip.AddrPort{s.Addr()}
	}
	tok, err := m.Mint(p)
	if err != nil {
		t.Fatal(err)
	}
	return tok
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
	t.Parallel()
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
	onLoopback(t, func(t *testing.T, n testNet) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				if tc.addr[0] == '[' && !ipv6LoopbackAvailable() {
					t.Skip("no IPv6 loopback")
				}
				key := testPrivateKey(t)
				ev := newServerEvents()
				s := n.startServer(t, ServerConfig{Addr: tc.addr, PrivateKey: key, Format: tc.format, PublicAddr: netip.AddrPort{}}, ev)
				var ud [UserDataBytes]byte
				copy(ud[:], "session-42")
				tok := mint(t, key, tc.format, s, TokenParams{ClientID: 42, UserData: ud})

				c, err := n.dial(t, s, tok)
				if err != nil {
					t.Fatal(err)
				}
				if c.ClientID() != 42 {
					t.Fatalf("ClientID = %d, want 42 (from the keep-alive)", c.ClientID())
				}
				waitID(t, ev.connected, 42, "OnConnect")
				clients := s.Clients()
				// Over WebTransport the server names a session by the client's IP and a
				// session number.
				sameAddr := len(clients) == 1 && (clients[0].Addr == c.LocalAddr() ||
					n.transport == TransportWebTransport && clients[0].Addr.Addr() == c.LocalAddr().Addr())
				if len(clients) != 1 || clients[0].ClientID != 42 || clients[0].UserData != ud || !sameAddr {
					t.Fatalf("Clients() = %+v, client at %s", clients, c.LocalAddr())
				}

				// Server to client first: the client is not confirmed yet, so a keep-alive
				// goes before the payload.
				if err := s.Send(42, []byte("welcome")); err != nil {
					t.Fatal(err)
				}
				if got := recvClient(t, c); string(got) != "welcome" {
					t.Fatalf("client got %q", got)
				}
				for i := range 20 {
					msg := bytes.Repeat([]byte{byte(i)}, 1+i*56)
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
				limit := n.transport.maxPayload()
				big := make([]byte, limit)
				if err := c.Send(big); err != nil {
					t.Fatalf("max payload: %v", err)
				}
				if p := recvServer(t, s); len(p.Data) != limit {
					t.Fatalf("max payload arrived with %d bytes", len(p.Data))
				}
				if err := c.Send(make([]byte, limit+1)); !errors.Is(err, ErrPayloadSize) {
					t.Fatalf("oversized payload: err = %v", err)
				}
				if err := s.Send(42, make([]byte, limit+1)); !errors.Is(err, ErrPayloadSize) {
					t.Fatalf("server oversized payload: err = %v", err)
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
	})
}

func TestServerDisconnectsClient(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		ev := newServerEvents()
		s := n.startServer(t, ServerConfig{PrivateKey: key}, ev)
		c, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 7}))
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
	})
}

func TestServerCloseDisconnectsClients(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		ev := newServerEvents()
		s := n.startServer(t, ServerConfig{PrivateKey: key}, ev)
		c1, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1}))
		if err != nil {
			t.Fatal(err)
		}
		c2, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 2}))
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
	})
}

// TestServerTimesOutSilentClient: a client that vanishes without a word (over WebTransport its
// UDP socket closes under QUIC, so no CONNECTION_CLOSE goes out) is timed out after its
// token's timeout.
func TestServerTimesOutSilentClient(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		ev := newServerEvents()
		s := n.startServer(t, ServerConfig{PrivateKey: key}, ev)
		r := n.rawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 9, TimeoutSeconds: 1}), s.Addr())
		// Before the raw client's last packet (on fake time: at it): it stays silent after
		// connecting.
		start := time.Now()
		r.connect()
		waitID(t, ev.connected, 9, "OnConnect")
		n.vanish(r.conn)
		waitID(t, ev.disconnected, 9, "OnDisconnect after timeout")
		// The server checks every half keep-alive interval.
		n.checkElapsed(t, "timed out", time.Since(start), time.Second+time.Nanosecond, time.Second+testInterval/2)
		if n.transport == TransportWebTransport {
			// The timeout closed the session: its address is free.
			eventually.True(t, testWait, func() bool { return wtSessions(s.conn) == 0 }, "session not closed after the timeout")
		}
	})
}

func TestClientTimesOutSilentServer(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key}, nil)
		timeout := n.timeout(1)
		tok := mint(t, key, 0, s, TokenParams{ClientID: 3, TimeoutSeconds: timeout})
		start := time.Now() // before the client's last packet from the server (on fake time: at it)
		c, err := n.dial(t, s, tok)
		if err != nil {
			t.Fatal(err)
		}
		// Kill the socket under the server: no disconnect packet can reach the client.
		n.killServer(s)
		select {
		case <-c.Done():
		case <-time.After(testWait):
			t.Fatal("client did not time out")
		}
		if !errors.Is(c.Err(), ErrConnectionTimedOut) {
			t.Fatalf("client Err = %v, want ErrConnectionTimedOut", c.Err())
		}
		// The socket died when the client connected (no time passes on fake time); the client
		// checks every half interval.
		n.checkElapsed(t, "client timed out", time.Since(start), time.Duration(timeout)*time.Second, time.Second+testInterval/2)
	})
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      ServerConfig
		params   TokenParams
		otherKey bool          // mint with a key the server does not have
		age      time.Duration // mint the token this long ago
		prepare  func(t *testing.T, n testNet, key Key, s *Server)
		want     error
		reason   DeniedReason
		took     time.Duration // how long Dial takes to fail (exactly on the fake clock)
	}{
		{
			name:   "wrong protocol id",
			params: TokenParams{ClientID: 1, ProtocolID: testProtocolID + 1, TimeoutSeconds: 1},
			want:   ErrConnectionRequestTimedOut,
			took:   time.Second,
		},
		{
			name:     "token minted with another key",
			params:   TokenParams{ClientID: 1, TimeoutSeconds: 1},
			otherKey: true,
			want:     ErrConnectionRequestTimedOut,
			took:     time.Second,
		},
		{
			name:   "expired token (minted an hour ago, lifetime 1 s)",
			age:    time.Hour,
			params: TokenParams{ClientID: 1, ExpireSeconds: 1, TimeoutSeconds: 5},
			want:   ErrConnectTokenExpired,
			took:   time.Second,
		},
		{
			name:   "server's public address not in the token",
			cfg:    ServerConfig{PublicAddr: netip.MustParseAddrPort("198.51.100.1:31500")},
			params: TokenParams{ClientID: 1, TimeoutSeconds: 1},
			want:   ErrConnectionRequestTimedOut,
			took:   time.Second,
		},
		{
			name:   "server full",
			cfg:    ServerConfig{MaxClients: 1},
			params: TokenParams{ClientID: 2, TimeoutSeconds: 1},
			prepare: func(t *testing.T, n testNet, key Key, s *Server) {
				if _, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1})); err != nil {
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
			took:   100 * time.Millisecond,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			onMemAndWebTransport(t, func(t *testing.T, n testNet) {
				key := testPrivateKey(t)
				cfg := tc.cfg
				cfg.PrivateKey = key
				s := n.startServer(t, cfg, nil)
				if tc.prepare != nil {
					tc.prepare(t, n, key, s)
				}
				m := &Minter{Key: key}
				if tc.otherKey {
					m.Key = testPrivateKey(t)
				}
				if tc.age > 0 {
					m.Now = func() time.Time { return time.Now().Add(-tc.age) }
				}
				p := tc.params
				if p.TimeoutSeconds > 0 {
					p.TimeoutSeconds = n.timeout(p.TimeoutSeconds)
				}
				tok := mintWith(t, m, s, p)
				start := time.Now()
				_, err := n.dial(t, s, tok)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Dial error = %v, want %v", err, tc.want)
				}
				n.checkElapsed(t, "Dial failed", time.Since(start), tc.took, tc.took)
				if tc.want == ErrConnectionDenied {
					var de *DeniedError
					if !errors.As(err, &de) || de.Reason != tc.reason || de.Server != s.Addr() {
						t.Fatalf("denied error = %#v, want reason %v from %s", err, tc.reason, s.Addr())
					}
				}
			})
		})
	}
}

func TestDialInvalidToken(t *testing.T) {
	t.Parallel()
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
			t.Parallel()
			if _, err := Dial(context.Background(), tc.token, ClientConfig{}); !errors.Is(err, ErrInvalidConnectToken) {
				t.Fatalf("err = %v, want ErrInvalidConnectToken", err)
			}
		})
	}
}

func TestDialBase64AndBytes(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key}, nil)
		for i, form := range []func(*ConnectToken) []byte{
			func(t *ConnectToken) []byte { return t.Bytes() },
			func(t *ConnectToken) []byte { return []byte(t.Base64() + "\n") },
		} {
			tok := mint(t, key, 0, s, TokenParams{ClientID: uint64(100 + i)})
			cfg := n.clientConfig(ClientConfig{SendInterval: testInterval, Logger: testLogger()}, serverDigest(t, s))
			c, err := Dial(context.Background(), form(tok), cfg)
			if err != nil {
				t.Fatalf("form %d: %v", i, err)
			}
			_ = c.Close()
		}
	})
}

func TestDialTriesServersInOrder(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key}, nil)
		// An address where nothing listens: the first attempt fails (on UDP it times out).
		deadAddr := n.deadAddr(t)
		tok := mint(t, key, 0, s, TokenParams{ClientID: 5, TimeoutSeconds: n.timeout(1), ServerAddrs: []netip.AddrPort{deadAddr, s.Addr()}})
		start := time.Now()
		c, err := n.dial(t, s, tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.ServerAddr() != s.Addr() {
			t.Fatalf("connected to %s, want %s", c.ServerAddr(), s.Addr())
		}
		if d := time.Since(start); n.fake() && d != time.Second {
			t.Fatalf("connected after %v, want after the first server's 1 s timeout", d)
		}
	})
}

func TestDialContextCancelled(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key, ProtocolID: 99}, nil) // never answers
		tok := mint(t, key, 0, s, TokenParams{ClientID: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := DialToken(ctx, tok, n.clientConfig(ClientConfig{SendInterval: testInterval, Logger: testLogger()}, serverDigest(t, s)))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		n.checkElapsed(t, "Dial returned", time.Since(start), 150*time.Millisecond, 150*time.Millisecond)
	})
}

func TestConnectRequestHookRetryLater(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int32 // the hook returns ErrRetryLater this many times, then nil
		timeout  int32 // token timeout, seconds
		want     error
	}{
		{name: "transient failure: accepted on a later request", failures: 3, timeout: 5},
		{name: "lasting failure: the client times out, never denied", failures: 1 << 30, timeout: 1, want: ErrConnectionRequestTimedOut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			onMemAndWebTransport(t, func(t *testing.T, n testNet) {
				key := testPrivateKey(t)
				var calls atomic.Int32
				hook := func(context.Context, uint64, [UserDataBytes]byte) error {
					if calls.Add(1) <= tc.failures {
						return fmt.Errorf("session lookup: %w", ErrRetryLater)
					}
					return nil
				}
				s := n.startServer(t, ServerConfig{PrivateKey: key, OnConnectRequest: hook}, nil)
				_, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 7, TimeoutSeconds: n.timeout(tc.timeout)}))
				if tc.want == nil {
					if err != nil {
						t.Fatalf("Dial = %v, want connected after %d retries", err, tc.failures)
					}
					if got := calls.Load(); got != tc.failures+1 {
						t.Fatalf("hook calls = %d, want %d", got, tc.failures+1)
					}
					return
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("Dial = %v, want %v", err, tc.want)
				}
				if got := calls.Load(); got < 2 {
					t.Fatalf("hook calls = %d, want the request retried", got)
				}
			})
		})
	}
}

func TestConnectRequestHookIsAsyncAndCalledOnce(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		var calls atomic.Int32
		var mu sync.Mutex
		seen := map[uint64][UserDataBytes]byte{}
		slowStarted, release := make(chan struct{}), make(chan struct{})
		hook := func(ctx context.Context, id uint64, ud [UserDataBytes]byte) error {
			calls.Add(1)
			mu.Lock()
			seen[id] = ud
			mu.Unlock()
			if id != 666 {
				return nil
			}
			close(slowStarted)
			select { // a slow lookup (e.g. NATS KV) during which the client retries
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return fmt.Errorf("no session for client %d: %w", id, &DeniedError{Reason: DeniedAlreadyConnected})
		}
		ev := newServerEvents()
		s := n.startServer(t, ServerConfig{PrivateKey: key, OnConnectRequest: hook}, ev)
		var ud [UserDataBytes]byte
		copy(ud[:], "edgegap-session")

		// While one client waits on the hook, another connected client keeps being served: the
		// hook does not block the packet loop.
		first, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1}))
		if err != nil {
			t.Fatal(err)
		}
		waitID(t, ev.connected, 1, "OnConnect")
		calls.Store(0)

		denied := make(chan error, 1)
		go func() {
			_, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 666, UserData: ud}))
			denied <- err
		}()
		<-slowStarted
		for i := range 5 {
			if err := first.Send([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if p := recvServer(t, s); p.Data[0] != byte(i) {
				t.Fatalf("payload %d = %v", i, p.Data)
			}
		}
		time.Sleep(300 * time.Millisecond) // the waiting client sends ~15 more requests
		close(release)
		err = <-denied
		var de *DeniedError
		if !errors.As(err, &de) || de.Reason != DeniedAlreadyConnected {
			t.Fatalf("Dial(666) = %v, want denied (the hook's reason)", err)
		}
		if got := calls.Load(); got != 1 {
			t.Fatalf("hook called %d times for one client that retried, want 1", got)
		}
		mu.Lock()
		gotUD := seen[666]
		mu.Unlock()
		if gotUD != ud {
			t.Fatal("hook did not receive the token's user data")
		}
		if _, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 2})); err != nil {
			t.Fatalf("accepted client: %v", err)
		}
		if got := calls.Load(); got != 2 {
			t.Fatalf("hook calls = %d, want 2", got)
		}
	})
}

func TestCloseCancelsRunningHook(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		started := make(chan struct{})
		returned := make(chan error, 1)
		s := n.startServer(t, ServerConfig{
			PrivateKey:            key,
			ConnectRequestTimeout: time.Minute,
			OnConnectRequest: func(ctx context.Context, _ uint64, _ [UserDataBytes]byte) error {
				close(started)
				<-ctx.Done()
				returned <- ctx.Err()
				return ctx.Err()
			},
		}, nil)
		r := n.rawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 1}), s.Addr())
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
	})
}

func TestReplayedPacketsIgnored(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key}, nil)
		r := n.rawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 11}), s.Addr())
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
	})
}

func TestForgedPacketsIgnored(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s := n.startServer(t, ServerConfig{PrivateKey: key}, nil)
		tok := mint(t, key, 0, s, TokenParams{ClientID: 12})
		r := n.rawClient(t, tok, s.Addr())
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

		// Correct keys, but from another address (session): no mapping there, so ignored.
		other := n.rawClient(t, tok, s.Addr())
		other.write(r.seal(r.send, packetPayload, 6, []byte("other address")))
		other.write(r.seal(r.send, packetDisconnect, 7, nil))

		r.write(r.seal(r.send, packetPayload, 8, []byte("genuine")))
		if p := recvServer(t, s); string(p.Data) != "genuine" {
			t.Fatalf("got %q, want the genuine payload only", p.Data)
		}
		if s.NumClients() != 1 {
			t.Fatal("a forged disconnect disconnected the client")
		}
	})
}

func TestTokenReusedFromSecondAddressRefused(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		ev := newServerEvents()
		logs := &logRecorder{}
		s := n.startServer(t, ServerConfig{PrivateKey: key, Logger: slog.New(logs)}, ev)
		tok := mint(t, key, 0, s, TokenParams{ClientID: 13})

		// The second address uses the token first, but stops before connecting: the token is
		// now bound to that address.
		thief := n.rawClient(t, tok, s.Addr())
		thief.sendRequest()
		if h, _, err := thief.read(testWait); err != nil || h.typ != packetChallenge {
			t.Fatalf("first use: %v %v", h.typ, err)
		}
		owner := n.rawClient(t, tok, s.Addr())
		for range 3 {
			owner.sendRequest()
		}
		// The server has handled the three requests (and answered none).
		if n.fake() {
			synctest.Wait()
		} else {
			eventually.True(t, testWait, func() bool { return logs.count(errTokenReused.Error()) == 3 }, "three reused-token requests not ignored")
		}
		if q := owner.queued(); q != 0 {
			t.Fatalf("server answered a reused token from a second address with %d packets", q)
		}
		// The first address may still complete its handshake.
		thief.connect()
		waitID(t, ev.connected, 13, "OnConnect")
	})
}

func TestNewServerValidatesConfig(t *testing.T) {
	t.Parallel()
	cert, _ := testCert(t)
	tests := []struct {
		name string
		cfg  ServerConfig
	}{
		{"no address", ServerConfig{}},
		{"too many clients", ServerConfig{Addr: "127.0.0.1:0", MaxClients: MaxClientsLimit + 1}},
		{"negative clients", ServerConfig{Addr: "127.0.0.1:0", MaxClients: -1}},
		{"unknown format", ServerConfig{Addr: "127.0.0.1:0", Format: 9}},
		{"unknown transport", ServerConfig{Addr: "127.0.0.1:0", Transport: "quic"}},
		{"webtransport without TLS config", ServerConfig{Addr: "127.0.0.1:0", Transport: TransportWebTransport}},
		{"webtransport without certificate", ServerConfig{Addr: "127.0.0.1:0", Transport: TransportWebTransport, TLSConfig: &tls.Config{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewServer(tc.cfg); err == nil {
				t.Fatal("NewServer accepted a bad config")
			}
		})
	}
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxClients() != DefaultMaxClients || s.Transport() != TransportUDP {
		t.Fatalf("MaxClients = %d, Transport = %q", s.MaxClients(), s.Transport())
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("Serve before Listen succeeded")
	}
	_ = s.Close()
	w, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Transport: "WebTransport", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Transport() != TransportWebTransport || w.cfg.MaxSessionsPerIP != DefaultMaxSessionsPerIP || w.cfg.SessionIdleTimeout != DefaultSessionIdleTimeout {
		t.Fatalf("webtransport defaults: %q %d %v", w.Transport(), w.cfg.MaxSessionsPerIP, w.cfg.SessionIdleTimeout)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		key := testPrivateKey(t)
		s, err := NewServer(n.serverConfig(t, ServerConfig{PrivateKey: key}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := s.Listen(ctx); err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ctx) }()
		c, err := n.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1}))
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
	})
}

// rawClient speaks the protocol packet by packet, to test what a well-behaved Client never
// sends.
type rawClient struct {
	t    testing.TB
	conn clientConn
	tok  *ConnectToken
	send *packetCipher
	recv *packetCipher
}

// rawClient returns a raw client on the network (over WebTransport: its own session,
// without certificate validation).
func (n testNet) rawClient(t testing.TB, tok *ConnectToken, server netip.AddrPort) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	conn, err := n.network().dial(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	send, _ := newPacketCipher(tok.ClientToServerKey, tok.Format, tok.ProtocolID)
	recv, _ := newPacketCipher(tok.ServerToClientKey, tok.Format, tok.ProtocolID)
	return &rawClient{t: t, conn: conn, tok: tok, send: send, recv: recv}
}

// queued reports how many received datagrams wait to be read (in-memory and WebTransport
// sockets only).
func (r *rawClient) queued() int {
	if c, ok := r.conn.(*memConn); ok {
		return c.queued()
	}
	if n, ok := wtQueued(r.conn); ok {
		return n
	}
	r.t.Fatalf("queued: unsupported socket %T", r.conn)
	return 0
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
	t.Parallel()
	onLoopback(t, testManyClients)
}

func testManyClients(t *testing.T, tn testNet) {
	const n = 32
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := tn.startServer(t, ServerConfig{PrivateKey: key, MaxClients: n}, ev)
	clients := make([]*Client, n)
	errs := make(chan error, n)
	for i := range clients {
		tok := mint(t, key, 0, s, TokenParams{ClientID: uint64(1000 + i)})
		go func() {
			c, err := tn.dial(t, s, tok)
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
	if _, err := tn.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1, TimeoutSeconds: 5})); !errors.Is(err, ErrConnectionDenied) {
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
	if _, err := tn.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 2})); err != nil {
		t.Fatalf("after a client left: %v", err)
	}
}
