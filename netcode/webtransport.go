//go:build !js

package netcode

// The WebTransport transport (native side, quic-go + webtransport-go).
//
// Lightyear 0.17 carries each netcode packet as one WebTransport datagram: the client opens a
// QUIC connection to https://IP:PORT, one WebTransport session on it, and sends and receives
// datagrams of that session. Nothing here knows the netcode protocol: the server side is a
// packetConn (one synthetic client address per session) and the client side a clientConn,
// the same seams the UDP socket and the tests' in-memory network fill. The protocol code in
// server.go and client.go is shared by every transport.
//
// Neither side ever blocks the protocol on QUIC: packets go through a bounded queue per
// session to a writer goroutine (full queue: the packet is dropped, as a full socket buffer
// drops UDP), and received datagrams come through bounded queues that drop too.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Queue sizes and timings of the WebTransport transport.
const (
	// wtInQueue bounds the datagrams waiting for the server's read loop, all sessions together.
	wtInQueue = 4096
	// wtSessionInQueue bounds one session's share of wtInQueue, so that one flooding session
	// cannot crowd the others out.
	wtSessionInQueue = 64
	// wtOutQueue bounds the packets waiting to be handed to QUIC, per session (and client).
	wtOutQueue = 128
	// wtClientInQueue bounds the datagrams waiting for a client's reads.
	wtClientInQueue = 256
	// wtCloseLinger is how long a closing session waits, after its last packets were handed
	// to QUIC, for the peer to close first (so that disconnect packets leave before the
	// CONNECTION_CLOSE).
	wtCloseLinger = 100 * time.Millisecond
	// wtMinPacketSize is Lightyear's initial and minimum MTU. Our QUIC packets keep this
	// size (no path MTU discovery): every netcode packet fits one (MaxWebTransportPayloadBytes),
	// so larger packets would gain nothing. Peers may send larger packets; they are received.
	wtMinPacketSize = 1200
	// wtIdleTimeout is the QUIC idle timeout: a connection with no packet for this long is
	// closed (netcode keep-alives go 10 times a second).
	wtIdleTimeout = 30 * time.Second
)

// Codes we close QUIC connections and sessions with.
const (
	wtCodeNoError    = quic.ApplicationErrorCode(http3.ErrCodeNoError)         // netcode disconnect, server closing
	wtCodeRejected   = quic.ApplicationErrorCode(http3.ErrCodeRequestRejected) // no valid connection request in time
	wtSessionCodeBye = webtransport.SessionErrorCode(0)
)

// quicConfig returns the QUIC configuration of both sides.
func quicConfig(handshakeTimeout time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:             handshakeTimeout,
		MaxIdleTimeout:                   wtIdleTimeout,
		InitialPacketSize:                wtMinPacketSize,
		DisablePathMTUDiscovery:          true,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
		// Netcode uses datagrams only: streams carry the HTTP/3 control streams and the
		// CONNECT request. Small windows bound what a peer can make us buffer.
		MaxIncomingStreams:             16,
		MaxIncomingUniStreams:          16,
		InitialStreamReceiveWindow:     64 << 10,
		MaxStreamReceiveWindow:         64 << 10,
		InitialConnectionReceiveWindow: 128 << 10,
		MaxConnectionReceiveWindow:     128 << 10,
	}
}

// wtWriter hands a peer's packets to QUIC on its own goroutine through a bounded queue.
type wtWriter struct {
	send    func([]byte) error
	out     chan *[]byte
	free    chan *[]byte  // buffers run is done with, for write to reuse
	flush   chan struct{} // closed to make run flush the queue and return
	done    chan struct{} // closed when run returned
	dropped *atomic.Uint64
	once    sync.Once
}

func newWTWriter(send func([]byte) error, dropped *atomic.Uint64) *wtWriter {
	return &wtWriter{
		send:    send,
		out:     make(chan *[]byte, wtOutQueue),
		free:    make(chan *[]byte, wtOutQueue),
		flush:   make(chan struct{}),
		done:    make(chan struct{}),
		dropped: dropped,
	}
}

