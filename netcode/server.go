package netcode

// The UDP server of netcode.io 1.02 (see packet.go for the wire format).
//
// What the server checks, in the standard's order:
//
// Connection request (1078 bytes, in the clear): size; version info; protocol id; the expire
// timestamp is still in the future; the private token opens with the private key (which
// authenticates version, protocol id and expire timestamp too); when ServerConfig.PublicAddr
// is set, it is one of the private token's server addresses (Lightyear skips this check); no
// client is connected from the same address, nor with the same client id; the token's tag was
// not used before from another address (token reuse history); a slot is free (otherwise a
// denied packet, reason "server full"); the OnConnectRequest hook accepts the client (run
// asynchronously; retried requests meanwhile cost one map lookup and are not answered, a
// refusal is answered with a denied packet). Then the server maps the address to the token's
// keys and answers with a challenge.
//
// Connection response (encrypted with the client-to-server key of the mapping for its source
// address): the challenge token opens with the server's random challenge key and names the
// mapped client id; the client is not yet connected; a slot is free (else denied). The client
// takes a slot and gets a keep-alive.
//
// Keep-alive, payload, disconnect from a connected address: replay protection (a window of
// 256 sequence numbers), authentication with the client's key, body size per type. Any packet
// failing a check is dropped without an answer.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Server limits and defaults.
const (
	// DefaultMaxClients is the number of client slots when ServerConfig.MaxClients is 0.
	DefaultMaxClients = 64
	// MaxClientsLimit is the largest ServerConfig.MaxClients, the netcode.io reference limit.
	MaxClientsLimit = 256
	// DefaultKeepAliveInterval is how often an idle peer sends a keep-alive (Lightyear's 10 Hz).
	DefaultKeepAliveInterval = 100 * time.Millisecond
	// DefaultDisconnectPackets is how many redundant disconnect packets a peer sends
	// (Lightyear's default).
	DefaultDisconnectPackets = 10
	// DefaultConnectRequestTimeout bounds one call of ServerConfig.OnConnectRequest.
	DefaultConnectRequestTimeout = 5 * time.Second
	// DefaultRecvQueue is the number of received payloads buffered for Recv.
	DefaultRecvQueue = 1024
	// DefaultMaxSessionsPerIP bounds the WebTransport connections (one session each) from one
	// source IP when ServerConfig.MaxSessionsPerIP is 0.
	DefaultMaxSessionsPerIP = 8
	// DefaultSessionIdleTimeout is how long a WebTransport connection may go without a valid
	// connection request when ServerConfig.SessionIdleTimeout is 0.
	DefaultSessionIdleTimeout = 5 * time.Second

	// tokenHistorySize is how many connect token tags the server remembers (the reference
	// implementation's 4 × 256).
	tokenHistorySize = 1024
	// firstHandshakeSequence is where the server's sequence for challenge and denied packets
	// starts. They share the server-to-client key with the connection's own packets, whose
	// sequence starts at 0, so the high bit keeps their nonces apart (as Lightyear does).
	firstHandshakeSequence = 1 << 63
)

// Errors of the server API.
var (
	// ErrServerClosed is returned by Recv, Send and Serve once the server is closed.
	ErrServerClosed = errors.New("netcode: server closed")
	// ErrClientNotConnected: no connected client has this client id.
	ErrClientNotConnected = errors.New("netcode: client not connected")
	// ErrPayloadSize: a payload is empty or longer than the transport carries in one packet
	// (MaxPayloadBytes over UDP, MaxWebTransportPayloadBytes over WebTransport).
	ErrPayloadSize = errors.New("netcode: payload size out of range")
)

// Reasons the server ignores a connection request or response (logged at debug level).
var (
	errNotOurAddress     = errors.New("netcode: our public address is not in the connect token")
	errAddressConnected  = errors.New("netcode: a client is already connected from this address")
	errClientIDConnected = errors.New("netcode: a client with this client id is already connected")
	errTokenReused       = errors.New("netcode: connect token already used from another address")
	errTooManyHandshakes = errors.New("netcode: too many pending handshakes")
	errNoHandshake       = errors.New("netcode: connection response without a connection request")
	errChallengeMismatch = errors.New("netcode: challenge token does not match the connection request")
)

