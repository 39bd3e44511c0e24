package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

const playSynopsis = "[--url URL] [--game NAME --version VERSION] [--transport ws|http] [--game-transport auto|udp|webtransport] [--packets N] [--json] [--queue NAME] [--prop NAME=VALUE]... [--party create [--party-wait N] | --party join CODE]"

// Exit codes of "bevygap play" (docs/client-sdk.md documents them).
const (
	// playExitFailure: the session could not be obtained (matchmaker error, front door
	// unreachable or misbehaving, timeout, interrupted).
	playExitFailure = 1
	// playExitGameServer: a session was handed over, but the game server could not be
	// connected to, or the connection ended during the packet exchange.
	playExitGameServer = 3
)

// playExitCodesHelp ends the help of "bevygap play".
const playExitCodesHelp = `
The defaults match "bevygap dev" (game ` + devstack.DefaultAppName + `, version ` + devstack.DefaultAppVersion + `, ` + client.DefaultURL + `),
so a bare "bevygap play" talks to a running "bevygap dev". The Rust bevygap_client_plugin's
defaults are game bevygap-spaceships, version 1: pass --game bevygap-spaceships --version 1
to request sessions like an unconfigured Rust client does.

Playing together (docs/play-together.md): --queue NAME [--prop NAME=VALUE]... asks for a match
in a queue; --party create prints a party code, waits until --party-wait members (the leader
counted) have joined, then sends the leader's request, which starts the party's game;
--party join CODE joins a party and waits for its leader. "bevygap dev" serves the queues duo
(exactly 2 players) and room (2-4, down to 1 after 10 s): run "bevygap play --queue duo" in two
terminals. A party run leaves its party when it ends.

Exit codes:
  0  session obtained (and, with --packets > 0, game server connected, packets exchanged, disconnected)
  1  no session: matchmaker error, front door unreachable or misbehaving, timeout, interrupted
  2  usage error
  3  session obtained, but the game server could not be connected to or the connection dropped
`

// Defaults of "bevygap play": the game and version "bevygap dev" serves (its built-in dotroom),
// so that a bare "bevygap play" works against a bare "bevygap dev". (The Rust
// bevygap_client_plugin defaults to bevygap-spaceships version 1 instead; the help says so.)
const (
	playDefaultGame    = devstack.DefaultAppName
	playDefaultVersion = devstack.DefaultAppVersion
	playDefaultPackets = 5
	playDefaultTimeout = 2 * time.Minute
	playMaxPackets     = 10000
)

// playDefaultTogetherTimeout replaces playDefaultTimeout with --queue, --prop or --party: the
// run first waits for other players (as client.DefaultPlayTimeout).
const playDefaultTogetherTimeout = client.DefaultPlayTimeout

// playConfig is the parsed command line of "bevygap play".
type playConfig struct {
	url, game, version, clientIP string
	transport                    client.Transport
	gameTransport                netcode.Transport // "" = auto
	format                       netcode.Format
	packets                      int
	json                         bool
	timeout                      time.Duration

	// Playing together (play_party.go).
	queue     string
	props     propsFlag
	partyOp   string // "", create or join
	partyCode string // join's code, upper case
	partyWait int    // create: members to wait for, the leader counted
}