// write queues a copy of b; a full queue drops it. It never blocks.
func (w *wtWriter) write(b []byte) {
	var buf *[]byte
	select {
	case buf = <-w.free:
	default:
		nb := make([]byte, 0, packetBufferBytes)
		buf = &nb
	}
	*buf = append((*buf)[:0], b...)
	select {
	case w.out <- buf:
	default:
		w.recycle(buf)
		w.dropped.Add(1)
	}
}

// recycle keeps buf for a later write (QUIC copies what it is given).
func (w *wtWriter) recycle(buf *[]byte) {
	select {
	case w.free <- buf:
	default:
	}
}

// run sends queued packets until finish (then it flushes the queue) or until gone (the
// session ended) is closed.
func (w *wtWriter) run(gone <-chan struct{}) {
	defer close(w.done)
	for {
		select {
		case buf := <-w.out:
			w.sendOne(buf)
		case <-w.flush:
			for {
				select {
				case buf := <-w.out:
					w.sendOne(buf)
				default:
					return
				}
			}
		case <-gone:
			return
		}
	}
}

func (w *wtWriter) sendOne(buf *[]byte) {
	if err := w.send(*buf); err != nil {
		w.dropped.Add(1) // too large for the path right now, or the session is gone
	}
	w.recycle(buf)
}

// finish makes run hand the queued packets to QUIC and return, and waits for that; with
// linger it then waits for the peer to close (peerGone). All of it takes at most
// wtCloseLinger: a writer blocked by QUIC (a peer that stopped acknowledging) is given up,
// and closing the connection afterwards unblocks it.
func (w *wtWriter) finish(linger bool, peerGone <-chan struct{}) {
	t := time.NewTimer(wtCloseLinger)
	defer t.Stop()
	w.once.Do(func() { close(w.flush) })
	select {
	case <-w.done:
	case <-t.C:
		return
	}
	if linger {
		select {
		case <-peerGone:
		case <-t.C:
		}
	}
}

// ---------------------------------------------------------------------------------------
// Server side.

// wtConnKey is the context key of a QUIC connection's *wtConnState.
type wtConnKey struct{}

// wtConnState is what the listener knows about one QUIC connection.
type wtConnState struct {
	ip      netip.Addr
	conn    *quic.Conn                // set when accepted
	session atomic.Pointer[wtSession] // the connection's one session
}

// wtSession is one client's WebTransport session: one synthetic address.
type wtSession struct {
	l       *wtListener
	addr    netip.AddrPort
	remote  netip.AddrPort
	conn    *quic.Conn
	sess    *webtransport.Session
	w       *wtWriter
	queued  atomic.Int32 // datagrams of this session in l.in
	claimed atomic.Bool  // the server saw a valid connection request
	ctx     context.Context
	cancel  context.CancelFunc
	ended   chan struct{}
	endOnce sync.Once
	relOnce sync.Once
}

// wtDatagram is a received datagram waiting for the server's read loop.
type wtDatagram struct {
	s *wtSession
	b []byte
}

// wtListener is a packetConn over WebTransport: every session on its UDP port is one peer
// address. It also learns from the server which addresses are netcode peers (claim, release).
type wtListener struct {
	log      *slog.Logger
	udp      *net.UDPConn
	tr       *quic.Transport
	ln       *quic.Listener
	wt       *webtransport.Server
	maxPerIP int
	idle     time.Duration

	in       chan wtDatagram
	goneWake chan struct{}
	closed   chan struct{}
	dropped  atomic.Uint64
	wg       sync.WaitGroup // accept loop, connection servers, session goroutines
	closing  sync.WaitGroup // sessions being released
	once     sync.Once
	nGone    atomic.Int32 // len(gone), read without the lock

	mu       sync.Mutex
	shut     bool
	perIP    map[netip.Addr]int
	sessions map[netip.AddrPort]*wtSession
	gone     []*wtSession // ended sessions not yet reported to the reader
	nextPort uint16
}

