package httpd

import (
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
	"github.com/nats-io/nats.go"
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
	return optionalTimer(s.cfg.ResendUnanswered)
}

// sendAgain cancels the request whose replies went to first (releasing that waiter) and
// publishes it, subject and payload, once more with reply subject reply (the caller registered
// its waiter), logging and counting the resend. It returns the publish error.
func (s *Server) sendAgain(route, subject string, payload []byte, first *replyWaiter, reply string) error {
	game, version, _ := strings.Cut(strings.TrimPrefix(subject, protocol.SubjectMatchmakerRequestPrefix+"."), ".")
	s.cancelAbandoned(game, version, first.subject, outcomeResent)
	s.replies.release(first)
	// Counted before the publish: its answers may end the stream at once.
	s.metrics.resent.WithLabelValues(route).Inc()
	s.log.Info("httpd: no answer to a session request; sent it once more", "subject", subject, "route", route,
		"after", s.cfg.ResendUnanswered)
	if err := s.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: payload}); err != nil {
		s.log.Warn("httpd: publish session request again", logkey.Subject, subject, logkey.Err, err)
		return err
	}
	return nil
}
