package matchmaker

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// replayDeleteWindow: when the active-connection watcher starts, it replays the latest entry of
// every key, including delete markers. The marker of a session whose deletion is done is purged
// by the delete worker (deleteQueued), so the markers left are those of players who left while
// no matchmaker was running, or whose deletion is still queued (then deduplicated by its
// incarnation): those are acted on. Markers older than this (e.g. left by a matchmaker that did
// not purge them) are ignored; reconciliation covers the rest.
const replayDeleteWindow = 10 * time.Minute

// ---------------------------------------------------------------------------------------------
// Unclaimed reaper: a watch on unclaimed_sessions feeds a deadline heap; no periodic listing.

type reapItem struct {
	key      string
	rev      uint64
	created  time.Time // last write of the entry (for the oldest-unclaimed metric)
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
//
// It is a deadline heap fed by the watch of unclaimed_sessions (apply) and a timer (run) that
// hands each due entry to reap; it knows nothing of NATS, so its timing is tested on fake time.
type unclaimedReaper struct {
	ttl     time.Duration // from an entry's last write to its reaping
	recheck time.Duration // a reaped entry whose delete marker does not arrive is reaped again after this
	reap    func(ctx context.Context, key string, rev uint64)

	mu    sync.Mutex
	items map[string]*reapItem
	h     reapHeap
	wake  chan struct{}
}

// reapRecheck is how long a due entry waits before it is reaped again when its delete marker
// does not arrive (the reap failed, or it is still on its way).
const reapRecheck = 5 * time.Second

func newUnclaimedReaper(ttl time.Duration, reap func(ctx context.Context, key string, rev uint64)) *unclaimedReaper {
	return &unclaimedReaper{ttl: ttl, recheck: reapRecheck, reap: reap,
		items: make(map[string]*reapItem), wake: make(chan struct{}, 1)}
}

// has reports whether key is currently in unclaimed_sessions (as far as the watch knows).
func (r *unclaimedReaper) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.items[key]
	return ok
}

// reset forgets every entry: a restarted watch replays them all.
func (r *unclaimedReaper) reset() {
	r.mu.Lock()
	r.items = make(map[string]*reapItem)
	r.h = nil
	r.mu.Unlock()
}

