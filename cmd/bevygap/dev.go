package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomserver"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

const devSynopsis = "[flags] [-- game-server-args...]"

// devSmokeCleanup bounds how long --smoke waits for the played session to be deleted.
const devSmokeCleanup = 15 * time.Second

// devShutdownTimeout bounds the whole ordered shutdown after Ctrl-C.
const devShutdownTimeout = 30 * time.Second

// devCommand is "bevygap dev": the whole backend in one process (see package devstack).
type devCommand struct {
	env       *Env
	cfg       devstack.Config
	smoke     bool
	keySource string // how the private key was chosen, for the banner
	nothingToClose
}

// ParseFlags reads the flags (with --smoke, unset addresses become random ports), the private
// key and the log settings into the stack's configuration.
func (c *devCommand) ParseFlags(args []string) error {
	env := c.env
	cfg := devstack.Config{}
	fs := newFlagSet(env, "dev", devSynopsis)
	natsAddr := fs.String("nats-addr", "127.0.0.1:4222", "embedded NATS listen address (port 0 = random)")
	fs.StringVar(&cfg.NATSStoreDir, "store", "", "JetStream store directory (default: a temporary one, removed on exit)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:3000", "front door (httpd) listen address")
	fs.StringVar(&cfg.WebhookAddr, "webhook-addr", "127.0.0.1:3001", "webhook sink listen address")
	fs.StringVar(&cfg.SimAddr, "sim-addr", "127.0.0.1:3080", "Edgegap simulator listen address")
	fs.StringVar(&cfg.AppName, "app", devstack.DefaultAppName, "Edgegap app name (the game name clients send)")
	fs.StringVar(&cfg.AppVersion, "version", devstack.DefaultAppVersion, "Edgegap app version (letters, digits, _ and -)")
	fs.IntVar(&cfg.Sockets, "sockets", edgegapsim.DefaultSockets, "sockets (players) per deployment")
	fs.StringVar(&cfg.Kind, "kind", "Seat", "session kind: Seat or Match")
	fs.DurationVar(&cfg.BootTime, "boot-time", devstack.DefaultBootTime, "time a new deployment takes to become ready (0 = instant)")
	bootJitter := fs.Duration("boot-jitter", devstack.DefaultBootJitter, "random extra boot time, up to this (0 = none)")
	fs.DurationVar(&cfg.EmptyTTL, "empty-ttl", devstack.DefaultEmptyTTL, "how long a deployment without sessions lives")
	faults := fs.String("faults", "", `fault injection JSON (or @file), e.g. {"boot_failure_rate":0.2} — see docs/edgegap-simulator.md`)
	fs.Uint64Var(&cfg.Seed, "seed", 0, "simulator random seed (0 = random)")
	execPath := fs.String("exec", "", "run this game server program per deployment instead of the built-in dotroom (arguments after --)")
	execGrace := fs.Duration("exec-grace", 5*time.Second, "time a stopping game server program gets before it is killed")
	fs.DurationVar(&cfg.GameTick, "game-tick", 0, "tick interval of the built-in dotroom servers (default 100ms)")
	gameTransport := fs.String("game-transport", "udp", "game servers' `transport`: udp or webtransport (self-signed certificates, their digests in cert_digests; a browser plays at /play/)")
	fs.DurationVar(&cfg.ReadinessLimit, "readiness-limit", 0, "matchmaker: how long a session may take to become ready (default 60s)")
	fs.DurationVar(&cfg.ClaimGrace, "claim-grace", 0, "matchmaker: extra time before an unclaimed session is deleted (default 2s)")
	queuesFile := fs.String("queues", env.Getenv(matchmakerEnvPrefix+"QUEUES"), "matchmaker: match queues JSON file ($"+matchmakerEnvPrefix+"QUEUES; default: the example queues duo and room)")
	fs.Uint64Var(&cfg.ProtocolID, "protocol-id", roomserver.DefaultProtocolID, "Lightyear protocol id")
	fs.Var(&cfg.TokenFormat, "token-format", "connect token byte order: lightyear-0.17 (bevygap) or lightyear-0.20")
	keyFlag := fs.String("private-key", "", "netcode private key shared with the game servers (default $"+roomserver.EnvPrivateKey+", else a fresh random key)")
	cors := fs.String("cors", "*", `browser origins the front door accepts, comma separated ("*" = any)`)
	logs := addLogFlags(fs, env)
	smoke := fs.Bool("smoke", false, "start, run one `bevygap play` against the stack, shut down; exit 0 only if all went well and no session leaked")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	if fs.NArg() > 0 && *execPath == "" {
		return &usageError{message: "game server arguments given without --exec", hint: "bevygap dev --exec ./server -- --flag"}
	}

	if *smoke { // random ports unless given: a smoke run must not collide with a running dev
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, addr := range map[string]*string{"nats-addr": natsAddr, "http-addr": &cfg.HTTPAddr,
			"webhook-addr": &cfg.WebhookAddr, "sim-addr": &cfg.SimAddr} {
			if !set[name] {
				*addr = "127.0.0.1:0"
			}
		}
	}
	host, portStr, splitErr := net.SplitHostPort(*natsAddr)
	port, perr := strconv.Atoi(portStr)
	if splitErr != nil || perr != nil || port < 0 || port > 65535 {
		return &usageError{message: fmt.Sprintf("--nats-addr %q is not host:port", *natsAddr), hint: "--nats-addr 127.0.0.1:4222"}
	}
	cfg.NATSHost, cfg.NATSPort = host, port
	cfg.BootJitter = *bootJitter
	if cfg.BootJitter == 0 {
		cfg.BootJitter = -1 // none
	}
	if cfg.BootTime == 0 {
		cfg.BootTime = -1 // --boot-time 0 means instant, not the default
	}
	if *queuesFile != "" {
		q, err := match.LoadConfig(*queuesFile)
		if err != nil {
			return &usageError{message: "--queues: " + err.Error(), hint: `--queues queues.json with {"queues":[{"name":"duo","min":2,"max":2}]}`}
		}
		cfg.Queues = &q
	}
	if *faults != "" {
		f, err := parseFaults(*faults)
		if err != nil {
			return &usageError{message: "--faults: " + err.Error(), hint: `--faults '{"endpoints":{"session_create":{"error_rate":0.1}}}'`}
		}
		cfg.Faults = f
	}
	keyText := *keyFlag
	if keyText == "" {
		keyText = env.Getenv(roomserver.EnvPrivateKey)
	}
	keySource := "generated for this run"
	if strings.TrimSpace(keyText) != "" {
		k, err := netcode.ParseKey(keyText)
		if err == nil {
			err = netcode.ValidateKey(k, false)
		}
		if err != nil {
			return &usageError{message: "private key: " + err.Error(), hint: `--private-key "1,2,3,...,32" (32 bytes), 64 hex characters or base64`}
		}
		cfg.PrivateKey = k
		keySource = "given"
	}
	cfg.AllowedOrigins = httpd.ParseOrigins(*cors)
	// The status page needs no token on a loopback front door (docs/status.md).
	if h, _, err := net.SplitHostPort(cfg.HTTPAddr); err == nil {
		if a, err := netip.ParseAddr(h); (err == nil && a.IsLoopback()) || h == "localhost" {
			cfg.Status.Open = true
		}
	}
	if err := (httpd.Config{AllowedOrigins: cfg.AllowedOrigins}).Validate(); err != nil {
		return &usageError{message: "--cors: " + err.Error(), hint: "--cors http://localhost:8000"}
	}
	if *execPath != "" {
		cfg.Exec = &devstack.Exec{Path: *execPath, Args: fs.Args(), Output: env.Stderr, StopGrace: *execGrace}
	}
	t, err := netcode.ParseTransport(*gameTransport)
	if err != nil {
		return &usageError{message: "--game-transport: " + err.Error(), hint: "bevygap dev --game-transport webtransport"}
	}
	cfg.GameTransport = t
	// The browser player is dotroom's: served when the built-in dotroom speaks WebTransport
	// (not for --smoke, which never opens a browser).
	cfg.Play = t == netcode.TransportWebTransport && cfg.Exec == nil && !*smoke
	if err := protocol.ValidateGameVersion(cfg.AppName, cfg.AppVersion); err != nil {
		return &usageError{message: err.Error(), hint: "bevygap dev --app dotroom --version 1"}
	}
	c.cfg, c.smoke, c.keySource = cfg, *smoke, keySource
	return nil
}

