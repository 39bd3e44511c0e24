package netcode

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// countingConn stands in for the socket of a server that is not serving: it counts what the
// server sends and never receives anything.
type countingConn struct{ packets, bytes int }

func (w *countingConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	w.packets++
	w.bytes += len(b)
	return len(b), nil
}

func (w *countingConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (w *countingConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 31500}
}

func (w *countingConn) Close() error { return nil }

// packetHarness is a server without a socket, with one connected client, fed datagrams
// directly through handlePacket.
type packetHarness struct {
	s          *Server
	w          *countingConn
	tok        *ConnectToken
	clientAddr netip.AddrPort
	otherAddr  netip.AddrPort
	send       *packetCipher // the connected client's client-to-server cipher
}

// harnessUnix is a moment in the past (Unix seconds): a token expiring then has expired.
const harnessUnix = 1764147600

func newPacketHarness(tb testing.TB) *packetHarness {
	tb.Helper()
	var key Key
	for i := range key {
		key[i] = byte(i + 1)
	}
	s, err := NewServer(ServerConfig{
		Addr:       "127.0.0.1:0",
		PrivateKey: key,
		ProtocolID: testProtocolID,
		Logger:     testLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	w := &countingConn{}
	if err := s.listenOn(w); err != nil {
		tb.Fatal(err)
	}
	h := &packetHarness{
		s:          s,
		w:          w,
		clientAddr: netip.MustParseAddrPort("127.0.0.1:40000"),
		otherAddr:  netip.MustParseAddrPort("127.0.0.1:40001"),
	}
	// The harness token never expires, however long a fuzzing run lasts.
	m := &Minter{Key: key}
	h.tok, err = m.Mint(TokenParams{ProtocolID: testProtocolID, ClientID: 1, ExpireSeconds: -1,
		ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:31500")}})
	if err != nil {
		tb.Fatal(err)
	}
	h.send, _ = newPacketCipher(h.tok.ClientToServerKey, 0, testProtocolID)
	h.connectClient()
	return h
}

// connectClient puts the harness client in a slot, as a completed handshake would.
func (h *packetHarness) connectClient() {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byAddr[h.clientAddr] != nil {
		return
	}
	send, _ := newPacketCipher(h.tok.ServerToClientKey, 0, testProtocolID)
	recv, _ := newPacketCipher(h.tok.ClientToServerKey, 0, testProtocolID)
	c := &serverClient{index: 0, clientID: 1, addr: h.clientAddr, send: send, recv: recv, lastRecv: time.Now()}
	c.replay.reset()
	s.slots[0] = c
	s.byAddr[c.addr] = c
	s.byID[c.clientID] = c
	s.numConnected++
}

// drain empties the receive queue and the event list.
func (h *packetHarness) drain() {
	for {
		select {
		case <-h.s.recvq:
		default:
			h.s.mu.Lock()
			h.s.events = h.s.events[:0]
			h.s.mu.Unlock()
			return
		}
	}
}

// FuzzServerPacket feeds arbitrary datagrams to the server's packet handler, from the
// connected client's address and from an unknown one. It must never panic, and the server's
// state must stay within its bounds.
func FuzzServerPacket(f *testing.F) {
	h := newPacketHarness(f)
	f.Add(true, h.send.appendPacket(nil, packetPayload, 1, []byte("payload")))
	f.Add(true, h.send.appendPacket(nil, packetKeepAlive, 2, make([]byte, 8)))
	f.Add(true, h.send.appendPacket(nil, packetDisconnect, 3, nil))
	f.Add(false, h.send.appendPacket(nil, packetResponse, 4, make([]byte, challengeBodyBytes)))
	f.Add(false, appendRequestPacket(nil, h.tok))
	f.Add(true, appendRequestPacket(nil, h.tok))
	f.Add(false, []byte{0x00})
	f.Add(false, []byte{0x25, 0xe8, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Fuzz(func(t *testing.T, fromClient bool, data []byte) {
		from := h.otherAddr
		if fromClient {
			from = h.clientAddr
		}
		h.s.handlePacket(from, data)
		h.drain()
		s := h.s
		s.mu.Lock()
		connected, handshakes := s.numConnected, len(s.handshakes)
		s.mu.Unlock()
		if connected < 0 || connected > s.maxClients || handshakes > s.maxHandshakes() {
			t.Fatalf("state out of bounds: %d connected, %d handshakes", connected, handshakes)
		}
		h.connectClient() // a fuzzed disconnect may have removed it
	})
}

// TestRejectedPacketsDoNotAllocate checks that garbage costs no allocation, and that the
// keep-alive path allocates nothing either (a payload costs exactly its copy for Recv).
func TestRejectedPacketsDoNotAllocate(t *testing.T) {
	h := newPacketHarness(t)
	wrongKey, _ := newPacketCipher(Key{9}, 0, testProtocolID)
	request := appendRequestPacket(nil, h.tok)
	wrongProtocol := append([]byte(nil), request...)
	wrongProtocol[14] ^= 1
	expiredTok := *h.tok
	expiredTok.ExpireTimestamp = uint64(harnessUnix)
	replayed := h.send.appendPacket(nil, packetKeepAlive, 500, make([]byte, 8))
	h.s.handlePacket(h.clientAddr, append([]byte(nil), replayed...))

	junk := []struct {
		name string
		from netip.AddrPort
		b    []byte
	}{
		{"empty", h.otherAddr, nil},
		{"short", h.otherAddr, []byte{0x15, 1, 2}},
		{"bad type", h.clientAddr, append([]byte{0x17}, make([]byte, 40)...)},
		{"bad sequence bytes", h.clientAddr, append([]byte{0x95}, make([]byte, 40)...)},
		{"too long", h.clientAddr, append([]byte{0x15}, make([]byte, 1400)...)},
		{"unknown address", h.otherAddr, h.send.appendPacket(nil, packetPayload, 9, []byte("x"))},
		{"wrong key", h.clientAddr, wrongKey.appendPacket(nil, packetPayload, 10, []byte("x"))},
		{"replayed", h.clientAddr, replayed},
		{"challenge to server", h.clientAddr, h.send.appendPacket(nil, packetChallenge, 11, make([]byte, challengeBodyBytes))},
		{"request wrong size", h.otherAddr, request[:1000]},
		{"request wrong protocol", h.otherAddr, wrongProtocol},
		{"request expired", h.otherAddr, appendRequestPacket(nil, &expiredTok)},
	}
	for _, j := range junk {
		t.Run(j.name, func(t *testing.T) {
			buf := make([]byte, len(j.b))
			allocs := testing.AllocsPerRun(100, func() {
				copy(buf, j.b)
				h.s.handlePacket(j.from, buf)
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per rejected packet", allocs)
			}
		})
	}

	t.Run("keep-alive", func(t *testing.T) {
		seq := uint64(1000)
		buf := make([]byte, 0, packetBufferBytes)
		body := make([]byte, 8)
		allocs := testing.AllocsPerRun(100, func() {
			seq++
			pkt := h.send.appendPacket(buf[:0], packetKeepAlive, seq, body)
			h.s.handlePacket(h.clientAddr, pkt)
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per keep-alive", allocs)
		}
	})
	if h.s.NumClients() != 1 {
		t.Fatal("the client was disconnected by junk")
	}
}
