package netcode

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// rawServer plays the server's side packet by packet, to test how Client treats what a
// well-behaved Server never sends.
type rawServer struct {
	t        testing.TB
	conn     packetConn
	in       chan rawDatagram
	digest   *CertDigest // of the certificate over WebTransport
	tok      *ConnectToken
	send     *packetCipher // server-to-client
	recv     *packetCipher // client-to-server
	peer     netip.AddrPort
	sequence uint64
}

type rawDatagram struct {
	from netip.AddrPort
	b    []byte
}

// rawServer returns a raw server on the network.
func (n testNet) rawServer(t testing.TB, f Format) *rawServer {
	t.Helper()
	var conn packetConn
	r := &rawServer{t: t, in: make(chan rawDatagram, 64)}
	switch {
	case n.mem != nil:
		conn = n.mem.listen()
	case n.transport == TransportWebTransport:
		cert, d := testCert(t)
		r.digest = &d
		l, err := listenWebTransport(context.Background(), wtListenConfig{
			addr: "127.0.0.1:0", tls: &tls.Config{Certificates: []tls.Certificate{cert}},
			maxPerIP: 8, idleTimeout: testWait, log: testLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		conn = l
	default:
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conn = udp
	}
	r.conn = conn
	done := make(chan struct{})
	go func() { // reads until the socket closes
		defer close(done)
		buf := make([]byte, packetBufferBytes)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, errPeerClosed) {
				continue
			}
			if err != nil {
				return
			}
			select {
			case r.in <- rawDatagram{from: from, b: bytes.Clone(buf[:n])}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	m := &Minter{Key: testPrivateKey(t), Format: f}
	var err error
	r.tok, err = m.Mint(TokenParams{ProtocolID: testProtocolID, ClientID: 77, TimeoutSeconds: 2,
		ServerAddrs: []netip.AddrPort{localAddrPort(conn)}})
	if err != nil {
		t.Fatal(err)
	}
	r.send, _ = newPacketCipher(r.tok.ServerToClientKey, f, testProtocolID)
	r.recv, _ = newPacketCipher(r.tok.ClientToServerKey, f, testProtocolID)
	return r
}

// read returns the type and decrypted body of the next packet from the client.
func (r *rawServer) read(timeout time.Duration) (packetType, []byte, error) {
	var d rawDatagram
	select {
	case d = <-r.in:
	case <-time.After(timeout):
		return 0, nil, os.ErrDeadlineExceeded
	}
	r.peer = d.from
	if d.b[0] == byte(packetRequest) {
		if _, err := readRequestPacket(d.b, r.tok.Format); err != nil {
			r.t.Fatalf("client sent a bad request: %v", err)
		}
		return packetRequest, nil, nil
	}
	h, err := readPacketHeader(d.b)
	if err != nil {
		r.t.Fatalf("client sent a bad packet: %v", err)
	}
	body, err := r.recv.open(d.b, h)
	if err != nil {
		r.t.Fatalf("client packet failed authentication: %v", err)
	}
	return h.typ, body, nil
}

func (r *rawServer) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(b, r.peer); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawServer) packet(c *packetCipher, typ packetType, body []byte) []byte {
	r.sequence++
	return c.appendPacket(nil, typ, r.sequence, body)
}

// accept answers the handshake: a challenge for the first request, a keep-alive for the
// response (which must echo the challenge).
func (r *rawServer) accept() {
	r.t.Helper()
	challenge := make([]byte, challengeBodyBytes)
	for i := range challenge {
		challenge[i] = byte(i)
	}
	for {
		typ, body, err := r.read(testWait)
		if err != nil {
			r.t.Fatalf("handshake: %v", err)
		}
		switch typ {
		case packetRequest:
			r.write(r.packet(r.send, packetChallenge, challenge))
		case packetResponse:
			if !bytes.Equal(body, challenge) {
				r.t.Fatal("challenge response does not echo the challenge")
			}
			r.write(r.packet(r.send, packetKeepAlive, r.tok.Format.byteOrder().AppendUint64(nil, 77)))
			return
		}
	}
}

func TestClientAgainstRawServer(t *testing.T) {
	t.Parallel()
	onLoopback(t, func(t *testing.T, n testNet) {
		for _, f := range []Format{FormatLightyear017, FormatLightyear020} {
			t.Run(f.String(), func(t *testing.T) {
				t.Parallel()
				testClientAgainstRawServer(t, n, f)
			})
		}
	})
}

func testClientAgainstRawServer(t *testing.T, n testNet, f Format) {
	{
		{
			r := n.rawServer(t, f)
			res := make(chan error, 1)
			var c *Client
			go func() {
				var err error
				c, err = n.dialPinned(t, r.tok, r.digest)
				res <- err
			}()
			r.accept()
			if err := <-res; err != nil {
				t.Fatal(err)
			}
			if c.ClientID() != 77 {
				t.Fatalf("ClientID = %d", c.ClientID())
			}

			// Replays and forgeries are dropped; only "5", "3" and "end" arrive.
			first := r.packet(r.send, packetPayload, []byte("5"))
			r.write(first)
			if got := recvClient(t, c); string(got) != "5" {
				t.Fatalf("got %q", got)
			}
			wrongKey, _ := newPacketCipher(testPrivateKey(t), f, testProtocolID)
			otherFormat, _ := newPacketCipher(r.tok.ServerToClientKey, 1-f, testProtocolID)
			r.write(first)
			r.write(r.packet(wrongKey, packetPayload, []byte("wrong key")))
			r.write(r.packet(r.recv, packetPayload, []byte("reflected client key")))
			r.write(r.packet(otherFormat, packetPayload, []byte("other byte order")))
			r.write(r.packet(wrongKey, packetDisconnect, nil))
			r.write(r.packet(r.send, packetChallenge, make([]byte, challengeBodyBytes))) // not while connected
			r.write(r.send.appendPacket(nil, packetPayload, 0, []byte("3")))             // older, unseen
			r.write(r.packet(r.send, packetPayload, []byte("end")))
			for _, want := range []string{"3", "end"} {
				if got := recvClient(t, c); string(got) != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if c.Err() != nil {
				t.Fatalf("client ended: %v", c.Err())
			}

			// The client sends keep-alives carrying its id while idle, and payloads.
			if err := c.Send([]byte("up")); err != nil {
				t.Fatal(err)
			}
			sawPayload, sawKeepAlive := false, false
			for !sawPayload || !sawKeepAlive {
				typ, body, err := r.read(testWait)
				if err != nil {
					t.Fatal(err)
				}
				switch typ {
				case packetPayload:
					sawPayload = string(body) == "up"
				case packetKeepAlive:
					sawKeepAlive = f.byteOrder().Uint64(body) == 77
				}
			}

			// A genuine disconnect ends the connection.
			r.write(r.packet(r.send, packetDisconnect, nil))
			select {
			case <-c.Done():
			case <-time.After(testWait):
				t.Fatal("client ignored the disconnect")
			}
			if !errors.Is(c.Err(), ErrDisconnected) {
				t.Fatalf("Err = %v", c.Err())
			}
		}
	}
}

func TestClientDeniedReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   []byte
		reason DeniedReason
		text   string
	}{
		{"standard empty body", nil, DeniedUnspecified, ""},
		{"server full", []byte{0}, DeniedServerFull, ""},
		{"already connected", []byte{3}, DeniedAlreadyConnected, ""},
		{"custom text", []byte{6, 7, 'n', 'o', ' ', 's', 'l', 'o', 't'}, DeniedCustom, "no slot"},
	}
	onLoopback(t, func(t *testing.T, n testNet) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := n.rawServer(t, FormatLightyear017)
				res := make(chan error, 1)
				go func() {
					_, err := n.dialPinned(t, r.tok, r.digest)
					res <- err
				}()
				if typ, _, err := r.read(testWait); err != nil || typ != packetRequest {
					t.Fatalf("expected a request: %v %v", typ, err)
				}
				r.write(r.packet(r.send, packetDenied, tc.body))
				err := <-res
				var de *DeniedError
				if !errors.As(err, &de) || !errors.Is(err, ErrConnectionDenied) {
					t.Fatalf("err = %v, want a DeniedError", err)
				}
				if de.Reason != tc.reason || de.Message != tc.text {
					t.Fatalf("denied %v %q, want %v %q", de.Reason, de.Message, tc.reason, tc.text)
				}
			})
		}
	})
}

func TestClientChallengeResponseTimeout(t *testing.T) {
	t.Parallel()
	onMemAndWebTransport(t, func(t *testing.T, n testNet) {
		r := n.rawServer(t, FormatLightyear017)
		res := make(chan error, 1)
		go func() {
			_, err := n.dialPinned(t, r.tok, r.digest)
			res <- err
		}()
		if typ, _, err := r.read(testWait); err != nil || typ != packetRequest {
			t.Fatalf("expected a request: %v %v", typ, err)
		}
		r.write(r.packet(r.send, packetChallenge, make([]byte, challengeBodyBytes)))
		challenged := time.Now()
		// Never accept the response: the token's 2 s timeout runs out in the second state.
		select {
		case err := <-res:
			if !errors.Is(err, ErrConnectionResponseTimedOut) || !errors.Is(err, ErrConnectionTimedOut) {
				t.Fatalf("err = %v, want ErrConnectionResponseTimedOut", err)
			}
			n.checkElapsed(t, "timed out after the challenge", time.Since(challenged), 2*time.Second, 2*time.Second)
		case <-time.After(2 * testWait):
			t.Fatal("Dial did not time out")
		}
	})
}