// listenWebTransport opens a UDP socket on cfg.addr and accepts WebTransport sessions on it.
func listenWebTransport(ctx context.Context, cfg wtListenConfig) (packetConn, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("netcode: listen %s: %w", cfg.addr, err)
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		_ = pc.Close()
		return nil, fmt.Errorf("netcode: listen %s: not a UDP socket", cfg.addr)
	}
	l := &wtListener{
		log:      cfg.log,
		udp:      udp,
		maxPerIP: cfg.maxPerIP,
		idle:     cfg.idleTimeout,
		in:       make(chan wtDatagram, wtInQueue),
		goneWake: make(chan struct{}, 1),
		closed:   make(chan struct{}),
		perIP:    make(map[netip.Addr]int),
		sessions: make(map[netip.AddrPort]*wtSession),
	}
	l.tr = &quic.Transport{Conn: udp, ConnContext: l.connContext}
	h3 := &http3.Server{Handler: http.HandlerFunc(l.serveHTTP), Logger: cfg.log}
	l.wt = &webtransport.Server{
		H3:                h3,
		ReorderingTimeout: cfg.idleTimeout,
		// Lightyear accepts any origin, and browsers send the page's: no same-origin rule.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	webtransport.ConfigureHTTP3Server(h3)
	l.ln, err = l.tr.Listen(http3.ConfigureTLSConfig(cfg.tls.Clone()), quicConfig(cfg.idleTimeout))
	if err != nil {
		_ = l.tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("netcode: listen %s: %w", cfg.addr, err)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// connContext admits a new QUIC connection unless its source IP has maxPerIP already; the
// count drops when the connection (or its handshake) ends.
func (l *wtListener) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	ip := remoteAddrPort(info.RemoteAddr).Addr()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		return nil, errors.New("netcode: server closing")
	}
	if l.perIP[ip] >= l.maxPerIP {
		l.log.Debug("netcode webtransport connection refused: too many from this address", logkey.Addr, ip.String(), "limit", l.maxPerIP)
		return nil, fmt.Errorf("netcode: more than %d connections from %s", l.maxPerIP, ip)
	}
	l.perIP[ip]++
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
	})
	return context.WithValue(ctx, wtConnKey{}, &wtConnState{ip: ip}), nil
}

// acceptLoop accepts QUIC connections and serves HTTP/3 on each.
func (l *wtListener) acceptLoop() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept(context.Background())
		if err != nil {
			return
		}
		st, _ := conn.Context().Value(wtConnKey{}).(*wtConnState)
		if st == nil {
			conn.CloseWithError(wtCodeRejected, "")
			continue
		}
		st.conn = conn
		// A connection whose session has not sent a valid connection request by then (or
		// that opened no session) is closed.
		idle := time.AfterFunc(l.idle, func() {
			if s := st.session.Load(); s == nil || !s.claimed.Load() {
				l.log.Debug("netcode webtransport connection closed: no valid connection request in time", logkey.Addr, conn.RemoteAddr().String())
				conn.CloseWithError(wtCodeRejected, "no netcode connection request")
			}
		})
		context.AfterFunc(conn.Context(), func() { idle.Stop() })
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.wt.ServeQUICConn(conn); err != nil {
				l.log.Debug("netcode webtransport connection ended", logkey.Addr, conn.RemoteAddr().String(), logkey.Err, err)
			}
		}()
	}
}

