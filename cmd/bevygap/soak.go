package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/soak"
)

// soakExitProblems is the exit code of "bevygap soak" when the run found a problem: leaked
// sessions, sessions deleted under a connected player, players disconnected by the server,
// failures without a clear error, or tokens that did not connect (docs/soak.md).
const soakExitProblems = 1

const soakHelp = `
Players request sessions through the front doors (--url, repeatable), connect to the game
server with their token over netcode, play for a random time and leave; --abandon, --no-connect
and --vanish set the shares that misbehave. --edgegap (the simulator's URL) ties every session
to its player and counts leaks; --nats counts what the buckets hold at the end.

Faults (--faults NAME@AT+FOR,...; AT and FOR are durations since the start):
  ` + "%s" + `
  e.g. --faults edgegap-5xx@20s+15s,gameserver-crash@40s,edgegap-latency@60s+10s*2

Exit codes: 0 all well, 1 a problem found (leaked sessions, sessions deleted under a connected
player, players disconnected by the server, unclear errors, tokens that did not connect), 2 usage.
`

// soakCommand is "bevygap soak": the load and chaos driver (package soak).
type soakCommand struct {
	env      *Env
	cfg      soak.Config
	json     bool
	natsCfg  bus.Config
	prefix   string
	nc       *nats.Conn
	faultStr string
}

