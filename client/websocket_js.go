//go:build js

package client

import "github.com/coder/websocket"

// dialOptions returns the WebSocket handshake options. In a browser (GOOS=js) the browser makes
// the handshake: Options.HTTPClient and Options.Header do not apply (it sends the page's Origin
// and cookies itself).
func (r *requester) dialOptions() *websocket.DialOptions {
	return &websocket.DialOptions{}
}
