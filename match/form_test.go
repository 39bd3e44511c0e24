package match_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// tk is a ticket that has waited age at t0, with players players and props "k=v" (a number
// when v parses as one).
func tk(id string, age time.Duration, players int, props ...string) match.Ticket {
	t := match.Ticket{ID: id, Players: players, Created: t0.Add(-age)}
	for _, p := range props {
		k, v, _ := strings.Cut(p, "=")
		if t.Props == nil {
			t.Props = protocol.Props{}
		}
		var f float64
		if _, err := fmt.Sscanf(v, "%g", &f); err == nil {
			t.Props[k] = protocol.Num(f)
		} else {
			t.Props[k] = protocol.Str(v)
		}
	}
	return t
}

func bf(id string, age time.Duration, slots int, props ...string) match.Ticket {
	t := tk(id, age, 0, props...)
	t.Backfill = slots
	return t
}

// summary renders a Result as "a+b | c" (matches), "exp:x" and "bad:y"; a backfill match
// starts with "bf<-".
func summary(r match.Result) string {
	var parts []string
	for _, m := range r.Matches {
		var ids []string
		for _, t := range m.Tickets {
			ids = append(ids, t.ID)
		}
		s := strings.Join(ids, "+")
		if m.Backfill != nil {
			s = m.Backfill.ID + "<-" + s
		}
		parts = append(parts, s)
	}
	for _, t := range r.Expired {
		parts = append(parts, "exp:"+t.ID)
	}
	for _, t := range r.Invalid {
		parts = append(parts, "bad:"+t.Ticket.ID)
	}
	return strings.Join(parts, " | ")
}

