package soak

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// relay forwards one client's UDP datagrams to a game server and back. A vanishing player
// connects through one; cutting it makes the player vanish: nothing it sends arrives any more,
// not even its disconnect packets, so the game server only notices by its timeout.
type relay struct {
	front    *net.UDPConn // the player sends here
	back     *net.UDPConn // connected to the game server
	mu       sync.Mutex
	client   netip.AddrPort // the player's address, once it sent something
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// loopback is where relays listen.
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// newRelay listens on a loopback port and forwards to server.
func newRelay(server netip.AddrPort) (*relay, error) {
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		return nil, err
	}
	back, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		_ = front.Close()
		return nil, err
	}
	r := &relay{front: front, back: back}
	r.wg.Add(2)
	go r.forward()
	go r.backward()
	return r, nil
}

// addr is where the player sends to (on the loopback interface, the relay's port).
func (r *relay) addr() netip.AddrPort {
	port := r.front.LocalAddr().(*net.UDPAddr).Port
	return netip.AddrPortFrom(loopback, uint16(port))
}

func (r *relay) forward() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		r.mu.Unlock()
		_, _ = r.back.Write(buf[:n])
	}
}

func (r *relay) backward() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := r.back.Read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue // e.g. ECONNREFUSED while the server is gone
		}
		r.mu.Lock()
		to := r.client
		r.mu.Unlock()
		if to.IsValid() {
			_, _ = r.front.WriteToUDPAddrPort(buf[:n], to)
		}
	}
}

// cut stops forwarding for good, in both directions.
func (r *relay) cut() {
	r.stopOnce.Do(func() {
		_ = r.front.Close()
		_ = r.back.Close()
	})
	r.wg.Wait()
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