// apply takes one entry of the watch: a put (re)sets the key's deadline to its write time plus
// ttl, a delete or purge forgets the key.
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
	deadline := e.Created().Add(r.ttl)
	if it, ok := r.items[key]; ok {
		it.rev, it.created, it.deadline = e.Revision(), e.Created(), deadline
		heap.Fix(&r.h, it.idx)
	} else {
		it := &reapItem{key: key, rev: e.Revision(), created: e.Created(), deadline: deadline}
		heap.Push(&r.h, it)
		r.items[key] = it
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run reaps due entries until bg ends: it sleeps until the earliest deadline (or a change of
// the heap), hands the entry to reap and looks at it again after recheck if the delete marker
// has not removed it by then.
func (r *unclaimedReaper) run(bg context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		r.mu.Lock()
		var due *reapItem
		wait := time.Hour
		if len(r.h) > 0 {
			wait = time.Until(r.h[0].deadline)
			if wait <= 0 {
				due = r.h[0]
				due.deadline = time.Now().Add(r.recheck)
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

// startUnclaimedReaper loads the current unclaimed_sessions entries (so that the reaper knows
// the bucket before the matchmaker answers requests) and then keeps the watch and the reaper's
// timer running until bg ends.
func (m *Matchmaker) startUnclaimedReaper(startCtx, bg context.Context) error {
	r := newUnclaimedReaper(m.cfg.ReadinessLimit+m.cfg.ClaimGrace, m.reapUnclaimed)
	m.mu.Lock() // the metrics read it under mu (unclaimedStats), possibly during Start
	m.unclaim = r
	m.mu.Unlock()
	ready := make(chan error, 1)
	m.goBackground(func() {
		m.watchKV(bg, m.b.UnclaimedSessions, "unclaimed_sessions", ready, m.unclaim.reset,
			func(e jetstream.KeyValueEntry, _ bool) { m.onUnclaimedEntry(bg, e) })
	})
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("matchmaker: watch unclaimed_sessions: %w", err)
		}
	case <-startCtx.Done():
		return fmt.Errorf("matchmaker: watch unclaimed_sessions: %w", startCtx.Err())
	}
	m.goBackground(func() { m.unclaim.run(bg) })
	return nil
}

// watchKV follows every key of kv until bg ends. Each watch first replays the current entries
// (replaying is true for them), then follows the updates; a watch that fails or ends is
// started again with backoff, after restart (when not nil) has been called. When ready is not
// nil it receives the outcome of the first watch: nil once its replay is done, or the error of
// its start, which ends watchKV.
//
// A watch is also started again, at once, when the NATS connection reconnects: the watch's
// ordered consumer may have lived on a server that restarted or died, and nats.go would only
// notice after two missed idle heartbeats (10 s), during which no entry is delivered.
func (m *Matchmaker) watchKV(bg context.Context, kv jetstream.KeyValue, name string, ready chan<- error,
	restart func(), onEntry func(e jetstream.KeyValueEntry, replaying bool)) {
	var reconnected chan nats.Status // nil (never ready) without a connection (unit tests)
	if m.nc != nil {
		reconnected = m.nc.StatusChanged(nats.CONNECTED)
		defer m.nc.RemoveStatusListener(reconnected)
	}
	b := backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Start()
	for bg.Err() == nil {
		w, err := kv.WatchAll(bg)
		if err != nil {
			if ready != nil {
				ready <- err
				return
			}
			m.log.Warn(name+" watch failed, retrying", logkey.Err, err)
			_ = b.Wait(bg)
			continue
		}
		b.Reset()
		if restart != nil {
			restart()
		}
		end := m.followWatch(bg, kv, w, reconnected, &ready, onEntry)
		_ = w.Stop()
		switch {
		case bg.Err() != nil:
		case end == watchReconnected:
			// Drain further reconnect events of the same outage, then watch again right away
			// (a start that fails while JetStream recovers is retried with backoff).
			for len(reconnected) > 0 {
				<-reconnected
			}
			m.log.Info(name + " watch restarting after a NATS reconnect")
		case end == watchStalled:
			m.log.Warn(name+" watch delivered nothing while its bucket changed; restarting it", "checked_every", watchStallCheck)
		default:
			m.log.Warn(name + " watch ended, restarting")
			_ = b.Wait(bg)
		}
	}
}

// watchStallCheck is how often a running watch is compared with its bucket's stream (one
// STREAM.INFO request). A watch that delivered nothing while the stream held a newer entry for
// a whole interval (two checks) is stalled —
// its ordered consumer was lost with a cluster node while this connection stayed up, and nats.go
// would notice only after two missed idle heartbeats (10 s) — and is started again.
const watchStallCheck = time.Second

// watchEnd says why followWatch returned.
type watchEnd int

const (
	watchEnded       watchEnd = iota // the watch's channel closed
	watchReconnected                 // the NATS connection reconnected
	watchStalled                     // the watch stopped delivering (see watchStallCheck)
)

// followWatch hands the entries of w to onEntry (replaying is true for the initial replay)
// until the watch ends, the connection reconnects, or the watch stalls. When *ready is not nil
// it receives nil once the replay is done, and *ready becomes nil.
func (m *Matchmaker) followWatch(bg context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher,
	reconnected <-chan nats.Status, ready *chan<- error, onEntry func(e jetstream.KeyValueEntry, replaying bool)) watchEnd {
	check := time.NewTicker(watchStallCheck)
	defer check.Stop()
	replaying := true
	// last is the highest revision delivered; after the replay at least the stream's last
	// sequence then (entries purged since are not replayed).
	var last, suspectAt uint64
	var suspectSince time.Time // zero: not suspect
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return watchEnded
			case e == nil:
				replaying = false
				if seq, err := streamLastSeq(bg, kv); err == nil {
					last = max(last, seq)
				}
				if *ready != nil {
					*ready <- nil
					*ready = nil
				}
			default:
				last = max(last, e.Revision())
				onEntry(e, replaying)
			}
		case <-reconnected:
			return watchReconnected
		case <-check.C:
			if replaying || len(w.Updates()) > 0 {
				continue // entries are still coming: behind, not stalled
			}
			seq, err := streamLastSeq(bg, kv)
			if err != nil || seq <= last {
				suspectSince = time.Time{}
				continue
			}
			if !suspectSince.IsZero() && suspectAt == last && time.Since(suspectSince) >= watchStallCheck {
				return watchStalled
			}
			if suspectSince.IsZero() || suspectAt != last {
				suspectSince, suspectAt = time.Now(), last
			}
		}
	}
}