func mustQueue(t *testing.T, name string) match.Queue {
	t.Helper()
	q, err := match.Default().Queue(name)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestForm(t *testing.T) {
	t.Parallel()
	s := time.Second
	duo := match.Default().Queues[0]
	room := match.Default().Queues[1]
	teams := match.Queue{Name: "teams", Min: 2, Max: 4, Multiple: 2}
	skill := match.Queue{Name: "ranked", Min: 2, Max: 3,
		Window: &match.Window{Prop: "skill", Initial: 100, WidenPerSec: 20, Max: 300, Lo: 0, Hi: 3000}}
	modes := match.Queue{Name: "modes", Min: 2, Max: 2, Equal: []string{"mode", "map"}, Backfill: true}
	cases := []struct {
		name    string
		q       match.Queue
		tickets []match.Ticket
		want    string
	}{
		{"duo pairs the oldest two", duo, []match.Ticket{tk("c", 1*s, 1), tk("a", 3*s, 1), tk("b", 2*s, 1)}, "a+b"},
		{"duo: a party of two is a match of its own", duo, []match.Ticket{tk("a", 3*s, 1), tk("p", 2*s, 2), tk("b", 1*s, 1)}, "a+b | p"},
		{"duo: party of three is too large", duo, []match.Ticket{tk("p", 3*s, 3)}, "bad:p"},
		{"duo: alone waits", duo, []match.Ticket{tk("a", 60*s, 1)}, ""},
		{"duo: alone past the wait limit expires", duo, []match.Ticket{tk("a", 121*s, 1)}, "exp:a"},
		{"duo: old tickets still match rather than expire", duo, []match.Ticket{tk("a", 200*s, 1), tk("b", 130*s, 1)}, "a+b"},
		{"duo: ties in age broken by id", duo, []match.Ticket{tk("b", s, 1), tk("c", s, 1), tk("a", s, 1)}, "a+b"},
		{"room takes up to four", room, []match.Ticket{tk("a", 5*s, 1), tk("b", 4*s, 1), tk("c", 3*s, 1), tk("d", 2*s, 1), tk("e", 1*s, 1)}, "a+b+c+d"},
		{"room takes three when three wait", room, []match.Ticket{tk("a", 5*s, 1), tk("b", 4*s, 1), tk("c", 3*s, 1)}, "a+b+c"},
		{"room: alone waits before relax_after", room, []match.Ticket{tk("a", 9*s, 1)}, ""},
		{"room: alone plays after relax_after", room, []match.Ticket{tk("a", 10*s, 1)}, "a"},
		{"room: party of three plus one, then three alone", room, []match.Ticket{tk("p", 5*s, 3), tk("q", 4*s, 3), tk("a", 1*s, 1)}, "p+a | q"},
		{"room: parties never split", room, []match.Ticket{tk("p", 5*s, 3), tk("q", 4*s, 3)}, "p | q"},
		{"teams: multiple of two", teams, []match.Ticket{tk("a", 3*s, 1), tk("b", 2*s, 1), tk("c", 1*s, 1)}, "a+b"},
		{"teams: skip an anchor that cannot make an even match", teams, []match.Ticket{tk("a", 3*s, 1), tk("p", 2*s, 2), tk("q", 1*s, 2)}, "p+q"},
		{"teams: 3+1, then 2", teams, []match.Ticket{tk("p", 3*s, 3), tk("q", 2*s, 2), tk("a", 1*s, 1)}, "p+a | q"},
		{"skill: within the initial window", skill, []match.Ticket{tk("a", 0, 1, "skill=1000"), tk("b", 0, 1, "skill=1300"), tk("c", 0, 1, "skill=1090")}, "a+c"},
		{"skill: window widens with the anchor's wait", skill, []match.Ticket{tk("a", 10*s, 1, "skill=1000"), tk("b", 0, 1, "skill=1300"), tk("c", 0, 1, "skill=1090")}, "a+b+c"},
		{"skill: width is capped", skill, []match.Ticket{tk("a", 100*s, 1, "skill=1000"), tk("b", 0, 1, "skill=1301")}, ""},
		{"skill: out of range is invalid", skill, []match.Ticket{tk("a", 0, 1, "skill=3001"), tk("b", 0, 1, "skill=-1"), tk("c", 0, 1)}, "bad:a | bad:b | bad:c"},
		{"skill: below and above the anchor", skill, []match.Ticket{tk("a", 0, 1, "skill=1000"), tk("b", 0, 1, "skill=900"), tk("c", 0, 1, "skill=1100")}, "a+b+c"},
		{"modes: equal properties", modes, []match.Ticket{tk("a", 3*s, 1, "mode=ctf", "map=x"), tk("b", 2*s, 1, "mode=dm", "map=x"), tk("c", 1*s, 1, "mode=ctf", "map=y"), tk("d", 0, 1, "mode=ctf", "map=x")}, "a+d"},
		{"modes: a missing property is invalid", modes, []match.Ticket{tk("a", 0, 1, "mode=ctf")}, "bad:a"},
		{"modes: unknown property is invalid", modes, []match.Ticket{tk("a", 0, 1, "mode=ctf", "map=x", "colour=red")}, "bad:a"},
		{"duplicate ids: the younger is invalid", duo, []match.Ticket{tk("a", 1*s, 1), tk("a", 2*s, 1), tk("b", 0, 1)}, "a+b | bad:a"},
		{"backfill first, oldest players", room, []match.Ticket{tk("a", 3*s, 1), tk("b", 2*s, 1), bf("srv", 0, 2), tk("c", 1*s, 1)}, "srv<-a+b"},
		{"backfill takes what fits", room, []match.Ticket{tk("p", 3*s, 3), bf("srv", 0, 2), tk("a", 1*s, 1)}, "srv<-a | p"},
		{"backfill fills with a party", room, []match.Ticket{tk("p", 3*s, 2), bf("srv", 0, 2), tk("a", 1*s, 1)}, "srv<-p"},
		{"backfill without players waits", room, []match.Ticket{bf("srv", 0, 2)}, ""},
		{"backfill on a queue without backfill", duo, []match.Ticket{bf("srv", 0, 1)}, "bad:srv"},
		{"backfill slots above max", room, []match.Ticket{bf("srv", 0, 5)}, "bad:srv"},
		{"backfill matches its props", modes, []match.Ticket{tk("a", 3*s, 1, "mode=dm", "map=x"), tk("b", 2*s, 1, "mode=ctf", "map=x"), bf("srv", 0, 2, "mode=ctf")}, "srv<-b"},
		{"backfill window", match.Queue{Name: "w", Min: 2, Max: 4, Backfill: true, Window: skill.Window},
			[]match.Ticket{tk("a", 0, 1, "skill=500"), tk("b", 0, 1, "skill=1050"), bf("srv", 0, 3, "skill=1000")}, "srv<-b"},
		{"backfill expires", match.Queue{Name: "w", Min: 2, Max: 4, Backfill: true, WaitLimit: time.Minute}, []match.Ticket{bf("srv", 2*time.Minute, 3)}, "exp:srv"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := c.q.Validate(); err != nil {
				t.Fatal(err)
			}
			got := summary(match.Form(c.q, c.tickets, t0))
			if got != c.want {
				t.Errorf("Form = %q, want %q", got, c.want)
			}
		})
	}
}

func TestFormReportsErrors(t *testing.T) {
	t.Parallel()
	r := match.Form(mustQueue(t, "duo"), []match.Ticket{tk("p", 0, 3), tk("x", 0, 1, "skill=3")}, t0)
	if len(r.Invalid) != 2 || !errors.Is(r.Invalid[0].Err, match.ErrPartyTooLarge) || !errors.Is(r.Invalid[1].Err, match.ErrInvalidTicket) {
		t.Fatalf("invalid: %+v", r.Invalid)
	}
}

