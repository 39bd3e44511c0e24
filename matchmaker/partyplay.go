package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// A party plays when every member, the leader included, has an open streaming request that
// names the party. Each request marks its member waiting in the party entry (compare-and-set);
// the request whose mark completes the party, or any waiting request that sees the party
// complete, takes the party's turn with one more compare-and-set (so exactly one matchmaker
// does), then either runs one group session for every member or submits the party to the
// leader's queue as one ticket. From then on the group or the queue answers every member's
// request; the other requests' waits end quietly. Whoever removes a waiting request from the
// party entry otherwise (a kick, a leave, a time limit, shutdown) ends that request's stream.

// partyQueue is what a party needs of the match queues (queue.go).
type partyQueue interface {
	// check validates, before the party is complete, a leader's queue and props for a party of
	// players (404 unknown queue, 400 bad props or party larger than the queue's matches).
	check(queue string, props protocol.Props, players int) *requestError
	// submit puts the party in the queue as one ticket and returns its key; from then on the
	// queue answers every player.
	submit(ctx context.Context, queue string, players []groupPlayer, props protocol.Props) (string, *requestError)
	// withdraw takes a still waiting ticket out of its queue; false if it was matched or gone.
	withdraw(ctx context.Context, key string) bool
}

// startParties opens the party service: the management subscription on
// matchmaker.party.<game>.<version> (queue group [PartyQueueGroupFor]) and the watch of the
// parties that wakes the waiting requests of this process. queue is nil without match queues.
// bg bounds the watch.
func (m *Matchmaker) startParties(bg context.Context, pb *bus.PlayBuckets, queue partyQueue) (*partyService, error) {
	p := newPartyService(m, pb.Parties)
	p.tickets = pb.Tickets
	p.queue = queue
	subject := protocol.SubjectMatchmakerPartyPrefix + "." + m.cfg.AppName + "." + m.cfg.AppVersion
	sub, err := m.nc.QueueSubscribe(subject, PartyQueueGroupFor(m.cfg.AppName, m.cfg.AppVersion), p.onPartyRequest)
	if err != nil {
		return nil, fmt.Errorf("matchmaker: subscribe %s: %w", subject, err)
	}
	m.addSub(sub)
	m.goBackground(func() { p.watch(bg) })
	m.goBackground(func() {
		// Shutdown cancels bg after the request context, which ends every wait: the last
		// writes of the waits (a 503 for each) are done before Shutdown returns.
		<-bg.Done()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.active.Wait()
	})
	return p, nil
}

// partyWaiter is a member's waiting request held by this process.
type partyWaiter struct {
	code   string
	member string
	inbox  string

	sig       chan struct{} // a newer party entry is in latest
	cancelled chan struct{} // the player went away
	once      sync.Once

	mu      sync.Mutex
	latest  *partyRecord
	rev     uint64
	deleted bool
}

// offer hands the waiter a newer state of its party.
func (w *partyWaiter) offer(rec *partyRecord, rev uint64) {
	w.mu.Lock()
	if rev > w.rev {
		w.latest, w.rev, w.deleted = rec, rev, rec == nil
	}
	w.mu.Unlock()
	select {
	case w.sig <- struct{}{}:
	default:
	}
}

func (w *partyWaiter) take() (*partyRecord, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest, w.deleted
}

// onCancel is the cancel hook: the player of inbox went away. It never blocks.
func (p *partyService) onCancel(inbox string) {
	p.mu.Lock()
	w := p.waiters[inbox]
	p.mu.Unlock()
	if w != nil {
		w.once.Do(func() { close(w.cancelled) })
	}
}

func (p *partyService) register(w *partyWaiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiters[w.inbox] = w
	set := p.byCode[w.code]
	if set == nil {
		set = make(map[*partyWaiter]struct{})
		p.byCode[w.code] = set
	}
	set[w] = struct{}{}
}

func (p *partyService) unregister(w *partyWaiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters[w.inbox] == w {
		delete(p.waiters, w.inbox)
	}
	if set := p.byCode[w.code]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(p.byCode, w.code)
		}
	}
}

// watch follows the changes of this game's parties and wakes the waiters of this process.
// Waiters also read their party every tick, so a watch gap only slows them down.
func (p *partyService) watch(bg context.Context) {
	b := backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Start()
	for bg.Err() == nil {
		w, err := p.store.kv.Watch(bg, p.store.prefix+"*", jetstream.UpdatesOnly())
		if err != nil {
			p.m.log.Warn("party watch failed, retrying", logkey.Err, err)
			_ = b.Wait(bg)
			continue
		}
		b.Reset()
		for e := range w.Updates() {
			if e != nil {
				p.dispatch(e)
			}
		}
		_ = w.Stop()
		_ = b.Wait(bg)
	}
}

