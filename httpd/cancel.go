package httpd

import (
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// abandons reports whether a streaming request that ended with outcome was given up by the
// front door before the matchmaker's final feedback — the client went away, the stream timed
// out, a write failed, the server is shutting down — so that the matchmaker would otherwise
// go on creating a session nobody will use. Not after a final feedback (the matchmaker is done),
// an end-of-stream message or "no responders" (nobody runs the request).
func abandons(outcome string) bool {
	switch outcome {
	case outcomeReady, outcomeMMError, outcomeEnded, outcomeNoMatchmaker:
		return false
	}
	return true
}

// cancelAbandoned tells the matchmakers of game and version that the streaming request answered
// on reply lost its player, if outcome says so (abandons): it publishes reply on
// matchmaker.cancel.<game>.<version>. The matchmaker running the request drops it: a queued
// request creates no session, a created one is deleted at once (docs/matchmaker.md).
func (s *Server) cancelAbandoned(game, version, reply, outcome string) {
	if reply == "" || !abandons(outcome) {
		return
	}
	subject, err := protocol.MatchmakerCancelSubject(game, version)
	if err != nil {
		return // cannot happen: the request subject was built from the same names
	}
	if err := s.nc.Publish(subject, []byte(reply)); err != nil {
		s.log.Warn("httpd: publish cancel of an abandoned request", logkey.Subject, subject, logkey.Err, err)
		return
	}
	s.log.Debug("httpd: abandoned request canceled", logkey.Subject, subject, "outcome", outcome)
}

// sentRequest is a streaming request sent to the matchmaker: what its cancel needs.
type sentRequest struct {
	game, version, reply string
}

// cancelIfGivenUp publishes the cancel of the WebSocket's request (if one was sent) when the
// connection ends with outcome before the final feedback.
func (w *wsConn) cancelIfGivenUp(outcome string) {
	w.mu.Lock()
	r := w.sent
	w.mu.Unlock()
	w.s.cancelAbandoned(r.game, r.version, r.reply, outcome)
}
