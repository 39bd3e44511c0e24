// Package roomclient is the player side of dotroom (see package room for the game): Join asks
// the matchmaker for a session with the client SDK and connects to the game server with package
// netcode (over WebTransport pinned to the session's certificate digest when it has one, over
// UDP otherwise: client.Session.Dial); Player sends moves and chat and reads what the server
// sends. It builds for GOOS=js too: in a browser the WebTransport connection is the browser's.
package roomclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/netcode"
)

// Echo is a payload from the server that is not a dotroom message: the echo of something the
// player sent with Player.Send. It is a room.Message, returned by Player.Next.
type Echo struct{ Data []byte }

// AppendTo implements Message: the data itself.
func (m Echo) AppendTo(b []byte) []byte { return append(b, m.Data...) }

// Player is one player connected to a dotroom server. Its methods are safe for concurrent use.
type Player struct {
	conn    *netcode.Client
	welcome room.Welcome
}

// Join asks the matchmaker's front door at url (e.g. "http://127.0.0.1:3000") for a session of
// game and version with the client SDK, then connects to the game server it names. The session
// is returned too (its id, server address, token expiry) — never log its token.
func Join(ctx context.Context, url, game, version string, opts client.Options) (*Player, *client.Session, error) {
	sess, err := client.Request(ctx, url, game, version, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("dotroom: matchmaking: %w", err)
	}
	p, err := Connect(ctx, sess, netcode.ClientConfig{Logger: opts.Logger})
	if err != nil {
		return nil, sess, err
	}
	return p, sess, nil
}

// Connect connects to the game server of sess with its connect token (client.Session.Dial: the
// transport cfg.Transport names, or with "" the session's — WebTransport pinned to its
// certificate digest when it has one, UDP otherwise) and waits for the server's Welcome. The
// address the matchmaker named is tried first, then the token's other addresses (like
// bevygap_client_plugin).
func Connect(ctx context.Context, sess *client.Session, cfg netcode.ClientConfig) (*Player, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := sess.Dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("dotroom: connecting to %s: %w", sess.ServerAddr, err)
	}
	p := &Player{conn: conn}
	for {
		msg, err := p.Next(ctx)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("dotroom: waiting for the welcome: %w", err)
		}
		if w, ok := msg.(room.Welcome); ok {
			p.welcome = w
			return p, nil
		}
	}
}

// ID returns the player's client id (the id in its connect token).
func (p *Player) ID() uint64 { return p.welcome.You }

// RoomSize returns the room's width and height from the Welcome.
func (p *Player) RoomSize() (width, height int) {
	return int(p.welcome.Width), int(p.welcome.Height)
}

// Move asks the server to move the player's dot; the result shows in the next Snapshot.
func (p *Player) Move(dx, dy int) error {
	step := func(v int) int8 { return int8(max(-room.MaxStep, min(v, room.MaxStep))) }
	return p.conn.Send(room.Encode(room.Move{DX: step(dx), DY: step(dy)}))
}

// Say sends a chat line (1..room.MaxTextBytes bytes of UTF-8) to everyone in the room.
func (p *Player) Say(text string) error {
	if text == "" {
		return fmt.Errorf("%w: empty chat line", room.ErrMalformed)
	}
	return p.conn.Send(room.Encode(room.Say{Text: text}))
}

// Send sends a raw payload (1..netcode.MaxPayloadBytes bytes over UDP,
// ..netcode.MaxWebTransportPayloadBytes over WebTransport). A payload that is not a dotroom
// message comes back unchanged as an Echo: use it to measure round trips.
func (p *Player) Send(data []byte) error { return p.conn.Send(data) }

// Next returns the next message from the server: Welcome, Snapshot, Chat or Echo. Malformed
// payloads are skipped. It returns an error when ctx ends or the connection is over
// (netcode.ErrDisconnected, netcode.ErrConnectionTimedOut, netcode.ErrClientClosed).
func (p *Player) Next(ctx context.Context) (room.Message, error) {
	for {
		data, err := p.conn.Recv(ctx)
		if err != nil {
			return nil, err
		}
		msg, err := room.Decode(data)
		switch {
		case errors.Is(err, room.ErrNotGame):
			return Echo{Data: data}, nil
		case err != nil:
			continue
		}
		return msg, nil
	}
}

// Done is closed when the connection has ended.
func (p *Player) Done() <-chan struct{} { return p.conn.Done() }

// Close disconnects from the server (with redundant disconnect packets); the server then frees
// the slot and the matchmaker deletes the session.
func (p *Player) Close() error { return p.conn.Close() }
