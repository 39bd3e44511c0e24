// Package roomserver is the dotroom game server (see package room for the game): Run serves
// one Edgegap deployment with the gameserver SDK, a netcode server (UDP or WebTransport) and a
// tick loop. The program examples/dotroom/server calls it after reading the environment, and `bevygap dev`
// calls it in-process for every simulated deployment.
//
// Configuration comes from the environment (ConfigFromEnv): the ARBITRIUM_* variables Edgegap
// sets, NATS_* (package bus), and BEVYGAP_LIGHTYEAR_PRIVATE_KEY (the matchmaker's key;
// required), BEVYGAP_LIGHTYEAR_PROTOCOL_ID, BEVYGAP_TOKEN_FORMAT, BEVYGAP_BUCKET_PREFIX,
// DOTROOM_TRANSPORT, DOTROOM_LISTEN_HOST, DOTROOM_PORT_NAME, DOTROOM_TICK,
// DOTROOM_IDLE_TIMEOUT, DOTROOM_MAX_CLIENTS.
package roomserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/gameserver"
	"github.com/bevygap-go/bevygap/netcode"
)

// Environment variables the dotroom server reads besides the ARBITRIUM_* variables (Edgegap)
// and the NATS_* variables (package bus). On Edgegap, set them in the app version's
// environment; `bevygap dev` sets them for every deployment it starts.
const (
	// EnvPrivateKey is the Lightyear/netcode private key shared with the matchmaker (32 bytes:
	// "1,2,...,32", 64 hex characters or base64). Required.
	EnvPrivateKey = "BEVYGAP_LIGHTYEAR_PRIVATE_KEY"
	// EnvProtocolID is the Lightyear protocol id (default 1982, the matchmaker's default).
	EnvProtocolID = "BEVYGAP_LIGHTYEAR_PROTOCOL_ID"
	// EnvTokenFormat is the connect token byte order: lightyear-0.17 (default) or lightyear-0.20.
	EnvTokenFormat = "BEVYGAP_TOKEN_FORMAT"
	// EnvBucketPrefix is the KV bucket prefix; it must match the matchmaker's (default none).
	EnvBucketPrefix = "BEVYGAP_BUCKET_PREFIX"
	// EnvTransport is the game transport: udp (the default) or webtransport (what bevygap's Rust
	// client plugin and browsers speak; the SDK agent makes, publishes and renews the
	// certificate). Either way the deployment port is a UDP port.
	EnvTransport = "DOTROOM_TRANSPORT"
	// EnvListenHost is the host the UDP socket binds (default: every interface, as in a
	// container). `bevygap dev` sets 127.0.0.1.
	EnvListenHost = "DOTROOM_LISTEN_HOST"
	// EnvPortName picks the deployment port to serve (default "server", else the only port).
	EnvPortName = "DOTROOM_PORT_NAME"
	// EnvTick is the tick interval, a Go duration (default 100ms).
	EnvTick = "DOTROOM_TICK"
	// EnvIdleTimeout is the idle self-destruct delay, a Go duration (default 10m; 0 disables).
	EnvIdleTimeout = "DOTROOM_IDLE_TIMEOUT"
	// EnvMaxClients is the number of player slots (default 64).
	EnvMaxClients = "DOTROOM_MAX_CLIENTS"
)

// Defaults of Config.
const (
	DefaultProtocolID   = 1982
	DefaultPortName     = "server"
	DefaultTickInterval = 100 * time.Millisecond
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultMaxClients   = 64
	// shutdownFlush bounds how long a stopping server keeps writing disconnects to NATS.
	shutdownFlush = 5 * time.Second
)

// ErrConfig is matched (errors.Is) by every configuration error of the server: a missing or
// malformed variable, a port that does not exist. Retrying does not help.
var ErrConfig = errors.New("dotroom: configuration error")

