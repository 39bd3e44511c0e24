package matchmaker

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// partyOp sends one party management request and returns the reply.
func (h *harness) partyOp(t *testing.T, req protocol.PartyRequest) protocol.PartyReply {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := h.nc.Request(protocol.SubjectMatchmakerPartyPrefix+"."+h.cfg.AppName+"."+h.cfg.AppVersion, b, 10*time.Second)
	if err != nil {
		t.Fatalf("party %s: %v", req.Op, err)
	}
	var reply protocol.PartyReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("party reply %q: %v", msg.Data, err)
	}
	return reply
}

// partyOK sends a party request that must succeed.
func (h *harness) partyOK(t *testing.T, req protocol.PartyRequest) protocol.PartyReply {
	t.Helper()
	r := h.partyOp(t, req)
	if r.Error != nil {
		t.Fatalf("party %s: %v", req.Op, r.Error)
	}
	return r
}

// partyFails sends a party request that must fail with code and a message containing msg.
func (h *harness) partyFails(t *testing.T, req protocol.PartyRequest, code uint16, msg string) {
	t.Helper()
	r := h.partyOp(t, req)
	if r.Error == nil || r.Error.Code != code || !strings.Contains(r.Error.Message, msg) {
		t.Fatalf("party %s %+v: got %+v (party %+v), want error %d %q", req.Op, req, r.Error, r.Party, code, msg)
	}
}

// partyMember is a member of a test party: its id and token.
type partyMember struct{ id, token string }

// newParty creates a party and has n-1 more members join; members[0] leads.
func (h *harness) newParty(t *testing.T, n int) (string, []partyMember) {
	t.Helper()
	c := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpCreate, ClientIP: "203.0.113.1"})
	members := []partyMember{{c.Member, c.Token}}
	for range n - 1 {
		j := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: c.Party.Code})
		members = append(members, partyMember{j.Member, j.Token})
	}
	return c.Party.Code, members
}

// playParty opens a member's streaming request for the party (from ip, optionally in queue).
func (h *harness) playParty(t *testing.T, code string, mem partyMember, ip, queue string) abandonable {
	t.Helper()
	body, err := json.Marshal(protocol.MatchmakerRequest{ClientIP: ip, Game: h.cfg.AppName, Version: h.cfg.AppVersion,
		Queue: queue, Party: &protocol.PartyRef{Code: code, Token: mem.token}})
	if err != nil {
		t.Fatal(err)
	}
	inbox := nats.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.PublishRequest(h.mms[0].ownStreamSubject(), inbox, body); err != nil {
		t.Fatal(err)
	}
	return abandonable{streamReader: &streamReader{sub: sub}, inbox: inbox}
}

// playOn hands a member's request for the party to the given matchmaker, as its queue group
// might.
func (h *harness) playOn(t *testing.T, mm *Matchmaker, code string, mem partyMember, ip string) abandonable {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	req := protocol.MatchmakerRequest{ClientIP: ip, Party: &protocol.PartyRef{Code: code, Token: mem.token}}
	mm.play.(*playEngine).party.play(streamReply{nc: mm.nc, inbox: inbox, m: mm}, req, netip.MustParseAddr(ip))
	return abandonable{streamReader: &streamReader{sub: sub}, inbox: inbox}
}

// ticketRecorded waits until the party's entry names its ticket (the ticket exists, and is
// recorded just after: a leave in between takes the "entering the queue" path instead).
func (h *harness) ticketRecorded(t *testing.T, code string) {
	t.Helper()
	store := h.mms[0].play.(*playEngine).party.(*partyService).store
	eventually.True(t, 10*time.Second, func() bool {
		rec, _, err := store.get(context.Background(), code)
		return err == nil && rec != nil && rec.Play != nil && rec.Play.Ticket != ""
	}, "party ticket recorded")
}

// progress reads feedback until a progress report containing text.
func (a abandonable) progress(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, f, end, err := a.next()
		if err != nil || end {
			t.Fatalf("waiting for progress %q: end %v, %v", text, end, err)
		}
		switch {
		case f.Kind == protocol.FeedbackProgressReport && strings.Contains(f.Text, text):
			return
		case f.Kind == protocol.FeedbackError || f.Kind == protocol.FeedbackSessionReady:
			t.Fatalf("waiting for progress %q: got %v", text, f)
		}
	}
	t.Fatalf("no progress %q within 20 s", text)
}

