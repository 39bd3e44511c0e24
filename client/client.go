// Package client is the Go SDK for game clients of bevygap: the counterpart of the Rust crate
// bevygap_client_plugin. [Request] asks the matchmaker's HTTP front door for a game session,
// reports progress while the matchmaker finds or starts a game server, and returns the game
// server's address and the netcode connect token to present to it.
//
// # Protocol
//
// The default transport is the WebSocket route, exactly as bevygap_client_plugin speaks it:
//
//	GET /matchmaker/ws                       (WebSocket upgrade)
//	client → {"game":"…","version":"…","client_ip":null}   one text frame
//	server → "Acknowledged"                                 text frames, one
//	         {"SessionRequestAccepted":"<session id>"}      SessionRequestFeedback
//	         {"ProgressReport":"<text>"} …                  JSON document each
//	         {"SessionReady":{"token":"<base64>","ip":"…","port":N,"cert_digest":"…"}}
//	      or {"Error":[<code>,"<message>"]}
//	server → close frame 1000 "Goodbye"
//	on a front-door failure: text frame "ERR <message>", then the connection ends
//
// The alternative ([TransportHTTP]) is the chunked route
// POST /matchmaker/request/{game}/{version}[?client_ip=…], whose body is the same sequence of
// feedback documents (one per line, or concatenated as the reference httpd writes them).
//
// # Progress
//
// Options.OnProgress sees the states of the Rust plugin's BevygapClientState, in order:
// Request, AwaitingResponse(message) once per feedback message, ReadyToConnect when a usable
// session arrived, then Finished; or Error(code, message) when the request fails (code 0 for
// failures that are not the matchmaker's, as in the plugin).
//
// # Connecting
//
// [Session.Dial] then connects to the game server with the token (package netcode): over
// WebTransport pinned to Session.CertDigest when the matchmaker sent one, over UDP otherwise,
// unless the caller chooses. Lightyear-based clients instead hand Session.Token,
// Session.ServerAddr and Session.CertDigest to their own transport.
//
// # Errors
//
// Every failure is typed: [ErrInvalidURL], [ErrConnect] (and [*StatusError]), [ErrProtocol],
// [ErrStreamEnded], [ErrInvalidSession], [ErrTimeout], [*MatchmakerError], [*ServerError],
// protocol.ErrInvalidName for a game or version name the front door would refuse, and
// protocol.ErrInvalidPlay for a malformed queue, props or party.
//
// # Playing together
//
// Options.Queue, Options.Props and Options.Party ask for a match queue and/or play as a party
// (docs/play-together.md); they travel in the WebSocket request message, or as the chunked
// route's JSON body {"queue","props","party"}. [PartyClient] creates, joins, leaves, kicks and
// shows parties; its failures wrap [ErrPartyNotFound], [ErrPartyConflict], [ErrPartyForbidden],
// [ErrPartyInvalid] or [ErrPartyUnavailable] and a *protocol.PlayError.
package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// DefaultURL is the matchmaker WebSocket URL of a front door running on this machine with its
// default bind address.
const DefaultURL = "ws://127.0.0.1:3000/matchmaker/ws"

// DefaultTimeout bounds a whole request when Options.Timeout is zero. The matchmaker gives up
// on a game server that is not ready well before this.
const DefaultTimeout = 2 * time.Minute

// DefaultPlayTimeout replaces DefaultTimeout for a play-together request (Options.Queue,
// Props or Party), which waits for other players before its session is created (the front
// door allows it 10 minutes).
const DefaultPlayTimeout = 10 * time.Minute

// closeGrace is how long Request waits for the server's closing handshake after the final
// feedback before dropping the connection.
const closeGrace = time.Second

// Transport selects how Request talks to the front door.
type Transport uint8

const (
	// TransportWebSocket uses GET /matchmaker/ws, like bevygap_client_plugin. The zero value.
	TransportWebSocket Transport = iota
	// TransportHTTP uses the chunked POST /matchmaker/request/{game}/{version}.
	TransportHTTP
)

// parseTransport returns the Transport named s: "ws" (or "websocket") or "http" (or
// "chunked"). An empty string is TransportWebSocket.
func parseTransport(s string) (Transport, error) {
	switch s {
	case "", "ws", "websocket":
		return TransportWebSocket, nil
	case "http", "chunked":
		return TransportHTTP, nil
	}
	return 0, fmt.Errorf("client: unknown transport %q (want ws or http)", s)
}

