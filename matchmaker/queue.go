package matchmaker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// Match queues (issue 13). A request naming a queue becomes a ticket in the play_tickets
// bucket, key <game>.<version>.<queue>.<ticket id>; the request's stream stays open. For each
// queue exactly one matchmaker — the holder of the queue's lease in play_leases — watches the
// queue's tickets, forms matches (match.Form), claims their tickets by compare-and-set, puts
// the players on one game server (runGroup) and deletes the tickets. Any matchmaker can take
// a request, every one competes for the leases, and the tickets survive any one of them.

// Ticket states.
const (
	ticketWaiting = "waiting"
	ticketMatched = "matched"
)

// ticketRecord is a play_tickets entry.
type ticketRecord struct {
	// Players are the players of the ticket: one, or a party's members. None for a backfill
	// ticket.
	Players []ticketPlayer `json:"players"`
	Props   protocol.Props `json:"props,omitempty"`
	Created time.Time      `json:"created"`
	State   string         `json:"state"`
	// Match, Holder and Claimed are set while a holder runs the ticket's match: the match id,
	// the holder's instance id, and when it claimed the ticket.
	Match   string    `json:"match,omitempty"`
	Holder  string    `json:"holder,omitempty"`
	Claimed time.Time `json:"claimed,omitzero"`
	// Backfill, on a game server's backfill ticket, names its deployment.
	Backfill *ticketBackfill `json:"backfill,omitempty"`
}

// ticketPlayer is one player of a ticket: what runGroup needs.
type ticketPlayer struct {
	IP     string `json:"ip"`
	Inbox  string `json:"inbox"`
	Member string `json:"member,omitempty"`
}

// ticketBackfill is the deployment a backfill ticket asks players for.
type ticketBackfill struct {
	RequestID string `json:"request_id"`
	PublicIP  string `json:"public_ip,omitempty"`
	Slots     int    `json:"slots"`
}

// Timings of the queue engine.
const (
	// leaseRenewEvery is how often the holder renews its lease (the bucket's TTL is
	// bus.PlayLeaseTTL, 3 s).
	leaseRenewEvery = time.Second
	// leaseRetryEvery is how often a matchmaker that does not hold a queue's lease tries to
	// take it.
	leaseRetryEvery = 500 * time.Millisecond
	// formEvery is how often the holder runs match.Form even without a ticket change (windows
	// widen and minimums relax with time, tickets expire).
	formEvery = 500 * time.Millisecond
	// progressEvery is how often the holder tells every waiting player how the queue stands.
	progressEvery = 3 * time.Second
	// aliveEvery is how often a matchmaker refreshes its alive mark in play_leases (TTL 3 s):
	// a new holder gives the tickets of a matchmaker without one back to the queue.
	aliveEvery = time.Second
)

// queueEngine is this matchmaker's part of the match queues.
type queueEngine struct {
	m      *Matchmaker
	pb     *bus.PlayBuckets
	cfg    match.Config
	holder string // this matchmaker's instance id

	// stop ends the lease competition (at the start of a shutdown: waiting tickets are left
	// to another matchmaker at once).
	stop context.CancelFunc

	mu sync.Mutex
	// run puts a formed match's players on a server; runMatch by default (benchmarks replace
	// it to measure the queue without Edgegap).
	run     func(ctx context.Context, q match.Queue, tickets []claimedTicket) error
	own     map[string]ownTicket    // inbox -> the ticket this instance put for it
	running map[string]bool         // ticket keys claimed by matches this instance runs
	queues  map[string]*queueHolder // queue name -> state while this instance holds its lease
}

// claimedTicket is a ticket the holder claimed for a match: its key, its record and the
// revision of the claim.
type claimedTicket struct {
	key string
	rec ticketRecord
	rev uint64
}

// playEngine is the play-together engine (abandon's playHooks): the match queues and the
// parties.
type playEngine struct {
	queue *queueEngine // nil without Config.Queues
	party partyHandler // nil until parties are wired
}

// partyHandler is the parties' part of the play-together engine (party*.go).
type partyHandler interface {
	// onCancel drops the party request whose reply subject is inbox; it must not block.
	onCancel(inbox string)
	// play answers a streaming request that carries a party (Acknowledged already sent); it
	// ends the stream.
	play(r streamReply, req protocol.MatchmakerRequest, ip netip.Addr)
}

func (p *playEngine) onCancel(inbox string) {
	if p.queue != nil {
		p.queue.onCancel(inbox)
	}
	if p.party != nil {
		p.party.onCancel(inbox)
	}
}

