package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// Abandoned requests. The front door publishes a streaming request's reply subject on
// matchmaker.cancel.<game>.<version> when its player goes away before the final feedback
// (protocol.SubjectMatchmakerCancelPrefix). Every matchmaker instance subscribes (no queue
// group): the one running the request drops it, the others find nothing to drop.
//
// A plain request is dropped according to where it is:
//   - queued for admission: it leaves the queue, no session is ever created;
//   - its Edgegap create in flight: the create is NOT aborted (Edgegap may already have made
//     the session, and an aborted call would leave us without its id); it runs on, detached
//     from the player and bounded by EdgegapCallTimeout, and the session it returns is
//     deleted at once (session.go giveUp: a DELETE from the request itself, queued if it fails);
//   - waiting for readiness (or later, before the answer): the session is deleted at once;
//   - granted a moment ago (the front door lost its player before relaying the SessionReady):
//     the session is deleted unless a player claimed it (grantPlain, cancelGranted).

// playHooks is what the play-together engine (queues, parties) plugs into the matchmaker; nil
// until it is wired.
type playHooks interface {
	// onCancel drops the play-together request (ticket, party member's wait) whose reply
	// subject is inbox, if this instance holds it. It must not block.
	onCancel(inbox string)
}

// errAbandoned is the cancel cause of a request whose player went away.
var errAbandoned = errors.New("matchmaker: request abandoned by the player")

// statusClientClosed is the code of the Error feedback of an abandoned request (nginx's "client
// closed request"): nobody reads it through the front door, which published the cancel, but
// it keeps abandoned requests apart from failures in requests_total{code}.
const statusClientClosed = 499

// Phases of a plain request, as counted by abandoned_requests_total{phase}.
const (
	phaseQueued int32 = iota
	phaseCreating
	phaseWaiting
	phaseGranted // answered with SessionReady, which the front door could not relay (cancel.go)
)

// phaseName is the phase label of abandoned_requests_total.
func phaseName(p int32) string {
	switch p {
	case phaseCreating:
		return "creating"
	case phaseWaiting:
		return "waiting"
	case phaseGranted:
		return "granted"
	default:
		return "queued"
	}
}

// maxCancelBody bounds a cancel message's body (a reply subject); longer bodies are ignored.
const maxCancelBody = 512

// plainRequest is one streaming plain request that a cancel can reach.
type plainRequest struct {
	inbox    string
	ctx      context.Context
	cancel   context.CancelCauseFunc
	phase    atomic.Int32
	canceled atomic.Int64 // when the cancel came (Unix ns), 0 before
}

// setPhase records where the request is; nil-safe (session.gensession requests are not
// cancelable).
func (r *plainRequest) setPhase(p int32) {
	if r != nil {
		r.phase.Store(p)
	}
}

// sinceCancel returns the time since the request's cancel came (0 if none, or r is nil).
func (r *plainRequest) sinceCancel() time.Duration {
	if r == nil {
		return 0
	}
	at := r.canceled.Load()
	if at == 0 {
		return 0
	}
	return time.Since(time.Unix(0, at))
}

// plainRequests maps reply subjects to in-flight plain streaming requests. A cancel that finds
// nothing is remembered for a short while (recentCancels): a NATS client may close before its
// request reached this instance's subscription callback, which runs on another goroutine than
// the cancel's.
type plainRequests struct {
	mu      sync.Mutex
	byBox   map[string]*plainRequest
	recent  recentCancels
	granted recentCancels      // reply subject → session id of requests just granted (cancelGranted)
	sub     *nats.Subscription // the cancel subscription, kept until in-flight requests are done
}

func newPlainRequests() *plainRequests {
	return &plainRequests{byBox: map[string]*plainRequest{},
		recent:  recentCancels{keep: 5 * time.Second, max: 100_000},
		granted: recentCancels{keep: 5 * time.Second, max: 100_000}}
}

// grantPlain ends the tracking of pr, granted session sid, and remembers the grant for a few
// seconds: the front door may lose its player just before relaying the SessionReady, and then
// publishes the cancel, which must still find the session. It returns true when a cancel took
// the request first (the caller gives the session up: cancelGranted).
func (m *Matchmaker) grantPlain(pr *plainRequest, sid string) (canceled bool) {
	p := m.plain
	p.mu.Lock()
	mine := p.byBox[pr.inbox] == pr
	if mine {
		delete(p.byBox, pr.inbox)
		p.granted.put(pr.inbox, sid, time.Now())
	}
	p.mu.Unlock()
	return !mine
}

// cancelGranted deletes the session of a request that was granted just before its cancel came,
// unless a player has claimed it (active_connections): its token never reached anyone. On
// failure the unclaimed reaper deletes it later. Runs in a goroutine of its own.
func (m *Matchmaker) cancelGranted(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.b.ActiveConnections.Get(ctx, sid); err == nil {
		return // a player connected with the token after all
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.log.Warn("abandoned grant: could not check active_connections; leaving the session to the reaper", logkey.SessionID, sid, logkey.Err, err)
		return
	}
	m.log.Info("session request abandoned by the player right after its grant", logkey.SessionID, sid)
	m.deleteAbandoned(nil, sid)
}

