package match_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// benchTickets returns n tickets that waited up to 60 s: players alone, one in five in a party
// of 2–3, skill uniform in 0..3000, one of three modes.
func benchTickets(n int) []match.Ticket {
	rng := rand.New(rand.NewPCG(7, 7))
	modes := []string{"ctf", "dm", "koth"}
	out := make([]match.Ticket, n)
	for i := range out {
		players := 1
		if rng.IntN(5) == 0 {
			players = 2 + rng.IntN(2)
		}
		out[i] = match.Ticket{ID: fmt.Sprintf("%012x", rng.Uint64()), Players: players,
			Created: t0.Add(-time.Duration(rng.IntN(60_000)) * time.Millisecond),
			Props:   protocol.Props{"skill": protocol.Num(float64(rng.IntN(3000))), "mode": protocol.Str(modes[rng.IntN(3)])}}
	}
	return out
}

// BenchmarkForm measures one Form call over n waiting tickets (ns/op, and cpu-ns/op: the
// process's CPU time per call, which a busy machine inflates less), and reports the wall cost per
// formed match and per ticket. "duo" and "room" are the dev queues (props ignored: their
// tickets carry none); "ranked" has a skill window widening from ±50 by 10/s and an equal mode;
// "narrow" is ranked with a fixed ±5 window, where most anchors find nobody (the cost of a tick
// when little forms).
func BenchmarkForm(b *testing.B) {
	win := &match.Window{Prop: "skill", Initial: 50, WidenPerSec: 10, Max: 500, Lo: 0, Hi: 3000}
	queues := []match.Queue{
		match.Default().Queues[0],
		match.Default().Queues[1],
		{Name: "ranked", Min: 4, Max: 8, Multiple: 2, Window: win, Equal: []string{"mode"}},
		{Name: "narrow", Min: 4, Max: 8, Multiple: 2, Window: &match.Window{Prop: "skill", Initial: 5, Lo: 0, Hi: 3000}, Equal: []string{"mode"}},
	}
	for _, q := range queues {
		for _, n := range []int{1000, 10000} {
			tickets := benchTickets(n)
			if q.Window == nil {
				for i := range tickets {
					tickets[i].Props = nil
				}
			}
			if q.Max < 3 {
				for i := range tickets {
					tickets[i].Players = min(tickets[i].Players, q.Max)
				}
			}
			b.Run(fmt.Sprintf("%s/%d", q.Name, n), func(b *testing.B) {
				var r match.Result
				cpu0 := cpuTime()
				for b.Loop() {
					r = match.Form(q, tickets, t0)
				}
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
				if len(r.Invalid) > 0 {
					b.Fatalf("invalid tickets: %v", r.Invalid[0].Err)
				}
				perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(float64(len(r.Matches)), "matches")
				if len(r.Matches) > 0 {
					b.ReportMetric(perOp/float64(len(r.Matches)), "ns/match")
				}
				b.ReportMetric(perOp/float64(n), "ns/ticket")
			})
		}
	}
}
