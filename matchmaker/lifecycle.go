package matchmaker

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
)

// replayDeleteWindow: when the active-connection watcher starts, it replays the latest entry of
// every key, including old delete markers. Only markers younger than this are acted on (older
// ones were handled by the instance that was running then; reconciliation covers the rest).
const replayDeleteWindow = 10 * time.Minute

// ---------------------------------------------------------------------------------------------
// Unclaimed reaper: a watch on unclaimed_sessions feeds a deadline heap; no periodic listing.

type reapItem struct {
	key      string
	rev      uint64
	deadline time.Time
	idx      int
}

type reapHeap []*reapItem

func (h reapHeap) Len() int           { return len(h) }
func (h reapHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h reapHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *reapHeap) Push(x any)        { it := x.(*reapItem); it.idx = len(*h); *h = append(*h, it) }
func (h *reapHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}

// unclaimedReaper deletes sessions that nobody claimed within ReadinessLimit + ClaimGrace of
// the last write of their unclaimed_sessions entry. Every matchmaker runs one; they race
// harmlessly (the delete queue deduplicates, KV deletes are revision-checked).
type unclaimedReaper struct {
	m     *Matchmaker
	mu    sync.Mutex
	items map[string]*reapItem
	h     reapHeap
	wake  chan struct{}
}

func newUnclaimedReaper(m *Matchmaker) *unclaimedReaper {
	return &unclaimedReaper{m: m, items: make(map[string]*reapItem), wake: make(chan struct{}, 1)}
}

// has reports whether key is currently in unclaimed_sessions (as far as the watch knows).
func (r *unclaimedReaper) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.items[key]
	return ok
}

func (r *unclaimedReaper) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

func (r *unclaimedReaper) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if it, ok := r.items[key]; ok {
			heap.Remove(&r.h, it.idx)
			delete(r.items, key)
		}
		return
	}
	deadline := e.Created().Add(r.m.cfg.ReadinessLimit + r.m.cfg.ClaimGrace)
	if it, ok := r.items[key]; ok {
		it.rev, it.deadline = e.Revision(), deadline
		heap.Fix(&r.h, it.idx)
	} else {
		it := &reapItem{key: key, rev: e.Revision(), deadline: deadline}
		heap.Push(&r.h, it)
		r.items[key] = it
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// start loads the current entries (so the reaper knows the bucket before the matchmaker answers
// requests) and runs the watch and the timer until bg ends.
func (r *unclaimedReaper) start(startCtx, bg context.Context) error {
	ready := make(chan error, 1)
	r.m.goBackground(func() { r.watchLoop(bg, ready) })
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("matchmaker: watch unclaimed_sessions: %w", err)
		}
	case <-startCtx.Done():
		return fmt.Errorf("matchmaker: watch unclaimed_sessions: %w", startCtx.Err())
	}
	r.m.goBackground(func() { r.timerLoop(bg) })
	return nil
}

