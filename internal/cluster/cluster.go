// Package cluster runs bevygap's deployed topology (deploy/compose.yaml) as separate processes
// on loopback, without Docker: three nats-server nodes with deploy/nats/nats.conf and
// auth.conf, the Edgegap simulator running a game server program per deployment, two
// matchmakers, two HTTP front doors and the webhook sink, each a `bevygap` process with the
// command and environment compose.yaml gives its service.
//
// Nothing is copied from deploy/: commands and environments are read from compose.yaml (with
// its variables filled from generated secrets named by .env.example), and each node's NATS
// config is nats.conf with only its listen addresses, store directory and include path
// changed. Compose's network names ("nats-1:4222", "http://edgegap-sim:3080") and listen
// addresses ("0.0.0.0:3000") become free loopback ports.
//
// Every process runs in its own process group and is stopped by its PID: SIGINT, a bounded
// wait, then SIGKILL of the group. `bevygap cluster up` uses the package; so do the tests that
// run the topology (deploy/cluster_test.go). See docs/cluster.md.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures Start. DeployDir, Dir, Bevygap and NATSServer are required.
type Config struct {
	// DeployDir is the deploy/ directory: compose.yaml, .env.example, nats/.
	DeployDir string
	// Dir receives the generated NATS configs, the JetStream stores and one log file per process.
	Dir string
	// Bevygap is the bevygap program; NATSServer the nats-server program (BuildNATSServer).
	Bevygap    string
	NATSServer string
	// GameServer is the program the simulator runs per deployment (--exec), e.g. the dotroom
	// example's server. Empty: no game servers (sessions become ready, nobody can connect).
	GameServer string
	// Secrets are deploy/.env's values; every variable of .env.example missing here gets a
	// fresh random value (or the example's value for non-secrets such as BEVYGAP_HTTPD_CORS).
	Secrets map[string]string
	// Args are extra arguments per compose service ("edgegap-sim", "matchmaker-1", "httpd",
	// ...), appended to its command (the last of a repeated flag wins).
	Args map[string][]string
	// Output receives every process's output, each line prefixed with "[name] "; nil writes it
	// only to the log files in Dir/logs.
	Output io.Writer
	// StartTimeout bounds the wait for each process to be ready (default 60 s).
	StartTimeout time.Duration
	// StopGrace is how long a process may take to stop after SIGINT before it is killed
	// (default 10 s).
	StopGrace time.Duration
}

// Endpoints are the cluster's loopback addresses.
type Endpoints struct {
	// HTTPD are the front doors' base URLs (http://127.0.0.1:port): the players' entry points.
	HTTPD []string
	// WebhookSink is the webhook sink's base URL.
	WebhookSink string
	// Simulator is the Edgegap simulator's base URL (admin: /admin/state).
	Simulator string
	// NATS are the nodes' client URLs; NATSMonitor their monitoring URLs.
	NATS        []string
	NATSMonitor []string
	// MatchmakerMetrics are the matchmakers' /metrics base URLs.
	MatchmakerMetrics []string
}

// instance is one process of the cluster: its name, its compose service, how to start it and
// the URL that answers 200 once it is ready.
type instance struct {
	name, service string
	spec          ProcessSpec
	readyURL      string
	readyBody     *regexp.Regexp // what the ready URL's body must match (nil: any)
}

// Cluster is a running topology.
type Cluster struct {
	cfg       Config
	insts     []instance
	endpoints Endpoints
	secrets   map[string]string
	logs      []io.Closer

	mu       sync.Mutex
	procs    map[string]*Process
	restarts map[string]int         // start attempts that exited, per process (see startRestarts)
	ops      map[string]*sync.Mutex // serializes Kill and Restart of one process
}

// startRestarts is how often Start and Restart start a bevygap process again that exited while
// starting, as compose's `restart: unless-stopped` does (a matchmaker exits when it cannot open
// the buckets yet). After start nothing is restarted: a process that exits, or is killed, stays
// down.
const startRestarts = 3

// natsNodes are the compose services of the NATS cluster, in start order.
var natsNodes = []string{"nats-1", "nats-2", "nats-3"}

