//go:build !js

package netcode

// Tests of what is particular to the WebTransport transport: certificate pinning and renewal,
// the datagram size budget, and the limits on bad input. The protocol itself is tested over
// WebTransport by the shared tests in server_test.go and client_test.go (onLoopback,
// onMemAndWebTransport).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/bevygap-go/bevygap/internal/eventually"
)

// wtSessions returns how many sessions a server's WebTransport listener holds.
func wtSessions(c packetConn) int {
	l := c.(*wtListener)
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

// wtVanish closes a WebTransport client's UDP socket under QUIC: no CONNECTION_CLOSE goes out.
func wtVanish(c clientConn) {
	if w, ok := c.(*wtClientConn); ok {
		_ = w.udp.Close()
	}
}

// wtKill closes a WebTransport listener's UDP socket under QUIC (reports false for another
// socket): nothing reaches the clients any more.
func wtKill(c packetConn) bool {
	l, ok := c.(*wtListener)
	if ok {
		_ = l.udp.Close()
	}
	return ok
}

// wtQueued reports how many datagrams wait in a WebTransport client socket.
func wtQueued(c clientConn) (int, bool) {
	w, ok := c.(*wtClientConn)
	if !ok {
		return 0, false
	}
	return len(w.in), true
}

// rawSession opens a WebTransport session to s as a browser or a hand-written client would:
// any path and headers, a QUIC configuration of the test's choosing (nil: netcode's).
func rawSession(t testing.TB, s *Server, path string, hdr http.Header, qc *quic.Config) (*webtransport.Session, error) {
	t.Helper()
	if qc == nil {
		qc = quicConfig(0)
	}
	d := &webtransport.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}},
		QUICConfig:      qc,
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_, sess, err := d.Dial(ctx, "https://"+s.Addr().String()+path, hdr)
	if err == nil {
		t.Cleanup(func() { _ = sess.CloseWithError(0, "") })
	}
	return sess, err
}

// exchange checks that c and s still exchange a payload both ways.
func exchange(t testing.TB, s *Server, c *Client) {
	t.Helper()
	msg := []byte("still playing")
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	p := recvServer(t, s)
	if !bytes.Equal(p.Data, msg) {
		t.Fatalf("server got %q", p.Data)
	}
	if err := s.Send(p.ClientID, msg); err != nil {
		t.Fatal(err)
	}
	if got := recvClient(t, c); !bytes.Equal(got, msg) {
		t.Fatalf("client got %q", got)
	}
}

func TestParseTransport(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Transport{"udp": TransportUDP, " UDP ": TransportUDP, "WebTransport": TransportWebTransport, "webtransport": TransportWebTransport} {
		if got, err := ParseTransport(in); err != nil || got != want {
			t.Errorf("ParseTransport(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "quic", "wt", "websocket"} {
		if _, err := ParseTransport(in); err == nil {
			t.Errorf("ParseTransport(%q) accepted", in)
		}
	}
	if Transport("").String() != "udp" || TransportWebTransport.String() != "webtransport" {
		t.Error("String")
	}
	if _, err := DialToken(context.Background(), &ConnectToken{}, ClientConfig{Transport: "tcp"}); err == nil {
		t.Error("DialToken accepted an unknown transport")
	}
}

// TestWebTransportPinning: native mode trusts any certificate (as Lightyear's native client);
// a pinned client connects only to the certificate with its digest that a browser would pin,
// and fails at once with ErrCertMismatch otherwise.
func TestWebTransportPinning(t *testing.T) {
	t.Parallel()
	good, goodDigest := testCert(t)
	long, longDigest, err := SelfSignedCert([]string{"127.0.0.1"}, MaxCertValidity) // fine: exactly 14 days
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := testRSACert(t)
	rsaDigest := DigestOfDER(rsaCert.Certificate[0])
	tests := []struct {
		name   string
		cert   tls.Certificate
		digest *CertDigest
		want   error
	}{
		{"native, no validation", good, nil, nil},
		{"pinned to the server's digest", good, &goodDigest, nil},
		{"pinned to another digest", good, &CertDigest{0xab}, ErrCertMismatch},
		{"14-day certificate pinned", long, &longDigest, nil},
		{"RSA certificate, native", rsaCert, nil, nil},
		{"RSA certificate pinned (browsers refuse it)", rsaCert, &rsaDigest, ErrCertMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := testPrivateKey(t)
			s := wtNet.startServer(t, ServerConfig{PrivateKey: key, TLSConfig: &tls.Config{Certificates: []tls.Certificate{tc.cert}}}, nil)
			// A long token timeout: a mismatch must fail at once, not time out.
			tok := mint(t, key, 0, s, TokenParams{ClientID: 1, TimeoutSeconds: 60})
			cfg := ClientConfig{Transport: TransportWebTransport, CertDigest: tc.digest, SendInterval: testInterval, Logger: testLogger()}
			c, err := DialToken(context.Background(), tok, cfg)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Dial = %v, want %v", err, tc.want)
			}
			if err == nil {
				exchange(t, s, c)
				_ = c.Close()
			} else if errors.Is(err, ErrConnectionTimedOut) {
				t.Fatalf("mismatch reported as a timeout: %v", err)
			}
		})
	}
}

