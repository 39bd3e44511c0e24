package matchmaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// queueHolder is what the holder of a queue's lease knows of the queue: its tickets, as the
// watch of their keys reports them.
type queueHolder struct {
	q match.Queue

	mu      sync.Mutex
	tickets map[string]*heldTicket // key -> ticket
	inboxes map[string]string      // inbox -> key of a waiting ticket
	waiting int                    // players of the waiting tickets
}

// count adds the players of t to waiting (sign 1) or removes them (sign -1), when t waits.
// Caller holds h.mu.
func (h *queueHolder) count(t *heldTicket, sign int) {
	if t != nil && t.rec.State == ticketWaiting {
		h.waiting += sign * len(t.rec.Players)
	}
}

type heldTicket struct {
	rec ticketRecord
	rev uint64
}

// inboxKey returns the key of the waiting ticket whose player answers on inbox.
func (h *queueHolder) inboxKey(inbox string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, ok := h.inboxes[inbox]
	return k, ok
}

// apply takes one watch entry. It returns the ticket, whether it is a new waiting ticket
// (fresh), and whether it is waiting and was not before (wake: a match may form now; claims and
// deletions echoed by the watch cannot make one, and a pass over a big queue is not free).
func (h *queueHolder) apply(ent jetstream.KeyValueEntry) (t *heldTicket, fresh, wake bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := ent.Key()
	old := h.tickets[key]
	if old != nil && ent.Operation() == jetstream.KeyValuePut && old.rev > ent.Revision() {
		return nil, false, false // a late echo of an older write
	}
	if old != nil {
		for _, p := range old.rec.Players {
			delete(h.inboxes, p.Inbox)
		}
		h.count(old, -1)
		delete(h.tickets, key)
	}
	if ent.Operation() != jetstream.KeyValuePut {
		return nil, false, false
	}
	var rec ticketRecord
	if err := json.Unmarshal(ent.Value(), &rec); err != nil {
		return nil, false, false
	}
	t = &heldTicket{rec: rec, rev: ent.Revision()}
	h.tickets[key] = t
	h.count(t, 1)
	if rec.State == ticketWaiting {
		for _, p := range rec.Players {
			h.inboxes[p.Inbox] = key
		}
	}
	waiting := rec.State == ticketWaiting
	return t, old == nil && waiting, waiting && (old == nil || old.rec.State != ticketWaiting)
}

// set records a write of this holder (a claim or release), ahead of its watch echo.
func (h *queueHolder) set(key string, rec ticketRecord, rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.tickets[key]
	if old != nil && old.rev >= rev {
		return
	}
	h.count(old, -1)
	t := &heldTicket{rec: rec, rev: rev}
	h.tickets[key] = t
	h.count(t, 1)
}

// compete takes part in the competition for q's lease until ctx ends: it tries to create the
// lease entry, and while it holds it, forms q's matches.
func (e *queueEngine) compete(ctx context.Context, q match.Queue) {
	key := e.leaseKey(q.Name)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, leaseRetryEvery)
		rev, err := e.pb.Leases.Create(cctx, key, []byte(e.holder))
		cancel()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
				e.m.log.Debug("queue lease: create failed", "queue", q.Name, logkey.Err, err)
			}
			_ = backoff.Sleep(ctx, leaseRetryEvery)
			continue
		}
		e.m.log.Info("queue lease taken: forming matches", "queue", q.Name, "holder", e.holder)
		e.hold(ctx, q, key, rev)
	}
}

// hold forms q's matches while the lease (revision rev) is renewed. A renewal that fails ends
// the forming at once; when the forming ends otherwise (shutdown, a failed watch) the lease is
// given up so that another matchmaker takes over without waiting for its TTL.
func (e *queueEngine) hold(ctx context.Context, q match.Queue, key string, rev uint64) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held := e.m.met.queue.leaseHeld.WithLabelValues(q.Name)
	held.Set(1)
	defer held.Set(0)
	var cur atomic.Uint64
	cur.Store(rev)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(leaseRenewEvery)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			cctx, c := context.WithTimeout(hctx, leaseRenewEvery)
			r, err := e.pb.Leases.Update(cctx, key, []byte(e.holder), cur.Load())
			c()
			if err != nil {
				if hctx.Err() == nil {
					e.m.log.Warn("queue lease lost: no longer forming matches", "queue", q.Name, logkey.Err, err)
				}
				cancel()
				return
			}
			cur.Store(r)
		}
	})
	e.form(hctx, q)
	cancel()
	wg.Wait()
	// Give the lease up (a no-op when it was lost: the revision no longer matches), so that
	// after a shutdown or a failed watch another matchmaker, or this one, takes over at once
	// rather than after the TTL.
	dctx, c := context.WithTimeout(context.Background(), time.Second)
	_ = e.pb.Leases.Delete(dctx, key, jetstream.LastRevision(cur.Load()))
	c()
}

