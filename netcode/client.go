package netcode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Errors of the client. Dial's errors wrap exactly one of the first five (or ErrCertMismatch,
// over WebTransport with a pinned digest); a connected client's Err / Recv / Send report the
// last three.
var (
	// ErrInvalidConnectToken: the token could not be decoded, or is inconsistent (no
	// addresses, created after it expires).
	ErrInvalidConnectToken = errors.New("netcode: invalid connect token")
	// ErrConnectionDenied: a server answered with a connection denied packet. The error is a
	// *DeniedError carrying the reason.
	ErrConnectionDenied = errors.New("netcode: connection denied")
	// ErrConnectTokenExpired: the token's lifetime (expire - create timestamp) ran out before
	// a server accepted the client. It wraps ErrExpired.
	ErrConnectTokenExpired = fmt.Errorf("%w before the connection was established", ErrExpired)
	// ErrConnectionTimedOut: nothing came from the server for the token's timeout. Dial
	// returns one of the two more precise errors below, which wrap it.
	ErrConnectionTimedOut = errors.New("netcode: connection timed out")
	// ErrConnectionRequestTimedOut: no challenge (nor denial) answered the connection
	// requests within the timeout.
	ErrConnectionRequestTimedOut = fmt.Errorf("%w waiting for a challenge", ErrConnectionTimedOut)
	// ErrConnectionResponseTimedOut: no keep-alive (nor denial) answered the challenge
	// responses within the timeout.
	ErrConnectionResponseTimedOut = fmt.Errorf("%w waiting for the server to accept the challenge response", ErrConnectionTimedOut)
	// ErrDisconnected: the server disconnected the client.
	ErrDisconnected = errors.New("netcode: disconnected by the server")
	// ErrClientClosed: Close was called.
	ErrClientClosed = errors.New("netcode: client closed")
)

// DeniedError is the error of a denied connection: Dial returns it when a server denies the
// client, and a ServerConfig.OnConnectRequest hook returns one (Server left zero) to choose
// the reason the client sees. errors.Is(err, ErrConnectionDenied) holds for it.
type DeniedError struct {
	// Server is the address that denied the connection (zero when returned by a hook).
	Server netip.AddrPort
	// Reason is the reason the server sent (DeniedUnspecified for a standard netcode server).
	Reason DeniedReason
	// Message is the text of a DeniedCustom reason.
	Message string
}