func TestFormDoesNotModifyInput(t *testing.T) {
	t.Parallel()
	in := []match.Ticket{tk("c", 1, 1), tk("b", 2, 1), tk("a", 3, 1)}
	keep := append([]match.Ticket(nil), in...)
	match.Form(mustQueue(t, "duo"), in, t0)
	if !reflect.DeepEqual(in, keep) {
		t.Errorf("input changed: %+v", in)
	}
}

// randomTickets returns n tickets for the "ranked" queue of TestFormInvariants.
func randomTickets(rng *rand.Rand, n int) []match.Ticket {
	modes := []string{"ctf", "dm", "koth"}
	out := make([]match.Ticket, n)
	for i := range out {
		players := 1
		if rng.IntN(5) == 0 {
			players = 1 + rng.IntN(4)
		}
		out[i] = match.Ticket{ID: fmt.Sprintf("t%05d", i), Players: players,
			Created: t0.Add(-time.Duration(rng.IntN(120_000)) * time.Millisecond),
			Props:   protocol.Props{"skill": protocol.Num(float64(rng.IntN(3000))), "mode": protocol.Str(modes[rng.IntN(len(modes))])}}
		if rng.IntN(50) == 0 {
			out[i].Players, out[i].Backfill = 0, 1+rng.IntN(3)
			delete(out[i].Props, "skill")
		}
	}
	return out
}

// TestFormInvariants checks on random input that a ticket is in at most one match, every match
// respects the queue (size, multiple, equal props, window around its oldest ticket), the result
// does not depend on the input order, and an unmatched ticket is reported only when expired.
func TestFormInvariants(t *testing.T) {
	t.Parallel()
	q := match.Queue{Name: "ranked", Min: 4, Max: 6, Multiple: 2, Equal: []string{"mode"}, Backfill: true,
		RelaxAfter: 30 * time.Second, RelaxedMin: 2, WaitLimit: 100 * time.Second,
		Window: &match.Window{Prop: "skill", Initial: 50, WidenPerSec: 10, Max: 400, Lo: 0, Hi: 3000}}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		tickets := randomTickets(rng, 10+rng.IntN(400))
		r := match.Form(q, tickets, t0)
		used := map[string]bool{}
		for _, m := range r.Matches {
			total := 0
			if m.Backfill != nil {
				if used[m.Backfill.ID] {
					t.Fatalf("round %d: %s used twice", round, m.Backfill.ID)
				}
				used[m.Backfill.ID] = true
			}
			oldest := m.Tickets[0]
			for i, tt := range m.Tickets {
				if used[tt.ID] {
					t.Fatalf("round %d: %s used twice", round, tt.ID)
				}
				used[tt.ID] = true
				total += tt.Players
				if i > 0 && tt.Created.Before(m.Tickets[i-1].Created) {
					t.Fatalf("round %d: match not oldest first: %+v", round, m.Tickets)
				}
				if tt.Props["mode"] != oldest.Props["mode"] && (m.Backfill == nil || m.Backfill.Props["mode"] != tt.Props["mode"]) {
					t.Fatalf("round %d: modes differ in %+v", round, m.Tickets)
				}
				if m.Backfill == nil {
					w := q.Window.Width(t0.Sub(oldest.Created))
					if math.Abs(tt.Props["skill"].Num-oldest.Props["skill"].Num) > w {
						t.Fatalf("round %d: skill outside the window %g: %+v", round, w, m.Tickets)
					}
				}
			}
			if total != m.Players {
				t.Fatalf("round %d: Players %d, tickets sum to %d", round, m.Players, total)
			}
			if m.Backfill != nil {
				if total < 1 || total > m.Backfill.Backfill {
					t.Fatalf("round %d: backfill %d slots got %d players", round, m.Backfill.Backfill, total)
				}
				continue
			}
			if total > q.Max || total < q.MinAt(t0.Sub(oldest.Created)) || total%q.Multiple != 0 {
				t.Fatalf("round %d: match of %d players: %+v", round, total, m.Tickets)
			}
		}
		for _, e := range r.Expired {
			if used[e.ID] || t0.Sub(e.Created) < q.WaitLimit {
				t.Fatalf("round %d: %s expired wrongly", round, e.ID)
			}
		}
		shuffled := append([]match.Ticket(nil), tickets...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if a, b := summary(r), summary(match.Form(q, shuffled, t0)); a != b {
			t.Fatalf("round %d: result depends on input order:\n%s\n%s", round, a, b)
		}
	}
}

func TestFormInvalidQueue(t *testing.T) {
	t.Parallel()
	r := match.Form(match.Queue{Name: "bad", Min: 3, Max: -1}, []match.Ticket{tk("a", 0, 1)}, t0)
	if len(r.Invalid) != 1 || !errors.Is(r.Invalid[0].Err, match.ErrInvalidConfig) || len(r.Matches) != 0 {
		t.Errorf("Form on an invalid queue: %+v", r)
	}
}
