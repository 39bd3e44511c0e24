package matchmaker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Liveness of claimed sessions. A claimed session (a put in active_connections, written by its
// game server when the player connected) normally ends when the game server deletes the key.
// A game server that dies without doing so (kill -9, OOM, a crashed host) would leave the key,
// and so the session, forever. Two mechanisms end such sessions without relying on anything the
// dead process would have written (the Rust server plugin writes only the key, no heartbeat):
//
//   - Edgegap's session webhook "Error" (the deployment failed or its game server crashed): every
//     matchmaker receives it; for a claimed session it is confirmed with GET /v1/session (the
//     webhook sink authenticates nobody) and the session's deletion is queued at once.
//   - The reconciler checks every claimed session it knows against Edgegap's session list: in
//     error there, or absent from it and then 404/410 on GET (its deployment terminated), it is
//     deleted. This also covers lost webhooks and game servers that exited while the matchmaker
//     was down.
//
// The deletion is queued with the incarnation of the put (ac-<rev>), so the delete worker
// purges the stale key once the session is gone (bus.PurgeActiveConnection).

// claim is one claimed session: the revision of its active_connections put and when it was
// written.
type claim struct {
	rev uint64
	at  time.Time
}

// claimTracker knows the claimed sessions — keys whose latest active_connections entry is a
// put — and that entry, as the active-connection watch reports them.
type claimTracker struct {
	mu   sync.Mutex
	revs map[string]claim
}

func newClaimTracker() *claimTracker { return &claimTracker{revs: make(map[string]claim)} }

// apply takes one entry of the active_connections watch.
func (c *claimTracker) apply(e jetstream.KeyValueEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		c.revs[e.Key()] = claim{rev: e.Revision(), at: e.Created()}
	} else {
		delete(c.revs, e.Key())
	}
}

// drop forgets sid if its claim is still the one at revision rev.
func (c *claimTracker) drop(sid string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revs[sid].rev == rev {
		delete(c.revs, sid)
	}
}

// reset forgets every claim: a restarted watch replays them all.
func (c *claimTracker) reset() {
	c.mu.Lock()
	c.revs = make(map[string]claim)
	c.mu.Unlock()
}

// has reports whether sid is claimed (as far as the watch knows).
func (c *claimTracker) has(sid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.revs[sid]
	return ok
}

// count returns how many claimed sessions are known.
func (c *claimTracker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.revs)
}

// snapshot returns a copy of the claims.
func (c *claimTracker) snapshot() map[string]claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]claim, len(c.revs))
	for k, v := range c.revs {
		out[k] = v
	}
	return out
}

// failedHookQueue bounds the "Error" webhooks waiting for their check; more are dropped (the
// reconciler finds those sessions too).
const failedHookQueue = 1024

// noteFailedHook hands a failed-session webhook that no waiter of this process owns to the
// checker (runFailedHookChecks), without blocking the webhook subscription.
func (m *Matchmaker) noteFailedHook(sid string) {
	if !bus.ValidSessionID(sid) {
		return
	}
	select {
	case m.failedHooks <- sid:
	default:
		m.log.Debug("failed-session webhook dropped (checker busy); reconciliation covers it", logkey.SessionID, sid)
	}
}

// runFailedHookChecks checks the failed-session webhooks noted by onWebhook until bg ends.
func (m *Matchmaker) runFailedHookChecks(bg context.Context) {
	for {
		select {
		case <-bg.Done():
			return
		case sid := <-m.failedHooks:
			m.checkFailedHook(bg, sid)
		}
	}
}

// checkFailedHook ends a claimed session whose "Error" (or "Unprocessable") webhook Edgegap
// confirms. A session that is not claimed is left to its waiter (which got the webhook too) or
// to the unclaimed reaper.
func (m *Matchmaker) checkFailedHook(bg context.Context, sid string) {
	ctx, cancel := context.WithTimeout(bg, m.cfg.EdgegapCallTimeout+5*time.Second)
	defer cancel()
	e, err := m.b.ActiveConnections.Get(ctx, sid)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			m.log.Warn("failed-session webhook: active_connections lookup failed; reconciliation will check the session", logkey.SessionID, sid, logkey.Err, err)
		}
		return
	}
	dead, why, err := m.sessionDead(ctx, sid)
	switch {
	case err != nil:
		m.log.Warn("failed-session webhook: could not confirm it on Edgegap; reconciliation will check the session", logkey.SessionID, sid, logkey.Err, err)
	case !dead:
		m.log.Warn("failed-session webhook not confirmed by Edgegap; ignoring it", logkey.SessionID, sid, "edgegap_status", why)
	default:
		m.endDeadSession(ctx, sid, e.Revision(), "error webhook: "+why)
	}
}

