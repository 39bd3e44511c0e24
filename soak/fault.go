package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// Fault is something that goes wrong on purpose while the players run: Start is called At
// after the run started, Stop (if set) For later. The fault's window, for the report's
// "during this fault" numbers, is from Start's call to Stop's return (to Start's return plus
// For when there is no Stop). A Start or Stop error is reported and does not end the run.
type Fault struct {
	// Name names the fault in the report ("nats-2 kill -9", "edgegap-5xx").
	Name string
	// At is when Start is called, after the run started; For is how long until Stop.
	At, For time.Duration
	// Start makes it go wrong; Stop puts it right (nil: nothing to put right).
	Start func(ctx context.Context, s *Soak) error
	Stop  func(ctx context.Context, s *Soak) error
}

// Simulator faults, by name: what ParseFaults and SimulatorFault know.
const (
	// FaultEdgegap5xx: a fifth of session creates, gets and deletes answer 503/500.
	FaultEdgegap5xx = "edgegap-5xx"
	// FaultEdgegap429: a third of all Edgegap calls answer 429 with Retry-After: 1.
	FaultEdgegap429 = "edgegap-429"
	// FaultEdgegapLatency: every Edgegap call takes a second longer (a latency storm).
	FaultEdgegapLatency = "edgegap-latency"
	// FaultEdgegapTimeout: every Edgegap call takes 20 s, longer than the matchmaker's call
	// timeouts. The simulator still handles a session create whose caller gave up (as Edgegap
	// may): a session the matchmaker never heard of, which only its reconciliation finds.
	FaultEdgegapTimeout = "edgegap-timeout"
	// FaultBootFailure: a third of new deployments fail to boot (Status.ERROR).
	FaultBootFailure = "boot-failure"
	// FaultWebhookLoss: half of the session webhooks are not sent.
	FaultWebhookLoss = "webhook-loss"
	// FaultGameServerCrash: one running deployment with a connected player is failed (the
	// simulator stops its game server and reports Status.ERROR, as after a crash).
	FaultGameServerCrash = "gameserver-crash"
)

// simulatorFaults are the simulator's fault settings of the named faults.
var simulatorFaults = map[string]edgegapsim.Faults{
	FaultEdgegap5xx: {Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionCreate: {ErrorRate: 0.2, Status: 503},
		edgegap.EndpointSessionGet:    {ErrorRate: 0.2, Status: 500},
		edgegap.EndpointSessionDelete: {ErrorRate: 0.2, Status: 503},
	}},
	FaultEdgegap429: {Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegapsim.AllEndpoints: {ErrorRate: 0.33, Status: 429, RetryAfterSeconds: 1},
	}},
	FaultEdgegapLatency: {Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegapsim.AllEndpoints: {Latency: edgegapsim.Duration(time.Second)},
	}},
	FaultEdgegapTimeout: {Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegapsim.AllEndpoints: {Latency: edgegapsim.Duration(20 * time.Second)},
	}},
	FaultBootFailure: {BootFailureRate: 0.33},
	FaultWebhookLoss: {WebhookLossRate: 0.5},
}