// serveHTTP upgrades a CONNECT request (any path, any origin) to the connection's session.
func (l *wtListener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	st, _ := r.Context().Value(wtConnKey{}).(*wtConnState)
	if st == nil || st.conn == nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodConnect {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if st.session.Load() != nil {
		w.WriteHeader(http.StatusTooManyRequests) // one session per connection
		return
	}
	sess, err := l.wt.Upgrade(w, r)
	if err != nil {
		l.log.Debug("netcode webtransport upgrade failed", logkey.Addr, st.conn.RemoteAddr().String(), logkey.Err, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s := &wtSession{l: l, conn: st.conn, sess: sess, remote: remoteAddrPort(st.conn.RemoteAddr()), ended: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.w = newWTWriter(sess.SendDatagram, &l.dropped)
	if !st.session.CompareAndSwap(nil, s) {
		_ = sess.CloseWithError(wtSessionCodeBye, "one session per connection")
		return
	}
	if !l.add(s, st.ip) {
		_ = sess.CloseWithError(wtSessionCodeBye, "server closing")
		st.conn.CloseWithError(wtCodeNoError, "")
		return
	}
	l.log.Debug("netcode webtransport session opened", logkey.Addr, s.addr.String(), "remote", s.remote.String(), "path", r.URL.Path)
	context.AfterFunc(sess.Context(), s.end)
	context.AfterFunc(st.conn.Context(), s.end)
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		s.readLoop()
	}()
	go func() {
		defer l.wg.Done()
		s.w.run(s.ended)
	}()
}

// add gives s a free synthetic address (the client's IP, a port unused by live sessions)
// and registers it.
func (l *wtListener) add(s *wtSession, ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		return false
	}
	for {
		l.nextPort++
		if l.nextPort == 0 {
			continue
		}
		a := netip.AddrPortFrom(ip, l.nextPort)
		if l.sessions[a] == nil {
			s.addr = a
			l.sessions[a] = s
			return true
		}
	}
}

// readLoop queues the session's datagrams for the server until the session ends, then
// reports the end (after the datagrams, which ReadFromUDPAddrPort delivers first).
func (s *wtSession) readLoop() {
	for {
		b, err := s.sess.ReceiveDatagram(s.ctx)
		if err != nil {
			s.end()
			l := s.l
			l.mu.Lock()
			l.gone = append(l.gone, s)
			l.nGone.Store(int32(len(l.gone)))
			l.mu.Unlock()
			select {
			case l.goneWake <- struct{}{}:
			default:
			}
			return
		}
		if len(b) > maxPacketBytes || s.queued.Load() >= wtSessionInQueue {
			s.l.dropped.Add(1)
			continue
		}
		s.queued.Add(1)
		select {
		case s.l.in <- wtDatagram{s: s, b: b}:
		default:
			s.queued.Add(-1)
			s.l.dropped.Add(1)
		}
	}
}

// end is called once the session or its connection ended: the connection is closed, the
// address freed and the read loop stopped (it then tells the server).
func (s *wtSession) end() {
	s.endOnce.Do(func() {
		close(s.ended)
		s.cancel()
		s.conn.CloseWithError(wtCodeNoError, "")
		l := s.l
		l.mu.Lock()
		if l.sessions[s.addr] == s {
			delete(l.sessions, s.addr)
		}
		l.mu.Unlock()
		l.log.Debug("netcode webtransport session closed", logkey.Addr, s.addr.String())
	})
}

// release flushes what was written to the session, with linger waits briefly for the peer
// to close, then closes the session and its connection. It runs on its own goroutine.
func (s *wtSession) release(linger bool) {
	s.relOnce.Do(func() {
		s.l.closing.Add(1)
		go func() {
			defer s.l.closing.Done()
			s.w.finish(linger, s.ended)
			_ = s.sess.CloseWithError(wtSessionCodeBye, "")
			s.end()
		}()
	})
}

// ReadFromUDPAddrPort returns the next datagram and its session's address, or
// errPeerClosed with the address of a session that ended once all its datagrams were
// returned, or net.ErrClosed after Close.
func (l *wtListener) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		if s := l.popGone(); s != nil {
			return 0, s.addr, errPeerClosed
		}
		select {
		case d := <-l.in:
			d.s.queued.Add(-1)
			return copy(b, d.b), d.s.addr, nil
		case <-l.goneWake:
		case <-l.closed:
			return 0, netip.AddrPort{}, net.ErrClosed
		}
	}
}

// popGone removes and returns an ended session none of whose datagrams wait any more.
func (l *wtListener) popGone() *wtSession {
	if l.nGone.Load() == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.gone {
		if s.queued.Load() == 0 {
			l.gone = append(l.gone[:i], l.gone[i+1:]...)
			l.nGone.Store(int32(len(l.gone)))
			return s
		}
	}
	return nil
}

// WriteToUDPAddrPort queues b for the session at addr. It never blocks: a full queue drops
// b (counted). An address without a session is an error.
func (l *wtListener) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	l.mu.Lock()
	s := l.sessions[addr]
	l.mu.Unlock()
	if s == nil {
		return 0, fmt.Errorf("netcode: no webtransport session for %s: %w", addr, net.ErrClosed)
	}
	s.w.write(b)
	return len(b), nil
}

// claim records that addr sent a valid connection request: its session is no longer closed
// for idleness.
func (l *wtListener) claim(addr netip.AddrPort) {
	l.mu.Lock()
	s := l.sessions[addr]
	l.mu.Unlock()
	if s != nil {
		s.claimed.Store(true)
	}
}