// TestWebTransportCertRenewal: a server serving a CertRotator's certificate keeps serving the
// old one while OnRenew runs, then the new one: a client pinned to the old digest then fails
// with ErrCertMismatch, one pinned to the new digest connects.
func TestWebTransportCertRenewal(t *testing.T) {
	t.Parallel()
	key := testPrivateKey(t)
	var s *Server
	dialPinned := func(d CertDigest, id uint64) error {
		c, err := wtNet.dialPinned(t, mint(t, key, 0, s, TokenParams{ClientID: id, TimeoutSeconds: 60}), &d)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	var duringNew error
	r, err := NewCertRotator(CertRotatorConfig{
		Hosts: []string{"127.0.0.1"}, Logger: testLogger(),
		OnRenew: func(ctx context.Context, d CertDigest) error {
			// Published first: until OnRenew returns, the old certificate is served.
			duringNew = dialPinned(d, 2)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s = wtNet.startServer(t, ServerConfig{PrivateKey: key, TLSConfig: r.TLSConfig()}, nil)
	old := r.Digest()
	if err := dialPinned(old, 1); err != nil {
		t.Fatalf("pinned to the first certificate: %v", err)
	}
	if err := r.renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(duringNew, ErrCertMismatch) {
		t.Fatalf("during OnRenew, pinned to the new digest: %v, want ErrCertMismatch (old still served)", duringNew)
	}
	if r.Digest() == old {
		t.Fatal("digest unchanged after renewal")
	}
	if err := dialPinned(r.Digest(), 3); err != nil {
		t.Fatalf("pinned to the renewed certificate: %v", err)
	}
	if err := dialPinned(old, 4); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("pinned to the old digest after renewal: %v, want ErrCertMismatch", err)
	}
}

// TestWebTransportLargestPackets: with QUIC packets of Lightyear's minimum size (1200 bytes,
// what our QUIC stack keeps), one WebTransport datagram carries at most 1162 bytes, which is
// exactly the largest payload packet (MaxWebTransportPayloadBytes with 8 sequence bytes);
// the connection request (1078 bytes) and the largest payloads both ways arrive.
func TestWebTransportLargestPackets(t *testing.T) {
	t.Parallel()
	const largest = 1 + 8 + MaxWebTransportPayloadBytes + macBytes
	if largest != 1162 || requestPacketBytes > largest {
		t.Fatalf("largest packet %d bytes, request %d", largest, requestPacketBytes)
	}
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := wtNet.startServer(t, ServerConfig{PrivateKey: key}, ev)

	// The budget is exact: 1162 bytes fit one datagram, 1163 do not.
	sess, err := rawSession(t, s, "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.SendDatagram(make([]byte, largest)); err != nil {
		t.Fatalf("%d-byte datagram: %v", largest, err)
	}
	var tooLarge *quic.DatagramTooLargeError
	if err := sess.SendDatagram(make([]byte, largest+1)); !errors.As(err, &tooLarge) {
		t.Fatalf("%d-byte datagram: %v, want DatagramTooLargeError", largest+1, err)
	}

	c, err := wtNet.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 5}))
	if err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.connected, 5, "OnConnect")
	// Sequences that take all 8 bytes: the largest packets both ways.
	c.mu.Lock()
	c.sequence = 1 << 63
	c.mu.Unlock()
	s.mu.Lock()
	s.byID[5].sequence = 1 << 63
	s.mu.Unlock()
	for i := range 3 {
		msg := bytes.Repeat([]byte{byte(i + 1)}, MaxWebTransportPayloadBytes)
		if err := c.Send(msg); err != nil {
			t.Fatal(err)
		}
		if p := recvServer(t, s); !bytes.Equal(p.Data, msg) {
			t.Fatal("largest payload to the server differs")
		}
		if err := s.Send(5, msg); err != nil {
			t.Fatal(err)
		}
		if got := recvClient(t, c); !bytes.Equal(got, msg) {
			t.Fatal("largest payload to the client differs")
		}
	}
	if d := s.DroppedDatagrams(); d != 0 {
		t.Fatalf("server dropped %d datagrams", d)
	}
	if d := c.conn.(*wtClientConn).dropped.Load(); d != 0 {
		t.Fatalf("client dropped %d datagrams", d)
	}
	for _, err := range []error{c.Send(make([]byte, MaxWebTransportPayloadBytes+1)), s.Send(5, make([]byte, MaxPayloadBytes))} {
		if !errors.Is(err, ErrPayloadSize) {
			t.Fatalf("payload over the WebTransport limit: %v, want ErrPayloadSize", err)
		}
	}
}

