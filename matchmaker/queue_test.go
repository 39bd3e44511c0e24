package matchmaker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// testQueues are the queues of the queue tests: duo (exactly 2, one Match session), pair (exactly
// 2, Seat sessions), room (2-4 relaxing to 1 after a short wait), ranked (a skill window) and
// brief (a short wait limit) and quad (exactly 4, Seat sessions).
func testQueues() match.Config {
	return match.Config{Queues: []match.Queue{
		{Name: "duo", Min: 2, Max: 2, Kind: match.KindMatch},
		{Name: "pair", Min: 2, Max: 2, Kind: match.KindSeat},
		{Name: "room", Min: 2, Max: 4, Kind: match.KindSeat, RelaxAfter: 300 * time.Millisecond, RelaxedMin: 1},
		{Name: "ranked", Min: 2, Max: 2, Window: &match.Window{Prop: "skill", Initial: 100, Lo: 0, Hi: 5000}},
		{Name: "brief", Min: 2, Max: 2, WaitLimit: 300 * time.Millisecond},
		{Name: "quad", Min: 4, Max: 4, Kind: match.KindSeat},
	}}
}

// newQueueHarness is a harness whose matchmakers serve testQueues, on deployments with room for
// a few players.
func newQueueHarness(t *testing.T, o harnessOpts) (*harness, *bus.PlayBuckets) {
	t.Helper()
	configure := o.configure
	o.webhook = true
	if o.sockets == 0 {
		o.sockets = 8
	}
	o.configure = func(c *Config) {
		c.Queues = testQueues()
		if configure != nil {
			configure(c)
		}
	}
	h := newHarness(t, o)
	pb, err := h.b.OpenPlay(context.Background(), h.cfg.Buckets)
	if err != nil {
		t.Fatal(err)
	}
	return h, pb
}

// playBody is a streaming request body for a queue.
func (h *harness) playBody(ip, queue, props string) string {
	b := `{"client_ip":"` + ip + `","game":"` + h.cfg.AppName + `","version":"v1","queue":"` + queue + `"`
	if props != "" {
		b += `,"props":` + props
	}
	return b + "}"
}

