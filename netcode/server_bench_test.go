package netcode

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// Benchmarks of the server and client over loopback UDP and WebTransport side by side (one
// sub-benchmark per transport), and of the server's packet handling without sockets. Run
// them with
//
//	go test -run XXX -bench . -benchmem ./netcode/

// benchNets are the transports the loopback benchmarks compare.
var benchNets = []testNet{udpNet, wtNet}

// BenchmarkLoopbackEcho measures one payload from the client to the server and back, over
// loopback, through both sides' full stacks (seal, socket or QUIC, replay check, open,
// queue).
func BenchmarkLoopbackEcho(b *testing.B) {
	for _, n := range benchNets {
		b.Run(string(n.transport), func(b *testing.B) {
			key := testPrivateKey(b)
			s := n.startServer(b, ServerConfig{PrivateKey: key}, nil)
			c, err := n.dial(b, s, mint(b, key, 0, s, TokenParams{ClientID: 1}))
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
		})
	}
}

// BenchmarkLoopbackClientToServer measures one-way throughput: the client sends 64-byte
// payloads with up to window in flight, the server receives them. Over WebTransport the window
// is 16: quic-go's HTTP/3 layer queues at most 32 datagrams per session and drops beyond, a
// loss a game tolerates but this benchmark does not.
func BenchmarkLoopbackClientToServer(b *testing.B) {
	for _, n := range benchNets {
		window := 64
		if n.transport == TransportWebTransport {
			window = 16
		}
		b.Run(string(n.transport), func(b *testing.B) {
			key := testPrivateKey(b)
			s := n.startServer(b, ServerConfig{PrivateKey: key}, nil)
			c, err := n.dial(b, s, mint(b, key, 0, s, TokenParams{ClientID: 1}))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			msg := make([]byte, 64)
			inFlight := make(chan struct{}, window)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			go func() {
				for i := 0; i < b.N; i++ {
					inFlight <- struct{}{}
					if c.Send(msg) != nil {
						return
					}
				}
			}()
			for i := 0; i < b.N; i++ {
				if _, err := s.Recv(ctx); err != nil {
					b.Fatalf("after %d payloads: %v (dropped by the queue: %d, by the transport: %d)", i, err, s.DroppedPayloads(), s.DroppedDatagrams())
				}
				<-inFlight
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
		})
	}
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

// BenchmarkHandshake measures a full connection over loopback: Dial (over WebTransport the
// QUIC and WebTransport handshakes first, then request, challenge, response, keep-alive) and
// Close (redundant disconnect packets; over WebTransport also the session's close). Tokens
// are minted before the timer starts.
func BenchmarkHandshake(b *testing.B) {
	for _, n := range benchNets {
		b.Run(string(n.transport), func(b *testing.B) {
			key := testPrivateKey(b)
			s := n.startServer(b, ServerConfig{PrivateKey: key, MaxClients: MaxClientsLimit}, nil)
			toks := make([]*ConnectToken, b.N)
			for i := range toks {
				toks[i] = mint(b, key, 0, s, TokenParams{ClientID: uint64(i + 1)})
			}
			ctx := context.Background()
			cfg := n.clientConfig(ClientConfig{SendInterval: testInterval, DisconnectPackets: 1, Logger: testLogger()}, serverDigest(b, s))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := DialToken(ctx, toks[i], cfg)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}

// BenchmarkConnectedClientMemory measures the heap that one connected client costs, both
// ends together (client and server run in this process): 200 clients connect, and the heap
// grown since before the first one (after a GC each time) is divided by 200. It also
// reports the goroutines per client.
func BenchmarkConnectedClientMemory(b *testing.B) {
	const clients = 200
	for _, n := range benchNets {
		b.Run(string(n.transport), func(b *testing.B) {
			key := testPrivateKey(b)
			// Lightyear's 10 Hz keep-alives both ways, as in a real game.
			s := n.startServer(b, ServerConfig{PrivateKey: key, MaxClients: MaxClientsLimit, KeepAliveInterval: DefaultKeepAliveInterval}, nil)
			ctx := context.Background()
			cfg := n.clientConfig(ClientConfig{Logger: testLogger()}, serverDigest(b, s))
			var perClient, goroutines float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				toks := make([]*ConnectToken, clients)
				for j := range toks {
					toks[j] = mint(b, key, 0, s, TokenParams{ClientID: uint64(i*clients + j + 1)})
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				g0 := runtime.NumGoroutine()
				cs := make([]*Client, clients)
				for j := range cs {
					c, err := DialToken(ctx, toks[j], cfg)
					if err != nil {
						b.Fatal(err)
					}
					cs[j] = c
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perClient += float64(after.HeapAlloc-before.HeapAlloc) / clients
				goroutines += float64(runtime.NumGoroutine()-g0) / clients
				for _, c := range cs {
					_ = c.Close()
				}
			}
			b.ReportMetric(perClient/float64(b.N), "heap-B/client")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/client")
		})
	}
}

// BenchmarkServerConnectionRequest measures the server's work for a new connection request
// without sockets: checks, opening the private token, token history, handshake, challenge.
func BenchmarkServerConnectionRequest(b *testing.B) {
	h := newPacketHarness(b)
	m := &Minter{Key: h.s.cfg.PrivateKey}
	// Distinct tokens from one address: each request is opened in full (a repeat of the
	// previous request would take the retry shortcut instead).
	reqs := make([][]byte, 256)
	for i := range reqs {
		tok, err := m.Mint(TokenParams{ProtocolID: testProtocolID, ClientID: uint64(i + 2), ExpireSeconds: -1, ServerAddrs: h.tok.ServerAddrs})
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
