package match_test

import (
	"fmt"
	"time"

	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

func ExampleForm() {
	cfg, err := match.ParseConfig([]byte(`{"queues":[
		{"name":"ranked","min":2,"max":4,"equal":["mode"],
		 "window":{"prop":"skill","initial":100,"widen_per_sec":10,"max":500,"lo":0,"hi":3000}}]}`))
	if err != nil {
		panic(err)
	}
	q, _ := cfg.Queue("ranked")
	now := time.Now()
	player := func(id string, waited time.Duration, players int, skill float64, mode string) match.Ticket {
		return match.Ticket{ID: id, Players: players, Created: now.Add(-waited),
			Props: protocol.Props{"skill": protocol.Num(skill), "mode": protocol.Str(mode)}}
	}
	res := match.Form(q, []match.Ticket{
		player("ann", 20*time.Second, 1, 1000, "ctf"), // waited 20 s: window ±300
		player("bob", 5*time.Second, 2, 1250, "ctf"),  // a party of two
		player("cyd", 1*time.Second, 1, 1400, "ctf"),  // outside ann's window
		player("dan", 1*time.Second, 1, 1000, "dm"),   // another mode
	}, now)
	for _, m := range res.Matches {
		for _, t := range m.Tickets {
			fmt.Print(t.ID, " ")
		}
		fmt.Println("→", m.Players, "players")
	}
	if err := q.Check(protocol.Props{"skill": protocol.Num(9000), "mode": protocol.Str("ctf")}, 1); err != nil {
		fmt.Println(match.PlayError(err).Code, err)
	}
	// Output:
	// ann bob → 3 players
	// 400 property out of range: property skill=9000 is outside the allowed range 0 to 3000 of queue ranked
}