// streamLastSeq returns the last sequence of kv's stream (the revision of its newest entry, or
// of one purged since).
func streamLastSeq(bg context.Context, kv jetstream.KeyValue) (uint64, error) {
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || si.StreamInfo() == nil {
		return 0, errors.New("matchmaker: KV status without stream info")
	}
	return si.StreamInfo().State.LastSeq, nil
}

// reapUnclaimed queues the deletion of an unclaimed session whose deadline passed, unless the
// session was claimed after all. It first takes the reaping by deleting the session's
// unclaimed_sessions entry with a compare-and-set on revision rev: the reapers of the other
// matchmakers, and a grant that comes late in the session's life (keepUnclaimed re-arms the
// entry with a compare-and-set on the same revision), race for that one write, so a player is
// never handed a token for a session that is being reaped, and only one reaper queues it.
func (m *Matchmaker) reapUnclaimed(bg context.Context, key string, rev uint64) {
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	b := m.b
	e, err := b.UnclaimedSessions.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Removed meanwhile: claimed, given up by its request, or reaped by another matchmaker
		// (which queued the deletion). The watch's delete marker forgets it here.
		return
	case err != nil:
		m.log.Warn("reaper: unclaimed_sessions lookup failed, will retry", logkey.SessionID, key, logkey.Err, err)
		return
	case e.Revision() != rev || time.Since(e.Created()) < m.cfg.ReadinessLimit+m.cfg.ClaimGrace:
		// Re-armed since (a late grant) but the watch lags behind, e.g. during a stream-leader
		// election: take the entry as it is now.
		m.unclaim.apply(e)
		return
	}
	// Claimed after all (the active-connection watch may lag behind): just forget it.
	if _, err := b.ActiveConnections.Get(ctx, key); err == nil {
		_ = b.UnclaimedSessions.Delete(ctx, key, jetstream.LastRevision(rev))
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.log.Warn("reaper: active_connections lookup failed, will retry", logkey.SessionID, key, logkey.Err, err)
		return
	}
	if err := b.UnclaimedSessions.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		if isRevisionMismatch(err) {
			m.log.Debug("reaper: unclaimed entry re-armed by a late grant or reaped by another matchmaker", logkey.SessionID, key)
			return // the watch brings the new revision or the delete marker
		}
		m.log.Warn("reaper: could not take the unclaimed entry, will retry", logkey.SessionID, key, logkey.Err, err)
		return
	}
	// The reaping is ours, and the entry that would make a reaper try again is gone: retry the
	// enqueue through a NATS failover.
	err = retryNATS(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		err := b.EnqueueSessionDelete(ctx, key, unclaimedIncarnation(rev))
		if errors.Is(err, bus.ErrBadSessionID) {
			return backoff.Permanent(err)
		}
		return err
	})
	switch {
	case errors.Is(err, bus.ErrBadSessionID):
		m.log.Error("reaper: unclaimed entry is not a session id; removed it", "key", key)
		return
	case err != nil:
		// Record the session again, so that a reaper (this one, after the readiness limit and
		// the grace) tries once more rather than leaving it to reconciliation.
		m.log.Error("reaper: could not queue the deletion of an unclaimed session; recording it again", logkey.SessionID, key, logkey.Err, err)
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(bg), 10*time.Second)
		defer pcancel()
		if _, err := m.trackUnclaimedCtx(pctx, key); err != nil {
			m.log.Error("reaper: could not record the unclaimed session again; reconciliation will find it", logkey.SessionID, key, logkey.Err, err)
		}
		return
	}
	m.met.reaped.Inc()
	m.met.deleteEnqueued.WithLabelValues("unclaimed").Inc()
	m.log.Info("unclaimed session reaped, deletion queued", logkey.SessionID, key)
}

