// Command server is the game server of docs/first-game.md ("Your first game"): the smallest
// complete Go game server on bevygap. It echoes every message a player sends back to that
// player and tells everyone once a second how many players are online. Replace the echo and
// the tick with your game.
//
// Everything it needs comes from the environment: ARBITRIUM_* (set by Edgegap, or by
// `bevygap dev`), NATS_* (how to reach NATS), BEVYGAP_LIGHTYEAR_PRIVATE_KEY and
// BEVYGAP_LIGHTYEAR_PROTOCOL_ID (the matchmaker's key and protocol id), and optionally
// MYGAME_LISTEN_HOST (the address to bind; every interface when unset, as in a container).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/gameserver"
	"github.com/bevygap-go/bevygap/netcode"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Edgegap stops a deployment with SIGTERM; `bevygap dev` too.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("mygame server stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	// 1. Where am I? Edgegap (and bevygap dev) describe the deployment in ARBITRIUM_*.
	arb, err := gameserver.EnvFromEnviron(os.Getenv) // one error naming every missing variable
	if err != nil {
		return err
	}
	port, ok := arb.Port("server") // the app version's port named "server"
	if !ok {
		return errors.New(`the deployment has no port named "server"`)
	}

	// 2. The matchmaker's private key and protocol id: tokens are sealed with them.
	key, err := netcode.ParseKey(os.Getenv("BEVYGAP_LIGHTYEAR_PRIVATE_KEY"))
	if err == nil {
		err = netcode.ValidateKey(key, false) // refuses the all-zero key
	}
	if err != nil {
		return fmt.Errorf("BEVYGAP_LIGHTYEAR_PRIVATE_KEY: %w", err)
	}
	protocolID, err := strconv.ParseUint(os.Getenv("BEVYGAP_LIGHTYEAR_PROTOCOL_ID"), 10, 64)
	if err != nil {
		return fmt.Errorf("BEVYGAP_LIGHTYEAR_PROTOCOL_ID: %w", err)
	}

	// 3. NATS and the SDK agent: it tells the matchmaker who is connected.
	natsCfg := bus.ConfigFromEnv(os.Getenv)
	natsCfg.Name = "mygame-" + arb.RequestID
	nc, err := bus.Connect(ctx, natsCfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	agent, err := gameserver.New(gameserver.Config{Arbitrium: arb, IdleTimeout: 10 * time.Minute}, nc, log)
	if err != nil {
		return err
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(ctx) }()

	// 4. The netcode UDP server, with the three hooks of the agent.
	srv, err := netcode.NewServer(netcode.ServerConfig{
		Addr:       net.JoinHostPort(os.Getenv("MYGAME_LISTEN_HOST"), strconv.Itoa(int(port.Internal))),
		PublicAddr: netip.AddrPortFrom(arb.PublicIP, port.External),
		ProtocolID: protocolID,
		PrivateKey: key,
		OnConnectRequest: func(ctx context.Context, clientID uint64, _ [netcode.UserDataBytes]byte) error {
			_, err := agent.AuthorizeClient(ctx, clientID) // did the matchmaker send this player?
			switch {
			case err == nil:
				return nil
			case errors.Is(err, gameserver.ErrUnknownClient):
				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInvalidToken}, err)
			case errors.Is(err, gameserver.ErrAlreadyConnected):
				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedAlreadyConnected}, err)
			case errors.Is(err, gameserver.ErrNATSUnavailable): // not checked yet: the client asks again
				return fmt.Errorf("%w: %w", netcode.ErrRetryLater, err)
			default: // shutting down: not checked, so not let in
				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInternalError}, err)
			}
		},
		OnConnect:    func(id uint64, _ netip.AddrPort) { agent.ClientConnected(id) },
		OnDisconnect: func(id uint64, _ netip.AddrPort) { agent.ClientDisconnected(id) }, // last one out: session deleted
		Logger:       log,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(ctx); err != nil {
		return err
	}
	log.Info("mygame server listening", "addr", srv.Addr().String())
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx) }()

	// 5. The game loop: echo what players send, tell everyone the time once a second.
	payloads := make(chan netcode.Payload)
	go func() {
		for {
			p, err := srv.Recv(ctx)
			if err != nil {
				return // ctx ended or the server closed
			}
			select {
			case payloads <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var runErr error
	tick := 0
loop:
	for {
		select {
		case <-ctx.Done(): // SIGTERM
			break loop
		case err := <-agentDone: // e.g. the context API refused this deployment (gameserver.ErrConfig)
			runErr = fmt.Errorf("gameserver agent stopped: %v", err)
			break loop
		case err := <-serveDone:
			runErr = fmt.Errorf("netcode server stopped: %v", err)
			break loop
		case p := <-payloads:
			_ = srv.Send(p.ClientID, p.Data) // echo
		case <-ticker.C:
			tick++
			clients := srv.Clients()
			msg := fmt.Sprintf("tick %d: %d player(s) online", tick, len(clients))
			for _, c := range clients {
				_ = srv.Send(c.ClientID, []byte(msg))
			}
		}
	}
	if ctx.Err() != nil {
		runErr = nil // stopped by a signal: agent and server ended because of it
	}

	// 6. Shutdown: disconnect everyone, then write their disconnects to NATS.
	_ = srv.Close()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := agent.Close(flushCtx); err != nil {
		log.Error("disconnects not written to NATS", "err", err)
	}
	return runErr
}