// ticketCount returns how many tickets the play_tickets bucket holds.
func ticketCount(t testing.TB, pb *bus.PlayBuckets) int {
	t.Helper()
	keys, err := pb.Tickets.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// readyOf returns the final SessionReady of a finished stream.
func readyOf(t testing.TB, fbs []protocol.Feedback) protocol.SessionReady {
	t.Helper()
	if len(fbs) == 0 || fbs[len(fbs)-1].Kind != protocol.FeedbackSessionReady {
		t.Fatalf("stream did not end with SessionReady: %+v", fbs)
	}
	return *fbs[len(fbs)-1].Ready
}

// streamsOf opens one streaming request per body and returns their outcomes.
func (h *harness) streamsOf(t *testing.T, bodies ...string) [][]protocol.Feedback {
	t.Helper()
	readers := make([]*streamReader, len(bodies))
	for i, b := range bodies {
		s, err := h.openStream(h.cfg.AppName, "v1", b)
		if err != nil {
			t.Fatal(err)
		}
		readers[i] = s
	}
	out := make([][]protocol.Feedback, len(bodies))
	for i, s := range readers {
		_, fbs, err := s.rest()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		out[i] = fbs
	}
	return out
}

func TestQueueFormsOneMatchOnOneServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		queue        string
		sameSession  bool
		wantSessions int
	}{
		{"duo", true, 1},   // kind match: one session, both client ids map to it
		{"pair", false, 2}, // kind seat: a lead session and a seat on its deployment
	} {
		t.Run(tc.queue, func(t *testing.T) {
			t.Parallel()
			h, pb := newQueueHarness(t, harnessOpts{})
			res := h.streamsOf(t, h.playBody("81.2.69.160", tc.queue, ""), h.playBody("81.2.69.161", tc.queue, ""))
			a, b := readyOf(t, res[0]), readyOf(t, res[1])
			if a.IP != b.IP || a.Port != b.Port {
				t.Fatalf("players on different servers: %s:%d and %s:%d", a.IP, a.Port, b.IP, b.Port)
			}
			if a.Token == b.Token {
				t.Fatal("both players got the same token")
			}
			ca, cb := h.clientIDOf(t, a.Token), h.clientIDOf(t, b.Token)
			if ca == cb {
				t.Fatal("both players got the same client id")
			}
			var waited bool
			for _, f := range res[0] {
				if f.Kind == protocol.FeedbackProgressReport && strings.HasPrefix(f.Text, "Waiting in queue "+tc.queue) {
					waited = true
				}
			}
			if !waited {
				t.Fatalf("no queue progress in %+v", res[0])
			}
			ctx := context.Background()
			sa, err := h.b.SessionsLy2Eg.Get(ctx, strconv.FormatUint(ca, 10))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := h.b.SessionsLy2Eg.Get(ctx, strconv.FormatUint(cb, 10))
			if err != nil {
				t.Fatal(err)
			}
			if (string(sa.Value()) == string(sb.Value())) != tc.sameSession {
				t.Fatalf("sessions %s and %s, want same=%v", sa.Value(), sb.Value(), tc.sameSession)
			}
			if got := h.sim.LiveSessions(); got != tc.wantSessions {
				t.Fatalf("%d live sessions, want %d", got, tc.wantSessions)
			}
			eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "tickets deleted")
			if n := h.counter(t, h.mms[0], "bevygap_matchmaker_queue_matches_total"); n != 1 {
				t.Fatalf("queue_matches_total %v, want 1", n)
			}
			// Both players connect, then leave: every session goes.
			for _, sid := range []string{string(sa.Value()), string(sb.Value())} {
				if _, err := h.b.ActiveConnections.Put(ctx, sid, []byte("1")); err != nil {
					t.Fatal(err)
				}
			}
			for _, sid := range []string{string(sa.Value()), string(sb.Value())} {
				_ = h.b.ActiveConnections.Delete(ctx, sid)
			}
			h.noLeaks(t, 5*time.Second)
		})
	}
}

func TestQueueRoomRelaxesToOne(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{})
	res := h.streamsOf(t, h.playBody("81.2.69.160", "room", ""))
	readyOf(t, res[0])
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "ticket deleted")
	h.releaseAll(t)
}

func TestQueueCancelledTicketIsNotMatched(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{})
	gone, err := h.openStream(h.cfg.AppName, "v1", h.playBody("81.2.69.160", "duo", ""))
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 1 }, "ticket queued")
	cancelSubject, err := protocol.MatchmakerCancelSubject(h.cfg.AppName, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.nc.Publish(cancelSubject, []byte(gone.sub.Subject)); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "cancelled ticket withdrawn")
	res := h.streamsOf(t, h.playBody("81.2.69.161", "duo", ""), h.playBody("81.2.69.162", "duo", ""))
	readyOf(t, res[0])
	readyOf(t, res[1])
	// The player who went away got no seat.
	for {
		msg, err := gone.sub.NextMsg(50 * time.Millisecond)
		if err != nil {
			break
		}
		if strings.Contains(string(msg.Data), "SessionReady") {
			t.Fatal("the cancelled player got a seat")
		}
	}
	_ = gone.sub.Unsubscribe()
	if got := h.sim.LiveSessions(); got != 1 {
		t.Fatalf("%d live sessions, want 1", got)
	}
	h.releaseAll(t)
}

