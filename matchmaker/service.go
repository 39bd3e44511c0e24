package matchmaker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// genSessionStats are the numbers `nats micro stats gensession` shows in its "data" field:
// micro's own counters see only the dispatch of each request (handled concurrently), so the
// real errors and in-flight count are reported here.
type genSessionStats struct {
	InFlight int64 `json:"in_flight"`
	Granted  int64 `json:"granted"`
	Errors   int64 `json:"errors"`
}

// addGenSessionService registers the NATS micro service gensession, group session (queue group
// session_queue), endpoint gensession: subject session.gensession.
func (m *Matchmaker) addGenSessionService() (micro.Service, error) {
	var inFlight, granted, failed atomic.Int64
	svc, err := micro.AddService(m.nc, micro.Config{
		Name:        protocol.GenSessionServiceName,
		Version:     ServiceVersion,
		Description: "Generate sessions for clients who want to play",
		StatsHandler: func(*micro.Endpoint) any {
			return genSessionStats{InFlight: inFlight.Load(), Granted: granted.Load(), Errors: failed.Load()}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("matchmaker: add gensession service: %w", err)
	}
	g := svc.AddGroup(protocol.GenSessionGroup, micro.WithGroupQueueGroup(protocol.GenSessionQueue))
	handler := micro.HandlerFunc(func(req micro.Request) {
		// micro calls handlers one at a time per endpoint: the request is queued for
		// admission here and then runs in a goroutine of its own, so that thousands can wait
		// at once.
		if req.Reply() == "" {
			// Nobody could receive the token: creating a session would only bill an idle server.
			m.log.Warn("gensession request without reply subject, dropped", logkey.Subject, req.Subject())
			return
		}
		if !m.beginRequest() {
			_ = req.Error("503", "matchmaker shutting down", nil)
			return
		}
		// A bad request is answered here, inside the handler, so that micro counts it in the
		// endpoint's error stats ("nats micro stats gensession"); errors found later, after the
		// handler returned, are counted in the stats data and in Prometheus.
		ip, rerr := parseRequest(req.Data())
		if rerr != nil {
			defer m.inflight.Done()
			failed.Add(1)
			m.finishMetrics("gensession", rerr.Code, time.Now())
			if err := req.Error(strconv.Itoa(int(rerr.Code)), rerr.Message, nil); err != nil {
				m.log.Warn("could not send gensession error", logkey.Err, err)
			}
			return
		}
		inFlight.Add(1)
		m.handleGenSession(req, ip, func(ok bool) {
			defer m.inflight.Done()
			defer inFlight.Add(-1)
			if ok {
				granted.Add(1)
			} else {
				failed.Add(1)
			}
		})
	})
	if err := g.AddEndpoint(protocol.GenSessionEndpoint, handler); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("matchmaker: add gensession endpoint: %w", err)
	}
	return svc, nil
}

// decodeClientIP reads client_ip from a JSON object with any other fields.
func decodeClientIP(data []byte) (string, *requestError) {
	if s, ok := plainClientIP(data); ok {
		return s, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return "", reqErr(http.StatusBadRequest, "error decoding session request: body is not a JSON object", err)
	}
	raw, ok := obj["client_ip"]
	if !ok {
		return "", reqErr(http.StatusBadRequest, "error decoding session request: Missing client_ip field", nil)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", reqErr(http.StatusBadRequest, "error decoding session request: client_ip is not a string", err)
	}
	return s, nil
}

// plainClientIP is decodeClientIP's fast path, for the bodies clients send: an object whose
// members are all strings of printable ASCII without escapes (names too), client_ip among them.
// It returns the last client_ip (encoding/json keeps the last of a repeated name), or false
// for any other input, which decodeClientIP then decodes with encoding/json.
func plainClientIP(data []byte) (string, bool) {
	i := 0
	ws := func() {
		for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
			i++
		}
	}
	str := func() ([]byte, bool) {
		ws()
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		i++
		start := i
		for ; i < len(data); i++ {
			switch c := data[i]; {
			case c == '"':
				i++
				return data[start : i-1], true
			case c < 0x20 || c >= 0x80 || c == '\\':
				return nil, false
			}
		}
		return nil, false
	}
	ws()
	if i >= len(data) || data[i] != '{' {
		return "", false
	}
	i++
	var ip []byte
	found := false
	for {
		name, ok := str()
		if !ok {
			return "", false
		}
		if ws(); i >= len(data) || data[i] != ':' {
			return "", false
		}
		i++
		value, ok := str()
		if !ok {
			return "", false
		}
		if string(name) == "client_ip" {
			ip, found = value, true
		}
		if ws(); i < len(data) && data[i] == ',' {
			i++
			continue
		}
		if i < len(data) && data[i] == '}' {
			i++
			break
		}
		return "", false
	}
	if ws(); i != len(data) || !found {
		return "", false
	}
	return string(ip), true
}