// restWithin collects the feedback up to the end of the stream, failing after d even if
// progress keeps coming (a queue keeps a waiting stream alive).
func (a abandonable) restWithin(t *testing.T, d time.Duration) []protocol.Feedback {
	t.Helper()
	defer func() { _ = a.sub.Unsubscribe() }()
	deadline := time.Now().Add(d)
	var fbs []protocol.Feedback
	for time.Now().Before(deadline) {
		_, f, end, err := a.next()
		if err != nil {
			t.Fatalf("stream: %v after %v", err, fbs)
		}
		if end {
			return fbs
		}
		fbs = append(fbs, f)
	}
	t.Fatalf("stream not ended within %v: %v", d, fbs)
	return nil
}

// endsWithError checks that the stream ends with Error code (message containing msg).
func (a abandonable) endsWithError(t *testing.T, code uint16, msg string) {
	t.Helper()
	fbs := a.restWithin(t, 20*time.Second)
	n := len(fbs)
	if n == 0 || fbs[n-1].Kind != protocol.FeedbackError || fbs[n-1].Code != code || !strings.Contains(fbs[n-1].Text, msg) {
		t.Fatalf("stream ended with %v, want Error %d %q", fbs, code, msg)
	}
}

// ready checks that the stream ends with a SessionReady and returns it.
func (a abandonable) ready(t *testing.T) protocol.SessionReady {
	t.Helper()
	fbs := a.restWithin(t, 20*time.Second)
	n := len(fbs)
	if n == 0 || fbs[n-1].Kind != protocol.FeedbackSessionReady {
		t.Fatalf("stream ended with %v, want SessionReady", fbs)
	}
	return *fbs[n-1].Ready
}

// partyState reads the party as a member sees it.
func (h *harness) partyState(t *testing.T, code string, mem partyMember) *protocol.Party {
	t.Helper()
	return h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpGet, Code: code, Token: mem.token}).Party
}

func waiting(p *protocol.Party) int {
	n := 0
	for _, m := range p.Members {
		if m.Waiting {
			n++
		}
	}
	return n
}

func TestPartyManagement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{configure: func(c *Config) { c.PartyMax = 3 }})
	code, ms := h.newParty(t, 3)
	leader, a, b := ms[0], ms[1], ms[2]
	if !protocol.ValidPartyCode(code) || len(leader.token) != 43 || len(leader.id) == 0 || leader.id == a.id || a.id == b.id {
		t.Fatalf("code %q, members %+v", code, ms)
	}
	p := h.partyState(t, code, b)
	if p.Max != 3 || len(p.Members) != 3 || !p.Members[0].Leader || p.Members[1].Leader || p.Members[0].ID != leader.id || waiting(p) != 0 {
		t.Fatalf("party %+v", p)
	}
	other, others := h.newParty(t, 1)

	for _, tc := range []struct {
		name string
		req  protocol.PartyRequest
		code uint16
		msg  string
	}{
		{"unknown op", protocol.PartyRequest{Op: "dance", Code: code}, 400, `unknown party op "dance"`},
		{"malformed code", protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: "k7qf"}, 400, "malformed party code"},
		{"unknown code", protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: "ZZZZZZ"}, 404, "unknown party code"},
		{"full", protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: code}, 409, "party is full (3 members)"},
		{"join while in another party", protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: other, Token: a.token}, 409, "already in party " + code + "; leave it first"},
		{"create while in a party", protocol.PartyRequest{Op: protocol.PartyOpCreate, Token: others[0].token}, 409, "already in party " + other + "; leave it first"},
		{"get with a wrong token", protocol.PartyRequest{Op: protocol.PartyOpGet, Code: code, Token: others[0].token}, 403, "bad party token"},
		{"get without token", protocol.PartyRequest{Op: protocol.PartyOpGet, Code: code}, 403, "bad party token"},
		{"leave with a wrong token", protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: other, Token: a.token}, 403, "bad party token"},
		{"kick by a member", protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: a.token, Member: b.id}, 403, "only the party leader"},
		{"kick unknown member", protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: leader.token, Member: "nobody"}, 404, `no member "nobody"`},
		{"kick self", protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: leader.token, Member: leader.id}, 400, "cannot kick itself"},
		{"kick without member", protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: leader.token}, 400, "member id required"},
	} {
		t.Run(tc.name, func(t *testing.T) { h.partyFails(t, tc.req, tc.code, tc.msg) })
	}

	// A retried join of one's own party changes nothing.
	again := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: code, Token: a.token})
	if again.Member != a.id || again.Token != "" || len(again.Party.Members) != 3 {
		t.Fatalf("join again: %+v", again)
	}
	// Kick b: the party has room again, and b may join another party.
	k := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: leader.token, Member: b.id})
	if len(k.Party.Members) != 2 || k.Member != leader.id {
		t.Fatalf("after kick: %+v", k)
	}
	h.partyFails(t, protocol.PartyRequest{Op: protocol.PartyOpGet, Code: code, Token: b.token}, 403, "bad party token")
	h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: other, Token: b.token})

	// The leader leaves: the oldest member leads; the last one out deletes the party.
	l := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: code, Token: leader.token})
	if len(l.Party.Members) != 1 || l.Party.Members[0].ID != a.id || !l.Party.Members[0].Leader {
		t.Fatalf("after the leader left: %+v", l.Party)
	}
	last := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: code, Token: a.token})
	if last.Party != nil || last.Member != a.id {
		t.Fatalf("last leave: %+v", last)
	}
	h.partyFails(t, protocol.PartyRequest{Op: protocol.PartyOpGet, Code: code, Token: a.token}, 404, "unknown party code")
	// Tokens are never stored, only their hashes.
	e, err := h.mms[0].play.(*playEngine).party.(*partyService).store.kv.Get(context.Background(), h.cfg.AppName+"."+h.cfg.AppVersion+"."+other)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), others[0].token) || strings.Contains(string(e.Value()), b.token) {
		t.Fatal("a party token is stored in clear")
	}
	if strings.Contains(h.logs.String(), others[0].token) {
		t.Fatal("a party token is logged")
	}
}

