// Package devstack runs the whole of bevygap in one process, with no accounts and no Docker:
// what `bevygap dev` starts and what the end-to-end tests drive.
//
//	embedded NATS (JetStream) ◄──────────────┬──────────────┬────────────────┐
//	        ▲                                │              │                │
//	httpd (HTTP + WebSocket) ── NATS ──► matchmaker ── REST ──► Edgegap simulator
//	                                         ▲                     │  per deployment, after the
//	webhook sink ◄── session webhooks ───────┼─────────────────────┘  boot time: a game server
//	   └── webhook.session ──────────────────┘                        (dotroom in-process, or
//	                                                                   any program: Config.Exec)
//
// Start brings the pieces up in dependency order and returns a Stack; Shutdown takes them down
// in the order that leaves no Edgegap session behind:
//
//  1. the front door stops taking requests (open streams are told the server is going away);
//  2. the matchmaker finishes or fails its in-flight requests and stops its workers;
//  3. every session still in the simulator is deleted through the Edgegap API (players still
//     connected lose their sessions, as they would if the operator deleted them);
//  4. the simulator stops every game server (they disconnect their players and write the
//     disconnects to NATS) and closes;
//  5. the webhook sink, the NATS connections and the NATS server stop.
//
// Shutdown is bounded (its context's deadline, else DefaultShutdownBudget) and says what it
// left undone: a *ShutdownError, matching ErrLeakedSessions if the simulator still has a session.
//
// Config.GameTransport runs the in-process game servers over UDP (the default) or WebTransport;
// with Config.Play the front door also serves the dotroom player for browsers at /play/
// (package webclient, built with the local Go toolchain when the stack starts).
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomserver"
	"github.com/bevygap-go/bevygap/examples/dotroom/webclient"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/internal/serve"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/matchmaker"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/webhooksink"
)

// Defaults of Config. Addresses default to a random loopback port; `bevygap dev` passes the
// well-known ports (NATS 4222, httpd 3000, webhook sink 3001, simulator 3080).
const (
	DefaultAppName    = "dotroom"
	DefaultAppVersion = "1"
	DefaultBootTime   = time.Second
	DefaultBootJitter = 200 * time.Millisecond
	DefaultEmptyTTL   = 2 * time.Minute
	// DefaultShutdownTimeout is how long in-flight matchmaker requests may finish on shutdown.
	DefaultShutdownTimeout = 5 * time.Second
	// SimAPIKey is the Edgegap API key the simulator accepts and the matchmaker sends.
	SimAPIKey = "token bevygap-dev"
	// WebhookName is the hook name of session webhooks (POST /hook/session → webhook.session).
	WebhookName = "session"
)

// frontDrain bounds how long the front door drains open streams on shutdown when the stack
// serves it together with /play/ (httpd.Server.Serve's own bound is the same).
const frontDrain = 15 * time.Second

// ErrLeakedSessions is returned (wrapped) by Shutdown when the simulator still has sessions
// after everything was stopped.
var ErrLeakedSessions = errors.New("devstack: sessions leaked")

// Exec runs a program as the game server of every deployment instead of the in-process dotroom
// server. The program gets the simulator's ARBITRIUM_* environment plus NATS_HOST,
// NATS_INSECURE and the dotroom variables (BEVYGAP_LIGHTYEAR_PRIVATE_KEY, ...), on top of this
// process's environment.
type Exec struct {
	Path string
	Args []string
	// Output receives the program's output, each line prefixed with the deployment id (nil:
	// through the logger).
	Output io.Writer
	// StopGrace is how long a stopping program may take before it is killed (0 = 5 s).
	StopGrace time.Duration
}