func (r *unclaimedReaper) watchLoop(bg context.Context, ready chan<- error) {
	backoff := 200 * time.Millisecond
	first := true
	for bg.Err() == nil {
		w, err := r.m.b.UnclaimedSessions.WatchAll(bg)
		if err != nil {
			if first {
				ready <- err
				return
			}
			r.m.log.Warn("unclaimed_sessions watch failed, retrying", "err", err)
			sleepCtx(bg, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		// A restarted watch replays every current entry: start from an empty view.
		r.mu.Lock()
		r.items = make(map[string]*reapItem)
		r.h = nil
		r.mu.Unlock()
		for e := range w.Updates() {
			if e == nil {
				if first {
					first = false
					ready <- nil
				}
				continue
			}
			r.apply(e)
		}
		_ = w.Stop()
		if bg.Err() == nil {
			r.m.log.Warn("unclaimed_sessions watch ended, restarting")
			sleepCtx(bg, backoff)
		}
	}
}

func (r *unclaimedReaper) timerLoop(bg context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		r.mu.Lock()
		var due *reapItem
		wait := time.Hour
		if len(r.h) > 0 {
			wait = r.h[0].deadline.Sub(r.m.now())
			if wait <= 0 {
				due = r.h[0]
				// Look again in a while if the delete marker does not arrive.
				due.deadline = r.m.now().Add(5 * time.Second)
				heap.Fix(&r.h, due.idx)
			}
		}
		var key string
		var rev uint64
		if due != nil {
			key, rev = due.key, due.rev
		}
		r.mu.Unlock()
		if due != nil {
			r.reap(bg, key, rev)
			continue
		}
		t.Reset(wait)
		select {
		case <-bg.Done():
			return
		case <-r.wake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
	}
}

func (r *unclaimedReaper) reap(bg context.Context, key string, rev uint64) {
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	b := r.m.b
	// Claimed after all (the active-connection watch may lag behind): just forget it.
	if _, err := b.ActiveConnections.Get(ctx, key); err == nil {
		_ = b.UnclaimedSessions.Delete(ctx, key, jetstream.LastRevision(rev))
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		r.m.log.Warn("reaper: active_connections lookup failed, will retry", "session_id", key, "err", err)
		return
	}
	if err := b.EnqueueSessionDelete(ctx, key); err != nil {
		if errors.Is(err, bus.ErrBadSessionID) {
			r.m.log.Error("reaper: unclaimed entry is not a session id; removing it", "key", key)
			_ = b.UnclaimedSessions.Delete(ctx, key, jetstream.LastRevision(rev))
			return
		}
		r.m.log.Warn("reaper: could not queue deletion, will retry", "session_id", key, "err", err)
		return
	}
	r.m.met.reaped.Inc()
	r.m.met.deleteEnqueued.WithLabelValues("unclaimed").Inc()
	r.m.log.Info("unclaimed session reaped, deletion queued", "session_id", key)
	if err := b.UnclaimedSessions.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		r.m.log.Debug("reaper: unclaimed entry changed or already removed", "session_id", key, "err", err)
	}
}

// ---------------------------------------------------------------------------------------------
// Active-connection watcher.

// watchActiveConnections: a put claims the session (drop it from unclaimed_sessions); a delete
// or purge means the player left: queue the session's deletion.
func (m *Matchmaker) watchActiveConnections(bg context.Context) {
	backoff := 200 * time.Millisecond
	for bg.Err() == nil {
		w, err := m.b.ActiveConnections.WatchAll(bg)
		if err != nil {
			m.log.Warn("active_connections watch failed, retrying", "err", err)
			sleepCtx(bg, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		replaying := true
		for e := range w.Updates() {
			if e == nil {
				replaying = false
				continue
			}
			m.onActiveConnection(bg, e, replaying)
		}
		_ = w.Stop()
		if bg.Err() == nil {
			m.log.Warn("active_connections watch ended, restarting")
			sleepCtx(bg, backoff)
		}
	}
}

func (m *Matchmaker) onActiveConnection(bg context.Context, e jetstream.KeyValueEntry, replaying bool) {
	sid := e.Key()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		if m.unclaim.has(sid) {
			if err := m.b.UnclaimedSessions.Delete(ctx, sid); err != nil {
				m.log.Warn("could not drop claimed session from unclaimed_sessions", "session_id", sid, "err", err)
			} else {
				m.log.Info("session claimed by a player", "session_id", sid, "client_id", string(e.Value()))
			}
		}
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		if replaying && m.now().Sub(e.Created()) > replayDeleteWindow {
			return
		}
		err := retry(ctx, 200*time.Millisecond, func() error { return m.b.EnqueueSessionDelete(ctx, sid) })
		if err != nil {
			// Not lost (e.g. a disconnect during shutdown): the next matchmaker start replays this
			// delete marker (replayDeleteWindow), and the reconciler deletes a session that no
			// bucket knows any more.
			m.log.Warn("could not queue deletion of a session whose player left", "session_id", sid, "err", err,
				"note", "the next matchmaker start or the reconciler deletes it")
			return
		}
		m.met.deleteEnqueued.WithLabelValues("disconnected").Inc()
		m.log.Info("player left, session deletion queued", "session_id", sid)
	}
}

// ---------------------------------------------------------------------------------------------
// Delete worker.

// runDeleteWorker consumes the delete queue (shared durable consumer: each message goes to one
// matchmaker at a time) with DeleteWorkers deletions in parallel.
func (m *Matchmaker) runDeleteWorker(bg context.Context, cons jetstream.Consumer) {
	sem := make(chan struct{}, m.cfg.DeleteWorkers)
	var wg sync.WaitGroup
	for bg.Err() == nil {
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			select {
			case sem <- struct{}{}:
			case <-bg.Done():
				return // not acked: redelivered after AckWait
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				m.deleteOne(bg, msg)
			}()
		}, jetstream.PullMaxMessages(2*m.cfg.DeleteWorkers),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				m.log.Debug("delete consumer", "err", err)
			}))
		if err != nil {
			m.log.Warn("delete worker: consume failed, retrying", "err", err)
			sleepCtx(bg, 2*time.Second)
			continue
		}
		select {
		case <-bg.Done():
		case <-cc.Closed():
			m.log.Warn("delete worker: consumer closed, restarting")
			sleepCtx(bg, time.Second)
		}
		cc.Stop()
	}
	wg.Wait()
}