func TestPartyPlaysTogether(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6})
	code, ms := h.newParty(t, 3)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "Waiting for the party leader (1 of 3 ready)")
	b := h.playParty(t, code, ms[2], "203.0.113.12", "")
	b.progress(t, "Waiting for the party leader (2 of 3 ready)")
	a.progress(t, "(2 of 3 ready)")
	if p := h.partyState(t, code, ms[0]); waiting(p) != 2 || p.Members[0].Waiting {
		t.Fatalf("party %+v", p)
	}
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "")
	readies := []protocol.SessionReady{leader.ready(t), a.ready(t), b.ready(t)}
	ids := map[uint64]bool{}
	for _, r := range readies {
		if r.IP != readies[0].IP || r.Port != readies[0].Port {
			t.Fatalf("members on different servers: %+v", readies)
		}
		ids[h.clientIDOf(t, r.Token)] = true
	}
	if len(ids) != 3 {
		t.Fatalf("client ids not distinct: %v", ids)
	}
	// Every member's address is on the one deployment the group's sessions share.
	deployments, users := map[string]bool{}, map[string]bool{}
	for _, s := range h.sim.State().Sessions {
		deployments[s.DeploymentID] = true
		for _, u := range s.Users {
			users[u] = true
		}
	}
	if len(deployments) != 1 || !users["203.0.113.10"] || !users["203.0.113.11"] || !users["203.0.113.12"] {
		t.Fatalf("group sessions on deployments %v with users %v", deployments, users)
	}
	// The party is idle again afterwards, and can play again.
	eventually.True(t, 10*time.Second, func() bool { return waiting(h.partyState(t, code, ms[0])) == 0 }, "party idle again")
	h.releaseAll(t)
}

func TestPartyLeaderLeavesWhileMembersWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6})
	code, ms := h.newParty(t, 3)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "Waiting for the party leader (1 of 3 ready)")
	b := h.playParty(t, code, ms[2], "203.0.113.12", "")
	b.progress(t, "(2 of 3 ready)")
	// The leader leaves: a (the oldest member) leads, everyone left is waiting, so they play.
	l := h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: code, Token: ms[0].token})
	if !l.Party.Members[0].Leader || l.Party.Members[0].ID != ms[1].id {
		t.Fatalf("lead did not pass to the oldest member: %+v", l.Party)
	}
	ra, rb := a.ready(t), b.ready(t)
	if ra.IP != rb.IP || ra.Port != rb.Port {
		t.Fatalf("on different servers: %+v %+v", ra, rb)
	}
	h.releaseAll(t)
}

