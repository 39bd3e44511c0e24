package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// exampleFrontDoor starts a stand-in for the matchmaker front door that answers one session
// request the way bevygap's httpd does.
func exampleFrontDoor() *httptest.Server {
	key, _ := netcode.GenerateKey()
	tok, _ := (&netcode.Minter{Key: key}).Mint(netcode.TokenParams{
		ProtocolID: 1982, ClientID: 1, ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6420")},
	})
	ready, _ := protocol.Marshal(protocol.Ready(protocol.SessionReady{Token: tok.Base64(), IP: "127.0.0.1", Port: 6420}))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, _, err := c.Read(ctx); err != nil { // {"game":…,"version":…,"client_ip":null}
			return
		}
		for _, frame := range []string{`"Acknowledged"`, `{"SessionRequestAccepted":"b2a6cf5e"}`, `{"ProgressReport":"Deploying"}`, string(ready)} {
			_ = c.Write(ctx, websocket.MessageText, []byte(frame))
		}
		_ = c.Close(websocket.StatusNormalClosure, "Goodbye")
	}))
}

func ExampleRequest() {
	frontDoor := exampleFrontDoor()
	defer frontDoor.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A real client uses e.g. "wss://matchmaker.example.com/matchmaker/ws".
	sess, err := client.Request(ctx, frontDoor.URL+"/matchmaker/ws", "bevygap-spaceships", "1", client.Options{
		OnProgress: func(p client.Progress) {
			if p.State != client.StateRequest { // its message names the random test URL
				fmt.Println(p)
			}
		},
	})
	var mmErr *client.MatchmakerError
	switch {
	case errors.As(err, &mmErr):
		fmt.Println("the matchmaker said no:", mmErr.Code, mmErr.Message)
		return
	case err != nil:
		fmt.Println("request failed:", err)
		return
	}
	fmt.Println(sess, len(sess.Token), "byte token for", sess.ConnectToken.ServerAddrs)
	// Output:
	// AwaitingResponse(Requesting ...)
	// AwaitingResponse(Request acknowledged)
	// AwaitingResponse(Session created: b2a6cf5e)
	// AwaitingResponse(Progress: Deploying)
	// ReadyToConnect
	// Finished
	// session "b2a6cf5e" at 127.0.0.1:6420 2048 byte token for [127.0.0.1:6420]
}