// Run starts the stack, prints the banner and runs until ctx ends (Ctrl-C), a component fails,
// or the --smoke test is over; then it shuts the stack down in order. A second Ctrl-C during
// the shutdown exits at once (devForceExitCode).
func (c *devCommand) Run(ctx context.Context) error {
	env, cfg := c.env, c.cfg
	logStart(cfg.Logger, "dev")
	// A second Ctrl-C cuts the ordered shutdown short. The watcher is armed when the first
	// Ctrl-C cancels ctx (even during Start) or when the shutdown begins for another reason.
	armed, watchDone := make(chan struct{}), make(chan struct{})
	var armOnce sync.Once
	arm := func() { armOnce.Do(func() { close(armed) }) }
	var watcher sync.WaitGroup
	watcher.Go(func() {
		forceExitOnSignal(armed, watchDone, notifyStopSignals, env.Stderr, devForceMessage(cfg.Exec != nil), os.Exit)
	})
	defer watcher.Wait()
	defer close(watchDone)
	defer context.AfterFunc(ctx, arm)()

	st, err := devstack.Start(ctx, cfg)
	if err != nil {
		return devStartError(err)
	}
	printDevBanner(env.Stdout, st.Info(), cfg, c.keySource, selfCommand())

	var runErr error
	if c.smoke {
		runErr = devSmoke(ctx, env, st)
	} else {
		select {
		case <-ctx.Done():
			fmt.Fprintln(env.Stdout, "\nShutting down (stopping the front door, the matchmaker, every session and game server) ...")
		case <-st.Failed():
			runErr = st.Err()
		}
	}
	arm()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), devShutdownTimeout)
	defer cancel()
	if err := st.Shutdown(sctx); err != nil {
		// The last line says what was left undone; the error (stderr) and exit code 1 follow.
		var se *devstack.ShutdownError
		if errors.As(err, &se) {
			fmt.Fprintf(env.Stdout, "Stopped, not cleanly: %s.\n", se.Summary())
		}
		return errors.Join(runErr, err)
	}
	if runErr == nil {
		fmt.Fprintf(env.Stdout, "Stopped cleanly: %d live sessions left in the simulator.\n", st.Sim().LiveSessions())
	}
	return runErr
}