// ServerConfig configures a Server. ProtocolID, PrivateKey and Addr are required (and
// TLSConfig over WebTransport); every other field has a working zero value.
type ServerConfig struct {
	// Addr is the UDP address to listen on, e.g. ":31500", "127.0.0.1:0" or "[::1]:0" (QUIC
	// runs over UDP too).
	Addr string
	// Transport carries the packets: TransportUDP ("" means it) or TransportWebTransport
	// (one WebTransport session per client, for Lightyear's WebTransportClient and browsers).
	Transport Transport
	// TLSConfig is the server's certificate, required over WebTransport (ignored over UDP):
	// CertRotator.TLSConfig(), or a config with Certificates or GetCertificate. The server
	// sets the ALPN protocol itself.
	TLSConfig *tls.Config
	// MaxSessionsPerIP bounds the WebTransport connections (each carries one session) from
	// one source IP; further ones are refused during the QUIC handshake. 0 means
	// DefaultMaxSessionsPerIP.
	MaxSessionsPerIP int
	// SessionIdleTimeout: a WebTransport connection whose session has not sent a valid
	// connection request within it (or that opened no session) is closed. 0 means
	// DefaultSessionIdleTimeout. It also bounds the QUIC handshake.
	SessionIdleTimeout time.Duration
	// PublicAddr, when valid, is the address clients reach this server at: a connection
	// request whose private token does not list it is ignored, so tokens minted for another
	// server cannot be used here. Leave it zero when the server does not know it (Lightyear
	// never checks).
	PublicAddr netip.AddrPort
	// ProtocolID identifies the game; requests with another protocol id are ignored.
	ProtocolID uint64
	// PrivateKey opens the private part of connect tokens; it is shared with the matchmaker.
	PrivateKey Key
	// Format is the byte order of tokens and packets (the zero value is lightyear-0.17).
	Format Format
	// MaxClients is the number of client slots: 0 means DefaultMaxClients, at most
	// MaxClientsLimit.
	MaxClients int
	// OnConnectRequest, when set, is called once per new connection request with the
	// client id and user data of its (authenticated) token, before a slot is given. A non-nil
	// error refuses the client: the client receives a denied packet whose reason is that of
	// the *DeniedError found in the error with errors.As (return
	// &DeniedError{Reason: DeniedBanned}), DeniedInternalError for a context error,
	// DeniedBanned otherwise. It runs on its own goroutine with a context that ends
	// after ConnectRequestTimeout or when the server closes, so it may do network I/O; it must
	// return when the context ends. The client's retried requests are not answered meanwhile
	// and do not call it again.
	OnConnectRequest func(ctx context.Context, clientID uint64, userData [UserDataBytes]byte) error
	// ConnectRequestTimeout bounds each OnConnectRequest call: 0 means
	// DefaultConnectRequestTimeout.
	ConnectRequestTimeout time.Duration
	// OnConnect is called when a client takes a slot, OnDisconnect when it leaves (disconnect
	// packet, timeout, Server.Disconnect or Close). They run in order on one goroutine of the
	// server, never concurrently with each other, outside the server's lock: they may call
	// Send, Clients or Disconnect, but not Close (which waits for them).
	OnConnect    func(clientID uint64, addr netip.AddrPort)
	OnDisconnect func(clientID uint64, addr netip.AddrPort)
	// KeepAliveInterval is how often a keep-alive goes to a client that was sent nothing else:
	// 0 means DefaultKeepAliveInterval.
	KeepAliveInterval time.Duration
	// DisconnectPackets is how many redundant disconnect packets the server sends when it
	// disconnects a client: 0 means DefaultDisconnectPackets.
	DisconnectPackets int
	// RecvQueue is how many received payloads wait for Recv before new ones are dropped:
	// 0 means DefaultRecvQueue.
	RecvQueue int
	// Logger receives debug logs of ignored packets and info logs of connections; nil means
	// slog.Default(). Keys and tokens are never logged.
	Logger *slog.Logger
}

// Payload is a payload received from a connected client.
type Payload struct {
	// ClientID is the sender's client id.
	ClientID uint64
	// Data is the payload (1..MaxPayloadBytes bytes); it belongs to the receiver.
	Data []byte
}

// ClientInfo describes a connected client.
type ClientInfo struct {
	// ClientID is the client id of the client's connect token.
	ClientID uint64
	// Index is the client's slot, 0..MaxClients-1.
	Index int
	// Addr is the client's address as the server sees it.
	Addr netip.AddrPort
	// UserData is the user data of the client's connect token.
	UserData [UserDataBytes]byte
}

// packetConn is the datagram socket a Server serves on: the *net.UDPConn that Listen opens,
// or another datagram transport of the same shape (tests use an in-memory network). Read
// returns net.ErrClosed once Close was called.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (n int, addr netip.AddrPort, err error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// peerTracker is implemented by a packetConn whose peers have sessions (WebTransport): the
// server tells it which addresses hold a handshake or a connection (claim), and when they
// stop (release: the session is closed once what was written to it has been handed on;
// with linger, after the server's disconnect packets, it waits a little for the peer to
// close first). Both are called with the server's lock held and must not block.
type peerTracker interface {
	claim(addr netip.AddrPort)
	release(addr netip.AddrPort, linger bool)
}

// droppedCounter is implemented by a packetConn that drops datagrams itself (WebTransport).
type droppedCounter interface {
	droppedDatagrams() uint64
}

// errPeerClosed is returned (with the peer's address) by a packetConn's read when that
// peer's session ended, so that the server forgets the client at once.
var errPeerClosed = errors.New("netcode: peer's session closed")