// onUnclaimedEntry takes one entry of the unclaimed_sessions watch. The two watches are
// separate consumers: a player who connects quickly can have its session's active_connections
// put delivered before the unclaimed_sessions put the create wrote, and then
// onActiveConnection did not know the entry to drop. So an entry that arrives for a session
// already claimed is dropped here (compare-and-set on its revision: a second drop of the same
// entry, by onActiveConnection or another matchmaker, changes nothing).
func (m *Matchmaker) onUnclaimedEntry(bg context.Context, e jetstream.KeyValueEntry) {
	m.unclaim.apply(e)
	if e.Operation() != jetstream.KeyValuePut || !m.claims.has(e.Key()) {
		return
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if m.dropClaimedEntry(ctx, e.Key(), jetstream.LastRevision(e.Revision())) {
		m.log.Info("session claimed by a player", logkey.SessionID, e.Key())
	}
}

// dropClaimedEntry deletes a claimed session's unclaimed_sessions entry (opts: a compare-and-set
// on its revision) and reports whether it did. A failed compare-and-set means the entry was
// dropped or re-armed meanwhile (the watch brings that entry); another failure is logged, and
// the reaper drops the entry at its deadline (it checks active_connections first).
func (m *Matchmaker) dropClaimedEntry(ctx context.Context, sid string, opts ...jetstream.KVDeleteOpt) bool {
	err := m.b.UnclaimedSessions.Delete(ctx, sid, opts...)
	if err != nil && !isRevisionMismatch(err) {
		m.log.Warn("could not drop claimed session from unclaimed_sessions; the reaper will", logkey.SessionID, sid, logkey.Err, err)
	}
	return err == nil
}

// isRevisionMismatch reports whether err is a KV compare-and-set conflict: the key's latest
// revision is not the one expected (JetStream code 10071, or 10164 on replicated streams).
func isRevisionMismatch(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ---------------------------------------------------------------------------------------------
// Active-connection watcher.

// watchActiveConnections: a put claims the session (drop it from unclaimed_sessions); a delete
// or purge means the player left: queue the session's deletion.
func (m *Matchmaker) watchActiveConnections(bg context.Context) {
	m.watchKV(bg, m.b.ActiveConnections, "active_connections", nil, m.claims.reset,
		func(e jetstream.KeyValueEntry, replaying bool) { m.onActiveConnection(bg, e, replaying) })
}

func (m *Matchmaker) onActiveConnection(bg context.Context, e jetstream.KeyValueEntry, replaying bool) {
	sid := e.Key()
	m.claims.apply(e)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		if m.unclaim.has(sid) && m.dropClaimedEntry(ctx, sid) {
			m.log.Info("session claimed by a player", logkey.SessionID, sid, logkey.ClientID, string(e.Value()))
		}
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		if replaying && time.Since(e.Created()) > replayDeleteWindow {
			return
		}
		err := retryNATS(ctx, 200*time.Millisecond, func(ctx context.Context) error {
			return m.b.EnqueueSessionDelete(ctx, sid, markerIncarnation(e.Revision()))
		})
		if err != nil {
			// Not lost (e.g. a disconnect during shutdown): the next matchmaker start replays this
			// delete marker (replayDeleteWindow), and the reconciler deletes a session that no
			// bucket knows any more.
			m.log.Warn("could not queue deletion of a session whose player left", logkey.SessionID, sid, logkey.Err, err,
				"note", "the next matchmaker start or the reconciler deletes it")
			return
		}
		m.met.deleteEnqueued.WithLabelValues("disconnected").Inc()
		m.log.Info("player left, session deletion queued", logkey.SessionID, sid)
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
				_ = msg.Nak() // shutting down: hand it to another instance now, not after AckWait
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				m.deleteQueued(bg, msg)
			}()
		}, jetstream.PullMaxMessages(2*m.cfg.DeleteWorkers),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				m.log.Debug("delete consumer", logkey.Err, err)
			}))
		if err != nil {
			m.log.Warn("delete worker: consume failed, retrying", logkey.Err, err)
			_ = backoff.Sleep(bg, 2*time.Second)
			continue
		}
		select {
		case <-bg.Done():
			// Messages already pulled are handed to the callback, which naks them, instead of
			// waiting out the consumer's AckWait (30 s) on the server.
			cc.Drain()
			t := time.NewTimer(2 * time.Second)
			select {
			case <-cc.Closed():
			case <-t.C:
				cc.Stop()
			}
			t.Stop()
			continue
		case <-cc.Closed():
			m.log.Warn("delete worker: consumer closed, restarting")
			_ = backoff.Sleep(bg, time.Second)
		}
		cc.Stop()
	}
	wg.Wait()
}

