package matchmaker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// Parties (docs/play-together.md): a player creates a party and gets a code and a party token;
// others join with the code; when every member has an open session request the party plays
// together. A party is one entry of the play_parties bucket, <game>.<version>.<code>, changed
// only by compare-and-set (the entry's revision), so any matchmaker instance can serve any
// member. Tokens are never stored: only their SHA-256.

// PartyQueueGroupFor returns the queue group of the party management subscription of a
// matchmaker serving app and version: "matchmaker_party_queue.<app>.<version>" (one instance
// answers each request).
func PartyQueueGroupFor(app, version string) string {
	return "matchmaker_party_queue." + app + "." + version
}

const (
	// partyTokenBytes is the size of a party token before base64url.
	partyTokenBytes = 32
	// partyCASTries bounds the compare-and-set retries of one party change.
	partyCASTries = 20
	// partyCodeTries bounds the attempts at an unused party code.
	partyCodeTries = 10
	// partyOpTimeout bounds the KV work of one party operation.
	partyOpTimeout = 5 * time.Second
	// partyMaxEntry is the largest party entry written, below the bucket's 16 KiB limit (so
	// that a member's large props get a clear error, not a store failure).
	partyMaxEntry = 15 * 1024
	// partyIndexToken is the key token under which the token index lives:
	// <game>.<version>.tok.<sha256 hex> -> party code. It has two tokens after the prefix, so
	// it never matches the parties' <prefix>.* watch.
	partyIndexToken = "tok"
)

// partyRecord is a party as stored in play_parties.
type partyRecord struct {
	Code    string    `json:"code"`
	Max     int       `json:"max"`
	Created time.Time `json:"created"`
	// Members, oldest first; exactly one is the leader.
	Members []*partyMemberRecord `json:"members"`
	// Play is set while the party plays: from the moment one matchmaker took every waiting
	// request (compare-and-set) until its group session is done or its ticket left the queue.
	Play *partyPlayRecord `json:"play,omitempty"`
}

// partyMemberRecord is one member of a stored party.
type partyMemberRecord struct {
	ID string `json:"id"`
	// Hash is the SHA-256 of the member's party token.
	Hash   []byte    `json:"hash"`
	Leader bool      `json:"leader,omitempty"`
	Joined time.Time `json:"joined"`
	// Wait is the member's open session request, if any.
	Wait *partyWaitRecord `json:"wait,omitempty"`
}

// partyWaitRecord is a member's open session request: where its feedback goes.
type partyWaitRecord struct {
	Inbox    string         `json:"inbox"`
	IP       string         `json:"ip"`
	Since    time.Time      `json:"since"`
	Instance string         `json:"instance"`
	Queue    string         `json:"queue,omitempty"`
	Props    protocol.Props `json:"props,omitempty"`
}

// partyPlayRecord says who plays the party's turn.
type partyPlayRecord struct {
	ID       string    `json:"id"`
	Since    time.Time `json:"since"`
	Instance string    `json:"instance"`
	Queue    string    `json:"queue,omitempty"`
	// Ticket is the party's ticket id when it waits in a queue.
	Ticket string `json:"ticket,omitempty"`
}

// member returns the member whose token hashes to hash, or nil. Every member is compared, in
// constant time, so the time taken does not tell which one matched.
func (r *partyRecord) member(token string) *partyMemberRecord {
	h := hashPartyToken(token)
	var found *partyMemberRecord
	for _, mem := range r.Members {
		if subtle.ConstantTimeCompare(mem.Hash, h[:]) == 1 {
			found = mem
		}
	}
	return found
}

// memberByID returns the member with id, or nil (also for a nil, deleted, party).
func (r *partyRecord) memberByID(id string) *partyMemberRecord {
	if r == nil {
		return nil
	}
	for _, mem := range r.Members {
		if mem.ID == id {
			return mem
		}
	}
	return nil
}

