package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// Kind is how a player behaves.
type Kind string

// The kinds of players (Config.Mix sets their shares).
const (
	// KindPlay: request, connect, play for a random time, disconnect.
	KindPlay Kind = "play"
	// KindAbandon: close the request stream right after "Acknowledged".
	KindAbandon Kind = "abandon"
	// KindAbandonAccepted: close the request stream right after "SessionRequestAccepted".
	KindAbandonAccepted Kind = "abandon-accepted"
	// KindNoConnect: take the token and never use it.
	KindNoConnect Kind = "no-connect"
	// KindVanish: connect, play, then stop sending without a disconnect.
	KindVanish Kind = "vanish"
)

// phase is where a player is.
type phase uint8

const (
	phaseRequesting phase = iota
	phaseGranted          // has a token, not connected (yet)
	phaseConnected        // connected to the game server, has not chosen to leave
	phaseLeft             // chose to leave (or vanished)
	phaseDone             // finished otherwise (failed, abandoned, lost the connection)
)

// player is one simulated player. Its mutable fields are guarded by mu (the session watcher
// reads them).
type player struct {
	id        int
	kind      Kind
	ip        netip.Addr
	transport client.Transport
	url       string

	mu          sync.Mutex
	phase       phase
	sessionID   string
	acceptedID  string // the session id of SessionRequestAccepted (known before the grant)
	reqStart    time.Time
	reqEnd      time.Time
	readyAfter  time.Duration // time to ready, for grants
	granted     bool
	abandoned   bool
	interrupted bool
	failClass   string // why the request failed ("" when it did not)
	failErr     string
	connected   bool
	connectErr  string // class of a failed netcode connection
	connStart   time.Time
	connEnd     time.Time
	leftAt      time.Time
	dropped     error // the connection ended before the player chose to leave
}