// form is the holder's loop for q: watch the queue's tickets, give back the tickets of crashed
// holders, form matches on every change (coalesced) and on a tick, tell waiting players how
// the queue stands.
func (e *queueEngine) form(ctx context.Context, q match.Queue) {
	h := &queueHolder{q: q, tickets: map[string]*heldTicket{}, inboxes: map[string]string{}}
	w, err := e.pb.Tickets.WatchFiltered(ctx, []string{e.ticketPrefix(q.Name) + "*"})
	if err != nil {
		if ctx.Err() == nil {
			e.m.log.Warn("queue: ticket watch failed", "queue", q.Name, logkey.Err, err)
			_ = backoff.Sleep(ctx, leaseRetryEvery)
		}
		return
	}
	defer func() { _ = w.Stop() }()
	e.mu.Lock()
	e.queues[q.Name] = h
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.queues[q.Name] == h {
			delete(e.queues, q.Name)
		}
		e.mu.Unlock()
	}()

	replaying := true
	formT := time.NewTicker(formEvery)
	defer formT.Stop()
	progT := time.NewTicker(progressEvery)
	defer progT.Stop()
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	armed := false
	// A pass over a big queue costs (tens of ms at 10k tickets): the periodic pass, for time
	// alone (widening windows, relaxing minimums, expiry), then runs at most at a tenth of the
	// holder's time.
	var lastPass time.Time
	var lastDur time.Duration
	waitingG := e.m.met.queue.waiting.WithLabelValues(q.Name)
	defer waitingG.Set(0)
	passH := e.m.met.queue.formPass.WithLabelValues(q.Name)
	pass := func() {
		t0 := time.Now()
		e.formOnce(ctx, h)
		lastPass, lastDur = time.Now(), time.Since(t0)
		passH.Observe(lastDur.Seconds())
		h.mu.Lock()
		waitingG.Set(float64(h.waiting))
		h.mu.Unlock()
	}
	for {
		select {
		case ent, ok := <-w.Updates():
			if !ok {
				return
			}
			if ent == nil {
				replaying = false
				e.recover(ctx, h)
				pass()
				// A new holder speaks at once: the waiting players heard nothing during the
				// takeover.
				e.tellAll(h)
				continue
			}
			t, fresh, wake := h.apply(ent)
			if fresh && !replaying {
				e.tell(h, []*heldTicket{t})
			}
			if wake && !replaying && !armed {
				// Coalesce a burst of changes into one pass.
				soon.Reset(formCoalesce)
				armed = true
			}
		case <-soon.C:
			armed = false
			pass()
		case <-formT.C:
			if !replaying && time.Since(lastPass) >= max(formEvery, 10*lastDur) {
				pass()
			}
		case <-progT.C:
			if !replaying {
				e.recover(ctx, h)
				e.tellAll(h)
			}
		case <-ctx.Done():
			return
		}
	}
}

// formCoalesce is how long the holder waits after a ticket change before forming, so that a
// burst of changes costs one pass.
const formCoalesce = 10 * time.Millisecond

// tell sends each player of ts how the queue stands.
func (e *queueEngine) tell(h *queueHolder, ts []*heldTicket) {
	h.mu.Lock()
	n := h.waiting
	h.mu.Unlock()
	now := time.Now()
	for _, t := range ts {
		need := h.q.MinAt(now.Sub(t.rec.Created))
		f := protocol.Progress(fmt.Sprintf("Waiting in queue %s: %d of %d players", h.q.Name, n, need))
		for _, p := range t.rec.Players {
			streamReply{nc: e.m.nc, inbox: p.Inbox, m: e.m}.send(f)
		}
	}
}

// tellAll sends every waiting player how the queue stands.
func (e *queueEngine) tellAll(h *queueHolder) {
	h.mu.Lock()
	var ts []*heldTicket
	for _, t := range h.tickets {
		if t.rec.State == ticketWaiting && len(t.rec.Players) > 0 {
			ts = append(ts, t)
		}
	}
	h.mu.Unlock()
	e.tell(h, ts)
}