// devForceExitCode is the exit code of a shutdown cut short by a second signal (128 + SIGINT).
const devForceExitCode = 130

// devForceMessage is the one line printed when a second signal cuts the shutdown short.
func devForceMessage(exec bool) string {
	const cut = "Shutdown cut short by a second signal: exiting now, sessions may be left in the simulator"
	if exec {
		return cut + "; the simulator ends with this process, but game server programs started with --exec were not stopped and may still run."
	}
	return cut + "; it runs in this process with its game servers, so nothing outlives it."
}

// notifyStopSignals starts delivering SIGINT and SIGTERM to a new channel; stop ends it.
func notifyStopSignals() (sigs <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}

// forceExitOnSignal waits until armed is closed, then listens for signals through notify
// (a signal that came before, e.g. the first Ctrl-C, is not seen) and, on the first one,
// writes msg as one line to w and calls exit(devForceExitCode). It returns, listening no more,
// once done is closed.
func forceExitOnSignal(armed, done <-chan struct{}, notify func() (<-chan os.Signal, func()), w io.Writer, msg string, exit func(int)) {
	select {
	case <-armed:
	case <-done:
		return
	}
	sigs, stop := notify()
	defer stop()
	select {
	case <-sigs:
		fmt.Fprintln(w, msg)
		exit(devForceExitCode)
	case <-done:
	}
}

