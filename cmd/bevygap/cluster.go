package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/internal/cluster"
)

// clusterCommand is "bevygap cluster up": the topology of deploy/compose.yaml as separate
// processes on loopback (internal/cluster, docs/cluster.md), until Ctrl-C.
type clusterCommand struct {
	env     *Env
	cfg     cluster.Config
	keep    bool   // keep the work directory at exit
	tempDir string // the work directory Run created ("" with --dir)
	logs    bool
}

// ParseFlags reads "up" and the flags.
func (c *clusterCommand) ParseFlags(args []string) error {
	if len(args) == 0 || args[0] != "up" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			args = []string{"up", "-h"}
		} else {
			return &usageError{message: "bevygap cluster needs a subcommand: up", hint: "bevygap cluster up -h"}
		}
	}
	fs := newFlagSet(c.env, "cluster up", "[flags]")
	fs.StringVar(&c.cfg.DeployDir, "deploy", "deploy", "the deploy/ directory (compose.yaml, .env.example, nats/)")
	fs.StringVar(&c.cfg.Dir, "dir", "", "work directory for NATS configs, JetStream stores and logs (default: a new temporary one, removed at exit)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary work directory (logs, stores) at exit")
	fs.StringVar(&c.cfg.NATSServer, "nats-server", "", "nats-server program (default: built from the version go.mod pins, cached in the user cache directory)")
	fs.StringVar(&c.cfg.GameServer, "game-server", "", "game server program the simulator runs per deployment (default: the dotroom example, built from this checkout)")
	fs.StringVar(&c.cfg.Bevygap, "bevygap", "", "bevygap program every service runs (default: this one)")
	fs.BoolVar(&c.logs, "logs", false, "also print every process's output, prefixed with its name")
	fs.DurationVar(&c.cfg.StopGrace, "stop-grace", 10*time.Second, "time each process gets to stop after SIGINT before it is killed")
	fs.Func("arg", "extra argument for a compose service, as service=arg (repeatable), e.g. edgegap-sim=--boot-time=500ms", func(s string) error {
		svc, arg, ok := strings.Cut(s, "=")
		if !ok || svc == "" || arg == "" {
			return fmt.Errorf("want service=arg, got %q", s)
		}
		if c.cfg.Args == nil {
			c.cfg.Args = map[string][]string{}
		}
		c.cfg.Args[svc] = append(c.cfg.Args[svc], arg)
		return nil
	})
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap cluster up -h"}
	}
	if _, err := os.Stat(filepath.Join(c.cfg.DeployDir, "compose.yaml")); err != nil {
		return &usageError{message: fmt.Sprintf("--deploy %q: no compose.yaml there", c.cfg.DeployDir),
			hint: "run from the repository's root, or bevygap cluster up --deploy /path/to/deploy"}
	}
	if c.logs {
		c.cfg.Output = c.env.Stderr
	}
	return nil
}

// Run builds what is missing, starts the cluster, prints its addresses and stops it when ctx
// ends (Ctrl-C).
func (c *clusterCommand) Run(ctx context.Context) error {
	start := time.Now()
	if c.cfg.Bevygap == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.cfg.Bevygap = exe
	}
	if c.cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "bevygap-cluster-")
		if err != nil {
			return err
		}
		c.tempDir, c.cfg.Dir = dir, dir
	}
	if c.cfg.NATSServer == "" {
		version := natsServerVersion()
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no cache directory for nats-server (%w): give --nats-server", err)
		}
		dir := filepath.Join(cache, "bevygap", "nats-server-"+version)
		if _, err := os.Stat(filepath.Join(dir, "nats-server")); err != nil {
			fmt.Fprintf(c.env.Stdout, "building nats-server %s into %s (once)...\n", version, dir)
		}
		if c.cfg.NATSServer, err = cluster.BuildNATSServer(ctx, dir, version); err != nil {
			return err
		}
	}
	if c.cfg.GameServer == "" {
		fmt.Fprintln(c.env.Stdout, "building the dotroom game server...")
		var err error
		c.cfg.GameServer, err = cluster.BuildPackage(ctx, filepath.Join(c.cfg.Dir, "bin"), "dotroom-server",
			"github.com/bevygap-go/bevygap/examples/dotroom/server")
		if err != nil {
			return fmt.Errorf("%w (run from the repository, or give --game-server)", err)
		}
	}
	cl, err := cluster.Start(ctx, c.cfg)
	if err != nil {
		return err
	}
	if err := cl.WriteSecrets(filepath.Join(c.cfg.Dir, "secrets.env")); err != nil {
		return errors.Join(err, cl.Stop())
	}
	c.printBanner(cl, time.Since(start))
	<-ctx.Done()
	fmt.Fprintln(c.env.Stdout, "stopping...")
	if err := cl.Stop(); err != nil {
		return fmt.Errorf("cluster: not every process stopped cleanly: %w", err)
	}
	fmt.Fprintln(c.env.Stdout, "stopped: every process exited")
	return nil
}

// natsServerVersion is the nats-server version this program was built with (go.mod's pin).
func natsServerVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == cluster.NATSServerModule {
				if d.Replace != nil {
					d = d.Replace
				}
				return d.Version
			}
		}
	}
	return "latest"
}

func (c *clusterCommand) printBanner(cl *cluster.Cluster, took time.Duration) {
	ep := cl.Endpoints()
	w := c.env.Stdout
	fmt.Fprintf(w, "\nbevygap cluster up in %v (deploy/compose.yaml as processes on loopback)\n\n", took.Round(100*time.Millisecond))
	url := map[string]string{"edgegap-sim": ep.Simulator + "/admin/state", "webhook-sink": ep.WebhookSink}
	for i, u := range ep.NATS {
		url[fmt.Sprintf("nats-%d", i+1)] = u + "   (monitor " + ep.NATSMonitor[i] + ")"
	}
	for i, u := range ep.MatchmakerMetrics {
		url[fmt.Sprintf("matchmaker-%d", i+1)] = u + "/metrics"
	}
	for i, u := range ep.HTTPD {
		url[fmt.Sprintf("httpd-%d", i+1)] = u + "   (players: " + strings.Replace(u, "http://", "ws://", 1) + "/matchmaker/ws)"
	}
	for _, name := range cl.Names() {
		fmt.Fprintf(w, "  %-13s pid %-7d %s\n", name, cl.Process(name).PID(), url[name])
	}
	fmt.Fprintf(w, "\n  play:    bevygap play --url %s --game spacepit --version v1\n", ep.HTTPD[0])
	fmt.Fprintf(w, "  secrets: %s (deploy/.env of this cluster: NATS users' passwords, keys)\n", filepath.Join(c.cfg.Dir, "secrets.env"))
	fmt.Fprintf(w, "  logs:    %s\n", filepath.Join(c.cfg.Dir, "logs"))
	fmt.Fprintf(w, "  chaos:   kill -9 <pid> stops a piece (kill -9 -<pid>: with what it started); it stays down\n")
	if r := cl.StartRestarts(); len(r) > 0 {
		fmt.Fprintf(w, "  note:    exited while starting and started again (as compose's restart policy would): %v\n", r)
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything.\n")
}

// Close removes the temporary work directory unless --keep.
func (c *clusterCommand) Close() error {
	if c.tempDir == "" || c.keep {
		if c.tempDir != "" {
			fmt.Fprintf(c.env.Stdout, "kept %s\n", c.tempDir)
		}
		return nil
	}
	if err := os.RemoveAll(c.tempDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