func TestPartyMemberDropsWhileWaiting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6})
	code, ms := h.newParty(t, 2)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "Waiting for the party leader (1 of 2 ready)")
	a.cancel(t, h)
	eventually.True(t, 10*time.Second, func() bool { return waiting(h.partyState(t, code, ms[0])) == 0 }, "dropped member no longer waiting")
	// Still a member: the leader waits for it, and it comes back.
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "")
	leader.progress(t, "Waiting for party members (1 of 2 ready)")
	a2 := h.playParty(t, code, ms[1], "203.0.113.11", "")
	r1, r2 := leader.ready(t), a2.ready(t)
	if r1.IP != r2.IP || r1.Port != r2.Port {
		t.Fatalf("on different servers: %+v %+v", r1, r2)
	}
	h.releaseAll(t)
}

func TestPartyKickedWhileWaiting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	code, ms := h.newParty(t, 3)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "(1 of 3 ready)")
	b := h.playParty(t, code, ms[2], "203.0.113.12", "")
	b.progress(t, "(2 of 3 ready)")
	h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpKick, Code: code, Token: ms[0].token, Member: ms[1].id})
	a.endsWithError(t, 403, "removed from the party")
	b.progress(t, "Waiting for the party leader (1 of 2 ready)")
	// The kicked member's token no longer plays.
	h.playParty(t, code, ms[1], "203.0.113.11", "").endsWithError(t, 403, "bad party token")
	// b's request is replaced by its newer one.
	b2 := h.playParty(t, code, ms[2], "203.0.113.12", "")
	b.endsWithError(t, 409, "replaced by a newer request")
	b2.progress(t, "(1 of 2 ready)")
}

func TestPartyPlayErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{configure: func(c *Config) { c.Queues = match.Default() }})
	code, ms := h.newParty(t, 3)
	for _, tc := range []struct {
		name  string
		code  string
		mem   partyMember
		queue string
		want  uint16
		msg   string
	}{
		{"bad token", code, partyMember{token: strings.Repeat("A", 43)}, "", 403, "bad party token"},
		{"unknown code", "ZZZZZZ", ms[0], "", 404, "unknown party code"},
		{"malformed code", "abc", ms[0], "", 400, "party code"},
		{"unknown queue", code, ms[0], "nope", 404, "nope"},
		{"party larger than the queue", code, ms[0], "duo", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.playParty(t, tc.code, tc.mem, "203.0.113.10", tc.queue).endsWithError(t, tc.want, tc.msg)
		})
	}
	if p := h.partyState(t, code, ms[0]); waiting(p) != 0 {
		t.Fatalf("a refused request left a member waiting: %+v", p)
	}
}

func TestPartyWaitLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{configure: func(c *Config) { c.PartyWaitLimit = time.Second }})
	code, ms := h.newParty(t, 3)
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "")
	leader.progress(t, "Waiting for party members (1 of 3 ready)")
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "Waiting for party members (2 of 3 ready)")
	// The leader's limit ends every waiting request of the party.
	leader.endsWithError(t, 408, "the party was not ready within 1s (2 of 3 members ready)")
	a.endsWithError(t, 408, "the party was not ready within 1s")
	if p := h.partyState(t, code, ms[0]); waiting(p) != 0 {
		t.Fatalf("waits left after the limit: %+v", p)
	}
	// A member waiting for a leader who never asks ends at its own limit.
	code2, ms2 := h.newParty(t, 2)
	h.playParty(t, code2, ms2[1], "203.0.113.11", "").endsWithError(t, 408, "the party did not start within 1s (1 of 2 members ready)")
	if p := h.partyState(t, code2, ms2[0]); waiting(p) != 0 {
		t.Fatalf("wait left after the limit: %+v", p)
	}
}

// A party whose members' requests reach different matchmakers still plays as one group.
func TestPartyAcrossTwoMatchmakers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6})
	h.start(t, h.cfg)
	code, ms := h.newParty(t, 2)
	a := h.playOn(t, h.mms[1], code, ms[1], "203.0.113.11")
	a.progress(t, "Waiting for the party leader (1 of 2 ready)")
	leader := h.playOn(t, h.mms[0], code, ms[0], "203.0.113.10")
	r1, r2 := leader.ready(t), a.ready(t)
	if r1.IP != r2.IP || r1.Port != r2.Port || h.clientIDOf(t, r1.Token) == h.clientIDOf(t, r2.Token) {
		t.Fatalf("not one group: %+v %+v", r1, r2)
	}
	h.releaseAll(t)
}