// Config configures a Stack. The zero value runs dotroom on random loopback ports.
type Config struct {
	// NATSHost and NATSPort are where the embedded NATS listens ("" = 127.0.0.1, 0 = random).
	NATSHost string
	NATSPort int
	// NATSStoreDir is the JetStream store ("" = a temporary directory removed on shutdown).
	NATSStoreDir string
	// HTTPAddr, WebhookAddr and SimAddr are the listen addresses of the front door, the
	// webhook sink and the simulator ("" = 127.0.0.1:0).
	HTTPAddr, WebhookAddr, SimAddr string

	// AppName and AppVersion are the Edgegap app the simulator knows and the matchmaker serves.
	// Keep the version free of dots: the front door only accepts letters, digits, ' ', '_', '-'.
	AppName, AppVersion string
	// Sockets per deployment (0 = the simulator's 6) and session Kind ("" = Seat).
	Sockets int
	Kind    string
	// BootTime and BootJitter of new deployments (0 = defaults; negative = none: instant boot, no jitter).
	BootTime, BootJitter time.Duration
	// EmptyTTL is how long a deployment without sessions lives (0 = DefaultEmptyTTL).
	EmptyTTL time.Duration
	// Faults is the simulator's initial fault injection (change it later with Sim().SetFaults
	// or PUT /admin/faults).
	Faults edgegapsim.Faults
	// Seed seeds the simulator (0 = random).
	Seed uint64

	// Exec, when set, runs this program per deployment instead of the in-process dotroom.
	Exec *Exec
	// GameTransport is the game transport of the in-process dotroom servers ("" = UDP); an
	// Exec program gets it as DOTROOM_TRANSPORT. With netcode.TransportWebTransport each game
	// server makes a self-signed certificate and publishes its digest in cert_digests, and the
	// matchmaker hands it to players (SessionReady.cert_digest).
	GameTransport netcode.Transport
	// Play serves the dotroom player for browsers at /play/ on the front door (package
	// webclient: built with the local Go toolchain, in the background, when the stack starts).
	// A browser can only join WebTransport game servers: set GameTransport too.
	Play bool
	// GameTick and GameIdleTimeout configure the in-process dotroom servers (0 = their
	// defaults: 100 ms, and 10 min idle self-destruct).
	GameTick, GameIdleTimeout time.Duration

	// PrivateKey is the netcode key of the matchmaker and the game servers (zero = a fresh
	// random key). ProtocolID defaults to 1982, TokenFormat to lightyear-0.17.
	PrivateKey  netcode.Key
	ProtocolID  uint64
	TokenFormat netcode.Format

	// ReadinessLimit, ClaimGrace and ShutdownTimeout tune the matchmaker (0 = its defaults,
	// and DefaultShutdownTimeout).
	ReadinessLimit, ClaimGrace, ShutdownTimeout time.Duration
	// Queues are the matchmaker's match queues (nil = match.Default(): "duo" and "room"; an
	// empty Config = none).
	Queues *match.Config
	// Matchmaker, when set, may adjust the matchmaker's configuration last.
	Matchmaker func(*matchmaker.Config)

	// AllowedOrigins are the browser origins the front door accepts (nil = any: "*").
	AllowedOrigins []string
	// Status configures the front door's /status page (zero = off; bevygap dev turns it on).
	Status httpd.StatusConfig

	// Logger receives every component's logs, each with a "component" attribute (nil = discard).
	Logger *slog.Logger
}

// streamTimeout is the front door's bound on a whole streaming request: httpd's default, or
// more when a player may wait longer — a party's wait for its members, then the longest queue
// wait limit, then a session setup.
func streamTimeout(mc matchmaker.Config) time.Duration {
	wait := mc.PartyWaitLimit
	if wait <= 0 {
		wait = matchmaker.DefaultPartyWaitLimit
	}
	var queue time.Duration
	for _, q := range mc.Queues.Queues {
		queue = max(queue, q.WaitLimit)
	}
	return max(httpd.DefaultStreamTimeout, wait+queue+mc.ReadinessLimit+30*time.Second)
}

// Info says where everything runs.
type Info struct {
	NATSURL      string // nats://127.0.0.1:4222
	HTTPURL      string // http://127.0.0.1:3000
	WebSocketURL string // ws://127.0.0.1:3000/matchmaker/ws
	SimURL       string // http://127.0.0.1:3080 (admin: /admin/state)
	WebhookURL   string // http://127.0.0.1:3001/hook/session
	AppName      string
	AppVersion   string
	ProtocolID   uint64
	StoreDir     string // "" for a temporary store
	// PlayURL is the browser player's page (http://127.0.0.1:3000/play/), "" without Config.Play.
	PlayURL string
}