// handleGenSession answers one session.gensession request for a client at ip, then reports
// success to done.
func (m *Matchmaker) handleGenSession(req micro.Request, ip netip.Addr, done func(ok bool)) {
	start := time.Now()
	m.met.inFlight.Inc()
	m.serveIP(nil, ip, nil, func(g *grant, rerr *requestError) {
		defer m.met.inFlight.Dec()
		done(m.answerGenSession(req, start, g, rerr))
	})
}

// answerGenSession sends the outcome of a session.gensession request; it reports success.
func (m *Matchmaker) answerGenSession(req micro.Request, start time.Time, g *grant, rerr *requestError) bool {
	if rerr != nil {
		m.finishMetrics("gensession", rerr.Code, start)
		if err := req.Error(strconv.Itoa(int(rerr.Code)), rerr.Message, nil); err != nil {
			m.log.Warn("could not send gensession error", logkey.Err, err)
		}
		return false
	}
	// Encoded by hand (the bytes of protocol.Marshal, in one buffer of the right size), the
	// 2.7 KB token's base64 written straight into it.
	r := protocol.GenSessionReply{
		GameserverIP:   g.ready.IP,
		GameserverPort: g.ready.Port,
		Link:           g.ready.IP + ":" + strconv.Itoa(int(g.ready.Port)),
		CertDigest:     g.ready.CertDigest,
	}
	reply, err := r.AppendJSONToken(nil, base64.StdEncoding.EncodedLen(netcode.ConnectTokenBytes), g.token.AppendBase64)
	if err != nil {
		// Cannot happen for a minted token; the reply then has the empty token Base64 gives.
		reply = r.AppendJSON(nil)
	}
	if err := req.Respond(reply); err != nil {
		// The requester will not get its token; the session stays unclaimed and is reaped.
		m.log.Warn("could not send gensession reply", logkey.SessionID, g.sessionID, logkey.Err, err)
	}
	m.finishMetrics("gensession", http.StatusOK, start)
	return true
}

func (m *Matchmaker) finishMetrics(kind string, code uint16, start time.Time) {
	m.met.requests.WithLabelValues(kind, strconv.Itoa(int(code))).Inc()
	result := "granted"
	switch code {
	case http.StatusOK:
	case statusClientClosed: // the player went away (cancel.go): not a failure
		result = "abandoned"
	default:
		result = "error"
	}
	m.met.requestDuration.WithLabelValues(kind, result).Observe(time.Since(start).Seconds())
	if code == http.StatusOK {
		m.status.Granted(time.Since(start))
	}
}

// serve decodes a request body and runs the session flow; done gets the outcome (at once for
// a bad body). pr is the cancelable request (nil: not cancelable).
func (m *Matchmaker) serve(pr *plainRequest, data []byte, progress progressFunc, done func(*grant, *requestError)) {
	ip, rerr := parseRequest(data)
	if rerr != nil {
		done(nil, rerr)
		return
	}
	m.serveIP(pr, ip, progress, done)
}

// parseRequest reads and checks the client IP of a session request body.
func parseRequest(data []byte) (netip.Addr, *requestError) {
	s, rerr := decodeClientIP(data)
	if rerr != nil {
		return netip.Addr{}, rerr
	}
	return parseClientIP(s)
}

// serveIP requests a session for a client at ip, logs the outcome and passes it to done. pr
// (nil for session.gensession) is the request a cancel can reach (cancel.go).
func (m *Matchmaker) serveIP(pr *plainRequest, ip netip.Addr, progress progressFunc, done func(*grant, *requestError)) {
	ctx := m.reqCtx
	if pr != nil {
		ctx = pr.ctx
	}
	m.requestSession(ctx, pr, ip, progress, func(g *grant, rerr *requestError) {
		if rerr != nil && rerr.Code == statusClientClosed {
			// Not a failure: the player went away (logged and counted by cancelPlain).
			done(nil, rerr)
			return
		}
		if rerr != nil {
			level := m.log.Warn
			if rerr.Code >= 500 {
				level = m.log.Error
			}
			level("session request failed", logkey.ClientIP, ip.String(), "code", rerr.Code, "reason", rerr.Message, logkey.Err, rerr.Err)
			m.status.Failed(time.Now(), int(rerr.Code), rerr.Message)
			done(nil, rerr)
			return
		}
		if m.log.Enabled(context.Background(), slog.LevelInfo) { // its arguments cost allocations even when not logged
			m.log.Info("session granted", logkey.SessionID, g.sessionID, logkey.ClientID, g.clientID,
				logkey.ClientIP, ip.String(), "server", g.ready.IP+":"+strconv.Itoa(int(g.ready.Port)))
		}
		done(g, nil)
	})
}

// streamReply publishes feedback messages on a request's reply inbox.
type streamReply struct {
	nc    *nats.Conn
	inbox string
	m     *Matchmaker
}

