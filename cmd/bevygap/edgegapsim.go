package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// defaultSimAPIKey is the API key the simulator accepts when neither --api-key nor
// EDGEGAP_API_KEY is given.
const defaultSimAPIKey = "token edgegap-sim"

// defaultSimBind is the default --bind of edgegap-sim.
const defaultSimBind = "127.0.0.1:3080"

// edgegapSimCommand is "bevygap edgegap-sim": the local Edgegap API simulator.
type edgegapSimCommand struct {
	env         *Env
	bind        string
	metricsAddr string
	cfg         edgegapsim.Config
	nothingToClose
}

// ParseFlags reads the flags, the optional --config file and the log settings into the
// simulator's configuration.
func (c *edgegapSimCommand) ParseFlags(args []string) error {
	env := c.env
	fs := newFlagSet(env, "edgegap-sim", "[flags] [-- game-server-args...]")
	bind := fs.String("bind", defaultSimBind, "ip:port the simulated Edgegap API listens on")
	addr := fs.String("addr", "", "deprecated alias of --bind")
	configPath := fs.String("config", "", "JSON config file (apps, versions, api_keys, timings, faults); flags set explicitly override it")
	app := fs.String("app", "spacepit_server", "app name (ignored when the config file defines apps)")
	version := fs.String("version", "v0.0.1", "app version name")
	apiKey := fs.String("api-key", "", "accepted authorization header value (default $EDGEGAP_API_KEY, else \""+defaultSimAPIKey+"\")")
	kind := fs.String("kind", "Seat", "session kind: Seat or Match")
	sockets := fs.Int("sockets", edgegapsim.DefaultSockets, "sockets per deployment")
	emptyTTL := fs.Duration("empty-ttl", edgegapsim.DefaultEmptyTTL, "empty time-to-live of a deployment")
	ports := fs.String("ports", "server:6420/udp", "ports as name:port/protocol, comma separated")
	bootTime := fs.Duration("boot-time", edgegapsim.DefaultBootTime, "time a new deployment takes to become ready (0 = instant)")
	bootJitter := fs.Duration("boot-jitter", edgegapsim.DefaultBootJitter, "random extra boot time, up to this (0 = none)")
	timeScale := fs.Float64("time-scale", 1, "run simulated time this many times faster than real time")
	publicIP := fs.String("public-ip", edgegapsim.DefaultPublicIP, "public_ip of every deployment (an IP literal)")
	baseURL := fs.String("base-url", "", "URL game servers use to reach the simulator (default http://<bind>)")
	seed := fs.Uint64("seed", 0, "random seed (0 = random)")
	maxDeployments := fs.Int("max-deployments", 0, "maximum concurrent deployments (0 = unlimited)")
	faults := fs.String("faults", "", `fault injection JSON, e.g. {"endpoints":{"session_create":{"error_rate":0.1,"status":503}}}`)
	execPath := fs.String("exec", "", "game server program to start per deployment (arguments after --)")
	execGrace := fs.Duration("exec-grace", 5*time.Second, "time a stopping game server gets before it is killed")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9093; off when empty)")
	logs := addLogFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["addr"] {
		if set["bind"] && *bind != *addr {
			return &usageError{message: fmt.Sprintf("--addr %q and --bind %q disagree (--addr is a deprecated alias of --bind)", *addr, *bind),
				hint: "bevygap edgegap-sim --bind " + *bind}
		}
		*bind = *addr
		fmt.Fprintln(env.Stderr, "edgegap-sim: --addr is deprecated, use --bind")
	}
	if *metricsAddr != "" {
		if _, _, err := net.SplitHostPort(*metricsAddr); err != nil {
			return &usageError{message: fmt.Sprintf("--metrics-addr %q: %v", *metricsAddr, err), hint: "--metrics-addr 127.0.0.1:9093"}
		}
	}
	if fs.NArg() > 0 && *execPath == "" {
		return &usageError{message: "game server arguments given without --exec", hint: "bevygap edgegap-sim --exec ./server -- --flag"}
	}

	var cfg edgegapsim.Config
	if *configPath != "" {
		fileCfg, err := edgegapsim.LoadConfigFile(*configPath)
		if err != nil {
			return &usageError{message: err.Error(), hint: "see docs/edgegap-simulator.md for the config format"}
		}
		cfg = fileCfg
	}
	if len(cfg.Apps) == 0 {
		pcs, err := parsePortsFlag(*ports)
		if err != nil {
			return &usageError{message: err.Error(), hint: "--ports server:6420/udp,web:8080/tcp"}
		}
		cfg.Apps = []edgegapsim.AppConfig{{Name: *app, Versions: []edgegapsim.VersionConfig{{
			Name: *version, Kind: *kind, Sockets: *sockets, EmptyTTL: edgegapsim.Duration(*emptyTTL),
			Ports: pcs,
		}}}}
	}
	key := *apiKey
	if key == "" {
		key = env.Getenv(edgegap.EnvAPIKey)
	}
	if key == "" {
		key = defaultSimAPIKey
	}
	if set["api-key"] || len(cfg.APIKeys) == 0 {
		cfg.APIKeys = append(cfg.APIKeys, key)
	}
	if set["boot-time"] || cfg.BootTime == 0 {
		cfg.BootTime = edgegapsim.Duration(*bootTime)
		if *bootTime == 0 {
			cfg.BootTime = -1 // --boot-time 0 means instant, not the default
		}
	}
	if set["boot-jitter"] || cfg.BootJitter == 0 {
		cfg.BootJitter = edgegapsim.Duration(*bootJitter)
		if *bootJitter == 0 {
			cfg.BootJitter = -1
		}
	}
	if set["public-ip"] || cfg.PublicIP == "" {
		cfg.PublicIP = *publicIP
	}
	if set["base-url"] {
		cfg.BaseURL = *baseURL
	}
	if set["seed"] {
		cfg.Seed = *seed
	}
	if set["max-deployments"] {
		cfg.MaxDeployments = *maxDeployments
	}
	if *faults != "" {
		var f edgegapsim.Faults
		if err := json.Unmarshal([]byte(*faults), &f); err != nil {
			return &usageError{message: "--faults: " + err.Error(), hint: `--faults '{"endpoints":{"session_create":{"error_rate":0.1}}}'`}
		}
		cfg.Faults = f
	}
	if *timeScale <= 0 {
		return &usageError{message: "--time-scale must be > 0", hint: "--time-scale 10"}
	}
	if *timeScale != 1 {
		cfg.Clock = edgegapsim.ScaledClock(*timeScale)
	}
	cfg.Logger = logger
	if *execPath != "" {
		cfg.Launcher = &edgegapsim.ExecLauncher{Path: *execPath, Args: fs.Args(), Output: env.Stderr,
			Logger: logger, StopGrace: *execGrace}
	}
	c.bind, c.metricsAddr, c.cfg = *bind, *metricsAddr, cfg
	return nil
}

