//go:build js

package netcode

// Under js there is no native WebTransport carrier: the WebTransport tests do not run.

func wtSessions(packetConn) int       { return 0 }
func wtVanish(clientConn)             {}
func wtKill(packetConn) bool          { return false }
func wtQueued(clientConn) (int, bool) { return 0, false }