// Stack is a running bevygap: NATS, the simulator with its game servers, the webhook sink, the
// matchmaker and the front door.
type Stack struct {
	cfg  Config
	log  *slog.Logger
	info Info
	key  netcode.Key

	nats   *natsembed.Server
	conns  []*nats.Conn
	sim    *edgegapsim.Simulator
	api    *edgegap.Client
	mm     *matchmaker.Matchmaker
	reg    *prometheus.Registry // every component's metrics, served at the front door's /metrics
	b      *bus.Buckets
	front  *httpd.Server
	play   *webclient.Server // the browser player at /play/ (Config.Play)
	probes *nats.Conn

	// one cancel + done per served component, stopped in order by Shutdown
	httpStop, sinkStop, simStop context.CancelFunc
	httpDone, sinkDone, simDone chan struct{}

	failOnce sync.Once
	failed   chan struct{}
	failErr  error

	shutdownOnce sync.Once
	shutdownErr  error

	stopMu   sync.Mutex
	stopErrs []error // components that stopped with an error on Shutdown (shutdown.go)
}

// Start runs a stack and returns once every component serves. ctx bounds the start only: the
// stack runs until Shutdown (or until a component fails: see Failed). On error everything
// already started is stopped again; an address that cannot be listened on (a port in use)
// fails before anything starts, with a *ListenError.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	s := &Stack{cfg: cfg, failed: make(chan struct{})}
	s.applyDefaults()
	if err := s.start(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		_ = s.Shutdown(cctx)
		return nil, err
	}
	return s, nil
}