// TestWebTransportSessionLimitPerIP: connections beyond MaxSessionsPerIP from one address are
// refused at once during the QUIC handshake; the connected client keeps playing, and a slot
// frees when a connection closes.
func TestWebTransportSessionLimitPerIP(t *testing.T) {
	t.Parallel()
	key := testPrivateKey(t)
	// A lost QUIC close (loopback drops under load) frees the slot at the idle timeout.
	s := wtNet.startServer(t, ServerConfig{PrivateKey: key, MaxSessionsPerIP: 2, SessionIdleTimeout: time.Second}, nil)
	c, err := wtNet.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	idle, err := rawSession(t, s, "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wtNet.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 2, TimeoutSeconds: 60}))
	var qerr *quic.TransportError
	if !errors.As(err, &qerr) || qerr.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("third connection from one address: %v, want refused", err)
	}
	exchange(t, s, c)
	_ = idle.CloseWithError(0, "")
	eventually.NoError(t, testWait, func() error {
		c, err := wtNet.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 3, TimeoutSeconds: 60}))
		if err == nil {
			_ = c.Close()
		}
		return err
	}, "connect after a connection closed")
}

// TestWebTransportOversizedDatagram: datagrams longer than netcode's 1300-byte packets are
// dropped and counted; the session's other traffic and other clients are unaffected.
func TestWebTransportOversizedDatagram(t *testing.T) {
	t.Parallel()
	key := testPrivateKey(t)
	s := wtNet.startServer(t, ServerConfig{PrivateKey: key}, nil)
	c, err := wtNet.dial(t, s, mint(t, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		t.Fatal(err)
	}
	// A client whose QUIC packets are larger (loopback carries them) can send datagrams
	// larger than netcode's.
	qc := quicConfig(0)
	qc.InitialPacketSize = 1452
	sess, err := rawSession(t, s, "/", nil, qc)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.SendDatagram(make([]byte, maxPacketBytes+1)); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, testWait, func() bool { return s.DroppedDatagrams() == 1 }, "oversized datagram not counted (dropped %d)", s.DroppedDatagrams())
	if err := sess.SendDatagram(make([]byte, maxPacketBytes)); err != nil { // not netcode, but not oversized: ignored, not counted
		t.Fatal(err)
	}
	exchange(t, s, c)
	if d := s.DroppedDatagrams(); d != 1 {
		t.Fatalf("dropped %d datagrams, want 1", d)
	}
	u, err := NewServer(udpNet.serverConfig(t, ServerConfig{PrivateKey: key}))
	if err != nil {
		t.Fatal(err)
	}
	if d := u.DroppedDatagrams(); d != 0 {
		t.Fatalf("UDP server DroppedDatagrams = %d", d)
	}
}