// startPlay opens the play buckets and starts the play-together engine: the match queues when
// configured (the lease competition of every queue, this matchmaker's alive mark, the backfill
// subscription) and the parties. Without queues, buckets that cannot be opened (a NATS user
// without the play_* rights) only turn the parties off.
func (m *Matchmaker) startPlay(ctx, bg context.Context) error {
	pb, err := m.b.OpenPlay(ctx, m.cfg.Buckets)
	if err != nil {
		if len(m.cfg.Queues.Queues) > 0 {
			return fmt.Errorf("matchmaker: match queues: %w", err)
		}
		m.log.Warn("play-together buckets unavailable: parties are off (grant the matchmaker the play_* buckets, deploy/nats/auth.conf)", logkey.Err, err)
		return nil
	}
	p := &playEngine{}
	if len(m.cfg.Queues.Queues) > 0 {
		e := &queueEngine{m: m, pb: pb, cfg: m.cfg.Queues, holder: m.instance,
			own: map[string]ownTicket{}, running: map[string]bool{}, queues: map[string]*queueHolder{}}
		e.run = e.runMatch
		if err := e.subscribeBackfill(); err != nil {
			return err
		}
		hctx, stop := context.WithCancel(bg)
		e.stop = stop
		m.goBackground(func() { e.keepAlive(bg) })
		for _, q := range e.cfg.Queues {
			m.goBackground(func() { e.compete(hctx, q) })
		}
		p.queue = e
		m.log.Info("match queues ready", "queues", len(e.cfg.Queues), "holder", e.holder)
	}
	var pq partyQueue // a nil interface without queues, not a typed nil
	if p.queue != nil {
		pq = p.queue
	}
	party, err := m.startParties(bg, pb, pq)
	if err != nil {
		return err
	}
	p.party = party
	m.play = p
	return nil
}

// ticketPrefix is <game>.<version>.<queue>. (the keys of a queue's tickets).
func (e *queueEngine) ticketPrefix(queue string) string {
	return e.m.cfg.AppName + "." + e.m.cfg.AppVersion + "." + queue + "."
}

// leaseKey is <game>.<version>.<queue> (a queue's lease in play_leases).
func (e *queueEngine) leaseKey(queue string) string {
	return e.m.cfg.AppName + "." + e.m.cfg.AppVersion + "." + queue
}

// aliveKey is <game>.<version>.alive.<instance> in play_leases: present while that matchmaker
// runs.
func (e *queueEngine) aliveKey(instance string) string {
	return e.m.cfg.AppName + "." + e.m.cfg.AppVersion + ".alive." + instance
}

// keepAlive keeps this matchmaker's alive mark until bg ends (after the in-flight matches of a
// shutdown are done), then removes it.
func (e *queueEngine) keepAlive(bg context.Context) {
	key := e.aliveKey(e.holder)
	t := time.NewTicker(aliveEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(bg, aliveEvery)
		if _, err := e.pb.Leases.Put(ctx, key, []byte(e.holder)); err != nil && bg.Err() == nil {
			e.m.log.Warn("could not refresh the alive mark", logkey.Err, err)
		}
		cancel()
		e.sweepOwn(time.Now())
		select {
		case <-t.C:
		case <-bg.Done():
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = e.pb.Leases.Delete(ctx, key)
			cancel()
			return
		}
	}
}

// stopPlay ends the lease competition of the match queues (Shutdown calls it first).
func (m *Matchmaker) stopPlay() {
	if p, ok := m.play.(*playEngine); ok && p.queue != nil && p.queue.stop != nil {
		p.queue.stop()
	}
}

// newTicketID returns a random ticket id (16 hex digits).
func newTicketID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// check validates a ticket for queue before it is put: 404 for an unknown queue, 400 for bad
// props or more players than the queue's matches take.
func (e *queueEngine) check(queue string, props protocol.Props, players int) *requestError {
	q, err := e.cfg.Queue(queue)
	if err != nil {
		return reqErr(http.StatusNotFound, fmt.Sprintf("no queue named %q", queue), err)
	}
	if err := props.Validate(); err != nil {
		return reqErr(http.StatusBadRequest, err.Error(), err)
	}
	if err := q.Check(props, players); err != nil {
		pe := match.PlayError(err)
		return reqErr(pe.Code, pe.Message, err)
	}
	return nil
}

