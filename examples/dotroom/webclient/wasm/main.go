//go:build js && wasm

// Command wasm is the dotroom player in a browser: this program, compiled to WebAssembly
// (GOOS=js GOARCH=wasm), runs in the page that `bevygap dev --game-transport webtransport`
// serves at /play/ (package webclient builds and serves it). It is the player of
// examples/dotroom/client — the client SDK asks the front door for a session over the
// WebSocket, package roomclient connects to the game server with package netcode — except that
// its netcode packets travel over the browser's WebTransport API, pinned to the certificate
// digest the matchmaker sent (serverCertificateHashes).
//
// The page (../index.html) loads wasm_exec.js and dotroom.wasm. Query parameters: game
// (default dotroom), version (default 1). Arrow keys or WASD move the dot.
//
// The page's state, for people and tests: <body data-state="…"> is "starting", "matchmaking",
// "connecting", "connected", "disconnected" or "error"; <body data-snapshots="N"> counts the
// room snapshots received; <body data-me="x,y"> is the player's dot; #status says what happens
// in words.
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall/js"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/netcode"
)

func main() {
	p := newPage()
	err := play(context.Background(), p)
	if err != nil {
		p.setState("error", err.Error())
	}
	select {} // keep the page's Go runtime alive (its callbacks)
}

// play matchmakes, connects and plays until the connection ends.
func play(ctx context.Context, p *page) error {
	loc := js.Global().Get("location")
	params := js.Global().Get("URLSearchParams").New(loc.Get("search"))
	game, version := param(params, "game", "dotroom"), param(params, "version", "1")

	p.setState("matchmaking", "Asking the matchmaker for a "+game+" "+version+" session ...")
	sess, err := client.Request(ctx, loc.Get("origin").String(), game, version, client.Options{
		OnProgress: func(pr client.Progress) { p.setStatus("Matchmaker: " + pr.String()) },
	})
	if err != nil {
		return fmt.Errorf("matchmaking: %w", err)
	}
	if sess.GameTransport() != netcode.TransportWebTransport {
		return errors.New("the game server has no WebTransport certificate digest: a browser can only join a WebTransport game server (bevygap dev --game-transport webtransport)")
	}
	p.setState("connecting", "Connecting to "+sess.ServerAddr.String()+" over WebTransport, certificate "+sess.CertDigest+" ...")
	player, err := roomclient.Connect(ctx, sess, netcode.ClientConfig{})
	if err != nil {
		return err
	}
	defer player.Close()
	w, h := player.RoomSize()
	p.setState("connected", fmt.Sprintf("Connected to %s as player %d (session %s). Arrow keys or WASD move your dot.", sess.ServerAddr, player.ID(), sess.SessionID))
	p.onMove(func(dx, dy int) { _ = player.Move(dx, dy) })

	snapshots := 0
	for {
		msg, err := player.Next(ctx)
		if err != nil {
			p.setState("disconnected", "Disconnected: "+err.Error())
			return nil
		}
		switch m := msg.(type) {
		case room.Snapshot:
			snapshots++
			p.body.Get("dataset").Set("snapshots", strconv.Itoa(snapshots))
			p.draw(m, player.ID(), w, h)
		case room.Chat:
			p.setStatus(fmt.Sprintf("Player %d says: %s", m.From, m.Text))
		}
	}
}

// param returns the query parameter name, or def.
func param(params js.Value, name, def string) string {
	if v := params.Call("get", name); v.Type() == js.TypeString && v.String() != "" {
		return v.String()
	}
	return def
}

// page is the DOM the program draws into (index.html).
type page struct {
	doc, body, status, info, canvas js.Value
	keydown                         js.Func
}

func newPage() *page {
	doc := js.Global().Get("document")
	return &page{
		doc:    doc,
		body:   doc.Get("body"),
		status: doc.Call("getElementById", "status"),
		info:   doc.Call("getElementById", "info"),
		canvas: doc.Call("getElementById", "room"),
	}
}

func (p *page) setState(state, status string) {
	p.body.Get("dataset").Set("state", state)
	p.setStatus(status)
}

func (p *page) setStatus(s string) { p.status.Set("textContent", s) }

// onMove calls move for each arrow key or WASD key press. move runs on its own goroutine: a
// JS callback must not block.
func (p *page) onMove(move func(dx, dy int)) {
	moves := make(chan [2]int, 16)
	go func() {
		for d := range moves {
			move(d[0], d[1])
		}
	}()
	p.keydown = js.FuncOf(func(_ js.Value, args []js.Value) any {
		var d [2]int
		switch args[0].Get("key").String() {
		case "ArrowLeft", "a", "A":
			d = [2]int{-1, 0}
		case "ArrowRight", "d", "D":
			d = [2]int{1, 0}
		case "ArrowUp", "w", "W":
			d = [2]int{0, -1}
		case "ArrowDown", "s", "S":
			d = [2]int{0, 1}
		default:
			return nil
		}
		args[0].Call("preventDefault")
		select {
		case moves <- d:
		default:
		}
		return nil
	})
	p.doc.Call("addEventListener", "keydown", p.keydown)
}

// cell is the size of a room cell in canvas pixels.
const cell = 12

// draw renders the room: my dot orange, the others blue.
func (p *page) draw(s room.Snapshot, me uint64, w, h int) {
	p.canvas.Set("width", w*cell)
	p.canvas.Set("height", h*cell)
	ctx := p.canvas.Call("getContext", "2d")
	ctx.Set("fillStyle", "#10141c")
	ctx.Call("fillRect", 0, 0, w*cell, h*cell)
	for _, d := range s.Dots {
		color := "#4aa3ff"
		if d.ID == me {
			color = "#ff9f1a"
			p.body.Get("dataset").Set("me", fmt.Sprintf("%d,%d", d.X, d.Y))
		}
		ctx.Set("fillStyle", color)
		ctx.Call("beginPath")
		ctx.Call("arc", int(d.X)*cell+cell/2, int(d.Y)*cell+cell/2, cell/2-1, 0, 6.2832)
		ctx.Call("fill")
	}
	p.info.Set("textContent", fmt.Sprintf("tick %d · %d player(s) in the room", s.Tick, len(s.Dots)))
}
