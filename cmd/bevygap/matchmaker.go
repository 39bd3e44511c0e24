package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/matchmaker"
	"github.com/bevygap-go/bevygap/netcode"
)

// matchmakerEnvPrefix prefixes the environment variable of every matchmaker flag:
// --app-name is BEVYGAP_MATCHMAKER_APP_NAME. A flag on the command line wins.
const matchmakerEnvPrefix = "BEVYGAP_MATCHMAKER_"

// matchmakerCommand is "bevygap matchmaker": the session service.
type matchmakerCommand struct {
	env         *Env
	cfg         matchmaker.Config
	apiURL      string
	apiKey      string
	metricsAddr string
	rateLimit   float64 // Edgegap calls per second per endpoint; 0: no client-side limit
	rateBurst   int
	nats        bus.Config
	log         *slog.Logger

	nc *nats.Conn // opened by Run
}

// ParseFlags reads the flags, BEVYGAP_MATCHMAKER_<FLAG>, NATS_*, EDGEGAP_API_KEY/URL and the
// log settings, and refuses a missing or bad key, a bad --metrics-addr and any configuration
// matchmaker.Config.Validate refuses.
func (c *matchmakerCommand) ParseFlags(args []string) error {
	env := c.env
	cfg := matchmaker.DefaultConfig()
	fs := newFlagSet(env, "matchmaker", "[flags]")
	fs.StringVar(&cfg.AppName, "app-name", cfg.AppName, "Edgegap application name")
	fs.StringVar(&cfg.AppVersion, "app-version", cfg.AppVersion, "Edgegap application version")
	key := fs.String("lightyear-private-key", "", `Lightyear private key: "1,2,...,32" decimal bytes, 64 hex characters or base64 (better: $`+matchmakerEnvPrefix+`LIGHTYEAR_PRIVATE_KEY)`)
	allowZero := fs.Bool("allow-zero-key", false, "accept an empty or all-zero private key (the reference's default; local development only)")
	fs.Uint64Var(&cfg.ProtocolID, "lightyear-protocol-id", cfg.ProtocolID, "Lightyear protocol id (u64)")
	fs.Var(&cfg.TokenFormat, "token-format", "connect token byte order: lightyear-0.17 (bevygap) or lightyear-0.20")
	fs.StringVar(&cfg.SessionWebhookURL, "session-webhook-url", "", "webhook URL Edgegap posts session events to (the webhook sink, e.g. https://hooks.example.com/hook/session)")
	fs.StringVar(&cfg.WebhookSubject, "webhook-subject", cfg.WebhookSubject, "NATS subject the webhook sink publishes session webhooks on")
	fs.StringVar(&cfg.PortName, "port-name", "", "deployment port to put in tokens (default: the only or first port)")
	fs.DurationVar(&cfg.ReadinessLimit, "readiness-limit", cfg.ReadinessLimit, "how long a session may take to become ready")
	fs.DurationVar(&cfg.ClaimGrace, "claim-grace", cfg.ClaimGrace, "added to the readiness limit before an unclaimed session is deleted")
	fs.DurationVar(&cfg.CertDigestWait, "cert-digest-wait", cfg.CertDigestWait, "how long to wait for a fresh game server's cert digest")
	fs.IntVar(&cfg.MaxConcurrentCreates, "max-concurrent-creates", cfg.MaxConcurrentCreates, "session setups in progress at once; more requests queue")
	fs.DurationVar(&cfg.PollInitial, "poll-initial", cfg.PollInitial, "first fallback poll interval without working webhooks")
	fs.DurationVar(&cfg.PollMax, "poll-max", cfg.PollMax, "longest fallback poll interval without working webhooks")
	fs.IntVar(&cfg.DeleteWorkers, "delete-workers", cfg.DeleteWorkers, "Edgegap session deletions in parallel")
	fs.BoolVar(&cfg.Reconcile, "reconcile", cfg.Reconcile, "periodically delete this deployment's Edgegap sessions (webhook_url = --session-webhook-url) no bucket knows; needs --session-webhook-url")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "interval of reconciliation")
	fs.BoolVar(&cfg.AnswerUnknownGames, "answer-unknown-games", false, "also subscribe matchmaker.request.*.* and answer other games with 404 (only when no other game's matchmaker shares this NATS)")
	onlyOwn := fs.Bool("only-own-subject", true, "deprecated: the default now; --only-own-subject=false means --answer-unknown-games")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may finish on shutdown")
	fs.DurationVar(&cfg.StatusInterval, "status-interval", cfg.StatusInterval, "how often to publish the status snapshot for the front door's /status page on NATS bevygap.status.matchmaker.<id> (negative = never)")
	fs.StringVar(&cfg.Buckets.Prefix, "bucket-prefix", "", "prefix of every KV bucket, the delete stream and its subjects (several games on one NATS)")
	fs.IntVar(&cfg.Buckets.Replicas, "replicas", 1, "replicas of the KV buckets and the delete stream (3 on a NATS cluster)")
	fs.StringVar(&c.apiURL, "edgegap-api-url", env.Getenv(edgegap.EnvAPIURL), "Edgegap API base URL ($"+edgegap.EnvAPIURL+"; default "+edgegap.DefaultBaseURL+")")
	fs.Float64Var(&c.rateLimit, "edgegap-rate-limit", float64(edgegap.DefaultRateLimit), "Edgegap calls per second this matchmaker makes at most, per endpoint (session create, get, delete, ...); 0: no limit of its own (Edgegap's 429s are still obeyed)")
	fs.IntVar(&c.rateBurst, "edgegap-rate-burst", edgegap.DefaultRateBurst, "Edgegap calls per endpoint allowed at once above --edgegap-rate-limit")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9090; off when empty)")
	fs.IntVar(&cfg.PartyMax, "party-max", cfg.PartyMax, "most members of a party (1-32)")
	fs.DurationVar(&cfg.PartyWaitLimit, "party-wait-limit", cfg.PartyWaitLimit, "how long a party member's request waits for the rest of the party")
	queuesFile := fs.String("queues", "", "match queues of this game version: a JSON file (docs/play-together.md); none by default")
	natsCfg := addNATSClientFlags(fs, env, "bevygap-matchmaker")
	logs := addLogFlags(fs, env)
	if err := flagsFromEnv(fs, env, matchmakerEnvPrefix); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	c.log = log
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap matchmaker -h"}
	}

	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if !*onlyOwn {
		if explicit["answer-unknown-games"] && !cfg.AnswerUnknownGames {
			return &usageError{message: "--only-own-subject=false contradicts --answer-unknown-games=false", hint: "use only --answer-unknown-games"}
		}
		cfg.AnswerUnknownGames = true
	} else if explicit["only-own-subject"] && cfg.AnswerUnknownGames {
		return &usageError{message: "--only-own-subject contradicts --answer-unknown-games", hint: "use only --answer-unknown-games"}
	}

	cfg.AllowZeroKey = *allowZero
	switch {
	case strings.TrimSpace(*key) != "":
		k, err := netcode.ParseKey(*key)
		if err != nil {
			return &usageError{message: "--lightyear-private-key: " + err.Error(), hint: `--lightyear-private-key "1,2,3,...,32" (32 bytes)`}
		}
		cfg.PrivateKey = k
	case !cfg.AllowZeroKey:
		return &usageError{message: "no Lightyear private key given (the game servers' key, 32 bytes)",
			hint: matchmakerEnvPrefix + `LIGHTYEAR_PRIVATE_KEY="1,2,...,32" bevygap matchmaker, or --allow-zero-key for local development`}
	}
	c.apiKey = env.Getenv(edgegap.EnvAPIKey)
	if c.apiKey == "" {
		return &usageError{message: edgegap.EnvAPIKey + " is not set", hint: edgegap.EnvAPIKey + `="token xxxxxxxx-..." bevygap matchmaker`}
	}
	if c.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.metricsAddr); err != nil {
			return &usageError{message: fmt.Sprintf("--metrics-addr %q: %v", c.metricsAddr, err), hint: "--metrics-addr 127.0.0.1:9090"}
		}
	}

	if c.rateLimit < 0 || math.IsNaN(c.rateLimit) || math.IsInf(c.rateLimit, 0) {
		return &usageError{message: fmt.Sprintf("--edgegap-rate-limit %v: want a number of calls per second, 0 for none", c.rateLimit), hint: "--edgegap-rate-limit 20"}
	}
	if c.rateBurst < 1 {
		return &usageError{message: fmt.Sprintf("--edgegap-rate-burst %d: want at least 1", c.rateBurst), hint: "--edgegap-rate-burst 20"}
	}

	if *queuesFile != "" {
		q, err := match.LoadConfig(*queuesFile)
		if err != nil {
			return &usageError{message: "--queues: " + err.Error(), hint: `--queues queues.json with {"queues":[{"name":"duo","min":2,"max":2}]}`}
		}
		cfg.Queues = q
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{message: err.Error(), hint: "bevygap matchmaker -h"}
	}
	c.cfg, c.nats = cfg, natsCfg()
	return nil
}

