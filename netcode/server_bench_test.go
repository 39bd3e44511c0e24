package netcode

import (
	"context"
	"testing"
	"time"
)

// Benchmarks of the UDP server and client. Run them with
//
//	go test -run XXX -bench . -benchmem ./netcode/

// BenchmarkLoopbackEcho measures one payload from the client to the server and back, over
// loopback UDP, through both sides' full stacks (seal, socket, replay check, open, queue).
func BenchmarkLoopbackEcho(b *testing.B) {
	key := testPrivateKey(b)
	s := startServer(b, ServerConfig{PrivateKey: key}, nil)
	c, err := dial(b, mint(b, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	msg := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := c.Send(msg); err != nil {
			b.Fatal(err)
		}
		p, err := s.Recv(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Send(p.ClientID, p.Data); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Recv(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "packets/s")
}

// BenchmarkLoopbackClientToServer measures one-way throughput: the client sends 64-byte
// payloads with up to 64 in flight, the server receives them.
func BenchmarkLoopbackClientToServer(b *testing.B) {
	key := testPrivateKey(b)
	s := startServer(b, ServerConfig{PrivateKey: key}, nil)
	c, err := dial(b, mint(b, key, 0, s, TokenParams{ClientID: 1}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg := make([]byte, 64)
	window := make(chan struct{}, 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := 0; i < b.N; i++ {
			window <- struct{}{}
			if c.Send(msg) != nil {
				return
			}
		}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := s.Recv(ctx); err != nil {
			b.Fatalf("after %d payloads: %v (dropped by the queue: %d)", i, err, s.DroppedPayloads())
		}
		<-window
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
}

// BenchmarkServerHandlePayload measures the server's work for one payload packet without
// sockets: header, replay check, decryption, copy for Recv. The client-side sealing of the
// packet is included.
func BenchmarkServerHandlePayload(b *testing.B) {
	h := newPacketHarness(b)
	msg := make([]byte, 64)
	buf := make([]byte, 0, packetBufferBytes)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkt := h.send.appendPacket(buf[:0], packetPayload, uint64(i), msg)
		h.s.handlePacket(h.clientAddr, pkt)
		<-h.s.recvq
	}
}

// BenchmarkServerSend measures Server.Send of a 64-byte payload without a socket.
func BenchmarkServerSend(b *testing.B) {
	h := newPacketHarness(b)
	h.s.byID[1].confirmed = true
	msg := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.s.Send(1, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake measures a full connection over loopback: Dial (request, challenge,
// response, keep-alive) and Close (redundant disconnect packets). Tokens are minted before
// the timer starts.
func BenchmarkHandshake(b *testing.B) {
	key := testPrivateKey(b)
	s := startServer(b, ServerConfig{PrivateKey: key, MaxClients: MaxClientsLimit}, nil)
	toks := make([]*ConnectToken, b.N)
	for i := range toks {
		toks[i] = mint(b, key, 0, s, TokenParams{ClientID: uint64(i + 1)})
	}
	ctx := context.Background()
	cfg := ClientConfig{SendInterval: testInterval, DisconnectPackets: 1, Logger: testLogger()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := DialToken(ctx, toks[i], cfg)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}

// BenchmarkServerConnectionRequest measures the server's work for a new connection request
// without sockets: checks, opening the private token, token history, handshake, challenge.
func BenchmarkServerConnectionRequest(b *testing.B) {
	h := newPacketHarness(b)
	m := &Minter{Key: h.s.cfg.PrivateKey, Now: func() time.Time { return time.Unix(harnessUnix, 0) }}
	// Distinct tokens from one address: each request is opened in full (a repeat of the
	// previous request would take the retry shortcut instead).
	reqs := make([][]byte, 256)
	for i := range reqs {
		tok, err := m.Mint(TokenParams{ProtocolID: testProtocolID, ClientID: uint64(i + 2), ServerAddrs: h.tok.ServerAddrs})
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = appendRequestPacket(nil, tok)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.s.handlePacket(h.otherAddr, reqs[i%len(reqs)])
	}
	b.StopTimer()
	if h.w.packets < b.N {
		b.Fatalf("%d challenges for %d requests", h.w.packets, b.N)
	}
}