// Config configures one dotroom game server (one Edgegap deployment).
type Config struct {
	// Arbitrium is the deployment's Edgegap environment (gameserver.EnvFromEnviron).
	Arbitrium gameserver.Arbitrium
	// NATS says how to reach NATS when Conn is nil (bus.ConfigFromEnv).
	NATS bus.Config
	// Conn, when set, is used instead of dialling NATS; the server does not close it.
	Conn *nats.Conn
	// PrivateKey and ProtocolID must be the matchmaker's; TokenFormat its token byte order.
	PrivateKey  netcode.Key
	ProtocolID  uint64
	TokenFormat netcode.Format
	// Buckets names the KV buckets; the prefix must be the matchmaker's.
	Buckets bus.BucketOptions
	// Transport is the game transport ("" = netcode.TransportUDP).
	Transport netcode.Transport
	// PortName is the deployment port to serve: "" means "server", else the only port.
	PortName string
	// ListenHost is the host to bind; "" means every interface.
	ListenHost string
	// MaxClients is the number of player slots (0 = DefaultMaxClients, at most MaxDots).
	MaxClients int
	// TickInterval is how often the room is broadcast (0 = DefaultTickInterval).
	TickInterval time.Duration
	// IdleTimeout enables the SDK's idle self-destruct; 0 disables it.
	IdleTimeout time.Duration
	// Width and Height are the room size (0 = defaults).
	Width, Height int
	// Edgegap is the client for the context and self-stop calls (nil = SDK default).
	Edgegap *edgegap.Client
	// Logger receives the server's logs (nil = slog.Default()).
	Logger *slog.Logger
}

// ConfigFromEnv fills a Config from the environment: ARBITRIUM_* (required; every
// problem reported at once), NATS_*, and the variables listed above. getenv is usually
// os.Getenv; `bevygap dev` passes the deployment's environment map. Errors match ErrConfig
// and never contain the private key.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	var errs []error
	arb, err := gameserver.EnvFromEnviron(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Arbitrium = arb
	cfg.NATS = bus.ConfigFromEnv(getenv)
	cfg.NATS.Name = "dotroom-" + arb.RequestID

	switch v := strings.TrimSpace(getenv(EnvPrivateKey)); v {
	case "":
		errs = append(errs, fmt.Errorf("%s is not set", EnvPrivateKey))
	default:
		k, err := netcode.ParseKey(v)
		if err == nil {
			err = netcode.ValidateKey(k, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvPrivateKey, err))
		}
		cfg.PrivateKey = k
	}
	cfg.ProtocolID = DefaultProtocolID
	if v := getenv(EnvProtocolID); v != "" {
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not a u64", EnvProtocolID, v))
		}
		cfg.ProtocolID = id
	}
	if v := getenv(EnvTokenFormat); v != "" {
		f, err := netcode.ParseFormat(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvTokenFormat, err))
		}
		cfg.TokenFormat = f
	}
	cfg.Buckets.Prefix = getenv(EnvBucketPrefix)
	if v := getenv(EnvTransport); v != "" {
		t, err := netcode.ParseTransport(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvTransport, err))
		}
		cfg.Transport = t
	}
	cfg.ListenHost = getenv(EnvListenHost)
	cfg.PortName = getenv(EnvPortName)
	cfg.TickInterval = DefaultTickInterval
	cfg.IdleTimeout = DefaultIdleTimeout
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvTick, &cfg.TickInterval}, {EnvIdleTimeout, &cfg.IdleTimeout}} {
		if v := getenv(d.name); v != "" {
			dur, err := time.ParseDuration(v)
			if err != nil || dur < 0 {
				errs = append(errs, fmt.Errorf("%s=%q is not a duration >= 0", d.name, v))
			}
			*d.dst = dur
		}
	}
	if v := getenv(EnvMaxClients); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > room.MaxDots {
			errs = append(errs, fmt.Errorf("%s=%q is not 1..%d", EnvMaxClients, v, room.MaxDots))
		}
		cfg.MaxClients = n
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return cfg, nil
}