func (s *Stack) applyDefaults() {
	c := &s.cfg
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s.log = c.Logger
	if c.NATSHost == "" {
		c.NATSHost = "127.0.0.1"
	}
	for _, a := range []*string{&c.HTTPAddr, &c.WebhookAddr, &c.SimAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if c.AppName == "" {
		c.AppName = DefaultAppName
	}
	if c.AppVersion == "" {
		c.AppVersion = DefaultAppVersion
	}
	if c.BootTime == 0 {
		c.BootTime = DefaultBootTime
	}
	if c.BootJitter == 0 {
		c.BootJitter = DefaultBootJitter
	}
	if c.EmptyTTL == 0 {
		c.EmptyTTL = DefaultEmptyTTL
	}
	if c.ProtocolID == 0 {
		c.ProtocolID = roomserver.DefaultProtocolID
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.AllowedOrigins == nil {
		c.AllowedOrigins = []string{"*"}
	}
}

func (s *Stack) start(ctx context.Context) error {
	c := &s.cfg
	s.key = c.PrivateKey
	if s.key.IsZero() {
		k, err := netcode.GenerateKey()
		if err != nil {
			return fmt.Errorf("devstack: generating the private key: %w", err)
		}
		s.key = k
	}

	// Listeners first: a port in use fails before anything runs. The embedded nats-server
	// cannot take a listener of ours, so its fixed port is only checked (listen, close) right
	// before it starts; otherwise a busy port would cost its 10 s readiness wait.
	natsAddr := net.JoinHostPort(c.NATSHost, strconv.Itoa(c.NATSPort))
	if c.NATSPort != 0 {
		ln, err := listen(natsAddr, ComponentNATS)
		if err != nil {
			return err
		}
		_ = ln.Close()
	}
	httpLn, err := listen(c.HTTPAddr, ComponentHTTPD)
	if err != nil {
		return err
	}
	sinkLn, err := listen(c.WebhookAddr, ComponentWebhookSink)
	if err != nil {
		_ = httpLn.Close()
		return err
	}
	simLn, err := listen(c.SimAddr, ComponentSim)
	if err != nil {
		_ = httpLn.Close()
		_ = sinkLn.Close()
		return err
	}
	s.info = Info{
		HTTPURL:      "http://" + httpLn.Addr().String(),
		WebSocketURL: "ws://" + httpLn.Addr().String() + "/matchmaker/ws",
		SimURL:       "http://" + simLn.Addr().String(),
		WebhookURL:   "http://" + sinkLn.Addr().String() + "/hook/" + WebhookName,
		AppName:      c.AppName,
		AppVersion:   c.AppVersion,
		ProtocolID:   c.ProtocolID,
		StoreDir:     c.NATSStoreDir,
	}
	// From here on, a listener not yet handed to its server is closed on error.
	pending := []net.Listener{httpLn, sinkLn, simLn}
	defer func() {
		for _, ln := range pending {
			if ln != nil {
				_ = ln.Close()
			}
		}
	}()

	// 1. NATS with JetStream.
	s.nats, err = natsembed.Start(natsembed.Config{
		Host: c.NATSHost, Port: c.NATSPort, StoreDir: c.NATSStoreDir,
		Logger: s.log.With("component", "nats-server"), // its own lines, at debug level
	})
	if err != nil {
		return fmt.Errorf("devstack: NATS on %s:%d: %w", c.NATSHost, c.NATSPort, err)
	}
	s.info.NATSURL = s.nats.ClientURL()

	// 2. The Edgegap simulator, launching a game server per deployment.
	version := edgegapsim.VersionConfig{
		Name: c.AppVersion, Kind: c.Kind, Sockets: c.Sockets, EmptyTTL: edgegapsim.Duration(c.EmptyTTL),
	}
	s.sim, err = edgegapsim.New(edgegapsim.Config{
		Apps:       []edgegapsim.AppConfig{{Name: c.AppName, Versions: []edgegapsim.VersionConfig{version}}},
		APIKeys:    []string{SimAPIKey},
		BaseURL:    s.info.SimURL,
		BootTime:   edgegapsim.Duration(c.BootTime),
		BootJitter: edgegapsim.Duration(c.BootJitter),
		Seed:       c.Seed,
		Faults:     c.Faults,
		Launcher:   s.launcher(),
		Logger:     s.log.With("component", "edgegap-sim"),
	})
	if err != nil {
		return fmt.Errorf("devstack: simulator: %w", err)
	}
	s.simStop, s.simDone = s.serve("edgegap-sim", func(ctx context.Context) error { return s.sim.Serve(ctx, simLn) })
	pending[2] = nil
	// One registry for every component: the front door's /metrics shows them all.
	s.reg = svcmetrics.NewRegistry()
	s.reg.MustRegister(s.sim.Collector())
	// The simulator is local: no client-side rate limit (50 players at once must not queue).
	s.api = edgegap.NewClient(s.info.SimURL, SimAPIKey, edgegap.WithRateLimit(rate.Inf, 0),
		edgegap.WithLogger(s.log.With("component", "edgegap-client")))

	// 3. The webhook sink: simulator → HTTP → NATS webhook.session → matchmaker.
	sinkNC, err := s.connect(ctx, "bevygap-webhook-sink")
	if err != nil {
		return err
	}
	sink, err := webhooksink.New(webhooksink.Config{}, sinkNC, s.log.With("component", "webhook-sink"), s.reg)
	if err != nil {
		return fmt.Errorf("devstack: webhook sink: %w", err)
	}
	s.sinkStop, s.sinkDone = s.serve("webhook-sink", func(ctx context.Context) error { return sink.Serve(ctx, sinkLn) })
	pending[1] = nil

	// 4. The matchmaker.
	mmNC, err := s.connect(ctx, "bevygap-matchmaker")
	if err != nil {
		return err
	}
	mc := matchmaker.DefaultConfig()
	mc.AppName, mc.AppVersion = c.AppName, c.AppVersion
	mc.PrivateKey, mc.ProtocolID, mc.TokenFormat = s.key, c.ProtocolID, c.TokenFormat
	mc.SessionWebhookURL = s.info.WebhookURL
	mc.ShutdownTimeout = c.ShutdownTimeout
	if c.Exec == nil && c.GameTransport != netcode.TransportWebTransport {
		// dotroom over UDP never publishes a WebTransport cert digest: do not wait for one.
		mc.CertDigestWait = 0
	}
	if c.ReadinessLimit > 0 {
		mc.ReadinessLimit = c.ReadinessLimit
	}
	if c.ClaimGrace > 0 {
		mc.ClaimGrace = c.ClaimGrace
	}
	mc.Queues = match.Default()
	if c.Queues != nil {
		mc.Queues = *c.Queues
	}
	if c.Matchmaker != nil {
		c.Matchmaker(&mc)
	}
	// The matchmaker's own client, so that its metrics count its Edgegap calls only.
	mmAPI := edgegap.NewClient(s.info.SimURL, SimAPIKey, edgegap.WithRateLimit(rate.Inf, 0),
		edgegap.WithLogger(s.log.With("component", "edgegap-client")),
		edgegap.WithObserver(matchmaker.EdgegapObserver(s.reg)))
	mm, err := matchmaker.New(mc, matchmaker.Deps{NATS: mmNC, Edgegap: mmAPI, Logger: s.log, Registry: s.reg}) // it adds component=matchmaker
	if err != nil {
		return fmt.Errorf("devstack: matchmaker: %w", err)
	}
	if err := mm.Start(ctx); err != nil {
		return fmt.Errorf("devstack: matchmaker: %w", err)
	}
	s.mm = mm
	if s.b, err = bus.Open(ctx, mmNC, mc.Buckets); err != nil { // as the matchmaker opened them
		return fmt.Errorf("devstack: buckets: %w", err)
	}

	// 5. The front door. Every local client comes from 127.0.0.1, so the per-IP limits are off.
	httpNC, err := s.connect(ctx, "bevygap-httpd")
	if err != nil {
		return err
	}
	s.front, err = httpd.New(httpd.Config{
		AllowedOrigins:    c.AllowedOrigins,
		SessionsPerMinute: -1,
		MaxStreamsPerIP:   -1,
		Status:            c.Status,
		StreamTimeout:     streamTimeout(mc),
	}, httpNC, s.log.With("component", "httpd"), s.reg)
	if err != nil {
		return fmt.Errorf("devstack: httpd: %w", err)
	}
	if c.Play {
		// The browser player next to the front door's routes: /play/ is ours, the rest httpd's.
		if s.play, err = webclient.Start(s.log.With("component", "webclient")); err != nil {
			return fmt.Errorf("devstack: browser client: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/play/", http.StripPrefix("/play", s.play))
		mux.Handle("/", s.front)
		s.info.PlayURL = s.info.HTTPURL + "/play/"
		s.httpStop, s.httpDone = s.serve("httpd", func(ctx context.Context) error {
			return serve.HTTP(ctx, serve.NewServer(mux, s.log.With("component", "httpd")), httpLn, frontDrain, s.front.Shutdown)
		})
	} else {
		s.httpStop, s.httpDone = s.serve("httpd", func(ctx context.Context) error { return s.front.Serve(ctx, httpLn) })
	}
	pending[0] = nil

	s.probes, err = s.connect(ctx, "bevygap-dev")
	if err != nil {
		return err
	}
	s.log.Info("bevygap dev stack running", "nats", s.info.NATSURL, "http", s.info.HTTPURL, "sim", s.info.SimURL,
		"webhooks", s.info.WebhookURL, "app", c.AppName, "version", c.AppVersion)
	return nil
}

// launcher returns the simulator's game-server launcher: the in-process dotroom server, or
// Config.Exec. Both get the deployment's ARBITRIUM_* environment plus gameEnv.
func (s *Stack) launcher() edgegapsim.Launcher {
	if e := s.cfg.Exec; e != nil {
		el := &edgegapsim.ExecLauncher{Path: e.Path, Args: e.Args, Output: e.Output, StopGrace: e.StopGrace,
			Logger: s.log.With("component", "gameserver")}
		return edgegapsim.LauncherFunc(func(ctx context.Context, spec edgegapsim.LaunchSpec) (edgegapsim.Process, error) {
			spec.Env = s.withGameEnv(spec.Env)
			return el.Launch(ctx, spec)
		})
	}
	log := s.log // the SDK agent and the netcode server add their own "component"
	return edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
		env = s.withGameEnv(env)
		cfg, err := roomserver.ConfigFromEnv(func(k string) string { return env[k] })
		if err != nil {
			return err
		}
		cfg.Logger = log
		return roomserver.Run(ctx, cfg)
	})
}

// withGameEnv returns env plus what a game server needs besides ARBITRIUM_*: how to reach NATS,
// the private key and protocol id, and (for dotroom) to bind loopback only.
func (s *Stack) withGameEnv(env map[string]string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	out["NATS_HOST"] = s.info.NATSURL
	out["NATS_INSECURE"] = "1"
	out[roomserver.EnvPrivateKey] = string(s.key.AppendHex(nil))
	out[roomserver.EnvProtocolID] = strconv.FormatUint(s.cfg.ProtocolID, 10)
	out[roomserver.EnvTokenFormat] = s.cfg.TokenFormat.String()
	out[roomserver.EnvListenHost] = "127.0.0.1"
	if s.cfg.GameTransport != "" {
		out[roomserver.EnvTransport] = s.cfg.GameTransport.String()
	}
	if s.cfg.GameTick > 0 {
		out[roomserver.EnvTick] = s.cfg.GameTick.String()
	}
	if s.cfg.GameIdleTimeout > 0 {
		out[roomserver.EnvIdleTimeout] = s.cfg.GameIdleTimeout.String()
	}
	return out
}

// connect opens one NATS connection to the embedded server, closed by Shutdown.
func (s *Stack) connect(ctx context.Context, name string) (*nats.Conn, error) {
	nc, err := bus.Connect(ctx, bus.Config{Host: s.nats.ClientURL(), User: s.nats.User(), Password: s.nats.Password(), Insecure: true, Name: name}, s.log.With("component", "nats-client", "name", name))
	if err != nil {
		return nil, fmt.Errorf("devstack: NATS connection %s: %w", name, err)
	}
	s.conns = append(s.conns, nc)
	return nc, nil
}

// serve runs one server until its context is cancelled. A server that stops on its own fails
// the stack (Failed, Err).
func (s *Stack) serve(name string, run func(context.Context) error) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := run(ctx)
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped")
			}
			s.fail(fmt.Errorf("devstack: %s: %w", name, err))
		} else if err != nil {
			s.log.Warn("stopped with an error", "component", name, "err", err)
			s.stopFailed(fmt.Errorf("%s: %w", name, err))
		}
	}()
	return cancel, done
}

