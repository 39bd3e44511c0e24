// Command client is a dotroom player: it asks the matchmaker for a game session (client SDK),
// connects to the game server it gets (netcode over WebTransport when the session carries a
// certificate digest, else UDP; --game-transport chooses), walks its dot around, says hello and
// prints the room as it sees it.
//
//	bevygap dev &                                  # everything local, on 127.0.0.1:3000
//	go run ./examples/dotroom/client --url http://127.0.0.1:3000
//
// The same player runs in a browser: examples/dotroom/webclient.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/netcode"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:3000", "matchmaker front door (httpd)")
	gameName := flag.String("game", "dotroom", "game (Edgegap app) name")
	version := flag.String("version", "1", "game version")
	steps := flag.Int("steps", 20, "moves to make, one per tick")
	say := flag.String("say", "hello from dotroom", "chat line to send (empty: none)")
	transport := flag.String("game-transport", "auto", "game server transport: auto (webtransport when the session has a certificate digest, else udp), udp or webtransport")
	flag.Parse()
	var gameTransport netcode.Transport // "" = auto
	if *transport != "auto" {
		t, err := netcode.ParseTransport(*transport)
		if err != nil {
			fmt.Fprintln(os.Stderr, "Error: --game-transport:", err)
			os.Exit(2)
		}
		gameTransport = t
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *url, *gameName, *version, gameTransport, *steps, *say); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, url, gameName, version string, transport netcode.Transport, steps int, say string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// 1. Matchmaking: the client SDK streams the matchmaker's progress until the session is
	// ready, then hands over the game server's address, a connect token and, for a
	// WebTransport server, its certificate digest.
	sess, err := client.Request(ctx, url, gameName, version, client.Options{
		OnProgress: func(p client.Progress) { fmt.Fprintln(out, "matchmaker:", p) },
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	// 2. Connect (transport "" = the session's: pinned WebTransport or UDP) and wait for the Welcome.
	if transport == "" {
		transport = sess.GameTransport()
	}
	player, err := roomclient.Connect(ctx, sess, netcode.ClientConfig{Transport: transport})
	if err != nil {
		return err
	}
	defer player.Close() // tells the server we left: the matchmaker deletes the session
	w, h := player.RoomSize()
	fmt.Fprintf(out, "joined session %s at %s over %s as player %d (room %d×%d)\n", sess.SessionID, sess.ServerAddr, transport, player.ID(), w, h)

	// 3. Play: one step per tick, bouncing off the walls, one step down every fourth tick.
	if say != "" {
		if err := player.Say(say); err != nil {
			return err
		}
	}
	var last room.Snapshot
	dx := 1
	for moved := 0; moved < steps; {
		msg, err := player.Next(ctx)
		if err != nil {
			return fmt.Errorf("connection: %w", err)
		}
		switch m := msg.(type) {
		case room.Chat:
			fmt.Fprintf(out, "chat from %d: %s\n", m.From, m.Text)
		case room.Snapshot:
			last = m
			if me, ok := m.Find(player.ID()); ok {
				if (dx > 0 && int(me.X) >= w-1) || (dx < 0 && me.X <= 0) {
					dx = -dx
				}
			}
			dy := 0
			if moved%4 == 3 {
				dy = 1
			}
			if err := player.Move(dx, dy); err != nil {
				return err
			}
			moved++
		}
	}
	me, _ := last.Find(player.ID())
	fmt.Fprintf(out, "tick %d: %d player(s) in the room, I am at (%d,%d)\n", last.Tick, len(last.Dots), me.X, me.Y)
	fmt.Fprint(out, draw(last, player.ID(), w, h))
	return nil
}

// draw renders the room: '@' is me, 'o' the others, '.' empty cells.
func draw(r room.Snapshot, me uint64, w, h int) string {
	grid := make([][]byte, h)
	for y := range grid {
		grid[y] = []byte(strings.Repeat(".", w))
	}
	for _, d := range r.Dots {
		if int(d.X) < w && int(d.Y) < h && d.X >= 0 && d.Y >= 0 {
			c := byte('o')
			if d.ID == me {
				c = '@'
			}
			grid[d.Y][d.X] = c
		}
	}
	var b strings.Builder
	for _, row := range grid {
		b.Write(row)
		b.WriteByte('\n')
	}
	return b.String()
}