// port returns the deployment port the server listens on: PortName, else "server", else the
// first port by name.
func (c *Config) port() (gameserver.Port, error) {
	if c.PortName != "" {
		p, ok := c.Arbitrium.Port(c.PortName)
		if !ok {
			return p, fmt.Errorf("%w: the deployment has no port %q", ErrConfig, c.PortName)
		}
		return p, nil
	}
	if p, ok := c.Arbitrium.Port(DefaultPortName); ok {
		return p, nil
	}
	ports := make([]gameserver.Port, 0, len(c.Arbitrium.Ports))
	for _, p := range c.Arbitrium.Ports {
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return gameserver.Port{}, fmt.Errorf("%w: the deployment has no ports", ErrConfig)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	return ports[0], nil
}

// Run runs one dotroom game server until ctx ends or the deployment is stopped (idle
// self-destruct). It is the whole server: `examples/dotroom/server` calls it after reading the
// environment, and `bevygap dev` calls it in-process for every simulated deployment.
//
// What it does, in order:
//  1. connect to NATS (unless cfg.Conn is given) and create the gameserver SDK agent, which
//     publishes the deployment context and keeps active_connections up to date;
//  2. listen for netcode (UDP or WebTransport: cfg.Transport; for WebTransport the agent's
//     self-signed certificate, its digest in cert_digests) on the deployment's port and let a
//     client in only if the agent finds its client id in sessions_ly2eg (a token from the
//     matchmaker for a live session);
//  3. run the room: a dot per player, moves and chat from clients, a snapshot every tick;
//  4. on shutdown, disconnect every player and flush the disconnects to NATS, so that the
//     matchmaker deletes their Edgegap sessions.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("deployment", cfg.Arbitrium.RequestID)
	port, err := cfg.port()
	if err != nil {
		return err
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	cfg.MaxClients = min(cfg.MaxClients, room.MaxDots, netcode.MaxClientsLimit)
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = DefaultTickInterval
	}

	// 1. NATS and the SDK agent.
	nc := cfg.Conn
	if nc == nil {
		nc, err = bus.Connect(ctx, cfg.NATS, log)
		if err != nil {
			return fmt.Errorf("dotroom: NATS: %w", err)
		}
		defer nc.Close()
	}
	agent, err := gameserver.New(gameserver.Config{
		Arbitrium:   cfg.Arbitrium,
		Buckets:     cfg.Buckets,
		Edgegap:     cfg.Edgegap,
		IdleTimeout: cfg.IdleTimeout,
		Transport:   cfg.Transport,
	}, nc, log)
	if err != nil {
		return fmt.Errorf("dotroom: %w", err)
	}

	// 2. The netcode server, wired to the agent's hooks and to the room.
	state := room.NewState(cfg.Width, cfg.Height)
	width, height := state.Size()
	var srv *netcode.Server
	srv, err = netcode.NewServer(netcode.ServerConfig{
		Addr:       net.JoinHostPort(cfg.ListenHost, strconv.Itoa(int(port.Internal))),
		PublicAddr: netip.AddrPortFrom(cfg.Arbitrium.PublicIP, port.External),
		ProtocolID: cfg.ProtocolID,
		PrivateKey: cfg.PrivateKey,
		Format:     cfg.TokenFormat,
		MaxClients: cfg.MaxClients,
		Transport:  agent.Transport(),
		TLSConfig:  agent.TLSConfig(), // WebTransport: the agent's certificate, renewed in place
		OnConnectRequest: func(ctx context.Context, clientID uint64, _ [netcode.UserDataBytes]byte) error {
			_, err := agent.AuthorizeClient(ctx, clientID)
			switch {
			case err == nil:
				return nil
			case errors.Is(err, gameserver.ErrUnknownClient):
				log.Warn("refused a client without a session", "client_id", clientID)
				return denied(netcode.DeniedInvalidToken, err)
			case errors.Is(err, gameserver.ErrAlreadyConnected):
				return denied(netcode.DeniedAlreadyConnected, err)
			case errors.Is(err, gameserver.ErrNATSUnavailable):
				// Not checked yet (e.g. a NATS node failing over): no answer now; the
				// client's next connection request asks again while its token is good.
				return fmt.Errorf("%w: %w", netcode.ErrRetryLater, err)
			default: // shutting down: not checked, so not let in
				return denied(netcode.DeniedInternalError, err)
			}
		},
		OnConnect: func(id uint64, addr netip.AddrPort) {
			agent.ClientConnected(id) // claims the session: the matchmaker will not reap it
			_ = srv.Send(id, room.Encode(room.Welcome{You: id, Width: uint16(width), Height: uint16(height)}))
			state.Join(id) // after the Welcome, so that it is the player's first message
		},
		OnDisconnect: func(id uint64, addr netip.AddrPort) {
			state.Leave(id)
			agent.ClientDisconnected(id) // the matchmaker deletes the session
		},
		Logger: log,
	})
	if err != nil {
		return fmt.Errorf("dotroom: %w: %w", ErrConfig, err)
	}
	if err := srv.Listen(ctx); err != nil {
		return fmt.Errorf("dotroom: listen: %w", err)
	}
	log.Info("dotroom server listening", "addr", srv.Addr().String(), "public", netip.AddrPortFrom(cfg.Arbitrium.PublicIP, port.External).String(),
		"transport", agent.Transport(), "cert_digest", agent.CertDigest())

	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgent()
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(agentCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx) }()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		handlePayloads(ctx, srv, state, log)
	}()

	// 3. The tick loop, until ctx ends or something stops underneath us.
	var runErr error
	ticker := time.NewTicker(cfg.TickInterval)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-agentDone:
			agentDone <- err // Close below waits for it again
			if err != nil {
				runErr = fmt.Errorf("dotroom: %w", err)
			}
			break loop
		case err := <-serveDone:
			serveDone <- err
			if err != nil {
				runErr = fmt.Errorf("dotroom: netcode: %w", err)
			}
			break loop
		case <-ticker.C:
			broadcast(srv, state)
		}
	}

	// 4. Shutdown: kick everyone (their disconnects are queued), then flush them to NATS.
	_ = srv.Close()
	<-serveDone
	<-loopDone
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
	defer cancel()
	if err := agent.Close(flushCtx); err != nil {
		log.Error("dotroom: disconnects not written to NATS", "err", err)
	}
	stopAgent()
	log.Info("dotroom server stopped")
	return runErr
}