// Incarnations (bus.EnqueueSessionDelete) the matchmaker queues deletions with: the delete marker
// a player's leaving left in active_connections, or the unclaimed_sessions entry of a session
// nobody claimed, each at its revision.
const (
	markerIncarnationPrefix    = "ac-"
	unclaimedIncarnationPrefix = "uc-"
)

func markerIncarnation(rev uint64) string {
	return markerIncarnationPrefix + strconv.FormatUint(rev, 10)
}

func unclaimedIncarnation(rev uint64) string {
	return unclaimedIncarnationPrefix + strconv.FormatUint(rev, 10)
}

// parseIncarnation splits an incarnation queued by this package into its prefix and revision;
// ok is false for anything else (none, or another service's).
func parseIncarnation(inc string) (prefix string, rev uint64, ok bool) {
	for _, p := range []string{markerIncarnationPrefix, unclaimedIncarnationPrefix} {
		if n, found := strings.CutPrefix(inc, p); found {
			rev, err := strconv.ParseUint(n, 10, 64)
			return p, rev, err == nil
		}
	}
	return "", 0, false
}

// reuseClockMargin: an entry of another bucket than the one a queued deletion names supersedes
// the deletion only when written this long after it was queued. The two timestamps may come
// from different cluster nodes; a session id is reused minutes later, not within a second.
const reuseClockMargin = time.Second

// deleteQueued handles one message of the delete queue: unless the session id was given to a
// new session after the message was queued (see superseded), the session is deleted
// (deleteOne), and once it is gone the active_connections delete marker that called for the
// deletion, if any, is purged, so that a matchmaker started later does not replay it.
func (m *Matchmaker) deleteQueued(bg context.Context, msg jetstream.Msg) {
	sid := string(msg.Data())
	var queued time.Time
	if md, err := msg.Metadata(); err == nil {
		queued = md.Timestamp
	}
	incPrefix, incRev, _ := parseIncarnation(msg.Headers().Get(bus.HeaderIncarnation))
	if bus.ValidSessionID(sid) && !queued.IsZero() {
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		newer, err := m.superseded(ctx, sid, queued, incPrefix, incRev)
		cancel()
		switch {
		case err != nil:
			// Deleting is the safe side: a session id is reused only by a simulator, while a
			// deletion held back (e.g. the NATS user may not read the buckets) costs money.
			m.log.Warn("delete queue: could not check whether the session id was reused; deleting anyway", logkey.SessionID, sid, logkey.Err, err)
		case newer != "":
			m.met.deletes.WithLabelValues("superseded").Inc()
			m.log.Warn("delete queue: the session id was reused by a newer session after this deletion was queued; not deleting it",
				logkey.SessionID, sid, "queued", queued, "newer_entry", newer)
			m.ack(msg, sid)
			return
		}
	}
	m.deleteOne(bg, msg, func(ctx context.Context) {
		if incPrefix != markerIncarnationPrefix {
			return
		}
		if err := m.b.PurgeActiveConnection(ctx, sid, incRev); err != nil {
			m.log.Warn("could not purge the delete marker of a deleted session (a later matchmaker start queues its deletion again, harmlessly)",
				logkey.SessionID, sid, logkey.Err, err)
		}
	})
}

// superseded returns the bucket of a newer entry for sid — an unclaimed_sessions or
// active_connections put — than the queued deletion (incarnation incPrefix, incRev, queued at
// queued), or "" when there is none. Such an entry belongs to a newer session with the same id
// (e.g. a simulator restarted with the same seed reuses ids) or to a player who connected after
// all: the deletion is not for it. In the bucket the incarnation names, a higher revision is
// newer; in the other, an entry written more than reuseClockMargin after queued.
func (m *Matchmaker) superseded(ctx context.Context, sid string, queued time.Time, incPrefix string, incRev uint64) (string, error) {
	for _, b := range []struct {
		kv     jetstream.KeyValue
		prefix string
	}{{m.b.UnclaimedSessions, unclaimedIncarnationPrefix}, {m.b.ActiveConnections, markerIncarnationPrefix}} {
		e, err := b.kv.Get(ctx, sid)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return "", err
		case incPrefix == b.prefix:
			if e.Revision() > incRev {
				return b.kv.Bucket(), nil
			}
		case e.Created().After(queued.Add(reuseClockMargin)):
			return b.kv.Bucket(), nil
		}
	}
	return "", nil
}

