package httpd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

const routeWS = "ws"

// wsConn is one accepted matchmaker WebSocket.
//
// To keep a waiting player cheap, one goroutine serves it: it reads the request, publishes it,
// then sits in Read until the connection ends (that is how a disconnect is noticed, and it
// answers pings and the close handshake). Replies from NATS are written by a short-lived
// drain goroutine that exists only while there is something to write; timeouts and shutdown are
// timers and context callbacks, not goroutines.
//
// finish ends the connection exactly once, whoever calls it first, and records the outcome.
type wsConn struct {
	s     *Server
	c     *websocket.Conn
	start time.Time

	mu       sync.Mutex
	queue    []*nats.Msg  // replies waiting to be written
	draining bool         // a drain goroutine is running
	final    string       // outcome of the final feedback once relayed
	timer    *time.Timer  // stream deadline, then the grace period after a final message
	sent     sentRequest  // the request sent to the matchmaker, to cancel if given up (cancel.go)
	idle     *time.Timer  // the matchmaker's silence (idle.go); nil when off
	waiter   *replyWaiter // the replies of the request sent last
	resend   *time.Timer  // sends the request again if nothing came back (resend.go); nil when off
	answered bool         // a reply to the request sent last came
	subject  string       // the request's subject and payload, to send it again
	payload  []byte

	once    sync.Once
	done    chan struct{}
	outcome string
}

func (w *wsConn) send(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.WriteTimeout)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

// finish ends the connection: with errMsg, an "ERR <errMsg>" text frame first; then a close
// handshake with code and reason. A negative code drops the connection without a handshake
// (the client is gone anyway).
func (w *wsConn) finish(outcome, errMsg string, code websocket.StatusCode, reason string) {
	w.once.Do(func() {
		w.outcome = outcome
		w.cancelIfGivenUp(outcome) // at once, not after the close handshake
		if code < 0 {
			_ = w.c.CloseNow()
		} else {
			if errMsg != "" {
				_ = w.send([]byte("ERR " + errMsg))
			}
			_ = w.c.Close(code, closeReason(reason))
		}
		close(w.done)
	})
}

// fail ends the connection with "ERR <msg>"; the close reason repeats the message.
func (w *wsConn) fail(outcome, msg string, code websocket.StatusCode) {
	w.finish(outcome, msg, code, msg)
}

func (w *wsConn) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// closeReason truncates s to the 123 bytes a close frame allows, on a rune boundary.
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// handleWS serves GET /matchmaker/ws. After the upgrade the connection is handed to its own
// goroutine and the handler returns, so net/http's request and response buffers are freed.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !s.cors.permits(r) {
		s.reject(w, routeWS, "origin", http.StatusForbidden, "origin not allowed")
		return
	}
	if !s.begin() {
		s.reject(w, routeWS, "shutting_down", http.StatusServiceUnavailable, msgShutdown)
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			s.wg.Done()
		}
	}()
	src := s.ips.requestSource(r)
	key := limitKey(src)
	if reason := s.streams.acquire(key); reason != "" {
		code := http.StatusTooManyRequests
		if reason == "too_many_streams" {
			code = http.StatusServiceUnavailable
		}
		s.reject(w, routeWS, reason, code, "too many open connections")
		return
	}
	// Origin was checked above against our own allow-list (scheme://host form).
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.streams.release(key)
		s.metrics.rejects.WithLabelValues("bad_upgrade").Inc()
		s.metrics.requests.WithLabelValues(routeWS, outcomeRejected).Inc()
		s.log.Debug("httpd: websocket upgrade failed", "peer", r.RemoteAddr, logkey.Err, err)
		return
	}
	handedOff = true
	queryIP := r.URL.Query().Get("client_ip")
	go func() {
		defer s.wg.Done()
		defer s.streams.release(key)
		s.runWS(c, src, queryIP, start)
	}()
}

// runWS serves one accepted WebSocket until it has ended.
func (s *Server) runWS(c *websocket.Conn, src netip.Addr, queryIP string, start time.Time) {
	s.metrics.openWS.Inc()
	s.metrics.openStreams.Inc()
	defer s.metrics.openWS.Dec()
	defer s.metrics.openStreams.Dec()
	c.SetReadLimit(s.cfg.MaxMessageBytes)
	w := &wsConn{s: s, c: c, start: start, done: make(chan struct{})}
	stopShutdown := context.AfterFunc(s.stopCtx, func() {
		w.fail(outcomeShutdown, msgShutdown, websocket.StatusGoingAway)
	})
	defer stopShutdown()

	game, version, waiter := w.request(src, queryIP)
	if waiter != nil {
		defer func() { s.replies.release(w.currentWaiter()) }()
		// Wait for the end, reading: a data message now is a protocol violation; an error means
		// the client left or somebody finished the connection.
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				break
			}
			s.metrics.rejects.WithLabelValues("bad_request").Inc()
			w.fail(outcomeRejected, "unexpected message while waiting for the matchmaker", websocket.StatusPolicyViolation)
		}
		w.mu.Lock()
		w.timer.Stop()
		w.stopIdleLocked()
		if w.resend != nil {
			w.resend.Stop()
		}
		final := w.final
		w.mu.Unlock()
		w.finish(goneOutcome(final), "", -1, "")
	}
	<-w.done
	s.metrics.requests.WithLabelValues(routeWS, w.outcome).Inc()
	s.log.Info("session request", "route", routeWS, "peer", src, logkey.Game, game, logkey.Version, version,
		"outcome", w.outcome, "duration", time.Since(start).Round(time.Millisecond))
}

