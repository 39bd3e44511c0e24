package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/protocol"
)

// A party of three on one game server: the leader creates the party and hands its code to the
// others (who call Join and then Request with their own Membership.Ref()), waits for them, then
// asks to play; the party plays once every member has a request open. (Not run: it needs a
// front door with a matchmaker, e.g. "bevygap dev".)
func ExamplePartyClient() {
	const url = "ws://127.0.0.1:3000/matchmaker/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pc, err := client.NewPartyClient(url, "dotroom", "1", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	me, err := pc.Create(ctx)
	var pe *protocol.PlayError
	if errors.As(err, &pe) { // the party service refused: pe.Code is the HTTP status
		log.Fatalf("party refused (%d): %s", pe.Code, pe.Message)
	} else if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = pc.Leave(context.WithoutCancel(ctx), me) }()
	fmt.Println("join with code", me.Code)
	if _, err := pc.Wait(ctx, me, func(p *protocol.Party) bool { return len(p.Members) >= 3 }); err != nil {
		log.Fatal(err)
	}
	sess, err := client.Request(ctx, url, "dotroom", "1", client.Options{Party: me.Ref(), Queue: "room"})
	var mmErr *client.MatchmakerError
	switch {
	case errors.As(err, &mmErr) && mmErr.Code == 408: // a member did not ask in time
		log.Fatalf("the party did not start: %s", mmErr.Message)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("playing together at", sess.ServerAddr)
}