func parsePlayFlags(env *Env, args []string) (*playConfig, error) {
	c := &playConfig{}
	fs := newFlagSet(env, "play", playSynopsis)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(env.Stderr, playExitCodesHelp)
	}
	fs.StringVar(&c.url, "url", client.DefaultURL, "matchmaker front door: its WebSocket URL, or just http(s)://host:port")
	fs.StringVar(&c.game, "game", playDefaultGame, "game name sent to the matchmaker")
	fs.StringVar(&c.version, "version", playDefaultVersion, "game version sent to the matchmaker")
	fs.StringVar(&c.clientIP, "client-ip", "", "place the session near this IP instead of the address the front door sees")
	fs.Var(&c.transport, "transport", "`transport`: ws (WebSocket, like bevygap_client_plugin; the default) or http (chunked POST)")
	gameTransport := fs.String("game-transport", "auto", "game server `transport`: auto (webtransport pinned to the session's cert_digest when it has one, else udp), udp or webtransport")
	fs.Var(&c.format, "token-format", "connect token byte order, the `format` of the matchmaker: lightyear-0.17 (bevygap; the default) or lightyear-0.20")
	fs.IntVar(&c.packets, "packets", playDefaultPackets, "packets to exchange with the game server (0: only request a session, do not connect)")
	fs.BoolVar(&c.json, "json", false, "print one JSON document with the result on stdout (progress stays on stderr)")
	fs.DurationVar(&c.timeout, "timeout", playDefaultTimeout, "limit for the whole run: matchmaking, connecting and the packet exchange (unset with --queue, --prop or --party: 10m)")
	playPartyFlags(fs, c)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	rest, err := checkPlayParty(fs, c, fs.Args())
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 && len(rest) < fs.NArg() { // flags after "--party join CODE"
		if err := parseFlags(fs, rest); err != nil {
			return nil, err
		}
		if rest, err = checkPlayParty(fs, c, fs.Args()); err != nil {
			return nil, err
		}
	}
	switch {
	case len(rest) > 0:
		return nil, &usageError{message: fmt.Sprintf("unexpected argument %q", rest[0]), hint: "bevygap play -h"}
	case c.packets < 0 || c.packets > playMaxPackets:
		return nil, &usageError{message: fmt.Sprintf("--packets must be between 0 and %d", playMaxPackets), hint: "bevygap play --packets 5"}
	case c.timeout <= 0:
		return nil, &usageError{message: "--timeout must be positive", hint: "bevygap play --timeout 30s"}
	}
	if err := protocol.ValidateGameVersion(c.game, c.version); err != nil {
		return nil, &usageError{message: err.Error(), hint: "bevygap play --game " + devstack.DefaultAppName + " --version " + devstack.DefaultAppVersion}
	}
	if *gameTransport != "auto" {
		t, err := netcode.ParseTransport(*gameTransport)
		if err != nil {
			return nil, &usageError{message: "--game-transport: " + err.Error() + ` (or "auto")`, hint: "bevygap play --game-transport webtransport"}
		}
		c.gameTransport = t
	}
	if c.clientIP != "" {
		if _, err := netip.ParseAddr(c.clientIP); err != nil {
			return nil, &usageError{message: fmt.Sprintf("--client-ip %q is not an IP address", c.clientIP), hint: "bevygap play --client-ip 81.128.157.100"}
		}
	}
	return c, nil
}

// playCommand is "bevygap play": request a session with a live progress display, connect to
// the game server (netcode over WebTransport or UDP, --game-transport), exchange packets, print
// round-trip times, disconnect.
type playCommand struct {
	env *Env
	cfg *playConfig
	nothingToClose
}

// ParseFlags reads the command line (parsePlayFlags).
func (c *playCommand) ParseFlags(args []string) error {
	cfg, err := parsePlayFlags(c.env, args)
	c.cfg = cfg
	return err
}

// Run plays once within --timeout and prints the result (as JSON with --json); the error it
// returns carries the documented exit code.
func (c *playCommand) Run(ctx context.Context) error {
	env, cfg := c.env, c.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	res := &playResult{URL: cfg.url, Transport: cfg.transport.String(), Game: cfg.game, Version: cfg.version,
		Queue: cfg.queue, Props: cfg.props.props, Progress: []playStep{}}
	err := playRun(ctx, env, cfg, res)
	res.OK = err == nil
	res.ExitCode = exitCode(io.Discard, err)
	if err != nil {
		res.Error = describePlayError(err)
	}
	var ue *usageError
	if cfg.json && !errors.As(err, &ue) { // usage errors go to stderr only, like flag errors
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(res); encErr != nil && err == nil {
			return fmt.Errorf("writing the result: %w", encErr)
		}
	}
	return err
}