// devListenError is a listen address of the stack that cannot be used, with the flag to change.
type devListenError struct {
	msg string
	err *devstack.ListenError
}

func (e *devListenError) Error() string { return e.msg }
func (e *devListenError) Unwrap() error { return e.err }

// devStartError names the flag to change when devstack.Start failed on a listen address.
func devStartError(err error) error {
	var le *devstack.ListenError
	if !errors.As(err, &le) {
		return err
	}
	flag := map[string]string{
		devstack.ComponentNATS:        "--nats-addr",
		devstack.ComponentHTTPD:       "--http-addr",
		devstack.ComponentWebhookSink: "--webhook-addr",
		devstack.ComponentSim:         "--sim-addr",
	}[le.Component]
	if errors.Is(le, syscall.EADDRINUSE) {
		return &devListenError{err: le, msg: fmt.Sprintf(
			"%s address %s is already in use (is another bevygap dev running?): stop that, or change %s (port 0 = random)",
			le.Component, le.Addr, flag)}
	}
	return &devListenError{err: le, msg: fmt.Sprintf("%s cannot listen on %s (%v): change %s", le.Component, le.Addr, le.Err, flag)}
}

// devSmoke runs one "bevygap play" against the stack: session over WebSocket, netcode
// connection, a few echoed packets.
func devSmoke(ctx context.Context, env *Env, st *devstack.Stack) error {
	info := st.Info()
	fmt.Fprintln(env.Stdout, "\nSmoke test: bevygap play ...")
	err := runCommand(ctx, &playCommand{env: env}, []string{"--url", info.HTTPURL, "--game", info.AppName, "--version", info.AppVersion,
		"--packets", "3", "--timeout", "60s"})
	if err != nil {
		return fmt.Errorf("smoke test: %w", err)
	}
	// The player left: the game server reports it, the matchmaker deletes the session. Wait for
	// that normal path (not the shutdown sweep) to finish.
	deadline := time.Now().Add(devSmokeCleanup)
	for st.Sim().LiveSessions() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("smoke test: the session was not deleted within %s of the player leaving", devSmokeCleanup)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintln(env.Stdout, "Session deleted by the matchmaker after the player left.")
	return nil
}

// parseFaults reads the simulator's fault JSON, inline or from @file.
func parseFaults(s string) (edgegapsim.Faults, error) {
	var f edgegapsim.Faults
	data := []byte(s)
	if path, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return f, err
		}
		data = b
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, err
	}
	return f, nil
}

// selfCommand is how the user runs this program again, for the copy-paste lines of the banner.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "bevygap"
	}
	return commandFor(exe, exec.LookPath)
}

// commandFor returns the command that runs the executable at exe: "go run ./cmd/bevygap" for a
// `go run` build (exe is <tmp>/go-build…/…/exe/<name>, gone when go run ends), the bare name when
// lookPath finds that same file on $PATH, else the path itself.
func commandFor(exe string, lookPath func(string) (string, error)) string {
	if filepath.Base(filepath.Dir(exe)) == "exe" {
		for _, part := range strings.Split(filepath.ToSlash(exe), "/") {
			if strings.HasPrefix(part, "go-build") {
				return "go run ./cmd/bevygap"
			}
		}
	}
	name := filepath.Base(exe)
	if found, err := lookPath(name); err == nil && sameFile(found, exe) {
		return strings.TrimSuffix(name, ".exe")
	}
	return exe
}