// claimStuckAfter is how long a claim may last before a new holder gives the ticket back to
// the queue even though its holder still runs: longer than any group setup (the lead's
// readiness wait, then the seats', each bounded by ReadinessLimit plus an Edgegap call).
func (e *queueEngine) claimStuckAfter() time.Duration {
	c := e.m.cfg
	return 2*(c.ReadinessLimit+c.EdgegapCallTimeout) + c.ClaimGrace
}

// recover gives back to the queue the tickets claimed by a matchmaker that is gone (its alive
// mark expired: it crashed or lost NATS before finishing the match) or claimed too long ago.
// The sessions such a holder created are in unclaimed_sessions already: the reaper deletes
// them.
func (e *queueEngine) recover(ctx context.Context, h *queueHolder) {
	h.mu.Lock()
	type stale struct {
		key string
		t   heldTicket
	}
	var cands []stale
	for k, t := range h.tickets {
		if t.rec.State == ticketMatched {
			cands = append(cands, stale{k, *t})
		}
	}
	h.mu.Unlock()
	alive := map[string]bool{}
	now := time.Now()
	for _, c := range cands {
		holder := c.t.rec.Holder
		if holder == e.holder && e.isRunning(c.key) {
			continue
		}
		a, known := alive[holder]
		if !known {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := e.pb.Leases.Get(cctx, e.aliveKey(holder))
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // cannot tell: try again later
			}
			a = err == nil && holder != e.holder
			alive[holder] = a
		}
		if a && now.Sub(c.t.rec.Claimed) < e.claimStuckAfter() {
			continue
		}
		rec := c.t.rec
		rec.State, rec.Match, rec.Holder, rec.Claimed = ticketWaiting, "", "", time.Time{}
		b, _ := json.Marshal(rec)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		rev, err := e.pb.Tickets.Update(cctx, c.key, b, c.t.rev)
		cancel()
		if err != nil {
			continue
		}
		h.set(c.key, rec, rev)
		e.m.log.Warn("queue: ticket of a vanished holder given back to the queue", "queue", h.q.Name, "ticket", c.key, "holder", holder)
	}
}

// isRunning reports whether key is claimed by a match this matchmaker runs.
func (e *queueEngine) isRunning(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[key]
}

// formOnce runs match.Form over q's waiting tickets and acts on the result: invalid and
// expired tickets are deleted (their players get the error), every match is claimed and run
// in a goroutine of its own.
func (e *queueEngine) formOnce(ctx context.Context, h *queueHolder) {
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	tickets := make([]match.Ticket, 0, len(h.tickets))
	e.mu.Lock()
	for k, t := range h.tickets {
		if t.rec.State != ticketWaiting || e.running[k] {
			continue
		}
		mt := match.Ticket{ID: k, Players: len(t.rec.Players), Props: t.rec.Props, Created: t.rec.Created}
		if t.rec.Backfill != nil {
			mt.Backfill = t.rec.Backfill.Slots
		}
		tickets = append(tickets, mt)
	}
	e.mu.Unlock()
	h.mu.Unlock()
	if len(tickets) == 0 {
		return
	}
	res := match.Form(h.q, tickets, time.Now())
	for _, inv := range res.Invalid {
		pe := match.PlayError(inv.Err)
		e.drop(ctx, h, inv.Ticket.ID, pe.Code, pe.Message, "invalid")
	}
	for _, t := range res.Expired {
		e.drop(ctx, h, t.ID, http.StatusRequestTimeout, h.q.ExpiredError().Error(), "expired")
	}
	for _, mt := range res.Matches {
		keys := make([]string, 0, len(mt.Tickets)+1)
		if mt.Backfill != nil {
			keys = append(keys, mt.Backfill.ID)
		}
		for _, t := range mt.Tickets {
			keys = append(keys, t.ID)
		}
		if !e.m.beginRequest() {
			return // shutting down: the tickets stay for the next holder
		}
		e.mu.Lock()
		for _, k := range keys {
			e.running[k] = true
		}
		e.mu.Unlock()
		go func() {
			defer e.m.inflight.Done()
			defer func() {
				e.mu.Lock()
				for _, k := range keys {
					delete(e.running, k)
				}
				e.mu.Unlock()
			}()
			e.claimAndRun(ctx, h, keys)
		}()
	}
}

