package netcode

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memNetwork is an in-memory datagram network for tests on fake time (testing/synctest).
// Every blocking read waits on channels of the bubble, so a goroutine blocked in it is durably
// blocked and the bubble's clock can advance; a datagram to an address nobody holds is lost,
// and a full receive queue drops, as with UDP.
type memNetwork struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*memConn
	port  uint16
}

// memQueue is how many datagrams wait in a memConn before new ones are dropped.
const memQueue = 1024

func newMemNetwork() *memNetwork {
	return &memNetwork{conns: make(map[netip.AddrPort]*memConn), port: 40000}
}

// inBubble runs f in a synctest bubble with a fresh in-memory network.
func inBubble(t *testing.T, f func(t *testing.T, n *memNetwork)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { f(t, newMemNetwork()) })
}

// bind returns a socket on a free port of 10.0.0.1.
func (n *memNetwork) bind(peer netip.AddrPort) *memConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		n.port++
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), n.port)
		if n.conns[a] == nil {
			c := &memConn{
				net:    n,
				local:  a,
				peer:   peer,
				in:     make(chan memDatagram, memQueue),
				closed: make(chan struct{}),
			}
			n.conns[a] = c
			return c
		}
	}
}

// listen returns an unconnected socket, like net.ListenUDP.
func (n *memNetwork) listen() *memConn { return n.bind(netip.AddrPort{}) }

// dial returns a socket that sends to peer and receives only from it, like net.DialUDP.
func (n *memNetwork) dial(_ context.Context, peer netip.AddrPort) (clientConn, error) {
	return n.bind(peer), nil
}

// deliver queues b from `from` at `to`, if someone holds that address and has room.
func (n *memNetwork) deliver(from, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	c := n.conns[to]
	n.mu.Unlock()
	if c == nil || (c.peer.IsValid() && c.peer != from) {
		return
	}
	select {
	case c.in <- memDatagram{from: from, b: append([]byte(nil), b...)}:
	default:
	}
}

type memDatagram struct {
	from netip.AddrPort
	b    []byte
}

// memConn is one socket of a memNetwork. It implements packetConn (server) and clientConn.
type memConn struct {
	net   *memNetwork
	local netip.AddrPort
	peer  netip.AddrPort // valid: a connected socket
	in    chan memDatagram

	closeOnce sync.Once
	closed    chan struct{}

	deadline readDeadline
}

func (c *memConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		expired, changed, stop, past := c.deadline.Arm()
		if past {
			return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
		}
		var (
			dg  memDatagram
			err error
			got bool
		)
		select {
		case <-c.closed:
			err = net.ErrClosed
		default:
			select {
			case dg = <-c.in:
				got = true
			case <-c.closed:
				err = net.ErrClosed
			case <-changed:
			case <-expired:
				err = os.ErrDeadlineExceeded
			}
		}
		stop()
		switch {
		case got:
			return copy(b, dg.b), dg.from, nil
		case err != nil:
			return 0, netip.AddrPort{}, err
		}
	}
}

func (c *memConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFromUDPAddrPort(b)
	return n, err
}

func (c *memConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.net.deliver(c.local, addr, b)
	return len(b), nil
}

func (c *memConn) Write(b []byte) (int, error) { return c.WriteToUDPAddrPort(b, c.peer) }

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.deadline.Set(t)
	return nil
}

func (c *memConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

func (c *memConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		delete(c.net.conns, c.local)
		c.net.mu.Unlock()
	})
	return nil
}

// queued reports how many datagrams wait to be read.
func (c *memConn) queued() int { return len(c.in) }