// FaultNames lists the faults ParseFaults knows.
func FaultNames() []string {
	names := []string{FaultGameServerCrash}
	for n := range simulatorFaults {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// SimulatorFault returns the named simulator fault (see FaultNames), from at for d. The
// simulator's faults are set with PUT /admin/faults on Config.Simulator; faults that overlap
// are merged (the larger rate, the longer latency), and the simulator's own faults from before
// the run are kept. FaultGameServerCrash is instant: d is only how long its window lasts in the
// report (the requests in flight then count as "during the crash").
func SimulatorFault(name string, at, d time.Duration) (Fault, error) {
	if name == FaultGameServerCrash {
		return Fault{Name: name, At: at, For: d, Start: func(ctx context.Context, s *Soak) error {
			return s.CrashGameServer(ctx)
		}}, nil
	}
	if _, ok := simulatorFaults[name]; !ok {
		return Fault{}, fmt.Errorf("soak: unknown fault %q (known: %s)", name, strings.Join(FaultNames(), ", "))
	}
	if d <= 0 {
		return Fault{}, fmt.Errorf("soak: fault %s needs a duration (%s@AT+FOR)", name, name)
	}
	return Fault{Name: name, At: at, For: d,
		Start: func(ctx context.Context, s *Soak) error { return s.setSimFault(ctx, name, true) },
		Stop:  func(ctx context.Context, s *Soak) error { return s.setSimFault(ctx, name, false) },
	}, nil
}

// ParseFaults reads a fault schedule: comma-separated NAME@AT+FOR, e.g.
// "edgegap-5xx@20s+15s,gameserver-crash@40s" (AT and FOR are Go durations; FOR is optional
// for gameserver-crash, where it only sets the report's window). NAME@AT+FOR*N repeats the fault N times, one FOR apart after the
// previous one ended. "" is no faults.
func ParseFaults(spec string) ([]Fault, error) {
	var out []Fault
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, when, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("soak: fault %q: want NAME@AT[+FOR][*N]", item)
		}
		repeat := 1
		if w, n, ok := strings.Cut(when, "*"); ok {
			r, err := strconv.Atoi(n)
			if err != nil || r < 1 || r > 1000 {
				return nil, fmt.Errorf("soak: fault %q: bad repeat count %q", item, n)
			}
			when, repeat = w, r
		}
		atS, forS, hasFor := strings.Cut(when, "+")
		at, err := time.ParseDuration(atS)
		if err != nil || at < 0 {
			return nil, fmt.Errorf("soak: fault %q: bad start %q", item, atS)
		}
		var d time.Duration
		if hasFor {
			if d, err = time.ParseDuration(forS); err != nil || d <= 0 {
				return nil, fmt.Errorf("soak: fault %q: bad duration %q", item, forS)
			}
		}
		step := max(2*d, 10*time.Second)
		for i := range repeat {
			f, err := SimulatorFault(name, at+time.Duration(i)*step, d)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// mergeFaults combines simulator fault settings: per endpoint and overall the larger rate, the
// larger status and Retry-After, the longer latency.
func mergeFaults(all ...edgegapsim.Faults) edgegapsim.Faults {
	var out edgegapsim.Faults
	for _, f := range all {
		out.BootFailureRate = max(out.BootFailureRate, f.BootFailureRate)
		out.NeverReadyRate = max(out.NeverReadyRate, f.NeverReadyRate)
		out.WebhookLossRate = max(out.WebhookLossRate, f.WebhookLossRate)
		for e, ef := range f.Endpoints {
			if out.Endpoints == nil {
				out.Endpoints = map[edgegap.Endpoint]edgegapsim.EndpointFaults{}
			}
			o := out.Endpoints[e]
			o.ErrorRate = max(o.ErrorRate, ef.ErrorRate)
			o.FailNext = max(o.FailNext, ef.FailNext)
			o.Status = max(o.Status, ef.Status)
			o.RetryAfterSeconds = max(o.RetryAfterSeconds, ef.RetryAfterSeconds)
			o.Latency = max(o.Latency, ef.Latency)
			out.Endpoints[e] = o
		}
	}
	return out
}

// setSimFault turns the named simulator fault on or off and sends the merged faults to the
// simulator.
func (s *Soak) setSimFault(ctx context.Context, name string, on bool) error {
	if s.sim == nil {
		return errors.New("soak: simulator faults need the simulator's URL")
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if on {
		s.activeSim[name] = true
	} else {
		delete(s.activeSim, name)
	}
	all := []edgegapsim.Faults{s.baseFaults}
	for n := range s.activeSim {
		all = append(all, simulatorFaults[n])
	}
	return s.sim.setFaults(ctx, mergeFaults(all...))
}

// CrashGameServer fails one running deployment that has a connected player, through the
// simulator's admin API (POST /admin/deployments/{id}/fail: its game server is stopped and it
// reports Status.ERROR, as after a crash), and marks it crashed (MarkCrashed).
func (s *Soak) CrashGameServer(ctx context.Context) error {
	if s.sim == nil {
		return errors.New("soak: gameserver-crash needs the simulator's URL")
	}
	deps := s.DeploymentsWithPlayers()
	if len(deps) == 0 {
		return errors.New("soak: no running deployment with a connected player to crash")
	}
	dep := deps[rand.IntN(len(deps))]
	s.MarkCrashed(dep)
	if err := s.sim.failDeployment(ctx, dep); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "soak: game server crashed on purpose", "deployment", dep)
	return nil
}
