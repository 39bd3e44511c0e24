package gameserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/gameserver"
	"github.com/bevygap-go/bevygap/netcode"
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
		Arbitrium: arb,
		// WebTransport (what bevygap's Rust client plugin and browsers speak): the agent makes,
		// publishes and renews the certificate. netcode.TransportUDP needs none.
		Transport:   netcode.TransportWebTransport,
		IdleTimeout: 10 * time.Minute,
	}, nc, log)
	if err != nil {
		log.Error("gameserver config", "err", err)
		os.Exit(1)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- agent.Run(ctx) }()

	// The netcode server's transport and certificate come from the agent:
	_ = netcode.ServerConfig{Transport: agent.Transport(), TLSConfig: agent.TLSConfig()}
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

// refusal maps an AuthorizeClient error to the error a netcode.ServerConfig.OnConnectRequest hook
// returns: it wraps a *netcode.DeniedError, whose reason the server sends to the client (a bare
// netcode.DeniedReason is not an error and would be lost), and the cause, for the logs.
func refusal(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gameserver.ErrUnknownClient):
		return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInvalidToken}, err)
	case errors.Is(err, gameserver.ErrAlreadyConnected):
		return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedAlreadyConnected}, err)
	case errors.Is(err, gameserver.ErrNATSUnavailable):
		// Not checked (e.g. a NATS node failing over): no answer now; the client's next
		// connection request, a tenth of a second later, asks again while its token is good.
		return fmt.Errorf("%w: %w", netcode.ErrRetryLater, err)
	default: // ErrClosed
		return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInternalError}, err)
	}
}

// The connect-request hook of package netcode's server: the reason the client sees is the one of
// the *netcode.DeniedError in the returned error.
func Example_connectRequestHook() {
	for _, authErr := range []error{gameserver.ErrUnknownClient, gameserver.ErrAlreadyConnected, gameserver.ErrNATSUnavailable} {
		err := refusal(fmt.Errorf("authorize client 42: %w", authErr))
		var denied *netcode.DeniedError
		switch {
		case errors.As(err, &denied):
			fmt.Printf("%s -> client told %q\n", authErr, denied.Reason)
		case errors.Is(err, netcode.ErrRetryLater):
			fmt.Printf("%s -> no answer yet, the client retries\n", authErr)
		}
	}
	// Output:
	// gameserver: client id has no session -> client told "invalid token"
	// gameserver: client id already connected -> client told "already connected"
	// gameserver: NATS unavailable -> no answer yet, the client retries
}
