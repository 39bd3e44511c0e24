//go:build !js

package client

import "github.com/coder/websocket"

// dialOptions returns the WebSocket handshake options: Options.HTTPClient and Options.Header.
func (r *requester) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{
		HTTPClient: r.opts.HTTPClient,
		HTTPHeader: r.opts.Header.Clone(),
	}
}