// partyProgress texts, as members see them.
func TestPartyProgressText(t *testing.T) {
	t.Parallel()
	w := &partyWaitRecord{}
	for _, tc := range []struct {
		rec  *partyRecord
		mem  int
		want string
	}{
		{&partyRecord{Members: []*partyMemberRecord{{Leader: true, Wait: w}, {}, {}}}, 0, "Waiting for party members (1 of 3 ready)"},
		{&partyRecord{Members: []*partyMemberRecord{{Leader: true}, {Wait: w}, {Wait: w}}}, 1, "Waiting for the party leader (2 of 3 ready)"},
		{&partyRecord{Members: []*partyMemberRecord{{Leader: true, Wait: w}, {Wait: w}, {}}}, 1, "Waiting for party members (2 of 3 ready)"},
	} {
		if got := partyProgress(tc.rec, tc.rec.Members[tc.mem]); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPartyCodesAndTokens(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		c := newPartyCode()
		if !protocol.ValidPartyCode(c) {
			t.Fatalf("bad code %q", c)
		}
		seen[c] = true
		if tok := newPartyToken(); len(tok) != 43 || !protocol.ValidPartyToken(tok) {
			t.Fatalf("bad token %q", tok)
		}
	}
	if len(seen) < 195 {
		t.Fatalf("only %d distinct codes of 200", len(seen))
	}
	rec := &partyRecord{}
	for i := range 3 {
		h := hashPartyToken("t" + strconv.Itoa(i))
		rec.Members = append(rec.Members, &partyMemberRecord{ID: strconv.Itoa(i), Hash: h[:]})
	}
	if m := rec.member("t1"); m == nil || m.ID != "1" {
		t.Fatalf("member(t1) = %+v", m)
	}
	if rec.member("t9") != nil {
		t.Fatal("unknown token matched")
	}
}

// queuesForParties are two queues: "room" (2 to 4 players) and "four" (exactly 4).
func queuesForParties(t *testing.T) match.Config {
	t.Helper()
	cfg, err := match.ParseConfig([]byte(`{"queues":[{"name":"room","min":2,"max":4},{"name":"four","min":4,"max":4}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPartyInQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6, configure: func(c *Config) { c.Queues = queuesForParties(t) }})
	// A party of two is one ticket: alone it makes a match of "room".
	code, ms := h.newParty(t, 2)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "four") // a member's queue does not count
	a.progress(t, "Waiting for the party leader (1 of 2 ready)")
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "room")
	r1, r2 := leader.ready(t), a.ready(t)
	if r1.IP != r2.IP || r1.Port != r2.Port {
		t.Fatalf("on different servers: %+v %+v", r1, r2)
	}
	eventually.True(t, 10*time.Second, func() bool { return waiting(h.partyState(t, code, ms[0])) == 0 }, "party idle after its match")

	// In "four" the party waits; a member who goes away takes the ticket out, the others are told.
	leader = h.playParty(t, code, ms[0], "203.0.113.10", "four")
	a = h.playParty(t, code, ms[1], "203.0.113.11", "")
	leader.progress(t, "Waiting in queue four")
	a.cancel(t, h)
	leader.endsWithError(t, 410, "left the queue")
	eventually.True(t, 10*time.Second, func() bool { return waiting(h.partyState(t, code, ms[0])) == 0 }, "party idle after its ticket left")

	// Again; now a member leaves the party: the ticket goes, the leader is told why.
	leader = h.playParty(t, code, ms[0], "203.0.113.10", "four")
	a = h.playParty(t, code, ms[1], "203.0.113.11", "")
	leader.progress(t, "Waiting in queue four")
	h.ticketRecorded(t, code)
	// While its ticket waits, the party cannot ask again.
	h.playParty(t, code, ms[0], "203.0.113.10", "room").endsWithError(t, 409, "the party is already playing")
	h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: code, Token: ms[1].token})
	leader.endsWithError(t, 409, "party member "+ms[1].id+" left the party; the party left the queue")
	a.endsWithError(t, 409, "you left the party")
	h.releaseAll(t)
}

func TestPartyStaleWaitsDropped(t *testing.T) {
	t.Parallel()
	p := &partyService{waitLimit: time.Minute}
	old := &partyWaitRecord{Since: time.Now().Add(-time.Minute - partyStaleMargin - time.Second)}
	fresh := &partyWaitRecord{Since: time.Now()}
	rec := &partyRecord{Members: []*partyMemberRecord{{Leader: true, Wait: old}, {Wait: fresh}}}
	if !p.dropStaleWaits(rec) || rec.Members[0].Wait != nil || rec.Members[1].Wait != fresh {
		t.Fatalf("after drop: %+v %+v", rec.Members[0], rec.Members[1])
	}
	if p.dropStaleWaits(rec) {
		t.Fatal("dropped a fresh wait")
	}
}

func TestPartyConfigValidation(t *testing.T) {
	t.Parallel()
	key, _ := netcode.GenerateKey()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"negative party max", func(c *Config) { c.PartyMax = -1 }},
		{"party max too large", func(c *Config) { c.PartyMax = MaxPartyMax + 1 }},
		{"negative wait limit", func(c *Config) { c.PartyWaitLimit = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.PrivateKey = key
			tc.mutate(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	c := DefaultConfig()
	c.PrivateKey = key
	if err := c.Validate(); err != nil || c.PartyMax != DefaultPartyMax || c.PartyWaitLimit != DefaultPartyWaitLimit {
		t.Fatalf("defaults: %v, max %d, wait %v", err, c.PartyMax, c.PartyWaitLimit)
	}
}

func TestPartyWaitEndsOnShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	code, ms := h.newParty(t, 2)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "Waiting for the party leader (1 of 2 ready)")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.mms[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.endsWithError(t, 503, "matchmaker shutting down")
}

// Concurrent joins are compare-and-set: none is lost, and the party never exceeds its max.
func TestPartyConcurrentJoins(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	code, ms := h.newParty(t, 1)
	replies := make(chan protocol.PartyReply, 9)
	for range 9 {
		go func() {
			b, _ := json.Marshal(protocol.PartyRequest{Op: protocol.PartyOpJoin, Code: code})
			msg, err := h.nc.Request(protocol.SubjectMatchmakerPartyPrefix+"."+h.cfg.AppName+"."+h.cfg.AppVersion, b, 10*time.Second)
			var r protocol.PartyReply
			if err == nil {
				err = json.Unmarshal(msg.Data, &r)
			}
			if err != nil {
				r.Error = &protocol.PlayError{Code: 599, Message: err.Error()}
			}
			replies <- r
		}()
	}
	ok, full := 0, 0
	for range 9 {
		r := <-replies
		switch {
		case r.Error == nil:
			ok++
		case r.Error.Code == 409 && r.Error.Message == "party is full (8 members)":
			full++
		default:
			t.Errorf("join: %+v", r.Error)
		}
	}
	p := h.partyState(t, code, ms[0])
	ids := map[string]bool{}
	for _, m := range p.Members {
		ids[m.ID] = true
	}
	if ok != 7 || full != 2 || len(p.Members) != 8 || len(ids) != 8 {
		t.Fatalf("%d joined, %d full, party %+v", ok, full, p)
	}
}

// A party's turn left behind by a matchmaker that died (its group never ended, or its ticket is
// gone) does not block the party for ever.
func TestPartyLeftBehindTurnIsCleared(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	store := h.mms[0].play.(*playEngine).party.(*partyService).store
	ctx := context.Background()
	setTurn := func(code string, turn *partyPlayRecord) {
		t.Helper()
		if _, err := store.update(ctx, code, func(rec *partyRecord) error {
			rec.Play = turn
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	code, ms := h.newParty(t, 2)
	setTurn(code, &partyPlayRecord{ID: "t1", Since: time.Now(), Instance: "dead"})
	h.playParty(t, code, ms[1], "203.0.113.11", "").endsWithError(t, 409, "the party is already playing")
	setTurn(code, &partyPlayRecord{ID: "t2", Since: time.Now().Add(-time.Hour), Instance: "dead"})
	h.playParty(t, code, ms[1], "203.0.113.11", "").progress(t, "Waiting for the party leader (1 of 2 ready)")

	code2, ms2 := h.newParty(t, 2)
	setTurn(code2, &partyPlayRecord{ID: "t3", Since: time.Now(), Instance: "dead", Ticket: h.cfg.AppName + ".v1.room.gone"})
	h.playParty(t, code2, ms2[1], "203.0.113.11", "").progress(t, "Waiting for the party leader (1 of 2 ready)")
}

// A party whose group gets no server: every member gets the same error, and the party can ask
// again.
func TestPartyGroupFailureEndsTurn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6, faults: edgegapsim.Faults{BootFailureRate: 1}})
	code, ms := h.newParty(t, 2)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "(1 of 2 ready)")
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "")
	la, aa := leader.restWithin(t, 20*time.Second), a.restWithin(t, 20*time.Second)
	lf, af := la[len(la)-1], aa[len(aa)-1]
	if lf.Kind != protocol.FeedbackError || af.Kind != protocol.FeedbackError || lf.Code != af.Code || lf.Text != af.Text {
		t.Fatalf("leader ended with %v, member with %v: want the same error", lf, af)
	}
	// Idle again: a new request waits instead of "already playing".
	eventually.True(t, 10*time.Second, func() bool { return waiting(h.partyState(t, code, ms[0])) == 0 }, "party idle after the failure")
	h.playParty(t, code, ms[1], "203.0.113.11", "").progress(t, "(1 of 2 ready)")
	h.noLeaks(t, 10*time.Second)
}

// A member whose request waits on a matchmaker that dies still plays: its reply subject is the
// front door's, so the matchmaker that starts the party answers it.
func TestPartyMemberOfDeadMatchmakerStillPlays(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, sockets: 6, configure: func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond }})
	victim := h.start(t, h.cfg)
	code, ms := h.newParty(t, 2)
	a := h.playOn(t, victim, code, ms[1], "203.0.113.11")
	a.progress(t, "Waiting for the party leader (1 of 2 ready)")
	victim.nc.Close()
	leader := h.playOn(t, h.mms[0], code, ms[0], "203.0.113.10")
	r1, r2 := leader.ready(t), a.ready(t)
	if r1.IP != r2.IP || r1.Port != r2.Port {
		t.Fatalf("on different servers: %+v %+v", r1, r2)
	}
	h.releaseAll(t)
}

// gateQueue is a match queue whose submit waits for the test.
type gateQueue struct {
	entered   chan struct{}
	release   chan struct{}
	withdrawn chan string
}

func (q *gateQueue) check(string, protocol.Props, int) *requestError { return nil }

func (q *gateQueue) submit(context.Context, string, []groupPlayer, protocol.Props) (string, *requestError) {
	q.entered <- struct{}{}
	<-q.release
	return "t.key", nil
}

func (q *gateQueue) withdraw(_ context.Context, key string) bool {
	q.withdrawn <- key
	return true
}

// A member who leaves while the party is entering its queue (the ticket exists, the party
// entry does not name it yet): the ticket is withdrawn and every request told.
func TestPartyLeaveWhileEnteringQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	ps := h.mms[0].play.(*playEngine).party.(*partyService)
	q := &gateQueue{entered: make(chan struct{}, 1), release: make(chan struct{}), withdrawn: make(chan string, 1)}
	release := sync.OnceFunc(func() { close(q.release) })
	t.Cleanup(release) // before the matchmaker's shutdown, which waits for the party's requests
	ps.mu.Lock()
	ps.queue = q
	ps.mu.Unlock()
	code, ms := h.newParty(t, 2)
	a := h.playParty(t, code, ms[1], "203.0.113.11", "")
	a.progress(t, "(1 of 2 ready)")
	leader := h.playParty(t, code, ms[0], "203.0.113.10", "gate")
	select {
	case <-q.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the party did not enter its queue")
	}
	h.partyOK(t, protocol.PartyRequest{Op: protocol.PartyOpLeave, Code: code, Token: ms[1].token})
	release()
	select {
	case key := <-q.withdrawn:
		if key != "t.key" {
			t.Fatalf("withdrew %q", key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ticket was not withdrawn")
	}
	leader.endsWithError(t, 409, "a member left the party while it entered the queue")
	a.endsWithError(t, 409, "a member left the party while it entered the queue")
	if p := h.partyState(t, code, ms[0]); waiting(p) != 0 || len(p.Members) != 1 {
		t.Fatalf("party after: %+v", p)
	}
}