func TestQueueRequestErrors(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{})
	g := h.cfg.AppName
	for _, tc := range []struct {
		name, body string
		code       uint16
		msg        string
	}{
		{"unknown queue", h.playBody("81.2.69.160", "nope", ""), http.StatusNotFound, `no queue named "nope"`},
		{"out of range", h.playBody("81.2.69.160", "ranked", `{"skill":99999}`), http.StatusBadRequest, "skill"},
		{"missing prop", h.playBody("81.2.69.160", "ranked", ""), http.StatusBadRequest, "skill"},
		{"props without queue", `{"client_ip":"81.2.69.160","game":"` + g + `","version":"v1","props":{"skill":1}}`, http.StatusBadRequest, "props need a queue"},
		{"bad props", `{"client_ip":"81.2.69.160","game":"` + g + `","version":"v1","queue":"duo","props":{"skill":[1]}}`, http.StatusBadRequest, "invalid props"},
		{"bad ip", `{"client_ip":"nope","game":"` + g + `","version":"v1","queue":"duo"}`, http.StatusBadRequest, "client_ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, fbs := h.stream(t, g, "v1", tc.body)
			if string(raw[0]) != `"Acknowledged"` || len(fbs) != 2 {
				t.Fatalf("stream %q", raw)
			}
			f := fbs[1]
			if f.Kind != protocol.FeedbackError || f.Code != tc.code || !strings.Contains(f.Text, tc.msg) {
				t.Fatalf("got %+v, want error %d containing %q", f, tc.code, tc.msg)
			}
		})
	}
	if n := ticketCount(t, pb); n != 0 {
		t.Fatalf("%d tickets left by refused requests", n)
	}
}