// release closes addr's session once what was written to it has been handed to QUIC; with
// linger (the server just sent disconnect packets) it first waits up to wtCloseLinger for
// the peer to close.
func (l *wtListener) release(addr netip.AddrPort, linger bool) {
	l.mu.Lock()
	s := l.sessions[addr]
	l.mu.Unlock()
	if s != nil {
		s.release(linger)
	}
}

// droppedDatagrams returns how many datagrams were dropped (oversized, queue full, too large
// for the path) and connections refused by the per-IP limit.
func (l *wtListener) droppedDatagrams() uint64 { return l.dropped.Load() }

// LocalAddr returns the UDP socket's address.
func (l *wtListener) LocalAddr() net.Addr { return l.udp.LocalAddr() }

// Close flushes and closes every session (each lingers at most wtCloseLinger), then the
// listener and the socket, and waits for every goroutine it started.
func (l *wtListener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.shut = true
		sessions := make([]*wtSession, 0, len(l.sessions))
		for _, s := range l.sessions {
			sessions = append(sessions, s)
		}
		l.mu.Unlock()
		for _, s := range sessions {
			s.release(false) // the server released its clients first, with linger
		}
		l.closing.Wait()
		_ = l.ln.Close()
		_ = l.wt.Close() // closes every connection
		close(l.closed)
		l.wg.Wait()
		_ = l.tr.Close()
		_ = l.udp.Close()
	})
	return nil
}

// remoteAddrPort returns a net.Addr's address and port, IPv4-mapped addresses unmapped.
func remoteAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return unmapAddrPort(u.AddrPort())
	}
	p, _ := netip.ParseAddrPort(a.String())
	return unmapAddrPort(p)
}

// ---------------------------------------------------------------------------------------
// Client side.

// wtNetwork dials WebTransport sessions: without certificate validation (digest nil, as
// Lightyear's native client) or pinned to a certificate digest (as browsers).
type wtNetwork struct {
	digest *CertDigest
}

// webTransportNetwork returns the clientNetwork of ClientConfig{Transport:
// TransportWebTransport}.
func webTransportNetwork(cfg ClientConfig) clientNetwork {
	return wtNetwork{digest: cfg.CertDigest}
}

// dial opens a QUIC connection from a new UDP socket to addr and a WebTransport session to
// https://addr/ on it.
func (n wtNetwork) dial(ctx context.Context, addr netip.AddrPort) (clientConn, error) {
	network := "udp6"
	if addr.Addr().Is4() {
		network = "udp4"
	}
	// Bind to the local address the route to addr uses, so that LocalAddr names it (a
	// connected socket would tell it, but quic-go needs an unconnected one).
	var local *net.UDPAddr
	if probe, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(addr)); err == nil {
		local = &net.UDPAddr{IP: probe.LocalAddr().(*net.UDPAddr).IP}
		_ = probe.Close()
	}
	udp, err := net.ListenUDP(network, local)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	var pinErr atomic.Pointer[error]
	tlsConf := &tls.Config{
		InsecureSkipVerify: true, // no CA: native clients trust any certificate, pinned ones check the digest below
		NextProtos:         []string{http3.NextProtoH3},
		MinVersion:         tls.VersionTLS13,
	}
	if n.digest != nil {
		want := *n.digest
		tlsConf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			err := checkPinned(raw, want, time.Now())
			if err != nil {
				pinErr.Store(&err)
			}
			return err
		}
	}
	// QUIC gives up after the token's timeout without an answer from the server (quic-go
	// bounds the whole handshake by twice that); 0 means quic-go's 5 s.
	d := &webtransport.Transport{
		TLSClientConfig: tlsConf,
		QUICConfig:      quicConfig(answerTimeout(ctx)),
		DialAddr: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return tr.DialEarly(ctx, net.UDPAddrFromAddrPort(addr), tc, qc)
		},
	}
	_, sess, err := d.Dial(ctx, "https://"+addr.String()+"/", nil)
	readCtx, cancelRead := context.WithCancel(context.Background())
	if err != nil {
		cancelRead()
		_ = tr.Close()
		_ = udp.Close()
		if p := pinErr.Load(); p != nil {
			return nil, *p
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("webtransport session: %w", err)
	}
	c := &wtClientConn{
		ctx:    readCtx,
		cancel: cancelRead,
		sess:   sess,
		udp:    udp,
		tr:     tr,
		in:     make(chan []byte, wtClientInQueue),
		dead:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	c.w = newWTWriter(sess.SendDatagram, &c.dropped)
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.readLoop()
	}()
	go func() {
		defer c.wg.Done()
		c.w.run(c.dead)
	}()
	return c, nil
}

