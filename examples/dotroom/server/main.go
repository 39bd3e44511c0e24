// Command server is the dotroom game server as a program, for an Edgegap app version (or
// `bevygap dev --exec`, `bevygap edgegap-sim --exec`). Everything it needs comes from the
// environment Edgegap sets (ARBITRIUM_*) plus NATS_* and BEVYGAP_LIGHTYEAR_PRIVATE_KEY; see
// package roomserver for the list. It stops on SIGINT or SIGTERM (Edgegap stops containers with
// SIGTERM), after disconnecting its players.
//
//	go build -o dotroom-server ./examples/dotroom/server
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bevygap-go/bevygap/examples/dotroom/roomserver"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := roomserver.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("dotroom server: bad environment", "err", err) // lists every problem at once
		os.Exit(2)
	}
	cfg.Logger = log
	if err := roomserver.Run(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("dotroom server stopped with an error", "err", err)
		os.Exit(1)
	}
}