// Run starts the simulator, listens on --bind, prints where, and serves until ctx ends.
func (c *edgegapSimCommand) Run(ctx context.Context) error {
	logStart(c.cfg.Logger, "edgegap-sim")
	sim, err := edgegapsim.New(c.cfg)
	if err != nil {
		return &usageError{message: err.Error(), hint: "bevygap edgegap-sim -h"}
	}
	ln, err := net.Listen("tcp", c.bind)
	if err != nil {
		_ = sim.Close(context.Background())
		return fmt.Errorf("listen on %s: %w", c.bind, err)
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(c.env.Stdout, "edgegap-sim: Edgegap API on %s (admin: %s/admin/state)\n", url, url)
	fmt.Fprintf(c.env.Stdout, "edgegap-sim: point clients at it with %s=%s and %s set to the simulator's key\n",
		edgegap.EnvAPIURL, url, edgegap.EnvAPIKey)
	if c.metricsAddr == "" {
		return sim.Serve(ctx, ln)
	}
	metricsLn, err := net.Listen("tcp", c.metricsAddr)
	if err != nil {
		_ = ln.Close()
		_ = sim.Close(context.Background())
		return fmt.Errorf("metrics: listen on %s: %w", c.metricsAddr, err)
	}
	reg := svcmetrics.NewRegistry()
	reg.MustRegister(sim.Collector())
	fmt.Fprintf(c.env.Stdout, "edgegap-sim: metrics on http://%s/metrics\n", metricsLn.Addr())
	// The metrics server ends with the simulator; its failure is logged, not fatal.
	mctx, stopMetrics := context.WithCancel(ctx)
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		if err := svcmetrics.Serve(mctx, metricsLn, reg); err != nil {
			c.cfg.Logger.Error("metrics server stopped", logkey.Err, err)
		}
	}()
	err = sim.Serve(ctx, ln)
	stopMetrics()
	<-metricsDone
	return err
}

// parsePortsFlag parses "name:port/protocol,..." (protocol defaults to UDP, port to 6420).
func parsePortsFlag(s string) ([]edgegapsim.PortConfig, error) {
	var out []edgegapsim.PortConfig
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, rest, ok := strings.Cut(item, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("--ports: %q is not name:port/protocol", item)
		}
		portStr, proto, _ := strings.Cut(rest, "/")
		port, err := strconv.Atoi(portStr)
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("--ports: bad port in %q", item)
		}
		out = append(out, edgegapsim.PortConfig{Name: name, Port: port, Protocol: strings.ToUpper(proto)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--ports: no ports")
	}
	return out, nil
}