// Run connects to NATS, starts the matchmaker and, with --metrics-addr, its metrics server, and
// runs both until ctx ends; it returns once both have stopped.
func (c *matchmakerCommand) Run(ctx context.Context) error {
	logStart(c.log, "matchmaker")
	var err error
	c.nc, err = bus.Connect(ctx, c.nats, c.log)
	if err != nil {
		return err
	}
	reg := svcmetrics.NewRegistry()
	limit := rate.Limit(c.rateLimit)
	if c.rateLimit == 0 {
		limit = rate.Inf
	}
	api := edgegap.NewClient(c.apiURL, c.apiKey, edgegap.WithLogger(c.log),
		edgegap.WithObserver(matchmaker.EdgegapObserver(reg)), edgegap.WithRateLimit(limit, c.rateBurst))
	mm, err := matchmaker.New(c.cfg, matchmaker.Deps{NATS: c.nc, Edgegap: api, Logger: c.log, Registry: reg})
	if err != nil {
		if errors.Is(err, matchmaker.ErrConfig) {
			return &usageError{message: err.Error(), hint: "bevygap matchmaker -h"}
		}
		return err
	}
	var metricsLn net.Listener
	if c.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", c.metricsAddr); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// The metrics server ends with the matchmaker. Its failure is logged, not fatal: the
	// matchmaker keeps serving players without it.
	mctx, stopMetrics := context.WithCancel(gctx)
	defer stopMetrics()
	g.Go(func() error {
		defer stopMetrics()
		return mm.Run(gctx)
	})
	if metricsLn != nil {
		g.Go(func() error {
			if err := svcmetrics.Serve(mctx, metricsLn, reg); err != nil {
				c.log.Error("metrics server stopped", "err", err)
			}
			return nil
		})
		c.log.Info("serving metrics", "url", "http://"+metricsLn.Addr().String()+"/metrics")
	}
	return g.Wait()
}

// Close closes the NATS connection.
func (c *matchmakerCommand) Close() error {
	if c.nc != nil {
		c.nc.Close()
	}
	return nil
}
