package httpd

import (
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/protocol"
)

// A matchmaker answers a streaming request with "Acknowledged" as soon as it receives it. A
// request that gets no message at all for Config.ResendUnanswered was lost on its way — core
// NATS delivers at most once, and a request published in the instant the NATS node it passes
// through dies is gone — or the matchmaker that took it died at once. Rather than leave the
// player waiting for the idle timeout and then failing it, the front door sends the request
// once more, on a fresh reply subject, after publishing the cancel of the first one (should a
// matchmaker run it after all, it drops it and deletes any session it made; its late replies
// go to the old subject, which nobody reads).

// outcomeResent is the cancel reason of a request sent again (cancel.go: it abandons).
const outcomeResent = "resent"

// resendTimer returns the timer of a stream's first answer and its channel; nil and a nil
// channel when resending is off.
func (s *Server) resendTimer() (*time.Timer, <-chan time.Time) {
	if s.cfg.ResendUnanswered <= 0 {
		return nil, nil
	}
	t := time.NewTimer(s.cfg.ResendUnanswered)
	return t, t.C
}

// gameVersionOf returns the game and version of a matchmaker.request.<game>.<version> subject.
func gameVersionOf(subject string) (game, version string) {
	game, version, _ = strings.Cut(strings.TrimPrefix(subject, protocol.SubjectMatchmakerRequestPrefix+"."), ".")
	return game, version
}

// noteResent logs and counts a request sent again.
func (s *Server) noteResent(subject, route string) {
	s.metrics.resent.WithLabelValues(route).Inc()
	s.log.Info("httpd: no answer to a session request; sent it once more", "subject", subject, "route", route,
		"after", s.cfg.ResendUnanswered)
}