func (s *Stack) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.log.Error("component failed", "err", err)
		close(s.failed)
	})
}

// Components named by ListenError.
const (
	ComponentNATS        = "NATS"
	ComponentHTTPD       = "front door"
	ComponentWebhookSink = "webhook sink"
	ComponentSim         = "Edgegap simulator"
)

// ListenError is returned (wrapped) by Start when a listen address cannot be bound, e.g. a
// port already in use (errors.Is(err, syscall.EADDRINUSE) holds then). Start returns it before
// any component runs.
type ListenError struct {
	// Component is ComponentNATS, ComponentHTTPD, ComponentWebhookSink or ComponentSim.
	Component string
	// Addr is the address from Config.
	Addr string
	// Err is the error of net.Listen.
	Err error
}

// Error names the component, the address and why it could not listen.
func (e *ListenError) Error() string {
	return fmt.Sprintf("devstack: %s on %s: %v", e.Component, e.Addr, e.Err)
}

// Unwrap returns the net.Listen error.
func (e *ListenError) Unwrap() error { return e.Err }

// listen opens a TCP listener, naming the component in the error (a *ListenError).
func listen(addr, component string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Component: component, Addr: addr, Err: err}
	}
	return ln, nil
}

// Info returns where everything runs.
func (s *Stack) Info() Info { return s.info }

