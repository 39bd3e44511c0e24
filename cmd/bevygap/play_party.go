package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/protocol"
)

// Playing together with "bevygap play" (docs/play-together.md):
//
//	bevygap play --queue duo                          a ticket in the queue "duo"
//	bevygap play --queue room --prop skill=1200       … with properties
//	bevygap play --party create [--party-wait N]      create a party, print its code, wait for N
//	                                                  members (the leader counted), then play
//	bevygap play --party join CODE                    join a party and play with it
//
// Every member of a party opens its own session request; the party starts once every member
// has one open. The leader's request comes last (after --party-wait members joined), so the
// leader's request is what starts the party. Only the leader's --queue and --prop count.

const (
	playPartyCreate = "create"
	playPartyJoin   = "join"
	// playDefaultPartyWait is how many members (the leader counted) a leader waits for.
	playDefaultPartyWait = 2
	// playMaxPartyWait bounds --party-wait.
	playMaxPartyWait = 64
	// playLeaveTimeout bounds the best-effort leave at the end of a party run.
	playLeaveTimeout = 3 * time.Second
)

// propsFlag is the repeatable --prop k=v: a value that parses as a finite number is a number,
// anything else a string.
type propsFlag struct{ props protocol.Props }

func (p *propsFlag) String() string {
	if p == nil || len(p.props) == 0 {
		return ""
	}
	keys := make([]string, 0, len(p.props))
	for k := range p.props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p.props[k].String()
	}
	return strings.Join(parts, ",")
}

func (p *propsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want name=value (e.g. skill=1200 or mode=ctf)", s)
	}
	val := protocol.Str(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		val = protocol.Num(f)
	}
	if p.props == nil {
		p.props = protocol.Props{}
	}
	p.props[k] = val
	return p.props.Validate()
}

// playPartyFlags registers --queue, --prop, --party and --party-wait on fs.
func playPartyFlags(fs *flag.FlagSet, c *playConfig) {
	fs.StringVar(&c.queue, "queue", "", "play in this match `queue` of the game (e.g. duo or room with \"bevygap dev\")")
	fs.Var(&c.props, "prop", "a property of the queue ticket, `name=value`, repeatable (numbers are sent as numbers): --prop skill=1200 --prop mode=ctf")
	fs.StringVar(&c.partyOp, "party", "", "play as a party: `create` (print the code, wait for --party-wait members, then play) or \"join CODE\"")
	fs.IntVar(&c.partyWait, "party-wait", playDefaultPartyWait, "with --party create: members to wait for, the leader counted, before the leader's request starts the party")
}

// checkPlayParty checks the play-together flags after parsing; rest are the arguments left
// after the flags. It returns the arguments still unparsed (flags after "join CODE").
func checkPlayParty(fs *flag.FlagSet, c *playConfig, rest []string) ([]string, error) {
	waitSet, timeoutSet := false, false
	fs.Visit(func(f *flag.Flag) {
		waitSet = waitSet || f.Name == "party-wait"
		timeoutSet = timeoutSet || f.Name == "timeout"
	})
	if !timeoutSet && (c.queue != "" || len(c.props.props) > 0 || c.partyOp != "") {
		c.timeout = playDefaultTogetherTimeout
	}
	switch op, code, hasCode := strings.Cut(c.partyOp, "="); {
	case c.partyOp == "":
	case op == playPartyCreate && !hasCode:
	case op == playPartyJoin && !hasCode && c.partyCode != "": // checked already (flags followed the code)
	case op == playPartyJoin:
		if !hasCode {
			if len(rest) == 0 {
				return nil, &usageError{message: "--party join needs the party's code", hint: "bevygap play --party join K7QF2M"}
			}
			code, rest = rest[0], rest[1:]
		}
		c.partyOp, c.partyCode = playPartyJoin, strings.ToUpper(strings.TrimSpace(code))
		if !protocol.ValidPartyCode(c.partyCode) {
			return nil, &usageError{message: fmt.Sprintf("party code %q: want %d characters of %s", code, protocol.PartyCodeLen, protocol.PartyCodeAlphabet),
				hint: "bevygap play --party join K7QF2M"}
		}
	default:
		return nil, &usageError{message: fmt.Sprintf("--party %q: want create or join CODE", c.partyOp), hint: "bevygap play --party create"}
	}
	if waitSet && c.partyOp != playPartyCreate {
		return nil, &usageError{message: "--party-wait goes with --party create", hint: "bevygap play --party create --party-wait 3"}
	}
	if c.partyWait < 1 || c.partyWait > playMaxPartyWait {
		return nil, &usageError{message: fmt.Sprintf("--party-wait must be between 1 and %d", playMaxPartyWait), hint: "bevygap play --party create --party-wait 2"}
	}
	if c.queue != "" && !protocol.ValidQueueName(c.queue) {
		return nil, &usageError{message: fmt.Sprintf("--queue %q: use 1-%d letters, digits, '_' or '-'", c.queue, protocol.MaxQueueNameLen), hint: "bevygap play --queue duo"}
	}
	return rest, nil
}

