package bench

import (
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// The game of P5's front-door rows: no matchmaker serves it; the bench's instant responder
// answers its subject, so the WebSocket requests for it measure the front door alone.
const (
	frontDoorGame    = "benchfrontdoor"
	frontDoorVersion = "1"
)

// instantResponder answers matchmaker.request.<game>.<version> the way a matchmaker answers a
// granted request — Acknowledged, SessionRequestAccepted, SessionReady with a real connect
// token (lightyear-0.17 format, the same size as a grant's), then the empty message that ends
// the stream — at once, from messages encoded in advance: it costs the NATS publishes only.
type instantResponder struct {
	sub *nats.Subscription
}

func startInstantResponder(nc *nats.Conn, game, version string) (*instantResponder, error) {
	var key netcode.Key
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	tok, err := (&netcode.Minter{Key: key, Format: netcode.FormatLightyear017}).Mint(netcode.TokenParams{
		ProtocolID: 1982, ClientID: 1, ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6420")},
	})
	if err != nil {
		return nil, err
	}
	var msgs [][]byte
	for _, f := range []protocol.Feedback{
		protocol.Acknowledged(),
		protocol.Accepted("benchfrontdoor0000000000000000"),
		protocol.Ready(protocol.SessionReady{Token: tok.Base64(), IP: "127.0.0.1", Port: 6420}),
	} {
		b, err := protocol.Marshal(f)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, b)
	}
	msgs = append(msgs, nil) // end of stream
	subject, err := protocol.MatchmakerRequestSubject(game, version)
	if err != nil {
		return nil, err
	}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		for _, b := range msgs {
			_ = nc.Publish(m.Reply, b)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("instant responder: %w", err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return &instantResponder{sub: sub}, nil
}

func (r *instantResponder) Close() { _ = r.sub.Unsubscribe() }