// request reads and checks the client's request and sends it to the matchmaker. On success it
// returns the registered reply waiter; otherwise the connection has been finished.
func (w *wsConn) request(src netip.Addr, queryIP string) (game, version string, _ *replyWaiter) {
	s := w.s
	// A read with a deadline context would kill the connection before we could say why, so the
	// first-message timeout is a timer that ends the connection from the side.
	timeout := s.cfg.FirstMessageTimeout
	timer := time.AfterFunc(timeout, func() {
		s.metrics.rejects.WithLabelValues("first_message_timeout").Inc()
		w.fail(outcomeRejected, fmt.Sprintf("Timeout waiting for websocket request message: %v", timeout), websocket.StatusPolicyViolation)
	})
	typ, data, err := w.c.Read(context.Background())
	if !timer.Stop() || err != nil {
		w.finish(outcomeClientGone, "", -1, "")
		return "", "", nil
	}
	if typ != websocket.MessageText {
		s.metrics.rejects.WithLabelValues("bad_request").Inc()
		w.fail(outcomeRejected, "Expected text message, got binary", websocket.StatusUnsupportedData)
		return "", "", nil
	}
	var req protocol.RequestSession
	if err := json.Unmarshal(data, &req); err != nil {
		s.metrics.rejects.WithLabelValues("bad_request").Inc()
		w.fail(outcomeRejected, "Failed to parse request message as RequestSession: "+err.Error(), websocket.StatusPolicyViolation)
		return "", "", nil
	}
	subject, err := protocol.MatchmakerRequestSubject(req.Game, req.Version)
	if err != nil {
		s.metrics.rejects.WithLabelValues("invalid_name").Inc()
		w.fail(outcomeRejected, nameError(err), websocket.StatusPolicyViolation)
		return "", "", nil
	}
	if err := protocol.ValidatePlay(req.Queue, req.Props, req.Party); err != nil {
		s.metrics.rejects.WithLabelValues("bad_play_request").Inc()
		w.fail(outcomeRejected, playError(err), websocket.StatusPolicyViolation)
		return req.Game, req.Version, nil
	}
	// ?client_ip= wins, then the message's client_ip (what the Rust client's fake_client_ip
	// sets). The Rust httpd ignored the message's client_ip; honouring it is deliberate.
	override := queryIP
	if override == "" && req.ClientIP != nil {
		override = *req.ClientIP
	}
	ip, err := s.ips.placement(src, override)
	if err != nil {
		s.metrics.rejects.WithLabelValues("bad_client_ip").Inc()
		w.fail(outcomeRejected, "Invalid client_ip", websocket.StatusPolicyViolation)
		return req.Game, req.Version, nil
	}
	if !s.limiter.allow(limitKey(src), time.Now()) {
		s.metrics.rejects.WithLabelValues("rate_limited").Inc()
		w.fail(outcomeRejected, msgRateLimited, websocket.StatusTryAgainLater)
		return req.Game, req.Version, nil
	}
	mreq := protocol.MatchmakerRequest{ClientIP: ip.String(), Game: req.Game, Version: req.Version,
		Queue: req.Queue, Props: req.Props, Party: req.Party}
	payload, err := protocol.Marshal(mreq)
	if err != nil {
		w.fail(outcomeFailed, msgSendFailed, websocket.StatusInternalError)
		return req.Game, req.Version, nil
	}
	if !s.natsUp(w.done) {
		w.fail(outcomeFailed, msgNATSDown, websocket.StatusTryAgainLater)
		return req.Game, req.Version, nil
	}
	w.mu.Lock()
	w.timer = time.AfterFunc(s.streamTimeout(mreq), w.onTimer) // party.go: longer for play-together
	w.mu.Unlock()
	waiter := s.replies.register(w.deliver)
	w.mu.Lock()
	w.sent = sentRequest{game: req.Game, version: req.Version, reply: waiter.subject}
	w.waiter, w.subject, w.payload = waiter, subject, payload
	w.mu.Unlock()
	w.startIdle() // idle.go
	if err := s.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: waiter.subject, Data: payload}); err != nil {
		s.log.Warn("httpd: publish session request", logkey.Subject, subject, logkey.Err, err)
		s.replies.release(waiter)
		w.fail(outcomeFailed, msgSendFailed, websocket.StatusInternalError)
		return req.Game, req.Version, nil
	}
	if s.cfg.ResendUnanswered > 0 {
		w.mu.Lock()
		if !w.answered {
			w.resend = time.AfterFunc(s.cfg.ResendUnanswered, w.onUnanswered)
		}
		w.mu.Unlock()
	}
	return req.Game, req.Version, waiter
}