// instances are the bevygap processes after the NATS nodes, in start order, with their compose
// service. Compose has one httpd service; the harness runs two instances of it (as
// `docker compose up --scale httpd=2` would).
var instances = []struct {
	name, service, readyPath string
	readyBody                *regexp.Regexp
}{
	{"edgegap-sim", "edgegap-sim", "/admin/state", nil},
	{"matchmaker-1", "matchmaker-1", "/metrics", matchmakerServing},
	{"matchmaker-2", "matchmaker-2", "/metrics", matchmakerServing},
	{"httpd-1", "httpd", "/readyz", nil},
	{"httpd-2", "httpd", "/readyz", nil},
	{"webhook-sink", "webhook-sink", "/healthz", nil},
}

// matchmakerServing is the metric a matchmaker sets once its buckets are open and it answers
// session requests. The matchmakers start one after the other: the second only once the first
// serves (and so has created the buckets and the stream).
var matchmakerServing = regexp.MustCompile(`(?m)^bevygap_matchmaker_serving\{[^}]*\} 1$`)

// gameServerUser is the NATS role of the game servers the simulator runs.
const gameServerUser = "gameserver"

// plan reads deploy/ and computes every process's command line and environment.
func plan(cfg Config) ([]instance, Endpoints, map[string]string, error) {
	var ep Endpoints
	services, err := readCompose(cfg.DeployDir)
	if err != nil {
		return nil, ep, nil, err
	}
	example, err := readEnvExample(cfg.DeployDir)
	if err != nil {
		return nil, ep, nil, err
	}
	secrets := generateSecrets(example)
	for k, v := range cfg.Secrets {
		secrets[k] = v
	}
	// compose service -> the instance its network name reaches
	owner := map[string]string{}
	for _, n := range natsNodes {
		owner[n] = n
	}
	for _, in := range instances {
		if _, ok := owner[in.service]; !ok {
			owner[in.service] = in.name
		}
	}
	for s := range owner {
		if _, ok := services[s]; !ok {
			return nil, ep, nil, fmt.Errorf("compose.yaml has no service %q", s)
		}
	}
	p := newPorts()
	defer p.release()
	baseEnv := hostEnv()
	envOf := func(name, service string, extra map[string]string) ([]string, map[string]string, error) {
		env := map[string]string{}
		for k, v := range services[service].Environment {
			v, err := interpolate(v, secrets)
			if err != nil {
				return nil, nil, fmt.Errorf("compose.yaml %s environment %s: %w", service, k, err)
			}
			if v, err = localize(v, name, owner, p); err != nil {
				return nil, nil, err
			}
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		merged := map[string]string{}
		for k, v := range baseEnv {
			merged[k] = v
		}
		for k, v := range env {
			merged[k] = v
		}
		return sortedEnv(merged), env, nil
	}

	var insts []instance
	nodes := make([]natsNode, len(natsNodes))
	for i, n := range natsNodes {
		var err error
		if nodes[i].client, err = p.get(n, "4222"); err != nil {
			return nil, ep, nil, err
		}
		if nodes[i].monitor, err = p.get(n, "8222"); err != nil {
			return nil, ep, nil, err
		}
		if nodes[i].route, err = p.get(n, "6222"); err != nil {
			return nil, ep, nil, err
		}
		nodes[i].storeDir = filepath.Join(cfg.Dir, n, "jetstream")
	}
	for i, n := range natsNodes {
		confDir := filepath.Join(cfg.Dir, n)
		conf, err := natsConfig(cfg.DeployDir, confDir, nodes, i)
		if err != nil {
			return nil, ep, nil, err
		}
		if err := os.MkdirAll(confDir, 0o755); err != nil {
			return nil, ep, nil, err
		}
		confPath := filepath.Join(confDir, "nats.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return nil, ep, nil, err
		}
		env, _, err := envOf(n, n, nil)
		if err != nil {
			return nil, ep, nil, err
		}
		monitor := "http://127.0.0.1:" + strconv.Itoa(nodes[i].monitor)
		insts = append(insts, instance{name: n, service: n, readyURL: monitor + "/healthz",
			spec: ProcessSpec{Name: n, Path: cfg.NATSServer, Args: []string{"--config", confPath}, Env: env}})
		ep.NATS = append(ep.NATS, "nats://127.0.0.1:"+strconv.Itoa(nodes[i].client))
		ep.NATSMonitor = append(ep.NATSMonitor, monitor)
	}

	var natsClientEnv map[string]string // NATS_HOST and NATS_INSECURE as the matchmakers get them
	for _, in := range instances {
		if strings.HasPrefix(in.service, "matchmaker") && natsClientEnv == nil {
			_, env, err := envOf(in.name, in.service, nil)
			if err != nil {
				return nil, ep, nil, err
			}
			natsClientEnv = map[string]string{"NATS_HOST": env["NATS_HOST"], "NATS_INSECURE": env["NATS_INSECURE"]}
		}
	}
	for _, in := range instances {
		svc := services[in.service]
		args := slices.Concat(svc.Command, cfg.Args[in.service])
		for i, a := range args {
			a, err := interpolate(a, secrets)
			if err != nil {
				return nil, ep, nil, fmt.Errorf("compose.yaml %s command: %w", in.service, err)
			}
			if args[i], err = localize(a, in.name, owner, p); err != nil {
				return nil, ep, nil, err
			}
		}
		var extra map[string]string
		if in.service == "edgegap-sim" && cfg.GameServer != "" {
			// What compose.yaml's comment on edgegap-sim says to add for game servers run with
			// --exec: they inherit the simulator's environment.
			extra = map[string]string{
				"NATS_HOST":                     natsClientEnv["NATS_HOST"],
				"NATS_INSECURE":                 natsClientEnv["NATS_INSECURE"],
				"NATS_USER":                     gameServerUser,
				"NATS_PASSWORD":                 secrets["NATS_GAMESERVER_PASSWORD"],
				"NATS_INBOX_PREFIX":             "_INBOX_gs",
				"BEVYGAP_LIGHTYEAR_PRIVATE_KEY": secrets["BEVYGAP_LIGHTYEAR_PRIVATE_KEY"],
				"DOTROOM_LISTEN_HOST":           "127.0.0.1",
			}
			args = append(args, "--exec", cfg.GameServer)
		}
		env, _, err := envOf(in.name, in.service, extra)
		if err != nil {
			return nil, ep, nil, err
		}
		base, err := listenURL(args)
		if err != nil {
			return nil, ep, nil, fmt.Errorf("%s: %w", in.name, err)
		}
		insts = append(insts, instance{name: in.name, service: in.service, readyURL: base + in.readyPath, readyBody: in.readyBody,
			spec: ProcessSpec{Name: in.name, Path: cfg.Bevygap, Args: args, Env: env}})
		switch {
		case in.service == "edgegap-sim":
			ep.Simulator = base
		case in.service == "httpd":
			ep.HTTPD = append(ep.HTTPD, base)
		case in.service == "webhook-sink":
			ep.WebhookSink = base
		case strings.HasPrefix(in.service, "matchmaker"):
			ep.MatchmakerMetrics = append(ep.MatchmakerMetrics, base)
		}
	}
	return insts, ep, secrets, nil
}

// listenURL returns http://<addr> of the --bind (or, for the matchmaker, --metrics-addr) flag
// in args, the last one given.
func listenURL(args []string) (string, error) {
	addr := ""
	for _, a := range args {
		for _, f := range []string{"--bind=", "--metrics-addr="} {
			if v, ok := strings.CutPrefix(a, f); ok {
				addr = v
			}
		}
	}
	if addr == "" {
		return "", errors.New("no --bind or --metrics-addr in its command")
	}
	return "http://" + addr, nil
}

// hostEnv is what every process inherits from the harness's environment: only what programs
// need to run (compose's containers inherit nothing either).
func hostEnv() map[string]string {
	out := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			out[k] = v
		}
	}
	return out
}