// deleteOne deletes the session of msg on Edgegap; once it is gone (deleted, or not found), gone
// (when not nil) runs and msg is acked.
func (m *Matchmaker) deleteOne(bg context.Context, msg jetstream.Msg, gone func(context.Context)) {
	sid := string(msg.Data())
	if !bus.ValidSessionID(sid) {
		m.log.Error("delete queue: message is not a session id; dropping it", logkey.Subject, msg.Subject())
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(bg, m.cfg.EdgegapCallTimeout)
	_, err := m.api.DeleteSession(ctx, sid)
	cancel()
	switch {
	case err == nil:
		m.met.deletes.WithLabelValues("deleted").Inc()
		m.log.Info("session deleted on Edgegap", logkey.SessionID, sid)
		m.settleGone(bg, msg, sid, gone)
		return
	case errors.Is(err, edgegap.ErrNotFound):
		m.met.deletes.WithLabelValues("already_gone").Inc()
		m.log.Info("session already gone on Edgegap", logkey.SessionID, sid, "status", edgegap.StatusCode(err))
		m.settleGone(bg, msg, sid, gone)
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
	delay := m.deleteRetry().Delay(int(min(n, 64)))
	m.met.deletes.WithLabelValues("retry").Inc()
	switch {
	case n == uint64(m.cfg.DeleteStuckAfter):
		m.met.deletesStuck.Inc()
		fallthrough
	case n > uint64(m.cfg.DeleteStuckAfter):
		m.log.Error("session delete keeps failing; still queued", logkey.SessionID, sid, "attempts", n, logkey.RetryIn, delay, logkey.Err, err)
	default:
		m.log.Warn("session delete failed; will retry", logkey.SessionID, sid, logkey.Attempt, n, logkey.RetryIn, delay, logkey.Err, err)
	}
	if err := msg.NakWithDelay(delay); err != nil {
		m.log.Warn("delete queue: nak failed (message will be redelivered after the ack wait)", logkey.SessionID, sid, logkey.Err, err)
	}
}

// deleteRetry is the redelivery delay of a failed deletion: DeleteRetryBase doubling with each
// delivery up to DeleteRetryMax (JetStream's NakWithDelay does the waiting).
func (m *Matchmaker) deleteRetry() backoff.Policy {
	return backoff.Policy{Base: m.cfg.DeleteRetryBase, Max: m.cfg.DeleteRetryMax}
}

// settleGone runs gone (when not nil) and acks msg: its session is gone.
func (m *Matchmaker) settleGone(bg context.Context, msg jetstream.Msg, sid string, gone func(context.Context)) {
	if gone != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(bg), 5*time.Second)
		gone(ctx)
		cancel()
	}
	m.ack(msg, sid)
}

func (m *Matchmaker) ack(msg jetstream.Msg, sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		m.log.Warn("delete queue: ack failed (the delete will be repeated, harmlessly)", logkey.SessionID, sid, logkey.Err, err)
	}
}

// ---------------------------------------------------------------------------------------------
// Reconciliation.

// runReconciler periodically lists Edgegap's sessions and deletes those of this deployment
// (webhook_url equal to SessionWebhookURL, see ownSession) that no bucket knows (not
// unclaimed, not an active connection) for longer than ReadinessLimit + ClaimGrace. This covers
// a crash between Edgegap's create and our unclaimed_sessions write, a create that timed out
// on our side although Edgegap created the session, and watch gaps. It also ends claimed
// sessions whose game server is gone (checkClaimed). Without SessionWebhookURL only the latter
// runs, and a round lists sessions only when claimed sessions are known.
//
// A suspect's age is taken from Edgegap (its elapsed time when first seen: a create that timed
// out on our side may have made it long before), and a round runs every ReconcileInterval or at
// the earliest suspect's deadline (creation + ReadinessLimit + ClaimGrace), but never sooner than
// reconcileGap after the previous one: a suspect is deleted on a later round than the one that
// first saw it, so a session whose deletion is merely on its way (the player just left) has that
// long to disappear. An orphan lives about ReadinessLimit + ClaimGrace (at most one interval
// more to be first seen), no longer up to two intervals more.
func (m *Matchmaker) runReconciler(bg context.Context) {
	suspects := make(map[string]time.Time)
	t := time.NewTimer(m.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-bg.Done():
			return
		case <-t.C:
		}
		if m.cfg.SessionWebhookURL != "" || m.claims.count() > 0 {
			m.reconcileOnce(bg, suspects)
		}
		t.Reset(m.nextReconcile(suspects, time.Now()))
	}
}