// playRun does the work of playCommand.Run, filling res; the error it returns carries the exit code.
func playRun(ctx context.Context, env *Env, cfg *playConfig, res *playResult) error {
	var out io.Writer = env.Stdout
	if cfg.json {
		out = io.Discard
	}
	start := time.Now()
	display := newProgressDisplay(env.Stderr, isTerminal(env.Stderr, env.Getenv))
	var party *protocol.PartyRef
	if cfg.partyOp != "" {
		m, leave, err := playJoinParty(ctx, env, cfg, res, out, display)
		if err != nil {
			display.finish()
			if errors.Is(err, client.ErrInvalidURL) {
				return &usageError{message: err.Error(), hint: "bevygap play --url ws://127.0.0.1:3000/matchmaker/ws"}
			}
			return &exitCodeError{code: playExitFailure, err: err}
		}
		defer leave()
		party = m.Ref()
	}
	sess, err := client.Request(ctx, cfg.url, cfg.game, cfg.version, client.Options{
		ClientIP:    cfg.clientIP,
		Transport:   cfg.transport,
		TokenFormat: cfg.format,
		Queue:       cfg.queue,
		Props:       cfg.props.props,
		Party:       party,
		Timeout:     -1, // ctx carries --timeout
		OnProgress: func(p client.Progress) {
			res.Progress = append(res.Progress, playStep{
				AtMS: playMillis(time.Since(start)), State: p.State.String(), Message: p.Message, Code: p.Code,
			})
			display.update(p)
		},
	})
	display.finish()
	res.MatchmakingMS = playMillis(time.Since(start))
	if err != nil {
		if errors.Is(err, client.ErrInvalidURL) {
			return &usageError{message: err.Error(), hint: "bevygap play --url ws://127.0.0.1:3000/matchmaker/ws"}
		}
		return &exitCodeError{code: playExitFailure, err: fmt.Errorf("matchmaking: %w", err)}
	}
	res.Session = newPlaySession(sess)
	fmt.Fprintf(out, "Session ready: %s at %s (matchmaking took %s)\n", playOrNone(sess.SessionID), sess.ServerAddr, playRound(time.Since(start)))
	tok := sess.ConnectToken
	fmt.Fprintf(out, "Connect token: %s, protocol id %d, %d server address(es), expires %s\n",
		tok.Format, tok.ProtocolID, len(tok.ServerAddrs), playExpiry(sess.ExpiresAt()))
	if cfg.packets == 0 {
		return nil
	}
	gs, err := playGameServer(ctx, sess, cfg.gameTransport, cfg.packets, out)
	res.GameServer = gs
	if err != nil {
		return &exitCodeError{code: playExitGameServer, err: fmt.Errorf("game server %s: %w", sess.ServerAddr, err)}
	}
	return nil
}

// playResult is the JSON document "bevygap play --json" prints.
type playResult struct {
	OK            bool            `json:"ok"`
	ExitCode      int             `json:"exit_code"`
	URL           string          `json:"url"`
	Transport     string          `json:"transport"`
	Game          string          `json:"game"`
	Version       string          `json:"version"`
	Queue         string          `json:"queue,omitempty"`
	Props         protocol.Props  `json:"props,omitempty"`
	Party         *playParty      `json:"party,omitempty"`
	Progress      []playStep      `json:"progress"`
	MatchmakingMS float64         `json:"matchmaking_ms"`
	Session       *playSession    `json:"session,omitempty"`
	GameServer    *playGameResult `json:"game_server,omitempty"`
	Error         *playError      `json:"error,omitempty"`
}

// playStep is one progress step of the matchmaking request.
type playStep struct {
	AtMS    float64 `json:"at_ms"`
	State   string  `json:"state"`
	Message string  `json:"message,omitempty"`
	Code    uint16  `json:"code,omitempty"`
}

