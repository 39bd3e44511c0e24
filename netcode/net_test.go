package netcode

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain runs up to 16 tests at once instead of GOMAXPROCS (an explicit -parallel still
// wins): the loopback tests mostly wait for the protocol's timeouts (whole seconds of real
// time over WebTransport), not for the CPU. Under the race detector, whose TLS and QUIC
// handshakes cost ten times the CPU, 4.
func TestMain(m *testing.M) {
	parallel := "16"
	if raceEnabled {
		parallel = "4"
	}
	if err := flag.Set("test.parallel", parallel); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// testNet is where a client/server test runs: the in-memory datagram network on fake time
// (mem set; the test runs in a synctest bubble), or loopback over a real transport (UDP or
// WebTransport) on real time. The protocol tests are written once against it and run on
// several networks (onLoopback, onMemAndWebTransport).
type testNet struct {
	transport Transport
	mem       *memNetwork
}

var (
	udpNet = testNet{transport: TransportUDP}
	wtNet  = testNet{transport: TransportWebTransport}
)

// fake reports whether the test runs on fake time (the in-memory network).
func (n testNet) fake() bool { return n.mem != nil }

// onLoopback runs f as a parallel subtest over loopback UDP and over loopback WebTransport.
func onLoopback(t *testing.T, f func(t *testing.T, n testNet)) {
	t.Helper()
	for _, n := range []testNet{udpNet, wtNet} {
		t.Run(string(n.transport), func(t *testing.T) {
			t.Parallel()
			f(t, n)
		})
	}
}

// onMemAndWebTransport runs f as a parallel subtest on the in-memory network (fake time,
// standing for UDP: exact durations) and over loopback WebTransport (real time).
func onMemAndWebTransport(t *testing.T, f func(t *testing.T, n testNet)) {
	t.Helper()
	t.Run("memnet", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, mem *memNetwork) { f(t, testNet{transport: TransportUDP, mem: mem}) })
	})
	t.Run("webtransport", func(t *testing.T) {
		t.Parallel()
		f(t, wtNet)
	})
}

// timeout returns a token timeout (seconds) for a test that needs its connection to open
// within it: as given on fake time, twice that on real time, where a WebTransport session
// (QUIC, TLS, HTTP/3) under the race detector on a loaded machine can take a second.
func (n testNet) timeout(seconds int32) int32 {
	if n.fake() {
		return seconds
	}
	return 2 * seconds
}

// checkElapsed checks how long something took: exactly want on fake time (lo..hi when
// hi > lo), at least lo minus a little delivery latency on real time (where an upper bound
// would depend on the machine's speed).
func (n testNet) checkElapsed(t testing.TB, what string, d, lo, hi time.Duration) {
	t.Helper()
	if hi < lo {
		hi = lo
	}
	if n.fake() {
		if d < lo || d > hi {
			t.Errorf("%s after %v, want %v..%v", what, d, lo, hi)
		}
		return
	}
	if d < lo-50*time.Millisecond {
		t.Errorf("%s after %v, want at least %v", what, d, lo)
	}
}

// testCert makes a self-signed certificate for loopback.
func testCert(t testing.TB) (tls.Certificate, CertDigest) {
	t.Helper()
	cert, d, err := SelfSignedCert([]string{"127.0.0.1", "::1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cert, d
}

// serverConfig fills the network's and the tests' defaults into cfg.
func (n testNet) serverConfig(t testing.TB, cfg ServerConfig) ServerConfig {
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
	if cfg.Transport == "" {
		cfg.Transport = n.transport
	}
	if cfg.Transport == TransportWebTransport {
		if cfg.TLSConfig == nil {
			cert, _ := testCert(t)
			cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		}
		if cfg.MaxSessionsPerIP == 0 {
			cfg.MaxSessionsPerIP = 1000 // every test client comes from 127.0.0.1
		}
	}
	return cfg
}

// startServer starts a server on the network with the tests' defaults filled into cfg. It is
// closed when the test ends, and Serve must then have returned nil.
func (n testNet) startServer(t testing.TB, cfg ServerConfig, ev *serverEvents) *Server {
	t.Helper()
	cfg = n.serverConfig(t, cfg)
	if ev != nil {
		cfg.OnConnect = func(id uint64, _ netip.AddrPort) { ev.connected <- id }
		cfg.OnDisconnect = func(id uint64, _ netip.AddrPort) { ev.disconnected <- id }
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n.mem == nil {
		err = s.Listen(context.Background())
	} else {
		err = s.listenOn(n.mem.listen())
	}
	if err != nil {
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

// serverDigest returns the digest of the certificate a WebTransport server presents.
func serverDigest(t testing.TB, s *Server) *CertDigest {
	t.Helper()
	c := s.cfg.TLSConfig
	if c == nil {
		return nil
	}
	if len(c.Certificates) > 0 {
		d := DigestOfDER(c.Certificates[0].Certificate[0])
		return &d
	}
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	d := DigestOfDER(cert.Certificate[0])
	return &d
}

// clientConfig is cfg for a client on the network, pinned to digest over WebTransport.
func (n testNet) clientConfig(cfg ClientConfig, digest *CertDigest) ClientConfig {
	cfg.Transport = n.transport
	if n.mem != nil {
		cfg.network = n.mem
	}
	if n.transport == TransportWebTransport && cfg.CertDigest == nil {
		cfg.CertDigest = digest
	}
	return cfg
}

// dial connects to s's network (pinned to its certificate over WebTransport); the client
// is closed when the test ends.
func (n testNet) dial(t testing.TB, s *Server, tok *ConnectToken) (*Client, error) {
	t.Helper()
	var digest *CertDigest
	if s != nil {
		digest = serverDigest(t, s)
	}
	return n.dialPinned(t, tok, digest)
}

// dialPinned connects with tok, pinned to digest over WebTransport.
func (n testNet) dialPinned(t testing.TB, tok *ConnectToken, digest *CertDigest) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	cfg := n.clientConfig(ClientConfig{Format: tok.Format, SendInterval: testInterval, Logger: testLogger()}, digest)
	c, err := DialToken(ctx, tok, cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// network returns the clientNetwork raw clients use (no certificate validation).
func (n testNet) network() clientNetwork {
	switch {
	case n.mem != nil:
		return n.mem
	case n.transport == TransportWebTransport:
		return webTransportNetwork(ClientConfig{})
	}
	return udpNetwork{}
}

// deadAddr returns an address where nothing listens (any more).
func (n testNet) deadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	if n.mem != nil {
		dead := n.mem.listen()
		_ = dead.Close()
		return localAddrPort(dead)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	return localAddrPort(c)
}

// vanish makes a client's socket disappear without a word: over WebTransport its UDP
// socket closes under QUIC (no CONNECTION_CLOSE goes out); elsewhere it just stops sending.
func (n testNet) vanish(c clientConn) { wtVanish(c) }

// killServer silences a server's socket: nothing reaches its clients any more (no
// disconnect packets, no session close).
func (n testNet) killServer(s *Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !wtKill(s.conn) {
		_ = s.conn.Close()
	}
}

// logRecorder is a slog.Handler that keeps every record (message and attributes as text, at
// every level), so that a test can wait for a log line as a signal.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many lines contain every one of parts.
func (r *logRecorder) count(parts ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}