func (p *partyService) dispatch(e jetstream.KeyValueEntry) {
	code := strings.TrimPrefix(e.Key(), p.store.prefix)
	p.mu.Lock()
	set := p.byCode[code]
	ws := make([]*partyWaiter, 0, len(set))
	for w := range set {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	var rec *partyRecord
	if e.Operation() == jetstream.KeyValuePut {
		r, err := decodeParty(e.Value())
		if err != nil {
			p.m.log.Warn("undecodable party entry", "party", code, logkey.Err, err)
			return
		}
		rec = r
	}
	for _, w := range ws {
		w.offer(rec, e.Revision())
	}
}

// play serves a streaming request that names a party (its Acknowledged is sent): it marks the
// member waiting and answers the request, now or once the party plays. It returns at once.
func (p *partyService) play(r streamReply, req protocol.MatchmakerRequest, ip netip.Addr) {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.active.Add(1)
	}
	p.mu.Unlock()
	if closed {
		p.failStream(r, partyErr(http.StatusServiceUnavailable, "matchmaker shutting down"))
		return
	}
	go func() {
		defer p.active.Done()
		p.runPlay(r, req, ip)
	}()
}

// failStream ends a request with an error.
func (p *partyService) failStream(r streamReply, pe *protocol.PlayError) {
	r.send(protocol.Error(pe.Code, pe.Message))
	r.finish()
	p.m.met.requests.WithLabelValues("play", strconv.Itoa(int(pe.Code))).Inc()
}

func (p *partyService) runPlay(r streamReply, req protocol.MatchmakerRequest, ip netip.Addr) {
	if req.Party == nil {
		p.failStream(r, partyErr(http.StatusBadRequest, "no party in the request"))
		return
	}
	if err := req.Party.Validate(); err != nil {
		p.failStream(r, partyErr(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), protocol.ErrInvalidPlay.Error()+": ")))
		return
	}
	if err := req.Props.Validate(); err != nil {
		p.failStream(r, partyErr(http.StatusBadRequest, "%s", err.Error()))
		return
	}
	if req.Queue != "" && !protocol.ValidQueueName(req.Queue) {
		p.failStream(r, partyErr(http.StatusBadRequest, "bad queue name %q", req.Queue))
		return
	}
	if p.m.reqCtx.Err() != nil {
		p.failStream(r, partyErr(http.StatusServiceUnavailable, "matchmaker shutting down"))
		return
	}
	ctx, cancel := context.WithTimeout(p.m.reqCtx, partyOpTimeout)
	defer cancel()
	code := req.Party.Code
	wait := &partyWaitRecord{Inbox: r.inbox, IP: ip.String(), Since: time.Now().UTC(), Instance: p.m.instance, Queue: req.Queue, Props: req.Props}
	var (
		member   string
		replaced string
		turn     *partyPlayRecord
	)
	// Registered before the request is marked waiting, so that a cancel arriving meanwhile is
	// not lost.
	w := &partyWaiter{code: code, inbox: r.inbox, sig: make(chan struct{}, 1), cancelled: make(chan struct{})}
	p.register(w)
	defer p.unregister(w)
	rec, err := p.store.update(ctx, code, func(rec *partyRecord) error {
		member, replaced, turn = "", "", nil
		mem := rec.member(req.Party.Token)
		if mem == nil {
			return errPartyBadToken
		}
		member = mem.ID
		if rec.Play != nil {
			if !p.stalePlay(ctx, rec.Play) {
				return errPartyPlaying
			}
			p.m.log.Warn("party turn abandoned by its matchmaker, cleared", "party", code, "instance", rec.Play.Instance)
			rec.clearPlay()
		}
		p.dropStaleWaits(rec)
		if mem.Leader && req.Queue != "" {
			if rerr := p.checkQueue(req.Queue, req.Props, len(rec.Members)); rerr != nil {
				return partyErr(rerr.Code, "%s", rerr.Message)
			}
		}
		if mem.Wait != nil && mem.Wait.Inbox != wait.Inbox {
			replaced = mem.Wait.Inbox
		}
		mem.Wait = wait
		if rec.complete() {
			turn = p.newTurn(rec)
			rec.Play = turn
		}
		return nil
	})
	if err != nil {
		p.failStream(r, asPlayError(err))
		return
	}
	if replaced != "" {
		p.endAll([]ended{{inbox: replaced, err: partyErr(http.StatusConflict, "replaced by a newer request of the same member")}})
	}
	p.m.log.Info("party member waiting", "party", code, "member", member, logkey.ClientIP, ip.String(), "ready", rec.ready(), "members", len(rec.Members))
	if turn != nil {
		p.playTurn(rec, turn)
		return
	}
	w.member = member
	p.wait(w, r, rec)
}

