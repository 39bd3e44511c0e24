// Command client is the player of docs/first-game.md ("Your first game"): it asks the
// matchmaker for a session, connects to the game server it names, sends three messages, prints
// what comes back until it has its three echoes and one tick, and leaves.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/netcode"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:3000/matchmaker/ws", "the matchmaker's front door (bevygap httpd)")
	game := flag.String("game", "mygame", "game name: the matchmaker's Edgegap app")
	version := flag.String("version", "1", "game version: the matchmaker's Edgegap app version")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := run(ctx, *url, *game, *version); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, game, version string) error {
	// 1. Matchmaking: the front door streams progress until a game server is ready.
	sess, err := client.Request(ctx, url, game, version, client.Options{
		OnProgress: func(p client.Progress) { fmt.Println("matchmaker:", p) },
	})
	if err != nil {
		return fmt.Errorf("matchmaking: %w", err)
	}

	// 2. Connect to the game server with the connect token (netcode over UDP).
	conn, err := sess.Dial(ctx, netcode.ClientConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", sess.ServerAddr, err)
	}
	defer conn.Close() // tells the server we left: the matchmaker then deletes the session
	fmt.Printf("connected to %s as client %d\n", conn.ServerAddr(), conn.ClientID())

	// 3. Play: send three messages, read until the three echoes and a tick came back.
	for i := 1; i <= 3; i++ {
		if err := conn.Send([]byte(fmt.Sprintf("hello %d", i))); err != nil {
			return err
		}
	}
	echoes, ticks := 0, 0
	for echoes < 3 || ticks < 1 {
		msg, err := conn.Recv(ctx)
		if err != nil {
			return fmt.Errorf("receiving: %w", err)
		}
		fmt.Printf("server: %s\n", msg)
		if strings.HasPrefix(string(msg), "tick ") {
			ticks++
		} else {
			echoes++
		}
	}
	return conn.Close()
}