// Server is a netcode.io 1.02 server: it accepts clients that hold a connect token minted
// with its private key, and exchanges encrypted payloads with them.
//
// Use NewServer, then Listen and Serve (or ListenAndServe); Recv, Send, Disconnect and
// Clients may be called from any goroutine. Close (or cancelling Serve's context) disconnects
// every client with redundant disconnect packets and releases the socket.
type Server struct {
	cfg        ServerConfig
	log        *slog.Logger
	maxClients int
	publicAddr netip.AddrPort

	recvq      chan Payload
	closing    chan struct{} // closed by shutdown
	done       chan struct{} // closed when Serve has fully stopped
	eventWake  chan struct{}
	eventsStop chan struct{}
	eventsDone chan struct{}
	hookCtx    context.Context
	hookCancel context.CancelFunc
	closeOnce  sync.Once
	wg         sync.WaitGroup // tick loop and hook goroutines
	dropped    atomic.Uint64

	mu           sync.Mutex
	conn         packetConn  // nil until Listen
	peers        peerTracker // conn's session bookkeeping (WebTransport), or nil
	serving      bool
	closed       bool
	slots        []*serverClient
	numConnected int
	byAddr       map[netip.AddrPort]*serverClient
	byID         map[uint64]*serverClient
	handshakes   map[netip.AddrPort]*handshake
	history      tokenHistory
	challenge    *challengeSealer
	challengeSeq uint64
	handshakeSeq uint64
	events       []connEvent
	sendBuf      [packetBufferBytes]byte
	bodyBuf      [challengeBodyBytes]byte
	tokenBuf     [challengeTokenBytes]byte
}

// serverClient is a connected client in a slot.
type serverClient struct {
	index     int
	clientID  uint64
	addr      netip.AddrPort
	userData  [UserDataBytes]byte
	timeout   time.Duration // 0: never times out
	send      *packetCipher // server-to-client key
	recv      *packetCipher // client-to-server key
	replay    replayProtection
	sequence  uint64
	confirmed bool
	lastRecv  time.Time
	lastSend  time.Time
}

// handshakeState is where a connection request stands with the OnConnectRequest hook.
type handshakeState uint8

const (
	handshakePending  handshakeState = iota // the hook is running
	handshakeAccepted                       // challenges are sent
	handshakeRefused                        // denied packets are sent
)

// handshake is the encryption mapping of an address that sent a valid connection request
// and is not connected yet.
type handshake struct {
	addr            netip.AddrPort
	clientID        uint64
	userData        [UserDataBytes]byte
	timeout         time.Duration // token timeout, 0 = never
	idleTimeout     time.Duration // the mapping is dropped after this long without packets
	tag             [macBytes]byte
	nonce           [NonceBytes]byte
	expireTimestamp uint64
	send            *packetCipher
	recv            *packetCipher
	state           handshakeState
	reason          DeniedReason
	lastSeen        time.Time
}

// connEvent is a pending OnConnect / OnDisconnect call.
type connEvent struct {
	connected bool
	clientID  uint64
	addr      netip.AddrPort
}

// NewServer checks cfg and returns a server that is not listening yet.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("netcode: ServerConfig.Addr is required")
	}
	var err error
	if cfg.Transport, err = cfg.Transport.normalize(); err != nil {
		return nil, err
	}
	if cfg.Transport == TransportWebTransport {
		if cfg.TLSConfig == nil || (len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil) {
			return nil, errors.New("netcode: ServerConfig.TLSConfig with a certificate is required over WebTransport")
		}
		if cfg.MaxSessionsPerIP <= 0 {
			cfg.MaxSessionsPerIP = DefaultMaxSessionsPerIP
		}
		if cfg.SessionIdleTimeout <= 0 {
			cfg.SessionIdleTimeout = DefaultSessionIdleTimeout
		}
	}
	if err := checkFormat(cfg.Format); err != nil {
		return nil, err
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.MaxClients < 1 || cfg.MaxClients > MaxClientsLimit {
		return nil, fmt.Errorf("netcode: MaxClients %d out of range 1..%d", cfg.MaxClients, MaxClientsLimit)
	}
	if cfg.ConnectRequestTimeout <= 0 {
		cfg.ConnectRequestTimeout = DefaultConnectRequestTimeout
	}
	if cfg.KeepAliveInterval <= 0 {
		cfg.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if cfg.DisconnectPackets <= 0 {
		cfg.DisconnectPackets = DefaultDisconnectPackets
	}
	if cfg.RecvQueue <= 0 {
		cfg.RecvQueue = DefaultRecvQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	challenge, err := newChallengeSealer(cfg.Format)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger.With(logkey.Component, "netcode-server"),
		maxClients:   cfg.MaxClients,
		recvq:        make(chan Payload, cfg.RecvQueue),
		closing:      make(chan struct{}),
		done:         make(chan struct{}),
		eventWake:    make(chan struct{}, 1),
		eventsStop:   make(chan struct{}),
		eventsDone:   make(chan struct{}),
		slots:        make([]*serverClient, cfg.MaxClients),
		byAddr:       make(map[netip.AddrPort]*serverClient, cfg.MaxClients),
		byID:         make(map[uint64]*serverClient, cfg.MaxClients),
		handshakes:   make(map[netip.AddrPort]*handshake),
		history:      newTokenHistory(tokenHistorySize),
		challenge:    challenge,
		handshakeSeq: firstHandshakeSequence,
	}
	if cfg.PublicAddr.IsValid() {
		s.publicAddr = unmapAddrPort(cfg.PublicAddr)
	}
	s.hookCtx, s.hookCancel = context.WithCancel(context.Background())
	return s, nil
}

// Listen binds the server's UDP socket to ServerConfig.Addr; over WebTransport it also starts
// accepting QUIC connections on it.
func (s *Server) Listen(ctx context.Context) error {
	if s.cfg.Transport == TransportWebTransport {
		l, err := listenWebTransport(ctx, wtListenConfig{
			addr:        s.cfg.Addr,
			tls:         s.cfg.TLSConfig,
			maxPerIP:    s.cfg.MaxSessionsPerIP,
			idleTimeout: s.cfg.SessionIdleTimeout,
			log:         s.log,
		})
		if err != nil {
			return err
		}
		return s.listenOn(l)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("netcode: listen %s: %w", s.cfg.Addr, err)
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		_ = pc.Close()
		return fmt.Errorf("netcode: listen %s: not a UDP socket", s.cfg.Addr)
	}
	// A larger receive buffer absorbs bursts; failure only costs throughput.
	_ = udp.SetReadBuffer(4 << 20)
	return s.listenOn(udp)
}

// listenOn makes conn the server's socket; the server closes it.
func (s *Server) listenOn(conn packetConn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = conn.Close()
		return ErrServerClosed
	}
	if s.conn != nil {
		_ = conn.Close()
		return errors.New("netcode: server already listening")
	}
	s.conn = conn
	s.peers, _ = conn.(peerTracker)
	return nil
}