// Error describes the denial.
func (e *DeniedError) Error() string {
	msg := "netcode: connection denied: " + e.Reason.String()
	if e.Server.IsValid() {
		msg = fmt.Sprintf("netcode: connection denied by %s: %s", e.Server, e.Reason)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Is makes errors.Is(e, ErrConnectionDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrConnectionDenied }

// DefaultClientRecvQueue is the number of received payloads buffered for Client.Recv.
const DefaultClientRecvQueue = 256

// ClientConfig configures Dial. The zero value works with lightyear-0.17 tokens over UDP.
type ClientConfig struct {
	// Transport carries the packets: TransportUDP ("" means it) or TransportWebTransport
	// (a WebTransport session to https://IP:PORT of each server address, as Lightyear's
	// WebTransportClient does).
	Transport Transport
	// CertDigest, over WebTransport, pins the server's certificate as a browser does: Dial
	// fails at once with an error wrapping ErrCertMismatch unless the server's certificate
	// has this SHA-256 and browsers would pin it (ECDSA, valid now, for at most 14 days).
	// nil means no certificate validation (Lightyear's native client). Ignored over UDP.
	CertDigest *CertDigest
	// Format is the byte order of the token and of packets (the zero value is lightyear-0.17).
	Format Format
	// SendInterval is how often connection requests, challenge responses and (when nothing
	// else is sent) keep-alives go out: 0 means DefaultKeepAliveInterval (10 Hz).
	SendInterval time.Duration
	// DisconnectPackets is how many redundant disconnect packets Close sends: 0 means
	// DefaultDisconnectPackets.
	DisconnectPackets int
	// RecvQueue is how many received payloads wait for Recv before new ones are dropped:
	// 0 means DefaultClientRecvQueue.
	RecvQueue int
	// Logger receives debug logs; nil means slog.Default(). Keys and tokens are never logged.
	Logger *slog.Logger

	// network opens the socket to each server; nil means the Transport's. Tests use an
	// in-memory network.
	network clientNetwork
}

// clientNetwork opens a Client's socket to one server. dial must return when ctx ends.
type clientNetwork interface {
	dial(ctx context.Context, addr netip.AddrPort) (clientConn, error)
}

// clientConn is a Client's datagram socket, connected to one server: a *net.UDPConn, or
// another datagram transport of the same shape. Read must return an error whose Timeout
// method reports true once the read deadline passes, and net.ErrClosed after Close.
type clientConn interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
	LocalAddr() net.Addr
	Close() error
}

// lingerer is implemented by a clientConn whose Close can drop packets just written (a
// WebTransport session closing its QUIC connection): after lingerOnClose, Close waits
// briefly for them to leave, or for the server to close first.
type lingerer interface {
	lingerOnClose()
}

// udpNetwork is the clientNetwork of UDP sockets.
type udpNetwork struct{}

// dial opens a UDP socket connected to addr.
func (udpNetwork) dial(_ context.Context, addr netip.AddrPort) (clientConn, error) {
	network := "udp6"
	if addr.Addr().Is4() {
		network = "udp4"
	}
	conn, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	return conn, nil
}

// Client is a client connected to a netcode.io server. Its methods are safe for concurrent
// use.
type Client struct {
	cfg      ClientConfig
	log      *slog.Logger
	conn     clientConn
	server   netip.AddrPort
	timeout  time.Duration // 0: never times out
	recvq    chan []byte
	done     chan struct{}
	wg       sync.WaitGroup
	clientID uint64

	mu       sync.Mutex
	err      error // set once when the connection ends
	send     *packetCipher
	recv     *packetCipher
	replay   replayProtection
	sequence uint64
	lastSend time.Time
	lastRecv time.Time
	sendBuf  [packetBufferBytes]byte
	bodyBuf  [challengeBodyBytes]byte
}

// Dial connects with a connect token, given as its 2048 bytes or as base64 text (as the
// matchmaker hands it out). See DialToken.
func Dial(ctx context.Context, token []byte, cfg ClientConfig) (*Client, error) {
	var (
		t   *ConnectToken
		err error
	)
	if len(token) == ConnectTokenBytes {
		t, err = DecodeConnectToken(token, cfg.Format)
	} else {
		t, err = DecodeConnectTokenBase64(strings.TrimSpace(string(token)), cfg.Format)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConnectToken, err)
	}
	return DialToken(ctx, t, cfg)
}

// DialToken connects with a decoded connect token (its Format overrides cfg.Format): it tries each server address of the token
// in order (sending connection requests, then challenge responses, at SendInterval) until one
// accepts the client. Each attempt may last the token's timeout; all of them together may
// last the token's lifetime (expire - create timestamp). It returns the error of the last
// attempt: a *DeniedError (ErrConnectionDenied), ErrConnectionRequestTimedOut or
// ErrConnectionResponseTimedOut (both ErrConnectionTimedOut), ErrConnectTokenExpired,
// ErrCertMismatch (WebTransport with ClientConfig.CertDigest), ctx's error, or a socket or
// session error. Over WebTransport each attempt first opens the session (QUIC, TLS, HTTP/3):
// that gives up after the token's timeout without an answer (ErrConnectionRequestTimedOut)
// and takes at most twice the timeout.
func DialToken(ctx context.Context, t *ConnectToken, cfg ClientConfig) (*Client, error) {
	cfg.Format = t.Format // the token's own format decides the packets' byte order
	if cfg.SendInterval <= 0 {
		cfg.SendInterval = DefaultKeepAliveInterval
	}
	if cfg.DisconnectPackets <= 0 {
		cfg.DisconnectPackets = DefaultDisconnectPackets
	}
	if cfg.RecvQueue <= 0 {
		cfg.RecvQueue = DefaultClientRecvQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var err error
	if cfg.Transport, err = cfg.Transport.normalize(); err != nil {
		return nil, err
	}
	if cfg.network == nil {
		cfg.network = udpNetwork{}
		if cfg.Transport == TransportWebTransport {
			cfg.network = webTransportNetwork(cfg)
		}
	}
	if err := checkFormat(t.Format); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConnectToken, err)
	}
	if len(t.ServerAddrs) == 0 || len(t.ServerAddrs) > MaxServersPerConnect {
		return nil, fmt.Errorf("%w: %d server addresses", ErrInvalidConnectToken, len(t.ServerAddrs))
	}
	if t.CreateTimestamp > t.ExpireTimestamp {
		return nil, fmt.Errorf("%w: created after it expires", ErrInvalidConnectToken)
	}
	send, err := newPacketCipher(t.ClientToServerKey, t.Format, t.ProtocolID)
	if err != nil {
		return nil, err
	}
	recv, err := newPacketCipher(t.ServerToClientKey, t.Format, t.ProtocolID)
	if err != nil {
		return nil, err
	}
	d := &dialer{
		cfg:     cfg,
		log:     cfg.Logger.With(logkey.Component, "netcode-client"),
		token:   t,
		request: appendRequestPacket(make([]byte, 0, requestPacketBytes), t),
		send:    send,
		recv:    recv,
	}
	if t.TimeoutSeconds > 0 {
		d.timeout = time.Duration(t.TimeoutSeconds) * time.Second
	}
	if life := t.ExpireTimestamp - t.CreateTimestamp; t.ExpireTimestamp != math.MaxUint64 && life < math.MaxInt32 {
		d.tokenDeadline = time.Now().Add(time.Duration(life) * time.Second)
	}
	var lastErr error
	for _, addr := range t.ServerAddrs {
		c, err := d.dial(ctx, unmapAddrPort(addr))
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil || errors.Is(err, ErrConnectTokenExpired) {
			break
		}
		d.log.Debug("netcode connect attempt failed", "server", addr.String(), logkey.Err, err)
	}
	return nil, lastErr
}