// playerIP returns the client IP of player i: 198.18.0.0/15 (RFC 2544's benchmarking range,
// which the front door treats as a public address and passes on to Edgegap), starting at
// base, wrapping within the range.
func playerIP(base uint32, i int) netip.Addr {
	const size = 1 << 17
	n := (base + uint32(i)) % (size - 2)
	v := uint32(198)<<24 | uint32(18)<<16 + 1 + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// play runs one player from request to leaving.
func (s *Soak) play(ctx context.Context, p *player, rng *rand.Rand) {
	cfg := s.cfg
	reqCtx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	opts := client.Options{ClientIP: p.ip.String(), Transport: p.transport, Timeout: -1, HTTPClient: cfg.HTTPClient}
	abandoned := false
	abandonAt := protocol.FeedbackKind(0)
	switch p.kind {
	case KindAbandon:
		abandonAt = protocol.FeedbackAcknowledged
	case KindAbandonAccepted:
		abandonAt = protocol.FeedbackSessionRequestAccepted
	}
	opts.OnProgress = func(pr client.Progress) {
		if pr.Feedback == nil {
			return
		}
		if pr.Feedback.Kind == protocol.FeedbackSessionRequestAccepted {
			p.mu.Lock()
			p.acceptedID = pr.Feedback.Text
			p.mu.Unlock()
		}
		if abandonAt != 0 && pr.Feedback.Kind == abandonAt {
			abandoned = true
			cancel() // closes the WebSocket (or the chunked response) at once
		}
	}
	p.mu.Lock()
	p.reqStart = time.Now()
	p.mu.Unlock()
	sess, err := client.Request(reqCtx, p.url, cfg.Game, cfg.Version, opts)
	end := time.Now()
	p.mu.Lock()
	p.reqEnd = end
	switch {
	case err == nil:
		p.granted = true
		p.sessionID = sess.SessionID
		p.readyAfter = end.Sub(p.reqStart)
		p.phase = phaseGranted
	case abandoned:
		p.abandoned = true
		p.phase = phaseDone
	case ctx.Err() != nil:
		p.interrupted = true
		p.phase = phaseDone
	default:
		p.failClass, p.failErr = classify(err), err.Error()
		p.phase = phaseDone
	}
	failClass := p.failClass
	p.mu.Unlock()
	if failClass != "" {
		// Which player, when: to find its request in the services' logs.
		s.log.InfoContext(ctx, "soak: request failed", logkey.ClientIP, p.ip.String(), "class", failClass,
			"started", p.reqStart.UTC().Format(time.RFC3339Nano), logkey.Err, err)
	}
	if err != nil || p.kind == KindNoConnect {
		return
	}
	s.connectAndPlay(ctx, p, sess, rng)
}

// connectAndPlay connects to the game server with the token, stays a random time, and leaves
// (or vanishes).
func (s *Soak) connectAndPlay(ctx context.Context, p *player, sess *client.Session, rng *rand.Rand) {
	cfg := s.cfg
	dial := *sess
	var rl *relay
	if p.kind == KindVanish {
		var err error
		if rl, err = newRelay(sess.ServerAddr); err != nil {
			p.mu.Lock()
			p.connectErr, p.phase = "relay: "+err.Error(), phaseDone
			p.mu.Unlock()
			return
		}
		defer rl.cut()
		dial.ServerAddr = rl.addr()
	}
	connStart := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	conn, err := dial.Dial(dctx, netcode.ClientConfig{Logger: s.quiet})
	cancel()
	p.mu.Lock()
	p.connStart, p.connEnd = connStart, time.Now()
	p.mu.Unlock()
	if err != nil {
		p.mu.Lock()
		if ctx.Err() != nil {
			p.interrupted = true
		} else {
			p.connectErr = connectClass(err)
		}
		p.phase = phaseDone
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	p.connected = true
	p.phase = phaseConnected
	p.mu.Unlock()
	stay := cfg.PlayMin
	if span := cfg.PlayMax - cfg.PlayMin; span > 0 {
		stay += time.Duration(rng.Int64N(int64(span)))
	}
	t := time.NewTimer(stay)
	defer t.Stop()
	select {
	case <-t.C:
		p.mu.Lock()
		p.phase, p.leftAt = phaseLeft, time.Now()
		p.mu.Unlock()
		if rl != nil {
			rl.cut() // vanish: not even the disconnect packets of Close get through
		}
		_ = conn.Close()
	case <-conn.Done():
		p.mu.Lock()
		p.phase, p.dropped = phaseDone, conn.Err()
		p.mu.Unlock()
		_ = conn.Close()
	case <-ctx.Done():
		p.mu.Lock()
		p.phase, p.leftAt, p.interrupted = phaseLeft, time.Now(), true
		p.mu.Unlock()
		_ = conn.Close()
	}
}

// classify names the class of a failed session request, for the report: "matchmaker <code>"
// for the matchmaker's errors, "front door: <message>" for the front door's, "http <status>"
// for a refused HTTP request, else what kind of failure it was.
func classify(err error) string {
	var me *client.MatchmakerError
	var se *client.ServerError
	var st *client.StatusError
	switch {
	case errors.As(err, &me):
		return fmt.Sprintf("matchmaker %d", me.Code)
	case errors.As(err, &se):
		msg := se.Message
		if len(msg) > 48 {
			msg = msg[:48]
		}
		return "front door: " + msg
	case errors.As(err, &st):
		return fmt.Sprintf("http %d", st.StatusCode)
	case errors.Is(err, client.ErrTimeout):
		return ClassTimeout
	case errors.Is(err, client.ErrStreamEnded):
		return ClassStreamEnded
	case errors.Is(err, client.ErrConnect):
		return ClassUnreachable
	case errors.Is(err, client.ErrProtocol):
		return ClassProtocol
	case errors.Is(err, client.ErrInvalidSession):
		return ClassInvalidSession
	}
	return ClassOther
}

// Failure classes without a code of their own.
const (
	// ClassTimeout: no answer within Config.RequestTimeout.
	ClassTimeout = "timeout"
	// ClassStreamEnded: the stream ended without a SessionReady or an error.
	ClassStreamEnded = "stream ended"
	// ClassUnreachable: the front door could not be reached (connection refused, ...).
	ClassUnreachable = "front door unreachable"
	// ClassProtocol: the front door sent something that is not part of the protocol.
	ClassProtocol = "protocol"
	// ClassInvalidSession: the SessionReady could not be used.
	ClassInvalidSession = "invalid session"
	// ClassOther: anything else.
	ClassOther = "other"
)

// Clear reports whether a failure class tells the player what went wrong: an error from the
// matchmaker or the front door (with its code or message), an HTTP refusal, or a front door
// that cannot be reached. Timeouts, streams that just end, protocol violations and unusable
// sessions are not clear.
func Clear(class string) bool {
	return strings.HasPrefix(class, "matchmaker ") || strings.HasPrefix(class, "front door: ") ||
		strings.HasPrefix(class, "http ") || class == ClassUnreachable
}

// connectClass names why a netcode connection with a granted token failed.
func connectClass(err error) string {
	switch {
	case errors.Is(err, netcode.ErrConnectionDenied):
		var de *netcode.DeniedError
		if errors.As(err, &de) {
			msg := "denied: " + de.Reason.String()
			if de.Message != "" {
				msg += ": " + de.Message
			}
			return msg
		}
		return "denied"
	case errors.Is(err, netcode.ErrConnectTokenExpired):
		return "token expired"
	case errors.Is(err, netcode.ErrConnectionTimedOut):
		return "timed out"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return "other: " + err.Error()
}