// wait runs a waiting member's request until the party plays or the wait ends.
func (p *partyService) wait(w *partyWaiter, r streamReply, rec *partyRecord) {
	limit := time.NewTimer(p.waitLimit)
	defer limit.Stop()
	tick := time.NewTicker(p.tick)
	defer tick.Stop()
	last := ""
	// step looks at a state of the party: it reports whether this request is no longer ours
	// to answer (ended by another change, or handed to the party's turn).
	step := func(rec *partyRecord, keepalive bool) bool {
		mem := rec.memberByID(w.member)
		if mem == nil || mem.Wait == nil || mem.Wait.Inbox != w.inbox || rec.Play != nil {
			return true
		}
		if rec.complete() && p.takeTurn(w) {
			return true
		}
		if text := partyProgress(rec, mem); text != last || keepalive {
			r.send(protocol.Progress(text))
			last = text
		}
		return false
	}
	if step(rec, true) {
		return
	}
	for {
		select {
		case <-w.sig:
			rec, deleted := w.take()
			if deleted || rec != nil {
				if step(rec, false) {
					return
				}
			}
		case <-tick.C:
			ctx, cancel := context.WithTimeout(p.m.reqCtx, partyOpTimeout)
			rec, _, err := p.store.get(ctx, w.code)
			cancel()
			if err != nil {
				if last != "" {
					r.send(protocol.Progress(last)) // keep the stream alive through a NATS hiccup
				}
				continue
			}
			if step(rec, true) {
				return
			}
		case <-w.cancelled:
			// The player went away: it stays in the party, no longer waiting.
			p.dropWait(w, nil)
			p.m.log.Info("party member stopped waiting (request abandoned)", "party", w.code, "member", w.member)
			return
		case <-limit.C:
			if p.timeout(w) {
				return
			}
			limit.Reset(p.tick)
		case <-p.m.reqCtx.Done():
			p.dropWait(w, partyErr(http.StatusServiceUnavailable, "matchmaker shutting down"))
			return
		}
	}
}

// partyProgress is the text a waiting member sees.
func partyProgress(rec *partyRecord, mem *partyMemberRecord) string {
	counts := fmt.Sprintf("(%d of %d ready)", rec.ready(), len(rec.Members))
	if mem.Leader || (rec.leader() != nil && rec.leader().Wait != nil) {
		return "Waiting for party members " + counts
	}
	return "Waiting for the party leader " + counts
}

// clearPlay ends the party's turn and every wait.
func (r *partyRecord) clearPlay() {
	r.Play = nil
	for _, mem := range r.Members {
		mem.Wait = nil
	}
}

// partyStaleMargin is added to the wait limit before a wait is taken for a dead one.
const partyStaleMargin = 10 * time.Second

// dropStaleWaits clears the waits whose request has outlived the wait limit: the waiter that
// would have ended it died with its matchmaker. It reports whether it cleared any.
func (p *partyService) dropStaleWaits(rec *partyRecord) bool {
	dropped := false
	for _, mem := range rec.Members {
		if mem.Wait != nil && time.Since(mem.Wait.Since) > p.waitLimit+partyStaleMargin {
			mem.Wait = nil
			dropped = true
		}
	}
	return dropped
}

// newTurn starts the party's turn to play, with the leader's queue.
func (p *partyService) newTurn(rec *partyRecord) *partyPlayRecord {
	t := &partyPlayRecord{ID: newMemberID(), Since: time.Now().UTC(), Instance: p.m.instance}
	if l := rec.leader(); l != nil && l.Wait != nil {
		t.Queue = l.Wait.Queue
	}
	return t
}

// takeTurn tries to start the party's turn from a waiting request (compare-and-set); when it
// wins, it plays the turn and returns true.
func (p *partyService) takeTurn(w *partyWaiter) bool {
	ctx, cancel := context.WithTimeout(p.m.reqCtx, partyOpTimeout)
	defer cancel()
	var turn *partyPlayRecord
	rec, err := p.store.update(ctx, w.code, func(rec *partyRecord) error {
		turn = nil
		mem := rec.memberByID(w.member)
		if mem == nil || mem.Wait == nil || mem.Wait.Inbox != w.inbox || rec.Play != nil {
			return errPartyNoChange
		}
		stale := p.dropStaleWaits(rec)
		if !rec.complete() {
			if stale {
				return nil // write the cleanup, play later
			}
			return errPartyNoChange
		}
		turn = p.newTurn(rec)
		rec.Play = turn
		return nil
	})
	if err != nil || turn == nil {
		return false
	}
	p.playTurn(rec, turn)
	return true
}

