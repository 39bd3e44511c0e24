package gameserver_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/gameserver"
)

// The wiring of a Go game server: read the Edgegap environment, connect to NATS, run the agent
// and call its hooks from the netcode server's callbacks.
func Example() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	arb, err := gameserver.EnvFromEnviron(os.Getenv)
	if err != nil {
		log.Error("not running in an Edgegap deployment", "err", err) // lists every missing variable
		os.Exit(1)
	}
	natsCfg := bus.ConfigFromEnv(os.Getenv)
	natsCfg.Name = "gameserver-" + arb.RequestID
	nc, err := bus.Connect(ctx, natsCfg, log)
	if err != nil {
		log.Error("NATS", "err", err)
		os.Exit(1)
	}
	defer nc.Close()

	agent, err := gameserver.New(gameserver.Config{
		Arbitrium:   arb,
		CertDigest:  "", // the WebTransport certificate digest, if the server has one
		IdleTimeout: 10 * time.Minute,
	}, nc, log)
	if err != nil {
		log.Error("gameserver config", "err", err)
		os.Exit(1)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- agent.Run(ctx) }()

	// The netcode server's callbacks (see the package documentation for package netcode's).
	onConnectRequest := func(ctx context.Context, clientID uint64) bool {
		_, err := agent.AuthorizeClient(ctx, clientID)
		return err == nil
	}
	onConnect := agent.ClientConnected
	onDisconnect := agent.ClientDisconnected
	_, _, _ = onConnectRequest, onConnect, onDisconnect

	if err := <-runErr; errors.Is(err, gameserver.ErrConfig) {
		log.Error("misconfigured deployment", "err", err)
	}
	// After kicking the remaining players (their disconnects are still written):
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := agent.Close(closeCtx); err != nil {
		log.Error("shutdown", "err", err)
	}
}