func TestQueuePlainRequestUnchanged(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{})
	raw, fbs := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"81.2.69.160","game":"`+h.cfg.AppName+`","version":"v1","queue":null}`)
	if string(raw[0]) != `"Acknowledged"` || fbs[1].Kind != protocol.FeedbackSessionRequestAccepted {
		t.Fatalf("plain stream %q", raw)
	}
	readyOf(t, fbs)
	for _, f := range fbs {
		if strings.Contains(f.Text, "queue") {
			t.Fatalf("plain request reported a queue: %+v", f)
		}
	}
	if n := ticketCount(t, pb); n != 0 {
		t.Fatalf("plain request made %d tickets", n)
	}
	h.releaseAll(t)
}

// leaseHolder returns the matchmaker of h holding queue's lease.
func leaseHolder(t *testing.T, h *harness, pb *bus.PlayBuckets, queue string) *Matchmaker {
	t.Helper()
	var holder *Matchmaker
	eventually.True(t, 5*time.Second, func() bool {
		e, err := pb.Leases.Get(context.Background(), h.cfg.AppName+".v1."+queue)
		if err != nil {
			return false
		}
		for _, mm := range h.mms {
			if mm.instance == string(e.Value()) {
				holder = mm
				return true
			}
		}
		return false
	}, "a matchmaker holds the lease of %s", queue)
	return holder
}

func TestQueueLeaseFailover(t *testing.T) {
	t.Parallel()
	for _, abrupt := range []bool{false, true} {
		name := "shutdown"
		if abrupt {
			name = "abrupt"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, pb := newQueueHarness(t, harnessOpts{noMatchmaker: true, configure: func(c *Config) {
				c.ShutdownTimeout = 200 * time.Millisecond
			}})
			h.start(t, h.cfg)
			h.start(t, h.cfg)
			holder := leaseHolder(t, h, pb, "duo")
			first, err := h.openStream(h.cfg.AppName, "v1", h.playBody("81.2.69.160", "duo", ""))
			if err != nil {
				t.Fatal(err)
			}
			eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 1 }, "ticket queued")
			if abrupt {
				holder.nc.Close() // no lease release, no goodbye: the lease expires
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := holder.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
			survivor := leaseHolder(t, h, pb, "duo")
			if survivor == holder {
				eventually.True(t, 10*time.Second, func() bool { survivor = leaseHolder(t, h, pb, "duo"); return survivor != holder }, "lease taken over")
			}
			second := h.streamsOf(t, h.playBody("81.2.69.161", "duo", ""))
			_, firstFbs, err := first.rest()
			if err != nil {
				t.Fatal(err)
			}
			a, b := readyOf(t, firstFbs), readyOf(t, second[0])
			if a.IP != b.IP || a.Port != b.Port {
				t.Fatal("players on different servers")
			}
			eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "tickets deleted")
			h.releaseAll(t)
		})
	}
}

func TestQueueTicketOfCrashedHolderIsRequeued(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{noMatchmaker: true})
	// A ticket claimed by a matchmaker that died mid-match (it has no alive mark): the next
	// holder gives it back to the queue when it takes the lease.
	first, err := h.nc.SubscribeSync("crashed.inbox")
	if err != nil {
		t.Fatal(err)
	}
	rec := ticketRecord{Players: []ticketPlayer{{IP: "81.2.69.160", Inbox: "crashed.inbox"}}, Created: time.Now().UTC(),
		State: ticketMatched, Match: "m1", Holder: "deadbeef0000", Claimed: time.Now().UTC()}
	b, _ := json.Marshal(rec)
	if _, err := pb.Tickets.Create(context.Background(), h.cfg.AppName+".v1.duo.feedfacefeedface", b); err != nil {
		t.Fatal(err)
	}
	h.start(t, h.cfg)
	res := h.streamsOf(t, h.playBody("81.2.69.161", "duo", ""))
	got := readyOf(t, res[0])
	for {
		msg, err := first.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("the requeued ticket's player got no seat: %v", err)
		}
		if strings.Contains(string(msg.Data), `"SessionReady"`) {
			var f protocol.Feedback
			if err := json.Unmarshal(msg.Data, &f); err != nil {
				t.Fatal(err)
			}
			if f.Ready.IP != got.IP || f.Ready.Port != got.Port {
				t.Fatal("requeued player on another server")
			}
			break
		}
	}
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "tickets deleted")
	h.releaseAll(t)
}

func TestQueueBackfillSeatsPlayerOnTheRunningServer(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{configure: func(c *Config) {
		c.Queues.Queues = append(c.Queues.Queues, match.Queue{Name: "fill", Min: 2, Max: 4, Backfill: true})
	}})
	// A game server is running a match (a plain session stands in for it).
	_, fbs := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"81.2.69.160"}`)
	running := readyOf(t, fbs)
	sess, err := h.newAPI().GetSession(context.Background(), fbs[1].Text)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req protocol.BackfillRequest) protocol.BackfillReply {
		t.Helper()
		b, _ := json.Marshal(req)
		msg, err := h.nc.Request(protocol.SubjectMatchmakerBackfillPrefix+"."+h.cfg.AppName+".v1", b, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r protocol.BackfillReply
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Refusals: unknown queue, a queue without backfill.
	if r := ask(protocol.BackfillRequest{Queue: "nope", RequestID: sess.Deployment.RequestID, Slots: 1}); r.Error == nil || r.Error.Code != http.StatusNotFound {
		t.Fatalf("unknown queue: %+v", r)
	}
	if r := ask(protocol.BackfillRequest{Queue: "duo", RequestID: sess.Deployment.RequestID, Slots: 1}); r.Error == nil || r.Error.Code != http.StatusBadRequest {
		t.Fatalf("queue without backfill: %+v", r)
	}
	r := ask(protocol.BackfillRequest{Queue: "fill", RequestID: sess.Deployment.RequestID, PublicIP: running.IP, Slots: 1})
	if r.Error != nil || r.Ticket == "" {
		t.Fatalf("backfill: %+v", r)
	}
	// One player in the queue fills the seat: a Seat session on the running deployment.
	res := h.streamsOf(t, h.playBody("81.2.69.161", "fill", ""))
	got := readyOf(t, res[0])
	if got.IP != running.IP || got.Port != running.Port {
		t.Fatalf("backfilled player on %s:%d, the running server is %s:%d", got.IP, got.Port, running.IP, running.Port)
	}
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "tickets deleted")
	h.releaseAll(t)
}