// leader returns the party's leader (nil only for an empty party).
func (r *partyRecord) leader() *partyMemberRecord {
	for _, mem := range r.Members {
		if mem.Leader {
			return mem
		}
	}
	return nil
}

// remove drops mem from the party and, if it led, hands the lead to the oldest member left.
func (r *partyRecord) remove(mem *partyMemberRecord) {
	kept := r.Members[:0]
	for _, x := range r.Members {
		if x != mem {
			kept = append(kept, x)
		}
	}
	r.Members = kept
	if mem.Leader && len(r.Members) > 0 {
		r.Members[0].Leader = true
	}
}

// ready counts the waiting members.
func (r *partyRecord) ready() int {
	n := 0
	for _, mem := range r.Members {
		if mem.Wait != nil {
			n++
		}
	}
	return n
}

// complete reports whether every member (so the leader too) has an open request.
func (r *partyRecord) complete() bool { return len(r.Members) > 0 && r.ready() == len(r.Members) }

// view is the party as its members see it.
func (r *partyRecord) view() *protocol.Party {
	p := &protocol.Party{Code: r.Code, Max: r.Max, Members: make([]protocol.PartyMember, len(r.Members))}
	for i, mem := range r.Members {
		p.Members[i] = protocol.PartyMember{ID: mem.ID, Leader: mem.Leader, Waiting: mem.Wait != nil}
	}
	return p
}

func hashPartyToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// newPartyToken returns a fresh party token: 32 random bytes, base64url without padding.
func newPartyToken() string {
	b := make([]byte, partyTokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the OS cannot serve it)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newPartyCode returns a random party code of protocol.PartyCodeLen characters of
// protocol.PartyCodeAlphabet (rejection sampling, so every character is equally likely).
func newPartyCode() string {
	const alphabet = protocol.PartyCodeAlphabet
	limit := byte(256 - 256%len(alphabet))
	code := make([]byte, 0, protocol.PartyCodeLen)
	var buf [16]byte
	for len(code) < protocol.PartyCodeLen {
		_, _ = rand.Read(buf[:])
		for _, b := range buf {
			if b < limit && len(code) < protocol.PartyCodeLen {
				code = append(code, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(code)
}

// newMemberID returns a short random member id: 8 characters of lowercase base32.
func newMemberID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// partyErr is a failed party operation, as the caller sees it.
func partyErr(code uint16, format string, args ...any) *protocol.PlayError {
	return &protocol.PlayError{Code: code, Message: fmt.Sprintf(format, args...)}
}

var (
	errPartyUnknown  = partyErr(http.StatusNotFound, "unknown party code")
	errPartyBadToken = partyErr(http.StatusForbidden, "bad party token")
	errPartyStore    = partyErr(http.StatusServiceUnavailable, "party store unavailable")
	errPartyBusy     = partyErr(http.StatusServiceUnavailable, "party busy, try again")
	errPartyPlaying  = partyErr(http.StatusConflict, "the party is already playing")
)

// errPartyNoChange, returned by an update function, leaves the entry as it is.
var errPartyNoChange = errors.New("party unchanged")

// partyStore reads and changes the parties of one game and version.
type partyStore struct {
	kv     jetstream.KeyValue
	prefix string // <game>.<version>.
}

func (s partyStore) key(code string) string { return s.prefix + code }

func (s partyStore) indexKey(token string) string {
	h := hashPartyToken(token)
	return s.prefix + partyIndexToken + "." + hex.EncodeToString(h[:])
}

// get reads a party; (nil, 0, nil) when there is none.
func (s partyStore) get(ctx context.Context, code string) (*partyRecord, uint64, error) {
	e, err := s.kv.Get(ctx, s.key(code))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rec, err := decodeParty(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return rec, e.Revision(), nil
}

func decodeParty(b []byte) (*partyRecord, error) {
	var rec partyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode party: %w", err)
	}
	for _, mem := range rec.Members {
		if mem == nil {
			return nil, errors.New("decode party: null member")
		}
	}
	return &rec, nil
}

// isCASConflict reports whether err is a lost compare-and-set.
func isCASConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// update applies f to the current party code and writes the result with compare-and-set,
// retrying on a conflict. f sees a fresh copy each try; it returns errPartyNoChange to write
// nothing, or any other error to stop. A party left without members is deleted. update
// returns the party as written (nil if deleted) and f's result. A party that does not exist
// gives errPartyUnknown without calling f.
func (s partyStore) update(ctx context.Context, code string, f func(*partyRecord) error) (*partyRecord, error) {
	for range partyCASTries {
		rec, rev, err := s.get(ctx, code)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errPartyStore, err)
		}
		if rec == nil {
			return nil, errPartyUnknown
		}
		if err := f(rec); err != nil {
			if errors.Is(err, errPartyNoChange) {
				return rec, err
			}
			return nil, err
		}
		if len(rec.Members) == 0 {
			err = s.kv.Delete(ctx, s.key(code), jetstream.LastRevision(rev))
			if err == nil {
				return nil, nil
			}
		} else {
			b, merr := json.Marshal(rec)
			if merr != nil {
				return nil, merr
			}
			if len(b) > partyMaxEntry {
				return nil, partyErr(http.StatusBadRequest, "too much party data (%d bytes): use fewer or shorter props", len(b))
			}
			if _, err = s.kv.Update(ctx, s.key(code), b, rev); err == nil {
				return rec, nil
			}
		}
		if !isCASConflict(err) {
			return nil, fmt.Errorf("%w: %w", errPartyStore, err)
		}
	}
	return nil, errPartyBusy
}

// asPlayError returns err as the caller should see it.
func asPlayError(err error) *protocol.PlayError {
	var pe *protocol.PlayError
	if errors.As(err, &pe) {
		return pe
	}
	return errPartyStore
}

// partyService serves the parties of the matchmaker's game and version: the management
// requests and the members' session requests (partyplay.go).
type partyService struct {
	m     *Matchmaker
	store partyStore
	max   int
	// waitLimit bounds a member's wait for the rest of the party; tick is the keepalive
	// progress interval (and the interval of the fallback read of the party while waiting).
	waitLimit time.Duration
	tick      time.Duration
	// tickets is the play_tickets bucket (to tell a party's left-behind ticket); queue is the
	// match queues, nil without any.
	tickets jetstream.KeyValue
	queue   partyQueue

	// active counts the member requests this process serves; once closed (shutdown) no more
	// are taken.
	active sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	waiters map[string]*partyWaiter              // by inbox
	byCode  map[string]map[*partyWaiter]struct{} // by party code, for the watch
}

// partyTick is how often a waiting member hears progress at least.
const partyTick = 2 * time.Second

func newPartyService(m *Matchmaker, kv jetstream.KeyValue) *partyService {
	return &partyService{
		m:         m,
		store:     partyStore{kv: kv, prefix: m.cfg.AppName + "." + m.cfg.AppVersion + "."},
		max:       m.cfg.PartyMax,
		waitLimit: m.cfg.PartyWaitLimit,
		tick:      min(partyTick, m.cfg.PartyWaitLimit/4),
		waiters:   make(map[string]*partyWaiter),
		byCode:    make(map[string]map[*partyWaiter]struct{}),
	}
}

// onPartyRequest handles matchmaker.party.<game>.<version>.
func (p *partyService) onPartyRequest(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	if !p.m.beginRequest() {
		p.respond(msg, protocol.PartyReply{Error: partyErr(http.StatusServiceUnavailable, "matchmaker shutting down")})
		return
	}
	go func() {
		defer p.m.inflight.Done()
		var req protocol.PartyRequest
		var reply protocol.PartyReply
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			reply.Error = partyErr(http.StatusBadRequest, "bad party request: body is not a party request object")
		} else {
			ctx, cancel := context.WithTimeout(p.m.reqCtx, partyOpTimeout)
			reply = p.handle(ctx, req)
			cancel()
		}
		p.m.met.requests.WithLabelValues("party", partyReplyCode(reply)).Inc()
		p.respond(msg, reply)
	}()
}

func partyReplyCode(r protocol.PartyReply) string {
	if r.Error != nil {
		return fmt.Sprint(r.Error.Code)
	}
	return "200"
}

func (p *partyService) respond(msg *nats.Msg, reply protocol.PartyReply) {
	b, err := protocol.Marshal(reply)
	if err == nil {
		err = msg.Respond(b)
	}
	if err != nil {
		p.m.log.Warn("could not answer party request", logkey.Err, err)
	}
}

// handle runs one party operation.
func (p *partyService) handle(ctx context.Context, req protocol.PartyRequest) protocol.PartyReply {
	switch req.Op {
	case protocol.PartyOpCreate:
	case protocol.PartyOpJoin, protocol.PartyOpLeave, protocol.PartyOpKick, protocol.PartyOpGet:
		if !protocol.ValidPartyCode(req.Code) {
			return protocol.PartyReply{Error: partyErr(http.StatusBadRequest, "malformed party code")}
		}
	default:
		return protocol.PartyReply{Error: partyErr(http.StatusBadRequest, "unknown party op %q", req.Op)}
	}
	var reply protocol.PartyReply
	var err error
	switch req.Op {
	case protocol.PartyOpCreate:
		reply, err = p.create(ctx, req)
	case protocol.PartyOpJoin:
		reply, err = p.join(ctx, req)
	case protocol.PartyOpLeave:
		reply, err = p.leave(ctx, req)
	case protocol.PartyOpKick:
		reply, err = p.kick(ctx, req)
	case protocol.PartyOpGet:
		reply, err = p.get(ctx, req)
	default:
		return protocol.PartyReply{Error: partyErr(http.StatusBadRequest, "unknown party op %q", req.Op)}
	}
	if err != nil {
		pe := asPlayError(err)
		if pe.Code >= 500 {
			p.m.log.Warn("party operation failed", "op", req.Op, "party", req.Code, logkey.Err, err)
		}
		return protocol.PartyReply{Error: pe}
	}
	p.m.log.Debug("party operation", "op", req.Op, "party", req.Code, "member", reply.Member)
	return reply
}

// otherParty returns the code of the party, other than code, that token is a member's of, or
// "" (no token, no party, or a stale index entry).
func (p *partyService) otherParty(ctx context.Context, token, code string) (string, error) {
	if token == "" {
		return "", nil
	}
	e, err := p.store.kv.Get(ctx, p.store.indexKey(token))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPartyStore, err)
	}
	other := string(e.Value())
	if other == code || !protocol.ValidPartyCode(other) {
		return "", nil
	}
	rec, _, err := p.store.get(ctx, other)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errPartyStore, err)
	}
	if rec == nil || rec.member(token) == nil {
		return "", nil
	}
	return other, nil
}