// Start starts the whole topology and returns once every process is ready: the NATS nodes
// healthy with JetStream, the simulator and the webhook sink answering, the matchmakers serving
// metrics and both front doors ready (a matchmaker answers them). On error everything started
// is stopped again.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.DeployDir == "" || cfg.Dir == "" || cfg.Bevygap == "" || cfg.NATSServer == "" {
		return nil, errors.New("cluster: DeployDir, Dir, Bevygap and NATSServer are required")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	insts, ep, secrets, err := plan(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, insts: insts, endpoints: ep, secrets: secrets, procs: map[string]*Process{}, restarts: map[string]int{},
		ops: map[string]*sync.Mutex{}}
	for _, in := range insts {
		c.ops[in.name] = &sync.Mutex{}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// The NATS nodes start together (each waits for its routes), then the rest in order.
	var nats, rest []instance
	for _, in := range insts {
		if slices.Contains(natsNodes, in.name) {
			nats = append(nats, in)
		} else {
			rest = append(rest, in)
		}
	}
	for _, in := range nats {
		if err := c.start(in); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
	}
	for _, in := range nats {
		if err := c.waitReady(ctx, in); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
	}
	for _, in := range rest {
		if err := c.startReady(ctx, in); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
	}
	return c, nil
}

// startReady starts in and waits until it is ready, starting it again (up to startRestarts
// times) when it exits while starting.
func (c *Cluster) startReady(ctx context.Context, in instance) error {
	for attempt := 0; ; attempt++ {
		if err := c.start(in); err != nil {
			return err
		}
		err := c.waitReady(ctx, in)
		if err == nil {
			return nil
		}
		select {
		case <-c.Process(in.name).Done():
		default:
			return err // not ready in time, still running
		}
		if attempt == startRestarts || ctx.Err() != nil {
			return err
		}
		c.mu.Lock()
		c.restarts[in.name]++
		c.mu.Unlock()
	}
}