// dialer holds what the attempts of one DialToken share. The packet sequence continues
// across attempts: every server shares the token's keys, so a sequence (nonce) must never be
// used twice.
type dialer struct {
	cfg           ClientConfig
	log           *slog.Logger
	token         *ConnectToken
	request       []byte
	send          *packetCipher
	recv          *packetCipher
	sequence      uint64
	timeout       time.Duration
	tokenDeadline time.Time // zero: the token never expires
}

// dial runs the handshake with one server.
func (d *dialer) dial(ctx context.Context, addr netip.AddrPort) (*Client, error) {
	start := time.Now()
	conn, err := d.open(ctx, addr, start)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     d.cfg,
		log:     d.log,
		conn:    conn,
		server:  addr,
		timeout: d.timeout,
		recvq:   make(chan []byte, d.cfg.RecvQueue),
		done:    make(chan struct{}),
		send:    d.send,
		recv:    d.recv,
	}
	c.replay.reset()
	c.sequence = d.sequence
	err = c.handshake(ctx, d)
	d.sequence = c.sequence
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.tickLoop()
	return c, nil
}

// open opens the socket to one server. A WebTransport dial runs the QUIC, TLS and HTTP/3
// handshakes: it may take up to twice the token's timeout (QUIC gives up after one timeout
// without an answer) within the token's lifetime; the timeout for the challenge starts once
// the session is open.
func (d *dialer) open(ctx context.Context, addr netip.AddrPort, start time.Time) (clientConn, error) {
	var deadline time.Time
	if d.timeout > 0 {
		deadline = start.Add(2 * d.timeout)
	}
	if !d.tokenDeadline.IsZero() && (deadline.IsZero() || d.tokenDeadline.Before(deadline)) {
		deadline = d.tokenDeadline
	}
	dctx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		dctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if d.timeout > 0 {
		dctx = context.WithValue(dctx, answerTimeoutKey{}, d.timeout)
	}
	conn, err := d.cfg.network.dial(dctx, addr)
	var ne net.Error
	switch {
	case err == nil:
		return conn, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case dctx.Err() != nil && deadline.Equal(d.tokenDeadline):
		return nil, fmt.Errorf("%w (trying %s)", ErrConnectTokenExpired, addr)
	case dctx.Err() != nil, errors.As(err, &ne) && ne.Timeout():
		return nil, fmt.Errorf("%w (server %s): %w", ErrConnectionRequestTimedOut, addr, err)
	}
	return nil, fmt.Errorf("netcode: dial %s: %w", addr, err)
}

// answerTimeoutKey is the context key, in a clientNetwork's dial, of how long the server may
// stay silent before the attempt gives up (the token's timeout; absent: never).
type answerTimeoutKey struct{}

// answerTimeout returns the answer timeout in ctx, or 0.
func answerTimeout(ctx context.Context) time.Duration {
	d, _ := ctx.Value(answerTimeoutKey{}).(time.Duration)
	return d
}