// wtClientConn is a client's clientConn over one WebTransport session.
type wtClientConn struct {
	ctx     context.Context // ends the read loop at Close
	cancel  context.CancelFunc
	sess    *webtransport.Session
	udp     *net.UDPConn
	tr      *quic.Transport
	w       *wtWriter
	in      chan []byte
	dropped atomic.Uint64
	wg      sync.WaitGroup

	dead    chan struct{} // closed when the session ended
	deadErr error         // why, set before dead is closed

	closeOnce sync.Once
	closed    chan struct{}
	linger    atomic.Bool // Close waits for the last packets (lingerOnClose)

	deadline readDeadline
}

// readLoop queues received datagrams until the session ends.
func (c *wtClientConn) readLoop() {
	for {
		b, err := c.sess.ReceiveDatagram(c.ctx)
		if err != nil {
			var idle *quic.IdleTimeoutError
			if errors.As(err, &idle) {
				c.deadErr = fmt.Errorf("%w: webtransport: %w", ErrConnectionTimedOut, err)
			} else {
				c.deadErr = fmt.Errorf("%w: webtransport session ended: %w", ErrDisconnected, err)
			}
			close(c.dead)
			return
		}
		if len(b) > maxPacketBytes {
			c.dropped.Add(1)
			continue
		}
		select {
		case c.in <- b:
		default:
			c.dropped.Add(1)
		}
	}
}

// Read returns the next datagram: what is queued first, then the session's end (an error
// wrapping ErrDisconnected or ErrConnectionTimedOut), a deadline error, or net.ErrClosed.
func (c *wtClientConn) Read(b []byte) (int, error) {
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case d := <-c.in:
			return copy(b, d), nil
		default:
		}
		expired, changed, stop, past := c.deadline.Arm()
		if past {
			return 0, os.ErrDeadlineExceeded
		}
		n, err, done := c.wait(b, changed, expired)
		stop()
		if done {
			return n, err
		}
	}
}

// wait blocks until a datagram, the end of the session, Close, the deadline (expired) or a
// deadline change; done is false for the last.
func (c *wtClientConn) wait(b []byte, changed <-chan struct{}, expired <-chan time.Time) (n int, err error, done bool) {
	select {
	case d := <-c.in:
		return copy(b, d), nil, true
	case <-c.closed:
		return 0, net.ErrClosed, true
	case <-c.dead:
		select {
		case d := <-c.in:
			return copy(b, d), nil, true
		default:
		}
		return 0, c.deadErr, true
	case <-expired:
		return 0, os.ErrDeadlineExceeded, true
	case <-changed:
		return 0, nil, false
	}
}

// Write queues one packet for the session; it never blocks (a full queue drops it).
func (c *wtClientConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.dead:
		return 0, c.deadErr
	default:
	}
	c.w.write(b)
	return len(b), nil
}

// SetReadDeadline sets the deadline of Read (and wakes a blocked Read to see it).
func (c *wtClientConn) SetReadDeadline(t time.Time) error {
	c.deadline.Set(t)
	return nil
}

// LocalAddr returns the UDP socket's address.
func (c *wtClientConn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// lingerOnClose makes Close wait briefly for the packets just written (the client's
// disconnect packets) to leave, or for the server to close first.
func (c *wtClientConn) lingerOnClose() { c.linger.Store(true) }

// Close hands what was written to QUIC (after lingerOnClose it waits up to wtCloseLinger for
// the server to close first), then closes the session, the QUIC connection and the socket.
func (c *wtClientConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.w.finish(c.linger.Load(), c.dead)
		_ = c.sess.CloseWithError(wtSessionCodeBye, "")
		c.cancel()
		_ = c.tr.Close()
		_ = c.udp.Close()
		c.wg.Wait()
	})
	return nil
}