// sessionDead asks Edgegap whether a session's game server is gone: the session is in error
// (or unprocessable), or it no longer exists (404/410: its deployment terminated). why is the
// status seen.
func (m *Matchmaker) sessionDead(ctx context.Context, sid string) (dead bool, why string, err error) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
	defer cancel()
	s, err := m.api.GetSession(cctx, sid)
	switch {
	case errors.Is(err, edgegap.ErrNotFound):
		return true, "session gone on Edgegap (" + strconv.Itoa(edgegap.StatusCode(err)) + ")", nil
	case err != nil:
		return false, "", err
	case failedStatus(s.Status):
		return true, s.Status, nil
	case s.Deployment != nil && (edgegap.StatusIs(s.Deployment.Status, edgegap.DeploymentStatusError) ||
		edgegap.StatusIs(s.Deployment.Status, edgegap.DeploymentStatusTerminated)):
		return true, "deployment " + s.Deployment.Status, nil
	}
	return false, s.Status, nil
}

// endDeadSession queues the deletion of a claimed session whose game server is gone, if its
// active_connections entry is still the put at revision rev; the delete worker purges that put
// once the session is deleted (the dead game server will never remove it).
func (m *Matchmaker) endDeadSession(ctx context.Context, sid string, rev uint64, why string) {
	// The player may have left (or reconnected) while Edgegap was asked: then the watcher deals
	// with it, and queuing a deletion here would only repeat one.
	if e, err := m.b.ActiveConnections.Get(ctx, sid); err != nil || e.Revision() != rev {
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			m.log.Warn("could not confirm the claim of a session whose game server is gone; reconciliation retries", logkey.SessionID, sid, logkey.Err, err)
		}
		return
	}
	err := retryNATS(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		return m.b.EnqueueSessionDelete(ctx, sid, markerIncarnation(rev))
	})
	if err != nil {
		m.log.Warn("could not queue deletion of a session whose game server is gone; reconciliation retries", logkey.SessionID, sid, logkey.Err, err)
		return
	}
	m.claims.drop(sid, rev)
	m.met.deleteEnqueued.WithLabelValues("server_gone").Inc()
	m.log.Warn("game server of a claimed session is gone, session deletion queued", logkey.SessionID, sid, "reason", why)
}

// checkClaimed is the reconciler's liveness pass: every claimed session it knows is looked up
// in list (Edgegap's whole session list, asked for at listed); one in error there, or missing
// from it and then gone or in error on GET, is ended (endDeadSession). A session claimed since
// shortly before listed may be missing because it is newer than the list: it waits for the next
// round (no GET per session created during a long listing).
func (m *Matchmaker) checkClaimed(ctx context.Context, list []edgegap.SessionSummary, listed time.Time) {
	claims := m.claims.snapshot()
	if len(claims) == 0 {
		return
	}
	status := make(map[string]string, len(list))
	for _, s := range list {
		status[s.SessionID] = s.Status
	}
	for sid, c := range claims {
		if ctx.Err() != nil {
			return // next round
		}
		st, inList := status[sid]
		why := st
		if inList && !failedStatus(st) {
			continue
		}
		if !inList {
			if c.at.After(listed.Add(-reuseClockMargin)) {
				continue // claimed while (or just before) the list was taken
			}
			// Absent from the list: gone, or created after the list was taken. Ask.
			dead, w, err := m.sessionDead(ctx, sid)
			if err != nil {
				m.log.Warn("reconcile: could not check a claimed session missing from the session list", logkey.SessionID, sid, logkey.Err, err)
				continue
			}
			if !dead {
				continue
			}
			why = w
		}
		m.endDeadSession(ctx, sid, c.rev, "reconcile: "+why)
	}
}

// accountIdentifier is implemented by *edgegap.Client.
type accountIdentifier interface{ AccountFingerprint() string }

// edgegapAccount returns the fingerprint of the Edgegap account this matchmaker works on
// (Config.EdgegapAccount, else the client's), or "" when unknown.
func (m *Matchmaker) edgegapAccount() string {
	if m.cfg.EdgegapAccount != "" {
		return m.cfg.EdgegapAccount
	}
	if a, ok := m.api.(accountIdentifier); ok {
		return a.AccountFingerprint()
	}
	return ""
}

// deleteConsumer binds the shared delete consumer for this matchmaker's Edgegap account
// (bus.Buckets.DeleteConsumerFor: refused when another account's matchmakers use it). When the
// account cannot be checked (the NATS user may not read the consumer), it warns and binds anyway.
func (m *Matchmaker) deleteConsumer(ctx context.Context, b *bus.Buckets) (jetstream.Consumer, error) {
	cons, err := b.DeleteConsumerFor(ctx, m.edgegapAccount())
	if !errors.Is(err, bus.ErrDeleteQueueUnchecked) {
		return cons, err
	}
	m.log.Warn("cannot check that the delete queue is not shared with another Edgegap account's matchmakers; using it unchecked", logkey.Err, err)
	return b.DeleteConsumer(ctx)
}