// ParseFlags reads the players, their mix, the faults and where to watch.
func (c *soakCommand) ParseFlags(args []string) error {
	env := c.env
	fs := newFlagSet(env, "soak", "--url URL [--players N | --duration D] [flags]")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprintf(env.Stderr, soakHelp, strings.Join(soak.FaultNames(), ", "))
	}
	var urls stringsFlag
	fs.Var(&urls, "url", "front door (http://host:port or its WebSocket URL); repeat for several, players use them in turn (default "+client.DefaultURL+")")
	fs.StringVar(&c.cfg.Game, "game", devstack.DefaultAppName, "game name to ask for")
	fs.StringVar(&c.cfg.Version, "version", devstack.DefaultAppVersion, "game version to ask for")
	fs.IntVar(&c.cfg.Players, "players", 0, "players to run in all (0: as many as --duration allows)")
	fs.DurationVar(&c.cfg.Duration, "duration", 0, "stop starting players after this long (0: when --players were started)")
	fs.IntVar(&c.cfg.Concurrency, "concurrency", soak.DefaultConcurrency, "players at once")
	fs.Float64Var(&c.cfg.Rate, "rate", 0, "start at most this many players per second (0: as fast as --concurrency allows)")
	fs.Float64Var(&c.cfg.Mix.Abandon, "abandon", 0, "share of players that close the stream right after Acknowledged (0..1)")
	fs.Float64Var(&c.cfg.Mix.AbandonAccepted, "abandon-accepted", 0, "share of players that close the stream right after SessionRequestAccepted, while the game server boots (0..1)")
	fs.Float64Var(&c.cfg.Mix.NoConnect, "no-connect", 0, "share of players that never use their token (0..1)")
	fs.Float64Var(&c.cfg.Mix.Vanish, "vanish", 0, "share of players that stop sending without a disconnect (0..1)")
	fs.Float64Var(&c.cfg.Mix.HTTP, "http", 0.25, "share of requests over the chunked HTTP route instead of the WebSocket (0..1)")
	fs.DurationVar(&c.cfg.PlayMin, "play-min", soak.DefaultPlayMin, "shortest stay of a connected player")
	fs.DurationVar(&c.cfg.PlayMax, "play-max", soak.DefaultPlayMax, "longest stay of a connected player")
	fs.DurationVar(&c.cfg.RequestTimeout, "request-timeout", soak.DefaultRequestTimeout, "limit for one session request")
	fs.StringVar(&c.faultStr, "faults", "", "faults to fire: NAME@AT+FOR, comma separated (see below)")
	fs.StringVar(&c.cfg.Simulator, "edgegap", "", "the Edgegap simulator's URL (its /admin/state session list): ties sessions to players, counts leaks, needed by the faults")
	fs.DurationVar(&c.cfg.PollInterval, "poll", soak.DefaultPollInterval, "how often to read the simulator's session list")
	fs.DurationVar(&c.cfg.Grace, "grace", soak.DefaultGrace, "after the last player, how long sessions may take to be deleted before they count as leaked (the matchmaker's readiness limit + claim grace + the game servers' 15 s timeout)")
	base := bus.ConfigFromEnv(env.Getenv)
	natsURL := fs.String("nats", "", "NATS server (URL or host:port) to count what the buckets hold at the end; user from --nats-user, password only from $NATS_PASSWORD")
	natsUser := fs.String("nats-user", base.User, "NATS user for --nats ($NATS_USER), one that may read the buckets (the matchmaker's)")
	natsInsecure := fs.Bool("nats-insecure", base.Insecure, "plain TCP to NATS, no TLS ($NATS_INSECURE)")
	fs.StringVar(&c.prefix, "bucket-prefix", "", "the matchmaker's --bucket-prefix")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON on stdout (logs stay on stderr)")
	fs.DurationVar(&c.cfg.ProgressInterval, "progress", 10*time.Second, "log a progress line this often (0: never)")
	fs.Uint64Var(&c.cfg.Seed, "seed", 0, "seed of the players' choices (0: random; the report says which)")
	logs := addLogFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap soak -h"}
	}
	c.cfg.URLs = urls
	if len(c.cfg.URLs) == 0 {
		c.cfg.URLs = []string{client.DefaultURL}
	}
	if c.cfg.Players == 0 && c.cfg.Duration <= 0 {
		return &usageError{message: "give --players or --duration", hint: "bevygap soak --players 500 --concurrency 32"}
	}
	faults, err := soak.ParseFaults(c.faultStr)
	if err != nil {
		return &usageError{message: "--faults: " + err.Error(), hint: "bevygap soak --faults edgegap-5xx@20s+15s"}
	}
	if len(faults) > 0 && c.cfg.Simulator == "" {
		return &usageError{message: "--faults needs --edgegap (the simulator injects them)", hint: "bevygap soak --edgegap http://127.0.0.1:3080 --faults ..."}
	}
	c.cfg.Faults = faults
	if c.cfg.Logger, err = logs.logger(env.Stderr); err != nil {
		return err
	}
	if *natsURL != "" {
		c.natsCfg = base
		c.natsCfg.Host, c.natsCfg.User, c.natsCfg.Insecure, c.natsCfg.Name = *natsURL, *natsUser, *natsInsecure, "bevygap-soak"
		c.natsCfg.ConnectWait = 10 * time.Second
		if err := bus.ValidatePrefix(c.prefix); err != nil {
			return &usageError{message: "--bucket-prefix: " + err.Error(), hint: "bevygap soak -h"}
		}
	}
	if err := c.cfg.Check(); err != nil {
		return &usageError{message: err.Error(), hint: "bevygap soak -h"}
	}
	return nil
}

// Run runs the soak and prints its report.
func (c *soakCommand) Run(ctx context.Context) error {
	cfg := c.cfg
	if c.natsCfg.Host != "" {
		cfg.Buckets = func(ctx context.Context) (*soak.BucketCounts, error) {
			nc, err := bus.Connect(ctx, c.natsCfg, cfg.Logger)
			if err != nil {
				return nil, err
			}
			c.nc = nc
			return soak.InspectBuckets(ctx, nc, c.prefix)
		}
	}
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if c.json {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(c.env.Stdout); err != nil {
		return err
	}
	if p := rep.Problems(); len(p) > 0 {
		return &exitCodeError{code: soakExitProblems, err: fmt.Errorf("soak: %s", strings.Join(p, "; "))}
	}
	return nil
}

// Close closes the NATS connection of --nats.
func (c *soakCommand) Close() error {
	if c.nc != nil {
		c.nc.Close()
	}
	return nil
}

// stringsFlag is a repeatable string flag (also comma separated).
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}