// Addr returns the address the server listens on (with the port the system chose for
// port 0), or the zero AddrPort before Listen.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return netip.AddrPort{}
	}
	return localAddrPort(s.conn)
}

// localAddrPort returns the local address of a socket, IPv4-mapped addresses unmapped.
func localAddrPort(c interface{ LocalAddr() net.Addr }) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return unmapAddrPort(a.AddrPort())
	}
	a, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return unmapAddrPort(a)
}

// ListenAndServe calls Listen then Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(ctx); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve reads and answers packets, sends keep-alives and times clients out until ctx ends or
// Close is called; then it disconnects every client and returns nil once everything it
// started has stopped (callbacks included). It returns an error if the server is not
// listening, is already serving, or the socket fails.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case s.conn == nil:
		s.mu.Unlock()
		return errors.New("netcode: Serve before Listen")
	case s.serving:
		s.mu.Unlock()
		return errors.New("netcode: server already serving")
	}
	s.serving = true
	conn := s.conn
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, s.shutdown)
	defer stop()
	go s.eventLoop()
	s.wg.Add(1)
	go s.tickLoop()
	s.log.Info("netcode server listening", logkey.Addr, conn.LocalAddr().String(), "transport", s.cfg.Transport.String(), "format", s.cfg.Format.String(), "max_clients", s.maxClients)

	err := s.readLoop(conn)
	s.shutdown()
	s.wg.Wait()
	close(s.eventsStop)
	<-s.eventsDone
	close(s.done)
	return err
}

// Close disconnects every client (sending redundant disconnect packets), closes the socket
// and, if Serve is running, waits until it has stopped. It is safe to call more than once.
func (s *Server) Close() error {
	s.shutdown()
	s.mu.Lock()
	serving := s.serving
	s.mu.Unlock()
	if serving {
		<-s.done
	}
	return nil
}

// shutdown disconnects every client, stops hooks and closes the socket, once.
func (s *Server) shutdown() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		now := time.Now()
		for _, c := range s.slots {
			if c != nil {
				s.removeClient(c, true, now, "server closed")
			}
		}
		clear(s.handshakes)
		s.closed = true
		conn := s.conn
		s.mu.Unlock()
		s.hookCancel()
		close(s.closing)
		if conn != nil {
			_ = conn.Close()
		}
	})
}

// readLoop handles datagrams until the socket is closed.
func (s *Server) readLoop(conn packetConn) error {
	buf := make([]byte, packetBufferBytes)
	failures := 0
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, errPeerClosed) {
			s.peerClosed(unmapAddrPort(from))
			continue
		}
		if err != nil {
			select {
			case <-s.closing:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			failures++
			if failures > 100 {
				return fmt.Errorf("netcode: read: %w", err)
			}
			s.log.Debug("netcode server read error", logkey.Err, err)
			continue
		}
		failures = 0
		s.handlePacket(unmapAddrPort(from), buf[:n])
	}
}

// peerClosed forgets the client or handshake of an address whose session ended.
func (s *Server) peerClosed(addr netip.AddrPort) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if c := s.byAddr[addr]; c != nil {
		s.removeClient(c, false, now, "transport closed")
	}
	delete(s.handshakes, addr)
}

// tickLoop sends keep-alives, times clients out and forgets stale handshakes.
func (s *Server) tickLoop() {
	defer s.wg.Done()
	interval := s.cfg.KeepAliveInterval / 2
	if interval < time.Millisecond {
		interval = time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.tick()
		}
	}
}

// tick does one round of keep-alives and timeouts.
func (s *Server) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := time.Now()
	for _, c := range s.slots {
		if c == nil {
			continue
		}
		if c.timeout > 0 && now.Sub(c.lastRecv) > c.timeout {
			s.removeClient(c, false, now, "timed out")
			continue
		}
		if now.Sub(c.lastSend) >= s.cfg.KeepAliveInterval {
			s.sendKeepAlive(c, now)
		}
	}
	s.pruneHandshakes(now)
}