func (s streamReply) send(f protocol.Feedback) {
	b, err := protocol.Marshal(f)
	if err != nil {
		s.m.log.Error("cannot encode feedback", logkey.Err, err)
		return
	}
	if err := s.nc.Publish(s.inbox, b); err != nil {
		s.m.log.Warn("could not publish feedback", logkey.Err, err)
	}
}

// finish sends the empty message that ends the stream.
func (s streamReply) finish() {
	if err := s.nc.Publish(s.inbox, nil); err != nil {
		s.m.log.Warn("could not publish end of stream", logkey.Err, err)
	}
}

// onStreamRequest handles matchmaker.request.<game>.<version>.
func (m *Matchmaker) onStreamRequest(msg *nats.Msg) {
	if msg.Reply == "" {
		m.log.Warn("matchmaker request without reply subject, dropped", logkey.Subject, msg.Subject)
		return
	}
	if msg.Subject != m.ownStreamSubject() {
		// Cannot happen with the literal subscription; never answer another game's request.
		m.log.Warn("matchmaker request on a foreign subject, dropped", logkey.Subject, msg.Subject)
		return
	}
	r := streamReply{nc: m.nc, inbox: msg.Reply, m: m}
	if !m.beginRequest() {
		r.send(protocol.Error(http.StatusServiceUnavailable, "matchmaker shutting down"))
		r.finish()
		return
	}
	if isPlayBody(msg.Data) {
		// Play together (a queue, a party): its ticket or party outlives this handling here,
		// which makes KV round trips: off the subscription's callback.
		m.inflight.Done()
		r.send(protocol.Acknowledged())
		go m.onPlayRequest(r, msg.Data)
		return
	}
	// Acknowledged and queued here, in the subscription's callback; the request then runs in a
	// goroutine of its own once admitted.
	start := time.Now()
	m.met.inFlight.Inc()
	pr := m.trackPlain(msg.Reply) // before Acknowledged: a cancel may follow it at once
	r.send(protocol.Acknowledged())
	ka := newKeepalive(r.send, StreamKeepalive) // never silent longer than this (keepalive.go)
	m.serve(pr, msg.Data, ka.Send, func(g *grant, rerr *requestError) {
		defer m.inflight.Done()
		defer m.met.inFlight.Dec()
		defer m.untrackPlain(pr)
		ka.stop()
		var final protocol.Feedback
		if rerr != nil {
			final = protocol.Error(rerr.Code, rerr.Message)
			m.finishMetrics("stream", rerr.Code, start)
		} else if m.grantPlain(pr, g.sessionID) { // cancel.go
			// The player left just as the session was granted: nobody will use the token.
			go m.cancelGranted(g.sessionID)
			rerr := abandonedError()
			final = protocol.Error(rerr.Code, rerr.Message)
			m.finishMetrics("stream", rerr.Code, start)
		} else {
			final = protocol.Ready(g.sessionReady())
			m.finishMetrics("stream", http.StatusOK, start)
		}
		r.send(final)
		r.finish()
		r.resendFinal(final)
	})
}

// finalResendAfter is when a stream's final feedback and end are published once more.
const finalResendAfter = 2 * time.Second

// resendFinal publishes the final feedback f and the end of the stream again after
// finalResendAfter. Core NATS delivers at most once: a front door whose NATS node died just
// as the final message was on its way (it reconnects to another node within milliseconds)
// misses it, and its player would wait for the stream's idle timeout and lose a granted
// session. A front door that got the first copy has ended the stream and dropped its reply
// subject by then (ours also ignores a second final on a stream that is still open).
func (s streamReply) resendFinal(f protocol.Feedback) {
	time.AfterFunc(finalResendAfter, func() {
		if s.nc.IsClosed() {
			return
		}
		s.send(f)
		s.finish()
	})
}

// onUnknownGameRequest handles matchmaker.request.*.* when AnswerUnknownGames is on: it answers
// 400 for an invalid game or version and 404 for any other game. The own subject is left alone:
// the own-subject subscription (another queue group) receives the same message and serves it.
func (m *Matchmaker) onUnknownGameRequest(msg *nats.Msg) {
	if msg.Subject == m.ownStreamSubject() || msg.Reply == "" {
		return
	}
	r := streamReply{nc: m.nc, inbox: msg.Reply, m: m}
	game, version, _ := strings.Cut(strings.TrimPrefix(msg.Subject, protocol.SubjectMatchmakerRequestPrefix+"."), ".")
	if err := protocol.ValidateGameVersion(game, version); err != nil {
		r.send(protocol.Error(http.StatusBadRequest, strings.TrimPrefix(err.Error(), protocol.ErrInvalidName.Error()+": ")))
		r.finish()
		m.met.requests.WithLabelValues("stream", "400").Inc()
		return
	}
	r.send(protocol.Error(http.StatusNotFound, fmt.Sprintf("no matchmaker here serves game %q version %q (this one serves %q version %q)",
		game, version, m.cfg.AppName, m.cfg.AppVersion)))
	r.finish()
	m.met.requests.WithLabelValues("stream", "404").Inc()
}