// handshake sends connection requests until a challenge comes, then challenge responses
// until a keep-alive comes.
func (c *Client) handshake(ctx context.Context, d *dialer) error {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Unix(1, 0)) }) // interrupts a blocked read
	defer stop()
	var (
		responding   bool
		stateStart   = time.Now()
		nextSend     time.Time
		challengeSeq uint64
		challengeTok [challengeTokenBytes]byte
		buf          = make([]byte, packetBufferBytes)
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if !d.tokenDeadline.IsZero() && !now.Before(d.tokenDeadline) {
			return fmt.Errorf("%w (trying %s)", ErrConnectTokenExpired, c.server)
		}
		if c.timeout > 0 && now.Sub(stateStart) >= c.timeout {
			if responding {
				return fmt.Errorf("%w (server %s)", ErrConnectionResponseTimedOut, c.server)
			}
			return fmt.Errorf("%w (server %s)", ErrConnectionRequestTimedOut, c.server)
		}
		if !now.Before(nextSend) {
			c.mu.Lock()
			if responding {
				putChallengeBody(&c.bodyBuf, d.token.Format, challengeSeq, &challengeTok)
				_ = c.sendLocked(packetResponse, c.bodyBuf[:], now)
			} else {
				_ = c.writeLocked(d.request)
			}
			c.mu.Unlock()
			nextSend = now.Add(c.cfg.SendInterval)
		}
		deadline := nextSend
		if !d.tokenDeadline.IsZero() && d.tokenDeadline.Before(deadline) {
			deadline = d.tokenDeadline
		}
		if c.timeout > 0 && stateStart.Add(c.timeout).Before(deadline) {
			deadline = stateStart.Add(c.timeout)
		}
		_ = c.conn.SetReadDeadline(deadline)
		n, err := c.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.ECONNREFUSED) {
				continue // no answer yet, or nothing listens there (yet): keep trying
			}
			return fmt.Errorf("netcode: read from %s: %w", c.server, err)
		}
		h, body, err := c.readServerPacket(buf[:n], false)
		if err != nil {
			continue
		}
		switch {
		case h.typ == packetDenied:
			reason, msg, err := readDeniedBody(body)
			if err != nil {
				continue
			}
			return &DeniedError{Server: c.server, Reason: reason, Message: msg}
		case h.typ == packetChallenge && !responding:
			seq, tok := readChallengeBody(body, d.token.Format)
			challengeSeq, challengeTok = seq, *tok
			responding = true
			stateStart = now
			nextSend = time.Time{}
		case h.typ == packetKeepAlive && responding:
			c.clientID = d.token.Format.byteOrder().Uint64(body)
			c.mu.Lock()
			c.lastRecv = time.Now()
			c.mu.Unlock()
			_ = c.conn.SetReadDeadline(time.Time{})
			c.log.Debug("netcode client connected", "server", c.server.String(), logkey.ClientID, c.clientID)
			return nil
		}
	}
}

// readServerPacket checks, authenticates and decrypts a packet from the server. Connected
// clients accept keep-alive, payload and disconnect packets; during the handshake denied,
// challenge and keep-alive packets (payloads that arrive early are dropped, as the standard
// says).
func (c *Client) readServerPacket(b []byte, connected bool) (packetHeader, []byte, error) {
	h, err := readPacketHeader(b)
	if err != nil {
		return h, nil, err
	}
	switch h.typ {
	case packetKeepAlive:
	case packetDenied, packetChallenge:
		if connected {
			return h, nil, errPacketType
		}
	case packetPayload, packetDisconnect:
		if !connected {
			return h, nil, errPacketType
		}
	default:
		return h, nil, errPacketType
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	protected := h.typ >= packetKeepAlive
	if protected && c.replay.alreadyReceived(h.sequence) {
		return h, nil, errPacketReplay
	}
	body, err := c.recv.open(b, h)
	if err != nil {
		return h, nil, err
	}
	if protected {
		c.replay.advance(h.sequence)
	}
	if err := checkBodySize(h.typ, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// readLoop receives packets of the established connection until it ends.
func (c *Client) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, packetBufferBytes)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // the server is gone or restarting; the timeout decides
			}
			c.fail(fmt.Errorf("netcode: read from %s: %w", c.server, err))
			return
		}
		h, body, err := c.readServerPacket(buf[:n], true)
		if err != nil {
			continue
		}
		now := time.Now()
		switch h.typ {
		case packetKeepAlive:
			c.touch(now)
		case packetPayload:
			c.touch(now)
			select {
			case c.recvq <- append([]byte(nil), body...):
			default:
				c.log.Debug("netcode client dropped a payload: receive queue full")
			}
		case packetDisconnect:
			c.fail(ErrDisconnected)
			return
		}
	}
}

