//go:build js

package netcode

import (
	"context"
	"errors"
)

// listenWebTransport: a browser cannot accept WebTransport sessions.
func listenWebTransport(context.Context, wtListenConfig) (packetConn, error) {
	return nil, errors.New("netcode: a WebTransport server cannot run in the browser")
}