// index records which party token belongs to; a failure only weakens the "already in a party"
// check, so it is logged and ignored.
func (p *partyService) index(ctx context.Context, token, code string) {
	if _, err := p.store.kv.Put(ctx, p.store.indexKey(token), []byte(code)); err != nil {
		p.m.log.Warn("could not index party token", "party", code, logkey.Err, err)
	}
}

func (p *partyService) unindex(ctx context.Context, hash []byte) {
	key := p.store.prefix + partyIndexToken + "." + hex.EncodeToString(hash)
	if err := p.store.kv.Delete(ctx, key); err != nil {
		p.m.log.Debug("could not drop party token index", logkey.Err, err)
	}
}

func (p *partyService) create(ctx context.Context, req protocol.PartyRequest) (protocol.PartyReply, error) {
	if other, err := p.otherParty(ctx, req.Token, ""); err != nil || other != "" {
		if err != nil {
			return protocol.PartyReply{}, err
		}
		return protocol.PartyReply{}, partyErr(http.StatusConflict, "already in party %s; leave it first", other)
	}
	token := newPartyToken()
	h := hashPartyToken(token)
	now := time.Now().UTC()
	rec := &partyRecord{Max: p.max, Created: now, Members: []*partyMemberRecord{{ID: newMemberID(), Hash: h[:], Leader: true, Joined: now}}}
	for range partyCodeTries {
		rec.Code = newPartyCode()
		b, err := json.Marshal(rec)
		if err != nil {
			return protocol.PartyReply{}, err
		}
		_, err = p.store.kv.Create(ctx, p.store.key(rec.Code), b)
		if err == nil {
			p.index(ctx, token, rec.Code)
			p.m.log.Info("party created", "party", rec.Code, "member", rec.Members[0].ID, logkey.ClientIP, req.ClientIP)
			return protocol.PartyReply{Party: rec.view(), Member: rec.Members[0].ID, Token: token}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return protocol.PartyReply{}, fmt.Errorf("%w: %w", errPartyStore, err)
		}
	}
	return protocol.PartyReply{}, errPartyBusy
}