// TestWebTransportIdleConnections: a QUIC connection that opens no session, and a session that
// sends no valid connection request (garbage, or a request for another protocol), are closed
// after SessionIdleTimeout and their slots freed; a session that sent a valid request is not,
// and completes its handshake after that time.
func TestWebTransportIdleConnections(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second // long enough for a session and its request on a loaded machine
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := wtNet.startServer(t, ServerConfig{PrivateKey: key, SessionIdleTimeout: idle, MaxSessionsPerIP: 3}, ev)
	start := time.Now()

	// 1. A QUIC connection without a session.
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	bare, err := quic.DialAddr(ctx, s.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, quicConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.CloseWithError(0, "")
	// 2. A session that sends garbage and a request for another protocol id.
	garbage := wtNet.rawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 1, ProtocolID: 7}), s.Addr())
	garbage.write([]byte("hello?"))
	garbage.sendRequest()
	// 3. A session that sends a valid request.
	good := wtNet.rawClient(t, mint(t, key, 0, s, TokenParams{ClientID: 2}), s.Addr())
	good.sendRequest()
	if h, _, err := good.read(testWait); err != nil || h.typ != packetChallenge {
		t.Fatalf("valid request: %v %v", h.typ, err)
	}

	for what, done := range map[string]<-chan struct{}{
		"connection without a session":    bare.Context().Done(),
		"session without a valid request": garbage.conn.(*wtClientConn).dead,
	} {
		select {
		case <-done:
		case <-time.After(testWait):
			t.Fatalf("%s not closed", what)
		}
		if d := time.Since(start); d < idle-50*time.Millisecond {
			t.Fatalf("%s closed after %v, before the idle timeout %v", what, d, idle)
		}
	}
	// The two slots are free again (the limit is 3 per address).
	eventually.NoError(t, testWait, func() error {
		_, err := rawSession(t, s, "/", nil, nil)
		return err
	}, "slot freed")
	good.connect()
	waitID(t, ev.connected, 2, "OnConnect after the idle timeout")
}

// TestWebTransportAnyPathAndOrigin: like Lightyear's server, any path and any Origin are
// accepted (browsers send their page's origin; webtransport-go's default would refuse it).
func TestWebTransportAnyPathAndOrigin(t *testing.T) {
	t.Parallel()
	s := wtNet.startServer(t, ServerConfig{PrivateKey: testPrivateKey(t)}, nil)
	hdr := http.Header{"Origin": []string{"https://play.example.com"}}
	if _, err := rawSession(t, s, "/some/path?x=1", hdr, nil); err != nil {
		t.Fatalf("session with a foreign Origin: %v", err)
	}
}

// TestWebTransportSessionClosedIsDisconnect: a client whose session closes without netcode
// disconnect packets is disconnected at once (not after its token's timeout), and a client
// whose session the server closes sees ErrDisconnected.
func TestWebTransportSessionClosedIsDisconnect(t *testing.T) {
	t.Parallel()
	key := testPrivateKey(t)
	ev := newServerEvents()
	s := wtNet.startServer(t, ServerConfig{PrivateKey: key}, ev)
	tok := func(id uint64) *ConnectToken {
		return mint(t, key, 0, s, TokenParams{ClientID: id, TimeoutSeconds: 60}) // a timeout would take a minute
	}
	c1, err := wtNet.dial(t, s, tok(1))
	if err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.connected, 1, "OnConnect")
	_ = c1.conn.(*wtClientConn).sess.CloseWithError(0, "gone")
	waitID(t, ev.disconnected, 1, "OnDisconnect after the session closed")

	c2, err := wtNet.dial(t, s, tok(2))
	if err != nil {
		t.Fatal(err)
	}
	waitID(t, ev.connected, 2, "OnConnect")
	addr := s.Clients()[0].Addr
	s.mu.Lock()
	s.peers.release(addr, false) // the session closes under the connection
	s.mu.Unlock()
	select {
	case <-c2.Done():
	case <-time.After(testWait):
		t.Fatal("client did not notice its session closed")
	}
	if !errors.Is(c2.Err(), ErrDisconnected) {
		t.Fatalf("client Err = %v, want ErrDisconnected", c2.Err())
	}
	waitID(t, ev.disconnected, 2, "OnDisconnect")
	if got := s.NumClients(); got != 0 {
		t.Fatalf("NumClients = %d", got)
	}
}