// String returns "ws" or "http".
func (t Transport) String() string {
	switch t {
	case TransportWebSocket:
		return "ws"
	case TransportHTTP:
		return "http"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Set parses s, so that *Transport is a flag.Value: "ws" (or "websocket") or "http" (or
// "chunked"); an empty string is TransportWebSocket.
func (t *Transport) Set(s string) error {
	v, err := parseTransport(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// State is the state of a request, named after the Rust plugin's BevygapClientState.
type State uint8

// The states a request goes through. The zero value is not a state.
const (
	// StateRequest: the request is starting (the front door is being contacted).
	StateRequest State = iota + 1
	// StateAwaitingResponse: the request is on its way; Progress.Message says how far.
	StateAwaitingResponse
	// StateReadyToConnect: a usable session arrived; Request is about to return it.
	StateReadyToConnect
	// StateFinished: the request is done and the stream closed; Request returns the session.
	StateFinished
	// StateError: the request failed; Progress.Code and Message say why.
	StateError
)

// String returns the Rust name of s ("Request", "AwaitingResponse", …).
func (s State) String() string {
	switch s {
	case StateRequest:
		return "Request"
	case StateAwaitingResponse:
		return "AwaitingResponse"
	case StateReadyToConnect:
		return "ReadyToConnect"
	case StateFinished:
		return "Finished"
	case StateError:
		return "Error"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Progress is one step of a request, passed to Options.OnProgress.
type Progress struct {
	// State is the state the request entered.
	State State
	// Message is the text of AwaitingResponse ("Request acknowledged", "Session created: <id>",
	// "Progress: <text>", like the Rust plugin) and of Error; for Request it names the URL.
	Message string
	// Code is the matchmaker's error code in StateError, 0 for failures that did not come
	// from the matchmaker (connection, protocol, timeout).
	Code uint16
	// Feedback is the message from the server that caused this step, nil when the step did not
	// come from a feedback message.
	Feedback *protocol.Feedback
}

// String renders p like the Rust enum: AwaitingResponse(Request acknowledged), Error(504, …).
func (p Progress) String() string {
	switch p.State {
	case StateAwaitingResponse:
		return p.State.String() + "(" + p.Message + ")"
	case StateError:
		return p.State.String() + "(" + strconv.Itoa(int(p.Code)) + ", " + p.Message + ")"
	}
	return p.State.String()
}

// Options tune Request. The zero value is valid: WebSocket transport, the front door picks the
// client IP, lightyear-0.17 tokens, DefaultTimeout, http.DefaultClient, no progress callback,
// no logging.
type Options struct {
	// ClientIP, when set, asks the matchmaker to place the session near this IP instead of
	// the address the front door sees (bevygap_client_plugin's fake_client_ip). It is sent
	// in the WebSocket request message and as the query parameter client_ip.
	ClientIP string
	// Transport selects the WebSocket (default) or the chunked HTTP route.
	Transport Transport
	// TokenFormat is the byte order of the connect token (lightyear-0.17 by default, as bevygap).
	TokenFormat netcode.Format
	// Timeout bounds the whole request: 0 means DefaultTimeout (DefaultPlayTimeout for a
	// play-together request), negative means no limit other than ctx's.
	Timeout time.Duration
	// HTTPClient makes the HTTP requests (and the WebSocket handshake); nil means
	// http.DefaultClient. Its Timeout, if any, also bounds the chunked route's whole body.
	HTTPClient *http.Client
	// Header is added to the WebSocket handshake or the POST (e.g. Origin, Authorization). In a
	// browser (GOOS=js) the browser makes the WebSocket handshake itself: HTTPClient and Header
	// do not apply to it.
	Header http.Header
	// OnProgress, when set, is called synchronously on Request's goroutine at every step.
	OnProgress func(Progress)
	// Logger receives debug logs of the exchange; nil discards them. Tokens are never logged.
	Logger *slog.Logger

	// Queue, Props and Party ask to play together (docs/play-together.md); all empty is a plain
	// request, the reference's bytes. Queue names a match queue of the game and version
	// (e.g. "duo"); Props are the player's properties for it (e.g. skill=1200, mode=ctf);
	// Party, from [Membership.Ref], plays as that party: a member's request waits for the
	// leader's, the leader's starts the party's game.
	Queue string
	Props protocol.Props
	Party *protocol.PartyRef
}

// Session is what the matchmaker hands over: where the game server is and the connect token to
// present to it. Its String and LogValue never show the token.
type Session struct {
	// SessionID is the Edgegap session id from SessionRequestAccepted (empty if the
	// matchmaker skipped that message).
	SessionID string
	// ServerAddr is the game server's address (SessionReady's ip and port).
	ServerAddr netip.AddrPort
	// CertDigest is the game server's WebTransport certificate digest as sent: the SHA-256 of its
	// certificate as lower-case hex bytes joined by ':' (bevygap_server_plugin's format; the Rust
	// client plugin removes the ':'), or empty for a UDP game server. netcode.ParseCertDigest
	// reads it.
	CertDigest string
	// Token is the connect token, ConnectTokenBytes (2048) bytes. It is a credential: do not log it.
	Token []byte
	// TokenBase64 is Token as the matchmaker sent it (standard base64 with padding).
	TokenBase64 string
	// ConnectToken is the decoded public part of Token (protocol id, expiry, server addresses,
	// keys), decoded with Options.TokenFormat.
	ConnectToken *netcode.ConnectToken
}

// ExpiresAt returns when the connect token expires (the zero time for a token that never does).
func (s Session) ExpiresAt() time.Time {
	if s.ConnectToken == nil || s.ConnectToken.ExpireTimestamp > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(s.ConnectToken.ExpireTimestamp), 0)
}

// String describes s without its token.
func (s Session) String() string {
	return "session " + strconv.Quote(s.SessionID) + " at " + s.ServerAddr.String()
}

// GoString describes s for %#v, also without its token.
func (s Session) GoString() string {
	return "client.Session{SessionID:" + strconv.Quote(s.SessionID) + ", ServerAddr:" + s.ServerAddr.String() +
		", Token:[REDACTED]}"
}

// LogValue logs s without its token.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String(logkey.SessionID, s.SessionID),
		slog.String("server", s.ServerAddr.String()),
	)
}

// Request asks the matchmaker front door at url for a session of game (version) and waits until
// it is ready, reporting progress to opts.OnProgress. url may use any of the schemes ws, wss,
// http and https (http means ws for the WebSocket transport and vice versa) and may be just
// the front door's root (e.g. "http://127.0.0.1:3000"). game and version must pass
// protocol.ValidateGameVersion.
//
// On success it returns the session with its token checked and decoded. On failure the error
// is one of the package's typed errors (see the package documentation), and OnProgress has seen
// StateError last.
func Request(ctx context.Context, url, game, version string, opts Options) (*Session, error) {
	r := &requester{opts: opts, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	s, err := r.request(ctx, url, game, version)
	if err != nil {
		p := Progress{State: StateError, Message: err.Error()}
		var me *MatchmakerError
		if errors.As(err, &me) {
			p.Code, p.Message = me.Code, me.Message
		}
		r.progress(p)
		return nil, err
	}
	r.progress(Progress{State: StateFinished})
	return s, nil
}

// GameTransport returns the transport Dial uses when cfg.Transport is empty ("auto"):
// WebTransport when the session came with a certificate digest (the game server is a
// WebTransport server and told the matchmaker its certificate), UDP otherwise.
func (s *Session) GameTransport() netcode.Transport {
	if s.CertDigest != "" {
		return netcode.TransportWebTransport
	}
	return netcode.TransportUDP
}

// Dial connects to the game server with the session's connect token, the Go counterpart of the
// plugin's connect step: it tries the address from SessionReady first, then the token's other
// addresses (see netcode.DialToken for the handshake, its timeouts and errors; the token's
// format decides the packets' byte order, cfg.Format is ignored). Connect before ExpiresAt.
//
// The transport: an empty cfg.Transport means "auto" ([Session.GameTransport]): WebTransport
// pinned to the session's CertDigest when it has one — as a browser connects, so a game server
// presenting another certificate fails with an error wrapping netcode.ErrCertMismatch — and UDP
// otherwise. An explicit cfg.Transport overrides that; with TransportWebTransport the
// certificate is pinned to cfg.CertDigest if set, else to the session's digest if it has one,
// else not checked (as Lightyear's native client does). A CertDigest that is not a SHA-256 digest
// is an ErrInvalidSession.
func (s *Session) Dial(ctx context.Context, cfg netcode.ClientConfig) (*netcode.Client, error) {
	if s.ConnectToken == nil {
		return nil, fmt.Errorf("%w: no decoded connect token", ErrInvalidSession)
	}
	if cfg.Transport == "" {
		cfg.Transport = s.GameTransport()
	}
	if cfg.Transport == netcode.TransportWebTransport && cfg.CertDigest == nil && s.CertDigest != "" {
		d, err := netcode.ParseCertDigest(s.CertDigest)
		if err != nil {
			return nil, fmt.Errorf("%w: cert_digest: %w", ErrInvalidSession, err)
		}
		cfg.CertDigest = &d
	}
	tok := *s.ConnectToken
	tok.ServerAddrs = make([]netip.AddrPort, 0, len(s.ConnectToken.ServerAddrs)+1)
	if s.ServerAddr.IsValid() {
		tok.ServerAddrs = append(tok.ServerAddrs, s.ServerAddr)
	}
	for _, a := range s.ConnectToken.ServerAddrs {
		if a != s.ServerAddr && len(tok.ServerAddrs) < netcode.MaxServersPerConnect {
			tok.ServerAddrs = append(tok.ServerAddrs, a)
		}
	}
	return netcode.DialToken(ctx, &tok, cfg)
}

// requester holds the state of one Request.
type requester struct {
	opts      Options
	log       *slog.Logger
	sessionID string
}

func (r *requester) progress(p Progress) {
	if r.opts.OnProgress != nil {
		r.opts.OnProgress(p)
	}
}

func (r *requester) request(ctx context.Context, rawURL, game, version string) (*Session, error) {
	if err := protocol.ValidateGameVersion(game, version); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := protocol.ValidatePlay(r.opts.Queue, r.opts.Props, r.opts.Party); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	u, err := endpoint(rawURL, r.opts.Transport, game, version, r.opts.ClientIP)
	if err != nil {
		return nil, err
	}
	timeout := r.opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
		if r.opts.Queue != "" || len(r.opts.Props) > 0 || r.opts.Party != nil {
			timeout = DefaultPlayTimeout
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	r.progress(Progress{State: StateRequest, Message: "Connecting to " + u})
	r.log.DebugContext(ctx, "matchmaker request", "url", u, "transport", r.opts.Transport, logkey.Game, game, logkey.Version, version,
		"queue", r.opts.Queue, "party", r.opts.Party != nil)
	if r.opts.Transport == TransportHTTP {
		return r.requestChunked(ctx, u)
	}
	return r.requestWebSocket(ctx, u, game, version)
}

// handle applies one feedback message. It returns the session for SessionReady, an error for
// Error, and (nil, nil) for the messages that only report progress.
func (r *requester) handle(fb protocol.Feedback) (*Session, error) {
	r.log.Debug("matchmaker feedback", "kind", kindName(fb.Kind), "text", fb.Text)
	var msg string
	switch fb.Kind {
	case protocol.FeedbackAcknowledged:
		msg = "Request acknowledged"
	case protocol.FeedbackSessionRequestAccepted:
		r.sessionID = fb.Text
		msg = "Session created: " + fb.Text
	case protocol.FeedbackProgressReport:
		msg = "Progress: " + fb.Text
	case protocol.FeedbackError:
		return nil, &MatchmakerError{Code: fb.Code, Message: fb.Text}
	case protocol.FeedbackSessionReady:
		s, err := r.session(fb.Ready)
		if err != nil {
			return nil, err
		}
		r.progress(Progress{State: StateReadyToConnect, Message: s.ServerAddr.String(), Feedback: &fb})
		return s, nil
	default:
		return nil, fmt.Errorf("%w: feedback of unknown kind %d", ErrProtocol, fb.Kind)
	}
	r.progress(Progress{State: StateAwaitingResponse, Message: msg, Feedback: &fb})
	return nil, nil
}

// session checks and decodes a SessionReady payload.
func (r *requester) session(ready *protocol.SessionReady) (*Session, error) {
	if ready == nil {
		return nil, fmt.Errorf("%w: SessionReady without payload", ErrInvalidSession)
	}
	addr, err := ready.Addr()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSession, err)
	}
	if addr.Port() == 0 {
		return nil, fmt.Errorf("%w: game server port 0", ErrInvalidSession)
	}
	raw, err := base64.StdEncoding.DecodeString(ready.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: connect token is not standard base64: %w", ErrInvalidSession, err)
	}
	if len(raw) != netcode.ConnectTokenBytes {
		return nil, fmt.Errorf("%w: %w, got %d", ErrInvalidSession, netcode.ErrTokenSize, len(raw))
	}
	f := r.opts.TokenFormat
	tok, err := netcode.DecodeConnectToken(raw, f)
	if err != nil {
		for _, other := range []netcode.Format{netcode.FormatLightyear017, netcode.FormatLightyear020} {
			if other == f {
				continue
			}
			if _, err2 := netcode.DecodeConnectToken(raw, other); err2 == nil {
				return nil, fmt.Errorf("%w: connect token is not %s but decodes as %s (set the token format): %w", ErrInvalidSession, f, other, err)
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidSession, err)
	}
	return &Session{
		SessionID:    r.sessionID,
		ServerAddr:   addr,
		CertDigest:   ready.CertDigest,
		Token:        raw,
		TokenBase64:  ready.Token,
		ConnectToken: tok,
	}, nil
}

// ctxError maps a finished context to the package's errors: ErrTimeout (with
// context.DeadlineExceeded) or context.Canceled. waiting says what was going on.
func ctxError(ctx context.Context, waiting string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w while %s: %w", ErrTimeout, waiting, err)
	}
	return fmt.Errorf("client: request cancelled while %s: %w", waiting, err)
}

func kindName(k protocol.FeedbackKind) string {
	switch k {
	case protocol.FeedbackAcknowledged:
		return "Acknowledged"
	case protocol.FeedbackSessionRequestAccepted:
		return "SessionRequestAccepted"
	case protocol.FeedbackProgressReport:
		return "ProgressReport"
	case protocol.FeedbackSessionReady:
		return "SessionReady"
	case protocol.FeedbackError:
		return "Error"
	}
	return "unknown"
}