// playTurn plays the party's turn this process won: one group session, or one ticket in the
// leader's queue.
func (p *partyService) playTurn(rec *partyRecord, turn *partyPlayRecord) {
	players, leader := partyPlayers(rec)
	p.m.log.Info("party plays", "party", rec.Code, "members", len(players), "queue", turn.Queue)
	if turn.Queue == "" {
		if err := p.m.runGroup(p.m.reqCtx, match.KindSeat, players); err != nil {
			p.m.log.Warn("party group failed", "party", rec.Code, logkey.Err, err)
		}
		p.endTurn(rec.Code, turn.ID)
		return
	}
	fail := func(pe *protocol.PlayError) {
		es := make([]ended, len(players))
		for i, pl := range players {
			es[i] = ended{inbox: pl.inbox, err: pe}
		}
		p.endAll(es)
		p.endTurn(rec.Code, turn.ID)
	}
	if p.queue == nil {
		fail(partyErr(http.StatusNotFound, "unknown queue %q (this matchmaker has no queues)", turn.Queue))
		return
	}
	ctx, cancel := context.WithTimeout(p.m.reqCtx, partyOpTimeout)
	defer cancel()
	var props protocol.Props
	if leader != nil && leader.Wait != nil {
		props = leader.Wait.Props
	}
	key, rerr := p.queue.submit(ctx, turn.Queue, players, props)
	if rerr != nil {
		fail(partyErr(rerr.Code, "%s", rerr.Message))
		return
	}
	// Record the ticket, so that a leave or kick withdraws it. If the party changed meanwhile
	// (a member left or was kicked before the ticket was known: that cleared the turn), the
	// ticket goes, unless its match already formed.
	_, err := p.store.update(ctx, rec.Code, func(rec *partyRecord) error {
		if rec.Play == nil || rec.Play.ID != turn.ID {
			return errPartyChanged
		}
		rec.Play.Ticket = key
		return nil
	})
	if err == nil || !p.queue.withdraw(ctx, key) {
		return
	}
	if errors.Is(err, errPartyChanged) {
		fail(partyErr(http.StatusConflict, "a member left the party while it entered the queue; ask again"))
		return
	}
	fail(errPartyStore)
}

var errPartyChanged = errors.New("party changed")

// partyPlayers returns the waiting members as group players, the leader first (its session
// places the deployment), and the leader.
func partyPlayers(rec *partyRecord) ([]groupPlayer, *partyMemberRecord) {
	leader := rec.leader()
	var players []groupPlayer
	add := func(mem *partyMemberRecord) {
		if mem.Wait == nil {
			return
		}
		ip, err := netip.ParseAddr(mem.Wait.IP)
		if err != nil {
			return // cannot happen: written from a parsed address
		}
		players = append(players, groupPlayer{ip: ip, inbox: mem.Wait.Inbox, member: mem.ID})
	}
	if leader != nil {
		add(leader)
	}
	for _, mem := range rec.Members {
		if mem != leader {
			add(mem)
		}
	}
	return players, leader
}

// endTurn makes the party idle again after its turn (the group is done or failed).
func (p *partyService) endTurn(code, turn string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.m.reqCtx), partyOpTimeout)
	defer cancel()
	_, err := p.store.update(ctx, code, func(rec *partyRecord) error {
		if rec.Play == nil || rec.Play.ID != turn {
			return errPartyNoChange
		}
		rec.clearPlay()
		return nil
	})
	if err != nil && !errors.Is(err, errPartyNoChange) && !errors.Is(err, errPartyUnknown) {
		p.m.log.Warn("could not end the party's turn (it is cleared when stale)", "party", code, logkey.Err, err)
	}
}

// stalePlay reports whether a party's turn was left behind: its ticket is no longer in the
// queue (matched, withdrawn or expired), or its group had far more time than a session setup
// takes (the matchmaker running it died).
func (p *partyService) stalePlay(ctx context.Context, t *partyPlayRecord) bool {
	if t.Ticket != "" && p.tickets != nil {
		_, err := p.tickets.Get(ctx, t.Ticket)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}
	return time.Since(t.Since) > 2*p.m.cfg.ReadinessLimit+4*p.m.cfg.EdgegapCallTimeout
}