// handlePacket processes one datagram from addr. Bad packets are dropped silently.
func (s *Server) handlePacket(from netip.AddrPort, b []byte) {
	if len(b) == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if b[0] == byte(packetRequest) {
		s.handleRequest(from, b, now)
		return
	}
	h, err := readPacketHeader(b)
	if err != nil {
		s.ignore(from, err)
		return
	}
	if c := s.byAddr[from]; c != nil {
		s.handleClientPacket(c, h, b, now)
		return
	}
	if h.typ == packetResponse {
		s.handleResponse(from, h, b, now)
		return
	}
	s.ignore(from, errPacketType)
}

// ignore logs a dropped packet at debug level, without allocating when debug is off.
func (s *Server) ignore(from netip.AddrPort, err error) {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("netcode server ignored packet", "from", from.String(), "reason", err.Error())
	}
}

// handleRequest processes a connection request (see the file comment for the checks).
func (s *Server) handleRequest(from netip.AddrPort, b []byte, now time.Time) {
	req, err := readRequestPacket(b, s.cfg.Format)
	if err != nil {
		s.ignore(from, err)
		return
	}
	if req.protocolID != s.cfg.ProtocolID {
		s.ignore(from, ErrProtocolID)
		return
	}
	if tokenExpired(req.expireTimestamp, now) {
		s.ignore(from, ErrExpired)
		return
	}
	tag := req.tag()
	if hs := s.handshakes[from]; hs != nil && hs.tag == tag && hs.nonce == *req.nonce && hs.expireTimestamp == req.expireTimestamp {
		// A retry of a request already opened: answer from the handshake's state.
		s.answerHandshake(hs, now)
		return
	}
	priv, err := OpenPrivateToken(req.sealed, req.nonce, req.protocolID, req.expireTimestamp, s.cfg.PrivateKey, s.cfg.Format)
	if err != nil {
		s.ignore(from, err)
		return
	}
	if s.publicAddr.IsValid() && !containsAddrPort(priv.ServerAddrs, s.publicAddr) {
		s.ignore(from, errNotOurAddress)
		return
	}
	if s.byAddr[from] != nil {
		s.ignore(from, errAddressConnected)
		return
	}
	if s.byID[priv.ClientID] != nil {
		s.ignore(from, errClientIDConnected)
		return
	}
	if !s.history.use(tag, from, req.expireTimestamp, now) {
		s.ignore(from, errTokenReused)
		return
	}
	if s.numConnected >= s.maxClients {
		s.denyWithKey(from, priv.ServerToClientKey, DeniedServerFull)
		return
	}
	if s.handshakes[from] == nil && len(s.handshakes) >= s.maxHandshakes() {
		s.pruneHandshakes(now)
		if len(s.handshakes) >= s.maxHandshakes() {
			s.ignore(from, errTooManyHandshakes)
			return
		}
	}
	hs, err := s.newHandshake(from, priv, &req, now)
	if err != nil {
		s.ignore(from, err)
		return
	}
	s.handshakes[from] = hs
	if s.peers != nil {
		s.peers.claim(from)
	}
	if s.cfg.OnConnectRequest == nil {
		hs.state = handshakeAccepted
		s.answerHandshake(hs, now)
		return
	}
	hs.state = handshakePending
	s.startHook(hs)
}

// maxHandshakes bounds the number of pending encryption mappings (and hook goroutines).
func (s *Server) maxHandshakes() int { return max(4*s.maxClients, 64) }

// pruneHandshakes forgets idle or expired handshakes.
func (s *Server) pruneHandshakes(now time.Time) {
	for addr, hs := range s.handshakes {
		if now.Sub(hs.lastSeen) > hs.idleTimeout || tokenExpired(hs.expireTimestamp, now) {
			delete(s.handshakes, addr)
			if s.peers != nil {
				s.peers.release(addr, false)
			}
		}
	}
}

// newHandshake builds the encryption mapping for a request whose token opened.
func (s *Server) newHandshake(from netip.AddrPort, priv *PrivateToken, req *requestPacket, now time.Time) (*handshake, error) {
	send, err := newPacketCipher(priv.ServerToClientKey, s.cfg.Format, s.cfg.ProtocolID)
	if err != nil {
		return nil, err
	}
	recv, err := newPacketCipher(priv.ClientToServerKey, s.cfg.Format, s.cfg.ProtocolID)
	if err != nil {
		return nil, err
	}
	hs := &handshake{
		addr:            from,
		clientID:        priv.ClientID,
		userData:        priv.UserData,
		tag:             req.tag(),
		nonce:           *req.nonce,
		expireTimestamp: req.expireTimestamp,
		send:            send,
		recv:            recv,
		lastSeen:        now,
		idleTimeout:     DefaultTimeoutSeconds * time.Second,
	}
	if priv.TimeoutSeconds > 0 {
		hs.timeout = time.Duration(priv.TimeoutSeconds) * time.Second
		hs.idleTimeout = hs.timeout
	}
	return hs, nil
}