// drop deletes a waiting ticket (compare-and-set) and ends its players' streams with an error.
func (e *queueEngine) drop(ctx context.Context, h *queueHolder, key string, code uint16, msg, reason string) {
	h.mu.Lock()
	t := h.tickets[key]
	h.mu.Unlock()
	if t == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := e.pb.Tickets.Delete(cctx, key, jetstream.LastRevision(t.rev))
	cancel()
	if err != nil {
		return
	}
	e.forget(t.rec)
	e.m.met.queue.dropped.WithLabelValues(h.q.Name, reason).Inc()
	e.m.log.Info("queue: ticket dropped", "queue", h.q.Name, "ticket", key, "code", code, "reason", msg)
	for _, p := range t.rec.Players {
		r := streamReply{nc: e.m.nc, inbox: p.Inbox, m: e.m}
		r.send(protocol.Error(code, msg))
		r.finish()
		e.m.finishMetrics("play", code, t.rec.Created)
	}
}

// claimAndRun claims the tickets of one match (compare-and-set on each revision; all or
// none), runs the match, then deletes the tickets.
func (e *queueEngine) claimAndRun(ctx context.Context, h *queueHolder, keys []string) {
	matchID, err := newTicketID()
	if err != nil {
		return
	}
	now := time.Now().UTC()
	claimed := make([]claimedTicket, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		h.mu.Lock()
		t := h.tickets[k]
		h.mu.Unlock()
		if t == nil {
			errs[i] = jetstream.ErrKeyNotFound
			continue
		}
		rec := t.rec
		rec.State, rec.Match, rec.Holder, rec.Claimed = ticketMatched, matchID, e.holder, now
		wg.Go(func() {
			b, err := json.Marshal(rec)
			if err != nil {
				errs[i] = err
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			rev, err := e.pb.Tickets.Update(cctx, k, b, t.rev)
			if err != nil {
				errs[i] = err
				return
			}
			claimed[i] = claimedTicket{key: k, rec: rec, rev: rev}
			h.set(k, rec, rev)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// Another writer won (a cancel, a new holder): give the claimed ones back.
		for i, c := range claimed {
			if errs[i] != nil || c.key == "" {
				continue
			}
			rec := c.rec
			rec.State, rec.Match, rec.Holder, rec.Claimed = ticketWaiting, "", "", time.Time{}
			b, _ := json.Marshal(rec)
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if rev, err := e.pb.Tickets.Update(cctx, c.key, b, c.rev); err == nil {
				h.set(c.key, rec, rev)
			}
			cancel()
		}
		e.m.met.queue.matches.WithLabelValues(h.q.Name, "conflict").Inc()
		e.m.log.Debug("queue: match not claimed, tickets changed", "queue", h.q.Name, logkey.Err, err)
		return
	}
	e.mu.Lock()
	run := e.run
	e.mu.Unlock()
	if err := run(e.m.reqCtx, h.q, claimed); err != nil {
		e.m.met.queue.matches.WithLabelValues(h.q.Name, "failed").Inc()
		e.m.log.Warn("queue: match failed", "queue", h.q.Name, "match", matchID, logkey.Err, err)
	} else {
		e.m.met.queue.matches.WithLabelValues(h.q.Name, "formed").Inc()
	}
	// The players have their answer: the tickets are done.
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range claimed {
		err := retryNATS(dctx, 100*time.Millisecond, func(ctx context.Context) error {
			err := e.pb.Tickets.Delete(ctx, c.key, jetstream.LastRevision(c.rev))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			e.m.log.Warn("queue: could not delete a finished ticket", "ticket", c.key, logkey.Err, err)
		}
		e.forget(c.rec)
	}
}

// runMatch puts the players of a claimed match on one game server: the queue's kind, or seats
// on a backfill ticket's deployment.
func (e *queueEngine) runMatch(ctx context.Context, q match.Queue, tickets []claimedTicket) error {
	var players []groupPlayer
	deployment := ""
	for _, t := range tickets {
		if t.rec.Backfill != nil {
			deployment = t.rec.Backfill.RequestID
			continue
		}
		for _, p := range t.rec.Players {
			ip, err := netip.ParseAddr(p.IP)
			if err != nil {
				r := streamReply{nc: e.m.nc, inbox: p.Inbox, m: e.m}
				r.send(protocol.Error(http.StatusBadRequest, "client_ip is not an IP address"))
				r.finish()
				continue
			}
			players = append(players, groupPlayer{ip: ip, inbox: p.Inbox, member: p.Member})
		}
	}
	if len(players) == 0 {
		return nil
	}
	e.m.log.Info("queue: match formed", "queue", q.Name, "players", len(players), "tickets", len(tickets), "backfill", deployment != "")
	return e.m.groupSessions(ctx, q.Kind, deployment, players)
}
