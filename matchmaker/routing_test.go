package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// sessionsOf returns the ids of h's simulator's live sessions.
func sessionsOf(h *harness) map[string]bool {
	out := make(map[string]bool)
	for _, s := range h.sim.State().Sessions {
		out[s.SessionID] = true
	}
	return out
}

// burst sends n streaming requests for h's game at once and returns, per request, the session
// id it was granted ("" when it was not granted) and its last feedback.
func burst(t *testing.T, h *harness, n int) (sids []string, last []protocol.Feedback) {
	t.Helper()
	sids, last = make([]string, n), make([]protocol.Feedback, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, fbs, err := h.streamE(h.cfg.AppName, h.cfg.AppVersion, fmt.Sprintf(`{"client_ip":"10.0.0.%d"}`, i%250+1))
			errs[i] = err
			for _, f := range fbs {
				if f.Kind == protocol.FeedbackSessionRequestAccepted {
					sids[i] = f.Text
				}
			}
			if len(fbs) > 0 {
				last[i] = fbs[len(fbs)-1]
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d for %s: %v", i, h.cfg.AppName, err)
		}
	}
	return sids, last
}

// Two games' matchmakers on one NATS, with default flags: each serves exactly its own requests.
func TestTwoGamesOnOneNATSGetOnlyOwnRequests(t *testing.T) {
	t.Parallel()
	const n = 30
	srv := newNATS(t)
	a := newHarness(t, harnessOpts{nats: srv})
	b := newHarness(t, harnessOpts{nats: srv})
	type outcome struct {
		sids []string
		last []protocol.Feedback
	}
	res := make(map[*harness]outcome)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range []*harness{a, b} {
		wg.Go(func() {
			sids, last := burst(t, h, n)
			mu.Lock()
			res[h] = outcome{sids, last}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, h := range []*harness{a, b} {
		live := sessionsOf(h)
		for i, sid := range res[h].sids {
			if res[h].last[i].Kind != protocol.FeedbackSessionReady {
				t.Fatalf("%s request %d ended with %v", h.cfg.AppName, i, res[h].last[i])
			}
			if !live[sid] {
				t.Fatalf("%s request %d got session %q, unknown to its own Edgegap (misrouted)", h.cfg.AppName, i, sid)
			}
		}
		if c := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); c != n {
			t.Fatalf("%s: %d session creates for %d requests", h.cfg.AppName, c, n)
		}
	}
	// A game nobody serves gets NATS "no responders" (httpd turns it into
	// "No matchmaker is serving this game and version").
	_, err := a.nc.Request(protocol.SubjectMatchmakerRequestPrefix+".unservedgame.v1", []byte(`{"client_ip":"1.2.3.4"}`), 2*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("unserved game: err = %v, want no responders", err)
	}
	a.releaseAll(t)
	b.releaseAll(t)
}

// A matchmaker answering unknown games never takes a request away from the game's own matchmaker
// (its wildcard subscription is in a queue group of its own) and never answers its own game with
// an error.
func TestAnswerUnknownGamesNeverStealsRequests(t *testing.T) {
	t.Parallel()
	const n = 20
	srv := newNATS(t)
	a := newHarness(t, harnessOpts{nats: srv, configure: func(c *Config) { c.AnswerUnknownGames = true }})
	b := newHarness(t, harnessOpts{nats: srv})

	// a's own game is served normally.
	sids, last := burst(t, a, n)
	live := sessionsOf(a)
	for i := range n {
		if last[i].Kind != protocol.FeedbackSessionReady || !live[sids[i]] {
			t.Fatalf("%s request %d: last %v, session %q", a.cfg.AppName, i, last[i], sids[i])
		}
	}
	// Every request for b's game still reaches b (a may race it with a 404: the documented
	// caveat of AnswerUnknownGames).
	_, _ = burst(t, b, n)
	eventually.True(t, 5*time.Second, func() bool {
		return b.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate) == n
	}, "every request for b created a session on b's Edgegap")
	if c := a.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); c != n {
		t.Fatalf("a: %d session creates, want its own %d", c, n)
	}
	// Unknown games get 404 from a.
	raw, _ := a.stream(t, "unservedgame", "v1", `{"client_ip":"1.2.3.4"}`)
	if len(raw) != 2 || !strings.HasPrefix(string(raw[0]), `{"Error":[404,`) {
		t.Fatalf("unserved game: %q", raw)
	}
	// b grants even the requests whose client took a's 404 first; wait for all of them.
	eventually.True(t, 10*time.Second, func() bool {
		keys, _ := b.b.SessionsEg2Ly.Keys(context.Background())
		return len(keys) == n
	}, "b granted all %d requests", n)
	a.releaseAll(t)
	b.releaseAll(t)
}

func TestStreamQueueGroupsNeverMerge(t *testing.T) {
	t.Parallel()
	names := map[string]bool{UnknownGameQueueGroup: true}
	for _, gv := range [][2]string{{"game1", "v1"}, {"game2", "v1"}, {"game1", "v2"}, {"spacepit_server", "v0.0.1"}} {
		q := StreamQueueGroupFor(gv[0], gv[1])
		if names[q] || q == StreamQueueGroup {
			t.Fatalf("queue group %q of %v is not unique", q, gv)
		}
		names[q] = true
	}
}