// startHook runs OnConnectRequest for hs on its own goroutine and answers the client when it
// returns. Called with s.mu held.
func (s *Server) startHook(hs *handshake) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.runHook(hs.clientID, hs.userData)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || s.handshakes[hs.addr] != hs {
			return
		}
		if errors.Is(err, ErrRetryLater) {
			// Not now: forget the request without an answer; the client's next connection
			// request (10 a second until its token times out) runs the hook again. A
			// WebTransport session stays open (and claimed) for those requests.
			delete(s.handshakes, hs.addr)
			s.log.Info("netcode server will retry a client's connection request", logkey.ClientID, hs.clientID, logkey.Addr, hs.addr.String(), logkey.Err, err)
			return
		}
		if err != nil {
			hs.state = handshakeRefused
			hs.reason = deniedReasonOf(err)
			s.log.Info("netcode server refused client", logkey.ClientID, hs.clientID, logkey.Addr, hs.addr.String(), "reason", hs.reason.String(), logkey.Err, err)
		} else {
			hs.state = handshakeAccepted
		}
		s.answerHandshake(hs, time.Now())
	}()
}

// runHook calls OnConnectRequest with a bounded context, turning a panic into an error.
func (s *Server) runHook(clientID uint64, userData [UserDataBytes]byte) (err error) {
	ctx, cancel := context.WithTimeout(s.hookCtx, s.cfg.ConnectRequestTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("netcode: OnConnectRequest panicked: %v", r)
		}
	}()
	return s.cfg.OnConnectRequest(ctx, clientID, userData)
}

// ErrRetryLater, wrapped in an error returned by ServerConfig.OnConnectRequest, means "not
// now": the server sends no answer and forgets the request, so the client's next connection
// request (clients resend 10 times a second until the connect token's timeout) runs the hook
// again. It is for transient failures, e.g. the session store failing over to another NATS
// node: a denial is final for the client although its token is still good. A hook that keeps
// returning it lets the client time out on its own (ErrConnectionRequestTimedOut).
var ErrRetryLater = errors.New("netcode: connection request not answered now, retry")

// deniedReasonOf maps a hook error to the reason sent to the client.
func deniedReasonOf(err error) DeniedReason {
	var de *DeniedError
	switch {
	case errors.As(err, &de):
		return de.Reason
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return DeniedInternalError
	}
	return DeniedBanned
}

// answerHandshake answers a (possibly retried) request according to the handshake's state:
// nothing while the hook runs, a denied packet when refused or full, else a challenge.
func (s *Server) answerHandshake(hs *handshake, now time.Time) {
	hs.lastSeen = now
	switch hs.state {
	case handshakePending:
		return
	case handshakeRefused:
		s.sendHandshake(hs, packetDenied, appendDeniedBody(s.bodyBuf[:0], hs.reason))
		return
	}
	if s.byID[hs.clientID] != nil {
		return
	}
	if s.numConnected >= s.maxClients {
		s.sendHandshake(hs, packetDenied, appendDeniedBody(s.bodyBuf[:0], DeniedServerFull))
		return
	}
	seq := s.challengeSeq
	s.challengeSeq++
	s.challenge.seal(&s.tokenBuf, seq, hs.clientID, &hs.userData)
	putChallengeBody(&s.bodyBuf, s.cfg.Format, seq, &s.tokenBuf)
	s.sendHandshake(hs, packetChallenge, s.bodyBuf[:])
}

// handleResponse processes a connection response from an address with a handshake.
func (s *Server) handleResponse(from netip.AddrPort, h packetHeader, b []byte, now time.Time) {
	hs := s.handshakes[from]
	if hs == nil {
		s.ignore(from, errNoHandshake)
		return
	}
	body, err := hs.recv.open(b, h)
	if err == nil {
		err = checkBodySize(h.typ, body)
	}
	if err != nil {
		s.ignore(from, err)
		return
	}
	seq, tok := readChallengeBody(body, s.cfg.Format)
	var userData [UserDataBytes]byte
	clientID, err := s.challenge.open(tok, seq, &userData)
	if err != nil {
		s.ignore(from, err)
		return
	}
	if clientID != hs.clientID || hs.state != handshakeAccepted {
		s.ignore(from, errChallengeMismatch)
		return
	}
	hs.lastSeen = now
	if s.byID[clientID] != nil {
		s.ignore(from, errClientIDConnected)
		return
	}
	index := -1
	for i, c := range s.slots {
		if c == nil {
			index = i
			break
		}
	}
	if index < 0 {
		s.sendHandshake(hs, packetDenied, appendDeniedBody(s.bodyBuf[:0], DeniedServerFull))
		return
	}
	c := &serverClient{
		index:    index,
		clientID: clientID,
		addr:     from,
		userData: userData,
		timeout:  hs.timeout,
		send:     hs.send,
		recv:     hs.recv,
		lastRecv: now,
	}
	c.replay.reset()
	delete(s.handshakes, from)
	s.slots[index] = c
	s.byAddr[from] = c
	s.byID[clientID] = c
	s.numConnected++
	s.sendKeepAlive(c, now)
	s.log.Info("netcode client connected", logkey.ClientID, clientID, logkey.Addr, from.String(), "index", index)
	s.queueEvent(connEvent{connected: true, clientID: clientID, addr: from})
}