// Failed is closed when a component stopped on its own; Err then says which and why.
func (s *Stack) Failed() <-chan struct{} { return s.failed }

// Err returns why the stack failed, or nil.
func (s *Stack) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// Sim returns the Edgegap simulator (state, faults, call counts).
func (s *Stack) Sim() *edgegapsim.Simulator { return s.sim }

// Edgegap returns a client of the simulator's Edgegap API.
func (s *Stack) Edgegap() *edgegap.Client { return s.api }

// NATS returns a NATS connection of the stack's own, for probes (do not close it).
func (s *Stack) NATS() *nats.Conn { return s.probes }

// Matchmaker returns the matchmaker.
func (s *Stack) Matchmaker() *matchmaker.Matchmaker { return s.mm }

// Metrics returns the stack's Prometheus metrics, the registry the front door and the webhook
// sink serve at /metrics: the matchmaker's (bevygap_matchmaker_*), the front door's
// (bevygap_httpd_*), the sink's (bevygap_webhooksink_*), the simulator's (bevygap_edgegapsim_*),
// each component's NATS connection (bevygap_nats_*{service}) and the Go runtime and process.
func (s *Stack) Metrics() prometheus.Gatherer { return s.reg }

// Buckets returns the shared KV buckets, opened like the matchmaker opened them.
func (s *Stack) Buckets() *bus.Buckets { return s.b }

// PrivateKey returns the netcode key shared by the matchmaker and the game servers. It prints
// as [REDACTED]; it is for tests that mint tokens of their own.
func (s *Stack) PrivateKey() netcode.Key { return s.key }

// Shutdown stops everything in the order described in the package documentation, within ctx
// (and within DefaultShutdownBudget when ctx has no deadline). What it left undone comes back
// as a *ShutdownError (shutdown.go), matching ErrLeakedSessions when the simulator still has
// sessions at the end. Calling it again returns the first result.
func (s *Stack) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}