func (p *partyService) join(ctx context.Context, req protocol.PartyRequest) (protocol.PartyReply, error) {
	other, err := p.otherParty(ctx, req.Token, req.Code)
	if err != nil {
		return protocol.PartyReply{}, err
	}
	if other != "" {
		return protocol.PartyReply{}, partyErr(http.StatusConflict, "already in party %s; leave it first", other)
	}
	token := newPartyToken()
	h := hashPartyToken(token)
	var id string
	var again bool
	rec, err := p.store.update(ctx, req.Code, func(rec *partyRecord) error {
		if req.Token != "" {
			if mem := rec.member(req.Token); mem != nil {
				// Joining one's own party again (a retried join): nothing to do.
				id, again = mem.ID, true
				return errPartyNoChange
			}
		}
		if len(rec.Members) >= rec.Max {
			return partyErr(http.StatusConflict, "party is full (%d members)", len(rec.Members))
		}
		id = newMemberID()
		for rec.memberByID(id) != nil {
			id = newMemberID()
		}
		rec.Members = append(rec.Members, &partyMemberRecord{ID: id, Hash: h[:], Joined: time.Now().UTC()})
		return nil
	})
	if again {
		return protocol.PartyReply{Party: rec.view(), Member: id}, nil
	}
	if err != nil {
		return protocol.PartyReply{}, err
	}
	p.index(ctx, token, req.Code)
	p.m.log.Info("party joined", "party", req.Code, "member", id, logkey.ClientIP, req.ClientIP)
	return protocol.PartyReply{Party: rec.view(), Member: id, Token: token}, nil
}

// ended is a waiting request that a party change ended: it gets err and the end of its stream.
type ended struct {
	inbox string
	err   *protocol.PlayError
}

// endAll sends each ended request its error and the end of its stream.
func (p *partyService) endAll(es []ended) {
	for _, e := range es {
		r := streamReply{nc: p.m.nc, inbox: e.inbox, m: p.m}
		r.send(protocol.Error(e.err.Code, e.err.Message))
		r.finish()
	}
}

func (p *partyService) leave(ctx context.Context, req protocol.PartyRequest) (protocol.PartyReply, error) {
	var id string
	var hash []byte
	var ch partyExit
	rec, err := p.store.update(ctx, req.Code, func(rec *partyRecord) error {
		mem := rec.member(req.Token)
		if mem == nil {
			return errPartyBadToken
		}
		id, hash = mem.ID, mem.Hash
		ch = p.exit(rec, mem, partyErr(http.StatusConflict, "you left the party"),
			fmt.Sprintf("party member %s left the party; the party left the queue, ask again", mem.ID))
		return nil
	})
	if err != nil {
		return protocol.PartyReply{}, err
	}
	p.unindex(ctx, hash)
	p.finishExit(ch)
	p.m.log.Info("party left", "party", req.Code, "member", id, "deleted", rec == nil)
	reply := protocol.PartyReply{Member: id}
	if rec != nil {
		reply.Party = rec.view()
	}
	return reply, nil
}