// handleClientPacket processes a packet from a connected client's address.
func (s *Server) handleClientPacket(c *serverClient, h packetHeader, b []byte, now time.Time) {
	if h.typ < packetKeepAlive {
		s.ignore(c.addr, errPacketType)
		return
	}
	if c.replay.alreadyReceived(h.sequence) {
		s.ignore(c.addr, errPacketReplay)
		return
	}
	body, err := c.recv.open(b, h)
	if err != nil {
		s.ignore(c.addr, err)
		return
	}
	c.replay.advance(h.sequence)
	if err := checkBodySize(h.typ, body); err != nil {
		s.ignore(c.addr, err)
		return
	}
	switch h.typ {
	case packetKeepAlive:
		c.lastRecv = now
		c.confirmed = true
	case packetPayload:
		c.lastRecv = now
		c.confirmed = true
		select {
		case s.recvq <- Payload{ClientID: c.clientID, Data: append([]byte(nil), body...)}:
		default:
			s.dropped.Add(1)
		}
	case packetDisconnect:
		s.removeClient(c, false, now, "client disconnected")
	}
}

// sendKeepAlive sends a keep-alive carrying the client id (Lightyear's body).
func (s *Server) sendKeepAlive(c *serverClient, now time.Time) {
	body := s.cfg.Format.byteOrder().AppendUint64(s.bodyBuf[:0], c.clientID)
	_ = s.sendToClient(c, packetKeepAlive, body, now)
}

// sendToClient seals and sends one packet on a connection. Called with s.mu held.
func (s *Server) sendToClient(c *serverClient, t packetType, body []byte, now time.Time) error {
	pkt := c.send.appendPacket(s.sendBuf[:0], t, c.sequence, body)
	c.sequence++
	c.lastSend = now
	if _, err := s.conn.WriteToUDPAddrPort(pkt, c.addr); err != nil {
		return fmt.Errorf("netcode: send to client %d: %w", c.clientID, err)
	}
	return nil
}

// sendHandshake sends a challenge or denied packet on a handshake's mapping.
func (s *Server) sendHandshake(hs *handshake, t packetType, body []byte) {
	pkt := hs.send.appendPacket(s.sendBuf[:0], t, s.handshakeSeq, body)
	s.handshakeSeq++
	if _, err := s.conn.WriteToUDPAddrPort(pkt, hs.addr); err != nil {
		s.ignore(hs.addr, err)
	}
}

// denyWithKey sends a denied packet to an address that has no mapping (server full at
// request time), sealed with the token's server-to-client key.
func (s *Server) denyWithKey(to netip.AddrPort, key Key, r DeniedReason) {
	c, err := newPacketCipher(key, s.cfg.Format, s.cfg.ProtocolID)
	if err != nil {
		return
	}
	pkt := c.appendPacket(s.sendBuf[:0], packetDenied, s.handshakeSeq, appendDeniedBody(s.bodyBuf[:0], r))
	s.handshakeSeq++
	if _, err := s.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		s.ignore(to, err)
	}
}

// removeClient frees c's slot, optionally after redundant disconnect packets, and queues
// OnDisconnect. Called with s.mu held.
func (s *Server) removeClient(c *serverClient, sendDisconnect bool, now time.Time, why string) {
	if sendDisconnect {
		for i := 0; i < s.cfg.DisconnectPackets; i++ {
			if err := s.sendToClient(c, packetDisconnect, nil, now); err != nil {
				break
			}
		}
	}
	s.slots[c.index] = nil
	delete(s.byAddr, c.addr)
	delete(s.byID, c.clientID)
	s.numConnected--
	if s.peers != nil {
		s.peers.release(c.addr, sendDisconnect)
	}
	s.log.Info("netcode client disconnected", logkey.ClientID, c.clientID, logkey.Addr, c.addr.String(), "why", why)
	s.queueEvent(connEvent{clientID: c.clientID, addr: c.addr})
}

// queueEvent queues a callback for the event goroutine. Called with s.mu held.
func (s *Server) queueEvent(e connEvent) {
	if (e.connected && s.cfg.OnConnect == nil) || (!e.connected && s.cfg.OnDisconnect == nil) {
		return
	}
	s.events = append(s.events, e)
	select {
	case s.eventWake <- struct{}{}:
	default:
	}
}

// eventLoop calls OnConnect / OnDisconnect in order, outside the server's lock, until
// eventsStop is closed and no event is left.
func (s *Server) eventLoop() {
	defer close(s.eventsDone)
	for {
		stopping := false
		select {
		case <-s.eventWake:
		case <-s.eventsStop:
			stopping = true
		}
		s.mu.Lock()
		batch := s.events
		s.events = nil
		s.mu.Unlock()
		for _, e := range batch {
			s.callEvent(e)
		}
		if stopping {
			return
		}
	}
}

// callEvent runs one callback, logging instead of crashing if it panics.
func (s *Server) callEvent(e connEvent) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("netcode server callback panicked", logkey.ClientID, e.clientID, "panic", fmt.Sprint(r))
		}
	}()
	if e.connected {
		s.cfg.OnConnect(e.clientID, e.addr)
	} else {
		s.cfg.OnDisconnect(e.clientID, e.addr)
	}
}

// Recv returns the next payload received from a connected client. It blocks until one
// arrives, ctx ends (ctx.Err()) or the server is closed and no payload is left
// (ErrServerClosed).
func (s *Server) Recv(ctx context.Context) (Payload, error) {
	select {
	case p := <-s.recvq:
		return p, nil
	case <-ctx.Done():
		return Payload{}, ctx.Err()
	case <-s.closing:
		select {
		case p := <-s.recvq:
			return p, nil
		default:
			return Payload{}, ErrServerClosed
		}
	}
}