// StartRestarts returns, per process, how often it exited while starting and was started again
// (compose's restart policy; see docs/cluster.md). Empty when every process started at the
// first attempt.
func (c *Cluster) StartRestarts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.restarts))
	for k, v := range c.restarts {
		out[k] = v
	}
	return out
}

// start starts in's process, its output going to its log file (appended, so that a restart
// keeps the earlier lines) and to Config.Output.
func (c *Cluster) start(in instance) error {
	f, err := os.OpenFile(c.LogPath(in.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	spec := in.spec
	spec.Output = f
	if c.cfg.Output != nil {
		spec.Output = io.MultiWriter(f, &prefixWriter{prefix: "[" + in.name + "] ", w: c.cfg.Output})
	}
	p, err := StartProcess(spec)
	if err != nil {
		_ = f.Close()
		return err
	}
	c.mu.Lock()
	c.procs[in.name] = p
	c.logs = append(c.logs, f)
	c.mu.Unlock()
	return nil
}

// waitReady waits until in's process is ready, or exited, or the start timeout or ctx ended.
func (c *Cluster) waitReady(ctx context.Context, in instance) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	if err := waitHTTP(ctx, c.Process(in.name), in.readyURL, in.readyBody); err != nil {
		return fmt.Errorf("cluster: %s: %w; see %s", in.name, err, c.LogPath(in.name))
	}
	return nil
}

// WaitReady polls url until it answers 200 OK. It fails when p exits first or ctx ends.
func WaitReady(ctx context.Context, p *Process, url string) error {
	return waitHTTP(ctx, p, url, nil)
}

func waitHTTP(ctx context.Context, p *Process, url string, want *regexp.Regexp) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("%s: %s", url, resp.Status)
			case want != nil && !want.Match(body):
				err = fmt.Errorf("%s: no %s yet", url, want)
			default:
				return nil
			}
		}
		last = err
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-p.Done():
			t.Stop()
			return fmt.Errorf("exited while starting (%v)", p.Err())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