func (p *partyService) kick(ctx context.Context, req protocol.PartyRequest) (protocol.PartyReply, error) {
	if req.Member == "" {
		return protocol.PartyReply{}, partyErr(http.StatusBadRequest, "member id required")
	}
	var id string
	var hash []byte
	var ch partyExit
	rec, err := p.store.update(ctx, req.Code, func(rec *partyRecord) error {
		caller := rec.member(req.Token)
		if caller == nil {
			return errPartyBadToken
		}
		id = caller.ID
		if !caller.Leader {
			return partyErr(http.StatusForbidden, "only the party leader can kick members")
		}
		victim := rec.memberByID(req.Member)
		if victim == nil {
			return partyErr(http.StatusNotFound, "no member %q in the party", req.Member)
		}
		if victim == caller {
			return partyErr(http.StatusBadRequest, "the leader cannot kick itself; leave the party instead")
		}
		hash = victim.Hash
		ch = p.exit(rec, victim, partyErr(http.StatusForbidden, "removed from the party"),
			fmt.Sprintf("party member %s was removed from the party; the party left the queue, ask again", victim.ID))
		return nil
	})
	if err != nil {
		return protocol.PartyReply{}, err
	}
	p.unindex(ctx, hash)
	p.finishExit(ch)
	p.m.log.Info("party member kicked", "party", req.Code, "member", req.Member, "by", id)
	return protocol.PartyReply{Party: rec.view(), Member: id}, nil
}

// partyExit is what a member's leaving (or being kicked) does besides the party entry: the
// requests to end, and the party's ticket to withdraw first (then the requests end only if it
// was still waiting: a matched ticket's group answers them).
type partyExit struct {
	ticket *partyPlayRecord
	end    []ended
}

// exit removes mem from rec inside a change. mem's waiting request ends with own; when the
// party waits in a queue, its turn stops and every other waiting member is told others.
func (p *partyService) exit(rec *partyRecord, mem *partyMemberRecord, own *protocol.PlayError, others string) partyExit {
	var ch partyExit
	switch {
	case rec.Play != nil && rec.Play.Queue != "":
		// The party waits in a queue, or is entering it (no ticket recorded yet: the turn's
		// matchmaker then finds its turn gone, withdraws the ticket and ends the requests).
		ch.ticket = rec.Play
		self := ""
		if mem.Wait != nil {
			self = mem.Wait.Inbox
		}
		ch.end = p.stopQueued(rec, others)
		for i := range ch.end {
			if ch.end[i].inbox == self {
				ch.end[i].err = own
			}
		}
	case rec.Play != nil:
		// The party's group session is being made: the member gets its seat anyway.
	case mem.Wait != nil:
		ch.end = []ended{{inbox: mem.Wait.Inbox, err: own}}
	}
	rec.remove(mem)
	return ch
}

// finishExit withdraws the ticket, if any, and ends the requests.
func (p *partyService) finishExit(ch partyExit) {
	if ch.ticket != nil && (ch.ticket.Ticket == "" || !p.withdraw(ch.ticket)) {
		return
	}
	p.endAll(ch.end)
}

func (p *partyService) get(ctx context.Context, req protocol.PartyRequest) (protocol.PartyReply, error) {
	rec, _, err := p.store.get(ctx, req.Code)
	if err != nil {
		return protocol.PartyReply{}, fmt.Errorf("%w: %w", errPartyStore, err)
	}
	if rec == nil {
		return protocol.PartyReply{}, errPartyUnknown
	}
	mem := rec.member(req.Token)
	if mem == nil {
		return protocol.PartyReply{}, errPartyBadToken
	}
	if rec.Play != nil && rec.Play.Ticket != "" && p.stalePlay(ctx, rec.Play) {
		// The party's ticket left its queue (matched and answered, expired or withdrawn): its
		// members are no longer waiting, whatever the entry still says until the next request.
		rec.clearPlay()
	}
	return protocol.PartyReply{Party: rec.view(), Member: mem.ID}, nil
}
