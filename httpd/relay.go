package httpd

import (
	"bytes"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/jsonvalid"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// defaultFinalGrace is how long a stream still waits for the matchmaker's empty end-of-stream
// message after a final (SessionReady or Error) feedback.
const defaultFinalGrace = 2 * time.Second

// relayResult says how a streaming request ended.
type relayResult struct {
	outcome string // one of the outcome* constants; "" when interrupted by gone or stop
	errMsg  string // for the client when the front door (not the matchmaker) failed
	errCode uint16 // HTTP-like code for errMsg
	reply   string // the request's reply subject, once it was published (cancel.go)
}

// Messages the front door itself sends to clients.
const (
	msgNoMatchmaker = "No matchmaker is serving this game and version"
	msgNATSDown     = "Matchmaker unavailable"
	msgSendFailed   = "Failed to send mm request"
	msgTimeout      = "Timeout waiting for matchmaker"
	msgLost         = "Matchmaker replies were lost"
	msgShutdown     = "server shutting down"
	msgRateLimited  = "rate limited"
)

// relay publishes req on subject and hands every feedback message to send, unchanged, until the
// matchmaker's empty end message or timeout, or a silence of Config.StreamIdleTimeout (idle.go).
// It returns early when gone or stop is closed (outcome "").
func (s *Server) relay(subject string, req []byte, timeout time.Duration, start time.Time, gone, stop <-chan struct{}, send func([]byte) error) (res relayResult) {
	if !s.natsUp(gone) {
		return relayResult{outcome: outcomeFailed, errMsg: msgNATSDown, errCode: 503}
	}
	ch := make(chan *nats.Msg, replyBuffer)
	lost := make(chan struct{})
	var lostOnce sync.Once
	deliver := func(msg *nats.Msg) {
		select {
		case ch <- msg:
		default:
			lostOnce.Do(func() { close(lost) })
		}
	}
	w := s.replies.register(deliver)
	defer func() { s.replies.release(w) }()
	if err := s.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: w.subject, Data: req}); err != nil {
		s.log.Warn("httpd: publish session request", logkey.Subject, subject, logkey.Err, err)
		return relayResult{outcome: outcomeFailed, errMsg: msgSendFailed, errCode: 503}
	}
	defer func() { res.reply = w.subject }()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	idle, idleC := s.idleTimer() // idle.go
	if idle != nil {
		defer idle.Stop()
	}
	resend, resendC := s.resendTimer() // resend.go
	if resend != nil {
		defer resend.Stop()
	}
	final := ""
	for {
		select {
		case <-resendC:
			// Nothing came back: the request was lost. Cancel it (in case a matchmaker runs it
			// after all) and send it again on a fresh reply subject; once only.
			resendC = nil
			first := w
			w = s.replies.register(deliver)
			if s.sendAgain(routeStream, subject, req, first, w.subject) != nil {
				return relayResult{outcome: outcomeFailed, errMsg: msgSendFailed, errCode: 503}
			}
			s.heard(idle)
		case msg := <-ch:
			if msg.Subject != w.subject {
				continue // a late reply to the request sent before (canceled)
			}
			if resendC != nil {
				resend.Stop()
				resendC = nil // answered
			}
			s.heard(idle)
			if isNoResponders(msg) {
				return relayResult{outcome: outcomeNoMatchmaker, errMsg: msgNoMatchmaker, errCode: 503}
			}
			if len(msg.Data) == 0 {
				if final == "" {
					return relayResult{outcome: outcomeEnded}
				}
				return relayResult{outcome: final}
			}
			if final != "" {
				continue // after the final feedback only the end counts (a matchmaker resends the final, matchmaker.resendFinal)
			}
			if err := send(msg.Data); err != nil {
				return relayResult{outcome: goneOutcome(final)}
			}
			if final = finalOutcome(msg.Data); final == "" {
				continue
			}
			if final == outcomeReady {
				s.metrics.timeToReady.Observe(time.Since(start).Seconds())
			}
			deadline.Reset(s.finalGrace)
		case <-idleC:
			if final == "" {
				return relayResult{outcome: outcomeMMLost, errMsg: msgMMLost, errCode: 503}
			}
		case <-lost:
			return relayResult{outcome: outcomeFailed, errMsg: msgLost, errCode: 500}
		case <-deadline.C:
			if final != "" {
				return relayResult{outcome: final}
			}
			return relayResult{outcome: outcomeTimeout, errMsg: msgTimeout, errCode: 504}
		case <-gone:
			return relayResult{outcome: goneOutcome(final)}
		case <-stop:
			return relayResult{}
		}
	}
}

// finalOutcome classifies a feedback message: outcomeReady for SessionReady, outcomeMMError for
// Error, "" for anything else (not final) and for a message that is not JSON. Feedback is
// serde's externally tagged enum ({"SessionReady":{…}}, {"Error":[…]}, "Acknowledged", …), so
// the variant is the object's key: it is read without decoding the payload (a SessionReady
// carries a 2.7 KB token, and every feedback of every player passes here); validity is
// checked by jsonvalid.Valid, encoding/json.Valid's rules at a fraction of its cost.
func finalOutcome(data []byte) string {
	if !jsonvalid.Valid(data) {
		return ""
	}
	rest := bytes.TrimLeft(data, jsonSpace)
	if len(rest) == 0 || rest[0] != '{' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], jsonSpace)
	switch {
	case variant(rest, `"SessionReady"`, '{'):
		return outcomeReady
	case variant(rest, `"Error"`, '['):
		return outcomeMMError
	}
	return ""
}

// variant reports whether obj (valid JSON after an object's '{') starts with the member key
// whose value begins with open.
func variant(obj []byte, key string, open byte) bool {
	rest, ok := bytes.CutPrefix(obj, []byte(key))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, jsonSpace)
	if len(rest) == 0 || rest[0] != ':' {
		return false
	}
	rest = bytes.TrimLeft(rest[1:], jsonSpace)
	return len(rest) > 0 && rest[0] == open
}

// jsonSpace is JSON's white space.
const jsonSpace = " \t\r\n"

// goneOutcome is the outcome of a request whose client left: the final outcome when the final
// feedback had been relayed already (the client had what it needed), else outcomeClientGone.
func goneOutcome(final string) string {
	if final != "" {
		return final
	}
	return outcomeClientGone
}