func (m *Matchmaker) deleteOne(bg context.Context, msg jetstream.Msg) {
	sid := string(msg.Data())
	if !bus.ValidSessionID(sid) {
		m.log.Error("delete queue: message is not a session id; dropping it", "subject", msg.Subject())
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(bg, m.cfg.EdgegapCallTimeout)
	_, err := m.api.DeleteSession(ctx, sid)
	cancel()
	switch {
	case err == nil:
		m.met.deletes.WithLabelValues("deleted").Inc()
		m.log.Info("session deleted on Edgegap", "session_id", sid)
		m.ack(msg, sid)
		return
	case errors.Is(err, edgegap.ErrNotFound):
		m.met.deletes.WithLabelValues("already_gone").Inc()
		m.log.Info("session already gone on Edgegap", "session_id", sid, "status", edgegap.StatusCode(err))
		m.ack(msg, sid)
		return
	}
	if bg.Err() != nil {
		_ = msg.Nak() // shutting down: hand it to another instance now
		return
	}
	n := uint64(1)
	if md, merr := msg.Metadata(); merr == nil {
		n = md.NumDelivered
	}
	delay := m.cfg.DeleteRetryBase
	for i := uint64(1); i < n && delay < m.cfg.DeleteRetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, m.cfg.DeleteRetryMax)
	m.met.deletes.WithLabelValues("retry").Inc()
	switch {
	case n == uint64(m.cfg.DeleteStuckAfter):
		m.met.deletesStuck.Inc()
		fallthrough
	case n > uint64(m.cfg.DeleteStuckAfter):
		m.log.Error("session delete keeps failing; still queued", "session_id", sid, "attempts", n, "retry_in", delay, "err", err)
	default:
		m.log.Warn("session delete failed; will retry", "session_id", sid, "attempt", n, "retry_in", delay, "err", err)
	}
	if err := msg.NakWithDelay(delay); err != nil {
		m.log.Warn("delete queue: nak failed (message will be redelivered after the ack wait)", "session_id", sid, "err", err)
	}
}

func (m *Matchmaker) ack(msg jetstream.Msg, sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		m.log.Warn("delete queue: ack failed (the delete will be repeated, harmlessly)", "session_id", sid, "err", err)
	}
}

// ---------------------------------------------------------------------------------------------
// Reconciliation.

// runReconciler periodically lists Edgegap's sessions and deletes those of this deployment
// (webhook_url equal to SessionWebhookURL, see ownSession) that no bucket knows (not
// unclaimed, not an active connection) for longer than ReadinessLimit + ClaimGrace. This covers
// a crash between Edgegap's create and our unclaimed_sessions write, a create that timed out
// on our side although Edgegap created the session, and watch gaps. Start runs it only when
// SessionWebhookURL is set.
func (m *Matchmaker) runReconciler(bg context.Context) {
	suspects := make(map[string]time.Time)
	t := time.NewTicker(m.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		m.reconcileOnce(bg, suspects)
	}
}

func (m *Matchmaker) reconcileOnce(bg context.Context, suspects map[string]time.Time) {
	ctx, cancel := context.WithTimeout(bg, 2*m.cfg.EdgegapCallTimeout)
	defer cancel()
	list, err := m.api.ListAllSessions(ctx)
	if err != nil {
		m.log.Warn("reconcile: session list failed", "err", err)
		return
	}
	now := m.now()
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if !m.ownSession(s) {
			continue // another app's, another deployment's or a Rust bevygap's session
		}
		sid := s.SessionID
		seen[sid] = true
		if m.unclaim.has(sid) {
			delete(suspects, sid)
			continue
		}
		if _, err := m.b.ActiveConnections.Get(ctx, sid); err == nil {
			delete(suspects, sid)
			continue
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // cannot tell now
		}
		first, ok := suspects[sid]
		if !ok {
			suspects[sid] = now
			continue
		}
		if now.Sub(first) < m.cfg.ReadinessLimit+m.cfg.ClaimGrace {
			continue
		}
		if err := m.b.EnqueueSessionDelete(ctx, sid); err != nil {
			m.log.Warn("reconcile: could not queue deletion", "session_id", sid, "err", err)
			continue
		}
		delete(suspects, sid)
		m.met.reconciled.Inc()
		m.met.deleteEnqueued.WithLabelValues("reconcile").Inc()
		m.log.Warn("reconcile: session unknown to every bucket, deletion queued", "session_id", sid)
	}
	m.log.Debug("reconcile: session list checked", "listed", len(list), "ours", len(seen), "suspects", len(suspects))
	for sid := range suspects {
		if !seen[sid] {
			delete(suspects, sid)
		}
	}
}

// ownSession reports whether s was created by this deployment: Edgegap echoes the webhook_url
// given at creation in the session list, and ours (normally carrying a secret token) is unique
// to this deployment. A session without it, or with another URL, is never touched.
func (m *Matchmaker) ownSession(s edgegap.SessionSummary) bool {
	return m.cfg.SessionWebhookURL != "" && s.WebhookURL != nil && *s.WebhookURL == m.cfg.SessionWebhookURL
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