// FreePort returns a loopback TCP port that is free now, below the kernel's ephemeral range
// where possible (so that outgoing connections do not take it before it is used).
func FreePort() (int, error) {
	ln, err := listenFree()
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Endpoints returns the cluster's loopback addresses.
func (c *Cluster) Endpoints() Endpoints { return c.endpoints }

// Secret returns the value of a deploy/.env variable the cluster runs with (e.g.
// "BEVYGAP_LIGHTYEAR_PRIVATE_KEY", "NATS_MATCHMAKER_PASSWORD").
func (c *Cluster) Secret(name string) string { return c.secrets[name] }

// WriteSecrets writes the deploy/.env variables the cluster runs with to path (mode 0600), in
// .env format, e.g. for the nats CLI or a hand-started service.
func (c *Cluster) WriteSecrets(path string) error {
	var b strings.Builder
	for _, kv := range sortedEnv(c.secrets) {
		b.WriteString(kv + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// Names returns the processes' names in start order: nats-1..3, edgegap-sim, matchmaker-1,
// matchmaker-2, httpd-1, httpd-2, webhook-sink.
func (c *Cluster) Names() []string {
	out := make([]string, len(c.insts))
	for i, in := range c.insts {
		out[i] = in.name
	}
	return out
}

// Process returns the current process of name (nil for an unknown name).
func (c *Cluster) Process(name string) *Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// LogPath returns the log file of name's process.
func (c *Cluster) LogPath(name string) string {
	return filepath.Join(c.cfg.Dir, "logs", name+".log")
}

func (c *Cluster) instance(name string) (instance, error) {
	for _, in := range c.insts {
		if in.name == name {
			return in, nil
		}
	}
	return instance{}, fmt.Errorf("cluster: no process %q (have %s)", name, strings.Join(c.Names(), ", "))
}

// Kill kills name's process with SIGKILL (and its process group), as `kill -9` would. It waits
// for a Restart of the same process in progress to end first (chaos schedules may overlap).
func (c *Cluster) Kill(name string) error {
	if _, err := c.instance(name); err != nil {
		return err
	}
	op := c.ops[name]
	op.Lock()
	defer op.Unlock()
	return c.Process(name).Kill()
}

// Restart starts name's process again with the same command, environment, ports and (for a
// NATS node) JetStream store, stopping it first if it still runs, and waits until it is ready
// (a bevygap process that exits while starting is started again, as by Start). Kill and
// Restart of one process run one at a time: two Restarts never race for its ports.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	in, err := c.instance(name)
	if err != nil {
		return err
	}
	op := c.ops[name]
	op.Lock()
	defer op.Unlock()
	if p := c.Process(name); p != nil {
		select {
		case <-p.Done():
		default:
			if err := p.Stop(c.cfg.StopGrace); err != nil {
				return err
			}
		}
	}
	if slices.Contains(natsNodes, name) {
		if err := c.start(in); err != nil {
			return err
		}
		return c.waitReady(ctx, in)
	}
	return c.startReady(ctx, in)
}

// stopOrder groups the processes by the order Stop stops them in (each group in parallel):
// the front doors, the matchmakers, the simulator (and its game servers), the NATS nodes.
var stopOrder = [][]string{
	{"httpd-1", "httpd-2", "webhook-sink"},
	{"matchmaker-1", "matchmaker-2"},
	{"edgegap-sim"},
	natsNodes,
}

// Stop stops every process (SIGINT, Config.StopGrace, then SIGKILL of its process group) and
// returns the errors of those that did not stop cleanly. It may be called more than once.
func (c *Cluster) Stop() error {
	var errs []error
	var mu sync.Mutex
	for _, group := range stopOrder {
		var wg sync.WaitGroup
		for _, name := range group {
			p := c.Process(name)
			if p == nil {
				continue
			}
			wg.Go(func() {
				select {
				case <-p.Done():
					killGroup(p.cmd)
					return // exited (or killed) before: not this Stop's business
				default:
				}
				if err := p.Stop(c.cfg.StopGrace); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	c.mu.Lock()
	for _, f := range c.logs {
		_ = f.Close()
	}
	c.logs = nil
	c.mu.Unlock()
	return errors.Join(errs...)
}

// prefixWriter writes each line with a prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := slices.Index(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(p.w, p.prefix+string(p.buf[:i+1])); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