// playParty is the party part of the JSON result.
type playParty struct {
	Code   string `json:"code"`
	Member string `json:"member"`
	Leader bool   `json:"leader"`
	// Members is how many members the party had when this player's request was sent.
	Members int `json:"members"`
	// WaitMS is how long the leader waited for its members.
	WaitMS float64 `json:"wait_ms,omitempty"`
}

// playJoinParty creates or joins the party of cfg and, for a leader, waits for --party-wait
// members. It returns the membership and a function that leaves the party (best effort, call
// it when the run is over).
func playJoinParty(ctx context.Context, env *Env, cfg *playConfig, res *playResult, out io.Writer, display *progressDisplay) (*client.Membership, func(), error) {
	pc, err := client.NewPartyClient(cfg.url, cfg.game, cfg.version, client.Options{ClientIP: cfg.clientIP})
	if err != nil {
		return nil, nil, err
	}
	var m *client.Membership
	if cfg.partyOp == playPartyCreate {
		m, err = pc.Create(ctx)
	} else {
		m, err = pc.Join(ctx, cfg.partyCode)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("party %s: %w", cfg.partyOp, err)
	}
	leave := func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), playLeaveTimeout)
		defer cancel()
		_ = pc.Leave(lctx, m) // a party left behind expires on its own (2 h)
	}
	res.Party = &playParty{Code: m.Code, Member: m.Member, Leader: m.Leader(), Members: len(m.Party.Members)}
	if cfg.partyOp == playPartyJoin {
		fmt.Fprintf(out, "Joined party %s as %s (%d of %d members); waiting for the leader to start\n",
			m.Code, m.Member, len(m.Party.Members), m.Party.Max)
		return m, leave, nil
	}
	if m.Party.Max > 0 && cfg.partyWait > m.Party.Max {
		leave()
		return nil, nil, fmt.Errorf("--party-wait %d: a party holds at most %d members on this matchmaker", cfg.partyWait, m.Party.Max)
	}
	// The code is what the others need: on stdout, or on stderr when stdout is the JSON result.
	w := out
	if cfg.json {
		w = env.Stderr
	}
	joinCmd := "bevygap play --party join " + m.Code
	fmt.Fprintf(w, "Party %s created (up to %d members). The others join with:\n  %s\n", m.Code, m.Party.Max, joinCmd)
	start := time.Now()
	seen := -1
	_, err = pc.Wait(ctx, m, func(p *protocol.Party) bool {
		if n := len(p.Members); n != seen {
			seen = n
			display.update(client.Progress{State: client.StateAwaitingResponse,
				Message: fmt.Sprintf("Party %s: %d of %d members", m.Code, n, cfg.partyWait)})
		}
		return len(p.Members) >= cfg.partyWait
	})
	res.Party.WaitMS = playMillis(time.Since(start))
	if err != nil {
		leave()
		return nil, nil, fmt.Errorf("waiting for %d party members: %w", cfg.partyWait, err)
	}
	res.Party.Members, res.Party.Leader = len(m.Party.Members), m.Leader()
	return m, leave, nil
}