func TestQueueVanishedPlayerSeatIsReapedOthersKeepTheirs(t *testing.T) {
	t.Parallel()
	h, _ := newQueueHarness(t, harnessOpts{configure: func(c *Config) {
		c.ReadinessLimit, c.ClaimGrace = time.Second, 200*time.Millisecond
	}})
	res := h.streamsOf(t, h.playBody("81.2.69.160", "pair", ""), h.playBody("81.2.69.161", "pair", ""))
	a, b := readyOf(t, res[0]), readyOf(t, res[1])
	// Only the first player connects; the second never shows up.
	sa := h.claim(t, strconv.FormatUint(h.clientIDOf(t, a.Token), 10))
	e, err := h.b.SessionsLy2Eg.Get(context.Background(), strconv.FormatUint(h.clientIDOf(t, b.Token), 10))
	if err != nil {
		t.Fatal(err)
	}
	sb := string(e.Value())
	eventually.True(t, 10*time.Second, func() bool { return h.sim.LiveSessions() == 1 }, "the absent player's seat reaped")
	if _, err := h.newAPI().GetSession(context.Background(), sa); err != nil {
		t.Fatalf("the connected player's session %s: %v", sa, err)
	}
	if _, err := h.newAPI().GetSession(context.Background(), sb); err == nil {
		t.Fatalf("the absent player's session %s still exists", sb)
	}
	h.disconnect(t, sa)
	h.noLeaks(t, 5*time.Second)
}

func TestIsPlayBody(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]bool{
		`{"client_ip":"1.2.3.4"}`:                           false,
		`{"client_ip":"1.2.3.4","queue":null}`:              false,
		`{"client_ip":"1.2.3.4","queue":""}`:                false,
		`{"client_ip":"1.2.3.4","props":{ }}`:               false,
		`{"client_ip":"1.2.3.4","party":null}`:              false,
		`not json`:                                          false,
		`{"client_ip":"1.2.3.4","queue":"duo"}`:             true,
		`{"client_ip":"1.2.3.4","props":{"skill":1}}`:       true,
		`{"client_ip":"1.2.3.4","props":"bad"}`:             true,
		`{"client_ip":"1.2.3.4","party":{"code":"K7QF2M"}}`: true,
	} {
		if got := isPlayBody([]byte(body)); got != want {
			t.Errorf("isPlayBody(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestQueueTicketExpires(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{})
	res := h.streamsOf(t, h.playBody("81.2.69.160", "brief", ""))
	last := res[0][len(res[0])-1]
	if last.Kind != protocol.FeedbackError || last.Code != http.StatusRequestTimeout || !strings.Contains(last.Text, "queue brief") {
		t.Fatalf("got %+v, want Error 408 naming the queue", last)
	}
	if n := ticketCount(t, pb); n != 0 {
		t.Fatalf("%d tickets left", n)
	}
	if n := h.sim.LiveSessions(); n != 0 {
		t.Fatalf("%d sessions for an expired ticket", n)
	}
	if n := h.counter(t, h.mms[0], "bevygap_matchmaker_queue_tickets_dropped_total"); n != 1 {
		t.Fatalf("queue_tickets_dropped_total %v, want 1", n)
	}
}

// TestQueueSeatGroupFitsItsSockets: a seat group of 4 on deployments of 4 sockets. The lead
// session (every IP, 4 sockets) gives the other players' sockets back before their seats are
// created; without that the group would need 7.
func TestQueueSeatGroupFitsItsSockets(t *testing.T) {
	t.Parallel()
	h, pb := newQueueHarness(t, harnessOpts{sockets: 4})
	res := h.streamsOf(t, h.playBody("81.2.69.160", "quad", ""), h.playBody("81.2.69.161", "quad", ""),
		h.playBody("81.2.69.162", "quad", ""), h.playBody("81.2.69.163", "quad", ""))
	first := readyOf(t, res[0])
	sids := map[string]bool{}
	for i, fbs := range res {
		r := readyOf(t, fbs)
		if r.IP != first.IP || r.Port != first.Port {
			t.Fatalf("player %d on %s:%d, player 0 on %s:%d", i, r.IP, r.Port, first.IP, first.Port)
		}
		e, err := h.b.SessionsLy2Eg.Get(context.Background(), strconv.FormatUint(h.clientIDOf(t, r.Token), 10))
		if err != nil {
			t.Fatal(err)
		}
		sids[string(e.Value())] = true
	}
	if len(sids) != 4 || h.sim.LiveSessions() != 4 {
		t.Fatalf("%d session ids, %d live sessions; want 4 and 4", len(sids), h.sim.LiveSessions())
	}
	eventually.True(t, 5*time.Second, func() bool { return ticketCount(t, pb) == 0 }, "tickets deleted")
	h.releaseAll(t)
}