// Send sends payload (1..MaxPayloadBytes bytes over UDP, 1..MaxWebTransportPayloadBytes
// over WebTransport) to a connected client. The payload is encrypted and written (over
// WebTransport: queued for the client's session) before Send returns; payload may be reused
// afterwards. Errors: ErrPayloadSize, ErrClientNotConnected, ErrServerClosed, or a socket
// error.
func (s *Server) Send(clientID uint64, payload []byte) error {
	if limit := s.cfg.Transport.maxPayload(); len(payload) < 1 || len(payload) > limit {
		return fmt.Errorf("%w: %d bytes, want 1..%d", ErrPayloadSize, len(payload), limit)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	c := s.byID[clientID]
	if c == nil {
		return fmt.Errorf("%w: client id %d", ErrClientNotConnected, clientID)
	}
	if !c.confirmed {
		// Until the client answers, each payload is preceded by a keep-alive, which is what
		// tells the client it is connected.
		s.sendKeepAlive(c, now)
	}
	return s.sendToClient(c, packetPayload, payload, now)
}

// Disconnect disconnects a connected client: it sends redundant disconnect packets, frees
// the slot and calls OnDisconnect. It returns ErrClientNotConnected for an unknown id.
func (s *Server) Disconnect(clientID uint64) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	c := s.byID[clientID]
	if c == nil {
		return fmt.Errorf("%w: client id %d", ErrClientNotConnected, clientID)
	}
	s.removeClient(c, true, now, "disconnected by server")
	return nil
}

// Clients returns the connected clients in slot order.
func (s *Server) Clients() []ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ClientInfo, 0, s.numConnected)
	for _, c := range s.slots {
		if c != nil {
			out = append(out, ClientInfo{ClientID: c.clientID, Index: c.index, Addr: c.addr, UserData: c.userData})
		}
	}
	return out
}

// NumClients returns the number of connected clients.
func (s *Server) NumClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.numConnected
}

// MaxClients returns the number of client slots.
func (s *Server) MaxClients() int { return s.maxClients }

// DroppedPayloads returns how many received payloads were dropped because the Recv queue
// was full.
func (s *Server) DroppedPayloads() uint64 { return s.dropped.Load() }

// DroppedDatagrams returns how many datagrams the WebTransport transport dropped: received
// ones over the size limit or beyond a full queue, and packets for a client whose queue to
// QUIC was full or that did not fit the path. Over UDP it is 0 (the kernel drops there).
func (s *Server) DroppedDatagrams() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.conn.(droppedCounter); ok {
		return d.droppedDatagrams()
	}
	return 0
}

// Transport returns the server's transport.
func (s *Server) Transport() Transport { return s.cfg.Transport }

// tokenHistory remembers which address used each connect token (by its tag), so that a token
// is accepted again only from the address that used it first. The oldest entry is forgotten
// when it is full, as in the reference implementation.
type tokenHistory struct {
	byTag map[[macBytes]byte]tokenUse
	ring  [][macBytes]byte
	next  int
}

type tokenUse struct {
	addr            netip.AddrPort
	expireTimestamp uint64
}

func newTokenHistory(n int) tokenHistory {
	return tokenHistory{byTag: make(map[[macBytes]byte]tokenUse, n), ring: make([][macBytes]byte, 0, n)}
}

// use records that addr uses the token with this tag and reports whether that is allowed:
// true for a new token or the same address, false for a token seen from another address
// that has not expired.
func (h *tokenHistory) use(tag [macBytes]byte, addr netip.AddrPort, expireTimestamp uint64, now time.Time) bool {
	if u, ok := h.byTag[tag]; ok {
		if u.addr == addr {
			return true
		}
		if !tokenExpired(u.expireTimestamp, now) {
			return false
		}
		h.byTag[tag] = tokenUse{addr: addr, expireTimestamp: expireTimestamp}
		return true
	}
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, tag)
	} else {
		delete(h.byTag, h.ring[h.next])
		h.ring[h.next] = tag
		h.next = (h.next + 1) % len(h.ring)
	}
	h.byTag[tag] = tokenUse{addr: addr, expireTimestamp: expireTimestamp}
	return true
}

// tokenExpired reports whether a token with expireTimestamp (Unix seconds) has expired at
// now, with CheckExpiry's rule (expired once now's whole second reaches it; math.MaxUint64
// never expires) but without building an error, so that rejecting a packet does not allocate.
func tokenExpired(expireTimestamp uint64, now time.Time) bool {
	if expireTimestamp == math.MaxUint64 {
		return false
	}
	sec := now.Unix()
	return sec >= 0 && uint64(sec) >= expireTimestamp
}

// unmapAddrPort turns an IPv4-mapped IPv6 address (what a dual-stack socket reports) into
// plain IPv4, so that addresses compare equal however they arrived.
func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// containsAddrPort reports whether list holds a (IPv4-mapped forms compare equal).
func containsAddrPort(list []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range list {
		if unmapAddrPort(x) == a {
			return true
		}
	}
	return false
}