// playSession is the handed-over session without the token itself (a credential).
type playSession struct {
	SessionID       string   `json:"session_id"`
	Server          string   `json:"server"`
	CertDigest      string   `json:"cert_digest"`
	TokenFormat     string   `json:"token_format"`
	ProtocolID      uint64   `json:"protocol_id"`
	CreateTimestamp uint64   `json:"create_timestamp"`
	ExpireTimestamp uint64   `json:"expire_timestamp"`
	TimeoutSeconds  int32    `json:"timeout_seconds"`
	ServerAddrs     []string `json:"server_addrs"`
}

func newPlaySession(s *client.Session) *playSession {
	t := s.ConnectToken
	p := &playSession{
		SessionID: s.SessionID, Server: s.ServerAddr.String(), CertDigest: s.CertDigest,
		TokenFormat: t.Format.String(), ProtocolID: t.ProtocolID, CreateTimestamp: t.CreateTimestamp,
		ExpireTimestamp: t.ExpireTimestamp, TimeoutSeconds: t.TimeoutSeconds,
		ServerAddrs: make([]string, len(t.ServerAddrs)),
	}
	for i, a := range t.ServerAddrs {
		p.ServerAddrs[i] = a.String()
	}
	return p
}

// playGameResult is the outcome of the game server part.
type playGameResult struct {
	Transport       string    `json:"transport"` // udp or webtransport
	Connected       bool      `json:"connected"`
	ConnectMS       float64   `json:"connect_ms,omitempty"`
	PacketsSent     int       `json:"packets_sent"`
	PacketsReceived int       `json:"packets_received"`
	RTTMS           []float64 `json:"rtt_ms"`
	MinMS           float64   `json:"rtt_min_ms,omitempty"`
	AvgMS           float64   `json:"rtt_avg_ms,omitempty"`
	MaxMS           float64   `json:"rtt_max_ms,omitempty"`
}

// playError describes the failure in the JSON result.
type playError struct {
	// Stage is "matchmaking" or "game_server".
	Stage string `json:"stage"`
	// Kind names the failure for scripts: matchmaker, party (a party operation refused: Code is
	// its HTTP status), front_door, http_status, connect, protocol, stream_ended,
	// invalid_session, timeout, cancelled, game_server, other.
	Kind string `json:"kind"`
	// Code is the matchmaker's error code, or the HTTP status of a refused request.
	Code    int    `json:"code,omitempty"`
	Message string `json:"message"`
}

func describePlayError(err error) *playError {
	pe := &playError{Stage: "matchmaking", Message: err.Error()}
	var ec *exitCodeError
	if errors.As(err, &ec) && ec.code == playExitGameServer {
		pe.Stage = "game_server"
	}
	var me *client.MatchmakerError
	var se *client.ServerError
	var st *client.StatusError
	var pl *protocol.PlayError
	switch {
	case errors.As(err, &me):
		pe.Kind, pe.Code = "matchmaker", int(me.Code)
	case errors.As(err, &pl):
		pe.Kind, pe.Code = "party", int(pl.Code)
	case errors.As(err, &se):
		pe.Kind = "front_door"
	case errors.As(err, &st):
		pe.Kind, pe.Code = "http_status", st.StatusCode
	case pe.Stage == "game_server":
		pe.Kind = "game_server"
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		pe.Kind = "timeout"
	case errors.Is(err, context.Canceled):
		pe.Kind = "cancelled"
	case errors.Is(err, client.ErrConnect):
		pe.Kind = "connect"
	case errors.Is(err, client.ErrProtocol):
		pe.Kind = "protocol"
	case errors.Is(err, client.ErrStreamEnded):
		pe.Kind = "stream_ended"
	case errors.Is(err, client.ErrInvalidSession):
		pe.Kind = "invalid_session"
	default:
		pe.Kind = "other"
	}
	return pe
}

// ms returns d in milliseconds with microsecond precision.
func playMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func playRound(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Microsecond * 100)
	}
	return d.Round(time.Millisecond * 10)
}

func playOrNone(s string) string {
	if s == "" {
		return "(no session id)"
	}
	return s
}

func playExpiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "in " + time.Until(t).Round(time.Second).String()
}