// submit checks a ticket for queue and puts it in play_tickets; it returns the ticket's key.
// One ticket carries all players (a party is one ticket). The queue's holder streams progress
// to every player and answers them when their match forms or the ticket expires.
func (e *queueEngine) submit(ctx context.Context, queue string, players []groupPlayer, props protocol.Props) (string, *requestError) {
	if rerr := e.check(queue, props, len(players)); rerr != nil {
		return "", rerr
	}
	rec := ticketRecord{Props: props, Created: time.Now().UTC(), State: ticketWaiting}
	for _, p := range players {
		rec.Players = append(rec.Players, ticketPlayer{IP: p.ip.String(), Inbox: p.inbox, Member: p.member})
	}
	key, rerr := e.put(ctx, queue, rec)
	if rerr != nil {
		return "", rerr
	}
	e.mu.Lock()
	for _, p := range players {
		e.own[p.inbox] = ownTicket{key: key, at: time.Now()}
	}
	e.mu.Unlock()
	return key, nil
}

// put creates a ticket entry.
func (e *queueEngine) put(ctx context.Context, queue string, rec ticketRecord) (string, *requestError) {
	id, err := newTicketID()
	if err != nil {
		return "", reqErr(http.StatusInternalServerError, "could not pick a ticket id", err)
	}
	key := e.ticketPrefix(queue) + id
	b, err := json.Marshal(rec)
	if err != nil {
		return "", reqErr(http.StatusBadRequest, "ticket cannot be encoded", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.pb.Tickets.Create(cctx, key, b); err != nil {
		return "", reqErr(http.StatusServiceUnavailable, "ticket store unavailable", err)
	}
	return key, nil
}

// withdraw deletes a ticket that is still waiting (compare-and-set on its revision); false if
// it was matched meanwhile or is gone.
func (e *queueEngine) withdraw(ctx context.Context, key string) bool {
	_, ok := e.withdrawTicket(ctx, key)
	return ok
}

// withdrawTicket is withdraw, returning the withdrawn ticket.
func (e *queueEngine) withdrawTicket(ctx context.Context, key string) (ticketRecord, bool) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rec ticketRecord
	ent, err := e.pb.Tickets.Get(cctx, key)
	if err != nil {
		return rec, false
	}
	if json.Unmarshal(ent.Value(), &rec) != nil || rec.State != ticketWaiting {
		return rec, false
	}
	if err := e.pb.Tickets.Delete(cctx, key, jetstream.LastRevision(ent.Revision())); err != nil {
		return rec, false
	}
	e.forget(rec)
	return rec, true
}

// queueOfKey returns the queue name of a ticket key <game>.<version>.<queue>.<id> (the version
// may hold dots; the queue name and the id never do).
func queueOfKey(key string) string {
	rest := key[:max(0, strings.LastIndexByte(key, '.'))]
	return rest[strings.LastIndexByte(rest, '.')+1:]
}

// ownTicket is a ticket this instance put: its key and when.
type ownTicket struct {
	key string
	at  time.Time
}

// sweepOwn forgets the tickets put longer ago than any ticket can wait and be matched (the
// holder, maybe another matchmaker, deletes them; this instance is not told).
func (e *queueEngine) sweepOwn(now time.Time) {
	limit := bus.PlayTicketTTL
	if w := e.maxWait(); w > 0 {
		limit = min(limit, w+e.claimStuckAfter())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for inbox, t := range e.own {
		if now.Sub(t.at) > limit {
			delete(e.own, inbox)
		}
	}
}

// maxWait is the longest wait limit of the queues; 0 if a queue has none.
func (e *queueEngine) maxWait() time.Duration {
	var w time.Duration
	for _, q := range e.cfg.Queues {
		if q.WaitLimit <= 0 {
			return 0
		}
		w = max(w, q.WaitLimit)
	}
	return w
}

// forget drops a ticket's players from the own map.
func (e *queueEngine) forget(rec ticketRecord) {
	e.mu.Lock()
	for _, p := range rec.Players {
		delete(e.own, p.Inbox)
	}
	e.mu.Unlock()
}

// onCancel withdraws the waiting ticket of the player whose reply subject is inbox, when this
// instance put it or holds its queue. The other players of the ticket (a party's) get an error.
// It runs in a goroutine of its own: the cancel subscription must not block.
func (e *queueEngine) onCancel(inbox string) {
	e.mu.Lock()
	own, ok := e.own[inbox]
	key := own.key
	holders := make([]*queueHolder, 0, len(e.queues))
	for _, h := range e.queues {
		holders = append(holders, h)
	}
	e.mu.Unlock()
	for _, h := range holders { // h.mu is taken before e.mu elsewhere: never under e.mu
		if ok {
			break
		}
		key, ok = h.inboxKey(inbox)
	}
	if !ok {
		return
	}
	go func() {
		rec, ok := e.withdrawTicket(e.m.reqCtx, key)
		if !ok {
			return
		}
		e.m.met.queue.dropped.WithLabelValues(queueOfKey(key), "withdrawn").Inc()
		e.m.log.Info("ticket withdrawn: its player went away", "ticket", key)
		for _, p := range rec.Players {
			if p.Inbox == inbox {
				continue
			}
			r := streamReply{nc: e.m.nc, inbox: p.Inbox, m: e.m}
			r.send(protocol.Error(http.StatusGone, "a member of your party left the queue"))
			r.finish()
		}
	}()
}

// isPlayBody reports whether a streaming request body asks to play together: a JSON object
// with a non-empty "queue", "props" or "party". Anything else, even malformed, takes the plain
// path unchanged.
func isPlayBody(data []byte) bool {
	// The plain request (every Rust client's) names none of the three keys: no decoding on
	// the hot path. A key spelled with \u escapes is not looked for: such a request is plain.
	if !bytes.Contains(data, []byte(`"queue"`)) && !bytes.Contains(data, []byte(`"props"`)) && !bytes.Contains(data, []byte(`"party"`)) {
		return false
	}
	var probe struct {
		Queue json.RawMessage `json:"queue"`
		Props json.RawMessage `json:"props"`
		Party json.RawMessage `json:"party"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	// As protocol.MatchmakerRequest.Play: an empty queue or an empty props object is unset.
	set := func(r json.RawMessage, empty string) bool {
		v := string(bytes.Join(bytes.Fields(r), nil))
		return v != "" && v != "null" && v != empty
	}
	return set(probe.Queue, `""`) || set(probe.Props, "{}") || set(probe.Party, "")
}

// onPlayRequest answers a streaming request to play together (Acknowledged already sent): a
// party's goes to the parties, a queue's becomes a ticket.
func (m *Matchmaker) onPlayRequest(r streamReply, data []byte) {
	start := time.Now()
	fail := func(rerr *requestError) {
		r.send(protocol.Error(rerr.Code, rerr.Message))
		r.finish()
		m.finishMetrics("play", rerr.Code, start)
		m.log.Info("play request refused", "code", rerr.Code, "reason", rerr.Message)
	}
	var req protocol.MatchmakerRequest
	if err := json.Unmarshal(data, &req); err != nil {
		msg := "error decoding session request"
		if errors.Is(err, protocol.ErrInvalidProps) {
			msg = err.Error()
		}
		fail(reqErr(http.StatusBadRequest, msg, err))
		return
	}
	ip, rerr := parseClientIP(req.ClientIP)
	if rerr != nil {
		fail(rerr)
		return
	}
	var play *playEngine
	if p, ok := m.play.(*playEngine); ok {
		play = p
	}
	if req.Party != nil {
		if play == nil || play.party == nil {
			fail(reqErr(http.StatusNotImplemented, "parties are not available on this matchmaker", nil))
			return
		}
		play.party.play(r, req, ip)
		return
	}
	if req.Queue == "" {
		fail(reqErr(http.StatusBadRequest, "props need a queue", nil))
		return
	}
	if play == nil || play.queue == nil {
		fail(reqErr(http.StatusNotFound, fmt.Sprintf("no queue named %q", req.Queue), nil))
		return
	}
	players := []groupPlayer{{ip: ip, inbox: r.inbox}}
	if rerr := play.queue.check(req.Queue, req.Props, len(players)); rerr != nil {
		fail(rerr)
		return
	}
	// Before the ticket exists: the holder's "Waiting in queue duo: 1 of 2 players" follows.
	r.send(protocol.Progress("Waiting in queue " + req.Queue))
	key, rerr := play.queue.submit(m.reqCtx, req.Queue, players, req.Props)
	if rerr != nil {
		fail(rerr)
		return
	}
	// A cancel that overtook the request (cancel.go remembers those a while) withdraws the
	// ticket at once.
	m.plain.mu.Lock()
	early := m.plain.recent.take(r.inbox, time.Now())
	m.plain.mu.Unlock()
	if early && play.queue.withdraw(m.reqCtx, key) {
		m.log.Info("ticket withdrawn: its player went away before it was queued", "ticket", key)
	}
}