// reconcileGap is the least time between two reconcile rounds brought forward by a suspect's
// deadline (or a quarter of ReadinessLimit + ClaimGrace when shorter, as in tests).
const reconcileGap = 10 * time.Second

// nextReconcile returns the wait before the next reconcile round: ReconcileInterval, or less
// when a suspect's deadline comes sooner (but at least reconcileGap).
func (m *Matchmaker) nextReconcile(suspects map[string]time.Time, now time.Time) time.Duration {
	limit := m.cfg.ReadinessLimit + m.cfg.ClaimGrace
	wait := m.cfg.ReconcileInterval
	for _, created := range suspects {
		wait = min(wait, max(created.Add(limit).Sub(now), min(reconcileGap, limit/4)))
	}
	return wait
}

// sessionAge asks Edgegap how long ago a session was created (its elapsed seconds); 0 when it
// cannot tell.
func (m *Matchmaker) sessionAge(ctx context.Context, sid string) time.Duration {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
	defer cancel()
	s, err := m.api.GetSession(cctx, sid)
	if err != nil || s.Elapsed <= 0 {
		return 0
	}
	return time.Duration(s.Elapsed) * time.Second
}

func (m *Matchmaker) reconcileOnce(bg context.Context, suspects map[string]time.Time) {
	ctx, cancel := context.WithTimeout(bg, 2*m.cfg.EdgegapCallTimeout)
	defer cancel()
	listed := time.Now()
	list, err := m.api.ListAllSessions(ctx)
	if err != nil {
		m.log.Warn("reconcile: session list failed", logkey.Err, err)
		return
	}
	now := time.Now()
	seen := make(map[string]bool, len(list))
	var ours []edgegap.SessionSummary
	for _, s := range list {
		if !m.ownSession(s) {
			continue // another app's, another deployment's or a Rust bevygap's session
		}
		ours = append(ours, s)
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
		created, ok := suspects[sid]
		if !ok {
			// First seen: backdated to its creation (see runReconciler); deleted on a later round.
			suspects[sid] = now.Add(-m.sessionAge(ctx, sid))
			continue
		}
		if now.Sub(created) < m.cfg.ReadinessLimit+m.cfg.ClaimGrace {
			continue
		}
		if err := m.b.EnqueueSessionDelete(ctx, sid, ""); err != nil {
			m.log.Warn("reconcile: could not queue deletion", logkey.SessionID, sid, logkey.Err, err)
			continue
		}
		delete(suspects, sid)
		m.met.reconciled.Inc()
		m.met.deleteEnqueued.WithLabelValues("reconcile").Inc()
		m.log.Warn("reconcile: session unknown to every bucket, deletion queued", logkey.SessionID, sid)
	}
	m.recordEdgegapView(ours)
	m.checkClaimed(ctx, list, listed)
	m.log.Debug("reconcile: session list checked", "listed", len(list), "ours", len(seen), "suspects", len(suspects))
	for sid := range suspects {
		if !seen[sid] {
			delete(suspects, sid)
		}
	}
	m.met.edgegapSessions.Set(float64(len(seen)))
	m.met.unknownSessions.Set(float64(len(suspects)))
}

// ownSession reports whether s was created by this deployment: Edgegap echoes the webhook_url
// given at creation in the session list, and ours (normally carrying a secret token) is unique
// to this deployment. A session without it, or with another URL, is never touched.
func (m *Matchmaker) ownSession(s edgegap.SessionSummary) bool {
	return m.cfg.SessionWebhookURL != "" && s.WebhookURL != nil && *s.WebhookURL == m.cfg.SessionWebhookURL
}