// checkQueue validates a leader's queue early (nil queue engine: no queue exists).
func (p *partyService) checkQueue(queue string, props protocol.Props, players int) *requestError {
	if p.queue == nil {
		return reqErr(http.StatusNotFound, fmt.Sprintf("unknown queue %q (this matchmaker has no queues)", queue), nil)
	}
	return p.queue.check(queue, props, players)
}

// dropWait takes w's request out of the party (it stays a member) and, with pe, ends it.
func (p *partyService) dropWait(w *partyWaiter, pe *protocol.PlayError) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.m.reqCtx), partyOpTimeout)
	defer cancel()
	_, err := p.store.update(ctx, w.code, func(rec *partyRecord) error {
		mem := rec.memberByID(w.member)
		if mem == nil || mem.Wait == nil || mem.Wait.Inbox != w.inbox || rec.Play != nil {
			return errPartyNoChange
		}
		mem.Wait = nil
		return nil
	})
	switch {
	case errors.Is(err, errPartyNoChange), errors.Is(err, errPartyUnknown):
		return // the request is answered by whoever changed the party
	case err != nil:
		// The entry keeps the wait until the wait limit makes it stale; the request still ends.
		p.m.log.Warn("could not mark party member as not waiting", "party", w.code, "member", w.member, logkey.Err, err)
	}
	if pe != nil {
		p.endAll([]ended{{inbox: w.inbox, err: pe}})
	}
}

// timeout ends a wait that reached the limit, and reports whether the request is no longer
// this waiter's. The leader's limit ends every waiting request of the party. A member's limit
// ends its own request only while the leader is not waiting: when the leader waits, its limit
// decides for everyone (the member looks again a tick later).
func (p *partyService) timeout(w *partyWaiter) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.m.reqCtx), partyOpTimeout)
	defer cancel()
	var es []ended
	later := false
	_, err := p.store.update(ctx, w.code, func(rec *partyRecord) error {
		es, later = nil, false
		mem := rec.memberByID(w.member)
		if mem == nil || mem.Wait == nil || mem.Wait.Inbox != w.inbox || rec.Play != nil {
			return errPartyNoChange
		}
		stale := p.dropStaleWaits(rec)
		if !mem.Leader {
			if l := rec.leader(); l != nil && l.Wait != nil {
				later = true
				if stale {
					return nil
				}
				return errPartyNoChange
			}
			pe := partyErr(http.StatusRequestTimeout, "the party did not start within %s (%d of %d members ready)", p.waitLimit, rec.ready(), len(rec.Members))
			es = append(es, ended{inbox: mem.Wait.Inbox, err: pe})
			mem.Wait = nil
			return nil
		}
		pe := partyErr(http.StatusRequestTimeout, "the party was not ready within %s (%d of %d members ready)", p.waitLimit, rec.ready(), len(rec.Members))
		for _, x := range rec.Members {
			if x.Wait != nil {
				es = append(es, ended{inbox: x.Wait.Inbox, err: pe})
				x.Wait = nil
			}
		}
		return nil
	})
	switch {
	case later:
		return false
	case errors.Is(err, errPartyNoChange), errors.Is(err, errPartyUnknown):
		return true
	case err != nil:
		// The store is unreachable: try again a tick later.
		p.m.log.Warn("could not end a party wait at its limit", "party", w.code, "member", w.member, logkey.Err, err)
		return false
	}
	p.m.log.Info("party wait limit reached", "party", w.code, "member", w.member, "ended", len(es))
	p.endAll(es)
	return true
}

// stopQueued ends the party's turn in a queue inside a change (leave, kick): it clears the
// turn and every wait and returns the requests to end with message (those of members still
// in the party). Their ticket must then be withdrawn ([partyService.withdraw]).
func (p *partyService) stopQueued(rec *partyRecord, message string) []ended {
	var es []ended
	pe := partyErr(http.StatusConflict, "%s", message)
	for _, mem := range rec.Members {
		if mem.Wait != nil {
			es = append(es, ended{inbox: mem.Wait.Inbox, err: pe})
		}
	}
	rec.clearPlay()
	return es
}

// withdraw takes the party's ticket out of its queue; it reports whether the ticket was still
// waiting (if not, the queue's match answers the players and they must not be told otherwise).
func (p *partyService) withdraw(t *partyPlayRecord) bool {
	if p.queue == nil || t.Ticket == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.m.reqCtx), partyOpTimeout)
	defer cancel()
	return p.queue.withdraw(ctx, t.Ticket)
}