// onUnanswered sends the request once more when nothing came back (resend.go): the cancel of
// the first, then the same request on a fresh reply subject.
func (w *wsConn) onUnanswered() {
	s := w.s
	w.mu.Lock()
	if w.answered || w.finished() {
		w.mu.Unlock()
		return
	}
	first := w.waiter
	w.waiter = s.replies.register(w.deliver)
	w.sent.reply = w.waiter.subject
	reply, subject, payload := w.waiter.subject, w.subject, w.payload
	if w.idle != nil {
		w.idle.Reset(s.cfg.StreamIdleTimeout)
	}
	w.mu.Unlock()
	if s.sendAgain(routeWS, subject, payload, first, reply) != nil {
		w.fail(outcomeFailed, msgSendFailed, websocket.StatusInternalError)
	}
}

// currentWaiter returns the reply waiter of the request sent last.
func (w *wsConn) currentWaiter() *replyWaiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiter
}

// deliver queues a reply from NATS (called on the reply mux goroutine; never blocks) and starts
// a drain goroutine if none is running.
func (w *wsConn) deliver(msg *nats.Msg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiter != nil && msg.Subject != w.waiter.subject {
		return // a late reply to the request sent before (canceled, resend.go)
	}
	if !w.answered {
		w.answered = true
		if w.resend != nil {
			w.resend.Stop()
		}
	}
	if len(w.queue) >= replyBuffer {
		go w.fail(outcomeFailed, msgLost, websocket.StatusInternalError)
		return
	}
	w.queue = append(w.queue, msg)
	if w.idle != nil {
		w.idle.Reset(w.s.cfg.StreamIdleTimeout) // idle.go: the matchmaker is alive
	}
	if !w.draining {
		w.draining = true
		go w.drain()
	}
}

// drain writes queued replies in order, then exits.
func (w *wsConn) drain() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.queue = nil
			w.draining = false
			w.mu.Unlock()
			return
		}
		msg := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		w.relayOne(msg)
	}
}

// relayOne handles one reply from the matchmaker.
func (w *wsConn) relayOne(msg *nats.Msg) {
	if w.finished() {
		return
	}
	switch {
	case isNoResponders(msg):
		w.fail(outcomeNoMatchmaker, msgNoMatchmaker, websocket.StatusTryAgainLater)
		return
	case len(msg.Data) == 0: // end of stream
		w.mu.Lock()
		outcome := w.final
		w.mu.Unlock()
		if outcome == "" {
			outcome = outcomeEnded
		}
		w.finish(outcome, "", websocket.StatusNormalClosure, "Goodbye")
		return
	}
	// Record a final message before writing it: once the client has it, it may hang up at once,
	// and that must count as the final outcome, not as a client that left.
	fin := finalOutcome(msg.Data)
	w.mu.Lock()
	prev := w.final
	first := prev == "" && fin != ""
	if first {
		w.final = fin
	}
	w.mu.Unlock()
	if prev != "" {
		return // after the final feedback only the end counts (a matchmaker resends the final, matchmaker.resendFinal)
	}
	if err := w.send(msg.Data); err != nil {
		w.finish(goneOutcome(prev), "", -1, "")
		return
	}
	if !first {
		return
	}
	if fin == outcomeReady {
		w.s.metrics.timeToReady.Observe(time.Since(w.start).Seconds())
	}
	w.mu.Lock()
	w.timer.Reset(w.s.finalGrace) // the end-of-stream message should follow at once
	w.mu.Unlock()
}

// onTimer fires at the stream deadline, or finalGrace after a final message without the
// matchmaker's end-of-stream message.
func (w *wsConn) onTimer() {
	w.mu.Lock()
	final := w.final
	w.mu.Unlock()
	if final != "" {
		w.finish(final, "", websocket.StatusNormalClosure, "Goodbye")
		return
	}
	w.fail(outcomeTimeout, msgTimeout, websocket.StatusTryAgainLater)
}

// nameError turns a protocol.ValidateGameVersion error into the reference's message
// ("Game name invalid").
func nameError(err error) string {
	return strings.TrimPrefix(err.Error(), protocol.ErrInvalidName.Error()+": ")
}
