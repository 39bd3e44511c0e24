package netcode

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// rawServer plays the server's side packet by packet on loopback, to test how Client treats
// what a well-behaved Server never sends.
type rawServer struct {
	t        testing.TB
	conn     *net.UDPConn
	tok      *ConnectToken
	send     *packetCipher // server-to-client
	recv     *packetCipher // client-to-server
	peer     netip.AddrPort
	sequence uint64
}

func newRawServer(t testing.TB, f Format) *rawServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := &rawServer{t: t, conn: conn}
	m := &Minter{Key: testPrivateKey(t), Format: f}
	r.tok, err = m.Mint(TokenParams{ProtocolID: testProtocolID, ClientID: 77, TimeoutSeconds: 2,
		ServerAddrs: []netip.AddrPort{conn.LocalAddr().(*net.UDPAddr).AddrPort()}})
	if err != nil {
		t.Fatal(err)
	}
	r.send, _ = newPacketCipher(r.tok.ServerToClientKey, f, testProtocolID)
	r.recv, _ = newPacketCipher(r.tok.ClientToServerKey, f, testProtocolID)
	return r
}

// read returns the type and decrypted body of the next packet from the client.
func (r *rawServer) read(timeout time.Duration) (packetType, []byte, error) {
	buf := make([]byte, packetBufferBytes)
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, nil, err
		}
		r.peer = from
		if buf[0] == byte(packetRequest) {
			if _, err := readRequestPacket(buf[:n], r.tok.Format); err != nil {
				r.t.Fatalf("client sent a bad request: %v", err)
			}
			return packetRequest, nil, nil
		}
		h, err := readPacketHeader(buf[:n])
		if err != nil {
			r.t.Fatalf("client sent a bad packet: %v", err)
		}
		body, err := r.recv.open(buf[:n], h)
		if err != nil {
			r.t.Fatalf("client packet failed authentication: %v", err)
		}
		return h.typ, bytes.Clone(body), nil
	}
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
	for _, f := range []Format{FormatLightyear017, FormatLightyear020} {
		t.Run(f.String(), func(t *testing.T) {
			r := newRawServer(t, f)
			res := make(chan error, 1)
			var c *Client
			go func() {
				var err error
				c, err = dial(t, r.tok)
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
		})
	}
}

func TestClientDeniedReasons(t *testing.T) {
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
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawServer(t, FormatLightyear017)
			res := make(chan error, 1)
			go func() {
				_, err := dial(t, r.tok)
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
}

func TestClientChallengeResponseTimeout(t *testing.T) {
	r := newRawServer(t, FormatLightyear017)
	res := make(chan error, 1)
	go func() {
		_, err := dial(t, r.tok)
		res <- err
	}()
	if typ, _, err := r.read(testWait); err != nil || typ != packetRequest {
		t.Fatalf("expected a request: %v %v", typ, err)
	}
	r.write(r.packet(r.send, packetChallenge, make([]byte, challengeBodyBytes)))
	// Never accept the response: the token's 2 s timeout runs out in the second state.
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	defer cancel()
	select {
	case err := <-res:
		if !errors.Is(err, ErrConnectionResponseTimedOut) || !errors.Is(err, ErrConnectionTimedOut) {
			t.Fatalf("err = %v, want ErrConnectionResponseTimedOut", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not time out")
	}
}
