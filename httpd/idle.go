package httpd

import (
	"time"

	"github.com/coder/websocket"
)

// A streaming request whose matchmaker says nothing for Config.StreamIdleTimeout is ended: a
// live bevygap matchmaker sends a message at least every 5 s in every phase of a request
// (matchmaker.StreamKeepalive), so a long silence means the instance running it is gone
// (killed, cut off from NATS), and the player is told at once instead of at the end of the
// stream timeout. The request is canceled too (cancel.go), in case the matchmaker is merely
// stuck.
const (
	outcomeMMLost = "mm_lost" // the matchmaker went silent
	msgMMLost     = "matchmaker stopped answering; try again"
)

// idleTimer returns a timer for a stream's silence and its channel; nil and a nil channel
// (never ready) when the idle timeout is off.
func (s *Server) idleTimer() (*time.Timer, <-chan time.Time) {
	return optionalTimer(s.cfg.StreamIdleTimeout)
}

// optionalTimer returns a timer of d and its channel; nil and a nil channel (never ready) for
// d <= 0 (the setting is off).
func optionalTimer(d time.Duration) (*time.Timer, <-chan time.Time) {
	if d <= 0 {
		return nil, nil
	}
	t := time.NewTimer(d)
	return t, t.C
}

// heard re-arms a stream's silence timer t (nil: off) because a message came.
func (s *Server) heard(t *time.Timer) {
	if t != nil {
		t.Reset(s.cfg.StreamIdleTimeout)
	}
}

// startIdle arms the WebSocket's silence timer (not when the idle timeout is off).
func (w *wsConn) startIdle() {
	if w.s.cfg.StreamIdleTimeout <= 0 {
		return
	}
	w.mu.Lock()
	w.idle = time.AfterFunc(w.s.cfg.StreamIdleTimeout, w.onIdle)
	w.mu.Unlock()
}

// stopIdleLocked stops the WebSocket's silence timer; call with w.mu held.
func (w *wsConn) stopIdleLocked() {
	if w.idle != nil {
		w.idle.Stop()
	}
}

// onIdle fires when the matchmaker said nothing for the idle timeout. After a final message the
// final grace timer ends the connection instead.
func (w *wsConn) onIdle() {
	w.mu.Lock()
	final := w.final
	w.mu.Unlock()
	if final != "" {
		return
	}
	w.fail(outcomeMMLost, msgMMLost, websocket.StatusTryAgainLater)
}