// trackPlain registers a plain streaming request answered on inbox and returns it, with its own
// context (a child of the requests' context). A request canceled just before it arrived starts
// canceled. Call untrackPlain when it has ended.
func (m *Matchmaker) trackPlain(inbox string) *plainRequest {
	ctx, cancel := context.WithCancelCause(m.reqCtx)
	r := &plainRequest{inbox: inbox, ctx: ctx, cancel: cancel}
	p := m.plain
	p.mu.Lock()
	early := p.recent.take(inbox, time.Now())
	if !early {
		p.byBox[inbox] = r
	}
	p.mu.Unlock()
	if early {
		m.abandoned(r)
	}
	return r
}

// untrackPlain forgets r once its request has ended.
func (m *Matchmaker) untrackPlain(r *plainRequest) {
	p := m.plain
	p.mu.Lock()
	if p.byBox[r.inbox] == r {
		delete(p.byBox, r.inbox)
	}
	p.mu.Unlock()
	r.cancel(nil)
}

// cancelPlain drops the plain request answered on inbox, if this instance runs it.
func (m *Matchmaker) cancelPlain(inbox string) {
	p := m.plain
	p.mu.Lock()
	r := p.byBox[inbox]
	var sid string
	switch {
	case r != nil:
		delete(p.byBox, inbox)
	default:
		if v, ok := p.granted.takeValue(inbox, time.Now()); ok {
			sid = v
		} else {
			p.recent.add(inbox, time.Now())
		}
	}
	p.mu.Unlock()
	switch {
	case r != nil:
		m.abandoned(r)
	case sid != "":
		m.met.abandoned.WithLabelValues(phaseName(phaseGranted)).Inc()
		go m.cancelGranted(sid)
	}
}

// abandoned cancels r's context with errAbandoned and counts it by phase.
func (m *Matchmaker) abandoned(r *plainRequest) {
	r.canceled.Store(time.Now().UnixNano())
	phase := phaseName(r.phase.Load())
	m.met.abandoned.WithLabelValues(phase).Inc()
	m.log.Info("session request abandoned by the player", "phase", phase)
	r.cancel(errAbandoned)
}

// onCancel handles matchmaker.cancel.<game>.<version>: the body is the reply subject of the
// request whose player went away.
func (m *Matchmaker) onCancel(msg *nats.Msg) {
	if len(msg.Data) == 0 || len(msg.Data) > maxCancelBody {
		m.log.Debug("ignoring a cancel without a usable reply subject", logkey.Subject, msg.Subject, "bytes", len(msg.Data))
		return
	}
	inbox := string(msg.Data)
	m.cancelPlain(inbox)
	if m.play != nil {
		m.play.onCancel(inbox)
	}
}

// cancelSubject is matchmaker.cancel.<AppName>.<AppVersion> (literal, like the request subject).
func (m *Matchmaker) cancelSubject() string {
	return protocol.SubjectMatchmakerCancelPrefix + "." + m.cfg.AppName + "." + m.cfg.AppVersion
}

// subscribeCancel subscribes the cancel subject of this matchmaker's game and version. Unlike
// the request subscriptions it lasts until the in-flight requests are done (stopCancel): a
// player may still leave during the shutdown.
func (m *Matchmaker) subscribeCancel() error {
	subject := m.cancelSubject()
	sub, err := m.nc.Subscribe(subject, m.onCancel)
	if err != nil {
		return fmt.Errorf("matchmaker: subscribe %s: %w", subject, err)
	}
	// A burst of players leaving at once must not be dropped as a slow consumer.
	if err := sub.SetPendingLimits(1<<20, 64<<20); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("matchmaker: %s limits: %w", subject, err)
	}
	m.plain.mu.Lock()
	m.plain.sub = sub
	m.plain.mu.Unlock()
	return nil
}

// stopCancel ends the cancel subscription (shutdown, failed start).
func (m *Matchmaker) stopCancel() {
	m.plain.mu.Lock()
	sub := m.plain.sub
	m.plain.sub = nil
	m.plain.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

// abandonedError is the error of a request whose player went away.
func abandonedError() *requestError {
	return reqErr(statusClientClosed, "request abandoned by the client", errAbandoned)
}

// isAbandoned reports whether ctx ended because the player went away.
func isAbandoned(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errAbandoned)
}

// recentCancels remembers reply subjects (with a value) for keep to 2×keep, at most max of
// them: two generations, the older dropped as a whole when the newer is keep old. It holds the
// cancels that found no request, and the requests just granted.
type recentCancels struct {
	keep     time.Duration
	max      int
	cur, old map[string]string
	since    time.Time // when cur was started
}

func (c *recentCancels) rotate(now time.Time) {
	switch age := now.Sub(c.since); {
	case c.cur == nil || age >= 2*c.keep:
		c.old, c.cur, c.since = nil, map[string]string{}, now
	case age >= c.keep:
		c.old, c.cur, c.since = c.cur, map[string]string{}, now
	}
}

func (c *recentCancels) add(inbox string, now time.Time) { c.put(inbox, "", now) }

func (c *recentCancels) put(inbox, value string, now time.Time) {
	c.rotate(now)
	if len(c.cur) < c.max {
		c.cur[inbox] = value
	}
}

// take reports whether inbox was remembered, forgetting it.
func (c *recentCancels) take(inbox string, now time.Time) bool {
	_, ok := c.takeValue(inbox, now)
	return ok
}

// takeValue returns inbox's value if it was remembered, forgetting it.
func (c *recentCancels) takeValue(inbox string, now time.Time) (string, bool) {
	c.rotate(now)
	if v, ok := c.cur[inbox]; ok {
		delete(c.cur, inbox)
		return v, true
	}
	if v, ok := c.old[inbox]; ok {
		delete(c.old, inbox)
		return v, true
	}
	return "", false
}