// sameFile reports whether paths a and b name the same existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// printDevBanner says what runs where and how to try it; self is the command that runs this
// program (see selfCommand).
func printDevBanner(w io.Writer, info devstack.Info, cfg devstack.Config, keySource, self string) {
	store := info.StoreDir
	if store == "" {
		store = "temporary"
	}
	gameServer := "dotroom (built-in example, in-process), over " + cfg.GameTransport.String()
	// The example's own client only speaks to the built-in example game.
	exampleClient := fmt.Sprintf("  go run ./examples/dotroom/client --url %s --game %s --version %s\n", info.HTTPURL, info.AppName, info.AppVersion)
	if cfg.Exec != nil {
		exampleClient = ""
		gameServer = "program " + cfg.Exec.Path + " (" + roomserver.EnvTransport + "=" + cfg.GameTransport.String() + ")"
	}
	qs := match.Default()
	if cfg.Queues != nil {
		qs = *cfg.Queues
	}
	tryQueue := ""
	if len(qs.Queues) > 0 {
		tryQueue = fmt.Sprintf("  %s play --url %s --game %s --version %s --queue %s   (in two terminals: one match)\n",
			self, info.HTTPURL, info.AppName, info.AppVersion, qs.Queues[0].Name)
	}
	browser := ""
	if info.PlayURL != "" {
		browser = "  Browser       " + info.PlayURL + "   (the dotroom player, WebAssembly + WebTransport)\n"
	}
	fmt.Fprintf(w, `bevygap dev is running — Ctrl-C stops everything and deletes every session.

  NATS          %s   (JetStream store: %s)
  HTTP          %s   (WebSocket: %s)
  Status page   %s
  Metrics       %s/metrics   (every component; Grafana dashboard and alerts: deploy/)
  Edgegap sim   %s   (state: %s/admin/state, faults: PUT %s/admin/faults)
  Webhook sink  %s
  Game          app %q version %q, %s
%s  Tokens        protocol id %d, private key %s
  Queues        %s

Try it:
  %s play --url %s --game %s --version %s
%s%s  nats --server %s req session.gensession '{"client_ip":"81.128.157.100"}'
  curl -sN -X POST '%s/matchmaker/request/%s/%s?client_ip=81.2.69.160'
  curl -s %s/admin/state
  %s
`,
		info.NATSURL, store,
		info.HTTPURL, info.WebSocketURL,
		statusURL(info, cfg),
		info.HTTPURL,
		info.SimURL, info.SimURL, info.SimURL,
		info.WebhookURL,
		info.AppName, info.AppVersion, gameServer,
		browser,
		info.ProtocolID, keySource,
		queueSummary(qs),
		self, info.HTTPURL, info.AppName, info.AppVersion,
		tryQueue,
		exampleClient,
		info.NATSURL,
		info.HTTPURL, info.AppName, info.AppVersion,
		info.SimURL,
		devDoctorCommand(info, self))
}

// queueSummary lists the match queues for the banner: "duo (2, match), room (2-4, seat)".
func queueSummary(c match.Config) string {
	if len(c.Queues) == 0 {
		return "none"
	}
	parts := make([]string, len(c.Queues))
	for i, q := range c.Queues {
		size := strconv.Itoa(q.Min)
		if q.Max != q.Min {
			size += "-" + strconv.Itoa(q.Max)
		}
		kind := q.Kind
		if kind == "" {
			kind = match.KindSeat
		}
		parts[i] = fmt.Sprintf("%s (%s, %s)", q.Name, size, kind)
	}
	return strings.Join(parts, ", ")
}

// devDoctorCommand is the `bevygap doctor` command line, with its environment, that checks the
// stack described by info. The private key is never printed, so its check is skipped.
func devDoctorCommand(info devstack.Info, self string) string {
	return fmt.Sprintf("NATS_HOST=%s NATS_INSECURE=1 %s=%s %s='%s' %s doctor --app-name %s --app-version %s --session-webhook-url %s --skip key",
		info.NATSURL, edgegap.EnvAPIURL, info.SimURL, edgegap.EnvAPIKey, devstack.SimAPIKey, self,
		info.AppName, info.AppVersion, info.WebhookURL)
}

// statusURL is the status page's address for the banner, or why there is none.
func statusURL(info devstack.Info, cfg devstack.Config) string {
	if !cfg.Status.Enabled() {
		return "off (the front door is not on loopback; see docs/status.md)"
	}
	return info.HTTPURL + "/status"
}