// denied is a refusal with the reason the client sees (netcode finds it with errors.As) and the
// cause for our logs.
func denied(reason netcode.DeniedReason, cause error) error {
	return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: reason}, cause)
}

// handlePayloads applies what clients send until the server closes.
func handlePayloads(ctx context.Context, srv *netcode.Server, state *room.State, log *slog.Logger) {
	for {
		p, err := srv.Recv(ctx)
		if err != nil {
			return // ctx ended or the server closed
		}
		msg, err := room.Decode(p.Data)
		switch {
		case errors.Is(err, room.ErrNotGame):
			_ = srv.Send(p.ClientID, p.Data) // echo: round-trip probes such as `bevygap play`
			continue
		case err != nil:
			log.Debug("dotroom: ignored a malformed message", "client_id", p.ClientID, "err", err)
			continue
		}
		switch m := msg.(type) {
		case room.Move:
			state.Move(p.ClientID, int(m.DX), int(m.DY)) // seen by everyone at the next tick
		case room.Say:
			chat := room.Encode(room.Chat{From: p.ClientID, Text: m.Text})
			for _, c := range srv.Clients() {
				_ = srv.Send(c.ClientID, chat)
			}
		default: // server-to-client kinds sent by a client: ignore
		}
	}
}

// broadcast sends the room's snapshot to every player in it.
func broadcast(srv *netcode.Server, state *room.State) {
	if state.Len() == 0 {
		return
	}
	snap := state.Tick()
	payload := room.Encode(snap)
	for _, d := range snap.Dots {
		_ = srv.Send(d.ID, payload) // a player who just left is simply skipped
	}
}