func (c *Client) touch(now time.Time) {
	c.mu.Lock()
	c.lastRecv = now
	c.mu.Unlock()
}

// tickLoop sends keep-alives and detects the timeout.
func (c *Client) tickLoop() {
	defer c.wg.Done()
	interval := c.cfg.SendInterval / 2
	if interval < time.Millisecond {
		interval = time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			c.mu.Lock()
			if c.err != nil {
				c.mu.Unlock()
				return
			}
			if c.timeout > 0 && now.Sub(c.lastRecv) > c.timeout {
				c.failLocked(fmt.Errorf("%w (server %s)", ErrConnectionTimedOut, c.server))
				c.mu.Unlock()
				return
			}
			if now.Sub(c.lastSend) >= c.cfg.SendInterval {
				body := c.cfg.Format.byteOrder().AppendUint64(c.bodyBuf[:0], c.clientID)
				_ = c.sendLocked(packetKeepAlive, body, now)
			}
			c.mu.Unlock()
		}
	}
}

// sendLocked seals and sends one packet. Called with c.mu held.
func (c *Client) sendLocked(t packetType, body []byte, now time.Time) error {
	pkt := c.send.appendPacket(c.sendBuf[:0], t, c.sequence, body)
	c.sequence++
	c.lastSend = now
	return c.writeLocked(pkt)
}

// writeLocked writes a datagram; a refused port (the server is not there yet or any more)
// is not an error for a datagram protocol.
func (c *Client) writeLocked(pkt []byte) error {
	if _, err := c.conn.Write(pkt); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("netcode: send to %s: %w", c.server, err)
	}
	return nil
}

// fail ends the connection with err (once).
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLocked(err)
}

func (c *Client) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	_ = c.conn.Close()
	c.log.Debug("netcode client connection ended", "server", c.server.String(), logkey.Err, err)
}

// Send sends a payload to the server: 1..MaxPayloadBytes bytes over UDP,
// 1..MaxWebTransportPayloadBytes over WebTransport. payload may be reused once Send returns.
// After the connection ended it returns the reason (see Err).
func (c *Client) Send(payload []byte) error {
	if limit := c.cfg.Transport.maxPayload(); len(payload) < 1 || len(payload) > limit {
		return fmt.Errorf("%w: %d bytes, want 1..%d", ErrPayloadSize, len(payload), limit)
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.sendLocked(packetPayload, payload, now)
}

// Recv returns the next payload from the server. It blocks until one arrives, ctx ends, or
// the connection ended and no payload is left (then it returns Err()).
func (c *Client) Recv(ctx context.Context) ([]byte, error) {
	select {
	case p := <-c.recvq:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		select {
		case p := <-c.recvq:
			return p, nil
		default:
			return nil, c.Err()
		}
	}
}

// Close sends redundant disconnect packets (if still connected), closes the socket and waits
// for the client's goroutines. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.err == nil {
		now := time.Now()
		for i := 0; i < c.cfg.DisconnectPackets; i++ {
			if c.sendLocked(packetDisconnect, nil, now) != nil {
				break
			}
		}
		if l, ok := c.conn.(lingerer); ok {
			l.lingerOnClose() // let the disconnect packets leave before the session closes
		}
		c.failLocked(ErrClientClosed)
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Done is closed when the connection ends (disconnect, timeout, Close).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while connected, then why the connection ended: ErrDisconnected,
// ErrConnectionTimedOut, ErrClientClosed, or a socket error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ClientID returns the client id the server sent in its keep-alive (Lightyear servers send
// the client id of the token; a standard netcode.io server sends its client index and max
// clients there instead).
func (c *Client) ClientID() uint64 { return c.clientID }

// ServerAddr returns the address of the server the client connected to.
func (c *Client) ServerAddr() netip.AddrPort { return c.server }

// LocalAddr returns the client's UDP address (over WebTransport: of its QUIC connection).
func (c *Client) LocalAddr() netip.AddrPort { return localAddrPort(c.conn) }
